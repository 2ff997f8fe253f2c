"""Contact evaluation reports: metrics over (image, object) predictions, Markdown tables, plots, qualitative renders.

Used by ``evaluate.py`` for the model and for the baselines, so every number in a comparison comes from the same code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from utils import metrics as M

Sample = tuple[str, str, np.ndarray, np.ndarray]  # (image id, object name, pred [N], gt [N])


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


def markdown_table(rows: dict[str, dict[str, Any]], title: str = "") -> str:
    """One row per method/split: F1, precision, recall (semantic, binary) and FP geodesic error; for 2D reports
    (``kind="pixels"``) pixel F1/P/R, gIoU and cIoU."""
    if rows and all(r.get("kind") == "pixels" for r in rows.values()):
        lines = [f"### {title}" if title else "", "",
                 "| method | pixel F1 | pixel P | pixel R | gIoU | cIoU | samples |", "|---|---|---|---|---|---|---|"]
        for name, report in rows.items():
            m = report["semantic"]["overall"]
            lines.append(f"| {name} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['giou']:.3f} | "
                         f"{m['ciou']:.3f} | {report['num_samples']} |")
        return "\n".join(lines).strip() + "\n"
    if any(r.get("kind") == "pixels" for r in rows.values()):
        raise ValueError("cannot mix 2D (pixel) and 3D (vertex) reports in one table")
    lines = [f"### {title}" if title else "", "",
             "| method | semantic F1 | semantic P | semantic R | FP geo (cm) | binary F1 | binary P | binary R | samples |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, report in rows.items():
        sem, binary = report["semantic"]["overall"], report["binary"]
        geo = sem.get("fp_geo")
        lines.append(f"| {name} | {sem['f1']:.3f} | {sem['precision']:.3f} | {sem['recall']:.3f} | "
                     f"{'—' if geo is None else f'{geo:.2f}'} | {binary['f1']:.3f} | {binary['precision']:.3f} | "
                     f"{binary['recall']:.3f} | {report['num_samples']} |")
    return "\n".join(lines).strip() + "\n"


def write_report(report: dict[str, Any], output_dir: str | Path, name: str = "results") -> dict[str, Path]:
    """``results.json``, ``results.md``, ``per_object_f1.png`` and ``pr_curve.png`` in ``output_dir``."""
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
    paths["md"].write_text(markdown_table({report.get("method", "model"): report}, report.get("title", "")) + "\n```json\n"
                           + json.dumps(slim["semantic"].get("per_object", {}), indent=1) + "\n```\n")
    per_object = report["semantic"].get("per_object", {})
    if per_object:
        names = list(per_object)
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(names) + 1), 3))
        ax.bar(names, [per_object[n]["f1"] for n in names], color="#c0392b")
        ax.set_ylabel("F1")
        ax.set_ylim(0, 1)
        ax.set_title("semantic contact F1 per object")
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
        fig.tight_layout()
        fig.savefig(paths["bars"], dpi=100)
        plt.close(fig)
    curve = report["pr_curve"]
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


def blend_mask(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = 0.5) -> np.ndarray:
    """A copy of the uint8 RGB ``image`` with the ``mask`` pixels blended towards ``color`` (every overlay we draw)."""
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    return out.astype(np.uint8)


def overlay_views(overlays: np.ndarray, masks: np.ndarray, valid: np.ndarray | None = None,
                  color: tuple[int, int, int] = (255, 38, 25), alpha: float = 0.5) -> np.ndarray:
    """2×2 grid (topfront | bottomfront / topback | bottomback) with ``masks [V,H,W]`` (bool) blended in red."""
    views = [blend_mask(overlays[v], masks[v] if valid is None else masks[v] & valid[v], color, alpha)
             for v in range(len(overlays))]
    while len(views) % 2:
        views.append(np.full_like(views[0], 255))
    rows = [np.concatenate(views[i: i + 2], axis=1) for i in range(0, len(views), 2)]
    return np.concatenate(rows, axis=0)


def qualitative_panel(image: np.ndarray, overlays: np.ndarray, pred_masks: np.ndarray, gt_masks: np.ndarray | None,
                      valid: np.ndarray | None = None) -> np.ndarray:
    """Input photo | predicted contact (2×2 views) | ground truth (2×2 views), all at the grid's height."""
    import cv2

    pred = overlay_views(overlays, pred_masks, valid)
    height = pred.shape[0]
    scale = height / image.shape[0]
    photo = cv2.resize(image, (max(1, int(round(image.shape[1] * scale))), height), interpolation=cv2.INTER_AREA)
    parts = [photo, pred]
    if gt_masks is not None:
        parts.append(overlay_views(overlays, gt_masks, valid, color=(40, 170, 60)))
    return np.concatenate(parts, axis=1)


def main(argv: list[str] | None = None) -> None:
    """``python -m utils.evaluation table OUT.md NAME=results.json …``: one comparison table from several reports."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != "table":
        raise SystemExit("usage: python -m utils.evaluation table OUT.md NAME=results.json [NAME=results.json …]")
    out, pairs = Path(args[1]), [a.split("=", 1) for a in args[2:]]
    rows = {name: json.loads(Path(path).read_text()) for name, path in pairs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown_table(rows))
    print(out.read_text())


if __name__ == "__main__":
    main()
