"""Evaluate a model directory (or a baseline) on contact / affordance datasets.

    python evaluate.py --model-dir trained_models/interactvlm-tiny-synthcontact --dataset synthcontact_hcontact --split test
    python evaluate.py --model-dir DIR --dataset damon_hcontact --split test --metrics interactvlm   # the original's formulas
    python evaluate.py --model-dir DIR --dataset pico_ocontact --split test                         # object contact
    python evaluate.py --model-dir DIR --dataset piad_oafford --split test                          # affordance (PIAD)
    python evaluate.py --model-dir DIR --dataset damon_hcontact pico_ocontact --split test           # joint model, both sides
    python evaluate.py --baseline prior --baseline-path trained_models/baselines/prior_synthcontact.npz ...
    python evaluate.py --model-dir trained_models/interactvlm-tiny-2d-synthcontact --dataset synthcontact_h2dcontact
    deepspeed --num_gpus 4 evaluate.py --model-dir DIR ...                                          # data-parallel

What is scored depends on the dataset's task:

* ``hcontact`` (3D human contact per body vertex): DECO semantic P/R/F1 per (image, object) and FP geodesic error,
  binary per image (union over objects); ``--metrics interactvlm`` for the original's formulas;
* ``h2dcontact`` (2D contact on the photo): DECO's per-image rules on pixels, gIoU and cIoU;
* ``ocontact`` (object contact per mesh vertex, PICO layout): the original's per-sample P/R/F1 and DECO's rules;
* ``oafford`` (affordance per point, PIAD layout): SIM, MAE, AUC and aIoU with IAGNet's NaN rule.

Every report also holds ``diversity``: how much the predictions differ across samples (mean pairwise IoU of the
binarised masks, per-element std); a model that answers every input alike is flagged as collapsed.
Default mode is ``generate`` (the model writes its own answer, as at test time); ``--mode forward`` feeds the ground
truth answer (LISA-style, optimistic). Writes ``results.json``, ``results.md``, per-object bars, a precision-recall
curve and a few qualitative renders under ``--output-dir`` (with several datasets: one subfolder per dataset).
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import torch

from datasets.base import RELEASE_NUM_VERTICES
from training.data import build_validation_data
from datasets.collate import Collator
from datasets.io import read_image
from model.io import load_interactvlm
from training.baselines import load_baseline
from training.batches import model_inputs
from training.predict import prediction_items
from utils.body_models import canonical_mesh, default_body_model_dir
from utils.distributed import is_main_process, rank, world_size
from utils.evaluation import EvalItem, collapse_warning, headline, item_from_prediction, task_report, write_report
from utils.geometry.geodesic import geodesic_matrix, load_geodesic_matrix
from utils.paths import REPO_ROOT
from utils.pictures import photo_panel, qualitative_panel
from training.recipes import DataSource, Recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="model directory (trained_models/<name>)")
    parser.add_argument("--baseline", choices=["prior", "direct", "prior2d"], default=None,
                        help="evaluate a baseline instead (prior2d: the 2D mask prior, for h2dcontact datasets)")
    parser.add_argument("--baseline-path", type=Path, default=None)
    parser.add_argument("--dataset", nargs="+", default=["synthcontact_hcontact"],
                        help="reader name(s), see datasets/registry.py; several = one report each (a joint model's "
                             "human and object sides)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--dataset-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--mode", choices=["generate", "forward"], default="generate")
    parser.add_argument("--metrics", choices=["deco", "interactvlm"], default="deco")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--mask-size", type=int, default=256, help="2D baseline: longest side of the masks scored "
                        "(a model uses its own config.mask_size)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--geodesic", default="auto", help="'auto' (computed on the template and cached), a .npy path, or 'none'")
    parser.add_argument("--qualitative", type=int, default=4, help="number of qualitative renders")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


@dataclass
class Method:
    """What is evaluated: a model (with its tokenizer) or a baseline, and the config its datasets are read with."""

    name: str
    config: Any
    model: Any = None
    tokenizer: Any = None
    baseline: Any = None
    human_template: Any = None  # ViewTemplate of the body (3D methods), for the valid region and the geodesics


def load_method(args: argparse.Namespace, device: str) -> Method:
    if (args.model_dir is None) == (args.baseline is None):
        raise SystemExit("give exactly one of --model-dir or --baseline")
    if args.model_dir is not None:
        model, tokenizer = load_interactvlm(args.model_dir, device=device)
        human = None if model.config.contact_2d else model.template("human")
        return Method(args.model_dir.name, model.config, model, tokenizer, human_template=human)
    baseline = load_baseline(args.baseline, args.baseline_path, device=device)
    config = baseline.config
    if args.baseline == "prior2d":  # masks at the size asked for (a model uses its own mask_size)
        config = copy.deepcopy(config)
        config.mask_size = args.mask_size
    return Method(f"baseline-{args.baseline}", config, baseline=baseline, human_template=baseline.template)


def build_eval_dataset(name: str, args: argparse.Namespace, method: Method):
    """The dataset read exactly as training validates on it (same reader options from the config)."""
    recipe = Recipe("evaluate", "evaluate", train=(), val=(DataSource(name, args.split),))
    valid = None if method.human_template is None else method.human_template.valid.cpu().numpy()
    return build_validation_data(recipe, args.dataset_dir, method.config, valid)[0]


def geodesic_for(args, num_vertices: int, template_name: str):
    """Matrix in metres (→ reported in cm): ours for the synthetic body, the RICH/DECO file for SMPL."""
    if args.geodesic == "none":
        return None
    if args.geodesic != "auto":
        return load_geodesic_matrix(args.geodesic, num_vertices)
    if num_vertices == RELEASE_NUM_VERTICES:
        path = args.dataset_dir / "smpl_neutral_geodesic_dist.npy"
        if not path.is_file():
            warnings.warn(f"no geodesic matrix at {path} (ships in the original data.zip): geodesic errors skipped")
            return None
        return load_geodesic_matrix(path, num_vertices)
    mesh = canonical_mesh(template_name, default_body_model_dir())
    return geodesic_matrix(mesh.vertices, mesh.faces)


def _shard(indices: list[int]) -> list[int]:
    return indices[rank()::world_size()]


class _Subset(torch.utils.data.Dataset):
    """The samples of ``indices`` (this rank's share), keeping the dataset's name and task."""

    def __init__(self, dataset, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, indices
        self.name, self.task = dataset.name, getattr(dataset, "task", "")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i]]


def model_items(args, dataset, model, tokenizer, indices: list[int], keep: int) -> list[EvalItem]:
    """The model's predictions, in generate mode (its own answer) or forward mode (the ground-truth answer)."""
    subset = _Subset(dataset, indices)
    task = subset.task
    if args.mode == "generate":
        return prediction_items(model, tokenizer, subset, batch_size=args.batch_size, keep_views=keep,
                                progress=is_main_process())
    collator = Collator(tokenizer, model.config, training=False)
    items = []
    with torch.no_grad():
        for start in range(0, len(subset), args.batch_size):
            samples = [subset[i] for i in range(start, min(len(subset), start + args.batch_size))]
            inputs = model_inputs(model, collator(samples))
            out = model(**inputs)
            first: dict[int, int] = {}
            for k, b in enumerate([] if out.seg_batch_index is None else out.seg_batch_index.tolist()):
                first.setdefault(b, k)
            for b, sample in enumerate(samples):
                k, n = first.get(b), start + b
                probs = None
                if k is not None and task != "h2dcontact":  # reported as generate mode reports them
                    probs = model.decision_centred(out.vertex_probs[k], inputs["templates"][b]).float().cpu().numpy()
                masks = out.mask_logits[k].float().cpu().numpy() if k is not None else None
                items.append(item_from_prediction(sample, task, probs, masks, k is not None, n < keep, inputs["templates"][b]))
    return items


def baseline_items(args, dataset, baseline, indices: list[int]) -> list[EvalItem]:
    task = getattr(dataset, "task", "")
    return [item_from_prediction(s, task, probs, masks, found)
            for s, probs, masks, found in baseline.predict(dataset, indices, batch_size=args.batch_size)]


def gather(items: list) -> list:
    if world_size() == 1 or not torch.distributed.is_initialized():
        return items
    everything = [None] * world_size()
    torch.distributed.all_gather_object(everything, items)
    return [x for part in everything for x in part]


def write_qualitative(items: list[EvalItem], output_dir: Path, threshold: float, limit: int) -> None:
    """Photo | prediction (red) | ground truth (green): on the photo for 2D, on the 2×2 views for 3D."""
    for n, item in enumerate(items[:limit]):
        if item.task == "h2dcontact":
            panel = photo_panel(read_image(Path(item.image_path)), item.pred, item.gt, threshold)
        elif item.mask_logits is not None and item.overlays is not None:
            gt = None if item.gt_masks is None else item.gt_masks >= 0.5
            panel = qualitative_panel(read_image(Path(item.image_path)), item.overlays, item.mask_logits > 0, gt, item.valid)
        else:
            continue
        cv2.imwrite(str(output_dir / f"qualitative_{n:02d}.jpg"), panel[..., ::-1])


def evaluate_dataset(args, method: Method, dataset_name: str, output_dir: Path | None) -> dict:
    """Predict, score and write the report of one dataset."""
    dataset = build_eval_dataset(dataset_name, args, method)
    task = getattr(dataset, "task", "")
    if (task == "h2dcontact") != bool(getattr(method.config, "contact_2d", False) or args.baseline == "prior2d"):
        raise SystemExit(f"{dataset_name} ({task}) does not fit {method.name}: 2D datasets (masks on the photo, e.g. "
                         "synthcontact_h2dcontact) need a 2D model or the prior2d baseline, 3D datasets a 3D method")
    count = len(dataset) if args.max_samples is None else min(args.max_samples, len(dataset))
    indices = _shard(list(range(count)))
    keep = args.qualitative if is_main_process() else 0
    if method.model is not None:
        items = model_items(args, dataset, method.model, method.tokenizer, indices, keep)
    else:
        items = baseline_items(args, dataset, method.baseline, indices)
    items = gather(items)
    if not is_main_process():
        return {}
    geodesic = None
    if task == "hcontact" and method.human_template is not None:
        geodesic = geodesic_for(args, method.human_template.num_vertices, method.config.human_template)
    report = task_report(items, task, geodesic=geodesic, scale=100.0, kind=args.metrics, threshold=args.threshold)
    unit = "pixels" if task == "h2dcontact" else args.metrics if task == "hcontact" else task
    report.update(method=method.name, dataset=dataset_name, split=args.split, mode=args.mode,
                  title=f"{method.name} on {dataset_name}/{args.split} ({args.mode}, {unit})")
    output_dir = output_dir or REPO_ROOT / "runs" / f"eval_{method.name}" / f"{dataset_name}_{args.split}"
    paths = write_report(report, output_dir)
    write_qualitative(items, output_dir, args.threshold, args.qualitative)
    print(summary_line(report))
    warning = collapse_warning(report["diversity"], report["title"])
    if warning:
        warnings.warn(warning, stacklevel=2)
    print(f"wrote {paths['json']}")
    return report


def summary_line(report: dict) -> str:
    m = report["semantic"]["overall"]
    diversity = report["diversity"].get("prediction", {})
    tail = (f" | {report['num_samples']} samples, seg rate {report['seg_rate']:.2f}"
            + (f", mean pairwise IoU {diversity['mean_pairwise_iou']:.3f}" if diversity else ""))
    if report["kind"] == "pixels":
        return (f"{report['title']}: pixel F1 {m['f1']:.3f} P {m['precision']:.3f} R {m['recall']:.3f} "
                f"gIoU {m['giou']:.3f} cIoU {m['ciou']:.3f}" + tail)
    if report["kind"] == "object_contact":
        return (f"{report['title']}: object F1 {m['f1']:.3f} P {m['precision']:.3f} R {m['recall']:.3f} "
                f"(DECO rules F1 {m['deco_f1']:.3f})" + tail)
    if report["kind"] == "affordance":
        return (f"{report['title']}: SIM {m['sim']:.3f} MAE {m['mae']:.3f} AUC {100 * m['auc']:.2f} "
                f"aIoU {100 * m['aiou']:.2f}" + tail)
    name, value = headline(report)
    return (f"{report['title']}: semantic {name.upper()} {value:.3f} P {m['precision']:.3f} R {m['recall']:.3f}"
            + (f" FP-geo {m['fp_geo']:.2f} cm" if "fp_geo" in m else "") + f" | binary F1 {report['binary']['f1']:.3f}"
            + tail)


def main(argv: list[str] | None = None) -> dict:
    """Evaluate; returns the report (with several datasets: ``{dataset: report}``)."""
    args = parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    if world_size() > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    method = load_method(args, device)
    several = len(args.dataset) > 1
    reports = {}
    for name in args.dataset:
        output_dir = args.output_dir / f"{name}_{args.split}" if several and args.output_dir else args.output_dir
        reports[name] = evaluate_dataset(args, method, name, output_dir)
    return reports if several else reports[args.dataset[0]]


if __name__ == "__main__":
    main()
