"""Tokenizers: a local byte-level BPE for the ``tiny`` preset (no hub access), and the special tokens every model needs.

The tiny tokenizer is trained on the prompt templates filled with our object, body-part and affordance vocabulary,
so the prompts the model sees tokenise into few tokens (short sequences = fast CPU training) while any other text
still encodes (byte-level fallback).
"""

from __future__ import annotations

import itertools

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from utils import conversation as conv

SPECIAL_TOKENS = (conv.IMAGE_TOKEN, conv.IM_START_TOKEN, conv.IM_END_TOKEN, conv.SEG_TOKEN, conv.HSEG_TOKEN, conv.OSEG_TOKEN)

TINY_OBJECT_WORDS = (
    "chair", "bench", "box", "bottle", "bat", "baseball bat", "ball", "sports ball", "table", "dining table", "bed",
    "ground", "scene", "cup", "mug", "bag", "skateboard", "surfboard", "bicycle", "motorcycle", "laptop", "tablet",
    "cell phone", "couch", "umbrella", "tennis racket", "book", "bowl", "knife", "supporting",
)
TINY_BODY_PARTS = (
    "head", "neck", "torso", "hips", "left upper arm", "right upper arm", "left forearm", "right forearm", "left hand",
    "right hand", "left thigh", "right thigh", "left calf", "right calf", "left foot", "right foot",
)
TINY_AFFORDANCES = ("grasp", "contain", "lift", "open", "lay", "sit", "support", "wrapgrasp", "pour", "move", "push",
                    "press", "cut", "kick", "hold", "lean", "step on")


def _tiny_corpus() -> list[str]:
    texts = [conv.SYSTEM_PROMPT]
    for (task, qtype), (questions, answers) in conv.TEMPLATES.items():
        for obj, (i, part) in itertools.product(TINY_OBJECT_WORDS, enumerate(TINY_BODY_PARTS)):
            fields = {"class_name": obj, "seg": conv.SEG_TOKEN, "affordance": TINY_AFFORDANCES[i % len(TINY_AFFORDANCES)],
                      "body_parts": ", ".join(TINY_BODY_PARTS[i: i + 1 + i % 3])}
            texts.append(conv.build_prompt(questions[i % len(questions)].format(**fields),
                                           answers[i % len(answers)].format(**fields)))
    return texts


def build_tiny_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Byte-level BPE of exactly ``vocab_size`` entries (special tokens included), trained in about a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    base_special = ["<unk>", "<s>", "</s>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS), special_tokens=base_special, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_tiny_corpus(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                      pad_token="<unk>", model_max_length=512, padding_side="right")
    add_interactvlm_tokens(wrapped)
    if len(wrapped) > vocab_size:
        raise RuntimeError(f"tiny tokenizer has {len(wrapped)} entries, more than the model's vocabulary {vocab_size}")
    return wrapped


def add_interactvlm_tokens(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Add the image and seg tokens as single special tokens (no-op for those present); return their ids.

    A real LISA tokenizer already has ``[SEG]`` / ``<im_start>`` / ``<im_end>``; whatever ids it assigns are stored in
    the model config and checked when the model is loaded, never assumed.
    """
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    for token, token_id in ids.items():
        encoded = tokenizer(token, add_special_tokens=False)["input_ids"]
        if encoded != [token_id]:
            raise RuntimeError(f"token {token!r} does not encode to a single id ({encoded}); the tokenizer is unusable")
    return ids


def token_ids_for_config(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """The config fields that hold special-token ids."""
    ids = add_interactvlm_tokens(tokenizer)
    return {
        "seg_token_index": ids[conv.SEG_TOKEN], "hseg_token_index": ids[conv.HSEG_TOKEN],
        "oseg_token_index": ids[conv.OSEG_TOKEN], "im_start_token_index": ids[conv.IM_START_TOKEN],
        "im_end_token_index": ids[conv.IM_END_TOKEN], "image_token_index": ids[conv.IMAGE_TOKEN],
    }
