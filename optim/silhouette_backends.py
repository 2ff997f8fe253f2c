"""Which soft silhouette renders the object: our own torch one, or PyTorch3D's when it is installed.

``auto`` (the default) picks PyTorch3D when ``import pytorch3d`` works and ours otherwise; ``torch`` and
``pytorch3d`` force one. Asking for PyTorch3D where it is missing stops with a message that says how to install it,
instead of silently falling back. Both renderers take the same arguments and return the same ``[H, W]`` silhouette
(:class:`optim.silhouette.SoftSilhouette`, :class:`optim.silhouette_pytorch3d.PyTorch3DSilhouette`).
"""

from __future__ import annotations

import numpy as np

from optim.camera import PinholeCamera
from optim.silhouette import SoftSilhouette

RENDERERS = ("auto", "torch", "pytorch3d")
PYTORCH3D_INSTALL = ("PyTorch3D is not installed (or does not import): install it with "
                     "pip install \"git+https://github.com/facebookresearch/pytorch3d.git@stable\" "
                     "(or a prebuilt wheel for your torch/CUDA, see "
                     "https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md), "
                     "or use --renderer torch, our own silhouette, which needs nothing more")


class RendererUnavailable(RuntimeError):
    """The requested silhouette renderer cannot be used here."""


def pytorch3d_import_error() -> str | None:
    """``None`` when ``import pytorch3d.renderer`` works, else why not (a missing package or a broken build)."""
    try:
        import pytorch3d.renderer  # noqa: F401  (imported here only to learn whether it can be)
    except Exception as err:  # a wheel built for another torch raises OSError / RuntimeError, not ImportError
        return f"{type(err).__name__}: {err}"
    return None


def resolve_renderer(name: str) -> str:
    """``auto`` -> ``pytorch3d`` when importable, else ``torch``; ``pytorch3d`` when it is not -> a clear error."""
    if name not in RENDERERS:
        raise ValueError(f"unknown renderer {name!r}; choose from {', '.join(RENDERERS)}")
    if name == "torch":
        return name
    problem = pytorch3d_import_error()
    if problem is None:
        return "pytorch3d"
    if name == "pytorch3d":
        raise RendererUnavailable(f"--renderer pytorch3d: {PYTORCH3D_INSTALL} ({problem})")
    return "torch"


def make_silhouette(renderer: str, faces: np.ndarray, camera: PinholeCamera, sigma_px: float = 0.5,
                    cull_back_faces: bool = False, occluder_depth: np.ndarray | None = None):
    """The silhouette renderer ``renderer`` (any of :data:`RENDERERS`) for one mesh seen through ``camera``."""
    resolved = resolve_renderer(renderer)
    if resolved == "pytorch3d":
        # imported here: the module imports PyTorch3D at its top, which only works where it is installed
        from optim.silhouette_pytorch3d import PyTorch3DSilhouette

        return PyTorch3DSilhouette(faces, camera, sigma_px=sigma_px, cull_back_faces=cull_back_faces,
                                   occluder_depth=occluder_depth)
    return SoftSilhouette(faces, camera, sigma_px=sigma_px, cull_back_faces=cull_back_faces,
                          occluder_depth=occluder_depth)
