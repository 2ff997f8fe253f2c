"""Convert a released InteractVLM / LISA Hugging Face checkpoint into one of our model directories.

The released checkpoints are ``save_pretrained`` dumps of the original ``InteractVLMForCausalLM`` /
``LISAForCausalLM`` (a LLaVA-v1 ``LlavaLlamaForCausalLM`` with SAM attached as ``model.visual_model``), written by
``merge_lora_weights_and_save_hf_model.py``: ``config.json`` (LlavaLlama fields plus the training
arguments), sharded weights (``pytorch_model-0000X-of-0000N.bin`` + ``pytorch_model.bin.index.json``, or the
safetensors equivalent, or one file) and the sentencepiece tokenizer. The merge script drops every CLIP key, so CLIP
usually comes from a separate ``openai/clip-vit-large-patch14`` directory (``--clip``).

The key map (official names → ours) is :mod:`model.convert.keys`. Dtypes are kept per tensor by default
(``--dtype auto``): the released merge writes the language model in bf16 and SAM / ``text_hidden_fcs`` in fp32. The
tokenizer (a sentencepiece ``tokenizer.model``) is read as :class:`model.tokenizer.LisaTokenizer`, which reproduces
the original's token ids. Every checkpoint key the key map does not cover raises :class:`ConversionError` naming the
keys, except a few recomputed buffers; after renaming, our model's state-dict keys and shapes are checked strictly,
so a missing SAM or LLaMA tensor is reported by name. The steps live in :mod:`model.convert`; this module is the
command line and the public names.

Example::

    python -m model.convert_official --checkpoint trained_models/interactvlm-3d-hcontact-damon-fix \\
        --clip pretrained/clip-vit-large-patch14 --human-template data/hcontact_vitruvian_mv2 \\
        --output-dir trained_models/ivlm-hcontact-damon-fix
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.config import PRESETS
from model.convert.checkpoint_files import load_checkpoint_tokenizer, load_clip_vision, load_weights, read_official_config
from model.convert.config_inference import infer_sam_config, infer_text_config, infer_vision_config, resize_rows
from model.convert.errors import ConversionError
from model.convert.keys import MappedStateDict, cam_encoder_from_keys, official_to_ours, to_official_state_dict
from model.convert.load import convert_official, load_official
from model.convert.options import DTYPES, ConvertOptions
from model.convert.templates import import_official_template
from utils.body_models import BODY_MODEL_FILES
from utils.geometry.views import VIEW_SETS

__all__ = [
    "ConversionError", "ConvertOptions", "MappedStateDict", "cam_encoder_from_keys", "convert_official",
    "import_official_template", "infer_sam_config", "infer_text_config", "infer_vision_config",
    "load_checkpoint_tokenizer", "load_clip_vision", "load_official", "load_weights", "main", "official_to_ours",
    "read_official_config", "resize_rows", "to_official_state_dict",
]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="official HF checkpoint directory")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--clip", type=Path, default=None, help="HF openai/clip-vit-large-patch14 directory (needed "
                        "when the checkpoint has no vision tower, as the released ones)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory (default: the checkpoint)")
    parser.add_argument("--human-template", type=Path, default=None, help="template folder of the body renders + "
                        "lifting maps (official data/hcontact_vitruvian[_mv2] or preprocess_data.render_views output)")
    parser.add_argument("--view-set", default=None, help=f"human view set, one of {sorted(VIEW_SETS)} (default: "
                        "config.json hC_sam_view_type, else 4MV-Z_Vitru_mv2 for -fix checkpoints, 4MV-Z_Vitru otherwise)")
    parser.add_argument("--legacy-lifting", action="store_true", help="the original's human lifting rule before its fix commit 79b4bf2 (lifting mode 'legacy')")
    parser.add_argument("--body-model", choices=sorted(BODY_MODEL_FILES), default=None, help="body of the template (default smplh)")
    parser.add_argument("--mask-size", type=int, default=None, help="mask / lifting-map size (default 1024)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="preset for defaults (default: matched by shapes)")
    parser.add_argument("--cam-encoder", choices=["none", "simple", "view_index", "vi_v1"], default=None,
                        help="camera-encoder type when the shapes are ambiguous")
    parser.add_argument("--token-type", choices=["Gen", "Gen-Hu-Obj"], default=None)
    parser.add_argument("--contact-2d", action="store_true",
                        help="the checkpoint is a 2D model (interactvlm-2d-hcontact: SAM on the photo, no template)")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="weights dtype (auto: the checkpoint's)")
    args = parser.parse_args(argv)
    out = convert_official(
        args.checkpoint, args.output_dir, clip=args.clip, tokenizer_dir=args.tokenizer, human_template=args.human_template,
        view_set=args.view_set, legacy_lifting=args.legacy_lifting, body_model=args.body_model, mask_size=args.mask_size,
        preset=args.preset, cam_encoder=args.cam_encoder, token_type=args.token_type, dtype=args.dtype,
        contact_2d=args.contact_2d,
    )
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
