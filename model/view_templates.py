"""The fixed multi-view SAM inputs of one template, ready for the model: preprocessed renders, camera vectors,
valid regions and the lifting operator; for 2D models, the photo as the one SAM input.

As in the original, SAM never sees the photo in a 3D model: its inputs are the same V renders of the body (or of
the object) for every query, and the photo reaches the mask decoder only through the seg-token prompt."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from model.sam import sam_preprocess
from model.lifting import Lifter
from utils.geometry.lifting_maps import LiftingMaps
from utils.geometry.template_views import TemplateViews, load_template
from utils.geometry.views import ViewSet, get_view_set


class ViewTemplate(nn.Module):
    """Everything the mask decoder and the lifting need about one template under one view set."""

    is_photo = False

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

    @property
    def num_views(self) -> int:
        return self.view_set.num_views

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

    @classmethod
    def from_files(cls, render_paths: list[str | Path], lift_map_paths: list[str | Path], view_set: str | ViewSet,
                   mask_size: int, sam_image_size: int, num_vertices: int, lift_mode: str = "soft",
                   name: str | None = None) -> "ViewTemplate":
        """A template from per-view files as the object datasets ship them: SAM renders (PNG) and per-view lifting
        files — ``p2pmap`` (key ``mapping``: nearest point per pixel) or ``p2vmap`` (``pixel_to_vertices_map`` +
        ``bary_coords_map``). Maps are subsampled at pixel centres to ``mask_size``."""
        view_set = get_view_set(view_set) if isinstance(view_set, str) else view_set
        if len(render_paths) != view_set.num_views or len(lift_map_paths) != view_set.num_views:
            raise ValueError(f"{name or render_paths}: need {view_set.num_views} renders and lifting files, "
                             f"got {len(render_paths)} and {len(lift_map_paths)}")
        renders, ids, weights = [], [], []
        for render_path, map_path in zip(render_paths, lift_map_paths):
            image = cv2.imread(str(render_path), cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(f"render missing or unreadable: {render_path}")
            renders.append(image[..., ::-1])
            with np.load(map_path) as data:
                if "mapping" in data:
                    vertex_ids = data["mapping"][..., None].astype(np.int32)
                    weight = (vertex_ids >= 0).astype(np.float32)
                elif "pixel_to_vertices_map" in data:
                    vertex_ids = data["pixel_to_vertices_map"].astype(np.int32)
                    weight = data["bary_coords_map"].astype(np.float32)
                else:
                    raise KeyError(f"{map_path}: expected 'mapping' (p2pmap) or 'pixel_to_vertices_map' (p2vmap), "
                                   f"found {sorted(data.keys())}")
            size = vertex_ids.shape[0]
            pick = (np.arange(mask_size) * size) // mask_size + size // (2 * mask_size)
            ids.append(vertex_ids[pick][:, pick])
            weights.append(weight[pick][:, pick])
        vertex_ids = np.stack(ids)
        vertex_ids = np.where((vertex_ids < 0).any(-1, keepdims=True), -1, vertex_ids)
        maps = LiftingMaps(vertex_ids, np.where(vertex_ids >= 0, np.stack(weights), 0).astype(np.float32),
                           int(num_vertices), view_set.view_names, str(lift_map_paths[0]))
        renders = np.stack(renders)
        small = np.stack([cv2.resize(r, (mask_size, mask_size), interpolation=cv2.INTER_AREA) for r in renders])
        views = TemplateViews(view_set.name, small, small, maps, {"kind": "files"})
        return cls(name or Path(render_paths[0]).stem, views, renders, view_set, lift_mode, sam_image_size,
                   source=None)

    def lift(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """``[B, V, M, M]`` logits → ``[B, N]`` per-vertex probabilities."""
        return self.lifter(mask_logits)


class PhotoTemplate(nn.Module):
    """The SAM input of a 2D contact model: the photo itself (V = 1, as in the original's 2D model), with nothing to lift.

    Unlike a :class:`ViewTemplate`, it changes with every query, so its SAM embedding is never cached; masks are
    returned in the photo's frame (``mask_size`` = the photo's ``(H, W)``, or the label size in training), after
    SAM's padding is cropped off.
    """

    is_photo = True
    num_views = 1
    num_vertices = 0
    source = None

    def __init__(self, pixel_values: torch.Tensor, input_size: tuple[int, int], mask_size: tuple[int, int],
                 name: str = "photo") -> None:
        super().__init__()
        if pixel_values.ndim != 4 or pixel_values.shape[0] != 1:
            raise ValueError(f"a photo template holds one SAM input [1, 3, S, S], got {tuple(pixel_values.shape)}")
        self.name = name
        self.input_size = tuple(int(x) for x in input_size)
        self.mask_size = tuple(int(x) for x in mask_size)
        self.register_buffer("pixel_values", pixel_values, persistent=False)
        self.register_buffer("cameras", torch.zeros(1, 5), persistent=False)  # no camera: the photo's own view

    @classmethod
    def from_image(cls, image: np.ndarray, sam_image_size: int, mask_size: tuple[int, int] | None = None,
                   name: str = "photo") -> "PhotoTemplate":
        """An RGB uint8 photo ``[H, W, 3]``; masks come back at ``mask_size`` (default: the photo's ``(H, W)``)."""
        pixel_values, sizes = sam_preprocess([image], sam_image_size)
        return cls(pixel_values, sizes[0], mask_size or tuple(np.asarray(image).shape[:2]), name)

    def lift(self, mask_logits: torch.Tensor) -> None:
        """2D predictions have no vertices."""
        return None
