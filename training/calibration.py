"""Decision thresholds for a model's human and object contact, chosen on its validation predictions.

``model.calibration`` explains why the model carries them. Here they are chosen: over the validation set's
generate-mode predictions (made at the identity threshold), the threshold on a 0.05 grid that maximises the set's
selection score (semantic F1 for human contact, per-vertex F1 for object contact), ties going to the value nearest
0.5. Training does this at every validation when the recipe asks for it (``Recipe.calibrate_thresholds``) and stores
the thresholds of the best epoch with the exported model; ``python -m training.calibration`` does it for a model
directory that is already trained.

    python -m training.calibration --model-dir trained_models/interactvlm-tiny-synthcontact --recipe synth-tiny-joint
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from model.calibration import IDENTITY_THRESHOLD
from model.io import load_interactvlm
from training.data import build_validation_data
from training.predict import prediction_items
from training.recipes import get_recipe
from utils.paths import REPO_ROOT
from utils.evaluation import HUMAN_3D_TASKS, OBJECT_CONTACT_TASKS, EvalItem, selection_score, task_report

THRESHOLD_GRID = tuple(float(t) for t in np.round(np.arange(0.05, 0.951, 0.05), 2))
KINDS = ("human", "object")


def threshold_kind(task: str) -> str | None:
    """Which of the model's thresholds a validation task calibrates: ``human``, ``object`` or None."""
    if task in HUMAN_3D_TASKS:
        return "human"
    if task in OBJECT_CONTACT_TASKS:
        return "object"
    return None


def best_threshold(items: Sequence[EvalItem], task: str, grid: Sequence[float] = THRESHOLD_GRID) -> tuple[float, float]:
    """(threshold, score at it): the grid value with the highest selection score, the one nearest 0.5 on ties."""
    scores = {t: selection_score(task_report(items, task, threshold=t)) for t in grid}
    best = max(scores.values())
    chosen = min((t for t, s in scores.items() if s >= best - 1e-12), key=lambda t: abs(t - IDENTITY_THRESHOLD))
    return chosen, scores[chosen]


def reset_decision_thresholds(config) -> None:
    for kind in KINDS:
        setattr(config, f"{kind}_decision_threshold", IDENTITY_THRESHOLD)


def apply_thresholds(config, scores: dict[str, float]) -> dict[str, float]:
    """Set the config's thresholds from ``validate``'s ``<set>/decision_threshold_<kind>`` entries; returns them."""
    chosen = {}
    for key, value in scores.items():
        for kind in KINDS:
            if key.endswith(f"/decision_threshold_{kind}"):
                chosen[kind] = float(value)
                setattr(config, f"{kind}_decision_threshold", float(value))
    return chosen


def calibrate_model_dir(model_dir: Path, recipe_name: str, data_dir: Path | None = None,
                        device: str = "cpu") -> dict[str, float]:
    """Choose the thresholds of a trained model directory on its recipe's validation sets; rewrite its config.json."""
    recipe = get_recipe(recipe_name)
    model, tokenizer = load_interactvlm(model_dir, device=device)
    reset_decision_thresholds(model.config)
    model.eval()
    human_valid = None if model.config.contact_2d else model.template("human").valid.cpu().numpy()
    val_sets = build_validation_data(recipe, data_dir or REPO_ROOT / "data", model.config, human_valid)
    chosen: dict[str, float] = {}
    for dataset in val_sets:
        kind = threshold_kind(getattr(dataset, "task", ""))
        if kind is None:
            continue
        items = prediction_items(model, tokenizer, dataset, recipe.val_max_samples, progress=True)
        threshold, score = best_threshold(items, dataset.task)
        at_half = selection_score(task_report(items, dataset.task))
        print(f"{dataset.name}: {len(items)} pairs, threshold {threshold:.2f} (score {score:.3f}; at 0.5: {at_half:.3f})")
        chosen[kind] = threshold
    config_path = Path(model_dir) / "config.json"
    config = json.loads(config_path.read_text())
    config.update({f"{kind}_decision_threshold": t for kind, t in chosen.items()})
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return chosen


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--recipe", required=True, help="the recipe whose validation sets choose the thresholds")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset root (default: the repository's data/)")
    args = parser.parse_args(argv)
    return calibrate_model_dir(args.model_dir, args.recipe, args.data_dir)


if __name__ == "__main__":
    main()
