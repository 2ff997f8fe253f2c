"""One conversion, start to end: read the checkpoint folder, rename its tensors, infer the configuration, build our
model on the meta device and assign the tensors (strictly), attach the template, save."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import init_empty_weights
from transformers import PreTrainedTokenizerBase

from model.convert.checkpoint_files import load_checkpoint_tokenizer, load_clip_vision, load_weights, read_official_config
from model.convert.config_inference import choose_token_type, infer_config, need, resize_rows
from model.convert.errors import ConversionError, list_keys
from model.convert.keys import LM, MappedStateDict, official_to_ours
from model.convert.options import DTYPES, ConvertOptions
from model.convert.templates import attach_human_template
from model.config import InteractVLMConfig
from model.interactvlm import InteractVLMForCausalLM
from model.io import attach_tokenizer, save_interactvlm
from model.tokenizer import add_interactvlm_tokens
from utils import conversation as conv
from utils.geometry.views import VIEW_SETS


def _add_clip(state: dict[str, torch.Tensor], checkpoint: Path, clip: str | Path | None, report: dict) -> dict | None:
    """Put the CLIP tower into ``state`` (the checkpoint's own, else ``clip``'s); the CLIP config dict if read."""
    has_clip = any(k.startswith("model.vision_tower.") for k in state)
    if clip is None:
        if not has_clip:
            raise ConversionError(
                f"{checkpoint} has no CLIP vision-tower weights (model.vision_tower.*; the released merge script drops "
                "them) and no --clip directory was given: pass --clip DIR with an HF openai/clip-vit-large-patch14 "
                "checkpoint (CLIPModel or CLIPVisionModel), or use a checkpoint that includes the vision tower")
        report["clip"] = "checkpoint"
        return None
    clip_state, clip_config = load_clip_vision(clip)
    if has_clip:
        print(f"note: the checkpoint holds its own CLIP weights; ignoring the ones in {clip}")
        report["clip"] = "checkpoint"
    else:
        state.update(clip_state)
        report["clip"] = str(clip)
    return clip_config


def _cast(state: dict[str, torch.Tensor], dtype: str) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The tensors in ``dtype`` (``auto``: as stored) and how many floating tensors each dtype holds."""
    if dtype != "auto":
        state = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v) for k, v in state.items()}
    counts: dict[str, int] = {}
    for tensor in state.values():
        if tensor.is_floating_point():
            name = str(tensor.dtype).removeprefix("torch.")
            counts[name] = counts.get(name, 0) + 1
    return state, counts


def _rename(state: dict[str, torch.Tensor], official: dict, cam_encoder: str | None) -> MappedStateDict:
    """Our names for the tensors; the camera encoder found must agree with config.json and ``--cam-encoder``."""
    official_cam = "none" if official.get("multiview_cam_cond") is False else official.get("cam_encoder_type")
    mapped = official_to_ours(state, cam_hint=cam_encoder or official_cam)
    if mapped.cam_encoder_type == "none" and official.get("multiview_cam_cond") and official_cam not in (None, "none"):
        raise ConversionError(f"config.json says multiview_cam_cond with a {official_cam!r} camera encoder but the "
                              "checkpoint has no cam_pose_encoder.* weights")
    if cam_encoder is not None and cam_encoder != mapped.cam_encoder_type:
        raise ConversionError(f"--cam-encoder {cam_encoder} but the weights are a {mapped.cam_encoder_type!r} encoder")
    if official_cam is not None and official_cam != mapped.cam_encoder_type:
        raise ConversionError(f"config.json says cam encoder {official_cam!r} but the weights hold a "
                              f"{mapped.cam_encoder_type!r} encoder")
    return mapped


def _vocabulary(mapped: MappedStateDict, official: dict, folder: Path, token_type: str | None,
                report: dict) -> tuple[PreTrainedTokenizerBase, str, int]:
    """(tokenizer with our added tokens, token type, vocabulary size); the embedding and lm_head rows grown to it."""
    sd = mapped.tensors
    tokenizer = load_checkpoint_tokenizer(folder)
    original_vocab = dict(tokenizer.get_vocab())
    chosen_token_type = choose_token_type(token_type, official, mapped, original_vocab)
    add_interactvlm_tokens(tokenizer)
    added = [t for t in tokenizer.get_vocab() if t not in original_vocab]
    seg_id = tokenizer.convert_tokens_to_ids(conv.SEG_TOKEN)
    if official.get("seg_token_idx") is not None and int(official["seg_token_idx"]) != seg_id:
        raise ConversionError(f"config.json seg_token_idx={official['seg_token_idx']} but the tokenizer's [SEG] is {seg_id}")
    rows = need(sd, LM + "embed_tokens.weight", "the vocabulary").shape[0]
    vocab_size = max(rows, len(tokenizer))
    for key in (LM + "embed_tokens.weight", "vlm.lm_head.weight"):
        if key in sd:
            sd[key] = resize_rows(sd[key], vocab_size)
    report["vocabulary"] = {"checkpoint_rows": rows, "tokenizer": len(tokenizer), "final": vocab_size, "added_tokens": added}
    return tokenizer, chosen_token_type, vocab_size


def _build_model(config: InteractVLMConfig, mapped: MappedStateDict) -> InteractVLMForCausalLM:
    """Our model on the meta device with the tensors assigned (no second copy of a 13B model), after checking the
    keys and shapes ourselves so that every problem is reported under its official name."""
    sd = mapped.tensors
    with init_empty_weights(include_buffers=False):
        model = InteractVLMForCausalLM(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [mapped.source.get(k, k) for k in sd if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint ({len(missing)}):{list_keys(missing)}")
        if unexpected:
            parts.append(f"not part of the model ({len(unexpected)}):{list_keys(unexpected)}")
        raise ConversionError("the checkpoint does not match the inferred model: " + "\n".join(parts))
    wrong = [f"{mapped.source.get(k, k)} {tuple(sd[k].shape)} → {k} {tuple(v.shape)}" for k, v in expected.items()
             if tuple(sd[k].shape) != tuple(v.shape)]
    if wrong:
        raise ConversionError(f"shape mismatches:{list_keys(wrong)}")
    model.load_state_dict({k: sd[k] for k in expected}, strict=True, assign=True)
    return model.eval()


def load_official(checkpoint: str | Path, **options) -> tuple[InteractVLMForCausalLM, PreTrainedTokenizerBase, dict]:
    """Official checkpoint directory → (our model, tokenizer, conversion report). ``options``: the fields of
    :class:`~model.convert.options.ConvertOptions`."""
    opts = ConvertOptions(**options)
    if opts.contact_2d and opts.human_template is not None:
        raise ConversionError("a 2D model segments the photo itself: it takes no --human-template")
    checkpoint = Path(checkpoint)
    official = read_official_config(checkpoint)
    state, layout = load_weights(checkpoint)
    report: dict = {"checkpoint": str(checkpoint), "layout": layout}
    clip_config = _add_clip(state, checkpoint, opts.clip, report)
    state, dtype_counts = _cast(state, opts.dtype)
    mapped = _rename(state, official, opts.cam_encoder)
    report["ignored_keys"] = mapped.ignored
    report["cam_encoder"] = {"type": mapped.cam_encoder_type, "num_views": mapped.num_views}
    report["attention_splitter"] = mapped.has_splitter
    tokenizer, token_type, vocab_size = _vocabulary(mapped, official, Path(opts.tokenizer_dir or checkpoint),
                                                    opts.token_type, report)
    config, decisions = infer_config(mapped.tensors, official, mapped, opts, checkpoint=checkpoint,
                                     token_type=token_type, vocab_size=vocab_size, clip_config=clip_config)
    attach_tokenizer(config, tokenizer)
    report.update(decisions, contact_2d=opts.contact_2d,
                  dtype=opts.dtype if opts.dtype != "auto" else {"auto (kept per tensor)": dtype_counts})
    model = _build_model(config, mapped)
    if opts.human_template is not None:
        attach_human_template(model, opts.human_template, report)
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
