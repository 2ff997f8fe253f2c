"""Training run → release model directory: ZeRO shards → fp32 state dict → LoRA merged → ``trained_models/<name>``.

    python -m training.prepare_weights --run-dir runs/interactvlm-tiny-synthcontact --name interactvlm-tiny-synthcontact

Everything evaluation and the demo need lands in the output directory (config with the token ids, weights in
safetensors, tokenizer, human template, view embeddings) plus ``training_config.json``, the run's recipe — the file
the original's evaluation required but no script wrote.

The checkpoint files are pickles (DeepSpeed's format). Before anything is unpickled, every ``.pt`` file of the tag is
scanned without executing it (``torch.serialization.get_unsafe_globals_in_checkpoint``) and refused when it names any
class or function outside a short list of plain-data types DeepSpeed and train.py write (numpy arrays, DeepSpeed's
ZeRO stage enum, loss scaler and fragment records): a pickle can otherwise run code when it is loaded. The model
states are then read with ``weights_only=True``; DeepSpeed's own ``zero_to_fp32`` (which unpickles its optimizer
shards without restriction) only sees files that passed the scan.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from model.io import TRAINING_OBJECTS_FILE, read_training_objects, save_interactvlm, write_training_objects
from model.lora import apply_lora, merge_lora
from training.build import build_model
from training.export import write_training_config
from utils.distributed import setup_environment
from utils.paths import REPO_ROOT
from training.recipes import DataSource, Recipe


# Non-torch globals a train.py checkpoint may hold: the numpy RNG state (an array) in the client state, and DeepSpeed's
# ZeRO bookkeeping in the optimizer shards. Everything else torch's weights_only loader already accepts.
SAFE_CHECKPOINT_GLOBALS = frozenset({
    "numpy.ndarray", "numpy.dtype", "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar",
    "deepspeed.runtime.zero.config.ZeroStageEnum", "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler", "deepspeed.utils.tensor_fragment.fragment_address",
})


class UnsafeCheckpointError(ValueError):
    """A checkpoint file that names classes or functions a training checkpoint never holds."""


def check_checkpoint_files(tag_dir: Path) -> list[Path]:
    """Scan every ``.pt`` file of a checkpoint tag for pickled globals outside :data:`SAFE_CHECKPOINT_GLOBALS`,
    without unpickling anything; returns the files, or raises :class:`UnsafeCheckpointError` naming the file."""
    files = sorted(tag_dir.glob("*.pt"))
    if not files:
        raise FileNotFoundError(f"no checkpoint files (*.pt) in {tag_dir}")
    for path in files:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception as err:  # noqa: BLE001 - legacy (non-zip) or damaged files cannot be scanned: refuse them
            raise UnsafeCheckpointError(f"{path} cannot be scanned as a torch zip checkpoint ({type(err).__name__}: "
                                        f"{err}); only checkpoints written by train.py are read") from err
        unknown = sorted(n for n in names if n not in SAFE_CHECKPOINT_GLOBALS and not n.startswith("numpy.dtypes."))
        if unknown:
            raise UnsafeCheckpointError(
                f"refusing to load {path}: it holds pickled objects of {', '.join(unknown[:5])}, which a train.py "
                "checkpoint never contains (unpickling can run code); --run-dir must be a training run you made "
                "(for your own run written by another DeepSpeed version: --trust-checkpoint)")
    return files


def _load_module_state(path: Path) -> dict:
    multiarray = getattr(np, "_core", None) or np.core
    allowed = [np.ndarray, np.dtype, multiarray.multiarray._reconstruct]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)["module"]


def prepare(run_dir: Path, output_dir: Path, tag: str | None = None, dataset_dir: Path | None = None,
            trust_checkpoint: bool = False) -> Path:
    setup_environment(prefer_cpu=True)
    # imported here, after setup_environment: deepspeed reads DS_ACCELERATOR when it is first imported
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} missing: is {run_dir} a training run folder (made by train.py)?")
    ckpt = run_dir / "ckpt_model"
    if not (ckpt / "latest").is_file() and tag is None:
        raise FileNotFoundError(f"no DeepSpeed checkpoint in {ckpt} (no 'latest' file)")
    saved = json.loads(config_path.read_text())["recipe"]
    saved["train"] = tuple(DataSource(**s) for s in saved["train"])
    saved["val"] = tuple(DataSource(**s) for s in saved["val"])
    recipe = Recipe(**saved)
    model, tokenizer = build_model(recipe, "cpu", dataset_dir or REPO_ROOT / "data")
    model = apply_lora(model, use_lora=recipe.use_lora)
    # frozen weights (SAM encoder, CLIP, base LM) come from the module states file; the fp32 master copies of the
    # trained ones from the ZeRO optimizer shards
    tag = tag or (ckpt / "latest").read_text().strip()
    if not tag or "/" in tag or tag in (".", ".."):
        raise ValueError(f"{ckpt / 'latest'} names no checkpoint tag ({tag!r})")
    if not trust_checkpoint:
        check_checkpoint_files(ckpt / tag)  # before anything is unpickled
    module_state = _load_module_state(ckpt / tag / "mp_rank_00_model_states.pt")
    state = {**module_state, **get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=tag)}
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if unexpected or [k for k in missing if "lora_" in k or any(p in k for p in ("mask_decoder", "text_hidden_fcs"))]:
        raise RuntimeError(f"checkpoint does not match the recipe's model: missing {missing[:5]}…, unexpected {unexpected[:5]}…")
    model = merge_lora(model).eval()
    save_interactvlm(model, tokenizer, output_dir)
    write_training_config(output_dir, recipe)
    for export in (run_dir / "last", run_dir / "best"):  # the vocabulary train.py recorded with its exports
        objects = read_training_objects(export) if (export / TRAINING_OBJECTS_FILE).is_file() else None
        if objects is not None:
            write_training_objects(output_dir, objects)
            break
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="a training run folder made by train.py (its checkpoint is scanned and refused if it "
                             "holds anything a train.py checkpoint never does; use only runs you made)")
    parser.add_argument("--name", required=True, help="model name: writes trained_models/<name>")
    parser.add_argument("--tag", default=None, help="checkpoint tag (default: latest)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="skip the scan of the checkpoint's pickled objects (only for a run you made yourself whose "
                             "DeepSpeed version writes objects the scan does not know)")
    parser.add_argument("--output-root", type=Path, default=REPO_ROOT / "trained_models")
    parser.add_argument("--dataset-dir", type=Path, default=REPO_ROOT / "data")
    args = parser.parse_args(argv)
    try:
        out = prepare(args.run_dir, args.output_root / args.name, args.tag, args.dataset_dir, args.trust_checkpoint)
    except (UnsafeCheckpointError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
