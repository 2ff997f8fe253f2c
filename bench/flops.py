"""Analytic cost of one InteractVLM contact query: parameters, FLOPs and memory, from the real module shapes.

    python -m bench.flops                                    # lisa-13b, 80 prompt tokens, 20 answer tokens
    python -m bench.flops --preset lisa-7b lisa-13b --prompt-tokens 80 --answer-tokens 20
    python -m bench.flops --objects 1 4 8 --question-tokens 14  # the original's path vs ours per objects/image

The model is built on the meta device (no weights, no memory), parameter counts are read from its modules, and the
FLOPs use the Linear / Conv shapes of those modules plus the sequence lengths of the config.

Conventions (FLOPs = 2 × multiply-accumulates; norms, activations, softmax, residual adds and other element-wise work
are left out — they are < 1 % everywhere except where stated):

* a Linear ``W [out, in]`` applied to ``n`` tokens: ``2 · n · out · in`` (so a transformer costs ≈ 2 · params · tokens);
* attention of ``n_q`` queries over ``n_k`` keys with total head width ``d``: ``2·n_q·n_k·d`` for ``QKᵀ`` plus the same
  for ``A·V`` = ``4·n_q·n_k·d``. Causal attention over ``T`` tokens counts only the computed lower triangle:
  ``2 · d · T(T+1)`` (what flash attention does; a dense-mask kernel does ``4·d·T²``);
* a convolution with weight ``[out, in, k, k]`` over ``h·w`` output positions: ``2 · h·w · out·in·k²``; a stride-2
  ``k=2`` transposed convolution: ``2 · (input positions) · weight.numel()``.

Stages of one query (``generate_contact`` with a forced answer of A tokens whose second-to-last is ``[SEG]``):

* CLIP ViT-L/14 at 224 px: 257 tokens (CLS + 16×16 patches) through *all* 24 layers (transformers computes every
  layer, the features are read at layer −2) + the projector on the 256 patch features;
* LM prefill over T = image tokens + prompt tokens (``--prompt-tokens`` counts every non-image token of the prompt:
  BOS, system sentence, ``<im_start>``/``<im_end>``, question, ``ASSISTANT:``): ``2·W_layers·T`` +
  ``L · 2·d·T(T+1)`` + the LM head for the last position only (``generate`` keeps 1 logit row);
* generation: the prefill yields answer token 1; each of the A−1 further tokens is one decode step with the KV cache,
  ``2·W_layers + L·4·d·c + 2·W_head`` at context ``c`` = T+1 … T+A−1 (the final ``</s>`` is never fed back);
* ``text_hidden_fcs`` on the one seg hidden state, the camera gates for V views (``vi_v1``);
* SAM ViT-H image encoder, per view: patch embedding, 32 blocks of which 28 are windowed (14×14 windows; the 64×64
  grid is padded to 70×70 = 25 windows, and q/k/v/proj run on the 4900 padded tokens, the MLP on the 4096 real ones)
  and 4 global (4096 tokens attend to 4096), decomposed relative positions (``4·n·side·d`` per window), the neck.
  Skipped entirely when the view-embedding cache holds the renders' embeddings;
* SAM mask decoder, per view: the two-way transformer with ``N_t`` = 1 IoU + 4 mask + S sparse tokens (S = V view
  tokens for the released models, 1 with ``per_view_tokens``) against the 64×64 = 4096 image tokens (cross-attention
  at half width 128), the two transposed convolutions up to 256×256, the hypernetwork MLPs, the mask product, the IoU
  head; then the bilinear upsampling of the logits to the SAM input (≈ 8 FLOPs per output pixel);
* lifting (``soft``): clamp + sigmoid (≈ 5 FLOPs) and a sparse product with 3 barycentric weights (6 FLOPs) per
  foreground pixel, ``--foreground-fraction`` of the V·M² mask pixels.

The original's own path, ``ours before`` and ``ours`` (shared prefix + stop at the seg token) are compared per query
for 1 and 8 object queries per image in ``path_flops``; the defaults are the released hcontact prompt and answer
(LLaMA tokens, estimated: no LLaMA tokenizer is installed here): 80 non-image prompt tokens (BOS, the llava_v1 system
sentence ~32, ``USER:``, ``<im_start>``/``<im_end>``, the parts question ~16, ``ASSISTANT:``), so T = 336, of which
the 14 from the object name on differ between an image's objects; 20 answer tokens = the 15 of "The contacting body
parts are …, and the contact region is [SEG]." + ``</s>`` and a 5-token body-part list.

Memory: weights in bf16 (2 B/param); 8-bit (LLM.int8: 1 B/param + an fp32 scale per output row for the quantised
Linear layers); 4-bit (NF4 0.5 B/param + 1 B absmax per 64-weight block + fp32 second-level absmax per 256 blocks with
double quantisation, as ``model.io`` configures it). Only the language model's decoder Linears are quantised; CLIP,
projector, SAM, ``text_hidden_fcs``, camera encoder and LM head stay bf16 (``model.io.QUANTIZATION_SKIP``'s intent).
The KV cache per query is ``2 · L · n_kv · head_dim · (T + A) · 2 B``; ``generate_contact`` also keeps every layer's
hidden states (``output_hidden_states=True``): ``(L+1) · H · (T + A) · 2 B``. The activation peak is the largest
transient working set of one stage (bf16, batch 1, inference, KV cache and weights excluded) — see ``activation_peaks``.

Sanity check against public figures (see ``PUBLIC_PARAMS``): LLaMA-2-13B 13.016 B parameters (32000-token vocabulary;
LISA's 32005 adds 51 k), LLaMA-2-7B 6.738 B, SAM ViT-H image encoder ≈ 632 M in the SAM paper (637.0 M counting the
relative-position tables and the neck), CLIP ViT-L/14 vision tower 303.2 M. A 13 B LM costs ≈ 2 × 13 G = 26 GFLOP per
token. SAM ViT-H's image encoder is usually quoted at ≈ 3 T per 1024² image in the efficient-SAM literature, a
multiply-accumulate count (fvcore's "FLOPs"): ≈ 6 TFLOP in our 2×MAC convention (we get 5.96 T per view).
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from model.config import build_config
from model.interactvlm import InteractVLMForCausalLM
from model.io import QUANTIZATION_SKIP

# public parameter counts (millions) used as a sanity check in the printout
PUBLIC_PARAMS = {"lisa-13b": {"lm": 13016.0}, "lisa-7b": {"lm": 6738.0}, "sam_encoder": 632.0, "clip": 303.2}
GIB = 1024**3


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _linear_weights(module: nn.Module) -> int:
    """Multiply-accumulates per token of every Linear in ``module`` (= their weight elements)."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def parameter_counts(model: InteractVLMForCausalLM) -> dict[str, int]:
    vlm = model.vlm
    counts = {
        "clip": _numel(vlm.model.vision_tower),
        "projector": _numel(vlm.model.multi_modal_projector),
        "lm": _numel(vlm.model.language_model) + _numel(vlm.lm_head),
        "sam_encoder": _numel(model.sam.vision_encoder),
        # includes SAM's image-wide positional embedding (``shared_image_embedding`` is the same module)
        "prompt_encoder": _numel(model.sam.prompt_encoder),
        "mask_decoder": _numel(model.sam.mask_decoder),
        "text_hidden_fcs": _numel(model.text_hidden_fcs),
        "cam_encoder": _numel(model.cam_pose_encoder),
    }
    if model.attention_splitter is not None:
        counts["attention_splitter"] = _numel(model.attention_splitter)
    counts["total"] = sum(p.numel() for p in model.parameters())
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total"), "component counts do not add up"
    return counts


# ------------------------------------------------------------------------------------------------------------ FLOPs
def clip_flops(model: InteractVLMForCausalLM) -> dict[str, float]:
    """CLIP vision tower (all layers run) + projector, one image: ``2·N·W_layer + 4·N²·d`` per layer."""
    vcfg = model.config.vlm_config.vision_config
    tower = model.vlm.model.vision_tower
    tower = getattr(tower, "vision_model", tower)  # transformers 4 wraps the transformer, 5 does not
    patches = (vcfg.image_size // vcfg.patch_size) ** 2
    tokens = patches + 1
    conv = tower.embeddings.patch_embedding
    flops = 2 * patches * conv.weight.numel()
    for layer in tower.encoder.layers:
        flops += 2 * tokens * _linear_weights(layer) + 4 * tokens * tokens * vcfg.hidden_size
    projector = 2 * patches * _linear_weights(model.vlm.model.multi_modal_projector)
    return {"clip": float(flops), "projector": float(projector)}


def _lm_shapes(model: InteractVLMForCausalLM) -> tuple[int, int, int, int]:
    tcfg = model.config.vlm_config.text_config
    head_dim = getattr(tcfg, "head_dim", None) or tcfg.hidden_size // tcfg.num_attention_heads
    layers = model.vlm.model.language_model.layers
    return len(layers), tcfg.num_attention_heads * head_dim, _linear_weights(layers), model.vlm.lm_head.weight.numel()


def lm_prefill_flops(model: InteractVLMForCausalLM, tokens: int) -> float:
    """``2·W_layers·T + L·2·d·T(T+1)`` (causal) ``+ 2·W_head`` (last position's logits only)."""
    layers, width, weights, head = _lm_shapes(model)
    return float(2 * weights * tokens + layers * 2 * width * tokens * (tokens + 1) + 2 * head)


def lm_decode_flops(model: InteractVLMForCausalLM, context: int) -> float:
    """One KV-cached decode step whose query attends to ``context`` keys: ``2·W_layers + L·4·d·c + 2·W_head``."""
    layers, width, weights, head = _lm_shapes(model)
    return float(2 * weights + layers * 4 * width * context + 2 * head)


def sam_encoder_flops(model: InteractVLMForCausalLM) -> dict[str, float]:
    """One view through the SAM image encoder, windowed and global blocks separated."""
    vcfg = model.config.sam_config.vision_config
    encoder = model.sam.vision_encoder
    grid = vcfg.image_size // vcfg.patch_size
    d = vcfg.hidden_size
    out = {"patch_embed": 2.0 * grid * grid * encoder.patch_embed.projection.weight.numel(),
           "windowed_blocks": 0.0, "global_blocks": 0.0, "neck": 0.0}
    for layer in encoder.layers:
        window = layer.window_size
        if window > 0:
            side = math.ceil(grid / window) * window
            windows, n, key_side = (side // window) ** 2, window * window, window
        else:
            windows, n, key_side = 1, grid * grid, grid
        attn_tokens = windows * n  # q/k/v/proj run on the padded tokens in windowed blocks
        linear = 2 * attn_tokens * _linear_weights(layer.attn) + 2 * grid * grid * _linear_weights(layer.mlp)
        attention = windows * 4 * n * n * d
        rel_pos = windows * 4 * n * key_side * d if layer.attn.use_rel_pos else 0
        out["windowed_blocks" if window > 0 else "global_blocks"] += float(linear + attention + rel_pos)
    for conv in (encoder.neck.conv1, encoder.neck.conv2):
        out["neck"] += 2.0 * grid * grid * conv.weight.numel()
    out["total"] = sum(out.values())
    return out


def _sam_attention(attn: nn.Module, n_q: int, n_k: int) -> float:
    """A ``SamAttention`` (q from ``n_q`` tokens, k/v from ``n_k``): projections + ``4·n_q·n_k·internal``."""
    return float(2 * n_q * (attn.q_proj.weight.numel() + attn.out_proj.weight.numel())
                 + 2 * n_k * (attn.k_proj.weight.numel() + attn.v_proj.weight.numel())
                 + 4 * n_q * n_k * attn.internal_dim)


def mask_decoder_flops(model: InteractVLMForCausalLM) -> dict[str, float]:
    """One view through the SAM mask decoder (+ upsampling of its logits to the SAM input size)."""
    cfg = model.config
    decoder = model.sam.mask_decoder
    grid = cfg.sam_config.prompt_encoder_config.image_embedding_size
    n_img = grid * grid
    sparse = 1 if cfg.per_view_tokens else cfg.num_views
    n_tok = 1 + decoder.num_mask_tokens + sparse
    transformer = 0.0
    for block in decoder.transformer.layers:
        transformer += _sam_attention(block.self_attn, n_tok, n_tok)
        transformer += _sam_attention(block.cross_attn_token_to_image, n_tok, n_img)
        transformer += 2.0 * n_tok * _linear_weights(block.mlp)
        transformer += _sam_attention(block.cross_attn_image_to_token, n_img, n_tok)
    transformer += _sam_attention(decoder.transformer.final_attn_token_to_image, n_tok, n_img)
    upscale = 2.0 * n_img * decoder.upscale_conv1.weight.numel() + 2.0 * 4 * n_img * decoder.upscale_conv2.weight.numel()
    hyper = 2.0 * _linear_weights(decoder.output_hypernetworks_mlps) + 2.0 * _linear_weights(decoder.iou_prediction_head)
    channels = decoder.upscale_conv2.out_channels
    mask_product = 2.0 * decoder.num_mask_tokens * channels * 16 * n_img
    upsample = 8.0 * cfg.sam_image_size**2 + (8.0 * cfg.mask_size**2 if cfg.mask_size != cfg.sam_image_size else 0.0)
    out = {"tokens": n_tok, "two_way_transformer": transformer, "upscaling": upscale, "hypernetworks_iou": hyper,
           "mask_product": mask_product, "upsample_logits": upsample}
    out["total"] = transformer + upscale + hyper + mask_product + upsample
    return out


def prompt_flops(model: InteractVLMForCausalLM) -> dict[str, float]:
    """``text_hidden_fcs`` on one seg hidden state; camera encoder on V camera vectors (+ the per-view gate product)."""
    views = model.config.num_views
    cam = model.cam_pose_encoder
    shared = getattr(cam, "shared", None) or getattr(cam, "encoder", None)
    cam_flops = 2.0 * views * (_linear_weights(shared) if shared is not None else 0)
    if hasattr(cam, "view_layers"):
        cam_flops += 2.0 * _linear_weights(cam.view_layers)
    cam_flops += views * model.config.out_dim
    return {"text_hidden_fcs": 2.0 * _linear_weights(model.text_hidden_fcs), "cam_encoder": cam_flops}


def lifting_flops(model: InteractVLMForCausalLM, foreground_fraction: float) -> float:
    """``(5 + 2·3) · P`` with ``P`` = foreground pixels of the V masks."""
    pixels = foreground_fraction * model.config.num_views * model.config.mask_size**2
    return 11.0 * pixels


# ------------------------------------------------------------------------------------------------------------ memory
def quantised_linears(model: InteractVLMForCausalLM, intended: bool = True) -> list[tuple[str, nn.Linear]]:
    """The Linear layers bitsandbytes replaces. ``intended``: the decoder Linears of the LM only (what
    ``QUANTIZATION_SKIP`` means); otherwise what transformers' own matcher does with ``QUANTIZATION_SKIP``."""
    from transformers.quantizers.quantizers_utils import should_convert_module

    chosen = []
    for name, module in model.named_modules():
        if type(module) is not nn.Linear:
            continue
        keep = (name.startswith("vlm.model.language_model.") if intended
                else should_convert_module(name, QUANTIZATION_SKIP))
        if keep:
            chosen.append((name, module))
    return chosen


def weight_memory(model: InteractVLMForCausalLM, intended: bool = True) -> dict[str, float]:
    """Bytes of the weights in bf16, 8-bit (LLM.int8) and 4-bit (NF4 + double quantisation)."""
    total = sum(p.numel() for p in model.parameters())
    linears = quantised_linears(model, intended)
    q_weights = sum(m.weight.numel() for _, m in linears)
    q_rows = sum(m.out_features for _, m in linears)
    rest = total - q_weights  # biases of quantised layers stay in 16 bit too
    return {
        "quantised_params": float(q_weights), "bf16": 2.0 * total,
        "int8": 2.0 * rest + 1.0 * q_weights + 4.0 * q_rows,
        "nf4": 2.0 * rest + q_weights * (0.5 + 1 / 64 + 4 / (64 * 256)),
    }


def activation_peaks(model: InteractVLMForCausalLM, prefill_tokens: int, bytes_per: int = 2) -> dict[str, float]:
    """Largest transient working set per stage (batch 1, inference), in bytes:

    * CLIP: per layer ``N·(4·d + d_ff)`` (residual, normed, q/k/v, MLP hidden) + eager scores ``heads·N²``;
    * LM prefill: per layer ``T·(4·H + 3·m)`` (residual, normed, q/k/v/attn-out, gate/up/act) with a fused (flash /
      memory-efficient) attention kernel; the ``math`` SDPA fallback adds ``heads·T²`` scores;
    * SAM encoder (V views in one batch, as ``get_image_embeddings`` gets them): the global blocks' relative-position
      bias, which transformers' SDPA path materialises as a ``[V, heads, G², G²]`` attention mask, + the MLP hidden
      ``V·G²·4d`` + q/k/v ``V·G²·3d``;
    * mask decoder (V views): image keys/values/positions ``V·4·N_i·C`` + the upscaled ``V·C/8·16·N_i`` + fp32 logits
      upsampled to ``V·S²`` (4 B) + the lifting's gathered pixels.
    """
    cfg = model.config
    v = cfg.vlm_config.vision_config
    t = cfg.vlm_config.text_config
    s = cfg.sam_config.vision_config
    n = (v.image_size // v.patch_size) ** 2 + 1
    clip = bytes_per * (n * (4 * v.hidden_size + v.intermediate_size) + v.num_attention_heads * n * n)
    lm = bytes_per * prefill_tokens * (4 * t.hidden_size + 3 * t.intermediate_size)
    lm_math_scores = bytes_per * t.num_attention_heads * prefill_tokens**2
    views = cfg.num_views
    g2 = (s.image_size // s.patch_size) ** 2
    sam = bytes_per * views * (s.num_attention_heads * g2 * g2 + g2 * (s.mlp_dim + 3 * s.hidden_size)) if s.global_attn_indexes else 0
    c = cfg.sam_config.mask_decoder_config.hidden_size
    n_i = cfg.sam_config.prompt_encoder_config.image_embedding_size**2
    decoder = bytes_per * views * (4 * n_i * c + c // 8 * 16 * n_i) + 4 * views * (cfg.sam_image_size**2 + cfg.mask_size**2)
    return {"clip": float(clip), "lm_prefill": float(lm), "lm_prefill_math_sdpa_extra": float(lm_math_scores),
            "sam_encoder": float(sam), "mask_decoder_lifting": float(decoder)}


# ------------------------------------------------------------------------------------------------------------ paths
def lm_dense_forward_flops(model: InteractVLMForCausalLM, tokens: int) -> float:
    """One cache-less forward over ``tokens`` as the original runs it (transformers 4.31 Llama, eager attention): every
    Linear on every token, the dense ``QKᵀ`` / ``A·V`` over all ``T²`` pairs (``4·d·T²`` per layer; the causal mask is
    applied after the product), and the LM head on every position (no ``logits_to_keep`` in 4.31)."""
    layers, width, weights, head = _lm_shapes(model)
    return float(2 * weights * tokens + layers * 4 * width * tokens * tokens + 2 * head * tokens)


def lm_prefix_flops(model: InteractVLMForCausalLM, tokens: int) -> float:
    """The shared prefix's prefill: like ``lm_prefill_flops`` but no logits (the prefix's last token is not the
    prompt's last: the first answer logits come from each query's suffix)."""
    layers, width, weights, _ = _lm_shapes(model)
    return float(2 * weights * tokens + layers * 2 * width * tokens * (tokens + 1))


def lm_suffix_flops(model: InteractVLMForCausalLM, tokens: int, cached: int) -> float:
    """A query's ``tokens`` question tokens on top of ``cached`` prefix keys: the Linears on the new tokens, their
    attention to the prefix (``4·d·Q·P``) and, causally, to each other (``2·d·Q(Q+1)``), and one logit row."""
    layers, width, weights, head = _lm_shapes(model)
    return float(2 * weights * tokens + layers * (4 * width * tokens * cached + 2 * width * tokens * (tokens + 1))
                 + 2 * head)


def path_flops(model: InteractVLMForCausalLM, prompt_tokens: int, question_tokens: int, answer_tokens: int,
               objects: int, foreground_fraction: float) -> dict[str, dict[str, float]]:
    """FLOPs per query of three ways to answer ``objects`` queries about one image, stage by stage.

    The answer has ``answer_tokens`` tokens ending "[SEG]" "." "</s>" (the released templates end "... is [SEG]."),
    the prompt ``T`` = image tokens + ``prompt_tokens``, of which the last ``question_tokens`` differ between the
    objects of an image (the object name onwards: "chair? Segment these contact areas. ASSISTANT:"):

    * ``original``: what the original code does per (image, object) sample (batch 1, ``use_cache=False``,
      ``max_new_tokens=512``, stopping at ``</s>``): each of the A generated tokens re-runs the whole sequence, T, T+1,
      …, T+A−1 tokens (``lm_dense_forward_flops``), and LLaVA re-encodes the image through CLIP + projector on every
      one of those forwards (its multimodal input preparation runs whenever there is no KV cache);
      ``text_hidden_fcs`` on all T+A−1 final hidden states before the seg position is picked; SAM ViT-H on the 4 fixed
      renders; the mask decoder on the 4 views; lifting;
    * ``ours_before``: KV-cached ``generate`` over the whole prompt per query up to ``</s>``, CLIP once per image,
      SAM encoder skipped by the view cache (this repository before the shared prefix);
    * ``ours``: CLIP and the shared prefix (T − Q tokens) once per image, each query's Q question tokens on the
      prefix's cache, decoding stopped at [SEG] (A − 2 tokens generated, A − 3 decode steps), view cache.
    """
    t = model.config.image_seq_length + prompt_tokens
    q = min(question_tokens, prompt_tokens)
    p = t - q
    a = answer_tokens
    views = model.config.num_views
    clip = sum(clip_flops(model).values())
    prompts = prompt_flops(model)
    seg_prompts = prompts["text_hidden_fcs"] + prompts["cam_encoder"]
    sam_tail = {"mask_decoder": views * mask_decoder_flops(model)["total"], "lifting": lifting_flops(model, foreground_fraction)}

    original = {
        "clip": a * clip,
        "lm": sum(lm_dense_forward_flops(model, t + i) for i in range(a)),
        "seg_to_prompts": prompts["text_hidden_fcs"] * (t + a - 1) + prompts["cam_encoder"],
        "sam_encoder": views * sam_encoder_flops(model)["total"],
        **sam_tail,
    }
    before = {
        "clip": clip / objects,
        "lm": lm_prefill_flops(model, t) + sum(lm_decode_flops(model, t + i) for i in range(1, a)),
        "seg_to_prompts": seg_prompts, "sam_encoder": 0.0, **sam_tail,
    }
    seg_tokens = max(a - 2, 1)  # generated up to and including [SEG]
    ours = {
        "clip": clip / objects,
        "lm": lm_prefix_flops(model, p) / objects + lm_suffix_flops(model, q, p)
        + sum(lm_decode_flops(model, t + i) for i in range(1, seg_tokens)),
        "seg_to_prompts": seg_prompts, "sam_encoder": 0.0, **sam_tail,
    }
    out = {"original": original, "ours_before": before, "ours": ours}
    for costs in out.values():
        costs["total"] = sum(costs.values())
    return out


# ------------------------------------------------------------------------------------------------------------ report
def analyse(preset: str, prompt_tokens: int, answer_tokens: int, foreground_fraction: float,
            question_tokens: int = 14, objects: tuple[int, ...] = (1, 8)) -> dict:
    config = build_config(preset)
    with torch.device("meta"):
        model = InteractVLMForCausalLM(config)
    tcfg = config.vlm_config.text_config
    prefill_tokens = config.image_seq_length + prompt_tokens
    views = config.num_views

    params = parameter_counts(model)
    clip = clip_flops(model)
    prefill = lm_prefill_flops(model, prefill_tokens)
    decode_steps = max(answer_tokens - 1, 0)
    contexts = [prefill_tokens + i for i in range(1, decode_steps + 1)]
    generation = sum(lm_decode_flops(model, c) for c in contexts)
    per_token = generation / decode_steps if decode_steps else lm_decode_flops(model, prefill_tokens + 1)
    prompts = prompt_flops(model)
    encoder = sam_encoder_flops(model)
    decoder = mask_decoder_flops(model)
    lifting = lifting_flops(model, foreground_fraction)

    flops = {
        "clip": clip["clip"] + clip["projector"], "lm_prefill": prefill, "generation": generation,
        "seg_to_prompts": prompts["text_hidden_fcs"] + prompts["cam_encoder"],
        "sam_encoder": views * encoder["total"], "mask_decoder": views * decoder["total"], "lifting": lifting,
    }
    with_cache = sum(v for k, v in flops.items() if k != "sam_encoder")
    without_cache = with_cache + flops["sam_encoder"]

    head_dim = getattr(tcfg, "head_dim", None) or tcfg.hidden_size // tcfg.num_attention_heads
    seq = prefill_tokens + answer_tokens
    kv_cache = 2.0 * tcfg.num_hidden_layers * tcfg.num_key_value_heads * head_dim * seq * 2
    kept_hidden = (tcfg.num_hidden_layers + 1) * tcfg.hidden_size * seq * 2.0
    memory = {"weights_intended": weight_memory(model, intended=True),
              "weights_as_configured": weight_memory(model, intended=False),
              "kv_cache_per_query": kv_cache, "hidden_states_kept_per_query": kept_hidden,
              "activation_peaks": activation_peaks(model, prefill_tokens)}
    peaks = memory["activation_peaks"]
    memory["activation_peak_with_cache"] = max(peaks["clip"], peaks["lm_prefill"], peaks["mask_decoder_lifting"])
    memory["activation_peak_without_cache"] = max(memory["activation_peak_with_cache"], peaks["sam_encoder"])
    paths = {n: path_flops(model, prompt_tokens, question_tokens, answer_tokens, n, foreground_fraction) for n in objects}
    ratios = {n: {"original_over_ours": c["original"]["total"] / c["ours"]["total"],
                  "original_over_ours_before": c["original"]["total"] / c["ours_before"]["total"],
                  "ours_before_over_ours": c["ours_before"]["total"] / c["ours"]["total"]} for n, c in paths.items()}
    return {
        "paths": paths, "path_ratios": ratios, "question_tokens": question_tokens,
        "preset": preset, "views": views, "prefill_tokens": prefill_tokens, "prompt_tokens": prompt_tokens, "answer_tokens": answer_tokens,
        "decode_steps": decode_steps, "params": params, "flops": flops, "flops_detail": {
            "clip": clip, "sam_encoder_per_view": encoder, "mask_decoder_per_view": decoder, "prompts": prompts,
            "generation_per_token": per_token},
        "flops_per_query_with_cache": with_cache, "flops_per_query_without_cache": without_cache,
        "memory": memory,
    }


def _fl(value: float) -> str:
    """FLOPs with a unit that keeps 4 significant figures readable."""
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:9.2f} {unit}"
    return f"{value:9.0f}  FLOP"


def _print(r: dict) -> None:
    p, f, m = r["params"], r["flops"], r["memory"]
    M, G = 1e6, 1e9
    views = r["views"]
    print(f"== {r['preset']}: prefill T = {r['prefill_tokens']} tokens ({r['prefill_tokens'] - r['prompt_tokens']} image + "
          f"{r['prompt_tokens']} prompt), answer A = {r['answer_tokens']} tokens ({r['decode_steps']} KV-cached decode steps)")
    print("parameters:")
    public = PUBLIC_PARAMS.get(r["preset"], {})
    notes = {"lm": f"public LLaMA-2: {public['lm'] / 1e3:.3f} B" if "lm" in public else "",
             "sam_encoder": f"public SAM ViT-H encoder: ~{PUBLIC_PARAMS['sam_encoder']:.0f} M",
             "clip": f"public CLIP ViT-L/14 vision: {PUBLIC_PARAMS['clip']:.1f} M"}
    for key in ("clip", "projector", "lm", "sam_encoder", "prompt_encoder", "mask_decoder", "text_hidden_fcs",
                "cam_encoder", "attention_splitter", "total"):
        if key in p:
            print(f"  {key:<18} {p[key] / M:12.3f} M   {notes.get(key, '')}")
    print("FLOPs per query:")
    enc, dec = r["flops_detail"]["sam_encoder_per_view"], r["flops_detail"]["mask_decoder_per_view"]
    rows = [
        ("CLIP + projector", f["clip"], "once per image, shared by its queries"),
        ("LM prefill", f["lm_prefill"], ""),
        ("generation", f["generation"], f"{_fl(r['flops_detail']['generation_per_token']).strip()}/token x {r['decode_steps']}"),
        ("seg -> view prompts", f["seg_to_prompts"], "text_hidden_fcs + camera gates"),
        ("SAM image encoder", f["sam_encoder"], f"{views} views; per view {_fl(enc['total']).strip()}: windowed blocks "
         f"{_fl(enc['windowed_blocks']).strip()}, global blocks {_fl(enc['global_blocks']).strip()}, patch+neck "
         f"{_fl(enc['patch_embed'] + enc['neck']).strip()}"),
        ("mask decoder", f["mask_decoder"], f"{views} views, {dec['tokens']} tokens each; per view {_fl(dec['total']).strip()} "
         f"(two-way transformer {_fl(dec['two_way_transformer']).strip()})"),
        ("lifting", f["lifting"], "soft rule, sparse"),
    ]
    for name, value, note in rows:
        print(f"  {name:<20} {_fl(value)}   {note}")
    wc, nc = r["flops_per_query_with_cache"], r["flops_per_query_without_cache"]
    print(f"  {'total, view cache':<20} {_fl(wc)}   (SAM encoder: 0)")
    print(f"  {'total, no cache':<20} {_fl(nc)}   the cache removes {f['sam_encoder'] / nc:.1%} "
          f"(x{nc / wc:.2f} fewer FLOPs)")
    wi, wa = m["weights_intended"], m["weights_as_configured"]
    print("memory:")
    print(f"  weights bf16 {wi['bf16'] / GIB:7.2f} GiB | 8-bit {wi['int8'] / GIB:7.2f} GiB | 4-bit NF4 {wi['nf4'] / GIB:7.2f} GiB"
          f"   ({wi['quantised_params'] / G:.2f} B LM decoder params quantised, the rest bf16)")
    if wa["quantised_params"] != wi["quantised_params"]:
        print(f"  !! transformers' matcher with model.io.QUANTIZATION_SKIP quantises {wa['quantised_params'] / G:.2f} B "
              f"params (CLIP / projector included): 8-bit {wa['int8'] / GIB:.2f} GiB, 4-bit {wa['nf4'] / GIB:.2f} GiB")
    print(f"  KV cache per query {m['kv_cache_per_query'] / 2**20:9.1f} MiB  (bf16, {r['prefill_tokens'] + r['answer_tokens']} "
          f"tokens); hidden states kept by output_hidden_states: {m['hidden_states_kept_per_query'] / 2**20:.1f} MiB")
    a = m["activation_peaks"]
    print(f"  activation peaks: CLIP {a['clip'] / 2**20:.1f} MiB, LM prefill {a['lm_prefill'] / 2**20:.1f} MiB "
          f"(+{a['lm_prefill_math_sdpa_extra'] / 2**20:.1f} MiB with math SDPA), SAM encoder {a['sam_encoder'] / 2**20:.0f} MiB, "
          f"mask decoder + lifting {a['mask_decoder_lifting'] / 2**20:.1f} MiB")
    print(f"  activation peak per query: {m['activation_peak_with_cache'] / 2**20:.0f} MiB with the view cache, "
          f"{m['activation_peak_without_cache'] / 2**20:.0f} MiB without")


def _print_paths(r: dict) -> None:
    paths, ratios = r["paths"], r["path_ratios"]
    counts = list(paths)
    a, t = r["answer_tokens"], r["prefill_tokens"]
    print(f"original path vs ours, FLOPs per query (T = {t} prompt tokens, the last {r['question_tokens']} differing "
          f"between an image's objects; answer {a} tokens ending [SEG] . </s>):")
    header = "".join(f"{f'{n} object(s)/image':>30}" for n in counts)
    print(f"  {'':<34}{header}")
    labels = {"original": "original", "ours_before": "ours before (KV + view cache)",
              "ours": "ours (+ shared prefix, stop at seg)"}
    for key, label in labels.items():
        cells = []
        for n in counts:
            total = paths[n][key]["total"]
            ratio = "" if key == "original" else f" (x{paths[n]['original']['total'] / total:6.1f})"
            cells.append(f"{_fl(total).strip()}{ratio}")
        print(f"  {label:<34}" + "".join(f"{c:>30}" for c in cells))
    print(f"  (original: no KV cache, {a} forwards over {t}..{t + a - 1} tokens with CLIP re-run in each, LM head on "
          f"every position, SAM ViT-H on {r['views']} renders per query)")
    for n in counts:
        o, u = paths[n]["original"], paths[n]["ours"]
        print(f"  {n} object(s)/image, by stage (original | ours): " + ", ".join(
            f"{k} {_fl(o[k]).strip()} | {_fl(u[k]).strip()}" for k in ("clip", "lm", "sam_encoder", "mask_decoder")))
    print("  original / ours: " + ", ".join(f"x{ratios[n]['original_over_ours']:.1f} at {n} object(s)/image" for n in counts)
          + "; ours before / ours: " + ", ".join(f"x{ratios[n]['ours_before_over_ours']:.2f} at {n}" for n in counts))


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", nargs="+", default=["lisa-13b"], help="one or more of lisa-13b, lisa-7b, tiny")
    parser.add_argument("--prompt-tokens", type=int, default=80, help="non-image prompt tokens (BOS to 'ASSISTANT:')")
    parser.add_argument("--answer-tokens", type=int, default=20, help="generated tokens including [SEG] and </s>")
    parser.add_argument("--question-tokens", type=int, default=14,
                        help="prompt tokens after the prefix an image's queries share (object name to 'ASSISTANT:')")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 8], help="object queries per image")
    parser.add_argument("--foreground-fraction", type=float, default=0.086,
                        help="share of mask pixels covered by the body (0.086: synthetic body, 4MV-Z_Vitru_mv2)")
    args = parser.parse_args(argv)
    results = {}
    for preset in args.preset:
        results[preset] = analyse(preset, args.prompt_tokens, args.answer_tokens, args.foreground_fraction,
                                  args.question_tokens, tuple(args.objects))
        _print(results[preset])
        _print_paths(results[preset])
    return results


if __name__ == "__main__":
    main()
