"""Tokenizers: a local byte-level BPE for the ``tiny`` preset (no hub access), the sentencepiece tokenizer of the
released LISA / InteractVLM checkpoints, and the special tokens every model needs.

The tiny tokenizer is trained on the prompt templates filled with our object, body-part and affordance vocabulary,
so the prompts the model sees tokenise into few tokens (short sequences = fast CPU training) while any other text
still encodes (byte-level fallback).

:class:`LisaTokenizer` reproduces the slow ``LlamaTokenizer`` of transformers 4.31 (``legacy=True``), the one the
released models were trained and evaluated with, id for id: every added token (``[SEG]``, ``<im_start>``, …) eats
the whitespace on both sides, and every piece of text between added tokens is encoded by sentencepiece on its own
(so it gets sentencepiece's dummy ``▁`` prefix). transformers 5 loads such a folder as a ``tokenizers`` Llama
tokenizer that keeps that whitespace and prefixes only the first piece, which changes the prompts (for example
``▁ [SEG] .`` instead of ``[SEG] ▁ .``) and with them every generated answer.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.tokenization_utils_base import AddedToken
from transformers.tokenization_utils_sentencepiece import SPIECE_UNDERLINE, SentencePieceBackend

from model.config import InteractVLMConfig
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
    texts += [f"The person is {phrase}; the contact is at the" for phrase in conv.POSE_PHRASES.values()]
    texts += [conv.build_prompt(conv.OPENING_QUESTION, conv.OPENING_ANSWER.format(pose=phrase))
              for phrase in conv.POSE_PHRASES.values()]
    for (task, qtype), (questions, answers) in conv.TEMPLATES.items():
        for obj, (i, part) in itertools.product(TINY_OBJECT_WORDS, enumerate(TINY_BODY_PARTS)):
            fields = {"class_name": obj, "seg": conv.SEG_TOKEN, "affordance": TINY_AFFORDANCES[i % len(TINY_AFFORDANCES)],
                      "body_parts": ", ".join(TINY_BODY_PARTS[i: i + 1 + i % 3])}
            texts.append(conv.build_prompt(questions[i % len(questions)].format(**fields),
                                           answers[i % len(answers)].format(**fields)))
    return texts


def build_tiny_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Byte-level BPE of exactly ``vocab_size`` entries (special tokens included), trained in about a second."""
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
        if isinstance(tokenizer, LisaTokenizer):  # as the original adds them: plain strings, stripped both sides
            tokenizer.add_tokens(missing)
        else:
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


class LisaTokenizer(SentencePieceBackend):
    """The slow sentencepiece ``LlamaTokenizer`` of transformers 4.31 (LISA, InteractVLM), id for id.

    Rules of 4.31 that this class keeps:

    * added tokens other than ``<s>``/``</s>``/``<unk>`` eat the whitespace on both sides (4.31 strips around every
      added token that is not an ``AddedToken`` special token, and the original adds ``[SEG]``, ``<im_start>``,
      ``<im_end>``, ``[HSEG]``, ``[OSEG]`` as plain strings);
    * the text between added tokens is encoded by sentencepiece piece by piece. With ``legacy=True`` (the
      constructor default, and what the original's ``train.py`` passes) every piece gets sentencepiece's dummy
      ``▁`` prefix; with ``legacy`` false or null in ``tokenizer_config.json`` (4.31 treats null as false) only the
      start of the text does, and a piece that follows an added token loses its leading ``▁``;
    * one ``<s>`` is prepended, no ``</s>`` appended.
    """

    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"

    def __init__(self, vocab_file: str | None = None, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                 pad_token=None, legacy=True, lisa_legacy: bool | None = None, **kwargs) -> None:
        # the folder's 4.31 ``legacy`` value decides the behaviour; the sentencepiece backend itself always runs in
        # its legacy mode (plain ``sp.encode``, dummy prefix kept), the non-legacy rules are applied here
        self.lisa_legacy = bool(legacy) if lisa_legacy is None else bool(lisa_legacy)
        kwargs.setdefault("special_tokens_pattern", "bos")
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        super().__init__(vocab_file=vocab_file, unk_token=unk_token, bos_token=bos_token, eos_token=eos_token,
                         pad_token=pad_token, legacy=True, lisa_legacy=self.lisa_legacy, **kwargs)
        self._strip_added_tokens()
        if self.pad_token is None:
            self.pad_token = self.unk_token  # what the original sets after loading

    def tokenize(self, text: str, **kwargs) -> list[str]:
        if not self.lisa_legacy:
            text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " ")
        return super().tokenize(text, **kwargs)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        if self.lisa_legacy:
            return self.sp_model.encode(text, out_type=str)
        is_first = text.startswith(SPIECE_UNDERLINE)
        if is_first:
            text = text[1:]
        tokens = self.sp_model.encode(text, out_type=str)
        if not is_first and not text.startswith(" ") and tokens and tokens[0].startswith(SPIECE_UNDERLINE):
            tokens = ([tokens[0][1:]] if len(tokens[0]) > 1 else []) + tokens[1:]
        return tokens

    def _keeps_whitespace(self, content: str) -> bool:
        return content in {str(self.bos_token), str(self.eos_token), str(self.unk_token)}

    def _strip_added_tokens(self) -> None:
        for index, token in list(self._added_tokens_decoder.items()):
            if self._keeps_whitespace(token.content) or (token.lstrip and token.rstrip):
                continue
            self._added_tokens_decoder[index] = AddedToken(token.content, lstrip=True, rstrip=True, normalized=False,
                                                           special=token.special)
        self._update_trie()

    def _add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        tokens = []
        for token in new_tokens if isinstance(new_tokens, (list, tuple)) else [new_tokens]:
            if isinstance(token, str) and not self._keeps_whitespace(token):
                token = AddedToken(token, lstrip=True, rstrip=True, normalized=False, special=special_tokens)
            tokens.append(token)
        return super()._add_tokens(tokens, special_tokens=special_tokens)

    @classmethod
    def is_lisa_folder(cls, folder: str | Path) -> bool:
        """A folder with a sentencepiece ``tokenizer.model`` (and no ``tokenizer.json`` of ours)."""
        folder = Path(folder)
        return (folder / "tokenizer.model").is_file()


# model directories whose tokenizer_config.json names LisaTokenizer open with AutoTokenizer
AutoTokenizer.register(InteractVLMConfig, tokenizer_class=LisaTokenizer, exist_ok=True)
