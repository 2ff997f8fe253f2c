"""The one place that loads body models (SMPL, SMPL-H, SMPL-X and our procedural SynthBody).

Library code takes the body-model directory as an argument; only :func:`default_body_model_dir` knows where the
repository keeps them. Official SMPL / SMPL-H pickles contain ``chumpy`` arrays, and chumpy is unmaintained and
does not install on current Python/numpy, so pickles are read with a restricted unpickler that turns chumpy objects
into numpy arrays and refuses anything that is not plain data (a pickle can otherwise run arbitrary code).
"""

from __future__ import annotations

import json
import pickle
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import smplx
import torch
import trimesh
from smplx.utils import Struct

__all__ = [
    "BODY_MODEL_FILES",
    "BodyModelSpec",
    "body_parts_from_vertices",
    "canonical_mesh",
    "default_body_model_dir",
    "load_body_model",
    "load_part_segmentation",
    "load_pickle_without_chumpy",
    "model_file_path",
    "transfer_contact_smpl_to_smplx",
    "vitruvian_body_pose",
]


@dataclass(frozen=True)
class BodyModelSpec:
    """Where a model type lives inside a body-model directory and where a user can obtain it."""

    subdir: str
    file_stem: str  # e.g. "SMPL" -> SMPL_NEUTRAL.pkl; the gender is filled in upper case
    extensions: tuple[str, ...]  # tried in order
    num_vertices: int
    source: str  # how to obtain it: licence/download site, or the command that generates it


BODY_MODEL_FILES: dict[str, BodyModelSpec] = {
    "smpl": BodyModelSpec(
        "smpl", "SMPL", (".pkl",), 6890, "download it (licence required) from https://smpl.is.tue.mpg.de"
    ),
    "smplh": BodyModelSpec(
        "smplh", "SMPLH", (".pkl",), 6890, "download SMPL+H (licence required) from https://mano.is.tue.mpg.de"
    ),
    "smplx": BodyModelSpec(
        "smplx", "SMPLX", (".npz", ".pkl"), 10475, "download it (licence required) from https://smpl-x.is.tue.mpg.de"
    ),
    "synthbody": BodyModelSpec(
        "synthbody", "SYNTHBODY", (".npz",), 6997,
        "generate it with: python -m preprocess_data.make_synthetic_body --output-dir <dir>/synthbody",
    ),
}


def default_body_model_dir() -> Path:
    """The repository's ``data/body_models`` directory (located from this file, not the working directory)."""
    return Path(__file__).resolve().parent.parent / "data" / "body_models"


def _spec(model_type: str) -> BodyModelSpec:
    key = model_type.lower()
    if key not in BODY_MODEL_FILES:
        raise ValueError(f"unknown body model type {model_type!r}; known types: {', '.join(BODY_MODEL_FILES)}")
    return BODY_MODEL_FILES[key]


def model_file_path(model_type: str, body_model_dir: str | Path, gender: str = "neutral") -> Path:
    """Path of the model file for ``model_type``; raises an actionable FileNotFoundError when it is absent."""
    spec = _spec(model_type)
    folder = Path(body_model_dir) / spec.subdir
    candidates = [folder / f"{spec.file_stem}_{gender.upper()}{ext}" for ext in spec.extensions]
    for path in candidates:
        if path.is_file():
            return path
    expected = " or ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"{model_type} body model not found: expected {expected}; {spec.source} and place it there, "
        f"or point to another directory with --body-model-dir (the body_model_dir argument)."
    )


# --------------------------------------------------------------------------------------------------------------
# chumpy-free pickle loading
# --------------------------------------------------------------------------------------------------------------


class _ChumpyShim:
    """Stands in for any ``chumpy`` class during unpickling; only keeps the pickled state."""

    chumpy_name = "chumpy.Ch"

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def to_numpy(self) -> np.ndarray:
        """The array a chumpy ``Ch`` holds (its ``x`` attribute); derived expressions cannot be evaluated."""
        state = getattr(self, "_state", None)
        if isinstance(state, dict) and "x" in state:
            return np.asarray(_to_plain(state["x"]))
        raise ValueError(f"cannot convert pickled {self.chumpy_name} object to numpy (it is not a plain chumpy.Ch)")


_SHIM_CLASSES: dict[str, type] = {}


def _shim_class(module: str, name: str) -> type:
    key = f"{module}.{name}"
    if key not in _SHIM_CLASSES:
        _SHIM_CLASSES[key] = type(name, (_ChumpyShim,), {"chumpy_name": key})
    return _SHIM_CLASSES[key]


_NUMPY_MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric", "numpy.dtypes"}
_NUMPY_CORE = "numpy._core" if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else "numpy.core"
_NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer", "frombuffer"}
_BUILTIN_NAMES = {"object", "set", "frozenset", "list", "dict", "tuple", "slice", "complex", "bytearray", "bytes",
                  "str", "int", "float", "bool"}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler for body-model data: numpy arrays, scipy sparse matrices, builtin containers and chumpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _shim_class(module, name)
        if module in _NUMPY_MODULES and (name in _NUMPY_NAMES or name.endswith("DType")):
            # numpy 2 renamed numpy.core to numpy._core; pickles name whichever version wrote them
            return super().find_class(re.sub(r"^numpy\._?core", _NUMPY_CORE, module), name)
        if module.startswith("scipy.sparse") and name.endswith(("_matrix", "_array")):
            return getattr(scipy.sparse, name)
        if module in {"builtins", "__builtin__"} and name in _BUILTIN_NAMES:
            return super().find_class(module, name)
        if module in {"copy_reg", "copyreg"} and name == "_reconstructor":
            return super().find_class(module, name)
        if module == "collections" and name == "OrderedDict":
            return super().find_class(module, name)
        if module == "_codecs" and name == "encode":  # how protocol-2 pickles made by Python 3 store bytes
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a body-model pickle")


def _to_plain(obj: Any) -> Any:
    """Replace chumpy shims by numpy arrays, recursively through dicts, lists and tuples.

    A chumpy expression that is not a plain ``Ch`` stays a shim: official files carry a few such auxiliary entries
    that no loader needs, so they must not make the whole file unreadable (:func:`_load_arrays` checks the keys
    that are needed).
    """
    if isinstance(obj, _ChumpyShim):
        try:
            return obj.to_numpy()
        except ValueError:
            return obj
    if isinstance(obj, dict):
        return {key: _to_plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_plain(value) for value in obj)
    return obj


def load_pickle_without_chumpy(path: str | Path) -> Any:
    """Load an (often Python 2) body-model pickle without chumpy; chumpy arrays come back as numpy arrays."""
    with open(path, "rb") as handle:
        data = _SafeUnpickler(handle, encoding="latin1").load()
    return _to_plain(data)


# --------------------------------------------------------------------------------------------------------------
# Model construction
# --------------------------------------------------------------------------------------------------------------


def _dense(value: Any) -> Any:
    """Sparse matrices (SMPL's J_regressor) become dense arrays so smplx sees plain numpy everywhere."""
    return np.asarray(value.todense()) if hasattr(value, "todense") else value


_REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


def _load_arrays(path: Path) -> dict[str, Any]:
    """Model arrays from an .npz or a chumpy-free pickle; fails with the key's name if one is missing or unusable."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    else:
        arrays = {key: _dense(value) for key, value in load_pickle_without_chumpy(path).items()}
    for key in _REQUIRED_KEYS:
        if key not in arrays:
            raise ValueError(f"{path}: missing {key!r}; is this a SMPL-family model file?")
        if isinstance(arrays[key], _ChumpyShim):
            name = arrays[key].chumpy_name
            raise ValueError(f"{path}: {key!r} is a {name} expression that cannot be read without chumpy")
    return arrays


def load_body_model(
    model_type: str,
    body_model_dir: str | Path,
    gender: str = "neutral",
    num_betas: int = 10,
    batch_size: int = 1,
) -> Any:
    """Build the ``smplx`` model (SMPL, SMPLH, SMPLX) for ``model_type`` from ``body_model_dir``.

    Pickles are read here, chumpy-free, and handed to smplx as ``data_struct`` so smplx never unpickles anything
    itself. SynthBody is an ``smplx.SMPL`` with its own extra-joint vertex ids; SMPL-H uses full (non-PCA) hand poses.
    """
    key = model_type.lower()
    path = model_file_path(key, body_model_dir, gender)
    common = {"gender": gender, "num_betas": num_betas, "batch_size": batch_size}
    if key == "smplx":
        return _load_smplx(path, common)
    data = _load_arrays(path)
    if key == "synthbody":
        vertex_ids = json.loads(str(data.pop("vertex_ids_json")))
        data.pop("joint_names", None)
        return smplx.SMPL(str(path), data_struct=Struct(**data), vertex_ids=vertex_ids, **common)
    if key == "smplh":
        return smplx.SMPLH(str(path), data_struct=Struct(**data), use_pca=False, **common)
    return smplx.SMPL(str(path), data_struct=Struct(**data), **common)


def _load_smplx(path: Path, common: dict[str, Any]) -> Any:
    """smplx.SMPLX always reads its file itself: give it the .npz, or a chumpy-free .npz copy of a .pkl."""
    if path.suffix == ".npz":
        return smplx.SMPLX(str(path), ext="npz", **common)
    arrays = _load_arrays(path)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "SMPLX_MODEL.npz"
        np.savez(copy, **{k: np.asarray(v) for k, v in arrays.items()})
        return smplx.SMPLX(str(copy), ext="npz", **common)


def vitruvian_body_pose(num_body_joints: int) -> np.ndarray:
    """Axis-angle body pose [num_body_joints * 3] of the original's "Vitruvian" canonical pose.

    Hips (body joints 0 and 1) are rotated +30 / -30 degrees about z so the legs spread and the inner thighs and
    feet become visible in the multi-view renders; every other joint stays at rest.
    """
    pose = np.zeros((num_body_joints, 3), dtype=np.float32)
    pose[0, 2] = np.deg2rad(30.0)
    pose[1, 2] = -np.deg2rad(30.0)
    return pose.reshape(-1)


def canonical_mesh(model_type: str, body_model_dir: str | Path, gender: str = "neutral") -> Any:
    """The body in the Vitruvian pose with zero betas and identity global orientation, as a ``trimesh.Trimesh``."""
    model = load_body_model(model_type, body_model_dir, gender=gender)
    body_pose = torch.from_numpy(vitruvian_body_pose(model.NUM_BODY_JOINTS))[None]
    with torch.no_grad():
        output = model(body_pose=body_pose, return_verts=True)
    vertices = output.vertices[0].cpu().numpy()
    return trimesh.Trimesh(vertices, np.asarray(model.faces, dtype=np.int64), process=False)


# --------------------------------------------------------------------------------------------------------------
# Segmentation and contact transfer
# --------------------------------------------------------------------------------------------------------------


def load_part_segmentation(path: str | Path) -> dict[str, np.ndarray]:
    """{part name: vertex ids} from our JSON or the original's ``smpl_segmentation_merged.pkl``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"part segmentation not found: {path}")
    if path.suffix == ".json":
        raw = json.loads(path.read_text())
    else:
        raw = load_pickle_without_chumpy(path)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected a mapping of part name to vertex ids, got {type(raw).__name__}")
    return {str(name): np.asarray(ids, dtype=np.int64).reshape(-1) for name, ids in raw.items()}


def body_parts_from_vertices(
    contact: Sequence[int] | np.ndarray,
    segmentation: Mapping[str, Iterable[int]],
    min_coverage: float = 0.1,
) -> list[str]:
    """Names of parts with at least ``min_coverage`` of their vertices in contact (the original's 10 % rule).

    ``contact`` is either vertex ids or a per-vertex mask/score (boolean, or a float array as long as the mesh,
    thresholded at 0.5). A mask is recognised by dtype bool or by being float; integer arrays are read as ids.
    """
    arr = np.asarray(contact)
    is_mask = arr.dtype == bool or np.issubdtype(arr.dtype, np.floating)
    contact_ids = np.flatnonzero(arr.reshape(-1) >= 0.5) if is_mask else arr.reshape(-1).astype(np.int64)
    parts = []
    for name, ids in segmentation.items():
        ids = np.fromiter(ids, dtype=np.int64) if not isinstance(ids, np.ndarray) else ids.reshape(-1)
        if len(ids) and np.isin(ids, contact_ids).mean() >= min_coverage:
            parts.append(name)
    return parts


def transfer_contact_smpl_to_smplx(contact: np.ndarray, matrix_path: str | Path) -> np.ndarray:
    """Map per-vertex contact [..., 6890] on SMPL to SMPL-X [..., 10475] with the original's ``smpl_to_smplx.pkl``.

    The file's ``matrix`` (10475 x 6890, dense or scipy sparse) mixes SMPL vertices into each SMPL-X vertex; the
    result is clipped to [0, 1] because the interpolation weights can overshoot slightly.
    """
    path = Path(matrix_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"SMPL->SMPL-X transfer matrix not found: {path} (the original's smpl_to_smplx.pkl with key 'matrix')"
        )
    data = load_pickle_without_chumpy(path)
    if not isinstance(data, Mapping) or "matrix" not in data:
        raise ValueError(f"{path}: expected a dict with key 'matrix'")
    matrix = data["matrix"]
    smplx_n, smpl_n = BODY_MODEL_FILES["smplx"].num_vertices, BODY_MODEL_FILES["smpl"].num_vertices
    if tuple(matrix.shape) != (smplx_n, smpl_n):
        raise ValueError(f"{path}: matrix has shape {tuple(matrix.shape)}, expected ({smplx_n}, {smpl_n})")
    contact = np.asarray(contact, dtype=np.float64)
    if contact.shape[-1] != smpl_n:
        raise ValueError(f"contact has {contact.shape[-1]} vertices in its last axis, expected {smpl_n} (SMPL)")
    flat = contact.reshape(-1, smpl_n).T  # [6890, B]
    out = np.asarray(matrix @ flat).T.reshape(*contact.shape[:-1], smplx_n)
    return np.clip(out, 0.0, 1.0)
