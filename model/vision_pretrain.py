"""Vision pretraining of the tiny CLIP tower on SynthContact's exact 2D labels (a stand-in for CLIP's pretraining).

No pretrained CLIP weights can be had here, and a vision tower trained from scratch only through the language model's
answers barely moves (its gradients are about 1e-3 of the language model's). This stage teaches it first what every
patch of a photo shows: for each 14×14 patch of the 112-px CLIP input, the fraction of its pixels that are each body
part, each body part *in contact* (the part's pixels inside the image's 2D contact masks), each object class and
background (``labels_2d/<stem>.png`` and ``contact_render_2d``, rendered with every SynthContact image), learned
with a linear head and a soft-target cross-entropy on the tower's layer −2 features, the ones LLaVA passes to the
language model. The head is thrown away; the tower's weights go to a safetensors file that a training recipe loads
(``pretrained_vision``).

    python -m model.vision_pretrain --data-dir data --output trained_models/vision/tiny_clip_synthcontact.safetensors \
        [--minutes 8] [--batch-size 32] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.config import build_config
from model.interactvlm import clip_preprocess
from utils.paths import REPO_ROOT

# labels_2d values: 0 background, 1 + part (1..16), 32 + object class (see preprocess_data.synthcontact); a body pixel
# in contact with any object becomes 47 + its part (48..63)
NUM_CLASSES = 64
NUM_PARTS = 16
CONTACT_OFFSET = 47
PREFIX = "vlm.model.vision_tower."


def label_crop(labels: np.ndarray, size: int) -> np.ndarray:
    """The label map through CLIP's resize-shortest-side + centre crop, by nearest neighbour."""
    from PIL import Image

    h, w = labels.shape
    scale = size / min(h, w)
    nh, nw = max(size, int(round(h * scale))), max(size, int(round(w * scale)))
    resized = np.asarray(Image.fromarray(labels).resize((nw, nh), Image.NEAREST))
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top: top + size, left: left + size]


def patch_targets(labels: np.ndarray, patch: int) -> np.ndarray:
    """``[S, S]`` labels → ``[P, NUM_CLASSES]`` class fractions per patch (row-major, as CLIP orders its patches)."""
    s = labels.shape[0] // patch
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[np.minimum(labels, NUM_CLASSES - 1)]
    return one_hot.reshape(s, patch, s, patch, NUM_CLASSES).mean(axis=(1, 3)).reshape(s * s, NUM_CLASSES)


def load_split(split_dir: Path, image_size: int, patch: int, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    metas = [json.loads(line) for line in (split_dir / "meta.jsonl").read_text().splitlines()]
    metas = [m for m in metas if "labels_2d" in m][:limit]
    if not metas:
        raise FileNotFoundError(f"{split_dir}: no sample with labels_2d (regenerate with the current "
                                "preprocess_data.synthcontact)")
    pixels, targets = [], []
    for m in metas:
        image = np.asarray(Image.open(split_dir / m["imgname"]).convert("RGB"))
        labels = np.asarray(Image.open(split_dir / m["labels_2d"]["path"])).copy()
        contact = np.zeros(labels.shape, dtype=bool)
        for obj in m["objects"]:
            if obj["contact_vertices"]:
                contact |= np.asarray(Image.open(split_dir / "contact_render_2d" / obj["name"] /
                                                 f"{m['stem']}_contact_mask.png")) > 0
        body = (labels >= 1) & (labels <= NUM_PARTS)
        labels[body & contact] += CONTACT_OFFSET
        if labels.shape != image.shape[:2]:
            raise ValueError(f"{split_dir / m['labels_2d']['path']}: {labels.shape} label map for a {image.shape[:2]} image")
        pixels.append(clip_preprocess([image], image_size)[0])
        targets.append(torch.from_numpy(patch_targets(label_crop(labels, image_size), patch)))
    return torch.stack(pixels), torch.stack(targets)


class PatchHead(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.linear = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(features))


def patch_features(tower, pixels: torch.Tensor, layer: int = -2) -> torch.Tensor:
    out = tower(pixel_values=pixels, output_hidden_states=True)
    return out.hidden_states[layer][:, 1:]  # CLS dropped, as LLaVA's "default" feature selection


def evaluate(tower, head, pixels, targets, batch_size: int = 64) -> dict[str, float]:
    """Soft cross-entropy and the accuracy of the patch's majority class (background-only patches excluded)."""
    tower.eval()
    losses, correct, counted = [], 0, 0
    with torch.no_grad():
        for i in range(0, len(pixels), batch_size):
            logits = head(patch_features(tower, pixels[i: i + batch_size]))
            t = targets[i: i + batch_size]
            losses.append(float(-(t * F.log_softmax(logits, -1)).sum(-1).mean()))
            fg = t[..., 0] < 0.5
            correct += int((logits.argmax(-1) == t.argmax(-1))[fg].sum())
            counted += int(fg.sum())
    tower.train()
    return {"loss": float(np.mean(losses)), "foreground_patch_accuracy": correct / max(1, counted)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--root-name", default="synthcontact")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    from model.interactvlm import InteractVLMForCausalLM
    from model.io import attach_tokenizer
    from model.tokenizer import build_tiny_tokenizer

    config = build_config("tiny")
    attach_tokenizer(config, build_tiny_tokenizer())
    tower = InteractVLMForCausalLM(config).vlm.model.vision_tower  # the tiny preset's own initialisation
    vision = config.vlm_config.vision_config
    root = args.data_dir / args.root_name
    start = time.time()
    train_x, train_y = load_split(root / "train", vision.image_size, vision.patch_size)
    val_x, val_y = load_split(root / "val", vision.image_size, vision.patch_size, limit=200)
    print(f"loaded {len(train_x)} train / {len(val_x)} val images in {time.time() - start:.0f} s")
    head = PatchHead(vision.hidden_size)
    params = [*tower.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    before = evaluate(tower, head, val_x, val_y)
    step, start = 0, time.time()
    budget = args.minutes * 60
    while time.time() - start < budget and (args.max_steps is None or step < args.max_steps):
        idx = torch.from_numpy(rng.choice(len(train_x), size=min(args.batch_size, len(train_x)), replace=False))
        logits = head(patch_features(tower, train_x[idx]))
        loss = -(train_y[idx] * F.log_softmax(logits, -1)).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        lr = args.lr * min(1.0, (step + 1) / 50)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step}: loss {float(loss):.4f} ({time.time() - start:.0f} s)", flush=True)
    after = evaluate(tower, head, val_x, val_y)
    from safetensors.torch import save_file

    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file({PREFIX + k: v.detach().contiguous() for k, v in tower.state_dict().items()}, str(args.output))
    report = {"steps": step, "seconds": round(time.time() - start, 1), "train_images": len(train_x),
              "val_before": before, "val_after": after, "batch_size": args.batch_size, "lr": args.lr}
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return report


def load_pretrained_vision(model, path: str | Path) -> int:
    """Copy a ``vision_pretrain`` checkpoint into the model's CLIP tower; returns the number of tensors copied."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no vision-pretraining checkpoint (python -m model.vision_pretrain --output {path})")
    state = load_file(str(path))
    tower = model.vlm.model.vision_tower
    own = tower.state_dict()
    tensors = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    bad = [k for k, v in tensors.items() if k not in own or own[k].shape != v.shape]
    if bad or len(tensors) != len(own):
        raise ValueError(f"{path}: does not fit this model's vision tower ({len(bad)} mismatched, "
                         f"{len(tensors)} of {len(own)} tensors)")
    tower.load_state_dict(tensors)
    return len(tensors)


if __name__ == "__main__":
    main()
