"""What a 2D contact mask can score on SynthContact when it is built from the ground truth's own labels.

SynthContact's 2D contact covers about 0.1 % of a photo's pixels (the visible body surface within 2 cm of the
object). Pixel F1 at that scale rewards pixel-exact boundaries, so these label-built masks say how high the 2D bar
sits: each is made from labels no model gets at inference (the contact's body parts, the rendered label map
``labels_2d``), scored exactly as ``evaluate.py`` scores the 2D model (the same reader at the model's mask size,
``utils.metrics.pixel_contact_metrics``).

* ``parts``: every visible pixel of the body parts that touch the object (a perfect part segmentation + the true
  part list);
* ``body near object``: body pixels within ``--near`` pixels of the object's own pixels (a perfect body and object
  segmentation, no part list);
* ``parts near object``: both.

    python -m training.contact2d_ceiling --data-dir data/synthcontact_eval --split test --output runs/ceiling2d.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from datasets.io import DatasetFormatError, resize_nearest, split_meta_lines
from datasets.registry import build_dataset
from utils import metrics as M

PREDICTORS = ("parts", "body near object", "parts near object")
CONFIDENT_LOGIT = 10.0  # label-built masks are certain: ±10 is far from any threshold


def split_label_maps(root: Path) -> dict[str, dict]:
    """``{stem: meta["labels_2d"]}`` of one split (the label map's path and its part / object label values)."""
    out = {}
    for _, meta in split_meta_lines(root / "meta.jsonl"):
        if "labels_2d" not in meta:
            raise DatasetFormatError(f"{root / 'meta.jsonl'}: {meta.get('stem')} has no labels_2d (SynthContact "
                                     f"format 2 writes one per image; regenerate with preprocess_data.synthcontact)")
        out[meta["stem"]] = meta["labels_2d"]
    return out


def label_masks(labels: np.ndarray, legend: dict, parts: tuple[str, ...], obj: str, near: int) -> dict[str, np.ndarray]:
    """The three label-built masks of one (image, object) at the label map's resolution."""
    part_values = [legend["parts"][p] for p in parts if p in legend["parts"]]
    part_mask = np.isin(labels, part_values)
    body = np.isin(labels, list(legend["parts"].values()))
    object_pixels = (labels == legend["objects"][obj]).astype(np.uint8) if obj in legend["objects"] \
        else np.zeros(labels.shape, np.uint8)  # the ground ("supporting") has no label of its own
    kernel = np.ones((2 * near + 1, 2 * near + 1), np.uint8)
    close = cv2.dilate(object_pixels, kernel) > 0
    return {"parts": part_mask, "body near object": body & close, "parts near object": part_mask & close}


def ceiling(data_dir: Path, split: str, mask_size: int = 256, near: int = 2, max_pairs: int | None = None) -> dict:
    dataset = build_dataset("synthcontact_h2dcontact", data_dir, split, mask_size=mask_size, training=False)
    root = dataset.root
    legends = split_label_maps(root)
    records = dataset.records[:max_pairs] if max_pairs else dataset.records
    preds: dict[str, list[np.ndarray]] = {name: [] for name in PREDICTORS}
    gts = []
    for record in tqdm(records, desc=f"label-built 2D masks ({split})"):
        gt = dataset.read_masks(record)[0]
        stem, obj = record.meta["stem"], record.meta["object"]
        labels = cv2.imread(str(root / legends[stem]["path"]), cv2.IMREAD_UNCHANGED)
        if labels is None:
            raise FileNotFoundError(f"{root / legends[stem]['path']} is missing or unreadable (the image's label map)")
        for name, mask in label_masks(labels, legends[stem], record.body_parts, obj, near).items():
            small = resize_nearest(mask, gt.shape)
            preds[name].append(np.where(small, CONFIDENT_LOGIT, -CONFIDENT_LOGIT))
        gts.append(gt)
    return {name: M.pixel_contact_metrics(p, gts) for name, p in preds.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="data root holding synthcontact/")
    parser.add_argument("--split", action="append", help="split(s) to score (default: test and test_heldout)")
    parser.add_argument("--mask-size", type=int, default=256, help="the 2D model's mask size (its config.mask_size)")
    parser.add_argument("--near", type=int, default=2, help="pixels (label-map resolution) counted as touching")
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help="markdown table (printed either way)")
    args = parser.parse_args(argv)
    lines = ["| label-built mask (uses ground-truth labels) | split | pixel F1 | P | R | pairs |",
             "|---|---|---|---|---|---|"]
    for split in args.split or ["test", "test_heldout"]:
        for name, m in ceiling(args.data_dir, split, args.mask_size, args.near, args.max_pairs).items():
            lines.append(f"| {name} | {split} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['count']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)


if __name__ == "__main__":
    main()
