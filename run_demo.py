"""InteractVLM demo: contact from photos with a trained model directory.

    python run_demo.py                                        # hcontact on data/demo_samples with the bundled model
    python run_demo.py --mode hcontact --input data/demo_samples --input-mode folder
    python run_demo.py --mode hcontact --input photos/ --input-mode file         # photos/<object>__<id>.jpg
    python run_demo.py --mode hcontact --input list.json                         # manifest: image + objects
    python run_demo.py --mode hcontact-wScene --input photos/ --input-mode file  # scene / ground contact
    python run_demo.py --mode ocontact --input data/demo_samples                 # needs <name>/object_mesh.obj
    python run_demo.py --mode hcontact --input frames/ --video-frames --object chair --smooth 5
    python run_demo.py --mode h2dcontact --input photos/ --input-mode file      # 2D contact masks on the photos

Modes: hcontact, hcontact-wScene, h2dcontact (2D model only), oafford, ocontact, hcontact-ocontact.
Outputs go to ``--output-dir`` (default ``outputs/demo/<mode>``), one folder per sample, never into or around an
input, and never over a file the demo did not write (``utils.demo_output_folder``). A folder holding an earlier run's
results needs ``--overwrite`` (its earlier results are then removed first); the default folder is replaced by every
run. New view embeddings are cached in ``--cache-dir`` (default ``$INTERACTVLM_CACHE``, ``$XDG_CACHE_HOME/interactvlm``
or ``~/.cache/interactvlm``), never in the model directory.
Exit status: 0 when every input succeeded, 1 when some failed (they are listed at the end), 2 when nothing could run.

The bundled models ``trained_models/interactvlm-tiny-synthcontact`` (3D) and ``interactvlm-tiny-2d-synthcontact``
(2D, mode h2dcontact) are trained on synthetic data only; on real photos they exercise the pipeline, they do not
give meaningful contact.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from utils.demo import (MODES, DemoError, DemoRunner, Job, RunReport, TemporalSmoother, get_mode, require_model_dir,
                        training_note, vocabulary_note)
from utils.demo_io import DEFAULT_MAX_SIDE, Discovery, InputError, discover, load_image, safe_name
from utils.demo_output_folder import OutputFolder, OutputFolderError
from utils.demo_outputs import write_json, write_npz, write_output_readme, write_sample
from utils.paths import REPO_ROOT, default_cache_dir

DEFAULT_MODEL = REPO_ROOT / "trained_models" / "interactvlm-tiny-synthcontact"
DEFAULT_2D_MODEL = REPO_ROOT / "trained_models" / "interactvlm-tiny-2d-synthcontact"  # h2dcontact's default
DEFAULT_INPUT = REPO_ROOT / "data" / "demo_samples"
DEFAULT_OBJECT_INPUT = DEFAULT_INPUT / "object_samples.json"  # the object modes need samples with a mesh


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="hcontact", help=f"one of: {', '.join(MODES)} (default hcontact)")
    parser.add_argument("--input", type=Path, default=None,
                        help="sample folder, image folder, a single image, a JSON/CSV manifest, or a frames folder "
                             f"(default {DEFAULT_INPUT}; object modes: {DEFAULT_OBJECT_INPUT})")
    parser.add_argument("--input-mode", choices=["auto", "folder", "file", "manifest"], default="auto",
                        help="folder: <input>/<name>/<name>.jpg; file: <input>/<object>__<id>.jpg; manifest: JSON/CSV "
                             "(auto: manifest for .json/.csv, folder when there are sub-folders, else file)")
    parser.add_argument("--object", default=None, help="object to ask about for every image (overrides file names)")
    parser.add_argument("--object-mesh", type=Path, default=None,
                        help="object mesh for every sample (object modes; default <sample>/object_mesh.obj)")
    parser.add_argument("--video-frames", action="store_true", help="--input is a folder of frames of one video")
    parser.add_argument("--smooth", type=int, default=0, help="video: temporal smoothing over K frames (0/1: off)")
    parser.add_argument("--smooth-method", choices=["window", "ema"], default="window",
                        help="window: centred moving average over K frames; ema: alpha = 2/(K+1)")
    parser.add_argument("--model", type=Path, default=None,
                        help=f"model directory (default {DEFAULT_MODEL}; h2dcontact: {DEFAULT_2D_MODEL})")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="default <repo>/outputs/demo/<mode> (replaced by every run); a folder given here that holds "
                             "an earlier run's results needs --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier demo run's results in --output-dir (only files the demo wrote, as "
                             "listed in its .interactvlm_demo.json)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="folder for cached view embeddings (default $INTERACTVLM_CACHE, $XDG_CACHE_HOME/interactvlm "
                             "or ~/.cache/interactvlm, + /view_embeddings); 'none': memory only")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--load-in-8bit", action="store_true", help="8-bit language model (CUDA + bitsandbytes)")
    parser.add_argument("--load-in-4bit", action="store_true", help="4-bit language model (CUDA + bitsandbytes)")
    parser.add_argument("--threshold", type=float, default=0.5, help="contact probability threshold (vertices and masks)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per generate call (all objects of an image "
                                                                   "are always asked together)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="photos are downscaled to this longest side")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (images, renders, loading)")
    return parser.parse_args(argv)


def _log(message: str, progress=None) -> None:
    if progress is not None:
        progress.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def _device(name: str | None) -> str:
    import torch

    if not name:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DemoError(f"--device {name}: no CUDA GPU is available here (use --device cpu)")
    return name


def run(args: argparse.Namespace) -> int:
    mode = get_mode(args.mode)
    if not 0.0 <= args.threshold <= 1.0:
        raise DemoError(f"--threshold must lie in [0, 1], got {args.threshold}")
    if args.batch_size < 1:
        raise DemoError("--batch-size must be at least 1")
    if args.smooth > 1 and not args.video_frames:
        raise DemoError("--smooth smooths over video frames: add --video-frames (the input is then one video's frames)")
    output_dir = (args.output_dir or REPO_ROOT / "outputs" / "demo" / mode.name).expanduser()
    if args.model is None:
        args.model = DEFAULT_2D_MODEL if mode.two_d else DEFAULT_MODEL
    forced = None if args.object else mode.forced_object
    if args.input is None:
        args.input = DEFAULT_OBJECT_INPUT if mode.needs_mesh else DEFAULT_INPUT
    try:
        found: Discovery = discover(args.input, args.input_mode, fixed_object=args.object, forced_object=forced,
                                    mesh_override=args.object_mesh, video=args.video_frames)
    except InputError as err:
        raise DemoError(str(err)) from err
    default = args.output_dir is None  # outputs/demo/<mode> belongs to the demo: replaced by every run
    folder = OutputFolder(output_dir, replace_earlier=args.overwrite or default, adopt_legacy=default)
    try:
        folder.check_inputs([*found.input_dirs, Path(args.model)])
        if args.object_mesh is not None:
            folder.check_inputs([Path(args.object_mesh)])
    except OutputFolderError as err:
        raise DemoError(str(err)) from err
    require_model_dir(args.model)  # before anything is written
    planned = ["README.md", "run_summary.json"]
    planned += [item.sample_name(obj) for item in found.inputs for obj in item.objects]
    if args.video_frames:
        planned.append(_video_name(args, mode.name))
    try:
        folder.open(planned)
    except OutputFolderError as err:
        raise DemoError(str(err)) from err
    with folder:
        return _run_into(args, mode, found, folder)


def _video_name(args: argparse.Namespace, mode: str) -> str:
    return f"{safe_name(Path(args.input).name)}_{mode}_video.npz"


def _cache_dir(option: Path | None) -> Path | None:
    if option is None:
        return default_cache_dir() / "view_embeddings"
    return None if str(option).lower() == "none" else option.expanduser()


def _run_into(args: argparse.Namespace, mode, found: Discovery, folder: OutputFolder) -> int:
    output_dir = folder.path
    report = RunReport(skipped=list(found.skipped))
    for name, reason in found.skipped:
        _log(f"skipped {name}: {reason}")
    for name, reason in found.failed:
        _log(f"FAILED {name}: {reason}")
    report.failed += found.failed
    if not found.inputs:
        return _finish(report, folder, mode.name)

    if args.no_progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    runner = DemoRunner(args.model, mode, device=_device(args.device), dtype=args.dtype,
                        max_new_tokens=args.max_new_tokens, load_in_8bit=args.load_in_8bit, load_in_4bit=args.load_in_4bit,
                        cache_dir=_cache_dir(args.cache_dir), progress=not args.no_progress)
    info_base = {"model": runner.model_name, "model_dir": str(args.model), "model_kind": runner.model_kind,
                 "training_data_note": training_note(runner.model_name, runner.config),
                 "training_objects": runner.training_objects if runner.training_objects is not None else "unknown"}
    _log(f"{info_base['training_data_note']}")
    try:
        readme = folder.file_path("README.md")
        write_output_readme(output_dir, mode.name, mode.description, runner.model_name, info_base["training_data_note"])
        folder.record(readme)
    except (OSError, OutputFolderError) as err:
        raise DemoError(f"cannot write to the output folder {output_dir}: {err}") from err
    for note in runner.notes:
        _log(f"note: {note}")

    from tqdm import tqdm

    progress = tqdm(total=len(found.inputs), desc=f"demo {mode.name}", unit="image", disable=args.no_progress,
                    file=sys.stderr)
    smoother = TemporalSmoother(args.smooth, args.smooth_method) if args.video_frames and args.smooth > 1 else None
    video_rows: list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def fail(name: str, reason: str) -> None:
        report.failed.append((name, reason))
        _log(f"FAILED {name}: {reason}", progress)

    def finish_sample(payload, smoothed: dict[str, np.ndarray] | None) -> None:
        job, parts, photo, info = payload
        extra = {}
        raw = {p.kind: p.values for p in parts}
        if smoothed is not None:
            for p in parts:
                key = "pred_contact_2d" if p.on_photo else "pred_contact_3d"
                extra[f"{key}_raw" if p is parts[0] else f"{key}_{p.kind}_raw"] = p.values
                p.vertex_probs = smoothed[f"{p.kind}:vertex"]
                p.mask_probs = smoothed[f"{p.kind}:mask"]
            info = dict(info, temporal_smoothing={"frames": args.smooth, "method": args.smooth_method})
        if parts[0].kind == "human":
            smplx = runner.smplx_transfer(parts[0].vertex_probs)
            if smplx is not None:
                extra["pred_contact_3d_smplx"] = smplx
        try:
            sample_dir = folder.sample_dir(job.sample)
            try:
                write_sample(sample_dir, job.sample, mode.name, parts, photo, args.threshold, info, extra)
            finally:
                folder.record(sample_dir)
        except (OSError, OutputFolderError, ValueError) as err:
            fail(job.sample, f"could not write outputs: {err}")
            return
        report.ok.append(job.sample)
        if args.video_frames:
            video_rows.append((job.sample, raw, {p.kind: p.values for p in parts}))

    def handle(payload) -> None:
        if smoother is None:
            finish_sample(payload, None)
            return
        _, parts, _, _ = payload
        values = {}
        for p in parts:
            weight = 1.0 if p.found_seg else 0.0
            values[f"{p.kind}:vertex"] = (p.vertex_probs, weight)
            values[f"{p.kind}:mask"] = (p.mask_probs, weight)
        for ready, smoothed in smoother.push(payload, values):
            finish_sample(ready, smoothed)

    inputs = found.inputs
    for start in range(0, len(inputs), args.batch_size):
        batch = inputs[start: start + args.batch_size]
        images, jobs, infos = [], [], []
        for item in batch:
            try:
                loaded = load_image(item.image_path, max_side=args.max_side)
            except ValueError as err:
                fail(item.name, f"{item.image_path.name}: {err}")
                progress.update(1)
                continue
            except Exception as err:  # noqa: BLE001 - e.g. MemoryError from a pathological file
                fail(item.name, f"{item.image_path.name}: {type(err).__name__}: {err}")
                progress.update(1)
                continue
            item_jobs = []
            try:
                for obj in item.objects:
                    job = Job(image=len(images), sample=item.sample_name(obj), object=obj)
                    if mode.needs_mesh:
                        if item.mesh_path is None:
                            raise FileNotFoundError(
                                f"no object mesh: mode {mode.name} needs {item.image_path.parent / 'object_mesh.obj'} "
                                "(folder mode) or --object-mesh")
                        render_dir = folder.sample_dir(job.sample) / "object_template"
                        try:
                            template, verts, faces, rendered = runner.object_template(item.mesh_path, render_dir)
                        finally:
                            folder.record(folder.path / job.sample)
                        job.object_template, job.object_mesh, job.object_template_dir = template, (verts, faces), rendered
                    item_jobs.append(job)
            except (FileNotFoundError, ValueError, OSError, DemoError, OutputFolderError) as err:
                fail(item.name, str(err))
                progress.update(1)
                continue
            except Exception as err:  # noqa: BLE001 - a mesh that breaks the renderer must not end the run
                fail(item.name, f"object mesh {item.mesh_path}: {type(err).__name__}: {err}")
                progress.update(1)
                continue
            images.append(loaded.pixels)
            for job in item_jobs:
                jobs.append(job)
                infos.append((item, loaded))
        if not jobs:
            continue
        try:
            results = runner.predict(images, jobs)
        except Exception as err:  # noqa: BLE001 - attribute the failure to an input instead of aborting the run
            if len(images) > 1:  # retry image by image so one bad input does not sink the batch
                results = []
                for job in jobs:
                    single = Job(0, job.sample, job.object, job.object_template, job.object_mesh, job.object_template_dir)
                    try:
                        results += runner.predict([images[job.image]], [single])
                    except Exception as inner:  # noqa: BLE001
                        results.append(inner)
            else:
                results = [err] * len(jobs)
        done_items = set()
        for job, (item, loaded), parts in zip(jobs, infos, results):
            if isinstance(parts, Exception):
                fail(job.sample, f"prediction failed: {type(parts).__name__}: {parts}")
            else:
                handle((job, parts, loaded.pixels,
                        _sample_info(info_base, item, loaded, job, runner.notes, runner.training_objects)))
            if id(item) not in done_items:
                done_items.add(id(item))
                progress.update(1)
    if smoother is not None:
        for ready, smoothed in smoother.flush():
            finish_sample(ready, smoothed)
    progress.close()
    if args.video_frames and video_rows:
        _write_video_npz(folder, args, mode.name, video_rows, report, "pred_contact_2d" if mode.two_d else "pred_contact_3d")
    return _finish(report, folder, mode.name)


def _sample_info(base: dict, item, loaded, job: Job, notes: list[str], vocabulary: list[str] | None) -> dict:
    info = dict(base)
    known, note = vocabulary_note(job.object, vocabulary)
    info.update({"image": str(item.image_path.resolve()), "image_size": list(loaded.original_size),
                 "processed_size": [int(loaded.pixels.shape[1]), int(loaded.pixels.shape[0])],
                 "image_mode": loaded.source_mode, "downscaled": bool(loaded.downscaled),
                 "object_in_training_vocabulary": "unknown" if known is None else known,
                 "notes": list(notes) + ([note] if note else [])})
    if item.frame_index is not None:
        info["frame_index"] = item.frame_index
    if job.object_template_dir is not None:
        info["object_mesh"] = str(item.mesh_path)
        info["object_template_dir"] = str(job.object_template_dir)
    return info


def _write_video_npz(folder: OutputFolder, args, mode: str, rows, report: RunReport, prefix: str) -> None:
    """All frames of the video in one file: ``pred_contact_3d`` [T, N] (2D models: ``pred_contact_2d`` [T, H, W]),
    smoothed when --smooth, and the raw values."""
    kinds = list(rows[0][1])
    arrays = {"frames": np.array([r[0] for r in rows]), "smooth": np.int32(args.smooth),
              "smooth_method": np.array(args.smooth_method), "threshold": np.float32(args.threshold)}
    for i, kind in enumerate(kinds):
        key = prefix if i == 0 else f"{prefix}_{kind}"
        arrays[key] = np.stack([r[2][kind] for r in rows]).astype(np.float32)
        arrays[key + "_raw"] = np.stack([r[1][kind] for r in rows]).astype(np.float32)
    try:
        path = folder.file_path(_video_name(args, mode))
        write_npz(path, arrays)
        folder.record(path)
    except (OSError, OutputFolderError) as err:
        report.failed.append(("video", f"could not write the video npz: {err}"))


def _finish(report: RunReport, folder: OutputFolder, mode: str) -> int:
    summary = report.as_dict()
    summary["mode"] = mode
    output_dir = folder.path
    try:
        path = folder.file_path("run_summary.json")
        write_json(path, summary)
        folder.record(path)
    except (OSError, OutputFolderError) as err:
        print(f"could not write {output_dir / 'run_summary.json'}: {err}", file=sys.stderr)
    lines = [f"\n{mode}: {len(report.ok)} ok, {len(report.failed)} failed, {len(report.skipped)} skipped "
             f"-> {output_dir}"]
    lines += [f"  failed  {name}: {reason}" for name, reason in report.failed]
    lines += [f"  skipped {name}: {reason}" for name, reason in report.skipped]
    print("\n".join(lines), file=sys.stderr if report.failed else sys.stdout)
    return 1 if report.failed or not report.ok else 0


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    try:
        args = parse_args(argv)
        code = run(args)
    except DemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"done in {time.time() - started:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
