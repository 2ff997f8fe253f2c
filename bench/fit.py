"""Fitting benchmark: recover each SynthContact object's exact pose from the photo's inputs.

    python -m preprocess_data.synthcontact --output-dir /tmp/synth_fit --num-samples 60 --split-fractions 0 0 1 \\
        --heldout-samples 20                                   # a small set: test + test_heldout only
    python -m bench.fit --data-dir /tmp/synth_fit [--splits test test_heldout] [--max-per-split 24] \\
        [--contacts gt predicted] [--recipes original ours] [--renderer auto|torch|pytorch3d] \\
        [--output runs/bench_fit.json]

For every (image, touched object) but the ground, the fit gets the body in camera coordinates with the camera, the
human and object contact, the object mesh in its own frame and the object's visible mask (:mod:`optim.synthcontact`),
and is scored against the recorded pose: translation error (cm), rotation error (degrees, symmetry-aware), the
object's chamfer distance to its true placement (cm), the gap between the ground-truth contact regions after fitting
(cm: object contact points to the nearest human contact vertex) and how deep the object sinks into the body (cm).
Rows: each recipe's initialisation alone and its final fit. ``--contacts predicted`` replaces the human contact by
the default model's prediction for the image and object (``trained_models/interactvlm-tiny-synthcontact-opening-parts``,
mode hcontact, probabilities > 0.5); the object contact stays the ground truth, so the rows differ in the human side
only. Prints one table per split (medians; "ok" = translation <= 5 cm and rotation <= 10°).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from optim.fitter import Pose, fit_object
from optim.metrics import chamfer, contact_gap, penetration_depth, points_on, surface_samples
from optim.silhouette_backends import RENDERERS, resolve_renderer
from optim.synthcontact import FitProblem, fit_problems
from utils.paths import DEFAULT_MODEL  # the demo's default 3D model


def score(problem: FitProblem, pose: Pose, samples) -> dict:
    inp = problem.inputs
    centred = inp.object_vertices - 0.5 * (inp.object_vertices.min(0) + inp.object_vertices.max(0))
    face, bary = samples
    fitted = points_on(pose.apply(centred), inp.object_faces, face, bary)
    truth = points_on(Pose(problem.gt_rotation, problem.gt_translation).apply(centred), inp.object_faces, face, bary)
    human_contact = inp.human_vertices[problem.human_contact_ids]
    return {
        "t_cm": 100 * float(np.linalg.norm(pose.translation - problem.gt_translation)),
        "r_deg": problem.symmetry.rotation_error_deg(pose.rotation, problem.gt_rotation),
        "chamfer_cm": 100 * chamfer(fitted, truth),
        "contact_gap_cm": 100 * contact_gap(pose.apply(centred)[problem.object_contact_ids], human_contact),
        "penetration_cm": 100 * penetration_depth(fitted, inp.human_vertices, inp.human_faces),
        "scale": float(pose.scale),
    }


class ContactPredictor:
    """The bundled model's human contact for (photo, object), as the demo computes it."""

    def __init__(self, model_dir: Path):
        from demo.modes import get_mode
        from demo.predict import DemoRunner

        self.runner = DemoRunner(model_dir, get_mode("hcontact"), progress=False)

    def __call__(self, image: np.ndarray, stem: str, obj: str) -> np.ndarray:
        from demo.jobs import Job

        return self.runner.predict([image], [Job(0, stem, obj)])[0][0].vertex_probs.astype(np.float64)


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    keys = sorted({(r["split"], r["contacts"], r["method"]) for r in rows},
                  key=lambda k: (k[0], k[1], ["gt pose", "init (original)", "original", "init (ours)", "ours"].index(k[2])))
    for split, contacts, method in keys:
        sel = [r for r in rows if (r["split"], r["contacts"], r["method"]) == (split, contacts, method)]
        med = {m: float(np.nanmedian([r[m] for r in sel])) for m in
               ("t_cm", "r_deg", "chamfer_cm", "contact_gap_cm", "penetration_cm")}
        ok = float(np.mean([(r["t_cm"] <= 5.0) and (r["r_deg"] <= 10.0) for r in sel]))
        secs = [r["seconds"] for r in sel if r.get("seconds") is not None]
        table.append({"split": split, "contacts": contacts, "method": method, "n": len(sel), **med, "ok": ok,
                      "mean_t_cm": float(np.mean([r["t_cm"] for r in sel])),
                      "seconds": float(np.median(secs)) if secs else None})
    return table


def print_table(table: list[dict]) -> None:
    print("| split | contacts | method | n | t (cm) | rot (°) | chamfer (cm) | contact gap (cm) | penetration (cm) "
          "| ok (≤5 cm, ≤10°) | s / fit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        sec = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        print(f"| {r['split']} | {r['contacts']} | {r['method']} | {r['n']} | {r['t_cm']:.1f} | {r['r_deg']:.1f} | "
              f"{r['chamfer_cm']:.1f} | {r['contact_gap_cm']:.1f} | {r['penetration_cm']:.1f} | {100 * r['ok']:.0f} % | {sec} |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, type=Path, help="a SynthContact folder")
    parser.add_argument("--splits", nargs="+", default=["test", "test_heldout"])
    parser.add_argument("--max-per-split", type=int, default=24, help="at most this many objects per split")
    parser.add_argument("--contacts", nargs="+", default=["gt"], choices=["gt", "predicted"])
    parser.add_argument("--recipes", nargs="+", default=["original", "ours"], choices=["original", "ours"])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL, help="model for --contacts predicted")
    parser.add_argument("--iterations", type=int, default=None, help="override every recipe's iteration count")
    parser.add_argument("--renderer", choices=RENDERERS, default="auto",
                        help="soft silhouette (auto: PyTorch3D when it imports, else our own torch one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--output", type=Path, default=None, help="write per-object rows and the table as JSON")
    return parser.parse_args(argv)


def fit_rows(problem: FitProblem, contacts: str, args: argparse.Namespace, renderer: str,
             predictor: ContactPredictor | None, samples) -> list[dict]:
    """The init and final rows of every recipe for one object, with the given or the predicted human contact."""
    base = {"split": problem.split, "stem": problem.stem, "object": problem.object_name,
            "family": problem.pose_family, "contacts": contacts}
    inputs = problem.inputs
    if contacts == "predicted":
        probs = predictor(inputs.image, problem.stem, problem.object_name)
        if not (probs > 0.5).any():
            return [{**base, "method": "skipped: no predicted contact"}]
        inputs = replace(inputs, human_contact=probs)
    overrides = {"renderer": renderer}
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    rows = []
    for recipe in args.recipes:
        t0 = time.perf_counter()
        result = fit_object(inputs, recipe, **overrides)
        seconds = time.perf_counter() - t0
        rows.append({**base, "method": f"init ({recipe})", "seconds": None, **score(problem, result.init_pose, samples)})
        rows.append({**base, "method": recipe, "seconds": seconds, "renderer": result.renderer,
                     **score(problem, result.pose, samples)})
        print(f"{problem.split} {problem.stem} {problem.object_name:12s} {contacts:9s} {recipe:8s} "
              f"t {rows[-1]['t_cm']:6.1f} cm  r {rows[-1]['r_deg']:5.1f}°  {seconds:5.1f} s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    renderer = resolve_renderer(args.renderer)
    predictor = ContactPredictor(args.model_dir) if "predicted" in args.contacts else None
    rows: list[dict] = []
    start = time.perf_counter()
    for split in args.splits:
        for count, problem in enumerate(fit_problems(args.data_dir, split)):
            if count >= args.max_per_split:
                break
            samples = surface_samples(problem.inputs.object_vertices, problem.inputs.object_faces)
            rows.append({"split": split, "stem": problem.stem, "object": problem.object_name,
                         "family": problem.pose_family, "contacts": "gt", "method": "gt pose", "seconds": None,
                         **score(problem, Pose(problem.gt_rotation, problem.gt_translation), samples)})
            for contacts in args.contacts:
                rows.extend(fit_rows(problem, contacts, args, renderer, predictor, samples))
                if args.output:  # after every object, so an interrupted run keeps what it measured
                    _write(args.output, rows, args)
    rows = [r for r in rows if "t_cm" in r]
    table = summarise(rows)
    print()
    print_table(table)
    print(f"\n{len({(r['split'], r['stem'], r['object']) for r in rows})} objects, "
          f"{time.perf_counter() - start:.0f} s in all, {renderer} silhouette")
    return _write(args.output, rows, args) if args.output else {"rows": rows, "table": table}


def _write(path: Path, rows: list[dict], args: argparse.Namespace) -> dict:
    done = [r for r in rows if "t_cm" in r]
    report = {"rows": rows, "table": summarise(done), "args": {k: str(v) for k, v in vars(args).items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
