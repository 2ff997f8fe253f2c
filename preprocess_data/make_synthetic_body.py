"""Generate "SynthBody", a procedural humanoid stored in the SMPL file format.

The licensed SMPL model cannot ship with this repository, yet the rendering, lifting and training code all need *a*
posable body with SMPL's skeleton, conventions and file layout. This script builds one from scratch, deterministically:

1. a signed-distance union (smooth min) of tapered capsules, ellipsoids and rounded boxes placed on SMPL's 24-joint
   skeleton in SMPL's rest pose (metres, +y up, facing +z, subject's left = +x, T-pose);
2. marching cubes on an 8 mm grid (fine enough to resolve the thumb), quadric decimation of the left half to ~3 500
   vertices, mirrored so the body is exactly left/right symmetric, and a light Taubin smoothing;
3. skinning weights from a soft-min over the primitive SDFs (each primitive rotates with one joint), a non-negative
   joint regressor fitted to the designed joints, ten hand-designed shape directions, zero pose correctives, a
   16-part segmentation and the extra-joint vertex ids that ``smplx``'s ``VertexJointSelector`` indexes.

Run ``python -m preprocess_data.make_synthetic_body [--output-dir data/body_models/synthbody]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
PART_NAMES: tuple[str, ...] = (
    "head", "neck", "torso", "hips", "left upper arm", "right upper arm", "left forearm", "right forearm",
    "left hand", "right hand", "left thigh", "right thigh", "left calf", "right calf", "left foot", "right foot",
)
# Left joint -> right joint; every left-side primitive is mirrored (x -> -x) onto the right side with this map.
LEFT_TO_RIGHT: dict[int, int] = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 22: 23}

# Designed rest-pose joints of the left side and the midline; the right side is mirrored. Placed like SMPL's template.
_MIDLINE_AND_LEFT_JOINTS: dict[int, tuple[float, float, float]] = {
    0: (0.0, -0.22, 0.0), 1: (0.08, -0.31, 0.0), 3: (0.0, -0.11, -0.01), 4: (0.10, -0.70, 0.01),
    6: (0.0, 0.02, -0.01), 7: (0.09, -1.085, -0.03), 9: (0.0, 0.075, 0.0), 10: (0.11, -1.13, 0.10),
    12: (0.0, 0.29, -0.02), 13: (0.075, 0.20, -0.01), 15: (0.0, 0.37, 0.01), 16: (0.175, 0.225, -0.015),
    18: (0.43, 0.215, -0.025), 20: (0.68, 0.215, -0.02), 22: (0.765, 0.207, -0.02),
}

GRID_SPACING = 0.008
GRID_LO = np.array([-0.92, -1.20, -0.20]) + 0.0037  # off the primitives' round numbers: no exact zeros on grid nodes
GRID_HI = np.array([0.92, 0.62, 0.26])
TARGET_FACES = 13_996  # a closed genus-0 mesh with F faces has F / 2 + 2 vertices: ~7 000 after mirroring
SKIN_TAU = 0.012  # metres; softness of the primitive soft-min used for skinning weights and segmentation
NUM_BETAS = 10
NUM_POSE_BASIS = 207


def designed_joints() -> np.ndarray:
    """Return the 24 designed rest-pose joint positions [24, 3], mirroring the left side onto the right."""
    joints = np.zeros((24, 3))
    for idx, pos in _MIDLINE_AND_LEFT_JOINTS.items():
        joints[idx] = pos
        if idx in LEFT_TO_RIGHT:
            joints[LEFT_TO_RIGHT[idx]] = (-pos[0], pos[1], pos[2])
    return joints


# ----------------------------------------------------------------------------------------------------------------
# Signed-distance primitives
# ----------------------------------------------------------------------------------------------------------------


def _round_cone(p: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> np.ndarray:
    """Exact SDF of a capsule whose radius tapers from ``ra`` at ``a`` to ``rb`` at ``b`` (I. Quilez)."""
    ba = b - a
    l2 = float(ba @ ba)
    rr = ra - rb
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    pa = p - a
    y = pa @ ba
    z = y - l2
    x2 = np.sum((pa * l2 - y[:, None] * ba) ** 2, axis=1)
    y2 = y * y * l2
    z2 = z * z * l2
    k = np.sign(rr) * rr * rr * x2
    side = (np.sqrt(x2 * a2 * il2) + y * rr) * il2 - ra
    cap_b = np.sqrt(x2 + z2) * il2 - rb
    cap_a = np.sqrt(x2 + y2) * il2 - ra
    return np.where(np.sign(z) * a2 * z2 > k, cap_b, np.where(np.sign(y) * a2 * y2 < k, cap_a, side))


def _ellipsoid(p: np.ndarray, c: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Near-exact ellipsoid SDF (Quilez's bound); only its zero set and the near field matter here."""
    q = p - c
    k0 = np.linalg.norm(q / r, axis=1)
    k1 = np.maximum(np.linalg.norm(q / (r * r), axis=1), 1e-9)
    return k0 * (k0 - 1.0) / k1


def _round_box(p: np.ndarray, c: np.ndarray, half: np.ndarray, radius: float) -> np.ndarray:
    """Exact SDF of an axis-aligned box with rounded edges; ``half`` includes the rounding radius."""
    q = np.abs(p - c) - (half - radius)
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    inside = np.minimum(q.max(axis=1), 0.0)
    return outside + inside - radius


@dataclass(frozen=True)
class Primitive:
    """One body piece: a shape, the joint whose rotation it follows, its part label and how softly it blends in.

    ``kind`` is ``cone`` (params a, b, ra, rb), ``ellipsoid`` (c, r) or ``box`` (c, half, radius). ``blend`` is the
    smooth-min radius used when the piece is added to the union: larger on the torso for soft transitions, small on
    the thumb and nose so the features stay distinct.
    """

    name: str
    kind: str
    params: tuple
    joint: int
    part: str
    blend: float = 0.02

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """Signed distance of points ``p`` [M, 3] (negative inside)."""
        arr = [np.asarray(x, dtype=np.float64) for x in self.params]
        if self.kind == "cone":
            return _round_cone(p, arr[0], arr[1], float(arr[2]), float(arr[3]))
        if self.kind == "ellipsoid":
            return _ellipsoid(p, arr[0], arr[1])
        if self.kind == "box":
            return _round_box(p, arr[0], arr[1], float(arr[2]))
        raise ValueError(f"unknown primitive kind {self.kind!r}")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds of the solid, so the grid is evaluated only where the piece can matter."""
        arr = [np.asarray(x, dtype=np.float64) for x in self.params]
        if self.kind == "cone":
            r = max(float(arr[2]), float(arr[3]))
            return np.minimum(arr[0], arr[1]) - r, np.maximum(arr[0], arr[1]) + r
        if self.kind == "ellipsoid":
            return arr[0] - arr[1], arr[0] + arr[1]
        return arr[0] - arr[1], arr[0] + arr[1]

    def mirrored(self) -> Primitive:
        """The right-side twin: x -> -x, left joint -> right joint, 'left ...' part -> 'right ...'."""
        flip = np.array([-1.0, 1.0, 1.0])
        if self.kind == "cone":
            a, b, ra, rb = self.params
            params = (tuple(np.asarray(a) * flip), tuple(np.asarray(b) * flip), ra, rb)
        else:
            params = (tuple(np.asarray(self.params[0]) * flip),) + tuple(self.params[1:])
        return replace(
            self, name=self.name.replace("left", "right"), params=params,
            joint=LEFT_TO_RIGHT.get(self.joint, self.joint), part=self.part.replace("left", "right"),
        )


def body_primitives() -> list[Primitive]:
    """The body as a list of primitives, midline first, then left pieces followed by their mirrored twins."""
    j = designed_joints()
    midline = [
        Primitive("hips", "ellipsoid", ((0.0, -0.245, -0.005), (0.165, 0.12, 0.115)), 0, "hips"),
        Primitive("belly", "ellipsoid", ((0.0, -0.09, 0.0), (0.145, 0.13, 0.11)), 3, "torso", 0.06),
        Primitive("waist", "ellipsoid", ((0.0, 0.04, -0.005), (0.15, 0.12, 0.11)), 6, "torso", 0.06),
        Primitive("chest", "ellipsoid", ((0.0, 0.165, -0.01), (0.165, 0.105, 0.11)), 9, "torso", 0.06),
        Primitive("neck", "cone", ((0.0, 0.22, -0.025), (0.0, 0.39, 0.0), 0.056, 0.05), 12, "neck", 0.02),
        Primitive("skull", "ellipsoid", ((0.0, 0.45, 0.012), (0.078, 0.105, 0.095)), 15, "head", 0.02),
        Primitive("jaw", "ellipsoid", ((0.0, 0.39, 0.045), (0.056, 0.05, 0.06)), 15, "head", 0.02),
        Primitive("nose", "ellipsoid", ((0.0, 0.44, 0.105), (0.014, 0.024, 0.022)), 15, "head", 0.008),
    ]
    left = [
        Primitive("left ear", "ellipsoid", ((0.078, 0.445, 0.0), (0.012, 0.03, 0.02)), 15, "head", 0.008),
        Primitive("left shoulder", "cone", ((0.04, 0.215, -0.02), tuple(j[16]), 0.062, 0.056), 13, "torso", 0.03),
        Primitive("left upper arm", "cone", (tuple(j[16]), tuple(j[18]), 0.053, 0.04), 16, "left upper arm"),
        Primitive("left forearm", "cone", (tuple(j[18]), tuple(j[20]), 0.04, 0.028), 18, "left forearm", 0.015),
        Primitive("left palm", "box", ((0.725, 0.21, -0.015), (0.052, 0.014, 0.042), 0.012), 20, "left hand", 0.012),
        Primitive("left fingers", "box", ((0.80, 0.207, -0.02), (0.05, 0.011, 0.038), 0.01), 22, "left hand", 0.01),
        Primitive("left thumb", "cone", ((0.70, 0.20, 0.02), (0.772, 0.196, 0.075), 0.014, 0.011), 20, "left hand",
                  0.008),
        Primitive("left thigh", "cone", ((0.08, -0.29, 0.0), tuple(j[4]), 0.078, 0.053), 1, "left thigh"),
        Primitive("left calf", "cone", (tuple(j[4]), tuple(j[7]), 0.053, 0.036), 4, "left calf", 0.015),
        Primitive("left calf muscle", "ellipsoid", ((0.10, -0.82, -0.02), (0.048, 0.11, 0.048)), 4, "left calf"),
        Primitive("left foot", "box", ((0.10, -1.115, 0.045), (0.042, 0.035, 0.115), 0.03), 7, "left foot", 0.02),
        Primitive("left toes", "box", ((0.11, -1.13, 0.14), (0.046, 0.02, 0.04), 0.018), 10, "left foot", 0.015),
    ]
    return midline + [p for prim in left for p in (prim, prim.mirrored())]


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: a C1 union that fillets joins within ``k`` metres, like soft tissue."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def evaluate_union(points: np.ndarray, prims: list[Primitive], far: float = 1.0) -> np.ndarray:
    """SDF of the smooth union at ``points`` [M, 3], evaluating each primitive only inside its padded bounds.

    Outside a primitive's bounds its distance is replaced by ``far``: the smooth min there equals the plain min of the
    other pieces, so the result is identical to a full evaluation near the surface and several times cheaper.
    """
    field = np.full(len(points), far)
    for prim in prims:
        lo, hi = prim.bounds()
        pad = prim.blend + 2 * GRID_SPACING
        inside = np.all((points >= lo - pad) & (points <= hi + pad), axis=1)
        d = np.full(len(points), far)
        d[inside] = prim.sdf(points[inside])
        field = _smooth_min(field, d, prim.blend)
    return field


# ----------------------------------------------------------------------------------------------------------------
# Surface extraction
# ----------------------------------------------------------------------------------------------------------------


def _sdf_grid(prims: list[Primitive], log: Callable[[str], None]) -> np.ndarray:
    """The union's SDF sampled on the fixed grid (axis order x, y, z)."""
    axes = [np.arange(lo, hi + 1e-9, GRID_SPACING) for lo, hi in zip(GRID_LO, GRID_HI)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    field = evaluate_union(grid, prims).reshape(len(axes[0]), len(axes[1]), len(axes[2]))
    field[field == 0.0] = 1e-9  # a node exactly on the surface makes marching cubes emit degenerate slivers
    log(f"SDF on a {field.shape[0]}x{field.shape[1]}x{field.shape[2]} grid ({GRID_SPACING * 1000:.0f} mm)")
    return field


def _boundary_vertices(faces: np.ndarray) -> np.ndarray:
    """Ids of vertices on edges used by a single face (the open cut of a half mesh)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    return np.unique(uniq[counts == 1])


def _roll_faces(faces: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cyclically rotate each face so that corner ``first[i]`` comes first (orientation is unchanged)."""
    idx = (first[:, None] + np.arange(3)[None, :]) % 3
    return np.take_along_axis(faces, idx, axis=1)


def _clip_to_left_half(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the part of a closed surface with x >= 0, splitting straddling triangles at x = 0 exactly.

    (trimesh's ``slice_plane`` needs shapely; this is the small piece of it needed here.)
    """
    verts = verts.copy()
    verts[verts[:, 0] == 0.0, 0] = 1e-12  # no vertex exactly on the plane: every crossing edge is strict
    pos = verts[:, 0] > 0
    count = pos[faces].sum(axis=1)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    crossing = np.unique(np.sort(edges[pos[edges[:, 0]] != pos[edges[:, 1]]], axis=1), axis=0)
    a, b = verts[crossing[:, 0]], verts[crossing[:, 1]]
    t = a[:, 0] / (a[:, 0] - b[:, 0])
    cut = a + t[:, None] * (b - a)
    cut[:, 0] = 0.0
    cut_id = {tuple(e): len(verts) + i for i, e in enumerate(crossing.tolist())}

    def cut_vertex(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.array([cut_id[(min(x, y), max(x, y))] for x, y in zip(u.tolist(), v.tolist())], dtype=np.int64)

    one = faces[count == 1]
    one = _roll_faces(one, np.argmax(pos[one], axis=1))  # (kept, dropped, dropped)
    two = faces[count == 2]
    two = _roll_faces(two, (np.argmin(pos[two], axis=1) + 1) % 3)  # (kept, kept, dropped)
    p01, p20 = cut_vertex(one[:, 0], one[:, 1]), cut_vertex(one[:, 2], one[:, 0])
    q12, q20 = cut_vertex(two[:, 1], two[:, 2]), cut_vertex(two[:, 2], two[:, 0])
    new_faces = np.concatenate([
        faces[count == 3],
        np.stack([one[:, 0], p01, p20], axis=1),
        np.stack([two[:, 0], two[:, 1], q12], axis=1),
        np.stack([two[:, 0], q12, q20], axis=1),
    ])
    return np.concatenate([verts, cut]), new_faces


def _decimated_left_half(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut the surface at x = 0, decimate the left (x >= 0) half; returns (verts, faces, seam vertex ids).

    Decimating the whole body is not left/right symmetric (the decimator stops part-way through a sweep over faces
    in index order, so one side ends up with ~1.6x the vertices of the other); per-part contact ratios would then
    depend on the side. Decimating one half and mirroring it gives an exactly symmetric mesh instead.
    """
    import fast_simplification
    import trimesh

    half = trimesh.Trimesh(*_clip_to_left_half(verts, faces), process=True)
    hv, hf = fast_simplification.simplify(
        np.ascontiguousarray(half.vertices), np.ascontiguousarray(half.faces), target_count=TARGET_FACES // 2
    )
    half = trimesh.Trimesh(hv, hf, process=True)  # merges coincident vertices the decimator left behind
    hf = np.asarray(half.faces, dtype=np.int64)
    half.update_faces((hf[:, 0] != hf[:, 1]) & (hf[:, 1] != hf[:, 2]) & (hf[:, 2] != hf[:, 0]))  # collapsed slivers
    half.remove_unreferenced_vertices()
    hv, hf = np.array(half.vertices), np.asarray(half.faces, dtype=np.int64)
    seam = _boundary_vertices(hf)
    hv[seam, 0] = 0.0  # the decimator may nudge cut vertices off the plane: put them back so the halves match
    interior = np.setdiff1d(np.arange(len(hv)), seam)
    hv[interior, 0] = np.maximum(hv[interior, 0], 1e-4)  # keep the half strictly on its side: no overlap
    return hv, hf, seam


def _mirror_halves(hv: np.ndarray, hf: np.ndarray, seam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Join the left half with its x-mirror, sharing the seam vertices; mirrored faces get reversed winding."""
    n = len(hv)
    is_seam = np.zeros(n, dtype=bool)
    is_seam[seam] = True
    mirror_id = np.arange(n)
    mirror_id[~is_seam] = n + np.arange(int((~is_seam).sum()))
    right = hv[~is_seam] * np.array([-1.0, 1.0, 1.0])
    verts = np.concatenate([hv, right])
    faces = np.concatenate([hf, mirror_id[hf][:, ::-1]])
    return verts, faces


def extract_surface(prims: list[Primitive], log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes, symmetric decimation to ~7 000 vertices and Taubin smoothing; returns (verts, faces)."""
    import trimesh
    from skimage.measure import marching_cubes

    field = _sdf_grid(prims, log)
    verts, faces, _, _ = marching_cubes(field, level=0.0, spacing=(GRID_SPACING,) * 3)
    log(f"marching cubes: {len(verts)} vertices, {len(faces)} faces")
    hv, hf, seam = _decimated_left_half(verts + GRID_LO, faces)
    verts, faces = _mirror_halves(hv, hf, seam)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=0.53, iterations=10)
    if mesh.volume < 0:  # marching cubes' winding depends on the gradient sign convention: make normals point out
        mesh.invert()
    log(f"decimated (one half, mirrored): {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, "
        f"{len(seam)} on the midline seam")
    return np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)


def check_surface(verts: np.ndarray, faces: np.ndarray) -> None:
    """Refuse to write a body that is not one closed, consistently wound, outward-facing shell."""
    import trimesh

    mesh = trimesh.Trimesh(verts, faces, process=False)
    problems = []
    if not mesh.is_watertight:
        problems.append("not watertight")
    if not mesh.is_winding_consistent:
        problems.append("inconsistent winding")
    if mesh.volume <= 0:
        problems.append("inward-facing normals")
    if len(mesh.split(only_watertight=False)) != 1:
        problems.append("more than one connected component")
    if not 6000 <= len(verts) <= 8000:
        problems.append(f"{len(verts)} vertices, expected 6000-8000")
    if problems:
        raise RuntimeError("generated body is invalid: " + ", ".join(problems))


# ----------------------------------------------------------------------------------------------------------------
# Rigging: skinning weights, segmentation, joint regressor
# ----------------------------------------------------------------------------------------------------------------


def primitive_affinity(verts: np.ndarray, prims: list[Primitive]) -> np.ndarray:
    """Soft-min of primitive distances [N, P]: each vertex belongs mostly to the piece it lies on, and blends
    smoothly across a joint over a few centimetres because two capsules meeting there have near-equal distance."""
    d = np.stack([prim.sdf(verts) for prim in prims], axis=1)
    logits = -(d - d.min(axis=1, keepdims=True)) / SKIN_TAU
    aff = np.exp(logits)
    return aff / aff.sum(axis=1, keepdims=True)


def skinning_weights(affinity: np.ndarray, prims: list[Primitive], min_weight: float = 1e-3) -> np.ndarray:
    """Sum primitive affinities per driving joint [N, 24]; drop negligible tails so the weights stay sparse."""
    weights = np.zeros((affinity.shape[0], 24))
    for col, prim in enumerate(prims):
        weights[:, prim.joint] += affinity[:, col]
    weights[weights < min_weight] = 0.0
    return weights / weights.sum(axis=1, keepdims=True)


def segment_parts(
    affinity: np.ndarray, prims: list[Primitive], faces: np.ndarray, smoothing: int = 3
) -> dict[str, list[int]]:
    """Label each vertex with the part of largest summed affinity, so every vertex lands in exactly one part.

    The part scores are first averaged over each vertex's 1-ring a few times: on a decimated mesh a raw argmax gives
    saw-toothed borders, and contact labels summarised per part should not depend on that noise.
    """
    import scipy.sparse

    scores = np.zeros((affinity.shape[0], len(PART_NAMES)))
    for col, prim in enumerate(prims):
        scores[:, PART_NAMES.index(prim.part)] += affinity[:, col]
    n = len(scores)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = scipy.sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.float64) + scipy.sparse.identity(n, format="csr")
    adj = scipy.sparse.diags(1.0 / np.asarray(adj.sum(axis=1)).ravel()) @ adj
    for _ in range(smoothing):
        scores = adj @ scores
    label = scores.argmax(axis=1)
    return {name: np.flatnonzero(label == i).tolist() for i, name in enumerate(PART_NAMES)}


def fit_joint_regressor(verts: np.ndarray, joints: np.ndarray, ks: tuple[int, ...] = (40, 80, 160, 320)) -> np.ndarray:
    """Non-negative, row-normalised regressor [24, N] reproducing ``joints`` from nearby vertices.

    Each row is a small NNLS over the K nearest vertices with a sum-to-one row and a weak pull towards uniform
    weights, so a joint is an average of a ring of surface points (it follows the shape under betas) rather than
    two or three arbitrary vertices. K grows until the joint is reproduced to within a millimetre.
    """
    from scipy.optimize import nnls

    regressor = np.zeros((len(joints), len(verts)))
    for j, target in enumerate(joints):
        order = np.argsort(np.linalg.norm(verts - target, axis=1), kind="stable")
        for k in ks:
            idx = order[:k]
            a = np.vstack([verts[idx].T, 10.0 * np.ones((1, k)), 1e-3 * np.eye(k)])
            b = np.concatenate([target, [10.0], 1e-3 * np.full(k, 1.0 / k)])
            w, _ = nnls(a, b, maxiter=50 * k)
            w = w / w.sum()
            if np.linalg.norm(w @ verts[idx] - target) < 1e-3:
                break
        regressor[j, idx] = w
    return regressor


# ----------------------------------------------------------------------------------------------------------------
# Shape space
# ----------------------------------------------------------------------------------------------------------------


def _smoothstep(t: np.ndarray, a: float, b: float) -> np.ndarray:
    """C1 step from 0 at ``a`` to 1 at ``b``."""
    x = np.clip((t - a) / (b - a), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _soft_ramp(t: np.ndarray, start: float, end: float, width: float = 0.03) -> np.ndarray:
    """Softplus ramp: 0 before ``start``, ~linear after, 1 at ``end``; no kink, so stretched limbs stay smooth."""
    ramp = width * np.logaddexp(0.0, (t - start) / width)
    return ramp / (width * np.logaddexp(0.0, (end - start) / width))


def shape_directions(verts: np.ndarray, normals: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Ten smooth, interpretable shape directions [N, 3, 10]; one unit of each beta moves the surface a few cm.

    Order: overall size, girth, arm length, leg length, shoulder width, belly, head size, hand size, foot size,
    torso length. Masks are built from the skinning weights so every direction fades out smoothly across joints.
    """
    x, y = verts[:, 0], verts[:, 1]
    side = np.where(x >= 0, 1.0, -1.0)
    ex, ey = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    w = weights
    head, neck = w[:, 15], w[:, 12]
    hands = w[:, [20, 21, 22, 23]].sum(axis=1)
    feet = w[:, [7, 8, 10, 11]].sum(axis=1)
    trunk = w[:, [0, 3, 6, 9]].sum(axis=1)
    upper = _smoothstep(y, -0.05, 0.10)
    dirs = np.zeros((len(verts), 3, NUM_BETAS))
    dirs[:, :, 0] = 0.02 * (verts - np.array([0.0, -0.30, 0.0]))
    dirs[:, :, 1] = 0.015 * normals * (1.0 - 0.7 * (head + hands + feet))[:, None]
    dirs[:, :, 2] = 0.04 * (side * _soft_ramp(np.abs(x), 0.17, 0.85) * upper)[:, None] * ex
    dirs[:, :, 3] = -0.04 * _soft_ramp(joints[1, 1] - y, 0.0, joints[1, 1] + 1.15)[:, None] * ey
    dirs[:, :, 4] = 0.03 * (side * _smoothstep(np.abs(x), 0.05, 0.17) * _smoothstep(y, 0.0, 0.12)
                            * (1.0 - head - neck))[:, None] * ex
    belly = np.exp(-(((y + 0.07) / 0.11) ** 2) - (x / 0.11) ** 2) * _smoothstep(normals[:, 2], 0.0, 0.6) * trunk
    dirs[:, :, 5] = 0.04 * belly[:, None] * normals
    dirs[:, :, 6] = 0.15 * head[:, None] * (verts - np.array([0.0, 0.44, 0.015]))
    for wrist, hand, ankle, toe in ((20, 22, 7, 10), (21, 23, 8, 11)):
        hand_w = w[:, wrist] + w[:, hand]
        dirs[:, :, 7] += 0.2 * hand_w[:, None] * (verts - joints[wrist])
        heel_floor = np.array([joints[ankle, 0], -1.15, joints[ankle, 2]])
        foot_w = w[:, ankle] + w[:, toe]
        dirs[:, :, 8] += 0.2 * foot_w[:, None] * (verts - heel_floor)
    dirs[:, :, 9] = 0.04 * _smoothstep(y, -0.25, 0.20)[:, None] * ey
    return dirs


# ----------------------------------------------------------------------------------------------------------------
# Extra joints for smplx's VertexJointSelector
# ----------------------------------------------------------------------------------------------------------------


def extra_joint_vertex_ids(verts: np.ndarray, parts: dict[str, list[int]]) -> dict[str, int]:
    """Pick the vertices smplx reads as nose/eyes/ears, toes/heels and fingertips (SMPL-H key names).

    Each is the part vertex nearest to a designed landmark just outside the surface. Fingertips are spread along the
    mitten's tip edge from the thumb side (+z, index) to the back (-z, pinky); 'r*' keys are the subject's right (-x).
    """
    def nearest(part: str, target: tuple[float, float, float]) -> int:
        idx = np.asarray(parts[part])
        return int(idx[np.argmin(np.linalg.norm(verts[idx] - np.asarray(target), axis=1))])

    ids = {
        "nose": nearest("head", (0.0, 0.44, 0.16)),
        "reye": nearest("head", (-0.032, 0.47, 0.12)),
        "leye": nearest("head", (0.032, 0.47, 0.12)),
        "rear": nearest("head", (-0.12, 0.445, 0.0)),
        "lear": nearest("head", (0.12, 0.445, 0.0)),
    }
    for s, sign in (("L", 1.0), ("R", -1.0)):
        side = "left" if s == "L" else "right"
        ids[f"{s}BigToe"] = nearest(f"{side} foot", (sign * 0.085, -1.135, 0.22))
        ids[f"{s}SmallToe"] = nearest(f"{side} foot", (sign * 0.15, -1.135, 0.20))
        ids[f"{s}Heel"] = nearest(f"{side} foot", (sign * 0.10, -1.15, -0.12))
    for s, sign in (("l", 1.0), ("r", -1.0)):
        hand = "left hand" if s == "l" else "right hand"
        ids[f"{s}thumb"] = nearest(hand, (sign * 0.80, 0.196, 0.10))
        for name, z in (("index", 0.010), ("middle", -0.012), ("ring", -0.034), ("pinky", -0.056)):
            ids[f"{s}{name}"] = nearest(hand, (sign * 0.90, 0.207, z))
    return ids


# ----------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------


def write_deterministic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps, so two runs give byte-identical files."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def build_body(log: Callable[[str], None] = print) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """Build every array of the model file plus the part segmentation."""
    import trimesh

    prims = body_primitives()
    joints = designed_joints()
    verts, faces = extract_surface(prims, log)
    check_surface(verts, faces)
    affinity = primitive_affinity(verts, prims)
    weights = skinning_weights(affinity, prims)
    parts = segment_parts(affinity, prims, faces)
    regressor = fit_joint_regressor(verts, joints)
    err = np.linalg.norm(regressor @ verts - joints, axis=1).max()
    log(f"rigged: joint regressor max error {err * 1000:.2f} mm")
    normals = np.asarray(trimesh.Trimesh(verts, faces, process=False).vertex_normals)
    shapedirs = shape_directions(verts, normals, weights, joints)
    kintree = np.array([[p if p >= 0 else 4294967295 for p in PARENTS], list(range(24))], dtype=np.int64)
    vertex_ids = extra_joint_vertex_ids(verts, parts)
    if len(set(vertex_ids.values())) != len(vertex_ids):
        raise RuntimeError(f"extra-joint landmarks share vertices: {vertex_ids}")
    arrays = {
        "v_template": verts.astype(np.float32),
        "f": faces.astype(np.int32),
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": np.zeros((len(verts), 3, NUM_POSE_BASIS), dtype=np.float32),
        "J_regressor": regressor.astype(np.float32),
        "weights": weights.astype(np.float32),
        "kintree_table": kintree,
        "joint_names": np.array(JOINT_NAMES),
        "vertex_ids_json": np.array(json.dumps(vertex_ids, sort_keys=True)),
    }
    return arrays, parts


def _readme(arrays: dict[str, np.ndarray], parts: dict[str, list[int]]) -> str:
    """The README that travels with the generated files (statistics are filled in from the arrays)."""
    v = arrays["v_template"]
    part_lines = "\n".join(f"| {name} | {len(ids)} |" for name, ids in parts.items())
    return f"""# SynthBody: a procedural stand-in for SMPL

The licensed SMPL model (https://smpl.is.tue.mpg.de) is not redistributable, so this directory holds a humanoid
body generated from scratch by `preprocess_data/make_synthetic_body.py`. It uses SMPL's file format, skeleton (24
joints, SMPL's order and kinematic tree) and conventions (metres, +y up, facing +z, subject's left = +x, T-pose rest
pose), so `smplx.SMPL` loads and poses it; `utils.body_models.load_body_model("synthbody", ...)` is the entry point.
It is *not* SMPL: its topology, vertex ids and shape space differ, so contact labels made on SMPL do not transfer.

Regenerate (deterministic, bit-for-bit identical output):

    python -m preprocess_data.make_synthetic_body --output-dir data/body_models/synthbody

## How it is made
- Surface: smooth-min union of tapered capsules, ellipsoids and rounded boxes (torso, neck, head with nose and ears,
  arms, mitten hands with a thumb, legs, feet elongated along +z), marching cubes on an 8 mm grid, quadric
  decimation (fast-simplification) of the x >= 0 half, mirrored onto x < 0 (vertex-exact left/right symmetry),
  Taubin smoothing. One closed, watertight, outward-facing shell.
- `weights`: soft-min over the primitive SDFs (tau = {SKIN_TAU * 1000:.0f} mm), summed per joint that each primitive
  rotates with.
- `J_regressor`: non-negative rows summing to 1 over nearby vertices (NNLS), reproducing the designed joints.
- `shapedirs` (10): overall size, girth, arm length, leg length, shoulder width, belly, head size, hand size, foot
  size, torso length; one unit of a beta moves the surface by roughly 1-5 cm.
- `posedirs`: all zeros (no pose-corrective blend shapes), so posing is plain linear blend skinning.
- `vertex_ids_json`: the vertices smplx's `VertexJointSelector` reads (nose, eyes, ears, toes, heels, fingertips).

## Files
- `SYNTHBODY_NEUTRAL.npz`: v_template, f, shapedirs, posedirs, J_regressor, weights, kintree_table, joint_names,
  vertex_ids_json.
- `synthbody_segmentation.json`: {{part name: sorted vertex ids}}; every vertex is in exactly one of 16 parts.

## Statistics
- vertices: {len(v)}, faces: {len(arrays['f'])}
- height (rest pose): {v[:, 1].max() - v[:, 1].min():.3f} m (y from {v[:, 1].min():.3f} to {v[:, 1].max():.3f})
- arm span: {v[:, 0].max() - v[:, 0].min():.3f} m
- generation: well under a minute on 2 CPU cores (the timing is printed, not stored, to keep this file reproducible)

| part | vertices |
| --- | --- |
{part_lines}
"""


def generate(output_dir: Path, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Build the body and write the model file, the segmentation and the README into ``output_dir``."""
    start = time.perf_counter()
    arrays, parts = build_body(log)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "model": output_dir / "SYNTHBODY_NEUTRAL.npz",
        "segmentation": output_dir / "synthbody_segmentation.json",
        "readme": output_dir / "README.md",
    }
    write_deterministic_npz(paths["model"], arrays)
    paths["segmentation"].write_text(json.dumps({k: sorted(v) for k, v in parts.items()}, separators=(",", ":")) + "\n")
    paths["readme"].write_text(_readme(arrays, parts))
    seconds = time.perf_counter() - start
    for path in paths.values():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        log(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, sha256 {digest}...)")
    log(f"done in {seconds:.1f} s")
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="directory that receives SYNTHBODY_NEUTRAL.npz, the segmentation and a README "
                             "(default: the repository's data/body_models/synthbody)")
    args = parser.parse_args(argv)
    if args.output_dir is None:
        from utils.body_models import default_body_model_dir

        args.output_dir = default_body_model_dir() / "synthbody"
    start = time.perf_counter()
    generate(args.output_dir, log=lambda msg: print(f"[{time.perf_counter() - start:6.1f}s] {msg}", flush=True))


if __name__ == "__main__":
    main()
