"""RICH human–scene contact: downscaled images, body-render masks and the index pickles, for train AND val
(the original produced only train, from TSVs at absolute paths on the authors' cluster).

    bash scripts/run_datagen.sh rich [--splits train val] [--workers 4]
    bash scripts/run_datagen.sh rich --tsv train=rich_train.label.tsv --image-tsv train=rich_train.img.tsv ...

Raw input: one record per frame in ``<input-dir>/<split>/`` (default ``<dataset-dir>/rich/raw/<split>/``), a
``.npz`` or a ``.pkl`` dict with

    contact   [6890] per-vertex contact (BSTRO's label; ≥ 0.5 = contact)
    image     path of the frame (absolute, or relative to the record's folder), or an [H, W, 3] uint8 RGB array
    key       optional output image name; default: <record stem> + the image's suffix (.jpg for arrays)

BSTRO TSV converter (``--tsv SPLIT=LABEL_TSV``, repeatable): label lines ``imgname<TAB>json`` where the JSON is the
6890 contact values, ``{"contact": [...]}`` or METRO's list of annotation dicts (the first one's ``contact``); the
frame comes from ``--image-tsv SPLIT=IMG_TSV`` (METRO's ``imgname<TAB>base64`` lines) or from
``--image-root DIR``/``imgname``. Each line becomes a record ``<input-dir>/<split>/<flat name>.npz``, the flat name
being ``imgname`` with its folders joined by ``_`` (RICH frame names repeat across sequences and cameras).

Written (``<dataset-dir>/rich/``, where ``datasets/rich.py`` reads them)::

    images/<key>                       the frame, downscaled so that its longer side is at most 512
    <view-set folder>/<key stem>_<view>.png   255 = contact (frames with contact only), per --view-set
    img_list_{split}.pkl               [keys], sorted
    body_parts_{split}.pkl             {key: [parts with ≥ 10 % of their vertices in contact]}
    contact_vertices_{split}.pkl       {key: [6890] uint8 0/1}
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import cv2
import numpy as np

from preprocess_data.datagen_common import (HumanSetup, add_common_arguments, add_human_arguments, body_parts, cli,
                                            configure_logging, dataset_dir_of, dense_contact, directory_listing,
                                            format_error, human_mask_job, human_setup_from_args, init_human_worker,
                                            pending_human_outputs, require_file, run_jobs, write_bytes, write_image,
                                            write_npz, write_pickle_if_changed)
from utils.body_models import load_pickle_without_chumpy

logger = logging.getLogger(__name__)

SPLITS = ("train", "val")
DEFAULT_VIEW_SETS = ("4MV-Z_Vitru",)
MAX_SIDE = 512
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
RECORD_WHAT = "a frame record: .npz/.pkl with 'contact' (per-vertex) and 'image' (path or RGB array)"


@dataclass
class Frame:
    key: str
    record: Path
    image_path: Path | None  # None: the image is an array inside the record
    contact_ids: np.ndarray


def _record_fields(path: Path) -> dict[str, Any]:
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except ValueError as err:
            raise format_error(f"{path}: cannot read {RECORD_WHAT}: {err}") from err
    try:
        value = load_pickle_without_chumpy(require_file(path, RECORD_WHAT))
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise format_error(f"{path}: cannot read {RECORD_WHAT}: {err}") from err
    if not isinstance(value, dict):
        raise format_error(f"{path}: expected {RECORD_WHAT}, got a {type(value).__name__}")
    return value


def _as_text(value: Any) -> str | None:
    if isinstance(value, (str, bytes)):
        return value.decode() if isinstance(value, bytes) else value
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "US":
        return str(value.item())
    return None


def read_frame(path: Path, num_vertices: int) -> Frame:
    fields = _record_fields(path)
    for name in ("contact", "image"):
        if name not in fields:
            raise format_error(f"{path}: no {name!r} entry (expected {RECORD_WHAT})")
    ids = dense_contact(fields["contact"], num_vertices, path, "'contact'")
    image_text = _as_text(fields["image"])
    if image_text is not None:
        image_path = Path(image_text)
        image_path = image_path if image_path.is_absolute() else path.parent / image_path
        suffix = image_path.suffix.lower() if image_path.suffix.lower() in IMAGE_SUFFIXES else ".jpg"
    else:
        array = np.asarray(fields["image"])
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise format_error(f"{path}: 'image' must be a path or an [H, W, 3] uint8 RGB array, got "
                               f"{array.dtype} {array.shape}")
        image_path, suffix = None, ".jpg"
    key = _as_text(fields["key"]) if "key" in fields else None
    return Frame(key or f"{path.stem}{suffix}", path, image_path, ids)


def _load_frame_image(frame: Frame) -> np.ndarray:
    if frame.image_path is not None:
        require_file(frame.image_path, f"the frame image of {frame.record}")
        image = cv2.imread(str(frame.image_path), cv2.IMREAD_COLOR)  # EXIF orientation applied, alpha dropped
        if image is None:
            raise format_error(f"{frame.image_path}: not a readable image (the frame of {frame.record})")
        return image[..., ::-1]
    return np.asarray(_record_fields(frame.record)["image"])


def downscale(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Resize so the longer side is ``max_side`` (smaller images are kept as they are)."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def rich_frame_job(job: tuple) -> int:
    """Write one frame's downscaled image (when missing) and its masks."""
    frame, image_out, mask_outputs = job
    written = 0
    if image_out is not None:
        write_image(image_out, downscale(_load_frame_image(frame)))
        written += 1
    if mask_outputs:
        written += human_mask_job((frame.contact_ids.astype(np.int32), mask_outputs))
    return written


# ----------------------------------------------------------------------------------------------------------------
# BSTRO TSV → records


def flat_name(imgname: str) -> str:
    parts = [p for p in PurePath(imgname.strip().replace("\\", "/")).parts if p not in ("/", ".", "..")]
    if not parts:
        raise ValueError(f"empty image name {imgname!r}")
    name = "_".join(parts)
    suffix = PurePath(name).suffix.lower()
    return name[: -len(suffix)] if suffix in IMAGE_SUFFIXES else name


def _contact_from_json(text: str, source: Path, line_no: int) -> np.ndarray:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise format_error(f"{source}:{line_no}: the second column is not JSON ({err})") from err
    if isinstance(value, list) and value and isinstance(value[0], dict):
        value = value[0]
    if isinstance(value, dict):
        if "contact" not in value:
            raise format_error(f"{source}:{line_no}: annotation has no 'contact' (keys: {sorted(value)})")
        value = value["contact"]
    try:
        return np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as err:
        raise format_error(f"{source}:{line_no}: 'contact' is not a list of numbers") from err


def _tsv_offsets(path: Path) -> dict[str, int]:
    """imgname → byte offset of its line (the image TSV can be many GB: it is not read into memory)."""
    offsets, position = {}, 0
    with open(path, "rb") as handle:
        for line in handle:
            key = line.split(b"\t", 1)[0].decode().strip()
            offsets[key] = position
            position += len(line)
    return offsets


def convert_bstro_tsv(label_tsv: Path, out_dir: Path, *, image_tsv: Path | None = None,
                      image_root: Path | None = None) -> int:
    """BSTRO/METRO label TSV (+ image TSV or image root) → one ``.npz`` record per frame in ``out_dir``; returns the
    number of records written (existing ones are kept)."""
    require_file(label_tsv, "BSTRO label lines 'imgname<TAB>contact json'")
    if image_tsv is None and image_root is None:
        raise ValueError(f"{label_tsv}: give --image-tsv or --image-root so the frames can be found")
    offsets = _tsv_offsets(require_file(image_tsv, "METRO image lines 'imgname<TAB>base64'")) if image_tsv else {}
    written = 0
    image_handle = open(image_tsv, "rb") if image_tsv else None
    try:
        with open(label_tsv, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                columns = line.rstrip("\n").split("\t")
                if len(columns) < 2:
                    raise format_error(f"{label_tsv}:{line_no}: expected 'imgname<TAB>json', got {line[:80]!r}")
                imgname, payload = columns[0].strip(), columns[-1]
                stem = flat_name(imgname)
                record = out_dir / f"{stem}.npz"
                if record.is_file():
                    continue
                contact = _contact_from_json(payload, label_tsv, line_no)
                suffix = PurePath(imgname).suffix.lower()
                suffix = suffix if suffix in IMAGE_SUFFIXES else ".jpg"
                if image_handle is not None:
                    if imgname not in offsets:
                        raise format_error(f"{image_tsv}: no line for image {imgname!r} ({label_tsv}:{line_no})")
                    image_handle.seek(offsets[imgname])
                    encoded = image_handle.readline().rstrip(b"\r\n").split(b"\t")[-1]
                    image_rel = Path("images") / f"{stem}{suffix}"
                    write_bytes(out_dir / image_rel, base64.b64decode(encoded))
                    image = str(image_rel)
                else:
                    image = str(require_file(Path(image_root) / imgname, f"the frame of {label_tsv}:{line_no}"))
                write_npz(record, contact=(contact >= 0.5).astype(np.uint8), image=np.array(image),
                          key=np.array(f"{stem}{suffix}"))
                written += 1
    finally:
        if image_handle is not None:
            image_handle.close()
    return written


# ----------------------------------------------------------------------------------------------------------------
# driver


def run(dataset_dir: Path, setup: HumanSetup, splits: tuple[str, ...] = SPLITS, *, input_dir: Path | None = None,
        workers: int = 1, progress: bool = True) -> dict[str, Any]:
    root = Path(dataset_dir) / "rich"
    input_dir = Path(input_dir) if input_dir is not None else root / "raw"
    listing = directory_listing()
    jobs, skipped, summary = [], 0, {}
    for split in splits:
        folder = input_dir / split
        records = sorted(p for p in folder.glob("*") if p.suffix in (".npz", ".pkl")) if folder.is_dir() else []
        if not records:
            raise FileNotFoundError(f"{folder}/*.npz not found: expected one frame record per file ({RECORD_WHAT}); "
                                    "convert BSTRO TSVs with --tsv")
        frames: dict[str, Frame] = {}
        for path in records:
            frame = read_frame(path, setup.num_vertices)
            if frame.key in frames:
                raise format_error(f"{path}: key {frame.key!r} already used by {frames[frame.key].record}")
            frames[frame.key] = frame
        keys = sorted(frames)
        parts = {key: body_parts(frames[key].contact_ids, setup.segmentation) for key in keys}
        contacts = {}
        for key in keys:
            dense = np.zeros(setup.num_vertices, np.uint8)
            dense[frames[key].contact_ids] = 1
            contacts[key] = dense
        written = [name for name, value in ((f"img_list_{split}.pkl", keys), (f"body_parts_{split}.pkl", parts),
                                            (f"contact_vertices_{split}.pkl", contacts))
                   if write_pickle_if_changed(root / name, value)]
        for key in keys:
            frame = frames[key]
            image_out = root / "images" / key
            image_todo = None if listing.exists(image_out) else str(image_out)
            masks_todo = []
            if len(frame.contact_ids):
                folders = [root / g.folder for g in setup.groups]
                masks_todo = pending_human_outputs(listing, setup.groups, folders, PurePath(key).stem)
            if image_todo or masks_todo:
                jobs.append((frame, image_todo, masks_todo))
            else:
                skipped += 1
        with_contact = int(sum(len(f.contact_ids) > 0 for f in frames.values()))
        summary[split] = {"frames": len(keys), "with_contact": with_contact, "tables_written": written}
    results = run_jobs(rich_frame_job, jobs, workers=workers, desc="RICH frames", unit="frame",
                       initializer=init_human_worker, initargs=(setup.groups,), progress=progress, skipped=skipped)
    summary["files_written"] = int(sum(results))
    summary["frames_skipped"] = skipped
    return summary


def _split_mapping(values: list[str], option: str) -> dict[str, Path]:
    mapping = {}
    for value in values:
        split, sep, path = value.partition("=")
        if not sep or not split or not path:
            raise ValueError(f"{option} expects SPLIT=PATH, got {value!r}")
        mapping[split] = Path(path)
    return mapping


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="run_datagen.sh rich", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    add_human_arguments(parser, DEFAULT_VIEW_SETS)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    parser.add_argument("--input-dir", type=Path, default=None, help="frame records (default <dataset-dir>/rich/raw)")
    parser.add_argument("--tsv", action="append", default=[], metavar="SPLIT=LABEL_TSV",
                        help="convert a BSTRO label TSV into records first (repeatable)")
    parser.add_argument("--image-tsv", action="append", default=[], metavar="SPLIT=IMG_TSV",
                        help="METRO image TSV (imgname<TAB>base64) of a split")
    parser.add_argument("--image-root", type=Path, default=None, help="folder the TSV imgnames are relative to")
    args = parser.parse_args(argv)
    configure_logging()
    dataset_dir = dataset_dir_of(args)
    input_dir = args.input_dir or dataset_dir / "rich" / "raw"
    summary: dict[str, Any] = {}
    image_tsvs = _split_mapping(args.image_tsv, "--image-tsv")
    for split, label_tsv in _split_mapping(args.tsv, "--tsv").items():
        summary[f"converted_{split}"] = convert_bstro_tsv(label_tsv, input_dir / split, image_tsv=image_tsvs.get(split),
                                                          image_root=args.image_root)
    setup = human_setup_from_args(args)
    summary.update(setup=setup.describe(), **run(dataset_dir, setup, tuple(args.splits), input_dir=input_dir,
                                                 workers=args.workers, progress=not args.no_progress))
    logger.info("rich: %s", json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    cli(main, "rich")
