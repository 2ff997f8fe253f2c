"""Our model configuration from an official checkpoint: sizes from the tensor shapes, choices from config.json
(the training arguments the original writes there) and the user's flags, each checked against the others."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, SamConfig
from transformers.models.sam.configuration_sam import SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

from model.config import PRESETS, InteractVLMConfig, build_config
from model.convert.errors import ConversionError
from model.convert.keys import LM, MappedStateDict, count_indices
from model.convert.options import ConvertOptions
from utils import conversation as conv
from utils.body_models import BODY_MODEL_FILES
from utils.geometry.lifting_maps import LiftingMaps
from utils.geometry.views import VIEW_SETS

_CLIP_HEADS = {(1024, 24): 16, (768, 12): 12, (1280, 32): 16}  # openai/laion ViT-L/14, ViT-B, ViT-H towers
TRAINING_ARGS = ("ce_loss_weight", "bce_loss_weight", "dice_loss_weight", "bce_loss_alpha", "dice_loss_scale",
                 "hC_loss_weight", "oC_loss_weight", "lora_r", "lora_alpha", "lora_dropout")
# the hcontact-wScene config names a view set the original never defines; the one it meant (utils.geometry.views)
_VIEW_SET_ALIASES = {"4MV-Z_Vitru_wScene": "4MV-Z_Vitru_FootGround"}


def need(sd: dict[str, torch.Tensor], key: str, why: str) -> torch.Tensor:
    """``sd[key]``, or an error saying which tensor is missing and what it was needed for."""
    if key not in sd:
        raise ConversionError(f"the checkpoint is missing {key} (needed for {why})")
    return sd[key]


def match_preset(sd: dict[str, torch.Tensor]) -> str | None:
    """The preset whose LM width / depth and SAM width equal the checkpoint's, if any."""
    text_hidden = sd[LM + "embed_tokens.weight"].shape[1] if LM + "embed_tokens.weight" in sd else None
    text_layers = count_indices(sd, LM + "layers.{i}.input_layernorm.weight")
    sam_key = "sam.vision_encoder.patch_embed.projection.weight"
    sam_hidden = sd[sam_key].shape[0] if sam_key in sd else None
    for name in PRESETS:
        cfg = build_config(name)
        text = cfg.vlm_config.text_config
        if (text.hidden_size, text.num_hidden_layers, cfg.sam_config.vision_config.hidden_size) == (text_hidden, text_layers, sam_hidden):
            return name
    return None


def _sam_vision_config(sd: dict[str, torch.Tensor]) -> SamVisionConfig:
    ve = "sam.vision_encoder."
    patch_w = need(sd, ve + "patch_embed.projection.weight", "the SAM encoder size")
    hidden, patch = patch_w.shape[0], patch_w.shape[-1]
    grid = need(sd, ve + "pos_embed", "the SAM input size").shape[1]
    depth = count_indices(sd, ve + "layers.{i}.attn.rel_pos_h")
    if depth == 0:
        raise ConversionError("the checkpoint has no SAM image-encoder blocks (model.visual_model.image_encoder.blocks.*)")
    rel = [sd[f"{ve}layers.{i}.attn.rel_pos_h"] for i in range(depth)]
    head_dim = rel[0].shape[1]
    # global-attention blocks see the whole grid (2·grid − 1 relative positions), the others one window
    global_attn = [i for i, r in enumerate(rel) if r.shape[0] == 2 * grid - 1]
    windows = {(r.shape[0] + 1) // 2 for i, r in enumerate(rel) if i not in global_attn}
    if len(windows) > 1:
        raise ConversionError(f"SAM blocks use different window sizes {sorted(windows)}")
    return SamVisionConfig(
        hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=hidden // head_dim, image_size=grid * patch,
        patch_size=patch, output_channels=need(sd, ve + "neck.conv1.weight", "the SAM neck").shape[0],
        global_attn_indexes=global_attn, window_size=windows.pop() if windows else 14,
        mlp_dim=need(sd, ve + "layers.0.mlp.lin1.weight", "the SAM MLP size").shape[0],
        num_pos_feats=need(sd, "sam.shared_image_embedding.positional_embedding", "the SAM positional encoding").shape[1],
    )


def infer_sam_config(sd: dict[str, torch.Tensor]) -> SamConfig:
    """SAM sizes from the tensor shapes (ViT-B/L/H or anything else of the same architecture)."""
    pe, md = "sam.prompt_encoder.", "sam.mask_decoder."
    vision = _sam_vision_config(sd)
    prompt_dim = need(sd, pe + "no_mask_embed.weight", "the SAM prompt size").shape[1]
    prompt = SamPromptEncoderConfig(
        hidden_size=prompt_dim, image_size=vision.image_size, patch_size=vision.patch_size,
        mask_input_channels=need(sd, pe + "mask_embed.conv2.weight", "the SAM mask embedding").shape[0],
        num_point_embeddings=count_indices(sd, pe + "point_embed.{i}.weight"),
    )
    cross = need(sd, md + "transformer.layers.0.cross_attn_token_to_image.q_proj.weight", "the SAM decoder").shape[0]
    decoder = SamMaskDecoderConfig(
        hidden_size=prompt_dim, mlp_dim=need(sd, md + "transformer.layers.0.mlp.lin1.weight", "the SAM decoder").shape[0],
        num_hidden_layers=count_indices(sd, md + "transformer.layers.{i}.layer_norm1.weight"),
        # not visible in the shapes: stock SAM's decoder uses 32-d heads (256 / 8)
        num_attention_heads=max(1, prompt_dim // 32), attention_downsample_rate=prompt_dim // cross,
        # segment-anything's TwoWayTransformer uses nn.LayerNorm's default eps (transformers' SAM config: 1e-6)
        layer_norm_eps=1e-5,
        num_multimask_outputs=need(sd, md + "mask_tokens.weight", "the SAM decoder").shape[0] - 1,
        iou_head_depth=2 + count_indices(sd, md + "iou_prediction_head.layers.{i}.weight"),
        iou_head_hidden_dim=need(sd, md + "iou_prediction_head.proj_in.weight", "the SAM IoU head").shape[0],
    )
    return SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(), mask_decoder_config=decoder.to_dict())


def infer_vision_config(sd: dict[str, torch.Tensor], clip_config: dict | None, preset: str | None) -> CLIPVisionConfig:
    """CLIP tower sizes from the shapes; the head count (invisible in the shapes) from the CLIP directory's
    config, else the known openai towers, else the matched preset."""
    vt = "vlm.model.vision_tower."
    hidden = need(sd, vt + "embeddings.class_embedding", "the CLIP size").shape[0]
    patch = need(sd, vt + "embeddings.patch_embedding.weight", "the CLIP patch size").shape[-1]
    positions = need(sd, vt + "embeddings.position_embedding.weight", "the CLIP input size").shape[0]
    grid = round((positions - 1) ** 0.5)
    if grid * grid + 1 != positions:
        raise ConversionError(f"CLIP position embedding has {positions} rows, not (grid² + 1)")
    layers = count_indices(sd, vt + "encoder.layers.{i}.layer_norm1.weight")
    intermediate = need(sd, vt + "encoder.layers.0.mlp.fc1.weight", "the CLIP MLP size").shape[0]
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
    """LLaMA sizes from the shapes, checked against config.json's; the head count from config.json (else 128-d
    heads, as every LLaMA-2 size)."""
    emb = need(sd, LM + "embed_tokens.weight", "the language-model size")
    hidden = emb.shape[1]
    layers = count_indices(sd, LM + "layers.{i}.input_layernorm.weight")
    intermediate = need(sd, LM + "layers.0.mlp.gate_proj.weight", "the LLaMA MLP size").shape[0]
    heads = int(official.get("num_attention_heads") or hidden // 128)
    kv_heads = need(sd, LM + "layers.0.self_attn.k_proj.weight", "the LLaMA attention").shape[0] // (hidden // heads)
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


def _projector_type(sd: dict[str, torch.Tensor]) -> tuple[str, bool]:
    """LLaVA-v1's single Linear or LLaVA-1.5's two-layer MLP, and whether it has a bias."""
    if "vlm.model.multi_modal_projector.linear.weight" in sd:
        return "linear", "vlm.model.multi_modal_projector.linear.bias" in sd
    if "vlm.model.multi_modal_projector.linear_1.weight" in sd:
        return "mlp2x_gelu", "vlm.model.multi_modal_projector.linear_1.bias" in sd
    raise ConversionError("the checkpoint has no multimodal projector (model.mm_projector.*)")


def infer_vlm_config(sd: dict[str, torch.Tensor], official: dict, vocab_size: int, clip_config: dict | None,
                     preset: str | None) -> tuple[LlavaConfig, str]:
    """(LLaVA config of the CLIP tower + LLaMA + projector, projector type)."""
    text = infer_text_config(sd, official, vocab_size)
    vision = infer_vision_config(sd, clip_config, preset)
    projector_type, projector_bias = _projector_type(sd)
    select = official.get("mm_vision_select_feature", "patch")
    if select != "patch":
        raise ConversionError(f"mm_vision_select_feature={select!r} is not supported (LLaVA-v1/LISA use 'patch')")
    seq = (vision.image_size // vision.patch_size) ** 2
    vlm = LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=vocab_size - 1,
                      image_seq_length=seq, vision_feature_layer=int(official.get("mm_vision_select_layer", -2)),
                      vision_feature_select_strategy="default", multimodal_projector_bias=projector_bias,
                      projector_hidden_act="gelu")
    return vlm, projector_type


def resize_rows(matrix: torch.Tensor, rows: int) -> torch.Tensor:
    """Grow an embedding / lm_head matrix to ``rows`` rows; new rows are the mean of the existing ones."""
    if rows < matrix.shape[0]:
        raise ConversionError(f"cannot shrink a {matrix.shape[0]}-row vocabulary matrix to {rows}")
    if rows == matrix.shape[0]:
        return matrix
    mean = matrix.float().mean(0, keepdim=True).to(matrix.dtype)
    return torch.cat([matrix, mean.expand(rows - matrix.shape[0], -1)])


def template_mask_size(human_template: str | Path | None, base: InteractVLMConfig | None) -> int:
    """Mask size of a converted model: an official template folder's map size (read from its arrays), else the
    preset's (1024 for the released sizes)."""
    if human_template is not None and not (Path(human_template) / "template.json").is_file():
        try:
            return LiftingMaps.official_size(human_template)
        except FileNotFoundError as err:
            raise ConversionError(f"--human-template {human_template}: {err}") from err
    return base.mask_size if base else 1024


def choose_view_set(view_set: str | None, official: dict, checkpoint: Path) -> tuple[str, str]:
    """(human view set, where the choice came from): the flag, else config.json, else the release's default."""
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


def choose_token_type(token_type: str | None, official: dict, mapped: MappedStateDict, vocab: dict[str, int]) -> str:
    """``Gen`` or ``Gen-Hu-Obj``: the flag, else config.json, else whether the weights hold the splitter."""
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


def _num_views(mapped: MappedStateDict, official: dict, contact_2d: bool) -> int:
    """V: the camera encoder's per-view layers, else config.json ``multiview_channels`` (1 for a 2D model)."""
    num_views = mapped.num_views or (1 if contact_2d else int(official.get("multiview_channels") or 4))
    if contact_2d and num_views != 1:
        raise ConversionError(f"--contact-2d, but the checkpoint's camera encoder has {num_views} per-view layers (a 2D "
                              "model has one view: the photo); is this a 3D checkpoint?")
    if official.get("multiview_channels") and mapped.num_views and int(official["multiview_channels"]) != mapped.num_views:
        raise ConversionError(f"config.json multiview_channels={official['multiview_channels']} but the camera encoder "
                              f"has {mapped.num_views} per-view layers")
    return num_views


def _training_values(official: dict, base: InteractVLMConfig | None) -> dict:
    """Training arguments config.json carries (loss weights, LoRA, question type), and the preset's trainability."""
    values = {}
    if official.get("oC_sam_view_type") in VIEW_SETS:
        values["object_view_set"] = official["oC_sam_view_type"]
    if official.get("hC_question_type") in ("simple", "parts"):
        values["question_type"] = official["hC_question_type"]
    values.update({k: official[k] for k in TRAINING_ARGS if official.get(k) is not None})
    if isinstance(official.get("lora_target_modules"), str):
        values["lora_target_modules"] = official["lora_target_modules"].split(",")
    if base is not None:
        values.update(train_vision_tower=base.train_vision_tower, train_language_model=base.train_language_model)
    return values


def infer_config(sd: dict[str, torch.Tensor], official: dict, mapped: MappedStateDict, options: ConvertOptions, *,
                 checkpoint: Path, token_type: str, vocab_size: int,
                 clip_config: dict | None) -> tuple[InteractVLMConfig, dict]:
    """Our configuration of the renamed tensors ``sd`` and what was decided (for ``conversion.json``)."""
    preset = options.preset or match_preset(sd)
    base = build_config(preset) if preset else None
    sam = infer_sam_config(sd)
    vlm, projector_type = infer_vlm_config(sd, official, vocab_size, clip_config, preset)
    view_set, view_source = choose_view_set(options.view_set, official, checkpoint)
    body_model = options.body_model or (base.human_template if base else "smplh")
    if body_model not in BODY_MODEL_FILES:
        raise ConversionError(f"unknown body model {body_model!r}; known: {sorted(BODY_MODEL_FILES)}")
    values = dict(
        preset=preset or "custom", vlm_config=vlm.to_dict(), sam_config=sam.to_dict(), projector_type=projector_type,
        use_im_start_end=bool(official.get("mm_use_im_start_end", True)),
        out_dim=need(sd, "text_hidden_fcs.2.weight", "out_dim").shape[0], token_type=token_type,
        cam_encoder_type=mapped.cam_encoder_type, num_views=_num_views(mapped, official, options.contact_2d),
        human_view_set=view_set, human_template=body_model,
        mask_size=options.mask_size or template_mask_size(options.human_template, base),
        human_lift_mode="legacy" if options.legacy_lifting else "soft", contact_2d=options.contact_2d,
        **_training_values(official, base),
    )
    config = InteractVLMConfig(**values)
    report = dict(preset=values["preset"], token_type=token_type, view_set={"value": view_set, "source": view_source},
                  lift_mode=config.human_lift_mode, mask_size=config.mask_size,
                  sam_decoder={"layer_norm_eps": sam.mask_decoder_config.layer_norm_eps,
                               "attention_downsample_rate": sam.mask_decoder_config.attention_downsample_rate})
    return config, report
