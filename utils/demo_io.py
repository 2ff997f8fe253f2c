"""Demo inputs: finding the samples of a folder / file list / manifest / video, and reading photos robustly.

Layouts (spec §7, plus manifests and video frames):

* ``folder``: ``<input>/<name>/<name>.jpg`` (any image extension), one sub-folder per sample, with
  ``<name>/object_mesh.obj`` for the object modes; the object is the part of ``<name>`` before ``__``.
* ``file``: images directly in ``<input>``, named ``<object>__<anything>.jpg|.jpeg|.png|.webp``.
* ``manifest``: a JSON or CSV file listing ``image`` (path, relative to the manifest) and one or more ``objects``
  (optionally ``mesh``); all objects of one image are asked in one batch.
* ``video``: a folder of frames, processed in natural-sorted name order (``frame_2`` before ``frame_10``).

Nothing here writes anywhere: the input is only read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# readable too when named explicitly (manifest, single file, video frames), but file mode keeps the original's list
EXTRA_IMAGE_EXTENSIONS = (".bmp", ".tif", ".tiff")
OBJECT_MESH_NAME = "object_mesh.obj"
MANIFEST_EXTENSIONS = (".json", ".csv")
DEFAULT_MAX_SIDE = 2048  # photos are downscaled to this longest side right after decoding (memory stays bounded)
# Largest image any decoder may open, checked from the file's header before decoding (PIL's own warning threshold;
# PIL itself only refuses at twice that, and OpenCV has no limit of its own that we can set per call).
DEFAULT_MAX_PIXELS = 89_478_485


@dataclass
class DemoInput:
    """One photo and the objects to ask about. ``name`` is the sample name used for its output folder."""

    name: str
    image_path: Path
    objects: list[str]
    mesh_path: Path | None = None
    frame_index: int | None = None

    def sample_name(self, obj: str) -> str:
        """Output name of the (image, object) result: the image's name, plus ``__<object>`` when it has several."""
        return self.name if len(self.objects) <= 1 else safe_name(f"{self.name}__{safe_name(obj)}")


@dataclass
class Discovery:
    """Samples found, inputs that cannot be run (``failed``: counted as failures) and entries ignored (``skipped``)."""

    inputs: list[DemoInput] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    input_dirs: list[Path] = field(default_factory=list)  # folders the demo must never write into


class InputError(ValueError):
    """The input as a whole cannot be used (missing path, empty folder, unreadable manifest)."""


# ---------------------------------------------------------------------------------------------------------- names

MAX_NAME_CHARS = 80  # output names (sample folders, files): longer names are cut and given a hash suffix
MAX_OBJECT_CHARS = 64  # object names asked about: a longer "name" is a mistake, and it would crowd the prompt
RESERVED_TOKENS = ("<image>", "<im_start>", "<im_end>", "[SEG]", "[HSEG]", "[OSEG]", "<s>", "</s>", "<unk>",
                   "USER:", "ASSISTANT:")
_OBJECT_CHARS = re.compile(r"^[^\W_]+(?:[ _'\-.][^\W_]+)*$")  # words (any script) joined by space _ ' - .


def safe_name(text: str) -> str:
    """A file-name-safe version of a sample or object name (keeps letters, digits, ``-_.``), at most
    ``MAX_NAME_CHARS`` characters (a longer one keeps its start plus 8 hex digits of its hash, so it stays unique)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._-") or "sample"  # no '-' first: not an option
    if len(cleaned) > MAX_NAME_CHARS:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = f"{cleaned[:MAX_NAME_CHARS - 9].rstrip('._-')}-{digest}"
    return cleaned


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def validate_object_name(name: str) -> str:
    """The object name as asked in the prompt (stripped, lower case), or a ``ValueError`` saying what is wrong.

    The name goes verbatim into the question, so it must not carry the model's reserved tokens (an ``<image>`` would
    break the image-token count, a ``[SEG]`` would fake an answer) nor be so long that the prompt is cut."""
    name = name.strip()
    lowered = name.lower()
    for token in RESERVED_TOKENS:
        if token.lower() in lowered:
            raise ValueError(f"object name {_shorten(name)} contains the reserved token {token!r}; name the object "
                             "with plain words (e.g. chair, baseball bat)")
    if len(name) > MAX_OBJECT_CHARS:
        raise ValueError(f"object name {_shorten(name)} is {len(name)} characters long (at most {MAX_OBJECT_CHARS}); "
                         "name the object with a word or two (e.g. chair, dining table)")
    if not _OBJECT_CHARS.match(name):
        raise ValueError(f"object name {_shorten(name)} must be words of letters and digits, separated by single "
                         "spaces, '_', '-', \"'\" or '.' (e.g. chair, baseball_bat, tv-stand)")
    return lowered


def object_from_name(name: str) -> str | None:
    """The original's rule: ``basename.split('__')[0].lower()``; ``None`` when the name has no ``__``."""
    stem = Path(name).stem if Path(name).suffix.lower() in IMAGE_EXTENSIONS + EXTRA_IMAGE_EXTENSIONS else name
    if "__" not in stem:
        return None
    obj = stem.split("__")[0].strip().lower()
    return obj or None


def natural_key(name: str) -> list:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def is_image_name(path: Path, extra: bool = False) -> bool:
    exts = IMAGE_EXTENSIONS + (EXTRA_IMAGE_EXTENSIONS if extra else ())
    return path.suffix.lower() in exts


def _unique(name: str, used: set[str]) -> str:
    candidate, k = name, 2
    while candidate in used:
        candidate, k = f"{name}_{k}", k + 1
    used.add(candidate)
    return candidate


def _resolve_objects(names: list[str], fixed_object: str | None, forced: str | None) -> list[str]:
    """``forced`` (the mode's object, e.g. ``scene``) wins, then ``--object``, then what the input names.

    Raises ``ValueError`` for a name that cannot be asked about (see :func:`validate_object_name`)."""
    if forced:
        return [forced]
    if fixed_object:
        return [validate_object_name(fixed_object)]
    seen: list[str] = []
    for n in names:
        n = n.strip().lower()
        if n and n not in seen:
            seen.append(validate_object_name(n))
    return seen


NO_OBJECT = ("no object to ask about: name it '<object>__<id>' (e.g. chair__0001.jpg), pass --object NAME, "
             "or list objects in a manifest")


# ---------------------------------------------------------------------------------------------------------- layouts

def discover_folder(root: Path, fixed_object: str | None = None, forced_object: str | None = None,
                    mesh_override: Path | None = None) -> Discovery:
    """``<root>/<name>/<name>.<ext>`` samples (+ ``object_mesh.obj``)."""
    found = Discovery(input_dirs=[root])
    used: set[str] = set()
    for entry in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            if is_image_name(entry, extra=True):
                found.skipped.append((entry.name, "image directly in the folder: folder mode expects <name>/<name>.jpg "
                                                  "(use file mode, e.g. `bash scripts/run_demo.sh <mode> <folder> file`)"))
            continue  # README, licence notes …
        if not entry.is_dir():
            continue
        candidates = [entry / f"{entry.name}{ext}" for ext in IMAGE_EXTENSIONS + EXTRA_IMAGE_EXTENSIONS]
        candidates += [entry / f"{entry.name}{ext.upper()}" for ext in IMAGE_EXTENSIONS]
        image = next((c for c in candidates if c.is_file()), None)
        if image is None:
            others = sorted(p.name for p in entry.iterdir() if p.is_file() and is_image_name(p, extra=True))
            hint = f" (found {', '.join(others[:3])})" if others else ""
            found.failed.append((entry.name, f"no image named {entry.name}.jpg/.jpeg/.png/.webp in {entry}{hint}"))
            continue
        try:
            objects = _resolve_objects([object_from_name(entry.name) or ""], fixed_object, forced_object)
        except ValueError as err:
            found.failed.append((entry.name[:MAX_NAME_CHARS], str(err)))
            continue
        if not objects:
            found.failed.append((entry.name, NO_OBJECT))
            continue
        mesh = mesh_override or (entry / OBJECT_MESH_NAME if (entry / OBJECT_MESH_NAME).is_file() else None)
        found.inputs.append(DemoInput(_unique(safe_name(entry.name), used), image, objects, mesh))
    return found


def discover_files(root: Path, fixed_object: str | None = None, forced_object: str | None = None,
                   mesh_override: Path | None = None) -> Discovery:
    """Images directly in ``root`` named ``<object>__<anything>.<ext>``."""
    found = Discovery(input_dirs=[root])
    used: set[str] = set()
    for entry in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith(".") or entry.is_dir():
            continue
        if not is_image_name(entry):
            found.skipped.append((entry.name, f"not an image file (extension {entry.suffix or 'none'!r}; "
                                              f"expected {', '.join(IMAGE_EXTENSIONS)})"))
            continue
        named = object_from_name(entry.name)
        if named is None and not (fixed_object or forced_object):
            found.skipped.append((entry.name, "file mode uses images named <object>__<anything>.jpg (or pass --object)"))
            continue
        try:
            objects = _resolve_objects([named or ""], fixed_object, forced_object)
        except ValueError as err:
            found.failed.append((entry.name[:MAX_NAME_CHARS], str(err)))
            continue
        found.inputs.append(DemoInput(_unique(safe_name(entry.stem), used), entry, objects, mesh_override))
    return found


def discover_single(path: Path, fixed_object: str | None = None, forced_object: str | None = None,
                    mesh_override: Path | None = None) -> Discovery:
    found = Discovery(input_dirs=[path.parent])
    try:
        objects = _resolve_objects([object_from_name(path.name) or ""], fixed_object, forced_object)
    except ValueError as err:
        found.failed.append((path.name[:MAX_NAME_CHARS], str(err)))
        return found
    if not objects:
        found.failed.append((path.name, NO_OBJECT))
        return found
    mesh = mesh_override or (path.parent / OBJECT_MESH_NAME if (path.parent / OBJECT_MESH_NAME).is_file() else None)
    found.inputs.append(DemoInput(safe_name(path.stem), path, objects, mesh))
    return found


def discover_video(root: Path, fixed_object: str | None = None, forced_object: str | None = None,
                   mesh_override: Path | None = None) -> Discovery:
    """Frames of one video (any image names), natural-sorted; the object is ``--object``, or the folder's or the
    frames' ``<object>__`` prefix."""
    found = Discovery(input_dirs=[root])
    frames = sorted((p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    images = [p for p in frames if is_image_name(p, extra=True)]
    found.skipped += [(p.name, "not an image file") for p in frames if not is_image_name(p, extra=True)]
    named = object_from_name(root.name) or next((o for o in map(object_from_name, (p.name for p in images)) if o), None)
    try:
        objects = _resolve_objects([named or ""], fixed_object, forced_object)
    except ValueError as err:
        raise InputError(f"{root}: {err}") from err
    if images and not objects:
        raise InputError(f"{root}: {NO_OBJECT}")
    mesh = mesh_override or (root / OBJECT_MESH_NAME if (root / OBJECT_MESH_NAME).is_file() else None)
    used: set[str] = set()
    for index, path in enumerate(images):
        found.inputs.append(DemoInput(_unique(safe_name(path.stem), used), path, list(objects), mesh, frame_index=index))
    return found


def _split_objects(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[;|,]", value) if v.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v).strip()]
    raise InputError(f"objects must be a string or a list, got {type(value).__name__}")


def read_manifest(path: Path) -> list[dict]:
    """Rows ``{"image": str, "objects": [str], "mesh": str | None}`` from a JSON or CSV manifest.

    JSON: a list of entries (or ``{"samples": [...]}``), each ``{"image": ..., "objects": [...]}`` (``object`` and a
    ``;``-separated string are accepted too), or a mapping ``{image: [objects]}``.
    CSV: a header with ``image`` and ``objects`` (or ``object``; several separated by ``;`` or ``|``), optional ``mesh``;
    several rows for one image are merged.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read manifest {path}: {err}") from err
    rows: list[dict] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err})") from err
        if isinstance(data, dict) and "samples" in data:
            data = data["samples"]
        if isinstance(data, dict):
            data = [{"image": k, "objects": v} for k, v in data.items()]
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a list of {{'image': ..., 'objects': [...]}} entries")
        for i, entry in enumerate(data):
            if isinstance(entry, str):
                entry = {"image": entry}
            if not isinstance(entry, dict) or not entry.get("image"):
                raise InputError(f"{path}: entry {i} has no 'image' ({entry!r})")
            objects = _split_objects(entry.get("objects", entry.get("object")))
            rows.append({"image": str(entry["image"]), "objects": objects, "mesh": entry.get("mesh")})
    else:
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "image" not in fields:
            raise InputError(f"{path}: a CSV manifest needs a header with 'image' and 'objects' columns, got {fields}")
        for raw in reader:
            entry = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            if not entry.get("image"):
                continue
            objects = _split_objects(entry.get("objects") or entry.get("object"))
            rows.append({"image": entry["image"], "objects": objects, "mesh": entry.get("mesh") or None})
    merged: dict[str, dict] = {}
    for row in rows:
        known = merged.setdefault(row["image"], {"image": row["image"], "objects": [], "mesh": row["mesh"]})
        known["objects"] += [o for o in row["objects"] if o not in known["objects"]]
        known["mesh"] = known["mesh"] or row["mesh"]
    return list(merged.values())


def discover_manifest(path: Path, fixed_object: str | None = None, forced_object: str | None = None,
                      mesh_override: Path | None = None) -> Discovery:
    found = Discovery()
    used: set[str] = set()
    rows = read_manifest(path)
    if not rows:
        raise InputError(f"{path}: the manifest lists no images")
    for row in rows:
        image = Path(row["image"]).expanduser()
        image = image if image.is_absolute() else path.parent / image
        label = row["image"]
        if not image.is_file():
            found.failed.append((label, f"image not found: {image}"))
            continue
        try:
            objects = _resolve_objects(row["objects"] or [object_from_name(image.name) or ""], fixed_object,
                                       forced_object)
        except ValueError as err:
            found.failed.append((label[:MAX_NAME_CHARS], str(err)))
            continue
        if not objects:
            found.failed.append((label, NO_OBJECT))
            continue
        mesh = mesh_override
        if mesh is None and row["mesh"]:
            mesh = Path(row["mesh"]).expanduser()
            mesh = mesh if mesh.is_absolute() else path.parent / mesh
        elif mesh is None and (image.parent / OBJECT_MESH_NAME).is_file():
            mesh = image.parent / OBJECT_MESH_NAME
        if image.parent not in found.input_dirs:
            found.input_dirs.append(image.parent)
        found.inputs.append(DemoInput(_unique(safe_name(image.stem), used), image, objects, mesh))
    return found


def protect_inputs(found: Discovery, input_path: Path) -> Discovery:
    """Add every location the samples are read from (by real path: a symlinked sample folder protects its target) to
    ``found.input_dirs``, the places the demo must never write into or around."""
    locations = [input_path, *found.input_dirs]
    for item in found.inputs:
        locations += [item.image_path, item.image_path.parent]
        if item.mesh_path is not None:
            locations.append(item.mesh_path)
    seen, out = set(), []
    for loc in locations:
        real = Path(loc).resolve()
        if real not in seen:
            seen.add(real)
            out.append(Path(loc))
    found.input_dirs = out
    return found


def discover(input_path: Path, input_mode: str = "auto", fixed_object: str | None = None,
             forced_object: str | None = None, mesh_override: Path | None = None, video: bool = False) -> Discovery:
    """Samples of ``input_path`` under ``input_mode`` (``auto``, ``folder``, ``file``, ``manifest``); the
    ``input_dirs`` of the result list every input location (see :func:`protect_inputs`)."""
    input_path = Path(input_path).expanduser()
    return protect_inputs(_discover(input_path, input_mode, fixed_object, forced_object, mesh_override, video),
                          input_path)


def _discover(input_path: Path, input_mode: str, fixed_object: str | None, forced_object: str | None,
              mesh_override: Path | None, video: bool) -> Discovery:
    input_path = Path(input_path).expanduser()
    if not input_path.exists():
        raise InputError(f"input not found: {input_path}")
    if fixed_object is not None:
        try:
            validate_object_name(fixed_object)
        except ValueError as err:
            raise InputError(f"--object: {err}") from err
    kwargs = dict(fixed_object=fixed_object, forced_object=forced_object, mesh_override=mesh_override)
    if video:
        if not input_path.is_dir():
            raise InputError(f"--video-frames expects a folder of frames, got the file {input_path}")
        found = discover_video(input_path, **kwargs)
        if not found.inputs:
            raise InputError(f"no frames ({', '.join(IMAGE_EXTENSIONS + EXTRA_IMAGE_EXTENSIONS)}) in {input_path}")
        return found
    if input_mode == "auto":
        if input_path.is_file():
            input_mode = "manifest" if input_path.suffix.lower() in MANIFEST_EXTENSIONS else "file"
        else:
            has_samples = any(p.is_dir() and not p.name.startswith(".") for p in input_path.iterdir())
            input_mode = "folder" if has_samples else "file"
    if input_mode == "manifest":
        if not input_path.is_file():
            raise InputError(f"manifest mode expects a .json or .csv file, got the folder {input_path}")
        return discover_manifest(input_path, **kwargs)
    if input_path.is_file():
        if input_mode == "folder":
            raise InputError(f"folder mode expects a folder of <name>/<name>.jpg samples, got the file {input_path}")
        return discover_single(input_path, **kwargs)
    if input_mode == "folder":
        found = discover_folder(input_path, **kwargs)
        layout = "<name>/<name>.jpg sub-folders"
    elif input_mode == "file":
        found = discover_files(input_path, **kwargs)
        layout = "<object>__<id>.jpg|.jpeg|.png|.webp images"
    else:
        raise InputError(f"unknown input mode {input_mode!r}; use folder, file or manifest")
    if not found.inputs and not found.failed:
        skipped = "".join(f"\n  skipped {n}: {r}" for n, r in found.skipped)
        raise InputError(f"no inputs found in {input_path} (expected {layout}){skipped}")
    return found


# ---------------------------------------------------------------------------------------------------------- images

@dataclass
class LoadedImage:
    pixels: np.ndarray  # [H, W, 3] uint8 RGB, EXIF orientation applied, longest side <= max_side
    original_size: tuple[int, int]  # (width, height) as stored / after EXIF rotation
    source_mode: str  # PIL mode (or "cv2:<dtype>x<channels>") of the file, for the summary
    downscaled: bool


def _white_composite(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.round(rgb.astype(np.float32) * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """High-bit-depth or float pixels → uint8 (16-bit by /257, other ranges by their type's or data's range)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return np.round(arr.astype(np.float32) / 257.0).astype(np.uint8)
    data = arr.astype(np.float64)
    finite = data[np.isfinite(data)]
    hi = float(finite.max()) if finite.size else 0.0
    lo = float(finite.min()) if finite.size else 0.0
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        data = data * 255.0
    elif hi > 65535 or lo < 0:
        data = (data - lo) / max(hi - lo, 1e-12) * 255.0
    elif hi > 255:
        data = data / 257.0
    return np.round(np.clip(np.nan_to_num(data), 0, 255)).astype(np.uint8)


def _pil_to_rgb(image) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode.startswith("I") or mode == "F":  # 16/32-bit grey
        gray = _scale_to_uint8(np.asarray(image))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return _white_composite(rgba[..., :3], rgba[..., 3])
    if mode in ("L", "1"):
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _fallback_header_size(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, format) from the header of the formats only OpenCV reads (Radiance HDR, PFM), else None."""
    head = data[:4096]
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        end = head.find(b"\n\n")
        if end < 0:
            raise ValueError("Radiance HDR header without its resolution line")
        line = head[end + 2:].split(b"\n", 1)[0].decode("ascii", "replace").split()
        if len(line) != 4 or {line[0][1:], line[2][1:]} != {"X", "Y"}:
            raise ValueError(f"Radiance HDR header with an unreadable resolution line {' '.join(line)!r}")
        dims = {line[0][1:]: line[1], line[2][1:]: line[3]}
        return int(dims["X"]), int(dims["Y"]), "Radiance HDR"
    if head[:2] in (b"PF", b"Pf") and head[2:3].isspace():
        fields = head[2:].split(None, 3)
        return int(fields[0]), int(fields[1]), "PFM"
    return None


class ImageTooLarge(ValueError):
    """An image whose header announces more pixels than the decoders are allowed to produce."""


def check_pixel_count(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"{what} header gives an invalid size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLarge(f"{what} of {width}x{height} = {width * height:,} pixels exceeds the limit of "
                         f"{max_pixels:,} pixels (a decompression bomb, or a photo to downscale before use)")


def _cv2_decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                max_side: int = DEFAULT_MAX_SIDE) -> tuple[np.ndarray, str, tuple[int, int]]:
    """Formats PIL does not read (HDR, PFM) through OpenCV: the size is checked from the header first, the image is
    downscaled in its own dtype before the conversion to uint8 (no full-size float64 copy).

    Returns (RGB uint8 pixels, mode, original (width, height))."""
    import cv2

    try:
        header = _fallback_header_size(data)
    except (ValueError, IndexError) as err:
        raise ValueError(f"unreadable image header ({err})") from err
    if header is None:
        raise ValueError("unknown image format (neither PIL nor the HDR/PFM reader recognises it)")
    width, height, kind = header
    check_pixel_count(width, height, max_pixels, kind)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        raise ValueError(f"{kind} file that OpenCV cannot decode")
    mode = f"cv2:{arr.dtype}x{1 if arr.ndim == 2 else arr.shape[2]}"
    original = (int(arr.shape[1]), int(arr.shape[0]))
    if max(arr.shape[:2]) > max_side:
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        arr, _ = _downscale(arr, max_side)
    arr = _scale_to_uint8(arr)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2), mode, original
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2), mode, original
    if arr.shape[2] == 4:
        return _white_composite(arr[..., 2::-1], arr[..., 3]), mode, original
    return np.ascontiguousarray(arr[..., 2::-1]), mode, original


def _downscale(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, bool]:
    h, w = pixels.shape[:2]
    if max(h, w) <= max_side:
        return pixels, False
    import cv2

    scale = max_side / max(h, w)
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), True


def load_image(path: str | Path, max_side: int = DEFAULT_MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Any photo → RGB uint8 with EXIF orientation applied and the longest side at most ``max_side``.

    Grayscale, palette, RGBA/LA (composited on white), 16-bit and float images are converted; JPEGs larger than
    needed are decoded at a reduced scale (``draft``) so a 10 000-pixel photo never lives in memory at full size.
    Every decoder is held to ``max_pixels``, checked from the file's header before any pixel is decoded.
    Raises ``ValueError`` with the reason for unreadable, truncated, oversized or non-image files.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from err
    if not data:
        raise ValueError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            original = image.size
            mode = image.mode
            if image.format == "JPEG" and max(image.size) > 2 * max_side:
                image.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale
            check_pixel_count(image.size[0], image.size[1], max_pixels, f"{image.format} image")  # as decoded
            image.load()
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90°: report the upright size
                original = (original[1], original[0])
            image = ImageOps.exif_transpose(image)
            if max(image.size) > max_side and image.mode in ("RGB", "L", "RGBA", "LA", "P", "CMYK", "YCbCr"):
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # before the float conversions
            pixels = _pil_to_rgb(image)
    except ImageTooLarge:
        raise
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(f"image too large to decode safely ({err})") from err
    except UnidentifiedImageError:
        try:
            pixels, mode, original = _cv2_decode(data, max_pixels, max_side)
        except ImageTooLarge:
            raise
        except ValueError as err:
            raise ValueError(f"not an image file or corrupt image ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:  # truncated / broken data
        raise ValueError(f"corrupt or truncated image ({err})") from err
    pixels, downscaled = _downscale(np.ascontiguousarray(pixels), max_side)
    downscaled = downscaled or max(original) > max_side
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise ValueError(f"decoded to an unusable array of shape {pixels.shape}")
    return LoadedImage(pixels, (int(original[0]), int(original[1])), mode, downscaled)
