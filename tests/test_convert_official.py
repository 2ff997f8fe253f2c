"""Official checkpoint conversion: a tiny model written in the released layout (LISA / InteractVLM names, sharded
``.bin`` or safetensors, LlavaLlama ``config.json``, CLIP dropped and supplied separately) converts back to a model
with identical masks and per-vertex contact; bad checkpoints fail with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from model.convert_official import (
    ConversionError,
    cam_encoder_from_keys,
    convert_official,
    official_to_ours,
    resize_rows,
    to_official_state_dict,
)
from model.interactvlm import clip_preprocess
from model.io import load_interactvlm
from model.prompts import build_cam_encoder
from tests.conftest import make_tiny_model
from utils.conversation import build_prompt, make_qa

IMAGE = (np.random.default_rng(1).random((96, 150, 3)) * 255).astype(np.uint8)


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Random init leaves some parts near-constant (zero biases, unit norms): make every tensor matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.02)


def _outputs(model, tokenizer):
    token_type = model.config.token_type
    qa = make_qa("hcontact", "chair", "parts", body_parts=["left hand"], token_type=token_type)
    prompt = build_prompt(qa.question, qa.answer, image_tokens=model.config.image_seq_length)
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model(input_ids=ids, clip_pixel_values=clip_preprocess([IMAGE], model.config.vlm_config.vision_config.image_size))
    return out.mask_logits, out.vertex_probs[0]


def _official_config(model, **extra) -> dict:
    """A LlavaLlama ``config.json`` as the released checkpoints carry (model fields + some training args)."""
    cfg = model.config
    text, vision = cfg.vlm_config.text_config, cfg.vlm_config.vision_config
    values = {
        "architectures": ["InteractVLMForCausalLM"], "model_type": "llava", "hidden_act": "silu",
        "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads, "vocab_size": text.vocab_size,
        "rms_norm_eps": text.rms_norm_eps, "max_position_embeddings": text.max_position_embeddings,
        "rope_scaling": None, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "tie_word_embeddings": False,
        "mm_vision_tower": "openai/clip-vit-large-patch14", "mm_hidden_size": vision.hidden_size,
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_use_im_start_end": True,
        "mm_use_im_patch_token": False, "use_mm_proj": True, "out_dim": cfg.out_dim, "train_mask_decoder": True,
        "seg_token_idx": cfg.seg_token_index, "torch_dtype": "float32", "use_cache": False,
    }
    values.update(extra)
    return values


def _write_official(model, tokenizer, folder: Path, fmt: str = "bin", shards: int = 3, drop_vision: bool = False,
                    rename=None, add: dict | None = None, remove: tuple[str, ...] = (), config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = to_official_state_dict(model)
    if drop_vision:
        state = {k: v for k, v in state.items() if not k.startswith("model.vision_tower.")}
    if rename is not None:
        state = {rename(k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k not in remove}
    state.update(add or {})
    keys = list(state)
    if shards == 1:
        name = "pytorch_model.bin" if fmt == "bin" else "model.safetensors"
        part = {k: state[k].contiguous().clone() for k in keys}
        torch.save(part, folder / name) if fmt == "bin" else save_file(part, folder / name)
    else:
        weight_map = {}
        for i, chunk in enumerate(np.array_split(np.arange(len(keys)), shards), 1):
            name = (f"pytorch_model-{i:05d}-of-{shards:05d}.bin" if fmt == "bin"
                    else f"model-{i:05d}-of-{shards:05d}.safetensors")
            part = {keys[j]: state[keys[j]].contiguous().clone() for j in chunk}
            torch.save(part, folder / name) if fmt == "bin" else save_file(part, folder / name)
            weight_map.update({k: name for k in part})
        index = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
        total = sum(t.numel() * t.element_size() for t in state.values())
        (folder / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config if config is not None else _official_config(model)))
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gen_model(tiny_tokenizer, synthbody_template_128):
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, seed=5)
    _perturb(model, 5)
    return model


def _assert_same(converted_dir: Path, reference, tokenizer) -> None:
    loaded, loaded_tokenizer = load_interactvlm(converted_dir)
    assert loaded_tokenizer.convert_tokens_to_ids("[SEG]") == tokenizer.convert_tokens_to_ids("[SEG]")
    masks, vertices = _outputs(loaded, loaded_tokenizer)
    ref_masks, ref_vertices = _outputs(reference, tokenizer)
    assert ref_masks.std() > 1e-3 and ref_vertices.std() > 1e-4  # a meaningful comparison
    torch.testing.assert_close(masks, ref_masks, atol=1e-5, rtol=0)
    torch.testing.assert_close(vertices, ref_vertices, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
def test_key_map_round_trip(gen_model):
    official = to_official_state_dict(gen_model)
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.mm_projector.weight",
                 "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
                 "model.text_hidden_fcs.0.2.weight", "model.visual_model.image_encoder.blocks.1.attn.rel_pos_h",
                 "model.visual_model.image_encoder.neck.3.bias",
                 "model.visual_model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
                 "model.visual_model.prompt_encoder.mask_downscaling.6.weight",
                 "model.visual_model.mask_decoder.transformer.layers.1.norm4.weight",
                 "model.visual_model.mask_decoder.output_hypernetworks_mlps.3.layers.2.bias",
                 "cam_pose_encoder.spatial_encoder.2.weight", "cam_pose_encoder.view_transforms.3.bias"):
        assert name in official, name
    mapped = official_to_ours(official)
    state = gen_model.state_dict()
    assert set(mapped.tensors) == set(state)
    assert all(torch.equal(mapped.tensors[k], state[k]) for k in state)
    assert mapped.cam_encoder_type == "vi_v1" and mapped.num_views == 4


def test_bin_shards_convert_to_identical_outputs(gen_model, tiny_tokenizer, synthbody_template_128, tmp_path):
    # rotary buffers as old transformers saved them: listed in IGNORED_KEYS, skipped
    extra = {"model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(16)}
    checkpoint = _write_official(gen_model, tiny_tokenizer, tmp_path / "official", fmt="bin", add=extra)
    out = convert_official(checkpoint, tmp_path / "ours", view_set="4MV-Z_Vitru_mv2", human_template=synthbody_template_128)
    report = json.loads((out / "conversion.json").read_text())
    assert report["layout"] == "torch shards" and report["cam_encoder"]["type"] == "vi_v1"
    assert report["ignored_keys"] == list(extra)
    _assert_same(out, gen_model, tiny_tokenizer)


def test_safetensors_shards_with_separate_clip_joint_model(tiny_tokenizer, synthbody_template_128, tmp_path):
    """Joint Gen-Hu-Obj model; CLIP dropped (as the merge script does) and supplied as a CLIPVisionModel directory;
    the camera encoder and splitter under the original's module names (spatial_encoder / view_transforms,
    input_proj / query_human / … / output_proj)."""
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, seed=6, token_type="Gen-Hu-Obj")
    _perturb(model, 6)
    config = _official_config(model, token_type="Gen-Hu-Obj", cam_encoder_type="vi_v1", multiview_cam_cond=True,
                              multiview_channels=4, hC_sam_view_type="4MV-Z_Vitru_mv2", hC_question_type="parts")
    checkpoint = _write_official(model, tiny_tokenizer, tmp_path / "official", fmt="safetensors", drop_vision=True,
                                 config=config)
    index = json.loads((checkpoint / "model.safetensors.index.json").read_text())["weight_map"]
    assert "attention_splitter.query_object.weight" in index and "cam_pose_encoder.view_transforms.2.weight" in index
    model.vlm.model.vision_tower.save_pretrained(tmp_path / "clip")  # a CLIPVisionModel directory
    with pytest.raises(ConversionError, match="--clip"):  # no vision tower anywhere
        convert_official(checkpoint, tmp_path / "no_clip")
    out = convert_official(checkpoint, tmp_path / "ours", clip=tmp_path / "clip", human_template=synthbody_template_128)
    report = json.loads((out / "conversion.json").read_text())
    assert report["layout"] == "safetensors shards" and report["token_type"] == "Gen-Hu-Obj"
    assert report["view_set"]["source"] == "config.json hC_sam_view_type"
    assert report["cam_encoder"] == {"type": "vi_v1", "num_views": 4} and report["attention_splitter"] is True
    _assert_same(out, model, tiny_tokenizer)


@pytest.mark.parametrize("kind,out_dim", [("simple", 64), ("view_index", 64), ("vi_v1", 64), ("vi_v1", 256)])
def test_cam_encoder_type_from_the_original_names(kind, out_dim):
    """``simple`` = linear1; ``view_index`` / ``vi_v1`` = spatial_encoder + view_transforms, told apart by width."""
    torch.manual_seed(0)
    encoder = build_cam_encoder(kind, out_dim, 4)
    state = {f"cam_pose_encoder.{k}": v for k, v in encoder.state_dict().items()}
    official = {k.replace("encoder.0", "linear1").replace("shared", "spatial_encoder")
                .replace("view_layers", "view_transforms"): v for k, v in state.items()}
    mapped = official_to_ours(official)
    assert (mapped.cam_encoder_type, mapped.num_views) == (kind, 0 if kind == "simple" else 4)
    assert set(mapped.tensors) == set(state) and all(torch.equal(mapped.tensors[k], state[k]) for k in state)


def test_ambiguous_cam_encoder_needs_a_hint():
    encoder = build_cam_encoder("vi_v1", 128, 4)  # D = 128: vi_v1 and view_index have the same shapes
    tensors = {f"cam_pose_encoder.{k}": v for k, v in encoder.state_dict().items()}
    with pytest.raises(ConversionError, match="--cam-encoder"):
        cam_encoder_from_keys(tensors)
    assert cam_encoder_from_keys(tensors, "vi_v1") == ("vi_v1", 4)


def test_attention_downsample_rate_is_honoured(tiny_tokenizer, synthbody_template_128, tmp_path):
    """A SAM decoder trained with another cross-attention downsampling rate converts and gives the same masks
    (transformers' two-way blocks hard-code 2; model.sam.build_sam_model rebuilds them at the configured rate)."""
    from model.config import build_config

    sam = build_config("tiny").sam_config.to_dict()
    sam["mask_decoder_config"]["attention_downsample_rate"] = 4
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, seed=8, sam_config=sam)
    assert model.sam.mask_decoder.transformer.layers[0].cross_attn_token_to_image.internal_dim == 16
    _perturb(model, 8)
    checkpoint = _write_official(model, tiny_tokenizer, tmp_path / "official", shards=2)
    out = convert_official(checkpoint, tmp_path / "ours", view_set="4MV-Z_Vitru_mv2", human_template=synthbody_template_128)
    assert json.loads((out / "conversion.json").read_text())["sam_decoder"]["attention_downsample_rate"] == 4
    _assert_same(out, model, tiny_tokenizer)


def test_official_template_folder_size_read_from_the_arrays(tmp_path):
    """The original names its maps ``_1024`` whatever their size; a 32-px pair under that name is read as 32 px."""
    from model.convert_official import import_official_template
    from utils.geometry.lifting_maps import LiftingMaps
    from utils.geometry.template_views import load_template
    from utils.geometry.views import get_view_set

    import cv2

    views = ("topfront", "bottomfront", "topback", "bottomback")
    rng = np.random.default_rng(0)
    ids = {v: np.where(rng.random((32, 32, 1)) < 0.5, rng.integers(0, 100, (32, 32, 3)), -1) for v in views}
    bary = {v: rng.dirichlet((1, 1, 1), (32, 32)).astype(np.float32) for v in views}
    np.savez_compressed(tmp_path / "pixel_to_vertex_map_1024.npz", **ids)
    np.savez_compressed(tmp_path / "bary_coords_map_1024.npz", **bary)
    for v in views:
        cv2.imwrite(str(tmp_path / f"body_render_norm_{v}.png"), np.full((32, 32, 3), 128, np.uint8))
    assert LiftingMaps.official_size(tmp_path) == 32
    template = load_template(tmp_path, 32, view_set=get_view_set("4MV-Z_Vitru_mv2"), num_vertices=100)
    assert template.maps.image_size == (32, 32) and template.renders.shape == (4, 32, 32, 3)
    with pytest.raises(ValueError, match="use mask size 32"):
        load_template(tmp_path, 1024, view_set=get_view_set("4MV-Z_Vitru_mv2"), num_vertices=100)
    ours = import_official_template(tmp_path, "4MV-Z_Vitru_mv2", 100, tmp_path / "ours")
    assert (ours / "template.json").is_file() and (ours / "lift_maps_32.npz").is_file()
    assert np.array_equal(load_template(ours, 32).maps.vertex_ids, template.maps.vertex_ids)


def test_unknown_and_missing_keys_are_reported(gen_model, tiny_tokenizer, tmp_path):
    unknown = "model.visual_model.mask_decoder.extra_head.weight"
    checkpoint = _write_official(gen_model, tiny_tokenizer, tmp_path / "unknown", shards=1, add={unknown: torch.zeros(2)})
    with pytest.raises(ConversionError, match="not recognised") as err:
        convert_official(checkpoint, tmp_path / "out1")
    assert unknown in str(err.value)

    removed = "model.visual_model.mask_decoder.output_upscaling.3.weight"
    checkpoint = _write_official(gen_model, tiny_tokenizer, tmp_path / "missing", shards=1, remove=(removed,))
    with pytest.raises(ConversionError, match="missing") as err:
        convert_official(checkpoint, tmp_path / "out2")
    assert "sam.mask_decoder.upscale_conv2.weight" in str(err.value)


def test_resize_rows_appends_the_mean():
    matrix = torch.arange(6.0).reshape(3, 2)
    grown = resize_rows(matrix, 5)
    assert grown.shape == (5, 2) and torch.equal(grown[:3], matrix)
    assert torch.equal(grown[3:], torch.tensor([[2.0, 3.0], [2.0, 3.0]]))
    with pytest.raises(ConversionError):
        resize_rows(matrix, 2)


def test_2d_checkpoint_converts_with_contact_2d(tiny_tokenizer, tmp_path):
    from model.view_templates import PhotoTemplate
    from tests.test_model_2d import make_2d_model

    model = make_2d_model(tiny_tokenizer, seed=7, train_sam_encoder=False)
    _perturb(model, 7)
    checkpoint = _write_official(model, tiny_tokenizer, tmp_path / "official_2d", fmt="safetensors", shards=2)
    with pytest.raises(ConversionError, match="no --human-template"):
        convert_official(checkpoint, tmp_path / "bad", contact_2d=True, human_template=tmp_path)
    out = convert_official(checkpoint, tmp_path / "ours_2d", contact_2d=True)
    assert json.loads((out / "conversion.json").read_text())["contact_2d"] is True
    loaded, _ = load_interactvlm(out)
    assert loaded.config.contact_2d and loaded.config.num_views == 1 and not loaded.templates
    hidden = torch.randn(1, model.config.text_hidden_size)
    template = PhotoTemplate.from_image(IMAGE, model.config.sam_image_size)
    reference = model.predict_from_hidden(hidden, [template])[0]
    assert reference.std() > 1e-3 and reference.shape == (1, 1, *IMAGE.shape[:2])
    torch.testing.assert_close(loaded.predict_from_hidden(hidden, [template])[0], reference, atol=1e-5, rtol=0)
    with pytest.raises(ConversionError, match="per-view layers"):  # a 3D (4-view) checkpoint is not a 2D one
        three_d = _write_official(_model_3d(tiny_tokenizer), tiny_tokenizer, tmp_path / "official_3d", shards=1)
        convert_official(three_d, tmp_path / "wrong", contact_2d=True)


def _model_3d(tokenizer):
    from model.config import build_config
    from model.interactvlm import InteractVLMForCausalLM
    from model.io import attach_tokenizer

    torch.manual_seed(3)
    config = build_config("tiny")
    attach_tokenizer(config, tokenizer)
    return InteractVLMForCausalLM(config).eval()
