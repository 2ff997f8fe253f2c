"""The model: presets, teacher-forced forward, generation, batching, the view cache, gradients, LoRA, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from model.config import build_config
from model.interactvlm import InteractVLMForCausalLM, clip_preprocess
from model.io import load_interactvlm, save_interactvlm
from model.lora import apply_lora, freeze, merge_lora
from model.losses import focal_bce_3d
from model.prompts import seg_positions
from model.sam import ViewEmbeddingCache
from tests.conftest import make_tiny_model
from utils.conversation import build_prompt, make_qa

RNG = np.random.default_rng(0)
IMAGES = [(RNG.random((96, 150, 3)) * 255).astype(np.uint8), (RNG.random((120, 80, 3)) * 255).astype(np.uint8)]


def _prompt(model, obj="chair", answer=True, parts=("left hand",)):
    qa = make_qa("hcontact", obj, "parts", body_parts=list(parts))
    return build_prompt(qa.question, qa.answer if answer else None, image_tokens=model.config.image_seq_length)


def _encode(tokenizer, text):
    return torch.tensor([[tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]])


class ForceAnswer(LogitsProcessor):
    """Make an untrained model answer with a fixed token sequence (per batch row) so generation paths are exercised."""

    def __init__(self, answers: list[list[int]], prompt_len: int):
        self.answers, self.prompt_len = answers, prompt_len

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len if input_ids.shape[1] >= self.prompt_len else input_ids.shape[1]
        forced = torch.full_like(scores, -1e9)
        for b, answer in enumerate(self.answers):
            forced[b, answer[min(step, len(answer) - 1)]] = 0
        return forced


def _answer_ids(tokenizer, model, text="The contacting body parts are hips, and the contact region is"):
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [model.config.seg_token_index, tokenizer.eos_token_id]


# ----------------------------------------------------------------------------------------------------------------
def test_full_presets_have_the_real_shapes():
    expected = {"lisa-7b": (6.6e9, 6.8e9), "lisa-13b": (12.9e9, 13.1e9)}
    for preset, (low, high) in expected.items():
        with torch.device("meta"):
            model = InteractVLMForCausalLM(build_config(preset))
        lm = sum(p.numel() for p in model.vlm.model.language_model.parameters()) + model.vlm.lm_head.weight.numel()
        clip = sum(p.numel() for p in model.vlm.model.vision_tower.parameters())
        sam_encoder = sum(p.numel() for p in model.sam.vision_encoder.parameters())
        assert low < lm < high, (preset, lm)
        assert 3.0e8 < clip < 3.1e8  # CLIP ViT-L/14 vision tower
        assert 6.30e8 < sam_encoder < 6.40e8  # SAM ViT-H image encoder
        assert model.vlm.model.multi_modal_projector.linear.weight.shape == (model.config.text_hidden_size, 1024)
        assert model.text_hidden_fcs[2].weight.shape == (256, model.config.text_hidden_size)
        assert model.config.image_seq_length == 256


def test_seg_gather_is_the_position_before_the_token():
    ids = torch.tensor([[5, 6, 99, 7], [99, 1, 2, 99]])
    torch.testing.assert_close(seg_positions(ids, [99]), torch.tensor([[0, 1], [1, 2]]))


def test_forward_shapes_and_loss(tiny_model, tiny_tokenizer):
    ids = _encode(tiny_tokenizer, _prompt(tiny_model))
    out = tiny_model(input_ids=ids, clip_pixel_values=clip_preprocess(IMAGES[:1], 112), labels=ids)
    assert torch.isfinite(out.loss)
    assert out.mask_logits.shape == (1, 4, 128, 128)
    probs = out.vertex_probs[0]
    assert probs.shape == (6997,) and torch.isfinite(probs).all()
    assert probs.max() > probs.min()  # lifted from the masks vertex by vertex, not one value for the whole body
    no_seg = _encode(tiny_tokenizer, _prompt(tiny_model, answer=False))
    assert tiny_model(input_ids=no_seg, clip_pixel_values=clip_preprocess(IMAGES[:1], 112)).mask_logits is None


def test_generation_matches_teacher_forcing_and_batches(tiny_model, tiny_tokenizer):
    model, tok = tiny_model, tiny_tokenizer
    prompts = [_prompt(model, answer=False), _prompt(model, obj="baseball bat", answer=False)]
    answer = _answer_ids(tok, model)
    single = []
    for i, prompt in enumerate(prompts):
        length = _encode(tok, prompt).shape[1]
        [res] = model.generate_contact(tok, IMAGES, [{"image": i, "prompt": prompt}], max_new_tokens=40,
                                       logits_processor=LogitsProcessorList([ForceAnswer([answer], length)]))
        assert res.found_seg and res.text.endswith("[SEG]")
        single.append(res)
        # teacher forcing over prompt + generated answer reproduces the same seg embedding → same masks
        full = torch.cat([_encode(tok, prompt), torch.tensor([answer])], dim=1)
        forward = model(input_ids=full, clip_pixel_values=clip_preprocess([IMAGES[i]], 112))
        torch.testing.assert_close(forward.mask_logits[0], res.mask_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(forward.vertex_probs[0], res.vertex_probs, atol=1e-5, rtol=1e-4)
    # both queries in one batch (different prompt lengths → left padding), CLIP once per image
    lengths = [_encode(tok, p).shape[1] for p in prompts]
    batch = model.generate_contact(tok, IMAGES, [{"image": i, "prompt": p} for i, p in enumerate(prompts)], max_new_tokens=40,
                                   logits_processor=LogitsProcessorList([ForceAnswer([answer, answer], max(lengths))]))
    for one, many in zip(single, batch):
        assert many.found_seg
        torch.testing.assert_close(one.mask_logits, many.mask_logits, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(one.vertex_probs, many.vertex_probs, atol=1e-4, rtol=1e-3)


def test_answer_without_seg_token_is_an_explicit_empty_result(tiny_model, tiny_tokenizer):
    model, tok = tiny_model, tiny_tokenizer
    prompt = _prompt(model, answer=False)
    answer = tok("no contact", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with pytest.warns(UserWarning, match="no seg token"):
        [res] = model.generate_contact(tok, IMAGES[:1], [{"image": 0, "prompt": prompt}], max_new_tokens=10,
                                       logits_processor=LogitsProcessorList([ForceAnswer([answer], _encode(tok, prompt).shape[1])]))
    assert not res.found_seg and res.text == "no contact"
    assert (res.vertex_probs == 0).all() and res.vertex_probs.shape == (6997,)


def test_view_cache_skips_the_sam_encoder(tiny_model, tmp_path):
    model = tiny_model
    model.view_cache = ViewEmbeddingCache(tmp_path)
    hidden = torch.randn(3, model.config.text_hidden_size)
    first, _ = model.predict_from_hidden(hidden, [model.template()] * 3)
    assert model.view_cache.encoder_runs == 1 and len(list(tmp_path.glob("*.safetensors"))) == 1
    model.view_cache = ViewEmbeddingCache(tmp_path)  # fresh process: only the disk cache

    def forbidden(*args, **kwargs):
        raise AssertionError("the SAM image encoder ran although the view embeddings are cached")

    model.sam.vision_encoder.forward = forbidden
    second, _ = model.predict_from_hidden(hidden, [model.template()] * 3)
    torch.testing.assert_close(first, second)
    # changed encoder weights → a different key, never a stale entry
    del model.sam.vision_encoder.forward
    with torch.no_grad():
        next(model.sam.vision_encoder.parameters()).add_(0.1)
    model.invalidate_view_cache()
    model.predict_from_hidden(hidden[:1], [model.template()])
    assert model.view_cache.encoder_runs == 1 and len(list(tmp_path.glob("*.safetensors"))) == 2


def test_per_view_tokens_decodes_each_view_with_its_own_token(tiny_tokenizer, synthbody_template_128):
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, per_view_tokens=True)
    shared = make_tiny_model(tiny_tokenizer, synthbody_template_128)
    hidden = torch.randn(2, model.config.text_hidden_size)
    a, _ = model.predict_from_hidden(hidden, [model.template()] * 2)
    b, _ = shared.predict_from_hidden(hidden, [shared.template()] * 2)
    assert a.shape == b.shape == (2, 4, 128, 128) and not torch.allclose(a, b)


def test_gradients_reach_exactly_the_trained_modules(tiny_tokenizer, synthbody_template_128):
    # full-preset policy (frozen CLIP and LM + LoRA) on tiny dimensions
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, train_vision_tower=False, train_language_model=False)
    model = apply_lora(model).train()
    ids = _encode(tiny_tokenizer, _prompt(model))
    out = model(input_ids=ids, clip_pixel_values=clip_preprocess(IMAGES[:1], 112), labels=ids)
    target = torch.zeros(6997)
    target[:500] = 1
    (out.loss + focal_bce_3d(out.vertex_probs[0][None], target[None]).sum() + out.mask_logits.sigmoid().mean()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    got = lambda key: [n for n, g in grads.items() if key in n and g is not None and g.abs().sum() > 0]  # noqa: E731
    assert got("lora_B")  # lora_A's gradient is exactly 0 at init (lora_B = 0) but it is computed:
    assert all(g is not None for n, g in grads.items() if "lora_A" in n)
    for key in ("text_hidden_fcs", "mask_decoder", "cam_pose_encoder", "lm_head", "embed_tokens"):
        assert got(key), key
    for name, param in model.named_parameters():
        frozen = any(k in name for k in ("vision_tower", "sam.vision_encoder", "prompt_encoder", "multi_modal_projector")) \
            or (".language_model." in name and "lora_" not in name and "embed_tokens" not in name)
        if frozen:
            assert not param.requires_grad and param.grad is None, name
    lora_layers = [n for n in grads if "lora_A" in n]
    assert lora_layers and all(".language_model." in n and ("q_proj" in n or "v_proj" in n) for n in lora_layers)


def test_freeze_stops_the_named_modules_and_only_those(tiny_tokenizer, synthbody_template_128):
    # a mask stage on a frozen VLM: no gradient may reach CLIP, the LM, its embeddings or lm_head (which the tiny
    # preset trains otherwise), while the mask branch still learns
    model = apply_lora(make_tiny_model(tiny_tokenizer, synthbody_template_128), use_lora=False).train()
    assert freeze(model, ("vlm",)) > 0
    ids = _encode(tiny_tokenizer, _prompt(model))
    out = model(input_ids=ids, clip_pixel_values=clip_preprocess(IMAGES[:1], 112), labels=ids)
    (out.loss + out.mask_logits.sigmoid().mean()).backward()
    for name, param in model.named_parameters():
        if name.startswith("vlm"):
            assert not param.requires_grad and param.grad is None, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "text_hidden_fcs" in n)
    with pytest.raises(ValueError, match="match no parameter"):
        freeze(model, ("vlm.model.langauge_model",))


def test_lora_merge_keeps_outputs(tiny_tokenizer, synthbody_template_128):
    model = apply_lora(make_tiny_model(tiny_tokenizer, synthbody_template_128, train_language_model=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)  # non-trivial adapters
    ids = _encode(tiny_tokenizer, _prompt(model))
    clip = clip_preprocess(IMAGES[:1], 112)
    model.eval()
    before = model(input_ids=ids, clip_pixel_values=clip)
    merged = merge_lora(model)
    after = merged(input_ids=ids, clip_pixel_values=clip)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(before.logits, after.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(before.mask_logits, after.mask_logits, atol=1e-4, rtol=1e-4)


def test_save_and_load_round_trip(tiny_model, tiny_tokenizer, tmp_path):
    save_interactvlm(tiny_model, tiny_tokenizer, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "templates" / "human" / "template.json").is_file()
    loaded, tok = load_interactvlm(tmp_path / "m")
    hidden = torch.randn(2, tiny_model.config.text_hidden_size)
    a, va = tiny_model.predict_from_hidden(hidden, [tiny_model.template()] * 2)
    b, vb = loaded.predict_from_hidden(hidden, [loaded.template()] * 2)
    torch.testing.assert_close(a, b)
    assert loaded.view_cache.encoder_runs == 0  # shipped embeddings were used
    assert tok(_prompt(loaded), add_special_tokens=False)["input_ids"] == tiny_tokenizer(_prompt(tiny_model), add_special_tokens=False)["input_ids"]


def test_bad_model_dir_and_quantization_errors(tmp_path, tiny_model, tiny_tokenizer):
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_interactvlm(tmp_path)
    save_interactvlm(tiny_model, tiny_tokenizer, tmp_path / "m")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA GPU and bitsandbytes"):
            load_interactvlm(tmp_path / "m", load_in_4bit=True)
    import json

    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["seg_token_index"] = 3
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="disagree on special-token ids"):
        load_interactvlm(tmp_path / "m")


def test_joint_model_splits_human_and_object_tokens(tiny_tokenizer, synthbody_template_128):
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, token_type="Gen-Hu-Obj")
    assert model.attention_splitter is not None
    qa = make_qa("hcontact", "chair", "simple", token_type="Gen-Hu-Obj")
    assert "[HSEG]" in qa.answer
    ids = _encode(tiny_tokenizer, build_prompt(qa.question, qa.answer, image_tokens=model.config.image_seq_length))
    out = model(input_ids=ids, clip_pixel_values=clip_preprocess(IMAGES[:1], 112))
    assert out.mask_logits.shape == (1, 4, 128, 128)
    hidden = torch.randn(1, model.config.text_hidden_size).repeat(2, 1)
    with torch.no_grad():  # a splitter with non-trivial weights, so the two halves differ
        for param in model.attention_splitter.parameters():
            param.normal_(0, 0.5)
    prompts = model.seg_to_view_prompts(hidden, model.template().cameras, torch.tensor([False, True]))
    assert (prompts[0] - prompts[1]).abs().max() > 1e-4  # same hidden state, human vs object query
    masks, _ = model.predict_from_hidden(hidden, [model.template()] * 2, torch.tensor([False, True]))
    assert not torch.equal(masks[0], masks[1])


def test_batch_mixing_answers_with_and_without_seg_tokens(tiny_model, tiny_tokenizer):
    """An empty answer before a real one must not disturb the real one (regression: a shadowed variable once turned
    the later queries' vertex probabilities into scalars)."""
    model, tok = tiny_model, tiny_tokenizer
    prompt = _prompt(model, answer=False)
    none = tok("no contact", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    seg = _answer_ids(tok, model)
    with pytest.warns(UserWarning, match="no seg token"):
        results = model.generate_contact(tok, IMAGES, [{"image": 0, "prompt": prompt}, {"image": 1, "prompt": prompt}],
                                         max_new_tokens=40, logits_processor=LogitsProcessorList(
                                             [ForceAnswer([none, seg], _encode(tok, prompt).shape[1])]))
    assert [r.found_seg for r in results] == [False, True]
    assert all(r.vertex_probs.shape == (6997,) and r.mask_logits.shape == (4, 128, 128) for r in results)
    assert (results[0].vertex_probs == 0).all() and results[1].vertex_probs.std() > 0


def test_seg_batch_norm_spreads_prompts_and_round_trips(tiny_tokenizer, synthbody_template_128, tmp_path):
    """``seg_batch_norm``: a projection that maps every sample to nearly one prompt (the collapse it is for) still
    gives prompts of unit spread per feature in training; a lone seg token uses the running statistics; the
    statistics are saved with the model; the released layout (no norm) keeps its keys."""
    from model.prompts import SegBatchNorm

    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, seg_batch_norm=True).train()
    norm = model.text_hidden_fcs[4]
    assert isinstance(norm, SegBatchNorm)
    plain = make_tiny_model(tiny_tokenizer, synthbody_template_128)
    assert not any(k.startswith("text_hidden_fcs.4") for k in plain.state_dict())
    collapsed = torch.ones(16, model.config.out_dim) * 50 + 0.1 * torch.randn(16, model.config.out_dim)  # spread 0.002
    spread = norm(collapsed).std(0, unbiased=False)
    torch.testing.assert_close(spread, torch.ones_like(spread), atol=0.05, rtol=0.0)
    single = torch.randn(1, model.config.out_dim)
    expected = (single - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps) * norm.weight + norm.bias
    before = norm.running_mean.clone()
    torch.testing.assert_close(norm(single), expected)
    assert torch.equal(norm.running_mean, before)  # not updated by a batch it cannot measure
    model.eval()
    save_interactvlm(model, tiny_tokenizer, tmp_path / "m")
    loaded, _ = load_interactvlm(tmp_path / "m")
    assert loaded.config.seg_batch_norm and torch.equal(loaded.text_hidden_fcs[4].running_mean, norm.running_mean)
    hidden = torch.randn(3, model.config.text_hidden_size)
    torch.testing.assert_close(model.predict_from_hidden(hidden, [model.template()] * 3)[0],
                               loaded.predict_from_hidden(hidden, [loaded.template()] * 3)[0])


def test_seg_batch_norm_normalises_the_whole_batch_once(tiny_tokenizer, synthbody_template_128):
    """A training forward whose seg tokens go to two templates (body, object): the projection's BatchNorm sees all
    of them together and updates its running statistics once (it used to run over the batch and then again per
    template group: three updates from different statistics than those the masks were decoded with)."""
    from utils.chat_prompt import chat_prompt

    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, seg_batch_norm=True).train()
    norm = model.text_hidden_fcs[4]
    other = type(model.template()).__new__(type(model.template()))
    other.__dict__.update(model.template().__dict__)  # the same renders under another identity: a second group
    texts = [chat_prompt(model.config, f"Which parts touch the {o}?", f"The {o} [SEG].") for o in ("chair", "box", "bed", "cup")]
    ids = [[tiny_tokenizer.bos_token_id] + tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, ids))
    input_ids = torch.tensor([row + [tiny_tokenizer.pad_token_id] * (width - len(row)) for row in ids])
    attention = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
    pixels = torch.randn(4, 3, model.config.vlm_config.vision_config.image_size, model.config.vlm_config.vision_config.image_size)
    before = int(norm.num_batches_tracked)
    out = model(input_ids=input_ids, clip_pixel_values=pixels, attention_mask=attention,
                templates=[model.template(), other, model.template(), other])
    assert int(norm.num_batches_tracked) == before + 1
    assert out.mask_logits.shape[0] == 4


def test_joint_model_without_view_splitter_sends_the_embedding_straight_to_the_decoder(tiny_tokenizer,
                                                                                        synthbody_template_128):
    """``view_splitter=False`` with ``cam_encoder_type="none"`` (the bundled opening-turn model): every view's prompt
    is the seg embedding itself, for [HSEG] and [OSEG] alike; a saved config without the field keeps the splitter."""
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, token_type="Gen-Hu-Obj", view_splitter=False,
                            cam_encoder_type="none")
    assert model.attention_splitter is None
    assert not any(name.startswith(("attention_splitter", "cam_pose_encoder")) for name, _ in model.named_parameters())
    hidden = torch.randn(3, model.config.text_hidden_size)
    with torch.no_grad():
        embeddings = model.text_hidden_fcs(hidden)
        prompts = model.seg_to_view_prompts(hidden, model.template().cameras, torch.tensor([False, True, False]))
    assert prompts.shape == (3, model.config.num_views, model.config.out_dim)
    torch.testing.assert_close(prompts, embeddings[:, None].expand_as(prompts))
    qa = make_qa("hcontact", "chair", "simple", token_type="Gen-Hu-Obj")
    ids = _encode(tiny_tokenizer, build_prompt(qa.question, qa.answer, image_tokens=model.config.image_seq_length))
    out = model(input_ids=ids, clip_pixel_values=clip_preprocess(IMAGES[:1], 112))
    assert out.mask_logits.shape == (1, 4, 128, 128)
    legacy = model.config.to_dict()
    legacy.pop("view_splitter")
    assert type(model.config)(**legacy).view_splitter is True


def test_tiny_sam_decoder_width_is_configurable(tiny_tokenizer, synthbody_template_128):
    """The bundled opening-turn model's 128-d decoder (16 upscaled channels per pixel where the tiny default has 8):
    the prompt, the decoder and its hypernetwork follow ``prompt_dim``, the default stays 64-d, and an ``out_dim``
    that disagrees with the decoder is refused with both numbers."""
    from model.config import SAM_ENCODERS

    default = SAM_ENCODERS["tiny"]()
    assert default.mask_decoder_config.hidden_size == 64 and default.mask_decoder_config.num_attention_heads == 2
    wide = SAM_ENCODERS["tiny"](image_size=128, prompt_dim=128, decoder_mlp=512, decoder_heads=8)
    assert wide.vision_config.hidden_size == default.vision_config.hidden_size  # same encoder trunk
    assert wide.vision_config.output_channels == 128 and wide.mask_decoder_config.mlp_dim == 512
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, sam_config=wide.to_dict(), out_dim=128,
                            view_splitter=False, cam_encoder_type="none")
    assert model.text_hidden_fcs[2].weight.shape[0] == 128
    assert model.sam.mask_decoder.upscale_conv2.out_channels == 16
    qa = make_qa("hcontact", "chair", "simple")
    ids = _encode(tiny_tokenizer, build_prompt(qa.question, qa.answer, image_tokens=model.config.image_seq_length))
    with torch.no_grad():
        out = model(input_ids=ids, clip_pixel_values=clip_preprocess(IMAGES[:1], 112))
    assert out.mask_logits.shape == (1, 4, 128, 128) and torch.isfinite(out.mask_logits).all()
    with pytest.raises(ValueError, match="out_dim 64 must equal the SAM prompt size 128"):
        make_tiny_model(tiny_tokenizer, synthbody_template_128, sam_config=wide.to_dict())
