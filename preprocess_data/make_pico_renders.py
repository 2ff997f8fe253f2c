"""PICO object contact: mesh renders, contact masks, pixel→vertex maps and per-vertex contact (``datasets/pico.py``).

    bash scripts/run_datagen.sh pico [--splits train test] [--workers 4]

Raw input (assumed layout: the original script read cluster paths; PICO-db ships one folder per image): one folder
per sample in ``<dataset-dir>/pico/<split>/raw/`` (or ``<raw-dir>/<split>/``), named like the image,
``<object>__<image stem>``::

    <object>__<stem>/  one mesh file (object.obj preferred; any .obj/.ply/.glb/.off/.stl), the retrieved object
                       mesh as released (not normalised)
                       one .json contact file (contact.json preferred): entries named "objShape…" (a dict key or a
                       "name" field) whose "contactPoints" list triangles as "f <index>" (0-based, see
                       --face-index-base); "v <index>" entries are taken as vertex ids
                       image.jpg (optional when images/<object>__<stem>.* already exists)

Triangle indices refer to the faces in file order as ``trimesh`` loads them without processing (an OBJ with
polygons larger than triangles is triangulated first, which would shift indices: use triangulated meshes).

Written, where ``datasets/pico.py`` reads them (``<dataset-dir>/pico/<split>/``)::

    images/<object>__<stem>.<ext>               the photo (copied when it came from the sample folder)
    <split>_imglist.pkl                         ["images/<object>__<stem>.<ext>", …], sorted
    lowpoly_mesh_0507/<object>/sam_<name>_<view>.png     Phong render, XYZ vertex colours, white background
                               mask_<name>_<view>.png    255 on triangles with all 3 vertices in contact
                               p2vmap_<name>_<view>.npz  pixel_to_vertices_map [S,S,3] int32 (−1 = background),
                                                         bary_coords_map [S,S,3] float32, num_vertices
                               contact_vertices_<name>.pkl   [num_vertices] float32 0/1 (union of the listed
                                                         triangles' vertices)

The mesh is normalised (centred at its mean vertex, divided by its largest bounding-box side) and rendered from the
``4MV-Z_HM_BM`` views at distance 1.5 with the per-view lights of the view set.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from preprocess_data.datagen_common import (add_common_arguments, cli, configure_logging, dataset_dir_of,
                                            directory_listing, format_error, require_file, run_jobs, write_npz,
                                            write_pickle_if_changed, write_png)
from utils.geometry.views import get_view_set

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
MESH_FOLDER = "lowpoly_mesh_0507"
VIEW_SET = "4MV-Z_HM_BM"
MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".off", ".stl")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OBJECT_PREFIX = "objShape"
_ENTRY = re.compile(r"^\s*([fv])\s+(-?\d+)")


# ----------------------------------------------------------------------------------------------------------------
# contact JSON


def object_contact_entries(data: Any) -> list[list]:
    """The ``contactPoints`` lists of every entry named ``objShape…`` (dict key or ``name``/``label`` field)."""
    found: list[list] = []

    def walk(node: Any, name: str | None) -> None:
        if isinstance(node, dict):
            label = node.get("name", node.get("label", name))
            if "contactPoints" in node and isinstance(label, str) and label.startswith(OBJECT_PREFIX):
                points = node["contactPoints"]
                found.append(points if isinstance(points, list) else [points])
            for key, value in node.items():
                if key != "contactPoints" and isinstance(value, (dict, list)):
                    walk(value, key if isinstance(key, str) else None)
        elif isinstance(node, list):
            for value in node:
                walk(value, name)

    walk(data, None)
    return found


def contact_vertex_ids(json_path: Path, faces: np.ndarray, num_vertices: int, face_index_base: int = 0) -> np.ndarray:
    """Union of the vertices of the object's contact triangles (sorted int64 ids)."""
    try:
        data = json.loads(require_file(json_path, "PICO contact annotations (JSON)").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise format_error(f"{json_path}: cannot read PICO contact annotations: {err}") from err
    entries = object_contact_entries(data)
    if not entries:
        raise format_error(f"{json_path}: no entry named '{OBJECT_PREFIX}…' with 'contactPoints' (expected "
                           "object contact triangles listed as \"f <index>\")")
    face_ids, vertex_ids = [], []
    for points in entries:
        for item in points:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                face_ids.append(int(item) - face_index_base)
                continue
            match = _ENTRY.match(item) if isinstance(item, str) else None
            if match is None:
                raise format_error(f"{json_path}: contact point {item!r} is not \"f <index>\" or \"v <index>\"")
            (face_ids if match.group(1) == "f" else vertex_ids).append(int(match.group(2)) - face_index_base)
    face_ids = np.asarray(face_ids, dtype=np.int64)
    vertex_ids = np.asarray(vertex_ids, dtype=np.int64)
    if face_ids.size and (face_ids.min() < 0 or face_ids.max() >= len(faces)):
        bad = int(face_ids.min() if face_ids.min() < 0 else face_ids.max())
        raise format_error(f"{json_path}: triangle index {bad} outside the mesh's {len(faces)} faces "
                           f"(--face-index-base {face_index_base}; mesh of another resolution?)")
    if vertex_ids.size and (vertex_ids.min() < 0 or vertex_ids.max() >= num_vertices):
        raise format_error(f"{json_path}: vertex index outside the mesh's {num_vertices} vertices")
    return np.unique(np.concatenate([np.asarray(faces)[face_ids].reshape(-1), vertex_ids])).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# samples


def _one_file(folder: Path, preferred: str, suffixes: tuple[str, ...], what: str) -> Path:
    if (folder / preferred).is_file():
        return folder / preferred
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not found:
        raise FileNotFoundError(f"{folder / preferred} not found: expected {what} in the sample folder {folder}")
    if len(found) > 1:
        raise format_error(f"{folder}: several candidates for {what} ({', '.join(p.name for p in found)}); "
                           f"name the right one {preferred}")
    return found[0]


def sample_files(sample_dir: Path) -> tuple[Path, Path]:
    mesh = _one_file(sample_dir, "object.obj", MESH_SUFFIXES, "the object mesh (.obj/.ply/.glb…)")
    contact = _one_file(sample_dir, "contact.json", (".json",), "the contact JSON (objShape… contactPoints)")
    return mesh, contact


def find_image(sample_dir: Path, images_dir: Path, name: str) -> tuple[Path, bool]:
    """``(image, in images/ already)``: images/<name>.* first, else the sample folder's image."""
    for suffix in IMAGE_SUFFIXES:
        if (images_dir / f"{name}{suffix}").is_file():
            return images_dir / f"{name}{suffix}", True
    candidates = sorted(p for p in sample_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not candidates:
        raise FileNotFoundError(f"{images_dir / (name + '.jpg')} not found: expected the photo of sample {name} there "
                                f"or as image.jpg in {sample_dir}")
    preferred = [p for p in candidates if p.stem == "image"]
    return (preferred or candidates)[0], False


def pico_sample_job(job: tuple) -> int:
    """Render one mesh from every view; write sam/mask/p2vmap per view, then the contact vector."""
    from utils.geometry.lifting_maps import LiftingMaps
    from utils.geometry.mesh_io import load_mesh_file
    from utils.geometry.normalize import normalize_mesh_vertices
    from utils.geometry.projection import contact_masks
    from utils.geometry.raycast import rasterize
    from utils.geometry.shading import phong_shade, to_uint8, xyz_colors

    mesh_path, json_path, out_dir, name, size, views, lights, min_vertices, face_base, backend = job
    out_dir = Path(out_dir)
    raw_vertices, faces = load_mesh_file(mesh_path)
    num_vertices = len(raw_vertices)
    ids = contact_vertex_ids(Path(json_path), faces, num_vertices, face_base)
    labels = np.zeros(num_vertices, np.float32)
    labels[ids] = 1.0
    vertices = normalize_mesh_vertices(raw_vertices)
    colors = xyz_colors(vertices)
    for view, light in zip(views, lights):
        camera = view.camera()
        fragments = rasterize(vertices, faces, camera, size, backend=backend)
        image = phong_shade(fragments, vertices, faces, colors, camera, np.asarray(light))
        maps = LiftingMaps.from_fragments([fragments], faces, num_vertices, [view.name])
        mask = contact_masks(labels, maps, min_vertices)[0]
        write_png(out_dir / f"sam_{name}_{view.name}.png", to_uint8(image))
        write_png(out_dir / f"mask_{name}_{view.name}.png", mask * np.uint8(255))
        write_npz(out_dir / f"p2vmap_{name}_{view.name}.npz", pixel_to_vertices_map=maps.vertex_ids[0],
                  bary_coords_map=maps.weights[0], num_vertices=np.int64(num_vertices))
    write_pickle_if_changed(out_dir / f"contact_vertices_{name}.pkl", labels)
    return len(views) * 3 + 1


def output_files(out_dir: Path, name: str, view_names: tuple[str, ...]) -> list[Path]:
    files = [out_dir / f"{kind}_{name}_{v}.{ext}" for v in view_names
             for kind, ext in (("sam", "png"), ("mask", "png"), ("p2vmap", "npz"))]
    return files + [out_dir / f"contact_vertices_{name}.pkl"]


def run(dataset_dir: Path, splits: tuple[str, ...] = SPLITS, *, raw_dir: Path | None = None, size: int = 1024,
        view_set_name: str = VIEW_SET, mesh_folder: str = MESH_FOLDER, face_index_base: int = 0,
        backend: str | None = None, workers: int = 1, progress: bool = True) -> dict[str, Any]:
    view_set = get_view_set(view_set_name)
    if view_set.kind != "object":
        raise ValueError(f"{view_set_name} is a human view set; PICO renders use an object view set")
    views = view_set.render_views
    lights = tuple(tuple(view_set.light_location(v.name).tolist()) for v in views)
    names = tuple(v.name for v in views)
    roots = {split: Path(dataset_dir) / "pico" / split for split in splits}
    raw_dirs = {split: Path(raw_dir) / split if raw_dir is not None else roots[split] / "raw" for split in splits}
    for samples_dir in raw_dirs.values():
        if not samples_dir.is_dir():
            raise FileNotFoundError(f"{samples_dir} not found: expected one folder per PICO sample "
                                    "(<object>__<stem>/ with the object mesh and its contact JSON)")
    from datasets.pico import pico_object

    listing = directory_listing()
    jobs, skipped, summary = [], 0, {}
    for split in splits:
        root, samples_dir = roots[split], raw_dirs[split]
        images_dir = root / "images"
        listed = []
        for sample_dir in sorted(p for p in samples_dir.iterdir() if p.is_dir()):
            name = sample_dir.name
            try:
                obj = pico_object(name)
            except ValueError as err:
                raise format_error(f"{sample_dir}: {err}") from None
            mesh, contact = sample_files(sample_dir)
            image, in_place = find_image(sample_dir, images_dir, name)
            target = images_dir / f"{name}{image.suffix.lower()}"
            if not in_place:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(image, target)
            listed.append(f"images/{target.name}")
            out_dir = root / mesh_folder / obj
            if listing.all_exist(output_files(out_dir, name, names)):
                skipped += 1
                continue
            jobs.append((str(mesh), str(contact), str(out_dir), name, size, views, lights, view_set.min_vertices,
                         face_index_base, backend))
        if not listed:
            raise FileNotFoundError(f"{samples_dir}/<object>__<stem>/ not found: no sample folders in {samples_dir}")
        written = write_pickle_if_changed(root / f"{split}_imglist.pkl", listed)
        summary[split] = {"samples": len(listed), "imglist_written": written}
    results = run_jobs(pico_sample_job, jobs, workers=workers, desc="PICO renders", unit="mesh", progress=progress,
                       skipped=skipped)
    summary["meshes_rendered"] = len(jobs)
    summary["meshes_skipped"] = skipped
    summary["files_written"] = int(sum(results))
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="run_datagen.sh pico", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    parser.add_argument("--raw-dir", type=Path, default=None,
                        help="sample folders in <raw-dir>/<split>/ (default <dataset-dir>/pico/<split>/raw/)")
    parser.add_argument("--size", type=int, default=1024, help="render / mask resolution (default 1024)")
    parser.add_argument("--view-set", default=VIEW_SET)
    parser.add_argument("--mesh-folder", default=MESH_FOLDER)
    parser.add_argument("--face-index-base", type=int, default=0, choices=[0, 1],
                        help="index of the first triangle in the contact JSON (default 0)")
    parser.add_argument("--backend", choices=["embree", "pytorch3d"], default=None)
    args = parser.parse_args(argv)
    configure_logging()
    summary = run(dataset_dir_of(args), tuple(args.splits), raw_dir=args.raw_dir, size=args.size,
                  view_set_name=args.view_set, mesh_folder=args.mesh_folder, face_index_base=args.face_index_base,
                  backend=args.backend, workers=args.workers, progress=not args.no_progress)
    logger.info("pico: %s", json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    cli(main, "pico")
