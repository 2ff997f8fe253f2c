"""Batching samples for the model: llava_v1 prompts, token labels, CLIP pixels and mask targets.

The prompt holds exactly ``config.image_seq_length`` image tokens (the model replaces them one-to-one with CLIP
features), is tokenised as ``[BOS] + tokenizer(text, add_special_tokens=False)`` — exactly how
``InteractVLMForCausalLM.generate_contact`` encodes its prompts — and padded on the right. Labels are the input ids
on the answers (each ``" {answer}</s>"``) and −100 everywhere else: the system prompt, every user turn up to and
including ``ASSISTANT:``, the image tokens, the BOS and the padding.

Instruction/answer boundaries are located on the whole text with the tokenizer's character offsets, so the answer is
tokenised in context (as at generation time) rather than re-tokenised piecewise (LISA's length arithmetic, which
drifts by a token whenever a boundary merges).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.interactvlm import clip_preprocess
from model.view_templates import PhotoTemplate

from utils.chat_prompt import chat_prompt, conversation_text
from utils.conversation import HSEG_TOKEN, IM_END_TOKEN, IMAGE_TOKEN, OSEG_TOKEN, SEG_TOKEN

IGNORE_INDEX = -100


def photo_template(sample: dict[str, Any], sam_image_size: int):
    """The SAM input of a 2D sample (template ``"image"``): its photo, with masks decoded at the size of the sample's
    target mask (else the photo's). Training (the collator) and generation (``training.predict``) both use this."""
    shape = None if sample.get("masks") is None else tuple(np.shape(sample["masks"])[-2:])
    return PhotoTemplate.from_image(sample["image"], sam_image_size, shape)


class Collator:
    """``Collator(tokenizer, config, training=True)``; call it on a list of sample dicts (a DataLoader ``collate_fn``).

    Returns a dict with ``input_ids``, ``attention_mask``, ``labels`` (``[B, L]`` long), ``clip_pixel_values``
    (``[B, 3, s, s]``), per-sample lists ``tasks``, ``templates``, ``masks`` (float32 ``[V, M, M]`` tensors at
    ``config.mask_size``, 2D masks ``[1, h, w]`` at the size the dataset gave them, or None), ``photos`` (for 2D
    samples, template ``"image"``: the photo's ``PhotoTemplate`` (:func:`photo_template`), built here in the loader
    workers; None otherwise), ``vertex_labels`` (tensors or None), ``image_paths``, ``class_names``,
    ``datasets``, ``questions``, ``answers``, ``generation_prompts`` (:meth:`generation_prompt`) and
    ``num_seg_tokens`` (``[B]``: seg tokens left in each sequence, = the number of mask predictions it yields).

    In training, sequences longer than ``max_length`` (default ``tokenizer.model_max_length``) are cut at the end; a
    cut inside the image tokens is an error, and a sample whose seg token is cut loses its mask / vertex targets
    (with a warning), so targets and seg tokens always pair up. Evaluation batches are never cut (as in the original);
    over-long ones only warn.
    """

    def __init__(self, tokenizer, config, training: bool = True, max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.training = training
        self.image_tokens = int(config.image_seq_length)
        self.clip_size = int(config.vlm_config.vision_config.image_size)
        self.mask_size = int(config.mask_size)
        self.sam_image_size = int(config.sam_image_size)
        self.use_im_start_end = bool(config.use_im_start_end)
        self.prompt_config = config
        self.max_length = int(max_length or tokenizer.model_max_length)
        if tokenizer.pad_token_id is None or tokenizer.bos_token_id is None:
            raise ValueError("the tokenizer needs a pad and a BOS token")
        vocab = tokenizer.get_vocab()
        if IMAGE_TOKEN not in vocab:
            raise ValueError(f"the tokenizer has no {IMAGE_TOKEN} token; add it with model.tokenizer.add_interactvlm_tokens")
        self.image_token_id = vocab[IMAGE_TOKEN]
        self.image_end_id = vocab.get(IM_END_TOKEN) if self.use_im_start_end else None
        self.seg_token_ids = sorted({vocab[t] for t in (SEG_TOKEN, HSEG_TOKEN, OSEG_TOKEN) if t in vocab})

    # ------------------------------------------------------------------ text
    def encode(self, turns: Sequence[tuple[str, str | None]]) -> tuple[list[int], list[int]]:
        """Token ids (BOS first) and labels of one conversation."""
        text, spans = conversation_text(turns, self.prompt_config)
        if getattr(self.tokenizer, "is_fast", False):
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            labels = [tok if any(s <= start < e for s, e in spans) else IGNORE_INDEX
                      for tok, (start, _) in zip(ids, enc["offset_mapping"])]
        else:  # no offsets: tokenise instruction and answer pieces separately
            ids, labels, position = [], [], 0
            for start, end in [*spans, (len(text), len(text))]:
                for piece, target in ((text[position:start], False), (text[start:end], True)):
                    if piece:
                        piece_ids = self.tokenizer(piece, add_special_tokens=False)["input_ids"]
                        ids += piece_ids
                        labels += piece_ids if target else [IGNORE_INDEX] * len(piece_ids)
                position = end
        count = ids.count(self.image_token_id)
        if count != self.image_tokens:
            raise ValueError(f"the prompt encodes to {count} image tokens instead of {self.image_tokens}; "
                             f"{IMAGE_TOKEN} must be a single special token of the tokenizer")
        return [self.tokenizer.bos_token_id, *ids], [IGNORE_INDEX, *labels]

    def truncate(self, ids: list[int], labels: list[int], image_path: str) -> tuple[list[int], list[int], bool]:
        """Cut to ``max_length``; returns whether a seg token was removed."""
        if len(ids) <= self.max_length:
            return ids, labels, False
        if not self.training:
            warnings.warn(f"{image_path}: {len(ids)} tokens exceed max_length {self.max_length} (not cut in evaluation)",
                          stacklevel=3)
            return ids, labels, False
        image_end = max(i for i, t in enumerate(ids) if t in (self.image_token_id, self.image_end_id))
        if self.max_length <= image_end:
            raise ValueError(f"{image_path}: max_length {self.max_length} would cut inside the {self.image_tokens} image "
                             f"tokens (they end at position {image_end}); raise tokenizer.model_max_length")
        seg_cut = any(t in self.seg_token_ids for t in ids[self.max_length:])
        return ids[: self.max_length], labels[: self.max_length], seg_cut

    # ------------------------------------------------------------------ batch
    def resize_masks(self, masks: np.ndarray | torch.Tensor) -> torch.Tensor:
        tensor = torch.as_tensor(np.asarray(masks, dtype=np.float32))
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tuple(tensor.shape[-2:]) != (self.mask_size, self.mask_size):
            tensor = F.interpolate(tensor[None], size=(self.mask_size, self.mask_size), mode="nearest")[0]
        return tensor

    def generation_prompt(self, sample: dict[str, Any]) -> str:
        """The text a model answers the sample's task question from: its earlier turns (an opening turn with its true
        answer, for ``opening_turn`` data) and the question, ending at ``ASSISTANT:``."""
        turns = sample.get("conversation") or []
        if sample.get("task") == "vqa" or len(turns) < 2:
            return chat_prompt(self.prompt_config, sample["question"])
        return conversation_text([*turns[:-1], (sample["question"], None)], self.prompt_config)[0]

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        all_ids, all_labels, masks, vertex_labels, num_seg, photos = [], [], [], [], [], []
        for sample in samples:
            turns = sample.get("conversation") or [(sample["question"], sample["answer"])]
            ids, labels = self.encode(turns)
            ids, labels, seg_cut = self.truncate(ids, labels, sample["image_path"])
            sample_masks, sample_vertices = sample.get("masks"), sample.get("vertex_labels")
            if seg_cut:
                warnings.warn(f"{sample['image_path']}: truncating to {self.max_length} tokens removed the seg token; "
                              "the sample keeps its text loss but loses its mask and vertex targets", stacklevel=2)
                sample_masks = sample_vertices = None
            all_ids.append(ids)
            all_labels.append(labels)
            num_seg.append(sum(ids.count(t) for t in self.seg_token_ids))
            on_photo = sample.get("template") == "image"
            if sample_masks is None:
                masks.append(None)
            elif on_photo:  # photo frame, aspect kept by the dataset: never squared
                masks.append(torch.as_tensor(np.asarray(sample_masks, dtype=np.float32)).reshape(-1, *np.shape(sample_masks)[-2:]))
            else:
                masks.append(self.resize_masks(sample_masks))
            photos.append(photo_template(sample, self.sam_image_size) if on_photo else None)
            vertex_labels.append(None if sample_vertices is None else torch.as_tensor(np.asarray(sample_vertices, dtype=np.float32)))

        width = max(len(ids) for ids in all_ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(samples), width), pad, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), width), dtype=torch.long)
        for b, (ids, labs) in enumerate(zip(all_ids, all_labels)):
            input_ids[b, : len(ids)] = torch.tensor(ids)
            labels[b, : len(labs)] = torch.tensor(labs)
            attention_mask[b, : len(ids)] = 1

        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "clip_pixel_values": clip_preprocess([s["image"] for s in samples], self.clip_size),
            "tasks": [s["task"] for s in samples],
            "templates": [s.get("template") for s in samples],
            "masks": masks,
            "photos": photos,
            "vertex_labels": vertex_labels,
            "image_paths": [s["image_path"] for s in samples],
            "class_names": [s.get("class_name", "") for s in samples],
            "datasets": [s.get("dataset", "") for s in samples],
            "questions": [s["question"] for s in samples],
            "answers": [s.get("answer") for s in samples],
            "generation_prompts": [self.generation_prompt(s) for s in samples],
            "num_seg_tokens": torch.tensor(num_seg, dtype=torch.long),
            "meta": [s.get("meta", {}) for s in samples],
        }
