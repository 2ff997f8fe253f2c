"""Complete model directories written during training (LoRA merged), with the recipe and object vocabulary beside
the weights, so that a model directory says how it was made and what it was trained on."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from model.io import save_interactvlm
from training.recipes import Recipe

EXPORT_LIMIT = 2e9  # parameters: above this, merge LoRA offline (scripts/run_prepare_weights.sh), not in the loop


def training_vocabulary(dataset) -> list[str]:
    """The object names of a training set's records (a MixedDataset's sources, or one dataset): recorded in the
    exported model directory so the demo can say when it is asked about an object the model never saw."""
    groups = getattr(dataset, "groups", [[dataset]])
    names = {str(r.class_name).strip().lower() for group in groups for source in group
             for r in getattr(source, "records", []) if getattr(r, "class_name", "")}
    return sorted(names)


def write_training_config(output_dir: str | Path, recipe: Recipe) -> None:
    """``training_config.json``: the recipe travels with the weights, so that a model directory says how it was made."""
    (Path(output_dir) / "training_config.json").write_text(json.dumps(recipe.to_dict(), indent=1, default=str))


def export_model(merge_fn, module, tokenizer, output_dir: Path, recipe: Recipe,
                 training_objects: list[str] | None = None) -> Path | None:
    """A complete model directory (LoRA merged into a copy, so training continues unaffected); its shipped view
    embeddings are written under the current exact cache key by ``save_interactvlm``."""
    if hasattr(module, "merge_and_unload"):
        if sum(p.numel() for p in module.parameters()) > EXPORT_LIMIT:
            print(f"not exporting {output_dir}: merge the LoRA weights offline with scripts/run_prepare_weights.sh")
            return None
        module = merge_fn(copy.deepcopy(module))
    was_training = module.training
    module.eval()
    save_interactvlm(module, tokenizer, output_dir, training_objects=training_objects)
    write_training_config(output_dir, recipe)
    module.train(was_training)
    return output_dir
