"""Vision pretraining of the tiny CLIP tower on SynthContact's exact 2D labels (a stand-in for CLIP's pretraining).

No pretrained CLIP weights can be had here, and a vision tower trained from scratch only through the language model's
answers barely moves (its gradients are about 1e-3 of the language model's). This stage teaches it first what every
14×14 patch of the CLIP input shows, from the labels rendered with every SynthContact image (``labels_2d/<stem>.png``
and the 2D contact masks ``contact_render_2d/<object>/<stem>_contact_mask.png``):

* which region it shows: the fraction of its pixels that are background, each body part, each object class (soft
  cross-entropy);
* which body parts in it are in contact (0/1 per part), and with which object class (0/1 per class), each a binary
  cross-entropy with a positive weight, since contact patches are about 1 % of all patches.

The contact read-outs are what the language model has to find for a query "which parts touch the <object>": the
patches in contact with that object class, and their parts. An earlier version folded contact into the region
classes by pixel fraction; contact pixels are ~0.1 % of an image, so it carried almost no contact signal.
The heads are linear on the tower's layer −2 features (the ones LLaVA passes to the language model) and are thrown
away; the tower's weights go to a safetensors file that a training recipe loads (``pretrained_vision``).

    python -m training.vision_pretrain --data-dir data --output trained_models/vision/tiny_clip_synthcontact.safetensors \
        [--image-size 112] [--minutes 8] [--batch-size 32] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from model.config import build_config
from model.interactvlm import InteractVLMForCausalLM, clip_preprocess, clip_resize_crop
from model.io import attach_tokenizer
from model.tokenizer import build_tiny_tokenizer
from training.pretrain_loop import load_into, train_within_budget
from utils.paths import REPO_ROOT

# labels_2d values: 0 background, 1 + part (1..16), 32 + object class index (preprocess_data.synthcontact)
NUM_PARTS = 16
NUM_OBJECTS = 9  # preprocess_data.synthcontact_scene.OBJECT_NAMES, the ground ("supporting") included
OBJECT_OFFSET = 32
NUM_REGIONS = 1 + NUM_PARTS + NUM_OBJECTS  # what a pixel shows: background, a body part or an object class
CONTACT_DILATION = 2  # px at the CLIP input: a contact mask is a thin rim; a patch next to it still "sees" it
PREFIX = "vlm.model.vision_tower."


@dataclass
class PatchTargets:
    """Per-patch targets of one batch: ``regions`` [B, P, NUM_REGIONS] pixel fractions (soft classes);
    ``contact_parts`` [B, P, NUM_PARTS] and ``contact_objects`` [B, P, NUM_OBJECTS] 0/1: does the patch hold body
    pixels of that part in contact / body pixels in contact with that object class."""

    regions: torch.Tensor
    contact_parts: torch.Tensor
    contact_objects: torch.Tensor

    def __getitem__(self, index) -> "PatchTargets":
        return PatchTargets(self.regions[index], self.contact_parts[index], self.contact_objects[index])

    def __len__(self) -> int:
        return len(self.regions)


def label_crop(labels: np.ndarray, size: int) -> np.ndarray:
    """A label map through CLIP's resize-shortest-side + centre crop, by nearest neighbour."""
    return clip_resize_crop(labels, size, Image.NEAREST)


def region_labels(labels: np.ndarray) -> np.ndarray:
    """labels_2d values → 0 background, 1..16 body parts, 17..25 object classes."""
    out = np.zeros(labels.shape, dtype=np.uint8)
    body = (labels >= 1) & (labels <= NUM_PARTS)
    out[body] = labels[body]
    objects = (labels >= OBJECT_OFFSET) & (labels < OBJECT_OFFSET + NUM_OBJECTS)
    out[objects] = labels[objects] - OBJECT_OFFSET + 1 + NUM_PARTS
    return out


def _patch_ids(size: int, patch: int) -> np.ndarray:
    """``[size, size]`` → the row-major index of the patch each pixel falls in (CLIP's patch order)."""
    rows = np.arange(size) // patch
    return rows[:, None] * (size // patch) + rows[None, :]


def sample_targets(labels: np.ndarray, contact_by_object: dict[int, np.ndarray], size: int, patch: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's targets at the CLIP input (``labels`` and the contact masks in photo pixels):
    ``[P, NUM_REGIONS]`` region fractions, ``[P, NUM_PARTS]`` and ``[P, NUM_OBJECTS]`` 0/1 contact."""
    num_patches = (size // patch) ** 2
    ids = _patch_ids(size, patch)
    regions = region_labels(label_crop(labels, size))
    counts = np.bincount((ids * NUM_REGIONS + regions).ravel(), minlength=num_patches * NUM_REGIONS)
    region_frac = counts.reshape(num_patches, NUM_REGIONS).astype(np.float32) / patch ** 2
    parts = np.zeros((num_patches, NUM_PARTS), dtype=np.float32)
    objects = np.zeros((num_patches, NUM_OBJECTS), dtype=np.float32)
    kernel = np.ones((2 * CONTACT_DILATION + 1,) * 2, np.uint8)
    for object_index, mask in contact_by_object.items():
        mask = label_crop(mask.astype(np.uint8), size) > 0
        objects[np.unique(ids[cv2.dilate(mask.astype(np.uint8), kernel) > 0]), object_index] = 1.0
        # the part of a contact pixel is the visible body label there (a pixel the object hides names no part)
        body = mask & (regions >= 1) & (regions <= NUM_PARTS)
        parts[ids[body], regions[body].astype(np.int64) - 1] = 1.0
    return region_frac, parts, objects


def labelled_samples(split_dir: Path, limit: int | None = None, progress: bool = True
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]]:
    """``(photo, labels_2d map, {object class index: image-frame contact mask})`` of every sample of a split that has
    ``labels_2d`` (at most ``limit``), read one at a time: what both pretraining stages build their targets from."""
    meta_path = split_dir / "meta.jsonl"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: no SynthContact split here (bash scripts/run_datagen.sh synth-train)")
    metas = [json.loads(line) for line in meta_path.read_text().splitlines()]
    metas = [m for m in metas if "labels_2d" in m][:limit]
    if not metas:
        raise FileNotFoundError(f"{split_dir}: no sample with labels_2d (regenerate with the current "
                                "preprocess_data.synthcontact)")
    for m in tqdm(metas, desc=f"loading {split_dir.name}", disable=not progress):
        image = np.asarray(Image.open(split_dir / m["imgname"]).convert("RGB"))
        labels = np.asarray(Image.open(split_dir / m["labels_2d"]["path"]))
        if labels.shape != image.shape[:2]:
            raise ValueError(f"{split_dir / m['labels_2d']['path']}: {labels.shape} label map for a {image.shape[:2]} image")
        contact = {}
        for obj in m["objects"]:
            if obj["contact_vertices"]:
                mask_path = split_dir / "contact_render_2d" / obj["name"] / f"{m['stem']}_contact_mask.png"
                contact[m["labels_2d"]["objects"][obj["name"]] - OBJECT_OFFSET] = np.asarray(Image.open(mask_path)) > 0
        yield image, labels, contact


def load_split(split_dir: Path, image_size: int, patch: int, limit: int | None = None,
               progress: bool = True) -> tuple[torch.Tensor, PatchTargets]:
    """CLIP inputs and patch targets of every sample of a split that has ``labels_2d``."""
    pixels, regions, parts, objects = [], [], [], []
    for image, labels, contact in labelled_samples(split_dir, limit, progress):
        r, cp, co = sample_targets(labels, contact, image_size, patch)
        pixels.append(clip_preprocess([image], image_size)[0])
        regions.append(torch.from_numpy(r))
        parts.append(torch.from_numpy(cp))
        objects.append(torch.from_numpy(co))
    return torch.stack(pixels), PatchTargets(torch.stack(regions), torch.stack(parts), torch.stack(objects))


class PatchHead(nn.Module):
    """Linear read-outs of the patch features: region classes, contacting parts, contacting object classes."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.regions = nn.Linear(hidden, NUM_REGIONS)
        self.contact_parts = nn.Linear(hidden, NUM_PARTS)
        self.contact_objects = nn.Linear(hidden, NUM_OBJECTS)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.norm(features)
        return self.regions(x), self.contact_parts(x), self.contact_objects(x)


def patch_features(tower, pixels: torch.Tensor, layer: int = -2) -> torch.Tensor:
    out = tower(pixel_values=pixels, output_hidden_states=True)
    return out.hidden_states[layer][:, 1:]  # CLS dropped, as LLaVA's "default" feature selection


# contact patches are ~1 % of all patches: without a positive weight "no contact anywhere" is the cheap answer
CONTACT_POS_WEIGHT = 20.0


def pretraining_loss(outputs, targets: PatchTargets) -> tuple[torch.Tensor, dict[str, float]]:
    regions, parts, objects = outputs
    region_loss = -(targets.regions * F.log_softmax(regions, -1)).sum(-1).mean()
    weight = torch.tensor(CONTACT_POS_WEIGHT)
    part_loss = F.binary_cross_entropy_with_logits(parts, targets.contact_parts, pos_weight=weight)
    object_loss = F.binary_cross_entropy_with_logits(objects, targets.contact_objects, pos_weight=weight)
    total = region_loss + part_loss + object_loss
    return total, {"region": float(region_loss), "contact_part": float(part_loss), "contact_object": float(object_loss)}


def _f1(pred: torch.Tensor, target: torch.Tensor) -> float:
    tp = float((pred & target).sum())
    return 2 * tp / max(1.0, float(pred.sum()) + float(target.sum()))


def evaluate(tower, head, pixels, targets: PatchTargets, batch_size: int = 64) -> dict[str, float]:
    """Losses, the majority-region accuracy of foreground patches and the patch-level F1 of the contact read-outs."""
    tower.eval()
    totals, correct, counted = [], 0, 0
    part_pred, part_true, obj_pred, obj_true = [], [], [], []
    with torch.no_grad():
        for i in range(0, len(pixels), batch_size):
            out = head(patch_features(tower, pixels[i: i + batch_size]))
            t = targets[i: i + batch_size]
            totals.append(pretraining_loss(out, t)[1])
            fg = t.regions[..., 0] < 0.5
            correct += int((out[0].argmax(-1) == t.regions.argmax(-1))[fg].sum())
            counted += int(fg.sum())
            part_pred.append(out[1] > 0), part_true.append(t.contact_parts > 0.5)
            obj_pred.append(out[2] > 0), obj_true.append(t.contact_objects > 0.5)
    tower.train()
    report = {k: float(np.mean([d[k] for d in totals])) for k in totals[0]}
    report.update({"foreground_patch_accuracy": correct / max(1, counted),
                   "contact_part_f1": _f1(torch.cat(part_pred), torch.cat(part_true)),
                   "contact_object_f1": _f1(torch.cat(obj_pred), torch.cat(obj_true))})
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--root-name", default="synthcontact")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--image-size", type=int, default=112,
                        help="CLIP input size; must equal the recipe's vision_image_size (tiny preset: 112)")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    config = build_config("tiny", vision_image_size=args.image_size)
    attach_tokenizer(config, build_tiny_tokenizer())
    tower = InteractVLMForCausalLM(config).vlm.model.vision_tower  # the tiny preset's own initialisation
    vision = config.vlm_config.vision_config
    root = args.data_dir / args.root_name
    start = time.time()
    train_x, train_y = load_split(root / "train", vision.image_size, vision.patch_size)
    val_x, val_y = load_split(root / "val", vision.image_size, vision.patch_size, limit=200)
    print(f"loaded {len(train_x)} train / {len(val_x)} val images in {time.time() - start:.0f} s")
    head = PatchHead(vision.hidden_size)
    before = evaluate(tower, head, val_x, val_y)
    step, seconds = train_within_budget(
        [*tower.parameters(), *head.parameters()],
        lambda idx: pretraining_loss(head(patch_features(tower, train_x[idx])), train_y[idx]),
        len(train_x), args, "vision pretraining")
    after = evaluate(tower, head, val_x, val_y)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file({PREFIX + k: v.detach().contiguous() for k, v in tower.state_dict().items()}, str(args.output))
    report = {"steps": step, "seconds": round(seconds, 1), "train_images": len(train_x), "image_size": args.image_size,
              "val_before": before, "val_after": after, "batch_size": args.batch_size, "lr": args.lr}
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return report


def load_pretrained_vision(model, path: str | Path) -> int:
    """Copy a ``vision_pretrain`` checkpoint into the model's CLIP tower; returns the number of tensors copied."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no vision-pretraining checkpoint (python -m training.vision_pretrain --output {path})")
    return load_into(model.vlm.model.vision_tower, path, PREFIX, "vision tower")


if __name__ == "__main__":
    main()
