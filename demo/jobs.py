"""What the demo works on: the inputs found (:class:`DemoInput`, :class:`Discovery`), the (image, object) jobs the
model answers (:class:`Job`), the answer to each of a job's queries (:class:`QueryResult`), and what became of each
input (:class:`RunReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demo.names import safe_name


@dataclass
class DemoInput:
    """One photo and the objects to ask about. ``name`` is the sample name used for its output folder."""

    name: str
    image_path: Path
    objects: list[str]
    mesh_path: Path | None = None
    frame_index: int | None = None

    def sample_name(self, obj: str) -> str:
        """Output name of the (image, object) result: the image's name, plus ``__<object>`` when it has several."""
        return self.name if len(self.objects) <= 1 else safe_name(f"{self.name}__{safe_name(obj)}")


@dataclass
class Discovery:
    """Samples found, inputs that cannot be run (``failed``: counted as failures) and entries ignored (``skipped``)."""

    inputs: list[DemoInput] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    input_dirs: list[Path] = field(default_factory=list)  # folders the demo must never write into


@dataclass
class Job:
    """One (image, object) sample to predict: ``image`` indexes the batch's images."""

    image: int
    sample: str
    object: str
    object_template: Any | None = None  # ViewTemplate of the object mesh
    object_mesh: tuple[np.ndarray, np.ndarray] | None = None
    object_template_dir: Path | None = None


@dataclass
class QueryResult:
    """The answer to one query of a job, ready to be written: the human side or the object side of a sample."""

    kind: str  # "human" or "object"
    object: str
    prompt: str
    text: str
    found_seg: bool
    vertex_probs: np.ndarray  # [N] float32 in [0, 1]
    mask_probs: np.ndarray  # [V, M, M] float32 in [0, 1]
    template_name: str
    overlays: np.ndarray  # [V, M, M, 3] uint8
    valid: np.ndarray  # [V, M, M] bool
    mesh_vertices: np.ndarray | None = None  # [N, 3] for the coloured mesh (None: mesh not available)
    mesh_faces: np.ndarray | None = None
    segmentation: dict[str, np.ndarray] | None = None  # body part → vertex ids
    notes: list[str] = field(default_factory=list)
    on_photo: bool = False  # a 2D prediction: mask_probs [1, H, W] on the photo, no vertices

    @property
    def values(self) -> np.ndarray:
        """The array a video smooths and stores per frame: the photo mask for 2D, else the vertex probabilities."""
        return self.mask_probs[0] if self.on_photo else self.vertex_probs


@dataclass
class RunReport:
    """Which samples succeeded, failed (with the reason) or were skipped: ``run_summary.json``."""

    ok: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"num_ok": len(self.ok), "num_failed": len(self.failed), "num_skipped": len(self.skipped),
                "ok": self.ok, "failed": [{"input": n, "reason": r} for n, r in self.failed],
                "skipped": [{"input": n, "reason": r} for n, r in self.skipped]}
