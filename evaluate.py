"""Evaluate a model directory (or a baseline) on a contact dataset.

    python evaluate.py --model-dir trained_models/interactvlm-tiny-synthcontact --dataset synthcontact_hcontact --split test
    python evaluate.py --model-dir DIR --dataset damon_hcontact --split test --metrics interactvlm   # the original's formulas
    python evaluate.py --baseline prior --baseline-path trained_models/baselines/prior_synthcontact.npz ...
    python evaluate.py --model-dir trained_models/interactvlm-tiny-2d-synthcontact --dataset synthcontact_h2dcontact
    deepspeed --num_gpus 4 evaluate.py --model-dir DIR ...                                          # data-parallel

Default mode is ``generate`` (the model writes its own answer, as at test time); ``--mode forward`` feeds the ground
truth answer (LISA-style, optimistic). Writes ``results.json``, ``results.md``, per-object F1 bars, a
precision-recall curve and a few qualitative renders under ``--output-dir``. A 2D model (``h2dcontact``) is scored
on the photo's pixels: DECO's per-image P/R/F1 rules on pixels, gIoU and cIoU.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from utils.distributed import is_main_process, rank, world_size
from utils.paths import REPO_ROOT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="model directory (trained_models/<name>)")
    parser.add_argument("--baseline", choices=["prior", "direct", "prior2d"], default=None,
                        help="evaluate a baseline instead (prior2d: the 2D mask prior, for h2dcontact datasets)")
    parser.add_argument("--baseline-path", type=Path, default=None)
    parser.add_argument("--dataset", default="synthcontact_hcontact", help="reader name, see datasets/registry.py")
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


def geodesic_for(args, num_vertices: int, template_name: str):
    """Matrix in metres (→ reported in cm): ours for the synthetic body, the RICH/DECO file for SMPL."""
    if args.geodesic == "none":
        return None
    if args.geodesic != "auto":
        from utils.geometry.geodesic import load_geodesic_matrix

        return load_geodesic_matrix(args.geodesic, num_vertices)
    if num_vertices == 6890:
        path = args.dataset_dir / "smpl_neutral_geodesic_dist.npy"
        if not path.is_file():
            warnings.warn(f"no geodesic matrix at {path} (ships in the original data.zip): geodesic errors skipped")
            return None
        from utils.geometry.geodesic import load_geodesic_matrix

        return load_geodesic_matrix(path, num_vertices)
    from utils.body_models import canonical_mesh, default_body_model_dir
    from utils.geometry.geodesic import geodesic_matrix

    mesh = canonical_mesh(template_name, default_body_model_dir())
    return geodesic_matrix(mesh.vertices, mesh.faces)


def _shard(indices: list[int]) -> list[int]:
    return indices[rank()::world_size()]


def predict_model(args, dataset, model, tokenizer, indices: list[int]):
    """(sample, vertex probs [N], mask logits [V,M,M]) per index, in generate or forward mode."""
    from utils.training import predict_dataset

    class Subset(torch.utils.data.Dataset):
        name = dataset.name

        def __len__(self):
            return len(indices)

        def __getitem__(self, i):
            return dataset[indices[i]]

    if args.mode == "generate":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pairs = predict_dataset(model, tokenizer, Subset(), batch_size=args.batch_size, progress=is_main_process())
        return [(s, None if p.vertex_probs is None else p.vertex_probs.float().cpu().numpy(),
                 p.mask_logits.float().cpu().numpy(), p.found_seg) for s, p in pairs]
    from datasets.collate import Collator
    from utils.training import model_inputs

    collator = Collator(tokenizer, model.config, training=False)
    results = []
    with torch.no_grad():
        for start in range(0, len(indices), args.batch_size):
            samples = [dataset[i] for i in indices[start: start + args.batch_size]]
            out = model(**model_inputs(model, collator(samples)))
            first = {}
            for k, b in enumerate(out.seg_batch_index.tolist()):
                first.setdefault(b, k)
            for b, sample in enumerate(samples):
                k = first.get(b)
                if sample["vertex_labels"] is None:  # 2D: the mask is the prediction
                    probs = None
                else:
                    probs = out.vertex_probs[k].float().cpu().numpy() if k is not None else np.zeros(len(sample["vertex_labels"]))
                masks = out.mask_logits[k].float().cpu().numpy() if k is not None else None
                results.append((sample, probs, masks, k is not None))
    return results


def gather(items: list) -> list:
    if world_size() == 1 or not torch.distributed.is_initialized():
        return items
    everything = [None] * world_size()
    torch.distributed.all_gather_object(everything, items)
    return [x for part in everything for x in part]


def evaluate_2d(args, model=None, tokenizer=None, baseline=None) -> dict:
    """A 2D model (or the 2D baseline) on a 2D dataset (masks on the photo, aspect kept, longest side ``mask_size``)."""
    import cv2

    from datasets.registry import build_dataset
    from utils.evaluation import photo_contact_report, write_report

    config = model.config if model is not None else None
    mask_size = config.mask_size if config is not None else args.mask_size
    dataset = build_dataset(args.dataset, args.dataset_dir, args.split, mask_size=mask_size, training=False,
                            question_type=config.question_type if config is not None else None)
    if getattr(dataset, "task", "") != "h2dcontact":
        raise SystemExit(f"{args.dataset} is not a 2D dataset (masks on the photo); use e.g. synthcontact_h2dcontact")
    indices = list(range(len(dataset) if args.max_samples is None else min(args.max_samples, len(dataset))))
    if model is not None:
        results = predict_model(args, dataset, model, tokenizer, _shard(indices))
        method = args.model_dir.name
    else:
        results = baseline.predict(dataset, _shard(indices), batch_size=args.batch_size)
        method = f"baseline-{args.baseline}"
    empty = lambda s: np.full(np.shape(s["masks"])[-2:], -np.inf, np.float32)  # noqa: E731 - no seg token: no contact
    rows = gather([(s["image_path"], s["class_name"], m[0] if m is not None else empty(s), s["masks"][0], found, s)
                   for s, _, m, found in results])
    if not is_main_process():
        return {}
    output_dir = args.output_dir or REPO_ROOT / "runs" / f"eval_{method}" / f"{args.dataset}_{args.split}"
    report = photo_contact_report([r[:4] for r in rows], threshold=args.threshold)
    report.update(method=method, title=f"{method} on {args.dataset}/{args.split} ({args.mode}, pixels)", mode=args.mode,
                  seg_rate=float(np.mean([r[4] for r in rows])))
    paths = write_report(report, output_dir)
    for i, (_, _, pred, gt, _, sample) in enumerate(rows[: args.qualitative]):
        panel = photo_panel(sample["image"], pred, gt, args.threshold)
        cv2.imwrite(str(output_dir / f"qualitative_{i:02d}.jpg"), panel[..., ::-1])
    m = report["semantic"]["overall"]
    print(f"{report['title']}: pixel F1 {m['f1']:.3f} P {m['precision']:.3f} R {m['recall']:.3f} gIoU {m['giou']:.3f} "
          f"cIoU {m['ciou']:.3f} | {report['num_samples']} samples, seg rate {report['seg_rate']:.2f}")
    print(f"wrote {paths['json']}")
    return report


def photo_panel(image: np.ndarray, pred_logits: np.ndarray, gt: np.ndarray, threshold: float) -> np.ndarray:
    """Photo | prediction (red) | ground truth (green), at the mask's size."""
    import cv2

    from utils.demo_outputs import photo_overlay
    from utils.evaluation import blend_mask
    from utils.metrics import sigmoid

    height, width = gt.shape
    photo = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    truth = blend_mask(photo, gt == 1, (40, 170, 60), alpha=0.6)
    return np.concatenate([photo, photo_overlay(photo, sigmoid(pred_logits), threshold), truth], axis=1)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if (args.model_dir is None) == (args.baseline is None):
        raise SystemExit("give exactly one of --model-dir or --baseline")
    from datasets.registry import build_dataset
    from utils.evaluation import contact_report, qualitative_panel, write_report

    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    if world_size() > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
        if device == "cuda":
            torch.cuda.set_device(int(__import__("os").environ.get("LOCAL_RANK", 0)))

    model = tokenizer = None
    if args.model_dir is not None:
        from model.io import load_interactvlm

        model, tokenizer = load_interactvlm(args.model_dir, device=device)
        if model.config.contact_2d:
            return evaluate_2d(args, model, tokenizer)
        config, template = model.config, model.template("human")
        method = args.model_dir.name
    else:
        from model.baselines import load_baseline

        baseline = load_baseline(args.baseline, args.baseline_path, device=device)
        if args.baseline == "prior2d":
            return evaluate_2d(args, baseline=baseline)
        config, template = baseline.config, baseline.template
        method = f"baseline-{args.baseline}"
    dataset = build_dataset(args.dataset, args.dataset_dir, args.split, view_set=config.human_view_set,
                            mask_size=config.mask_size, valid_mask=template.valid.cpu().numpy(), training=False,
                            question_type=config.question_type)
    indices = list(range(len(dataset) if args.max_samples is None else min(args.max_samples, len(dataset))))
    if model is not None:
        results = predict_model(args, dataset, model, tokenizer, _shard(indices))
    else:
        results = baseline.predict(dataset, _shard(indices), batch_size=args.batch_size)
    results = gather([(s["image_path"], s["class_name"], p, s["vertex_labels"], m, found, s) for s, p, m, found in results])
    if not is_main_process():
        return {}

    output_dir = args.output_dir or REPO_ROOT / "runs" / f"eval_{method}" / f"{args.dataset}_{args.split}"
    geodesic = geodesic_for(args, template.num_vertices, config.human_template)
    report = contact_report([(r[0], r[1], r[2], r[3]) for r in results], geodesic=geodesic, scale=100.0,
                            kind=args.metrics, threshold=args.threshold)
    report.update(method=method, title=f"{method} on {args.dataset}/{args.split} ({args.mode}, {args.metrics})",
                  mode=args.mode, seg_rate=float(np.mean([r[5] for r in results])))
    paths = write_report(report, output_dir)
    import cv2

    for i, (_, _, _, gt, masks, _, sample) in enumerate(results[: args.qualitative]):
        if masks is None:
            continue
        panel = qualitative_panel(sample["image"], template.overlays, masks > 0, sample["masks"] > 0.5 if sample["masks"] is not None else None,
                                  template.valid.cpu().numpy())
        cv2.imwrite(str(output_dir / f"qualitative_{i:02d}.jpg"), panel[..., ::-1])
    sem, binary = report["semantic"]["overall"], report["binary"]
    print(f"{report['title']}: semantic F1 {sem['f1']:.3f} P {sem['precision']:.3f} R {sem['recall']:.3f}"
          + (f" FP-geo {sem['fp_geo']:.2f} cm" if "fp_geo" in sem else "")
          + f" | binary F1 {binary['f1']:.3f} | {report['num_samples']} samples, seg rate {report['seg_rate']:.2f}")
    print(f"wrote {paths['json']}")
    return report


if __name__ == "__main__":
    main()
