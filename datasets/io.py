"""File readers shared by the dataset readers: every failure names the file and what was expected in it.

Pickles and object ``.npy`` files are read with the restricted unpickler of ``utils.body_models`` (plain containers,
numpy arrays and scalars only): a data pickle can otherwise run arbitrary code when it is opened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from utils.body_models import _SafeUnpickler, _to_plain, load_pickle_without_chumpy
from utils.paths import require_file

WHITE_SUM = 765  # 3 × 255: a pure-white render pixel is background, outside the valid region (the original's rule)


class DatasetFormatError(ValueError):
    """A dataset file exists but does not hold what the reader expects; the message names the file."""


def load_pickle(path: str | Path, what: str) -> Any:
    path = require_file(path, what)
    try:
        return load_pickle_without_chumpy(path)
    except Exception as err:  # noqa: BLE001 — any unpickling failure is a format problem of this file
        raise DatasetFormatError(f"{path}: cannot read {what}: {err}") from err


def split_meta_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line number, entry)`` of each non-blank line of a SynthContact ``meta.jsonl``; a line that is not JSON is a
    :class:`DatasetFormatError` naming the file and the line."""
    path = Path(path)
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{path}, line {number}: not JSON ({err})") from err


def load_npy(path: str | Path, what: str) -> np.ndarray:
    """``np.load`` without ``allow_pickle``; object arrays (e.g. an ``imgname.npy`` of Python strings) are unpickled
    with the restricted unpickler instead of numpy's unrestricted one."""
    path = require_file(path, what)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            _, _, dtype = read_header(handle)
            if dtype.hasobject:
                return np.asarray(_to_plain(_SafeUnpickler(handle, encoding="latin1").load()))
        return np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001
        raise DatasetFormatError(f"{path}: cannot read {what}: {err}") from err


def load_json(path: str | Path, what: str) -> Any:
    path = require_file(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetFormatError(f"{path}: cannot read {what}: {err}") from err


def read_lines(path: str | Path, what: str) -> list[str]:
    """Non-empty, stripped lines of an index text file."""
    path = require_file(path, what)
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def expect_type(value: Any, types: type | tuple[type, ...], path: Path | str, what: str) -> Any:
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise DatasetFormatError(f"{path}: expected {what} ({names}), got {type(value).__name__}")
    return value


def string_list(value: Any, path: Path | str, what: str) -> list[str]:
    """A list/tuple/array of strings (body-part names, image names); anything else is a format error."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DatasetFormatError(f"{path}: expected {what} as a list of strings, got {value!r:.200}")
    return list(value)


def map_listed_path(root: Path, listed: str, anchor: str | None = None) -> Path:
    """Where a path written in an index file lives under ``root``.

    Index files of the original releases hold paths from the authors' machines. The part from the last ``anchor``
    directory on (e.g. ``Img`` in ``/cluster/…/Seen/Img/Train/Bag/open/x.jpg``) is taken relative to ``root``;
    without the anchor an absolute path is kept and a relative one is read relative to ``root``. The rule is fixed:
    nothing is searched, so a missing file is reported under exactly one name.
    """
    parts = PurePath(listed.strip().replace("\\", "/")).parts
    if anchor is not None and anchor in parts:
        last = len(parts) - 1 - parts[::-1].index(anchor)
        return root.joinpath(*parts[last:])
    path = Path(*parts) if parts else Path(listed)
    return path if path.is_absolute() else root / path


class DirectoryListing:
    """Cached ``os.listdir`` per directory: checking that thousands of mask files exist costs one listing each."""

    def __init__(self) -> None:
        self._cache: dict[Path, frozenset[str]] = {}

    def names(self, folder: Path) -> frozenset[str]:
        if folder not in self._cache:
            try:
                self._cache[folder] = frozenset(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                self._cache[folder] = frozenset()
        return self._cache[folder]

    def exists(self, path: Path) -> bool:
        return path.name in self.names(path.parent)

    def all_exist(self, paths: Iterable[Path]) -> bool:
        return all(self.exists(p) for p in paths)


# ----------------------------------------------------------------------------------------------------------------
# images


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]``: EXIF orientation applied, grayscale / palette / 16-bit converted, alpha composited
    onto white (the renders' background)."""
    path = require_file(path, "an image")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                arr = arr / max(float(arr.max()), 1.0) * 255.0 if img.mode == "I" else arr / 257.0
                return np.repeat(np.clip(arr, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetFormatError(f"{path}: not a readable image ({err})") from err


def _read_gray(path: Path, what: str) -> np.ndarray:
    path = require_file(path, what)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetFormatError(f"{path}: not a readable image (expected {what})")
    if image.dtype != np.uint8:
        raise DatasetFormatError(f"{path}: expected an 8-bit {what}, got {image.dtype}")
    if image.ndim == 3:
        colour = image[..., :3]
        if not (colour == colour[..., :1]).all():
            raise DatasetFormatError(f"{path}: expected a single-channel {what}, got a colour image")
        image = colour[..., 0]
    return image


def read_mask(path: str | Path, soft: bool = False) -> np.ndarray:
    """Label PNG → float32 ``[H, W]``: binary masks (255 = contact) → {0, 1}; ``soft`` heat maps → value / 255."""
    image = _read_gray(Path(path), "heat-map label PNG" if soft else "contact mask PNG (255 = contact)")
    if soft:
        return image.astype(np.float32) / 255.0
    return (image >= 128).astype(np.float32)


def read_render_valid(path: str | Path) -> np.ndarray:
    """``[H, W]`` bool: pixels of a template render that are not pure white (the template's valid region)."""
    path = require_file(path, "a template render (SAM input PNG)")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetFormatError(f"{path}: not a readable image (expected a template render)")
    return image.astype(np.int32).sum(axis=2) < WHITE_SUM


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[..., H, W]`` → ``[..., size]`` by nearest neighbour (labels must not be blended)."""
    if array.shape[-2:] == tuple(size):
        return array
    lead = array.shape[:-2]
    flat = array.reshape(-1, *array.shape[-2:])
    dtype = flat.dtype
    work = flat.astype(np.uint8) if dtype == bool else flat
    out = np.stack([cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) for m in work])
    return out.astype(dtype).reshape(*lead, *size)
