"""Train InteractVLM with DeepSpeed ZeRO-2 (bf16 on GPUs; fp32 on CPU with DeepSpeed's CPU accelerator + gloo).

    python train.py --recipe synth-tiny                          # one CPU process
    deepspeed train.py --recipe hcontact-damon-fix               # all local GPUs (multi-node: --hostfile)
    python train.py --recipe synth-tiny --resume auto            # continue the run in --output-dir

Recipes are in ``training/recipes.py``; ``--set key=value`` overrides any recipe field. Gradient accumulation, clipping
(1.0), AdamW (0.9, 0.95) and WarmupDecayLR are DeepSpeed's own; a NaN/Inf loss contributes a zero gradient and is
counted. Every ``--save-every`` optimizer steps and at each epoch end a ZeRO checkpoint is written with the exact
data position and RNG states, so a killed run resumed with ``--resume auto`` ends with the same weights.
Validation runs in ``generate`` mode (the model answers on its own, as at test time) and the best model by the mean
of the validation sets' scores (semantic F1 for human contact, see ``training.validation.validate``) is exported as a
complete model directory (LoRA merged) under ``<output-dir>/best``, the final one under ``<output-dir>/last``.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from training.data import build_training_data, build_validation_data
from model.lora import apply_lora, freeze, merge_lora, trainable_summary, unmatched_prefixes
from training.sam_pretrain import load_pretrained_sam_encoder
from training.vision_pretrain import load_pretrained_vision
from training.batches import model_inputs, sample_losses
from training.build import build_model, repo_path
from training.calibration import apply_thresholds, reset_decision_thresholds
from training.export import export_model, training_vocabulary
from training.validation import validate
from utils.distributed import is_main_process, rank, setup_environment, world_size
from utils.paths import REPO_ROOT
from training.recipes import Recipe, get_recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, help="named configuration, see training/recipes.py")
    parser.add_argument("--output-dir", type=Path, default=None, help="run folder (default runs/<exp_name>)")
    parser.add_argument("--dataset-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--resume", default=None, help="'auto' (latest checkpoint of the run, if any) or a checkpoint dir")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field, e.g. --set epochs=2 --set lr=1e-4")
    parser.add_argument("--save-every", type=int, default=50, help="optimizer steps between resumable checkpoints")
    parser.add_argument("--keep-checkpoints", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (testing)")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (off by default)")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    return parser.parse_args(argv)


def apply_overrides(recipe: Recipe, overrides: list[str]) -> Recipe:
    values = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if sep and key.startswith("model_overrides."):  # one model field: --set model_overrides.hC_loss_weight=10
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw
            values["model_overrides"] = {**values.get("model_overrides", recipe.model_overrides),
                                         key.split(".", 1)[1]: value}
            continue
        if not sep or not hasattr(recipe, key):
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(recipe.to_dict())}")
        try:
            values[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            values[key] = raw
    return recipe.with_overrides(**values)


def deepspeed_config(recipe: Recipe, total_steps: int, device: str, group_lrs: list[float] | None = None) -> dict:
    bf16 = recipe.precision == "bf16" and device == "cuda"
    return {
        "train_micro_batch_size_per_gpu": recipe.batch_size,
        "gradient_accumulation_steps": recipe.grad_accumulation_steps,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": recipe.precision == "fp16" and device == "cuda"},
        "zero_optimization": {"stage": 2, "contiguous_gradients": True, "overlap_comm": device == "cuda",
                              "reduce_scatter": True, "reduce_bucket_size": 5e8, "allgather_bucket_size": 5e8},
        "zero_allow_untested_optimizer": True,
        "scheduler": {"type": "WarmupDecayLR", "params": {
            "total_num_steps": max(total_steps, recipe.warmup_steps + 1), "warmup_min_lr": 0.0,
            "warmup_max_lr": group_lrs or recipe.lr, "warmup_num_steps": recipe.warmup_steps, "warmup_type": "linear"}},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def param_groups(model: torch.nn.Module, recipe: Recipe) -> list[dict]:
    """AdamW parameter groups: one per ``recipe.lr_scale`` prefix that matches (lr = recipe.lr × scale), the rest at
    ``recipe.lr``. The scheduler warms each group up to its own peak."""
    scales = list(recipe.lr_scale.items())
    buckets: dict[float, list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        scale = next((float(s) for prefix, s in scales if name.startswith(prefix)), 1.0)
        buckets.setdefault(scale, []).append(param)
    unused = unmatched_prefixes(model, [prefix for prefix, _ in scales])
    if unused:
        raise ValueError(f"lr_scale prefixes {unused} match no parameter of the model")
    return [{"params": params, "lr": recipe.lr * scale} for scale, params in sorted(buckets.items())]


class EpochSampler(torch.utils.data.Sampler):
    """Indices ``start, start+world, …`` of one epoch for this rank: the data order is a pure function of
    (seed, epoch, index) inside the datasets, so a position is all a resume needs."""

    def __init__(self, length: int, start: int = 0) -> None:
        self.indices = list(range(start * world_size() + rank(), length, world_size()))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _build_model_and_data(recipe: Recipe, args: argparse.Namespace, device: str) -> tuple:
    """The (LoRA-wrapped) model, its tokenizer and parameter counts, the training data and the validation sets."""
    model, tokenizer = build_model(recipe, device, args.dataset_dir)
    for checkpoint, load, what in ((recipe.pretrained_vision, load_pretrained_vision, "vision tower"),
                                   (recipe.pretrained_sam_encoder, load_pretrained_sam_encoder, "SAM image encoder")):
        if checkpoint:
            print(f"{what}: {load(model, repo_path(checkpoint))} tensors from {checkpoint}")
    model = apply_lora(model, use_lora=recipe.use_lora)
    if recipe.frozen:
        print(f"frozen: {freeze(model, recipe.frozen)} tensors under {recipe.frozen}")
    if hasattr(model, "enable_input_require_grads") and recipe.use_lora:
        model.enable_input_require_grads()
    counts = trainable_summary(model)
    human_valid = None if model.config.contact_2d else model.template("human").valid.cpu().numpy()
    train_data, collator = build_training_data(recipe, args.dataset_dir, tokenizer, model.config, human_valid)
    vocabulary = training_vocabulary(train_data)  # written with every export (the demo's out-of-vocabulary note)
    val_sets = [] if args.no_eval else build_validation_data(recipe, args.dataset_dir, model.config, human_valid)
    return model, tokenizer, counts, train_data, collator, vocabulary, val_sets


def _init_engine(deepspeed, model: torch.nn.Module, recipe: Recipe, total_steps: int, device: str) -> tuple:
    """The DeepSpeed engine and its LR scheduler over AdamW with one parameter group per ``lr_scale`` prefix."""
    groups = param_groups(model, recipe)
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr, betas=(0.9, 0.95), weight_decay=0.0,
                                  fused=device == "cuda")
    deepspeed.init_distributed(dist_backend="nccl" if device == "cuda" else "gloo")
    engine, _, _, scheduler = deepspeed.initialize(model=model, optimizer=optimizer,
                                                   config=deepspeed_config(recipe, total_steps, device,
                                                                           [g["lr"] for g in groups]))
    return engine, scheduler


def _maybe_resume(engine, args: argparse.Namespace, ckpt_dir: Path, state: dict) -> None:
    """Load the checkpoint ``--resume`` names into the engine, ``state`` and the RNGs (``auto``: only if one exists)."""
    if not args.resume:
        return
    resume_dir = ckpt_dir if args.resume == "auto" else Path(args.resume)
    if (resume_dir / "latest").is_file():
        _, client = engine.load_checkpoint(str(resume_dir))
        state.update({k: client[k] for k in state})
        set_rng_state(client["rng"])
        print(f"resumed from {resume_dir} at epoch {state['epoch']}, micro-step {state['micro_step']}")
    elif args.resume != "auto":
        raise FileNotFoundError(f"--resume {resume_dir}: no DeepSpeed checkpoint there (no 'latest' file)")


def _open_run_logs(output_dir: Path, recipe: Recipe, args: argparse.Namespace, counts: dict, total_steps: int,
                   device: str) -> SummaryWriter | None:
    """On the main process: the run's config.json, a TensorBoard writer (and wandb if asked); None elsewhere."""
    if not is_main_process():
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.json").write_text(json.dumps({"recipe": recipe.to_dict(), "args": {k: str(v) for k, v in vars(args).items()},
                                                        "parameters": counts}, indent=1, default=str))
    writer = SummaryWriter(str(output_dir / "tensorboard"))
    if args.wandb:
        import wandb  # optional dependency, only for --wandb

        wandb.init(project="interactvlm", name=recipe.exp_name, config=recipe.to_dict(), dir=str(output_dir))
    print(f"training {recipe.exp_name}: {counts['trainable']:,} of {counts['total']:,} parameters trainable, "
          f"{total_steps} optimizer steps, {world_size()} process(es) on {device}")
    return writer


def save_resumable(engine, state: dict, ckpt_dir: Path, keep_checkpoints: int) -> None:
    """A ZeRO checkpoint with the data position and RNG states; only the newest ``keep_checkpoints`` are kept."""
    client = dict(state, rng=rng_state())
    tag = f"global_step{engine.global_steps}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client)
    if is_main_process():
        tags = sorted((p for p in ckpt_dir.glob("global_step*") if p.is_dir()), key=lambda p: int(p.name[11:]))
        for old in tags[: -keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)


def _epoch_progress(train_data, collator, recipe: Recipe, args: argparse.Namespace, state: dict,
                    micro_per_epoch: int) -> tqdm:
    """The rest of the current epoch's batches (from ``state['micro_step']``), wrapped in a progress bar."""
    train_data.set_epoch(state["epoch"])
    loader = torch.utils.data.DataLoader(train_data, batch_size=recipe.batch_size, collate_fn=collator,
                                         sampler=EpochSampler(micro_per_epoch * recipe.batch_size * world_size(),
                                                              state["micro_step"] * recipe.batch_size),
                                         num_workers=args.workers)
    return tqdm(loader, desc=f"epoch {state['epoch']}", initial=state["micro_step"], total=micro_per_epoch,
                disable=not is_main_process(), mininterval=5)


def _train_steps(engine, scheduler, progress: tqdm, state: dict, writer: SummaryWriter | None,
                 args: argparse.Namespace, micro_per_epoch: int, save: Callable[[], None]) -> bool:
    """Run the epoch's micro-steps; True when ``--max-steps`` was reached (the run stops)."""
    for batch in progress:
        out = engine(**model_inputs(engine.module, batch))
        loss, parts = sample_losses(engine.module, out, batch)
        if not torch.isfinite(loss):
            state["skipped"] += 1
            loss = sum(p.sum() for p in engine.module.parameters() if p.requires_grad) * 0.0  # keeps DeepSpeed's step count
        engine.backward(loss)
        boundary = engine.is_gradient_accumulation_boundary()
        engine.step()
        state["micro_step"] += 1
        if boundary:
            step = engine.global_steps
            if writer is not None:
                for key, value in parts.items():
                    writer.add_scalar(f"train/{key}", value, step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                writer.add_scalar("train/skipped_nonfinite", state["skipped"], step)
                progress.set_postfix(loss=f"{parts['total']:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if args.save_every and step % args.save_every == 0 and state["micro_step"] < micro_per_epoch:
                save()
            if args.max_steps is not None and step >= args.max_steps:
                return True
    return False


def _end_epoch(engine, tokenizer, val_sets: list, recipe: Recipe, state: dict, writer: SummaryWriter | None,
               output_dir: Path, vocabulary, epoch: int, start: float) -> dict:
    """Advance ``state`` to the next epoch, validate and export ``best`` when it improved; returns the epoch record."""
    state["epoch"] += 1
    state["micro_step"] = 0
    record = {"epoch": epoch, "seconds": round(time.time() - start, 1)}
    if val_sets:
        engine.eval()
        scores = validate(engine.module, tokenizer, val_sets, recipe)
        engine.train()
        record.update(scores)
        main_score = scores["selection_score"]  # mean over the validation sets (a joint model has both sides)
        if writer is not None:
            for key, value in scores.items():
                writer.add_scalar(f"val/{key}", value, epoch)
        if main_score > state["best_score"]:
            state["best_score"] = main_score
            if is_main_process():
                config = unwrapped_config(engine.module)
                record["decision_thresholds"] = apply_thresholds(config, scores) if recipe.calibrate_thresholds else {}
                export_model(merge_lora, engine.module, tokenizer, output_dir / "best", recipe,
                             training_objects=vocabulary)
                reset_decision_thresholds(config)  # training goes on at the raw probabilities
                record["saved_best"] = True
    elif is_main_process():
        export_model(merge_lora, engine.module, tokenizer, output_dir / "best", recipe,
                     training_objects=vocabulary)
    return record


def unwrapped_config(module: torch.nn.Module):
    """The InteractVLM config under a peft wrapper (or the module's own)."""
    base = module.get_base_model() if hasattr(module, "get_base_model") else module
    return base.config


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = setup_environment(prefer_cpu=args.cpu)
    import deepspeed  # after setup_environment: it reads DS_ACCELERATOR at import

    recipe = apply_overrides(get_recipe(args.recipe), args.overrides)
    output_dir = args.output_dir or REPO_ROOT / "runs" / recipe.exp_name
    ckpt_dir = output_dir / "ckpt_model"
    seed_everything(recipe.seed)

    model, tokenizer, counts, train_data, collator, vocabulary, val_sets = _build_model_and_data(recipe, args, device)
    total_steps = recipe.epochs * recipe.steps_per_epoch
    engine, scheduler = _init_engine(deepspeed, model, recipe, total_steps, device)

    state = {"epoch": 0, "micro_step": 0, "best_score": -math.inf, "skipped": 0}
    _maybe_resume(engine, args, ckpt_dir, state)
    writer = _open_run_logs(output_dir, recipe, args, counts, total_steps, device)

    micro_per_epoch = recipe.steps_per_epoch * recipe.grad_accumulation_steps
    history = []

    def save() -> None:
        save_resumable(engine, state, ckpt_dir, args.keep_checkpoints)

    engine.train()
    stop = False
    while state["epoch"] < recipe.epochs and not stop:
        epoch = state["epoch"]
        progress = _epoch_progress(train_data, collator, recipe, args, state, micro_per_epoch)
        start = time.time()
        stop = _train_steps(engine, scheduler, progress, state, writer, args, micro_per_epoch, save)
        if stop:
            save()
            break
        record = _end_epoch(engine, tokenizer, val_sets, recipe, state, writer, output_dir, vocabulary, epoch, start)
        history.append(record)
        if is_main_process():
            print(json.dumps(record))
            with open(output_dir / "history.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        save()
    if is_main_process() and not stop:
        export_model(merge_lora, engine.module, tokenizer, output_dir / "last", recipe,
                     training_objects=vocabulary)
    if writer is not None:
        writer.close()
    return {"state": state, "history": history, "output_dir": str(output_dir), "engine": engine}


if __name__ == "__main__":
    main()
