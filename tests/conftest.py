"""Shared fixtures: the synthetic body's template folder and a randomly initialised tiny model."""

from __future__ import annotations

import pytest
import torch

from model.config import build_config
from model.interactvlm import InteractVLMForCausalLM
from model.io import attach_tokenizer
from model.tokenizer import build_tiny_tokenizer
from model.view_templates import ViewTemplate
from utils.body_models import canonical_mesh, default_body_model_dir
from utils.geometry.template_views import render_template
from utils.geometry.views import get_view_set


@pytest.fixture(scope="session")
def synthbody_template_128(tmp_path_factory):
    """Template folder of the synthetic body under 4MV-Z_Vitru_mv2 at 128 px (the tiny preset's SAM/mask size)."""
    folder = tmp_path_factory.mktemp("synthbody_128")
    body = canonical_mesh("synthbody", default_body_model_dir())
    render_template(folder, get_view_set("4MV-Z_Vitru_mv2"), [128], kind="body", vertices=body.vertices,
                    faces=body.faces, name="synthbody")
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


def make_tiny_model(tokenizer, template_folder, seed: int = 0, **overrides) -> InteractVLMForCausalLM:
    torch.manual_seed(seed)
    config = build_config("tiny", **overrides)
    attach_tokenizer(config, tokenizer)
    model = InteractVLMForCausalLM(config).eval()
    model.add_template("human", ViewTemplate.from_folder(template_folder, config.human_view_set, config.mask_size,
                                                         config.sam_image_size, config.human_lift_mode, name="human"))
    return model


@pytest.fixture()
def tiny_model(tiny_tokenizer, synthbody_template_128):
    return make_tiny_model(tiny_tokenizer, synthbody_template_128)


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    """Caches written by the code under test (view embeddings, geodesics) go to a temporary folder, not ~/.cache."""
    import os

    if os.environ.get("INTERACTVLM_CACHE"):
        yield
        return
    os.environ["INTERACTVLM_CACHE"] = str(tmp_path_factory.mktemp("interactvlm_cache"))
    try:
        yield
    finally:
        os.environ.pop("INTERACTVLM_CACHE", None)
