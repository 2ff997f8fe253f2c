"""Parity with the ORIGINAL InteractVLM code, on fixtures the original wrote (``tests/parity/fixtures``).

For every released configuration the original (transformers 4.31, its own training-argument parser, model recipe
and ``merge_lora_weights_and_save_hf_model.py``) wrote a tiny sharded ``.bin`` checkpoint with its sentencepiece
tokenizer and recorded its answers; ``tests/parity/README.md`` says how. Here each checkpoint goes through the
README's conversion route and must reproduce, in fp32 on the CPU:

* the teacher-forced pass (``model_forward(inference=True)``): per-view mask logits, per-vertex contact, LM logits;
* the generate path (``evaluate``): the same greedy answer, token for token, and the same masks / contact;
* the original tokenizer's ids for every question/answer template, and the original's template texts.

No oracle is needed here: only the committed fixtures are read.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open

from model.convert_official import convert_official, load_weights, official_to_ours
from model.interactvlm import clip_preprocess
from model.io import load_interactvlm
from model.tokenizer import LisaTokenizer, add_interactvlm_tokens
from model.view_templates import PhotoTemplate, ViewTemplate
from utils import conversation as conv

FIXTURES = Path(__file__).parent / "parity" / "fixtures"
CONFIGS = ("hcontact", "hcontact-wScene", "oafford", "hcontact-ocontact", "h2dcontact")
OBJECT_VIEWS = ("frontleft", "frontright", "backleft", "backright")
ATOL = 1e-5

pytestmark = pytest.mark.skipif(not (FIXTURES / "hcontact" / "expected.json").is_file(),
                                reason="parity fixtures missing (python -m tests.parity.build_fixtures)")


def _photo(path: str) -> np.ndarray:
    return cv2.imread(str(FIXTURES / path))[..., ::-1].copy()


def _record(name: str) -> dict:
    return json.loads((FIXTURES / name / "expected.json").read_text())


def _arrays(name: str, kind: str, index: int) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name / f"{kind}_{index}.npz") as data:
        return {k: data[k] for k in data.files}


@lru_cache(maxsize=None)
def converted(name: str, root: str):
    """The README route: ``convert_official`` → ``load_interactvlm`` (fp32, view cache in memory only)."""
    checkpoint = FIXTURES / name / "checkpoint"
    options = {"clip": FIXTURES / "clip"}
    if name == "h2dcontact":
        options["contact_2d"] = True
    elif name != "oafford":
        options["human_template"] = FIXTURES / "inputs" / "hcontact_vitruvian"
    out = convert_official(checkpoint, Path(root) / name, **options)
    model, tokenizer = load_interactvlm(out, dtype=torch.float32, cache_dir=None)
    return model.eval(), tokenizer, out


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("parity"))


def _object_template(model, view_set: str) -> ViewTemplate:
    folder = FIXTURES / "inputs" / "object"
    return ViewTemplate.from_files([folder / f"obj_render_color_{v}.png" for v in OBJECT_VIEWS],
                                   [folder / f"p2vmap_{v}.npz" for v in OBJECT_VIEWS], view_set,
                                   mask_size=64, sam_image_size=model.config.sam_image_size,
                                   num_vertices=500, lift_mode=model.config.object_lift_mode, name="object")


def _template(model, query: dict, photo: np.ndarray):
    if query["sam"] == "photo":
        return PhotoTemplate.from_image(photo, model.config.sam_image_size)
    if query["sam"] == "object":
        return _object_template(model, query["view_set"])
    return model.template("human")


def _our_ids(model, tokenizer, original_ids: list[int]) -> torch.Tensor:
    """The original's ids with its one image placeholder (−200) expanded to our image tokens."""
    image = model.config.vlm_config.image_token_index
    ids = []
    for token in original_ids:
        ids.extend([image] * model.config.image_seq_length if token == -200 else [token])
    return torch.tensor([ids])


def _prompt_ids(model, tokenizer, prompt: str) -> list[int]:
    """Our tokenisation of the original's prompt text, in the original's id space (one −200 for the image)."""
    ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    image = model.config.vlm_config.image_token_index
    return [-200 if t == image else t for t in ids]


def _cases(kind: str):
    return [(name, i) for name in CONFIGS if (FIXTURES / name / "expected.json").is_file()
            for i in range(len(_record(name)[kind]))]


def _case(name: str, kind: str, index: int, root: Path):
    """One recorded query of a configuration: (converted model, tokenizer, record entry, the original's arrays,
    the query, its photo)."""
    model, tokenizer, _ = converted(name, root)
    entry = _record(name)[kind][index]
    photo = _photo(json.loads((FIXTURES / name / "spec.json").read_text())["images"][entry["query"]["image"]])
    return model, tokenizer, entry, _arrays(name, kind, index), entry["query"], photo


# ---------------------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name,index", _cases("forward"))
def test_forward_matches_original(name, index, root):
    model, tokenizer, entry, expected, query, photo = _case(name, "forward", index, root)
    assert _prompt_ids(model, tokenizer, entry["prompt"]) == entry["input_ids"]  # our tokenizer, their ids
    clip = clip_preprocess([photo], model.config.vlm_config.vision_config.image_size)
    torch.testing.assert_close(clip[0], torch.from_numpy(expected["clip_pixels"]), atol=ATOL, rtol=0)
    template = _template(model, query, photo)
    with torch.no_grad():
        out = model(input_ids=_our_ids(model, tokenizer, entry["input_ids"]), clip_pixel_values=clip,
                    templates=[template])
    masks = out.mask_logits[0]
    reference = torch.from_numpy(expected["masks"])
    assert reference.std() > 1e-3  # a meaningful comparison
    torch.testing.assert_close(masks, reference, atol=ATOL, rtol=0)
    logits = torch.from_numpy(expected["logits_tail"])
    # (our vocabulary adds <image>, and [HSEG]/[OSEG] to a Gen model, after the original's rows)
    torch.testing.assert_close(out.logits[0, -len(logits):, : logits.shape[1]], logits, atol=ATOL, rtol=0)
    if query["sam"] == "human":  # (the original's forward lifts only human queries; objects get zeros)
        torch.testing.assert_close(out.vertex_probs[0], torch.from_numpy(expected["contact"]), atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------- generate
@pytest.mark.parametrize("name,index", _cases("generate"))
def test_generate_matches_original(name, index, root):
    model, tokenizer, entry, expected, query, photo = _case(name, "generate", index, root)
    prompt = conv.build_prompt(query["question"], image_tokens=model.config.image_seq_length)
    assert _prompt_ids(model, tokenizer, entry["prompt"]) == entry["input_ids"]
    ours = _our_ids(model, tokenizer, entry["input_ids"])[0].tolist()
    assert [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"] == ours

    generated = entry["output_ids"][len(entry["input_ids"]):]
    assert any(t in model.seg_token_ids for t in generated), "the original emitted no seg token: fixture unusable"
    # greedy, token for token: teacher-forced argmax of our model over the original's answer is the answer
    full = torch.tensor([ours + generated])
    clip = clip_preprocess([photo], model.config.vlm_config.vision_config.image_size)
    with torch.no_grad():
        hidden = model.vlm.model.language_model(inputs_embeds=model.embed_inputs(full, model.image_features(clip)))
        argmax = model.vlm.lm_head(hidden.last_hidden_state)[0, len(ours) - 1:-1].argmax(-1).tolist()
    assert argmax == generated

    template = _template(model, query, photo)
    (prediction,) = model.generate_contact(tokenizer, [photo], [{"image": 0, "prompt": prompt, "template": template}],
                                           max_new_tokens=48, full_text=True)
    eos = tokenizer.eos_token_id
    answer = generated[: generated.index(eos)] if eos in generated else generated
    assert prediction.text == tokenizer.decode(answer, skip_special_tokens=False).strip()
    assert prediction.found_seg
    reference = torch.from_numpy(expected["masks"])
    assert reference.std() > 1e-3
    torch.testing.assert_close(prediction.mask_logits, reference, atol=ATOL, rtol=0)
    if "contact" in expected:
        assert expected["contact"].max() > 0
        torch.testing.assert_close(prediction.vertex_probs, torch.from_numpy(expected["contact"]), atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------- weights
@pytest.mark.parametrize("name", [n for n in CONFIGS if (FIXTURES / n / "expected.json").is_file()])
def test_dtypes_kept_per_tensor(name, root):
    """``--dtype auto`` keeps the release's dtypes: bf16 language model, fp32 SAM and text_hidden_fcs."""
    _, _, out = converted(name, root)
    original, _ = load_weights(FIXTURES / name / "checkpoint")
    mapped = official_to_ours(original)
    with safe_open(out / "model.safetensors", "pt") as f:
        saved = {key: f.get_slice(key).get_dtype() for key in f.keys()}
    names = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    wrong = [(k, str(mapped.tensors[k].dtype), saved[k]) for k in mapped.tensors
             if k in saved and mapped.tensors[k].is_floating_point() and names.get(saved[k]) != mapped.tensors[k].dtype]
    assert not wrong, wrong[:5]
    assert mapped.tensors["sam.mask_decoder.iou_token.weight"].dtype == torch.float32
    assert mapped.tensors["text_hidden_fcs.0.weight"].dtype == torch.float32
    assert mapped.tensors["vlm.lm_head.weight"].dtype == torch.bfloat16
    report = json.loads((out / "conversion.json").read_text())
    assert report["sam_decoder"] == {"layer_norm_eps": 1e-5, "attention_downsample_rate": 2}


# ---------------------------------------------------------------------------------------------------- tokenizer
TOKEN_RECORDS = [("tokenizer_ids_gen.json", "hcontact"), ("tokenizer_ids_gen_hu_obj.json", "hcontact-ocontact")]


@pytest.mark.parametrize("legacy", [None, True], ids=["folder-setting", "legacy-true"])
@pytest.mark.parametrize("record,name", [r for r in TOKEN_RECORDS if (FIXTURES / r[0]).is_file()])
def test_every_template_tokenises_like_the_original(record, name, legacy):
    """As the checkpoint folder says (``legacy: null`` → 4.31's non-legacy rules, how run_demo.py loads it) and
    with ``legacy=True`` (how the original's train.py loads it)."""
    options = {} if legacy is None else {"legacy": True}
    tokenizer = LisaTokenizer.from_pretrained(FIXTURES / name / "checkpoint", **options)
    add_interactvlm_tokens(tokenizer)
    image = tokenizer.convert_tokens_to_ids(conv.IMAGE_TOKEN)
    suffix = "" if legacy is None else "_legacy"
    records = json.loads((FIXTURES / record).read_text())
    assert len(records) > 40
    for item in records:
        assert tokenizer(item["text"], add_special_tokens=False)["input_ids"] == item["ids" + suffix], item["text"]
        ours = [tokenizer.bos_token_id] + tokenizer(item["prompt"], add_special_tokens=False)["input_ids"]
        assert [-200 if t == image else t for t in ours] == item["prompt_ids" + suffix], item["prompt"]


def test_lisa_tokenizer_round_trips_through_a_model_directory(tmp_path):
    """Saved by the converter and reopened with AutoTokenizer: still the 4.31 rules, same ids."""
    from transformers import AutoTokenizer

    tokenizer = LisaTokenizer.from_pretrained(FIXTURES / "hcontact" / "checkpoint")
    add_interactvlm_tokens(tokenizer)
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(again, LisaTokenizer) and again.lisa_legacy == tokenizer.lisa_legacy
    prompt = conv.build_prompt(conv.HCONTACT_PARTS_QUESTIONS[0].format(class_name="chair"), "It is [SEG].")
    assert again(prompt)["input_ids"] == tokenizer(prompt)["input_ids"]


def test_templates_are_the_originals():
    """Our question/answer lists are the original's strings (the released models were trained on them)."""
    records = json.loads((FIXTURES / "tokenizer_ids_gen.json").read_text())
    original: dict[str, list[str]] = {}
    for item in records:
        original.setdefault(item["list"], []).append(item["template"])
    image = conv.IMAGE_TOKEN + "\n"

    def ours(templates, question: bool):
        token = "[HTOKEN]" if templates in (conv.HCONTACT_ANSWERS, conv.HCONTACT_PARTS_ANSWERS) else "[OTOKEN]"
        return [(image if question else "") + t.replace("{seg}", token) for t in templates]

    pairs = {"HCONTACT_QUESTION_LIST": (conv.HCONTACT_QUESTIONS, True),
             "HCONTACT_ANSWER_LIST": (conv.HCONTACT_ANSWERS, False),
             "HCONTACT_PARTS_QUESTION_LIST": (conv.HCONTACT_PARTS_QUESTIONS, True),
             "HCONTACT_PARTS_ANSWER_LIST": (conv.HCONTACT_PARTS_ANSWERS, False),
             "OAFFORD_QUESTION_LIST": (conv.OAFFORD_QUESTIONS, True),
             "OAFFORD_ANSWER_LIST": (conv.OAFFORD_ANSWERS, False),
             "OAFFORD_AFFORD_QUESTION_LIST": (conv.OAFFORD_AFFORD_QUESTIONS, True),
             "OAFFORD_AFFORD_ANSWER_LIST": (conv.OAFFORD_AFFORD_ANSWERS, False),
             "OAFFORD_AFFORD_OBJ_ANSWER_LIST": (conv.OAFFORD_AFFORD_OBJ_ANSWERS, False),
             "OCONTACT_QUESTION_LIST": (conv.OCONTACT_QUESTIONS, True),
             "OCONTACT_ANSWER_LIST": (conv.OCONTACT_ANSWERS, False)}
    for name, (templates, question) in pairs.items():
        assert ours(templates, question) == original[name], name
    # the llava_v1 layout: the original's generate prompt, character for character
    entry = _record("hcontact")["generate"][0]
    assert conv.build_prompt(entry["query"]["question"]) == entry["prompt"]
