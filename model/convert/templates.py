"""The original's human template folders (``data/hcontact_vitruvian[_mv2]``) rewritten as ours, so that a converted
model directory describes its template itself."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from model.convert.errors import ConversionError
from model.interactvlm import InteractVLMForCausalLM
from model.view_templates import ViewTemplate
from utils.body_models import BODY_MODEL_FILES
from utils.geometry.lifting_maps import LiftingMaps
from utils.geometry.template_views import FORMAT_VERSION, load_template, maps_path, render_path
from utils.geometry.views import get_view_set


def import_official_template(folder: Path, view_set: str, num_vertices: int, target: Path) -> Path:
    """An official ``hcontact_vitruvian[_mv2]`` folder (renders + the ``_1024``-named npz map pair, any size) as one
    of our template folders (``template.json``, ``lift_maps_{size}.npz``)."""
    views_of = get_view_set(view_set)
    size = LiftingMaps.official_size(folder)
    views = load_template(folder, size, view_set=views_of, num_vertices=num_vertices)
    target.mkdir(parents=True, exist_ok=True)
    views.maps.save(maps_path(target, size))
    for i, view in enumerate(views_of.view_names):
        for shader, images in (("norm", views.renders), ("blue", views.overlays)):
            path = render_path(target, "body", shader, view, size)
            if not cv2.imwrite(str(path), np.ascontiguousarray(images[i][..., ::-1])):
                raise ConversionError(f"could not write {path}")
    meta = {"format_version": FORMAT_VERSION, "name": folder.name, "kind": "body", "view_set": views_of.name,
            "view_names": list(views_of.view_names), "num_vertices": int(num_vertices), "mesh_hash": None,
            "camera_vectors": views_of.camera_vectors().round(6).tolist(), "sizes": [size],
            "source": f"official template folder {folder}"}
    (target / "template.json").write_text(json.dumps(meta, indent=1))
    return target


def attach_human_template(model: InteractVLMForCausalLM, human_template: str | Path, report: dict) -> None:
    """Give the converted model its human template: one of ours as it is, an official folder after rewriting it
    (into a temporary folder; ``save_interactvlm`` copies it into the model directory)."""
    config = model.config
    folder = Path(human_template)
    if not (folder / "template.json").is_file():
        num_vertices = BODY_MODEL_FILES[config.human_template].num_vertices
        folder = import_official_template(folder, config.human_view_set, num_vertices,
                                          Path(tempfile.mkdtemp(prefix="ivlm_template_")))
        report["human_template_format"] = "official (maps size read from the arrays)"
    model.add_template("human", ViewTemplate.from_folder(
        folder, config.human_view_set, config.mask_size, config.sam_image_size, config.human_lift_mode, name="human"))
    report["human_template"] = str(human_template)
