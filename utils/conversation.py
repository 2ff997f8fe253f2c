"""Prompt text: the LLaVA-v1 conversation template, the seg tokens and the question/answer templates.

The released checkpoints were trained on exactly this conversation layout (system sentence, ``USER``/``ASSISTANT``
roles, ``<im_start><image><im_end>`` at the start of the user turn), so inference must rebuild it verbatim.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
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

# The question/answer lists below are the original's, verbatim (its utils/utils.py; [HTOKEN]/[OTOKEN] → {seg}): the
# released models were trained on exactly these strings, and the demo/evaluation prompts are their first entries.
HCONTACT_QUESTIONS = (
    "Segment the area on the human's body that is in direct contact with the {class_name} in this image.",
    "Identify and mask the part of the human that is touching or interacting with the {class_name} in this scene.",
    "Show the contact points on the human where they are physically connected to or interacting with {class_name}.",
    "Please provide a segmentation mask of the human's body parts that are in contact with {class_name}.",
    "Highlight the areas on the human where there is physical interaction or contact with {class_name}.",
)
HCONTACT_ANSWERS = (
    "It is {seg}.",
    "Sure, the human contact region is {seg}.",
    "Sure, the contact points on human is {seg}.",
    "Sure, the contact mask is {seg}.",
    "{seg}.",
)
HCONTACT_PARTS_QUESTIONS = (
    "Which body parts are in contact with the {class_name}? Segment these contact areas.",
    "Name and segment the specific body parts making contact with the {class_name}.",
    "Looking at the {class_name}, what parts of the human body are touching it? Show these contact regions.",
    "For the {class_name}, list and mask the human body parts that are in contact.",
    "Regarding the {class_name}, identify which body parts are touching it and highlight these contact areas.",
)
HCONTACT_PARTS_ANSWERS = (
    "The contacting body parts are {body_parts}, and the contact region is {seg}.",
    "The involved body parts are {body_parts}, with the contact mask at {seg}.",
    "Contact occurs at {body_parts}, with the contact points shown at {seg}.",
    "The body parts in contact are {body_parts}, with contact mask at {seg}.",
    "Body parts: {body_parts}, contact mask: {seg}.",
)
OAFFORD_QUESTIONS = (
    "Segment the area on the {class_name} where the human is making direct contact in this image.",
    "Identify and mask the part of the {class_name} that the human is touching or interacting with in this scene.",
    "Show the contact points on the {class_name} where the human is physically connected to or interacting with it.",
    "Please provide a segmentation mask of the parts of the {class_name} that are in contact with the human.",
    "Highlight the areas on the {class_name} where there is physical interaction or contact with the human.",
)
OAFFORD_ANSWERS = (
    "It is {seg}.",
    "Sure, the object contact region is {seg}.",
    "Sure, the contact points on object is {seg}.",
    "Sure, the contact mask is {seg}.",
    "{seg}.",
)
OAFFORD_AFFORD_QUESTIONS = (
    "What type of affordance does the human-object interaction suggest? Then, segment the area on the {class_name} "
    "where the human is making contact.",
    "Describe the affordance provided by the interaction, and identify the part of the {class_name} that the human is "
    "touching or interacting with in this scene.",
    "Explain the affordance type shown by the contact points on the {class_name} where the human is physically "
    "connected. Then show the segmentation mask.",
    "Specify the affordance implied by the human's contact with the {class_name}, then provide a segmentation mask of "
    "the contact area.",
    "Describe the affordance associated with the physical interaction on the {class_name}, and highlight the contact "
    "areas with a segmentation mask.",
)
OAFFORD_AFFORD_ANSWERS = (
    "The affordance type is {affordance}, and the contact region is {seg}.",
    "This interaction suggests an affordance of {affordance}, and the object contact region is {seg}.",
    "The contact points indicate an affordance of {affordance}, with the mask at {seg}.",
    "This shows an affordance type of {affordance}, with contact at {seg}.",
    "Affordance: {affordance}, contact mask: {seg}.",
)
OAFFORD_AFFORD_OBJ_ANSWERS = (
    "The affordance type is {affordance} with {class_name}, and the contact region is {seg}.",
    "This interaction suggests an affordance of {affordance} with {class_name}, and the object contact region is {seg}.",
    "The contact points indicate an affordance of {affordance} with {class_name}, with the mask at {seg}.",
    "This shows an affordance type of {affordance} with {class_name}, with contact at {seg}.",
    "Affordance: {affordance} with {class_name}, contact mask: {seg}.",
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

# How an answer template's ``{pose}`` describes the person (SynthContact's ``pose_family``, and for lying its
# ``pose_info.mode``). Training answers that first say the pose and then the parts ("The person is lying on the
# back; the contact is at the torso, hips[HSEG]") let the state the mask is read from tell the back from the front:
# the part names alone do not, and a mask decoder fed the same words for both hedges at probability 0.5.
POSE_PHRASES = {
    "standing": "standing", "sitting": "sitting", "leaning": "leaning", "stepping": "stepping up",
    "kicking": "kicking", "holding": "holding", "lying": "lying",
    "lying/supine": "lying on the back", "lying/prone": "lying face down", "lying/side": "lying on one side",
}


# The opening turn (``InteractVLMConfig.opening_turn``): before the task question, the model is asked what the person
# is doing and answers it itself. The answer can then only come from the photo: in one turn that names the object
# first, a pose stated after the object's name was a lookup on the class (a held ball was "kicking" 70 times in 71,
# the only pose the ball is kicked in training), which no amount of training on seen combinations corrects.
OPENING_QUESTION = "What is the person doing?"
OPENING_ANSWER = "The person is {pose}."
# The opening answer of a model trained with ``opening_parts``: the pose and the parts the person's main interaction
# touches (SynthContact's primary object), still before any object is named. A task answer can then copy the parts it
# needs from the model's own reading of the photo instead of looking them up on the object's name: trained on
# ``OPENING_ANSWER``, a held ball (never held in training) got the parts balls get (a thigh, a foot) although the
# opening pose was right.
OPENING_ANSWER_WITH_PARTS = "The person is {pose}; the main contact is at the {body_parts}."
OPENING_TASKS = ("hcontact", "h2dcontact", "ocontact")  # the tasks about a person in the photo (not oafford)


def opening_answer(pose: str, body_parts: Sequence[str] | None = None) -> str:
    """The opening answer in words: the pose alone, or (``body_parts`` given and not empty) the pose and its parts."""
    if body_parts:
        return OPENING_ANSWER_WITH_PARTS.format(pose=pose, body_parts=", ".join(body_parts))
    return OPENING_ANSWER.format(pose=pose)


def opening_applies(opening_turn: bool, task: str) -> bool:
    """Whether a query of ``task`` starts with the opening turn, for a model (or dataset) with ``opening_turn``."""
    return bool(opening_turn) and task in OPENING_TASKS


def with_opening(opening: str | None, answer: str) -> str:
    """The text a query's prediction reports: the model's opening answer (if it was asked one), then its answer."""
    return answer if opening is None else f"{opening} {answer}"


def pose_phrase(family: str, info: dict | None = None) -> str:
    """The words for a pose family (and lying mode); a family this table does not know is used as it is."""
    mode = (info or {}).get("mode")
    return POSE_PHRASES.get(f"{family}/{mode}", POSE_PHRASES.get(family, family))


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
