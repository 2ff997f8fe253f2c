"""Canonical placement of object geometry before rendering, as the original's object scripts do it: the renders and
the camera distances of the object view sets assume these exact normalisations."""

from __future__ import annotations

import numpy as np


def normalize_mesh_vertices(vertices: np.ndarray) -> np.ndarray:
    """Centre at the mean vertex and divide by the largest bounding-box side (PICO meshes, demo object meshes)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    centred = vertices - vertices.mean(axis=0)
    extent = (centred.max(axis=0) - centred.min(axis=0)).max()
    if extent <= 0:
        raise ValueError("cannot normalise a mesh whose vertices all coincide")
    return centred / extent


def normalize_point_cloud(points: np.ndarray) -> np.ndarray:
    """Centre at the mean and scale so the farthest point is at distance 1 (PIAD / LEMON point clouds)."""
    points = np.asarray(points, dtype=np.float64)
    centred = points - points.mean(axis=0)
    radius = np.linalg.norm(centred, axis=1).max()
    if radius <= 0:
        raise ValueError("cannot normalise a point cloud whose points all coincide")
    return centred / radius
