"""Contact evaluation reports: metrics over (image, object) predictions, Markdown tables, plots, qualitative renders.

Used by ``evaluate.py`` for the model and for the baselines, so every number in a comparison comes from the same code.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from utils import metrics as M

Sample = tuple[str, str, np.ndarray, np.ndarray]  # (image id, object name, pred [N], gt [N])

HUMAN_3D_TASKS = ("hcontact",)
OBJECT_CONTACT_TASKS = ("ocontact",)
AFFORDANCE_TASKS = ("oafford",)
PHOTO_TASKS = ("h2dcontact",)
DIVERSITY_GRID = 32  # masks of every task are compared on this grid (per view) for the diversity statistic


@dataclass
class EvalItem:
    """One scored (image, object) query, from the model or a baseline.

    ``pred``/``gt``: per-vertex (per-point) probabilities and labels for 3D tasks (``[N]``, N may differ between
    object meshes); mask logits and the 0/1/−1 mask on the photo for 2D contact (``[H, W]``).
    ``masks_small``: the predicted masks as probabilities on a ``DIVERSITY_GRID`` grid per view (``[V, g, g]``), so
    predictions on different meshes or photo sizes can still be compared; None for a baseline without masks.
    ``mask_logits``/``gt_masks``/``overlays``/``valid``: the full views, kept only for the few qualitative renders.
    """

    image_path: str
    object_name: str
    task: str
    pred: np.ndarray
    gt: np.ndarray
    found_seg: bool = True
    masks_small: np.ndarray | None = None
    mask_logits: np.ndarray | None = None
    gt_masks: np.ndarray | None = None
    overlays: np.ndarray | None = None
    valid: np.ndarray | None = None


def item_from_prediction(sample: dict[str, Any], task: str, probs: np.ndarray | None, mask_logits: np.ndarray | None,
                         found: bool, keep_views: bool = False, template: Any = None) -> EvalItem:
    """One scored query from a dataset sample and a prediction. 2D: the first mask (logits) against the photo mask;
    3D: vertex probabilities against the labels (an answer without a seg token predicts nothing: all zeros).
    ``keep_views`` keeps the full masks and the ``template``'s renders (a ViewTemplate) for qualitative pictures."""
    mask_logits = None if mask_logits is None else np.asarray(mask_logits, dtype=np.float32)
    if task in PHOTO_TASKS:
        gt = np.asarray(sample["masks"][0])
        pred = mask_logits[0] if mask_logits is not None else np.full(gt.shape, -np.inf, np.float32)
    else:
        gt = np.asarray(sample["vertex_labels"], dtype=np.float32)
        pred = np.zeros(len(gt), np.float32) if probs is None else np.asarray(probs, dtype=np.float32)
    keep = keep_views and mask_logits is not None
    views = keep and template is not None and not template.is_photo
    return EvalItem(
        image_path=sample["image_path"], object_name=sample["class_name"], task=task, pred=pred, gt=gt,
        found_seg=bool(found), masks_small=None if mask_logits is None else small_masks(mask_logits),
        mask_logits=mask_logits if keep else None,
        gt_masks=None if not keep or sample.get("masks") is None else np.asarray(sample["masks"]),
        overlays=np.asarray(template.overlays) if views else None,
        valid=template.valid.cpu().numpy() if views else None)


def small_masks(mask_logits: np.ndarray, grid: int = DIVERSITY_GRID) -> np.ndarray:
    """``[V, H, W]`` (or ``[H, W]``) logits → ``[V, grid, grid]`` probabilities: the largest in each cell (−inf → 0).

    The largest, not the mean: a 2D contact mask covers ~0.1 % of a photo, so area averaging left 99.6 % of a 2D
    model's masks empty on the grid and called any such model collapsed, whatever its masks."""
    probs = M.sigmoid(np.asarray(mask_logits, dtype=np.float32)).astype(np.float32)
    if probs.ndim == 2:
        probs = probs[None]
    h, w = probs.shape[-2:]
    rows = np.floor(np.arange(grid) * h / grid).astype(np.int64)
    cols = np.floor(np.arange(grid) * w / grid).astype(np.int64)
    return np.maximum.reduceat(np.maximum.reduceat(probs, rows, axis=1), cols, axis=2)


def diversity_report(items: Sequence[EvalItem], threshold: float = 0.5) -> dict[str, Any]:
    """:func:`utils.metrics.prediction_diversity` of the predictions and, for reference, of the ground truth.

    3D human contact is compared per body vertex; other tasks (object meshes of different sizes, photos of
    different shapes) on their predicted masks at ``DIVERSITY_GRID``. Empty when fewer than two items."""
    items = list(items)
    if len(items) < 2:
        return {}
    out: dict[str, Any] = {}
    if items[0].task in HUMAN_3D_TASKS and len({len(i.pred) for i in items}) == 1:
        out["unit"] = "vertices"
        out["prediction"] = M.prediction_diversity(np.stack([i.pred for i in items]), threshold)
        out["ground_truth"] = M.prediction_diversity(np.stack([i.gt for i in items]), 0.5)
    elif all(i.masks_small is not None for i in items) and len({i.masks_small.shape for i in items}) == 1:
        out["unit"] = f"mask pixels ({DIVERSITY_GRID}x{DIVERSITY_GRID} per view)"
        out["prediction"] = M.prediction_diversity(np.stack([i.masks_small for i in items]), threshold)
    return out


def collapse_warning(diversity: dict[str, Any], what: str) -> str | None:
    """A sentence saying that the predictions collapsed to one mask, or None."""
    stats = diversity.get("prediction")
    if not stats or not stats["collapsed"]:
        return None
    truth = diversity.get("ground_truth")
    return (f"{what}: predictions collapsed to (nearly) one mask over {stats['count']} samples: mean pairwise IoU "
            f"{stats['mean_pairwise_iou']:.3f}, max per-element std {stats['max_std']:.4f}, {stats['distinct_masks']} "
            "distinct binarised masks: they barely depend on the image and the question"
            + (f" (ground truth: mean pairwise IoU {truth['mean_pairwise_iou']:.3f})" if truth else ""))


def task_report(items: Sequence[EvalItem], task: str, geodesic: Any = None, scale: float = 1.0, kind: str = "deco",
                threshold: float = 0.5) -> dict[str, Any]:
    """The report of one task's items: human 3D contact (:func:`contact_report`), 2D contact
    (:func:`photo_contact_report`), object contact (:func:`object_contact_report`) or affordance
    (:func:`affordance_report`), with ``diversity`` and ``seg_rate`` added."""
    items = list(items)
    if not items:
        raise ValueError("nothing to score: no samples")
    if task in HUMAN_3D_TASKS:
        report = contact_report([(i.image_path, i.object_name, i.pred, i.gt) for i in items], geodesic=geodesic,
                                scale=scale, kind=kind, threshold=threshold)
    elif task in PHOTO_TASKS:
        report = photo_contact_report([(i.image_path, i.object_name, i.pred, i.gt) for i in items], threshold=threshold)
    elif task in OBJECT_CONTACT_TASKS:
        report = object_contact_report(items, threshold=threshold)
    elif task in AFFORDANCE_TASKS:
        report = affordance_report(items, drop_all_ones=kind == "interactvlm")
    else:
        raise ValueError(f"no evaluation for task {task!r}")
    report["task"] = task
    report["seg_rate"] = float(np.mean([i.found_seg for i in items]))
    report["diversity"] = _jsonable(diversity_report(items, threshold))
    return report


def headline(report: dict[str, Any]) -> tuple[str, float]:
    """(name, value) of the number a report is ranked by: semantic F1, pixel F1, object-contact F1 or SIM."""
    overall = report["semantic"]["overall"]
    key = "sim" if report.get("kind") == "affordance" else "f1"
    return key, float(overall[key])


def selection_score(report: dict[str, Any]) -> float:
    """The number training selects its best model by: :func:`headline`, except that a human-contact set holding only
    ``supporting`` (which the semantic metric leaves out, as DECO does) falls back to its binary F1."""
    if report.get("task") in HUMAN_3D_TASKS and not report["semantic"]["overall"].get("count"):
        return float(report["binary"]["f1"])
    return headline(report)[1]


def object_contact_report(items: Sequence[EvalItem], threshold: float = 0.5,
                          thresholds: Sequence[float] = tuple(np.linspace(0.05, 0.95, 19))) -> dict[str, Any]:
    """Per-vertex contact on object meshes, one (image, object) pair per item: the original's eps P/R/F1 (PICO's
    ``get_o_contact_metrics``) and DECO's rules, overall and per object, with the precision-recall curve."""
    items = list(items)
    preds, gts, names = [i.pred for i in items], [i.gt for i in items], [i.object_name for i in items]
    metrics = M.object_contact_metrics(preds, gts, names, threshold)
    curve = {"thresholds": list(map(float, thresholds)), "precision": [], "recall": [], "f1": []}
    for t in thresholds:
        overall = M.object_contact_metrics(preds, gts, names, float(t))["overall"]
        for k in ("precision", "recall", "f1"):
            curve[k].append(overall[k])
    per_sample = [{"image_id": i.image_path, "object": i.object_name,
                   **{k: float(v[n]) for k, v in metrics["per_sample"].items()}} for n, i in enumerate(items)]
    return {"kind": "object_contact", "threshold": threshold, "num_samples": len(items),
            "semantic": _jsonable({"overall": metrics["overall"], "per_object": metrics["per_object"],
                                   "per_sample": per_sample}),
            "pr_curve": _jsonable(curve)}


def affordance_report(items: Sequence[EvalItem], drop_all_ones: bool = False) -> dict[str, Any]:
    """PIAD affordance on point clouds (or meshes): SIM, MAE, AUC and aIoU with IAGNet's NaN rule, overall and per
    object; ``drop_all_ones`` also drops all-positive GTs (the original InteractVLM's variant)."""
    items = list(items)
    metrics = M.affordance_metrics([i.pred for i in items], [i.gt for i in items], [i.object_name for i in items],
                                   drop_all_ones=drop_all_ones)
    return {"kind": "affordance", "num_samples": len(items), "drop_all_ones": drop_all_ones,
            "semantic": _jsonable({"overall": metrics["overall"], "per_object": metrics["per_object"],
                                   "per_sample": metrics["per_sample"]})}


def contact_report(samples: Sequence[Sample], geodesic: Any = None, scale: float = 1.0, kind: str = "deco",
                   threshold: float = 0.5) -> dict[str, Any]:
    """Semantic (per image–object) and binary (per image, union over objects) contact metrics.

    ``kind="deco"``: DECO's per-image means and edge cases, ``supporting`` ignored in the semantic metrics (our
    default, comparable with DECO's tables);
    ``kind="interactvlm"``: the original's formulas (pooled P/R, soft semantic P/R) next to its published numbers.
    """
    samples = list(samples)
    if kind == "deco":
        semantic = M.semantic_contact_metrics(samples, geodesic=geodesic, threshold=threshold, scale=scale)
        binary = M.binary_union_metrics(samples, threshold=threshold, geodesic=geodesic, scale=scale)
        binary = {k: v for k, v in binary.items() if k not in ("image_ids", "per_image")}
    elif kind == "interactvlm":
        semantic = M.interactvlm_semantic_metrics(samples, threshold=threshold)
        binary = M.interactvlm_binary_metrics(samples, threshold=threshold)
    else:
        raise ValueError(f"unknown metrics kind {kind!r}; use 'deco' or 'interactvlm'")
    preds = np.stack([s[2] for s in samples])
    gts = np.stack([s[3] for s in samples])
    curve = M.precision_recall_curve(preds, gts)
    return {"kind": kind, "threshold": threshold, "num_samples": len(samples), "semantic": _jsonable(semantic),
            "binary": _jsonable(binary), "pr_curve": _jsonable(curve)}


PhotoSample = tuple[str, str, np.ndarray, np.ndarray]  # (image id, object name, pred logits [H, W], gt [H, W])


def photo_contact_report(samples: Sequence[PhotoSample], threshold: float = 0.5,
                         thresholds: Sequence[float] = tuple(np.linspace(0.05, 0.95, 19))) -> dict[str, Any]:
    """2D contact on photos (``h2dcontact``): per (image, object) pixel P/R/F1 with DECO's rules, gIoU and cIoU,
    overall and per object, plus the precision-recall curve over thresholds (same report layout as
    :func:`contact_report`, ``kind="pixels"``)."""
    samples = list(samples)
    preds, gts = [s[2] for s in samples], [s[3] for s in samples]
    overall = M.pixel_contact_metrics(preds, gts, threshold=threshold)
    keep = ("f1", "precision", "recall", "giou", "ciou", "count")
    per_object = {}
    for name in sorted({s[1] for s in samples}):
        idx = [i for i, s in enumerate(samples) if s[1] == name]
        metrics = M.pixel_contact_metrics([preds[i] for i in idx], [gts[i] for i in idx], threshold=threshold)
        per_object[name] = {k: metrics[k] for k in keep}
    curve = {"thresholds": list(map(float, thresholds)), "precision": [], "recall": [], "f1": []}
    for t in thresholds:
        m = M.pixel_contact_metrics(preds, gts, threshold=float(t))
        for k in ("precision", "recall", "f1"):
            curve[k].append(m[k])
    return {"kind": "pixels", "threshold": threshold, "num_samples": len(samples),
            "semantic": _jsonable({"overall": {k: overall[k] for k in keep}, "per_object": per_object,
                                   "per_sample": {"f1": overall["per_image_f1"]}}),
            "pr_curve": _jsonable(curve)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


# Object-side report kinds: their metric columns and how one report's overall metrics fill them.
OBJECT_TABLE_COLUMNS: dict[str, tuple[str, Any]] = {
    "object_contact": ("object F1 | object P | object R | DECO F1",
                       lambda m: f"{m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['deco_f1']:.3f}"),
    "affordance": ("SIM | MAE | AUC (%) | aIoU (%)",
                   lambda m: f"{m['sim']:.3f} | {m['mae']:.3f} | {100 * m['auc']:.2f} | {100 * m['aiou']:.2f}"),
}


def markdown_table(rows: dict[str, dict[str, Any]], title: str = "") -> str:
    """One row per method/split: F1, precision, recall (semantic, binary) and FP geodesic error; for 2D reports
    (``kind="pixels"``) pixel F1/P/R, gIoU and cIoU."""
    kinds = {r.get("kind") for r in rows.values()}
    if rows and len(kinds) == 1 and next(iter(kinds)) in OBJECT_TABLE_COLUMNS:
        header, cells = OBJECT_TABLE_COLUMNS[next(iter(kinds))]
        lines = [f"### {title}" if title else "", "", f"| method | {header} | seg rate | mean pairwise IoU | samples |",
                 "|---" * (len(header.split(" | ")) + 4) + "|"]
        for name, report in rows.items():
            lines.append(f"| {name} | {cells(report['semantic']['overall'])} | {_cell(report.get('seg_rate'))} | "
                         f"{_cell(_pairwise_iou(report))} | {report['num_samples']} |")
        return "\n".join(lines).strip() + "\n"
    if len(kinds) > 1 and not kinds <= {"deco", "interactvlm"}:
        raise ValueError(f"cannot mix reports of different kinds in one table (2D pixels, 3D vertices, objects, "
                         f"affordances): {sorted(map(str, kinds))}")
    if rows and all(r.get("kind") == "pixels" for r in rows.values()):
        lines = [f"### {title}" if title else "", "",
                 "| method | pixel F1 | pixel P | pixel R | gIoU | cIoU | samples |", "|---|---|---|---|---|---|---|"]
        for name, report in rows.items():
            m = report["semantic"]["overall"]
            lines.append(f"| {name} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['giou']:.3f} | "
                         f"{m['ciou']:.3f} | {report['num_samples']} |")
        return "\n".join(lines).strip() + "\n"
    lines = [f"### {title}" if title else "", "",
             "| method | semantic F1 | semantic P | semantic R | FP geo (cm) | binary F1 | binary P | binary R | "
             "mean pairwise IoU | samples |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, report in rows.items():
        sem, binary = report["semantic"]["overall"], report["binary"]
        geo = sem.get("fp_geo")
        lines.append(f"| {name} | {sem['f1']:.3f} | {sem['precision']:.3f} | {sem['recall']:.3f} | "
                     f"{'—' if geo is None else f'{geo:.2f}'} | {binary['f1']:.3f} | {binary['precision']:.3f} | "
                     f"{binary['recall']:.3f} | {_cell(_pairwise_iou(report))} | {report['num_samples']} |")
    return "\n".join(lines).strip() + "\n"


def _cell(value: Any) -> str:
    return "—" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.3f}"


def _pairwise_iou(report: dict[str, Any]) -> float | None:
    return (report.get("diversity") or {}).get("prediction", {}).get("mean_pairwise_iou")


def write_report(report: dict[str, Any], output_dir: str | Path, name: str = "results") -> dict[str, Path]:
    """``results.json``, ``results.md``, ``per_object_f1.png`` and ``pr_curve.png`` in ``output_dir``."""
    # here, not at the top: the Agg backend must be chosen before pyplot is imported, and only a report that
    # draws plots should change the backend of the process that imports this module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": output_dir / f"{name}.json", "md": output_dir / f"{name}.md",
             "bars": output_dir / "per_object_f1.png", "curve": output_dir / "pr_curve.png"}
    slim = {k: v for k, v in report.items() if k != "semantic"}
    slim["semantic"] = {k: v for k, v in report["semantic"].items() if k != "per_sample"}
    paths["json"].write_text(json.dumps(report, indent=1))
    warning = collapse_warning(report.get("diversity") or {}, report.get("method", "model"))
    paths["md"].write_text(markdown_table({report.get("method", "model"): report}, report.get("title", ""))
                           + (f"\n**Warning:** {warning}\n" if warning else "")
                           + "\n```json\n" + json.dumps(slim["semantic"].get("per_object", {}), indent=1) + "\n```\n"
                           + ("\nPrediction diversity:\n```json\n" + json.dumps(report["diversity"], indent=1) + "\n```\n"
                              if report.get("diversity") else ""))
    per_object = report["semantic"].get("per_object", {})
    if per_object:
        names = list(per_object)
        key = headline(report)[0]
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(names) + 1), 3))
        ax.bar(names, [per_object[n][key] for n in names], color="#c0392b")
        ax.set_ylabel(key.upper() if key == "sim" else "F1")
        ax.set_ylim(0, 1)
        ax.set_title(f"{_TASK_TITLES.get(report.get('kind'), 'semantic contact')} {key.upper() if key == 'sim' else 'F1'} per object")
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
        fig.tight_layout()
        fig.savefig(paths["bars"], dpi=100)
        plt.close(fig)
    curve = report.get("pr_curve")
    if curve is None:  # affordance: continuous heat maps, no single precision-recall curve
        paths.pop("curve")
        return paths
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.plot(curve["recall"], curve["precision"], marker="o", ms=3)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("precision-recall over thresholds")
    fig.tight_layout()
    fig.savefig(paths["curve"], dpi=100)
    plt.close(fig)
    return paths


_TASK_TITLES = {"object_contact": "object contact", "affordance": "affordance", "pixels": "2D contact"}


def combination_table(rows: dict[str, dict[str, Any]], pose_family: dict[str, str], metric: str = "f1") -> str:
    """Mean per-sample ``metric`` per (pose family × object) and method: SynthContact's table of which contact
    only the image can tell. ``pose_family``: image stem → family (``meta.jsonl``). Reports whose samples carry
    image ids and objects (human semantic contact, object contact) only."""
    cells: dict[str, dict[str, list[float]]] = {}
    for name, report in rows.items():
        samples = report["semantic"].get("per_sample")
        if not isinstance(samples, list) or (samples and "image_id" not in samples[0]):
            raise ValueError(f"{name}: its report has no per-sample image ids ({report.get('kind')} report)")
        for sample in samples:
            family = pose_family.get(Path(str(sample["image_id"])).stem)
            if family is None:
                raise KeyError(f"{name}: image {sample['image_id']} is not in the given meta.jsonl files")
            cells.setdefault(f"{family} × {sample['object']}", {}).setdefault(name, []).append(float(sample[metric]))
    names = list(rows)
    lines = ["| pose family × object | " + " | ".join(names) + " | pairs |", "|---" * (len(names) + 2) + "|"]
    for combo in sorted(cells):
        values = [cells[combo].get(n) for n in names]
        count = max(len(v) for v in values if v)
        lines.append(f"| {combo} | " + " | ".join("—" if not v else f"{np.mean(v):.3f}" for v in values) + f" | {count} |")
    return "\n".join(lines) + "\n"


def read_pose_families(meta_paths: Sequence[str | Path]) -> dict[str, str]:
    """Image stem → pose family from SynthContact ``meta.jsonl`` files."""
    families = {}
    for path in meta_paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                meta = json.loads(line)
                families[meta["stem"]] = meta["pose_family"]
    return families


def comparison_tables(rows: dict[str, dict[str, Any]]) -> str:
    """:func:`markdown_table` per kind of report (human 3D, 2D, object contact, affordance), titled when several."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for name, report in rows.items():
        kind = "deco" if report.get("kind") == "interactvlm" else str(report.get("kind"))
        groups.setdefault(kind, {})[name] = report
    titles = {"deco": "human contact", "pixels": "2D human contact", "object_contact": "object contact",
              "affordance": "object affordance"}
    return "\n".join(markdown_table(group, titles.get(kind, kind) if len(groups) > 1 else "")
                     for kind, group in groups.items())


USAGE = ("usage: python -m utils.evaluation table OUT.md NAME=results.json [NAME=results.json …]\n"
         "       python -m utils.evaluation combinations OUT.md META.jsonl [META.jsonl …] NAME=results.json [...]")


def main(argv: list[str] | None = None) -> None:
    """``table``: one comparison table (one per kind of report) from several reports; ``combinations``: the
    per-(pose family × object) F1 of several reports on SynthContact splits (their ``meta.jsonl`` files given)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] not in ("table", "combinations"):
        raise SystemExit(USAGE)
    command, out = args[0], Path(args[1])
    pairs = [a.split("=", 1) for a in args[2:] if "=" in a]
    metas = [a for a in args[2:] if "=" not in a]
    if not pairs or (command == "table" and metas) or (command == "combinations" and not metas):
        raise SystemExit(USAGE)
    if command == "combinations":  # a name given twice (test and held-out reports) is one column
        merged: dict[str, dict[str, Any]] = {}
        for name, path in pairs:
            report = json.loads(Path(path).read_text())
            if name in merged:
                merged[name]["semantic"]["per_sample"] += report["semantic"]["per_sample"]
            else:
                merged[name] = report
        text = combination_table(merged, read_pose_families(metas))
    else:
        text = comparison_tables({name: json.loads(Path(path).read_text()) for name, path in pairs})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
