"""Everything a fit writes into its output folder, in formats any viewer opens.

    object.obj / object.ply / object.glb   the object mesh placed in the human's camera frame
    scene.glb                              human (blue) + object (orange) in one file
    overlay.png                            photo | the fitted human + object rendered over it | initial placement
    frames/frame_<iteration>.png, fit.mp4  the optimisation, with --frames N (every N iterations) / --video
    fit.json                               pose (R, t, s and the 4x4 object-file -> camera), initial pose, losses,
                                           mask IoU check, per-iteration losses, timings, inputs and configuration
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import trimesh

from optim import render
from optim.fitter import FitResult, Pose
from optim.inputs import FitInputs

HUMAN_COLOR = (0.35, 0.62, 0.95)
OBJECT_COLOR = (1.0, 0.62, 0.2)
SCALE_WARN_RANGE = (0.8, 1.25)
MASK_IOU_WARN = 0.5


def placed_object(inputs: FitInputs, result: FitResult, pose: Pose | None = None) -> np.ndarray:
    pose = pose or result.pose
    return pose.apply(inputs.object_vertices - result.object_center)


def overlay(inputs: FitInputs, object_vertices: np.ndarray) -> np.ndarray:
    return render.shaded_overlay(inputs.image, [(inputs.human_vertices, inputs.human_faces),
                                                (object_vertices, inputs.object_faces)],
                                 [HUMAN_COLOR, OBJECT_COLOR], inputs.camera)


def mask_check(inputs: FitInputs, object_vertices: np.ndarray) -> dict:
    """IoU of the fitted object's visible silhouette with the mask, and a warning when the fit does not explain it."""
    visible = render.mask_of([(object_vertices, inputs.object_faces), (inputs.human_vertices, inputs.human_faces)],
                             inputs.camera)
    mask = inputs.object_mask
    iou = float((visible & mask).sum() / max((visible | mask).sum(), 1))
    return {"mask_iou": iou, "silhouette_pixels": int(visible.sum()), "mask_pixels": int(mask.sum())}


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, data: dict) -> None:
    _atomic(Path(path), json.dumps(data, indent=1).encode())


def _png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    _atomic(path, buf.tobytes())


def _mesh(vertices: np.ndarray, faces: np.ndarray, color) -> trimesh.Trimesh:
    rgba = np.array([*(np.asarray(color) * 255), 255], dtype=np.uint8)
    return trimesh.Trimesh(vertices, faces, vertex_colors=np.tile(rgba, (len(vertices), 1)), process=False)


def write_outputs(out_dir: str | Path, inputs: FitInputs, result: FitResult, config: dict, timings: dict,
                  frame_every: int = 0, video: bool = False) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    obj = placed_object(inputs, result)
    files = _write_meshes(out, inputs, obj)
    final = overlay(inputs, obj)
    initial = overlay(inputs, placed_object(inputs, result, result.init_pose))
    _png(out / "overlay.png", np.concatenate([inputs.image, final, initial], axis=1))
    files.append("overlay.png")
    if frame_every or video:
        files += _write_frames(out, inputs, result, final, frame_every, video)
    check = mask_check(inputs, obj)
    report = {
        "recipe": result.recipe,
        "renderer": result.renderer,
        "pose": {**result.pose.to_dict(), "object_to_camera": result.object_to_camera().tolist(),
                 "object_center_in_file": result.object_center.tolist(),
                 "convention": "X_cam = s * R @ (x_file - object_center) + t; camera frame of the human input "
                               "(OpenCV: +x right, +y down, +z forward), metres"},
        "init_pose": result.init_pose.to_dict(),
        "losses": result.losses, "init_losses": result.init_losses,
        "check": check, "warnings": fit_warnings(check, result.pose),
        "hypotheses": result.hypotheses,
        "history": result.history,
        "timings_s": {**timings, **{k: round(v, 4) for k, v in result.timings.items()}},
        "camera": inputs.camera.to_dict(),
        "inputs": inputs.sources,
        "config": config,
        "files": files + ["fit.json"],
    }
    write_json(out / "fit.json", report)
    return report


def _write_meshes(out: Path, inputs: FitInputs, obj: np.ndarray) -> list[str]:
    """The placed object as obj / ply / glb, and human + object in one glb."""
    obj_mesh = _mesh(obj, inputs.object_faces, OBJECT_COLOR)
    files = []
    for ext in ("obj", "ply", "glb"):
        path = out / f"object.{ext}"
        _atomic(path, obj_mesh.export(file_type=ext) if ext != "obj" else obj_mesh.export(file_type="obj").encode())
        files.append(path.name)
    scene = trimesh.Scene({"human": _mesh(inputs.human_vertices, inputs.human_faces, HUMAN_COLOR), "object": obj_mesh})
    _atomic(out / "scene.glb", scene.export(file_type="glb"))
    return files + ["scene.glb"]


def _write_frames(out: Path, inputs: FitInputs, result: FitResult, final: np.ndarray, frame_every: int,
                  video: bool) -> list[str]:
    """The optimisation's overlays as PNG frames and / or a video, the final fit last."""
    frames = [(it, overlay(inputs, placed_object(inputs, result, pose))) for it, pose in result.frames]
    frames.append((len(result.history), final))
    files = []
    if frame_every:
        (out / "frames").mkdir(exist_ok=True)
        for it, image in frames:
            _png(out / "frames" / f"frame_{it:04d}.png", image)
        files.append(f"frames/ ({len(frames)} PNGs)")
    if video:
        files.append(_write_video(out / "fit.mp4", [f for _, f in frames]))
    return files


def fit_warnings(check: dict, pose: Pose) -> list[str]:
    """What the user should look at: a fit that does not explain the mask, a free scale far from 1."""
    warnings = []
    if check["mask_iou"] < MASK_IOU_WARN:
        warnings.append(f"the fitted object covers the mask poorly (IoU {check['mask_iou']:.2f}): check the mask, the "
                        "contacts, or the mesh's units (--object-scale) / let the scale free (--optimize-scale)")
    if not SCALE_WARN_RANGE[0] <= pose.scale <= SCALE_WARN_RANGE[1]:
        warnings.append(f"fitted scale {pose.scale:.2f} is far from 1: the object mesh's size may not match "
                        "the photo's object")
    return warnings


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 15) -> str:
    h, w = frames[0].shape[:2]
    h2, w2 = h - h % 2, w - w % 2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w2, h2))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (no mp4v encoder); use --frames N for PNG frames instead")
    for frame in frames:
        writer.write(cv2.cvtColor(frame[:h2, :w2], cv2.COLOR_RGB2BGR))
    writer.release()
    return path.name
