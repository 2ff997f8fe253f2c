"""Greedy decoding of many prompts that share a prefix: prefill the prefix once, reuse its KV cache for every prompt.

Every query about one image repeats the same system sentence and the same 256 image tokens; only the question after
them differs. ``decode_shared_prefix`` runs the language model once over each group's shared prefix, copies that KV
cache to the group's rows, runs the differing suffixes as one batch on top of it and then decodes greedily with the
cache, dropping rows from the batch as they finish. A row finishes at ``</s>`` or, when ``stop_token_ids`` is given,
right after the first of those tokens (the seg token: the masks only need the hidden state that produced it).

Each decoding step steps the Llama decoder layers directly on a cache that grows in place (``_DecodeStep``,
``GrowingLayer``): on a small model, per-call overheads cost more than the step's arithmetic. Given ``drafts``
(``AnswerDrafts``), a step feeds each row its drafted continuation too, and keeps the part of it the model's own
greedy choices confirm: the same tokens in fewer steps.

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
from transformers import DynamicCache, LlamaModel, LogitsProcessorList
from transformers.cache_utils import Cache, DynamicLayer

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
               num_layers: int) -> Cache:
    """A batch cache whose row ``b`` holds its group's prefix, left-padded with zeros (masked) to ``width`` tokens;
    its layers grow in place while decoding (``GrowingLayer``)."""
    cache = Cache(layers=[GrowingLayer() for _ in range(num_layers)])
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


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` that writes each step's keys and values into spare room at the end of its buffers.

    ``DynamicLayer`` concatenates, i.e. copies the whole cache of the batch at every decoding step; on a small model
    that copy costs as much as the step's matmuls. Here ``keys`` / ``values`` are views of the filled part of
    buffers that grow by ``spare`` tokens when full, so attention sees the same values without the copy. If the base
    class replaces ``keys`` / ``values`` (crop, beam reordering, offloading), the next update starts new buffers from them.
    """

    def __init__(self, spare: int = 64) -> None:
        super().__init__()
        self.spare = spare
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        self._length = 0

    def _holds_views(self) -> bool:
        return (self._key_buffer is not None and self.keys is not None and self.keys.ndim == 4
                and self.keys.data_ptr() == self._key_buffer.data_ptr() and self.keys.shape[-2] == self._length
                and self.values.data_ptr() == self._value_buffer.data_ptr())

    def _allocate(self, like_keys: torch.Tensor, like_values: torch.Tensor, capacity: int) -> None:
        keys = like_keys.new_empty(*like_keys.shape[:2], capacity, like_keys.shape[-1])
        values = like_values.new_empty(*like_values.shape[:2], capacity, like_values.shape[-1])
        if self._length:
            keys[:, :, : self._length] = self.keys
            values[:, :, : self._length] = self.values
        self._key_buffer, self._value_buffer = keys, values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if not self._holds_views():  # first update, or keys replaced by a base-class method
            self._length = self.keys.shape[-2] if self.keys.ndim == 4 else 0
            self._key_buffer = None
        end = self._length + key_states.shape[-2]
        if self._key_buffer is None or end > self._key_buffer.shape[-2]:
            self._allocate(key_states, value_states, end + self.spare)
        self._key_buffer[:, :, self._length: end] = key_states
        self._value_buffer[:, :, self._length: end] = value_states
        self._length = end
        self.keys, self.values = self._key_buffer[:, :, :end], self._value_buffer[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if not self._holds_views():
            super().batch_select_indices(indices)
            return
        self._key_buffer, self._value_buffer = self._key_buffer[indices], self._value_buffer[indices]
        self.keys, self.values = self._key_buffer[:, :, : self._length], self._value_buffer[:, :, : self._length]


class AnswerDrafts:
    """Draft continuations for speculative greedy decoding, looked up in token sequences the answers are expected to
    resemble (prompt-lookup decoding with the answer templates as the lookup text).

    ``propose`` finds the longest ending (up to ``max_ngram`` tokens) of a row's answer so far in those sequences
    (first occurrence wins) and returns the tokens that follow it there. A draft only saves steps: the decoder checks
    every drafted token against the model's own greedy choice and keeps the matching run, so a bad draft changes no
    output, it just costs one wider step.
    """

    def __init__(self, sequences: list[list[int]], max_ngram: int = 3) -> None:
        self.sequences = [list(s) for s in sequences if s]
        self.max_ngram = max_ngram
        self._index: dict[tuple[int, ...], tuple[int, int]] = {}  # n-gram -> (sequence, index of the next token)
        for s, sequence in enumerate(self.sequences):
            for n in range(1, max_ngram + 1):
                for i in range(len(sequence) - n):
                    self._index.setdefault(tuple(sequence[i: i + n]), (s, i + n))

    def propose(self, answer: list[int], length: int) -> list[int]:
        if length <= 0:
            return []
        for n in range(min(self.max_ngram, len(answer)), 0, -1):
            hit = self._index.get(tuple(answer[-n:]))
            if hit is not None:
                s, i = hit
                return self.sequences[s][i: i + length]
        return []


class _AllowedKeys:
    """Which cached positions each row of the decoding batch may attend to.

    ``allowed[b, c]`` is False for row ``b``'s padding and for drafted tokens the model rejected (their keys stay in
    the cache, masked, as the rows' accepted lengths differ). A step of one token needs only that padding mask,
    ``[B, 1, 1, length]``, a view of the buffer (no mask at all without padding) instead of transformers rebuilding a
    causal mask; a step of several tokens adds the causal triangle over its own tokens. ``kind`` is what the attention
    implementation reads: ``"bool"`` (sdpa: True = attend) or ``"additive"`` (eager: 0 or the dtype's minimum), the
    masks transformers' ``create_causal_mask`` makes.
    """

    def __init__(self, mask: torch.Tensor, width: int, kind: str, dtype: torch.dtype) -> None:
        self.allowed = mask.new_ones(mask.shape[0], max(width, mask.shape[1]), dtype=torch.bool)
        self.allowed[:, : mask.shape[1]] = mask.bool()
        self.kind, self.dtype, self.length = kind, dtype, mask.shape[1]
        self.padded = not bool(mask.all())

    def append(self, tokens: int) -> None:
        """Room for ``tokens`` new columns, allowed until ``reject`` says otherwise."""
        end = self.length + tokens
        if end > self.allowed.shape[1]:
            more = self.allowed.new_ones(self.allowed.shape[0], end - self.allowed.shape[1] + 64)
            self.allowed = torch.cat([self.allowed, more], dim=1)
        self.length = end

    def reject(self, valid: torch.Tensor) -> None:
        """``valid [B, n]``: which of the last ``n`` columns hold accepted tokens."""
        self.allowed[:, self.length - valid.shape[1]: self.length] = valid
        self.padded = True

    def select(self, rows: torch.Tensor) -> None:
        self.allowed = self.allowed[rows]
        self.padded = not bool(self.allowed[:, : self.length].all())

    def mask_4d(self, new: int) -> torch.Tensor | None:
        """The mask of a step appending ``new`` tokens (already counted in ``length``): ``[B, 1, new, length]``, or
        ``None`` for one token without padding (attention then needs no mask)."""
        if new == 1 and not self.padded:
            return None
        mask = self.allowed[:, None, None, : self.length]
        if new > 1:
            causal = torch.ones(new, new, dtype=torch.bool, device=mask.device).tril()
            mask = mask.expand(-1, -1, new, -1).clone()
            mask[..., self.length - new:] &= causal
        if self.kind == "bool":
            return mask
        return torch.zeros(mask.shape, dtype=self.dtype, device=mask.device).masked_fill_(~mask, torch.finfo(self.dtype).min)


_MASK_KIND = {"sdpa": "bool", "eager": "additive"}


class _DecodeStep:
    """One decoding step (one or more new tokens per row) through the language model's own decoder layers.

    A Llama under sdpa or eager attention is stepped layer by layer: rotary embedding, each ``LlamaDecoderLayer`` with
    the cache and the mask above, final norm. That is what ``LlamaModel.forward`` computes, minus its per-call
    overheads (output capturing, config merging, building a causal mask, tracing checks), which dominate a step on a
    small model. Any other language model or attention implementation goes through its own ``forward`` with a 2D
    mask, one token per step (no drafts).
    """

    def __init__(self, language_model: nn.Module, keyword: str) -> None:
        self.model = language_model
        self.keyword = keyword
        config = language_model.config
        self.mask_kind = _MASK_KIND.get(getattr(config, "_attn_implementation", None))
        self.layerwise = isinstance(language_model, LlamaModel) and self.mask_kind is not None
        if self.layerwise:
            self.layers = list(language_model.layers[: config.num_hidden_layers])
            self.layer_keyword = _cache_keyword(self.layers[0])

    def __call__(self, embeds: torch.Tensor, keys: _AllowedKeys, positions: torch.Tensor, cache: Cache) -> torch.Tensor:
        """``[B, T, H]`` embeddings at ``positions [B, T]`` → ``[B, T, H]`` final-norm hidden states."""
        if not self.layerwise:
            mask = keys.allowed[:, : keys.length].long() if keys.padded else None
            return self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                              **{self.keyword: cache}).last_hidden_state
        mask = keys.mask_4d(embeds.shape[1])
        rotary = self.model.rotary_emb(embeds, position_ids=positions)
        hidden = embeds
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary,
                           use_cache=True, **{self.layer_keyword: cache})
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return self.model.norm(hidden)


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
    drafts: AnswerDrafts | None = None,
    draft_length: int = 8,
) -> DecodedRows:
    """Greedy decoding of ``prompts`` (token ids, BOS included); prompts of the same ``prompt_images`` entry share a
    prefix prefill. ``logits_processor`` sees what it would see in transformers' ``generate`` with ``inputs_embeds``:
    the generated ids so far ``[B, t]`` (finished rows padded) and float32 scores ``[B, vocab]``.

    With ``drafts`` (and no ``logits_processor``, which expects one token per call), each step feeds every row its
    last token plus up to ``draft_length`` drafted ones and keeps, per row, the drafted run the model's own greedy
    choices confirm plus the model's next token: the same answer in fewer, wider steps.

    Runs under ``torch.inference_mode``: nothing computed here (KV cache, captured hidden states) takes part in
    autograd, and skipping its bookkeeping is measurable at small scale."""
    with torch.inference_mode():
        return _decode(language_model, lm_head, embed, prompts, prompt_images, max_new_tokens=max_new_tokens,
                       eos_token_id=eos_token_id, pad_token_id=pad_token_id, capture_ids=capture_ids,
                       stop_token_ids=stop_token_ids, logits_processor=logits_processor, drafts=drafts,
                       draft_length=draft_length)


def _choose_tokens(logits: torch.Tensor, logits_processor: LogitsProcessorList | None,
                   generated: list[list[int]], active: list[int], pad_token_id: int) -> list[list[int]]:
    """Greedy choices ``[rows][T]`` of one step; a ``logits_processor`` sees the whole batch, as in ``generate``."""
    if logits_processor is None:
        return logits.argmax(-1).tolist()  # [rows][T]
    batch = len(generated)
    # one token per step here: T = 1
    step = len(generated[active[0]])
    scores = logits[:, 0]
    if len(active) < batch:  # processors see the whole batch, as in generate (finished rows: zeros)
        scores = logits.new_zeros(batch, logits.shape[-1]).index_copy_(
            0, torch.tensor(active, device=logits.device), scores)
    ids = torch.tensor([row + [pad_token_id] * (step - len(row)) for row in generated], dtype=torch.long,
                       device=logits.device)
    scores = logits_processor(ids.reshape(batch, step), scores)
    if len(active) < batch:
        scores = scores[torch.tensor(active, device=logits.device)]
    return [[token] for token in scores.argmax(-1).tolist()]


def _accept_tokens(chosen: list[list[int]], hidden: torch.Tensor, active: list[int], fed_drafts: list[list[int]],
                   generated: list[list[int]], captured_hidden: list[torch.Tensor | None],
                   captured_token: list[int | None], capture_ids: set[int], stop: set[int],
                   max_new_tokens: int) -> tuple[list[int], list[int]]:
    """Append each active row's confirmed tokens (capturing the first ``capture_ids`` hidden state) in place.

    Returns ``(still, accepted)``: positions (within the active rows) that keep decoding, and per active row how
    many of this step's inputs were right (its valid new keys)."""
    still: list[int] = []
    accepted: list[int] = []
    for j, (row, predicted) in enumerate(zip(active, chosen)):
        draft, out = fed_drafts[j], generated[row]
        for i, token in enumerate(predicted):
            out.append(token)
            if token in capture_ids and captured_hidden[row] is None:
                captured_hidden[row], captured_token[row] = hidden[j, i], token
            if token in stop or len(out) >= max_new_tokens or i == len(draft) or token != draft[i]:
                break
        accepted.append(i + 1)
        if out[-1] not in stop and len(out) < max_new_tokens:
            still.append(j)
    return still, accepted


def _decode(language_model, lm_head, embed, prompts, prompt_images, *, max_new_tokens, eos_token_id, pad_token_id,
            capture_ids, stop_token_ids, logits_processor, drafts, draft_length) -> DecodedRows:
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
    hidden = hidden[:, -1:]  # [rows, tokens of the step, H]: here the last prompt position of each row
    # position of the first token fed in the step that gave ``hidden``: that step's accepted count moves it on to
    # the position of the next token to feed (the suffix step counts as one accepted token at the last prompt position)
    fed_position = positions[:, -1:]
    step_forward = _DecodeStep(language_model, keyword)
    if logits_processor is not None or not step_forward.layerwise:
        drafts = None
    keys = _AllowedKeys(mask, mask.shape[1] + max_new_tokens, step_forward.mask_kind or "bool", hidden.dtype)

    # Bookkeeping runs on Python lists (one device->host copy of the new tokens per step): on a small model the
    # per-step cost is the number of tensor ops, not their size.
    stop = set(stop_token_ids or ()) | {eos_token_id}
    generated: list[list[int]] = [[] for _ in range(batch)]
    active = list(range(batch))  # rows still in the language-model batch, in order
    fed_drafts: list[list[int]] = [[] for _ in range(batch)]  # per active row: the drafted tokens of the last step
    captured_hidden: list[torch.Tensor | None] = [None] * batch
    captured_token: list[int | None] = [None] * batch
    embeddings = language_model.get_input_embeddings()
    while True:
        logits = lm_head(hidden).float()  # [rows, T, vocab]
        chosen = _choose_tokens(logits, logits_processor, generated, active, pad_token_id)
        still, accepted = _accept_tokens(chosen, hidden, active, fed_drafts, generated, captured_hidden,
                                         captured_token, capture_ids, stop, max_new_tokens)
        if not still:
            break
        width = hidden.shape[1]
        if width > 1 and any(a < width for a in accepted):  # rejected drafts: their keys stay, masked out
            keys.reject(torch.tensor([[i < a for i in range(width)] for a in accepted], device=keys.allowed.device))
        fed_position = fed_position + (torch.tensor(accepted, device=fed_position.device)[:, None] if width > 1 else 1)
        if len(still) < len(active):  # finished rows leave the batch: their remaining steps would be discarded
            kept = torch.tensor(still)  # CPU indices select rows on any device
            cache.batch_select_indices(kept)
            keys.select(kept.to(keys.allowed.device))
            fed_position = fed_position[kept]
            active = [active[j] for j in still]
        fed_drafts = [drafts.propose(generated[row], min(draft_length, max_new_tokens - len(generated[row]) - 1))
                      if drafts is not None else [] for row in active]
        width = 1 + max(len(d) for d in fed_drafts)
        tokens = torch.tensor([[generated[row][-1]] + d + [pad_token_id] * (width - 1 - len(d))
                               for row, d in zip(active, fed_drafts)], dtype=torch.long, device=device)
        keys.append(width)
        step_positions = fed_position if width == 1 else fed_position + torch.arange(width, device=device)
        hidden = step_forward(embeddings(tokens), keys, step_positions, cache)

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
