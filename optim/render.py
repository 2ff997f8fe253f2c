"""Hard renders through a :class:`~optim.camera.PinholeCamera` by Embree ray casting (trimesh + embreex).

``utils.geometry.raycast`` renders square PyTorch3D FoV views; fitting needs the photo's own pinhole camera, any
aspect ratio and any sub-window, so the rays are cast here from the camera origin through each pixel centre. Used for
the occluder depth map of the human, the masks the soft silhouette is tested against and the overlays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from trimesh.ray.ray_pyembree import RayMeshIntersector

from optim.camera import PinholeCamera
from utils.geometry.raycast import validate_mesh


@dataclass
class PinholeFragments:
    mesh_ids: np.ndarray  # [H, W] int32, index of the mesh seen at the pixel, -1 for background
    face_ids: np.ndarray  # [H, W] int64, face index inside that mesh, -1 for background
    depth: np.ndarray  # [H, W] float32 view depth z, inf for background
    normals: np.ndarray  # [H, W, 3] float32 unit face normal (camera frame), 0 for background


def cast(meshes: list[tuple[np.ndarray, np.ndarray]], camera: PinholeCamera) -> PinholeFragments:
    """Nearest surface per pixel centre over several meshes ``[(vertices [N,3] camera frame, faces [F,3]), ...]``."""
    verts, faces, owner = [], [], []
    offset = 0
    for i, (v, f) in enumerate(meshes):
        v, f = validate_mesh(v, f, f"mesh {i}")
        verts.append(v)
        faces.append(f + offset)
        owner.append(np.full(len(f), i, dtype=np.int32))
        offset += len(v)
    v_all, f_all, owner_all = np.concatenate(verts), np.concatenate(faces), np.concatenate(owner)
    first_face = np.cumsum([0] + [len(f) for f in faces])[:-1]
    mesh = trimesh.Trimesh(vertices=v_all, faces=f_all, process=False, validate=False)
    directions = camera.pixel_rays()
    origins = np.zeros_like(directions)
    face_hit, ray_hit, locations = RayMeshIntersector(mesh).intersects_id(
        origins, directions, multiple_hits=False, return_locations=True)
    n = camera.width * camera.height
    mesh_ids = np.full(n, -1, dtype=np.int32)
    face_ids = np.full(n, -1, dtype=np.int64)
    depth = np.full(n, np.inf, dtype=np.float32)
    normals = np.zeros((n, 3), dtype=np.float32)
    mesh_ids[ray_hit] = owner_all[face_hit]
    face_ids[ray_hit] = face_hit - first_face[owner_all[face_hit]]
    depth[ray_hit] = locations[:, 2]
    normals[ray_hit] = mesh.face_normals[face_hit]
    shape = (camera.height, camera.width)
    return PinholeFragments(mesh_ids.reshape(shape), face_ids.reshape(shape), depth.reshape(shape),
                            normals.reshape(*shape, 3))


def mask_of(meshes: list[tuple[np.ndarray, np.ndarray]], camera: PinholeCamera, which: int = 0) -> np.ndarray:
    """``[H, W]`` bool: pixels where mesh ``which`` is the visible surface (the others occlude it)."""
    return cast(meshes, camera).mesh_ids == which


def depth_map(vertices: np.ndarray, faces: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """``[H, W]`` view depth of one mesh, ``inf`` where it is not seen."""
    return cast([(vertices, faces)], camera).depth


def shaded_overlay(photo: np.ndarray, meshes: list[tuple[np.ndarray, np.ndarray]], colors: list[tuple[float, float, float]],
                   camera: PinholeCamera, alpha: float = 0.75) -> np.ndarray:
    """The meshes rendered with head-light Lambert shading and blended over the photo (uint8 RGB, photo size)."""
    photo = np.asarray(photo)
    if photo.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"photo {photo.shape[:2]} and camera {camera.height}x{camera.width} differ in size")
    frags = cast(meshes, camera)
    out = photo.astype(np.float32) / 255.0
    fg = frags.mesh_ids >= 0
    if fg.any():
        rays = camera.pixel_rays().reshape(camera.height, camera.width, 3)
        lambert = np.abs((frags.normals * rays).sum(-1))  # head light: faces seen straight on are brightest
        palette = np.asarray(colors, dtype=np.float32)
        shade = palette[frags.mesh_ids[fg]] * (0.25 + 0.75 * lambert[fg])[:, None]
        out[fg] = (1 - alpha) * out[fg] + alpha * shade
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
