"""Training run → release model directory: ZeRO shards → fp32 state dict → LoRA merged → ``trained_models/<name>``.

    python -m model.prepare_weights --run-dir runs/interactvlm-tiny-synthcontact --name interactvlm-tiny-synthcontact

Everything evaluation and the demo need lands in the output directory (config with the token ids, weights in
safetensors, tokenizer, human template, view embeddings) plus ``training_config.json``, the run's recipe — the file
the original's evaluation required but no script wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from utils.paths import REPO_ROOT


def prepare(run_dir: Path, output_dir: Path, tag: str | None = None, dataset_dir: Path | None = None) -> Path:
    from utils.distributed import setup_environment

    setup_environment(prefer_cpu=True)
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from model.io import save_interactvlm
    from model.lora import apply_lora, merge_lora
    from utils.recipes import Recipe, DataSource
    from utils.training import build_model

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
    import torch

    tag = tag or (ckpt / "latest").read_text().strip()
    module_state = torch.load(ckpt / tag / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)["module"]
    state = {**module_state, **get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=tag)}
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if unexpected or [k for k in missing if "lora_" in k or any(p in k for p in ("mask_decoder", "text_hidden_fcs"))]:
        raise RuntimeError(f"checkpoint does not match the recipe's model: missing {missing[:5]}…, unexpected {unexpected[:5]}…")
    model = merge_lora(model).eval()
    save_interactvlm(model, tokenizer, output_dir)
    (output_dir / "training_config.json").write_text(json.dumps(recipe.to_dict(), indent=1, default=str))
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--name", required=True, help="model name: writes trained_models/<name>")
    parser.add_argument("--tag", default=None, help="checkpoint tag (default: latest)")
    parser.add_argument("--output-root", type=Path, default=REPO_ROOT / "trained_models")
    parser.add_argument("--dataset-dir", type=Path, default=REPO_ROOT / "data")
    args = parser.parse_args(argv)
    out = prepare(args.run_dir, args.output_root / args.name, args.tag, args.dataset_dir)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
