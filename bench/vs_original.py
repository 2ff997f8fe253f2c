"""Ours vs the original InteractVLM code on the same tiny released-format checkpoint and the same queries.

The original runs its own inference (``InteractVLMForCausalLM.evaluate``, the generate path of ``run_demo.py`` and
``evaluate.py``, one query per call as both do) under transformers 4.31 in its own interpreter, as a subprocess
(``tests/parity/oracle_side.py --command infer``). Ours converts the checkpoint through the README route and answers
all queries of the image in one ``generate_contact`` call (the median of ``--repeats`` timed calls). The run prints
whether the answers, masks and per-vertex contact agree, and queries/s of each::

    python -m bench.vs_original --original /work/oracle/InteractVLM --original-python /work/oracle/venv/bin/python

Without ``--original`` it prints why it skipped and exits 0. The checkpoint is the committed ``hcontact`` parity
fixture (``tests/parity/fixtures``); the default case asks about 8 objects in one image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from model.convert_official import convert_official
from model.io import load_interactvlm
from utils import conversation as conv
from utils.chat_prompt import chat_prompt
from utils.paths import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "parity" / "fixtures"
ORACLE = REPO_ROOT / "tests" / "parity" / "oracle_side.py"


def queries_for(objects: list[str]) -> list[dict]:
    question = conv.HCONTACT_PARTS_QUESTIONS[0]
    return [{"sam": "human", "view_set": "4MV-Z_Vitru_mv2", "contact_type": "hcontact", "image": 0, "object": obj,
             "question": question.format(class_name=obj)} for obj in objects]


def run_original(args, queries: list[dict], work: Path) -> dict:
    spec = {"work": str(work / "oracle"), "output": str(work / "oracle_out"), "checkpoint": str(args.checkpoint),
            "clip": str(FIXTURES / "clip"), "templates": str(FIXTURES / "inputs"),
            "images": [str(args.image)], "generate": queries, "max_new_tokens": args.max_new_tokens}
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {"ORACLE_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(args.original_python), str(ORACLE), "--original", str(args.original), "--spec",
                             str(spec_path), "--command", "infer"], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"the original code failed:\n{result.stderr[-4000:]}")
    out = Path(spec["output"])
    record = json.loads((out / "original_outputs.json").read_text())
    with np.load(out / "original_outputs.npz") as data:
        record["arrays"] = {k: data[k] for k in data.files}
    return record


def run_ours(args, queries: list[dict], work: Path) -> dict:
    start = time.perf_counter()
    converted = convert_official(args.checkpoint, work / "ours", clip=FIXTURES / "clip",
                                 human_template=FIXTURES / "inputs" / "hcontact_vitruvian")
    model, tokenizer = load_interactvlm(converted, dtype=torch.float32, cache_dir=None)
    convert_seconds = time.perf_counter() - start
    image = cv2.imread(str(args.image))[..., ::-1].copy()
    prompts = [{"image": 0, "prompt": chat_prompt(model.config, q["question"])} for q in queries]
    model.generate_contact(tokenizer, [image], prompts[:1], max_new_tokens=args.max_new_tokens)  # warm-up
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):  # alternating, so that both modes see the same machine load
        for full_text in (True, False):
            start = time.perf_counter()
            predictions = model.generate_contact(tokenizer, [image], prompts, max_new_tokens=args.max_new_tokens,
                                                 full_text=full_text)
            timings[full_text].append(time.perf_counter() - start)
            if full_text:
                full = predictions
    seconds = {mode: statistics.median(times) for mode, times in timings.items()}
    return {"predictions": full, "seconds": seconds[True], "seconds_to_seg": seconds[False],
            "convert_seconds": convert_seconds, "tokenizer": tokenizer}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", type=Path, default=None, help="checkout of saidwivedi/InteractVLM (79b4bf2)")
    parser.add_argument("--original-python", type=Path, default=None,
                        help="python with transformers 4.31.0 / tokenizers 0.13.3 / peft 0.4.0 (tests/parity/README.md)")
    parser.add_argument("--checkpoint", type=Path, default=FIXTURES / "hcontact" / "checkpoint")
    parser.add_argument("--image", type=Path, default=FIXTURES / "inputs" / "photo_0.png")
    parser.add_argument("--objects", nargs="+", default=["chair", "bench", "bottle", "skateboard", "tennis racket",
                                                         "cup", "bicycle", "bed"])
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed calls of ours per mode, median reported (the original's 8 one-query calls run once)")
    args = parser.parse_args(argv)
    if args.original is None or args.original_python is None:
        print("vs_original: skipped (no checkout of the original given); pass --original DIR --original-python PY, "
              "see tests/parity/README.md for the 4.31 environment")
        return 0
    if not (args.original / "merge_lora_weights_and_save_hf_model.py").is_file():
        sys.exit(f"{args.original} is not a checkout of saidwivedi/InteractVLM")
    if not args.checkpoint.is_dir():
        sys.exit(f"{args.checkpoint} missing: build the fixtures with python -m tests.parity.build_fixtures")
    torch.set_num_threads(args.threads)
    queries = queries_for(args.objects)
    with tempfile.TemporaryDirectory(prefix="ivlm_vs_original_") as tmp:
        work = Path(tmp)
        original = run_original(args, queries, work)
        ours = run_ours(args, queries, work)
    tokenizer = ours["tokenizer"]
    eos = tokenizer.eos_token_id
    same_text, mask_diff, contact_diff, seg = 0, 0.0, 0.0, 0
    for i, (prediction, input_ids, output_ids) in enumerate(zip(ours["predictions"], original["input_ids"],
                                                                original["output_ids"])):
        answer = output_ids[len(input_ids):]
        answer = answer[: answer.index(eos)] if eos in answer else answer
        same_text += prediction.text == tokenizer.decode(answer, skip_special_tokens=False).strip()
        seg += prediction.found_seg
        masks = original["arrays"].get(f"masks_{i}")
        if prediction.found_seg and masks is not None and masks.size:
            mask_diff = max(mask_diff, float((prediction.mask_logits - torch.from_numpy(masks)).abs().max()))
            contact = original["arrays"].get(f"contact_{i}")
            if contact is not None:
                contact_diff = max(contact_diff, float((prediction.vertex_probs - torch.from_numpy(contact)).abs().max()))
    n = len(queries)
    qps_original = n / original["seconds"]
    qps_ours, qps_seg = n / ours["seconds"], n / ours["seconds_to_seg"]
    agree = same_text == n and mask_diff <= 1e-5 and contact_diff <= 1e-5
    print(f"checkpoint: {args.checkpoint} (original release layout, fp32 on CPU, {args.threads} thread(s))")
    print(f"queries: {n} objects about one image, max_new_tokens {args.max_new_tokens}; answers with a seg token: {seg}/{n}")
    print(f"agreement: answers identical {same_text}/{n}; max |mask logit diff| {mask_diff:.2e}; "
          f"max |vertex prob diff| {contact_diff:.2e} -> {'AGREE' if agree else 'DIFFER'}")
    print(f"original (evaluate, one query per call): {original['seconds']:.2f} s = {qps_original:.2f} queries/s")
    print(f"ours (generate_contact, one call, full answers, median of {args.repeats}): {ours['seconds']:.3f} s = {qps_ours:.2f} queries/s "
          f"({qps_ours / qps_original:.1f}x)")
    print(f"ours (default: decoding stops at the seg token, median of {args.repeats}): {ours['seconds_to_seg']:.3f} s = {qps_seg:.2f} queries/s "
          f"({qps_seg / qps_original:.1f}x)")
    print(f"(ours, one-off: conversion + loading {ours['convert_seconds']:.1f} s)")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
