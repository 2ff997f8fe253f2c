"""The demo's library side: modes, prompts, model + templates, batched prediction and temporal smoothing.

``run_demo.py`` is the command line; inputs are found by :mod:`utils.demo_io` and written by :mod:`utils.demo_outputs`.
Differences from the original demo (spec §7, §11.1 items 7–8) are deliberate fixes:

* every mode has its own branch: ``hcontact-wScene`` is human contact with the object word ``scene`` and is saved as
  human contact; ``hcontact-ocontact`` asks a human and an object query, each lifted with *its own* template;
* prompts are the deterministic first templates of ``utils.conversation`` (no stray quotes);
* masks are thresholded as probabilities, with the same threshold as the per-vertex contact.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utils.demo_outputs import PartResult
from utils.paths import default_data_dir


class DemoError(RuntimeError):
    """A problem with the whole run (mode, model, output folder) rather than with one input."""


@dataclass(frozen=True)
class ModeSpec:
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
    if name not in MODES:
        listing = "\n".join(f"  {m.name:<18} {m.description}" for m in MODES.values())
        raise DemoError(f"unknown mode {name!r}; choose one of:\n{listing}")
    return MODES[name]


def model_kind(config) -> str:
    """``"2d"`` for a model that segments contact on the photo itself, ``"3d"`` for multi-view template models.

    3D models decode V template renders and lift the masks to vertices; a 2D model (``config.contact_2d``, like the
    original's interactvlm-2d-hcontact) segments the photo itself.
    """
    return "2d" if getattr(config, "contact_2d", False) else "3d"


def synthetic_only(config) -> bool:
    return getattr(config, "human_template", None) == "synthbody"


def training_note(model_name: str, config) -> str:
    if synthetic_only(config):
        return (f"The model '{model_name}' is trained on synthetic data only (SynthContact: a procedural body, "
                "'synthbody', with primitive objects). On real photos its output exercises the pipeline; it is not a "
                "meaningful contact estimate.")
    return f"Model '{model_name}' (human template {getattr(config, 'human_template', '?')})."


# ---------------------------------------------------------------------------------------------------------- prompts

@dataclass(frozen=True)
class QuerySpec:
    kind: str  # "human" / "object"
    task: str
    question_type: str


def query_specs(mode: ModeSpec) -> list[QuerySpec]:
    specs = []
    if mode.two_d:  # "parts" (the 2D training default, spec §2) so the answer names body parts; the original demo
        specs.append(QuerySpec("human", "h2dcontact", "parts"))  # asked the "simple" question
    elif mode.human:
        specs.append(QuerySpec("human", "hcontact", "parts"))  # the original's first "parts" question
    if mode.object_task == "oafford":
        specs.append(QuerySpec("object", "oafford", "afford"))  # first "afford" question, without the stray quotes
    elif mode.object_task == "ocontact":
        specs.append(QuerySpec("object", "ocontact", "simple"))
    return specs


def prompt_for(spec: QuerySpec, obj: str, config) -> tuple[str, str]:
    """(question, full prompt) for one query: deterministic (first template), ends at ``ASSISTANT:``."""
    from utils.chat_prompt import chat_prompt
    from utils.conversation import make_qa

    question = make_qa(spec.task, obj, spec.question_type, with_answer=False).question
    return question, chat_prompt(config, question)


# ---------------------------------------------------------------------------------------------------------- runner

@dataclass
class Job:
    """One (image, object) sample to predict: ``image`` indexes the batch's images."""

    image: int
    sample: str
    object: str
    object_template: Any | None = None  # ViewTemplate of the object mesh
    object_mesh: tuple[np.ndarray, np.ndarray] | None = None
    object_template_dir: Path | None = None


def segmentation_path(template: str, model_dir: Path, body_model_dir: Path, data_dir: Path) -> Path | None:
    """The part segmentation of the body template: one shipped with the model, else the repository's."""
    candidates = [model_dir / "templates" / "human" / "part_segmentation.json"]
    if template == "synthbody":
        candidates.append(body_model_dir / "synthbody" / "synthbody_segmentation.json")
    elif template in ("smpl", "smplh"):
        candidates += [data_dir / "smpl_segmentation_merged.pkl", data_dir / "smpl_segmentation_merged.json"]
    return next((c for c in candidates if c.is_file()), None)


def require_model_dir(model_dir: Path) -> None:
    """Check a model directory (config, weights, no pickle-only checkpoint) before anything is written; one clear
    :class:`DemoError` per problem."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise DemoError(
            f"model directory {model_dir} not found (no config.json). The bundled models "
            "trained_models/interactvlm-tiny-synthcontact (3D) and interactvlm-tiny-2d-synthcontact (2D) are "
            "made by `bash scripts/run_train.sh synth-tiny` / `synth-tiny-2d`; "
            "for other models see trained_models/README.md, or pass --model DIR")
    from model.io import ModelDirError, check_model_dir

    try:
        check_model_dir(model_dir)
    except ModelDirError as err:
        raise DemoError(str(err)) from err


def vocabulary_note(obj: str, vocabulary: list[str] | None) -> tuple[bool | None, str | None]:
    """Whether ``obj`` is among the objects the model was trained on (``None``: the model does not record them), and
    the note the summary carries when it is not: the model then answers with confidence about a word it never saw."""
    if vocabulary is None:
        return None, None
    known = {v.replace("_", " ") for v in vocabulary}
    if obj.replace("_", " ") in known:
        return True, None
    listing = ", ".join(sorted(vocabulary)[:20]) + (" …" if len(vocabulary) > 20 else "")
    return False, (f"the object {obj!r} is outside this model's training vocabulary ({listing}); its answer is an "
                   "extrapolation, not a trained estimate")


class DemoRunner:
    """Model + tokenizer + templates, and the batched prediction of a list of jobs."""

    def __init__(self, model_dir: str | Path, mode: ModeSpec, device: str = "cpu", dtype: str = "float32",
                 max_new_tokens: int = 128, body_model_dir: Path | None = None, data_dir: Path | None = None,
                 load_in_8bit: bool = False, load_in_4bit: bool = False, cache_dir: Path | None | bool = True,
                 progress: bool = True) -> None:
        import torch

        from model.io import ModelDirError, check_model_dir, load_interactvlm, read_training_objects
        from utils.body_models import default_body_model_dir

        self.model_dir = Path(model_dir)
        self.mode = mode
        self.max_new_tokens = max_new_tokens
        self.body_model_dir = Path(body_model_dir) if body_model_dir else default_body_model_dir()
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.notes: list[str] = []
        self.progress = progress
        require_model_dir(self.model_dir)
        try:
            config = check_model_dir(self.model_dir)
        except ModelDirError as err:
            raise DemoError(str(err)) from err
        self.training_objects = read_training_objects(self.model_dir)
        kind = model_kind(config)
        if mode.two_d and kind != "2d":
            raise DemoError(
                f"mode {mode.name} needs a 2D contact model (SAM on the photo itself, like the original "
                f"interactvlm-2d-hcontact), but {self.model_dir} is a 3D model (model kind '3d': preset "
                f"{config.preset}, human template {config.human_template}, {config.num_views} rendered views "
                f"{config.human_view_set}). Run mode hcontact with this model, or pass --model with a 2D model.")
        if kind == "2d" and not mode.two_d:
            raise DemoError(
                f"{self.model_dir} is a 2D contact model (it segments the photo; there are no vertices, meshes or "
                f"object templates), but mode {mode.name} needs a 3D model. Run mode h2dcontact with it, or pass "
                "--model with a 3D model.")
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        self.device = device
        try:
            self.model, self.tokenizer = load_interactvlm(self.model_dir, device=device, dtype=torch_dtype,
                                                          load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit,
                                                          cache_dir=cache_dir)
        except ModelDirError as err:
            raise DemoError(str(err)) from err
        except (RuntimeError, ValueError, OSError) as err:
            raise DemoError(f"could not load the model from {self.model_dir}: {err}") from err
        self.config = self.model.config
        self.model_kind = kind
        self._freeze_embedding_cache()
        self.human_template = None
        self.body_mesh: tuple[np.ndarray, np.ndarray] | None = None
        self.segmentation: dict[str, np.ndarray] | None = None
        self.human_template_name = str(self.config.human_template)
        if mode.two_d:  # no vertices to score, but the answers name body parts
            self.segmentation = self._load_segmentation()[0]
        elif mode.human:
            self.human_template = self.model.template("human")
            self._load_body()
        self._object_templates: dict[str, tuple[Any, np.ndarray, np.ndarray, Path]] = {}

    # -------------------------------------------------------------- setup
    def _freeze_embedding_cache(self) -> None:
        """Warm the human template's view embeddings: from the model's shipped ``view_embeddings/`` when they match
        the encoder exactly, else computed once and kept in the user cache folder (never in the model folder)."""
        cache = self.model.view_cache
        if "human" in self.model.templates:
            self.model.view_embeddings(self.model.template("human"))
        if cache.write_errors:
            self.notes.append(f"view-embedding cache not writable ({cache.write_errors[0]}); kept in memory")
            cache.cache_dir = None

    def _load_body(self) -> None:
        from utils.body_models import canonical_mesh

        name, n = self.human_template_name, self.human_template.num_vertices
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning
                warnings.simplefilter("ignore")
                mesh = canonical_mesh(name, self.body_model_dir)
            if len(mesh.vertices) != n:
                self.notes.append(f"the {name} body mesh has {len(mesh.vertices)} vertices but the template {n}; "
                                  "no coloured body mesh is written")
            else:
                self.body_mesh = (np.asarray(mesh.vertices), np.asarray(mesh.faces))
        except (FileNotFoundError, ValueError, ImportError) as err:
            self.notes.append(f"no coloured body mesh: {err}")
        seg, path = self._load_segmentation()
        if seg is not None and any(len(ids) and ids.max() >= n for ids in seg.values()):
            self.notes.append(f"part segmentation {path} does not fit the {n}-vertex template: body parts not reported")
            return
        self.segmentation = seg

    def _load_segmentation(self) -> tuple[dict[str, np.ndarray] | None, Path | None]:
        """The body template's part segmentation (3D: per-part scores; 2D: the part names its answers use), or None
        with a note saying why."""
        from utils.body_models import load_part_segmentation

        name = self.human_template_name
        path = segmentation_path(name, self.model_dir, self.body_model_dir, self.data_dir)
        if path is None:
            self.notes.append(f"no part segmentation for body template {name!r}: body parts are not reported")
            return None, None
        try:
            return load_part_segmentation(path), path
        except (OSError, ValueError) as err:
            self.notes.append(f"part segmentation {path} unreadable ({err}): body parts are not reported")
            return None, path

    @property
    def model_name(self) -> str:
        return self.model_dir.resolve().name

    def object_template(self, mesh_path: Path, render_dir: Path):
        """``(ViewTemplate, vertices, faces, folder)`` of an object mesh, rendered once per mesh content and run.

        The renders go to ``render_dir`` (inside the sample's output folder), never next to the input mesh.
        """
        import hashlib

        from model.view_templates import ViewTemplate
        from utils.geometry.mesh_io import load_mesh_file
        from utils.geometry.normalize import normalize_mesh_vertices
        from utils.geometry.template_views import render_template
        from utils.geometry.views import get_view_set

        try:  # raises FileNotFoundError / ValueError with the reason
            vertices, faces = load_mesh_file(mesh_path)
        except ValueError as err:
            if "no faces" not in str(err):
                raise
            raise ValueError(f"{mesh_path}: the object mesh has no faces (a point cloud?); the demo's object modes "
                             "need a triangle mesh: pass --object-mesh with a mesh file that has faces (.obj, .ply, "
                             ".glb, .off, .stl) or put one at <sample>/object_mesh.obj") from None
        key = hashlib.sha256(vertices.tobytes() + faces.tobytes()).hexdigest()[:16]
        if key in self._object_templates:
            return self._object_templates[key]
        cfg = self.config
        view_set = get_view_set(cfg.object_view_set)
        sizes = sorted({int(cfg.mask_size), int(cfg.sam_image_size)})
        kwargs = dict(kind="object", vertices=normalize_mesh_vertices(vertices), faces=faces, name=Path(mesh_path).stem)
        try:
            render_template(render_dir, view_set, sizes, progress=self.progress, **kwargs)
        except FileExistsError:  # an older render of another mesh in that folder
            render_template(render_dir, view_set, sizes, overwrite=True, progress=self.progress, **kwargs)
        template = ViewTemplate.from_folder(render_dir, view_set, cfg.mask_size, cfg.sam_image_size,
                                            cfg.object_lift_mode, name="object")
        template.to(self.model.device)
        self._object_templates[key] = (template, vertices, faces, render_dir)
        return self._object_templates[key]

    # -------------------------------------------------------------- prediction
    def predict(self, images: list[np.ndarray], jobs: list[Job]) -> list[list[PartResult]]:
        """All queries of all jobs in one ``generate_contact`` call (CLIP runs once per image)."""
        specs = query_specs(self.mode)
        queries, owners = [], []
        for j, job in enumerate(jobs):
            for spec in specs:
                _, prompt = prompt_for(spec, job.object, self.config)
                template = self.human_template if spec.kind == "human" else job.object_template
                if template is None and not self.mode.two_d:  # 2D: the model segments the photo itself
                    raise DemoError(f"{job.sample}: no {spec.kind} template")
                queries.append({"image": job.image, "prompt": prompt, "template": template})
                owners.append((j, spec))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*no seg token.*")
            predictions = self.model.generate_contact(self.tokenizer, images, queries, max_new_tokens=self.max_new_tokens)
        results: list[list[PartResult]] = [[] for _ in jobs]
        for (j, spec), query, pred in zip(owners, queries, predictions):
            job = jobs[j]
            template = query["template"]
            probs = pred.vertex_probs.float().cpu().numpy() if pred.vertex_probs is not None else np.zeros(0, np.float32)
            masks = pred.mask_logits.float().sigmoid().cpu().numpy()
            question = prompt_for(spec, job.object, self.config)[0]
            if pred.is_2d:
                results[j].append(PartResult(
                    kind=spec.kind, object=job.object, prompt=question, text=pred.text, found_seg=bool(pred.found_seg),
                    vertex_probs=probs, mask_probs=masks.astype(np.float32), template_name="photo",
                    overlays=images[job.image][None], valid=np.ones(masks.shape, bool), segmentation=self.segmentation,
                    on_photo=True))
                continue
            if spec.kind == "human":
                mesh, seg, name = self.body_mesh, self.segmentation, self.human_template_name
            else:
                mesh, seg, name = job.object_mesh, None, f"object:{job.object}"
            results[j].append(PartResult(
                kind=spec.kind, object=job.object, prompt=question, text=pred.text, found_seg=bool(pred.found_seg),
                vertex_probs=np.clip(probs, 0.0, 1.0).astype(np.float32), mask_probs=masks.astype(np.float32),
                template_name=name, overlays=np.asarray(template.overlays), valid=template.valid.cpu().numpy().astype(bool),
                mesh_vertices=None if mesh is None else mesh[0], mesh_faces=None if mesh is None else mesh[1],
                segmentation=seg))
        return results

    def smplx_transfer(self, probs: np.ndarray) -> np.ndarray | None:
        """SMPL-X per-vertex contact for SMPL-topology bodies when ``data/smpl_to_smplx.pkl`` exists."""
        from utils.body_models import BODY_MODEL_FILES, transfer_contact_smpl_to_smplx

        path = self.data_dir / "smpl_to_smplx.pkl"
        if len(probs) != BODY_MODEL_FILES["smpl"].num_vertices or not path.is_file():
            return None
        return transfer_contact_smpl_to_smplx(probs, path).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------- video

@dataclass
class _Item:
    payload: Any
    values: dict[str, tuple[np.ndarray, float]]  # name -> (array, weight); weight 0 = no prediction in this frame


class TemporalSmoother:
    """Streaming smoothing of per-frame arrays (vertex probabilities, mask probabilities).

    ``method="window"``: centred moving average over ``k`` frames (needs ``k // 2`` frames of look-ahead, so frames
    come out with that delay; :meth:`flush` releases the rest). ``method="ema"``: causal exponential moving average
    with ``alpha = 2 / (k + 1)``. Frames whose answer had no seg token have weight 0: they are filled from their
    neighbours instead of pulling the average to zero. Memory holds at most ``k`` frames.
    """

    def __init__(self, k: int, method: str = "window") -> None:
        if method not in ("window", "ema"):
            raise ValueError(f"unknown smoothing method {method!r}; use 'window' or 'ema'")
        self.k, self.method = max(1, int(k)), method
        self.before, self.after = (self.k - 1) // 2, self.k // 2
        self.items: list[_Item] = []
        self.offset = 0  # frame index of items[0]
        self.next = 0  # next frame index to emit
        self.state: dict[str, np.ndarray] = {}
        self.alpha = 2.0 / (self.k + 1.0)

    def push(self, payload: Any, values: dict[str, tuple[np.ndarray, float]]) -> list[tuple[Any, dict[str, np.ndarray]]]:
        if self.k == 1:
            return [(payload, {n: v for n, (v, _) in values.items()})]
        if self.method == "ema":
            out = {}
            for name, (value, weight) in values.items():
                prev = self.state.get(name)
                if weight > 0:
                    self.state[name] = value if prev is None else self.alpha * value + (1 - self.alpha) * prev
                out[name] = self.state.get(name, value)
            return [(payload, out)]
        self.items.append(_Item(payload, values))
        ready = []
        while self.next + self.after < self.offset + len(self.items):
            ready.append(self._emit(self.next))
            self.next += 1
            self._drop()
        return ready

    def flush(self) -> list[tuple[Any, dict[str, np.ndarray]]]:
        ready = []
        while self.next < self.offset + len(self.items):
            ready.append(self._emit(self.next))
            self.next += 1
        self.items, self.offset = [], self.next
        return ready

    def _drop(self) -> None:
        while self.items and self.offset < self.next - self.before:
            self.items.pop(0)
            self.offset += 1

    def _emit(self, index: int) -> tuple[Any, dict[str, np.ndarray]]:
        lo, hi = max(index - self.before, self.offset), min(index + self.after, self.offset + len(self.items) - 1)
        window = self.items[lo - self.offset: hi - self.offset + 1]
        item = self.items[index - self.offset]
        out = {}
        for name, (value, _) in item.values.items():
            weights = np.array([w.values[name][1] if name in w.values else 0.0 for w in window])
            if weights.sum() <= 0:
                out[name] = value
                continue
            total = sum(w.values[name][0].astype(np.float64) * wt for w, wt in zip(window, weights) if wt > 0)
            out[name] = (total / weights.sum()).astype(value.dtype)
        return item.payload, out


@dataclass
class RunReport:
    ok: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"num_ok": len(self.ok), "num_failed": len(self.failed), "num_skipped": len(self.skipped),
                "ok": self.ok, "failed": [{"input": n, "reason": r} for n, r in self.failed],
                "skipped": [{"input": n, "reason": r} for n, r in self.skipped]}
