"""Fitting inputs: the files a user already has, read with errors that name the file and what was expected.

=================  ==========================================================================================
photo              any image cv2 reads (jpg, png, webp)
human              ``.npz`` with ``vertices`` [N,3] (camera frame, metres) + ``faces`` [+ ``K``]; OSX's npz
                   (``smpl_vertices`` [1,N,3], ``smpl_faces``, ``bbox_2`` [1,4] x,y,w,h: its camera comes from the
                   box, as in the original); a mesh file (.ply/.obj/.glb) in camera coordinates; or a ``.json`` of
                   body-model parameters (``model_type`` smpl/smplh/smplx/synthbody, ``betas``, ``global_orient``,
                   ``body_pose``, ``transl``, optional ``world_to_camera`` {``R``, ``t``}) posed with smplx
camera             ``camera.json``: ``{"K": 3x3}`` or ``fx, fy, cx, cy`` (unless the human file carries it)
human contact      our demo's ``<sample>_hcontact_vertices.npz`` (``pred_contact_3d``; ``pred_contact_3d_smplx`` is
                   picked for an SMPL-X body); any npz whose array has one value per human vertex
object mesh        any mesh file trimesh reads, in the object's own frame and in metres (``--object-scale`` else)
object contact     our demo's ``_ocontact_vertices.npz`` / ``_oafford_vertices.npz`` (``pred_contact_3d``) or the
                   ``pred_contact_3d_object`` of ``hcontact-ocontact``: one value per object-mesh vertex
object mask        a PNG (nonzero = object), a box ``x0,y0,x1,y1`` in pixels, or Grounded-SAM's JSON
                   (``mask`` and/or ``bbox``)
=================  ==========================================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from optim.camera import PinholeCamera
from utils.geometry.mesh_io import load_mesh_file
from utils.geometry.raycast import validate_mesh

HUMAN_CONTACT_THRESHOLD = 0.5  # the original's threshold for "a human contact vertex"
OBJECT_CONTACT_THRESHOLD = 0.3  # ... and for an object contact vertex
MAX_OBJECT_EXTENT_M = 10.0  # a larger object mesh is almost surely in millimetres or centimetres
CONTACT_KEYS = ("pred_contact_3d_smplx", "pred_contact_3d", "contact", "pred_contact_3d_object")
OBJECT_CONTACT_KEYS = ("pred_contact_3d", "pred_contact_3d_object", "contact")


class FitInputError(ValueError):
    """A fitting input is missing, unreadable or inconsistent with the others."""


@dataclass
class FitInputs:
    image: np.ndarray  # [H, W, 3] uint8 RGB
    camera: PinholeCamera
    human_vertices: np.ndarray  # [N, 3] camera frame
    human_faces: np.ndarray  # [F, 3]
    human_contact: np.ndarray  # [N] in [0, 1]
    object_vertices: np.ndarray  # [M, 3] object frame
    object_faces: np.ndarray
    object_contact: np.ndarray  # [M] in [0, 1]
    object_mask: np.ndarray  # [H, W] bool
    sources: dict = field(default_factory=dict)  # what each input was read from (for the JSON)

    def validate(self) -> "FitInputs":
        H, W = self.image.shape[:2]
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise FitInputError(f"photo: expected an RGB image, got shape {self.image.shape}")
        if (self.camera.width, self.camera.height) != (W, H):
            raise FitInputError(f"camera is for a {self.camera.width}x{self.camera.height} image but the photo "
                                f"({self.sources.get('image', '?')}) is {W}x{H}")
        try:
            self.human_vertices, self.human_faces = validate_mesh(self.human_vertices, self.human_faces, "human mesh")
            self.object_vertices, self.object_faces = validate_mesh(self.object_vertices, self.object_faces,
                                                                    "object mesh")
        except ValueError as err:
            raise FitInputError(str(err)) from err
        _check_contact(self.human_contact, len(self.human_vertices), "human contact", self.sources.get("human_contact"),
                       "human mesh", HUMAN_CONTACT_THRESHOLD)
        _check_contact(self.object_contact, len(self.object_vertices), "object contact",
                       self.sources.get("object_contact"), "object mesh", OBJECT_CONTACT_THRESHOLD)
        if (self.human_vertices[:, 2] <= 0).mean() > 0.5:
            raise FitInputError("human mesh: most vertices have z <= 0, so it is behind the camera; the human must be "
                                "in camera coordinates (OpenCV: +x right, +y down, +z forward, metres)")
        if self.object_mask.shape != (H, W):
            raise FitInputError(f"object mask ({self.sources.get('object_mask', '?')}) is "
                                f"{self.object_mask.shape[1]}x{self.object_mask.shape[0]} but the photo is {W}x{H}")
        if not self.object_mask.any():
            raise FitInputError(f"object mask ({self.sources.get('object_mask', '?')}) is empty")
        extent = float(np.linalg.norm(self.object_vertices.max(0) - self.object_vertices.min(0)))
        if extent > MAX_OBJECT_EXTENT_M:
            raise FitInputError(f"object mesh is {extent:.1f} units across: the fit works in metres; a mesh in "
                                "millimetres or centimetres needs --object-scale 0.001 or 0.01")
        return self

    @property
    def human_contact_ids(self) -> np.ndarray:
        return np.flatnonzero(self.human_contact > HUMAN_CONTACT_THRESHOLD)

    @property
    def object_contact_ids(self) -> np.ndarray:
        return np.flatnonzero(self.object_contact > OBJECT_CONTACT_THRESHOLD)


def _check_contact(values: np.ndarray, count: int, what: str, source, mesh: str, threshold: float) -> None:
    values = np.asarray(values)
    if values.ndim != 1 or len(values) != count:
        raise FitInputError(f"{what} ({source}) has {values.size} values but the {mesh} has {count} vertices")
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise FitInputError(f"{what} ({source}) must be probabilities in [0, 1]")
    if not (values > threshold).any():
        raise FitInputError(f"{what} ({source}): no vertex above {threshold}; fitting needs contact on both sides")


# ----------------------------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------------------------


def load_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FitInputError(f"photo not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FitInputError(f"{path}: could not be read as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_camera(path: str | Path, width: int, height: int) -> PinholeCamera:
    path = Path(path)
    if not path.is_file():
        raise FitInputError(f"camera file not found: {path} (a JSON with 'K' or fx, fy, cx, cy)")
    try:
        return PinholeCamera.from_dict(json.loads(path.read_text()), width, height)
    except (ValueError, json.JSONDecodeError) as err:
        raise FitInputError(f"{path}: {err}") from err


def load_human(path: str | Path, width: int, height: int, camera_path: str | Path | None = None,
               body_model_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, PinholeCamera]:
    """``(vertices in camera coordinates, faces, camera)`` from any supported human file (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise FitInputError(f"human file not found: {path}")
    camera = load_camera(camera_path, width, height) if camera_path else None
    if path.suffix == ".npz":
        data = np.load(path, allow_pickle=False)
        if "smpl_vertices" in data:  # OSX's output as the original reads it
            vertices = np.asarray(data["smpl_vertices"]).reshape(-1, 3)
            faces = np.asarray(data["smpl_faces"]).reshape(-1, 3)
            if camera is None:
                if "bbox_2" not in data:
                    raise FitInputError(f"{path}: OSX npz without 'bbox_2' needs --camera")
                camera = PinholeCamera.from_osx_bbox(data["bbox_2"], width, height)
        elif "vertices" in data and "faces" in data:
            vertices, faces = np.asarray(data["vertices"]).reshape(-1, 3), np.asarray(data["faces"]).reshape(-1, 3)
            if camera is None and "K" in data:
                camera = PinholeCamera.from_matrix(data["K"], width, height)
        else:
            raise FitInputError(f"{path}: expected 'vertices' + 'faces' (or OSX's 'smpl_vertices', 'smpl_faces', "
                                f"'bbox_2'); found {sorted(data.files)}")
    elif path.suffix == ".json":
        vertices, faces, cam_from_file = _pose_body_params(path, width, height, body_model_dir)
        camera = camera or cam_from_file
    else:
        try:
            vertices, faces = load_mesh_file(path)
        except (ValueError, FileNotFoundError) as err:
            raise FitInputError(str(err)) from err
    if camera is None:
        raise FitInputError(f"{path} carries no camera: pass --camera camera.json ('K' or fx, fy, cx, cy)")
    return np.asarray(vertices, np.float64), np.asarray(faces, np.int64), camera


def _pose_body_params(path: Path, width: int, height: int, body_model_dir) -> tuple[np.ndarray, np.ndarray, PinholeCamera | None]:
    import torch

    from utils.body_models import default_body_model_dir, load_body_model

    try:
        params = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FitInputError(f"{path}: not valid JSON ({err})") from err
    model_type = params.get("model_type")
    if model_type is None:
        raise FitInputError(f"{path}: body parameters need 'model_type' (smpl, smplh, smplx or synthbody)")
    try:
        model = load_body_model(model_type, body_model_dir or default_body_model_dir(), gender=params.get("gender", "neutral"),
                                num_betas=len(params.get("betas", [0.0] * 10)))
    except (FileNotFoundError, ValueError) as err:
        raise FitInputError(f"{path}: {err}") from err

    def tensor(key: str, size: int) -> torch.Tensor:
        value = np.asarray(params.get(key, np.zeros(size)), dtype=np.float32).reshape(1, -1)
        if value.shape[1] != size:
            raise FitInputError(f"{path}: '{key}' has {value.shape[1]} values, {model_type} expects {size}")
        return torch.from_numpy(value)

    with torch.no_grad():
        out = model(betas=tensor("betas", model.num_betas), global_orient=tensor("global_orient", 3),
                    body_pose=tensor("body_pose", 3 * model.NUM_BODY_JOINTS), transl=tensor("transl", 3))
    vertices = out.vertices[0].double().numpy()
    if "world_to_camera" in params:
        R = np.asarray(params["world_to_camera"]["R"], dtype=np.float64)
        t = np.asarray(params["world_to_camera"]["t"], dtype=np.float64)
        if R.shape != (3, 3) or t.shape != (3,):
            raise FitInputError(f"{path}: world_to_camera needs R (3x3) and t (3)")
        vertices = vertices @ R.T + t
    camera = PinholeCamera.from_dict(params["camera"], width, height) if "camera" in params else None
    return vertices, np.asarray(model.faces, dtype=np.int64), camera


def load_contact(path: str | Path, num_vertices: int, keys: tuple[str, ...], what: str) -> np.ndarray:
    """The per-vertex array of an npz that has one value per vertex (the first of ``keys`` that fits)."""
    path = Path(path)
    if not path.is_file():
        raise FitInputError(f"{what} file not found: {path}")
    data = np.load(path, allow_pickle=False)
    sizes = {k: int(np.asarray(data[k]).size) for k in data.files}
    for key in list(keys) + [k for k in data.files if k not in keys]:
        if key in data.files and sizes[key] == num_vertices:
            return np.asarray(data[key], dtype=np.float64).reshape(-1)
    raise FitInputError(f"{path}: no array with one value per vertex ({num_vertices}) for the {what}; arrays and "
                        f"sizes: {sizes}")


def load_mask(spec: str | Path, width: int, height: int) -> np.ndarray:
    """``[H, W]`` bool from a PNG, a box ``x0,y0,x1,y1`` or a Grounded-SAM JSON (``mask`` preferred over ``bbox``)."""
    text = str(spec)
    if "," in text and not Path(text).exists():
        try:
            x0, y0, x1, y1 = (float(v) for v in text.split(","))
        except ValueError as err:
            raise FitInputError(f"object box {text!r}: expected four numbers x0,y0,x1,y1") from err
        return _box_mask((x0, y0, x1, y1), width, height, text)
    path = Path(spec)
    if not path.is_file():
        raise FitInputError(f"object mask not found: {path}")
    if path.suffix == ".json":
        det = json.loads(path.read_text())
        if "mask" in det:
            mask = np.asarray(det["mask"]).squeeze() > 0
        elif "bbox" in det:
            return _box_mask(np.asarray(det["bbox"], dtype=float).reshape(-1)[:4], width, height, str(path))
        else:
            raise FitInputError(f"{path}: expected a 'mask' or a 'bbox' entry")
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise FitInputError(f"{path}: could not be read as an image")
        mask = (raw.max(axis=2) if raw.ndim == 3 else raw) > 0
    if mask.shape != (height, width):
        raise FitInputError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but the photo is {width}x{height}")
    return mask


def _box_mask(box, width: int, height: int, source: str) -> np.ndarray:
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        raise FitInputError(f"object box {source}: need x1 > x0 and y1 > y0, got {tuple(box)}")
    mask = np.zeros((height, width), dtype=bool)
    mask[max(0, int(round(y0))):max(0, int(round(y1))), max(0, int(round(x0))):max(0, int(round(x1)))] = True
    return mask


def find_in_dir(folder: Path, patterns: tuple[str, ...], what: str, required: bool = True) -> Path | None:
    """The single file of ``folder`` matching the first pattern that matches anything."""
    for pattern in patterns:
        hits = sorted(p for p in folder.glob(pattern) if p.is_file())
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise FitInputError(f"{folder}: several files could be the {what} ({', '.join(h.name for h in hits)}); "
                                f"pass it explicitly")
    if required:
        raise FitInputError(f"{folder}: no {what} found (looked for {', '.join(patterns)})")
    return None


def load_inputs(image: str | Path, human: str | Path, human_contact: str | Path, object_mesh: str | Path,
                object_contact: str | Path, object_mask: str, camera: str | Path | None = None,
                object_scale: float = 1.0, body_model_dir: str | Path | None = None) -> FitInputs:
    photo = load_image(image)
    H, W = photo.shape[:2]
    hv, hf, cam = load_human(human, W, H, camera, body_model_dir)
    try:
        ov, of = load_mesh_file(object_mesh)
    except (ValueError, FileNotFoundError) as err:
        raise FitInputError(str(err)) from err
    if not object_scale > 0:
        raise FitInputError(f"--object-scale must be positive, got {object_scale}")
    inputs = FitInputs(
        image=photo, camera=cam, human_vertices=hv, human_faces=hf,
        human_contact=load_contact(human_contact, len(hv), CONTACT_KEYS, "human contact"),
        object_vertices=np.asarray(ov) * object_scale, object_faces=np.asarray(of),
        object_contact=load_contact(object_contact, len(ov), OBJECT_CONTACT_KEYS, "object contact"),
        object_mask=load_mask(object_mask, W, H),
        sources={"image": str(image), "human": str(human), "camera": str(camera) if camera else "from the human file",
                 "human_contact": str(human_contact), "object_mesh": str(object_mesh),
                 "object_contact": str(object_contact), "object_mask": str(object_mask), "object_scale": object_scale})
    return inputs.validate()


# ----------------------------------------------------------------------------------------------------------------
# Input folders: one lookup of the conventional names, for the CLI's --input-dir and load_input_dir
# ----------------------------------------------------------------------------------------------------------------

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
NOT_PHOTOS = ("object_mask", "human_mask", "overlay")  # images of an input folder that are never the photo
# key: (what it is, the names tried in order, required)
FOLDER_NAMES = {
    "human": ("human", ("human.npz", "human.json", "osx_human*.npz", "human.ply", "human.obj"), True),
    "camera": ("camera", ("camera.json",), False),
    "human_contact": ("human contact", ("hcontact_vertices.npz", "*_hcontact_vertices.npz",
                                        "*_hcontact-ocontact_vertices.npz"), True),
    "object_mesh": ("object mesh", ("object_mesh.*",), True),
    "object_contact": ("object contact", ("ocontact_vertices.npz", "*_ocontact_vertices.npz",
                                          "*_oafford_vertices.npz", "*_hcontact-ocontact_vertices.npz"), True),
    "object_mask": ("object mask", ("object_mask.png", "object_detection.json"), True),
}
INPUT_KEYS = ("image",) + tuple(FOLDER_NAMES)
REQUIRED_INPUTS = ("image",) + tuple(k for k, (_, _, required) in FOLDER_NAMES.items() if required)


def find_photo(folder: Path) -> Path | None:
    """``image.<ext>``, else the folder's only photo (masks and overlays are not candidates). Several candidates
    stop with an error naming them: taking the first one would fit the object to whichever photo sorts first."""
    def photos(paths) -> list[Path]:
        return sorted(p for p in paths if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)

    named = photos(folder.glob("image.*"))
    candidates = named or [p for p in photos(folder.iterdir()) if not p.name.startswith(NOT_PHOTOS)]
    if len(candidates) > 1:
        raise FitInputError(f"{folder}: several files could be the photo ({', '.join(c.name for c in candidates)}); "
                            "name the one to fit image.<ext> or pass it with --image")
    return candidates[0] if candidates else None


def find_inputs(folder: str | Path, skip: tuple[str, ...] = ()) -> dict[str, Path | None]:
    """Every input of ``folder`` found under its conventional name (``None`` where there is none, or for the keys
    in ``skip``: inputs given otherwise are not looked up, so an ambiguous folder name cannot stop them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FitInputError(f"input folder not found: {folder}")
    found: dict[str, Path | None] = dict.fromkeys(INPUT_KEYS)
    if "image" not in skip:
        found["image"] = find_photo(folder)
    for key, (what, patterns, _) in FOLDER_NAMES.items():
        if key not in skip:
            found[key] = find_in_dir(folder, patterns, what, required=False)
    return found


def describe_missing(keys: list[str], folder: Path | None = None) -> str:
    """``--flag (what; the names an input folder may use)`` for each missing input."""
    parts = []
    for key in keys:
        if key == "image":
            what, patterns = "photo", ("image.<ext>", "the folder's only photo")
        else:
            what, patterns, _ = FOLDER_NAMES[key]
        parts.append(f"--{key.replace('_', '-')} ({what}; in a folder: {' or '.join(patterns)})")
    where = f" in {folder}" if folder is not None else ""
    return f"missing inputs{where}: " + ", ".join(parts)


def load_input_dir(folder: str | Path, **kwargs) -> FitInputs:
    """Every input from one folder with conventional names (the layout of the original's ``optim_data/``)."""
    folder = Path(folder)
    found = find_inputs(folder)
    missing = [k for k in REQUIRED_INPUTS if found[k] is None]
    if missing:
        raise FitInputError(describe_missing(missing, folder))
    return load_inputs(found["image"], found["human"], found["human_contact"], found["object_mesh"],
                       found["object_contact"], str(found["object_mask"]), found["camera"], **kwargs)
