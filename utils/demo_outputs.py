"""Demo outputs: per-vertex npz, JSON summary, coloured meshes (PLY + GLB) and the 2×2 view overlays.

Every mode writes the same file names into ``<output-dir>/<sample>/``::

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

Fixes of the original's output bugs (spec §11.1 items 7–8): overlays threshold *probabilities* (sigmoid of the mask
logits) at the same ``--threshold`` as the vertices, never raw logits; scene contact is saved as human contact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONTACT_RGBA = (255, 0, 0, 255)
NO_CONTACT_RGBA = (204, 204, 204, 255)  # grey 0.8, as the original's meshes
PART_MIN_COVERAGE = 0.1  # a part "is in contact" when >= 10 % of its vertices are (the original's rule)


@dataclass
class PartResult:
    """One query's result ready to be written: the human or the object part of a sample."""

    kind: str  # "human" or "object"
    object: str
    prompt: str
    text: str
    found_seg: bool
    vertex_probs: np.ndarray  # [N] float32 in [0, 1]
    mask_probs: np.ndarray  # [V, M, M] float32 in [0, 1]
    template_name: str
    overlays: np.ndarray  # [V, M, M, 3] uint8
    valid: np.ndarray  # [V, M, M] bool
    mesh_vertices: np.ndarray | None = None  # [N, 3] for the coloured mesh (None: mesh not available)
    mesh_faces: np.ndarray | None = None
    segmentation: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    on_photo: bool = False  # a 2D prediction: mask_probs [1, H, W] on the photo, no vertices

    @property
    def values(self) -> np.ndarray:
        """The array a video smooths and stores per frame: the photo mask for 2D, else the vertex probabilities."""
        return self.mask_probs[0] if self.on_photo else self.vertex_probs


# ---------------------------------------------------------------------------------------------------------- scores

def part_scores(probs: np.ndarray, segmentation: dict[str, np.ndarray], threshold: float) -> list[dict[str, Any]]:
    """Per body part: mean probability over its vertices and the fraction of its vertices at or above ``threshold``,
    sorted by the fraction then the mean (most contacting first)."""
    rows = []
    for name, ids in segmentation.items():
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < len(probs))]
        if not len(ids):
            continue
        values = probs[ids]
        rows.append({"part": name, "mean_prob": round(float(values.mean()), 4),
                     "fraction_above_threshold": round(float((values >= threshold).mean()), 4),
                     "num_vertices": int(len(ids))})
    rows.sort(key=lambda r: (-r["fraction_above_threshold"], -r["mean_prob"], r["part"]))
    return rows


def parts_named_in(text: str, part_names: list[str]) -> list[str]:
    """Body-part names a 2D model's answer mentions, in the answer's order (whole words; longest names first, so
    "left hand" is not also counted as "hand")."""
    import re

    rest, found = text.lower(), []
    for name in sorted(part_names, key=len, reverse=True):
        pattern = re.compile(rf"\b{re.escape(name.lower().replace('_', ' '))}\b")
        match = pattern.search(rest)
        if match:
            found.append((match.start(), name))
            rest = pattern.sub(lambda m: " " * len(m.group()), rest)
    return [name for _, name in sorted(found)]


def contacting_parts(scores: list[dict[str, Any]], min_coverage: float = PART_MIN_COVERAGE) -> list[str]:
    return [r["part"] for r in scores if r["fraction_above_threshold"] >= min_coverage and r["fraction_above_threshold"] > 0]


# ---------------------------------------------------------------------------------------------------------- files

def vertex_colors(probs: np.ndarray, threshold: float) -> np.ndarray:
    colors = np.tile(np.asarray(NO_CONTACT_RGBA, np.uint8), (len(probs), 1))
    colors[probs >= threshold] = CONTACT_RGBA
    return colors


def write_meshes(path_stem: Path, vertices: np.ndarray, faces: np.ndarray, probs: np.ndarray, threshold: float) -> list[Path]:
    """``<stem>.ply`` and ``<stem>.glb`` with per-vertex colours (vertex order kept: ``process=False``)."""
    import trimesh

    if len(vertices) != len(probs):
        raise ValueError(f"mesh has {len(vertices)} vertices but the prediction {len(probs)}")
    mesh = trimesh.Trimesh(vertices=np.asarray(vertices, np.float64), faces=np.asarray(faces, np.int64),
                           vertex_colors=vertex_colors(probs, threshold), process=False)
    paths = [path_stem.with_name(path_stem.name + ".ply"), path_stem.with_name(path_stem.name + ".glb")]
    for path, kind in zip(paths, ("ply", "glb")):
        _atomic_write_bytes(path, mesh.export(file_type=kind))
    return paths


def views_image(part: PartResult, threshold: float) -> np.ndarray:
    from utils.evaluation import overlay_views

    return overlay_views(part.overlays, part.mask_probs >= threshold, part.valid)


def combined_image(photo: np.ndarray, grids: list[np.ndarray]) -> np.ndarray:
    """Input photo resized to the grids' height, then the grids, side by side (white 8-px gaps)."""
    import cv2

    height = max(g.shape[0] for g in grids)
    parts = []
    for image in [photo, *grids]:
        scale = height / image.shape[0]
        if image.shape[0] != height:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = cv2.resize(image, (max(1, int(round(image.shape[1] * scale))), height), interpolation=interp)
        parts += [image, np.full((height, 8, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(f"could not encode {path}")
    _atomic_write_bytes(path, data.tobytes())


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: dict) -> None:
    _atomic_write_bytes(path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode())


# ---------------------------------------------------------------------------------------------------------- sample

def part_summary(part: PartResult, threshold: float) -> dict[str, Any]:
    contact = part.vertex_probs >= threshold
    out: dict[str, Any] = {
        "kind": part.kind, "object": part.object, "template": part.template_name, "prompt": part.prompt,
        "answer": part.text, "found_seg": bool(part.found_seg), "num_vertices": int(len(part.vertex_probs)),
        "num_contact_vertices": int(contact.sum()), "max_prob": round(float(part.vertex_probs.max(initial=0.0)), 4),
        "mean_prob": round(float(part.vertex_probs.mean()) if len(part.vertex_probs) else 0.0, 4),
    }
    if part.segmentation is not None:
        scores = part_scores(part.vertex_probs, part.segmentation, threshold)
        out["body_parts"] = scores
        out["contact_body_parts"] = contacting_parts(scores)
    notes = list(part.notes)
    if not part.found_seg:
        notes.append("the model's answer contained no segmentation token, so there is no prediction: the contact "
                     "output is empty (all zeros) — this means 'no answer', not 'no contact'")
    out["notes"] = notes
    return out


def photo_overlay(photo: np.ndarray, probs: np.ndarray, threshold: float, alpha: float = 0.6) -> np.ndarray:
    """Contact pixels (probability >= threshold) blended with red at ``alpha`` (the original's 2D overlay)."""
    from utils.evaluation import blend_mask

    if probs.shape != photo.shape[:2]:
        raise ValueError(f"mask {probs.shape} does not match the photo {photo.shape[:2]}")
    return blend_mask(photo, probs >= threshold, CONTACT_RGBA[:3], alpha)


def write_photo_sample(out_dir: Path, sample: str, mode: str, part: PartResult, photo: np.ndarray, threshold: float,
                       info: dict[str, Any], extra_arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The files of one 2D prediction (see the module docstring); returns the summary dict."""
    import cv2

    stem = f"{sample}_{mode}"
    probs = part.mask_probs[0].astype(np.float32)
    files = [out_dir / f"{stem}_mask.npz", out_dir / f"{stem}_mask.png", out_dir / f"{stem}_views.png",
             out_dir / f"{stem}_combined.png"]
    write_npz(files[0], {"pred_contact_2d": probs, "threshold": np.float32(threshold), "object": np.array(part.object),
                         "mode": np.array(mode), "found_seg": np.bool_(part.found_seg), **(extra_arrays or {})})
    ok, data = cv2.imencode(".png", np.round(np.clip(probs, 0, 1) * 255).astype(np.uint8))
    if not ok:
        raise OSError(f"could not encode {files[1]}")
    _atomic_write_bytes(files[1], data.tobytes())
    overlay = photo_overlay(photo, probs, threshold)
    write_png(files[2], overlay)
    write_png(files[3], combined_image(photo, [overlay]))
    contact = probs >= threshold
    query = {"kind": part.kind, "object": part.object, "template": "photo", "prompt": part.prompt, "answer": part.text,
             "found_seg": bool(part.found_seg), "mask_size": [int(probs.shape[1]), int(probs.shape[0])],
             "num_contact_pixels": int(contact.sum()), "contact_fraction": round(float(contact.mean()), 6),
             "max_prob": round(float(probs.max(initial=0.0)), 4), "mean_prob": round(float(probs.mean()), 4)}
    if part.segmentation is not None:
        query["answer_body_parts"] = parts_named_in(part.text, list(part.segmentation))
    notes = list(info.get("notes", [])) + list(part.notes)
    notes.append("2D model: contact is predicted on the photo's pixels; there are no per-vertex probabilities and no "
                 "mesh, and body parts are only those the answer names (no per-part scores)")
    if not part.found_seg:
        notes.append("the model's answer contained no segmentation token, so there is no prediction: the mask is "
                     "empty — this means 'no answer', not 'no contact'")
    summary: dict[str, Any] = {"sample": sample, "mode": mode, "object": part.object, "threshold": threshold, **query}
    summary.update({k: v for k, v in info.items() if k not in summary and k != "notes"})
    summary["queries"] = [query]
    summary["notes"] = notes
    summary_path = out_dir / f"{stem}_summary.json"
    summary["files"] = [p.name for p in files + [summary_path]]
    write_json(summary_path, summary)
    return summary


def write_sample(out_dir: Path, sample: str, mode: str, parts: list[PartResult], photo: np.ndarray, threshold: float,
                 info: dict[str, Any], extra_arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Write every output file of one sample; returns the summary dict (also written as JSON)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if parts[0].on_photo:
        return write_photo_sample(out_dir, sample, mode, parts[0], photo, threshold, info, extra_arrays)
    stem = f"{sample}_{mode}"
    files: list[Path] = []
    main = parts[0]
    arrays: dict[str, Any] = {"pred_contact_3d": main.vertex_probs.astype(np.float32),
                              "template": np.array(main.template_name), "threshold": np.float32(threshold),
                              "object": np.array(main.object), "mode": np.array(mode),
                              "found_seg": np.bool_(main.found_seg)}
    for part in parts[1:]:
        arrays[f"pred_contact_3d_{part.kind}"] = part.vertex_probs.astype(np.float32)
        arrays[f"template_{part.kind}"] = np.array(part.template_name)
        arrays[f"found_seg_{part.kind}"] = np.bool_(part.found_seg)
    arrays.update(extra_arrays or {})
    files.append(out_dir / f"{stem}_vertices.npz")
    write_npz(files[-1], arrays)

    grids = []
    mesh_notes = []
    for i, part in enumerate(parts):
        suffix = "" if i == 0 else f"_{part.kind}"
        if part.mesh_vertices is not None:
            files += write_meshes(out_dir / f"{stem}{suffix}_mesh", part.mesh_vertices, part.mesh_faces,
                                  part.vertex_probs, threshold)
        else:
            mesh_notes.append(f"no {part.kind} mesh written: the {part.template_name} mesh is not available")
        grid = views_image(part, threshold)
        grids.append(grid)
        files.append(out_dir / f"{stem}{suffix}_views.png")
        write_png(files[-1], grid)
    files.append(out_dir / f"{stem}_combined.png")
    write_png(files[-1], combined_image(photo, grids))

    summary: dict[str, Any] = {"sample": sample, "mode": mode, "object": main.object, "threshold": threshold}
    main_summary = part_summary(main, threshold)
    summary.update({k: v for k, v in main_summary.items() if k != "notes"})
    summary.update({k: v for k, v in info.items() if k not in summary and k != "notes"})
    summary["queries"] = [main_summary] + [part_summary(p, threshold) for p in parts[1:]]
    notes = list(info.get("notes", [])) + mesh_notes
    for p in summary["queries"]:
        notes += [f"{p['kind']}: {n}" if len(parts) > 1 else n for n in p["notes"]]
    summary["notes"] = notes
    summary_path = out_dir / f"{stem}_summary.json"
    summary["files"] = [p.name for p in files + [summary_path]]
    write_json(summary_path, summary)
    return summary


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
    _atomic_write_bytes(path, text.encode())
    return path
