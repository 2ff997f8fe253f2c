"""Fit an object mesh to a person in a photo from their contacts: ``python -m optim.fit``.

    python -m optim.fit --input-dir data/fit_samples/chair__test_000015 --output-dir output/fit
    python -m optim.fit --image photo.jpg --human osx_human.npz --human-contact photo_hcontact_vertices.npz \\
        --object-mesh chair.obj --object-contact chair_ocontact_vertices.npz --object-mask chair_mask.png \\
        --output-dir output/fit [--camera camera.json] [--recipe ours|original] [--optimize-scale] \\
        [--iterations N] [--frames 10] [--video] [--renderer auto|torch|pytorch3d]

``--input-dir`` reads a folder with conventional names (photo ``image.*`` or the folder's only photo; several
candidate photos are refused), ``human.npz|json|ply``, ``camera.json``,
``hcontact_vertices.npz``, ``object_mesh.*``, ``ocontact_vertices.npz``, ``object_mask.png`` or
``object_detection.json``; our demo's ``*_hcontact_vertices.npz`` / ``*_ocontact_vertices.npz`` names work too);
single flags override it. See :mod:`optim.inputs` for every accepted format and :mod:`optim.outputs` for what is
written. ``--renderer`` picks the soft silhouette (:mod:`optim.silhouette_backends`): ``auto`` uses PyTorch3D when it
imports and our own torch one otherwise. Exit status 2 on bad inputs, with a message naming the file, and on
``--renderer pytorch3d`` without PyTorch3D.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from optim.fitter import RECIPES, ObjectFitter
from optim.inputs import INPUT_KEYS, REQUIRED_INPUTS, FitInputError, describe_missing, find_inputs, load_inputs
from optim.outputs import write_json, write_outputs
from optim.silhouette_backends import RENDERERS, RendererUnavailable, resolve_renderer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m optim.fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input-dir", type=Path, help="folder with every input under its conventional name")
    p.add_argument("--image", type=Path)
    p.add_argument("--human", type=Path, help="human mesh / OSX npz / body-parameter JSON, camera frame")
    p.add_argument("--camera", type=Path, help="camera.json (K or fx, fy, cx, cy) unless the human file has it")
    p.add_argument("--human-contact", type=Path, help="per-vertex human contact npz (our demo's _vertices.npz)")
    p.add_argument("--object-mesh", type=Path)
    p.add_argument("--object-contact", type=Path, help="per-vertex object contact npz")
    p.add_argument("--object-mask", help="object mask PNG, Grounded-SAM JSON, or a box x0,y0,x1,y1")
    p.add_argument("--object-scale", type=float, default=1.0, help="multiply the object mesh by this (units to metres)")
    p.add_argument("--body-model-dir", type=Path, help="body models for a body-parameter JSON")
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--recipe", choices=sorted(RECIPES), default="ours")
    p.add_argument("--iterations", type=int, help="optimisation steps (default: the recipe's)")
    p.add_argument("--optimize-scale", action="store_true", help="also fit the object's scale (with a prior at 1)")
    p.add_argument("--renderer", choices=RENDERERS, default="auto",
                   help="soft silhouette: our own torch one, PyTorch3D's, or auto (PyTorch3D when it imports)")
    p.add_argument("--frames", type=int, default=0, metavar="N", help="save an overlay frame every N iterations")
    p.add_argument("--video", action="store_true", help="write fit.mp4 of the optimisation")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def resolve_inputs(args: argparse.Namespace) -> dict:
    """Explicit flags, then the input folder's conventional names (:func:`optim.inputs.find_inputs`, the lookup
    ``load_input_dir`` uses too)."""
    given = {key: getattr(args, key) for key in INPUT_KEYS if getattr(args, key) is not None}
    names = dict.fromkeys(INPUT_KEYS)
    if args.input_dir is not None:
        names.update(find_inputs(args.input_dir, skip=tuple(given)))
    names.update(given)
    missing = [k for k in REQUIRED_INPUTS if names[k] is None]
    if missing:
        raise FitInputError(describe_missing(missing, args.input_dir) +
                            ("" if args.input_dir else " (or --input-dir with them under those names)"))
    return names


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        renderer = resolve_renderer(args.renderer)  # before loading anything: a missing PyTorch3D stops at once
        names = resolve_inputs(args)
        inputs = load_inputs(names["image"], names["human"], names["human_contact"], names["object_mesh"],
                             names["object_contact"], str(names["object_mask"]), names["camera"],
                             object_scale=args.object_scale, body_model_dir=args.body_model_dir)
    except (FitInputError, RendererUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    t_load = time.perf_counter() - t0
    config = RECIPES[args.recipe]
    overrides = {"optimize_scale": args.optimize_scale or config.optimize_scale, "renderer": renderer}
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    config = replace(config, **overrides)
    t1 = time.perf_counter()
    fitter = ObjectFitter(inputs, config)
    t_setup = time.perf_counter() - t1
    result = fitter.fit(progress=not args.quiet, frame_every=args.frames or (5 if args.video else 0))
    t2 = time.perf_counter()
    report = write_outputs(args.output_dir, inputs, result, asdict(config),
                           {"load_s": round(t_load, 4), "setup_s": round(t_setup, 4)},
                           frame_every=args.frames, video=args.video)
    report["timings_s"]["outputs_s"] = round(time.perf_counter() - t2, 4)
    report["timings_s"]["total_s"] = round(time.perf_counter() - t0, 4)
    # the JSON is rewritten with the final timings
    write_json(args.output_dir / "fit.json", report)
    pose = result.pose
    print(f"fitted {Path(names['object_mesh']).name} ({args.recipe}, {renderer} silhouette): t = {pose.translation.round(3).tolist()} m, "
          f"scale {pose.scale:.3f}, mask IoU {report['check']['mask_iou']:.2f}, "
          f"{report['timings_s']['total_s']:.1f} s -> {args.output_dir}")
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
