"""Official checkpoint key names ↔ ours: one rename table, applied in both directions.

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

The camera encoder and the splitter are attributes of the original ``InteractVLMForCausalLM`` itself, hence no
``model.`` prefix; their names are those of the original's ``model/components.py`` (``CamPoseEncoder``,
``ViewIndexCamPoseEncoder``, ``VIv1CamPoseEncoder``, ``AttentionSplitter``) and of the checkpoints its merge script
writes (``tests/parity/fixtures/*/checkpoint``). Every key the table does not cover raises
:class:`~model.convert.errors.ConversionError` naming it, except the buffers in ``IGNORED_KEYS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from model.convert.errors import ConversionError, list_keys
from model.interactvlm import InteractVLMForCausalLM

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
    # camera encoders: ``simple`` = CamPoseEncoder.linear1; ``view_index`` / ``vi_v1`` = spatial_encoder
    # (Sequential, Linear at 0 and 2) + view_transforms (one Linear per view)
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

# Camera-encoder layouts under our names, as the original's classes build them: (key, weight shape) with ``D`` the
# prompt size, ``V`` the view count, ``5`` the camera parameters (distance, elevation, azimuth, x, y). The
# original's ``ViewIndexCamPoseEncoder`` and ``VIv1CamPoseEncoder`` use the same attribute names and differ only in
# the shared width (D against a fixed 128), so the shapes, not the names, tell them apart.
CAM_ENCODER_LAYOUTS: dict[str, dict[str, tuple[str, str]]] = {
    "simple": {"encoder.0": ("D", "5")},
    "view_index": {"shared.0": ("D", "5"), "shared.2": ("D", "D"), "view_layers.{v}": ("D", "D")},
    "vi_v1": {"shared.0": ("128", "5"), "shared.2": ("128", "128"), "view_layers.{v}": ("D", "128")},
}
CAM_PREFIX = "cam_pose_encoder."

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
IGNORED = [re.compile(p + r"\Z") for p in IGNORED_KEYS]
CLIP_IGNORED = [re.compile(p + r"\Z") for p in CLIP_IGNORED_KEYS]


def count_indices(sd: dict[str, torch.Tensor], template: str) -> int:
    """How many ``{i}`` indices ``template`` takes among the keys of ``sd``; they must be 0..n-1."""
    pattern = re.compile(re.escape(template).replace(r"\{i\}", r"(\d+)") + r"\Z")
    indices = {int(m.group(1)) for k in sd if (m := pattern.match(k))}
    if indices and indices != set(range(max(indices) + 1)):
        raise ConversionError(f"non-contiguous layer indices for {template}: {sorted(indices)}")
    return len(indices)


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
                           f"{list_keys(keys)}{hint}")


@dataclass
class MappedStateDict:
    """An official state dict under our names, with what the renaming found out about its modules."""

    tensors: dict[str, torch.Tensor]
    source: dict[str, str]  # our key → official key
    ignored: list[str]
    cam_encoder_type: str = "none"
    num_views: int = 0
    has_splitter: bool = False


def _layout_matches(layout: dict[str, tuple[str, str]], tensors: dict[str, torch.Tensor], views: int) -> bool:
    """Whether the camera-encoder tensors are exactly ``layout`` (keys and weight shapes) for some prompt size D."""
    expected = {}
    for name, shape in layout.items():
        for v in range(views) if "{v}" in name else [None]:
            expected[CAM_PREFIX + name.format(v=v) + ".weight"] = shape
    present = {k for k in tensors if k.startswith(CAM_PREFIX) and k.endswith(".weight")}
    if present != set(expected) or not expected:
        return False
    sizes: dict[str, int] = {}
    for key, symbols in expected.items():
        for symbol, size in zip(symbols, tensors[key].shape):
            if symbol.isdigit() and int(symbol) != size or sizes.setdefault(symbol, size) != size:
                return False
    return True


def cam_encoder_from_keys(tensors: dict[str, torch.Tensor], hint: str | None = None) -> tuple[str, int]:
    """(camera-encoder type, V) of our renamed tensors, by matching :data:`CAM_ENCODER_LAYOUTS`.

    ``view_index`` and ``vi_v1`` coincide when D is 128 too; ``hint`` (config.json ``cam_encoder_type`` or
    ``--cam-encoder``) decides then."""
    if not any(k.startswith(CAM_PREFIX) for k in tensors):
        return "none", 0
    views = count_indices(tensors, CAM_PREFIX + "view_layers.{i}.weight")
    kinds = [kind for kind, layout in CAM_ENCODER_LAYOUTS.items() if _layout_matches(layout, tensors, views)]
    if not kinds:
        found = {k: tuple(v.shape) for k, v in tensors.items() if k.startswith(CAM_PREFIX) and k.endswith("weight")}
        raise ConversionError(f"cam_pose_encoder weights {found} match none of the original's camera encoders "
                              f"(CamPoseEncoder, ViewIndexCamPoseEncoder, VIv1CamPoseEncoder)")
    if len(kinds) == 1:
        kind = kinds[0]
    elif hint in kinds:
        kind = hint
    else:
        raise ConversionError(f"cam_pose_encoder: with a {tensors[CAM_PREFIX + 'view_layers.0.weight'].shape[0]}-d "
                              f"seg embedding {' and '.join(kinds)} look alike; pass --cam-encoder")
    return kind, 0 if kind == "simple" else views


def official_to_ours(state_dict: dict[str, torch.Tensor], cam_hint: str | None = None) -> MappedStateDict:
    """Rename an official state dict to our names. Raises :class:`ConversionError` on any unrecognised key."""
    tensors: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    ignored, unknown = [], []
    for key, tensor in state_dict.items():
        if any(p.match(key) for p in IGNORED):
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
        raise ConversionError(f"parameters without an official name:{list_keys(unmapped)}")
    for alias, primary in alias_of.items():
        if alias not in state or not torch.equal(state[alias], state[primary]):
            raise ConversionError(f"{alias} must equal {primary} (one tensor in the official checkpoint)")
    return out
