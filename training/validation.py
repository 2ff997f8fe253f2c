"""Validation during training: per validation set, the task's metrics in generate mode and the score that chooses
the best model."""

from __future__ import annotations

import warnings

import numpy as np

from training.calibration import best_threshold, threshold_kind
from training.predict import prediction_items
from utils.evaluation import collapse_warning, selection_score, task_report
from training.recipes import Recipe

MIN_SELECTION_PAIRS = 200  # fewer validation pairs make the best-model choice a coin toss between close epochs


def validate(model, tokenizer, val_sets, recipe: Recipe) -> dict[str, float]:
    """Per validation set, in generate mode (the model writes its own answer, as at test time): the task's metrics
    as ``evaluate.py`` reports them, the prediction diversity, and ``score`` = the task's headline (semantic F1 for
    human contact, pixel F1 for 2D, object-contact F1, affordance SIM). ``selection_score`` (the mean of the sets'
    scores) drives best-model selection; with ``recipe.calibrate_thresholds`` each human / object set also gets its
    best decision threshold (``<set>/decision_threshold_<kind>``) and its score there, which selection then uses. A set whose predictions collapse to one mask is flagged
    (``<set>/collapsed`` = 1, a printed warning): selection on it would reward a model that ignores its input."""
    scores: dict[str, float] = {}
    for dataset in val_sets:
        items = prediction_items(model, tokenizer, dataset, recipe.val_max_samples)
        report = task_report(items, getattr(dataset, "task", ""))
        prefix = dataset.name
        overall = report["semantic"]["overall"]
        scores.update({f"{prefix}/{k}": float(v) for k, v in overall.items() if isinstance(v, (int, float))})
        if "binary" in report:
            scores[f"{prefix}/binary_f1"] = float(report["binary"]["f1"])
        scores[f"{prefix}/seg_rate"] = report["seg_rate"]
        scores[f"{prefix}/score"] = selection_score(report)
        kind = threshold_kind(getattr(dataset, "task", "")) if recipe.calibrate_thresholds else None
        if kind is not None:  # the threshold this model would be exported with, and its score there
            threshold, calibrated = best_threshold(items, dataset.task)
            scores[f"{prefix}/decision_threshold_{kind}"] = threshold
            scores[f"{prefix}/score_calibrated"] = calibrated
        diversity = report["diversity"].get("prediction")
        if diversity:
            scores[f"{prefix}/mean_pairwise_iou"] = diversity["mean_pairwise_iou"]
            scores[f"{prefix}/max_std"] = diversity["max_std"]
            scores[f"{prefix}/collapsed"] = float(diversity["collapsed"])
        warning = collapse_warning(report["diversity"], f"validation set {prefix}")
        if warning:
            print(f"WARNING: {warning}")
            warnings.warn(warning, stacklevel=2)
        if len(items) < MIN_SELECTION_PAIRS:
            print(f"note: validation set {prefix} scores only {len(items)} pairs (< {MIN_SELECTION_PAIRS}); "
                  "raise the recipe's val_max_samples (or the split) for a model selection that means something")
    # a calibrating recipe compares models at their own thresholds, as they will be exported
    names = {k.rsplit("/", 1)[0] for k in scores if k.endswith("/score")}
    per_set = [scores.get(f"{n}/score_calibrated", scores[f"{n}/score"]) for n in names]
    finite = [v for v in per_set if np.isfinite(v)]
    scores["selection_score"] = float(np.mean(finite)) if finite else float("nan")
    return scores
