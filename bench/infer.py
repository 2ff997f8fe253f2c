"""Inference benchmark: per-stage times of one contact query and end-to-end throughput, measured side by side in one run.

    python -m bench.infer                          # tiny preset, random weights, synthetic body template (~30 s)
    python -m bench.infer --repeats 5 --threads 2  # default: 1 thread for tiny (see --help)
    python -m bench.infer --model-dir trained_models/X [--device cuda --dtype bfloat16]

Prints, for one hcontact query (prompt → answer of ``--answer-tokens`` forced tokens + [SEG] . </s>):

* per-stage times: CLIP (image features), LM prefill (one forward over image tokens + prompt, KV cache on, logits of
  the last position), generation (the ``generate`` call minus the prefill, also per decoded token), the SAM image
  encoder on the V renders, the view-cache lookup, seg → view prompts, the mask decoder (+ mask upsampling), lifting;
* end-to-end queries/s through ``generate_contact`` with the view-embedding cache vs without it (a fresh
  ``ViewEmbeddingCache()`` per query, so the SAM encoder runs every query, as in the original), and 8 object queries
  over one image in one batched ``generate_contact`` call vs 8 separate calls, and that batched call (shared prefix,
  stop at the seg token: the default) vs today's path (``shared_prefix=False, full_text=True``: transformers'
  ``generate`` over the whole left-padded prompts up to ``</s>``) — each pair timed in alternation in the same run,
  reported as ratios; the outputs of the last pair are checked equal (same ids up to the seg token, masks and
  vertex probabilities to float rounding) in the same run;
* how often the SAM image encoder ran with the (warm) cache: must be 0.

An untrained model rarely emits a seg token, so the answer is forced with a ``LogitsProcessor``: every query goes
through the whole pipeline (SAM decoder + lifting). Stage times are medians after one warm-up, over ``--repeats``
calls or more for fast stages (until ``--min-time`` seconds are spent); end-to-end times are medians over
``--e2e-rounds`` rounds; in each round a pair runs in A B B A order and the reported ratio is the median of the
per-round ratios, so the drift of a shared machine cancels.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from model.interactvlm import InteractVLMForCausalLM, clip_preprocess
from model.sam import ViewEmbeddingCache
from utils.chat_prompt import chat_prompt
from utils.conversation import make_qa

OBJECTS = ("chair", "bottle", "bench", "skateboard", "cup", "bicycle", "laptop", "umbrella")


class ForceAnswer(LogitsProcessor):
    """Force every row to emit ``answer`` token by token (then keep emitting its last token).

    The step is counted from the first call, so it works with ``inputs_embeds``-only generation (``input_ids`` starts
    empty) and with left-padded batches. Use a fresh instance per ``generate`` call.
    """

    def __init__(self, answer: list[int]) -> None:
        self.answer = answer
        self.start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        step = min(input_ids.shape[1] - self.start, len(self.answer) - 1)
        forced = torch.full_like(scores, torch.finfo(scores.dtype).min)
        forced[:, self.answer[step]] = 0
        return forced


def build_tiny_model(template_dir: str | Path, seed: int = 0):
    """Random-weight ``tiny`` model + tokenizer with the synthetic body rendered into ``template_dir`` as its template."""
    from model.config import build_config
    from model.io import attach_tokenizer
    from model.tokenizer import build_tiny_tokenizer
    from model.view_templates import ViewTemplate
    from utils.body_models import canonical_mesh, default_body_model_dir
    from utils.geometry.template_views import render_template
    from utils.geometry.views import get_view_set

    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer()
    config = build_config("tiny")
    attach_tokenizer(config, tokenizer)
    model = InteractVLMForCausalLM(config).eval()
    body = canonical_mesh("synthbody", default_body_model_dir())
    render_template(template_dir, get_view_set(config.human_view_set), [config.mask_size], kind="body",
                    vertices=body.vertices, faces=body.faces, name="synthbody")
    model.add_template("human", ViewTemplate.from_folder(template_dir, config.human_view_set, config.mask_size,
                                                         config.sam_image_size, config.human_lift_mode, name="human"))
    return model, tokenizer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _median_time(fn: Callable[[], object], repeats: int, device: torch.device, min_time: float = 0.0,
                 max_calls: int = 100) -> tuple[float, object]:
    """Median wall time of ``fn`` after one warm-up call, over at least ``repeats`` calls and, for fast stages, as many
    more as fit in ``min_time`` seconds (at most ``max_calls``): robust to short hiccups of a shared machine."""
    _, out = _timed(fn, device)
    times: list[float] = []
    while len(times) < max(repeats, 1) or (sum(times) < min_time and len(times) < max_calls):
        seconds, out = _timed(fn, device)
        times.append(seconds)
    return statistics.median(times), out


def _check(results) -> None:
    missing = [r.text for r in results if not r.found_seg]
    if missing:
        raise RuntimeError(f"forced answers without a seg token: {missing}")


def compare_outputs(fast, reference) -> dict:
    """Shared-prefix results (decoding stopped at the seg token) against today's (whole answer): the ids up to the seg
    token must agree, masks and vertex probabilities to float rounding. Raises if an id or a found seg differs."""
    same = all(a.found_seg == b.found_seg and b.text.startswith(a.text) for a, b in zip(fast, reference))
    if not same or len(fast) != len(reference):
        raise RuntimeError(f"shared-prefix answers differ from today's: {[a.text for a in fast]} vs "
                           f"{[b.text for b in reference]}")
    mask_diff = max(float((a.mask_logits - b.mask_logits).abs().max()) for a, b in zip(fast, reference))
    vertex_diff = max(float((a.vertex_probs - b.vertex_probs).abs().max()) for a, b in zip(fast, reference)
                      if a.vertex_probs is not None)
    return {"same_ids": same, "mask_max_abs_diff": mask_diff, "vertex_max_abs_diff": vertex_diff,
            "mask_max_abs": max(float(b.mask_logits.abs().max()) for b in reference)}


def _answer_ids(tokenizer, model: InteractVLMForCausalLM, answer_tokens: int) -> list[int]:
    text = tokenizer("Sure, the contacting body parts are the left hand and the hips, and the contact region is",
                     add_special_tokens=False)["input_ids"]
    words = (text * (answer_tokens // max(len(text), 1) + 1))[:answer_tokens]
    # the released answers end "... [SEG]." then </s>: two tokens after the seg token
    return words + [model.config.seg_token_index] + tokenizer(".", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=["tiny"],
                        help="random-weight preset to build (only tiny fits a CPU); use --model-dir for a real model")
    parser.add_argument("--model-dir", default=None, help="a model directory (model.io.load_interactvlm) instead")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=[None, "float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.3,
                        help="per stage, keep timing calls (beyond --repeats) until this many seconds are spent")
    parser.add_argument("--e2e-rounds", type=int, default=6,
                        help="alternating rounds of the end-to-end comparisons (each: cached, uncached, batched, separate)")
    parser.add_argument("--answer-tokens", type=int, default=6, help="forced answer tokens before [SEG] </s>")
    parser.add_argument("--batch", type=int, default=8, help="object queries per image in the batched comparison")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 for the tiny preset, whose ops are too small to gain from "
                             "intra-op threads and whose timings a 2nd OpenMP thread makes fragile on a shared machine; "
                             "torch's choice for --model-dir)")
    args = parser.parse_args(argv)
    if args.batch > len(OBJECTS):
        parser.error(f"--batch at most {len(OBJECTS)}")
    threads = args.threads or (1 if args.model_dir is None else None)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _main(args)
    finally:
        torch.set_num_threads(previous_threads)


def _main(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else None

    with tempfile.TemporaryDirectory() as tmp:
        if args.model_dir:
            from model.io import load_interactvlm

            model, tokenizer = load_interactvlm(args.model_dir, device=device, dtype=dtype)
            source = str(args.model_dir)
        else:
            model, tokenizer = build_tiny_model(tmp)
            model.to(device=device, dtype=dtype)
            source = f"{args.preset} preset, random weights"
        with torch.no_grad():
            result = _run(model, tokenizer, args, device)
    result["source"] = source
    return result


def _run(model: InteractVLMForCausalLM, tokenizer, args, device: torch.device) -> dict:
    cfg = model.config
    template = model.template("human")
    rng = np.random.default_rng(0)
    image = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    prompts = [chat_prompt(cfg, make_qa("hcontact", obj, cfg.question_type, with_answer=False).question)
               for obj in OBJECTS[: args.batch]]
    answer = _answer_ids(tokenizer, model, args.answer_tokens)
    max_new = len(answer) + 2

    def generate_contact(queries: list[dict], **kwargs):
        return model.generate_contact(tokenizer, [image], queries, max_new_tokens=max_new,
                                      logits_processor=LogitsProcessorList([ForceAnswer(answer)]), **kwargs)

    # ------------------------------------------------------------------ warm-up: fills the view cache
    _check(generate_contact([{"image": 0, "prompt": prompts[0]}]))
    runs_before = model.view_cache.encoder_runs  # from here on the cache must serve every lookup

    st = _stage_times(model, tokenizer, template, image, prompts[0], answer, args, device)
    e2e = _end_to_end(model, generate_contact, prompts, runs_before, args, device)

    result = {
        "preset": cfg.preset, "device": str(device), "dtype": str(model.dtype), "threads": torch.get_num_threads(),
        "repeats": args.repeats, "min_time": args.min_time, "prompt_tokens": st["prompt_tokens"],
        "answer_tokens": len(answer), "generated_tokens": st["generated"],
        "views": cfg.num_views, "sam_image_size": cfg.sam_image_size, "mask_size": template.mask_size,
        "vertices": template.num_vertices, "stages_s": st["stages"], "generate_call_s": st["generate_s"],
        "per_token_s": st["per_token_s"], "decode_steps": st["decode_steps"], "end_to_end_s": e2e["med"],
        "queries_per_s": e2e["qps"], "ratios": e2e["ratios"], "batch": e2e["n"], "e2e_rounds": e2e["rounds"],
        "encoder_runs_cached": e2e["cached_runs"], "encoder_runs_uncached": e2e["uncached_runs"],
        "cache_key_1024_s": st["key_1024_s"], "equality": e2e["equality"],
    }
    _print(result)
    return result


def _stage_times(model: InteractVLMForCausalLM, tokenizer, template, image: np.ndarray, prompt: str,
                 answer: list[int], args, device: torch.device) -> dict:
    """Median time of each pipeline stage for one query, run stage by stage on the outputs of the previous one."""
    cfg = model.config
    max_new = len(answer) + 2
    reps = args.repeats

    def time_stage(fn: Callable[[], object]) -> tuple[float, object]:
        return _median_time(fn, reps, device, args.min_time)

    stages: dict[str, float] = {}
    clip_size = cfg.vlm_config.vision_config.image_size
    stages["clip_preprocess"], pixels = time_stage(lambda: clip_preprocess([image], clip_size).to(device))
    stages["clip"], features = time_stage(lambda: model.image_features(pixels))
    ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([ids], device=device)
    embeds = model.embed_inputs(input_ids, features)
    attention_mask = torch.ones_like(input_ids)
    lm = model.vlm.model.language_model

    def prefill():
        hidden = lm(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=True).last_hidden_state
        return model.vlm.lm_head(hidden[:, -1:])

    stages["lm_prefill"], _ = time_stage(prefill)

    def generate():
        return model.vlm.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, max_new_tokens=max_new, do_sample=False, num_beams=1,
            output_hidden_states=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, logits_processor=LogitsProcessorList([ForceAnswer(answer)]))

    generate_s, gen_out = time_stage(generate)
    generated = len(gen_out.hidden_states)  # one entry per generation step (the first is the prefill)
    decode_steps = max(generated - 1, 1)  # the prefill yields the first answer token; the final </s> is never fed
    stages["generation"] = max(generate_s - stages["lm_prefill"], 0.0)
    per_token_s = stages["generation"] / decode_steps
    seg_step = answer.index(cfg.seg_token_index)  # the step whose output is [SEG]
    seg_hidden = gen_out.hidden_states[seg_step][-1][:, -1]

    stages["sam_encoder"], _ = time_stage(lambda: model.sam.get_image_embeddings(template.pixel_values.to(
        device, next(model.sam.parameters()).dtype)))
    stages["view_cache_lookup"], _ = time_stage(lambda: model.view_embeddings(template))
    is_object = torch.zeros(1, dtype=torch.bool, device=device)
    cameras = template.cameras.to(seg_hidden.dtype)
    stages["seg_to_prompts"], view_prompts = time_stage(
        lambda: model.seg_to_view_prompts(seg_hidden, cameras, is_object))
    stages["mask_decoder"], masks = time_stage(lambda: model.decode_template(view_prompts, template))
    stages["mask_decoder"] = max(stages["mask_decoder"] - stages["view_cache_lookup"], 0.0)  # lookup reported apart
    stages["lifting"], _ = time_stage(lambda: template.lift(masks))

    # cost of the cache key (hash of the render pixels) at the released 1024-px input, on this machine
    big = torch.zeros(cfg.num_views, 3, 1024, 1024)
    key_1024_s, _ = _median_time(lambda: ViewEmbeddingCache.key(big, "0" * 16), 1, torch.device("cpu"))
    return {"stages": stages, "prompt_tokens": len(ids), "generate_s": generate_s, "generated": generated,
            "decode_steps": decode_steps, "per_token_s": per_token_s, "key_1024_s": key_1024_s}


def _end_to_end(model: InteractVLMForCausalLM, generate_contact: Callable[..., list], prompts: list[str],
                runs_before: int, args, device: torch.device) -> dict:
    """End-to-end times of the cached/uncached, batched/separate and shared-prefix/today pairs, timed in alternation."""
    single = [{"image": 0, "prompt": prompts[0]}]
    batch = [{"image": 0, "prompt": p} for p in prompts]
    cached_cache = model.view_cache
    uncached_runs = 0

    def cached():
        return generate_contact(single)

    def uncached():  # a fresh cache per query: the SAM encoder runs every time, as in the original
        nonlocal uncached_runs
        fresh = ViewEmbeddingCache()
        model.view_cache = fresh
        try:
            return generate_contact(single)
        finally:
            model.view_cache = cached_cache
            uncached_runs += fresh.encoder_runs

    def today():  # the path before the shared prefix: generate over whole prompts, decoded up to </s>
        return generate_contact(batch, shared_prefix=False, full_text=True)

    variants = {"cached": cached, "uncached": uncached, "batched": lambda: generate_contact(batch),
                "separate": lambda: [generate_contact([q])[0] for q in batch], "today": today}
    equality = compare_outputs(generate_contact(batch), today())  # also the warm-up of the batched shapes
    pairs = (("cached", "uncached", "cache_speedup"), ("batched", "separate", "batch_speedup"),
             ("batched", "today", "prefix_speedup"))
    rounds = max(args.e2e_rounds, 1)
    times, paired = _alternate_pairs(variants, pairs, rounds, device)
    cached_runs = cached_cache.encoder_runs - runs_before
    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(batch)
    qps = {"cached": 1 / med["cached"], "uncached": 1 / med["uncached"], "batched": n / med["batched"],
           "separate": n / med["separate"], "today": n / med["today"]}
    # per-round paired ratios (median): the throughput ratio of each pair measured side by side
    ratios = {k: statistics.median(v) for k, v in paired.items()}
    return {"med": med, "qps": qps, "ratios": ratios, "n": n, "rounds": rounds, "cached_runs": cached_runs,
            "uncached_runs": uncached_runs, "equality": equality}


def _alternate_pairs(variants: dict[str, Callable[[], object]], pairs: tuple, rounds: int,
                     device: torch.device) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Time each (fast, slow, name) pair in A B B A order per round; returns all call times and per-round ratios."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    paired: dict[str, list[float]] = {name: [] for _, _, name in pairs}
    for _ in range(rounds):
        # A B B A order per pair, so a slow drift of the (shared) machine cancels within the round
        for fast, slow, name in pairs:
            spent = {fast: 0.0, slow: 0.0}
            for key in (fast, slow, slow, fast):
                seconds, out = _timed(variants[key], device)
                _check(out)
                times[key].append(seconds)
                spent[key] += seconds
            paired[name].append(spent[slow] / spent[fast])
    return times, paired


def _print(r: dict) -> None:
    ms = lambda s: f"{s * 1e3:9.2f} ms"  # noqa: E731
    st = r["stages_s"]
    print(f"model: {r['preset']} ({r['dtype']}, {r['device']}, {r['threads']} threads); prompt {r['prompt_tokens']} tokens "
          f"(image tokens included), answer {r['answer_tokens']} tokens; V={r['views']} views, SAM input "
          f"{r['sam_image_size']} px, masks {r['mask_size'][0]} px, {r['vertices']} vertices")
    print(f"per-stage, one query (medians of >= {r['repeats']} calls, >= {r['min_time']:.2f} s per stage):")
    print(f"  CLIP preprocess            {ms(st['clip_preprocess'])}")
    print(f"  CLIP image features        {ms(st['clip'])}")
    print(f"  LM prefill                 {ms(st['lm_prefill'])}")
    print(f"  generation (minus prefill) {ms(st['generation'])}   = {r['decode_steps']} decode steps x "
          f"{r['per_token_s'] * 1e3:.2f} ms/token  (generate call {r['generate_call_s'] * 1e3:.2f} ms)")
    print(f"  SAM image encoder, {r['views']} views {ms(st['sam_encoder'])}   (skipped when the view cache is warm)")
    print(f"  view-cache lookup          {ms(st['view_cache_lookup'])}   (key hash of the 1024-px renders on this "
          f"machine: {r['cache_key_1024_s'] * 1e3:.1f} ms)")
    print(f"  seg -> view prompts        {ms(st['seg_to_prompts'])}")
    print(f"  mask decoder + upsampling  {ms(st['mask_decoder'])}")
    print(f"  lifting                    {ms(st['lifting'])}")
    e, q, ratio = r["end_to_end_s"], r["queries_per_s"], r["ratios"]
    print(f"end to end (generate_contact), medians of {r['e2e_rounds']} rounds (ABBA order; ratios = median of the "
          f"per-round paired ratios):")
    print(f"  1 query, view cache        {q['cached']:8.2f} queries/s   ({e['cached'] * 1e3:.1f} ms)")
    print(f"  1 query, no cache          {q['uncached']:8.2f} queries/s   ({e['uncached'] * 1e3:.1f} ms)   "
          f"cache speed-up x{ratio['cache_speedup']:.2f}")
    print(f"  {r['batch']} queries, one call        {q['batched']:8.2f} queries/s   ({e['batched'] * 1e3:.1f} ms)")
    print(f"  {r['batch']} queries, {r['batch']} calls         {q['separate']:8.2f} queries/s   ({e['separate'] * 1e3:.1f} ms)   "
          f"batching speed-up x{ratio['batch_speedup']:.2f}")
    print(f"  {r['batch']} queries, one call, today {q['today']:8.2f} queries/s   ({e['today'] * 1e3:.1f} ms)   "
          f"shared prefix + stop at seg speed-up x{ratio['prefix_speedup']:.2f}  (plain generate over whole prompts, "
          f"up to </s>)")
    eq = r["equality"]
    print(f"  outputs, shared prefix vs today: same seg ids {eq['same_ids']}, max |mask logit diff| "
          f"{eq['mask_max_abs_diff']:.2e} (masks up to {eq['mask_max_abs']:.2e}), max |vertex prob diff| "
          f"{eq['vertex_max_abs_diff']:.2e}")
    print(f"SAM encoder runs after warm-up: with cache {r['encoder_runs_cached']} (must be 0), "
          f"without {r['encoder_runs_uncached']} over {2 * r['e2e_rounds']} queries")


if __name__ == "__main__":
    main()
