"""Evaluation metrics: human contact (DECO/DAMON, LEMON), object contact (PICO), affordance (PIAD) and 2D masks (LISA).

Everything here is pure numpy; torch tensors (any device, any dtype including bf16) are accepted and converted.  No
function does I/O, except that a geodesic-distance argument may be given as a path to a ``.npy`` file, which is then
memory-mapped (``np.load(..., mmap_mode="r")``).

Two families of contact metrics are provided, because the published numbers were computed in two different ways
(the original's utils/eval_utils.py and evaluate.py, and DECO's metrics code):

* **DECO rules** (default, the DECO/DAMON benchmark definition, ``challenges/utils/metrics.py``): per image,
  prediction positive where ``pred >= 0.5``; no predicted vertex -> P = 1, R = 0, F1 = 0; no GT vertex -> P = 0, R = 1,
  F1 = 0 (the "no prediction" rule wins when both are empty); P + R <= 1e-10 -> all zero; dataset numbers are means
  of the per-image values. :func:`deco_prf`, :func:`deco_binary_metrics`, :func:`geodesic_errors`,
  :func:`semantic_contact_metrics`, :func:`binary_union_metrics`.
* **InteractVLM's formulas** (``--metrics interactvlm``, only to compare with the numbers published by the original):
  ``P = TP/(PP+1e-10)``, ``R = TP/(GP+1e-10)``, ``F1 = 2PR/(P+R+1e-10)`` with GT binarised at ``> 0``; binary F1 is
  the mean per-image F1 but binary P/R are pooled over images; semantic P/R are computed on *un-thresholded* soft
  predictions (so "precision" can exceed 1). :func:`interactvlm_binary_metrics`, :func:`interactvlm_semantic_metrics`.
  The original's geodesic "Geo" bug (arguments swapped and ``== 1`` test) is *not* reproduced.

The eps formulas are also what LEMON and PICO use for contact: :func:`object_contact_f1`, :func:`lemon_contact_metrics`.
"""

from __future__ import annotations

from collections import OrderedDict
from os import PathLike
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

EPS = 1e-10
PIAD_IOU_THRESHOLDS = np.linspace(0, 1, 20)

# DECO's object categories for DAMON semantic contact (``challenges/common/constants.py``), written from COCO's 80
# classes: the 69 non-person, non-animal classes, spaces replaced by underscores as in DAMON's object keys.
# Reconstructed from memory, not copied: the seven category names and the 69-name total are from the reference; the
# assignments of the borderline classes are the least certain part -- 'traffic_light', 'fire_hydrant', 'stop_sign',
# 'parking_meter' (here everyday objects; could be transportation), 'kite' (everyday objects vs sports equipment),
# 'baseball_glove' (accessories vs sports equipment), 'potted_plant'/'vase'/'clock' (everyday objects vs furniture) and
# 'sink'/'microwave'/'oven'/'toaster'/'refrigerator' (kitchen appliances; sink could be furniture).
DECO_CATEGORY_MAP: dict[str, tuple[str, ...]] = {
    "transportation": ("motorcycle", "bicycle", "boat", "car", "truck", "bus", "train", "airplane"),
    "accessories": ("backpack", "tie", "handbag", "baseball_glove"),
    "furniture": ("bench", "chair", "couch", "bed", "toilet", "dining_table"),
    "everyday objects": (
        "book", "umbrella", "cell_phone", "laptop", "kite", "suitcase", "bottle", "remote", "toothbrush",
        "teddy_bear", "scissors", "keyboard", "hair_drier", "traffic_light", "fire_hydrant", "stop_sign", "tv",
        "vase", "parking_meter", "clock", "potted_plant", "mouse",
    ),
    "sports equipment": (
        "frisbee", "sports_ball", "tennis_racket", "baseball_bat", "skateboard", "snowboard", "skis", "surfboard",
    ),
    "food items": ("banana", "cake", "apple", "carrot", "pizza", "donut", "hot_dog", "sandwich", "broccoli", "orange"),
    "kitchen appliances": (
        "knife", "spoon", "cup", "wine_glass", "oven", "fork", "bowl", "refrigerator", "toaster", "sink", "microwave",
    ),
}

SUPPORTING = "supporting"

Sample = tuple  # (image_id, object_name, pred [N], gt [N])


# ----------------------------------------------------------------------------------------------------------- helpers
def to_numpy(x: Any) -> np.ndarray:
    """numpy view/copy of an array-like; torch tensors are detached, moved to CPU and bf16/fp16 promoted to fp32."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        t = x.detach().cpu()
        if t.is_floating_point() and t.dtype not in (_torch_dtype("float32"), _torch_dtype("float64")):
            t = t.float()
        return t.numpy()
    return np.asarray(x)


def sigmoid(logits: Any) -> np.ndarray:
    """Probabilities of numpy logits (clipped so that ±inf, e.g. "no prediction" masks, stay finite and silent)."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, dtype=np.float64), -60, 60)))


def logit(probs: Any, eps: float = 1e-6) -> np.ndarray:
    """Logits of probabilities clipped to ``[eps, 1 − eps]``: lets probability maps go through logit-based metrics."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return np.log(p / (1 - p))


def _torch_dtype(name: str):
    return getattr(torch, name)


def _as_2d(x: Any, name: str) -> np.ndarray:
    a = to_numpy(x)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be [N] or [B, N], got shape {a.shape}")
    return a


def _pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_2d(pred, "pred"), _as_2d(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    return p, g


def _geodesic_array(geodesic: Any) -> Any:
    """Path -> read-only memmap; torch -> numpy; numpy arrays / memmaps and other row-indexable objects with a
    ``shape`` (h5py/zarr datasets) are returned untouched (never copied)."""
    if isinstance(geodesic, (str, PathLike)):
        return np.load(geodesic, mmap_mode="r")
    if isinstance(geodesic, np.ndarray):
        return geodesic
    if hasattr(geodesic, "detach"):
        return to_numpy(geodesic)
    if hasattr(geodesic, "shape") and hasattr(geodesic, "__getitem__"):
        return geodesic
    return np.asarray(geodesic)


def _normalise_name(name: str) -> str:
    return str(name).replace(" ", "_")


def _check_samples(samples: Iterable[Sample]) -> list[tuple[Any, str, np.ndarray, np.ndarray]]:
    out = []
    for i, s in enumerate(samples):
        if len(s) != 4:
            raise ValueError(f"sample {i} must be (image_id, object_name, pred, gt), got {len(s)} items")
        image_id, obj, pred, gt = s
        p, g = to_numpy(pred).reshape(-1), to_numpy(gt).reshape(-1)
        if p.shape != g.shape:
            raise ValueError(f"sample {i} ({image_id}, {obj}): pred {p.shape} and gt {g.shape} differ")
        out.append((image_id, _normalise_name(obj), p, g))
    if out and len({s[2].shape for s in out}) != 1:
        raise ValueError("all samples must have the same number of vertices")
    return out


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


# -------------------------------------------------------------------------------------------------- DECO binary P/R/F1
def deco_prf_from_counts(tp: np.ndarray, pp: np.ndarray, gp: np.ndarray) -> dict[str, np.ndarray]:
    """DECO's per-image P/R/F1 from true positives, predicted positives and GT positives (vectorised)."""
    tp, pp, gp = (np.asarray(v, dtype=np.float64) for v in (tp, pp, gp))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / pp
        recall = tp / gp
        f1 = 2 * precision * recall / (precision + recall)
    no_pred = pp == 0
    no_gt = (gp == 0) & ~no_pred
    tiny = ~no_pred & ~no_gt & (precision + recall <= 1e-10)
    precision = np.where(no_pred, 1.0, np.where(no_gt | tiny, 0.0, precision))
    recall = np.where(no_pred | tiny, 0.0, np.where(no_gt, 1.0, recall))
    f1 = np.where(no_pred | no_gt | tiny, 0.0, f1)
    return {"precision": precision, "recall": recall, "f1": f1}


def deco_prf(pred: Any, gt: Any, threshold: float = 0.5, gt_threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per-image DECO precision/recall/F1.

    pred, gt: ``[B, N]`` (or ``[N]``, treated as one image). Prediction positive where ``pred >= threshold``; GT
    positive where ``gt >= gt_threshold`` (DECO's GT is 0/1, for which this is the identity).
    Returns ``{"precision", "recall", "f1"}``, each a float64 array ``[B]``, with DECO's edge cases: no predicted
    vertex -> (1, 0, 0), else no GT vertex -> (0, 1, 0), else P + R <= 1e-10 -> (0, 0, 0).
    """
    p, g = _pair(pred, gt)
    pb, gb = p >= threshold, g >= gt_threshold
    return deco_prf_from_counts((pb & gb).sum(1), pb.sum(1), gb.sum(1))


def deco_binary_metrics(
    pred: Any, gt: Any, threshold: float = 0.5, geodesic: Any = None, scale: float = 1.0, gt_threshold: float = 0.5
) -> dict[str, float]:
    """DECO/DAMON binary contact: means over images of :func:`deco_prf` (+ ``fp_geo``/``fn_geo`` of
    :func:`geodesic_errors`, times ``scale``, when a geodesic matrix is given). Also returns ``count`` (images)."""
    m = deco_prf(pred, gt, threshold, gt_threshold)
    out = {k: _mean(v) for k, v in m.items()}
    out["count"] = len(m["f1"])
    if geodesic is not None:
        fp, fn = geodesic_errors(pred, gt, geodesic, threshold, scale=scale, gt_threshold=gt_threshold)
        out["fp_geo"], out["fn_geo"] = _mean(fp), _mean(fn)
    return out


# ---------------------------------------------------------------------------------------------------- geodesic errors
def _geodesic_one(dist: Any, rows: np.ndarray | None, cols: np.ndarray | None, chunk: int) -> tuple[float, float]:
    """FP = mean over ``rows`` of min over ``cols`` of dist; FN = mean over ``cols`` of min over ``rows``.

    ``None`` means all indices. Rows are read ``chunk`` at a time (row reads are contiguous in a C-ordered memmap),
    so at most ``chunk x N`` values are in memory.
    """
    n = dist.shape[0]
    n_rows = n if rows is None else len(rows)
    n_cols = dist.shape[1] if cols is None else len(cols)
    row_min_sum = 0.0
    col_min = np.full(n_cols, np.inf)
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        block = dist[start:stop] if rows is None else dist[rows[start:stop]]
        block = np.asarray(block if cols is None else block[:, cols], dtype=np.float64)
        row_min_sum += float(block.min(axis=1).sum())
        np.minimum(col_min, block.min(axis=0), out=col_min)
    return row_min_sum / n_rows, float(col_min.mean())


def geodesic_errors(
    pred: Any,
    gt: Any,
    geodesic: Any,
    threshold: float = 0.5,
    scale: float = 1.0,
    gt_threshold: float = 0.5,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """DECO's ``det_error_metric``: per-image false-positive and false-negative geodesic errors.

    pred, gt: ``[B, N]`` or ``[N]``; geodesic: ``[N, N]`` distance matrix (ndarray, ``np.memmap``, torch tensor or a
    path to a ``.npy``, which is memory-mapped). For each image the exact DECO construction is used:

    * columns C = GT vertices (``gt >= gt_threshold``), or **all** vertices if the GT is empty;
    * rows R = predicted vertices (``pred >= threshold``), or **all** vertices if the prediction is empty;
    * E = D[R][:, C]; FP = mean over rows of ``E.min(axis=1)`` (distance of each predicted vertex to the nearest GT
      vertex); FN = mean over columns of ``E.min(axis=0)`` (distance of each GT vertex to the nearest prediction).

    Consequences (for a matrix with a zero diagonal, as every distance matrix has): empty GT -> FP = 0 (each predicted
    vertex is itself a column) and FN = mean over all vertices of the distance to the nearest predicted vertex; empty
    prediction with non-empty GT -> FP = mean over all vertices of the distance to the GT (large), FN = 0; both empty
    -> 0, 0. No special case is coded: these values fall out of the construction, as in DECO.

    The matrix is only indexed by rows (``chunk`` rows at a time), never loaded whole, so a memmap stays cheap; an
    empty prediction streams through all N rows. Values are multiplied by ``scale`` (e.g. 100 for cm from metres).
    Returns two float64 arrays ``[B]``; DECO reports the mean of the FP array.
    """
    p, g = _pair(pred, gt)
    dist = _geodesic_array(geodesic)
    if len(dist.shape) != 2 or dist.shape[0] != dist.shape[1] or dist.shape[0] != p.shape[1]:
        raise ValueError(f"geodesic matrix {dist.shape} does not match {p.shape[1]} vertices")
    fp = np.zeros(len(p))
    fn = np.zeros(len(p))
    for b in range(len(p)):
        rows = np.flatnonzero(p[b] >= threshold)
        cols = np.flatnonzero(g[b] >= gt_threshold)
        fp[b], fn[b] = _geodesic_one(dist, rows if len(rows) else None, cols if len(cols) else None, chunk)
    return fp * scale, fn * scale


# ------------------------------------------------------------------------------------------- DECO semantic (per object)
def _aggregate(per_sample: Mapping[str, np.ndarray], index: np.ndarray) -> dict[str, float]:
    out = {k: _mean(v[index]) for k, v in per_sample.items()}
    out["count"] = int(len(index))
    return out


def _category_of(category_map: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    lookup: dict[str, list[str]] = {}
    for cat, names in (category_map or {}).items():
        for n in names:
            lookup.setdefault(_normalise_name(n), []).append(cat)
    return lookup


def semantic_contact_metrics(
    samples: Iterable[Sample],
    geodesic: Any = None,
    threshold: float = 0.5,
    include_supporting: bool = False,
    category_map: Mapping[str, Sequence[str]] | None = DECO_CATEGORY_MAP,
    scale: float = 1.0,
    skip_empty_gt: bool = False,
    gt_threshold: float = 0.5,
) -> dict[str, Any]:
    """DECO semantic (object-wise) contact, as ``challenges/evaluate_semantic_contact.py``.

    samples: iterable of ``(image_id, object_name, pred [N], gt [N])``, one per (image, GT object). Object names have
    spaces replaced by underscores. A GT object the method did not predict should be passed with an all-zero
    prediction (-> P = 1, R = 0, F1 = 0); predicted objects absent from the GT are simply not passed (DECO does not
    penalise them). ``supporting`` is dropped unless ``include_supporting``. ``skip_empty_gt`` drops samples whose GT
    has no contact vertex (InteractVLM's data loader does this; DECO does not).

    Per sample: :func:`deco_prf` (and the FP/FN geodesic errors times ``scale`` when ``geodesic`` is given).
    Returns::

        {"overall": {...}, "per_object": {name: {...}}, "per_category": {cat: {...}}, "per_sample": [ {...} ]}

    where each ``{...}`` holds ``precision``, ``recall``, ``f1`` (``fp_geo``, ``fn_geo``) and ``count``.
    ``per_object`` = mean over that class's samples; ``overall`` = class means weighted by class counts = mean over all
    (image, object) pairs; each category = count-weighted mean over its classes (= mean over its pairs). Objects outside
    ``category_map`` count in ``overall`` only; categories with no sample are omitted.
    """
    data = _check_samples(samples)
    data = [s for s in data if include_supporting or s[1] != SUPPORTING]
    if skip_empty_gt:
        data = [s for s in data if (s[3] >= gt_threshold).any()]
    if not data:
        return {"overall": {"precision": float("nan"), "recall": float("nan"), "f1": float("nan"), "count": 0},
                "per_object": {}, "per_category": {}, "per_sample": []}
    pred = np.stack([s[2] for s in data])
    gt = np.stack([s[3] for s in data])
    per = deco_prf(pred, gt, threshold, gt_threshold)
    if geodesic is not None:
        per["fp_geo"], per["fn_geo"] = geodesic_errors(pred, gt, geodesic, threshold, scale, gt_threshold)
    names = np.array([s[1] for s in data], dtype=object)
    per_object = {n: _aggregate(per, np.flatnonzero(names == n)) for n in OrderedDict.fromkeys(names)}
    overall = _aggregate(per, np.arange(len(data)))
    lookup = _category_of(category_map)
    per_category = {}
    for cat in (category_map or {}):
        idx = np.flatnonzero([cat in lookup.get(n, ()) for n in names])
        if len(idx):
            per_category[cat] = _aggregate(per, idx)
    per_sample = [
        {"image_id": s[0], "object": s[1], **{k: float(v[i]) for k, v in per.items()}} for i, s in enumerate(data)
    ]
    return {"overall": overall, "per_object": per_object, "per_category": per_category, "per_sample": per_sample}


# ------------------------------------------------------------------------------------------------ binary from objects
def _union_by_image(
    data: list, threshold: float, gt_test
) -> tuple[list, np.ndarray, np.ndarray]:
    order: OrderedDict = OrderedDict()
    for image_id, _, p, g in data:
        pb, gb = p >= threshold, gt_test(g)
        if image_id in order:
            order[image_id][0] |= pb
            order[image_id][1] |= gb
        else:
            order[image_id] = [pb.copy(), gb.copy()]
    ids = list(order)
    if not ids:
        return ids, np.zeros((0, 0), bool), np.zeros((0, 0), bool)
    return ids, np.stack([order[i][0] for i in ids]), np.stack([order[i][1] for i in ids])


def binary_union_metrics(
    samples: Iterable[Sample],
    image_gt: Mapping[Any, Any] | None = None,
    threshold: float = 0.5,
    geodesic: Any = None,
    scale: float = 1.0,
    exclude_objects: Sequence[str] = (),
    gt_threshold: float = 0.5,
) -> dict[str, Any]:
    """DECO-comparable binary contact from object-wise predictions.

    Per image: prediction = OR over its samples of ``pred >= threshold``; GT = OR over its samples of
    ``gt >= gt_threshold``, or ``image_gt[image_id]`` when given (DECO's per-image ``contact_label``, the truly
    DECO-comparable target). Then DECO's per-image P/R/F1 (and geodesic errors) and their means over images.
    Objects in ``exclude_objects`` are left out of the union (none by default).
    Returns ``{"precision", "recall", "f1", ["fp_geo", "fn_geo"], "count", "image_ids", "per_image": {...arrays}}``.
    """
    excluded = {_normalise_name(o) for o in exclude_objects}
    data = [s for s in _check_samples(samples) if s[1] not in excluded]
    ids, pred, gt = _union_by_image(data, threshold, lambda g: g >= gt_threshold)
    if image_gt is not None:
        gt = np.stack([to_numpy(image_gt[i]).reshape(-1) >= gt_threshold for i in ids]) if ids else gt
    per = deco_prf(pred, gt, 0.5, 0.5) if ids else {"precision": np.zeros(0), "recall": np.zeros(0), "f1": np.zeros(0)}
    if geodesic is not None and ids:
        per["fp_geo"], per["fn_geo"] = geodesic_errors(pred, gt, geodesic, 0.5, scale, 0.5)
    out: dict[str, Any] = {k: _mean(v) for k, v in per.items()}
    out.update(count=len(ids), image_ids=ids, per_image=per)
    return out


# ------------------------------------------------------------------------------ eps formulas (InteractVLM, LEMON, PICO)
def eps_prf(pred: Any, gt: Any, threshold: float = 0.5, binarize_gt: bool = True) -> dict[str, np.ndarray]:
    """Per-sample P/R/F1 with the epsilon formulas of InteractVLM/LEMON/PICO.

    ``P = TP/(PP+1e-10)``, ``R = TP/(GP+1e-10)``, ``F1 = 2PR/(P+R+1e-10)`` with prediction positive at
    ``pred >= threshold``. ``binarize_gt=True``: GT positive where ``gt > 0`` (InteractVLM); ``False``: GT used
    as-is (LEMON: ``TP = sum(gt[pred >= t])``, ``GP = sum(gt)``). Empty prediction -> (0, 0, 0) (DECO: P = 1);
    empty GT -> (0, 0, 0) (DECO: R = 1). Returns arrays ``[B]``.
    """
    p, g = _pair(pred, gt)
    pb = p >= threshold
    gv = (g > 0).astype(np.float64) if binarize_gt else g.astype(np.float64)
    tp = (gv * pb).sum(1)
    precision = tp / (pb.sum(1) + EPS)
    recall = tp / (gv.sum(1) + EPS)
    f1 = 2 * precision * recall / (precision + recall + EPS)
    return {"precision": precision, "recall": recall, "f1": f1}


def object_contact_f1(pred: Any, gt: Any, threshold: float = 0.5, binarize_gt: bool = False) -> dict[str, Any]:
    """Object (PICO) / LEMON-style contact: means over samples of :func:`eps_prf`.

    pred, gt: ``[B, N]`` (or ``[N]``). GT taken as-is by default (identical to ``> 0`` for 0/1 labels).
    Returns ``{"precision", "recall", "f1", "count", "per_sample": {...arrays}}``.
    """
    per = eps_prf(pred, gt, threshold, binarize_gt)
    out: dict[str, Any] = {k: _mean(v) for k, v in per.items()}
    out.update(count=len(per["f1"]), per_sample=per)
    return out


def lemon_contact_metrics(
    pred: Any, gt: Any, geodesic: Any = None, threshold: float = 0.5, scale: float = 1.0
) -> dict[str, Any]:
    """LEMON/3DIR human contact: eps P/R/F1 (GT as-is) plus DECO-construction FP/FN geodesic errors, sample means."""
    out = object_contact_f1(pred, gt, threshold)
    if geodesic is not None:
        fp, fn = geodesic_errors(pred, gt, geodesic, threshold, scale)
        out["fp_geo"], out["fn_geo"] = _mean(fp), _mean(fn)
    return out


def interactvlm_binary_metrics(samples: Iterable[Sample], threshold: float = 0.5) -> dict[str, Any]:
    """Original InteractVLM "DAMON binary" (``evaluate.py::get_damon_binary_contact``), for comparison only.

    Per image: OR over its (image, object) samples of ``pred >= threshold`` and OR of ``gt > 0``. ``f1`` = mean over
    images of the eps per-image F1 (:func:`eps_prf`, 0 when P + R = 0); ``precision``/``recall`` are **pooled over
    images**: ``sum TP / (sum PP + 1e-10)`` and ``sum TP / (sum GP + 1e-10)`` -- not DECO's per-image means (the
    per-image means are also returned as ``precision_per_image_mean``/``recall_per_image_mean``).
    """
    ids, pred, gt = _union_by_image(_check_samples(samples), threshold, lambda g: g > 0)
    if not ids:
        return {"precision": float("nan"), "recall": float("nan"), "f1": float("nan"), "count": 0, "image_ids": []}
    per = eps_prf(pred, gt, 0.5, True)
    tp = float((pred & gt).sum())
    return {
        "precision": tp / (float(pred.sum()) + EPS),
        "recall": tp / (float(gt.sum()) + EPS),
        "f1": _mean(per["f1"]),
        "precision_per_image_mean": _mean(per["precision"]),
        "recall_per_image_mean": _mean(per["recall"]),
        "count": len(ids),
        "image_ids": ids,
        "per_image": per,
    }


def interactvlm_semantic_metrics(
    samples: Iterable[Sample],
    threshold: float = 0.5,
    category_map: Mapping[str, Sequence[str]] | None = DECO_CATEGORY_MAP,
) -> dict[str, Any]:
    """Original InteractVLM semantic summary (``evaluate.py::get_damon_semantic_contact``), for comparison only.

    All objects are kept (``supporting`` included). Per object class: ``f1`` = mean of per-sample eps F1
    (``pred >= threshold``, GT ``> 0``); ``precision`` = ``sum_s count(pred_s != 0 and gt_s != 0) / sum_s sum(pred_s)``
    and ``recall`` = the same count ``/ sum_s sum(gt_s)``, i.e. pooled over the class's samples on the **soft,
    un-thresholded** predictions (the original's bug: precision can exceed 1, recall is ~ the fraction of GT vertices
    with a non-zero probability). ``overall`` (the published "DAMON weighted") and each category = class values
    weighted by class sample counts. Returns ``{"overall", "per_object", "per_category"}``.

    The original's category dictionary mixed spaces and underscores so some classes never matched; that is not
    reproduced (names here are normalised), so category rows may differ slightly from the published ones.
    """
    data = _check_samples(samples)
    groups: OrderedDict[str, list] = OrderedDict()
    for s in data:
        groups.setdefault(s[1], []).append(s)
    per_object = {}
    for name, items in groups.items():
        pred = np.stack([s[2] for s in items]).astype(np.float64)
        gt = np.stack([s[3] for s in items]).astype(np.float64)
        f1 = eps_prf(pred, gt, threshold, True)["f1"]
        hits = float(np.logical_and(pred, gt).sum())
        per_object[name] = {
            "precision": hits / float(pred.sum()) if pred.sum() else float("nan"),
            "recall": hits / float(gt.sum()) if gt.sum() else float("nan"),
            "f1": _mean(f1),
            "count": len(items),
        }

    def weighted(names: Sequence[str]) -> dict[str, float]:
        rows = [per_object[n] for n in names if n in per_object]
        total = sum(r["count"] for r in rows)
        out = {k: (sum(r[k] * r["count"] for r in rows) / total if total else float("nan"))
               for k in ("precision", "recall", "f1")}
        out["count"] = total
        return out

    per_category = {}
    for cat, names in (category_map or {}).items():
        agg = weighted([_normalise_name(n) for n in names])
        if agg["count"]:
            per_category[cat] = agg
    return {"overall": weighted(list(per_object)), "per_object": per_object, "per_category": per_category}


# ---------------------------------------------------------------------------------------------- PIAD affordance
def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (``scipy.stats.rankdata(method="average")``)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(labels: Any, scores: Any) -> float:
    """Binary ROC AUC, equal to ``sklearn.metrics.roc_auc_score(labels, scores)``, NaN if only one class is present.

    Mann-Whitney form with average ranks for ties: ``(sum of positive ranks - n+(n+ + 1)/2) / (n+ n-)``, which equals
    the trapezoidal area under the tie-collapsed ROC curve that sklearn computes.
    """
    y = to_numpy(labels).reshape(-1).astype(bool)
    s = to_numpy(scores).reshape(-1).astype(np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def piad_metrics(
    pred: Any,
    gt: Any,
    drop_all_ones: bool = False,
    thresholds: Sequence[float] = PIAD_IOU_THRESHOLDS,
) -> dict[str, Any]:
    """PIAD / IAGNet affordance metrics on point clouds (``evalization.py``), per sample then averaged.

    pred ``[B, P]`` in [0, 1]; gt ``[B, P]`` continuous heat-map in [0, 1]; binarised GT = ``gt >= 0.5``.

    * SIM = sum_i min(p_i / (sum p + 1e-12), g_i / (sum g + 1e-12)) on the continuous GT; mean over samples.
    * MAE = sum_i |p_i - g_i| / P; mean over samples (raw, e.g. 0.098).
    * AUC = :func:`roc_auc` (binarised GT, pred); NaN when the binarised GT has no positive or no negative; ``nanmean``.
    * aIoU = mean over ``thresholds`` (``linspace(0, 1, 20)``) of IoU(pred >= t, gt >= 0.5); NaN when the binarised
      GT has no positive (IAGNet's rule); ``nanmean``.
    * ``drop_all_ones``: drop samples whose binarised GT is all positive from every metric (InteractVLM's
      ``get_o_affordance_metrics``).

    Returns fractions (multiply AUC/aIoU/SIM by 100 for the tables): ``{"sim", "mae", "auc", "aiou", "count",
    "per_sample": {"sim", "mae", "auc", "aiou"}}``; ``count`` is the number of samples kept.
    """
    p, g = _pair(pred, gt)
    p, g = p.astype(np.float64), g.astype(np.float64)
    gb = g >= 0.5
    if drop_all_ones:
        keep = ~gb.all(1)
        p, g, gb = p[keep], g[keep], gb[keep]
    sim = np.minimum(p / (p.sum(1, keepdims=True) + 1e-12), g / (g.sum(1, keepdims=True) + 1e-12)).sum(1)
    mae = np.abs(p - g).sum(1) / p.shape[1]
    auc = np.array([roc_auc(gb[b], p[b]) for b in range(len(p))])
    aiou = np.full(len(p), np.nan)
    t = np.asarray(thresholds, dtype=np.float64)
    for b in np.flatnonzero(gb.any(1)):
        pm = p[b][None, :] >= t[:, None]
        inter = (pm & gb[b]).sum(1)
        union = (pm | gb[b]).sum(1)
        aiou[b] = float(np.mean(inter / union))
    nanmean = lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")  # noqa: E731
    return {
        "sim": _mean(sim),
        "mae": _mean(mae),
        "auc": nanmean(auc),
        "aiou": nanmean(aiou),
        "count": len(p),
        "per_sample": {"sim": sim, "mae": mae, "auc": auc, "aiou": aiou},
    }


# ------------------------------------------------------------------------------------------------------- 2D masks
def giou_ciou(pred_logits: Any, gt: Any, ignore: int = -1) -> dict[str, Any]:
    """LISA-style 2D segmentation metrics for binary masks.

    pred_logits: ``[M, H, W]`` (or ``[H, W]``, or a list of differently sized masks) -- foreground where ``> 0``;
    gt: same shape, values {0, 1, ``ignore``}. Pixels whose GT is ``ignore`` are excluded from both masks.
    Per mask, foreground IoU = I / (U + 1e-5), and 1.0 when U = 0 (no object, none predicted), as LISA's
    ``acc_iou``; ``giou`` = mean of those; ``ciou`` = sum I / (sum U + 1e-10) over all masks.
    Returns ``{"giou", "ciou", "per_mask_iou", "intersection", "union"}``.
    """
    if isinstance(pred_logits, (list, tuple)):
        preds = [to_numpy(x) for x in pred_logits]
        gts = [to_numpy(x) for x in gt]
    else:
        pa, ga = to_numpy(pred_logits), to_numpy(gt)
        if pa.ndim == 2:
            pa, ga = pa[None], ga[None]
        preds, gts = list(pa), list(ga)
    if len(preds) != len(gts):
        raise ValueError("pred and gt mask counts differ")
    inter = np.zeros(len(preds))
    union = np.zeros(len(preds))
    for i, (p, g) in enumerate(zip(preds, gts)):
        if p.shape != g.shape:
            raise ValueError(f"mask {i}: pred {p.shape} vs gt {g.shape}")
        valid = g != ignore
        pf = (p > 0) & valid
        gf = (g == 1) & valid
        inter[i] = (pf & gf).sum()
        union[i] = pf.sum() + gf.sum() - inter[i]
    per = np.where(union == 0, 1.0, inter / (union + 1e-5))
    return {
        "giou": _mean(per),
        "ciou": float(inter.sum() / (union.sum() + 1e-10)),
        "per_mask_iou": per,
        "intersection": inter,
        "union": union,
    }


def pixel_contact_metrics(pred_logits: Sequence[Any], gt: Sequence[Any], threshold: float = 0.5, ignore: int = -1
                          ) -> dict[str, Any]:
    """2D contact masks on photos (``h2dcontact``): DECO's per-image P/R/F1 rules applied to pixels, plus gIoU/cIoU.

    pred_logits, gt: one ``[H, W]`` mask per image (sizes may differ between images); contact where
    ``sigmoid(logit) >= threshold``; GT in {0, 1, ``ignore``}, ignored pixels excluded. Means over images, so a small
    photo counts as much as a large one (as DECO averages over images, not vertices).
    """
    if len(pred_logits) != len(gt):
        raise ValueError(f"{len(pred_logits)} predicted masks but {len(gt)} ground-truth masks")
    tp, pp, gp, positive = [], [], [], []
    for i, (p, g) in enumerate(zip(pred_logits, gt)):
        p, g = to_numpy(p).astype(np.float64), to_numpy(g)
        if p.shape != g.shape:
            raise ValueError(f"mask {i}: pred {p.shape} vs gt {g.shape}")
        valid = g != ignore
        pb = (sigmoid(p) >= threshold) & valid
        gb = (g == 1) & valid
        tp.append((pb & gb).sum()), pp.append(pb.sum()), gp.append(gb.sum())
        positive.append(np.where(pb, 1.0, -1.0))
    per_image = deco_prf_from_counts(np.array(tp), np.array(pp), np.array(gp))
    out: dict[str, Any] = {k: _mean(v) for k, v in per_image.items()}
    out.update({f"per_image_{k}": v for k, v in per_image.items()})
    ious = giou_ciou(positive, [to_numpy(g) for g in gt], ignore=ignore)
    out.update(giou=ious["giou"], ciou=ious["ciou"], count=len(tp))
    return out


# ------------------------------------------------------------------------------------------------- object contact
def object_contact_metrics(preds: Sequence[Any], gts: Sequence[Any], names: Sequence[str] | None = None,
                           threshold: float = 0.5) -> dict[str, Any]:
    """Per-vertex contact on object meshes (PICO, SynthContact objects): one (image, object) pair per sample, each
    mesh with its own vertex count.

    Per sample: the original's eps formulas (:func:`eps_prf`, GT ``> 0``; ``get_o_contact_metrics``), reported as
    ``precision``/``recall``/``f1``, and DECO's rules (:func:`deco_prf`) as ``deco_precision``/``deco_recall``/
    ``deco_f1`` (they differ only on empty predictions or GT). Means over samples, overall and per object class.
    Returns ``{"overall": {...}, "per_object": {name: {...}}, "per_sample": {key: array}}``.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground truths")
    names = list(names) if names is not None else [""] * len(preds)
    keys = ("precision", "recall", "f1", "deco_precision", "deco_recall", "deco_f1")
    per = {k: np.zeros(len(preds)) for k in keys}
    for i, (p, g) in enumerate(zip(preds, gts)):
        p, g = to_numpy(p).reshape(1, -1), to_numpy(g).reshape(1, -1)
        if p.shape != g.shape:
            raise ValueError(f"sample {i} ({names[i]}): pred {p.shape[1]} vs gt {g.shape[1]} vertices")
        eps, deco = eps_prf(p, g, threshold, True), deco_prf(p, (g > 0).astype(np.float32), threshold)
        for k in ("precision", "recall", "f1"):
            per[k][i], per[f"deco_{k}"][i] = eps[k][0], deco[k][0]
    name_array = np.array([_normalise_name(n) for n in names], dtype=object)
    per_object = {n: _aggregate(per, np.flatnonzero(name_array == n)) for n in OrderedDict.fromkeys(name_array)}
    return {"overall": _aggregate(per, np.arange(len(preds))), "per_object": per_object, "per_sample": per}


def affordance_metrics(preds: Sequence[Any], gts: Sequence[Any], names: Sequence[str] | None = None,
                       drop_all_ones: bool = False) -> dict[str, Any]:
    """PIAD affordance (:func:`piad_metrics`) for samples whose point counts may differ: each sample scored alone,
    then SIM/MAE means and AUC/aIoU ``nanmean`` (IAGNet's NaN rule) over samples, overall and per object class.
    Returns ``{"overall": {...}, "per_object": {...}, "per_sample": {key: array}}``; ``count`` = samples kept,
    ``auc_count``/``aiou_count`` = samples with a defined AUC / aIoU."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground truths")
    names = [_normalise_name(n) for n in (names if names is not None else [""] * len(preds))]
    rows, kept = {k: [] for k in ("sim", "mae", "auc", "aiou")}, []
    for i, (p, g) in enumerate(zip(preds, gts)):
        m = piad_metrics(to_numpy(p).reshape(1, -1), to_numpy(g).reshape(1, -1), drop_all_ones=drop_all_ones)
        if m["count"]:
            kept.append(names[i])
            for k in rows:
                rows[k].append(float(m["per_sample"][k][0]))
    per = {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}

    def summary(index: np.ndarray) -> dict[str, float]:
        out = {"sim": _mean(per["sim"][index]), "mae": _mean(per["mae"][index]), "count": int(len(index))}
        for k in ("auc", "aiou"):
            values = per[k][index]
            out[k] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            out[f"{k}_count"] = int(np.isfinite(values).sum())
        return out

    kept_array = np.array(kept, dtype=object)
    per_object = {n: summary(np.flatnonzero(kept_array == n)) for n in OrderedDict.fromkeys(kept_array)}
    return {"overall": summary(np.arange(len(kept))), "per_object": per_object, "per_sample": per}


# ------------------------------------------------------------------------------------------- prediction diversity
def prediction_diversity(predictions: Any, threshold: float = 0.5, iou_limit: float = 0.9, std_limit: float = 0.01,
                         max_samples: int = 1000) -> dict[str, Any]:
    """How much a model's predictions differ across samples: the test for a model that answers every input alike.

    predictions: ``[B, D]`` probabilities of B samples over the same D elements (a body's vertices, or masks resized
    to one grid and flattened). Binarised at ``threshold``:

    * ``mean_pairwise_iou``: mean over all sample pairs of the IoU of their binarised masks (two empty masks count as
      identical, IoU 1): 1 when every sample gets the same mask;
    * ``mean_std`` / ``max_std``: per-element standard deviation of the probabilities across samples, averaged /
      at its largest (a bundled model once moved no vertex by more than 0.003 across 494 pairs);
    * ``empty_fraction``: samples with no positive element; ``distinct_masks``: number of different binarised masks;
    * ``collapsed``: ``mean_pairwise_iou > iou_limit`` or ``max_std < std_limit``.

    More than ``max_samples`` samples are thinned to an evenly spaced subset (the pairwise matrix is B²).
    """
    x = to_numpy(predictions).astype(np.float64)
    if x.ndim == 1:
        x = x[None]
    x = x.reshape(len(x), -1)
    if len(x) > max_samples:
        x = x[np.linspace(0, len(x) - 1, max_samples).round().astype(np.int64)]
    if len(x) < 2:
        raise ValueError(f"prediction diversity needs at least 2 samples, got {len(x)}")
    b = (x >= threshold).astype(np.float32)
    inter = b @ b.T
    sizes = b.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    upper = np.triu_indices(len(x), k=1)
    std = x.std(axis=0)
    mean_iou = float(iou[upper].mean())
    out = {"mean_pairwise_iou": mean_iou, "mean_std": float(std.mean()), "max_std": float(std.max()),
           "empty_fraction": float((sizes == 0).mean()), "distinct_masks": int(len(np.unique(b > 0, axis=0))),
           "count": int(len(x))}
    out["collapsed"] = bool(mean_iou > iou_limit or out["max_std"] < std_limit)
    return out


# ------------------------------------------------------------------------------------------------------- curves
def precision_recall_curve(
    preds: Any, gts: Any, thresholds: Sequence[float] = tuple(np.linspace(0.05, 0.95, 19)), rule: str = "deco"
) -> dict[str, np.ndarray]:
    """Mean per-image precision/recall/F1 at each prediction threshold (for plots).

    preds, gts ``[B, N]``; ``rule="deco"`` uses :func:`deco_prf` (GT >= 0.5), ``rule="eps"`` uses :func:`eps_prf`
    (GT > 0). Returns ``{"thresholds", "precision", "recall", "f1"}``, arrays of len(thresholds).
    """
    p, g = _pair(preds, gts)
    if rule not in ("deco", "eps"):
        raise ValueError("rule must be 'deco' or 'eps'")
    t = np.asarray(thresholds, dtype=np.float64)
    out = {"thresholds": t, "precision": np.zeros(len(t)), "recall": np.zeros(len(t)), "f1": np.zeros(len(t))}
    for i, th in enumerate(t):
        m = deco_prf(p, g, th) if rule == "deco" else eps_prf(p, g, th)
        for k in ("precision", "recall", "f1"):
            out[k][i] = _mean(m[k])
    return out


__all__ = [
    "DECO_CATEGORY_MAP", "PIAD_IOU_THRESHOLDS", "to_numpy", "deco_prf", "deco_binary_metrics", "geodesic_errors",
    "semantic_contact_metrics", "binary_union_metrics", "eps_prf", "object_contact_f1", "lemon_contact_metrics",
    "interactvlm_binary_metrics", "interactvlm_semantic_metrics", "roc_auc", "piad_metrics", "giou_ciou",
    "precision_recall_curve", "object_contact_metrics", "affordance_metrics", "prediction_diversity",
]
