"""Pretraining of the 2D model's tiny SAM image encoder on SynthContact's exact 2D labels.

The 2D model (``synth-tiny-2d``) segments the photo itself, so its SAM image encoder has to read photos; no SAM
weights can be had here, and trained from scratch through the contact masks alone (0.1 % of a photo's pixels, a few
hundred masks per epoch) it learned little: pixel F1 0.065. This stage teaches the encoder what each pixel of the
SAM input shows, from the labels rendered with every SynthContact training image, at the mask decoder's low-res grid
(4× the embedding grid, as SAM's upscaling):

* which region a pixel shows: background, each body part, each object class (cross-entropy; padding ignored);
* whether the body there is in contact with each object class (the image-frame contact masks
  ``contact_render_2d/<object>/<stem>_contact_mask.png``, the 2D model's own targets; binary cross-entropy with a
  positive weight, since contact is ~1 % of the grid's cells).

A read-out of the contact class is what the 2D model's mask decoder then has to select with the language model's
prompt ("which parts touch the <object>"). The head (two transposed convolutions, as SAM's upscaling, then a 1×1
convolution) is thrown away; the encoder's weights go to a safetensors file that a recipe loads
(``pretrained_sam_encoder``).

    python -m training.sam_pretrain --data-dir data --output trained_models/vision/tiny_sam512_synthcontact.safetensors \
        [--minutes 18] [--batch-size 8] [--lr 1e-3] [--limit 4000]   # the defaults: the measured run
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from model.config import build_config
from model.sam import SAM_PIXEL_MEAN, SAM_PIXEL_STD, build_sam_model, resize_longest_side
from training.vision_pretrain import NUM_OBJECTS, NUM_REGIONS, labelled_samples, region_labels
from training.pretrain_loop import load_into, train_within_budget
from utils.paths import REPO_ROOT

PREFIX = "sam.vision_encoder."
IGNORE = 255  # region label of the SAM input's padding
# the mask decoder's low-res masks are 4× the tiny encoder's embedding grid (16-px patches): one cell per 4 input pixels
CELL = 4
# contact is ~0.03 % of the grid's cells per object class: at a positive weight of 20 (18 min, 1 257 steps) the
# contact read-out never fired (validation F1 0.000) while the regions learned (foreground accuracy 0.50)
CONTACT_POS_WEIGHT = 200.0
DEFAULT_RECIPE = "synth-tiny-2d"


@dataclass
class DenseTargets:
    """``regions`` [N, G, G] uint8 (0 background, 1..16 parts, 17..25 object classes, 255 padding) and
    ``contact`` [N, NUM_OBJECTS, G, G] bool (body in contact with that object class) on the low-res grid."""

    regions: torch.Tensor
    contact: torch.Tensor

    def __getitem__(self, index) -> "DenseTargets":
        return DenseTargets(self.regions[index], self.contact[index])


def padded_input(image: np.ndarray, size: int, resample) -> tuple[np.ndarray, tuple[int, int]]:
    """An image (or label map) resized longest-side-to-``size`` and padded bottom/right, as ``sam_preprocess`` does;
    returns the square array and the resized ``(h, w)``."""
    h, w = resize_longest_side(*image.shape[:2], size)
    resized = np.asarray(Image.fromarray(image).resize((w, h), resample))
    out = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    out[:h, :w] = resized
    return out, (h, w)


def sample_dense_targets(labels: np.ndarray, contact_by_object: dict[int, np.ndarray], size: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """One photo's targets on the ``size / CELL`` grid: regions by nearest neighbour (padding ``IGNORE``), contact
    cells where any photo pixel of the cell is contact (a few-pixel contact survives)."""
    grid = size // CELL
    regions, (h, w) = padded_input(region_labels(labels), size, Image.NEAREST)
    regions[h:, :] = IGNORE
    regions[:, w:] = IGNORE
    regions = regions[::CELL, ::CELL]
    contact = np.zeros((NUM_OBJECTS, grid, grid), dtype=bool)
    for index, mask in contact_by_object.items():
        area = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((w, h), Image.BOX))
        full = np.zeros((size, size), dtype=np.float32)
        full[:h, :w] = area
        contact[index] = full.reshape(grid, CELL, grid, CELL).max(axis=(1, 3)) > 0.05
    return regions, contact


def load_split(split_dir: Path, size: int, limit: int | None = None, progress: bool = True
               ) -> tuple[torch.Tensor, DenseTargets]:
    """uint8 SAM inputs ``[N, S, S, 3]`` and dense targets of every sample of a split that has ``labels_2d``."""
    images, regions, contacts = [], [], []
    for image, labels, contact in labelled_samples(split_dir, limit, progress):
        r, c = sample_dense_targets(labels, contact, size)
        images.append(torch.from_numpy(padded_input(image, size, Image.BILINEAR)[0]))
        regions.append(torch.from_numpy(r))
        contacts.append(torch.from_numpy(c))
    return torch.stack(images), DenseTargets(torch.stack(regions), torch.stack(contacts))


def normalise(images: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, S, S, 3]`` → SAM's normalised ``[B, 3, S, S]``, zero on the padding (``sam_preprocess`` pads after
    normalising), which is where the grid's ``regions`` are ``IGNORE``."""
    x = images.permute(0, 3, 1, 2).float()
    x = (x - torch.tensor(SAM_PIXEL_MEAN)[:, None, None]) / torch.tensor(SAM_PIXEL_STD)[:, None, None]
    valid = (regions != IGNORE).float()[:, None]
    return x * F.interpolate(valid, scale_factor=CELL, mode="nearest")


class DenseHead(nn.Module):
    """SAM-style 4× upscaling of the image embeddings, then per-cell region and contact logits."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose2d(channels, channels // 2, 2, stride=2)
        self.norm = nn.GroupNorm(1, channels // 2)
        self.up2 = nn.ConvTranspose2d(channels // 2, channels // 4, 2, stride=2)
        self.out = nn.Conv2d(channels // 4, NUM_REGIONS + NUM_OBJECTS, 1)

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.gelu(self.up2(F.gelu(self.norm(self.up1(embeddings)))))
        logits = self.out(x)
        return logits[:, :NUM_REGIONS], logits[:, NUM_REGIONS:]


def dense_loss(outputs: tuple[torch.Tensor, torch.Tensor], targets: DenseTargets) -> tuple[torch.Tensor, dict]:
    regions, contact = outputs
    region_loss = F.cross_entropy(regions, targets.regions.long(), ignore_index=IGNORE)
    valid = (targets.regions != IGNORE)[:, None].float()
    contact_loss = (F.binary_cross_entropy_with_logits(contact, targets.contact.float(), reduction="none",
                                                       pos_weight=torch.tensor(CONTACT_POS_WEIGHT)) * valid).sum()
    contact_loss = contact_loss / valid.sum().clamp(min=1) / NUM_OBJECTS
    return region_loss + contact_loss, {"region": float(region_loss), "contact": float(contact_loss)}


def evaluate(encoder, head, images: torch.Tensor, targets: DenseTargets, batch_size: int = 16) -> dict[str, float]:
    """Losses, the region accuracy of foreground cells and the cell-level F1 of the contact read-out."""
    encoder.eval()
    losses, correct, counted, tp, predicted, true = [], 0, 0, 0, 0, 0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            t = targets[i: i + batch_size]
            out = head(encoder(normalise(images[i: i + batch_size], t.regions))[0])
            losses.append(dense_loss(out, t)[1])
            fg = (t.regions != IGNORE) & (t.regions != 0)
            correct += int((out[0].argmax(1) == t.regions.long())[fg].sum())
            counted += int(fg.sum())
            pred = out[1] > 0
            tp += int((pred & t.contact).sum())
            predicted += int(pred.sum())
            true += int(t.contact.sum())
    encoder.train()
    report = {k: float(np.mean([d[k] for d in losses])) for k in losses[0]}
    report.update({"foreground_region_accuracy": correct / max(1, counted),
                   "contact_f1": 2 * tp / max(1, predicted + true)})
    return report


def build_encoder(recipe_name: str = DEFAULT_RECIPE):
    """The recipe's SAM image encoder at its own initialisation (its input size fixes the position tables)."""
    from training.recipes import get_recipe

    recipe = get_recipe(recipe_name)
    config = build_config(recipe.preset, **recipe.model_overrides)
    return build_sam_model(config.sam_config).vision_encoder, config.sam_config.vision_config.image_size


def load_pretrained_sam_encoder(model, path: str | Path) -> int:
    """Copy a ``sam_pretrain`` checkpoint into the model's SAM image encoder; returns the number of tensors copied."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no SAM-encoder pretraining checkpoint "
                                f"(python -m training.sam_pretrain --output {path})")
    return load_into(model.sam.vision_encoder, path, PREFIX, "SAM image encoder")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--root-name", default="synthcontact")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help="the 2D recipe whose SAM encoder is pretrained")
    parser.add_argument("--minutes", type=float, default=18.0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--limit", type=int, default=4000,
                        help="at most this many training photos (memory: ~0.8 MB each at 512 px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    encoder, size = build_encoder(args.recipe)
    root = args.data_dir / args.root_name
    start = time.time()
    train_x, train_y = load_split(root / "train", size, limit=args.limit)
    val_x, val_y = load_split(root / "val", size, limit=200)
    print(f"loaded {len(train_x)} train / {len(val_x)} val photos at {size} px in {time.time() - start:.0f} s")
    head = DenseHead(encoder.config.output_channels)
    before = evaluate(encoder, head, val_x, val_y)

    def batch_loss(idx: torch.Tensor) -> tuple[torch.Tensor, dict]:
        batch = train_y[idx]
        return dense_loss(head(encoder(normalise(train_x[idx], batch.regions))[0]), batch)

    step, seconds = train_within_budget([*encoder.parameters(), *head.parameters()], batch_loss, len(train_x), args,
                                        "SAM encoder pretraining")
    after = evaluate(encoder, head, val_x, val_y)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file({PREFIX + k: v.detach().contiguous() for k, v in encoder.state_dict().items()}, str(args.output))
    report = {"recipe": args.recipe, "steps": step, "seconds": round(seconds, 1), "train_images": len(train_x),
              "image_size": size, "val_before": before, "val_after": after, "batch_size": args.batch_size,
              "lr": args.lr}
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
