"""How far a fitted object is from the truth: pose errors (symmetry-aware), chamfer, contact gap, penetration.

Symmetries of the primitives (in the object's own frame): a box, bench, bed or table (top + four legs) is unchanged
by half-turns about its three axes; a bottle (a cylinder along +y) by any turn about y and a half-turn about x; a bat
(two coaxial cylinders of different radii) by any turn about y; a ball by any rotation (its rotation error is 0).
A chair (seat + backrest) has none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from optim.rotations import angle_deg, rotation_about


@dataclass(frozen=True)
class Symmetry:
    kind: str  # "none", "discrete", "axis", "axis_flip", "sphere"
    axis: tuple[float, float, float] = (0.0, 1.0, 0.0)

    def rotation_error_deg(self, R_est: np.ndarray, R_gt: np.ndarray) -> float:
        if self.kind == "sphere":
            return 0.0
        if self.kind in ("axis", "axis_flip"):
            a = np.asarray(self.axis, dtype=np.float64)
            cos = float(np.clip((R_est @ a) @ (R_gt @ a), -1.0, 1.0))
            if self.kind == "axis_flip":
                cos = abs(cos)
            return float(np.degrees(np.arccos(cos)))
        if self.kind == "discrete":
            group = [np.eye(3)] + [rotation_about(ax, 180.0) for ax in np.eye(3)]
            return min(angle_deg(R_est, R_gt @ g) for g in group)
        return angle_deg(R_est, R_gt)


SYMMETRIES = {
    "box": Symmetry("discrete"), "bench": Symmetry("discrete"), "bed": Symmetry("discrete"),
    "dining_table": Symmetry("discrete"), "supporting": Symmetry("discrete"),
    "bottle": Symmetry("axis_flip"), "baseball_bat": Symmetry("axis"), "sports_ball": Symmetry("sphere"),
    "chair": Symmetry("none"),
}


def symmetry_of(name: str) -> Symmetry:
    return SYMMETRIES.get(name, Symmetry("none"))


def surface_samples(vertices: np.ndarray, faces: np.ndarray, count: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform surface points and their barycentric face ids (fixed seed: the same points for any pose)."""
    mesh = trimesh.Trimesh(vertices, faces, process=False, validate=False)
    rng = np.random.default_rng(seed)
    areas = mesh.area_faces
    face = rng.choice(len(faces), size=count, p=areas / areas.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    return face, bary


def points_on(vertices: np.ndarray, faces: np.ndarray, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
    return np.einsum("pk,pkd->pd", bary, vertices[faces[face]])


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance between two point sets."""
    return 0.5 * (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


def contact_gap(object_contact_points: np.ndarray, human_contact_points: np.ndarray) -> float:
    """Mean distance from the object's (ground-truth) contact points to the nearest human contact point."""
    if len(object_contact_points) == 0 or len(human_contact_points) == 0:
        return float("nan")
    return float(cKDTree(human_contact_points).query(object_contact_points)[0].mean())


def penetration_depth(points: np.ndarray, human_vertices: np.ndarray, human_faces: np.ndarray) -> float:
    """Deepest of ``points`` inside the (closed) human mesh, by its exact distance to the surface; 0 if none."""
    human = trimesh.Trimesh(human_vertices, human_faces, process=False, validate=False)
    lo, hi = human_vertices.min(0), human_vertices.max(0)
    candidates = points[((points >= lo) & (points <= hi)).all(1)]
    if len(candidates) == 0:
        return 0.0
    inside = candidates[human.ray.contains_points(candidates)]
    if len(inside) == 0:
        return 0.0
    _, dist, _ = trimesh.proximity.closest_point(human, inside)
    return float(dist.max())
