"""Mixing (rates, sizes, determinism) and the collator (prompt layout, labels, truncation, shapes, model fit)."""

from __future__ import annotations

import warnings
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datasets import Collator, MixedDataset
from datasets.collate import IGNORE_INDEX, conversation_text
from model.config import build_config
from model.io import attach_tokenizer
from utils.conversation import IMAGE_TOKEN, SEG_TOKEN, build_prompt, instruction_length_marker, make_qa


class FakeSource:
    """A sized source that records the epoch it was told."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size, self.epoch = name, size, 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        return {"source": self.name, "index": index, "meta": {}}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


# ------------------------------------------------------------------------------------------------------------------
# mixing


def test_mixing_respects_rates_and_source_sizes():
    groups = [[FakeSource("damon", 100), FakeSource("lemon", 300)], [FakeSource("rich", 50)], [FakeSource("vqa", 10)]]
    n = 13000
    mixed = MixedDataset(groups, rates=[9, 3, 1], samples_per_epoch=n, seed=1)
    counts = Counter(mixed.locate(i)[:2] for i in range(n))
    group_share = [sum(c for (g, _), c in counts.items() if g == k) / n for k in range(3)]
    np.testing.assert_allclose(group_share, [9 / 13, 3 / 13, 1 / 13], atol=0.015)
    # inside the first group the sources are chosen ∝ size (100 : 300)
    assert abs(counts[(0, 1)] / (counts[(0, 0)] + counts[(0, 1)]) - 0.75) < 0.02
    np.testing.assert_allclose(mixed.source_probabilities()[0], [9 / 13 * 0.25, 9 / 13 * 0.75])
    uniform = MixedDataset(groups, rates=[9, 3, 1], samples_per_epoch=n, seed=1, weight_sources_by_size=False)
    counts = Counter(uniform.locate(i)[:2] for i in range(n))
    assert abs(counts[(0, 1)] / (counts[(0, 0)] + counts[(0, 1)]) - 0.5) < 0.02  # the original's uniform choice
    indices = [mixed.locate(i)[2] for i in range(n) if mixed.locate(i)[:2] == (2, 0)]
    assert set(indices) == set(range(10))  # uniform sample inside a source


def test_mixing_is_deterministic_and_epoch_dependent():
    def make(seed=0):
        return MixedDataset([FakeSource("a", 7), [FakeSource("b", 5), FakeSource("c", 9)]], rates=[1, 2], batch_size=4,
                            grad_accumulation_steps=2, steps_per_epoch=10, world_size=3, seed=seed)

    first, second = make(), make()
    assert len(first) == 4 * 2 * 10 * 3
    assert [first.locate(i) for i in range(len(first))] == [second.locate(i) for i in range(len(first))]
    assert [first[i] for i in range(20)] == [second[i] for i in range(20)]
    assert [first.locate(i) for i in range(50)] != [make(seed=1).locate(i) for i in range(50)]
    epoch0 = [first.locate(i) for i in range(50)]
    first.set_epoch(1)
    assert [first.locate(i) for i in range(50)] != epoch0
    assert all(source.epoch == 1 for group in first.groups for source in group)  # forwarded to the readers
    sample = first[3]
    assert sample["meta"]["mix_index"] == 3 and (sample["meta"]["mix_group"], sample["meta"]["mix_source"]) == first.locate(3)[:2]
    with pytest.raises(IndexError):
        first.locate(len(first))
    with pytest.raises(ValueError, match="rates"):
        MixedDataset([FakeSource("a", 1)], rates=[1, 2])
    with pytest.raises(ValueError, match="empty"):
        MixedDataset([FakeSource("a", 0)])


# ------------------------------------------------------------------------------------------------------------------
# collate


@pytest.fixture(scope="module")
def config(tiny_tokenizer):
    cfg = build_config("tiny")
    attach_tokenizer(cfg, tiny_tokenizer)
    return cfg


def contact_sample(rng, task="hcontact", class_name="chair", parts=("hips", "left thigh"), views=4, size=64):
    qa = make_qa(task, class_name, "parts" if task == "hcontact" else "afford", body_parts=list(parts),
                 affordance="sit", rng=None)
    masks = rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), size=(views, size, size))
    return {"image_path": f"/data/{class_name}.jpg", "image": rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
            "task": task, "dataset": "damon", "class_name": class_name, "question": qa.question, "answer": qa.answer,
            "conversation": [(qa.question, qa.answer)], "body_parts": list(parts), "template": "human",
            "masks": masks, "vertex_labels": rng.random(6997).astype(np.float32), "meta": {}}


def vqa_sample(rng):
    turns = [("What is the man holding?", "He is holding a red umbrella above his head."),
             ("Is it raining?", "Yes, the street is wet and people carry umbrellas.")]
    return {"image_path": "/coco/1.jpg", "image": rng.integers(0, 256, (50, 20, 3), dtype=np.uint8), "task": "vqa",
            "dataset": "llava_vqa", "class_name": "", "question": turns[0][0], "answer": turns[0][1],
            "conversation": turns, "body_parts": [], "template": None, "masks": None, "vertex_labels": None, "meta": {}}


def test_conversation_text_matches_build_prompt():
    prompt_config = SimpleNamespace(image_seq_length=3, use_im_start_end=True)
    text, spans = conversation_text([("q1", "a1")], prompt_config)
    assert text == build_prompt("q1", "a1", image_tokens=3)
    assert [text[s:e] for s, e in spans] == [" a1</s>"]
    text, spans = conversation_text([("q1", "a1"), ("q2", "a2")], prompt_config)
    assert text.endswith("ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>") and text.count(IMAGE_TOKEN) == 3
    assert [text[s:e] for s, e in spans] == [" a1</s>", " a2</s>"]


def test_collate_prompt_labels_and_shapes(tiny_tokenizer, config):
    tok = tiny_tokenizer
    rng = np.random.default_rng(0)
    samples = [contact_sample(rng), vqa_sample(rng), contact_sample(rng, "oafford", "bag", views=4, size=32)]
    batch = Collator(tok, config)(samples)
    ids, labels, attention = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == attention.shape and ids.dtype == labels.dtype == torch.long
    assert batch["clip_pixel_values"].shape == (3, 3, 112, 112)
    assert batch["tasks"] == ["hcontact", "vqa", "oafford"] and batch["templates"] == ["human", None, "human"]
    seg_id = tok.convert_tokens_to_ids(SEG_TOKEN)
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    for b, sample in enumerate(samples):
        length = int(attention[b].sum())
        row, lab = ids[b, :length].tolist(), labels[b, :length].tolist()
        assert row[0] == tok.bos_token_id and lab[0] == IGNORE_INDEX
        assert row.count(image_id) == config.image_seq_length  # exactly one token per CLIP feature
        # padding: pad id, attention 0, label −100
        assert (ids[b, length:] == tok.pad_token_id).all() and (labels[b, length:] == IGNORE_INDEX).all()
        # the instruction (up to and including the first "ASSISTANT:") is masked …
        prompt_ids = [tok.bos_token_id] + tok(batch["generation_prompts"][b], add_special_tokens=False)["input_ids"]
        assert row[: len(prompt_ids)] == prompt_ids  # the same tokens generate_contact feeds at inference
        assert batch["generation_prompts"][b].endswith(instruction_length_marker())
        assert all(x == IGNORE_INDEX for x in lab[: len(prompt_ids)])
        # … and exactly the answers are supervised
        supervised = [t for t, x in zip(row, lab) if x != IGNORE_INDEX]
        assert supervised == [x for x in lab if x != IGNORE_INDEX]
        answers = "".join(f" {a}</s>" for _, a in sample["conversation"])
        assert tok.decode(supervised) == answers
        assert lab.count(seg_id) == (0 if sample["task"] == "vqa" else 1)
    # the second VQA turn's question is masked too
    row, lab = ids[1].tolist(), labels[1].tolist()
    second_user = tok("USER: Is it raining?", add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(row)) if row[i: i + len(second_user)] == second_user)
    assert all(x == IGNORE_INDEX for x in lab[start: start + len(second_user)])
    assert batch["num_seg_tokens"].tolist() == [1, 0, 1]
    # masks at config.mask_size, nearest (values kept), VQA has none
    assert batch["masks"][0].shape == (4, 128, 128) and batch["masks"][1] is None and batch["masks"][2].shape == (4, 128, 128)
    assert set(torch.unique(batch["masks"][0]).tolist()) == {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(batch["masks"][0][:, ::2, ::2].numpy(), samples[0]["masks"])
    assert batch["vertex_labels"][0].shape == (6997,) and batch["vertex_labels"][1] is None
    assert batch["image_paths"][1] == "/coco/1.jpg" and batch["class_names"] == ["chair", "", "bag"]


def test_collate_truncation(tiny_tokenizer, config):
    rng = np.random.default_rng(1)
    sample = contact_sample(rng)
    full = Collator(tiny_tokenizer, config)([sample])
    length = int(full["attention_mask"].sum())
    seg_pos = full["input_ids"][0].tolist().index(tiny_tokenizer.convert_tokens_to_ids(SEG_TOKEN))
    kept = Collator(tiny_tokenizer, config, max_length=seg_pos + 1)([sample])  # cuts after [SEG]: fine
    assert kept["input_ids"].shape[1] == seg_pos + 1 and kept["masks"][0] is not None
    with pytest.warns(UserWarning, match="removed the seg token"):
        cut = Collator(tiny_tokenizer, config, max_length=seg_pos)([sample])
    assert cut["input_ids"].shape[1] == seg_pos and cut["masks"][0] is None and cut["vertex_labels"][0] is None
    assert cut["num_seg_tokens"].tolist() == [0]
    with pytest.raises(ValueError, match="inside the 64 image tokens"):
        Collator(tiny_tokenizer, config, max_length=40)([sample])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluation = Collator(tiny_tokenizer, config, training=False, max_length=length)([sample])
    assert evaluation["input_ids"].shape[1] == length
    with pytest.warns(UserWarning, match="not cut in evaluation"):
        assert Collator(tiny_tokenizer, config, training=False, max_length=seg_pos)([sample])["input_ids"].shape[1] == length


def test_collated_batch_runs_through_the_tiny_model(tiny_model, tiny_tokenizer):
    rng = np.random.default_rng(2)
    samples = [contact_sample(rng, size=128), vqa_sample(rng), contact_sample(rng, class_name="cup", parts=("right hand",))]
    batch = Collator(tiny_tokenizer, tiny_model.config)(samples)
    with torch.no_grad():
        out = tiny_model(input_ids=batch["input_ids"], clip_pixel_values=batch["clip_pixel_values"],
                         attention_mask=batch["attention_mask"], labels=batch["labels"])
    assert torch.isfinite(out.loss)
    assert out.seg_batch_index.tolist() == [0, 2]  # one prediction per contact sample, none for VQA
    assert out.mask_logits.shape == (2, 4, 128, 128) == (2, *batch["masks"][0].shape)
