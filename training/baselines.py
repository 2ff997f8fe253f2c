"""Two baselines trained on the same data as the model, to tell what the VLM + multi-view decoding adds:

* ``prior`` — per-vertex contact frequency per object class (global frequency for unseen classes); its decision
  threshold is calibrated on the training set (maximum mean F1) and folded into the output so that 0.5 applies;
* ``direct`` — a DECO-style classifier: the tiny preset's CLIP vision tower (same architecture, trained from
  scratch like the model's) + a learned object-name embedding → MLP → one logit per vertex;
* ``prior2d`` — for 2D models: the mean contact mask per object class in normalised photo coordinates (where in the
  picture contact with a chair usually is), threshold calibrated on the training set like ``prior``.

    python -m training.baselines train --kind prior  --dataset-dir data --output trained_models/baselines/prior.npz
    python -m training.baselines train --kind direct --dataset-dir data --output trained_models/baselines/direct.safetensors --minutes 10
    python -m training.baselines train --kind prior2d --dataset synthcontact_h2dcontact --output trained_models/baselines/prior2d.npz
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm
from transformers import CLIPVisionModel

from datasets.registry import build_dataset
from model.config import build_config
from model.interactvlm import clip_preprocess
from training.templates import ensure_human_template
from utils.metrics import deco_prf, deco_prf_from_counts, logit, sigmoid
from utils.paths import REPO_ROOT


def _dataset(dataset_dir: Path, split: str, config, valid: np.ndarray, name: str = "synthcontact_hcontact"):
    return build_dataset(name, dataset_dir, split, view_set=config.human_view_set, mask_size=config.mask_size,
                         valid_mask=valid, training=False, load_masks=False)


def _labels(dataset) -> tuple[list[str], np.ndarray]:
    names, labels = [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        names.append(sample["class_name"])
        labels.append(sample["vertex_labels"])
    return names, np.stack(labels).astype(np.float32)


@dataclass
class FrequencyPrior:
    per_class: dict[str, np.ndarray]
    global_prior: np.ndarray
    threshold: float

    def __call__(self, class_name: str) -> np.ndarray:
        prior = self.per_class.get(class_name, self.global_prior)
        return np.clip(prior * (0.5 / self.threshold), 0.0, 1.0)

    @classmethod
    def fit(cls, names: list[str], labels: np.ndarray) -> "FrequencyPrior":
        per_class = {n: labels[[i for i, m in enumerate(names) if m == n]].mean(axis=0) for n in sorted(set(names))}
        raw = np.stack([per_class[n] for n in names])
        scores = {t: float(deco_prf(raw, labels, threshold=t)["f1"].mean()) for t in np.linspace(0.05, 0.95, 19)}
        best = max(scores, key=scores.get)
        return cls(per_class, labels.mean(axis=0), float(best))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, names=np.array(list(self.per_class)), priors=np.stack(list(self.per_class.values())),
                            global_prior=self.global_prior, threshold=self.threshold)

    @classmethod
    def load(cls, path: Path) -> "FrequencyPrior":
        with np.load(path) as data:
            return cls(dict(zip([str(n) for n in data["names"]], data["priors"])), data["global_prior"], float(data["threshold"]))


PRIOR_2D_GRID = 64  # the 2D prior's resolution in normalised photo coordinates


def _resize(mask: np.ndarray, shape: tuple[int, int], interpolation: str = "area") -> np.ndarray:
    flag = cv2.INTER_AREA if interpolation == "area" else cv2.INTER_LINEAR
    return cv2.resize(np.asarray(mask, np.float32), (int(shape[1]), int(shape[0])), interpolation=flag)


@dataclass
class MaskPrior:
    """Per-class mean 2D contact mask on a ``PRIOR_2D_GRID``² grid spanning the photo (its aspect ratio ignored)."""

    per_class: dict[str, np.ndarray]
    global_prior: np.ndarray
    threshold: float

    def __call__(self, class_name: str, shape: tuple[int, int]) -> np.ndarray:
        """Contact probability per pixel of a ``shape`` mask, scaled so that 0.5 is the calibrated threshold."""
        prior = _resize(self.per_class.get(class_name, self.global_prior), shape, "linear")
        return np.clip(prior * (0.5 / self.threshold), 0.0, 1.0)

    @classmethod
    def fit(cls, names: list[str], masks: Callable[[int], np.ndarray] | Sequence[np.ndarray]) -> "MaskPrior":
        """Per-class mean on the grid, then the threshold (on a geometric grid) that maximises the mean per-photo F1
        of :func:`utils.metrics.pixel_contact_metrics`. ``masks``: the masks, or ``i → mask i`` so that they are read
        twice instead of held (6 000 photos' masks took 11 GB held in memory); only pixel counts are kept."""
        read = masks if callable(masks) else masks.__getitem__
        grid = (PRIOR_2D_GRID, PRIOR_2D_GRID)
        sums: dict[str, np.ndarray] = {}
        counts: Counter = Counter()
        for i, name in enumerate(tqdm(names, desc="2D prior: class means", unit="mask")):
            sums[name] = sums.get(name, 0.0) + _resize(read(i) == 1, grid)
            counts[name] += 1
        per_class = {n: sums[n] / counts[n] for n in sorted(sums)}
        thresholds = np.geomspace(0.005, 0.5, 25)
        tp, pp, gp = (np.zeros((len(names), len(thresholds))) for _ in range(3))
        probs: dict[tuple[str, tuple[int, int]], np.ndarray] = {}
        for i, name in enumerate(tqdm(names, desc="2D prior: threshold", unit="mask")):
            mask = read(i)
            key = (name, mask.shape)
            if key not in probs:  # what pixel_contact_metrics compares: the sigmoid of the prior's logit
                probs[key] = sigmoid(logit(_resize(per_class[name], mask.shape, "linear")).astype(np.float64))
            valid = mask != -1
            p, g = probs[key][valid], mask[valid] == 1
            above = p[None, :] >= thresholds[:, None]
            tp[i], pp[i], gp[i] = (above & g[None, :]).sum(1), above.sum(1), g.sum()
        scores = [float(np.mean(deco_prf_from_counts(tp[:, k], pp[:, k], gp[:, k])["f1"])) for k in range(len(thresholds))]
        best = float(thresholds[int(np.argmax(scores))])
        return cls(per_class, sum(sums.values()) / sum(counts.values()), best)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, names=np.array(list(self.per_class)), priors=np.stack(list(self.per_class.values())),
                            global_prior=self.global_prior, threshold=self.threshold, kind=np.array("prior2d"))

    @classmethod
    def load(cls, path: Path) -> "MaskPrior":
        with np.load(path) as data:
            if str(data.get("kind", "")) != "prior2d":
                raise ValueError(f"{path} is not a 2D mask prior (train one with `--kind prior2d`)")
            return cls(dict(zip([str(n) for n in data["names"]], data["priors"])), data["global_prior"], float(data["threshold"]))


class DirectVertexClassifier(nn.Module):
    """Image + object name → per-vertex contact logits, without language model, SAM or lifting."""

    def __init__(self, vision_config, class_names: list[str], num_vertices: int, hidden: int = 256) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.vision = CLIPVisionModel(vision_config)
        width = vision_config.hidden_size
        self.class_embedding = nn.Embedding(len(class_names) + 1, width)  # last row: unknown class
        self.head = nn.Sequential(nn.Linear(2 * width, hidden), nn.ReLU(), nn.Linear(hidden, num_vertices))

    def class_ids(self, names: list[str]) -> torch.Tensor:
        index = {n: i for i, n in enumerate(self.class_names)}
        return torch.tensor([index.get(n, len(self.class_names)) for n in names], device=self.head[0].weight.device)

    def forward(self, pixel_values: torch.Tensor, names: list[str]) -> torch.Tensor:
        hidden = self.vision(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:].mean(dim=1)
        return self.head(torch.cat([hidden, self.class_embedding(self.class_ids(names))], dim=-1))


class Baseline:
    """Uniform prediction interface for ``evaluate.py``."""

    def __init__(self, kind: str, predictor, config, template) -> None:
        self.kind, self.predictor, self.config, self.template = kind, predictor, config, template

    @torch.no_grad()
    def predict(self, dataset, indices: list[int], batch_size: int = 16):
        results = []
        for start in range(0, len(indices), batch_size):
            samples = [dataset[i] for i in indices[start: start + batch_size]]
            if self.kind == "prior2d":  # (sample, no vertices, mask logits [1, h, w], found)
                for s in samples:
                    probs = self.predictor(s["class_name"], np.shape(s["masks"])[-2:])
                    results.append((s, None, logit(probs)[None].astype(np.float32), True))
                continue
            if self.kind == "prior":
                probs = [self.predictor(s["class_name"]) for s in samples]
            else:
                pixels = clip_preprocess([s["image"] for s in samples], self.config.vlm_config.vision_config.image_size)
                probs = list(torch.sigmoid(self.predictor(pixels, [s["class_name"] for s in samples])).numpy())
            results.extend((s, p, None, True) for s, p in zip(samples, probs))
        return results


def load_baseline(kind: str, path: Path, device: str = "cpu", dataset_dir: Path | None = None) -> Baseline:
    config = build_config("tiny")
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"baseline file not found: {path} (train it with `python -m training.baselines train`)")
    if kind == "prior2d":
        return Baseline(kind, MaskPrior.load(Path(path)), config, None)
    template = ensure_human_template(dataset_dir or REPO_ROOT / "data", config)
    if kind == "prior":
        return Baseline(kind, FrequencyPrior.load(Path(path)), config, template)
    meta = json.loads(Path(path).with_suffix(".json").read_text())
    model = DirectVertexClassifier(config.vlm_config.vision_config, meta["class_names"], meta["num_vertices"])
    model.load_state_dict(load_file(str(path)))
    return Baseline(kind, model.eval().to(device), config, template)


def train_direct(dataset, config, minutes: float, batch_size: int = 16, lr: float = 1e-3, seed: int = 0,
                 steps: int | None = None) -> DirectVertexClassifier:
    """Train on (image, object) → vertex labels with BCE for ``steps`` optimizer steps (a budget in samples seen,
    comparable with the model's whatever else runs on the machine) or, without ``steps``, for ``minutes``."""
    torch.manual_seed(seed)
    names, labels = _labels(dataset)
    model = DirectVertexClassifier(config.vlm_config.vision_config, sorted(set(names)), labels.shape[1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95))
    positive = float(labels.mean())
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor((1 - positive) / max(positive, 1e-6)).clamp(max=20.0))
    rng = np.random.default_rng(seed)
    images = {}
    deadline = time.time() + minutes * 60
    trained = 0
    with tqdm(desc="direct baseline", unit="step") as bar:
        while (steps is None and time.time() < deadline) or (steps is not None and trained < steps):
            batch = rng.choice(len(names), size=batch_size, replace=False)
            for i in batch:
                if i not in images:
                    images[i] = clip_preprocess([dataset[int(i)]["image"]], config.vlm_config.vision_config.image_size)[0]
            logits = model(torch.stack([images[i] for i in batch]), [names[i] for i in batch])
            loss = loss_fn(logits, torch.from_numpy(labels[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            trained += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.trained_steps = trained
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train"])
    parser.add_argument("--kind", choices=["prior", "direct", "prior2d"], required=True)
    parser.add_argument("--dataset-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--dataset", default="synthcontact_hcontact")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget of the direct classifier")
    parser.add_argument("--steps", type=int, default=None, help="budget in optimizer steps (overrides --minutes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mask-size", type=int, default=256, help="prior2d: longest side of the masks it is fitted on")
    args = parser.parse_args(argv)
    config = build_config("tiny")
    if args.kind == "prior2d":
        train = build_dataset(args.dataset, args.dataset_dir, "train", mask_size=args.mask_size, training=False)
        # straight from the records: the prior needs the masks and class names, not the decoded photos
        prior = MaskPrior.fit([r.class_name for r in train.records], lambda i: train.read_masks(train.records[i])[0])
        prior.save(args.output)
        print(f"2D prior over {len(prior.per_class)} classes, calibrated threshold {prior.threshold:.3f} → {args.output}")
        return
    template = ensure_human_template(args.dataset_dir, config)
    train = _dataset(args.dataset_dir, "train", config, template.valid.cpu().numpy(), args.dataset)
    if args.kind == "prior":
        prior = FrequencyPrior.fit(*_labels(train))
        prior.save(args.output)
        print(f"prior over {len(prior.per_class)} classes, calibrated threshold {prior.threshold:.2f} → {args.output}")
        return
    model = train_direct(train, config, args.minutes, batch_size=args.batch_size, seed=args.seed, steps=args.steps)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.output))
    args.output.with_suffix(".json").write_text(json.dumps({"class_names": model.class_names, "num_vertices": model.head[-1].out_features,
                                                            "steps": model.trained_steps, "batch_size": args.batch_size}))
    print(f"direct classifier: {model.trained_steps} steps of {args.batch_size} → {args.output}")


if __name__ == "__main__":
    main()
