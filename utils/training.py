"""The pieces of ``train.py`` that are not the loop: building the model for a recipe, turning a collated batch into
model inputs and per-sample losses, validation in generate mode, exporting a model directory."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datasets.collate import photo_template
from model.config import build_config
from model.interactvlm import InteractVLMForCausalLM
from model.io import attach_tokenizer, load_interactvlm, save_interactvlm
from model.losses import LossWeights, combine_losses
from model.tokenizer import build_tiny_tokenizer
from model.view_templates import PhotoTemplate, ViewTemplate
from utils.body_models import canonical_mesh, default_body_model_dir
from utils.chat_prompt import chat_prompt
from utils.evaluation import EvalItem, collapse_warning, item_from_prediction, selection_score, task_report
from utils.geometry.template_views import render_template
from utils.geometry.views import get_view_set
from utils.paths import REPO_ROOT
from utils.recipes import Recipe

EXPORT_LIMIT = 2e9  # parameters: above this, merge LoRA offline (scripts/run_prepare_weights.sh), not in the loop


def human_template_folder(dataset_dir: Path, template: str, view_set: str) -> Path:
    """Where the human SAM inputs of a body model live: ours (``data/templates/<body>/<view set>``) or the
    original's download (``data/hcontact_vitruvian[_mv2]``)."""
    ours = Path(dataset_dir) / "templates" / template / view_set
    if (ours / "template.json").is_file():
        return ours
    official = Path(dataset_dir) / get_view_set(view_set).folder
    if (official / "pixel_to_vertex_map_1024.npz").is_file():
        return official
    return ours


def ensure_human_template(dataset_dir: Path, config) -> ViewTemplate:
    """The human template of a config, rendering it first when it is ours and missing (cheap, resumable)."""
    folder = human_template_folder(dataset_dir, config.human_template, config.human_view_set)
    official = (folder / "pixel_to_vertex_map_1024.npz").is_file()
    if config.human_template == "synthbody" and not official:  # ours: render what is missing (resumable, seconds)
        body = canonical_mesh("synthbody", default_body_model_dir())
        render_template(folder, get_view_set(config.human_view_set), sorted({config.mask_size, config.sam_image_size}),
                        kind="body", vertices=body.vertices, faces=body.faces, name="synthbody")
    elif not (folder / "template.json").is_file() and not official:
        raise FileNotFoundError(
            f"no renders of {config.human_template} for {config.human_view_set} at {folder}: run "
            f"`python -m preprocess_data.render_views --template {config.human_template} --view-set {config.human_view_set} "
            f"--sizes 1024` (needs the licensed body model) or fetch the original data.zip")
    num_vertices = 6890 if config.human_template in ("smpl", "smplh") else None
    return ViewTemplate.from_folder(folder, config.human_view_set, config.mask_size, config.sam_image_size,
                                    config.human_lift_mode, name="human", num_vertices=num_vertices)


def _repo_path(path: str | Path) -> Path:
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
        model, tokenizer = load_interactvlm(_repo_path(recipe.init), device=device)
        for key, value in recipe.model_overrides.items():
            setattr(model.config, key, value)
    else:
        tokenizer = build_tiny_tokenizer() if recipe.preset == "tiny" else None
        if tokenizer is None:
            raise ValueError(f"recipe {recipe.name}: preset {recipe.preset} needs an init model directory (pretrained LISA)")
        config = build_config(recipe.preset, **recipe.model_overrides)
        attach_tokenizer(config, tokenizer)
        model = InteractVLMForCausalLM(config).to(device)
        if recipe.warm_start:
            warm_start(model, _repo_path(recipe.warm_start))
    if model.config.contact_2d:  # SAM sees each sample's photo: no body template
        return model, tokenizer
    if "human" not in model.templates or recipe.model_overrides.get("human_view_set"):
        model.add_template("human", ensure_human_template(dataset_dir, model.config))
    return model, tokenizer


_OBJECT_TEMPLATES: dict[str, ViewTemplate] = {}


def check_model_kind(model, key: str) -> None:
    """2D samples need a 2D model and vice versa: a mismatch would train or score the wrong SAM input silently."""
    if (key == "image") != bool(model.config.contact_2d):
        need, have = ("a 2D", "a 3D") if key == "image" else ("a 3D", "a 2D")
        raise ValueError(f"{key!r} samples need {need} model (config.contact_2d={key == 'image'}), but this is {have} "
                         f"model; use a 2D recipe/model for h2dcontact data and a 3D one for template data")


def sample_template(model, key: str, meta: dict | None = None, num_vertices: int | None = None,
                    photo: PhotoTemplate | None = None) -> ViewTemplate | PhotoTemplate:
    """``"human"``, ``"image"`` (a 2D sample: its photo, from the collated ``photo`` input), a template folder, or an
    object sample's per-view files (``meta["render_paths"]`` and ``meta["lift_map_paths"]``), cached per object so
    each one's SAM embeddings are computed once."""
    check_model_kind(model, key)
    if key == "image":
        if photo is None:
            raise ValueError("a 2D sample needs its photo's SAM input (the Collator's `photos` entry)")
        return photo.to(model.device)
    if key == "human":
        return model.template("human")
    files = tuple((meta or {}).get("lift_map_paths", ()))
    cache_key = files or key
    if cache_key not in _OBJECT_TEMPLATES:
        config = model.config
        if files:
            point_maps = "p2pmap" in Path(files[0]).name
            template = ViewTemplate.from_files(meta["render_paths"], files, config.object_view_set, config.mask_size,
                                               config.sam_image_size, num_vertices,
                                               "soft" if point_maps else config.object_lift_mode)
        else:
            template = ViewTemplate.from_folder(key, config.object_view_set, config.mask_size, config.sam_image_size,
                                                config.object_lift_mode)
        _OBJECT_TEMPLATES[cache_key] = template.to(model.device)
    return _OBJECT_TEMPLATES[cache_key]


def model_inputs(model, batch: dict) -> dict:
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


@torch.no_grad()
def predict_dataset(model, tokenizer, dataset, max_samples: int | None = None, batch_size: int = 8, progress: bool = False):
    """Generate-mode predictions over a contact dataset: lists of (sample, ContactPrediction).

    Each prompt is :func:`utils.chat_prompt.chat_prompt` of the model's config and the sample's question: the text
    the collator trains on, token for token."""
    count = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    results = []
    for start in tqdm(range(0, count, batch_size), desc=f"predict {getattr(dataset, 'name', '')}", disable=not progress):
        samples = [dataset[i] for i in range(start, min(count, start + batch_size))]
        queries = [{"image": j, "prompt": chat_prompt(model.config, s["question"]), "template": query_template(model, s)}
                   for j, s in enumerate(samples)]
        predictions = model.generate_contact(tokenizer, [s["image"] for s in samples], queries)
        results.extend(zip(samples, predictions))
    return results


def query_template(model, sample: dict) -> ViewTemplate | PhotoTemplate:
    """A sample's SAM input at generation time; 2D masks come back at the size of the sample's target mask."""
    key = sample["template"] or "human"
    photo = photo_template(sample, model.config.sam_image_size) if key == "image" else None
    return sample_template(model, key, sample.get("meta"),
                           None if sample["vertex_labels"] is None else len(sample["vertex_labels"]), photo)


def prediction_items(model, tokenizer, dataset, max_samples: int | None = None, batch_size: int = 8,
                     keep_views: int = 0, progress: bool = False) -> list[EvalItem]:
    """Generate-mode predictions as scored items (:class:`utils.evaluation.EvalItem`); the first ``keep_views``
    keep their full masks and template renders for qualitative pictures. Answers without a seg token count as
    empty predictions (their warnings are not printed one by one: ``seg_rate`` reports them)."""
    task = getattr(dataset, "task", "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pairs = predict_dataset(model, tokenizer, dataset, max_samples, batch_size, progress)
    items = []
    for n, (sample, pred) in enumerate(pairs):
        probs = None if pred.vertex_probs is None else pred.vertex_probs.float().cpu().numpy()
        template = query_template(model, sample) if n < keep_views else None
        items.append(item_from_prediction(sample, task, probs, pred.mask_logits.float().cpu().numpy(), pred.found_seg,
                                          n < keep_views, template))
    return items


MIN_SELECTION_PAIRS = 200  # fewer validation pairs make the best-model choice a coin toss between close epochs


def validate(model, tokenizer, val_sets, recipe: Recipe) -> dict[str, float]:
    """Per validation set, in generate mode (the model writes its own answer, as at test time): the task's metrics
    as ``evaluate.py`` reports them, the prediction diversity, and ``score`` = the task's headline (semantic F1 for
    human contact, pixel F1 for 2D, object-contact F1, affordance SIM). ``selection_score`` (the mean of the sets'
    scores) drives best-model selection. A set whose predictions collapse to one mask is flagged
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
    finite = [v for k, v in scores.items() if k.endswith("/score") and np.isfinite(v)]
    scores["selection_score"] = float(np.mean(finite)) if finite else float("nan")
    return scores


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
