"""LEMON: human contact on the body renders and object affordance on point clouds (the original release's layout).

::

    <dataset_dir>/lemon/
        txt_scripts/{train,val}.txt             image paths, relative to lemon/ (or containing an ``Images`` folder,
                                                from which on the path is taken), ending in <Obj>/<affordance>/<name>
        txt_scripts/Point_{train,val}.txt       point files line-aligned with the image list (test pairing)
        body_parts_{split}.pkl                  {image stem: [body part names]}
        smplh_contact_pkl/<Obj>/<affordance>/<name>.pkl        [6890] contact array (nonzero = contact)
        <view-set folder>/<Obj>/<affordance>/<name>_<view>.png  body-render masks (255 = contact)
        lemon_ocontact/lemon_lookup_results_{split}.pkl        {image: ranked candidate point files}
        lemon_ocontact/rendered_points_heatmap_1025_color/<Obj>/<affordance>/{sam,mask}_<pstem>_<view>.png, p2pmap_…
        point files: lines "x y z a_1 … a_17" (LEMON affordance order)

The object name is the first ``_`` token of the image file name (``Bag_…`` → ``Bag``); the affordance is the image's
parent folder. ``test`` is read as LEMON's ``val`` split.
"""

from __future__ import annotations

from pathlib import Path, PurePath

from datasets.base import HumanContactDataset, Record, dense_vector
from datasets.io import DatasetFormatError, DirectoryListing, expect_type, load_pickle, map_listed_path, read_lines, string_list
from datasets.pointcloud import LEMON_AFFORDANCES, PointAffordanceDataset

SPLIT_NAMES = {"train": "train", "val": "val", "test": "val"}
IMAGE_ANCHOR = "Images"


def _split(split: str) -> str:
    return SPLIT_NAMES.get(split, split)


def lemon_sub_path(listed: str, index_file: Path) -> PurePath:
    """``<Obj>/<affordance>/<name>`` of a listed image path."""
    parts = PurePath(listed.replace("\\", "/")).parts
    if len(parts) < 3:
        raise DatasetFormatError(f"{index_file}: image path {listed!r} does not end in <Obj>/<affordance>/<name>")
    return PurePath(*parts[-3:])


def lemon_object(name: str) -> str:
    return name.split("_", 1)[0]


class LemonHumanDataset(HumanContactDataset):
    """LEMON 3D human contact: one sample per listed image with all masks present.

    Args (besides :class:`ContactDataset`'s): ``view_set`` (human; its folder holds the masks unless
    ``mask_folder`` is given), ``num_vertices`` (6890).
    """

    def __init__(self, dataset_dir: str | Path, split: str = "train", *, name: str = "lemon", **options) -> None:
        super().__init__(dataset_dir, split, name=name, **options)

    @property
    def root(self) -> Path:
        return self.dataset_dir / "lemon"

    def empty_hint(self) -> str:
        return f"no listed image has all masks in {self.root / self.mask_folder}"

    def build_records(self) -> list[Record]:
        split = _split(self.split)
        index_file = self.root / "txt_scripts" / f"{split}.txt"
        lines = read_lines(index_file, "one image path per line")
        parts_path = self.root / f"body_parts_{split}.pkl"
        parts = load_pickle(parts_path, "a dict image stem → [body part names]")
        expect_type(parts, dict, parts_path, "a dict image stem → [body part names]")
        listing = DirectoryListing()
        records, missing = [], 0
        for listed in lines:
            sub = lemon_sub_path(listed, index_file)
            stem = PurePath(sub.name).stem
            masks = tuple(self.root / self.mask_folder / sub.parent / f"{stem}_{v}.png" for v in self.view_set.view_names)
            if not listing.all_exist(masks):
                missing += 1
                continue
            if stem not in parts:
                raise DatasetFormatError(f"{parts_path}: no body parts for image {stem!r} (listed in {index_file})")
            contact_file = self.root / "smplh_contact_pkl" / sub.parent / f"{stem}.pkl"
            records.append(Record(
                image_path=map_listed_path(self.root, listed, IMAGE_ANCHOR),
                class_name=lemon_object(sub.name), body_parts=tuple(string_list(parts[stem], parts_path, stem)),
                mask_paths=masks, labels=contact_file,
                meta={"stem": stem, "object": lemon_object(sub.name), "affordance_folder": sub.parent.name,
                      "mask_paths": [str(p) for p in masks]},
            ))
        self.skipped = {"masks missing": missing} if missing else {}
        return records

    def vertex_labels(self, record: Record):
        value = load_pickle(record.labels, f"a [{self.num_vertices}] contact array")
        return dense_vector(value, self.num_vertices, record.labels, "the contact array")


class LemonObjectDataset(PointAffordanceDataset):
    """LEMON object affordance on point clouds (``oafford``); see :class:`datasets.pointcloud.PointAffordanceDataset`."""

    affordance_names = LEMON_AFFORDANCES
    leading_columns = 0
    image_anchor = IMAGE_ANCHOR
    point_anchor = "Point"

    def __init__(self, dataset_dir: str | Path, split: str = "train", *, name: str = "lemon", **options) -> None:
        super().__init__(dataset_dir, split, name=name, **options)

    @property
    def root(self) -> Path:
        return self.dataset_dir / "lemon"

    def split_name(self) -> str:
        return _split(self.split)

    def image_list_path(self) -> Path:
        return self.root / "txt_scripts" / f"{self.split_name()}.txt"

    def point_list_path(self) -> Path:
        return self.root / "txt_scripts" / f"Point_{self.split_name()}.txt"

    def lookup_path(self) -> Path:
        return self.root / "lemon_ocontact" / f"lemon_lookup_results_{self.split_name()}.pkl"

    def render_root(self) -> Path:
        return self.root / "lemon_ocontact" / self.render_folder

    def object_and_affordance(self, image_path: Path, listed: str) -> tuple[str, str]:
        sub = lemon_sub_path(listed, self.image_list_path())
        return lemon_object(sub.name), sub.parent.name
