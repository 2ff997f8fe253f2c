"""A model and its tokenizer for a recipe: the preset's random initialisation (tiny), an ``init`` model directory
(pretrained LISA or one of ours), optionally warm-started from another model directory."""

from __future__ import annotations

from pathlib import Path

from model.config import build_config
from training.calibration import reset_decision_thresholds
from model.interactvlm import InteractVLMForCausalLM
from model.io import attach_tokenizer, load_interactvlm
from model.tokenizer import build_tiny_tokenizer
from training.templates import ensure_human_template
from utils.paths import REPO_ROOT
from training.recipes import Recipe


def repo_path(path: str | Path) -> Path:
    """Recipe paths are relative to the repository, never to the working directory."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def warm_start(model, model_dir: Path) -> dict[str, int]:
    """Copy every tensor of ``model_dir`` whose name and shape match ``model``'s (the rest keeps its initialisation).

    Used to start a 2D model from a 3D one: CLIP, LM, projector and SAM carry over, the per-view camera gates do not.
    The source is loaded as a model (not read as raw safetensors): transformers renames keys on save and load.
    """
    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"warm start: {model_dir} is not a model directory (no config.json)")
    source = InteractVLMForCausalLM.from_pretrained(model_dir).state_dict()
    own = model.state_dict()
    matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    counts = {"copied": len(matched), "skipped": len(source) - len(matched), "left_random": len(own) - len(matched)}
    print(f"warm start from {model_dir}: {counts['copied']} tensors copied, {counts['skipped']} skipped "
          f"(name/shape mismatch), {counts['left_random']} left at their initialisation")
    return counts


def build_model(recipe: Recipe, device: str, dataset_dir: Path | None = None):
    """Model + tokenizer for a recipe: from its ``init`` model directory, or the preset's random initialisation."""
    dataset_dir = Path(dataset_dir) if dataset_dir is not None else REPO_ROOT / "data"
    if recipe.init:
        model, tokenizer = load_interactvlm(repo_path(recipe.init), device=device)
        for key, value in recipe.model_overrides.items():
            setattr(model.config, key, value)
        # training and validation see the raw probabilities; thresholds are chosen again on validation
        reset_decision_thresholds(model.config)
    else:
        tokenizer = build_tiny_tokenizer() if recipe.preset == "tiny" else None
        if tokenizer is None:
            raise ValueError(f"recipe {recipe.name}: preset {recipe.preset} needs an init model directory (pretrained LISA)")
        config = build_config(recipe.preset, **recipe.model_overrides)
        attach_tokenizer(config, tokenizer)
        model = InteractVLMForCausalLM(config).to(device)
        if recipe.warm_start:
            warm_start(model, repo_path(recipe.warm_start))
    if model.config.contact_2d:  # SAM sees each sample's photo: no body template
        return model, tokenizer
    if "human" not in model.templates or recipe.model_overrides.get("human_view_set"):
        model.add_template("human", ensure_human_template(dataset_dir, model.config))
    return model, tokenizer
