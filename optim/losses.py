"""The fitting objectives: the original's three terms and ours.

Original (all weights and definitions from its ``optim/``):

* mask ``1 - sum(S*M) / sum(S + M)`` (its "IoU" divides by the *sum*, so a perfect overlap scores 0.5);
* centroid: squared pixel distance between the silhouette's centroid and the centre of the mask's box;
* contact: the distance of *every* (object vertex, human vertex) pair weighted by the product of their contact
  probabilities, averaged: it pulls the two contact regions' centres together but cannot align their shapes.

Ours:

* mask ``1 - IoU`` with a real union, on the *visible* silhouette (the fixed human occludes the object, as in the
  photo's mask);
* contact correspondence: every object contact point to its nearest human contact point and back (a chamfer between
  the two regions, probability-weighted), robust (Charbonnier) so a few wrong predictions cannot dominate;
* penetration: object vertices inside the body and body vertices inside the object, by the signed distance to the
  nearest vertex of the other surface along its normal, beyond a tolerance (real contact squeezes a little);
* scale prior ``log(s)²`` when the scale is free.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from optim.silhouette import silhouette_centroid, soft_iou

CHARBONNIER_EPS = 0.005  # metres: below this the contact distance is treated as quadratic
PENETRATION_RADIUS = 0.08  # only nearest vertices closer than this count (the normal test is local)
MIN_PAIR_WEIGHT = 1e-3  # all-pairs contact: vertices below this probability contribute (almost) nothing


def original_mask_loss(silhouette: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return 1.0 - (silhouette * mask).sum() / (silhouette + mask).sum().clamp(min=1e-6)


def iou_loss(silhouette: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return 1.0 - soft_iou(silhouette, mask)


def centroid_loss(silhouette: torch.Tensor, target_uv: torch.Tensor, to_image_scale: torch.Tensor) -> torch.Tensor:
    """Squared distance in *photo* pixels (the original's units) between silhouette centroid and target."""
    return (((silhouette_centroid(silhouette) - target_uv) / to_image_scale) ** 2).sum()


class AllPairsContact:
    """The original's contact term, restricted to vertices with non-negligible probability (same value)."""

    def __init__(self, human_vertices: np.ndarray, human_probs: np.ndarray, object_probs: np.ndarray):
        self.h_ids = np.flatnonzero(human_probs > MIN_PAIR_WEIGHT)
        self.o_ids = torch.from_numpy(np.flatnonzero(object_probs > MIN_PAIR_WEIGHT))
        self.h = torch.from_numpy(human_vertices[self.h_ids]).float()
        w = np.outer(object_probs[self.o_ids.numpy()], human_probs[self.h_ids])
        self.w = torch.from_numpy(w / max(w.sum(), 1e-12)).float()

    def __call__(self, object_vertices: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(object_vertices[self.o_ids], self.h)
        return (d * self.w).sum()


class CorrespondenceContact:
    """Symmetric probability-weighted chamfer between the object and human contact regions (metres)."""

    def __init__(self, human_points: np.ndarray, human_weights: np.ndarray, object_ids: np.ndarray,
                 object_weights: np.ndarray):
        self.h = torch.from_numpy(human_points).float()
        self.wh = torch.from_numpy(human_weights / human_weights.sum()).float()
        self.o_ids = torch.from_numpy(object_ids)
        self.wo = torch.from_numpy(object_weights / object_weights.sum()).float()

    def __call__(self, object_vertices: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(object_vertices[self.o_ids], self.h)
        o_to_h = torch.sqrt(d.min(dim=1).values ** 2 + CHARBONNIER_EPS ** 2) - CHARBONNIER_EPS
        h_to_o = torch.sqrt(d.min(dim=0).values ** 2 + CHARBONNIER_EPS ** 2) - CHARBONNIER_EPS
        return 0.5 * ((o_to_h * self.wo).sum() + (h_to_o * self.wh).sum())


class Penetration:
    """Mean penetration depth beyond ``tolerance`` (metres), both ways, from nearest-vertex signed distances."""

    def __init__(self, human_vertices: np.ndarray, human_normals: np.ndarray, object_normals: np.ndarray,
                 tolerance: float = 0.01):
        self.h = torch.from_numpy(human_vertices).float()
        self.hn = torch.from_numpy(human_normals).float()
        self.on = torch.from_numpy(object_normals).float()
        self.tree = cKDTree(human_vertices)
        self.tolerance = tolerance

    def __call__(self, object_vertices: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        ov = object_vertices.detach().numpy()
        dist, idx = self.tree.query(ov, distance_upper_bound=PENETRATION_RADIUS)
        near = np.flatnonzero(np.isfinite(dist))
        loss = object_vertices.new_zeros(())
        if len(near):
            i = torch.from_numpy(idx[near])
            sd = ((object_vertices[near] - self.h[i]) * self.hn[i]).sum(-1)
            loss = loss + torch.relu(-sd - self.tolerance).sum() / len(ov)
        lo, hi = ov.min(0) - PENETRATION_RADIUS, ov.max(0) + PENETRATION_RADIUS
        hv = self.h.numpy()
        candidates = np.flatnonzero(((hv >= lo) & (hv <= hi)).all(1))
        if len(candidates):
            dist, idx = cKDTree(ov).query(hv[candidates], distance_upper_bound=PENETRATION_RADIUS)
            ok = np.isfinite(dist)
            if ok.any():
                j = torch.from_numpy(idx[ok])
                normals = self.on[j] @ rotation.T
                sd = ((self.h[candidates[ok]] - object_vertices[j]) * normals).sum(-1)
                loss = loss + torch.relu(-sd - self.tolerance).sum() / len(hv)
        return loss
