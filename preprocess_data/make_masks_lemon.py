"""LEMON: human body-render masks + body parts, and the object affordance heat maps, as ``datasets/lemon.py`` reads them.

    bash scripts/run_datagen.sh lemon [--splits train val] [--parts human object] [--workers 4]

Raw input (``<dataset-dir>/lemon/``, the LEMON release)::

    txt_scripts/{train,val}.txt                 image paths ending in <Obj>/<affordance>/<name>.jpg
    smplh_contact_pkl/<Obj>/<affordance>/<name>.pkl   [6890] SMPL-H contact array (nonzero = contact)
    txt_scripts/Point_{train,val}.txt           point files line-aligned with the image list (object part)
    Point/…                                     point files, lines "x y z a_1 … a_17" (LEMON affordance order)
    lemon_ocontact/lemon_lookup_results_{split}.pkl   optional OpenShape lookup (built with --lookup when missing)

Written, where ``datasets/lemon.py`` reads them::

    <view-set folder>/<Obj>/<affordance>/<name>_<view>.png   255 = contact, per --view-set (its min_vertices)
    body_parts_{split}.pkl                                   {image stem: [parts with ≥ 10 % of their vertices]}
    lemon_ocontact/rendered_points_heatmap_1025_color/<Obj>/<affordance>/{sam,mask}_<pstem>_<view>.png,
                                                            p2pmap_<pstem>_<view>.npz
    lemon_ocontact/lemon_lookup_results_{split}.pkl          only when missing

The heat maps are made by ``make_piad_renders`` (see its help for --lookup) with LEMON's radius 0.03 and, like the
released LEMON maps, camera distance 1.5 (``--render-distance 2`` renders where the conditioning vector says).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from preprocess_data.datagen_common import (HumanSetup, add_common_arguments, add_human_arguments, body_parts, cli,
                                            configure_logging, dataset_dir_of, dense_contact, directory_listing,
                                            human_mask_job, human_setup_from_args, init_human_worker,
                                            pending_human_outputs, require_file, run_jobs, write_pickle_if_changed)
from preprocess_data.make_piad_renders import (LEMON_DISTANCE, LEMON_RADIUS, LOOKUP_MODES, SAM_INPUT_TYPE, lemon_source,
                                               run_sources)
from utils.geometry.views import get_view_set

logger = logging.getLogger(__name__)

SPLITS = ("train", "val")
DEFAULT_VIEW_SETS = ("4MV-Z_Vitru_mv2", "4MV-Z_Vitru")


def run_human(dataset_dir: Path, setup: HumanSetup, splits: tuple[str, ...] = SPLITS, *, workers: int = 1,
              progress: bool = True) -> dict[str, Any]:
    from datasets.io import load_pickle, read_lines
    from datasets.lemon import lemon_sub_path

    root = Path(dataset_dir) / "lemon"
    listing = directory_listing()
    jobs, skipped, summary = [], 0, {}
    for split in splits:
        index_file = require_file(root / "txt_scripts" / f"{split}.txt", "one LEMON image path per line")
        parts: dict[str, list[str]] = {}
        contacts = 0
        for listed in read_lines(index_file, "one image path per line"):
            sub = lemon_sub_path(listed, index_file)
            stem = PurePath(sub.name).stem
            what = f"the [{setup.num_vertices}] SMPL-H contact array of {listed!r} ({index_file.name})"
            contact_file = require_file(root / "smplh_contact_pkl" / sub.parent / f"{stem}.pkl", what)
            ids = dense_contact(load_pickle(contact_file, what), setup.num_vertices, contact_file, "the contact array")
            parts[stem] = body_parts(ids, setup.segmentation)
            contacts += len(ids) > 0
            folders = [root / g.folder / sub.parent for g in setup.groups]
            todo = pending_human_outputs(listing, setup.groups, folders, stem)
            if todo:
                jobs.append((ids.astype(np.int32), todo))
            else:
                skipped += 1
        written = write_pickle_if_changed(root / f"body_parts_{split}.pkl", parts)
        summary[split] = {"images": len(parts), "with_contact": contacts, "body_parts_written": written}
    results = run_jobs(human_mask_job, jobs, workers=workers, desc="LEMON human masks", unit="image",
                       initializer=init_human_worker, initargs=(setup.groups,), progress=progress, skipped=skipped)
    summary["mask_files_written"] = int(sum(results))
    summary["images_skipped"] = skipped
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="run_datagen.sh lemon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    add_human_arguments(parser, DEFAULT_VIEW_SETS)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    parser.add_argument("--parts", nargs="+", default=["human", "object"], choices=["human", "object"])
    parser.add_argument("--object-view-set", default="4MV-Z_HM")
    parser.add_argument("--object-size", type=int, default=1024, help="heat-map render resolution (default 1024)")
    parser.add_argument("--radius", type=float, default=LEMON_RADIUS, help="point radius in NDC (default 0.03)")
    parser.add_argument("--render-distance", type=float, default=LEMON_DISTANCE, help="camera distance (default 1.5)")
    parser.add_argument("--render-folder", default=None, help="default: rendered_points_heatmap_1025_color")
    parser.add_argument("--lookup", default="aligned", choices=LOOKUP_MODES,
                        help="how to build a missing lemon_lookup_results_<split>.pkl (see the piad stage)")
    parser.add_argument("--max-candidates", type=int, default=5)
    args = parser.parse_args(argv)
    configure_logging()
    dataset_dir = dataset_dir_of(args)
    summary: dict[str, Any] = {}
    if "human" in args.parts:
        setup = human_setup_from_args(args)
        summary["human"] = {"setup": setup.describe(), **run_human(dataset_dir, setup, tuple(args.splits),
                                                                   workers=args.workers, progress=not args.no_progress)}
    if "object" in args.parts:
        view_set = get_view_set(args.object_view_set)
        render_folder = args.render_folder or f"{view_set.folder}_{SAM_INPUT_TYPE}"
        sources = [lemon_source(dataset_dir, split, render_folder) for split in args.splits]
        summary["object"] = run_sources(sources, view_set=view_set, size=args.object_size, radius=args.radius,
                                        distance=args.render_distance, lookup_mode=args.lookup,
                                        max_candidates=args.max_candidates, workers=args.workers,
                                        progress=not args.no_progress, desc="LEMON heat maps")
    logger.info("lemon: %s", json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    cli(main, "lemon")
