"""All-pairs geodesic distances on a template mesh, for the DECO geodesic error on any body model.

SMPL has a published matrix (``smpl_neutral_geodesic_dist.npy``); SMPL-X and our synthetic body do not, so we compute
one with the heat method (potpourri3d: ~9 ms per source on a 7k-vertex mesh, within ~1e-3 of exact on smooth
surfaces), symmetrise it, and cache it on disk keyed by a hash of the mesh, because it takes a minute to build and
hundreds of MB to hold.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import potpourri3d as pp3d
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra
from tqdm import tqdm

from utils.geometry.raycast import validate_mesh
from utils.paths import default_cache_dir


def mesh_hash(vertices: np.ndarray, faces: np.ndarray) -> str:
    """Stable key of a mesh: vertices rounded to 1e-6 (so float noise does not split the cache) and faces."""
    digest = hashlib.sha256()
    digest.update(np.round(np.asarray(vertices, dtype=np.float64), 6).astype(np.float32).tobytes())
    digest.update(np.asarray(faces, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def compute_geodesic_matrix(vertices: np.ndarray, faces: np.ndarray, method: str = "heat", progress: bool = True) -> np.ndarray:
    """``[N, N]`` float32 symmetric geodesic distances (mesh units)."""
    vertices, faces = validate_mesh(vertices, faces, "geodesic mesh")
    n = len(vertices)
    if method == "heat":
        solver = pp3d.MeshHeatMethodDistanceSolver(vertices, faces)
        dist = np.empty((n, n), dtype=np.float32)
        for i in tqdm(range(n), desc="geodesics (heat method)", disable=not progress, mininterval=2.0):
            dist[i] = solver.compute_distance(i)
    elif method == "graph":
        # Shortest paths along edges: exact on the edge graph, an over-estimate of the surface geodesic.
        edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        lengths = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
        graph = sp.coo_matrix((lengths, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
        dist = dijkstra(graph, directed=False).astype(np.float32)
    else:
        raise ValueError(f"unknown geodesic method {method!r}; use 'heat' or 'graph'")
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    return dist


def geodesic_matrix(
    vertices: np.ndarray, faces: np.ndarray, cache_dir: str | Path | None = None, method: str = "heat", progress: bool = True
) -> np.ndarray:
    """Cached :func:`compute_geodesic_matrix` (memory-mapped read-only when it comes from the cache)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "geodesic"
    path = cache_dir / f"geodesic_{method}_{mesh_hash(vertices, faces)}.npy"
    if path.is_file():
        return load_geodesic_matrix(path, len(vertices))
    dist = compute_geodesic_matrix(vertices, faces, method, progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, dist)
    tmp.replace(path)  # atomic: an interrupted run never leaves a truncated cache entry
    return dist


def load_geodesic_matrix(path: str | Path, num_vertices: int) -> np.ndarray:
    """Read a precomputed matrix (ours, or the RICH/DECO ``smpl_neutral_geodesic_dist.npy``), checking its shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"geodesic matrix not found: {path}")
    dist = np.load(path, mmap_mode="r")
    if dist.shape != (num_vertices, num_vertices):
        raise ValueError(f"{path}: geodesic matrix has shape {dist.shape}, expected ({num_vertices}, {num_vertices})")
    return dist
