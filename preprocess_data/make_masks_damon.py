"""DAMON: object-wise annotation pickles, foot–ground variants, body-render masks and 2D masks.

    bash scripts/run_datagen.sh damon [--splits train test] [--view-set 4MV-Z_Vitru_mv2 4MV-Z_Vitru] [--workers 4]

Raw input per split (``<dataset-dir>/damon/<split>/``, the InteractVLM release's files: DECO's DAMON npz keys, one file
each)::

    imgname.npy                    [N] image paths (the basename is looked up in images/)
    contact_label.npy              [N, 6890] 0/1 (optional; when present its shape is checked)
    contact_label_objectwise.npy   [N] object array of {object name: [vertex ids]} (None / empty = no labels)
    images/<stem>.jpg              (needed by the readers, not here)

Written (everything the reader ``datasets/damon.py`` needs, including the plain object-wise pickles, which the
original's scripts never write: they come only with its download)::

    contact_label_objectwise.pkl              list (len N) of {object: sorted vertex ids}
    body_parts_objectwise.pkl                 {"<stem>_<object>": [parts with ≥ 10 % of their vertices in contact]}
    contact_label_objectwise_wFootGround.pkl  as above plus "foot_ground": the contact vertices of every object whose
                                              name contains "supporting" that lie in the parts "left foot" /
                                              "right foot" (each part needing ≥ 10 % coverage by that object)
    body_parts_objectwise_wFootGround.pkl     as above; "foot_ground" parts are recomputed from its own vertices
                                              (the original copied the "supporting" part list)
    <view-set folder>/<object>/<stem>_<view>.png   255 = contact, one set per (image, object) with contact, for each
                                              --view-set (min_vertices of the set; foot_ground included)
    contact_render_2d/<object>/<stem>_contact_mask.png   only with --contact-2d-dir (see below)

2D masks: the InteractVLM release has no per-image 2D contact source and the original has no generator for
``contact_render_2d``. With ``--contact-2d-dir DIR`` (searched in ``DIR/<split>/`` when that exists, else ``DIR``),
per (image, object with 3D contact) the first of these is used:

    DIR/<object>/<stem>.png | DIR/<object>/<stem>_contact_mask.png    object-specific mask (nonzero = contact)
    DIR/<stem>.json   {"objects": {object: polygons}, "polygons": polygons, "height": H, "width": W} or a plain list
                      of polygons (per image); a polygon is [[x, y], …] in image pixels; H/W default to the image's
    DIR/<stem>.png | DIR/<stem>_contact_mask.png                      per-image mask (e.g. HOT's polygon_2d_contact
                                                                      render), used for every object of the image
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from preprocess_data.datagen_common import (HumanSetup, add_common_arguments, add_human_arguments, body_parts, cli,
                                            configure_logging, dataset_dir_of, directory_listing, format_error,
                                            human_mask_job, human_setup_from_args, image_stem, init_human_worker,
                                            pending_human_outputs, require_file, run_jobs, vertex_ids_from,
                                            write_pickle_if_changed, write_png)

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
DEFAULT_VIEW_SETS = ("4MV-Z_Vitru_mv2", "4MV-Z_Vitru")
FOOT_GROUND = "foot_ground"
SUPPORTING = "supporting"
FOOT_PARTS = ("left foot", "right foot")
MASK_2D_FOLDER = "contact_render_2d"


@dataclass
class DamonRaw:
    split_dir: Path
    names: list[str]
    stems: list[str]
    objectwise: list[dict[str, np.ndarray]]


def read_raw_split(split_dir: Path, num_vertices: int) -> DamonRaw:
    from datasets.io import load_npy

    names_path = require_file(split_dir / "imgname.npy", "the [N] image names of the DAMON split")
    names = load_npy(names_path, "the [N] image names of the split")
    if names.ndim != 1 or names.dtype.kind not in "USO":
        raise format_error(f"{names_path}: expected a 1-D array of image names, got {names.dtype} {names.shape}")
    names = [str(n) for n in names.tolist()]
    stems = [image_stem(n) for n in names]
    repeated = [stem for stem, count in Counter(stems).items() if count > 1]
    if repeated:
        dup = repeated[0]
        raise format_error(f"{names_path}: image stem {dup!r} occurs more than once (masks are named by stem)")

    dense_path = split_dir / "contact_label.npy"
    if dense_path.is_file():
        try:
            shape = np.load(dense_path, mmap_mode="r", allow_pickle=False).shape
        except ValueError as err:
            raise format_error(f"{dense_path}: cannot read the [N, num_vertices] contact labels: {err}") from err
        if len(shape) != 2 or shape[0] != len(names) or shape[1] != num_vertices:
            raise format_error(f"{dense_path}: shape {shape}, expected ({len(names)}, {num_vertices}) — one row per "
                               f"image of {names_path.name}, one column per vertex of the template body (see --body)")

    what = "an [N] object array of {object name: [vertex ids]} (DAMON's contact_label_objectwise)"
    objectwise_path = require_file(split_dir / "contact_label_objectwise.npy", what)
    raw = load_npy(objectwise_path, what)
    if raw.ndim != 1 or len(raw) != len(names):
        raise format_error(f"{objectwise_path}: expected {len(names)} entries (one per image of "
                           f"{names_path.name}), got shape {raw.shape}")
    objectwise = []
    for i, entry in enumerate(raw.tolist()):
        if entry is None or (isinstance(entry, (list, tuple, np.ndarray)) and len(entry) == 0):
            entry = {}
        if not isinstance(entry, dict):
            raise format_error(f"{objectwise_path}: entry {i} ({names[i]}) is a {type(entry).__name__}, "
                               "expected {object name: [vertex ids]}")
        objectwise.append({str(obj): vertex_ids_from(ids, num_vertices, objectwise_path, f"entry {i} object {obj!r}")
                           for obj, ids in entry.items()})
    return DamonRaw(split_dir, names, stems, objectwise)


def foot_ground_ids(entry: dict[str, np.ndarray], segmentation: dict[str, np.ndarray],
                    foot_parts: tuple[str, ...] = FOOT_PARTS) -> np.ndarray:
    """Vertices of the "supporting" objects that lie in a foot part covered ≥ 10 % by that object (the original's rule)."""
    selected = []
    for obj, ids in entry.items():
        if SUPPORTING not in obj or len(ids) == 0:
            continue
        parts = set(body_parts(ids, segmentation))
        for part in foot_parts:
            if part in parts:
                selected.append(np.intersect1d(ids, segmentation[part]))
    return np.unique(np.concatenate(selected)).astype(np.int64) if selected else np.zeros(0, np.int64)


def build_tables(raw: DamonRaw, segmentation: dict[str, np.ndarray], foot_parts: tuple[str, ...] = FOOT_PARTS):
    """(contacts, parts, contacts with foot_ground, parts with foot_ground) as written to the four pickles."""
    contacts, parts, contacts_fg, parts_fg = [], {}, [], {}
    for stem, entry in zip(raw.stems, raw.objectwise):
        plain = {obj: ids.tolist() for obj, ids in entry.items()}
        contacts.append(plain)
        for obj, ids in entry.items():
            parts[f"{stem}_{obj}"] = body_parts(ids, segmentation)
        fg = dict(plain)
        feet = foot_ground_ids(entry, segmentation, foot_parts)
        if len(feet):
            fg[FOOT_GROUND] = feet.tolist()
        contacts_fg.append(fg)
    parts_fg = dict(parts)
    for stem, entry in zip(raw.stems, contacts_fg):
        if FOOT_GROUND in entry:
            parts_fg[f"{stem}_{FOOT_GROUND}"] = body_parts(np.asarray(entry[FOOT_GROUND], np.int64), segmentation)
    return contacts, parts, contacts_fg, parts_fg


# ----------------------------------------------------------------------------------------------------------------
# 2D masks


def _polygons_to_mask(polygons: Any, height: int, width: int, source: Path) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    if not isinstance(polygons, list):
        raise format_error(f"{source}: expected a list of polygons ([[x, y], …] each), got {type(polygons).__name__}")
    for k, polygon in enumerate(polygons):
        try:
            points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError) as err:
            raise format_error(f"{source}: polygon {k} is not a list of [x, y] points") from err
        if len(points) >= 3:
            cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255)
    return mask


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    require_file(path, "the image (its size is needed to draw 2D contact polygons)")
    with Image.open(path) as img:
        return img.height, img.width


def _read_binary_mask(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise format_error(f"{path}: not a readable image (expected a 2D contact mask, nonzero = contact)")
    if image.ndim == 3:
        image = image[..., :3].max(axis=2)
    return np.where(image > 0, 255, 0).astype(np.uint8)


def contact_mask_2d(source_dir: Path, split_dir: Path, image_name: str, stem: str,
                    obj: str) -> tuple[np.ndarray | None, str]:
    """``(mask uint8 0/255 or None, kind)`` of one (image, object) from a 2D source folder (see module doc)."""
    for name in (f"{stem}.png", f"{stem}_contact_mask.png"):
        path = source_dir / obj / name
        if path.is_file():
            return _read_binary_mask(path), "object"
    json_path = source_dir / f"{stem}.json"
    if json_path.is_file():
        from datasets.io import load_json

        data = load_json(json_path, "2D contact polygons")
        polygons, kind = None, "image"
        if isinstance(data, list):
            polygons = data
        elif isinstance(data, dict):
            objects = data.get("objects", {})
            if not isinstance(objects, dict):
                raise format_error(f"{json_path}: \"objects\" must map object names to polygon lists")
            if obj in objects:
                polygons, kind = objects[obj], "object"
            else:
                polygons = data.get("polygons")
        else:
            raise format_error(f"{json_path}: expected a list of polygons or a dict with \"objects\"/\"polygons\"")
        if polygons is not None:
            if isinstance(data, dict) and "height" in data and "width" in data:
                height, width = int(data["height"]), int(data["width"])
            else:
                height, width = _image_size(split_dir / "images" / Path(image_name.replace("\\", "/")).name)
            return _polygons_to_mask(polygons, height, width, json_path), kind
    for name in (f"{stem}.png", f"{stem}_contact_mask.png"):
        path = source_dir / name
        if path.is_file():
            return _read_binary_mask(path), "image"
    return None, "missing"


def write_2d_masks(raw: DamonRaw, source: Path) -> dict[str, int]:
    source_dir = source / raw.split_dir.name if (source / raw.split_dir.name).is_dir() else source
    counts = {"object": 0, "image": 0, "missing": 0, "existing": 0}
    missing_examples = []
    for name, stem, entry in zip(raw.names, raw.stems, raw.objectwise):
        for obj, ids in entry.items():
            if len(ids) == 0:
                continue
            out = raw.split_dir / MASK_2D_FOLDER / obj / f"{stem}_contact_mask.png"
            if out.is_file():
                counts["existing"] += 1
                continue
            mask, kind = contact_mask_2d(source_dir, raw.split_dir, name, stem, obj)
            counts[kind] += 1
            if mask is None:
                missing_examples.append(f"{stem}/{obj}")
                continue
            write_png(out, mask)
    if counts["missing"]:
        logger.warning("damon %s: no 2D contact source in %s for %d (image, object) pairs, e.g. %s",
                       raw.split_dir.name, source_dir, counts["missing"], ", ".join(missing_examples[:3]))
    if counts["image"]:
        logger.info("damon %s: %d 2D masks come from per-image sources (the same mask for every object of the image)",
                    raw.split_dir.name, counts["image"])
    return counts


# ----------------------------------------------------------------------------------------------------------------
# driver


def run(dataset_dir: Path, setup: HumanSetup, splits: tuple[str, ...] = SPLITS, *, workers: int = 1,
        progress: bool = True, contact_2d_dir: Path | None = None,
        foot_parts: tuple[str, ...] = FOOT_PARTS) -> dict[str, Any]:
    for part in foot_parts:
        if part not in setup.segmentation:
            raise format_error(f"{setup.segmentation_path}: no part {part!r} (needed for the foot–ground objects; "
                               f"parts: {sorted(setup.segmentation)}); see --foot-parts")
    raws = [read_raw_split(Path(dataset_dir) / "damon" / split, setup.num_vertices) for split in splits]
    summary: dict[str, Any] = {"setup": setup.describe(), "splits": {}}
    jobs, skipped = [], 0
    for raw in raws:
        contacts, parts, contacts_fg, parts_fg = build_tables(raw, setup.segmentation, foot_parts)
        written = [name for name, value in (("contact_label_objectwise.pkl", contacts),
                                            ("body_parts_objectwise.pkl", parts),
                                            ("contact_label_objectwise_wFootGround.pkl", contacts_fg),
                                            ("body_parts_objectwise_wFootGround.pkl", parts_fg))
                   if write_pickle_if_changed(raw.split_dir / name, value)]
        listing = directory_listing()
        pairs = 0
        for stem, entry in zip(raw.stems, contacts_fg):
            for obj, ids in entry.items():
                if not ids:
                    continue
                pairs += 1
                folders = [raw.split_dir / g.folder / obj for g in setup.groups]
                todo = pending_human_outputs(listing, setup.groups, folders, stem)
                if todo:
                    jobs.append((np.asarray(ids, np.int32), todo))
                else:
                    skipped += 1
        missing_images = [n for n in raw.names
                          if not (raw.split_dir / "images" / Path(n.replace("\\", "/")).name).is_file()]
        if missing_images:
            logger.warning("damon %s: %d of %d images are not in %s (e.g. %s); the readers will need them",
                           raw.split_dir.name, len(missing_images), len(raw.names), raw.split_dir / "images",
                           missing_images[0])
        summary["splits"][raw.split_dir.name] = {
            "images": len(raw.names), "pairs_with_contact": pairs, "tables_written": written,
            "foot_ground": sum(FOOT_GROUND in e for e in contacts_fg), "missing_images": len(missing_images)}
    results = run_jobs(human_mask_job, jobs, workers=workers, desc="DAMON masks", unit="pair",
                       initializer=init_human_worker, initargs=(setup.groups,), progress=progress, skipped=skipped)
    summary["mask_files_written"] = int(sum(results))
    summary["pairs_skipped"] = skipped
    if contact_2d_dir is not None:
        if not Path(contact_2d_dir).is_dir():
            raise FileNotFoundError(f"{contact_2d_dir} not found: expected the folder of 2D contact masks/polygons "
                                    "(--contact-2d-dir)")
        for raw in raws:
            summary["splits"][raw.split_dir.name]["masks_2d"] = write_2d_masks(raw, Path(contact_2d_dir))
    else:
        summary["masks_2d"] = "not generated: no --contact-2d-dir given"
        logger.info("damon: 2D masks (%s/) not generated — the release has no per-image 2D contact source; pass "
                    "--contact-2d-dir with HOT-style masks or polygons to make them", MASK_2D_FOLDER)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="run_datagen.sh damon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    add_human_arguments(parser, DEFAULT_VIEW_SETS)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    parser.add_argument("--contact-2d-dir", type=Path, default=None, help="2D contact masks / polygons (module doc)")
    parser.add_argument("--foot-parts", nargs="+", default=list(FOOT_PARTS),
                        help="segmentation parts that make up foot_ground (default: 'left foot' 'right foot')")
    args = parser.parse_args(argv)
    configure_logging()
    setup = human_setup_from_args(args)
    summary = run(dataset_dir_of(args), setup, tuple(args.splits), workers=args.workers, progress=not args.no_progress,
                  contact_2d_dir=args.contact_2d_dir, foot_parts=tuple(args.foot_parts))
    logger.info("damon: %s", json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    cli(main, "damon")
