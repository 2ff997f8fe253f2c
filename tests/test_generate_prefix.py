"""generate_contact's shared-prefix decoder against transformers' generate (the plain path): same ids, same masks and
vertex probabilities, for one and many objects per image, mixed images, left padding, answers without seg token;
decoding stops at the seg token; the prefix runs once per image; drafted (speculative) steps change no output, whether
the drafts are right, partly wrong or absent; the in-place cache layer holds what transformers' DynamicLayer holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from transformers.cache_utils import DynamicLayer

from model.interactvlm import clip_preprocess
from model.shared_prefix import (AnswerDrafts, GrowingLayer, answer_tokens, decode_shared_prefix, longest_common_prefix,
                                 shared_prefix_lengths)
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
    calls: list[tuple[int, int]] = []  # (batch, tokens) of every pass through the language model's first layer
    hook = model.vlm.model.language_model.layers[0].register_forward_hook(
        lambda module, args, kwargs, output: calls.append(tuple((args[0] if args else kwargs["hidden_states"]).shape[:2])),
        with_kwargs=True)
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


def _first_layer_calls(model) -> tuple[list[tuple[int, int]], object]:
    calls: list[tuple[int, int]] = []
    hook = model.vlm.model.language_model.layers[0].register_forward_hook(
        lambda module, args, kwargs, output: calls.append(tuple((args[0] if args else kwargs["hidden_states"]).shape[:2])),
        with_kwargs=True)
    return calls, hook


def test_drafted_steps_give_the_plain_answers(sensitive_model, tiny_tokenizer, monkeypatch):
    """Free greedy decoding (drafts are only used without a logits processor) with perfect, half-wrong and no drafts:
    the same ids as transformers' generate, and perfect drafts need far fewer language-model steps."""
    model, tok = sensitive_model, tiny_tokenizer
    queries = [{"image": i % 2, "prompt": _prompt(model, o)} for i, o in enumerate(OBJECTS[:5])]
    with pytest.warns(UserWarning, match="no seg token"):
        plain = model.generate_contact(tok, IMAGES, queries, max_new_tokens=12, full_text=True, shared_prefix=False)
        own = model._decode_shared_prefix(tok, IMAGES, queries, 12, None, {}, draft_answers=False)[0].tokens
    half_wrong = [[t if i % 2 else (t + 1) % model.config.vlm_config.text_config.vocab_size for i, t in enumerate(row)]
                  for row in own]
    steps = {}
    for name, sequences in (("perfect", own), ("half wrong", half_wrong), ("none", [])):
        monkeypatch.setattr(model, "answer_drafts", lambda tokenizer, s=sequences: AnswerDrafts(s))
        calls, hook = _first_layer_calls(model)
        try:
            with pytest.warns(UserWarning, match="no seg token"):
                fast = model.generate_contact(tok, IMAGES, queries, max_new_tokens=12, full_text=True)
        finally:
            hook.remove()
        _assert_equal(fast, plain)
        steps[name] = len(calls)
    assert steps["none"] == 2 + 11  # one prefix batch (both images: same length), the suffixes, 11 one-token steps
    assert steps["perfect"] <= 2 + 3 < steps["none"]  # the first token, then drafts of up to 8 tokens


def test_drafted_steps_capture_the_same_hidden_state(tiny_model, tiny_tokenizer):
    """The hidden state captured for a token accepted inside a drafted run is the one that predicted it."""
    model, tok = tiny_model, tiny_tokenizer
    queries = [{"image": 0, "prompt": _prompt(model, o)} for o in OBJECTS[:4]]
    prompts = model._encode_prompts(tok, queries)
    features = model.image_features(clip_preprocess(IMAGES[:1], model.config.vlm_config.vision_config.image_size))
    lm = model.vlm.model.language_model

    def run(drafts, capture):
        return decode_shared_prefix(lm, model.vlm.lm_head, lambda ids, rows: model.embed_rows(ids, features, rows),
                                    prompts, [0] * len(prompts), max_new_tokens=10, eos_token_id=tok.eos_token_id,
                                    pad_token_id=tok.pad_token_id, capture_ids=capture, drafts=drafts)

    own = run(None, set()).tokens
    capture = {own[0][5]}  # a token inside row 0's answer, reached through a drafted run below
    plain, drafted = run(None, capture), run(AnswerDrafts(own), capture)
    assert drafted.tokens == plain.tokens == own
    assert drafted.captured_token == plain.captured_token and plain.captured_hidden[0] is not None
    for a, b in zip(drafted.captured_hidden, plain.captured_hidden):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **TOL)


def test_answer_drafts_lookup():
    drafts = AnswerDrafts([[1, 2, 3, 4, 5], [9, 2, 7]])
    assert drafts.propose([8, 2, 3], 2) == [4, 5]  # the longest matching ending wins ([2, 3])
    assert drafts.propose([2], 5) == [3, 4, 5]  # first occurrence of [2]
    assert drafts.propose([6], 3) == [] and drafts.propose([], 3) == [] and drafts.propose([1], 0) == []


def test_growing_layer_holds_what_dynamic_layer_holds():
    torch.manual_seed(0)
    grow, plain = GrowingLayer(spare=3), DynamicLayer()
    for step, (batch, tokens) in enumerate([(4, 5), (4, 1), (4, 4), (3, 1), (3, 1), (3, 7)]):
        if step == 3:  # a row leaves the batch
            rows = torch.tensor([0, 2, 3])
            grow.batch_select_indices(rows)
            plain.batch_select_indices(rows)
        k, v = torch.randn(batch, 2, tokens, 8), torch.randn(batch, 2, tokens, 8)
        for a, b in zip(grow.update(k, v), plain.update(k, v)):
            assert torch.equal(a, b)
    assert grow.get_seq_length() == plain.get_seq_length() == 19
