"""The user's choices for one conversion: the command-line flags of ``python -m model.convert_official``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ConvertOptions:
    """``None`` means: read it from the checkpoint (config.json, shapes) or take the preset's default.

    ``contact_2d``: the checkpoint is a 2D model (``interactvlm-2d-hcontact``): SAM segments the photo (V = 1) and
    there is no human template. ``dtype="auto"`` keeps each tensor's dtype: the released merge writes the language
    model in bf16 and leaves SAM and ``text_hidden_fcs`` in fp32, and casting everything to one dtype would round
    those fp32 weights.
    """

    clip: str | Path | None = None
    tokenizer_dir: str | Path | None = None
    human_template: str | Path | None = None
    view_set: str | None = None
    legacy_lifting: bool = False
    body_model: str | None = None
    mask_size: int | None = None
    preset: str | None = None
    cam_encoder: str | None = None
    token_type: str | None = None
    dtype: str = "auto"
    contact_2d: bool = False
