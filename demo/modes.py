"""The demo's modes and the questions each one asks.

Every mode has its own branch. The original's demo differs in three ways we do not repeat: it saves
``hcontact-wScene`` results through its object branch (here: human contact with the object word ``scene``, saved as
human contact), it lifts the object masks of ``hcontact-ocontact`` with the human maps (here: each query is lifted
with its own template), and its object prompt carries stray quotes (here: the first template of each question list
of :mod:`utils.conversation`, so prompts are deterministic and clean).
"""

from __future__ import annotations

from dataclasses import dataclass

from demo.errors import DemoError
from utils.conversation import make_qa


@dataclass(frozen=True)
class ModeSpec:
    """What one mode asks and needs."""

    name: str
    description: str
    human: bool = True  # ask the human-contact question on the body template
    object_task: str | None = None  # "oafford" / "ocontact": ask an object question on the object mesh template
    forced_object: str | None = None  # object word used regardless of the file name (wScene: "scene")
    two_d: bool = False  # 2D contact on the photo (needs a 2D model)

    @property
    def needs_mesh(self) -> bool:
        return self.object_task is not None


MODES: dict[str, ModeSpec] = {m.name: m for m in (
    ModeSpec("hcontact", "3D human contact with the named object, per body vertex"),
    ModeSpec("hcontact-wScene", "3D human contact with the scene / ground (object word 'scene')", forced_object="scene"),
    ModeSpec("h2dcontact", "2D human contact mask on the photo (needs a 2D model)", two_d=True),
    ModeSpec("oafford", "object affordance: contact region on the object mesh", human=False, object_task="oafford"),
    ModeSpec("ocontact", "object contact region on the object mesh", human=False, object_task="ocontact"),
    ModeSpec("hcontact-ocontact", "human contact on the body and object contact on the mesh, per sample",
             object_task="ocontact"),
)}


def get_mode(name: str) -> ModeSpec:
    """The mode called ``name``, or a :class:`DemoError` listing the modes."""
    if name not in MODES:
        listing = "\n".join(f"  {m.name:<18} {m.description}" for m in MODES.values())
        raise DemoError(f"unknown mode {name!r}; choose one of:\n{listing}")
    return MODES[name]


@dataclass(frozen=True)
class QuerySpec:
    """One question of a mode: on which template (``human`` / ``object``), for which task and question list."""

    kind: str
    task: str
    question_type: str


def query_specs(mode: ModeSpec) -> list[QuerySpec]:
    """The questions of ``mode``, the human one first."""
    specs = []
    if mode.two_d:  # "parts", the 2D training default, so the answer names body parts (the original's demo asked
        specs.append(QuerySpec("human", "h2dcontact", "parts"))  # the "simple" question)
    elif mode.human:
        specs.append(QuerySpec("human", "hcontact", "parts"))  # the original's first "parts" question
    if mode.object_task == "oafford":
        specs.append(QuerySpec("object", "oafford", "afford"))  # first "afford" question, without the stray quotes
    elif mode.object_task == "ocontact":
        specs.append(QuerySpec("object", "ocontact", "simple"))
    return specs


def question_for(spec: QuerySpec, obj: str) -> str:
    """The question of one query: deterministic (first template). ``InteractVLMForCausalLM.contact_prompts`` turns it
    into the model's prompt (with the opening turn, for models trained with one)."""
    return make_qa(spec.task, obj, spec.question_type, with_answer=False).question
