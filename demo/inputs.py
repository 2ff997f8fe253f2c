"""The demo's inputs: the command line's choices checked, and the samples of a folder / file list / manifest /
video found.

Layouts:

* ``folder``: ``<input>/<name>/<name>.jpg`` (any image extension), one sub-folder per sample, with
  ``<name>/object_mesh.obj`` for the object modes; the object is the part of ``<name>`` before ``__`` (the
  original demo's layout);
* ``file``: images directly in ``<input>``, named ``<object>__<anything>.jpg|.jpeg|.png|.webp``;
* ``manifest``: a JSON or CSV file listing ``image`` (path, relative to the manifest) and one or more ``objects``
  (optionally ``mesh``); all objects of one image are asked in one batch (:mod:`demo.manifest`);
* ``video``: a folder of frames, processed in natural-sorted name order (``frame_2`` before ``frame_10``).

Nothing here writes anywhere: the input is only read.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from demo.errors import DemoError, InputError
from demo.jobs import DemoInput, Discovery
from demo.manifest import MANIFEST_EXTENSIONS, read_manifest
from demo.modes import ModeSpec, get_mode
from demo.names import (EXTRA_IMAGE_EXTENSIONS, IMAGE_EXTENSIONS, MAX_NAME_CHARS, NO_OBJECT, OBJECT_MESH_NAME,
                        is_image_name, natural_key, object_from_name, resolve_objects, safe_name, unique_name,
                        validate_object_name)
from utils.paths import DEFAULT_2D_MODEL, DEFAULT_MODEL, REPO_ROOT

# the 3D default (utils.paths.DEFAULT_MODEL): the opening-turn model (README, "The opening-turn model"), which beats
# the pose-first interactvlm-tiny-synthcontact on seen and held-out combinations alike
DEFAULT_INPUT = REPO_ROOT / "data" / "demo_samples"
DEFAULT_OBJECT_INPUT = DEFAULT_INPUT / "object_samples.json"  # the object modes need samples with a mesh
DEFAULT_OUTPUT_ROOT = REPO_ROOT / "outputs" / "demo"  # + /<mode>: belongs to the demo, replaced by every run


# ---------------------------------------------------------------------------------------------------------- the run

@dataclass
class RunPlan:
    """The checked choices of one run and the samples found."""

    mode: ModeSpec
    model_dir: Path
    input_path: Path
    output_dir: Path
    default_output: bool  # outputs/demo/<mode>: the demo's own folder, replaced by every run
    found: Discovery

    @property
    def video_name(self) -> str:
        """The file holding all frames of a ``--video-frames`` run."""
        return f"{safe_name(self.input_path.name)}_{self.mode.name}_video.npz"


def _check_options(args: argparse.Namespace) -> None:
    if not 0.0 <= args.threshold <= 1.0:
        raise DemoError(f"--threshold must lie in [0, 1], got {args.threshold}")
    if args.batch_size < 1:
        raise DemoError("--batch-size must be at least 1")
    if args.smooth > 1 and not args.video_frames:
        raise DemoError("--smooth smooths over video frames: add --video-frames (the input is then one video's frames)")


def plan_run(args: argparse.Namespace) -> RunPlan:
    """The mode, model, input and output folder of ``run_demo.py``'s arguments (defaults filled in, options
    checked) and the samples of the input; a :class:`DemoError` says what is wrong."""
    mode = get_mode(args.mode)
    _check_options(args)
    model_dir = args.model if args.model is not None else (DEFAULT_2D_MODEL if mode.two_d else DEFAULT_MODEL)
    input_path = args.input if args.input is not None else (DEFAULT_OBJECT_INPUT if mode.needs_mesh else DEFAULT_INPUT)
    forced = None if args.object else mode.forced_object
    try:
        found = discover(input_path, args.input_mode, fixed_object=args.object, forced_object=forced,
                         mesh_override=args.object_mesh, video=args.video_frames)
    except InputError as err:
        raise DemoError(str(err)) from err
    output_dir = (args.output_dir or DEFAULT_OUTPUT_ROOT / mode.name).expanduser()
    return RunPlan(mode, Path(model_dir), Path(input_path), output_dir, args.output_dir is None, found)


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
            objects = resolve_objects([object_from_name(entry.name) or ""], fixed_object, forced_object)
        except ValueError as err:
            found.failed.append((entry.name[:MAX_NAME_CHARS], str(err)))
            continue
        if not objects:
            found.failed.append((entry.name, NO_OBJECT))
            continue
        mesh = mesh_override or (entry / OBJECT_MESH_NAME if (entry / OBJECT_MESH_NAME).is_file() else None)
        found.inputs.append(DemoInput(unique_name(safe_name(entry.name), used), image, objects, mesh))
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
            objects = resolve_objects([named or ""], fixed_object, forced_object)
        except ValueError as err:
            found.failed.append((entry.name[:MAX_NAME_CHARS], str(err)))
            continue
        found.inputs.append(DemoInput(unique_name(safe_name(entry.stem), used), entry, objects, mesh_override))
    return found


def discover_single(path: Path, fixed_object: str | None = None, forced_object: str | None = None,
                    mesh_override: Path | None = None) -> Discovery:
    """One image file given as the input."""
    found = Discovery(input_dirs=[path.parent])
    try:
        objects = resolve_objects([object_from_name(path.name) or ""], fixed_object, forced_object)
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
        objects = resolve_objects([named or ""], fixed_object, forced_object)
    except ValueError as err:
        raise InputError(f"{root}: {err}") from err
    if images and not objects:
        raise InputError(f"{root}: {NO_OBJECT}")
    mesh = mesh_override or (root / OBJECT_MESH_NAME if (root / OBJECT_MESH_NAME).is_file() else None)
    used: set[str] = set()
    for index, path in enumerate(images):
        found.inputs.append(DemoInput(unique_name(safe_name(path.stem), used), path, list(objects), mesh, frame_index=index))
    return found


def _manifest_mesh(row: dict, image: Path, manifest: Path, mesh_override: Path | None) -> Path | None:
    """``--object-mesh``, else the row's mesh (relative to the manifest), else ``object_mesh.obj`` beside the image."""
    if mesh_override is not None:
        return mesh_override
    if row["mesh"]:
        mesh = Path(row["mesh"]).expanduser()
        return mesh if mesh.is_absolute() else manifest.parent / mesh
    return image.parent / OBJECT_MESH_NAME if (image.parent / OBJECT_MESH_NAME).is_file() else None


def discover_manifest(path: Path, fixed_object: str | None = None, forced_object: str | None = None,
                      mesh_override: Path | None = None) -> Discovery:
    """The images a manifest lists (see :func:`demo.manifest.read_manifest`)."""
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
            objects = resolve_objects(row["objects"] or [object_from_name(image.name) or ""], fixed_object,
                                      forced_object)
        except ValueError as err:
            found.failed.append((label[:MAX_NAME_CHARS], str(err)))
            continue
        if not objects:
            found.failed.append((label, NO_OBJECT))
            continue
        if image.parent not in found.input_dirs:
            found.input_dirs.append(image.parent)
        mesh = _manifest_mesh(row, image, path, mesh_override)
        found.inputs.append(DemoInput(unique_name(safe_name(image.stem), used), image, objects, mesh))
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
    if not input_path.exists():
        raise InputError(f"input not found: {input_path}")
    if fixed_object is not None:
        try:
            validate_object_name(fixed_object)
        except ValueError as err:
            raise InputError(f"--object: {err}") from err
    kwargs = dict(fixed_object=fixed_object, forced_object=forced_object, mesh_override=mesh_override)
    if video:
        found = _discover_video(input_path, kwargs)
    else:
        found = _discover_layout(input_path, input_mode, kwargs)
    return protect_inputs(found, input_path)


def _discover_video(input_path: Path, kwargs: dict) -> Discovery:
    if not input_path.is_dir():
        raise InputError(f"--video-frames expects a folder of frames, got the file {input_path}")
    found = discover_video(input_path, **kwargs)
    if not found.inputs:
        raise InputError(f"no frames ({', '.join(IMAGE_EXTENSIONS + EXTRA_IMAGE_EXTENSIONS)}) in {input_path}")
    return found


def _auto_mode(input_path: Path) -> str:
    """``manifest`` for a .json/.csv file, ``file`` for another file, ``folder`` when there are sub-folders."""
    if input_path.is_file():
        return "manifest" if input_path.suffix.lower() in MANIFEST_EXTENSIONS else "file"
    has_samples = any(p.is_dir() and not p.name.startswith(".") for p in input_path.iterdir())
    return "folder" if has_samples else "file"


def _discover_layout(input_path: Path, input_mode: str, kwargs: dict) -> Discovery:
    if input_mode == "auto":
        input_mode = _auto_mode(input_path)
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
