"""Writing a sample's files: per-vertex npz, JSON summary, coloured meshes (PLY + GLB), the 2×2 view overlays and
the combined picture; plus the run's README and a video's all-frames npz. Every write is atomic (a temporary file
renamed into place), so an interrupted run never leaves half a file.

Every 3D mode writes the same file names into ``<output-dir>/<sample>/``::

    <sample>_<mode>_vertices.npz   pred_contact_3d [N] (+ pred_contact_3d_object in hcontact-ocontact,
                                   + pred_contact_3d_smplx for SMPL-topology bodies when data/smpl_to_smplx.pkl exists)
    <sample>_<mode>_summary.json   mode, object, answer, found_seg, body parts, counts, model, notes
    <sample>_<mode>_mesh.ply/.glb  body (or object) mesh, contact vertices red, others grey
    <sample>_<mode>_views.png      2×2 overlay of the thresholded mask probabilities on the template renders
    <sample>_<mode>_combined.png   input photo | 2×2 overlay

In ``hcontact-ocontact`` the object's mesh and views are ``<sample>_<mode>_object_mesh.ply/.glb`` and
``<sample>_<mode>_object_views.png`` and the combined image has both grids.

A 2D model (``h2dcontact``) predicts on the photo itself, so it has no vertices and no mesh; it writes::

    <sample>_h2dcontact_mask.npz       pred_contact_2d [H, W] contact probability per photo pixel
    <sample>_h2dcontact_mask.png       the same as an 8-bit grey image (255 = probability 1)
    <sample>_h2dcontact_summary.json   as above, with pixel counts and the body parts the answer names
    <sample>_h2dcontact_views.png      the photo with contact pixels (probability >= threshold) blended red
    <sample>_h2dcontact_combined.png   input photo | overlay

Scene contact (``hcontact-wScene``) is human contact and is saved as such (the original saved it through its
object branch). The pictures are drawn by :mod:`utils.pictures`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from demo.jobs import QueryResult
from demo.summaries import NO_SEG_PHOTO_NOTE, PHOTO_NOTE, photo_query_summary, query_summary
from utils.pictures import (encode_png, overlay_views, photo_overlay, probability_image, side_by_side,
                            vertex_colors)


# ---------------------------------------------------------------------------------------------------------- files

def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """A compressed npz, written atomically."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: dict) -> None:
    write_bytes(path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode())


def write_png(path: Path, image: np.ndarray) -> None:
    """An RGB or grey uint8 image as PNG."""
    write_bytes(path, encode_png(image, str(path)))


def write_meshes(path_stem: Path, vertices: np.ndarray, faces: np.ndarray, probs: np.ndarray, threshold: float) -> list[Path]:
    """``<stem>.ply`` and ``<stem>.glb`` with per-vertex colours (vertex order kept: ``process=False``)."""
    if len(vertices) != len(probs):
        raise ValueError(f"mesh has {len(vertices)} vertices but the prediction {len(probs)}")
    mesh = trimesh.Trimesh(vertices=np.asarray(vertices, np.float64), faces=np.asarray(faces, np.int64),
                           vertex_colors=vertex_colors(probs, threshold), process=False)
    paths = [path_stem.with_name(path_stem.name + ".ply"), path_stem.with_name(path_stem.name + ".glb")]
    for path, kind in zip(paths, ("ply", "glb")):
        write_bytes(path, mesh.export(file_type=kind))
    return paths


# ---------------------------------------------------------------------------------------------------------- samples

def _finish_summary(summary: dict[str, Any], notes: list[str], files: list[Path], summary_path: Path) -> dict[str, Any]:
    """Add the notes and the list of files to ``summary`` and write it."""
    summary["notes"] = notes
    summary["files"] = [p.name for p in files + [summary_path]]
    write_json(summary_path, summary)
    return summary


def write_photo_sample(out_dir: Path, sample: str, mode: str, result: QueryResult, photo: np.ndarray, threshold: float,
                       info: dict[str, Any], extra_arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The files of one 2D prediction (see the module docstring); returns the summary dict."""
    stem = f"{sample}_{mode}"
    probs = result.mask_probs[0].astype(np.float32)
    files = [out_dir / f"{stem}_mask.npz", out_dir / f"{stem}_mask.png", out_dir / f"{stem}_views.png",
             out_dir / f"{stem}_combined.png"]
    write_npz(files[0], {"pred_contact_2d": probs, "threshold": np.float32(threshold), "object": np.array(result.object),
                         "mode": np.array(mode), "found_seg": np.bool_(result.found_seg), **(extra_arrays or {})})
    write_png(files[1], probability_image(probs))
    overlay = photo_overlay(photo, probs, threshold)
    write_png(files[2], overlay)
    write_png(files[3], side_by_side(photo, [overlay]))
    query = photo_query_summary(result, probs, threshold)
    notes = list(info.get("notes", [])) + list(result.notes) + [PHOTO_NOTE]
    if not result.found_seg:
        notes.append(NO_SEG_PHOTO_NOTE)
    summary: dict[str, Any] = {"sample": sample, "mode": mode, "object": result.object, "threshold": threshold, **query}
    summary.update({k: v for k, v in info.items() if k not in summary and k != "notes"})
    summary["queries"] = [query]
    return _finish_summary(summary, notes, files, out_dir / f"{stem}_summary.json")


def _vertex_arrays(results: list[QueryResult], mode: str, threshold: float) -> dict[str, Any]:
    """The vertex npz: the first query's contact as ``pred_contact_3d``, the others' as ``pred_contact_3d_<kind>``."""
    main = results[0]
    arrays: dict[str, Any] = {"pred_contact_3d": main.vertex_probs.astype(np.float32),
                              "template": np.array(main.template_name), "threshold": np.float32(threshold),
                              "object": np.array(main.object), "mode": np.array(mode),
                              "found_seg": np.bool_(main.found_seg)}
    for result in results[1:]:
        arrays[f"pred_contact_3d_{result.kind}"] = result.vertex_probs.astype(np.float32)
        arrays[f"template_{result.kind}"] = np.array(result.template_name)
        arrays[f"found_seg_{result.kind}"] = np.bool_(result.found_seg)
    return arrays


def _write_pictures(out_dir: Path, stem: str, results: list[QueryResult], photo: np.ndarray,
                    threshold: float) -> tuple[list[Path], list[str]]:
    """Per query a coloured mesh (when the mesh is known) and the 2×2 views; then the combined picture.
    Returns (files written, notes on meshes not written)."""
    files, notes, grids = [], [], []
    for i, result in enumerate(results):
        suffix = "" if i == 0 else f"_{result.kind}"
        if result.mesh_vertices is not None:
            files += write_meshes(out_dir / f"{stem}{suffix}_mesh", result.mesh_vertices, result.mesh_faces,
                                  result.vertex_probs, threshold)
        else:
            notes.append(f"no {result.kind} mesh written: the {result.template_name} mesh is not available")
        grids.append(overlay_views(result.overlays, result.mask_probs >= threshold, result.valid))
        files.append(out_dir / f"{stem}{suffix}_views.png")
        write_png(files[-1], grids[-1])
    files.append(out_dir / f"{stem}_combined.png")
    write_png(files[-1], side_by_side(photo, grids))
    return files, notes


def write_sample(out_dir: Path, sample: str, mode: str, results: list[QueryResult], photo: np.ndarray,
                 threshold: float, info: dict[str, Any], extra_arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Write every output file of one sample; returns the summary dict (also written as JSON)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if results[0].on_photo:
        return write_photo_sample(out_dir, sample, mode, results[0], photo, threshold, info, extra_arrays)
    stem = f"{sample}_{mode}"
    files = [out_dir / f"{stem}_vertices.npz"]
    write_npz(files[0], {**_vertex_arrays(results, mode, threshold), **(extra_arrays or {})})
    pictures, mesh_notes = _write_pictures(out_dir, stem, results, photo, threshold)
    files += pictures
    queries = [query_summary(r, threshold) for r in results]
    summary: dict[str, Any] = {"sample": sample, "mode": mode, "object": results[0].object, "threshold": threshold}
    summary.update({k: v for k, v in queries[0].items() if k != "notes"})
    summary.update({k: v for k, v in info.items() if k not in summary and k != "notes"})
    summary["queries"] = queries
    notes = list(info.get("notes", [])) + mesh_notes
    for query in queries:
        notes += [f"{query['kind']}: {n}" if len(results) > 1 else n for n in query["notes"]]
    return _finish_summary(summary, notes, files, out_dir / f"{stem}_summary.json")


def video_arrays(rows: list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]], prefix: str, smooth: int,
                 smooth_method: str, threshold: float) -> dict[str, np.ndarray]:
    """All frames of a video in one file: ``<prefix>`` [T, ...] (smoothed when ``smooth``), ``<prefix>_raw`` and
    the frame names. ``rows``: (frame, raw values per kind, written values per kind)."""
    kinds = list(rows[0][1])
    arrays = {"frames": np.array([r[0] for r in rows]), "smooth": np.int32(smooth),
              "smooth_method": np.array(smooth_method), "threshold": np.float32(threshold)}
    for i, kind in enumerate(kinds):
        key = prefix if i == 0 else f"{prefix}_{kind}"
        arrays[key] = np.stack([r[2][kind] for r in rows]).astype(np.float32)
        arrays[key + "_raw"] = np.stack([r[1][kind] for r in rows]).astype(np.float32)
    return arrays


def write_output_readme(output_dir: Path, mode: str, description: str, model_name: str, note: str) -> Path:
    """``<output-dir>/README.md``: what the files are and what the model was trained on."""
    text = f"""# InteractVLM demo outputs: {mode}

{description}. Model: `{model_name}`.

**{note}**

One folder per sample (`<sample>` = image name, plus `__<object>` when one image was asked about several objects):

| file | content |
|---|---|
| `<sample>_{mode}_vertices.npz` | `pred_contact_3d` [N] per-vertex contact probability (human body, or the object mesh in `oafford`/`ocontact`); `pred_contact_3d_object` in `hcontact-ocontact`; `pred_contact_3d_smplx` for SMPL-topology bodies when `data/smpl_to_smplx.pkl` exists; `template`, `threshold`, `object`, `found_seg` |
| `<sample>_{mode}_summary.json` | prompt, the model's answer, whether it contained a segmentation token, contacting body parts (mean probability and fraction of vertices above the threshold per part), number of contact vertices, notes |
| `<sample>_{mode}_mesh.ply` / `.glb` | the canonical body (or the object mesh) with contact vertices (probability >= threshold) red, others grey |
| `<sample>_{mode}_views.png` | 2x2 overlay of the predicted masks (probability >= threshold) on the template renders |
| `<sample>_{mode}_combined.png` | the input photo beside the 2x2 overlay(s) |

A 2D model (`h2dcontact`) writes `<sample>_h2dcontact_mask.npz` (`pred_contact_2d` [H, W], a contact probability
per photo pixel) and `_mask.png` (the same as 8-bit grey) instead of the vertex file and meshes; its `_views.png`
is the photo with the contact pixels blended red, and its summary counts contact pixels and lists the body parts
the answer names.

`found_seg: false` means the answer had no segmentation token: the outputs are then empty (all zeros), which says
"no prediction", not "no contact". `run_summary.json` lists the inputs that succeeded, failed (with the reason) or
were skipped.
"""
    path = Path(output_dir) / "README.md"
    write_bytes(path, text.encode())
    return path
