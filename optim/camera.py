"""A pinhole camera in OpenCV's frame, the frame every fitting input and output lives in.

Camera coordinates: +x right, +y down, +z forward (into the scene), metres. Pixel coordinates are continuous
``(u, v) = (column, row)`` with the centre of pixel ``(row j, col i)`` at ``(i + 0.5, j + 0.5)`` — the convention of
``utils.geometry.cameras``. A ``K`` written for OpenCV's integer pixel centres is half a pixel off, which the fit does
not notice.

Converters from the two other cameras we meet: a PyTorch3D-convention :class:`~utils.geometry.cameras.PerspectiveCamera`
(SynthContact's renders, +x left, +y up) and OSX's virtual camera (focal 5000 on its 192×256 crop of the person's box,
the camera of the original's ``optim/`` inputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from utils.geometry.cameras import PerspectiveCamera

# OSX regresses SMPL-X in a virtual camera: focal 5000 px on a 192 (w) x 256 (h) crop of the person's box.
OSX_FOCAL = 5000.0
OSX_CROP_WIDTH, OSX_CROP_HEIGHT = 192.0, 256.0
# PyTorch3D's view frame differs from OpenCV's by a half-turn about z: (x, y, z) -> (-x, -y, z).
PYTORCH3D_TO_OPENCV = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class PinholeCamera:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"camera focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera image size must be positive, got {self.width}x{self.height}")
        if not all(np.isfinite([self.fx, self.fy, self.cx, self.cy])):
            raise ValueError("camera intrinsics contain NaN or Inf")

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_matrix(cls, K: np.ndarray, width: int, height: int) -> "PinholeCamera":
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"camera K must be a 3x3 matrix, got shape {K.shape}")
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))

    @classmethod
    def from_dict(cls, data: dict, width: int | None = None, height: int | None = None) -> "PinholeCamera":
        """``{"K": 3x3}`` or ``{"fx", "fy", "cx", "cy"}``, with ``width``/``height`` from the dict or the photo."""
        w = int(data.get("width", width or 0))
        h = int(data.get("height", height or 0))
        if "K" in data:
            return cls.from_matrix(np.asarray(data["K"]), w, h)
        missing = [k for k in ("fx", "fy", "cx", "cy") if k not in data]
        if missing:
            raise ValueError(f"camera needs 'K' (3x3) or fx, fy, cx, cy; missing {missing}")
        return cls(float(data["fx"]), float(data["fy"]), float(data["cx"]), float(data["cy"]), w, h)

    @classmethod
    def from_osx_bbox(cls, bbox_xywh: np.ndarray, width: int, height: int) -> "PinholeCamera":
        """OSX's camera for a person box ``(x, y, w, h)`` in image pixels (what the original's ``optim/`` uses)."""
        x, y, w, h = (float(v) for v in np.asarray(bbox_xywh, dtype=np.float64).reshape(-1)[:4])
        if w <= 0 or h <= 0:
            raise ValueError(f"OSX bbox_2 must have positive width and height, got {bbox_xywh}")
        return cls(OSX_FOCAL / OSX_CROP_WIDTH * w, OSX_FOCAL / OSX_CROP_HEIGHT * h,
                   OSX_CROP_WIDTH / 2 / OSX_CROP_WIDTH * w + x, OSX_CROP_HEIGHT / 2 / OSX_CROP_HEIGHT * h + y,
                   int(width), int(height))

    @classmethod
    def from_pytorch3d(cls, camera: PerspectiveCamera, render_size: int, crop_offset=(0, 0),
                       width: int | None = None, height: int | None = None) -> "PinholeCamera":
        """The intrinsics of a square ``render_size`` FoV render, cropped at ``crop_offset`` (col, row)."""
        focal = camera.focal_ndc * render_size / 2.0
        return cls(focal, focal, render_size / 2.0 - crop_offset[0], render_size / 2.0 - crop_offset[1],
                   int(width or render_size), int(height or render_size))

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width, "height": self.height,
                "convention": "OpenCV frame (+x right, +y down, +z forward); pixel centres at integer + 0.5"}

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    # -- windows -----------------------------------------------------------------------------------------------
    def window(self, u0: float, v0: float, u1: float, v1: float, long_side: int) -> "PinholeCamera":
        """The camera of the image region ``[u0, u1] x [v0, v1]`` resampled so its long side has ``long_side`` px."""
        w, h = u1 - u0, v1 - v0
        if w <= 0 or h <= 0:
            raise ValueError(f"empty window [{u0}, {u1}] x [{v0}, {v1}]")
        scale = long_side / max(w, h)
        out_w, out_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        sx, sy = out_w / w, out_h / h
        return PinholeCamera(self.fx * sx, self.fy * sy, (self.cx - u0) * sx, (self.cy - v0) * sy, out_w, out_h)

    # -- projection --------------------------------------------------------------------------------------------
    def project(self, points):
        """``[..., 3]`` camera points → ``[..., 2]`` pixel ``(u, v)``; numpy or torch in, same out."""
        if isinstance(points, torch.Tensor):
            z = points[..., 2].clamp(min=1e-6)
            return torch.stack([self.fx * points[..., 0] / z + self.cx, self.fy * points[..., 1] / z + self.cy], dim=-1)
        points = np.asarray(points, dtype=np.float64)
        z = np.maximum(points[..., 2], 1e-6)
        return np.stack([self.fx * points[..., 0] / z + self.cx, self.fy * points[..., 1] / z + self.cy], axis=-1)

    def backproject(self, uv: np.ndarray, depth: float | np.ndarray) -> np.ndarray:
        """Pixel ``(u, v)`` at view depth ``z`` → camera point."""
        uv = np.asarray(uv, dtype=np.float64)
        depth = np.asarray(depth, dtype=np.float64)
        x = (uv[..., 0] - self.cx) / self.fx * depth
        y = (uv[..., 1] - self.cy) / self.fy * depth
        return np.stack([x, y, np.broadcast_to(depth, x.shape)], axis=-1)

    def pixel_rays(self) -> np.ndarray:
        """Unit directions ``[H*W, 3]`` (row-major) of the rays from the origin through every pixel centre."""
        u = np.arange(self.width) + 0.5
        v = np.arange(self.height) + 0.5
        uu, vv = np.meshgrid(u, v)
        d = np.stack([(uu - self.cx) / self.fx, (vv - self.cy) / self.fy, np.ones_like(uu)], axis=-1).reshape(-1, 3)
        return d / np.linalg.norm(d, axis=1, keepdims=True)


def pytorch3d_world_to_opencv(camera: PerspectiveCamera, points_world: np.ndarray) -> np.ndarray:
    """World points → OpenCV camera coordinates for a PyTorch3D-convention camera (``X_view = X @ R + T``)."""
    return camera.world_to_view(points_world) @ PYTORCH3D_TO_OPENCV


def pytorch3d_rotation_to_opencv(camera: PerspectiveCamera) -> np.ndarray:
    """The 3x3 ``R_cw`` with ``x_cam = R_cw @ x_world + t`` in OpenCV's frame (column vectors)."""
    return PYTORCH3D_TO_OPENCV @ np.asarray(camera.rotation).T
