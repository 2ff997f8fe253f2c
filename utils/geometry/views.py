"""Registry of the fixed multi-view camera sets (original ``HUMAN_VIEW_DICT`` / ``OBJS_VIEW_DICT``).

A released checkpoint was trained with one of these sets: its camera encoder saw exactly these normalised vectors and
its mask decoder saw renders from exactly these cameras, so the numbers and the view *order* must not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from utils.geometry.cameras import ViewSpec

HUMAN_VIEW_ORDER = ("topfront", "bottomfront", "topback", "bottomback")
OBJECT_VIEW_ORDER = ("frontleft", "frontright", "backleft", "backright")

_HUMAN_VIEWS = (
    ViewSpec("topfront", 2.0, 45.0, 315.0, 0.0, 0.0),
    ViewSpec("bottomfront", 2.0, 315.0, 315.0, 0.0, 0.3),
    ViewSpec("topback", 2.0, 45.0, 135.0, 0.0, 0.0),
    ViewSpec("bottomback", 2.0, 315.0, 135.0, 0.0, 0.3),
)
# The original scripts index lights in the order topfront, topback, bottomfront, bottomback with
# [0,0,3], [0,0,-3], [0,0,-3], [0,0,3]; re-keyed by view name here so the order of a tuple cannot shift them.
_HUMAN_LIGHTS = {"topfront": (0.0, 0.0, 3.0), "topback": (0.0, 0.0, -3.0), "bottomfront": (0.0, 0.0, -3.0), "bottomback": (0.0, 0.0, 3.0)}


def _object_views(dist: float) -> tuple[ViewSpec, ...]:
    return (
        ViewSpec("frontleft", dist, 45.0, 315.0),
        ViewSpec("frontright", dist, 45.0, 45.0),
        ViewSpec("backleft", dist, 330.0, 135.0),
        ViewSpec("backright", dist, 330.0, 225.0),
    )


_OBJECT_LIGHTS = {"frontleft": (0.0, 0.0, 3.0), "frontright": (0.0, 0.0, 3.0), "backleft": (0.0, 0.0, -3.0), "backright": (0.0, 0.0, -3.0)}


@dataclass(frozen=True)
class ViewSet:
    """A named set of V views plus what the original stores beside it.

    ``views`` are the cameras whose normalised vectors condition the model. ``render_views`` are the cameras the SAM
    inputs are rendered with; they differ only for the object sets with mesh renders (rendered at distance 1.5 but
    conditioned with 2), one of the original's conditioning mismatches we keep for weight compatibility but make
    explicit.
    """

    name: str
    kind: str  # "human" or "object"
    views: tuple[ViewSpec, ...]
    folder: str
    min_vertices: int = 3
    mask_size: int = 1024
    lights: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    render_view_override: tuple[ViewSpec, ...] | None = None

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.views)

    @property
    def num_views(self) -> int:
        return len(self.views)

    @property
    def render_views(self) -> tuple[ViewSpec, ...]:
        return self.render_view_override or self.views

    def camera_vectors(self) -> np.ndarray:
        """``[V, 5]`` normalised camera vectors in view order."""
        return np.stack([v.normalized_vector() for v in self.views])

    def light_location(self, view_name: str) -> np.ndarray:
        return np.asarray(self.lights.get(view_name, (0.0, 0.0, 3.0)), dtype=float)


VIEW_SETS: dict[str, ViewSet] = {}


def register_view_set(view_set: ViewSet) -> ViewSet:
    if view_set.name in VIEW_SETS:
        raise ValueError(f"view set {view_set.name!r} is already registered")
    VIEW_SETS[view_set.name] = view_set
    return view_set


def get_view_set(name: str) -> ViewSet:
    try:
        return VIEW_SETS[name]
    except KeyError:
        raise KeyError(f"unknown view set {name!r}; known: {', '.join(sorted(VIEW_SETS))}") from None


register_view_set(ViewSet("4MV-Z_Vitru", "human", _HUMAN_VIEWS, "hcontact_vitruvian", 3, lights=_HUMAN_LIGHTS))
register_view_set(ViewSet("4MV-Z_Vitru_mv2", "human", _HUMAN_VIEWS, "hcontact_vitruvian_mv2", 2, lights=_HUMAN_LIGHTS))
# The original's hcontact-wScene training config names "4MV-Z_Vitru_wScene", which its view dictionary never defines;
# "4MV-Z_Vitru_FootGround" is the set it meant. We register the intended one only.
register_view_set(ViewSet("4MV-Z_Vitru_FootGround", "human", _HUMAN_VIEWS, "hcontact_vitruvian", 3, lights=_HUMAN_LIGHTS))
register_view_set(ViewSet("4MV-Z_HM", "object", _object_views(2.0), "rendered_points_heatmap_1025", 3, lights=_OBJECT_LIGHTS))
register_view_set(
    ViewSet(
        "4MV-Z_HM_BM", "object", _object_views(2.0), "rendered_points_heatmap_1025", 3, lights=_OBJECT_LIGHTS,
        render_view_override=_object_views(1.5),
    )
)
# Mesh renders conditioned with the distance they were actually rendered at (new training; not weight-compatible).
register_view_set(ViewSet("4MV-Z_Mesh_d1.5", "object", _object_views(1.5), "object_mesh_views", 3, lights=_OBJECT_LIGHTS))
