"""The README's SynthContact tables in one command: the bundled model against the baselines, per split and per
(pose family × object), human and object side.

    python -m training.synthcontact_report --model-dir trained_models/interactvlm-tiny-synthcontact-opening-parts \
        --eval-dir data/synthcontact_eval --train-dir data --output docs/synthcontact_results.md

``--eval-dir`` holds a SynthContact folder generated with a seed never used in training (splits ``test`` with the
training combinations and ``test_heldout`` with the held-out ones). Methods, all scored by DECO's per-pair semantic
F1 (the ``supporting`` ground ignored) in generate mode (the model gets the photo and the question naming the object,
nothing else):

* ``model``: the InteractVLM model directory;
* ``class prior``: per-class per-vertex contact frequency of the *training* split, threshold calibrated on it;
* ``oracle class prior``: the same fitted on the evaluated split's own labels: the best any answer that ignores the
  image can do there;
* ``both feet``: the two feet, whatever the image and object;
* ``direct``: the direct per-vertex classifier baseline (``training.baselines``), when its file exists.

Object side (``synthcontact_ocontact_canonical``): per-vertex F1 on the class templates, against the per-class
contact frequency of the training split (threshold calibrated there).
"""

from __future__ import annotations

import argparse
import json
import warnings
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from datasets.registry import build_dataset
from model.calibration import decision_threshold
from model.io import load_interactvlm
from preprocess_data.synthcontact_gallery import BODY_GREY, _letterbox, body_views
from training.baselines import FrequencyPrior, load_baseline
from training.calibration import THRESHOLD_GRID
from training.predict import predict_dataset
from utils.body_models import canonical_mesh, default_body_model_dir, load_part_segmentation
from utils.metrics import deco_prf, prediction_diversity
from utils.paths import DEFAULT_MODEL, REPO_ROOT

SPLITS = ("test", "test_heldout")
SPLIT_TITLES = {"test": "seen combinations (test)", "test_heldout": "held-out combinations"}


def pair_f1(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return np.asarray(deco_prf(pred, gt)["f1"], dtype=np.float64)


SEG_IN_ANSWER = re.compile(r"\[[A-Z]*SEG\]")


def answer_parts(text: str, known: set[str]) -> set[str]:
    """The body parts an answer names between its last "the " and its seg token ("The person is sitting; the contact
    is at the hips, left thigh[HSEG]" → hips, left thigh)."""
    match = SEG_IN_ANSWER.search(text or "")
    if match is None or " the " not in f" {text[:match.start()]}":
        return set()
    listed = f" {text[:match.start()]}".rsplit(" the ", 1)[1]
    return {p.strip() for p in listed.split(",")} & known


def part_set_f1(named: set[str], truth: set[str]) -> float:
    if not named and not truth:
        return 1.0
    return 2 * len(named & truth) / (len(named) + len(truth))


def class_majority(records, value: Callable[[Any], Hashable]) -> dict[str, Hashable]:
    """Per object class, the ``value`` (part list, pose) its training pairs show most often: what a lookup on the
    class would answer."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        counts[r.class_name][value(r)] += 1
    return {name: c.most_common(1)[0][0] for name, c in counts.items()}


ANSWER_POSE = re.compile(r"The person is ([^;.\[]+)[;.]")


def answer_pose(text: str) -> str | None:
    """The pose an answer states first: the opening answer ("The person is lying face down. The contact …") or, in
    one-turn answers, its first clause ("The person is lying face down; the contact …") → lying face down."""
    match = ANSWER_POSE.search(text or "")
    return match.group(1).strip() if match else None


def split_families(data_dir: Path, split: str) -> dict[str, str]:
    metas = [json.loads(line) for line in (data_dir / "synthcontact" / split / "meta.jsonl").read_text().splitlines()]
    return {m["stem"]: m["pose_family"] for m in metas}


def human_dataset(model, data_dir: Path, split: str, answer_template: str | None = None, opening_turn: bool = False,
                  opening_parts: bool = False):
    """The split's human pairs for ``model``; ``answer_template``, ``opening_turn`` and ``opening_parts`` give the
    conversation it was trained on (teacher forcing, ``training.mask_branch_probe``); generate mode needs none."""
    cfg = model.config
    return build_dataset("synthcontact_hcontact", data_dir, split, view_set=cfg.human_view_set, mask_size=cfg.mask_size,
                         valid_mask=model.template("human").valid.cpu().numpy(), training=False,
                         token_type=cfg.token_type, answer_template=answer_template, opening_turn=opening_turn,
                         opening_parts=opening_parts)


def model_predictions(model, tokenizer, dataset, max_pairs: int | None) -> tuple[list[dict], np.ndarray, list[str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results = predict_dataset(model, tokenizer, dataset, max_pairs, progress=True)
    samples = [s for s, _ in results]
    probs = np.stack([p.vertex_probs.float().cpu().numpy() for _, p in results])
    return samples, probs, [p.text for _, p in results]


def train_labels(dataset) -> tuple[list[str], np.ndarray]:
    """Class names and per-vertex labels of the training split, straight from the index files (no photo decoded)."""
    names = [r.class_name for r in dataset.records]
    return names, np.stack([dataset.vertex_labels(r) for r in dataset.records]).astype(np.float32)


def feet_vertices() -> np.ndarray:
    seg = load_part_segmentation(default_body_model_dir() / "synthbody" / "synthbody_segmentation.json")
    return np.concatenate([seg["left foot"], seg["right foot"]])


def direct_predictions(path: Path, samples: list[dict], data_dir: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    baseline = load_baseline("direct", path, dataset_dir=data_dir)

    class _List:
        def __getitem__(self, i):
            return samples[i]

    return np.stack([p for _, p, _, _ in baseline.predict(_List(), list(range(len(samples))))])


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def gallery_rows(samples: list[dict], probs: np.ndarray, combos: list[tuple[str, str]], per_split: int, tile: int,
                 title: str) -> list[np.ndarray]:
    """Rows of photo | ground truth (4 body views) | prediction (4 body views), one per combination first."""
    canon = canonical_mesh("synthbody", default_body_model_dir())
    vertices, faces = np.asarray(canon.vertices), np.asarray(canon.faces)
    order, seen = [], set()
    for i, combo in enumerate(combos):  # one pair per (family, object), then the rest, skipping the ground
        if combo not in seen and combo[1] != "supporting":
            seen.add(combo)
            order.append(i)
    rows = []
    for i in order[:per_split]:
        views = []
        for labels in (samples[i]["vertex_labels"], probs[i]):
            colors = np.tile(BODY_GREY, (len(vertices), 1))
            colors[np.asarray(labels) > 0.5] = [0.9, 0.1, 0.1]
            views += body_views(vertices, faces, colors, tile)
        row = np.concatenate([_letterbox(samples[i]["image"], tile), *views], axis=1)
        caption = np.full((22, row.shape[1], 3), 255, dtype=np.uint8)
        text = (f"{title}: {samples[i]['meta']['stem']}  {combos[i][0]} x {combos[i][1]}   "
                f"| ground truth (4 views) | model (4 views)")
        cv2.putText(caption, text, (6, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([caption, row], axis=0))
    return rows


def human_report(model, tokenizer, args) -> tuple[str, dict]:
    train = human_dataset(model, args.train_dir, "train")  # built once: its index files are the largest read here
    names_train, labels_train = train_labels(train)
    prior = FrequencyPrior.fit(names_train, labels_train)
    feet = feet_vertices()
    lookup = {name: set(parts) for name, parts in
              class_majority(train.records, lambda r: tuple(sorted(r.body_parts))).items()}
    pose_lookup = class_majority(train.records, lambda r: r.pose)
    known_parts = set().union(*lookup.values())
    summary_rows, combo_rows, answer_rows, pose_rows, numbers, pictures = [], [], [], [], {}, []
    for split in SPLITS:
        dataset = human_dataset(model, args.eval_dir, split)
        samples, probs, texts = model_predictions(model, tokenizer, dataset, args.max_pairs)
        gts = np.stack([s["vertex_labels"] for s in samples]).astype(np.float32)
        names = [s["class_name"] for s in samples]
        families = split_families(args.eval_dir, split)
        combos = [(families[s["meta"]["stem"]], s["class_name"]) for s in samples]
        oracle = FrequencyPrior.fit(names, gts)
        both_feet = np.zeros_like(gts)
        both_feet[:, feet] = 1.0
        methods = {"model": probs, "class prior (train)": np.stack([prior(n) for n in names]),
                   "oracle class prior (this split)": np.stack([oracle(n) for n in names]), "both feet": both_feet}
        direct = direct_predictions(args.direct, samples, args.train_dir)
        if direct is not None:
            methods["direct classifier"] = direct
        keep = np.array([n != "supporting" for n in names])
        f1 = {m: pair_f1(p, gts) for m, p in methods.items()}
        diversity = prediction_diversity(probs)
        numbers[split] = {"pairs": int(keep.sum()), "semantic_f1": {m: float(v[keep].mean()) for m, v in f1.items()},
                          "diversity": {k: v for k, v in diversity.items() if not isinstance(v, np.ndarray)},
                          "answers": texts[:8]}
        truth = [set(s["body_parts"]) for s in samples]
        said = np.array([part_set_f1(answer_parts(t, known_parts), g) for t, g in zip(texts, truth)])
        looked_up = np.array([part_set_f1(lookup.get(n, set()), g) for n, g in zip(names, truth)])
        numbers[split]["answer_part_f1"] = {"model": float(said[keep].mean()), "class lookup": float(looked_up[keep].mean())}
        answer_rows += [(SPLIT_TITLES[split], "model's answer", f"{said[keep].mean():.3f}", str(int(keep.sum()))),
                        (SPLIT_TITLES[split], "class's most frequent training answer", f"{looked_up[keep].mean():.3f}",
                         str(int(keep.sum())))]
        stated = [answer_pose(t) for t in texts]
        if any(stated):  # a model trained on answers that say the pose first
            truth_pose = np.array([r.pose for r in dataset.records[:len(samples)]], dtype=object)  # samples keep its order
            right = np.array([a == t for a, t in zip(stated, truth_pose)])
            looked_up_pose = np.array([pose_lookup.get(n) == t for n, t in zip(names, truth_pose)])
            numbers[split]["pose_accuracy"] = {"model": float(right[keep].mean()),
                                               "class lookup": float(looked_up_pose[keep].mean())}
            pose_rows += [(SPLIT_TITLES[split], "model's answer", f"{right[keep].mean():.3f}", str(int(keep.sum()))),
                          (SPLIT_TITLES[split], "class's most frequent training pose",
                           f"{looked_up_pose[keep].mean():.3f}", str(int(keep.sum())))]
        for m in methods:
            summary_rows.append((SPLIT_TITLES[split], m, f"{f1[m][keep].mean():.3f}", str(int(keep.sum()))))
        groups = defaultdict(list)
        for i, combo in enumerate(combos):
            groups[combo].append(i)
        for combo in sorted(groups):
            idx = np.array(groups[combo])
            combo_rows.append((SPLIT_TITLES[split], f"{combo[0]} × {combo[1]}", str(len(idx)),
                               *[f"{f1[m][idx].mean():.3f}" for m in methods]))
        header_methods = list(methods)
        if args.gallery:
            pictures += gallery_rows(samples, probs, combos, args.gallery_per_split, args.tile, SPLIT_TITLES[split])
    if args.gallery and pictures:
        args.gallery.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.gallery), np.ascontiguousarray(np.concatenate(pictures, axis=0)[..., ::-1]),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
    text = ["### Human contact (semantic F1 per (image, object) pair, `supporting` excluded from the totals)", "",
            table(summary_rows, ("split", "method", "semantic F1", "pairs")), "",
            "### Does the answer follow the photo? (F1 of the body parts the answer names vs the true ones)", "",
            table(answer_rows, ("split", "answer", "part-set F1", "pairs")), "",
            *(["### Does the answer say the pose the photo shows? (the pose words before the parts)", "",
               table(pose_rows, ("split", "answer", "pose right", "pairs")), ""] if pose_rows else []),
            "### Per (pose family × object)", "",
            table(combo_rows, ("split", "combination", "pairs", *header_methods)), "",
            "Prediction diversity of the model (binarised at 0.5): " + "; ".join(
                f"{SPLIT_TITLES[s]}: mean pairwise IoU {numbers[s]['diversity']['mean_pairwise_iou']:.3f}, "
                f"{numbers[s]['diversity']['distinct_masks']} distinct masks" for s in SPLITS), ""]
    return "\n".join(text), numbers


def object_report(model, tokenizer, args) -> tuple[str, dict]:
    cfg = model.config
    options = dict(view_set=cfg.object_view_set, mask_size=cfg.mask_size, training=False, token_type=cfg.token_type)
    train = build_dataset("synthcontact_ocontact_canonical", args.train_dir, "train", load_masks=False, **options)
    per_class = defaultdict(list)
    for r in train.records:
        per_class[r.class_name].append(train.vertex_labels(r))
    freq = {n: np.mean(v, axis=0) for n, v in per_class.items()}
    thresholds = THRESHOLD_GRID
    train_names = [r.class_name for r in train.records]
    train_gts = [train.vertex_labels(r) for r in train.records]
    scores = {t: np.mean([pair_f1((freq[n] >= t).astype(np.float32)[None], g[None])[0]
                          for n, g in zip(train_names, train_gts)]) for t in thresholds}
    best = max(scores, key=scores.get)
    rows, numbers = [], {}
    for split in SPLITS:
        dataset = build_dataset("synthcontact_ocontact_canonical", args.eval_dir, split, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            results = predict_dataset(model, tokenizer, dataset, args.max_pairs, progress=True)
        model_f1, prior_f1, classes = [], [], []
        for sample, pred in results:
            gt = sample["vertex_labels"][None]
            model_f1.append(pair_f1(pred.vertex_probs.float().cpu().numpy()[None], gt)[0])
            prior_f1.append(pair_f1((freq[sample["class_name"]] >= best).astype(np.float32)[None], gt)[0])
            classes.append(sample["class_name"])
        numbers[split] = {"pairs": len(results), "model_f1": float(np.mean(model_f1)), "prior_f1": float(np.mean(prior_f1))}
        rows.append((SPLIT_TITLES[split], "all", str(len(results)), f"{np.mean(model_f1):.3f}", f"{np.mean(prior_f1):.3f}"))
        for name in sorted(set(classes)):
            idx = [i for i, c in enumerate(classes) if c == name]
            rows.append((SPLIT_TITLES[split], name, str(len(idx)), f"{np.mean([model_f1[i] for i in idx]):.3f}",
                         f"{np.mean([prior_f1[i] for i in idx]):.3f}"))
    text = ["### Object contact (per-vertex F1 on the object class's template)", "",
            table(rows, ("split", "object", "pairs", "model", "object-class prior (train)")), ""]
    return "\n".join(text), numbers


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--eval-dir", type=Path, required=True, help="dataset dir holding synthcontact/ (unseen seed)")
    parser.add_argument("--train-dir", type=Path, default=REPO_ROOT / "data", help="dataset dir of the training data")
    parser.add_argument("--direct", type=Path, default=REPO_ROOT / "trained_models" / "baselines" / "direct_synthcontact.safetensors")
    parser.add_argument("--output", type=Path, required=True, help="markdown file (a .json with the numbers beside it)")
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--no-objects", action="store_true")
    parser.add_argument("--gallery", type=Path, default=None, help="PNG: predictions beside the ground truth")
    parser.add_argument("--gallery-per-split", type=int, default=5)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer = load_interactvlm(args.model_dir, device="cpu")
    model.eval()
    human_text, human_numbers = human_report(model, tokenizer, args)
    thresholds = (f"decision thresholds chosen on validation and folded into its probabilities (`model.calibration`): "
                  f"human {decision_threshold(model.config, 'human'):.2f}, object {decision_threshold(model.config, 'object'):.2f}")
    parts = [f"Model: `{args.model_dir.name}` ({thresholds}); evaluation data: `{args.eval_dir}`.", "", human_text]
    numbers = {"human": human_numbers}
    if not args.no_objects and model.config.token_type == "Gen-Hu-Obj":
        object_text, numbers["object"] = object_report(model, tokenizer, args)
        parts.append(object_text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(parts))
    args.output.with_suffix(".json").write_text(json.dumps(numbers, indent=1))
    print("\n".join(parts))
    return numbers


if __name__ == "__main__":
    main()
