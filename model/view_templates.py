"""The fixed multi-view SAM inputs of one template, ready for the model: preprocessed renders, camera vectors,
valid regions and the lifting operator (spec §1.5–1.7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.sam import sam_preprocess
from utils.geometry.lifting import Lifter
from utils.geometry.template_views import TemplateViews, load_template
from utils.geometry.views import ViewSet, get_view_set


class ViewTemplate(nn.Module):
    """Everything the mask decoder and the lifting need about one template under one view set."""

    def __init__(self, name: str, views: TemplateViews, sam_renders: np.ndarray, view_set: ViewSet, lift_mode: str,
                 sam_image_size: int, source: str | None = None) -> None:
        super().__init__()
        if views.maps.num_views != view_set.num_views or len(sam_renders) != view_set.num_views:
            raise ValueError(f"template {name!r} has {views.maps.num_views} views but view set {view_set.name} has {view_set.num_views}")
        self.name = name
        self.view_set = view_set
        self.source = source
        self.num_vertices = views.maps.num_vertices
        self.mask_size = views.maps.image_size
        pixel_values, sizes = sam_preprocess(list(sam_renders), sam_image_size)
        self.input_size = sizes[0]
        self.register_buffer("pixel_values", pixel_values, persistent=False)
        self.register_buffer("cameras", torch.from_numpy(view_set.camera_vectors()), persistent=False)
        self.register_buffer("valid", torch.from_numpy(views.valid), persistent=False)
        self.overlays = views.overlays  # numpy, for visualisation only
        self.lifter = Lifter(views.maps, lift_mode, input_is_logits=True)

    @classmethod
    def from_folder(cls, folder: str | Path, view_set: str | ViewSet, mask_size: int, sam_image_size: int, lift_mode: str = "soft",
                    name: str | None = None, num_vertices: int | None = None) -> "ViewTemplate":
        """Load a template folder (ours or an official one): maps at ``mask_size``, SAM renders at ``sam_image_size``
        when rendered at that size, else the 1024 renders (SAM's preprocessing resizes them)."""
        folder = Path(folder)
        view_set = get_view_set(view_set) if isinstance(view_set, str) else view_set
        views = load_template(folder, mask_size, view_set=view_set, num_vertices=num_vertices)
        render_size = sam_image_size if sam_image_size in views.metadata.get("sizes", []) else 1024
        renders = views.renders if render_size == mask_size else load_template(folder, render_size, view_set, num_vertices).renders
        return cls(name or folder.name, views, renders, view_set, lift_mode, sam_image_size, str(folder))

    def lift(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """``[B, V, M, M]`` logits → ``[B, N]`` per-vertex probabilities."""
        return self.lifter(mask_logits)
