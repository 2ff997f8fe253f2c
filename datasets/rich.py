"""RICH human–scene contact in the original release's layout; the class name is always ``scene`` (as in the original).

::

    <dataset_dir>/rich/
        img_list_{split}.pkl            [keys]  (image file names under images/)
        body_parts_{split}.pkl          {key: [body part names]}
        contact_vertices_{split}.pkl    {key: [6890] contact array}
        images/<key>
        <view-set folder>/<key stem>_<view>.png
"""

from __future__ import annotations

from pathlib import Path, PurePath

import numpy as np

from datasets.base import HumanContactDataset, Record, dense_vector
from datasets.io import DatasetFormatError, DirectoryListing, expect_type, load_pickle, string_list
from utils.geometry.views import ViewSet

SCENE = "scene"


class RichDataset(HumanContactDataset):
    """One sample per listed frame with non-empty contact and all masks present."""

    def __init__(self, dataset_dir: str | Path, split: str = "train", *, view_set: str | ViewSet = "4MV-Z_Vitru",
                 name: str = "rich", **options) -> None:
        super().__init__(dataset_dir, split, view_set=view_set, name=name, **options)

    @property
    def root(self) -> Path:
        return self.dataset_dir / "rich"

    def build_records(self) -> list[Record]:
        list_path = self.root / f"img_list_{self.split}.pkl"
        keys = load_pickle(list_path, "a list of image keys")
        keys = string_list(keys, list_path, "image keys")
        parts_path = self.root / f"body_parts_{self.split}.pkl"
        parts = expect_type(load_pickle(parts_path, "a dict key → [body part names]"), dict, parts_path,
                            "a dict key → [body part names]")
        contact_path = self.root / f"contact_vertices_{self.split}.pkl"
        contacts = expect_type(load_pickle(contact_path, "a dict key → per-vertex contact array"), dict, contact_path,
                               "a dict key → per-vertex contact array")
        listing = DirectoryListing()
        skipped = {"no contact": 0, "masks missing": 0}
        records = []
        for key in keys:
            for path, table in ((contact_path, contacts), (parts_path, parts)):
                if key not in table:
                    raise DatasetFormatError(f"{path}: no entry for key {key!r} listed in {list_path}")
            labels = dense_vector(contacts[key], self.num_vertices, contact_path, f"the contact of {key!r}")
            if not labels.any():
                skipped["no contact"] += 1
                continue
            stem = PurePath(key).stem
            masks = tuple(self.root / self.mask_folder / f"{stem}_{v}.png" for v in self.view_set.view_names)
            if not listing.all_exist(masks):
                skipped["masks missing"] += 1
                continue
            records.append(Record(
                image_path=self.root / "images" / key, class_name=SCENE,
                body_parts=tuple(string_list(parts[key], parts_path, f"the body parts of {key!r}")),
                mask_paths=masks, labels=np.flatnonzero(labels).astype(np.int32),
                meta={"key": key, "stem": stem, "mask_paths": [str(p) for p in masks]},
            ))
        self.skipped = {k: v for k, v in skipped.items() if v}
        return records

    def vertex_labels(self, record: Record) -> np.ndarray:
        labels = np.zeros(self.num_vertices, dtype=np.float32)
        labels[record.labels] = 1.0
        return labels
