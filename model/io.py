"""Saving and loading a complete InteractVLM model directory.

A model directory holds everything evaluation and the demo need, so nothing is looked up elsewhere:

* ``config.json`` + ``model.safetensors`` (``save_pretrained``), the tokenizer files;
* ``templates/<key>/`` — the template folder(s) of the fixed SAM inputs (renders + lifting maps, see
  ``utils.geometry.template_views``), ``human`` for the body;
* ``view_embeddings/`` — the SAM embeddings of those renders, so hcontact inference never runs the SAM encoder. They
  are read from there but never written there while a model is used: new embeddings (another dtype, object renders)
  go to the user cache folder (``utils.paths.default_cache_dir() / "view_embeddings"``). Writing them into the model
  directory is the explicit export :func:`write_view_embeddings` (``python -m model.io --refresh-view-embeddings DIR``).

A directory that cannot be loaded (missing or invalid ``config.json``, truncated safetensors, only a pickle
checkpoint, broken tokenizer files) raises :class:`ModelDirError`, one line naming the file and what to do.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoTokenizer, BitsAndBytesConfig, PreTrainedTokenizerBase

from model.config import InteractVLMConfig
from model.interactvlm import InteractVLMForCausalLM
from model.sam import ViewEmbeddingCache, encoder_fingerprint
from model.tokenizer import token_ids_for_config
from model.view_templates import ViewTemplate
from utils.paths import default_cache_dir

TEMPLATE_DIR, EMBEDDING_DIR = "templates", "view_embeddings"
TRAINING_OBJECTS_FILE = "training_objects.json"  # the object names seen in training (the demo's vocabulary note)
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "model.ckpt")
# kept in full precision when quantising: small, precision-sensitive, or not language-model layers
# (transformers matches a pattern against the start or the end of a module path, so give full prefixes)
QUANTIZATION_SKIP = ["sam", "vlm.model.vision_tower", "vlm.model.multi_modal_projector", "text_hidden_fcs",
                     "cam_pose_encoder", "attention_splitter", "vlm.lm_head"]


def attach_tokenizer(config: InteractVLMConfig, tokenizer: PreTrainedTokenizerBase) -> None:
    """Write the tokenizer's special-token ids into the config (adding missing tokens to the tokenizer)."""
    ids = token_ids_for_config(tokenizer)
    config.vlm_config.image_token_index = ids.pop("image_token_index")
    for key, value in ids.items():
        setattr(config, key, value)
    if len(tokenizer) > config.vlm_config.text_config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the language model's vocabulary is "
                         f"{config.vlm_config.text_config.vocab_size}; resize the embeddings first")


class ModelDirError(ValueError):
    """A model directory that cannot be loaded; the message names the file, what was expected and what to do."""


class ModelDirNotFound(ModelDirError, FileNotFoundError):
    """No model directory (or no config.json) at the given path."""


def default_view_cache_dir() -> Path:
    """Where new view embeddings are cached: the user cache folder, never a model directory."""
    return default_cache_dir() / EMBEDDING_DIR


def save_interactvlm(model: InteractVLMForCausalLM, tokenizer: PreTrainedTokenizerBase, output_dir: str | Path,
                     training_objects: list[str] | None = None) -> Path:
    """A complete model directory; ``training_objects`` (object names seen in training) is recorded when given."""
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    for key, template in model.templates.items():
        if template.source is None:
            raise ValueError(f"template {key!r} was not loaded from a folder; cannot ship it with the model")
        target = output_dir / TEMPLATE_DIR / key
        if Path(template.source).resolve() != target.resolve():
            shutil.copytree(template.source, target, dirs_exist_ok=True)
    write_view_embeddings(model, output_dir)
    if training_objects is not None:
        write_training_objects(output_dir, training_objects)
    return output_dir


def write_view_embeddings(model: InteractVLMForCausalLM, model_dir: str | Path) -> list[Path]:
    """(Re)write ``<model_dir>/view_embeddings/`` with the embeddings of the model's templates under the current exact
    cache key, removing the entries it held before (only ``*.safetensors`` files there), so the shipped cache hits on
    a fresh clone. The one function that writes embeddings into a model directory."""
    folder = Path(model_dir) / EMBEDDING_DIR
    model.invalidate_view_cache()  # the weights may have changed in place (training): fingerprint them afresh
    fingerprint = encoder_fingerprint(model.sam)
    keys = []
    for template in model.templates.values():
        model.view_embeddings(template)  # computed (or read) under the current key
        keys.append(model.view_cache.key(template.pixel_values, fingerprint))
    keep = {f"{k}.safetensors" for k in keys}
    if folder.is_dir():
        for old in folder.glob("*.safetensors"):
            if old.name not in keep:
                old.unlink()
    return model.view_cache.save_to(folder, keys) if keys else []


def refresh_view_embeddings(model_dir: str | Path) -> list[Path]:
    """Load a model directory and rewrite its shipped view embeddings (after a cache-key change or a re-export)."""
    model, _ = load_interactvlm(model_dir, cache_dir=None)
    return write_view_embeddings(model, model_dir)


def write_training_objects(model_dir: str | Path, objects: list[str]) -> Path:
    path = Path(model_dir) / TRAINING_OBJECTS_FILE
    names = sorted({str(o).strip().lower() for o in objects if str(o).strip()})
    path.write_text(json.dumps({"objects": names}, indent=1) + "\n")
    return path


def read_training_objects(model_dir: str | Path) -> list[str] | None:
    """The object names a model was trained on (``training_objects.json``, else ``training_config.json``'s
    ``training_objects``), or ``None`` when the directory does not record them."""
    model_dir = Path(model_dir)
    for name, field in ((TRAINING_OBJECTS_FILE, "objects"), ("training_config.json", "training_objects")):
        path = model_dir / name
        if not path.is_file():
            continue
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get(field)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v.strip().lower() for v in value]
    return None


def _check_config_file(model_dir: Path) -> None:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelDirNotFound(f"{model_dir} is not a model directory (no config.json); see the README's model zoo")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelDirError(f"{path} is not valid JSON ({err}); re-download or re-export the model") from err
    except OSError as err:
        raise ModelDirError(f"cannot read {path}: {err.strerror or err}") from err
    if not isinstance(data, dict):
        raise ModelDirError(f"{path} must hold a JSON object (the model config), got a {type(data).__name__}")
    if data.get("model_type") != InteractVLMConfig.model_type:
        raise ModelDirError(f"{path} is not an InteractVLM config (model_type {data.get('model_type')!r}, expected "
                            f"{InteractVLMConfig.model_type!r}); official checkpoints are converted with "
                            "`python -m model.convert_official`")


def _check_weight_files(model_dir: Path) -> None:
    """Weights must be safetensors with a complete, readable header; pickle checkpoints are refused (a pickle can run
    code when it is loaded)."""
    single, index = model_dir / "model.safetensors", model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise ModelDirError(f"{index} is not a valid safetensors index ({type(err).__name__}: {err})") from err
        files = [model_dir / s for s in shards]
    elif single.is_file():
        files = [single]
    else:
        pickles = [n for n in PICKLE_WEIGHTS if (model_dir / n).is_file()]
        if pickles:
            raise ModelDirError(f"{model_dir} holds only a pickle checkpoint ({pickles[0]}), which is never loaded here "
                                "(unpickling can run code); official checkpoints are converted to safetensors with "
                                "`python -m model.convert_official`")
        raise ModelDirError(f"{model_dir} has no weights (model.safetensors); re-download or re-export the model")
    for path in files:
        if not path.is_file():
            raise ModelDirError(f"{path} is missing (listed in {index.name}); re-download the model")
        try:  # safe_open checks the header and that the data section covers every tensor (truncation)
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError, ValueError) as err:
            raise ModelDirError(f"{path} is not a readable safetensors file ({err}); it may be truncated or damaged: "
                                "re-download or re-export the model") from err


def check_model_dir(model_dir: str | Path) -> InteractVLMConfig:
    """Validate a model directory before loading anything heavy; returns its config or raises ModelDirError."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirNotFound(f"model directory {model_dir} not found" if not model_dir.exists()
                               else f"{model_dir} is a file, not a model directory")
    _check_config_file(model_dir)
    try:
        config = InteractVLMConfig.from_pretrained(model_dir)
    except (OSError, TypeError, ValueError, KeyError, AttributeError) as err:
        raise ModelDirError(f"{model_dir / 'config.json'} is not a usable InteractVLM config "
                            f"({type(err).__name__}: {err})") from err
    _check_weight_files(model_dir)
    return config


def _quantization_config(load_in_8bit: bool, load_in_4bit: bool):
    if not (load_in_8bit or load_in_4bit):
        return None
    if importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available():
        raise RuntimeError("8-bit / 4-bit loading needs a CUDA GPU and bitsandbytes (`pip install -r requirements-gpu.txt`); "
                           "on a CPU load in float32 or bfloat16 instead")
    if load_in_4bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True, llm_int8_skip_modules=QUANTIZATION_SKIP)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=QUANTIZATION_SKIP)


def load_interactvlm(
    model_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    load_in_8bit: bool = False,
    load_in_4bit: bool = False,
    cache_dir: str | Path | None | bool = True,
) -> tuple[InteractVLMForCausalLM, PreTrainedTokenizerBase]:
    """Model + tokenizer + templates + embedding cache from a model directory (ours or a converted official one).

    ``cache_dir``: where view embeddings that are not shipped with the model are cached (``True``: the user cache
    folder, :func:`default_view_cache_dir`; ``None``/``False``: memory only). The model's own ``view_embeddings/``
    is only read. Raises :class:`ModelDirError` for a directory that cannot be loaded.
    """
    model_dir = Path(model_dir)
    config = check_model_dir(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ModelDirError(f"{model_dir}: the tokenizer files (tokenizer.json, tokenizer_config.json) cannot be "
                            f"loaded ({type(err).__name__}: {err}); re-download or re-export the model") from err
    ids = token_ids_for_config(tokenizer)
    image_id = ids.pop("image_token_index")
    mismatched = {k: (getattr(config, k), v) for k, v in ids.items() if getattr(config, k) != v}
    if config.vlm_config.image_token_index != image_id:
        mismatched["image_token_index"] = (config.vlm_config.image_token_index, image_id)
    if mismatched:
        raise ModelDirError(f"{model_dir}: tokenizer and config disagree on special-token ids (config, tokenizer): "
                            f"{mismatched}")
    quantization = _quantization_config(load_in_8bit, load_in_4bit)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": device})
    try:
        model = InteractVLMForCausalLM.from_pretrained(model_dir, config=config, **kwargs)
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelDirError(f"cannot load the weights of {model_dir} ({type(err).__name__}: {err}); re-download or "
                            "re-export the model") from err
    if quantization is None:
        model.to(device)
    model.eval()
    if cache_dir is True:
        cache_dir = default_view_cache_dir()
    model.view_cache = ViewEmbeddingCache(cache_dir or None, read_dirs=[model_dir / EMBEDDING_DIR])
    templates = model_dir / TEMPLATE_DIR
    if (templates / "human").is_dir():
        try:
            template = ViewTemplate.from_folder(templates / "human", config.human_view_set, config.mask_size,
                                                config.sam_image_size, config.human_lift_mode, name="human")
        except (OSError, ValueError, KeyError) as err:
            raise ModelDirError(f"the human template {templates / 'human'} cannot be loaded ({type(err).__name__}: "
                                f"{err}); re-download or re-export the model") from err
        model.add_template("human", template)
    return model, tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Model-directory maintenance.")
    parser.add_argument("--refresh-view-embeddings", type=Path, metavar="MODEL_DIR", required=True,
                        help="rewrite MODEL_DIR/view_embeddings under the current exact cache key")
    args = parser.parse_args(argv)
    try:
        paths = refresh_view_embeddings(args.refresh_view_embeddings)
    except ModelDirError as err:
        print(f"error: {err}")
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
