"""Mixing several readers into one training stream (the job of the original's ``HybridDataset``).

Position ``i`` of epoch ``e`` picks, from the RNG of ``(seed, e, i)`` alone: a group with probability ∝ its rate, a
source inside the group, and a uniform sample of that source. The original picks the source uniformly regardless of
its size (a 300-image source weighs as much as a 30 000-image one);
``weight_sources_by_size=True`` (default) picks it ∝ its size instead, ``False`` reproduces the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from datasets.base import sample_rng


class MixedDataset(torch.utils.data.Dataset):
    """``MixedDataset([[damon, lemon], [rich], [llava, damon_vqa]], rates=[9, 3, 1], batch_size=8, steps_per_epoch=500)``.

    Args:
        groups: a list whose items are either one dataset or a list of datasets (the sources of one group).
        rates: one positive rate per group (default: all equal).
        samples_per_epoch: the length; default ``batch_size × grad_accumulation_steps × steps_per_epoch × world_size``
            (the original's definition).
        seed: base of the per-position RNG; :meth:`set_epoch` supplies the epoch (and forwards it to the sources).
        weight_sources_by_size: choose a source inside a group ∝ its size (True) or uniformly (the original).
    """

    def __init__(
        self,
        groups: Sequence[Any],
        rates: Sequence[float] | None = None,
        *,
        samples_per_epoch: int | None = None,
        batch_size: int = 1,
        grad_accumulation_steps: int = 1,
        steps_per_epoch: int = 1,
        world_size: int = 1,
        seed: int = 0,
        weight_sources_by_size: bool = True,
    ) -> None:
        self.groups: list[list[Any]] = [list(g) if isinstance(g, (list, tuple)) else [g] for g in groups]
        if not self.groups or any(not g for g in self.groups):
            raise ValueError("MixedDataset needs at least one group, each with at least one source")
        for g, group in enumerate(self.groups):
            for s, source in enumerate(group):
                if len(source) == 0:
                    raise ValueError(f"source {s} of group {g} ({_name(source)}) is empty")
        rates = [1.0] * len(self.groups) if rates is None else [float(r) for r in rates]
        if len(rates) != len(self.groups):
            raise ValueError(f"{len(rates)} rates for {len(self.groups)} groups")
        if any(r < 0 for r in rates) or sum(rates) <= 0:
            raise ValueError(f"rates must be non-negative with a positive sum, got {rates}")
        self.rates = rates
        self.weight_sources_by_size = weight_sources_by_size
        self.source_weights = [[float(len(s)) if weight_sources_by_size else 1.0 for s in group] for group in self.groups]
        self.length = int(samples_per_epoch if samples_per_epoch is not None
                          else batch_size * grad_accumulation_steps * steps_per_epoch * world_size)
        if self.length <= 0:
            raise ValueError(f"the epoch length must be positive, got {self.length}")
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for group in self.groups:
            for source in group:
                if hasattr(source, "set_epoch"):
                    source.set_epoch(epoch)

    def locate(self, index: int) -> tuple[int, int, int]:
        """``(group, source, sample index)`` that position ``index`` of the current epoch reads."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a mixed epoch of {self.length}")
        rng = sample_rng(self.seed, self.epoch, index, "mix")
        g = rng.choices(range(len(self.groups)), weights=self.rates)[0]
        s = rng.choices(range(len(self.groups[g])), weights=self.source_weights[g])[0]
        return g, s, rng.randrange(len(self.groups[g][s]))

    def source_probabilities(self) -> list[list[float]]:
        """Probability of each source per position (for logs and tests)."""
        total = sum(self.rates)
        return [[rate / total * w / sum(weights) for w in weights] for rate, weights in zip(self.rates, self.source_weights)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        g, s, j = self.locate(index)
        sample = self.groups[g][s][j]
        sample["meta"] = {**sample.get("meta", {}), "mix_index": index, "mix_group": g, "mix_source": s}
        return sample

    def __repr__(self) -> str:
        parts = [f"{rate:g}×[{', '.join(f'{_name(s)}({len(s)})' for s in group)}]" for rate, group in zip(self.rates, self.groups)]
        return f"MixedDataset({' | '.join(parts)}, len={self.length}, by_size={self.weight_sources_by_size})"


def _name(source: Any) -> str:
    return getattr(source, "name", type(source).__name__)
