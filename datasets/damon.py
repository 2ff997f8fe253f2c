"""DAMON-format human contact: the original's DAMON release and our SynthContact generator share this layout.

::

    <dataset_dir>/<root_name>/<split>/
        imgname.npy                               [N] str, e.g. "images/<stem>.jpg" (DAMON: longer paths; the
                                                  basename is looked up in images/)
        images/<stem>.jpg
        contact_label.npy                         [N, num_vertices] (not needed by the reader)
        contact_label_objectwise.pkl              list (len N) of {object: [vertex ids]}
        body_parts_objectwise.pkl                 {"<stem>_<object>": [part names]}
        contact_label_objectwise_wFootGround.pkl  ┐ foot-ground variants (4MV-Z_Vitru_FootGround, training split):
        body_parts_objectwise_wFootGround.pkl     ┘ extra object "foot_ground" (→ class "scene"), "supporting" dropped
        <view-set folder>/<object>/<stem>_<view>.png   255 = contact (3D)
        contact_render_2d/<object>/<stem>_contact_mask.png                   (2D variant)

One sample per (image, object) with non-empty contact whose masks are all present.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path, PurePath

import numpy as np
from PIL import Image

from datasets.base import RELEASE_NUM_VERTICES, HumanContactDataset, Record, dense_labels, read_pose_phrases
from datasets.io import DatasetFormatError, DirectoryListing, expect_type, load_npy, load_pickle, string_list
from utils.body_models import BODY_MODEL_FILES, body_parts_from_vertices
from utils.geometry.views import ViewSet

logger = logging.getLogger(__name__)

FOOT_GROUND = "foot_ground"
SUPPORTING = "supporting"
SCENE = "scene"
SUPPORTING_2D = "support object or ground"  # how the original's 2D loader words "supporting" in its prompts


class DamonDataset(HumanContactDataset):
    """3D object-wise human contact: (image, object) → ``[V, M, M]`` body-render masks + per-vertex labels.

    Args (besides :class:`ContactDataset`'s):
        view_set: human view-set name; its ``folder`` is the mask folder and its view names the file suffixes.
        num_vertices: body vertex count (6890 for SMPL/SMPL-H data, 6997 for SynthContact's synthetic body).
        root_name: the folder under ``dataset_dir`` (``damon``, ``synthcontact``); also the dataset name.
        foot_ground: read the ``*_wFootGround.pkl`` files (training split only; the test split always uses the plain
            files). ``None`` = when the view set is ``4MV-Z_Vitru_FootGround``.
        supporting: ``keep`` or ``drop`` the ``supporting`` object; ``None`` = drop with foot-ground files (the
            original ignores it there), else keep.
        part_segmentation: ``{part: vertex ids}`` (``utils.body_models.load_part_segmentation``); when given, the
            body parts of ``foot_ground`` are recomputed from its own vertices instead of being copied from
            ``supporting`` (the original copies the ``supporting`` object's part list, which can name parts the
            foot–ground subset does not touch), and pairs missing from the body-parts file are computed likewise.
        train_fraction: keep this fraction of the (image, object) pairs, drawn with ``fraction_seed`` (its own RNG).
        mask_folder: override of the view set's mask folder.
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        split: str = "train",
        *,
        view_set: str | ViewSet = "4MV-Z_Vitru_mv2",
        num_vertices: int = RELEASE_NUM_VERTICES,
        root_name: str = "damon",
        foot_ground: bool | None = None,
        supporting: str | None = None,
        part_segmentation: Mapping[str, np.ndarray] | None = None,
        train_fraction: float = 1.0,
        fraction_seed: int = 42,
        mask_folder: str | None = None,
        name: str | None = None,
        **options,
    ) -> None:
        view_set_name = view_set if isinstance(view_set, str) else view_set.name
        self.root_name = root_name
        self.foot_ground = (view_set_name == "4MV-Z_Vitru_FootGround") if foot_ground is None else foot_ground
        if supporting not in (None, "keep", "drop"):
            raise ValueError(f"supporting must be 'keep' or 'drop', got {supporting!r}")
        self.supporting = supporting or ("drop" if self.foot_ground else "keep")
        self.part_segmentation = part_segmentation
        if not 0.0 < train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        self.train_fraction = train_fraction
        self.fraction_seed = fraction_seed
        super().__init__(dataset_dir, split, view_set=view_set, num_vertices=num_vertices, mask_folder=mask_folder,
                         name=name or root_name, **options)

    # ------------------------------------------------------------------ layout
    @property
    def root(self) -> Path:
        return self.dataset_dir / self.root_name / self.split

    def uses_foot_ground_files(self) -> bool:
        return self.foot_ground and self.split == "train"

    def annotation_files(self) -> tuple[Path, Path]:
        suffix = "_wFootGround" if self.uses_foot_ground_files() else ""
        return (self.root / f"contact_label_objectwise{suffix}.pkl", self.root / f"body_parts_objectwise{suffix}.pkl")

    def mask_paths(self, stem: str, obj: str) -> tuple[Path, ...]:
        folder = self.root / self.mask_folder / obj
        return tuple(folder / f"{stem}_{view}.png" for view in self.view_set.view_names)

    def class_name(self, obj: str) -> str:
        return SCENE if obj == FOOT_GROUND else obj

    def empty_hint(self) -> str:
        return (f"no (image, object) pair with contact and all masks in {self.root / self.mask_folder}; "
                f"skipped: {self.skipped or 'none'}")

    # ------------------------------------------------------------------ index
    def read_index(self) -> tuple[list[str], list[dict], dict]:
        names_path = self.root / "imgname.npy"
        names = load_npy(names_path, "the [N] image names of the split")
        if names.ndim != 1 or names.dtype.kind not in "USO":
            raise DatasetFormatError(f"{names_path}: expected a 1-D array of image names, got {names.dtype} {names.shape}")
        names = [str(n) for n in names.tolist()]
        self.check_vertex_count(len(names))
        contact_path, parts_path = self.annotation_files()
        contacts = load_pickle(contact_path, "a list (one per image) of {object: [vertex ids]}")
        if isinstance(contacts, np.ndarray):
            contacts = contacts.tolist()
        expect_type(contacts, list, contact_path, "a list (one per image) of {object: [vertex ids]}")
        if len(contacts) != len(names):
            raise DatasetFormatError(f"{contact_path}: {len(contacts)} entries but {names_path} lists {len(names)} images")
        for i, entry in enumerate(contacts):
            expect_type(entry, dict, contact_path, f"entry {i} as {{object: [vertex ids]}}")
        parts = load_pickle(parts_path, 'a dict "<stem>_<object>" → [body part names]')
        expect_type(parts, dict, parts_path, 'a dict "<stem>_<object>" → [body part names]')
        return names, contacts, parts

    def check_vertex_count(self, num_images: int) -> None:
        """``contact_label.npy`` (when present) tells the body's vertex count: catch a wrong ``num_vertices`` early."""
        path = self.root / "contact_label.npy"
        if not path.is_file():
            return
        try:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        except ValueError as err:
            raise DatasetFormatError(f"{path}: cannot read the [N, num_vertices] contact labels: {err}") from err
        if len(shape) != 2 or shape[0] != num_images or shape[1] != self.num_vertices:
            raise DatasetFormatError(f"{path}: shape {shape}, expected ({num_images}, {self.num_vertices}) "
                                     f"(num_vertices={self.num_vertices}: SMPL-H data has {RELEASE_NUM_VERTICES}, "
                                     f"SynthContact {BODY_MODEL_FILES['synthbody'].num_vertices})")

    def build_records(self) -> list[Record]:
        names, contacts, parts = self.read_index()
        contact_path, parts_path = self.annotation_files()
        listing = DirectoryListing()
        skipped = {"no contact": 0, "supporting dropped": 0, "masks missing": 0}
        poses = read_pose_phrases(self.root)
        records = []
        for image_index, (image_name, objects) in enumerate(zip(names, contacts)):
            basename = PurePath(image_name.replace("\\", "/")).name
            stem = basename.rsplit(".", 1)[0]
            for obj, vertex_ids in objects.items():
                obj = str(obj)
                if obj == SUPPORTING and self.supporting == "drop":
                    skipped["supporting dropped"] += 1
                    continue
                ids = np.asarray(vertex_ids).reshape(-1)
                if ids.size == 0:
                    skipped["no contact"] += 1
                    continue
                masks = self.mask_paths(stem, obj)
                if not listing.all_exist(masks):
                    skipped["masks missing"] += 1
                    continue
                records.append(Record(
                    image_path=self.root / "images" / basename,
                    class_name=self.class_name(obj),
                    body_parts=tuple(self.body_parts(parts, parts_path, stem, obj, ids)),
                    mask_paths=masks,
                    template=self.template_name(),
                    labels=(image_index, obj),
                    meta={"stem": stem, "object": obj, "image_index": image_index,
                          "mask_paths": [str(p) for p in masks]},
                    pose=poses.get(stem),
                ))
        self.skipped = {k: v for k, v in skipped.items() if v}
        self._contacts, self._contact_path = contacts, contact_path
        if skipped["masks missing"]:
            logger.warning("%s: %d (image, object) pairs with contact have no complete mask set in %s; skipped",
                           self.describe(), skipped["masks missing"], self.root / self.mask_folder)
        return self.subsample(records)

    def template_name(self) -> str:
        return "human"

    def body_parts(self, parts: dict, parts_path: Path, stem: str, obj: str, ids: np.ndarray) -> list[str]:
        if obj == FOOT_GROUND and self.part_segmentation is not None:
            return body_parts_from_vertices(ids.astype(np.int64), self.part_segmentation)
        key = f"{stem}_{obj}"
        if key in parts:
            return string_list(parts[key], parts_path, f"the body parts of {key!r}")
        if self.part_segmentation is not None:
            return body_parts_from_vertices(ids.astype(np.int64), self.part_segmentation)
        raise DatasetFormatError(f"{parts_path}: no body parts for key {key!r} (expected \"<stem>_<object>\" keys; "
                                 "pass part_segmentation to compute missing entries from the contact vertices)")

    def subsample(self, records: list[Record]) -> list[Record]:
        if self.train_fraction >= 1.0:
            return records
        count = max(1, int(round(len(records) * self.train_fraction)))
        keep = np.random.default_rng(self.fraction_seed).choice(len(records), size=count, replace=False)
        return [records[i] for i in sorted(keep)]

    def vertex_labels(self, record: Record) -> np.ndarray:
        image_index, obj = record.labels
        return dense_labels(self._contacts[image_index][obj], self.num_vertices,
                            f"{self._contact_path} (image {image_index}, object {obj!r})")


class Damon2DDataset(DamonDataset):
    """2D variant: one mask per (image, object) in the image frame, ``contact_render_2d/<object>/<stem>_contact_mask.png``.

    ``supporting`` becomes the class "support object or ground"; the template is ``"image"`` (the mask lives on the
    input photo, not on a body render) and every pixel is valid.
    """

    task = "h2dcontact"

    def __init__(self, dataset_dir: str | Path, split: str = "train", **options) -> None:
        options.setdefault("mask_folder", "contact_render_2d")
        super().__init__(dataset_dir, split, **options)

    def mask_paths(self, stem: str, obj: str) -> tuple[Path, ...]:
        return (self.root / self.mask_folder / obj / f"{stem}_contact_mask.png",)

    def class_name(self, obj: str) -> str:
        return SUPPORTING_2D if obj == SUPPORTING else super().class_name(obj)

    def template_name(self) -> str:
        return "image"

    def read_masks(self, record: Record) -> np.ndarray:
        """The mask must cover the photo pixel for pixel (checked on the file sizes, before any resizing)."""
        with Image.open(record.image_path) as image:
            width, height = image.size
        with Image.open(record.mask_paths[0]) as mask:
            if mask.size != (width, height):
                raise DatasetFormatError(f"{record.mask_paths[0]}: mask is {mask.size[0]}x{mask.size[1]} but the photo "
                                         f"{record.image_path} is {width}x{height}; 2D contact masks must match it")
        return super().read_masks(record)

    def mask_shape(self, file_shape: tuple[int, int]) -> tuple[int, int]:
        """Longest side ``mask_size``, aspect ratio kept: the mask stays aligned with the photo SAM sees."""
        height, width = file_shape
        scale = self.mask_size / max(height, width)
        return max(1, int(round(height * scale))), max(1, int(round(width * scale)))

    def num_views(self) -> int:
        return 1

    def vertex_labels(self, record: Record) -> None:
        return None
