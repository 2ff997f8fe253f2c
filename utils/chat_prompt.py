"""The one place a model's text prompt is built from its config and a question.

Training (the collator), validation and evaluation (``training.predict.predict_dataset``), the demo and the benchmarks
all call :func:`chat_prompt`, so the prompt a model is scored with is token for token the prompt it was trained on.
Two settings of the config shape the text: ``image_seq_length`` (one ``<image>`` placeholder per image feature) and
``use_im_start_end`` (``<im_start> … <im_end>`` around them; on in every released model). Building the prompt in
several places let one of them drop ``use_im_start_end``, so evaluation asked a question the model had never seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from utils.conversation import ASSISTANT_ROLE, SEP, SEP2, USER_ROLE, build_prompt


class PromptConfig(Protocol):
    """What the prompt needs from a model config (``model.config.InteractVLMConfig`` has both)."""

    image_seq_length: int
    use_im_start_end: bool


def chat_prompt(config: PromptConfig, question: str, answer: str | None = None) -> str:
    """The llava_v1 text of one question (and answer) for the model with ``config``.

    ``answer=None`` ends at ``ASSISTANT:``: the generation prompt. With an answer, the text ends with ``</s>``
    (the training target of a one-turn sample).
    """
    return build_prompt(question, answer, use_im_start_end=bool(config.use_im_start_end),
                        image_tokens=int(config.image_seq_length))


def conversation_text(turns: Sequence[tuple[str, str | None]], config: PromptConfig) -> tuple[str, list[tuple[int, int]]]:
    """The llava_v1 text of a (multi-turn) conversation and the character spans of its answers.

    The first turn is :func:`utils.chat_prompt.chat_prompt` (the generation prompt of the model's config); later
    turns continue with ``"USER: {q} ASSISTANT: {a}</s>"``. A final answer of ``None`` leaves the text open after
    ``ASSISTANT:``.
    """
    if not turns:
        raise ValueError("a conversation needs at least one (question, answer) turn")
    question, answer = turns[0]
    text = chat_prompt(config, question)
    spans = []
    for i, (question, answer) in enumerate(turns):
        if i:
            text += f"{USER_ROLE}: {question}{SEP}{ASSISTANT_ROLE}:"
        if answer is None:
            if i != len(turns) - 1:
                raise ValueError("only the last turn may lack an answer")
            break
        start = len(text)
        text += f" {answer}{SEP2}"
        spans.append((start, len(text)))
    return text, spans
