"""PIAD object affordance (seen / unseen settings), in the original release's layout.

::

    <dataset_dir>/piad_ocontact_{seen|unseen}/
        Img_{Train|Test}.txt                  image paths (the part from the ``Img`` directory on is used)
        Point_{Train|Test}.txt                point-cloud paths, line-aligned with Img_* (test pairing)
        piad_lookup_results_{Train|Test}.pkl  {image: ranked candidate point files} (training pairing)
        Img/<Split>/<Obj>/<affordance>/Img_<Split>_<Obj>_<affordance>_….jpg
        Point/<Split>/<Obj>/Point_<Split>_<Obj>_….txt     lines "<id> <ObjName> x y z a_1 … a_17" (PIAD order)
        rendered_points_heatmap_1025_color/<Split>/<Obj>/<affordance>/{sam,mask}_<pstem>_<view>.png, p2pmap_….npz

Object and affordance come from the image file name: tokens 2 and 3 of ``Img_Train_Bag_open_….jpg``.
"""

from __future__ import annotations

from pathlib import Path

from datasets.io import DatasetFormatError
from datasets.pointcloud import PIAD_AFFORDANCES, PointAffordanceDataset

SPLIT_NAMES = {"train": "Train", "test": "Test", "val": "Test"}


class PiadDataset(PointAffordanceDataset):
    """``PiadDataset(dataset_dir, split, setting="seen")``; ``split`` is ``train``/``test`` (or ``Train``/``Test``)."""

    affordance_names = PIAD_AFFORDANCES
    leading_columns = 2
    image_anchor = "Img"
    point_anchor = "Point"

    def __init__(self, dataset_dir: str | Path, split: str = "train", *, setting: str = "seen", name: str | None = None,
                 **options) -> None:
        if setting not in ("seen", "unseen"):
            raise ValueError(f"setting must be 'seen' or 'unseen', got {setting!r}")
        self.setting = setting
        options.setdefault("training", split.lower() == "train")
        options.setdefault("pairing", "lookup" if split.lower() == "train" else "aligned")
        super().__init__(dataset_dir, split, name=name or f"piad_{setting}", **options)

    @property
    def root(self) -> Path:
        return self.dataset_dir / f"piad_ocontact_{self.setting}"

    def split_name(self) -> str:
        return SPLIT_NAMES.get(self.split.lower(), self.split)

    def image_list_path(self) -> Path:
        return self.root / f"Img_{self.split_name()}.txt"

    def point_list_path(self) -> Path:
        return self.root / f"Point_{self.split_name()}.txt"

    def lookup_path(self) -> Path:
        return self.root / f"piad_lookup_results_{self.split_name()}.pkl"

    def render_root(self) -> Path:
        return self.root / self.render_folder / self.split_name()

    def object_and_affordance(self, image_path: Path, listed: str) -> tuple[str, str]:
        tokens = image_path.stem.split("_")
        if len(tokens) < 4:
            raise DatasetFormatError(
                f"{self.image_list_path()}: image name {image_path.name!r} does not follow Img_<Split>_<Obj>_<affordance>_…"
            )
        return tokens[2], tokens[3]
