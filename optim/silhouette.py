"""A differentiable soft silhouette of a triangle mesh, in plain torch (no PyTorch3D needed).

A pixel centre inside a projected triangle is covered (1); one outside every triangle gets
``2 * sigmoid(-d / sigma)``, with ``d`` its 2D distance to the nearest triangle, i.e. to the silhouette. The value is
continuous across the silhouette edge, exact at pixel centres (thresholded at 1 it is the hard render) and does not
depend on how finely the mesh is tessellated — unlike SoftRas' ``1 - prod(1 - D_f)`` (PyTorch3D's
``SoftSilhouetteShader``), which dims the inside along every internal edge and blurs the outside more the more small
faces meet there. Gradients come from the band of pixels just outside the edge, which is where the silhouette moves.

Only (pixel, face) pairs inside the face's bounding box grown by ``margin * sigma`` are evaluated, a pixel inside
some face keeps just that face, and interior faces are not grown, so the cost follows the outline, not pixels x faces. Back faces are skipped for
closed, outward-wound meshes, whose front faces alone cover the silhouette.

An occluder (the fixed human) enters as a depth map: coverage is faded by
``sigmoid((z_occluder - z_object) / depth_softness)`` with the object's depth interpolated on its face, so the
silhouette is the object's *visible* part, the thing a segmentation mask shows. ``sigma`` is in pixels so one setting
behaves the same at every window size.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from optim.camera import PinholeCamera

NEAR_Z = 1e-3


class SoftSilhouette:
    """Renders the soft silhouette ``[H, W]`` of one mesh (fixed faces, moving vertices) through a camera."""

    name = "torch"

    def __init__(self, faces: np.ndarray, camera: PinholeCamera, sigma_px: float = 0.5, margin: float = 4.0,
                 cull_back_faces: bool = False, occluder_depth: np.ndarray | None = None,
                 depth_softness: float = 0.01):
        if sigma_px <= 0:
            raise ValueError(f"sigma_px must be positive, got {sigma_px}")
        self.faces = torch.as_tensor(np.asarray(faces, dtype=np.int64))
        self.camera = camera
        self.sigma = float(sigma_px)
        self.margin_px = int(math.ceil(margin * sigma_px))
        self.cull = bool(cull_back_faces)
        self.depth_softness = float(depth_softness)
        if occluder_depth is not None:
            occluder_depth = np.asarray(occluder_depth, dtype=np.float32)
            if occluder_depth.shape != (camera.height, camera.width):
                raise ValueError(f"occluder depth {occluder_depth.shape} does not match the camera "
                                 f"{camera.height}x{camera.width}")
            self.occluder = torch.from_numpy(np.where(np.isfinite(occluder_depth), occluder_depth, 1e6).reshape(-1))
        else:
            self.occluder = None
        self.last_num_pairs = 0

    def __call__(self, vertices: torch.Tensor) -> torch.Tensor:
        cam = self.camera
        H, W = cam.height, cam.width
        uv = cam.project(vertices)  # [N, 2]
        z = vertices[:, 2]
        tri = self.faces
        keep = (z[tri] > NEAR_Z).all(dim=1)
        if self.cull:
            v3 = vertices.detach()[tri]
            normal = torch.cross(v3[:, 1] - v3[:, 0], v3[:, 2] - v3[:, 0], dim=1)
            keep &= (normal * v3[:, 0]).sum(dim=1) < 0  # facing the camera at the origin
        tri = tri[keep]
        self.last_num_pairs = 0
        if len(tri) == 0:
            return vertices.new_zeros((H, W)) + 0.0 * vertices.sum()
        pix_t, f, covered = self._pairs(uv.detach()[tri].numpy().astype(np.float64), tri, W, H)
        if len(pix_t) == 0:
            return vertices.new_zeros((H, W)) + 0.0 * vertices.sum()
        self.last_num_pairs = len(pix_t)
        p = _pixel_centres(pix_t, W, uv.dtype)
        a, b, c = uv[f[:, 0]], uv[f[:, 1]], uv[f[:, 2]]
        dist = torch.stack([_segment_distance(p, a, b), _segment_distance(p, b, c), _segment_distance(p, c, a)],
                           dim=1).min(dim=1).values
        coverage = torch.where(covered, torch.ones_like(dist), 2.0 * torch.sigmoid(-dist / self.sigma))
        if self.occluder is not None:
            zp = (_barycentric(p, a.detach(), b.detach(), c.detach()) * z[f]).sum(dim=1)
            coverage = coverage * torch.sigmoid((self.occluder[pix_t] - zp) / self.depth_softness)
        out = vertices.new_zeros(H * W)
        out = out.scatter_reduce(0, pix_t, coverage, reduce="amax", include_self=True)
        return out.reshape(H, W)

    def target_profile(self, signed_distance_px: np.ndarray) -> np.ndarray:
        """What this renderer draws at a pixel ``d`` px from a straight edge (negative inside, positive outside):
        the fit gives its target mask the same profile, so the mask term is unbiased at the true pose."""
        d = np.asarray(signed_distance_px)
        rim = 2.0 / (1.0 + np.exp(np.clip(d / self.sigma, 0.0, 60.0)))
        return np.where(d > 0, rim, 1.0)

    def _pairs(self, tri_uv: np.ndarray, tri: torch.Tensor, W: int, H: int):
        """The (pixel, face) pairs the silhouette needs, and whether the pixel is covered.

        Pass 1 tests each face's own bounding box: a pixel centre inside some face is covered and keeps that one
        face (for its depth). Pass 2 grows the boxes by the margin, but only for faces near the outline (a face
        whose grown box is all covered pixels adds nothing) and only at uncovered pixels. Most faces of a finely
        tessellated mesh are interior, so this keeps the pair count near the outline's length x the margin.
        """
        pix, face = _box_pixels(tri_uv, 0, W, H)
        if len(pix) == 0:
            return pix, pix, np.zeros(0, bool)
        t = tri_uv[face]
        depth = _inside_depth_np(np.stack([pix % W + 0.5, pix // W + 0.5], 1), t[:, 0], t[:, 1], t[:, 2])
        inside = depth >= 0
        cover_face = np.full(W * H, -1, dtype=np.int64)
        order = np.argsort(depth[inside])  # the deepest containing face wins (written last)
        cover_face[pix[inside][order]] = face[inside][order]
        covered = cover_face >= 0
        covered_pix = np.flatnonzero(covered)
        # faces whose grown box holds an uncovered pixel: summed-area table of the uncovered map
        m = self.margin_px
        lo, hi = _grown_box(tri_uv, m, W, H)
        table = np.zeros((H + 1, W + 1), dtype=np.int64)
        table[1:, 1:] = (~covered).reshape(H, W).cumsum(0).cumsum(1)
        open_count = (table[hi[:, 1] + 1, hi[:, 0] + 1] - table[lo[:, 1], hi[:, 0] + 1]
                      - table[hi[:, 1] + 1, lo[:, 0]] + table[lo[:, 1], lo[:, 0]])
        boundary = np.flatnonzero((open_count > 0) & (hi >= lo).all(1))
        pix2, face2 = _box_pixels(tri_uv[boundary], m, W, H)
        keep = ~covered[pix2]
        pix2, face2 = pix2[keep], boundary[face2[keep]]
        pix_all = np.concatenate([covered_pix, pix2])
        face_all = np.concatenate([cover_face[covered_pix], face2])
        is_covered = np.concatenate([np.ones(len(covered_pix), bool), np.zeros(len(pix2), bool)])
        return torch.from_numpy(pix_all), tri[torch.from_numpy(face_all)], torch.from_numpy(is_covered)


def _grown_box(tri_uv: np.ndarray, margin: int, W: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive pixel-index box ``[lo, hi]`` of the pixel centres within ``margin`` px of each face's box."""
    lo = np.ceil(tri_uv.min(axis=1) - 0.5 - margin).astype(np.int64)
    hi = np.floor(tri_uv.max(axis=1) - 0.5 + margin).astype(np.int64)
    lo = np.clip(lo, 0, [W - 1, H - 1])
    hi = np.clip(hi, -1, [W - 1, H - 1])
    hi = np.maximum(hi, lo - 1)
    return lo, hi


def _box_pixels(tri_uv: np.ndarray, margin: int, W: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (pixel index, face index) with the pixel centre in the face's box grown by ``margin``."""
    lo, hi = _grown_box(tri_uv, margin, W, H)
    width = hi[:, 0] - lo[:, 0] + 1
    area = width * (hi[:, 1] - lo[:, 1] + 1)
    valid = np.flatnonzero(area > 0)
    if len(valid) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    area, lo, width = area[valid], lo[valid], width[valid]
    face_idx = np.repeat(valid, area)
    local = np.arange(area.sum()) - np.repeat(np.cumsum(area) - area, area)
    w_rep = np.repeat(width, area)
    col = np.repeat(lo[:, 0], area) + local % w_rep
    row = np.repeat(lo[:, 1], area) + local // w_rep
    return row * W + col, face_idx


def _inside_depth_np(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Distance (px) from a point inside a triangle to its nearest edge line; negative outside (numpy)."""
    def cross(u, v):
        return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]

    orient = np.where(cross(b - a, c - a) >= 0, 1.0, -1.0)
    d = [cross(e1 - e0, p - e0) * orient / np.maximum(np.linalg.norm(e1 - e0, axis=1), 1e-12)
         for e0, e1 in ((b, c), (c, a), (a, b))]
    return np.minimum(np.minimum(d[0], d[1]), d[2])


def _pixel_centres(pix: torch.Tensor, width: int, dtype) -> torch.Tensor:
    return torch.stack([(pix % width).to(dtype) + 0.5, (pix // width).to(dtype) + 0.5], dim=1)


def _barycentric(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Screen-space barycentrics of points w.r.t. 2D triangles, clamped to the triangle (for depth lookups)."""
    def cross(u, v):
        return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]

    w = torch.stack([cross(c - b, p - b), cross(a - c, p - c), cross(b - a, p - a)], dim=1)
    w = w * torch.where(cross(b - a, c - a) >= 0, 1.0, -1.0).to(p.dtype)[:, None]
    w = w.clamp(min=0)
    return w / w.sum(dim=1, keepdim=True).clamp(min=1e-12)


def _segment_distance(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ab = b - a
    t = ((p - a) * ab).sum(dim=1) / (ab * ab).sum(dim=1).clamp(min=1e-12)
    closest = a + t.clamp(0.0, 1.0)[:, None] * ab
    return torch.sqrt(((p - closest) ** 2).sum(dim=1) + 1e-12)


def soft_iou(silhouette: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``sum(S*M) / sum(S + M - S*M)`` over the (optionally weighted) pixels."""
    inter = silhouette * target
    union = silhouette + target - inter
    if weight is not None:
        inter, union = inter * weight, union * weight
    return inter.sum() / union.sum().clamp(min=1e-6)


def silhouette_centroid(silhouette: torch.Tensor) -> torch.Tensor:
    """Coverage-weighted mean pixel position ``(u, v)`` (pixel centres at +0.5)."""
    H, W = silhouette.shape
    v = torch.arange(H, dtype=silhouette.dtype) + 0.5
    u = torch.arange(W, dtype=silhouette.dtype) + 0.5
    total = silhouette.sum().clamp(min=1e-6)
    return torch.stack([(silhouette.sum(0) * u).sum() / total, (silhouette.sum(1) * v).sum() / total])
