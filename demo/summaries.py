"""What the JSON summaries say: per-body-part scores, the body parts an answer names, one query's summary, the
per-sample information (image, model, notes) and the notes about the model's training data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from demo.jobs import DemoInput, Job, QueryResult
from demo.photos import LoadedImage

PART_MIN_COVERAGE = 0.1  # a body part "is in contact" when >= 10 % of its vertices are (the original's rule)
NO_SEG_NOTE = ("the model's answer contained no segmentation token, so there is no prediction: the contact output is "
               "empty (all zeros) — this means 'no answer', not 'no contact'")
NO_SEG_PHOTO_NOTE = ("the model's answer contained no segmentation token, so there is no prediction: the mask is "
                     "empty — this means 'no answer', not 'no contact'")
PHOTO_NOTE = ("2D model: contact is predicted on the photo's pixels; there are no per-vertex probabilities and no "
              "mesh, and body parts are only those the answer names (no per-part scores)")


def body_part_scores(probs: np.ndarray, segmentation: dict[str, np.ndarray], threshold: float) -> list[dict[str, Any]]:
    """Per body part: mean probability over its vertices and the fraction of its vertices at or above ``threshold``,
    sorted by the fraction then the mean (most contacting first)."""
    rows = []
    for name, ids in segmentation.items():
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < len(probs))]
        if not len(ids):
            continue
        values = probs[ids]
        rows.append({"part": name, "mean_prob": round(float(values.mean()), 4),
                     "fraction_above_threshold": round(float((values >= threshold).mean()), 4),
                     "num_vertices": int(len(ids))})
    rows.sort(key=lambda r: (-r["fraction_above_threshold"], -r["mean_prob"], r["part"]))
    return rows


def body_parts_named_in(text: str, part_names: list[str]) -> list[str]:
    """Body-part names a 2D model's answer mentions, in the answer's order (whole words; longest names first, so
    "left hand" is not also counted as "hand")."""
    rest, found = text.lower(), []
    for name in sorted(part_names, key=len, reverse=True):
        pattern = re.compile(rf"\b{re.escape(name.lower().replace('_', ' '))}\b")
        match = pattern.search(rest)
        if match:
            found.append((match.start(), name))
            rest = pattern.sub(lambda m: " " * len(m.group()), rest)
    return [name for _, name in sorted(found)]


def contacting_body_parts(scores: list[dict[str, Any]], min_coverage: float = PART_MIN_COVERAGE) -> list[str]:
    """The parts with at least ``min_coverage`` of their vertices in contact."""
    return [r["part"] for r in scores if r["fraction_above_threshold"] >= min_coverage and r["fraction_above_threshold"] > 0]


def query_summary(result: QueryResult, threshold: float) -> dict[str, Any]:
    """One 3D query: prompt, answer, contact counts, body parts (when the template has a segmentation), notes."""
    contact = result.vertex_probs >= threshold
    out: dict[str, Any] = {
        "kind": result.kind, "object": result.object, "template": result.template_name, "prompt": result.prompt,
        "answer": result.text, "found_seg": bool(result.found_seg), "num_vertices": int(len(result.vertex_probs)),
        "num_contact_vertices": int(contact.sum()), "max_prob": round(float(result.vertex_probs.max(initial=0.0)), 4),
        "mean_prob": round(float(result.vertex_probs.mean()) if len(result.vertex_probs) else 0.0, 4),
    }
    if result.segmentation is not None:
        scores = body_part_scores(result.vertex_probs, result.segmentation, threshold)
        out["body_parts"] = scores
        out["contact_body_parts"] = contacting_body_parts(scores)
    out["notes"] = list(result.notes) + ([] if result.found_seg else [NO_SEG_NOTE])
    return out


def photo_query_summary(result: QueryResult, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """One 2D query (``probs [H, W]`` on the photo): contact pixels and the body parts the answer names."""
    contact = probs >= threshold
    query = {"kind": result.kind, "object": result.object, "template": "photo", "prompt": result.prompt,
             "answer": result.text, "found_seg": bool(result.found_seg), "mask_size": [int(probs.shape[1]), int(probs.shape[0])],
             "num_contact_pixels": int(contact.sum()), "contact_fraction": round(float(contact.mean()), 6),
             "max_prob": round(float(probs.max(initial=0.0)), 4), "mean_prob": round(float(probs.mean()), 4)}
    if result.segmentation is not None:
        query["answer_body_parts"] = body_parts_named_in(result.text, list(result.segmentation))
    return query


def synthetic_only(config) -> bool:
    """Whether the model's body is the procedural ``synthbody`` (trained on SynthContact only)."""
    return getattr(config, "human_template", None) == "synthbody"


def training_note(model_name: str, config) -> str:
    """What the model was trained on, for the run's README and every summary."""
    if synthetic_only(config):
        return (f"The model '{model_name}' is trained on synthetic data only (SynthContact: a procedural body, "
                "'synthbody', with primitive objects). On real photos its output exercises the pipeline; it is not a "
                "meaningful contact estimate.")
    return f"Model '{model_name}' (human template {getattr(config, 'human_template', '?')})."


def vocabulary_note(obj: str, vocabulary: list[str] | None) -> tuple[bool | None, str | None]:
    """Whether ``obj`` is among the objects the model was trained on (``None``: the model does not record them), and
    the note the summary carries when it is not: the model then answers with confidence about a word it never saw."""
    if vocabulary is None:
        return None, None
    known = {v.replace("_", " ") for v in vocabulary}
    if obj.replace("_", " ") in known:
        return True, None
    listing = ", ".join(sorted(vocabulary)[:20]) + (" …" if len(vocabulary) > 20 else "")
    return False, (f"the object {obj!r} is outside this model's training vocabulary ({listing}); its answer is an "
                   "extrapolation, not a trained estimate")


def sample_info(base: dict, item: DemoInput, loaded: LoadedImage, job: Job, notes: list[str],
                vocabulary: list[str] | None) -> dict:
    """The per-sample part of a summary: the run's model information, the image as read, the object's notes."""
    info = dict(base)
    known, note = vocabulary_note(job.object, vocabulary)
    info.update({"image": str(Path(item.image_path).resolve()), "image_size": list(loaded.original_size),
                 "processed_size": [int(loaded.pixels.shape[1]), int(loaded.pixels.shape[0])],
                 "image_mode": loaded.source_mode, "downscaled": bool(loaded.downscaled),
                 "object_in_training_vocabulary": "unknown" if known is None else known,
                 "notes": list(notes) + ([note] if note else [])})
    if item.frame_index is not None:
        info["frame_index"] = item.frame_index
    if job.object_template_dir is not None:
        info["object_mesh"] = str(item.mesh_path)
        info["object_template_dir"] = str(job.object_template_dir)
    return info
