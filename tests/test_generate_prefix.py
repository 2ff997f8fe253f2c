"""generate_contact's shared-prefix decoder against transformers' generate (the plain path): same ids, same masks and
vertex probabilities, for one and many objects per image, mixed images, left padding, answers without seg token;
decoding stops at the seg token; the prefix runs once per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from model.shared_prefix import answer_tokens, longest_common_prefix, shared_prefix_lengths
from tests.conftest import make_tiny_model
from utils.conversation import build_prompt, make_qa

RNG = np.random.default_rng(1)
IMAGES = [(RNG.random((96, 150, 3)) * 255).astype(np.uint8), (RNG.random((120, 80, 3)) * 255).astype(np.uint8)]
OBJECTS = ("chair", "bottle", "baseball bat", "skateboard", "cup", "bicycle", "laptop", "umbrella")
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture()
def sensitive_model(tiny_tokenizer, synthbody_template_128):
    """The tiny model with its mask logits scaled from ~1e-4 to ~1 (hypernetwork outputs x 1e4), so that a 1e-5
    tolerance on masks means something: a one-token position shift in the language model then moves them by ~1e-2."""
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128)
    with torch.no_grad():
        for mlp in model.sam.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(1e4)
            mlp.proj_out.bias.mul_(1e4)
    return model


class ForceRows(LogitsProcessor):
    """Row ``b`` answers ``answers[b]`` token by token (then repeats its last token); counts steps from the generated
    ids, which start empty with ``inputs_embeds`` in both decoders."""

    def __init__(self, answers: list[list[int]]):
        self.answers = answers

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1]
        forced = torch.full_like(scores, -1e9)
        for b, answer in enumerate(self.answers):
            forced[b, answer[min(step, len(answer) - 1)]] = 0
        return forced


def _prompt(model, obj):
    qa = make_qa("hcontact", obj, "parts", body_parts=["left hand"])
    return build_prompt(qa.question, None, image_tokens=model.config.image_seq_length)


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _seg_answer(tok, model, text="The contacting body parts are hips, and the contact region is", tail=". done"):
    return _ids(tok, text) + [model.config.seg_token_index] + _ids(tok, tail) + [tok.eos_token_id]


def _both(model, tok, images, queries, answers=None, **kwargs):
    """(shared-prefix results, plain results) of the same call."""
    out = []
    for shared in (True, False):
        extra = {} if answers is None else {"logits_processor": LogitsProcessorList([ForceRows(answers)])}
        out.append(model.generate_contact(tok, images, queries, shared_prefix=shared, **extra, **kwargs))
    return out


def _assert_equal(fast, plain):
    assert len(fast) == len(plain)
    for a, b in zip(fast, plain):
        assert a.text == b.text and a.found_seg == b.found_seg
        if a.found_seg:
            assert a.mask_logits.std() > 0.1  # masks large enough for the tolerance to bite
        torch.testing.assert_close(a.mask_logits, b.mask_logits, **TOL)
        if b.vertex_probs is None:
            assert a.vertex_probs is None
        else:
            torch.testing.assert_close(a.vertex_probs, b.vertex_probs, **TOL)


# ---------------------------------------------------------------------------------------------------------------
def test_longest_common_prefix_and_group_lengths():
    assert longest_common_prefix([[1, 2, 3], [1, 2, 4, 5], [1, 2]]) == 2
    assert longest_common_prefix([[7, 8]]) == 2
    # a lone prompt keeps its last token as suffix; identical prompts too; groups are independent
    assert shared_prefix_lengths([[1, 2, 3], [1, 2, 3], [1, 9]], [0, 0, 1]) == {0: 2, 1: 1}
    assert shared_prefix_lengths([[1, 2, 3, 4], [1, 2, 5]], [0, 0]) == {0: 2}
    assert answer_tokens([5, 6, 2, 0], eos_token_id=2) == [5, 6]
    assert answer_tokens([5, 9, 6, 2], eos_token_id=2, stop_token_ids={9}) == [5, 9]


@pytest.mark.parametrize("objects", [1, 8])
def test_one_image_many_objects_equals_the_plain_path(sensitive_model, tiny_tokenizer, objects):
    model, tok = sensitive_model, tiny_tokenizer
    queries = [{"image": 0, "prompt": _prompt(model, o)} for o in OBJECTS[:objects]]  # differing lengths: padding
    answers = [_seg_answer(tok, model, tail=" done" + "x" * (b % 3)) for b in range(objects)]
    for full_text in (False, True):
        fast, plain = _both(model, tok, IMAGES, queries, answers, max_new_tokens=40, full_text=full_text)
        _assert_equal(fast, plain)
        assert all(r.found_seg for r in fast)
        assert all(r.text.endswith("[SEG]") for r in fast) != full_text


def test_mixed_images_duplicates_and_answers_without_seg(sensitive_model, tiny_tokenizer):
    model, tok = sensitive_model, tiny_tokenizer
    images = [IMAGES[0], IMAGES[1], IMAGES[0].copy()]  # the copy is the same photo under another index
    plan = [(0, "chair"), (1, "cup"), (2, "baseball bat"), (0, "umbrella"), (1, "bicycle"), (2, "chair")]
    queries = [{"image": i, "prompt": _prompt(model, o)} for i, o in plan]
    none = _ids(tok, "no contact") + [tok.eos_token_id]
    answers = [_seg_answer(tok, model), none, _seg_answer(tok, model, "hips"), none, _seg_answer(tok, model, "a"),
               _seg_answer(tok, model)]
    with pytest.warns(UserWarning, match="no seg token"):
        fast, plain = _both(model, tok, images, queries, answers, max_new_tokens=40)
    _assert_equal(fast, plain)
    assert [r.found_seg for r in fast] == [True, False, True, False, True, True]
    assert (fast[1].vertex_probs == 0).all() and fast[0].vertex_probs.std() > 0
    # image 2 is image 0: the same query on either index gives the same answer
    torch.testing.assert_close(fast[0].vertex_probs, fast[5].vertex_probs, **TOL)


def test_free_greedy_decoding_gives_identical_ids(sensitive_model, tiny_tokenizer):
    """No forcing: the untrained model's own greedy answers (no seg token) must match token for token."""
    model, tok = sensitive_model, tiny_tokenizer
    queries = [{"image": i % 2, "prompt": _prompt(model, o)} for i, o in enumerate(OBJECTS[:5])]
    with pytest.warns(UserWarning, match="no seg token"):
        fast, plain = _both(model, tok, IMAGES, queries, max_new_tokens=12, full_text=True)
    _assert_equal(fast, plain)
    assert len({r.text for r in fast}) > 1 and all(len(_ids(tok, r.text)) >= 6 for r in fast)


def test_prefix_runs_once_per_image_and_decoding_stops_at_the_seg_token(tiny_model, tiny_tokenizer):
    model, tok = tiny_model, tiny_tokenizer
    calls: list[tuple[int, int]] = []  # (batch, tokens) of every language-model forward
    hook = model.vlm.model.language_model.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(tuple(kwargs["inputs_embeds"].shape[:2])), with_kwargs=True)
    queries = [{"image": 0, "prompt": _prompt(model, o)} for o in OBJECTS]
    answer = _seg_answer(tok, model, "hips", tail=" and a long tail after the seg token")
    try:
        [model.generate_contact(tok, IMAGES, queries, max_new_tokens=40,
                                logits_processor=LogitsProcessorList([ForceRows([answer] * 8)]))]
    finally:
        hook.remove()
    prompt_lengths = [len(_ids(tok, q["prompt"])) + 1 for q in queries]
    prefix = calls[0]
    assert prefix[0] == 1 and prefix[1] > model.config.image_seq_length  # one row: the image's shared prefix
    assert calls[1][0] == 8 and prefix[1] + calls[1][1] == max(prompt_lengths)  # the 8 questions, one batch
    seg_at = answer.index(model.config.seg_token_index)
    assert len(calls) == 2 + seg_at  # decode steps end once every row has produced its seg token
    assert all(c == (8, 1) for c in calls[2:])


def test_shared_prefix_rejects_generate_keywords(tiny_model, tiny_tokenizer):
    with pytest.raises(TypeError, match="shared_prefix=False"):
        tiny_model.generate_contact(tiny_tokenizer, IMAGES, [{"image": 0, "prompt": _prompt(tiny_model, "cup")}],
                                    num_beams=2)
    with pytest.raises(IndexError, match="image index 3"):
        tiny_model.generate_contact(tiny_tokenizer, IMAGES, [{"image": 3, "prompt": _prompt(tiny_model, "cup")}])
