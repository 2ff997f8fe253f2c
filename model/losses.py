"""InteractVLM training losses: the original's terms and weights, with its bugs fixed.

The total loss is

    L = w_ce·CE + w_bce·Focal2D + w_dice·Dice2D + w_bce·MSE2D + w_hC·L_hC + w_oC·(L_oA + L_oC)

* 2D terms act on the SAM masks of the ``V`` rendered views (``[V, H, W]`` per sample). Target pixels equal to
  :data:`MASK_IGNORE_LABEL` (``-1``, outside the valid region) never contribute.
* 3D terms act on per-vertex / per-point probabilities produced by lifting the 2D masks
  (``model/lifting.py``): human contact (L_hC), object affordance on point clouds (L_oA) and object
  mesh contact (L_oC).

Building blocks (each returns one loss per sample, shape ``[B]``):

* :func:`focal_bce_2d`  focal-modulated BCE over valid pixels, mean over pixels then views.
* :func:`dice_2d`       per-view soft dice over valid pixels, mean over views.
* :func:`mse_2d`        per-view MSE over valid pixels, mean over views (object-affordance heat maps).
* :func:`focal_bce_3d`  per-vertex focal BCE + sparsity prior (L_hC, L_oC).
* :func:`affordance_3d` point-cloud affordance loss (L_oA) as the original *intended* it: the original passes the
  mask paths where its lifting module expects the dataset names, so every sample is skipped and its L_oA is a
  constant without gradient.

:func:`combine_losses` applies them per sample according to a task tag and forms the weighted total. All losses are computed in float32 whatever the input dtype.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.geometry.projection import MASK_IGNORE_LABEL

__all__ = [
    "MASK_IGNORE_LABEL",
    "TASKS",
    "MASK_TASKS",
    "focal_bce_2d",
    "dice_2d",
    "mse_2d",
    "focal_bce_3d",
    "affordance_3d",
    "LossWeights",
    "combine_losses",
]

TASKS = ("hcontact", "oafford", "ocontact", "h2dcontact", "vqa")
"""Per-sample task tags understood by :func:`combine_losses`."""

MASK_TASKS = ("hcontact", "oafford", "ocontact", "h2dcontact")
"""Tags whose samples carry 2D masks (every tag but ``vqa``)."""

PROB_TASKS = ("oafford",)
"""Tags whose 2D predictions are already probabilities (the model applies the sigmoid); the others are logits."""

_PROB_EPS = 1e-6  # probabilities are clamped to [1e-6, 1 - 1e-6] before a log (the original's clamp in its 3D losses)


# --------------------------------------------------------------------------------------------------------------------
# Shape checks
# --------------------------------------------------------------------------------------------------------------------


def _check_pair(fn: str, pred: Tensor, target: Tensor, layout: str) -> None:
    """Raise a ``ValueError`` naming the tensor at fault unless both are ``len(layout)``-D and of equal shape."""
    ndim = len(layout.split(","))
    if pred.dim() != ndim:
        raise ValueError(f"{fn}: `pred` must have shape [{layout}] ({ndim}-D); got {list(pred.shape)}")
    if target.shape != pred.shape:
        raise ValueError(
            f"{fn}: `target` must have the same shape as `pred` [{layout}] = {list(pred.shape)}; "
            f"got {list(target.shape)}"
        )


# --------------------------------------------------------------------------------------------------------------------
# 2D losses: pred / target are [B, V, H, W]
# --------------------------------------------------------------------------------------------------------------------


def _valid_and_clean(target: Tensor) -> Tuple[Tensor, Tensor]:
    """Return (float mask of valid pixels, float target with ignore pixels set to 0)."""
    target = target.float()
    valid = target != MASK_IGNORE_LABEL
    return valid.float(), torch.where(valid, target, torch.zeros_like(target))


def _mean_over_valid(per_pixel: Tensor, valid: Tensor) -> Tensor:
    """[B, V, H, W] → [B]: mean over valid pixels per view (0 for a view without any), then mean over all V views."""
    num = (per_pixel * valid).flatten(2).sum(-1)
    count = valid.flatten(2).sum(-1)
    per_view = num / count.clamp(min=1.0)  # a view with no valid pixel gives 0/1 = 0 and still counts below
    return per_view.mean(-1)


def focal_bce_2d(
    pred: Tensor, target: Tensor, alpha: float = 0.5, gamma: float = 2.0, from_logits: bool = True
) -> Tensor:
    """Focal-modulated binary cross-entropy per sample (the original's ``mask_bce_loss``, weight ``bce_loss_weight``).

    For every valid pixel (``target != -1``): ``alpha · (1 − p_t)^gamma · BCE`` with ``p_t = exp(−BCE)`` (= ``p`` on
    positive pixels, ``1 − p`` on negative ones). The per-pixel values are averaged over the valid pixels of each view,
    then over the views. A view with no valid pixel contributes 0 but still counts in the view mean.

    Args:
        pred: ``[B, V, H, W]`` logits (``from_logits=True``) or probabilities (``from_logits=False``; clamped to
            ``[1e-6, 1 − 1e-6]`` before the logarithms).
        target: ``[B, V, H, W]`` in ``[0, 1]`` (binary masks or soft heat maps), ``-1`` for ignored pixels.
        alpha: constant focal weight (``--bce_loss_alpha``, 0.5 in the released configs).
        gamma: focusing exponent.
        from_logits: see ``pred``.

    Returns:
        ``[B]`` per-sample losses.
    """
    _check_pair("focal_bce_2d", pred, target, "B, V, H, W")
    valid, t = _valid_and_clean(target)
    pred = pred.float()
    if from_logits:
        bce = F.binary_cross_entropy_with_logits(pred, t, reduction="none")
    else:
        p = pred.clamp(_PROB_EPS, 1.0 - _PROB_EPS)
        bce = -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p))
    focal = alpha * (1.0 - torch.exp(-bce)) ** gamma * bce
    return _mean_over_valid(focal, valid)


def dice_2d(
    pred: Tensor,
    target: Tensor,
    scale: float = 1.0,
    eps: float = 1e-5,
    from_logits: bool = True,
    empty_views: str = "count",
) -> Tensor:
    """Per-view soft dice loss, averaged over views (the original's ``mask_dice_loss``).

    Per view, over valid pixels (``target != -1``), with ``p = sigmoid(pred)`` (or ``pred`` itself when
    ``from_logits=False``) and ``s = scale``::

        1 − (2·Σ (p/s)·t + eps) / (Σ p/s + Σ t/s + eps)

    Views whose target has no positive pixel (no valid pixel with ``t > 0``) are handled by ``empty_views``:

    * ``"count"`` (default, the original's rule): they contribute 0 **and still count** in the view mean, so a sample
      with 1 of 4 views non-empty gets a quarter of that view's dice loss;
    * ``"skip"``: they are excluded from the view mean (a sample whose views are all empty gets 0).

    Args:
        pred: ``[B, V, H, W]`` logits or probabilities.
        target: ``[B, V, H, W]`` in ``[0, 1]``, ``-1`` for ignored pixels.
        scale: ``--dice_loss_scale`` (1.0 in the released configs; 1000 in old ones).
        eps: smoothing term.
        from_logits: apply a sigmoid to ``pred`` first.
        empty_views: ``"count"`` or ``"skip"``.

    Returns:
        ``[B]`` per-sample losses.
    """
    _check_pair("dice_2d", pred, target, "B, V, H, W")
    if empty_views not in ("count", "skip"):
        raise ValueError(f"dice_2d: `empty_views` must be 'count' or 'skip'; got {empty_views!r}")
    valid, t = _valid_and_clean(target)
    p = torch.sigmoid(pred.float()) if from_logits else pred.float()
    p = p * valid / scale
    numerator = 2.0 * (p * t).flatten(2).sum(-1)
    denominator = p.flatten(2).sum(-1) + (t / scale).flatten(2).sum(-1)
    per_view = 1.0 - (numerator + eps) / (denominator + eps)  # [B, V]
    non_empty = ((t > 0).float() * valid).flatten(2).sum(-1) > 0
    per_view = per_view * non_empty
    if empty_views == "count":
        return per_view.mean(-1)
    return per_view.sum(-1) / non_empty.sum(-1).clamp(min=1)


def mse_2d(pred_probs: Tensor, target: Tensor) -> Tensor:
    """Per-view mean squared error over valid pixels, averaged over views (the original's ``mask_l2_loss``).

    Used for object-affordance heat-map targets. A view with no valid pixel contributes 0 but still counts.

    Args:
        pred_probs: ``[B, V, H, W]`` probabilities.
        target: ``[B, V, H, W]`` heat map in ``[0, 1]``, ``-1`` for ignored pixels.

    Returns:
        ``[B]`` per-sample losses.
    """
    _check_pair("mse_2d", pred_probs, target, "B, V, H, W")
    valid, t = _valid_and_clean(target)
    return _mean_over_valid((pred_probs.float() - t) ** 2, valid)


# --------------------------------------------------------------------------------------------------------------------
# 3D losses: pred / target are [B, N] per-vertex (per-point) probabilities / labels
# --------------------------------------------------------------------------------------------------------------------


def focal_bce_3d(
    pred_probs: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0, sparsity: float = 0.01
) -> Tensor:
    """Per-vertex focal BCE plus a sparsity prior (L_hC and L_oC: the original's ``HumanContact3DLoss`` and
    ``ObjectContact3DLoss``).

    ``p`` is clamped to ``[1e-6, 1 − 1e-6]``; per vertex ``alpha · (1 − p_t)^gamma · BCE(p, t)`` with
    ``p_t = p·t + (1 − p)·(1 − t)`` (the same constant-alpha modulation as :func:`focal_bce_2d`); the loss is the mean
    over vertices plus ``sparsity · mean(p)`` (which pushes the many invisible / non-contact vertices towards 0).

    Args:
        pred_probs: ``[B, N]`` lifted per-vertex probabilities.
        target: ``[B, N]`` per-vertex labels in ``[0, 1]``.
        alpha, gamma: focal parameters.
        sparsity: weight of the ``mean(p)`` prior.

    Returns:
        ``[B]`` per-sample losses.
    """
    _check_pair("focal_bce_3d", pred_probs, target, "B, N")
    p = pred_probs.float().clamp(_PROB_EPS, 1.0 - _PROB_EPS)
    t = target.float()
    bce = -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p))
    p_t = p * t + (1.0 - p) * (1.0 - t)
    focal = alpha * (1.0 - p_t) ** gamma * bce
    return focal.mean(-1) + sparsity * p.mean(-1)


def affordance_3d(pred_probs: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Point-cloud affordance loss L_oA as the original's ``ObjectAfford3DLoss`` intended it (there it is a constant)::

        0.5 · FocalCE + 0.3 · (1.5 − dice_pos − dice_neg) + 0.8 · MSE + 0.4 · L1

    with, per sample over the N points (eps = 1e-6):

    * ``FocalCE = mean[ −alpha·(1 − p)^gamma·t·log(p + eps) − (1 − alpha)·p^gamma·(1 − t)·log(1 − p + eps) ]``
      (the alpha-balanced focal cross-entropy of the affordance literature, soft targets allowed);
    * ``dice_pos = (Σ p·t + eps) / (Σ (p + t) + eps)`` and ``dice_neg`` the same on ``(1 − p, 1 − t)``. This is the
      affordance-literature convention *without* the factor 2, so each dice lies in ``[0, 0.5]`` and the dice term in
      ``[0.5, 1.5]`` (hence the constant 1.5);
    * ``MSE = mean (p − t)²`` and ``L1 = mean |p − t|``.

    The logarithms use ``+eps`` rather than a clamp, so the gradient is non-zero everywhere.

    Args:
        pred_probs: ``[B, N]`` lifted per-point probabilities.
        target: ``[B, N]`` per-point affordance in ``[0, 1]``.

    Returns:
        ``[B]`` per-sample losses.
    """
    _check_pair("affordance_3d", pred_probs, target, "B, N")
    eps = 1e-6
    p, t = pred_probs.float(), target.float()
    ce_pos = -alpha * (1.0 - p) ** gamma * t * torch.log(p + eps)
    ce_neg = -(1.0 - alpha) * p**gamma * (1.0 - t) * torch.log(1.0 - p + eps)
    focal_ce = (ce_pos + ce_neg).mean(-1)
    dice_pos = ((p * t).sum(-1) + eps) / ((p + t).sum(-1) + eps)
    dice_neg = (((1.0 - p) * (1.0 - t)).sum(-1) + eps) / ((2.0 - p - t).sum(-1) + eps)
    mse = ((p - t) ** 2).mean(-1)
    l1 = (p - t).abs().mean(-1)
    return 0.5 * focal_ce + 0.3 * (1.5 - dice_pos - dice_neg) + 0.8 * mse + 0.4 * l1


# --------------------------------------------------------------------------------------------------------------------
# Weights and the combiner
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class LossWeights:
    """Loss weights and 2D-loss parameters (defaults = the values of the original's released training configs)."""

    ce: float = 1.0  # --ce_loss_weight
    bce: float = 2.0  # --bce_loss_weight (Focal2D and MSE2D)
    dice: float = 1.0  # --dice_loss_weight
    bce_alpha: float = 0.5  # --bce_loss_alpha
    dice_scale: float = 1.0  # --dice_loss_scale
    hcontact_3d: float = 3.0  # --hC_loss_weight
    ocontact_3d: float = 3.0  # --oC_loss_weight (L_oA and L_oC)

    _CONFIG_KEYS = {
        "ce": "ce_loss_weight",
        "bce": "bce_loss_weight",
        "dice": "dice_loss_weight",
        "bce_alpha": "bce_loss_alpha",
        "dice_scale": "dice_loss_scale",
        "hcontact_3d": "hC_loss_weight",
        "ocontact_3d": "oC_loss_weight",
    }

    @classmethod
    def from_config(cls, obj: Any) -> "LossWeights":
        """Build from any object (config, argparse namespace) with the original's attribute names.

        Reads ``ce_loss_weight, bce_loss_weight, dice_loss_weight, bce_loss_alpha, dice_loss_scale, hC_loss_weight,
        oC_loss_weight`` where present (dicts are accepted too); missing ones keep their defaults.
        """
        get = (lambda k: obj.get(k)) if isinstance(obj, dict) else (lambda k: getattr(obj, k, None))
        values = {}
        for f in fields(cls):
            value = get(cls._CONFIG_KEYS[f.name])
            if value is not None:
                values[f.name] = float(value)
        return cls(**values)


MaybeTensors = Union[Tensor, Sequence[Optional[Tensor]], None]


def _item(seq: MaybeTensors, i: int) -> Optional[Tensor]:
    return None if seq is None else seq[i]


def _sum_per_sample(
    fn: Callable[[Tensor, Tensor], Tensor],
    preds: MaybeTensors,
    targets: MaybeTensors,
    indices: List[int],
    what: str,
    layout: str,
) -> Tensor:
    """Sum over ``indices`` of ``fn`` applied per sample, batching samples whose shapes agree.

    ``preds`` / ``targets`` are either a stacked tensor ``[B, ...]`` or a length-B sequence of per-sample tensors
    (``layout`` describes one sample). Samples are grouped by shape and each group goes through ``fn`` in one call.
    """
    if isinstance(preds, Tensor) and isinstance(targets, Tensor):
        idx = torch.as_tensor(indices, device=preds.device)
        return fn(preds[idx], targets[idx.to(targets.device)]).sum()
    groups: Dict[Tuple[int, ...], List[int]] = defaultdict(list)
    ndim = len(layout.split(","))
    for i in indices:
        p, t = _item(preds, i), _item(targets, i)
        if p is None or t is None:
            missing = "prediction" if p is None else "target"
            raise ValueError(f"combine_losses: sample {i} needs a {what} {missing} of shape [{layout}]; got None")
        if p.dim() != ndim:
            raise ValueError(
                f"combine_losses: {what} prediction of sample {i} must have shape [{layout}]; got {list(p.shape)}"
            )
        if t.shape != p.shape:
            raise ValueError(
                f"combine_losses: {what} target of sample {i} must have the prediction's shape "
                f"[{layout}] = {list(p.shape)}; got {list(t.shape)}"
            )
        groups[tuple(p.shape)].append(i)
    total = None
    for members in groups.values():
        p = torch.stack([preds[i] for i in members])
        t = torch.stack([targets[i].to(p.device) for i in members])
        s = fn(p, t).sum()
        total = s if total is None else total + s
    return total


def _first_device(*containers: MaybeTensors) -> torch.device:
    """Device of the first tensor found in the containers (CPU if none), for a CE loss given as a float."""
    for c in containers:
        if isinstance(c, Tensor):
            return c.device
        for x in c or ():
            if x is not None:
                return x.device
    return torch.device("cpu")


def _group_by_task(
    tags: Sequence[str],
    pred_masks: MaybeTensors,
    gt_masks: MaybeTensors,
    pred_3d: Optional[Sequence[Optional[Tensor]]],
    gt_3d: Optional[Sequence[Optional[Tensor]]],
) -> Dict[str, List[int]]:
    """Sample indices per task tag, after checking the tags and that every container has one entry per sample."""
    batch = len(tags)
    if batch == 0:
        raise ValueError("combine_losses: `tags` is empty; expected one task tag per sample")
    by_task: Dict[str, List[int]] = defaultdict(list)
    for i, tag in enumerate(tags):
        if tag not in TASKS:
            raise ValueError(f"combine_losses: unknown task tag {tag!r} for sample {i}; expected one of {TASKS}")
        by_task[tag].append(i)
    for name, seq in (("pred_masks", pred_masks), ("gt_masks", gt_masks), ("pred_3d", pred_3d), ("gt_3d", gt_3d)):
        if seq is not None and len(seq) != batch:
            raise ValueError(f"combine_losses: `{name}` must have one entry per sample (B = {batch}); got {len(seq)}")
    return by_task


def _mask_terms(
    by_task: Dict[str, List[int]],
    pred_masks: MaybeTensors,
    gt_masks: MaybeTensors,
    w: LossWeights,
    dice_empty_views: str,
    batch: int,
    zero: Tensor,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Unweighted 2D terms ``(mask_bce, mask_dice, mask_mse)``, normalised as :func:`combine_losses` documents."""
    bce_sum, dice_sum, mse_sum = zero, zero, zero
    for task in MASK_TASKS:
        idx = by_task.get(task)
        if not idx:
            continue
        if pred_masks is None or gt_masks is None:
            raise ValueError(f"combine_losses: '{task}' samples need `pred_masks` and `gt_masks` ([B, V, H, W])")
        logits = task not in PROB_TASKS

        def focal(p: Tensor, t: Tensor, logits: bool = logits) -> Tensor:
            return focal_bce_2d(p, t, alpha=w.bce_alpha, from_logits=logits)

        def dice(p: Tensor, t: Tensor, logits: bool = logits) -> Tensor:
            return dice_2d(p, t, scale=w.dice_scale, from_logits=logits, empty_views=dice_empty_views)

        bce_sum = bce_sum + _sum_per_sample(focal, pred_masks, gt_masks, idx, "2D mask", "V, H, W")
        dice_sum = dice_sum + _sum_per_sample(dice, pred_masks, gt_masks, idx, "2D mask", "V, H, W")
        if task == "oafford":
            mse_sum = _sum_per_sample(mse_2d, pred_masks, gt_masks, idx, "2D mask", "V, H, W") / len(idx)
    return bce_sum / batch, dice_sum / batch, mse_sum


def _term_3d(
    task: str,
    fn: Callable[[Tensor, Tensor], Tensor],
    by_task: Dict[str, List[int]],
    pred_3d: Optional[Sequence[Optional[Tensor]]],
    gt_3d: Optional[Sequence[Optional[Tensor]]],
    zero: Tensor,
) -> Tensor:
    """Mean 3D loss over the ``task`` samples that have a 3D prediction (``zero`` if none)."""
    if pred_3d is None:
        return zero
    idx = [i for i in by_task.get(task, []) if pred_3d[i] is not None]
    if not idx:
        return zero
    if gt_3d is None:
        raise ValueError(f"combine_losses: '{task}' samples have `pred_3d` but `gt_3d` is None")
    return _sum_per_sample(fn, pred_3d, gt_3d, idx, "3D", "N") / len(idx)


def combine_losses(
    ce_loss: Union[Tensor, float],
    tags: Sequence[str],
    pred_masks: MaybeTensors = None,
    gt_masks: MaybeTensors = None,
    pred_3d: Optional[Sequence[Optional[Tensor]]] = None,
    gt_3d: Optional[Sequence[Optional[Tensor]]] = None,
    weights: Optional[LossWeights] = None,
    dice_empty_views: str = "count",
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Weighted InteractVLM training loss of one batch (the original's ``CombinedLoss`` plus its LM cross-entropy).

    Args:
        ce_loss: next-token cross-entropy already computed by the language model (scalar).
        tags: one task tag per sample, each in :data:`TASKS`. ``B = len(tags)``.
        pred_masks: 2D predictions, either a tensor ``[B, V, H, W]`` or a length-B list of ``[V, H, W]`` tensors
            (``None`` allowed for ``vqa`` samples, whose entries are ignored anyway). ``oafford`` entries are
            probabilities, all others logits. May be ``None`` when every sample is ``vqa``.
        gt_masks: matching 2D targets in ``[0, 1]`` with ``-1`` for ignored pixels (same container type).
        pred_3d: optional length-B list of lifted ``[N]`` probabilities (``N`` may differ between samples, e.g. mesh
            vertex counts; ``None`` = no 3D loss for that sample). Used for ``hcontact`` (L_hC), ``oafford`` (L_oA)
            and ``ocontact`` (L_oC); ignored for ``h2dcontact`` / ``vqa``.
        gt_3d: matching length-B list of ``[N]`` targets.
        weights: :class:`LossWeights` (defaults if ``None``).
        dice_empty_views: ``empty_views`` rule of :func:`dice_2d` (``"count"`` reproduces the original).

    Normalisation (as in the original):

    * Focal2D and Dice2D: sum over mask samples divided by ``B`` — ``vqa`` samples contribute 0 but count.
    * MSE2D: over ``oafford`` samples, divided by their number.
    * L_hC, L_oA, L_oC: mean over the samples of that task that have a 3D prediction.
    * A term with no contributing sample is 0.

    Returns:
        ``(total, components)``: the differentiable total and a dict of detached, *unweighted* components
        ``ce, mask_bce, mask_dice, mask_mse, hcontact_3d, oafford_3d, ocontact_3d`` plus ``total`` (detached).
    """
    w = weights if weights is not None else LossWeights()
    batch = len(tags)
    by_task = _group_by_task(tags, pred_masks, gt_masks, pred_3d, gt_3d)

    if not isinstance(ce_loss, Tensor):
        ce_loss = torch.tensor(float(ce_loss), device=_first_device(pred_masks, pred_3d))
    ce = ce_loss.float()
    zero = ce.new_zeros(())
    mask_bce, mask_dice, mask_mse = _mask_terms(by_task, pred_masks, gt_masks, w, dice_empty_views, batch, zero)

    def term_3d(task: str, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        return _term_3d(task, fn, by_task, pred_3d, gt_3d, zero)

    hcontact_3d = term_3d("hcontact", focal_bce_3d)
    oafford_3d = term_3d("oafford", affordance_3d)
    ocontact_3d = term_3d("ocontact", focal_bce_3d)

    total = (
        w.ce * ce
        + w.bce * mask_bce
        + w.dice * mask_dice
        + w.bce * mask_mse
        + w.hcontact_3d * hcontact_3d
        + w.ocontact_3d * (oafford_3d + ocontact_3d)
    )
    components = {
        "ce": ce,
        "mask_bce": mask_bce,
        "mask_dice": mask_dice,
        "mask_mse": mask_mse,
        "hcontact_3d": hcontact_3d,
        "oafford_3d": oafford_3d,
        "ocontact_3d": ocontact_3d,
        "total": total,
    }
    return total, {k: v.detach() for k, v in components.items()}
