"""The soft silhouette through PyTorch3D (``MeshRasterizer`` + ``SoftSilhouetteShader``), for users who have it.

Same interface as :class:`optim.silhouette.SoftSilhouette`: built from the faces, a
:class:`~optim.camera.PinholeCamera`, ``sigma_px`` and an optional occluder depth map; called with the ``[N, 3]``
vertices in the camera's OpenCV frame, it returns the ``[H, W]`` silhouette. This is the renderer the original's
``optim/`` uses (SoftRas blending: ``1 - prod_k(1 - sigmoid(-d_k / sigma))`` over the nearest faces, ``d_k`` the
signed *squared* distance in NDC units, negative inside).

Conventions, so both renderers see the same image:

- Camera: our intrinsics go through ``pytorch3d.utils.cameras_from_opencv_projection`` with ``R = I`` and
  ``t = 0`` (the vertices already are in the OpenCV camera frame). That function produces the
  ``PerspectiveCameras`` which renders an OpenCV ``K`` pixel for pixel, non-square images included; PyTorch3D's
  screen space, like ours, has pixel centres at integer + 0.5.
- Blur: ``sigma_px`` is converted to PyTorch3D's units, ``sigma = (sigma_px * 2 / min(H, W))**2`` (NDC spans
  ``min(H, W)`` pixels over 2 units and the distance is squared), so a pixel ``d`` px outside the edge gets
  ``sigmoid(-(d / sigma_px)**2)``; the rasterizer's ``blur_radius`` is ``ln(1 / 1e-4 - 1) * sigma``, the setting
  ``SoftSilhouetteShader``'s documentation asks for (faces whose probability would be under 1e-4 are skipped).
- Occlusion: PyTorch3D's shader has no occluder input, so with an occluder the same SoftRas product is computed
  here with each face's probability multiplied by its visibility ``sigmoid((z_occluder - z_face) / softness)``
  (``zbuf`` is the view depth, which in the OpenCV frame is the same ``z``). Without one, ``SoftSilhouetteShader``
  itself blends.

PyTorch3D is imported at module level on purpose: this module is only imported once
:func:`optim.silhouette_backends.make_silhouette` has found that ``import pytorch3d`` works.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch3d.renderer import BlendParams, MeshRasterizer, RasterizationSettings, SoftSilhouetteShader
from pytorch3d.structures import Meshes
from pytorch3d.utils import cameras_from_opencv_projection

from optim.camera import PinholeCamera

# faces whose SoftRas probability would be below this are not rasterized (the documented blur-radius rule)
MIN_FACE_PROBABILITY = 1e-4
OCCLUDER_BACKGROUND_DEPTH = 1e6


class PyTorch3DSilhouette:
    """Renders the soft silhouette ``[H, W]`` of one mesh (fixed faces, moving vertices) with PyTorch3D."""

    name = "pytorch3d"

    def __init__(self, faces: np.ndarray, camera: PinholeCamera, sigma_px: float = 0.5,
                 cull_back_faces: bool = False, occluder_depth: np.ndarray | None = None,
                 depth_softness: float = 0.01, faces_per_pixel: int = 100):
        if sigma_px <= 0:
            raise ValueError(f"sigma_px must be positive, got {sigma_px}")
        self.faces = torch.as_tensor(np.asarray(faces, dtype=np.int64))
        self.camera = camera
        self.sigma_px = float(sigma_px)
        self.sigma_ndc = (self.sigma_px * 2.0 / min(camera.width, camera.height)) ** 2
        self.depth_softness = float(depth_softness)
        self.blend = BlendParams(sigma=self.sigma_ndc, gamma=1e-4, background_color=(0.0, 0.0, 0.0))
        self.settings = RasterizationSettings(
            image_size=(camera.height, camera.width),
            blur_radius=math.log(1.0 / MIN_FACE_PROBABILITY - 1.0) * self.sigma_ndc,
            faces_per_pixel=int(faces_per_pixel),
            bin_size=0,  # naive rasterization: fitting windows are small, and coarse bins can overflow on dense meshes
            cull_backfaces=bool(cull_back_faces),
        )
        self.shader = SoftSilhouetteShader(blend_params=self.blend)
        self.occluder = None
        if occluder_depth is not None:
            occluder_depth = np.asarray(occluder_depth, dtype=np.float32)
            if occluder_depth.shape != (camera.height, camera.width):
                raise ValueError(f"occluder depth {occluder_depth.shape} does not match the camera "
                                 f"{camera.height}x{camera.width}")
            depth = np.where(np.isfinite(occluder_depth), occluder_depth, OCCLUDER_BACKGROUND_DEPTH)
            self.occluder = torch.from_numpy(depth.astype(np.float32))
        self._device = None
        self._rasterizer = None

    def _rasterizer_on(self, device: torch.device) -> MeshRasterizer:
        if self._rasterizer is None or self._device != device:
            cam = self.camera
            cameras = cameras_from_opencv_projection(
                R=torch.eye(3, device=device)[None], tvec=torch.zeros(1, 3, device=device),
                camera_matrix=torch.tensor(cam.K, dtype=torch.float32, device=device)[None],
                image_size=torch.tensor([[cam.height, cam.width]], dtype=torch.float32, device=device))
            self._rasterizer = MeshRasterizer(cameras=cameras, raster_settings=self.settings)
            self._device = device
        return self._rasterizer

    def __call__(self, vertices: torch.Tensor) -> torch.Tensor:
        verts = vertices.float()
        mesh = Meshes(verts=[verts], faces=[self.faces.to(verts.device)])
        fragments = self._rasterizer_on(verts.device)(mesh)
        if self.occluder is None:
            silhouette = self.shader(fragments, mesh)[0, ..., 3]
        else:
            silhouette = self._occluded_alpha(fragments)
        return silhouette.to(vertices.dtype)

    def _occluded_alpha(self, fragments) -> torch.Tensor:
        """SoftRas' ``1 - prod(1 - p_k)`` with each face's probability faded by how far it is behind the occluder."""
        hit = fragments.pix_to_face[0] >= 0  # [H, W, K]
        prob = torch.sigmoid(-fragments.dists[0] / self.sigma_ndc)
        occluder = self.occluder.to(prob.device)[..., None]
        visible = torch.sigmoid((occluder - fragments.zbuf[0]) / self.depth_softness)
        prob = torch.where(hit, prob * visible, torch.zeros_like(prob))
        return 1.0 - torch.prod(1.0 - prob, dim=-1)

    def target_profile(self, signed_distance_px: np.ndarray) -> np.ndarray:
        """What this renderer draws at a pixel ``d`` px from a straight edge (negative inside, positive outside):
        the fit gives its target mask the same profile, so the mask term is unbiased at the true pose."""
        d = np.asarray(signed_distance_px, dtype=np.float64)
        x = np.clip(np.sign(d) * (d / self.sigma_px) ** 2, -60.0, 60.0)
        return 1.0 / (1.0 + np.exp(x))
