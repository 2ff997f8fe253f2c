"""RGB renders of SynthContact scenes: random camera, colours, light and background; Embree rasterisation + Phong.

The camera is a PyTorch3D-convention :class:`PerspectiveCamera` looking at the body from a random direction; its
distance is solved so the body's bounding box fills a drawn fraction (50–90 %) of the image. Non-square images are
the centre crop of a square render (same focal length in pixels, so the crop is an exact pinhole image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from preprocess_data import synthcontact_geometry as geo
from utils.geometry.cameras import PerspectiveCamera, look_at_rotation
from utils.geometry.raycast import Fragments, rasterize
from utils.geometry.shading import phong_shade, to_uint8

IMAGE_SIDE_RANGE = (224, 512)
FILL_RANGE = (0.5, 0.9)


# ----------------------------------------------------------------------------------------------------------------
# Colours
# ----------------------------------------------------------------------------------------------------------------

SKIN_TONES = np.array([[0.96, 0.80, 0.69], [0.90, 0.70, 0.55], [0.78, 0.57, 0.42], [0.60, 0.42, 0.30],
                       [0.42, 0.28, 0.20], [0.30, 0.20, 0.14]])


def _hsv(rng: np.random.Generator, sat=(0.2, 0.9), val=(0.2, 0.95)) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], dtype=np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64) / 255.0


def body_colors(rng: np.random.Generator, segmentation: dict[str, np.ndarray], num_vertices: int) -> tuple[np.ndarray, dict]:
    """Per-vertex clothing colours: skin, shirt (short/long sleeves), trousers/shorts, shoes."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05)
    shirt, pants, shoes = _hsv(rng), _hsv(rng, val=(0.1, 0.8)), _hsv(rng, sat=(0.0, 0.6), val=(0.05, 0.9))
    long_sleeves, shorts = bool(rng.random() < 0.5), bool(rng.random() < 0.3)
    colors = np.tile(skin, (num_vertices, 1))
    for part, ids in segmentation.items():
        if part in ("torso", "left upper arm", "right upper arm") or (long_sleeves and "forearm" in part):
            colors[ids] = shirt
        elif part in ("hips", "left thigh", "right thigh") or (not shorts and "calf" in part):
            colors[ids] = pants
        elif "foot" in part:
            colors[ids] = shoes
    colors = np.clip(colors * rng.uniform(0.97, 1.03, size=(num_vertices, 1)), 0, 1)
    info = {"skin": skin.round(4).tolist(), "shirt": shirt.round(4).tolist(), "pants": pants.round(4).tolist(),
            "shoes": shoes.round(4).tolist(), "long_sleeves": long_sleeves, "shorts": shorts}
    return colors, info


def object_colors(rng: np.random.Generator, name: str, vertices: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Uniform colour per object; the ground gets a smooth procedural pattern (a few low-frequency waves over x/z,
    independent of how finely its mesh is tessellated)."""
    num_vertices = len(vertices)
    if name == "supporting":
        base = _hsv(rng, sat=(0.0, 0.5), val=(0.25, 0.85))
        shade = np.zeros(num_vertices)
        for _ in range(4):
            angle, wavelength = rng.uniform(0, 2 * math.pi), rng.uniform(0.4, 2.0)
            phase, amp = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.05)
            coord = vertices[:, 0] * math.cos(angle) + vertices[:, 2] * math.sin(angle)
            shade += amp * np.sin(2 * math.pi * coord / wavelength + phase)
        return np.clip(base[None] * (1.0 + shade[:, None]), 0, 1), base.round(4).tolist()
    base = _hsv(rng)
    return np.tile(base, (num_vertices, 1)), base.round(4).tolist()


# ----------------------------------------------------------------------------------------------------------------
# Backgrounds
# ----------------------------------------------------------------------------------------------------------------


def background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, dict]:
    kind = str(rng.choice(["flat", "gradient", "noise"]))
    c0, c1 = _hsv(rng, sat=(0.0, 0.7), val=(0.15, 1.0)), _hsv(rng, sat=(0.0, 0.7), val=(0.15, 1.0))
    if kind == "flat":
        image = np.broadcast_to(c0, (height, width, 3)).copy()
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        t = (xx / width - 0.5) * math.cos(angle) + (yy / height - 0.5) * math.sin(angle)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
        image = c0 * (1 - t[..., None]) + c1 * t[..., None]
    else:
        cells = int(rng.integers(3, 16))
        coarse = rng.random((cells, cells)).astype(np.float32)
        t = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float64)
        t = np.clip(t, 0, 1)
        image = c0 * (1 - t[..., None]) + c1 * t[..., None]
        image += rng.normal(0, 0.03, size=image.shape)
    return np.clip(image, 0, 1), {"type": kind, "colors": [c0.round(4).tolist(), c1.round(4).tolist()]}


# ----------------------------------------------------------------------------------------------------------------
# Camera
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class CameraChoice:
    camera: PerspectiveCamera
    render_size: int  # S: the square that is rendered
    width: int
    height: int
    position: np.ndarray
    target: np.ndarray
    elevation: float
    azimuth: float
    fill: float
    visible_contact: float

    def to_meta(self) -> dict:
        return {"R": self.camera.rotation.round(8).tolist(), "T": self.camera.translation.round(8).tolist(),
                "position": self.position.round(6).tolist(), "look_at": self.target.round(6).tolist(),
                "up": [0.0, 1.0, 0.0], "elevation_deg": round(self.elevation, 4), "azimuth_deg": round(self.azimuth, 4),
                "fov_deg": round(self.camera.fov_deg, 4), "render_size": self.render_size,
                "crop_offset": [(self.render_size - self.width) // 2, (self.render_size - self.height) // 2],
                "convention": "pytorch3d (X_view = X_world @ R + T, +X left, +Y up, +Z forward); image = centre crop of "
                              "the render_size square", "body_fill": round(self.fill, 4),
                "visible_contact_fraction": round(self.visible_contact, 4)}


def make_camera(position: np.ndarray, target: np.ndarray, fov_deg: float) -> PerspectiveCamera:
    rotation = look_at_rotation(position, target)
    return PerspectiveCamera(rotation=rotation, translation=-rotation.T @ position, fov_deg=fov_deg)


def body_fill(view_xy: np.ndarray, view_z: np.ndarray, dist: float, focal: float, size: int, width: int,
              height: int) -> tuple[float, bool]:
    """Largest fraction of the crop the body's 2D bounding box covers, and whether it lies inside the crop, for a
    camera ``dist`` metres back along a fixed viewing direction (``view_xy``/``view_z``: the body points in that
    camera's view frame when it sits at the look-at point, so only the depth changes with ``dist``)."""
    z = view_z + dist
    if (z <= 0).any():
        return float("inf"), False
    ndc = focal * view_xy / z[:, None]
    col = (1.0 - ndc[:, 0]) * size / 2.0 - (size - width) // 2
    row = (1.0 - ndc[:, 1]) * size / 2.0 - (size - height) // 2
    fill = max((col.max() - col.min()) / width, (row.max() - row.min()) / height)
    inside = col.min() >= 0 and row.min() >= 0 and col.max() <= width and row.max() <= height
    return float(fill), bool(inside)


def sample_camera(
    rng: np.random.Generator,
    body_vertices: np.ndarray,
    occluder_points: np.ndarray,  # body vertices + vertices of the objects that can hide it
    contact_points: np.ndarray,
    object_parts: list[list[dict]],
    lying: bool,
    facing_yaw: float = 0.0,
    tries: int = 6,
) -> CameraChoice:
    """Random image size, field of view, fill and viewing direction; among up to ``tries`` directions the first
    that sees at least half of the contact points (and a good part of the body) wins, else the best one."""
    long_side = int(rng.integers(IMAGE_SIDE_RANGE[0], IMAGE_SIDE_RANGE[1] + 1))
    short_side = int(rng.integers(IMAGE_SIDE_RANGE[0], long_side + 1))
    width, height = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
    size = long_side
    fov = rng.uniform(35.0, 65.0)
    fill_target = rng.uniform(*FILL_RANGE)
    from scipy.spatial import ConvexHull

    lo, hi = body_vertices.min(0), body_vertices.max(0)
    centre = 0.5 * (lo + hi)
    hull = body_vertices[ConvexHull(body_vertices).vertices]  # the projected bounding box only depends on these
    body_points = body_vertices[:: max(1, len(body_vertices) // 200)]
    best: tuple[float, CameraChoice] | None = None
    for _ in range(tries):
        if lying:
            elev = rng.uniform(25, 75)
            azim = rng.uniform(0, 360)
        else:
            elev = rng.uniform(-5, 45)
            azim = facing_yaw + (rng.uniform(-80, 80) if rng.random() < 0.75 else rng.uniform(-180, 180))
        target = centre + rng.uniform(-0.04, 0.04, size=3) * (hi - lo)
        e, a = math.radians(elev), math.radians(azim)
        direction = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
        rotation = look_at_rotation(target + direction, target)  # independent of the distance
        rel = (hull - target) @ rotation
        focal = 1.0 / math.tan(math.radians(fov) / 2.0)
        dist = 3.0
        for _ in range(4):
            fill, _ = body_fill(rel[:, :2], rel[:, 2], dist, focal, size, width, height)
            dist *= min(fill / fill_target, 4.0)
        inside = False
        for _ in range(10):
            fill, inside = body_fill(rel[:, :2], rel[:, 2], dist, focal, size, width, height)
            if inside:
                break
            dist *= 1.05
        position = target + dist * direction
        if not inside or any(geo.object_sdf(position[None], parts)[0] < 0.1 for parts in object_parts):
            continue
        camera = make_camera(position, target, fov)
        contact_vis, body_vis = visible_fractions(camera, occluder_points, [contact_points, body_points])
        choice = CameraChoice(camera, size, width, height, position, target, elev, azim % 360.0, fill, contact_vis)
        score = contact_vis + body_vis
        if best is None or score > best[0]:
            best = (score, choice)
        if contact_vis >= 0.5 and body_vis >= 0.5:
            break
    if best is None:
        raise geo.PlacementFailure("no valid camera found")
    return best[1]


def visible_fractions(camera: PerspectiveCamera, scene_points: np.ndarray, queries: list[np.ndarray], grid: int = 96,
                      tol: float = 0.04) -> list[float]:
    """For each point set, the fraction that nothing hides by more than ``tol``: a coarse point-splat z-buffer of
    the scene's vertices (cells of a few cm at body scale), which is all the camera choice needs."""

    def cells(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ndc = camera.project_ndc(p)
        ij = np.floor((1.0 - ndc[:, :2]) * 0.5 * grid).astype(np.int64)
        ok = (ij >= 0).all(axis=1) & (ij < grid).all(axis=1) & (ndc[:, 2] > 0)
        return np.where(ok, ij[:, 1] * grid + ij[:, 0], -1), ndc[:, 2]

    scene_cells, scene_depth = cells(scene_points)
    zbuf = np.full(grid * grid, np.inf)
    keep = scene_cells >= 0
    np.minimum.at(zbuf, scene_cells[keep], scene_depth[keep])
    out = []
    for points in queries:
        if len(points) == 0:
            out.append(1.0)
            continue
        query_cells, query_depth = cells(points)
        seen = (query_cells >= 0) & (query_depth <= zbuf[np.maximum(query_cells, 0)] + tol)
        out.append(float(seen.mean()))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Render
# ----------------------------------------------------------------------------------------------------------------


def sample_light(rng: np.random.Generator, choice: CameraChoice) -> np.ndarray:
    to_cam = choice.position - choice.target
    to_cam /= np.linalg.norm(to_cam)
    d = to_cam + rng.normal(0, 0.7, size=3)
    d[1] = abs(d[1]) + 0.3
    d /= np.linalg.norm(d)
    return choice.target + rng.uniform(2.0, 5.0) * d


def render_rgb(
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray,
    choice: CameraChoice,
    light: np.ndarray,
    background_image: np.ndarray,
    noise_sigma: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, Fragments]:
    """``[H, W, 3]`` uint8 image (Phong-shaded scene over the background, centre-cropped from the square render) and
    the fragments cropped the same way (callers that need what the image shows reuse them instead of casting again)."""
    size = choice.render_size
    frags = rasterize(vertices, faces, choice.camera, size)
    shaded = phong_shade_merged(frags, vertices, faces, colors, choice.camera, light)
    frags = crop_fragments(frags, choice)
    image = crop_image(shaded, choice)
    fg = frags.foreground
    image[~fg] = background_image[~fg]
    if noise_sigma > 0:
        image = image + noise_sigma * rng.standard_normal(size=image.shape, dtype=np.float32)
    return to_uint8(image), frags


def crop_image(square: np.ndarray, choice: CameraChoice) -> np.ndarray:
    """The ``[H, W, ...]`` centre crop of a ``render_size``² array (the offsets ``to_meta`` records)."""
    ox, oy = (choice.render_size - choice.width) // 2, (choice.render_size - choice.height) // 2
    return square[oy:oy + choice.height, ox:ox + choice.width]


def crop_fragments(frags: Fragments, choice: CameraChoice) -> Fragments:
    return Fragments(crop_image(frags.face_ids, choice), crop_image(frags.bary, choice),
                     crop_image(frags.depth, choice), crop_image(frags.points, choice))


def render_body_fragments(body_vertices: np.ndarray, body_faces: np.ndarray, choice: CameraChoice) -> Fragments:
    """The body alone, through the image's camera and crop: the frame the image-frame contact masks are drawn in."""
    return crop_fragments(rasterize(body_vertices, body_faces, choice.camera, choice.render_size), choice)


def contact_mask_2d(frags: Fragments, body_faces: np.ndarray, vertex_labels: np.ndarray) -> np.ndarray:
    """``[H, W]`` uint8 0/1 image-frame contact of one object: 1 where the barycentric interpolation of the object's
    0/1 body-vertex labels over the body face seen at that pixel reaches 0.5.

    ``frags`` should be the body rendered alone (:func:`render_body_fragments`): the body hides its own far side, but
    objects do not hide the contact they make. That is how DAMON's ``contact_render_2d`` masks come about (the fitted
    body rendered onto the photo) and what HOT's polygons mark (the hand region behind a held bottle is contact); with
    scene fragments only the thin visible rim of each contact would remain. Faces beyond ``len(body_faces)`` (objects
    of a merged scene) count as no body.
    """
    face_ids = frags.face_ids
    on_body = (face_ids >= 0) & (face_ids < len(body_faces))
    mask = np.zeros(face_ids.shape, dtype=np.uint8)
    corner_labels = np.asarray(vertex_labels, dtype=np.float64)[body_faces[face_ids[on_body]]]  # [P, 3]
    value = np.einsum("ij,ij->i", frags.bary[on_body].astype(np.float64), corner_labels)
    mask[on_body] = value >= 0.5
    return mask


def phong_shade_merged(fragments, vertices: np.ndarray, faces: np.ndarray, vertex_colors: np.ndarray,
                       camera: PerspectiveCamera, light_location: np.ndarray) -> np.ndarray:
    """The merged scene mesh (body + objects, per-vertex colours) shaded like every other render."""
    return phong_shade(fragments, vertices, faces, vertex_colors, camera, light_location).astype(np.float64)


def encode_jpeg(image_rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
