"""LoRA and the trainable set, through peft (the original's choices, which the released checkpoints were trained with).

Full presets: LoRA (r 8, α 16, dropout 0.05) on the language model's ``q_proj`` / ``v_proj`` only; fully trained:
``lm_head``, ``embed_tokens``, ``text_hidden_fcs``, SAM's ``mask_decoder``, ``cam_pose_encoder``,
``attention_splitter``; frozen: CLIP, projector, SAM image and prompt encoders, the base LM. The tiny preset trains
its CLIP and LM fully (no pretrained weights exist to keep), and a tiny 2D model its SAM image encoder too (it sees
the photo, not fixed renders).
"""

from __future__ import annotations

from peft import LoraConfig, get_peft_model

from torch import nn

FULLY_TRAINED = ("lm_head", "embed_tokens", "text_hidden_fcs", "mask_decoder", "cam_pose_encoder", "attention_splitter")


def lora_target_regex(target_modules: list[str]) -> str:
    """Only the language model's projections: CLIP and SAM also have ``q_proj``/``v_proj`` and must stay untouched."""
    return rf".*vlm\.model\.language_model\..*\.({'|'.join(target_modules)})$"


def apply_lora(model: nn.Module, use_lora: bool = True) -> nn.Module:
    """Wrap with peft LoRA per the config (when ``use_lora``) and set ``requires_grad`` per the training policy."""
    config = model.config
    if use_lora:
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, bias="none",
                          target_modules=lora_target_regex(list(config.lora_target_modules)))
        model = get_peft_model(model, lora)
    set_trainable(model, config)
    return model


def set_trainable(model: nn.Module, config) -> None:
    for name, param in model.named_parameters():
        if "lora_" in name:
            trainable = True
        elif any(part in name for part in FULLY_TRAINED):
            trainable = True
        elif config.train_language_model and ".language_model." in name:
            trainable = True
        elif config.train_vision_tower and (".vision_tower." in name or ".multi_modal_projector." in name):
            trainable = True
        elif config.train_sam_encoder and "sam.vision_encoder." in name:
            trainable = True
        else:
            trainable = False
        param.requires_grad_(trainable)


def unmatched_prefixes(model: nn.Module, prefixes) -> list[str]:
    """The parameter-name prefixes that match no parameter of ``model`` (a typo in a recipe's ``frozen`` or
    ``lr_scale``, which would otherwise silently do nothing)."""
    names = [name for name, _ in model.named_parameters()]
    return [prefix for prefix in prefixes if not any(name.startswith(prefix) for name in names)]


def freeze(model: nn.Module, prefixes: str | tuple[str, ...] | list[str]) -> int:
    """Stop training every parameter whose name starts with one of ``prefixes``; returns how many tensors that froze.

    Why: a stage that must leave the answers as an earlier stage left them (the language model, its embeddings and
    ``lm_head``, which FULLY_TRAINED would otherwise train) says so here rather than through a zero learning rate,
    so no gradient is computed for them at all. A prefix that matches no parameter is a typo and an error.
    """
    if isinstance(prefixes, str):  # `--set frozen=vlm` is one prefix, not three letters
        prefixes = (prefixes,)
    unused = unmatched_prefixes(model, prefixes)
    if unused:
        first = next(name for name, _ in model.named_parameters())
        raise ValueError(f"frozen prefixes {unused} match no parameter of the model (names start like {first!r})")
    count = 0
    for name, param in model.named_parameters():
        if any(name.startswith(prefix) for prefix in prefixes):
            param.requires_grad_(False)
            count += 1
    return count


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the LoRA deltas into the base weights and drop the peft wrapper (for release)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def trainable_summary(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
