"""PICO object contact on retrieved object meshes (``ocontact``), in the original release's layout.

::

    <dataset_dir>/pico/<split>/
        <split>_imglist.pkl                       [image paths]  (the basename is looked up in images/)
        images/<obj>__<damon stem>.jpg
        lowpoly_mesh_0507/<obj>/sam_<stem>_<view>.png          object render (white background = invalid)
                               mask_<stem>_<view>.png         255 = contact
                               p2vmap_<stem>_<view>.npz       pixel → vertex map for lifting
                               contact_vertices_<stem>.pkl    [num_vertices] float32 0/1 (varies per mesh)

``<stem>`` is the image stem ``<obj>__<damon stem>``; the object name is the part before ``__``.
"""

from __future__ import annotations

from pathlib import Path, PurePath

import numpy as np

from datasets.base import ContactDataset, Record
from datasets.io import DatasetFormatError, DirectoryListing, load_pickle, string_list
from utils.geometry.views import ViewSet, get_view_set


def pico_object(stem: str) -> str:
    if "__" not in stem:
        raise ValueError(f"PICO image name {stem!r} does not follow <object>__<image>")
    return stem.split("__", 1)[0]


class PicoDataset(ContactDataset):
    """One sample per listed image whose renders, masks, maps and contact file all exist."""

    task = "ocontact"
    default_question_type = "simple"

    def __init__(self, dataset_dir: str | Path, split: str = "train", *, view_set: str | ViewSet = "4MV-Z_HM_BM",
                 mesh_folder: str = "lowpoly_mesh_0507", name: str = "pico", **options) -> None:
        self.view_set = get_view_set(view_set) if isinstance(view_set, str) else view_set
        if self.view_set.kind != "object":
            raise ValueError(f"{self.view_set.name} is a human view set; PICO renders use an object view set")
        self.mesh_folder = mesh_folder
        self.skipped: dict[str, int] = {}
        super().__init__(dataset_dir, split, name=name, **options)

    @property
    def root(self) -> Path:
        return self.dataset_dir / "pico" / self.split

    def num_views(self) -> int:
        return self.view_set.num_views

    def empty_hint(self) -> str:
        return f"no listed image has complete renders in {self.root / self.mesh_folder}"

    def build_records(self) -> list[Record]:
        list_path = self.root / f"{self.split}_imglist.pkl"
        names = string_list(load_pickle(list_path, "a list of image paths"), list_path, "image paths")
        listing = DirectoryListing()
        records, missing = [], 0
        for listed in names:
            basename = PurePath(listed.replace("\\", "/")).name
            stem = PurePath(basename).stem
            try:
                obj = pico_object(stem)
            except ValueError as err:
                raise DatasetFormatError(f"{list_path}: {err}") from None
            folder = self.root / self.mesh_folder / obj
            views = self.view_set.view_names
            renders = tuple(folder / f"sam_{stem}_{v}.png" for v in views)
            masks = tuple(folder / f"mask_{stem}_{v}.png" for v in views)
            maps = tuple(folder / f"p2vmap_{stem}_{v}.npz" for v in views)
            contact = folder / f"contact_vertices_{stem}.pkl"
            if not listing.all_exist((*renders, *masks, *maps, contact)):
                missing += 1
                continue
            records.append(Record(
                image_path=self.root / "images" / basename, class_name=obj, mask_paths=masks, render_paths=renders,
                template=str(folder), labels=contact,
                meta={"stem": stem, "object": obj, "template_stem": stem, "render_paths": [str(p) for p in renders],
                      "mask_paths": [str(p) for p in masks], "lift_map_paths": [str(p) for p in maps]},
            ))
        self.skipped = {"files missing": missing} if missing else {}
        return records

    def vertex_labels(self, record: Record) -> np.ndarray:
        value = np.asarray(load_pickle(record.labels, "a per-vertex contact array of the object mesh"))
        if value.ndim != 1 or value.dtype.kind not in "biuf":
            raise DatasetFormatError(f"{record.labels}: expected a 1-D numeric per-vertex contact array, got "
                                     f"{value.dtype} {value.shape}")
        return (value != 0).astype(np.float32)
