"""The original InteractVLM code's side of the parity fixtures and of ``bench/vs_original.py``.

Run ONLY with the oracle interpreter (transformers 4.31.0, tokenizers 0.13.3, peft 0.4.0, accelerate 0.21.0,
sentencepiece, torch) and a checkout of ``saidwivedi/InteractVLM`` at 79b4bf2; never imported by our package or by
pytest (``tests/parity/conftest.py`` ignores it). It changes no file of the original. At run time it only applies the
shims the original needs on a CPU machine without a model hub:

* a stub ``wandb`` module; ``HF_HUB_OFFLINE=1``, and in the working directory local folders named like the hub ids the
  original loads (``openai/clip-vit-large-patch14``, ``xinlai/LISA-13B-llama2-v1``) holding tiny random stand-ins;
* the original's ``build_sam_vit_h`` rebound to a builder of the original SAM classes at tiny sizes that keeps the
  checkpoint-load step (``torch.load`` + ``load_state_dict(strict=False)`` of ``./data/sam_vit_h_4b8939.pth``);
* ``torch.Tensor.cuda`` / ``nn.Module.cuda`` as no-ops (the original hard-codes ``.cuda()``);
* ``save_pretrained`` sharding small (``max_shard_size``), so the tiny model is written like a 13B release.

Commands (``--command``):

``build``  stand-ins → training arguments through the original ``train.py``'s own argument parser → a trained tiny
           model (the ``train.py`` model recipe, a short teacher-forced fine-tune so that greedy decoding emits the seg
           token) saved like ``zero_to_fp32`` does → the original ``merge_lora_weights_and_save_hf_model.py`` (run
           unmodified) → the released layout; then the original model's outputs (``evaluate`` = generate path,
           ``model_forward(inference=True)`` = teacher-forced path, LM logits) and the original tokenizer's ids of
           every question/answer template.
``infer``  load a merged checkpoint as ``run_demo.py`` does and time the original's ``evaluate`` on a query list
           (``bench/vs_original.py``).
"""

from __future__ import annotations

import argparse
import ast
import importlib.machinery
import json
import os
import runpy
import shutil
import sys
import time
import types
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

# ------------------------------------------------------------------------------------------------------------- sizes
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=1024, rms_norm_eps=1e-5)
CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56,
            patch_size=14, projection_dim=32)
CLIP_TEXT = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=16, projection_dim=32)
IMG_EMB_LEN = (CLIP["image_size"] // CLIP["patch_size"]) ** 2 - 1
SAM_IMAGE_SIZE = 64
SP_VOCAB = 420
SHARD = "1MB"
CLIP_DIR = "openai/clip-vit-large-patch14"
LISA_DIR = "xinlai/LISA-13B-llama2-v1"
SAM_CKPT = "./data/sam_vit_h_4b8939.pth"


def build_tiny_sam(checkpoint=None):
    """The original ``_build_sam`` recipe with the original classes at tiny sizes (prompt dim stays 256: the
    original's camera encoders and attention splitter hard-code it)."""
    from model.segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    prompt_dim, patch = 256, 16
    grid = SAM_IMAGE_SIZE // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(depth=2, embed_dim=32, img_size=SAM_IMAGE_SIZE, mlp_ratio=4,
                                      norm_layer=partial(nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=patch,
                                      qkv_bias=True, use_rel_pos=True, global_attn_indexes=[1], window_size=2,
                                      out_chans=prompt_dim),
        prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(SAM_IMAGE_SIZE, SAM_IMAGE_SIZE), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=32, num_heads=8),
                                 transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )
    sam.eval()
    if checkpoint is not None:
        with open(checkpoint, "rb") as f:
            state_dict = torch.load(f)
        sam.load_state_dict(state_dict, strict=False)
    return sam


def install_shims(original: Path) -> None:
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    sys.path.insert(0, str(original))
    wandb = types.ModuleType("wandb")
    wandb.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    wandb.init = lambda *a, **k: None
    wandb.log = lambda *a, **k: None
    wandb.Image = lambda *a, **k: None
    sys.modules["wandb"] = wandb
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    import model.InteractVLM as ivlm
    import model.segment_anything as sa
    import model.segment_anything.build_sam as bs

    sa.build_sam_vit_h = bs.build_sam_vit_h = ivlm.build_sam_vit_h = build_tiny_sam
    from transformers import PreTrainedModel

    save = PreTrainedModel.save_pretrained

    def sharded_save(self, *args, **kwargs):
        kwargs["max_shard_size"] = SHARD
        return save(self, *args, **kwargs)

    PreTrainedModel.save_pretrained = sharded_save


# ------------------------------------------------------------------------------------------------------ stand-ins
def train_sentencepiece(folder: Path, corpus: list[str]) -> Path:
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "corpus.txt"
    text.write_text("\n".join(corpus))
    prefix = folder / "sp"
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(prefix), vocab_size=SP_VOCAB, model_type="bpe", byte_fallback=True,
        character_coverage=1.0, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, split_digits=True, num_threads=1,
        minloglevel=2,
    )
    text.unlink()
    return prefix.with_suffix(".model")


def template_corpus() -> list[str]:
    from model.llava import conversation as conversation_lib
    import utils.utils as U

    names = [n for n in dir(U) if n.endswith("_LIST")]
    lines = [conversation_lib.conv_templates["llava_v1"].system, "USER: ASSISTANT:"]
    for name in names:
        for text in getattr(U, name):
            lines.append(text.replace("{class_name}", "chair").replace("{body_parts}", "left hand, right foot")
                         .replace("{affordance}", "sit").replace("{sent}", "the chair"))
    lines += OBJECTS + PARTS + AFFORDANCES
    return lines * 3


OBJECTS = ["chair", "bench", "bottle", "skateboard", "tennis racket", "cup", "bicycle", "scene", "knife", "bed"]
PARTS = ["left hand", "right hand", "left foot", "right foot", "hips", "torso", "head", "left thigh"]
AFFORDANCES = ["sit", "grasp", "lift", "ride", "cut", "lay", "pour", "push"]


def make_stand_ins(work: Path, templates: Path) -> None:
    """CLIP, tokenizer + LISA-format base model, SAM checkpoint and the data files the original reads at import."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, LlamaTokenizer

    from model.llava.model.language_model.llava_llama import LlavaConfig
    from model.InteractVLM import InteractVLMForCausalLM

    torch.manual_seed(0)
    clip_dir = work / CLIP_DIR
    clip = CLIPModel(CLIPConfig(text_config=CLIP_TEXT, vision_config=CLIP, projection_dim=32))
    clip.save_pretrained(clip_dir)
    CLIPImageProcessor(size={"shortest_edge": CLIP["image_size"]},
                       crop_size={"height": CLIP["image_size"], "width": CLIP["image_size"]}).save_pretrained(clip_dir)

    data = work / "data"
    data.mkdir(exist_ok=True)
    np.save(data / "smpl_neutral_geodesic_dist.npy", np.zeros((2, 2), np.float32))  # read at import by eval_utils
    for folder in ("hcontact_vitruvian", "hcontact_vitruvian_mv2"):
        if not (data / folder).exists():
            shutil.copytree(templates / "hcontact_vitruvian", data / folder)
    torch.save(build_tiny_sam().state_dict(), data / "sam_vit_h_4b8939.pth")

    sp_model = train_sentencepiece(work / "sp", template_corpus())
    lisa = work / LISA_DIR
    tokenizer = LlamaTokenizer(vocab_file=str(sp_model), legacy=None)
    tokenizer.add_tokens("[SEG]")
    tokenizer.add_tokens(["<im_start>", "<im_end>"], special_tokens=True)
    tokenizer.save_pretrained(lisa)

    config = LlavaConfig(vocab_size=len(tokenizer), bos_token_id=1, eos_token_id=2, pad_token_id=0, **TEXT)
    config.update(dict(train_mask_decoder=True, out_dim=256, mm_vision_tower=CLIP_DIR, vision_tower=CLIP_DIR,
                       mm_hidden_size=CLIP["hidden_size"], mm_vision_select_layer=-2, mm_vision_select_feature="patch",
                       mm_use_im_start_end=True, mm_use_im_patch_token=False, use_mm_proj=True,
                       image_aspect_ratio="square", tune_mm_mlp_adapter=False, freeze_mm_mlp_adapter=True,
                       pretrain_mm_mlp_adapter=None))
    model = InteractVLMForCausalLM(config, train_from_LISA=True, vision_pretrained=SAM_CKPT, train_mask_decoder=True,
                                   out_dim=256, vision_tower=CLIP_DIR, token_type="Gen", img_emb_len=IMG_EMB_LEN,
                                   seg_token_idx=tokenizer.convert_tokens_to_ids("[SEG]"))
    for key in ("token_type", "multiview_cam_cond", "cam_encoder_type", "hC_loss_weight", "oC_loss_weight",
                "seg_token_idx", "hseg_token_idx", "oseg_token_idx", "img_emb_len", "use_fusion", "use_uncertainty",
                "multiview_channels", "hC_sam_view_type", "oC_sam_view_type", "hC_question_type", "oC_question_type"):
        if hasattr(model.config, key):
            delattr(model.config, key)  # a LISA config has none of InteractVLM's fields
    state = {k: v for k, v in model.state_dict().items() if "vision_tower" not in k}
    model.save_pretrained(lisa, state_dict=state)


# ---------------------------------------------------------------------------------------------- training arguments
def train_py_parse_args(original: Path):
    """``parse_args`` of the original ``train.py``, compiled from its source (importing train.py would pull in
    deepspeed, detectron2 and the dataset stack, which training-argument parsing does not need)."""
    from distutils.util import strtobool  # noqa: F401 (the parser's type)

    source = (original / "train.py").read_text()
    tree = ast.parse(source)
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "parse_args")
    namespace = {"argparse": argparse, "strtobool": strtobool}
    exec(compile(ast.Module(body=[func], type_ignores=[]), str(original / "train.py"), "exec"), namespace)
    return namespace["parse_args"]


def conversation(question: str, answer: str | None) -> str:
    from model.llava import conversation as conversation_lib
    from utils.utils import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, DEFAULT_IMAGE_TOKEN

    conv = conversation_lib.conv_templates["llava_v1"].copy()
    conv.messages = []
    prompt = (DEFAULT_IMAGE_TOKEN + "\n" + question).replace(
        DEFAULT_IMAGE_TOKEN, DEFAULT_IM_START_TOKEN + DEFAULT_IMAGE_TOKEN + DEFAULT_IM_END_TOKEN)
    conv.append_message(conv.roles[0], prompt)
    conv.append_message(conv.roles[1], answer if answer is not None else "")
    return conv.get_prompt()


def clip_pixels(image: np.ndarray) -> torch.Tensor:
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor.from_pretrained(CLIP_DIR)
    return processor.preprocess(image, return_tensors="pt")["pixel_values"][0].unsqueeze(0)


def sam_inputs(images: list[np.ndarray]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """``run_demo.py``'s SAM preprocessing (ResizeLongestSide + normalise + pad) at the tiny SAM size."""
    from model.segment_anything.utils.transforms import ResizeLongestSide

    transform = ResizeLongestSide(SAM_IMAGE_SIZE)
    mean = torch.Tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
    std = torch.Tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    out, sizes = [], []
    for image in images:
        resized = transform.apply_image(image)
        sizes.append(resized.shape[:2])
        x = (torch.from_numpy(resized).permute(2, 0, 1).contiguous() - mean) / std
        h, w = x.shape[-2:]
        out.append(torch.nn.functional.pad(x, (0, SAM_IMAGE_SIZE - w, 0, SAM_IMAGE_SIZE - h)))
    return torch.stack(out), sizes


def read_png(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def normalized_cams(view_dict: dict) -> torch.Tensor:
    from datasets.base_contact_dataset import normalize_cam_params

    return torch.stack([normalize_cam_params(v) for v in view_dict["cam_params"].values()])


def _train_args_and_tokenizer(original: Path, spec: dict):
    """The original ``train.py``'s arguments for the config and its tokenizer with the added tokens."""
    import transformers

    from preprocess_data.constants import HUMAN_VIEW_DICT, OBJS_VIEW_DICT
    from utils.utils import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, add_new_tokens

    args = train_py_parse_args(original)(spec["train_args"])
    args.log_dir = os.path.join(args.log_base_dir, args.exp_name)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.version, cache_dir=None,
                                                           model_max_length=args.model_max_length,
                                                           padding_side="right", use_fast=False, legacy=True)
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer, args = add_new_tokens(tokenizer, args)
    if args.use_mm_start_end:
        tokenizer.add_tokens([DEFAULT_IM_START_TOKEN, DEFAULT_IM_END_TOKEN], special_tokens=True)
    mv_human, mv_obj = 1, 1
    if args.train_from_LISA or args.train_from_LLAVA:
        if "MV-Z" in args.hC_sam_view_type and "hcontact" in args.dataset:
            mv_human = HUMAN_VIEW_DICT[args.hC_sam_view_type]["grid_size"][0]
        if "MV-Z" in args.oC_sam_view_type and ("oafford" in args.dataset or "ocontact" in args.dataset):
            mv_obj = OBJS_VIEW_DICT[args.oC_sam_view_type]["grid_size"][0]
        args.multiview_channels = int(max(mv_human, mv_obj))
    if spec.get("force_multiview_channels"):
        args.multiview_channels = spec["force_multiview_channels"]
    os.makedirs(args.log_dir, exist_ok=True)
    with open(os.path.join(args.log_dir, "config.json"), "w") as f:
        json.dump(vars(args), f, indent=4)
    return args, tokenizer


def _lora_model(args, tokenizer):
    """``train.py``'s model: InteractVLM in fp32 with its vision modules, LoRA on the language model's linears."""
    from peft import LoraConfig, get_peft_model

    from model.InteractVLM import InteractVLMForCausalLM

    model_args = {k: getattr(args, a) for k, a in (
        ("train_mask_decoder", "train_mask_decoder"), ("img_emb_len", "img_emb_len"), ("out_dim", "out_dim"),
        ("ce_loss_weight", "ce_loss_weight"), ("dice_loss_weight", "dice_loss_weight"),
        ("dice_loss_scale", "dice_loss_scale"), ("bce_loss_weight", "bce_loss_weight"),
        ("bce_loss_alpha", "bce_loss_alpha"), ("seg_token_idx", "seg_token_idx"),
        ("vision_pretrained", "vision_pretrained"), ("vision_tower", "vision_tower"),
        ("use_mm_start_end", "use_mm_start_end"), ("train_from_LISA", "train_from_LISA"),
        ("train_from_LLAVA", "train_from_LLAVA"), ("use_feat_fusion", "use_feat_fusion"),
        ("use_uncertainty", "use_uncertainty"), ("token_type", "token_type"), ("hseg_token_idx", "hseg_token_idx"),
        ("oseg_token_idx", "oseg_token_idx"), ("hC_sam_view_type", "hC_sam_view_type"),
        ("hC_loss_weight", "hC_loss_weight"), ("hC_question_type", "hC_question_type"),
        ("oC_sam_view_type", "oC_sam_view_type"), ("oC_loss_weight", "oC_loss_weight"),
        ("oC_question_type", "oC_question_type"), ("multiview_channels", "multiview_channels"),
        ("multiview_cam_cond", "multiview_cam_cond"), ("cam_encoder_type", "cam_encoder_type"))}
    # DeepSpeed keeps fp32 master weights whatever --precision says, and zero_to_fp32 writes those
    model = InteractVLMForCausalLM.from_pretrained(args.version, torch_dtype=torch.float32, low_cpu_mem_usage=True,
                                                   local_files_only=True, **model_args)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.get_model().initialize_vision_modules(model.get_model().config)
    vision_tower = model.get_model().get_vision_tower()
    vision_tower.to(dtype=torch.float32)

    def find_linear_layers(net, targets):
        names = set()
        for name, module in net.named_modules():
            if isinstance(module, nn.Linear) and all(x not in name for x in
                                                     ["visual_model", "vision_tower", "mm_projector", "text_hidden_fcs"]) \
                    and any(x in name for x in targets):
                names.add(name)
        return sorted(names)

    lora_config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha,
                             target_modules=find_linear_layers(model, args.lora_target_modules.split(",")),
                             lora_dropout=args.lora_dropout, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora_config)
    model.resize_token_embeddings(len(tokenizer))
    return model


def _fine_tune(model, tokenizer, spec: dict, gen: torch.Generator) -> None:
    """A short teacher-forced fine-tune of LoRA, ``lm_head`` and embeddings on the spec's question/answer samples."""
    from model.llava.mm_utils import tokenizer_image_token

    inner = model.base_model.model
    trainable = [p for n, p in model.named_parameters()
                 if any(x in n for x in ("lora_", "lm_head", "embed_tokens"))]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    samples = []
    for item in spec["train_samples"]:
        prompt = conversation(item["question"], item["answer"])
        ids = tokenizer_image_token(prompt, tokenizer, return_tensors="pt")
        answer_start = len(tokenizer_image_token(conversation(item["question"], None), tokenizer))
        labels = ids.clone()
        labels[:answer_start] = -100
        samples.append((ids, labels, clip_pixels(read_png(Path(spec["images"][item["image"]])))))
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    model.train()
    from model.llava.model.language_model.llava_llama import LlavaLlamaForCausalLM

    for step in range(spec.get("train_steps", 120)):
        order = torch.randperm(len(samples), generator=gen).tolist()
        total = 0.0
        for i in order:
            ids, labels, clip = samples[i]
            out = LlavaLlamaForCausalLM.forward(inner, images=clip, input_ids=ids[None], labels=labels[None],
                                                attention_mask=torch.ones_like(ids[None]))
            out.loss.backward()
            total += float(out.loss)
        optimizer.step()
        optimizer.zero_grad()
        if total / len(samples) < 0.02:
            break
    print(f"fine-tune: {step + 1} steps, mean CE {total / len(samples):.4f}")
    model.eval()


def _randomize_untrained(model, gen: torch.Generator) -> None:
    """Random values for the trained modules the fine-tune leaves alone, drawn from ``gen``."""
    # every other trained module random (SAM: few distinct values, so the committed fixture stays small in git)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "visual_model" in name:
                # a quarter of the output channels carry sparse ±2^-k weights: long zero runs compress well
                rows = torch.rand(param.shape[:1], generator=gen) < 0.25
                keep = (torch.rand(param.shape, generator=gen) < 0.5) & rows.reshape(-1, *[1] * (param.ndim - 1))
                signs = torch.randint(0, 2, param.shape, generator=gen).float() * 2 - 1
                scale = 2.0 ** round(float(np.log2(1.0 / max(param.shape[-1], 1) ** 0.5 + 1e-12)))
                if param.ndim == 1 and "norm" in name and name.endswith("weight"):
                    param.copy_(1.0 + 0.25 * signs * keep)
                else:
                    param.copy_(signs * keep * scale * 2)
            elif any(x in name for x in ("text_hidden_fcs", "cam_pose_encoder", "attention_splitter")):
                param.add_(torch.randn(param.shape, generator=gen) * 0.05)


def train_model(original: Path, work: Path, spec: dict) -> Path:
    """The ``train.py`` recipe for the config's arguments, a short fine-tune, then a ``zero_to_fp32``-style dump."""
    # imported up front, in this order, before the tokenizer loads (the helpers import the names they use again)
    import transformers  # noqa: F401
    from peft import LoraConfig, get_peft_model  # noqa: F401

    from model.InteractVLM import InteractVLMForCausalLM  # noqa: F401
    from model.llava.mm_utils import tokenizer_image_token  # noqa: F401
    from preprocess_data.constants import HUMAN_VIEW_DICT, OBJS_VIEW_DICT  # noqa: F401
    from utils.utils import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, add_new_tokens  # noqa: F401

    args, tokenizer = _train_args_and_tokenizer(original, spec)
    model = _lora_model(args, tokenizer)

    # a short teacher-forced fine-tune: the language side learns the answers, so greedy decoding emits seg tokens
    gen = torch.Generator().manual_seed(spec["seed"])
    _fine_tune(model, tokenizer, spec, gen)
    _randomize_untrained(model, gen)
    state = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    weight = Path(args.log_dir) / "pytorch_model.bin"
    torch.save(state, weight)
    return weight


def merge(original: Path, weight: Path, save_path: Path) -> None:
    """The original merge script, unmodified, in this process (the shims stay in force)."""
    argv = sys.argv
    sys.argv = [str(original / "merge_lora_weights_and_save_hf_model.py"), "--weight", str(weight),
                "--save_path", str(save_path)]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sys.argv = argv


# ------------------------------------------------------------------------------------------------------- inference
def load_released(checkpoint: Path):
    """``run_demo.py``'s loading route, fp32."""
    from transformers import AutoTokenizer

    from model.InteractVLM import InteractVLMForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), cache_dir=None, model_max_length=512,
                                              padding_side="right", use_fast=False)
    tokenizer.pad_token = tokenizer.unk_token
    model = InteractVLMForCausalLM.from_pretrained(str(checkpoint), low_cpu_mem_usage=True, vision_tower=CLIP_DIR,
                                                   torch_dtype=torch.float32, train_from_LISA=False,
                                                   train_from_LLAVA=False)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.get_model().initialize_vision_modules(model.get_model().config)
    model.get_model().get_vision_tower().to(dtype=torch.float32)
    model = model.float()
    model.eval()
    return model, tokenizer


def query_inputs(query: dict, spec: dict, data: Path):
    """SAM input, camera vectors, size lists and lifting file of one query, as ``run_demo.py`` builds them."""
    from preprocess_data.constants import HUMAN_VIEW_DICT, OBJS_VIEW_DICT

    image = read_png(Path(spec["images"][query["image"]]))
    kind = query["sam"]
    if kind == "photo":
        pixels, sizes = sam_inputs([image])
        return image, pixels[None], torch.zeros(1, 1, 5), sizes, [image.shape[:2]], None
    if kind == "human":
        views = HUMAN_VIEW_DICT[query["view_set"]]
        folder = data / views["folder"]
        renders = [read_png(folder / f"body_render_norm_{v}.png") for v in views["cam_params"]]
        lift = None
    else:
        views = OBJS_VIEW_DICT[query["view_set"]]
        folder = Path(spec["object_template"])
        renders = [read_png(folder / f"obj_render_color_{v}.png") for v in views["cam_params"]]
        lift = str(Path(spec["work"]) / "lift2d_dict.pkl")
    pixels, sizes = sam_inputs(renders)
    return image, pixels[None], normalized_cams(views)[None], sizes[:1], sizes[:1], lift


def run_generate(model, tokenizer, query: dict, spec: dict, data: Path, max_new_tokens: int) -> dict:
    from model.llava.mm_utils import tokenizer_image_token

    image, sam, cams, resize, original_size, lift = query_inputs(query, spec, data)
    prompt = conversation(query["question"], None)
    input_ids = tokenizer_image_token(prompt, tokenizer, return_tensors="pt")[None]
    out = model.evaluate(clip_pixels(image), sam, input_ids, cams, resize, original_size_list=original_size,
                         lift2d_dict_path=lift, contact_type=query["contact_type"], max_new_tokens=max_new_tokens,
                         tokenizer=tokenizer)
    masks = out["pred_masks"][0]
    contact = out["pred_contact_3d"]
    return {"prompt": prompt, "input_ids": input_ids[0].tolist(), "output_ids": out["output_ids"][0].tolist(),
            "masks": masks.float().numpy(), "contact": None if contact is None else contact[0].float().numpy()}


def run_forward(model, tokenizer, query: dict, spec: dict, data: Path) -> dict:
    from model.llava.mm_utils import tokenizer_image_token
    from model.llava.model.language_model.llava_llama import LlavaLlamaForCausalLM

    image, sam, cams, resize, original_size, _ = query_inputs(query, spec, data)
    prompt = conversation(query["question"], query["answer"])
    ids = tokenizer_image_token(prompt, tokenizer, return_tensors="pt")[None]
    views = sam.shape[1]
    size = tuple(original_size[0])
    clip = clip_pixels(image)
    with torch.no_grad():
        result = model.model_forward(
            images=sam, images_clip=clip, input_ids=ids, labels=ids, attention_masks=torch.ones_like(ids),
            offset=torch.tensor([0, 1]), masks_list=[torch.zeros(views, 1, *size)], label_list=[torch.zeros(size)],
            gt_contact_3d_list=[None], cam_params=cams, resize_list=resize, ds_name_list=[query["ds_name"]],
            mask_paths_list=[query.get("mask_paths")], inference=True)
        logits = LlavaLlamaForCausalLM.forward(model, images=clip, input_ids=ids,
                                               attention_mask=torch.ones_like(ids)).logits[0]
    contact = result.get("pred_human_3d_contact")
    return {"prompt": prompt, "input_ids": ids[0].tolist(), "masks": result["pred_masks"][0].float().numpy(),
            "contact": None if contact is None else contact[0].float().numpy(),
            "logits_tail": logits[-spec.get("logit_positions", 24):].float().numpy(), "clip_pixels": clip[0].numpy()}


def template_ids(tokenizer, legacy_tokenizer) -> list[dict]:
    """The original tokenizer's ids of every question/answer template, alone and inside the llava_v1 prompt
    (``tokenizer_image_token``, as ``run_demo.py`` and the datasets build them): once as the checkpoint folder loads
    (``run_demo.py``, the merge script) and once with ``legacy=True`` (as ``train.py`` loads it)."""
    from model.llava.mm_utils import tokenizer_image_token
    import utils.utils as U

    records = []
    fields = {"class_name": "tennis racket", "body_parts": "left hand, right foot", "affordance": "grasp",
              "sent": "The chair on the left."}
    for name in sorted(n for n in dir(U) if n.endswith("_LIST")):
        for index, template in enumerate(getattr(U, name)):
            text = template
            for key, value in fields.items():
                text = text.replace("{" + key + "}", value)
            for token in ("HTOKEN", "OTOKEN"):
                text = text.replace(token, "SEG")
            text = text.replace(U.DEFAULT_IMAGE_TOKEN + "\n", "")  # never tokenised: the image placeholder
            if "QUESTION" in name:
                full = conversation(text, None)
            else:
                full = conversation("Which body parts are in contact with the chair? Segment these contact areas.", text)
            record = {"list": name, "index": index, "template": template, "text": text, "prompt": full}
            for suffix, tok in (("", tokenizer), ("_legacy", legacy_tokenizer)):
                record["ids" + suffix] = tok(text, add_special_tokens=False).input_ids
                record["prompt_ids" + suffix] = tokenizer_image_token(full, tok)
            records.append(record)
    return records


def command_tokens(original: Path, spec: dict) -> None:
    """Template ids of a merged checkpoint's tokenizer (both ``legacy`` settings)."""
    from transformers import AutoTokenizer

    work = Path(spec["work"])
    os.chdir(work)
    checkpoint = str(spec["checkpoint"])
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, model_max_length=512, padding_side="right", use_fast=False)
    legacy = AutoTokenizer.from_pretrained(checkpoint, model_max_length=512, padding_side="right", use_fast=False,
                                           legacy=True)
    Path(spec["output"]).write_text(json.dumps(template_ids(tokenizer, legacy), indent=1))


def save_outputs(folder: Path, name: str, outputs: dict) -> dict:
    """Arrays to ``{name}.npz``; the rest returned for the JSON record."""
    arrays = {k: v for k, v in outputs.items() if isinstance(v, np.ndarray)}
    np.savez_compressed(folder / f"{name}.npz", **arrays)
    return {k: v for k, v in outputs.items() if not isinstance(v, np.ndarray) and v is not None}


def command_build(original: Path, spec: dict) -> None:
    work = Path(spec["work"])
    out = Path(spec["output"])
    os.chdir(work)
    if not (work / LISA_DIR / "config.json").is_file():
        make_stand_ins(work, Path(spec["templates"]))
    if spec.get("object_template"):
        import joblib

        folder = Path(spec["object_template"])
        maps = [np.load(folder / f"p2vmap_{v}.npz") for v in spec["object_views"]]
        joblib.dump({"pixel_to_vertices_map": [m["pixel_to_vertices_map"] for m in maps],
                     "bary_coords_map": [m["bary_coords_map"] for m in maps],
                     "num_vertices": int(maps[0]["num_vertices"])}, work / "lift2d_dict.pkl")
    weight = train_model(original, work, spec)
    checkpoint = out / "checkpoint"
    if checkpoint.exists():
        shutil.rmtree(checkpoint)
    merge(original, weight, checkpoint)
    model, tokenizer = load_released(checkpoint)
    record = {"config": spec["name"], "train_args": spec["train_args"], "generate": [], "forward": []}
    for i, query in enumerate(spec["generate"]):
        entry = save_outputs(out, f"generate_{i}", run_generate(model, tokenizer, query, spec, work / "data",
                                                              spec.get("max_new_tokens", 48)))
        entry["query"] = query
        record["generate"].append(entry)
        print(f"generate {i}: {tokenizer.decode(entry['output_ids'][len(entry['input_ids']):])!r}")
    for i, query in enumerate(spec["forward"]):
        entry = save_outputs(out, f"forward_{i}", run_forward(model, tokenizer, query, spec, work / "data"))
        entry["query"] = query
        record["forward"].append(entry)
    record["dtypes"] = merged_dtypes(checkpoint)
    (out / "expected.json").write_text(json.dumps(record, indent=1))
    if spec.get("tokenizer_record"):
        command_tokens(original, {"work": spec["work"], "checkpoint": str(checkpoint), "output": spec["tokenizer_record"]})


def merged_dtypes(checkpoint: Path) -> dict:
    """dtype of every tensor the merge wrote (the release keeps SAM and text_hidden_fcs in fp32)."""
    index = json.loads((checkpoint / "pytorch_model.bin.index.json").read_text())
    dtypes = {}
    for shard in sorted(set(index["weight_map"].values())):
        for key, value in torch.load(checkpoint / shard, map_location="cpu").items():
            dtypes[key] = str(value.dtype).removeprefix("torch.")
    return dtypes


def command_infer(original: Path, spec: dict) -> None:
    """Time the original's ``evaluate`` (its generate path) over the bench's queries, one query per call as
    ``run_demo.py`` and ``evaluate.py`` do (both run batch size 1)."""
    work = Path(spec["work"])
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    if not (work / CLIP_DIR).is_dir():  # the stand-ins the released layout names, from the fixture
        shutil.copytree(spec["clip"], work / CLIP_DIR)
    data = work / "data"
    data.mkdir(exist_ok=True)
    np.save(data / "smpl_neutral_geodesic_dist.npy", np.zeros((2, 2), np.float32))
    for folder in ("hcontact_vitruvian", "hcontact_vitruvian_mv2"):
        if not (data / folder).exists():
            shutil.copytree(Path(spec["templates"]) / "hcontact_vitruvian", data / folder)
    model, tokenizer = load_released(Path(spec["checkpoint"]))
    results = []
    warm = spec["generate"][0]
    run_generate(model, tokenizer, warm, spec, work / "data", spec.get("max_new_tokens", 48))
    start = time.perf_counter()
    for query in spec["generate"]:
        results.append(run_generate(model, tokenizer, query, spec, work / "data", spec.get("max_new_tokens", 48)))
    elapsed = time.perf_counter() - start
    out = Path(spec["output"])
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "original_outputs.npz",
                        **{f"masks_{i}": r["masks"] for i, r in enumerate(results)},
                        **{f"contact_{i}": r["contact"] for i, r in enumerate(results) if r["contact"] is not None})
    (out / "original_outputs.json").write_text(json.dumps({
        "seconds": elapsed, "queries": len(results),
        "output_ids": [r["output_ids"] for r in results], "input_ids": [r["input_ids"] for r in results]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", type=Path, required=True, help="checkout of saidwivedi/InteractVLM (79b4bf2)")
    parser.add_argument("--spec", type=Path, required=True, help="JSON job description written by the caller")
    parser.add_argument("--command", choices=["build", "infer", "tokens"], required=True)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    torch.set_num_threads(int(os.environ.get("ORACLE_THREADS", "1")))
    install_shims(args.original.resolve())
    {"build": command_build, "infer": command_infer, "tokens": command_tokens}[args.command](args.original.resolve(), spec)


if __name__ == "__main__":
    main()
