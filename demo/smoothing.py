"""Temporal smoothing of a video's per-frame predictions (``--video-frames --smooth K``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class _Item:
    payload: Any
    values: dict[str, tuple[np.ndarray, float]]  # name -> (array, weight); weight 0 = no prediction in this frame


class TemporalSmoother:
    """Streaming smoothing of per-frame arrays (vertex probabilities, mask probabilities).

    ``method="window"``: centred moving average over ``k`` frames (needs ``k // 2`` frames of look-ahead, so frames
    come out with that delay; :meth:`flush` releases the rest). ``method="ema"``: causal exponential moving average
    with ``alpha = 2 / (k + 1)``. Frames whose answer had no seg token have weight 0: they are filled from their
    neighbours instead of pulling the average to zero. Memory holds at most ``k`` frames.
    """

    def __init__(self, k: int, method: str = "window") -> None:
        if method not in ("window", "ema"):
            raise ValueError(f"unknown smoothing method {method!r}; use 'window' or 'ema'")
        self.k, self.method = max(1, int(k)), method
        self.before, self.after = (self.k - 1) // 2, self.k // 2
        self.items: list[_Item] = []
        self.offset = 0  # frame index of items[0]
        self.next = 0  # next frame index to emit
        self.state: dict[str, np.ndarray] = {}
        self.alpha = 2.0 / (self.k + 1.0)

    def push(self, payload: Any, values: dict[str, tuple[np.ndarray, float]]) -> list[tuple[Any, dict[str, np.ndarray]]]:
        if self.k == 1:
            return [(payload, {n: v for n, (v, _) in values.items()})]
        if self.method == "ema":
            out = {}
            for name, (value, weight) in values.items():
                prev = self.state.get(name)
                if weight > 0:
                    self.state[name] = value if prev is None else self.alpha * value + (1 - self.alpha) * prev
                out[name] = self.state.get(name, value)
            return [(payload, out)]
        self.items.append(_Item(payload, values))
        ready = []
        while self.next + self.after < self.offset + len(self.items):
            ready.append(self._emit(self.next))
            self.next += 1
            self._drop()
        return ready

    def flush(self) -> list[tuple[Any, dict[str, np.ndarray]]]:
        ready = []
        while self.next < self.offset + len(self.items):
            ready.append(self._emit(self.next))
            self.next += 1
        self.items, self.offset = [], self.next
        return ready

    def _drop(self) -> None:
        while self.items and self.offset < self.next - self.before:
            self.items.pop(0)
            self.offset += 1

    def _emit(self, index: int) -> tuple[Any, dict[str, np.ndarray]]:
        lo, hi = max(index - self.before, self.offset), min(index + self.after, self.offset + len(self.items) - 1)
        window = self.items[lo - self.offset: hi - self.offset + 1]
        item = self.items[index - self.offset]
        out = {}
        for name, (value, _) in item.values.items():
            weights = np.array([w.values[name][1] if name in w.values else 0.0 for w in window])
            if weights.sum() <= 0:
                out[name] = value
                continue
            total = sum(w.values[name][0].astype(np.float64) * wt for w, wt in zip(window, weights) if wt > 0)
            out[name] = (total / weights.sum()).astype(value.dtype)
        return item.payload, out
