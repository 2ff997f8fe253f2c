"""Reading the files of a released checkpoint folder: weight shards (``.bin`` / ``.safetensors``, sharded with an
index or single), ``config.json`` with the training arguments, the tokenizer, and a separate CLIP folder.

The released folders are what the original's ``merge_lora_weights_and_save_hf_model.py`` writes with
``save_pretrained``; the merge drops every CLIP key, so CLIP usually comes from an ``openai/clip-vit-large-patch14``
folder of its own.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, PreTrainedConfig, PreTrainedTokenizerBase

from model.convert.errors import ConversionError, list_keys, natural_key
from model.convert.keys import CLIP_IGNORED, CLIP_OFFICIAL
from model.tokenizer import LisaTokenizer


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ConversionError(f"{path} is not a flat state dict of tensors")
    return data


def _read_shards(directory: Path, index_path: Path) -> dict[str, torch.Tensor]:
    weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values()), key=natural_key):
        if not (directory / shard).is_file():
            raise ConversionError(f"{index_path} lists shard {shard}, which is missing")
        for key, tensor in _read_weight_file(directory / shard).items():
            if key in state:
                raise ConversionError(f"key {key} appears in two shards")
            state[key] = tensor
    absent = set(weight_map) - set(state)
    if absent:
        raise ConversionError(f"{index_path} lists keys missing from the shards:{list_keys(absent)}")
    return state


def load_weights(directory: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of a HF checkpoint directory (sharded or single file, safetensors or torch pickles) and the
    layout found."""
    directory = Path(directory)
    for index_name, kind in (("model.safetensors.index.json", "safetensors shards"),
                             ("pytorch_model.bin.index.json", "torch shards")):
        if (directory / index_name).is_file():
            return _read_shards(directory, directory / index_name), kind
    for name, kind in (("model.safetensors", "safetensors"), ("pytorch_model.bin", "torch pickle")):
        if (directory / name).is_file():
            return _read_weight_file(directory / name), kind
    raise ConversionError(f"{directory}: no weights found (model.safetensors[.index.json] or pytorch_model.bin[.index.json])")


def read_official_config(directory: str | Path) -> dict:
    """``config.json`` with the training arguments of ``pretrained_config.json`` (if shipped) underneath."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ConversionError(f"{directory} has no config.json; is it a Hugging Face checkpoint directory?")
    merged = {}
    if (directory / "pretrained_config.json").is_file():
        merged.update(json.loads((directory / "pretrained_config.json").read_text()))
    merged.update(json.loads((directory / "config.json").read_text()))
    return merged


def load_clip_vision(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Vision-tower tensors under the official names + the vision config dict, from an HF CLIP directory
    (``CLIPModel``: ``vision_model.*``, text side ignored; or ``CLIPVisionModel``, with or without ``vision_model.``)."""
    directory = Path(directory)
    state, _ = load_weights(directory)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    vision_config = config.get("vision_config") or config.get("vision_config_dict") or (
        config if config.get("model_type") in ("clip_vision_model", None) else {})
    out = {}
    for key, tensor in state.items():
        if any(p.match(key) for p in CLIP_IGNORED):
            continue
        out[CLIP_OFFICIAL + key.removeprefix("vision_model.")] = tensor
    if not out:
        raise ConversionError(f"{directory} holds no CLIP vision-tower weights")
    return out, dict(vision_config)


def load_checkpoint_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer as the original loads it: a sentencepiece ``tokenizer.model`` (every LISA /
    InteractVLM release) becomes a :class:`LisaTokenizer` (transformers 4.31's slow LlamaTokenizer, id for id);
    anything else opens with ``AutoTokenizer``."""
    if (folder / "tokenizer.model").is_file():
        if importlib.util.find_spec("sentencepiece") is None:
            raise ConversionError(f"{folder / 'tokenizer.model'} is a sentencepiece tokenizer and the sentencepiece "
                                  "package is missing: `pip install -r requirements.txt` (or `pip install sentencepiece`)")
        try:
            return LisaTokenizer.from_pretrained(folder)
        except Exception as err:  # noqa: BLE001 - re-raised with the path
            raise ConversionError(f"cannot load the sentencepiece tokenizer in {folder} ({err}); pass --tokenizer DIR "
                                  "with the checkpoint's tokenizer files") from err
    try:
        # an empty config: the checkpoint's config.json is a LlavaLlama one, not a transformers model config
        return AutoTokenizer.from_pretrained(folder, config=PreTrainedConfig())
    except Exception as err:  # noqa: BLE001 - re-raised with the path and a hint
        raise ConversionError(f"cannot load the tokenizer of {folder} ({err}); pass --tokenizer DIR") from err
