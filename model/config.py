"""``InteractVLMConfig`` and the size presets (``tiny``, ``lisa-7b``, ``lisa-13b``).

One config object holds every hyper-parameter a checkpoint depends on — the VLM (CLIP + projector + Llama, as a
``LlavaConfig``), SAM (a ``SamConfig``), the view sets, seg tokens, camera encoder and loss weights — so
``config.json`` alone rebuilds the model. Presets live in one registry of small builders that differ only in sizes,
as segment-anything's ``build_sam`` does.
"""

from __future__ import annotations

from typing import Callable, Literal

from huggingface_hub.dataclasses import strict
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, PreTrainedConfig, SamConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.sam.configuration_sam import SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig


@strict
class InteractVLMConfig(PreTrainedConfig):
    r"""
    vlm_config: ``LlavaConfig`` of the CLIP vision tower + projector + Llama language model.
    sam_config: ``SamConfig`` of the SAM image encoder, prompt encoder and mask decoder.
    projector_type: ``linear`` (LLaVA-v1 / LISA) or ``mlp2x_gelu`` (LLaVA-1.5).
    use_im_start_end: wrap the image tokens as ``<im_start> … <im_end>`` (always on in the released models).
    out_dim: size of the [SEG] embedding fed to SAM (``text_hidden_fcs`` output), = SAM's prompt size.
    token_type: ``Gen`` ([SEG] for every task) or ``Gen-Hu-Obj`` ([HSEG] / [OSEG] + the attention splitter).
    seg_token_index, hseg_token_index, oseg_token_index, im_start_token_index, im_end_token_index: token ids, set
        when the tokenizer is attached (checked at load time against the saved tokenizer).
    cam_encoder_type: view conditioning of the [SEG] embedding: ``none``, ``simple`` (added), ``view_index`` or
        ``vi_v1`` (multiplicative per-view gates; every released model).
    num_views: V, number of rendered views per query (1 for a 2D model).
    contact_2d: a 2D contact model (the original's ``interactvlm-2d-hcontact``): SAM segments the photo itself,
        ``num_views`` is 1 and nothing is lifted to vertices; masks come back in the photo's frame.
    per_view_tokens: give view v's decoder only its own view token (new training); ``False`` reproduces the released
        models, where every view's decoder sees all V tokens.
    seg_batch_norm: end ``text_hidden_fcs`` with a BatchNorm over the gathered seg embeddings (new training; the
        released models have none). Without it a tiny model's projection can learn one constant prompt within an
        epoch (spread across samples 0.08 of its norm), the quickest way to the average mask; per-feature batch
        statistics keep the prompts' variation across samples at unit scale, so only the image can set the mask.
    opening_turn: questions about a person (``utils.conversation.OPENING_TASKS``) start with a fixed first turn,
        "What is the person doing?", which the model answers itself before it reads the task question (new training;
        ``False`` for the released models). The pose is then said before the object is named, so it can only come
        from the photo; ``InteractVLMForCausalLM.contact_prompts`` builds the two-turn prompts.
    opening_parts: with ``opening_turn``, the opening answer was trained to name the parts of the person's main
        interaction too ("The person is holding; the main contact is at the right hand.",
        ``utils.conversation.OPENING_ANSWER_WITH_PARTS``), so a task answer can take its parts from the model's own
        reading of the photo. Only the training data changes (the model generates its opening answer freely).
    view_splitter: with ``Gen-Hu-Obj``, pass the view prompts through the attention splitter (every released joint
        model). ``False`` (new training) sends each [HSEG] / [OSEG] embedding straight to its own template's
        decoder: on the bundled tiny model's seg states the camera gates and the splitter let the SAM decoder render
        a few stock masks only (``training.mask_branch_probe``; README, "Where the contact is lost").
    human_view_set, object_view_set: names in ``utils.geometry.views.VIEW_SETS``.
    human_template: body model of the human renders / lifting maps (``smplh`` for released models, ``synthbody``
        for the bundled tiny one).
    mask_size: resolution of predicted masks and lifting maps (1024 released; smaller for tiny).
    human_lift_mode, object_lift_mode: lifting rules (``soft``/``hard``/``smooth``/``legacy``), see ``model.lifting``.
    human_decision_threshold, object_decision_threshold: the vertex probability at which contact is decided, chosen
        on validation (``training.calibration``) and folded into the output so that consumers decide at 0.5 (see
        ``model.calibration``); 0.5 (the identity) for every released model.
    *_loss_weight, bce_loss_alpha, dice_loss_scale: loss weights (defaults = the original's released training configs; see model.losses).
    lora_*: LoRA settings used for training (recorded so a checkpoint documents how it was made).
    train_vision_tower, train_language_model: fully train CLIP / the LM (only the ``tiny`` preset, which has no
        pretrained weights to keep); the full presets keep the original's freezing.
    train_sam_encoder: train SAM's image encoder too (2D tiny models only: a randomly initialised encoder that
        sees the photo must learn; 3D templates keep their cached, frozen embeddings).
    """

    model_type = "interactvlm"
    sub_configs_defaults = {
        "vlm_config": SubConfigSpec(config_class=LlavaConfig),
        "sam_config": SubConfigSpec(config_class=SamConfig),
    }

    vlm_config: dict | PreTrainedConfig | None = None
    sam_config: dict | PreTrainedConfig | None = None
    preset: str = "custom"
    projector_type: Literal["linear", "mlp2x_gelu"] = "linear"
    use_im_start_end: bool = True
    out_dim: int = 256
    token_type: Literal["Gen", "Gen-Hu-Obj"] = "Gen"
    seg_token_index: int | None = None
    hseg_token_index: int | None = None
    oseg_token_index: int | None = None
    im_start_token_index: int | None = None
    im_end_token_index: int | None = None
    cam_encoder_type: Literal["none", "simple", "view_index", "vi_v1"] = "vi_v1"
    num_views: int = 4
    contact_2d: bool = False
    per_view_tokens: bool = False
    seg_batch_norm: bool = False
    opening_turn: bool = False
    opening_parts: bool = False
    view_splitter: bool = True
    human_view_set: str = "4MV-Z_Vitru_mv2"
    object_view_set: str = "4MV-Z_HM_BM"
    human_template: str = "smplh"
    mask_size: int = 1024
    human_lift_mode: Literal["soft", "hard", "smooth", "legacy"] = "soft"
    object_lift_mode: Literal["soft", "hard", "smooth", "legacy"] = "hard"
    human_decision_threshold: float = 0.5
    object_decision_threshold: float = 0.5
    question_type: Literal["simple", "parts"] = "parts"
    ce_loss_weight: float = 1.0
    bce_loss_weight: float = 2.0
    dice_loss_weight: float = 1.0
    bce_loss_alpha: float = 0.5
    dice_loss_scale: float = 1.0
    hC_loss_weight: float = 3.0
    oC_loss_weight: float = 0.0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    train_vision_tower: bool = False
    train_language_model: bool = False
    train_sam_encoder: bool = False
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if self.lora_target_modules is None:
            self.lora_target_modules = ["q_proj", "v_proj"]
        super().__post_init__(**kwargs)

    @property
    def text_hidden_size(self) -> int:
        return self.vlm_config.text_config.hidden_size

    @property
    def image_seq_length(self) -> int:
        vision = self.vlm_config.vision_config
        return (vision.image_size // vision.patch_size) ** 2

    @property
    def sam_image_size(self) -> int:
        return self.sam_config.vision_config.image_size


# ---------------------------------------------------------------------------------------------------------------
# presets

def _sam_config(hidden: int, depth: int, heads: int, global_attn: list[int], image_size: int = 1024, window: int = 14,
                prompt_dim: int = 256, decoder_mlp: int = 2048, decoder_heads: int = 8) -> SamConfig:
    patch = 16
    return SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=heads, image_size=image_size,
            patch_size=patch, output_channels=prompt_dim, global_attn_indexes=global_attn, window_size=window,
            mlp_dim=hidden * 4, num_pos_feats=prompt_dim // 2,
            # transformers' SAM default (1e-10) assumes pretrained weights are always loaded; a randomly initialised
            # encoder (the tiny preset) would then output all-zero embeddings and the decoder would see nothing.
            initializer_range=0.02,
        ).to_dict(),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=prompt_dim, image_size=image_size, patch_size=patch).to_dict(),
        # segment-anything's TwoWayTransformer normalises with nn.LayerNorm's eps (1e-5), not transformers' 1e-6
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=prompt_dim, mlp_dim=decoder_mlp, num_attention_heads=decoder_heads, iou_head_hidden_dim=prompt_dim,
            layer_norm_eps=1e-5,
        ).to_dict(),
    )


SAM_ENCODERS: dict[str, Callable[..., SamConfig]] = {
    "vit_h": lambda **kw: _sam_config(1280, 32, 16, [7, 15, 23, 31], **kw),
    "vit_l": lambda **kw: _sam_config(1024, 24, 16, [5, 11, 17, 23], **kw),
    "vit_b": lambda **kw: _sam_config(768, 12, 12, [2, 5, 8, 11], **kw),
    # CPU-sized: 128-px input, 8x8 embedding, 64-d prompts (a wider decoder: prompt_dim=, decoder_mlp=, decoder_heads=)
    "tiny": lambda image_size=128, **kw: _sam_config(64, 2, 2, [1], image_size=image_size, window=4,
                                                     **{"prompt_dim": 64, "decoder_mlp": 128, "decoder_heads": 2, **kw}),
}


def _clip_large_224() -> dict:
    return CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                            image_size=224, patch_size=14, projection_dim=768).to_dict()


def _vlm_config(vision: dict, text: LlamaConfig, projector_bias: bool = True) -> dict:
    vision_cfg = CLIPVisionConfig(**{k: v for k, v in vision.items() if k != "model_type"})
    seq = (vision_cfg.image_size // vision_cfg.patch_size) ** 2
    return LlavaConfig(vision_config=vision, text_config=text.to_dict(), image_token_index=text.vocab_size - 1,
                       image_seq_length=seq, vision_feature_layer=-2, vision_feature_select_strategy="default",
                       multimodal_projector_bias=projector_bias).to_dict()


def _tiny(vision_image_size: int = 112, **overrides) -> InteractVLMConfig:
    """The CPU preset. ``vision_image_size`` sets the CLIP input (14-px patches): 112 px gives 64 image tokens, 224 px
    LLaVA's 256, at which a SynthContact hand or foot covers a patch or two instead of a third of one."""
    vision = CLIPVisionConfig(hidden_size=96, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
                              image_size=vision_image_size, patch_size=14, projection_dim=96).to_dict()
    text = LlamaConfig(vocab_size=1024, hidden_size=160, intermediate_size=320, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    values = dict(preset="tiny", vlm_config=_vlm_config(vision, text), sam_config=SAM_ENCODERS["tiny"]().to_dict(),
                  out_dim=64, human_template="synthbody", mask_size=128, train_vision_tower=True,
                  train_language_model=True)
    values.update(overrides)
    return InteractVLMConfig(**values)


def _lisa(hidden: int, layers: int, heads: int, intermediate: int, name: str, **overrides) -> InteractVLMConfig:
    # LISA's vocabulary: LLaMA-2's 32000 + <im_patch>, <im_start>, <im_end>, [SEG]; + <image> for transformers' LLaVA.
    text = LlamaConfig(vocab_size=32005, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=4096,
                       rms_norm_eps=1e-5)
    values = dict(preset=name, vlm_config=_vlm_config(_clip_large_224(), text), sam_config=SAM_ENCODERS["vit_h"]().to_dict())
    values.update(overrides)
    return InteractVLMConfig(**values)


PRESETS: dict[str, Callable[..., InteractVLMConfig]] = {
    "tiny": _tiny,
    "lisa-7b": lambda **kw: _lisa(4096, 32, 32, 11008, "lisa-7b", **kw),
    "lisa-13b": lambda **kw: _lisa(5120, 40, 40, 13824, "lisa-13b", **kw),
}


def build_config(preset: str, **overrides) -> InteractVLMConfig:
    """A preset's config with any field overridden, e.g. ``build_config("tiny", per_view_tokens=True)``."""
    try:
        builder = PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}") from None
    return builder(**overrides)


# Lets AutoConfig / AutoTokenizer open our model directories offline.
from transformers import AutoConfig  # noqa: E402

AutoConfig.register(InteractVLMConfig.model_type, InteractVLMConfig, exist_ok=True)
