"""Saving and loading a complete InteractVLM model directory.

A model directory holds everything evaluation and the demo need, so nothing is looked up elsewhere:

* ``config.json`` + ``model.safetensors`` (``save_pretrained``), the tokenizer files;
* ``templates/<key>/`` — the template folder(s) of the fixed SAM inputs (renders + lifting maps, see
  ``utils.geometry.template_views``), ``human`` for the body;
* ``view_embeddings/`` — the SAM embeddings of those renders, so hcontact inference never runs the SAM encoder.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from model.config import InteractVLMConfig
from model.interactvlm import InteractVLMForCausalLM
from model.sam import ViewEmbeddingCache
from model.tokenizer import token_ids_for_config
from model.view_templates import ViewTemplate

TEMPLATE_DIR, EMBEDDING_DIR = "templates", "view_embeddings"
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


def save_interactvlm(model: InteractVLMForCausalLM, tokenizer: PreTrainedTokenizerBase, output_dir: str | Path) -> Path:
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    for key, template in model.templates.items():
        if template.source is None:
            raise ValueError(f"template {key!r} was not loaded from a folder; cannot ship it with the model")
        target = output_dir / TEMPLATE_DIR / key
        if Path(template.source).resolve() != target.resolve():
            shutil.copytree(template.source, target, dirs_exist_ok=True)
        model.view_embeddings(template)  # make sure the cache holds it
    model.view_cache.save_to(output_dir / EMBEDDING_DIR)
    return output_dir


def _quantization_config(load_in_8bit: bool, load_in_4bit: bool):
    if not (load_in_8bit or load_in_4bit):
        return None
    if importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available():
        raise RuntimeError("8-bit / 4-bit loading needs a CUDA GPU and bitsandbytes (`pip install -r requirements-gpu.txt`); "
                           "on a CPU load in float32 or bfloat16 instead")
    from transformers import BitsAndBytesConfig

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
) -> tuple[InteractVLMForCausalLM, PreTrainedTokenizerBase]:
    """Model + tokenizer + templates + embedding cache from a model directory (ours or a converted official one)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no config.json); see the README's model zoo")
    config = InteractVLMConfig.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = token_ids_for_config(tokenizer)
    image_id = ids.pop("image_token_index")
    mismatched = {k: (getattr(config, k), v) for k, v in ids.items() if getattr(config, k) != v}
    if config.vlm_config.image_token_index != image_id:
        mismatched["image_token_index"] = (config.vlm_config.image_token_index, image_id)
    if mismatched:
        raise ValueError(f"{model_dir}: tokenizer and config disagree on special-token ids (config, tokenizer): {mismatched}")
    quantization = _quantization_config(load_in_8bit, load_in_4bit)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": device})
    model = InteractVLMForCausalLM.from_pretrained(model_dir, config=config, **kwargs)
    if quantization is None:
        model.to(device)
    model.eval()
    model.view_cache = ViewEmbeddingCache(model_dir / EMBEDDING_DIR)
    templates = model_dir / TEMPLATE_DIR
    if (templates / "human").is_dir():
        model.add_template("human", ViewTemplate.from_folder(
            templates / "human", config.human_view_set, config.mask_size, config.sam_image_size, config.human_lift_mode,
            name="human"))
    return model, tokenizer
