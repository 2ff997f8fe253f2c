"""The one dataset class every reader derives from (the original has four near-copies of one contact dataset).

A reader only says *where things are*: :meth:`ContactDataset.build_records` turns the release's index files into a
list of :class:`Record` (once, at construction), and :meth:`ContactDataset.vertex_labels` reads a record's per-vertex
(or per-point) labels. Everything else is shared here:

* sample ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``: the question/answer template, the body-part
  dropout and any candidate order come from :func:`sample_rng`, never from a global RNG, and no list is shuffled in
  place;
* a missing or malformed file raises an error naming the file and what was expected in it; a sample never silently
  becomes another sample (the original fell back to ``__getitem__(0)``);
* masks are float32 ``[V, M, M]``: 1 / 0 inside the template's valid region (or soft heat values for affordances),
  −1 outside, where the valid region is the human template's (``valid_mask``) or the non-white pixels of the
  object's own renders.

The sample dict (see :meth:`ContactDataset.__getitem__`) is what :class:`datasets.collate.Collator` consumes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.io import (DatasetFormatError, load_pickle, read_image, read_mask, read_render_valid, resize_nearest,
                         split_meta_lines)
from utils.body_models import BODY_MODEL_FILES
from utils.conversation import OPENING_QUESTION, make_qa, opening_answer, opening_applies, pose_phrase, seg_token_for
from utils.geometry.projection import MASK_IGNORE_LABEL
from utils.geometry.template_views import load_template
from utils.geometry.views import ViewSet, get_view_set

TASKS = ("hcontact", "h2dcontact", "oafford", "ocontact", "vqa")
HUMAN_TASKS = ("hcontact", "h2dcontact")
OBJECT_TASKS = ("oafford", "ocontact")
RELEASE_NUM_VERTICES = BODY_MODEL_FILES["smplh"].num_vertices
"""Vertex count of every human label in the original's releases (SMPL / SMPL-H topology, 6890)."""


def sample_rng(seed: int, epoch: int, index: int, salt: str = "") -> random.Random:
    """A ``random.Random`` determined by ``(seed, epoch, index, salt)`` alone (string seeds are hashed with SHA-512,
    so the stream does not depend on ``PYTHONHASHSEED``, the process or the DataLoader worker)."""
    return random.Random(f"{int(seed)}/{int(epoch)}/{int(index)}/{salt}")


@dataclass(frozen=True)
class Record:
    """One sample as found in the index files; nothing is read from disk until ``__getitem__``.

    ``mask_paths`` holds the V label PNGs (one for 2D data). ``render_paths`` holds the V object renders whose
    non-white pixels are the valid region (empty for the human template, whose valid region is passed in).
    ``labels`` is reader-specific (vertex ids, a file path, …) and only interpreted by the reader's
    :meth:`ContactDataset.vertex_labels`. ``candidates`` lists alternative label sources tried in order by readers
    that have them (object affordance: ranked point clouds).
    """

    image_path: Path
    class_name: str = ""
    body_parts: tuple[str, ...] = ()
    affordance: str | None = None
    mask_paths: tuple[Path, ...] = ()
    render_paths: tuple[Path, ...] = ()
    soft_masks: bool = False
    template: str | None = "human"
    labels: Any = None
    candidates: tuple[Any, ...] = ()
    conversation: tuple[tuple[str, str], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    pose: str | None = None  # the person's pose in words, for answer templates with {pose} (SynthContact only)


def pose_of(meta: Mapping[str, Any]) -> str | None:
    """One ``meta.jsonl`` entry's pose in words (:func:`utils.conversation.pose_phrase`); None without a pose family."""
    return pose_phrase(meta["pose_family"], meta.get("pose_info")) if "pose_family" in meta else None


def read_pose_phrases(root: Path) -> dict[str, str]:
    """``{stem: pose in words}`` from a SynthContact split's ``meta.jsonl`` (``pose_family``, ``pose_info``); empty
    where the split has no such file (DAMON and the other real datasets say nothing about the pose)."""
    path = Path(root) / "meta.jsonl"
    if not path.is_file():
        return {}
    phrases = {}
    for _, meta in split_meta_lines(path):
        pose = pose_of(meta)
        if "stem" in meta and pose is not None:
            phrases[meta["stem"]] = pose
    return phrases


def read_primary_parts(root: Path) -> dict[str, tuple[str, ...]]:
    """``{stem: body parts}`` of each image's main interaction in a SynthContact split: the parts touching its
    ``primary_object`` (``meta.jsonl``), from ``body_parts_objectwise.pkl`` (the opening answer of ``opening_parts``)."""
    meta_path, parts_path = Path(root) / "meta.jsonl", Path(root) / "body_parts_objectwise.pkl"
    for path in (meta_path, parts_path):
        if not path.is_file():
            raise DatasetFormatError(f"{path} is missing: an opening answer that names the parts (opening_parts) "
                                     f"needs SynthContact's meta.jsonl and body_parts_objectwise.pkl")
    parts = load_pickle(parts_path, 'a dict "<stem>_<object>" -> body part names')
    primary = {}
    for number, meta in split_meta_lines(meta_path):
        if "primary_object" not in meta:
            raise DatasetFormatError(f"{meta_path}, line {number}: no primary_object (SynthContact format 2 has one)")
        primary[meta["stem"]] = tuple(parts.get(f"{meta['stem']}_{meta['primary_object']}", ()))
    return primary


class ContactDataset(torch.utils.data.Dataset):
    """Base of every reader. Subclasses set ``task`` / ``default_question_type`` and implement ``build_records``.

    Args:
        dataset_dir: the data root (the folder that holds ``damon/``, ``lemon/``, …); never the working directory.
        split: split name as used in the release's file names (readers map ``train``/``test`` where they differ).
        name: dataset name reported in every sample (``damon``, ``synthcontact``, ``piad_seen``, …).
        question_type: template family (``parts``/``simple`` for humans, ``afford``/``afford_obj``/``simple`` for
            affordances); ``None`` = the reader's released default.
        body_part_dropout: probability (training only) of switching a ``parts`` sample to the ``simple`` templates.
        opening_parts: with ``opening_turn``, the opening answer also names the parts of the image's main interaction
            (``utils.conversation.OPENING_ANSWER_WITH_PARTS``; SynthContact only).
        token_type: ``Gen`` ([SEG]) or ``Gen-Hu-Obj`` ([HSEG]/[OSEG]).
        seed: base of the per-sample RNG; :meth:`set_epoch` supplies the epoch.
        training: random templates + dropout when True; the first (inference) template when False.
            Default: ``split == "train"``.
        mask_size: resize masks (nearest) to this size when reading (2D masks: their longest side, keeping the
            photo's aspect ratio); ``None`` keeps the files' size.
        valid_mask: the human template's valid region, ``[V, H, W]`` bool or a template folder (ours or an official
            ``hcontact_vitruvian``); pixels outside become −1. ``None`` = every pixel valid (no ignore region).
        load_masks: read the label PNGs (False for readers used only for their text / vertex labels).
    """

    task: str = ""
    default_question_type: str = "parts"

    def __init__(
        self,
        dataset_dir: str | Path,
        split: str,
        *,
        name: str,
        question_type: str | None = None,
        body_part_dropout: float = 0.0,
        token_type: str = "Gen",
        seed: int = 0,
        training: bool | None = None,
        mask_size: int | None = None,
        valid_mask: np.ndarray | str | Path | None = None,
        load_masks: bool = True,
        answer_template: str | None = None,
        opening_turn: bool = False,
        opening_parts: bool = False,
    ) -> None:
        if self.task not in TASKS:
            raise TypeError(f"{type(self).__name__}.task must be one of {TASKS}, got {self.task!r}")
        if not 0.0 <= body_part_dropout <= 1.0:
            raise ValueError(f"body_part_dropout must be in [0, 1], got {body_part_dropout}")
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        self.name = name
        self.question_type = question_type or self.default_question_type
        self.body_part_dropout = float(body_part_dropout)
        self.token_type = token_type
        self.seed = int(seed)
        self.answer_template = answer_template
        self.opening_turn = bool(opening_turn)
        self.opening_parts = bool(opening_parts)
        self._primary_parts: dict[Path, dict[str, tuple[str, ...]]] = {}  # split root -> read_primary_parts
        self.epoch = 0
        self.training = (split == "train") if training is None else bool(training)
        self.mask_size = mask_size
        self.load_masks = load_masks
        self._valid_source = valid_mask
        self._valid_cache: dict[tuple[int, int], np.ndarray] = {}
        if isinstance(valid_mask, np.ndarray):
            if valid_mask.ndim != 3:
                raise ValueError(f"valid_mask must be [V, H, W], got shape {valid_mask.shape}")
            self._valid_cache[valid_mask.shape[-2:]] = valid_mask.astype(bool)
        self.records: list[Record] = list(self.build_records())
        if not self.records:
            raise DatasetFormatError(f"{self.describe()}: no usable samples under {self.root} ({self.empty_hint()})")

    # ------------------------------------------------------------------ reader hooks
    @property
    def root(self) -> Path:
        """The reader's own folder (``dataset_dir/damon/train`` …); used in messages."""
        return self.dataset_dir

    def build_records(self) -> list[Record]:
        raise NotImplementedError

    def vertex_labels(self, record: Record) -> np.ndarray | None:
        """float32 ``[N]`` per-vertex (per-point) labels of the record, or None."""
        return None

    def choose_candidate(self, record: Record, rng: random.Random) -> Record:
        """Readers with several label sources per sample (ranked point clouds) return the record to use."""
        return record

    def num_views(self) -> int | None:
        return None

    def empty_hint(self) -> str:
        return "check the split name and that the masks were generated"

    def describe(self) -> str:
        return f"{type(self).__name__}({self.name!r}, split={self.split!r})"

    # ------------------------------------------------------------------ Dataset protocol
    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Templates and dropout change with the epoch. DataLoader workers hold copies of the dataset, so call this
        before creating the epoch's DataLoader (or use non-persistent workers)."""
        self.epoch = int(epoch)

    def rng(self, index: int, salt: str = "") -> random.Random:
        return sample_rng(self.seed, self.epoch, index, f"{self.name}/{self.split}/{salt}")

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.describe()}: index {index} out of range for {len(self)} samples")
        index = index % len(self)
        rng = self.rng(index)
        record = self.choose_candidate(self.records[index], rng)
        sample: dict[str, Any] = {
            "image_path": str(record.image_path),
            "image": read_image(record.image_path),
            "task": self.task,
            "dataset": self.name,
            "class_name": record.class_name,
            "body_parts": list(record.body_parts),
            "template": record.template,
            "masks": None,
            "vertex_labels": None,
            "meta": {**record.meta, "index": index, "split": self.split, "epoch": self.epoch},
        }
        if self.task == "vqa":
            conversation = [tuple(turn) for turn in record.conversation]
        else:
            conversation = [self.question_answer(record, rng)]
            if opening_applies(self.opening_turn, self.task):
                conversation.insert(0, (OPENING_QUESTION, self.opening_answer(record)))
            if self.load_masks and record.mask_paths:
                sample["masks"] = self.read_masks(record)
            sample["vertex_labels"] = self.vertex_labels(record)
            if record.affordance is not None:
                sample["meta"]["affordance"] = record.affordance
        sample["conversation"] = conversation
        # the task's own turn (after the opening turn, if any): what generation asks and scoring compares against
        sample["question"], sample["answer"] = conversation[-1] if self.task != "vqa" else conversation[0]
        return sample

    # ------------------------------------------------------------------ text
    def question_answer(self, record: Record, rng: random.Random) -> tuple[str, str]:
        question_type = self.question_type
        drop = rng.random() < self.body_part_dropout  # always drawn: template choice does not depend on the rate
        if self.training and drop and self.task in HUMAN_TASKS:
            question_type = "simple"
        qa = make_qa(self.task, record.class_name, question_type, body_parts=list(record.body_parts),
                     affordance=record.affordance, token_type=self.token_type, rng=rng if self.training else None)
        needs_parts = "{body_parts}" in (self.answer_template or "")
        parts_allowed = question_type == "parts" or self.task not in HUMAN_TASKS  # object questions never name parts
        if self.answer_template and (not needs_parts or (parts_allowed and record.body_parts)):
            # one fixed answer whose seg token follows a word that depends on the sample (the last body part, the
            # object's name) instead of a fixed " ": see training.recipes, synth-tiny-joint
            pose = self.record_pose(record, f"the answer template {self.answer_template!r}") \
                if "{pose}" in self.answer_template else ""
            return qa.question, self.answer_template.format(
                body_parts=", ".join(record.body_parts), class_name=record.class_name.lower(),
                affordance=record.affordance or "", pose=pose, seg=seg_token_for(self.task, self.token_type))
        return qa.question, qa.answer

    def opening_answer(self, record: Record) -> str:
        """The training answer to the opening question: the pose, and with ``opening_parts`` the parts the image's
        main interaction touches (read once per split from the image's own folder)."""
        pose = self.record_pose(record)
        if not self.opening_parts:
            return opening_answer(pose)
        root = record.image_path.parent.parent  # <split>/images/<stem>.jpg
        if root not in self._primary_parts:
            self._primary_parts[root] = read_primary_parts(root)
        stem = record.image_path.stem
        if stem not in self._primary_parts[root]:
            raise DatasetFormatError(f"{root / 'meta.jsonl'}: no entry for {record.image_path.name} (opening_parts)")
        return opening_answer(pose, self._primary_parts[root][stem])

    def record_pose(self, record: Record, what: str = "the opening turn (opening_turn)") -> str:
        """The words for the record's pose; data that has none (only SynthContact's meta.jsonl gives one) is an error
        naming the image, never an empty pose in a training answer."""
        if record.pose is None:
            raise DatasetFormatError(
                f"{self.describe()}: {what} says the person's pose, but {record.image_path.name} has none (only "
                f"SynthContact's meta.jsonl gives one: its pose_family)")
        return record.pose

    # ------------------------------------------------------------------ masks
    def read_masks(self, record: Record) -> np.ndarray:
        """float32 ``[V, M, M]`` with −1 outside the valid region."""
        masks = [read_mask(p, soft=record.soft_masks) for p in record.mask_paths]
        shapes = {m.shape for m in masks}
        if len(shapes) != 1:
            detail = ", ".join(f"{p.name}: {m.shape}" for p, m in zip(record.mask_paths, masks))
            raise DatasetFormatError(f"{record.mask_paths[0].parent}: the views' masks differ in size ({detail})")
        stack = np.stack(masks)
        if self.mask_size is not None:
            stack = resize_nearest(stack, self.mask_shape(stack.shape[-2:]))
        valid = self._valid_region(record, stack.shape[-2:])
        if valid is not None:
            if valid.shape != stack.shape:
                raise DatasetFormatError(
                    f"{record.mask_paths[0]}: {len(stack)} masks but the valid region has {valid.shape[0]} views"
                )
            stack = np.where(valid, stack, np.float32(MASK_IGNORE_LABEL)).astype(np.float32)
        return stack

    def mask_shape(self, file_shape: tuple[int, int]) -> tuple[int, int]:
        """Training size of masks read at ``file_shape``: square ``mask_size`` (template renders are square)."""
        return (self.mask_size, self.mask_size)

    def _valid_region(self, record: Record, size: tuple[int, int]) -> np.ndarray | None:
        if record.render_paths:
            return resize_nearest(np.stack([read_render_valid(p) for p in record.render_paths]), size)
        if record.template != "human" or self._valid_source is None:
            return None
        size = tuple(size)
        if size not in self._valid_cache:
            self._valid_cache[size] = resize_nearest(self._load_human_valid(size), size)
        return self._valid_cache[size]

    def _load_human_valid(self, size: tuple[int, int]) -> np.ndarray:
        if self._valid_cache:  # an array was given (or another size was loaded): resize the largest one
            return max(self._valid_cache.values(), key=lambda v: v.shape[-1])
        folder = Path(self._valid_source)
        meta_path = folder / "template.json"
        view_set = self.template_view_set()
        if not meta_path.is_file():  # an official hcontact_vitruvian folder: 1024 maps, no metadata
            return load_template(folder, 1024, view_set=view_set, num_vertices=self.template_num_vertices()).valid
        sizes = json.loads(meta_path.read_text()).get("sizes", [])
        views = load_template(folder, size[-1] if size[-1] in sizes else max(sizes, default=1024))
        # human view sets differ in mask rules, not cameras: accept any template rendered from the same cameras
        if view_set is not None and (
            tuple(views.metadata.get("view_names", ())) != view_set.view_names
            or not np.allclose(views.metadata.get("camera_vectors"), view_set.camera_vectors(), atol=1e-5)
        ):
            raise ValueError(f"{folder} was rendered for view set {views.view_set!r}, whose cameras differ from "
                             f"{view_set.name!r} of {self.describe()}")
        return views.valid

    def template_view_set(self):
        return None

    def template_num_vertices(self) -> int | None:
        return None


def dense_labels(vertex_ids: Sequence[int] | np.ndarray, num_vertices: int, source: Path | str) -> np.ndarray:
    """Vertex-id list → float32 0/1 vector of length ``num_vertices`` (ids out of range name the file)."""
    ids = np.asarray(vertex_ids).reshape(-1)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        if np.issubdtype(ids.dtype, np.floating) and np.all(ids == np.round(ids)):
            ids = ids.astype(np.int64)
        else:
            raise DatasetFormatError(f"{source}: expected integer vertex ids, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= num_vertices):
        raise DatasetFormatError(
            f"{source}: vertex id {int(ids.max())} out of range for a {num_vertices}-vertex body (wrong num_vertices?)"
        )
    labels = np.zeros(num_vertices, dtype=np.float32)
    labels[ids.astype(np.int64)] = 1.0
    return labels


def dense_vector(value: Any, num_vertices: int, source: Path | str, what: str) -> np.ndarray:
    """A per-vertex array of length ``num_vertices`` (nonzero = contact) → float32 0/1."""
    try:
        arr = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as err:
        raise DatasetFormatError(f"{source}: expected {what} as a numeric array, got {type(value).__name__}") from err
    if arr.shape[0] != num_vertices:
        raise DatasetFormatError(f"{source}: expected {what} of length {num_vertices}, got {arr.shape[0]}")
    return (arr != 0).astype(np.float32)


class HumanContactDataset(ContactDataset):
    """Readers whose masks are rendered on the body (DAMON, SynthContact, LEMON human, RICH): the human view set,
    the body's vertex count and the mask folder are set up here once."""

    task = "hcontact"
    default_question_type = "parts"

    def __init__(self, dataset_dir: str | Path, split: str = "train", *, view_set: str | ViewSet = "4MV-Z_Vitru_mv2",
                 num_vertices: int = RELEASE_NUM_VERTICES, mask_folder: str | None = None, name: str,
                 **options) -> None:
        self.view_set = get_view_set(view_set) if isinstance(view_set, str) else view_set
        if self.view_set.kind != "human":
            raise ValueError(f"{self.view_set.name} is an object view set; {name} masks are rendered on the body")
        self.num_vertices = int(num_vertices)
        self.mask_folder = mask_folder or self.view_set.folder
        self.skipped: dict[str, int] = {}
        super().__init__(dataset_dir, split, name=name, **options)

    def template_view_set(self):
        return self.view_set

    def template_num_vertices(self) -> int:
        return self.num_vertices

    def num_views(self) -> int:
        return self.view_set.num_views
