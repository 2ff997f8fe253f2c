"""Generate-mode predictions over a dataset: the model writes its own answer to each sample's question, as at test
time. What validation (best-model selection) and ``evaluate.py`` score."""

from __future__ import annotations

import warnings
from dataclasses import replace

import torch
from tqdm import tqdm

from model.interactvlm import ContactPrediction
from training.templates import query_template
from utils.conversation import with_opening
from utils.evaluation import EvalItem, item_from_prediction


def image_groups(samples: list[dict], batch_size: int) -> list[list[list[int]]]:
    """Sample indices grouped by photo (``image_path``, first appearance first), packed into calls of about
    ``batch_size`` queries; the queries of one photo are never split over two calls, so that the shared-prefix
    decoding of ``generate_contact`` runs CLIP and the prefix prefill once per photo."""
    by_photo: dict[object, list[int]] = {}
    for i, sample in enumerate(samples):  # a sample without a path is a photo of its own
        by_photo.setdefault(sample.get("image_path") or ("sample", i), []).append(i)
    calls: list[list[list[int]]] = []
    size = 0
    for group in by_photo.values():
        if not calls or size + len(group) > batch_size:
            calls.append([])
            size = 0
        calls[-1].append(group)
        size += len(group)
    return calls


@torch.no_grad()
def predict_dataset(model, tokenizer, dataset, max_samples: int | None = None, batch_size: int = 8,
                    progress: bool = False, **generate_kwargs) -> list[tuple[dict, ContactPrediction]]:
    """Generate-mode predictions over a contact dataset: (sample, ContactPrediction) pairs in the dataset's order.

    Each prompt is ``model.contact_prompts`` of the sample's question: the text the collator trains on, token for
    token (for an ``opening_turn`` model, after its own answer to the opening question, which then starts the
    prediction's ``text``). The questions about one photo (several objects, several tasks) go to
    ``generate_contact`` together as queries on one image (:func:`image_groups`); answers are the same as one call
    per sample, up to float rounding. ``generate_kwargs`` go to ``generate_contact`` (e.g. a ``logits_processor``)."""
    count = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    samples = [dataset[i] for i in range(count)]
    predictions: list[ContactPrediction | None] = [None] * count
    calls = image_groups(samples, batch_size)
    for call in tqdm(calls, desc=f"predict {getattr(dataset, 'name', '')}", disable=not progress):
        images, asks, order = [], [], []
        for group in call:
            for i in group:
                asks.append({"image": len(images), "question": samples[i]["question"],
                             "task": samples[i].get("task", getattr(dataset, "task", ""))})
                order.append(i)
            images.append(samples[group[0]]["image"])
        prompts = model.contact_prompts(tokenizer, images, asks)
        queries = [{"image": ask["image"], "prompt": prompt, "template": query_template(model, samples[i])}
                   for i, ask, (prompt, _) in zip(order, asks, prompts)]
        answers = model.generate_contact(tokenizer, images, queries, **generate_kwargs)
        for i, (_, opening), prediction in zip(order, prompts, answers):
            predictions[i] = replace(prediction, text=with_opening(opening, prediction.text))
    return list(zip(samples, predictions))


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
