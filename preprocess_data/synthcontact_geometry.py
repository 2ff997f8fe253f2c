"""Geometry of SynthContact objects: analytic primitives (box, capped cylinder, sphere), their exact signed distance
functions, surface meshes, contact placement by bisection, body-surface distances and a small binary PLY writer.

A primitive is a plain dict (it goes into ``meta.jsonl`` as is)::

    {"kind": "box",      "center": [x, y, z], "rotation": 3x3 rows, "half_extents": [hx, hy, hz]}
    {"kind": "cylinder", "center": [x, y, z], "rotation": 3x3 rows, "radius": r, "half_height": h}   # axis = local +y
    {"kind": "sphere",   "center": [x, y, z], "rotation": 3x3 rows, "radius": r}

with ``world = local @ R.T + center``. An object is a list of primitives; its SDF is the minimum over its parts, which is
the exact distance outside the union and negative inside it, so ``sdf <= eps`` is an exact contact test.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

# ----------------------------------------------------------------------------------------------------------------
# Primitives and SDFs
# ----------------------------------------------------------------------------------------------------------------


def rotation_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction ``a`` to direction ``b``."""
    a = np.asarray(a, float) / np.linalg.norm(a)
    b = np.asarray(b, float) / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1.0 + 1e-9:  # opposite: rotate by pi about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def box(center: Sequence[float], half_extents: Sequence[float], rotation: np.ndarray | None = None) -> dict:
    return {"kind": "box", "center": _vec(center), "rotation": _rot(rotation), "half_extents": _vec(half_extents)}


def cylinder(center: Sequence[float], radius: float, half_height: float, rotation: np.ndarray | None = None) -> dict:
    return {"kind": "cylinder", "center": _vec(center), "rotation": _rot(rotation), "radius": float(radius),
            "half_height": float(half_height)}


def sphere(center: Sequence[float], radius: float) -> dict:
    return {"kind": "sphere", "center": _vec(center), "rotation": _rot(None), "radius": float(radius)}


def _vec(values: Sequence[float]) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(3)]


def _rot(rotation: np.ndarray | None) -> list[list[float]]:
    matrix = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    return [[float(v) for v in row] for row in matrix]


def translate_parts(parts: Sequence[dict], offset: np.ndarray) -> list[dict]:
    out = []
    for part in parts:
        moved = dict(part)
        moved["center"] = _vec(np.asarray(part["center"]) + np.asarray(offset, dtype=np.float64))
        out.append(moved)
    return out


def to_local(points: np.ndarray, part: dict) -> np.ndarray:
    return (np.asarray(points, dtype=np.float64) - np.asarray(part["center"])) @ np.asarray(part["rotation"])


def primitive_sdf(points: np.ndarray, part: dict) -> np.ndarray:
    """Exact signed distance ``[N]`` from points to one primitive (negative inside)."""
    local = to_local(points, part)
    kind = part["kind"]
    if kind == "box":
        q = np.abs(local) - np.asarray(part["half_extents"])
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        return outside + inside
    if kind == "cylinder":
        radial = np.hypot(local[:, 0], local[:, 2]) - part["radius"]
        axial = np.abs(local[:, 1]) - part["half_height"]
        d = np.stack([radial, axial], axis=1)
        return np.minimum(d.max(axis=1), 0.0) + np.linalg.norm(np.maximum(d, 0.0), axis=1)
    if kind == "sphere":
        return np.linalg.norm(local, axis=1) - part["radius"]
    raise ValueError(f"unknown primitive kind {kind!r}")


def object_sdf(points: np.ndarray, parts: Sequence[dict]) -> np.ndarray:
    """Signed distance to the union of the parts: exact outside, negative inside."""
    return np.min(np.stack([primitive_sdf(points, p) for p in parts]), axis=0)


def parts_bounds(parts: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world bounds of the union of the parts (from the primitive corners / extents)."""
    lows, highs = [], []
    for part in parts:
        rot, center = np.asarray(part["rotation"]), np.asarray(part["center"])
        if part["kind"] == "box":
            ext = np.abs(rot) @ np.asarray(part["half_extents"])
        elif part["kind"] == "cylinder":
            axis = rot[:, 1]
            radial = part["radius"] * np.sqrt(np.clip(1.0 - axis**2, 0.0, 1.0))
            ext = np.abs(axis) * part["half_height"] + radial
        else:
            ext = np.full(3, part["radius"])
        lows.append(center - ext)
        highs.append(center + ext)
    return np.min(lows, axis=0), np.max(highs, axis=0)


# ----------------------------------------------------------------------------------------------------------------
# Meshes (separate vertices per flat face so shading keeps hard edges; every vertex lies on the true surface)
# ----------------------------------------------------------------------------------------------------------------


def axis_ticks(lo_edge: float, hi_edge: float, spacing: float, coarse_spacing: float | None = None,
               fine_lo: float | None = None, fine_hi: float | None = None) -> np.ndarray:
    """Grid coordinates on ``[lo_edge, hi_edge]``: ``spacing`` inside ``[fine_lo, fine_hi]`` (everywhere when no window
    is given) and ``coarse_spacing`` outside it."""

    def run(a: float, b: float, step: float) -> np.ndarray:
        return np.linspace(a, b, max(1, int(math.ceil((b - a) / step - 1e-9))) + 1)

    if coarse_spacing is None or fine_lo is None or fine_hi is None:
        return run(lo_edge, hi_edge, spacing)
    f0, f1 = max(lo_edge, fine_lo), min(hi_edge, fine_hi)
    if f1 <= f0:
        return run(lo_edge, hi_edge, coarse_spacing)
    pieces = [run(f0, f1, spacing)]
    if f0 > lo_edge:
        pieces.append(run(lo_edge, f0, coarse_spacing)[:-1])
    if f1 < hi_edge:
        pieces.append(run(f1, hi_edge, coarse_spacing)[1:])
    return np.unique(np.concatenate(pieces))


def box_mesh(half_extents: Sequence[float], spacing: float, window: tuple[np.ndarray, np.ndarray] | None = None,
             coarse_spacing: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Local-frame box surface, each face its own grid (outward winding fixed by :func:`orient_outward`).

    Without ``window`` every face has cells of at most ``spacing``. With a local-frame box ``window = (lo, hi)`` only
    the part of the surface inside the window (where a body can touch it) is fine; the rest uses ``coarse_spacing``
    (flat faces render identically at any resolution)."""
    h = np.asarray(half_extents, dtype=np.float64)
    verts, faces, offset = [], [], 0
    for axis in range(3):
        a1, a2 = (axis + 1) % 3, (axis + 2) % 3
        for sign in (1.0, -1.0):
            plane = sign * h[axis]
            if window is None:
                t1 = axis_ticks(-h[a1], h[a1], spacing)
                t2 = axis_ticks(-h[a2], h[a2], spacing)
            elif window[0][axis] <= plane <= window[1][axis]:
                t1 = axis_ticks(-h[a1], h[a1], spacing, coarse_spacing, window[0][a1], window[1][a1])
                t2 = axis_ticks(-h[a2], h[a2], spacing, coarse_spacing, window[0][a2], window[1][a2])
            else:
                t1 = axis_ticks(-h[a1], h[a1], coarse_spacing)
                t2 = axis_ticks(-h[a2], h[a2], coarse_spacing)
            g1, g2 = np.meshgrid(t1, t2, indexing="ij")
            grid = np.zeros((g1.size, 3))
            grid[:, axis], grid[:, a1], grid[:, a2] = plane, g1.ravel(), g2.ravel()
            idx = np.arange(g1.size).reshape(g1.shape)
            p00, p10, p01, p11 = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
            verts.append(grid)
            faces.append(np.concatenate([np.stack([p00, p10, p11], 1), np.stack([p00, p11, p01], 1)]) + offset)
            offset += len(grid)
    return np.concatenate(verts), np.concatenate(faces)


def cylinder_mesh(radius: float, half_height: float, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Local-frame capped cylinder along +y: side grid plus two flat caps made of concentric rings."""
    segs = max(24, int(math.ceil(2 * math.pi * radius / spacing)))
    rings = max(1, int(math.ceil(2 * half_height / spacing)))
    theta = np.linspace(0.0, 2 * math.pi, segs, endpoint=False)
    ys = np.linspace(-half_height, half_height, rings + 1)
    circle = np.stack([np.cos(theta), np.zeros(segs), np.sin(theta)], 1)
    side = (circle[None] * radius + ys[:, None, None] * np.array([0.0, 1.0, 0.0])).reshape(-1, 3)
    idx = np.arange((rings + 1) * segs).reshape(rings + 1, segs)
    nxt = np.roll(idx, -1, axis=1)
    a, b, c, d = idx[:-1].ravel(), nxt[:-1].ravel(), idx[1:].ravel(), nxt[1:].ravel()
    # outward normal of (a, c, b): (c-a) x (b-a) = +y x tangent = outward
    side_faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    verts, faces = [side], [side_faces]
    offset = len(side)
    n_cap = max(1, int(math.ceil(radius / spacing)))
    for sign in (1.0, -1.0):
        radii = np.linspace(radius, 0.0, n_cap + 1)[:-1]
        ring_pts = (radii[:, None, None] * circle[None]).reshape(-1, 3)
        cap = np.concatenate([ring_pts, np.zeros((1, 3))])
        cap[:, 1] = sign * half_height
        ridx = np.arange(len(radii) * segs).reshape(len(radii), segs)
        rnxt = np.roll(ridx, -1, axis=1)
        centre = len(cap) - 1
        f = []
        if len(radii) > 1:
            a, b, c, d = ridx[:-1].ravel(), rnxt[:-1].ravel(), ridx[1:].ravel(), rnxt[1:].ravel()
            f += [np.stack([a, b, c], 1), np.stack([b, d, c], 1)]
        inner, inner_n = ridx[-1], rnxt[-1]
        f.append(np.stack([inner, inner_n, np.full(segs, centre)], 1))
        cap_faces = np.concatenate(f)
        verts.append(cap)
        faces.append(cap_faces + offset)
        offset += len(cap)
    return np.concatenate(verts), np.concatenate(faces)


def sphere_mesh(radius: float, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Local-frame UV sphere with vertices exactly on the sphere."""
    n_lat = max(12, int(math.ceil(math.pi * radius / spacing)))
    n_lon = 2 * n_lat
    lat = np.linspace(0.0, math.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0.0, 2 * math.pi, n_lon, endpoint=False)
    ll, oo = np.meshgrid(lat, lon, indexing="ij")
    body = np.stack([np.sin(ll) * np.cos(oo), np.cos(ll), np.sin(ll) * np.sin(oo)], -1).reshape(-1, 3)
    verts = np.concatenate([body, [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]]) * radius
    top, bottom = len(body), len(body) + 1
    idx = np.arange(len(body)).reshape(len(lat), n_lon)
    nxt = np.roll(idx, -1, axis=1)
    a, b, c, d = idx[:-1].ravel(), nxt[:-1].ravel(), idx[1:].ravel(), nxt[1:].ravel()
    faces = [np.stack([a, b, c], 1), np.stack([b, d, c], 1),
             np.stack([idx[0], np.full(n_lon, top), nxt[0]], 1),
             np.stack([idx[-1], nxt[-1], np.full(n_lon, bottom)], 1)]
    return verts, np.concatenate(faces)


def orient_outward(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Wind every face of a convex local-frame mesh (centre at the origin) counter-clockwise seen from outside."""
    tri = verts[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = np.einsum("ij,ij->i", normals, tri.mean(axis=1)) < 0
    faces = faces.copy()
    faces[inward] = faces[inward][:, ::-1]
    return faces


def primitive_mesh(part: dict, spacing: float, window: tuple[np.ndarray, np.ndarray] | None = None,
                   coarse_spacing: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """World-space mesh of one primitive; ``window`` (a world AABB) limits the fine resolution of boxes to where a
    body can touch them."""
    if part["kind"] == "box":
        local_window = None
        if window is not None and np.any(np.asarray(window[0]) > np.asarray(window[1])):
            local_window = (np.full(3, np.inf), np.full(3, -np.inf))  # empty window: coarse everywhere
        elif window is not None:
            corners = np.array([[x, y, z] for x in (window[0][0], window[1][0]) for y in (window[0][1], window[1][1])
                                for z in (window[0][2], window[1][2])])
            local = to_local(corners, part)
            local_window = (local.min(0), local.max(0))
        verts, faces = box_mesh(part["half_extents"], spacing, local_window, coarse_spacing)
    elif part["kind"] == "cylinder":
        verts, faces = cylinder_mesh(part["radius"], part["half_height"], spacing)
    elif part["kind"] == "sphere":
        verts, faces = sphere_mesh(part["radius"], spacing)
    else:
        raise ValueError(f"unknown primitive kind {part['kind']!r}")
    faces = orient_outward(verts, faces)
    world = verts @ np.asarray(part["rotation"]).T + np.asarray(part["center"])
    return world, faces


def object_mesh(parts: Sequence[dict], spacing: float, window: tuple[np.ndarray, np.ndarray] | None = None,
                coarse_spacing: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated meshes of all parts (parts may overlap; the mesh is for rendering and object-side contact)."""
    verts, faces, offset = [], [], 0
    for part in parts:
        v, f = primitive_mesh(part, spacing, window, coarse_spacing)
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Placement
# ----------------------------------------------------------------------------------------------------------------


class PlacementFailure(RuntimeError):
    """An object could not be placed as asked (the caller draws a new configuration)."""


def place_by_contact(
    parts: Sequence[dict],
    direction: np.ndarray,
    points: np.ndarray,
    penetration: float,
    start: float = 0.5,
    max_travel: float = 6.0,
    tolerance: float = 1e-5,
) -> tuple[list[dict], float]:
    """Move the object along ``direction`` until its deepest penetration into ``points`` first equals ``penetration``
    (a negative value leaves that gap instead).

    The object is first backed off by ``start`` metres (more if it still intersects) and then advanced by sphere
    tracing: ``f(s) = min sdf(points)`` is 1-Lipschitz in the shift ``s`` (each primitive SDF is exact, and a minimum
    of 1-Lipschitz functions is 1-Lipschitz), so a step of ``f(s) + penetration`` can never pass the first shift where
    ``f = -penetration``: thin objects cannot tunnel through thin limbs. Returns the moved parts and the shift.
    """
    direction = np.asarray(direction, dtype=np.float64)
    direction = direction / np.linalg.norm(direction)
    points = np.asarray(points, dtype=np.float64)
    # only points near the line swept by the object's bounding sphere can ever get within reach
    lo, hi = parts_bounds(parts)
    centre, radius = 0.5 * (lo + hi), 0.5 * float(np.linalg.norm(hi - lo))
    rel = points - centre
    lateral = np.linalg.norm(rel - np.outer(rel @ direction, direction), axis=1)
    points = points[lateral <= radius + abs(penetration) + 0.01]
    if len(points) == 0:
        raise PlacementFailure("place_by_contact: nothing lies in the object's path")

    def gap(shift: float) -> float:
        return float(object_sdf(points - shift * direction, parts).min()) + penetration

    shift = -start
    while gap(shift) <= tolerance:
        shift -= start
        if shift < -max_travel:
            raise PlacementFailure("place_by_contact: object still intersects the body far away")
    travelled = 0.0
    for _ in range(2000):
        step = gap(shift)
        if step < tolerance:
            return translate_parts(parts, shift * direction), shift
        shift += step
        travelled += step
        if travelled > max_travel + start:
            break
    raise PlacementFailure("place_by_contact: object never reaches the body along the approach direction")


# ----------------------------------------------------------------------------------------------------------------
# Distances to the body surface (object-side contact)
# ----------------------------------------------------------------------------------------------------------------


def closest_points_on_triangles(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Closest point on each triangle ``tris [N,3,3]`` to ``points [N,3]`` (Ericson, Real-Time Collision Detection)."""
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    ab, ac, ap = b - a, c - a, points - a
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    bp = points - b
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    cp = points - c
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    denom = np.where(np.abs(denom) < 1e-30, 1e-30, denom)
    v = vb / denom
    w = vc / denom
    result = a + ab * v[:, None] + ac * w[:, None]  # interior

    def assign(mask: np.ndarray, value: np.ndarray) -> None:
        result[mask] = value[mask]

    # edge regions (assigned before vertices so vertex regions take precedence)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        assign((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), b + (c - b) * t_bc[:, None])
        t_ac = d2 / (d2 - d6)
        assign((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + ac * t_ac[:, None])
        t_ab = d1 / (d1 - d3)
        assign((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + ab * t_ab[:, None])
    assign((d6 >= 0) & (d5 <= d6), c)
    assign((d3 >= 0) & (d4 <= d3), b)
    assign((d1 <= 0) & (d2 <= 0), a)
    return result


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, y)


class BodySurface:
    """Distance and inside queries against a posed body mesh (one closed shell): exact point–triangle distances over
    the faces around the k nearest vertices, inside tests by Embree ray parity (robust where posing folds the skin,
    which defeats normal-based sign tests)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, vertex_faces: np.ndarray):
        from scipy.spatial import cKDTree

        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.vertex_faces = vertex_faces  # [V, M] face ids per vertex, -1 padded
        self.tree = cKDTree(self.vertices)
        edges = self.vertices[self.faces] - self.vertices[np.roll(self.faces, 1, axis=1)]
        self.max_edge = float(np.linalg.norm(edges, axis=2).max())
        tri = self.vertices[self.faces]
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        vn = np.zeros_like(self.vertices)
        for axis in range(3):
            weights = np.repeat(normals[:, axis], 3)
            vn[:, axis] = np.bincount(self.faces.ravel(), weights=weights, minlength=len(self.vertices))
        self.vertex_normals = vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-18)
        self._mesh = None

    @staticmethod
    def vertex_face_table(faces: np.ndarray, num_vertices: int) -> np.ndarray:
        faces = np.asarray(faces, dtype=np.int64)
        flat_v = faces.ravel()
        flat_f = np.repeat(np.arange(len(faces)), 3)
        order = np.argsort(flat_v, kind="stable")
        flat_v, flat_f = flat_v[order], flat_f[order]
        counts = np.bincount(flat_v, minlength=num_vertices)
        table = np.full((num_vertices, max(1, counts.max())), -1, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(len(flat_v)) - starts[flat_v]
        table[flat_v, rank] = flat_f
        return table

    def unsigned_distance(self, points: np.ndarray, k: int = 6) -> np.ndarray:
        """Distance to the surface, exact over the faces around the ``k`` nearest vertices."""
        points = np.asarray(points, dtype=np.float64)
        _, nn = self.tree.query(points, k=k)
        cand = self.vertex_faces[nn].reshape(len(points), -1)  # [P, k*M], -1 padded
        valid = cand >= 0
        pair_point = np.nonzero(valid)[0]  # grouped by point, in order
        closest = closest_points_on_triangles(points[pair_point], self.vertices[self.faces[cand[valid]]])
        dist = np.linalg.norm(closest - points[pair_point], axis=1)
        starts = np.concatenate([[0], np.cumsum(valid.sum(axis=1))[:-1]])
        return np.minimum.reduceat(dist, starts)

    def contains(self, points: np.ndarray) -> np.ndarray:
        import trimesh

        if self._mesh is None:
            self._mesh = trimesh.Trimesh(self.vertices, self.faces, process=False, validate=False)
        return np.asarray(self._mesh.ray.contains_points(np.asarray(points, dtype=np.float64)), dtype=bool)

    def contact(self, points: np.ndarray, eps: float, search_radius: float = 0.1) -> np.ndarray:
        """``[P]`` bool: within ``eps`` of the body surface, or inside the body (points farther than
        ``search_radius`` from every body vertex are neither)."""
        points = np.asarray(points, dtype=np.float64)
        out = np.zeros(len(points), dtype=bool)
        if len(points) == 0:
            return out
        near_d, near_i = self.tree.query(points, k=1, distance_upper_bound=search_radius)
        close = np.flatnonzero(near_d <= eps + self.max_edge)
        if len(close):
            out[close] = self.unsigned_distance(points[close]) <= eps
        # farther points touch only if they lie inside; the nearest vertex's normal flags the candidates (cheap) and
        # Embree ray parity decides (posing can fold the skin locally, where normal tests alone go wrong)
        rest = np.flatnonzero(np.isfinite(near_d) & ~out)
        if len(rest):
            rel = points[rest] - self.vertices[near_i[rest]]
            maybe = rest[np.einsum("ij,ij->i", rel, self.vertex_normals[near_i[rest]]) <= 0.2 * near_d[rest]]
            if len(maybe):
                out[maybe] = self.contains(points[maybe])
        return out


# ----------------------------------------------------------------------------------------------------------------
# PLY
# ----------------------------------------------------------------------------------------------------------------


def write_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Binary little-endian PLY with float32 vertices, optional uint8 RGB colours and int32 triangle faces."""
    vertices = np.asarray(vertices, dtype="<f4")
    faces = np.asarray(faces, dtype="<i4")
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}",
              "property float x", "property float y", "property float z"]
    fields = [("xyz", "<f4", (3,))]
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        fields.append(("rgb", "u1", (3,)))
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    vert_rec = np.empty(len(vertices), dtype=fields)
    vert_rec["xyz"] = vertices
    if colors is not None:
        vert_rec["rgb"] = np.asarray(colors, dtype=np.uint8)
    face_rec = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["idx"] = faces
    with open(path, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(vert_rec.tobytes())
        handle.write(face_rec.tobytes())


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read back a PLY written by :func:`write_ply` (vertices float64, faces int64)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    n_vert = int(next(l for l in header if l.startswith("element vertex")).split()[-1])
    n_face = int(next(l for l in header if l.startswith("element face")).split()[-1])
    has_color = any(l.endswith(" red") for l in header)
    vdtype = [("xyz", "<f4", (3,))] + ([("rgb", "u1", (3,))] if has_color else [])
    verts = np.frombuffer(data, dtype=vdtype, count=n_vert, offset=end)
    faces = np.frombuffer(data, dtype=[("n", "u1"), ("idx", "<i4", (3,))], count=n_face,
                          offset=end + verts.nbytes)
    return verts["xyz"].astype(np.float64), faces["idx"].astype(np.int64)

