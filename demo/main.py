"""One demo run, in one direction: inputs → jobs → model → outputs.

:func:`demo.inputs.plan_run` checks the options and finds the samples; the output folder is opened (checked
against every input, locked, earlier results removed: :mod:`demo.output_folder`); then, batch by batch, photos are
read (:mod:`demo.photos`), each (image, object) becomes a :class:`~demo.jobs.Job`, the model answers a batch of jobs
in one call (:mod:`demo.predict`), a video's answers are smoothed over frames (:mod:`demo.smoothing`), and each
sample's files are written (:mod:`demo.outputs`). A failure of one input is recorded in ``run_summary.json`` and the
run goes on; a problem with the whole run is a :class:`~demo.errors.DemoError` (exit status 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers.utils import logging as hf_logging

from demo.errors import DemoError
from demo.inputs import RunPlan, plan_run
from demo.jobs import DemoInput, Job, QueryResult, RunReport
from demo.output_folder import OutputFolder, OutputFolderError
from demo.outputs import video_arrays, write_json, write_npz, write_output_readme, write_sample
from demo.photos import LoadedImage, load_image
from demo.predict import DemoRunner, require_model_dir
from demo.smoothing import TemporalSmoother
from demo.summaries import sample_info, training_note
from utils.paths import default_cache_dir

# (job, its results, the photo, the sample's information): one answered sample on its way to the files
Answer = tuple[Job, list[QueryResult], np.ndarray, dict[str, Any]]


def _log(message: str, progress=None) -> None:
    if progress is not None:
        progress.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def select_device(name: str | None) -> str:
    """``--device``: CUDA when available unless named; a CUDA device without a GPU is an error."""
    if not name:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DemoError(f"--device {name}: no CUDA GPU is available here (use --device cpu)")
    return name


def view_cache_dir(option: Path | None) -> Path | None:
    """``--cache-dir``: the user cache folder by default, ``none`` for memory only."""
    if option is None:
        return default_cache_dir() / "view_embeddings"
    return None if str(option).lower() == "none" else option.expanduser()


def open_output_folder(plan: RunPlan, args: argparse.Namespace) -> OutputFolder:
    """The output folder, checked against every input and the model, locked, and cleared of earlier results;
    nothing is written before the model directory is checked too."""
    folder = OutputFolder(plan.output_dir, replace_earlier=args.overwrite or plan.default_output,
                          adopt_legacy=plan.default_output)
    try:
        folder.check_inputs([*plan.found.input_dirs, plan.model_dir])
        if args.object_mesh is not None:
            folder.check_inputs([Path(args.object_mesh)])
    except OutputFolderError as err:
        raise DemoError(str(err)) from err
    require_model_dir(plan.model_dir)
    planned = ["README.md", "run_summary.json"]
    planned += [item.sample_name(obj) for item in plan.found.inputs for obj in item.objects]
    if args.video_frames:
        planned.append(plan.video_name)
    try:
        folder.open(planned)
    except OutputFolderError as err:
        raise DemoError(str(err)) from err
    return folder


def run(args: argparse.Namespace) -> int:
    """One run of ``run_demo.py``'s arguments; the exit status (0: all inputs succeeded, 1: some failed)."""
    plan = plan_run(args)
    with open_output_folder(plan, args) as folder:
        return DemoRun(args, plan, folder).execute()


def main(args: argparse.Namespace) -> int:
    """:func:`run` with the run-level errors turned into messages and exit statuses (2: nothing could run)."""
    started = time.time()
    try:
        code = run(args)
    except DemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"done in {time.time() - started:.1f} s", file=sys.stderr)
    return code


class DemoRun:
    """The state of one run: the model, the report, the progress bar, a video's smoother and frames."""

    def __init__(self, args: argparse.Namespace, plan: RunPlan, folder: OutputFolder) -> None:
        self.args, self.plan, self.mode, self.folder = args, plan, plan.mode, folder
        self.report = RunReport(skipped=list(plan.found.skipped))
        self.runner: DemoRunner | None = None
        self.info_base: dict[str, Any] = {}
        self.progress = None
        smooth = args.video_frames and args.smooth > 1
        self.smoother = TemporalSmoother(args.smooth, args.smooth_method) if smooth else None
        self.video_rows: list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def execute(self) -> int:
        found = self.plan.found
        for name, reason in found.skipped:
            _log(f"skipped {name}: {reason}")
        for name, reason in found.failed:
            _log(f"FAILED {name}: {reason}")
        self.report.failed += found.failed
        if not found.inputs:
            return self._finish()
        self._start_model()
        self.progress = tqdm(total=len(found.inputs), desc=f"demo {self.mode.name}", unit="image",
                             disable=self.args.no_progress, file=sys.stderr)
        for start in range(0, len(found.inputs), self.args.batch_size):
            self._run_batch(found.inputs[start: start + self.args.batch_size])
        if self.smoother is not None:
            for ready, smoothed in self.smoother.flush():
                self._write(ready, smoothed)
        self.progress.close()
        if self.args.video_frames and self.video_rows:
            self._write_video()
        return self._finish()

    # -------------------------------------------------------------- model
    def _start_model(self) -> None:
        """Load the model, log what it was trained on, write the run's README."""
        args = self.args
        if args.no_progress:
            hf_logging.disable_progress_bar()
        runner = DemoRunner(self.plan.model_dir, self.mode, device=select_device(args.device), dtype=args.dtype,
                            max_new_tokens=args.max_new_tokens, load_in_8bit=args.load_in_8bit,
                            load_in_4bit=args.load_in_4bit, cache_dir=view_cache_dir(args.cache_dir),
                            progress=not args.no_progress)
        self.runner = runner
        note = training_note(runner.model_name, runner.config)
        self.info_base = {"model": runner.model_name, "model_dir": str(self.plan.model_dir),
                          "model_kind": runner.model_kind, "training_data_note": note,
                          "training_objects": runner.training_objects if runner.training_objects is not None else "unknown"}
        _log(note)
        try:
            readme = self.folder.file_path("README.md")
            write_output_readme(self.folder.path, self.mode.name, self.mode.description, runner.model_name, note)
            self.folder.record(readme)
        except (OSError, OutputFolderError) as err:
            raise DemoError(f"cannot write to the output folder {self.folder.path}: {err}") from err
        for line in runner.notes:
            _log(f"note: {line}")

    # -------------------------------------------------------------- inputs → jobs
    def _fail(self, name: str, reason: str) -> None:
        self.report.failed.append((name, reason))
        _log(f"FAILED {name}: {reason}", self.progress)

    def _job(self, item: DemoInput, obj: str, image_index: int) -> Job:
        """The job of (image, object); in the object modes with the object mesh rendered into the sample's folder."""
        job = Job(image=image_index, sample=item.sample_name(obj), object=obj)
        if not self.mode.needs_mesh:
            return job
        if item.mesh_path is None:
            raise FileNotFoundError(f"no object mesh: mode {self.mode.name} needs "
                                    f"{item.image_path.parent / 'object_mesh.obj'} (folder mode) or --object-mesh")
        render_dir = self.folder.sample_dir(job.sample) / "object_template"
        try:
            template, vertices, faces, rendered = self.runner.object_template(item.mesh_path, render_dir)
        finally:
            self.folder.record(self.folder.path / job.sample)
        job.object_template, job.object_mesh, job.object_template_dir = template, (vertices, faces), rendered
        return job

    def _prepare(self, item: DemoInput, image_index: int) -> tuple[LoadedImage, list[Job]] | None:
        """The photo and the jobs of one input, or None (recorded as failed) when either cannot be made."""
        try:
            loaded = load_image(item.image_path, max_side=self.args.max_side)
            reason = None
        except ValueError as err:
            reason = f"{item.image_path.name}: {err}"
        except Exception as err:  # noqa: BLE001 - e.g. MemoryError from a pathological file
            reason = f"{item.image_path.name}: {type(err).__name__}: {err}"
        if reason is None:
            try:
                return loaded, [self._job(item, obj, image_index) for obj in item.objects]
            except (FileNotFoundError, ValueError, OSError, DemoError, OutputFolderError) as err:
                reason = str(err)
            except Exception as err:  # noqa: BLE001 - a mesh that breaks the renderer must not end the run
                reason = f"object mesh {item.mesh_path}: {type(err).__name__}: {err}"
        self._fail(item.name, reason)
        self.progress.update(1)
        return None

    # -------------------------------------------------------------- jobs → model
    def _predict(self, images: list[np.ndarray], jobs: list[Job]) -> list[list[QueryResult] | Exception]:
        """The model's answers; a failing batch is retried image by image so one bad input does not sink the others."""
        try:
            return self.runner.predict(images, jobs)
        except Exception as err:  # noqa: BLE001 - attribute the failure to an input instead of aborting the run
            if len(images) <= 1:
                return [err] * len(jobs)
        results: list[list[QueryResult] | Exception] = []
        for job in jobs:
            try:
                results += self.runner.predict([images[job.image]], [dataclasses.replace(job, image=0)])
            except Exception as inner:  # noqa: BLE001
                results.append(inner)
        return results

    def _run_batch(self, batch: list[DemoInput]) -> None:
        images, jobs, owners = [], [], []
        for item in batch:
            prepared = self._prepare(item, len(images))
            if prepared is None:
                continue
            loaded, item_jobs = prepared
            images.append(loaded.pixels)
            jobs += item_jobs
            owners += [(item, loaded)] * len(item_jobs)
        if not jobs:
            return
        done_items = set()
        for job, (item, loaded), results in zip(jobs, owners, self._predict(images, jobs)):
            if isinstance(results, Exception):
                self._fail(job.sample, f"prediction failed: {type(results).__name__}: {results}")
            else:
                info = sample_info(self.info_base, item, loaded, job, self.runner.notes, self.runner.training_objects)
                self._smooth_then_write((job, results, loaded.pixels, info))
            if id(item) not in done_items:
                done_items.add(id(item))
                self.progress.update(1)

    # -------------------------------------------------------------- model → outputs
    def _smooth_then_write(self, answer: Answer) -> None:
        if self.smoother is None:
            self._write(answer, None)
            return
        values = {}
        for result in answer[1]:
            weight = 1.0 if result.found_seg else 0.0  # a frame without an answer does not pull the average down
            values[f"{result.kind}:vertex"] = (result.vertex_probs, weight)
            values[f"{result.kind}:mask"] = (result.mask_probs, weight)
        for ready, smoothed in self.smoother.push(answer, values):
            self._write(ready, smoothed)

    def _extra_arrays(self, results: list[QueryResult], smoothed: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        """The unsmoothed values when smoothed ones replace them, and SMPL-X contact for SMPL-topology bodies."""
        extra = {}
        if smoothed is not None:
            for result in results:
                key = "pred_contact_2d" if result.on_photo else "pred_contact_3d"
                extra[f"{key}_raw" if result is results[0] else f"{key}_{result.kind}_raw"] = result.values
                result.vertex_probs = smoothed[f"{result.kind}:vertex"]
                result.mask_probs = smoothed[f"{result.kind}:mask"]
        if results[0].kind == "human":
            smplx = self.runner.smplx_transfer(results[0].vertex_probs)
            if smplx is not None:
                extra["pred_contact_3d_smplx"] = smplx
        return extra

    def _write(self, answer: Answer, smoothed: dict[str, np.ndarray] | None) -> None:
        job, results, photo, info = answer
        raw = {r.kind: r.values for r in results}
        extra = self._extra_arrays(results, smoothed)
        if smoothed is not None:
            info = dict(info, temporal_smoothing={"frames": self.args.smooth, "method": self.args.smooth_method})
        try:
            sample_dir = self.folder.sample_dir(job.sample)
            try:
                write_sample(sample_dir, job.sample, self.mode.name, results, photo, self.args.threshold, info, extra)
            finally:
                self.folder.record(sample_dir)
        except (OSError, OutputFolderError, ValueError) as err:
            self._fail(job.sample, f"could not write outputs: {err}")
            return
        self.report.ok.append(job.sample)
        if self.args.video_frames:
            self.video_rows.append((job.sample, raw, {r.kind: r.values for r in results}))

    def _write_video(self) -> None:
        """All frames of the video in one file (see :func:`demo.outputs.video_arrays`)."""
        prefix = "pred_contact_2d" if self.mode.two_d else "pred_contact_3d"
        arrays = video_arrays(self.video_rows, prefix, self.args.smooth, self.args.smooth_method, self.args.threshold)
        try:
            path = self.folder.file_path(self.plan.video_name)
            write_npz(path, arrays)
            self.folder.record(path)
        except (OSError, OutputFolderError) as err:
            self.report.failed.append(("video", f"could not write the video npz: {err}"))

    def _finish(self) -> int:
        """``run_summary.json`` and the closing lines; the exit status."""
        report, output_dir = self.report, self.folder.path
        summary = report.as_dict()
        summary["mode"] = self.mode.name
        try:
            path = self.folder.file_path("run_summary.json")
            write_json(path, summary)
            self.folder.record(path)
        except (OSError, OutputFolderError) as err:
            print(f"could not write {output_dir / 'run_summary.json'}: {err}", file=sys.stderr)
        lines = [f"\n{self.mode.name}: {len(report.ok)} ok, {len(report.failed)} failed, {len(report.skipped)} "
                 f"skipped -> {output_dir}"]
        lines += [f"  failed  {name}: {reason}" for name, reason in report.failed]
        lines += [f"  skipped {name}: {reason}" for name, reason in report.skipped]
        print("\n".join(lines), file=sys.stderr if report.failed else sys.stdout)
        return 1 if report.failed or not report.ok else 0
