"""SynthContact object contact (``ocontact``) and affordance (``oafford``) on the canonical class templates.

Layout (written by ``python -m preprocess_data.synthcontact_objects``)::

    <dataset_dir>/synthcontact/object_templates/<class>/          renders + lifting maps of the class's canonical mesh
    <dataset_dir>/synthcontact/<split>/imgname.npy, images/<stem>.jpg, meta.jsonl
    <dataset_dir>/synthcontact/<split>/object_contact_canonical.pkl {"<stem>__<object>": float32 per template vertex}
    <dataset_dir>/synthcontact/<split>/object_contact_masks/<class>/<stem>_<view>.png

One sample per (image, touched object) in ``object_contact_canonical.pkl`` whose masks exist. The template of a
sample is its class's folder, so every chair query shares one set of SAM embeddings. ``oafford`` asks the
affordance question, with the interaction the generator placed (sit, lay, hold, …) as the affordance word.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datasets.base import ContactDataset, Record, pose_of
from datasets.io import DatasetFormatError, DirectoryListing, load_pickle
from utils.geometry.views import ViewSet, get_view_set

TEMPLATE_FOLDER = "object_templates"
MASK_FOLDER = "object_contact_masks"
LABELS_FILE = "object_contact_canonical.pkl"
# generator interaction -> affordance word of the tiny tokenizer's vocabulary
AFFORDANCE_WORDS = {"sit": "sit", "lie": "lay", "hold": "grasp", "kick": "kick", "step_on": "step on", "lean": "lean",
                    "stand_on": "support"}


def render_paths(folder: Path, view_names, size: int) -> tuple[Path, ...]:
    suffix = "" if size == 1024 else f"_{size}"
    return tuple(folder / f"obj_render_color_{v}{suffix}.png" for v in view_names)


class SynthContactCanonicalObjectDataset(ContactDataset):
    task = "ocontact"
    default_question_type = "simple"

    def __init__(self, dataset_dir: str | Path, split: str = "train", *, view_set: str | ViewSet = "4MV-Z_HM_BM",
                 template_size: int = 256, root_name: str = "synthcontact", name: str | None = None,
                 **options) -> None:
        self.view_set = get_view_set(view_set) if isinstance(view_set, str) else view_set
        if self.view_set.kind != "object":
            raise ValueError(f"{self.view_set.name} is a human view set; SynthContact objects use an object view set")
        self.template_size = int(template_size)
        self.root_name = root_name
        super().__init__(dataset_dir, split, name=name or f"{root_name}_{self.task}_canonical", **options)

    @property
    def root(self) -> Path:
        return self.dataset_dir / self.root_name / self.split

    @property
    def template_root(self) -> Path:
        return self.dataset_dir / self.root_name / TEMPLATE_FOLDER

    def num_views(self) -> int:
        return self.view_set.num_views

    def empty_hint(self) -> str:
        return (f"no object contact in {self.root / LABELS_FILE}; run "
                f"`python -m preprocess_data.synthcontact_objects --data-dir {self.dataset_dir / self.root_name}`")

    def build_records(self) -> list[Record]:
        labels_path = self.root / LABELS_FILE
        if not labels_path.is_file():
            raise FileNotFoundError(f"{labels_path} is missing: {self.empty_hint()}")
        self._labels = load_pickle(labels_path, 'a dict "<stem>__<object>" -> per-vertex contact')
        # the body parts touching each object (the human side's labels): an answer can name them before the seg
        # token, so that the state the object mask is read from depends on the image, not only on the class name
        parts_path = self.root / "body_parts_objectwise.pkl"
        body_parts = load_pickle(parts_path, 'a dict "<stem>_<object>" -> body part names') if parts_path.is_file() else {}
        interactions, poses = {}, {}
        for line in (self.root / "meta.jsonl").read_text().splitlines():
            meta = json.loads(line)
            interactions[meta["stem"]] = meta["interactions"]
            poses[meta["stem"]] = pose_of(meta)
        listing = DirectoryListing()
        records = []
        for key in sorted(self._labels):
            stem, obj = key.split("__", 1)
            folder = self.template_root / obj
            masks = tuple(self.root / MASK_FOLDER / obj / f"{stem}_{v}.png" for v in self.view_set.view_names)
            renders = render_paths(folder, self.view_set.view_names, self.template_size)
            if not listing.all_exist((*masks, *renders)):
                continue
            interaction = interactions.get(stem, {}).get(obj, "none")
            records.append(Record(
                image_path=self.root / "images" / f"{stem}.jpg", class_name=obj, mask_paths=masks,
                render_paths=renders, template=str(folder), labels=key,
                body_parts=tuple(body_parts.get(f"{stem}_{obj}", ())),
                affordance=AFFORDANCE_WORDS.get(interaction, interaction) if self.task == "oafford" else None,
                meta={"stem": stem, "object": obj, "interaction": interaction, "mask_paths": [str(p) for p in masks]},
                pose=poses.get(stem),
            ))
        return records

    def vertex_labels(self, record: Record) -> np.ndarray:
        value = np.asarray(self._labels[record.labels])
        if value.ndim != 1:
            raise DatasetFormatError(f"{self.root / LABELS_FILE}: entry {record.labels!r} is not a per-vertex array")
        return (value > 0.5).astype(np.float32)


class SynthContactAffordanceDataset(SynthContactCanonicalObjectDataset):
    """The same object contact asked as affordance (the interaction word, then the region)."""

    task = "oafford"
    default_question_type = "afford"
