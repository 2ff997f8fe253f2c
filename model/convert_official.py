"""Convert a released InteractVLM / LISA Hugging Face checkpoint into one of our model directories.

The released checkpoints are ``save_pretrained`` dumps of the original ``InteractVLMForCausalLM`` /
``LISAForCausalLM`` (a LLaVA-v1 ``LlavaLlamaForCausalLM`` with SAM attached as ``model.visual_model``), written by
``merge_lora_weights_and_save_hf_model.py``: ``config.json`` (LlavaLlama fields plus the training
arguments), sharded weights (``pytorch_model-0000X-of-0000N.bin`` + ``pytorch_model.bin.index.json``, or the
safetensors equivalent, or one file) and the sentencepiece tokenizer. The merge script drops every CLIP key, so CLIP
usually comes from a separate ``openai/clip-vit-large-patch14`` directory (``--clip``).

Key map (official → ours; :func:`to_official_state_dict` is the exact inverse)::

    model.embed_tokens / model.layers.{i}.* / model.norm   → vlm.model.language_model.*  (same sub-names)
    lm_head.weight                                          → vlm.lm_head.weight
    model.vision_tower.vision_tower.vision_model.*          → vlm.model.vision_tower.*
    model.mm_projector.{weight,bias}                        → vlm.model.multi_modal_projector.linear.*   (LLaVA-v1)
    model.mm_projector.{0,2}.*                              → vlm.model.multi_modal_projector.linear_{1,2}.*  (1.5)
    model.text_hidden_fcs.0.{0,2}.*                         → text_hidden_fcs.{0,2}.*
    model.visual_model.{image_encoder,prompt_encoder,mask_decoder}.*  → sam.* (segment-anything → transformers
                                                              names, explicit table ``SAM_RULES``)
    cam_pose_encoder.linear1.*                              → cam_pose_encoder.encoder.0.*      (simple)
    cam_pose_encoder.spatial_encoder.{0,2}.*                → cam_pose_encoder.shared.{0,2}.*   (view_index, vi_v1)
    cam_pose_encoder.view_transforms.{v}.*                  → cam_pose_encoder.view_layers.{v}.*
    attention_splitter.{input_proj,query_human,query_object,key,value,output_proj}.*
                                                            → attention_splitter.{in_proj,human_query,object_query,
                                                              key,value,out_proj}.*  (Gen-Hu-Obj)

(the camera encoder and the splitter are attributes of the original ``InteractVLMForCausalLM`` itself, hence no
``model.`` prefix). Dtypes are kept per tensor by default (``--dtype auto``): the released merge writes the language
model in bf16 and SAM / ``text_hidden_fcs`` in fp32. The tokenizer (a sentencepiece ``tokenizer.model``) is read as
:class:`model.tokenizer.LisaTokenizer`, which reproduces the original's token ids.

Everything the rename table does not cover raises :class:`ConversionError` naming the keys, except the buffers in
``IGNORED_KEYS``. After renaming, the converter checks our model's state-dict keys and shapes itself (strict), so a
missing SAM or LLaMA tensor is reported by name.

Example::

    python -m model.convert_official --checkpoint trained_models/interactvlm-3d-hcontact-damon-fix \\
        --clip pretrained/clip-vit-large-patch14 --human-template data/hcontact_vitruvian_mv2 \\
        --output-dir trained_models/ivlm-hcontact-damon-fix
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from transformers import (AutoTokenizer, CLIPVisionConfig, LlamaConfig, LlavaConfig, PreTrainedConfig,
                          PreTrainedTokenizerBase, SamConfig)
from transformers.models.sam.configuration_sam import SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

from model.config import PRESETS, InteractVLMConfig, build_config
from model.interactvlm import InteractVLMForCausalLM
from model.io import attach_tokenizer, save_interactvlm
from model.tokenizer import LisaTokenizer, add_interactvlm_tokens
from model.view_templates import ViewTemplate
from utils import conversation as conv
from utils.body_models import BODY_MODEL_FILES
from utils.geometry.lifting_maps import LiftingMaps
from utils.geometry.template_views import FORMAT_VERSION, load_template, maps_path, render_path
from utils.geometry.views import VIEW_SETS, get_view_set


class ConversionError(ValueError):
    """The checkpoint cannot be converted (unknown / missing keys, inconsistent config, no CLIP weights, ...)."""


# ---------------------------------------------------------------------------------------------------------------
# the rename table

# Present in some checkpoints, recomputed by our modules: never loaded.
IGNORED_KEYS = (
    r".*rotary_emb\.inv_freq",  # LLaMA rotary frequencies (saved by transformers < 4.32)
    r".*embeddings\.position_ids",  # CLIP position ids buffer
    r"model\.visual_model\.pixel_(mean|std)",  # SAM normalisation buffers (constants, model/sam.py)
)
# Keys of an ``openai/clip-vit-*`` CLIPModel checkpoint that are not the vision tower.
CLIP_IGNORED_KEYS = (r"text_model\..*", r"text_projection\..*", r"visual_projection\..*", r"logit_scale",
                     r".*position_ids")

LM = "vlm.model.language_model."
CLIP_OFFICIAL = "model.vision_tower.vision_tower.vision_model."
SAM_OFFICIAL, SAM_OURS = "model.visual_model.", "sam."

# (official, ours) templates. ``{i}``/``{j}``: an index; ``{w}``: weight|bias; ``{name:a|b}``: one of the listed
# names (kept); ``{rest}``: any remaining dotted path. A rule with several ``ours`` names fills all of them (tied
# parameters); the inverse uses the first.
BASE_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("model.embed_tokens.weight", (LM + "embed_tokens.weight",)),
    ("model.layers.{i}.self_attn.{p:q_proj|k_proj|v_proj|o_proj}.{w}", (LM + "layers.{i}.self_attn.{p}.{w}",)),
    ("model.layers.{i}.mlp.{p:gate_proj|up_proj|down_proj}.weight", (LM + "layers.{i}.mlp.{p}.weight",)),
    ("model.layers.{i}.{n:input_layernorm|post_attention_layernorm}.weight", (LM + "layers.{i}.{n}.weight",)),
    ("model.norm.weight", (LM + "norm.weight",)),
    ("lm_head.weight", ("vlm.lm_head.weight",)),
    (CLIP_OFFICIAL + "{rest}", ("vlm.model.vision_tower.{rest}",)),
    ("model.mm_projector.{w}", ("vlm.model.multi_modal_projector.linear.{w}",)),
    ("model.mm_projector.0.{w}", ("vlm.model.multi_modal_projector.linear_1.{w}",)),
    ("model.mm_projector.2.{w}", ("vlm.model.multi_modal_projector.linear_2.{w}",)),
    ("model.text_hidden_fcs.0.{k:0|2}.{w}", ("text_hidden_fcs.{k}.{w}",)),
    # camera encoders, attributes of the original InteractVLMForCausalLM itself (no ``model.`` prefix):
    # ``simple`` = CamPoseEncoder.linear1; ``view_index`` / ``vi_v1`` = spatial_encoder (Sequential, Linear at 0 and
    # 2) + view_transforms (one Linear per view)
    ("cam_pose_encoder.linear1.{w}", ("cam_pose_encoder.encoder.0.{w}",)),
    ("cam_pose_encoder.spatial_encoder.{k:0|2}.{w}", ("cam_pose_encoder.shared.{k}.{w}",)),
    ("cam_pose_encoder.view_transforms.{i}.{w}", ("cam_pose_encoder.view_layers.{i}.{w}",)),
    # joint model (Gen-Hu-Obj): the original AttentionSplitter's six Linear layers
    ("attention_splitter.input_proj.{w}", ("attention_splitter.in_proj.{w}",)),
    ("attention_splitter.query_human.{w}", ("attention_splitter.human_query.{w}",)),
    ("attention_splitter.query_object.{w}", ("attention_splitter.object_query.{w}",)),
    ("attention_splitter.{p:key|value}.{w}", ("attention_splitter.{p}.{w}",)),
    ("attention_splitter.output_proj.{w}", ("attention_splitter.out_proj.{w}",)),
]

# segment-anything → transformers SamModel, relative to ``model.visual_model.`` / ``sam.``.
SAM_RULES: list[tuple[str, tuple[str, ...]]] = [
    # image encoder (ViT)
    ("image_encoder.pos_embed", ("vision_encoder.pos_embed",)),
    ("image_encoder.patch_embed.proj.{w}", ("vision_encoder.patch_embed.projection.{w}",)),
    ("image_encoder.blocks.{i}.norm1.{w}", ("vision_encoder.layers.{i}.layer_norm1.{w}",)),
    ("image_encoder.blocks.{i}.norm2.{w}", ("vision_encoder.layers.{i}.layer_norm2.{w}",)),
    ("image_encoder.blocks.{i}.attn.{p:qkv|proj}.{w}", ("vision_encoder.layers.{i}.attn.{p}.{w}",)),
    ("image_encoder.blocks.{i}.attn.{r:rel_pos_h|rel_pos_w}", ("vision_encoder.layers.{i}.attn.{r}",)),
    ("image_encoder.blocks.{i}.mlp.{l:lin1|lin2}.{w}", ("vision_encoder.layers.{i}.mlp.{l}.{w}",)),
    ("image_encoder.neck.0.weight", ("vision_encoder.neck.conv1.weight",)),
    ("image_encoder.neck.1.{w}", ("vision_encoder.neck.layer_norm1.{w}",)),
    ("image_encoder.neck.2.weight", ("vision_encoder.neck.conv2.weight",)),
    ("image_encoder.neck.3.{w}", ("vision_encoder.neck.layer_norm2.{w}",)),
    # prompt encoder
    ("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
     ("shared_image_embedding.positional_embedding", "prompt_encoder.shared_embedding.positional_embedding")),
    ("prompt_encoder.point_embeddings.{i}.weight", ("prompt_encoder.point_embed.{i}.weight",)),
    ("prompt_encoder.not_a_point_embed.weight", ("prompt_encoder.not_a_point_embed.weight",)),
    ("prompt_encoder.no_mask_embed.weight", ("prompt_encoder.no_mask_embed.weight",)),
    ("prompt_encoder.mask_downscaling.0.{w}", ("prompt_encoder.mask_embed.conv1.{w}",)),
    ("prompt_encoder.mask_downscaling.1.{w}", ("prompt_encoder.mask_embed.layer_norm1.{w}",)),
    ("prompt_encoder.mask_downscaling.3.{w}", ("prompt_encoder.mask_embed.conv2.{w}",)),
    ("prompt_encoder.mask_downscaling.4.{w}", ("prompt_encoder.mask_embed.layer_norm2.{w}",)),
    ("prompt_encoder.mask_downscaling.6.{w}", ("prompt_encoder.mask_embed.conv3.{w}",)),
    # mask decoder: two-way transformer
    ("mask_decoder.transformer.layers.{i}.{a:self_attn|cross_attn_token_to_image|cross_attn_image_to_token}"
     ".{p:q_proj|k_proj|v_proj|out_proj}.{w}", ("mask_decoder.transformer.layers.{i}.{a}.{p}.{w}",)),
    ("mask_decoder.transformer.layers.{i}.norm{n:1|2|3|4}.{w}", ("mask_decoder.transformer.layers.{i}.layer_norm{n}.{w}",)),
    ("mask_decoder.transformer.layers.{i}.mlp.{l:lin1|lin2}.{w}", ("mask_decoder.transformer.layers.{i}.mlp.{l}.{w}",)),
    ("mask_decoder.transformer.final_attn_token_to_image.{p:q_proj|k_proj|v_proj|out_proj}.{w}",
     ("mask_decoder.transformer.final_attn_token_to_image.{p}.{w}",)),
    ("mask_decoder.transformer.norm_final_attn.{w}", ("mask_decoder.transformer.layer_norm_final_attn.{w}",)),
    # mask decoder: tokens, upscaling, heads (3-layer MLPs: layers.0/1/2 → proj_in/layers.0/proj_out)
    ("mask_decoder.iou_token.weight", ("mask_decoder.iou_token.weight",)),
    ("mask_decoder.mask_tokens.weight", ("mask_decoder.mask_tokens.weight",)),
    ("mask_decoder.output_upscaling.0.{w}", ("mask_decoder.upscale_conv1.{w}",)),
    ("mask_decoder.output_upscaling.1.{w}", ("mask_decoder.upscale_layer_norm.{w}",)),
    ("mask_decoder.output_upscaling.3.{w}", ("mask_decoder.upscale_conv2.{w}",)),
    ("mask_decoder.output_hypernetworks_mlps.{i}.layers.0.{w}", ("mask_decoder.output_hypernetworks_mlps.{i}.proj_in.{w}",)),
    ("mask_decoder.output_hypernetworks_mlps.{i}.layers.1.{w}", ("mask_decoder.output_hypernetworks_mlps.{i}.layers.0.{w}",)),
    ("mask_decoder.output_hypernetworks_mlps.{i}.layers.2.{w}", ("mask_decoder.output_hypernetworks_mlps.{i}.proj_out.{w}",)),
    ("mask_decoder.iou_prediction_head.layers.0.{w}", ("mask_decoder.iou_prediction_head.proj_in.{w}",)),
    ("mask_decoder.iou_prediction_head.layers.1.{w}", ("mask_decoder.iou_prediction_head.layers.0.{w}",)),
    ("mask_decoder.iou_prediction_head.layers.2.{w}", ("mask_decoder.iou_prediction_head.proj_out.{w}",)),
]

RULES = BASE_RULES + [(SAM_OFFICIAL + o, tuple(SAM_OURS + x for x in ours)) for o, ours in SAM_RULES]

_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^}]*))?\}")


def _compile(template: str, choices: dict[str, str] | None = None) -> tuple[re.Pattern, str]:
    """``"a.{i}.{p:x|y}.{w}"`` → (regex with named groups, format string ``"a.{i}.{p}.{w}"``). ``choices`` supplies
    the alternatives of placeholders declared on the other side of a rule."""
    regex, pos = "", 0
    for match in _PLACEHOLDER.finditer(template):
        regex += re.escape(template[pos: match.start()])
        name, listed = match.group(1), match.group(2) or (choices or {}).get(match.group(1))
        if listed is not None:
            body = "|".join(re.escape(c) for c in listed.split("|"))
        elif name in ("i", "j"):
            body = r"\d+"
        elif name == "w":
            body = "weight|bias"
        elif name == "rest":
            body = r".+"
        else:
            raise ValueError(f"placeholder {{{name}}} in {template!r} needs a list of choices")
        regex += f"(?P<{name}>{body})"
        pos = match.end()
    regex += re.escape(template[pos:])
    return re.compile(regex + r"\Z"), _PLACEHOLDER.sub(lambda m: "{" + m.group(1) + "}", template)


def _choices(template: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _PLACEHOLDER.finditer(template) if m.group(2)}


_FORWARD = [(_compile(o), [_compile(x, _choices(o))[1] for x in ours]) for o, ours in RULES]
_INVERSE = [(_compile(ours[0], _choices(o))[0], _compile(o)[1], [_compile(x, _choices(o))[1] for x in ours[1:]])
            for o, ours in RULES]
_IGNORED = [re.compile(p + r"\Z") for p in IGNORED_KEYS]
_CLIP_IGNORED = [re.compile(p + r"\Z") for p in CLIP_IGNORED_KEYS]


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _list_keys(keys, limit: int = 25) -> str:
    keys = sorted(keys, key=_natural_key)
    shown = "\n  ".join(keys[:limit])
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"\n  {shown}{more}"


def _unrecognised_error(keys: list[str]) -> ConversionError:
    hints = []
    if any("lora_" in k for k in keys):
        hints.append("the checkpoint still holds LoRA adapters: merge them first (merge_and_unload)")
    if any("human_mask_decoder" in k or "object_mask_decoder" in k for k in keys):
        hints.append("separate human/object mask decoders (token type '-DifDe') are not supported")
    if any(k.startswith(("fusion", "model.fusion", "uncertainty", "model.uncertainty")) for k in keys):
        hints.append("use_feat_fusion / use_uncertainty modules are not supported")
    hint = ("\nHint: " + "; ".join(hints)) if hints else ""
    return ConversionError(f"{len(keys)} checkpoint key(s) are not recognised by the official→ours key map:"
                           f"{_list_keys(keys)}{hint}")


# ---------------------------------------------------------------------------------------------------------------
# official → ours and back

@dataclass
class MappedStateDict:
    tensors: dict[str, torch.Tensor]
    source: dict[str, str]  # our key → official key
    ignored: list[str]
    cam_encoder_type: str = "none"
    num_views: int = 0
    has_splitter: bool = False


def cam_encoder_from_keys(tensors: dict[str, torch.Tensor], hint: str | None = None) -> tuple[str, int]:
    """(camera-encoder type, V) of our renamed tensors. ``simple`` has ``encoder.0``; ``view_index`` and ``vi_v1``
    share the layout (shared MLP + V per-view Linear layers) and differ in the shared width: ``view_index`` keeps the
    output size D, ``vi_v1`` uses 128 → ``hint`` (config.json ``cam_encoder_type``) decides when D is 128 too."""
    if "cam_pose_encoder.encoder.0.weight" in tensors:
        return "simple", 0
    if "cam_pose_encoder.shared.0.weight" not in tensors:
        return "none", 0
    views = _count(tensors, "cam_pose_encoder.view_layers.{i}.weight")
    hidden = tensors["cam_pose_encoder.shared.0.weight"].shape[0]
    out_dim = tensors["cam_pose_encoder.view_layers.0.weight"].shape[0] if views else hidden
    if hidden != out_dim:
        return "vi_v1", views
    if hint in ("vi_v1", "view_index"):
        return hint, views
    if hidden != 128:
        return "view_index", views
    raise ConversionError("cam_pose_encoder: with a 128-d seg embedding view_index and vi_v1 look alike; "
                          "pass --cam-encoder")


def official_to_ours(state_dict: dict[str, torch.Tensor], cam_hint: str | None = None) -> MappedStateDict:
    """Rename an official state dict to our names. Raises :class:`ConversionError` on any unrecognised key."""
    tensors: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    ignored, unknown = [], []
    for key, tensor in state_dict.items():
        if any(p.match(key) for p in _IGNORED):
            ignored.append(key)
            continue
        for (regex, _), targets in _FORWARD:
            match = regex.match(key)
            if match:
                for target in targets:
                    name = target.format(**match.groupdict())
                    if name in tensors:
                        raise ConversionError(f"two checkpoint keys map to {name}: {source[name]} and {key}")
                    tensors[name], source[name] = tensor, key
                break
        else:
            unknown.append(key)
    if unknown:
        raise _unrecognised_error(unknown)
    kind, views = cam_encoder_from_keys(tensors, cam_hint)
    return MappedStateDict(tensors, source, ignored, kind, views,
                           any(k.startswith("attention_splitter.") for k in tensors))


def to_official_state_dict(model: InteractVLMForCausalLM) -> dict[str, torch.Tensor]:
    """Our model's state dict under the official names: the exact inverse of :func:`official_to_ours`.

    Tied duplicates (SAM's positional matrix) are written once.
    """
    out: dict[str, torch.Tensor] = {}
    state = model.state_dict()
    alias_of: dict[str, str] = {}  # our tied duplicate → the key written
    unmapped = []
    for key, tensor in state.items():
        for regex, official, alias_formats in _INVERSE:
            match = regex.match(key)
            if match:
                out[official.format(**match.groupdict())] = tensor.detach()
                for alias in alias_formats:
                    alias_of[alias.format(**match.groupdict())] = key
                break
        else:
            unmapped.append(key)
    unmapped = [k for k in unmapped if k not in alias_of]
    if unmapped:
        raise ConversionError(f"parameters without an official name:{_list_keys(unmapped)}")
    for alias, primary in alias_of.items():
        if alias not in state or not torch.equal(state[alias], state[primary]):
            raise ConversionError(f"{alias} must equal {primary} (one tensor in the official checkpoint)")
    return out


# ---------------------------------------------------------------------------------------------------------------
# reading checkpoints

def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ConversionError(f"{path} is not a flat state dict of tensors")
    return data


def load_weights(directory: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of a HF checkpoint directory (sharded or single file, safetensors or torch pickles)."""
    directory = Path(directory)
    for index_name, kind in (("model.safetensors.index.json", "safetensors shards"),
                             ("pytorch_model.bin.index.json", "torch shards")):
        index_path = directory / index_name
        if index_path.is_file():
            weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values()), key=_natural_key):
                if not (directory / shard).is_file():
                    raise ConversionError(f"{index_path} lists shard {shard}, which is missing")
                for key, tensor in _read_weight_file(directory / shard).items():
                    if key in state:
                        raise ConversionError(f"key {key} appears in two shards")
                    state[key] = tensor
            absent = set(weight_map) - set(state)
            if absent:
                raise ConversionError(f"{index_path} lists keys missing from the shards:{_list_keys(absent)}")
            return state, kind
    for name, kind in (("model.safetensors", "safetensors"), ("pytorch_model.bin", "torch pickle")):
        if (directory / name).is_file():
            return _read_weight_file(directory / name), kind
    raise ConversionError(f"{directory}: no weights found (model.safetensors[.index.json] or pytorch_model.bin[.index.json])")


def read_official_config(directory: str | Path) -> dict:
    """``config.json`` with the training arguments of ``pretrained_config.json`` (if shipped) underneath."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ConversionError(f"{directory} has no config.json; is it a Hugging Face checkpoint directory?")
    merged = {}
    if (directory / "pretrained_config.json").is_file():
        merged.update(json.loads((directory / "pretrained_config.json").read_text()))
    merged.update(json.loads((directory / "config.json").read_text()))
    return merged


def load_clip_vision(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Vision-tower tensors under the official names + the vision config dict, from an HF CLIP directory
    (``CLIPModel``: ``vision_model.*``, text side ignored; or ``CLIPVisionModel``, with or without ``vision_model.``)."""
    directory = Path(directory)
    state, _ = load_weights(directory)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    vision_config = config.get("vision_config") or config.get("vision_config_dict") or (
        config if config.get("model_type") in ("clip_vision_model", None) else {})
    out = {}
    for key, tensor in state.items():
        if any(p.match(key) for p in _CLIP_IGNORED):
            continue
        out[CLIP_OFFICIAL + key.removeprefix("vision_model.")] = tensor
    if not out:
        raise ConversionError(f"{directory} holds no CLIP vision-tower weights")
    return out, dict(vision_config)


# ---------------------------------------------------------------------------------------------------------------
# config inference

_CLIP_HEADS = {(1024, 24): 16, (768, 12): 12, (1280, 32): 16}  # openai/laion ViT-L/14, ViT-B, ViT-H towers


def _need(sd: dict[str, torch.Tensor], key: str, why: str) -> torch.Tensor:
    if key not in sd:
        raise ConversionError(f"the checkpoint is missing {key} (needed for {why})")
    return sd[key]


def _count(sd: dict[str, torch.Tensor], template: str) -> int:
    pattern = re.compile(re.escape(template).replace(r"\{i\}", r"(\d+)") + r"\Z")
    indices = {int(m.group(1)) for k in sd if (m := pattern.match(k))}
    if indices and indices != set(range(max(indices) + 1)):
        raise ConversionError(f"non-contiguous layer indices for {template}: {sorted(indices)}")
    return len(indices)


def _match_preset(sd: dict[str, torch.Tensor]) -> str | None:
    text_hidden = sd[LM + "embed_tokens.weight"].shape[1] if LM + "embed_tokens.weight" in sd else None
    text_layers = _count(sd, LM + "layers.{i}.input_layernorm.weight")
    sam_key = "sam.vision_encoder.patch_embed.projection.weight"
    sam_hidden = sd[sam_key].shape[0] if sam_key in sd else None
    for name in PRESETS:
        cfg = build_config(name)
        text = cfg.vlm_config.text_config
        if (text.hidden_size, text.num_hidden_layers, cfg.sam_config.vision_config.hidden_size) == (text_hidden, text_layers, sam_hidden):
            return name
    return None


def infer_sam_config(sd: dict[str, torch.Tensor]) -> SamConfig:
    """SAM sizes from the tensor shapes (ViT-B/L/H or anything else of the same architecture)."""
    ve, pe, md = "sam.vision_encoder.", "sam.prompt_encoder.", "sam.mask_decoder."
    patch_w = _need(sd, ve + "patch_embed.projection.weight", "the SAM encoder size")
    hidden, patch = patch_w.shape[0], patch_w.shape[-1]
    grid = _need(sd, ve + "pos_embed", "the SAM input size").shape[1]
    depth = _count(sd, ve + "layers.{i}.attn.rel_pos_h")
    if depth == 0:
        raise ConversionError("the checkpoint has no SAM image-encoder blocks (model.visual_model.image_encoder.blocks.*)")
    rel = [sd[f"{ve}layers.{i}.attn.rel_pos_h"] for i in range(depth)]
    head_dim = rel[0].shape[1]
    global_attn = [i for i, r in enumerate(rel) if r.shape[0] == 2 * grid - 1]
    windows = {(r.shape[0] + 1) // 2 for i, r in enumerate(rel) if i not in global_attn}
    if len(windows) > 1:
        raise ConversionError(f"SAM blocks use different window sizes {sorted(windows)}")
    prompt_dim = _need(sd, pe + "no_mask_embed.weight", "the SAM prompt size").shape[1]
    vision = SamVisionConfig(
        hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=hidden // head_dim, image_size=grid * patch,
        patch_size=patch, output_channels=_need(sd, ve + "neck.conv1.weight", "the SAM neck").shape[0],
        global_attn_indexes=global_attn, window_size=windows.pop() if windows else 14,
        mlp_dim=_need(sd, ve + "layers.0.mlp.lin1.weight", "the SAM MLP size").shape[0],
        num_pos_feats=_need(sd, "sam.shared_image_embedding.positional_embedding", "the SAM positional encoding").shape[1],
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=prompt_dim, image_size=grid * patch, patch_size=patch,
        mask_input_channels=_need(sd, pe + "mask_embed.conv2.weight", "the SAM mask embedding").shape[0],
        num_point_embeddings=_count(sd, pe + "point_embed.{i}.weight"),
    )
    cross = _need(sd, md + "transformer.layers.0.cross_attn_token_to_image.q_proj.weight", "the SAM decoder").shape[0]
    decoder = SamMaskDecoderConfig(
        hidden_size=prompt_dim, mlp_dim=_need(sd, md + "transformer.layers.0.mlp.lin1.weight", "the SAM decoder").shape[0],
        num_hidden_layers=_count(sd, md + "transformer.layers.{i}.layer_norm1.weight"),
        # not visible in the shapes: stock SAM's decoder uses 32-d heads (256 / 8)
        num_attention_heads=max(1, prompt_dim // 32), attention_downsample_rate=prompt_dim // cross,
        # segment-anything's TwoWayTransformer uses nn.LayerNorm's default eps (transformers' SAM config: 1e-6)
        layer_norm_eps=1e-5,
        num_multimask_outputs=_need(sd, md + "mask_tokens.weight", "the SAM decoder").shape[0] - 1,
        iou_head_depth=2 + _count(sd, md + "iou_prediction_head.layers.{i}.weight"),
        iou_head_hidden_dim=_need(sd, md + "iou_prediction_head.proj_in.weight", "the SAM IoU head").shape[0],
    )
    return SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(), mask_decoder_config=decoder.to_dict())


def infer_vision_config(sd: dict[str, torch.Tensor], clip_config: dict | None, preset: str | None) -> CLIPVisionConfig:
    """CLIP tower sizes from the shapes; the head count (invisible in the shapes) from the CLIP directory's
    config, else the known openai towers, else the matched preset."""
    vt = "vlm.model.vision_tower."
    hidden = _need(sd, vt + "embeddings.class_embedding", "the CLIP size").shape[0]
    patch = _need(sd, vt + "embeddings.patch_embedding.weight", "the CLIP patch size").shape[-1]
    positions = _need(sd, vt + "embeddings.position_embedding.weight", "the CLIP input size").shape[0]
    grid = round((positions - 1) ** 0.5)
    if grid * grid + 1 != positions:
        raise ConversionError(f"CLIP position embedding has {positions} rows, not (grid² + 1)")
    layers = _count(sd, vt + "encoder.layers.{i}.layer_norm1.weight")
    intermediate = _need(sd, vt + "encoder.layers.0.mlp.fc1.weight", "the CLIP MLP size").shape[0]
    clip_config = clip_config or {}
    if clip_config.get("num_attention_heads"):
        heads = int(clip_config["num_attention_heads"])
    elif (hidden, layers) in _CLIP_HEADS:
        heads = _CLIP_HEADS[(hidden, layers)]
    elif preset is not None and build_config(preset).vlm_config.vision_config.hidden_size == hidden:
        heads = build_config(preset).vlm_config.vision_config.num_attention_heads
    else:
        raise ConversionError(f"unknown CLIP tower (hidden {hidden}, {layers} layers): pass --clip with its config.json")
    return CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=heads,
        image_size=grid * patch, patch_size=patch, hidden_act=clip_config.get("hidden_act", "quick_gelu"),
        layer_norm_eps=clip_config.get("layer_norm_eps", 1e-5), projection_dim=clip_config.get("projection_dim", 768),
    )


def infer_text_config(sd: dict[str, torch.Tensor], official: dict, vocab_size: int) -> LlamaConfig:
    emb = _need(sd, LM + "embed_tokens.weight", "the language-model size")
    hidden = emb.shape[1]
    layers = _count(sd, LM + "layers.{i}.input_layernorm.weight")
    intermediate = _need(sd, LM + "layers.0.mlp.gate_proj.weight", "the LLaMA MLP size").shape[0]
    heads = int(official.get("num_attention_heads") or hidden // 128)
    kv_heads = _need(sd, LM + "layers.0.self_attn.k_proj.weight", "the LLaMA attention").shape[0] // (hidden // heads)
    for name, value in (("hidden_size", hidden), ("num_hidden_layers", layers), ("intermediate_size", intermediate),
                        ("num_key_value_heads", kv_heads)):
        if official.get(name) is not None and int(official[name]) != value:
            raise ConversionError(f"config.json says {name}={official[name]} but the weights have {value}")
    if official.get("rope_scaling"):
        raise ConversionError(f"rope_scaling {official['rope_scaling']} is not supported")
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=int(official.get("max_position_embeddings", 4096)),
        rms_norm_eps=float(official.get("rms_norm_eps", 1e-5)),
        rope_parameters={"rope_type": "default", "rope_theta": float(official.get("rope_theta", 10000.0))},
        bos_token_id=official.get("bos_token_id", 1), eos_token_id=official.get("eos_token_id", 2),
        attention_bias=LM + "layers.0.self_attn.q_proj.bias" in sd,
    )


def resize_rows(matrix: torch.Tensor, rows: int) -> torch.Tensor:
    """Grow an embedding / lm_head matrix to ``rows`` rows; new rows are the mean of the existing ones."""
    if rows < matrix.shape[0]:
        raise ConversionError(f"cannot shrink a {matrix.shape[0]}-row vocabulary matrix to {rows}")
    if rows == matrix.shape[0]:
        return matrix
    mean = matrix.float().mean(0, keepdim=True).to(matrix.dtype)
    return torch.cat([matrix, mean.expand(rows - matrix.shape[0], -1)])


# ---------------------------------------------------------------------------------------------------------------
# conversion

_TRAINING_ARGS = ("ce_loss_weight", "bce_loss_weight", "dice_loss_weight", "bce_loss_alpha", "dice_loss_scale",
                  "hC_loss_weight", "oC_loss_weight", "lora_r", "lora_alpha", "lora_dropout")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# the hcontact-wScene config names a view set the original never defines; the one it meant (utils.geometry.views)
_VIEW_SET_ALIASES = {"4MV-Z_Vitru_wScene": "4MV-Z_Vitru_FootGround"}


def load_checkpoint_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer as the original loads it: a sentencepiece ``tokenizer.model`` (every LISA /
    InteractVLM release) becomes a :class:`LisaTokenizer` (transformers 4.31's slow LlamaTokenizer, id for id);
    anything else opens with ``AutoTokenizer``."""
    if (folder / "tokenizer.model").is_file():
        if importlib.util.find_spec("sentencepiece") is None:
            raise ConversionError(f"{folder / 'tokenizer.model'} is a sentencepiece tokenizer and the sentencepiece "
                                  "package is missing: `pip install -r requirements.txt` (or `pip install sentencepiece`)")
        try:
            return LisaTokenizer.from_pretrained(folder)
        except Exception as err:  # noqa: BLE001 - re-raised with the path
            raise ConversionError(f"cannot load the sentencepiece tokenizer in {folder} ({err}); pass --tokenizer DIR "
                                  "with the checkpoint's tokenizer files") from err
    try:
        # an empty config: the checkpoint's config.json is a LlavaLlama one, not a transformers model config
        return AutoTokenizer.from_pretrained(folder, config=PreTrainedConfig())
    except Exception as err:  # noqa: BLE001 - re-raised with the path and a hint
        raise ConversionError(f"cannot load the tokenizer of {folder} ({err}); pass --tokenizer DIR") from err


def import_official_template(folder: Path, view_set: str, num_vertices: int, target: Path) -> Path:
    """An official ``hcontact_vitruvian[_mv2]`` folder (renders + the ``_1024``-named npz map pair, any size) as one
    of our template folders (``template.json``, ``lift_maps_{size}.npz``), so the converted model directory
    describes its template itself."""
    views_of = get_view_set(view_set)
    size = LiftingMaps.official_size(folder)
    views = load_template(folder, size, view_set=views_of, num_vertices=num_vertices)
    target.mkdir(parents=True, exist_ok=True)
    views.maps.save(maps_path(target, size))
    for i, view in enumerate(views_of.view_names):
        for shader, images in (("norm", views.renders), ("blue", views.overlays)):
            path = render_path(target, "body", shader, view, size)
            if not cv2.imwrite(str(path), np.ascontiguousarray(images[i][..., ::-1])):
                raise ConversionError(f"could not write {path}")
    meta = {"format_version": FORMAT_VERSION, "name": folder.name, "kind": "body", "view_set": views_of.name,
            "view_names": list(views_of.view_names), "num_vertices": int(num_vertices), "mesh_hash": None,
            "camera_vectors": views_of.camera_vectors().round(6).tolist(), "sizes": [size],
            "source": f"official template folder {folder}"}
    (target / "template.json").write_text(json.dumps(meta, indent=1))
    return target


def _template_mask_size(human_template: str | Path | None, base) -> int:
    """Mask size of a converted model: an official template folder's map size (read from its arrays), else the
    preset's (1024 for the released sizes)."""
    if human_template is not None and not (Path(human_template) / "template.json").is_file():
        try:
            return LiftingMaps.official_size(human_template)
        except FileNotFoundError as err:
            raise ConversionError(f"--human-template {human_template}: {err}") from err
    return base.mask_size if base else 1024


def _choose_view_set(view_set: str | None, official: dict, checkpoint: Path) -> tuple[str, str]:
    if view_set is not None:
        source = "--view-set"
    elif official.get("hC_sam_view_type") in VIEW_SETS:
        view_set, source = official["hC_sam_view_type"], "config.json hC_sam_view_type"
    elif official.get("hC_sam_view_type") in _VIEW_SET_ALIASES:
        view_set = _VIEW_SET_ALIASES[official["hC_sam_view_type"]]
        source = f"config.json hC_sam_view_type {official['hC_sam_view_type']} (never defined by the original)"
    elif "fix" in checkpoint.resolve().name.lower():
        view_set, source = "4MV-Z_Vitru_mv2", "default for -fix checkpoints"
    else:
        view_set, source = "4MV-Z_Vitru", "default for pre-fix checkpoints"
    if view_set not in VIEW_SETS:
        raise ConversionError(f"unknown view set {view_set!r}; known: {sorted(VIEW_SETS)}")
    return view_set, source


def _choose_token_type(token_type: str | None, official: dict, mapped: MappedStateDict, vocab: dict[str, int]) -> str:
    has_split_tokens = conv.HSEG_TOKEN in vocab and conv.OSEG_TOKEN in vocab
    # The splitter exists exactly in Gen-Hu-Obj models, so its weights decide; the tokenizer cannot (ours always
    # holds [HSEG]/[OSEG], see model.tokenizer), it is only checked.
    if token_type is None:
        token_type = official.get("token_type") or ("Gen-Hu-Obj" if mapped.has_splitter else "Gen")
    if token_type not in ("Gen", "Gen-Hu-Obj"):
        raise ConversionError(f"token type {token_type!r} is not supported (Gen or Gen-Hu-Obj)")
    if token_type == "Gen-Hu-Obj" and not has_split_tokens:
        raise ConversionError("token type Gen-Hu-Obj but the checkpoint's tokenizer has no [HSEG]/[OSEG] tokens")
    return token_type


def load_official(
    checkpoint: str | Path,
    *,
    clip: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
    human_template: str | Path | None = None,
    view_set: str | None = None,
    legacy_lifting: bool = False,
    body_model: str | None = None,
    mask_size: int | None = None,
    preset: str | None = None,
    cam_encoder: str | None = None,
    token_type: str | None = None,
    dtype: str = "auto",
    contact_2d: bool = False,
) -> tuple[InteractVLMForCausalLM, PreTrainedTokenizerBase, dict]:
    """Official checkpoint directory → (our model, tokenizer, conversion report). See :func:`convert_official`.

    ``contact_2d``: the checkpoint is a 2D model (``interactvlm-2d-hcontact``): SAM segments the photo (V = 1) and
    there is no human template.
    """
    if contact_2d and human_template is not None:
        raise ConversionError("a 2D model segments the photo itself: it takes no --human-template")
    checkpoint = Path(checkpoint)
    official = read_official_config(checkpoint)
    state, layout = load_weights(checkpoint)
    report: dict = {"checkpoint": str(checkpoint), "layout": layout}

    has_clip = any(k.startswith("model.vision_tower.") for k in state)
    clip_config = None
    if clip is not None:
        clip_state, clip_config = load_clip_vision(clip)
        if has_clip:
            print(f"note: the checkpoint holds its own CLIP weights; ignoring the ones in {clip}")
            report["clip"] = "checkpoint"
        else:
            state.update(clip_state)
            report["clip"] = str(clip)
    elif not has_clip:
        raise ConversionError(
            f"{checkpoint} has no CLIP vision-tower weights (model.vision_tower.*; the released merge script drops "
            "them) and no --clip directory was given: pass --clip DIR with an HF openai/clip-vit-large-patch14 "
            "checkpoint (CLIPModel or CLIPVisionModel), or use a checkpoint that includes the vision tower")
    else:
        report["clip"] = "checkpoint"

    # ``auto`` keeps each tensor's dtype: the released merge writes the language model in bf16 and leaves SAM and
    # text_hidden_fcs in fp32; casting everything to the embedding's dtype would round those fp32 weights
    if dtype != "auto":
        state = {k: (v.to(_DTYPES[dtype]) if v.is_floating_point() else v) for k, v in state.items()}
    dtype_counts: dict[str, int] = {}
    for tensor in state.values():
        if tensor.is_floating_point():
            name = str(tensor.dtype).removeprefix("torch.")
            dtype_counts[name] = dtype_counts.get(name, 0) + 1

    if official.get("multiview_cam_cond") is False:
        official_cam = "none"
    else:
        official_cam = official.get("cam_encoder_type")
    mapped = official_to_ours(state, cam_hint=cam_encoder or official_cam)
    if mapped.cam_encoder_type == "none" and official.get("multiview_cam_cond") and official_cam not in (None, "none"):
        raise ConversionError(f"config.json says multiview_cam_cond with a {official_cam!r} camera encoder but the "
                              "checkpoint has no cam_pose_encoder.* weights")
    report["ignored_keys"] = mapped.ignored
    sd = mapped.tensors
    if cam_encoder is not None and cam_encoder != mapped.cam_encoder_type:
        raise ConversionError(f"--cam-encoder {cam_encoder} but the weights are a {mapped.cam_encoder_type!r} encoder")
    if official_cam is not None and official_cam != mapped.cam_encoder_type:
        raise ConversionError(f"config.json says cam encoder {official_cam!r} but the weights hold a "
                              f"{mapped.cam_encoder_type!r} encoder")
    report["cam_encoder"] = {"type": mapped.cam_encoder_type, "num_views": mapped.num_views}
    report["attention_splitter"] = mapped.has_splitter

    # tokenizer and vocabulary
    # an empty config: the checkpoint's config.json is a LlavaLlama one, not a transformers model config
    tokenizer = load_checkpoint_tokenizer(Path(tokenizer_dir or checkpoint))
    original_vocab = dict(tokenizer.get_vocab())
    chosen_token_type = _choose_token_type(token_type, official, mapped, original_vocab)
    add_interactvlm_tokens(tokenizer)
    added = [t for t in tokenizer.get_vocab() if t not in original_vocab]
    seg_id = tokenizer.convert_tokens_to_ids(conv.SEG_TOKEN)
    if official.get("seg_token_idx") is not None and int(official["seg_token_idx"]) != seg_id:
        raise ConversionError(f"config.json seg_token_idx={official['seg_token_idx']} but the tokenizer's [SEG] is {seg_id}")
    rows = _need(sd, LM + "embed_tokens.weight", "the vocabulary").shape[0]
    vocab_size = max(rows, len(tokenizer))
    for key in (LM + "embed_tokens.weight", "vlm.lm_head.weight"):
        if key in sd:
            sd[key] = resize_rows(sd[key], vocab_size)
    report["vocabulary"] = {"checkpoint_rows": rows, "tokenizer": len(tokenizer), "final": vocab_size, "added_tokens": added}

    # config
    preset = preset or _match_preset(sd)
    base = build_config(preset) if preset else None
    text = infer_text_config(sd, official, vocab_size)
    vision = infer_vision_config(sd, clip_config, preset)
    sam = infer_sam_config(sd)
    if "vlm.model.multi_modal_projector.linear.weight" in sd:
        projector_type, bias_key = "linear", "vlm.model.multi_modal_projector.linear.bias"
    elif "vlm.model.multi_modal_projector.linear_1.weight" in sd:
        projector_type, bias_key = "mlp2x_gelu", "vlm.model.multi_modal_projector.linear_1.bias"
    else:
        raise ConversionError("the checkpoint has no multimodal projector (model.mm_projector.*)")
    select = official.get("mm_vision_select_feature", "patch")
    if select != "patch":
        raise ConversionError(f"mm_vision_select_feature={select!r} is not supported (LLaVA-v1/LISA use 'patch')")
    seq = (vision.image_size // vision.patch_size) ** 2
    vlm = LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=vocab_size - 1,
                      image_seq_length=seq, vision_feature_layer=int(official.get("mm_vision_select_layer", -2)),
                      vision_feature_select_strategy="default", multimodal_projector_bias=bias_key in sd,
                      projector_hidden_act="gelu")
    chosen_view_set, view_source = _choose_view_set(view_set, official, checkpoint)
    body_model = body_model or (base.human_template if base else "smplh")
    if body_model not in BODY_MODEL_FILES:
        raise ConversionError(f"unknown body model {body_model!r}; known: {sorted(BODY_MODEL_FILES)}")
    num_views = mapped.num_views or (1 if contact_2d else int(official.get("multiview_channels") or 4))
    if contact_2d and num_views != 1:
        raise ConversionError(f"--contact-2d, but the checkpoint's camera encoder has {num_views} per-view layers (a 2D "
                              "model has one view: the photo); is this a 3D checkpoint?")
    if official.get("multiview_channels") and mapped.num_views and int(official["multiview_channels"]) != mapped.num_views:
        raise ConversionError(f"config.json multiview_channels={official['multiview_channels']} but the camera encoder "
                              f"has {mapped.num_views} per-view layers")
    values = dict(
        preset=preset or "custom", vlm_config=vlm.to_dict(), sam_config=sam.to_dict(), projector_type=projector_type,
        use_im_start_end=bool(official.get("mm_use_im_start_end", True)),
        out_dim=_need(sd, "text_hidden_fcs.2.weight", "out_dim").shape[0], token_type=chosen_token_type,
        cam_encoder_type=mapped.cam_encoder_type, num_views=num_views, human_view_set=chosen_view_set,
        human_template=body_model, mask_size=mask_size or _template_mask_size(human_template, base),
        human_lift_mode="legacy" if legacy_lifting else "soft", contact_2d=contact_2d,
    )
    if official.get("oC_sam_view_type") in VIEW_SETS:
        values["object_view_set"] = official["oC_sam_view_type"]
    if official.get("hC_question_type") in ("simple", "parts"):
        values["question_type"] = official["hC_question_type"]
    values.update({k: official[k] for k in _TRAINING_ARGS if official.get(k) is not None})
    if isinstance(official.get("lora_target_modules"), str):
        values["lora_target_modules"] = official["lora_target_modules"].split(",")
    if base is not None:
        values.update(train_vision_tower=base.train_vision_tower, train_language_model=base.train_language_model)
    config = InteractVLMConfig(**values)
    attach_tokenizer(config, tokenizer)
    report.update(preset=values["preset"], token_type=chosen_token_type, view_set={"value": chosen_view_set, "source": view_source},
                  lift_mode=config.human_lift_mode, mask_size=config.mask_size,
                  dtype=dtype if dtype != "auto" else {"auto (kept per tensor)": dtype_counts}, contact_2d=contact_2d,
                  sam_decoder={"layer_norm_eps": sam.mask_decoder_config.layer_norm_eps,
                               "attention_downsample_rate": sam.mask_decoder_config.attention_downsample_rate})

    # build on the meta device and assign the tensors (no second copy of a 13B model), checking strictly ourselves
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = InteractVLMForCausalLM(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [mapped.source.get(k, k) for k in sd if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint ({len(missing)}):{_list_keys(missing)}")
        if unexpected:
            parts.append(f"not part of the model ({len(unexpected)}):{_list_keys(unexpected)}")
        raise ConversionError("the checkpoint does not match the inferred model: " + "\n".join(parts))
    wrong = [f"{mapped.source.get(k, k)} {tuple(sd[k].shape)} → {k} {tuple(v.shape)}" for k, v in expected.items()
             if tuple(sd[k].shape) != tuple(v.shape)]
    if wrong:
        raise ConversionError(f"shape mismatches:{_list_keys(wrong)}")
    model.load_state_dict({k: sd[k] for k in expected}, strict=True, assign=True)
    model.eval()

    if human_template is not None:
        num_vertices = BODY_MODEL_FILES[body_model].num_vertices
        folder = Path(human_template)
        if not (folder / "template.json").is_file():  # an official folder: rewritten as a self-describing one
            folder = import_official_template(folder, config.human_view_set, num_vertices,
                                              Path(tempfile.mkdtemp(prefix="ivlm_template_")))
            report["human_template_format"] = "official (maps size read from the arrays)"
        model.add_template("human", ViewTemplate.from_folder(
            folder, config.human_view_set, config.mask_size, config.sam_image_size, config.human_lift_mode,
            name="human"))
        report["human_template"] = str(human_template)
    return model, tokenizer, report


def convert_official(checkpoint: str | Path, output_dir: str | Path, **options) -> Path:
    """Convert and save an official checkpoint as one of our model directories (``model.io.load_interactvlm``
    opens it). ``options``: see :func:`load_official`. Writes ``conversion.json`` with the decisions taken."""
    model, tokenizer, report = load_official(checkpoint, **options)
    output_dir = Path(output_dir)
    save_interactvlm(model, tokenizer, output_dir)
    (output_dir / "conversion.json").write_text(json.dumps(report, indent=2, default=str))
    if "human" not in model.templates and not model.config.contact_2d:
        config = model.config
        print(f"note: {output_dir} has no human template yet; add one before use: copy a template folder (the "
              f"official data/{VIEW_SETS[config.human_view_set].folder}, or the output of `python -m "
              f"preprocess_data.render_views --template {config.human_template} --view-set {config.human_view_set} "
              f"--sizes {config.mask_size}`) to {output_dir / 'templates' / 'human'}, or re-run with --human-template")
    return output_dir


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="official HF checkpoint directory")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--clip", type=Path, default=None, help="HF openai/clip-vit-large-patch14 directory (needed "
                        "when the checkpoint has no vision tower, as the released ones)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory (default: the checkpoint)")
    parser.add_argument("--human-template", type=Path, default=None, help="template folder of the body renders + "
                        "lifting maps (official data/hcontact_vitruvian[_mv2] or preprocess_data.render_views output)")
    parser.add_argument("--view-set", default=None, help=f"human view set, one of {sorted(VIEW_SETS)} (default: "
                        "config.json hC_sam_view_type, else 4MV-Z_Vitru_mv2 for -fix checkpoints, 4MV-Z_Vitru otherwise)")
    parser.add_argument("--legacy-lifting", action="store_true", help="the original's human lifting rule before its fix commit 79b4bf2 (lifting mode 'legacy')")
    parser.add_argument("--body-model", choices=sorted(BODY_MODEL_FILES), default=None, help="body of the template (default smplh)")
    parser.add_argument("--mask-size", type=int, default=None, help="mask / lifting-map size (default 1024)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="preset for defaults (default: matched by shapes)")
    parser.add_argument("--cam-encoder", choices=["none", "simple", "view_index", "vi_v1"], default=None,
                        help="camera-encoder type when the shapes are ambiguous")
    parser.add_argument("--token-type", choices=["Gen", "Gen-Hu-Obj"], default=None)
    parser.add_argument("--contact-2d", action="store_true",
                        help="the checkpoint is a 2D model (interactvlm-2d-hcontact: SAM on the photo, no template)")
    parser.add_argument("--dtype", choices=["auto", *_DTYPES], default="auto", help="weights dtype (auto: the checkpoint's)")
    args = parser.parse_args(argv)
    out = convert_official(
        args.checkpoint, args.output_dir, clip=args.clip, tokenizer_dir=args.tokenizer, human_template=args.human_template,
        view_set=args.view_set, legacy_lifting=args.legacy_lifting, body_model=args.body_model, mask_size=args.mask_size,
        preset=args.preset, cam_encoder=args.cam_encoder, token_type=args.token_type, dtype=args.dtype,
        contact_2d=args.contact_2d,
    )
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
