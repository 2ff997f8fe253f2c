"""Greedy decoding of many prompts that share a prefix: prefill the prefix once, reuse its KV cache for every prompt.

Every query about one image repeats the same system sentence and the same 256 image tokens; only the question after
them differs. ``decode_shared_prefix`` runs the language model once over each group's shared prefix, copies that KV
cache to the group's rows, runs the differing suffixes as one batch on top of it and then decodes greedily with the
cache, dropping rows from the batch as they finish. A row finishes at ``</s>`` or, when ``stop_token_ids`` is given,
right after the first of those tokens (the seg token: the masks only need the hidden state that produced it).

Layout of one row in the batch (``·`` = padding, masked out and given no position)::

    [·· prefix of its group ··][···· its suffix ····][generated tokens ...]
     left-padded to the longest   left-padded to the
     prefix of the batch          longest suffix

Position ids count only real tokens, so every row sees exactly the positions and keys it would see alone, and the
outputs equal those of transformers' ``generate`` over the whole left-padded prompts up to floating-point rounding.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from transformers import DynamicCache, LogitsProcessorList

# (token ids [N, L], image index of each row [N]) -> input embeddings [N, L, H] with the image placeholders filled
EmbedFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class DecodedRows:
    """Per prompt: the generated ids (``</s>`` and what follows dropped) and, for the first generated token in
    ``capture_ids``, the final-norm hidden state that predicted it (``None`` if there was none)."""

    tokens: list[list[int]]
    captured_hidden: list[torch.Tensor | None]
    captured_token: list[int | None]


def longest_common_prefix(sequences: list[list[int]]) -> int:
    """Number of leading tokens all ``sequences`` share."""
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for i in range(length):
        token = first[i]
        if any(s[i] != token for s in sequences[1:]):
            return i
    return length


def shared_prefix_lengths(prompts: list[list[int]], groups: list[int]) -> dict[int, int]:
    """Prefix length per group: the tokens its prompts share, at most all but the last token of the shortest, so that
    every prompt keeps a suffix of >= 1 token whose last position yields the first answer logits."""
    members: dict[int, list[list[int]]] = {}
    for prompt, group in zip(prompts, groups):
        members.setdefault(group, []).append(prompt)
    return {g: min(longest_common_prefix(p), min(len(s) for s in p) - 1) for g, p in members.items()}


def _cache_keyword(language_model: nn.Module) -> str:
    """transformers 5.x renamed the forward argument ``past_key_values`` to ``cache``; use what this version takes."""
    parameters = inspect.signature(language_model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _left_pad(rows: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long, device=device)
    return ids, mask


def _prefill_prefixes(language_model: nn.Module, embed: EmbedFn, prefixes: dict[int, list[int]],
                      device: torch.device) -> dict[int, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per image, the per-layer ``(keys, values)`` ``[1, heads, P, head_dim]`` of its prefix. Prefixes of the same
    length run as one batch (no padding needed inside a prefix)."""
    keyword = _cache_keyword(language_model)
    by_length: dict[int, list[int]] = {}
    for group, prefix in prefixes.items():
        if prefix:
            by_length.setdefault(len(prefix), []).append(group)
    out: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for length, members in by_length.items():
        ids = torch.tensor([prefixes[g] for g in members], dtype=torch.long, device=device)
        images = torch.tensor(members, dtype=torch.long, device=device)
        cache = DynamicCache()
        positions = torch.arange(length, device=device)[None].expand(len(members), -1)
        language_model(inputs_embeds=embed(ids, images), position_ids=positions, use_cache=True, **{keyword: cache})
        for j, group in enumerate(members):
            out[group] = [(layer.keys[j: j + 1], layer.values[j: j + 1]) for layer in cache.layers]
    return out


def _row_cache(prefix_kv: dict[int, list[tuple[torch.Tensor, torch.Tensor]]], row_groups: list[int], width: int,
               num_layers: int) -> DynamicCache:
    """A batch cache whose row ``b`` holds its group's prefix, left-padded with zeros (masked) to ``width`` tokens."""
    cache = DynamicCache()
    if width == 0:
        return cache
    template = next(iter(prefix_kv.values()))
    for layer in range(num_layers):
        keys, values = [], []
        for group in row_groups:
            if group in prefix_kv:
                k, v = prefix_kv[group][layer]
            else:  # an empty prefix
                k = v = template[layer][0][:, :, :0]
            pad = width - k.shape[2]
            keys.append(nn.functional.pad(k, (0, 0, pad, 0)) if pad else k)
            values.append(nn.functional.pad(v, (0, 0, pad, 0)) if pad else v)
        cache.update(torch.cat(keys), torch.cat(values), layer)
    return cache


@torch.no_grad()
def decode_shared_prefix(
    language_model: nn.Module,
    lm_head: nn.Module,
    embed: EmbedFn,
    prompts: list[list[int]],
    prompt_images: list[int],
    *,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    capture_ids: set[int],
    stop_token_ids: set[int] | None = None,
    logits_processor: LogitsProcessorList | None = None,
) -> DecodedRows:
    """Greedy decoding of ``prompts`` (token ids, BOS included); prompts of the same ``prompt_images`` entry share a
    prefix prefill. ``logits_processor`` sees what it would see in transformers' ``generate`` with ``inputs_embeds``:
    the generated ids so far ``[B, t]`` (finished rows padded) and float32 scores ``[B, vocab]``."""
    device = language_model.get_input_embeddings().weight.device  # where the ids go (the LM's first device)
    batch = len(prompts)
    keyword = _cache_keyword(language_model)
    lengths = shared_prefix_lengths(prompts, prompt_images)
    prefixes = {g: next(p for p, i in zip(prompts, prompt_images) if i == g)[:n] for g, n in lengths.items()}
    prefix_kv = _prefill_prefixes(language_model, embed, prefixes, device)

    prefix_width = max(lengths.values())
    cache = _row_cache(prefix_kv, prompt_images, prefix_width, len(language_model.layers))
    prefix_mask = torch.tensor([[0] * (prefix_width - lengths[g]) + [1] * lengths[g] for g in prompt_images],
                               dtype=torch.long, device=device)
    suffix_ids, suffix_mask = _left_pad([p[lengths[g]:] for p, g in zip(prompts, prompt_images)], pad_token_id, device)
    mask = torch.cat([prefix_mask, suffix_mask], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    # without padding anywhere (prompts of equal length) no mask is passed: attention takes its unmasked causal path
    padded = not bool(mask.all())
    rows_image = torch.tensor(prompt_images, dtype=torch.long, device=device)
    hidden = language_model(inputs_embeds=embed(suffix_ids, rows_image), attention_mask=mask if padded else None,
                            position_ids=positions[:, prefix_width:], use_cache=True, **{keyword: cache}).last_hidden_state
    last_hidden = hidden[:, -1]
    next_position = positions[:, -1] + 1

    # Bookkeeping runs on Python lists (one device->host copy of the new tokens per step): on a small model the
    # per-step cost is the number of tensor ops, not their size.
    stop = set(stop_token_ids or ()) | {eos_token_id}
    generated: list[list[int]] = [[] for _ in range(batch)]
    active = list(range(batch))  # rows still in the language-model batch, in order
    captured_hidden: list[torch.Tensor | None] = [None] * batch
    captured_token: list[int | None] = [None] * batch
    embeddings = language_model.get_input_embeddings()
    for step in range(max_new_tokens):
        logits = lm_head(last_hidden).float()
        if logits_processor is not None or len(active) < batch:
            scores = logits
            if len(active) < batch:  # processors see the whole batch, as in generate (finished rows: zeros)
                scores = logits.new_zeros(batch, logits.shape[-1]).index_copy_(
                    0, torch.tensor(active, device=logits.device), logits)
            if logits_processor is not None:
                ids = torch.tensor([row[:step] for row in generated], dtype=torch.long, device=logits.device)
                scores = logits_processor(ids.reshape(batch, step), scores)
            if len(active) < batch:
                scores = scores[torch.tensor(active, device=logits.device)]
        else:
            scores = logits
        chosen = scores.argmax(-1).tolist()  # one token per active row
        still: list[int] = []  # positions (within the active rows) that keep decoding
        for j, (row, token) in enumerate(zip(active, chosen)):
            generated[row].append(token)
            if token in capture_ids and captured_hidden[row] is None:
                captured_hidden[row], captured_token[row] = last_hidden[j], token
            if token not in stop:
                still.append(j)
        for row in range(batch):  # finished rows are padded, as generate pads them
            if len(generated[row]) <= step:
                generated[row].append(pad_token_id)
        if not still or step == max_new_tokens - 1:
            break
        tokens = torch.tensor([chosen[j] for j in still], dtype=torch.long, device=device)
        if len(still) < len(active):  # finished rows leave the batch: their remaining steps would be discarded
            kept = torch.tensor(still)  # CPU indices select rows on any device
            cache.batch_select_indices(kept)
            mask, next_position = mask[kept], next_position[kept]
            active = [active[j] for j in still]
            padded = padded and not bool(mask.all())
        if padded:
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
        hidden = language_model(inputs_embeds=embeddings(tokens[:, None]), attention_mask=mask if padded else None,
                                position_ids=next_position[:, None], use_cache=True, **{keyword: cache}).last_hidden_state
        last_hidden = hidden[:, -1]
        next_position = next_position + 1

    return DecodedRows([answer_tokens(row, eos_token_id, stop_token_ids) for row in generated],
                       captured_hidden, captured_token)


def answer_tokens(row: list[int], eos_token_id: int, stop_token_ids: set[int] | None = None) -> list[int]:
    """A generated row up to ``</s>`` (excluded) or its first stop token (included); what follows is padding."""
    for i, token in enumerate(row):
        if token == eos_token_id:
            return row[:i]
        if stop_token_ids and token in stop_token_ids:
            return row[: i + 1]
    return row
