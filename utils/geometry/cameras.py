"""Cameras with PyTorch3D's conventions, as pure numpy functions.

The released InteractVLM renders and lifting maps were made with PyTorch3D's ``look_at_view_transform`` and
``FoVPerspectiveCameras`` (60° FoV, znear 1, zfar 100), followed by a shift of the view translation by
``(x_trans, y_trans)``. To stay pixel-compatible with those files without depending on PyTorch3D we re-state its
conventions here:

* world→view uses *row vectors*: ``X_view = X_world @ R + T``;
* view space: +X points left, +Y up, +Z into the screen (the camera looks along +Z);
* NDC: ``x_ndc = x_view / (z_view * tan(fov/2))`` (same for y); pixel ``(row j, col i)`` of an ``S×S`` image has its
  centre at ``x_ndc = 1 - (2i+1)/S``, ``y_ndc = 1 - (2j+1)/S`` (row 0 at the top, column 0 on the left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_FOV_DEG = 60.0
DEFAULT_ZNEAR = 1.0
DEFAULT_ZFAR = 100.0


def camera_position_from_spherical(dist: float, elev_deg: float, azim_deg: float) -> np.ndarray:
    """Camera centre on a sphere around the origin (PyTorch3D ``camera_position_from_spherical_angles``)."""
    elev, azim = np.deg2rad(elev_deg), np.deg2rad(azim_deg)
    return dist * np.array([np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)])


def look_at_rotation(camera_position: np.ndarray, at: np.ndarray = np.zeros(3), up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """Rotation whose *columns* are the camera's x, y, z axes in world coordinates (PyTorch3D ``look_at_rotation``).

    PyTorch3D returns a degenerate rotation when ``up`` is parallel to the viewing direction (elevation ±90°); we
    refuse that case instead of silently rendering from an undefined orientation.
    """
    z_axis = _normalize(np.asarray(at, float) - np.asarray(camera_position, float))
    x_axis = np.cross(up, z_axis)
    if np.linalg.norm(x_axis) < 5e-3:
        raise ValueError(f"camera at {camera_position} looks along the up vector {up}: the look-at rotation is undefined")
    x_axis = _normalize(x_axis)
    y_axis = _normalize(np.cross(z_axis, x_axis))
    return np.stack([x_axis, y_axis, z_axis], axis=1)


def look_at_view_transform(dist: float, elev_deg: float, azim_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """``(R, T)`` of a camera at ``(dist, elev, azim)`` looking at the origin with +y up."""
    position = camera_position_from_spherical(dist, elev_deg, azim_deg)
    rotation = look_at_rotation(position)
    translation = -rotation.T @ position
    return rotation, translation


@dataclass(frozen=True)
class ViewSpec:
    """One fixed view of a view set: the five numbers the original stores per view."""

    name: str
    dist: float
    elev: float
    azim: float
    x_trans: float = 0.0
    y_trans: float = 0.0

    def normalized_vector(self) -> np.ndarray:
        """The 5-number camera vector the camera encoders consume: ``(d/10, elev/360, azim/360, (x+1)/2, (y+1)/2)``."""
        return np.array(
            [self.dist / 10.0, self.elev / 360.0, self.azim / 360.0, (self.x_trans + 1.0) / 2.0, (self.y_trans + 1.0) / 2.0],
            dtype=np.float32,
        )

    def camera(self, fov_deg: float = DEFAULT_FOV_DEG) -> "PerspectiveCamera":
        rotation, translation = look_at_view_transform(self.dist, self.elev, self.azim)
        translation = translation + np.array([self.x_trans, self.y_trans, 0.0])
        return PerspectiveCamera(rotation=rotation, translation=translation, fov_deg=fov_deg)


@dataclass(frozen=True)
class PerspectiveCamera:
    """A PyTorch3D ``FoVPerspectiveCameras`` with aspect ratio 1 (all our renders are square)."""

    rotation: np.ndarray
    translation: np.ndarray
    fov_deg: float = DEFAULT_FOV_DEG
    znear: float = DEFAULT_ZNEAR
    zfar: float = DEFAULT_ZFAR

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (solves ``C @ R + T = 0``)."""
        return -self.rotation @ self.translation

    @property
    def focal_ndc(self) -> float:
        return 1.0 / np.tan(np.deg2rad(self.fov_deg) / 2.0)

    def world_to_view(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, float) @ self.rotation + self.translation

    def project_ndc(self, points: np.ndarray) -> np.ndarray:
        """``[..., 3]`` world points → ``[..., 3]`` as ``(x_ndc, y_ndc, z_view)`` (PyTorch3D keeps view depth as z)."""
        view = self.world_to_view(points)
        z = view[..., 2:3]
        xy = self.focal_ndc * view[..., :2] / z
        return np.concatenate([xy, z], axis=-1)

    def project_pixels(self, points: np.ndarray, image_size: int) -> np.ndarray:
        """World points → continuous pixel coordinates ``(col, row, depth)``; integer+0.5 is a pixel centre."""
        ndc = self.project_ndc(points)
        col = (1.0 - ndc[..., 0]) * image_size / 2.0
        row = (1.0 - ndc[..., 1]) * image_size / 2.0
        return np.stack([col, row, ndc[..., 2]], axis=-1)

    def pixel_rays(self, image_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Origins and unit directions ``[S*S, 3]`` (row-major) of the rays through every pixel centre."""
        centers = 1.0 - (2.0 * np.arange(image_size) + 1.0) / image_size
        y_ndc, x_ndc = np.meshgrid(centers, centers, indexing="ij")
        tan_half = 1.0 / self.focal_ndc
        directions_view = np.stack([x_ndc * tan_half, y_ndc * tan_half, np.ones_like(x_ndc)], axis=-1).reshape(-1, 3)
        directions = _normalize(directions_view @ self.rotation.T)
        origins = np.broadcast_to(self.center, directions.shape).copy()
        return origins, directions


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norm, 1e-12)
