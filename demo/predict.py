"""The model side of the demo: check and load a model directory, and answer a batch of jobs in one batched
``generate_contact`` call (CLIP runs once per image; all objects of an image are asked together)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from demo.errors import DemoError
from demo.jobs import Job, QueryResult
from demo.meshes import BodyAssets, ObjectTemplates
from demo.modes import ModeSpec, QuerySpec, question_for, query_specs
from model.io import ModelDirError, check_model_dir, load_interactvlm, read_training_objects
from utils.body_models import default_body_model_dir
from utils.conversation import with_opening
from utils.paths import default_data_dir

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def require_model_dir(model_dir: Path) -> None:
    """Check a model directory (config, weights, no pickle-only checkpoint) before anything is written; one clear
    :class:`DemoError` per problem."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise DemoError(
            f"model directory {model_dir} not found (no config.json). The bundled models "
            "trained_models/interactvlm-tiny-synthcontact-opening-parts (3D) and interactvlm-tiny-2d-synthcontact (2D) "
            "are made by `bash scripts/run_train.sh synth-tiny-joint-opening-parts-object` / `synth-tiny-2d` (README, model zoo); "
            "for other models see trained_models/README.md, or pass --model DIR")
    try:
        check_model_dir(model_dir)
    except ModelDirError as err:
        raise DemoError(str(err)) from err


def model_kind(config) -> str:
    """``"2d"`` for a model that segments contact on the photo itself, ``"3d"`` for multi-view template models.

    3D models decode V template renders and lift the masks to vertices; a 2D model (``config.contact_2d``, like the
    original's interactvlm-2d-hcontact) segments the photo itself.
    """
    return "2d" if getattr(config, "contact_2d", False) else "3d"


def _check_kind(mode: ModeSpec, kind: str, model_dir: Path, config) -> None:
    if mode.two_d and kind != "2d":
        raise DemoError(
            f"mode {mode.name} needs a 2D contact model (SAM on the photo itself, like the original "
            f"interactvlm-2d-hcontact), but {model_dir} is a 3D model (model kind '3d': preset "
            f"{config.preset}, human template {config.human_template}, {config.num_views} rendered views "
            f"{config.human_view_set}). Run mode hcontact with this model, or pass --model with a 2D model.")
    if kind == "2d" and not mode.two_d:
        raise DemoError(
            f"{model_dir} is a 2D contact model (it segments the photo; there are no vertices, meshes or "
            f"object templates), but mode {mode.name} needs a 3D model. Run mode h2dcontact with it, or pass "
            "--model with a 3D model.")


class DemoRunner:
    """Model + tokenizer + templates, and the batched prediction of a list of jobs."""

    def __init__(self, model_dir: str | Path, mode: ModeSpec, device: str = "cpu", dtype: str = "float32",
                 max_new_tokens: int = 128, body_model_dir: Path | None = None, data_dir: Path | None = None,
                 load_in_8bit: bool = False, load_in_4bit: bool = False, cache_dir: Path | None | bool = True,
                 progress: bool = True) -> None:
        self.model_dir = Path(model_dir)
        self.mode = mode
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.notes: list[str] = []
        require_model_dir(self.model_dir)
        try:
            config = check_model_dir(self.model_dir)
        except ModelDirError as err:
            raise DemoError(str(err)) from err
        self.training_objects = read_training_objects(self.model_dir)
        self.model_kind = model_kind(config)
        _check_kind(mode, self.model_kind, self.model_dir, config)
        self._load(TORCH_DTYPES[dtype], load_in_8bit, load_in_4bit, cache_dir)
        self.config = self.model.config
        self._warm_view_embeddings()
        self.body = BodyAssets(str(self.config.human_template), self.model_dir,
                               Path(body_model_dir) if body_model_dir else default_body_model_dir(),
                               Path(data_dir) if data_dir else default_data_dir(), self.notes)
        self.human_template = None
        if mode.two_d:  # no vertices to score, but the answers name body parts
            self.body.segmentation = self.body.load_segmentation()[0]
        elif mode.human:
            self.human_template = self.model.template("human")
            self.body.load_for_template(self.human_template.num_vertices)
        self.object_templates = ObjectTemplates(self.config, self.model.device, progress)

    def _load(self, dtype: torch.dtype, load_in_8bit: bool, load_in_4bit: bool, cache_dir) -> None:
        try:
            self.model, self.tokenizer = load_interactvlm(self.model_dir, device=self.device, dtype=dtype,
                                                          load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit,
                                                          cache_dir=cache_dir)
        except ModelDirError as err:
            raise DemoError(str(err)) from err
        except (RuntimeError, ValueError, OSError) as err:
            raise DemoError(f"could not load the model from {self.model_dir}: {err}") from err

    def _warm_view_embeddings(self) -> None:
        """Warm the human template's view embeddings: from the model's shipped ``view_embeddings/`` when they match
        the encoder exactly, else computed once and kept in the user cache folder (never in the model folder)."""
        cache = self.model.view_cache
        if "human" in self.model.templates:
            self.model.view_embeddings(self.model.template("human"))
        if cache.write_errors:
            self.notes.append(f"view-embedding cache not writable ({cache.write_errors[0]}); kept in memory")
            cache.cache_dir = None

    @property
    def model_name(self) -> str:
        return self.model_dir.resolve().name

    def object_template(self, mesh_path: Path, render_dir: Path):
        """``(ViewTemplate, vertices, faces, folder)`` of an object mesh (see :class:`demo.meshes.ObjectTemplates`)."""
        return self.object_templates.get(mesh_path, render_dir)

    def smplx_transfer(self, probs: np.ndarray) -> np.ndarray | None:
        return self.body.smplx_transfer(probs)

    # -------------------------------------------------------------- prediction
    def predict(self, images: list[np.ndarray], jobs: list[Job]) -> list[list[QueryResult]]:
        """All queries of all jobs in one ``generate_contact`` call; per job its results, the human one first."""
        specs = query_specs(self.mode)
        asks, templates, owners = [], [], []
        for j, job in enumerate(jobs):
            for spec in specs:
                template = self.human_template if spec.kind == "human" else job.object_template
                if template is None and not self.mode.two_d:  # 2D: the model segments the photo itself
                    raise DemoError(f"{job.sample}: no {spec.kind} template")
                asks.append({"image": job.image, "question": question_for(spec, job.object), "task": spec.task})
                templates.append(template)
                owners.append((j, spec))
        prompts = self.model.contact_prompts(self.tokenizer, images, asks, max_new_tokens=self.max_new_tokens)
        queries = [{"image": ask["image"], "prompt": prompt, "template": template}
                   for ask, (prompt, _), template in zip(asks, prompts, templates)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*no seg token.*")
            predictions = self.model.generate_contact(self.tokenizer, images, queries, max_new_tokens=self.max_new_tokens)
        results: list[list[QueryResult]] = [[] for _ in jobs]
        for (j, spec), ask, (_, opening), template, pred in zip(owners, asks, prompts, templates, predictions):
            results[j].append(self._result(jobs[j], spec, template, pred, images[jobs[j].image], ask["question"],
                                           with_opening(opening, pred.text)))
        return results

    def _result(self, job: Job, spec: QuerySpec, template, pred, image: np.ndarray, question: str,
                text: str) -> QueryResult:
        """One prediction as a :class:`QueryResult`: on the photo (2D) or on the body / object template (3D)."""
        probs = pred.vertex_probs.float().cpu().numpy() if pred.vertex_probs is not None else np.zeros(0, np.float32)
        masks = pred.mask_logits.float().sigmoid().cpu().numpy().astype(np.float32)
        common = dict(kind=spec.kind, object=job.object, prompt=question, text=text, found_seg=bool(pred.found_seg),
                      mask_probs=masks)
        if pred.is_2d:
            return QueryResult(**common, vertex_probs=probs, template_name="photo", overlays=image[None],
                               valid=np.ones(masks.shape, bool), segmentation=self.body.segmentation, on_photo=True)
        if spec.kind == "human":
            mesh, seg, name = self.body.mesh, self.body.segmentation, self.body.name
        else:
            mesh, seg, name = job.object_mesh, None, f"object:{job.object}"
        return QueryResult(**common, vertex_probs=np.clip(probs, 0.0, 1.0).astype(np.float32), template_name=name,
                           overlays=np.asarray(template.overlays), valid=template.valid.cpu().numpy().astype(bool),
                           mesh_vertices=None if mesh is None else mesh[0], mesh_faces=None if mesh is None else mesh[1],
                           segmentation=seg)
