"""The training loop both pretraining stages share (``vision_pretrain`` for CLIP, ``sam_pretrain`` for the 2D model's
SAM encoder): random batches for a time (or step) budget, AdamW with a 50-step warm-up and a cosine decay over that
budget, so that a run stopped by the clock still ends at a low learning rate; and loading a checkpoint back into the
module it was trained for."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

WARMUP_STEPS = 50


def budget_lr(base_lr: float, step: int, progress: float) -> float:
    """Warm-up over the first ``WARMUP_STEPS`` steps, then cosine from ``base_lr`` to 0 as ``progress`` goes 0 → 1."""
    return base_lr * min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_within_budget(params: Iterable[torch.nn.Parameter], batch_loss: Callable[[torch.Tensor], tuple],
                        num_items: int, args, desc: str) -> tuple[int, float]:
    """Run ``batch_loss(indices) -> (loss, {name: value})`` on random batches of ``args.batch_size`` of
    ``num_items`` items until ``args.minutes`` (or ``args.max_steps``) are spent; returns (steps, seconds)."""
    params = list(params)
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    step, start, budget = 0, time.time(), args.minutes * 60
    with tqdm(desc=desc, unit="step") as bar:
        while time.time() - start < budget and (args.max_steps is None or step < args.max_steps):
            progress = (time.time() - start) / budget
            if args.max_steps:
                progress = max(progress, step / args.max_steps)
            for group in optimizer.param_groups:
                group["lr"] = budget_lr(args.lr, step, progress)
            idx = torch.from_numpy(rng.choice(num_items, size=min(args.batch_size, num_items), replace=False))
            loss, parts = batch_loss(idx)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()})
    return step, time.time() - start


def load_into(module: torch.nn.Module, path: Path, prefix: str, what: str) -> int:
    """Copy the ``prefix``-named tensors of a pretraining checkpoint into ``module`` (all of them, shapes checked);
    returns the number copied. ``what`` names the module in the error."""
    tensors = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    own = module.state_dict()
    bad = [k for k, v in tensors.items() if k not in own or own[k].shape != v.shape]
    if bad or len(tensors) != len(own):
        raise ValueError(f"{path}: does not fit this model's {what} ({len(bad)} mismatched, "
                         f"{len(tensors)} of {len(own)} tensors; was it pretrained at this input size?)")
    module.load_state_dict(tensors)
    return len(tensors)
