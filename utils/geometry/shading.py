"""Phong shading of rasterised fragments, reproducing PyTorch3D's ``HardPhongShader`` as the original used it.

The SAM image encoder of a released model was trained on renders made with ``PointLights(ambient 0.5, diffuse 0.3,
specular 0.2)``, default materials (shininess 64) and a white background, with vertex colours ``(normal+1)/2`` for
bodies and normalised XYZ for objects. Matching those pixels keeps the released mask decoders in-distribution.
"""

from __future__ import annotations

import numpy as np

from utils.geometry.cameras import PerspectiveCamera
from utils.geometry.raycast import Fragments

AMBIENT = 0.5
DIFFUSE = 0.3
SPECULAR = 0.2
SHININESS = 64.0
WHITE = np.ones(3, dtype=np.float32)
BODY_BLUE = np.array([0.55, 0.7, 0.95], dtype=np.float32)
OBJECT_YELLOW = np.array([0.95, 0.85, 0.35], dtype=np.float32)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (sum of un-normalised face normals, then normalised), as PyTorch3D computes them."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    face_normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    normals = np.stack([np.bincount(faces.ravel(), weights=np.repeat(face_normals[:, axis], 3), minlength=len(vertices))
                        for axis in range(3)], axis=1)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def normal_colors(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Body colouring of the human SAM inputs: ``(n + 1) / 2`` per vertex."""
    return ((vertex_normals(vertices, faces) + 1.0) / 2.0).astype(np.float32)


def xyz_colors(vertices: np.ndarray, low: float = 0.1, high: float = 0.9) -> np.ndarray:
    """Object colouring of the object SAM inputs: per-axis min–max normalised position mapped to ``[low, high]``."""
    vertices = np.asarray(vertices, dtype=np.float64)
    span = np.maximum(vertices.max(axis=0) - vertices.min(axis=0), 1e-12)
    return (low + (high - low) * (vertices - vertices.min(axis=0)) / span).astype(np.float32)


def uniform_colors(num_vertices: int, color: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(color, dtype=np.float32), (num_vertices, 3)).copy()


def interpolate(fragments: Fragments, faces: np.ndarray, vertex_attributes: np.ndarray) -> np.ndarray:
    """Barycentric interpolation of a per-vertex attribute to the foreground pixels: ``[P, C]`` in row-major order."""
    fg = fragments.foreground
    corners = vertex_attributes[faces[fragments.face_ids[fg]]]  # [P, 3, C]
    return np.einsum("pk,pkc->pc", fragments.bary[fg].astype(np.float64), corners)


def phong_shade(
    fragments: Fragments,
    vertices: np.ndarray,
    faces: np.ndarray,
    vertex_colors: np.ndarray,
    camera: PerspectiveCamera,
    light_location: np.ndarray,
    background: np.ndarray = WHITE,
) -> np.ndarray:
    """``[H, W, 3]`` float image in [0, 1]: Phong lighting with per-pixel interpolated normals, hard blending."""
    faces = np.asarray(faces)
    fg = fragments.foreground
    vertices = np.asarray(vertices, dtype=np.float64)
    # one interpolation of the stacked (normal, position, colour) attributes instead of three
    attributes = np.concatenate([vertex_normals(vertices, faces), vertices, np.asarray(vertex_colors, np.float64)], axis=1)
    values = interpolate(fragments, faces, attributes)
    normals, points, texels = values[:, 0:3], values[:, 3:6], values[:, 6:9]
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-6)

    to_light = np.asarray(light_location, dtype=np.float64) - points
    to_light /= np.maximum(np.linalg.norm(to_light, axis=1, keepdims=True), 1e-6)
    cos_angle = np.einsum("pc,pc->p", normals, to_light)
    diffuse = DIFFUSE * np.maximum(cos_angle, 0.0)
    to_camera = camera.center - points
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-6)
    reflect = -to_light + 2.0 * cos_angle[:, None] * normals
    alpha = np.maximum(np.einsum("pc,pc->p", to_camera, reflect), 0.0) * (cos_angle > 0)
    specular = SPECULAR * alpha**SHININESS

    shaded = (AMBIENT + diffuse)[:, None] * texels + specular[:, None]
    image = np.broadcast_to(np.asarray(background, dtype=np.float32), (*fg.shape, 3)).copy()
    image[fg] = shaded
    return np.clip(image, 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def valid_region_from_render(image_uint8: np.ndarray) -> np.ndarray:
    """The original's valid region of a view: pixels whose RGB sum is below 765 (not pure white)."""
    return image_uint8[..., :3].astype(np.int32).sum(axis=-1) < 765
