"""The SAM input of each sample: the human body's view renders, an object's own renders, or (2D models) the photo.

Templates are built once and cached: each one's SAM embeddings are then computed once per object, not per sample."""

from __future__ import annotations

from pathlib import Path

from datasets.base import RELEASE_NUM_VERTICES
from datasets.collate import photo_template
from model.view_templates import PhotoTemplate, ViewTemplate
from utils.body_models import canonical_mesh, default_body_model_dir
from utils.geometry.template_views import render_template
from utils.geometry.views import get_view_set


def human_template_folder(dataset_dir: Path, template: str, view_set: str) -> Path:
    """Where the human SAM inputs of a body model live: ours (``data/templates/<body>/<view set>``) or the
    original's download (``data/hcontact_vitruvian[_mv2]``)."""
    ours = Path(dataset_dir) / "templates" / template / view_set
    if (ours / "template.json").is_file():
        return ours
    official = Path(dataset_dir) / get_view_set(view_set).folder
    if (official / "pixel_to_vertex_map_1024.npz").is_file():
        return official
    return ours


def ensure_human_template(dataset_dir: Path, config) -> ViewTemplate:
    """The human template of a config, rendering it first when it is ours and missing (cheap, resumable)."""
    folder = human_template_folder(dataset_dir, config.human_template, config.human_view_set)
    official = (folder / "pixel_to_vertex_map_1024.npz").is_file()
    if config.human_template == "synthbody" and not official:  # ours: render what is missing (resumable, seconds)
        body = canonical_mesh("synthbody", default_body_model_dir())
        render_template(folder, get_view_set(config.human_view_set), sorted({config.mask_size, config.sam_image_size}),
                        kind="body", vertices=body.vertices, faces=body.faces, name="synthbody")
    elif not (folder / "template.json").is_file() and not official:
        raise FileNotFoundError(
            f"no renders of {config.human_template} for {config.human_view_set} at {folder}: run "
            f"`python -m preprocess_data.render_views --template {config.human_template} --view-set {config.human_view_set} "
            f"--sizes 1024` (needs the licensed body model) or fetch the original data.zip")
    num_vertices = RELEASE_NUM_VERTICES if config.human_template in ("smpl", "smplh") else None
    return ViewTemplate.from_folder(folder, config.human_view_set, config.mask_size, config.sam_image_size,
                                    config.human_lift_mode, name="human", num_vertices=num_vertices)


_OBJECT_TEMPLATES: dict[str, ViewTemplate] = {}


def check_model_kind(model, key: str) -> None:
    """2D samples need a 2D model and vice versa: a mismatch would train or score the wrong SAM input silently."""
    if (key == "image") != bool(model.config.contact_2d):
        need, have = ("a 2D", "a 3D") if key == "image" else ("a 3D", "a 2D")
        raise ValueError(f"{key!r} samples need {need} model (config.contact_2d={key == 'image'}), but this is {have} "
                         f"model; use a 2D recipe/model for h2dcontact data and a 3D one for template data")


def sample_template(model, key: str, meta: dict | None = None, num_vertices: int | None = None,
                    photo: PhotoTemplate | None = None) -> ViewTemplate | PhotoTemplate:
    """``"human"``, ``"image"`` (a 2D sample: its photo, from the collated ``photo`` input), a template folder, or an
    object sample's per-view files (``meta["render_paths"]`` and ``meta["lift_map_paths"]``), cached per object so
    each one's SAM embeddings are computed once."""
    check_model_kind(model, key)
    if key == "image":
        if photo is None:
            raise ValueError("a 2D sample needs its photo's SAM input (the Collator's `photos` entry)")
        return photo.to(model.device)
    if key == "human":
        return model.template("human")
    files = tuple((meta or {}).get("lift_map_paths", ()))
    cache_key = files or key
    if cache_key not in _OBJECT_TEMPLATES:
        config = model.config
        if files:
            point_maps = "p2pmap" in Path(files[0]).name
            template = ViewTemplate.from_files(meta["render_paths"], files, config.object_view_set, config.mask_size,
                                               config.sam_image_size, num_vertices,
                                               "soft" if point_maps else config.object_lift_mode)
        else:
            template = ViewTemplate.from_folder(key, config.object_view_set, config.mask_size, config.sam_image_size,
                                                config.object_lift_mode)
        _OBJECT_TEMPLATES[cache_key] = template.to(model.device)
    return _OBJECT_TEMPLATES[cache_key]


def query_template(model, sample: dict) -> ViewTemplate | PhotoTemplate:
    """A sample's SAM input at generation time; 2D masks come back at the size of the sample's target mask."""
    key = sample["template"] or "human"
    photo = photo_template(sample, model.config.sam_image_size) if key == "image" else None
    return sample_template(model, key, sample.get("meta"),
                           None if sample["vertex_labels"] is None else len(sample["vertex_labels"]), photo)
