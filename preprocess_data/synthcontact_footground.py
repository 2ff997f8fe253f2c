"""DAMON's foot–ground variant for a SynthContact training split (what ``hcontact-wScene`` trains on).

DAMON's release ships ``*_wFootGround.pkl`` files beside the plain ones: an extra object ``foot_ground`` (read as
the class "scene") with the contact of the supporting ground on the feet. This writes the same files for
SynthContact, from the split's own ``supporting`` contact (``make_masks_damon.build_tables``: the supporting
vertices on the foot parts), plus the ``foot_ground`` body-render masks next to the other objects' masks, so
``DamonDataset(..., foot_ground=True)`` reads a SynthContact split as it reads DAMON's.

    python -m preprocess_data.synthcontact_footground --data-dir data/synthcontact [--split train]
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np

from preprocess_data.datagen_common import write_png
from preprocess_data.make_masks_damon import FOOT_GROUND, DamonRaw, build_tables


def write_foot_ground(split_dir: Path) -> int:
    from preprocess_data import synthcontact as synth
    from utils.body_models import canonical_mesh, default_body_model_dir, load_part_segmentation
    from utils.geometry.projection import contact_masks
    from utils.geometry.views import get_view_set

    with open(split_dir / "contact_label_objectwise.pkl", "rb") as f:
        objectwise = pickle.load(f)
    names = [str(n) for n in np.load(split_dir / "imgname.npy")]
    stems = [Path(n).stem for n in names]
    segmentation = load_part_segmentation(default_body_model_dir() / "synthbody" / "synthbody_segmentation.json")
    raw = DamonRaw(split_dir, names, stems, [{k: np.asarray(v, np.int64) for k, v in e.items()} for e in objectwise])
    _, _, contacts_fg, parts_fg = build_tables(raw, segmentation)
    for name, table in (("contact_label_objectwise_wFootGround.pkl", contacts_fg),
                        ("body_parts_objectwise_wFootGround.pkl", parts_fg)):
        with open(split_dir / name, "wb") as f:
            pickle.dump(table, f)
    body = canonical_mesh("synthbody", default_body_model_dir())
    size = int(json.loads((split_dir.parent / "splits.json").read_text())["mask_size"])  # as the other objects' masks
    maps, _ = synth.load_mask_maps(size, synth.default_template_dir(), np.asarray(body.vertices), np.asarray(body.faces))
    views = get_view_set(synth.VIEW_SET).view_names
    count = 0
    for stem, entry in zip(stems, contacts_fg):
        if FOOT_GROUND not in entry:
            continue
        labels = np.zeros(synth.NUM_BODY_VERTICES, dtype=np.float32)
        labels[np.asarray(entry[FOOT_GROUND], np.int64)] = 1.0
        for view, mask in zip(views, contact_masks(labels, maps, min_vertices=synth.MIN_VERTICES)):
            write_png(split_dir / "hcontact_vitruvian_mv2" / FOOT_GROUND / f"{stem}_{view}.png", mask.astype(np.uint8) * 255)
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--split", default="train")
    args = parser.parse_args(argv)
    count = write_foot_ground(args.data_dir / args.split)
    print(f"{args.data_dir / args.split}: foot_ground for {count} images")
    return count


if __name__ == "__main__":
    main()
