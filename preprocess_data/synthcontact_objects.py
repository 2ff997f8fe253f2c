"""Object-side training data for SynthContact: one canonical template per object class, per-sample contact on it.

Every SynthContact object is a primitive with its own random sizes, so each image has its own object mesh
(``objects/<stem>__<object>.ply``, with exact per-vertex contact in ``object_contact.pkl``). Rendering and
SAM-encoding a template per image would cost about 0.4 s of CPU per object; instead each class gets one canonical
mesh (median sizes), rendered once through the object view set exactly as the demo renders a user's mesh
(``normalize_mesh_vertices``, then ``render_template``), and each sample's contact is carried over to it:

* the sample mesh is expressed in the frame of its first primitive (seat, table top, bat handle, the block itself),
  which is how the generator builds each class, and both meshes are scaled per axis to their own bounding box;
* every canonical vertex takes the label of the nearest sample vertex in those unit-box coordinates (a box face
  maps to the same face whatever its proportions; a sphere or cylinder maps to itself).

Written per split (``ocontact`` layout, read by ``datasets.synthcontact_canonical``)::

    <root>/object_templates/<class>/            template.json, obj_render_*_<size>.png, lift_maps_<size>.npz
    <root>/<split>/object_contact_canonical.pkl {"<stem>__<object>": float32 0/1 per canonical vertex}
    <root>/<split>/object_contact_masks/<class>/<stem>_<view>.png   255 = contact (min_vertices=2 rule)

Untouched objects and the ground (``supporting``, not an object mesh a user would pass) are left out.

    python -m preprocess_data.synthcontact_objects --data-dir data/synthcontact [--size 256]
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np

from preprocess_data import synthcontact_geometry as geo
from preprocess_data.datagen_common import write_png

OBJECT_VIEW_SET = "4MV-Z_HM_BM"
TEMPLATE_FOLDER = "object_templates"
MASK_FOLDER = "object_contact_masks"
LABELS_FILE = "object_contact_canonical.pkl"
SKIPPED_CLASSES = ("supporting",)
CANONICAL_SPACING = 0.025  # metres on the canonical meshes (a few thousand vertices per class)


def _block(x0, x1, y0, y1, z0, z1) -> dict:
    return geo.box([(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2], [(x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2])


def canonical_parts(name: str) -> list[dict]:
    """The class's primitives at median sizes, in the frame the generator builds it in (first part = frame)."""
    if name == "chair":  # seat, backrest on the −z end above it
        return [_block(-0.25, 0.25, 0.0, 0.45, -0.225, 0.225), _block(-0.25, 0.25, 0.45, 0.9, -0.225, -0.17)]
    if name == "bench":
        return [_block(-0.7, 0.7, 0.0, 0.45, -0.2, 0.2)]
    if name == "box":
        return [_block(-0.2, 0.2, 0.0, 0.4, -0.2, 0.2)]
    if name == "bed":
        return [_block(-0.5, 0.5, 0.0, 0.5, -1.0, 1.0)]
    if name == "bottle":
        return [geo.cylinder([0, 0, 0], 0.035, 0.11)]
    if name == "baseball_bat":  # handle, then the barrel further along +y
        return [geo.cylinder([0, 0.17, 0], 0.017, 0.17), geo.cylinder([0, 0.59, 0], 0.033, 0.25)]
    if name == "sports_ball":
        return [geo.sphere([0, 0, 0], 0.11)]
    if name == "dining_table":
        top = _block(-0.6, 0.6, 0.71, 0.75, -0.4, 0.4)
        legs = [_block(x, x + 0.05, 0.0, 0.71, z, z + 0.05) for x in (-0.56, 0.51) for z in (-0.36, 0.31)]
        return [top, *legs]
    raise ValueError(f"no canonical shape for object class {name!r}")


def canonical_mesh(name: str) -> tuple[np.ndarray, np.ndarray]:
    return geo.object_mesh(canonical_parts(name), CANONICAL_SPACING)


def local_frame(vertices: np.ndarray, parts: list[dict]) -> np.ndarray:
    """World vertices in the frame of the object's first primitive."""
    first = parts[0]
    rotation = np.asarray(first["rotation"], dtype=np.float64).reshape(3, 3)
    return (np.asarray(vertices, dtype=np.float64) - np.asarray(first["center"])) @ rotation


def unit_box(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(0), points.max(0)
    return (points - lo) / np.maximum(hi - lo, 1e-9)


def transfer_labels(sample_vertices: np.ndarray, sample_labels: np.ndarray, parts: list[dict],
                    canonical_vertices: np.ndarray, canonical_first: dict) -> np.ndarray:
    """Per-vertex 0/1 contact of a sample mesh carried to the canonical mesh (nearest vertex in unit-box coordinates)."""
    from scipy.spatial import cKDTree

    source = unit_box(local_frame(sample_vertices, parts))
    target = unit_box(local_frame(canonical_vertices, [canonical_first]))
    _, nearest = cKDTree(source).query(target)
    return np.asarray(sample_labels, dtype=np.float32)[nearest]


def build_templates(root: Path, classes: list[str], sizes: list[int]) -> dict[str, Path]:
    from utils.geometry.normalize import normalize_mesh_vertices
    from utils.geometry.template_views import render_template
    from utils.geometry.views import get_view_set

    view_set = get_view_set(OBJECT_VIEW_SET)
    folders = {}
    for name in classes:
        vertices, faces = canonical_mesh(name)
        folder = root / TEMPLATE_FOLDER / name
        render_template(folder, view_set, sizes, kind="object", vertices=normalize_mesh_vertices(vertices),
                        faces=faces, name=f"synthcontact_{name}")
        folders[name] = folder
    return folders


def read_ply_vertices(path: Path) -> np.ndarray:
    import trimesh

    return np.asarray(trimesh.load(path, process=False, force="mesh").vertices, dtype=np.float64)


def process_split(root: Path, split: str, folders: dict[str, Path], size: int) -> dict[str, int]:
    from utils.geometry.lifting_maps import LiftingMaps
    from utils.geometry.projection import contact_masks
    from utils.geometry.template_views import maps_path
    from utils.geometry.views import get_view_set

    split_dir = root / split
    meta_path = split_dir / "meta.jsonl"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: not a SynthContact split (run python -m preprocess_data.synthcontact)")
    view_names = get_view_set(OBJECT_VIEW_SET).view_names
    canon = {name: canonical_mesh(name)[0] for name in folders}
    first = {name: canonical_parts(name)[0] for name in folders}
    maps = {name: LiftingMaps.load(maps_path(folder, size)) for name, folder in folders.items()}
    with open(split_dir / "object_contact.pkl", "rb") as f:
        object_contact = pickle.load(f)
    labels_out: dict[str, np.ndarray] = {}
    counts = {"pairs": 0, "empty_after_transfer": 0}
    for line in meta_path.read_text().splitlines():
        meta = json.loads(line)
        for obj in meta["objects"]:
            name = obj["name"]
            if name in SKIPPED_CLASSES or name not in folders or not obj["object_contact_vertices"]:
                continue
            key = f"{meta['stem']}__{name}"
            vertices = read_ply_vertices(split_dir / obj["ply"])
            labels = transfer_labels(vertices, object_contact[key], obj["parts"], canon[name], first[name])
            if not labels.any():
                counts["empty_after_transfer"] += 1
                continue
            labels_out[key] = labels
            masks = contact_masks(labels, maps[name], min_vertices=2)
            for view, mask in zip(view_names, masks):
                write_png(split_dir / MASK_FOLDER / name / f"{meta['stem']}_{view}.png", mask.astype(np.uint8) * 255)
            counts["pairs"] += 1
    with open(split_dir / LABELS_FILE, "wb") as f:
        pickle.dump(labels_out, f)
    return counts


def main(argv: list[str] | None = None) -> dict:
    from preprocess_data.synthcontact_scene import OBJECT_NAMES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a SynthContact folder (with splits.json)")
    parser.add_argument("--size", type=int, default=256, help="mask size (and SAM input size) of the templates")
    parser.add_argument("--splits", nargs="*", default=None, help="default: every split present")
    args = parser.parse_args(argv)
    root = args.data_dir
    if not (root / "splits.json").is_file():
        raise FileNotFoundError(f"{root}: no splits.json, not a SynthContact folder")
    classes = [n for n in OBJECT_NAMES if n not in SKIPPED_CLASSES]
    folders = build_templates(root, classes, [args.size])
    splits = args.splits or [s for s in ("train", "val", "test", "test_heldout") if (root / s / "meta.jsonl").is_file()]
    result = {split: process_split(root, split, folders, args.size) for split in splits}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
