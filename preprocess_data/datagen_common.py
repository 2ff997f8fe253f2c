"""Shared helpers of the data-generation stages (``bash scripts/run_datagen.sh <stage>``), and the ``templates`` stage.

The stages turn the raw annotations of the real releases (DAMON, LEMON, RICH, PIAD, PICO) into every derived file
the readers in ``datasets/`` need. What they share lives here:

* **atomic writes** (:func:`write_png`, :func:`write_npz`, :func:`write_pickle_if_changed`): a file is written to a
  temporary name and renamed, so an existing output is always complete and an interrupted run resumes by skipping
  what exists;
* **human masks** (:class:`MaskGroup`, :func:`human_setup`, :func:`human_mask_job`): per-view body-render masks of a
  contact vertex set (the original's rule: a pixel is 255 when its triangle has at least ``min_vertices`` of its three
  vertices in the set), through the lifting maps of the human template (ours under ``<dataset_dir>/templates/<body>/<view
  set>`` or the original's ``<dataset_dir>/hcontact_vitruvian[_mv2]``);
* **job running** (:func:`run_jobs`): a tqdm bar over a list of picklable jobs, in-process or in ``--workers`` spawned
  processes;
* **input checks**: a missing input raises ``FileNotFoundError`` naming the file and what was expected in it, a
  malformed one :class:`datasets.io.DatasetFormatError` likewise (:func:`format_error`).

Import rule for the stage modules: ``--workers`` processes are *spawned*, and each re-imports the stage module and
the module of its job function. Importing anything from the ``datasets`` package runs ``datasets/__init__``, which
imports torch (seconds per worker, for nothing: the jobs use numpy, OpenCV and ``utils.geometry``). So the stage
modules import ``datasets`` only inside the functions that run in the main process.

The ``templates`` stage (``python -m preprocess_data.datagen_common templates``) renders the human templates for every
view set a training recipe uses, for ``synthbody`` and, when the licensed model is present, ``smplh``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import multiprocessing as mp
import os
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from utils.body_models import BODY_MODEL_FILES, body_parts_from_vertices, default_body_model_dir, load_part_segmentation
from utils.geometry.lifting_maps import LiftingMaps
from utils.geometry.views import ViewSet, get_view_set
from utils.paths import default_data_dir, require_file

if TYPE_CHECKING:
    from datasets.io import DirectoryListing

logger = logging.getLogger(__name__)

HUMAN_BODIES = ("smplh", "smpl", "synthbody")
DEFAULT_MASK_SIZE = 1024

__all__ = [
    "HumanSetup", "MaskGroup", "MaskProjector", "add_common_arguments",
    "add_human_arguments", "body_parts", "directory_listing", "find_human_template", "format_error", "human_mask_job",
    "human_setup", "image_stem",
    "init_human_worker", "pending_human_outputs", "require_file", "run_jobs", "vertex_ids_from", "write_bytes",
    "write_npz", "write_pickle_if_changed", "write_png", "templates_main",
]


# ----------------------------------------------------------------------------------------------------------------
# files


def format_error(message: str) -> Exception:
    """A :class:`datasets.io.DatasetFormatError` (a ``ValueError``): an input file exists but does not hold what was
    expected; ``message`` starts with the file's path."""
    from datasets.io import DatasetFormatError

    return DatasetFormatError(message)


def directory_listing() -> "DirectoryListing":
    """The readers' cached ``os.listdir`` (checking that thousands of outputs exist costs one listing per folder)."""
    from datasets.io import DirectoryListing

    return DirectoryListing()


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename): a file that exists is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_png(path: str | Path, image: np.ndarray) -> None:
    """8-bit PNG (single channel, or RGB given in RGB order) written atomically."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: expected a uint8 image, got {image.dtype}")
    if image.ndim == 3:
        image = image[..., ::-1]  # RGB → OpenCV's BGR
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    write_bytes(path, encoded.tobytes())


def write_image(path: str | Path, image_rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """RGB uint8 image in the format of the path's suffix (jpg/png), written atomically."""
    path = Path(path)
    suffix = path.suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(image_rgb[..., ::-1]), params)
    if not ok:
        raise OSError(f"could not encode {path} (suffix {suffix!r})")
    write_bytes(path, encoded.tobytes())


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def write_pickle_if_changed(path: str | Path, value: Any) -> bool:
    """Pickle ``value`` to ``path`` unless the file already holds exactly these bytes; True when written."""
    path = Path(path)
    data = pickle.dumps(value, protocol=4)
    if path.is_file() and path.read_bytes() == data:
        return False
    write_bytes(path, data)
    return True


def image_stem(name: str) -> str:
    """``"datasets/HOT/images/abc.jpg"`` → ``"abc"`` (the readers' rule: basename without its last suffix)."""
    basename = PurePath(str(name).replace("\\", "/")).name
    return basename.rsplit(".", 1)[0]


def vertex_ids_from(value: Any, num_vertices: int, source: str | Path, what: str) -> np.ndarray:
    """A list/array of vertex ids → sorted unique int64 ids; non-integer or out-of-range ids name the source."""
    if value is None:
        return np.zeros(0, np.int64)
    try:
        ids = np.asarray(value).reshape(-1)
    except (TypeError, ValueError) as err:
        raise format_error(f"{source}: expected {what} as a list of vertex ids, got {type(value).__name__}") from err
    if ids.size == 0:
        return np.zeros(0, np.int64)
    if not np.issubdtype(ids.dtype, np.integer):
        if np.issubdtype(ids.dtype, np.floating) and np.all(ids == np.round(ids)):
            ids = ids.astype(np.int64)
        else:
            raise format_error(f"{source}: expected {what} as integer vertex ids, got dtype {ids.dtype}")
    ids = np.unique(ids.astype(np.int64))
    if ids[0] < 0 or ids[-1] >= num_vertices:
        raise format_error(f"{source}: {what} holds vertex id {int(ids[0] if ids[0] < 0 else ids[-1])}, outside "
                           f"[0, {num_vertices}) of the template body (labels made for another body model? "
                           "see --body)")
    return ids


def dense_contact(value: Any, num_vertices: int, source: str | Path, what: str) -> np.ndarray:
    """A per-vertex contact array (≥ 0.5 = contact) of length ``num_vertices`` → sorted int64 vertex ids."""
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise format_error(f"{source}: expected {what} as a numeric per-vertex array, got "
                           f"{type(value).__name__}") from err
    if arr.shape[0] != num_vertices:
        raise format_error(f"{source}: expected {what} of length {num_vertices} (one value per vertex of the "
                           f"template body), got {arr.shape[0]}")
    return np.flatnonzero(arr >= 0.5).astype(np.int64)


def body_parts(ids: np.ndarray, segmentation: Mapping[str, np.ndarray]) -> list[str]:
    """Body parts of a contact vertex set by the original's 10 % rule (``body_parts_from_vertices``)."""
    if len(ids) == 0:
        return []
    return body_parts_from_vertices(np.asarray(ids, dtype=np.int64), segmentation)


# ----------------------------------------------------------------------------------------------------------------
# running jobs


@contextmanager
def single_threaded_children():
    """Workers spawned inside see one BLAS/OpenMP thread each (they run side by side on the cores)."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})  # inherited by spawned workers only
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], *, workers: int = 1, desc: str = "", unit: str = "item",
             initializer: Callable[..., None] | None = None, initargs: tuple = (), progress: bool = True,
             skipped: int = 0) -> list[Any]:
    """Run ``fn`` over ``jobs`` with a tqdm bar (``skipped`` already-done items count as finished).

    ``workers > 1`` uses spawned processes (``fn``, the jobs and ``initargs`` must be picklable); results come back in
    completion order.
    """
    from tqdm import tqdm

    results: list[Any] = []
    bar = tqdm(total=len(jobs) + skipped, initial=skipped, desc=desc, unit=unit, disable=not progress, smoothing=0.05)
    try:
        if not jobs:
            return results
        if workers <= 1 or len(jobs) == 1:
            if initializer is not None:
                initializer(*initargs)
            for job in jobs:
                results.append(fn(job))
                bar.update(1)
        else:
            context = mp.get_context("spawn")
            chunksize = max(1, min(16, len(jobs) // (workers * 8)))
            with single_threaded_children(), context.Pool(min(workers, len(jobs)), initializer, initargs) as pool:
                for result in pool.imap_unordered(fn, jobs, chunksize=chunksize):
                    results.append(result)
                    bar.update(1)
    finally:
        bar.close()
    return results


# ----------------------------------------------------------------------------------------------------------------
# human templates and masks


@dataclass(frozen=True)
class MaskGroup:
    """One mask folder to write: the view set's ``folder`` with its ``min_vertices`` rule, rendered through the
    lifting maps of ``template_dir`` (picklable, so worker processes can load the maps themselves)."""

    folder: str
    min_vertices: int
    view_names: tuple[str, ...]
    template_dir: str
    size: int
    num_vertices: int
    official: bool
    view_sets: tuple[str, ...]


@dataclass
class HumanSetup:
    body: str
    groups: list[MaskGroup]
    num_vertices: int
    segmentation: dict[str, np.ndarray]
    segmentation_path: Path
    templates: dict[str, Path] = field(default_factory=dict)

    def describe(self) -> str:
        folders = ", ".join(f"{g.folder} (min_vertices {g.min_vertices}, {g.size} px)" for g in self.groups)
        return f"body {self.body} ({self.num_vertices} vertices); masks: {folders}; parts: {self.segmentation_path}"


def _same_cameras(meta: Mapping[str, Any], view_set: ViewSet) -> bool:
    return (tuple(meta.get("view_names", ())) == view_set.view_names
            and np.allclose(meta.get("camera_vectors", np.zeros((0, 5))), view_set.camera_vectors(), atol=1e-5))


def _check_our_template(folder: Path, view_set: ViewSet, size: int) -> str | None:
    """None when ``folder`` is a template rendered from ``view_set``'s cameras at ``size``, else why not."""
    meta_path = folder / "template.json"
    if not meta_path.is_file():
        return "no template.json"
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") != "body":
        return f"a {meta.get('kind')} template, not a body"
    if not _same_cameras(meta, view_set):
        return f"rendered for {meta.get('view_set')}, whose cameras differ from {view_set.name}"
    if size not in meta.get("sizes", []) or not (folder / f"lift_maps_{size}.npz").is_file():
        return f"rendered at sizes {meta.get('sizes')}, not {size}"
    return None


def find_human_template(dataset_dir: Path, body: str, view_set: ViewSet, size: int,
                        template_dir: Path | None = None) -> tuple[Path, bool]:
    """``(folder, official)`` of the human template whose lifting maps make ``view_set``'s masks at ``size``.

    Looked for, in order: ``template_dir`` (when given), ``<dataset_dir>/templates/<body>/<view set>``, any other
    ``<dataset_dir>/templates/<body>/*`` rendered from the same cameras (human view sets differ in mask rules, not
    cameras), and for SMPL-topology bodies the original's ``<dataset_dir>/<view-set folder>`` (1024 px only).
    """
    tried = []
    if template_dir is not None:
        reason = _check_our_template(Path(template_dir), view_set, size)
        if reason is None:
            return Path(template_dir), False
        official = Path(template_dir) / f"pixel_to_vertex_map_{size}.npz"
        if official.is_file():
            return Path(template_dir), True
        raise FileNotFoundError(
            f"--template-dir {template_dir} cannot make {view_set.name} masks at {size} px: {reason}")
    ours = Path(dataset_dir) / "templates" / body
    candidates = [ours / view_set.name] + sorted(p for p in ours.glob("*") if p.is_dir() and p.name != view_set.name)
    for folder in candidates:
        reason = _check_our_template(folder, view_set, size)
        if reason is None:
            return folder, False
        if folder == candidates[0] or (folder / "template.json").is_file():
            tried.append(f"{folder} ({reason})")
    release_topology = BODY_MODEL_FILES["smplh"].num_vertices  # the original's data.zip maps are SMPL-H renders
    if BODY_MODEL_FILES.get(body) is not None and BODY_MODEL_FILES[body].num_vertices == release_topology:
        official = Path(dataset_dir) / view_set.folder
        if (official / f"pixel_to_vertex_map_{size}.npz").is_file():
            return official, True
        tried.append(f"{official}/pixel_to_vertex_map_{size}.npz (the original's data.zip, 1024 px)")
    raise FileNotFoundError(
        f"no {body} template for view set {view_set.name} at {size} px; looked at: {'; '.join(tried)}. Render it with "
        f"`bash scripts/run_datagen.sh templates --bodies {body} --view-sets {view_set.name} --sizes {size}` "
        f"(or pass --template-dir)"
    )


def _template_vertex_count(folder: Path, official: bool, body: str) -> int:
    if official:
        return BODY_MODEL_FILES[body].num_vertices
    return int(json.loads((folder / "template.json").read_text())["num_vertices"])


def default_segmentation_path(dataset_dir: Path, body: str, body_model_dir: Path | None = None) -> Path:
    if body == "synthbody":
        return Path(body_model_dir or default_body_model_dir()) / "synthbody" / "synthbody_segmentation.json"
    return Path(dataset_dir) / "smpl_segmentation_merged.pkl"


def load_segmentation(path: Path, num_vertices: int) -> dict[str, np.ndarray]:
    require_file(path, "the body-part segmentation ({part name: vertex ids}; the original's "
                  "smpl_segmentation_merged.pkl or our synthbody_segmentation.json); set it with --part-segmentation")
    try:
        segmentation = load_part_segmentation(path)
    except Exception as err:  # noqa: BLE001 — any read failure is a format problem of this file
        raise format_error(f"{path}: cannot read the body-part segmentation: {err}") from err
    for name, ids in segmentation.items():
        if len(ids) and (ids.min() < 0 or ids.max() >= num_vertices):
            raise format_error(f"{path}: part {name!r} holds vertex ids outside [0, {num_vertices}) of the template "
                                     "body (segmentation of another body model?)")
    return segmentation


def human_setup(dataset_dir: Path, body: str, view_set_names: Iterable[str], size: int, *,
                template_dir: Path | None = None, part_segmentation: Path | None = None,
                body_model_dir: Path | None = None) -> HumanSetup:
    """Resolve templates, mask folders and the part segmentation of a human stage (fails early, naming files)."""
    by_folder: dict[str, MaskGroup] = {}
    templates: dict[str, Path] = {}
    num_vertices = None
    for name in dict.fromkeys(view_set_names):
        view_set = get_view_set(name)
        if view_set.kind != "human":
            raise ValueError(f"{name} is an object view set; human masks need a human view set")
        folder, official = find_human_template(Path(dataset_dir), body, view_set, size, template_dir)
        templates[name] = folder
        count = _template_vertex_count(folder, official, body)
        if num_vertices is not None and count != num_vertices:
            raise ValueError(
                f"templates of one body disagree on its vertex count ({count} vs {num_vertices}): {folder}")
        num_vertices = count
        group = MaskGroup(view_set.folder, view_set.min_vertices, view_set.view_names, str(folder), int(size), count,
                          official, (name,))
        old = by_folder.get(view_set.folder)
        if old is not None:
            if old.min_vertices != group.min_vertices:
                raise ValueError(f"view sets {old.view_sets[0]} and {name} share the mask folder {view_set.folder} but "
                                 "use different min_vertices; generate them in separate runs")
            group = dataclasses.replace(old, view_sets=old.view_sets + (name,))
        by_folder[view_set.folder] = group
    if num_vertices is None:
        raise ValueError("no --view-set given")
    seg_path = (Path(part_segmentation) if part_segmentation
                else default_segmentation_path(dataset_dir, body, body_model_dir))
    segmentation = load_segmentation(seg_path, num_vertices)
    return HumanSetup(body, list(by_folder.values()), num_vertices, segmentation, seg_path, templates)


class MaskProjector:
    """Contact vertex set → per-view masks through one template's lifting maps (the original's rule), face-wise: a triangle
    is a contact face when ≥ ``min_vertices`` of its corners are in contact; a pixel shows its triangle's state."""

    def __init__(self, maps: LiftingMaps, min_vertices: int, view_names: Sequence[str]) -> None:
        if tuple(maps.view_names) != tuple(view_names):
            order = [list(maps.view_names).index(v) for v in view_names]
        else:
            order = list(range(len(view_names)))
        if maps.face_ids is not None and maps.faces is not None:
            pixel_tri = maps.face_ids[order].astype(np.int32)
            triangles = np.asarray(maps.faces, dtype=np.int64)
        else:  # the original's vertex-id maps: one "triangle" per distinct corner triple
            ids = maps.vertex_ids[order]
            fg = (ids >= 0).all(axis=-1)
            triangles, inverse = np.unique(ids[fg].astype(np.int64), axis=0, return_inverse=True)
            pixel_tri = np.full(fg.shape, -1, np.int32)
            pixel_tri[fg] = inverse.reshape(-1)
        self.pixel_tri = pixel_tri
        self.foreground = pixel_tri >= 0
        self.triangles = triangles
        self.min_vertices = int(min_vertices)
        self.num_vertices = maps.num_vertices

    def masks(self, vertex_ids: np.ndarray) -> np.ndarray:
        """``[V, H, W]`` uint8 in {0, 1}."""
        contact = np.zeros(self.num_vertices, dtype=np.int8)
        contact[np.asarray(vertex_ids, dtype=np.int64)] = 1
        positive = contact[self.triangles].sum(axis=1) >= self.min_vertices
        return (positive[np.maximum(self.pixel_tri, 0)] & self.foreground).astype(np.uint8)


_PROJECTORS: dict[int, MaskProjector] = {}


def _load_maps(group: MaskGroup) -> LiftingMaps:
    if group.official:
        return LiftingMaps.load_official(group.template_dir, group.view_names, group.num_vertices, group.size)
    return LiftingMaps.load(Path(group.template_dir) / f"lift_maps_{group.size}.npz")


def init_human_worker(groups: Sequence[MaskGroup]) -> None:
    """Load each group's lifting maps once per process (groups sharing a template share its maps)."""
    _PROJECTORS.clear()
    loaded: dict[tuple[str, int, bool], LiftingMaps] = {}
    for index, group in enumerate(groups):
        key = (group.template_dir, group.size, group.official)
        if key not in loaded:
            loaded[key] = _load_maps(group)
        _PROJECTORS[index] = MaskProjector(loaded[key], group.min_vertices, group.view_names)


def human_mask_job(job: tuple[np.ndarray, Sequence[tuple[int, str, str, tuple[str, ...]]]]) -> int:
    """``(vertex ids, [(group index, output folder, stem, view names)])`` → PNGs ``<folder>/<stem>_<view>.png``
    (255 = contact); returns the number of files written."""
    vertex_ids, outputs = job
    written = 0
    cache: dict[int, np.ndarray] = {}
    for group_index, folder, stem, view_names in outputs:
        if group_index not in cache:
            cache[group_index] = _PROJECTORS[group_index].masks(vertex_ids)
        for view, mask in zip(view_names, cache[group_index]):
            write_png(Path(folder) / f"{stem}_{view}.png", mask * np.uint8(255))
            written += 1
    return written


def pending_human_outputs(listing: DirectoryListing, groups: Sequence[MaskGroup], folders: Sequence[Path],
                          stem: str) -> list[tuple[int, str, str, tuple[str, ...]]]:
    """The (group, folder) mask sets of ``stem`` that are not complete yet (``folders[i]`` belongs to ``groups[i]``)."""
    todo = []
    for index, (group, folder) in enumerate(zip(groups, folders)):
        if not listing.all_exist(folder / f"{stem}_{v}.png" for v in group.view_names):
            todo.append((index, str(folder), stem, group.view_names))
    return todo


# ----------------------------------------------------------------------------------------------------------------
# command-line pieces


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset-dir", type=Path, default=None,
                        help=f"the data root holding damon/, lemon/, … (default: {default_data_dir()})")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1: in-process)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def add_human_arguments(parser: argparse.ArgumentParser, default_view_sets: Sequence[str]) -> None:
    parser.add_argument("--body", default="smplh", choices=HUMAN_BODIES,
                        help="body model the raw labels are on and whose template renders the masks (default smplh: "
                             "the releases' 6890-vertex SMPL/SMPL-H topology)")
    parser.add_argument("--view-set", nargs="+", default=list(default_view_sets), dest="view_sets",
                        help=f"human view sets whose mask folders to write (default: {' '.join(default_view_sets)})")
    parser.add_argument("--mask-size", type=int, default=DEFAULT_MASK_SIZE, help="mask resolution (default 1024)")
    parser.add_argument("--template-dir", type=Path, default=None,
                        help="human template folder to use instead of <dataset-dir>/templates/<body>/<view set> or "
                             "the original's <dataset-dir>/hcontact_vitruvian[_mv2]")
    parser.add_argument("--part-segmentation", type=Path, default=None,
                        help="{part: vertex ids} for the body-part lists (default: <dataset-dir>/"
                             "smpl_segmentation_merged.pkl; synthbody: its synthbody_segmentation.json)")
    parser.add_argument("--body-model-dir", type=Path, default=None, help="folder with smplh/, synthbody/, …")


def dataset_dir_of(args: argparse.Namespace) -> Path:
    return Path(args.dataset_dir) if args.dataset_dir is not None else default_data_dir()


def human_setup_from_args(args: argparse.Namespace) -> HumanSetup:
    return human_setup(dataset_dir_of(args), args.body, args.view_sets, args.mask_size, template_dir=args.template_dir,
                       part_segmentation=args.part_segmentation, body_model_dir=args.body_model_dir)


def cli(main: Callable[[list[str] | None], Any], stage: str) -> None:
    """Run a stage's ``main``: a missing or malformed input ends the process with its message, not a traceback."""
    import sys

    try:
        main(None)
    except Exception as err:  # noqa: BLE001 — re-raised unless it is an input problem
        if not isinstance(err, (FileNotFoundError, FileExistsError)):
            from datasets.io import DatasetFormatError  # loaded by now if the error is one

            if not isinstance(err, DatasetFormatError):
                raise
        print(f"run_datagen.sh {stage}: error: {err}", file=sys.stderr)
        sys.exit(1)


def configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")


# ----------------------------------------------------------------------------------------------------------------
# the templates stage


# The human view sets the training recipes use (training.recipes; tests/test_training_recipes.py checks that this
# list and the recipes agree): data generation sits below the training code and does not import it.
RECIPE_HUMAN_VIEW_SETS = ("4MV-Z_Vitru", "4MV-Z_Vitru_FootGround", "4MV-Z_Vitru_mv2")


def recipe_human_view_sets() -> list[str]:
    """Human view sets used by the training recipes (those without an override use the model config's default,
    ``4MV-Z_Vitru_mv2``)."""
    return sorted(RECIPE_HUMAN_VIEW_SETS)


def templates_main(argv: list[str] | None = None) -> dict[str, Any]:
    """Render the human templates (``python -m preprocess_data.render_views --template <body> --view-set <set>``) into
    ``<dataset-dir>/templates/<body>/<set>`` for every view set a recipe uses."""
    parser = argparse.ArgumentParser(prog="run_datagen.sh templates", description=templates_main.__doc__)
    parser.add_argument("--dataset-dir", type=Path, default=None, help=f"default: {default_data_dir()}")
    parser.add_argument("--bodies", nargs="+", default=["synthbody", "smplh"], choices=HUMAN_BODIES)
    parser.add_argument("--view-sets", nargs="+", default=None,
                        help=f"default: every human view set a recipe uses ({' '.join(recipe_human_view_sets())})")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024])
    parser.add_argument("--body-model-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=1, help="accepted for uniformity; rendering runs in-process")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    configure_logging()

    from preprocess_data import render_views
    from utils.body_models import model_file_path

    dataset_dir = dataset_dir_of(args)
    body_model_dir = args.body_model_dir or default_body_model_dir()
    view_sets = args.view_sets or recipe_human_view_sets()
    summary: dict[str, Any] = {"rendered": [], "missing_body_models": {}}
    for body in dict.fromkeys(args.bodies):
        try:
            model_file_path(body, body_model_dir)
        except FileNotFoundError as err:
            logger.warning("templates: skipping %s — %s", body, err)
            summary["missing_body_models"][body] = str(err)
            continue
        for name in view_sets:
            out = dataset_dir / "templates" / body / name
            cmd = ["--template", body, "--view-set", name, "--sizes", *map(str, args.sizes), "--output-dir", str(out),
                   "--body-model-dir", str(body_model_dir)]
            logger.info("templates: python -m preprocess_data.render_views %s", " ".join(cmd))
            render_views.main(cmd)
            summary["rendered"].append(str(out))
    if not summary["rendered"]:
        raise FileNotFoundError("no human template rendered: none of the body models "
                                f"{', '.join(args.bodies)} is present under {body_model_dir}")
    return summary


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 2 or sys.argv[1] != "templates":
        sys.exit("usage: python -m preprocess_data.datagen_common templates [options]")
    del sys.argv[1]
    cli(templates_main, "templates")
