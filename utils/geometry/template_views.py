"""SAM input renders + lifting maps of one template (body, object mesh or point cloud) under one view set.

A *template folder* holds everything the model needs about the fixed views of a template:

* ``{prefix}_{shader}_{view}.png`` — the SAM inputs (and overlay backgrounds) at 1024, ``…_{view}_{size}.png`` at other
  sizes (tiny SAM models read small renders directly instead of down-scaling);
* ``lift_maps_{size}.npz`` — triangle ids + barycentrics (or nearest-point ids) per view, see ``lifting_maps``;
* ``template.json`` — what was rendered, so a stale folder (other mesh, other cameras) is detected, not silently used.

File names for bodies follow the original (``body_render_norm_{view}.png``) so an official ``hcontact_vitruvian``
folder is also a valid template folder (its maps are read from the original's npz pair).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from utils.geometry.geodesic import mesh_hash
from utils.geometry.lifting_maps import LiftingMaps
from utils.geometry.pointcloud import render_point_cloud
from utils.geometry.raycast import rasterize, validate_mesh
from utils.geometry.shading import BODY_BLUE, OBJECT_YELLOW, normal_colors, phong_shade, to_uint8, uniform_colors, xyz_colors
from utils.geometry.views import ViewSet

FORMAT_VERSION = 1
# (file prefix, SAM-input shader, overlay shader) per template kind
_NAMING = {"body": ("body_render", "norm", "blue"), "object": ("obj_render", "color", "grey"), "pointcloud": ("pc_render", "color", "color")}


def render_path(folder: Path, kind: str, shader: str, view: str, size: int) -> Path:
    prefix = _NAMING[kind][0]
    suffix = "" if size == 1024 else f"_{size}"
    return Path(folder) / f"{prefix}_{shader}_{view}{suffix}.png"


def maps_path(folder: Path, size: int) -> Path:
    return Path(folder) / f"lift_maps_{size}.npz"


@dataclass
class TemplateViews:
    """Loaded contents of a template folder at one size."""

    view_set: str
    renders: np.ndarray  # [V, S, S, 3] uint8 SAM inputs
    overlays: np.ndarray  # [V, S, S, 3] uint8 backgrounds for visualisation
    maps: LiftingMaps
    metadata: dict

    @property
    def valid(self) -> np.ndarray:
        return self.maps.foreground


def render_template(
    output_dir: str | Path,
    view_set: ViewSet,
    sizes: Iterable[int],
    *,
    kind: str,
    vertices: np.ndarray,
    faces: np.ndarray | None = None,
    name: str = "template",
    point_radius: float = 0.05,
    official_format: bool = False,
    backend: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a template folder; sizes already present for the same mesh and views are skipped (resumable)."""
    if kind not in _NAMING:
        raise ValueError(f"unknown template kind {kind!r}; use one of {sorted(_NAMING)}")
    output_dir = Path(output_dir)
    vertices = np.asarray(vertices, dtype=np.float64)
    if kind == "pointcloud":
        key = mesh_hash(vertices, np.zeros((0, 3), np.int64))
    else:
        vertices, faces = validate_mesh(vertices, faces, name)
        key = mesh_hash(vertices, faces)
    meta_path = output_dir / "template.json"
    meta = {"format_version": FORMAT_VERSION, "name": name, "kind": kind, "view_set": view_set.name,
            "view_names": list(view_set.view_names), "num_vertices": int(len(vertices)), "mesh_hash": key,
            "camera_vectors": view_set.camera_vectors().round(6).tolist(), "sizes": []}
    if meta_path.is_file() and not overwrite:
        old = json.loads(meta_path.read_text())
        if {k: old.get(k) for k in meta if k != "sizes"} != {k: v for k, v in meta.items() if k != "sizes"}:
            raise FileExistsError(
                f"{output_dir} holds renders of another template or view set ({old.get('name')}, {old.get('view_set')}, "
                f"mesh {old.get('mesh_hash')}); choose another --output-dir or pass --overwrite"
            )
        meta["sizes"] = old.get("sizes", [])
    output_dir.mkdir(parents=True, exist_ok=True)

    prefix, sam_shader, overlay_shader = _NAMING[kind]
    colors = {"norm": normal_colors(vertices, faces) if kind == "body" else None, "color": xyz_colors(vertices),
              "blue": uniform_colors(len(vertices), BODY_BLUE), "grey": uniform_colors(len(vertices), OBJECT_YELLOW)}
    todo = [s for s in sizes if overwrite or s not in meta["sizes"] or not maps_path(output_dir, s).is_file()]
    for size in tqdm(todo, desc=f"rendering {name} / {view_set.name}", unit="size", disable=not progress):
        if kind == "pointcloud":
            point_ids = []
            for view in view_set.render_views:
                render = render_point_cloud(vertices, view.camera(), size, radius=point_radius)
                _write_png(render_path(output_dir, kind, sam_shader, view.name, size), render.image)
                point_ids.append(render.point_ids)
            maps = LiftingMaps.from_point_maps(np.stack(point_ids), len(vertices), view_set.view_names)
        else:
            fragments = []
            for view in view_set.render_views:
                camera = view.camera()
                frags = rasterize(vertices, faces, camera, size, backend=backend)
                light = view_set.light_location(view.name)
                for shader in dict.fromkeys((sam_shader, overlay_shader)):
                    image = phong_shade(frags, vertices, faces, colors[shader], camera, light)
                    _write_png(render_path(output_dir, kind, shader, view.name, size), image)
                fragments.append(frags)
            maps = LiftingMaps.from_fragments(fragments, faces, len(vertices), view_set.view_names)
            if official_format:
                _write_official_maps(output_dir, maps, size)
        maps.save(maps_path(output_dir, size))
        meta["sizes"] = sorted(set(meta["sizes"]) | {int(size)})
        meta_path.write_text(json.dumps(meta, indent=1))  # after each size: an interrupted run resumes cleanly
    return output_dir


def load_template(folder: str | Path, size: int = 1024, view_set: ViewSet | None = None, num_vertices: int | None = None) -> TemplateViews:
    """Read a template folder written by :func:`render_template`, or an official ``hcontact_vitruvian`` folder
    (then ``view_set`` and ``num_vertices`` must be given since it carries no metadata)."""
    folder = Path(folder)
    meta_path = folder / "template.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        kind, names = meta["kind"], tuple(meta["view_names"])
        if view_set is not None and view_set.name != meta["view_set"]:
            raise ValueError(f"{folder} was rendered for view set {meta['view_set']!r}, not {view_set.name!r}")
        maps = LiftingMaps.load(maps_path(folder, size))
    elif view_set is not None and num_vertices is not None:
        # an official folder holds one size, read from its arrays; its renders carry no size suffix
        maps = LiftingMaps.load_official(folder, view_set.view_names, num_vertices, size)
        meta = {"view_set": view_set.name, "kind": "body", "sizes": [maps.image_size[0]], "official": True}
        kind, names = "body", view_set.view_names
    else:
        raise FileNotFoundError(
            f"{folder} is not a template folder (no template.json); render one with "
            "`python -m preprocess_data.render_views`, or pass view_set and num_vertices for an official folder"
        )
    _, sam_shader, overlay_shader = _NAMING[kind]
    file_size = 1024 if meta.get("official") else size  # (1024 = the un-suffixed names)
    renders = np.stack([_read_png(render_path(folder, kind, sam_shader, v, file_size)) for v in names])
    overlay_files = [render_path(folder, kind, overlay_shader, v, file_size) for v in names]
    if not all(p.is_file() for p in overlay_files):  # official folders name their overlays smplh_body_render_blue_*
        overlay_files = [folder / f"smplh_body_render_blue_{v}.png" for v in names]
    overlays = np.stack([_read_png(p) for p in overlay_files]) if all(p.is_file() for p in overlay_files) else renders
    if renders.shape[1:3] != maps.image_size:
        raise ValueError(f"{folder}: renders are {renders.shape[1:3]} but lifting maps {maps.image_size}")
    return TemplateViews(meta["view_set"], renders, overlays, maps, meta)


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), to_uint8(image)[..., ::-1]):
        raise OSError(f"could not write {path}")


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"render missing or unreadable: {path}")
    return image[..., ::-1].copy()


def _write_official_maps(folder: Path, maps: LiftingMaps, size: int) -> None:
    """The original's pair of dict-of-views npz files (int64 vertex ids, float barycentrics) for old tooling."""
    ids = {v: maps.vertex_ids[i].astype(np.int64) for i, v in enumerate(maps.view_names)}
    bary = {v: maps.weights[i] for i, v in enumerate(maps.view_names)}
    np.savez_compressed(folder / f"pixel_to_vertex_map_{size}.npz", **ids)
    np.savez_compressed(folder / f"bary_coords_map_{size}.npz", **bary)
