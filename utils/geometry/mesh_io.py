"""Reading user-supplied object meshes and point clouds, with errors that say which file and what was expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from utils.geometry.raycast import validate_mesh


def load_mesh_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices [N,3], faces [F,3])`` of a mesh file (obj/ply/glb/off/stl…); scenes are merged into one mesh."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    try:
        loaded = trimesh.load(path, process=False)
    except Exception as err:  # trimesh raises many types for unreadable files
        raise ValueError(f"{path}: could not be read as a mesh ({err})") from err
    if isinstance(loaded, trimesh.Scene):
        geometries = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
        loaded = trimesh.util.concatenate(geometries) if geometries else trimesh.Trimesh()
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))))
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3), dtype=np.int64)))
    return validate_mesh(vertices, faces, str(path))


def load_point_cloud_file(path: str | Path) -> np.ndarray:
    """``[N, 3]`` points from ``.npy``, PIAD/LEMON ``.txt`` (``<id> <Obj> x y z a…`` or ``x y z a…``) or mesh/ply vertices."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point cloud not found: {path}")
    if path.suffix == ".npy":
        points = np.load(path)
    elif path.suffix == ".txt":
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        start = 2 if rows and len(rows[0]) > 1 and not _is_number(rows[0][1]) else 0  # PIAD: '<id> <Obj> x y z …'
        try:
            points = np.array([[float(t) for t in r[start:start + 3]] for r in rows])
        except ValueError as err:
            raise ValueError(f"{path}: expected lines of 'x y z …' or '<id> <Obj> x y z …' ({err})") from err
    else:
        points = np.asarray(trimesh.load(path, process=False).vertices)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 3 or len(points) == 0:
        raise ValueError(f"{path}: expected N×3 point coordinates, got shape {points.shape}")
    return points[:, :3]


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False
