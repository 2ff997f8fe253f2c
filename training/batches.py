"""One training step's data plumbing: a collated batch → the model's inputs, and its outputs → per-sample losses."""

from __future__ import annotations

import torch

from model.losses import LossWeights, combine_losses
from training.templates import sample_template


def model_inputs(model, batch: dict) -> dict:
    """The keyword arguments of ``model.forward`` for a collated batch (each sample's SAM template resolved)."""
    device = model.device
    metas = batch.get("meta") or [None] * len(batch["templates"])
    labels = batch.get("vertex_labels") or [None] * len(batch["templates"])
    photos = batch.get("photos") or [None] * len(batch["templates"])
    templates = [sample_template(model, key or "human", meta, None if lab is None else len(lab), photo)
                 for key, meta, lab, photo in zip(batch["templates"], metas, labels, photos)]
    return {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device),
            "labels": batch["labels"].to(device), "clip_pixel_values": batch["clip_pixel_values"].to(device),
            "templates": templates}


def sample_losses(model, out, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Assemble per-sample predictions (first seg token of each sample) and targets into ``combine_losses``."""
    batch_size = len(batch["tasks"])
    pred_masks, gt_masks, pred_3d, gt_3d, tags = [], [], [], [], []
    first = {}
    if out.seg_batch_index is not None:
        for k, b in enumerate(out.seg_batch_index.tolist()):
            first.setdefault(b, k)
    for b in range(batch_size):
        task, k = batch["tasks"][b], first.get(b)
        target = batch["masks"][b]
        if task == "vqa" or k is None or target is None:
            tags.append("vqa")  # no mask: nothing to supervise (also when truncation cut the seg token)
            pred_masks.append(None), gt_masks.append(None), pred_3d.append(None), gt_3d.append(None)
            continue
        tags.append(task)
        mask = out.mask_logits[k]
        pred_masks.append(torch.sigmoid(mask) if task == "oafford" else mask)
        gt_masks.append(torch.as_tensor(target, device=mask.device, dtype=torch.float32))
        labels = batch["vertex_labels"][b]
        pred_3d.append(out.vertex_probs[k] if labels is not None else None)
        gt_3d.append(torch.as_tensor(labels, device=mask.device, dtype=torch.float32) if labels is not None else None)
    total, parts = combine_losses(out.loss, tags, pred_masks, gt_masks, pred_3d, gt_3d,
                                  weights=LossWeights.from_config(model.config))
    return total, {k: float(v) for k, v in parts.items()}
