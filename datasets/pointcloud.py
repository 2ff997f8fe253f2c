"""Object affordance on point clouds (``oafford``; PIAD and LEMON): shared by both readers.

Per image the release lists point clouds: in training a ranked list of retrieved candidates (the OpenShape lookup
pickle), in testing one line-aligned point file. A candidate is usable when its heat-map renders exist
(checked once at construction) and its column for the image's affordance is not all zero (checked when the sample
is read, up to ``max_candidates`` in order). ``ranking="random"`` visits the candidates in an order drawn from the
sample's own RNG: a copy is shuffled, never the lookup list itself (the original shuffled it in place on every access).

Heat-map renders of one point cloud ``<pstem>`` for one affordance live in one folder::

    <render folder>/<Obj>/<affordance>/sam_<pstem>_<view>.png     SAM input (white background = invalid)
                                       mask_<pstem>_<view>.png    255 · affordance probability (soft label)
                                       p2pmap_<pstem>_<view>.npz  nearest point per pixel (key ``mapping``)
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path, PurePath

import numpy as np

from datasets.base import ContactDataset, Record
from datasets.io import DatasetFormatError, DirectoryListing, expect_type, load_pickle, map_listed_path, read_lines, require_file
from utils.geometry.views import ViewSet, get_view_set

logger = logging.getLogger(__name__)

PIAD_AFFORDANCES = ("grasp", "contain", "lift", "open", "lay", "sit", "support", "wrapgrasp", "pour", "move", "display",
                    "push", "listen", "wear", "press", "cut", "stab")
LEMON_AFFORDANCES = ("grasp", "lift", "open", "lay", "sit", "support", "wrapgrasp", "pour", "move", "pull", "listen",
                     "press", "cut", "stab", "ride", "play", "carry")


def heatmap_files(render_dir: Path, point_stem: str, view_names: tuple[str, ...]) -> dict[str, tuple[Path, ...]]:
    return {
        "sam": tuple(render_dir / f"sam_{point_stem}_{v}.png" for v in view_names),
        "mask": tuple(render_dir / f"mask_{point_stem}_{v}.png" for v in view_names),
        "p2pmap": tuple(render_dir / f"p2pmap_{point_stem}_{v}.npz" for v in view_names),
    }


def read_point_file(path: Path, leading_columns: int, num_affordances: int) -> tuple[np.ndarray, np.ndarray]:
    """``[P, 3]`` coordinates and ``[P, A]`` affordance values of a point file (one point per line:
    ``leading_columns`` tokens such as ``<id> <ObjName>``, then ``x y z a_1 … a_A``)."""
    require_file(path, "a point-cloud text file")
    expected = leading_columns + 3 + num_affordances
    layout = ("<id> <ObjName> " if leading_columns == 2 else "") + f"x y z + {num_affordances} affordance values"
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().split()
    if len(first) != expected:
        raise DatasetFormatError(f"{path}: expected {expected} columns per line ({layout}), got {len(first)}")
    try:
        values = np.loadtxt(path, usecols=range(leading_columns, expected), dtype=np.float32, ndmin=2)
    except ValueError as err:
        raise DatasetFormatError(f"{path}: expected lines of {layout}: {err}") from err
    return values[:, :3], values[:, 3:]


class PointAffordanceDataset(ContactDataset):
    """Shared reader of the PIAD / LEMON affordance layouts; subclasses say where the files are.

    Args (besides :class:`ContactDataset`'s):
        view_set: object view set (``4MV-Z_HM``): view names and the render folder ``<folder>_<sam_input_type>``.
        pairing: ``lookup`` (ranked candidates, training default) or ``aligned`` (line-aligned image / point lists,
            default for other splits).
        ranking: ``lookup`` keeps the retrieval order, ``random`` visits candidates in a per-sample random order.
        max_candidates: candidates tried per sample (5 in the original).
        render_folder: override of the heat-map folder name.
    """

    task = "oafford"
    default_question_type = "afford"
    affordance_names: tuple[str, ...] = ()
    leading_columns = 0  # tokens before x y z on each point line
    image_anchor: str | None = None
    point_anchor: str | None = "Point"

    def __init__(
        self,
        dataset_dir: str | Path,
        split: str = "train",
        *,
        view_set: str | ViewSet = "4MV-Z_HM",
        pairing: str | None = None,
        ranking: str = "lookup",
        max_candidates: int = 5,
        sam_input_type: str = "color",
        render_folder: str | None = None,
        **options,
    ) -> None:
        self.view_set = get_view_set(view_set) if isinstance(view_set, str) else view_set
        if self.view_set.kind != "object":
            raise ValueError(f"{self.view_set.name} is a human view set; affordance heat maps use an object view set")
        self.pairing = pairing or ("lookup" if split == "train" else "aligned")
        if self.pairing not in ("lookup", "aligned"):
            raise ValueError(f"pairing must be 'lookup' or 'aligned', got {self.pairing!r}")
        if ranking not in ("lookup", "random"):
            raise ValueError(f"ranking must be 'lookup' or 'random', got {ranking!r}")
        self.ranking = ranking
        self.max_candidates = int(max_candidates)
        self.render_folder = render_folder or f"{self.view_set.folder}_{sam_input_type}"
        self.skipped: dict[str, int] = {}
        super().__init__(dataset_dir, split, **options)

    # ------------------------------------------------------------------ layout hooks
    def split_name(self) -> str:
        return self.split

    def image_list_path(self) -> Path:
        raise NotImplementedError

    def point_list_path(self) -> Path:
        raise NotImplementedError

    def lookup_path(self) -> Path:
        raise NotImplementedError

    def render_root(self) -> Path:
        raise NotImplementedError

    def object_and_affordance(self, image_path: Path, listed: str) -> tuple[str, str]:
        raise NotImplementedError

    def render_dir(self, obj: str, affordance: str) -> Path:
        return self.render_root() / obj / affordance

    def num_views(self) -> int:
        return self.view_set.num_views

    def empty_hint(self) -> str:
        return f"no image has a point cloud with complete heat-map renders in {self.render_root()}; skipped: {self.skipped or 'none'}"

    # ------------------------------------------------------------------ index
    def build_records(self) -> list[Record]:
        image_list = self.image_list_path()
        images = read_lines(image_list, "one image path per line")
        if self.pairing == "aligned":
            point_list = self.point_list_path()
            points = read_lines(point_list, "one point-cloud path per line, aligned with " + image_list.name)
            if len(points) != len(images):
                raise DatasetFormatError(f"{point_list}: {len(points)} lines but {image_list} has {len(images)}")
            candidate_lists = [[p] for p in points]
        else:
            lookup_file = self.lookup_path()
            lookup = load_pickle(lookup_file, "a dict image → ranked list of candidate point files")
            expect_type(lookup, dict, lookup_file, "a dict image → ranked list of candidate point files")
            by_name = {PurePath(str(k).replace("\\", "/")).name: v for k, v in lookup.items()}
            candidate_lists = []
            for listed in images:
                key = PurePath(listed.replace("\\", "/")).name
                if key not in by_name:
                    raise DatasetFormatError(f"{lookup_file}: no candidate point clouds for image {key!r} ({image_list})")
                value = by_name[key]
                candidate_lists.append(list(value.tolist() if isinstance(value, np.ndarray) else value))

        listing = DirectoryListing()
        skipped = {"no point cloud with renders": 0}
        records = []
        for listed, candidates in zip(images, candidate_lists):
            image_path = map_listed_path(self.root, listed, self.image_anchor)
            obj, affordance = self.object_and_affordance(image_path, listed)
            if affordance not in self.affordance_names:
                raise DatasetFormatError(
                    f"{image_list}: affordance {affordance!r} of {listed!r} is not one of {self.affordance_names}"
                )
            render_dir = self.render_dir(obj, affordance)
            usable = []
            for point in candidates:
                point_path = map_listed_path(self.root, str(point), self.point_anchor)
                files = heatmap_files(render_dir, point_path.stem, self.view_set.view_names)
                if self.pairing == "aligned" or (listing.exists(point_path) and listing.all_exist(sum(files.values(), ()))):
                    usable.append(point_path)
            if not usable:
                skipped["no point cloud with renders"] += 1
                continue
            records.append(Record(
                image_path=image_path, class_name=obj, affordance=affordance, soft_masks=True,
                template=str(render_dir), candidates=tuple(usable),
                meta={"object": obj, "render_dir": str(render_dir)},
            ))
        self.skipped = {k: v for k, v in skipped.items() if v}
        if self.skipped:
            logger.warning("%s: %s", self.describe(), self.skipped)
        return records

    # ------------------------------------------------------------------ per sample
    def choose_candidate(self, record: Record, rng: random.Random) -> Record:
        order = list(record.candidates)
        if self.ranking == "random":
            rng.shuffle(order)  # a copy: the record's candidates keep their ranking
        column = self.affordance_names.index(record.affordance)
        tried = []
        for point_path in order[: self.max_candidates]:
            xyz, values = read_point_file(point_path, self.leading_columns, len(self.affordance_names))
            heat = np.clip(values[:, column], 0.0, 1.0)
            tried.append(point_path.name)
            if self.pairing == "lookup" and not heat.any():
                continue
            render_dir = Path(record.template)
            files = heatmap_files(render_dir, point_path.stem, self.view_set.view_names)
            return dataclasses.replace(
                record, mask_paths=files["mask"], render_paths=files["sam"], labels=heat,
                meta={**record.meta, "point_path": str(point_path), "points": xyz, "template_stem": point_path.stem,
                      "render_paths": [str(p) for p in files["sam"]], "mask_paths": [str(p) for p in files["mask"]],
                      "lift_map_paths": [str(p) for p in files["p2pmap"]]},
            )
        raise DatasetFormatError(
            f"{record.image_path}: none of the first {self.max_candidates} candidate point clouds {tried} has a "
            f"non-zero {record.affordance!r} column"
        )

    def vertex_labels(self, record: Record) -> np.ndarray:
        return np.asarray(record.labels, dtype=np.float32)
