"""SynthContact object contact (``ocontact``) on each image's own object mesh.

::

    <dataset_dir>/synthcontact/<split>/imgname.npy, images/<stem>.jpg, meta.jsonl
    <dataset_dir>/synthcontact/<split>/objects/<stem>__<object>.ply      the object mesh of that image (world frame)
    <dataset_dir>/synthcontact/<split>/object_contact.pkl               {"<stem>__<object>": float32 0/1 per vertex}
    <dataset_dir>/synthcontact/<split>/object_renders/<stem>__<object>/ written here on first use (render_template)

One sample per (image, object) with object-side contact, the ground (``supporting``) excepted. Each mesh is
normalised and rendered through the object view set exactly as the demo renders a user's mesh, at the mask size and
``render_sizes`` (the SAM input size), the first time the sample is read; the target masks come from the exact
per-vertex labels through that template's own lifting maps (``min_vertices=2``), −1 outside the object.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from datasets.base import ContactDataset, Record
from datasets.io import DatasetFormatError
from utils.geometry.lifting_maps import LiftingMaps
from utils.geometry.mesh_io import load_mesh_file
from utils.geometry.normalize import normalize_mesh_vertices
from utils.geometry.projection import training_targets
from utils.geometry.template_views import maps_path, render_template
from utils.geometry.views import ViewSet, get_view_set

RENDER_FOLDER = "object_renders"
SKIPPED = ("supporting",)


class SynthContactObjectDataset(ContactDataset):
    task = "ocontact"
    default_question_type = "simple"

    def __init__(self, dataset_dir: str | Path, split: str = "train", *, view_set: str | ViewSet = "4MV-Z_HM_BM",
                 render_sizes: tuple[int, ...] = (), root_name: str = "synthcontact", name: str | None = None,
                 **options) -> None:
        self.view_set = get_view_set(view_set) if isinstance(view_set, str) else view_set
        if self.view_set.kind != "object":
            raise ValueError(f"{self.view_set.name} is a human view set; SynthContact objects use an object view set")
        self.render_sizes = tuple(int(s) for s in render_sizes)
        self.root_name = root_name
        super().__init__(dataset_dir, split, name=name or f"{root_name}_ocontact", **options)

    @property
    def root(self) -> Path:
        return self.dataset_dir / self.root_name / self.split

    def num_views(self) -> int:
        return self.view_set.num_views

    def empty_hint(self) -> str:
        return f"no object with contact in {self.root / 'object_contact.pkl'}"

    def sizes(self) -> list[int]:
        return sorted({*self.render_sizes, *([self.mask_size] if self.mask_size else [])} or {256})

    def build_records(self) -> list[Record]:
        labels_path = self.root / "object_contact.pkl"
        if not labels_path.is_file():
            raise FileNotFoundError(f"{labels_path} is missing: not a complete SynthContact split "
                                    "(python -m preprocess_data.synthcontact writes it at the end of a run)")
        with open(labels_path, "rb") as f:
            self._labels = pickle.load(f)
        records = []
        for line in (self.root / "meta.jsonl").read_text().splitlines():
            meta = json.loads(line)
            for obj in meta["objects"]:
                key = f"{meta['stem']}__{obj['name']}"
                if obj["name"] in SKIPPED or key not in self._labels or not np.any(self._labels[key]):
                    continue
                records.append(Record(
                    image_path=self.root / meta["imgname"], class_name=obj["name"],
                    template=str(self.root / RENDER_FOLDER / key), labels=key,
                    meta={"stem": meta["stem"], "object": obj["name"], "ply": str(self.root / obj["ply"]),
                          "interaction": obj["interaction"]},
                ))
        return records

    def ensure_rendered(self, record: Record) -> Path:
        folder = Path(record.template)
        meta_path = folder / "template.json"
        if meta_path.is_file() and set(self.sizes()) <= set(json.loads(meta_path.read_text()).get("sizes", [])):
            return folder
        vertices, faces = load_mesh_file(record.meta["ply"])
        render_template(folder, self.view_set, self.sizes(), kind="object", vertices=normalize_mesh_vertices(vertices),
                        faces=faces, name=record.labels)
        return folder

    def __getitem__(self, index: int) -> dict:
        record = self.records[index % len(self)]
        self.ensure_rendered(record)
        sample = super().__getitem__(index)
        if self.load_masks:  # no mask files: the targets come from the labels
            sample["masks"] = self.read_masks(record)
        return sample

    def read_masks(self, record: Record) -> np.ndarray:
        size = self.mask_size or self.sizes()[0]
        maps = LiftingMaps.load(maps_path(self.ensure_rendered(record), size))
        return training_targets(self.vertex_labels(record), maps, min_vertices=2)

    def vertex_labels(self, record: Record) -> np.ndarray:
        value = np.asarray(self._labels[record.labels])
        if value.ndim != 1:
            raise DatasetFormatError(f"{self.root / 'object_contact.pkl'}: {record.labels!r} is not a per-vertex array")
        return (value > 0.5).astype(np.float32)
