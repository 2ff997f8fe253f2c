"""Decision thresholds chosen on validation data, folded into the model's vertex probabilities.

Every consumer of a prediction (``evaluate.py``, the demo's body-part lists and pictures, the fitting in ``optim/``)
decides contact at 0.5. A small model's probabilities are rarely centred there: the bundled tiny model's object
masks are faint, so at 0.5 most of them are empty although their ranking is informative. Rather than teach every
consumer a per-model threshold, the threshold ``t`` chosen on the validation split (``training.calibration``) is
stored in the model's config and applied once, where the vertex probabilities are made: a monotone piecewise-linear
map sends ``[0, t]`` to ``[0, 0.5]`` and ``[t, 1]`` to ``[0.5, 1]``. Rankings (and so AUC-type metrics) are unchanged;
``t = 0.5`` is the identity, which is what every released checkpoint gets.
"""

from __future__ import annotations

import torch

IDENTITY_THRESHOLD = 0.5


def centre_on_threshold(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """Probabilities remapped so that ``threshold`` becomes 0.5 (monotone, 0 → 0, 1 → 1)."""
    t = float(threshold)
    if not 0.0 < t < 1.0:
        raise ValueError(f"a decision threshold must lie strictly between 0 and 1, got {t}")
    if t == IDENTITY_THRESHOLD:
        return probs
    below = probs * (0.5 / t)
    above = 0.5 + (probs - t) * (0.5 / (1.0 - t))
    return torch.where(probs < t, below, above)


def decision_threshold(config, kind: str) -> float:
    """The config's stored threshold for ``human`` or ``object`` queries (0.5 when the config predates them)."""
    return float(getattr(config, f"{kind}_decision_threshold", IDENTITY_THRESHOLD))
