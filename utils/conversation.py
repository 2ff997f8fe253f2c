"""Prompt text: the LLaVA-v1 conversation template, the seg tokens and the question/answer templates (spec §1.2, §2).

The released checkpoints were trained on exactly this conversation layout (system sentence, ``USER``/``ASSISTANT``
roles, ``<im_start><image><im_end>`` at the start of the user turn), so inference must rebuild it verbatim.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

IMAGE_TOKEN = "<image>"
IM_START_TOKEN = "<im_start>"
IM_END_TOKEN = "<im_end>"
SEG_TOKEN = "[SEG]"
HSEG_TOKEN = "[HSEG]"
OSEG_TOKEN = "[OSEG]"

# token_type → (token for human answers, token for object answers)
SEG_TOKENS_BY_TYPE = {"Gen": (SEG_TOKEN, SEG_TOKEN), "Gen-Hu-Obj": (HSEG_TOKEN, OSEG_TOKEN)}

SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
USER_ROLE, ASSISTANT_ROLE = "USER", "ASSISTANT"
SEP, SEP2 = " ", "</s>"

HCONTACT_QUESTIONS = (
    "Can you segment the human body area in contact with the {class_name} in this image?",
    "Please identify the human body area in contact with the {class_name}.",
    "Show the human body area in contact with the {class_name}.",
    "Provide a mask of the human body area in contact with the {class_name}.",
    "Highlight the human body area in contact with the {class_name}.",
)
HCONTACT_ANSWERS = (
    "{seg}.",
    "It is {seg}.",
    "Sure, {seg}.",
    "Sure, it is {seg}.",
    "Sure, the contact mask is {seg}.",
)
HCONTACT_PARTS_QUESTIONS = (
    "Which body parts are in contact with the {class_name}? Segment these contact areas.",
    "Which parts of the human body touch the {class_name}? Please segment the contact regions.",
    "Name the body parts in contact with the {class_name} and segment the contact area.",
    "What body parts touch the {class_name}? Show the contact region on the body.",
    "Identify the body parts contacting the {class_name} and provide a mask of the contact area.",
)
HCONTACT_PARTS_ANSWERS = (
    "The contacting body parts are {body_parts}, and the contact region is {seg}.",
    "The {body_parts} touch the {class_name}; the contact region is {seg}.",
    "Body parts in contact: {body_parts}. Contact mask: {seg}.",
    "The {class_name} is touched by the {body_parts}, and the contact area is {seg}.",
    "Contact happens at the {body_parts}; here is the region: {seg}.",
)
OAFFORD_QUESTIONS = (
    "Can you segment the area on the {class_name} that the human touches?",
    "Please segment the region of the {class_name} in contact with the human.",
    "Show the part of the {class_name} the human is in contact with.",
    "Provide a mask of the contact area on the {class_name}.",
    "Highlight where the human touches the {class_name}.",
)
OAFFORD_ANSWERS = (
    "Sure, the object contact region is {seg}.",
    "The contact region on the object is {seg}.",
    "Sure, {seg}.",
    "It is {seg}.",
)
OAFFORD_AFFORD_QUESTIONS = (
    "What type of affordance does the human use with the {class_name}? Then segment the contact area on the {class_name}.",
    "First name the affordance of the {class_name} in this interaction, then segment its contact area.",
    "How is the {class_name} being used? Name the affordance and segment the contact region on the {class_name}.",
    "Which affordance of the {class_name} is shown? Please also segment the contact area on it.",
)
OAFFORD_AFFORD_ANSWERS = (
    "The affordance is {affordance}, and the contact region is {seg}.",
    "It is {affordance}; the contact region is {seg}.",
    "The human uses it to {affordance}, and the contact area is {seg}.",
    "Affordance: {affordance}. Contact region: {seg}.",
)
OAFFORD_AFFORD_OBJ_ANSWERS = (
    "The affordance is {affordance} with the {class_name}, and the contact region is {seg}.",
    "The human can {affordance} with the {class_name}; the contact region is {seg}.",
    "It is {affordance} with the {class_name}, and the contact area is {seg}.",
    "Affordance: {affordance} with the {class_name}. Contact region: {seg}.",
)
# The original's object-contact lists are textual copies of the object-affordance (simple) lists.
OCONTACT_QUESTIONS = OAFFORD_QUESTIONS
OCONTACT_ANSWERS = OAFFORD_ANSWERS

TEMPLATES: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("hcontact", "simple"): (HCONTACT_QUESTIONS, HCONTACT_ANSWERS),
    ("hcontact", "parts"): (HCONTACT_PARTS_QUESTIONS, HCONTACT_PARTS_ANSWERS),
    ("h2dcontact", "simple"): (HCONTACT_QUESTIONS, HCONTACT_ANSWERS),
    ("h2dcontact", "parts"): (HCONTACT_PARTS_QUESTIONS, HCONTACT_PARTS_ANSWERS),
    ("oafford", "simple"): (OAFFORD_QUESTIONS, OAFFORD_ANSWERS),
    ("oafford", "afford"): (OAFFORD_AFFORD_QUESTIONS, OAFFORD_AFFORD_ANSWERS),
    ("oafford", "afford_obj"): (OAFFORD_AFFORD_QUESTIONS, OAFFORD_AFFORD_OBJ_ANSWERS),
    ("ocontact", "simple"): (OCONTACT_QUESTIONS, OCONTACT_ANSWERS),
}
HUMAN_TASKS = ("hcontact", "h2dcontact")


@dataclass(frozen=True)
class QA:
    question: str
    answer: str | None


def seg_token_for(task: str, token_type: str = "Gen") -> str:
    try:
        human, obj = SEG_TOKENS_BY_TYPE[token_type]
    except KeyError:
        raise ValueError(f"unknown token_type {token_type!r}; known: {sorted(SEG_TOKENS_BY_TYPE)}") from None
    return human if task in HUMAN_TASKS else obj


def make_qa(
    task: str,
    class_name: str,
    question_type: str = "parts",
    *,
    body_parts: list[str] | None = None,
    affordance: str | None = None,
    token_type: str = "Gen",
    rng: random.Random | None = None,
    with_answer: bool = True,
) -> QA:
    """One question (and answer) for a task. ``rng=None`` takes the first template: the deterministic inference prompt.

    An empty ``body_parts`` list falls back to the ``simple`` templates (the answer must not invent parts).
    """
    if (task, question_type) not in TEMPLATES:
        question_type = "simple" if (task, "simple") in TEMPLATES else question_type
    if question_type == "parts" and with_answer and not body_parts:
        question_type = "simple"
    if (task, question_type) not in TEMPLATES:
        raise ValueError(f"no templates for task {task!r} with question type {question_type!r}; known: {sorted(TEMPLATES)}")
    questions, answers = TEMPLATES[(task, question_type)]
    pick = (lambda options: options[0]) if rng is None else rng.choice
    fields = {"class_name": class_name.lower(), "seg": seg_token_for(task, token_type),
              "body_parts": ", ".join(body_parts or []), "affordance": affordance or ""}
    question = pick(questions).format(**fields)
    answer = pick(answers).format(**fields) if with_answer else None
    return QA(question, answer)


def build_prompt(question: str, answer: str | None = None, use_im_start_end: bool = True, image_tokens: int = 1) -> str:
    """The llava_v1 conversation text. ``answer=None`` ends at ``ASSISTANT:`` (the generation prompt).

    ``image_tokens`` repeats the ``<image>`` placeholder so the prompt already holds one token per image feature
    (transformers' LLaVA replaces placeholder tokens one-to-one).
    """
    image = IMAGE_TOKEN * image_tokens
    if use_im_start_end:
        image = IM_START_TOKEN + image + IM_END_TOKEN
    text = f"{SYSTEM_PROMPT}{SEP}{USER_ROLE}: {image}\n{question}{SEP}{ASSISTANT_ROLE}:"
    if answer is not None:
        text += f" {answer}{SEP2}"
    return text


def instruction_length_marker() -> str:
    """Everything up to and including this string is instruction (masked with −100 in the labels)."""
    return f"{ASSISTANT_ROLE}:"
