"""Point-cloud affordance heat maps for PIAD and LEMON (the original's renders and labels), and the OpenShape-lookup
replacement.

    bash scripts/run_datagen.sh piad [--settings seen unseen] [--splits Train Test] [--lookup aligned] [--workers 4]

Raw input per setting (``<dataset-dir>/piad_ocontact_{seen|unseen}/``, the PIAD release)::

    Img_{Train|Test}.txt     image paths (the part from the ``Img`` folder on is used): Img/<Split>/<Obj>/<aff>/
                             Img_<Split>_<Obj>_<aff>_….jpg
    Point_{Train|Test}.txt   point-cloud paths (from the ``Point`` folder on): lines "<id> <ObjName> x y z a_1 … a_17"
    piad_lookup_results_{Train|Test}.pkl   optional: {image: ranked candidate point files} (the original's OpenShape
                             retrieval, not reproducible here)

Written, exactly where ``datasets/piad.py`` reads them::

    rendered_points_heatmap_1025_color/<Split>/<Obj>/<aff>/sam_<pstem>_<view>.png     SAM input (XYZ colours, white
                                                                                       background)
                                                           mask_<pstem>_<view>.png    255 · affordance of the nearest
                                                                                       rasterised point (0 elsewhere)
                                                           p2pmap_<pstem>_<view>.npz  key "mapping": [S, S] int32
                                                                                       nearest point, −1 = empty
    piad_lookup_results_<Split>.pkl                        only when missing (see --lookup)

Renders: the cloud is centred at its mean and scaled to unit radius, rasterised like PyTorch3D's ``PointsRasterizer``
(10 points per pixel, radius 0.05 NDC for PIAD / 0.03 for LEMON) with an alpha compositor, from the ``4MV-Z_HM`` views
(distance 2; LEMON's released maps were rendered at distance 1.5, the ``lemon`` stage's default).

Which clouds are rendered per image: the line-aligned cloud (when ``Img_*``/``Point_*`` have equal length; the test
pairing) and, from the lookup, the first ``--max-candidates`` (5, what the reader tries) existing candidates whose
column for the image's affordance is not all zero.

``--lookup`` (only used when the lookup pickle does not exist; an existing one is never replaced):

* ``aligned`` (default): the 1:1 lookup ``{image i: [point i]}`` of the line-aligned lists (fails when their
  lengths differ);
* ``same-object``: per image, up to ``--max-candidates`` clouds of the same object with a non-zero column for its
  affordance, in an order drawn from the image name (deterministic) — a stand-in for retrieval when the lists are
  not aligned;
* ``none``: build nothing (the training split then needs the original pickle).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Callable

import numpy as np

from preprocess_data.datagen_common import (add_common_arguments, cli, configure_logging, dataset_dir_of,
                                            directory_listing, format_error, require_file, run_jobs, write_npz,
                                            write_pickle_if_changed, write_png)
from utils.geometry.cameras import ViewSpec
from utils.geometry.views import ViewSet, get_view_set

logger = logging.getLogger(__name__)

PIAD_RADIUS = 0.05
LEMON_RADIUS = 0.03
LEMON_DISTANCE = 1.5
SAM_INPUT_TYPE = "color"
LOOKUP_MODES = ("aligned", "same-object", "none")
PIAD_SPLITS = ("Train", "Test")
PIAD_SETTINGS = ("seen", "unseen")


@dataclass(frozen=True)
class PointSource:
    """One image index of a point-cloud dataset (a PIAD setting/split or a LEMON split) and where its files go."""

    name: str
    root: Path
    image_list: Path
    point_list: Path
    lookup_path: Path
    render_root: Path
    affordances: tuple[str, ...]
    leading_columns: int
    image_anchor: str
    point_anchor: str
    object_and_affordance: Callable[[str], tuple[str, str]]

    def point_path(self, listed: str) -> Path:
        from datasets.io import map_listed_path

        return map_listed_path(self.root, str(listed), self.point_anchor)

    def point_object(self, path: Path) -> str:
        """Object of a point file: PIAD's ``<ObjName>`` column, LEMON's file-name prefix."""
        if self.leading_columns >= 2:
            with open(require_file(path, "a point-cloud text file"), encoding="utf-8") as handle:
                tokens = handle.readline().split()
            if len(tokens) < 2:
                raise format_error(f"{path}: expected lines \"<id> <ObjName> x y z …\"")
            return tokens[1]
        from datasets.lemon import lemon_object

        return lemon_object(path.stem)


def piad_source(dataset_dir: Path, setting: str, split: str, render_folder: str) -> PointSource:
    from datasets.pointcloud import PIAD_AFFORDANCES

    root = Path(dataset_dir) / f"piad_ocontact_{setting}"
    image_list = root / f"Img_{split}.txt"

    def object_and_affordance(listed: str) -> tuple[str, str]:
        tokens = PurePath(listed.replace("\\", "/")).stem.split("_")
        if len(tokens) < 4:
            raise format_error(f"{image_list}: image name {listed!r} does not follow Img_<Split>_<Obj>_<aff>_…")
        return tokens[2], tokens[3]

    return PointSource(f"piad_{setting} {split}", root, image_list, root / f"Point_{split}.txt",
                       root / f"piad_lookup_results_{split}.pkl", root / render_folder / split, PIAD_AFFORDANCES, 2,
                       "Img", "Point", object_and_affordance)


def lemon_source(dataset_dir: Path, split: str, render_folder: str) -> PointSource:
    from datasets.lemon import lemon_object, lemon_sub_path
    from datasets.pointcloud import LEMON_AFFORDANCES

    root = Path(dataset_dir) / "lemon"
    image_list = root / "txt_scripts" / f"{split}.txt"

    def object_and_affordance(listed: str) -> tuple[str, str]:
        sub = lemon_sub_path(listed, image_list)
        return lemon_object(sub.name), sub.parent.name

    return PointSource(f"lemon {split}", root, image_list, root / "txt_scripts" / f"Point_{split}.txt",
                       root / "lemon_ocontact" / f"lemon_lookup_results_{split}.pkl",
                       root / "lemon_ocontact" / render_folder, LEMON_AFFORDANCES, 0, "Images", "Point",
                       object_and_affordance)


# ----------------------------------------------------------------------------------------------------------------
# lookup and candidate selection


class PointTable:
    """Per point file: which affordance columns are non-zero, and its object (read once, cached)."""

    def __init__(self, source: PointSource) -> None:
        self.source = source
        self._columns: dict[Path, np.ndarray] = {}
        self._objects: dict[Path, str] = {}

    def nonzero_columns(self, path: Path) -> np.ndarray:
        if path not in self._columns:
            from datasets.pointcloud import read_point_file

            _, values = read_point_file(path, self.source.leading_columns, len(self.source.affordances))
            self._columns[path] = (np.clip(values, 0.0, 1.0) > 0).any(axis=0)
        return self._columns[path]

    def object_of(self, path: Path) -> str:
        if path not in self._objects:
            self._objects[path] = self.source.point_object(path)
        return self._objects[path]


def _rank_key(image: str, point: str) -> str:
    return hashlib.sha256(f"{PurePath(image).name}|{point}".encode()).hexdigest()


def build_lookup(source: PointSource, images: list[str], points: list[str] | None, mode: str, max_candidates: int,
                 table: PointTable) -> dict[str, list[str]]:
    if mode == "aligned":
        if points is None:
            raise FileNotFoundError(f"{source.point_list} not found: expected the point-cloud list line-aligned with "
                                    f"{source.image_list.name} (needed to build {source.lookup_path.name} with "
                                    "--lookup aligned)")
        if len(points) != len(images):
            raise format_error(
                f"{source.point_list}: {len(points)} lines but {source.image_list} has {len(images)}: the lists are "
                f"not line-aligned, so no 1:1 lookup can replace the missing {source.lookup_path.name}; use "
                "--lookup same-object (or provide the original pickle)")
        return {image: [point] for image, point in zip(images, points)}
    if mode == "same-object":
        if points is None:
            raise FileNotFoundError(f"{source.point_list} not found: expected the list of point clouds to pick "
                                    "same-object candidates from (--lookup same-object)")
        by_object: dict[str, list[tuple[str, Path]]] = {}
        for listed in dict.fromkeys(points):
            path = source.point_path(listed)
            require_file(path, f"a point-cloud text file listed in {source.point_list}")
            by_object.setdefault(table.object_of(path), []).append((listed, path))
        lookup = {}
        for image in images:
            obj, affordance = source.object_and_affordance(image)
            column = source.affordances.index(affordance)
            usable = [listed for listed, path in by_object.get(obj, []) if table.nonzero_columns(path)[column]]
            usable.sort(key=lambda p: _rank_key(image, p))
            lookup[image] = usable[:max_candidates]
        return lookup
    raise ValueError(f"unknown lookup mode {mode!r}; use one of {LOOKUP_MODES}")


def render_requests(source: PointSource, lookup_mode: str,
                    max_candidates: int) -> tuple[dict[Path, set], dict[str, Any]]:
    """``{point file: {(render dir, affordance column)}}`` needed by the readers of this source, plus statistics."""
    from datasets.io import expect_type, load_pickle, read_lines

    images = read_lines(require_file(source.image_list, "one image path per line"), "one image path per line")
    points = read_lines(source.point_list, "one point-cloud path per line") if source.point_list.is_file() else None
    table = PointTable(source)
    stats: dict[str, Any] = {"images": len(images)}
    pairs = []
    for listed in images:
        obj, affordance = source.object_and_affordance(listed)
        if affordance not in source.affordances:
            raise format_error(f"{source.image_list}: affordance {affordance!r} of {listed!r} is not one of "
                               f"{source.affordances}")
        pairs.append((listed, obj, source.affordances.index(affordance)))

    requests: dict[Path, set] = {}
    aligned = points is not None and len(points) == len(images)
    if aligned:
        for (listed, obj, column), point in zip(pairs, points):
            path = require_file(source.point_path(point), f"the point cloud of {listed!r} ({source.point_list})")
            requests.setdefault(path, set()).add((str(source.render_root / obj / source.affordances[column]), column))
    stats["aligned_pairs"] = len(images) if aligned else 0

    if source.lookup_path.is_file():
        lookup = load_pickle(source.lookup_path, "a dict image → ranked list of candidate point files")
        expect_type(lookup, dict, source.lookup_path, "a dict image → ranked list of candidate point files")
        stats["lookup"] = "kept existing"
    elif lookup_mode == "none":
        lookup = None
        stats["lookup"] = "none (not built)"
    else:
        lookup = build_lookup(source, images, points, lookup_mode, max_candidates, table)
        write_pickle_if_changed(source.lookup_path, lookup)
        stats["lookup"] = f"built ({lookup_mode})"
    if lookup is not None:
        by_name = {PurePath(str(k).replace("\\", "/")).name: v for k, v in lookup.items()}
        missing_files, without = 0, 0
        for listed, obj, column in pairs:
            candidates = by_name.get(PurePath(listed.replace("\\", "/")).name)
            if candidates is None:
                raise format_error(f"{source.lookup_path}: no candidate point clouds for image {listed!r} "
                                   f"({source.image_list})")
            found = 0
            for candidate in (candidates.tolist() if isinstance(candidates, np.ndarray) else candidates):
                if found >= max_candidates:
                    break
                path = source.point_path(str(candidate))
                if not path.is_file():
                    missing_files += 1
                    continue
                if not table.nonzero_columns(path)[column]:
                    continue
                render_dir = source.render_root / obj / source.affordances[column]
                requests.setdefault(path, set()).add((str(render_dir), column))
                found += 1
            without += found == 0
        stats["lookup_candidates_missing_files"] = missing_files
        stats["images_without_usable_candidate"] = without
        if missing_files:
            logger.warning("%s: %d lookup candidates are not on disk (skipped)", source.name, missing_files)
    return requests, stats


# ----------------------------------------------------------------------------------------------------------------
# rendering


def read_points(path: Path, leading_columns: int, num_affordances: int) -> tuple[np.ndarray, np.ndarray]:
    """``[P, 3]`` coordinates and ``[P, A]`` affordances of a point file (the readers' format, without importing them
    into the workers)."""
    columns = range(leading_columns, leading_columns + 3 + num_affordances)
    try:
        values = np.loadtxt(require_file(path, "a point-cloud text file"), usecols=columns, dtype=np.float64, ndmin=2)
    except (ValueError, IndexError) as err:
        raise format_error(f"{path}: expected lines of {leading_columns} leading tokens, x y z and {num_affordances} "
                           f"affordance values: {err}") from err
    return values[:, :3], values[:, 3:]


def render_point_job(job: tuple) -> int:
    """Render one point cloud from every view and write sam/mask/p2pmap into each requested (folder, affordance)."""
    from utils.geometry.normalize import normalize_point_cloud
    from utils.geometry.pointcloud import render_point_cloud
    from utils.geometry.shading import to_uint8

    point_path, leading_columns, num_affordances, outputs, views, size, radius = job
    xyz, values = read_points(Path(point_path), leading_columns, num_affordances)
    points = normalize_point_cloud(xyz)
    stem = Path(point_path).stem
    written = 0
    for view in views:
        render = render_point_cloud(points, view.camera(), size, radius=radius)
        image = to_uint8(render.image)
        seen = render.point_ids >= 0
        safe_ids = np.maximum(render.point_ids, 0)
        for render_dir, column in outputs:
            folder = Path(render_dir)
            heat = np.clip(values[:, column], 0.0, 1.0)
            label = np.where(seen, heat[safe_ids], 0.0)
            write_png(folder / f"sam_{stem}_{view.name}.png", image)
            write_npz(folder / f"p2pmap_{stem}_{view.name}.npz", mapping=render.point_ids.astype(np.int32))
            write_png(folder / f"mask_{stem}_{view.name}.png", np.round(label * 255.0).astype(np.uint8))
            written += 3
    return written


def render_views_at(view_set: ViewSet, distance: float | None) -> tuple[ViewSpec, ...]:
    views = view_set.render_views
    return views if distance is None else tuple(dataclasses.replace(v, dist=float(distance)) for v in views)


def run_sources(sources: list[PointSource], *, view_set: ViewSet, size: int, radius: float, distance: float | None,
                lookup_mode: str, max_candidates: int, workers: int = 1, progress: bool = True,
                desc: str = "heat maps") -> dict[str, Any]:
    """Collect the render requests of every source, skip complete ones, render the rest."""
    if lookup_mode not in LOOKUP_MODES:
        raise ValueError(f"--lookup must be one of {LOOKUP_MODES}, got {lookup_mode!r}")
    from datasets.pointcloud import heatmap_files

    views = render_views_at(view_set, distance)
    names = tuple(v.name for v in views)
    listing = directory_listing()
    merged: dict[Path, tuple[int, int, set]] = {}  # clouds shared by several sources are rendered once
    summary: dict[str, Any] = {}
    for source in sources:
        requests, stats = render_requests(source, lookup_mode, max_candidates)
        summary[source.name] = stats
        for path, outputs in requests.items():
            merged.setdefault(path, (source.leading_columns, len(source.affordances), set()))[2].update(outputs)
    jobs, skipped = [], 0
    for path, (leading_columns, num_affordances, outputs) in sorted(merged.items()):
        todo = sorted(o for o in outputs
                      if not listing.all_exist(sum(heatmap_files(Path(o[0]), path.stem, names).values(), ())))
        if todo:
            jobs.append((str(path), leading_columns, num_affordances, todo, views, size, radius))
        else:
            skipped += 1
    results = run_jobs(render_point_job, jobs, workers=workers, desc=desc, unit="cloud", progress=progress,
                       skipped=skipped)
    summary["clouds_skipped"] = skipped
    summary["clouds_rendered"] = len(jobs)
    summary["files_written"] = int(sum(results))
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="run_datagen.sh piad", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--settings", nargs="+", default=None, choices=PIAD_SETTINGS,
                        help="default: every setting whose piad_ocontact_<setting>/ exists")
    parser.add_argument("--splits", nargs="+", default=list(PIAD_SPLITS), choices=PIAD_SPLITS)
    parser.add_argument("--view-set", default="4MV-Z_HM")
    parser.add_argument("--size", type=int, default=1024, help="render / mask resolution (default 1024)")
    parser.add_argument("--radius", type=float, default=PIAD_RADIUS, help="point radius in NDC (default 0.05)")
    parser.add_argument("--render-distance", type=float, default=None,
                        help="camera distance (default: the view set's, 2.0)")
    parser.add_argument("--render-folder", default=None,
                        help="default: <view-set folder>_color (rendered_points_heatmap_1025_color)")
    parser.add_argument("--lookup", default="aligned", choices=LOOKUP_MODES,
                        help="how to build a missing lookup pickle (module doc)")
    parser.add_argument("--max-candidates", type=int, default=5)
    args = parser.parse_args(argv)
    configure_logging()
    dataset_dir = dataset_dir_of(args)
    view_set = get_view_set(args.view_set)
    render_folder = args.render_folder or f"{view_set.folder}_{SAM_INPUT_TYPE}"
    settings = args.settings
    if settings is None:
        settings = [s for s in PIAD_SETTINGS if (dataset_dir / f"piad_ocontact_{s}").is_dir()]
        if not settings:
            require_file(dataset_dir / "piad_ocontact_seen" / f"Img_{args.splits[0]}.txt",
                          "the PIAD image list (the release unpacked as piad_ocontact_seen/ or piad_ocontact_unseen/)")
    sources = [piad_source(dataset_dir, setting, split, render_folder) for setting in settings for split in args.splits]
    summary = run_sources(sources, view_set=view_set, size=args.size, radius=args.radius, distance=args.render_distance,
                          lookup_mode=args.lookup, max_candidates=args.max_candidates, workers=args.workers,
                          progress=not args.no_progress, desc="PIAD heat maps")
    logger.info("piad: %s", json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    cli(main, "piad")
