"""Point-cloud renders and nearest-point maps (the PIAD / LEMON affordance inputs).

Reproduces PyTorch3D's ``PointsRasterizer`` (radius in NDC units, up to ``points_per_pixel`` points per pixel sorted by
depth) with an ``AlphaCompositor`` (alpha ``1 − d²/r²``, front-to-back, white where no point lands), vectorised in
numpy: the original built its pixel→point maps with Python double loops over a million pixels per view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.geometry.cameras import PerspectiveCamera
from utils.geometry.shading import WHITE, xyz_colors


@dataclass
class PointRender:
    image: np.ndarray  # [H, W, 3] float in [0, 1]
    point_ids: np.ndarray  # [H, W] int32 index of the nearest point covering the pixel, −1 if none


def render_point_cloud(
    points: np.ndarray,
    camera: PerspectiveCamera,
    image_size: int,
    radius: float = 0.05,
    points_per_pixel: int = 10,
    colors: np.ndarray | None = None,
    background: np.ndarray = WHITE,
) -> PointRender:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"expected a point cloud of shape [N, 3] with N > 0, got {points.shape}")
    if radius <= 0 or points_per_pixel <= 0:
        raise ValueError("radius and points_per_pixel must be positive")
    colors = xyz_colors(points) if colors is None else np.asarray(colors, dtype=np.float32)

    ndc = camera.project_ndc(points)  # (x_ndc, y_ndc, z_view)
    in_front = ndc[:, 2] > 1e-6
    size = image_size
    col = (1.0 - ndc[:, 0]) * size / 2.0 - 0.5  # continuous pixel index of the point
    row = (1.0 - ndc[:, 1]) * size / 2.0 - 0.5
    reach = int(np.ceil(radius * size / 2.0)) + 1
    offsets = np.arange(-reach, reach + 1)
    d_row, d_col = np.meshgrid(offsets, offsets, indexing="ij")

    point_idx = np.repeat(np.flatnonzero(in_front), d_row.size)
    cand_row = (np.round(row[point_idx]).astype(np.int64) + np.tile(d_row.ravel(), in_front.sum()))
    cand_col = (np.round(col[point_idx]).astype(np.int64) + np.tile(d_col.ravel(), in_front.sum()))
    inside = (cand_row >= 0) & (cand_row < size) & (cand_col >= 0) & (cand_col < size)
    point_idx, cand_row, cand_col = point_idx[inside], cand_row[inside], cand_col[inside]
    pix_x = 1.0 - (2.0 * cand_col + 1.0) / size
    pix_y = 1.0 - (2.0 * cand_row + 1.0) / size
    dist2 = (pix_x - ndc[point_idx, 0]) ** 2 + (pix_y - ndc[point_idx, 1]) ** 2
    hit = dist2 < radius**2
    point_idx, dist2 = point_idx[hit], dist2[hit]
    pixel = cand_row[hit] * size + cand_col[hit]

    order = np.lexsort((ndc[point_idx, 2], pixel))  # by pixel, then nearest first
    point_idx, dist2, pixel = point_idx[order], dist2[order], pixel[order]
    group_start = np.r_[0, np.flatnonzero(np.diff(pixel)) + 1]
    rank = np.arange(len(pixel)) - np.repeat(group_start, np.diff(np.r_[group_start, len(pixel)]))
    keep = rank < points_per_pixel
    point_idx, dist2, pixel, rank = point_idx[keep], dist2[keep], pixel[keep], rank[keep]

    num_pixels = size * size
    nearest = np.full(num_pixels, -1, dtype=np.int32)
    nearest[pixel[rank == 0]] = point_idx[rank == 0]
    accum = np.zeros((num_pixels, 3))
    transmittance = np.ones(num_pixels)
    alpha = 1.0 - dist2 / radius**2
    for k in range(points_per_pixel):
        sel = rank == k
        if not sel.any():
            break
        p = pixel[sel]
        accum[p] += (transmittance[p] * alpha[sel])[:, None] * colors[point_idx[sel]]
        transmittance[p] *= 1.0 - alpha[sel]
    image = np.where((nearest >= 0)[:, None], accum, np.asarray(background, dtype=np.float64)[None])
    return PointRender(image.reshape(size, size, 3).astype(np.float32), nearest.reshape(size, size))
