"""3D → 2D: per-vertex labels to the per-view training masks (the original's mask rule).

A pixel is positive when the triangle it sees has at least ``min_vertices`` of its three vertices in the contact set
(3 for the ``4MV-Z_Vitru`` data, 2 for ``_mv2``). Pixels that do not see the template are outside the valid region
and become −1 (ignored by the losses).
"""

from __future__ import annotations

import numpy as np

from utils.geometry.lifting_maps import LiftingMaps

MASK_IGNORE_LABEL = -1
"""Target value of mask pixels outside the valid region: no 2D loss or metric counts them (the original's
``IGNORE_LABEL``; not the ``-100`` label of ignored *tokens* in ``datasets.collate``)."""


def contact_masks(labels: np.ndarray, maps: LiftingMaps, min_vertices: int = 3) -> np.ndarray:
    """``labels [N]`` or ``[B, N]`` (bool / 0–1) → ``[V, H, W]`` or ``[B, V, H, W]`` uint8 masks in {0, 1}."""
    if min_vertices not in (1, 2, 3):
        raise ValueError(f"min_vertices must be 1, 2 or 3, got {min_vertices}")
    if maps.vertex_ids.shape[-1] != 3:
        raise ValueError(f"{maps.source}: contact masks need triangle maps (K=3), got K={maps.vertex_ids.shape[-1]}")
    labels = np.asarray(labels)
    single = labels.ndim == 1
    labels = np.atleast_2d(labels)
    if labels.shape[1] != maps.num_vertices:
        raise ValueError(f"labels have {labels.shape[1]} vertices but the lifting maps ({maps.source}) {maps.num_vertices}")
    binary = labels > 0.5
    fg = maps.foreground
    ids = maps.vertex_ids[fg]  # [P, 3]
    out = np.zeros((labels.shape[0], *fg.shape), dtype=np.uint8)
    for b, lab in enumerate(binary):
        out[b][fg] = lab[ids].sum(axis=1) >= min_vertices
    return out[0] if single else out


def training_targets(labels: np.ndarray, maps: LiftingMaps, min_vertices: int = 3) -> np.ndarray:
    """Masks as the losses consume them: float32 1 / 0 inside the valid region, −1 outside."""
    masks = contact_masks(labels, maps, min_vertices).astype(np.float32)
    return np.where(maps.foreground, masks, np.float32(MASK_IGNORE_LABEL))


def visible_vertices(maps: LiftingMaps) -> np.ndarray:
    """``[N]`` bool: vertices that receive barycentric weight in at least one view (the only ones lifting can see)."""
    seen = np.zeros(maps.num_vertices, dtype=bool)
    ids, weights = maps.vertex_ids.reshape(-1, maps.vertex_ids.shape[-1]), maps.weights.reshape(-1, maps.weights.shape[-1])
    keep = (ids >= 0) & (weights > 0)
    seen[ids[keep]] = True
    return seen
