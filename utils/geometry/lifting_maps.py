"""Per-view pixel→vertex lookup tables ("lifting maps") and their files.

Two layouts are read:

* ours, ``lift_maps_{size}.npz``: ``face_ids [V,H,W] int32`` (−1 = background), ``bary [V,H,W,3] float32``,
  ``faces [F,3]``, ``num_vertices``, ``view_names`` — 4× smaller than the original's and exact;
* the original's ``pixel_to_vertex_map_{size}.npz`` + ``bary_coords_map_{size}.npz`` (dicts keyed by view name of
  ``[H,W,3]`` vertex ids / barycentric weights), so the official ``data/hcontact_vitruvian`` works unchanged;
* point clouds: per-view nearest-point maps (``[V,H,W]`` point index, the original's ``p2pmap_*.npz`` key ``mapping``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from utils.geometry.raycast import Fragments


@dataclass
class LiftingMaps:
    """``vertex_ids [V,H,W,K]`` (−1 = no vertex) and ``weights [V,H,W,K]`` for V views of one template.

    K = 3 for meshes (the three corners of the pixel's triangle, weighted by barycentrics) and 1 for point clouds
    (the nearest rasterised point, weight 1).
    """

    vertex_ids: np.ndarray
    weights: np.ndarray
    num_vertices: int
    view_names: tuple[str, ...]
    source: str = "<memory>"
    face_ids: np.ndarray | None = None  # [V,H,W] when built from a triangle mesh: lets us save 4x smaller files
    faces: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.vertex_ids.shape != self.weights.shape or self.vertex_ids.ndim != 4:
            raise ValueError(
                f"{self.source}: vertex-id maps {self.vertex_ids.shape} and weight maps {self.weights.shape} must both "
                "have shape [V, H, W, K]"
            )
        if len(self.view_names) != self.vertex_ids.shape[0]:
            raise ValueError(f"{self.source}: {len(self.view_names)} view names for {self.vertex_ids.shape[0]} views")
        if self.vertex_ids.max(initial=-1) >= self.num_vertices:
            raise ValueError(
                f"{self.source}: maps reference vertex {int(self.vertex_ids.max())} but the template has "
                f"{self.num_vertices} vertices (maps made for another body model?)"
            )

    @property
    def num_views(self) -> int:
        return self.vertex_ids.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.vertex_ids.shape[1], self.vertex_ids.shape[2]

    @property
    def foreground(self) -> np.ndarray:
        """``[V,H,W]`` pixels that see the template (the valid region of the SAM input)."""
        return (self.vertex_ids >= 0).all(axis=-1)

    @classmethod
    def from_fragments(cls, fragments: Sequence[Fragments], faces: np.ndarray, num_vertices: int, view_names: Sequence[str]) -> "LiftingMaps":
        face_ids = np.stack([f.face_ids for f in fragments])
        bary = np.stack([f.bary for f in fragments])
        return cls._from_faces(face_ids, bary, np.asarray(faces), num_vertices, tuple(view_names))

    @classmethod
    def from_point_maps(cls, point_ids: np.ndarray, num_points: int, view_names: Sequence[str], source: str = "<memory>") -> "LiftingMaps":
        point_ids = np.asarray(point_ids)
        if point_ids.ndim != 3:
            raise ValueError(f"{source}: expected nearest-point maps of shape [V, H, W], got {point_ids.shape}")
        ids = point_ids.astype(np.int32)[..., None]
        return cls(ids, (ids >= 0).astype(np.float32), int(num_points), tuple(view_names), source)

    @classmethod
    def _from_faces(cls, face_ids: np.ndarray, bary: np.ndarray, faces: np.ndarray, num_vertices: int, view_names: tuple[str, ...], source: str = "<memory>") -> "LiftingMaps":
        if face_ids.shape != bary.shape[:-1]:
            raise ValueError(f"{source}: face-id maps {face_ids.shape} and barycentric maps {bary.shape} do not match")
        fg = face_ids >= 0
        vertex_ids = np.full((*face_ids.shape, 3), -1, dtype=np.int32)
        vertex_ids[fg] = faces[face_ids[fg]]
        weights = np.where(fg[..., None], bary, 0.0).astype(np.float32)
        return cls(vertex_ids, weights, int(num_vertices), view_names, source, face_ids.astype(np.int32), faces)

    def save(self, path: str | Path) -> None:
        """Write our layout: triangle ids + barycentrics when the mesh is known, vertex-id tables otherwise."""
        common = dict(num_vertices=self.num_vertices, view_names=np.array(self.view_names))
        if self.face_ids is not None and self.faces is not None:
            np.savez_compressed(Path(path), face_ids=self.face_ids, bary=self.weights,
                                faces=np.asarray(self.faces, dtype=np.int32), **common)
        else:
            np.savez_compressed(Path(path), vertex_ids=self.vertex_ids, weights=self.weights, **common)

    @classmethod
    def load(cls, path: str | Path) -> "LiftingMaps":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"lifting maps not found: {path} (make them with `python -m preprocess_data.render_views`)")
        with np.load(path, allow_pickle=False) as data:
            names = tuple(str(n) for n in data["view_names"])
            if "face_ids" in data:
                return cls._from_faces(data["face_ids"], data["bary"], data["faces"], int(data["num_vertices"]), names, str(path))
            return cls(data["vertex_ids"], data["weights"], int(data["num_vertices"]), names, str(path))

    @staticmethod
    def official_files(folder: str | Path, size: int | None = None) -> tuple[Path, Path]:
        """The original's ``pixel_to_vertex_map_*.npz`` / ``bary_coords_map_*.npz`` pair in ``folder``: the one named
        for ``size`` if present, else the name the original always uses (``_1024``, whatever the arrays' size)."""
        folder = Path(folder)
        for tag in dict.fromkeys([size, 1024] if size else [1024]):
            p2v, bary = folder / f"pixel_to_vertex_map_{tag}.npz", folder / f"bary_coords_map_{tag}.npz"
            if p2v.is_file() and bary.is_file():
                return p2v, bary
        found = sorted(p.name for p in folder.glob("pixel_to_vertex_map_*.npz"))
        if len(found) == 1:
            tag = found[0].removeprefix("pixel_to_vertex_map_")
            if (folder / f"bary_coords_map_{tag}").is_file():
                return folder / found[0], folder / f"bary_coords_map_{tag}"
        raise FileNotFoundError(f"official lifting maps missing in {folder}: expected pixel_to_vertex_map_1024.npz and "
                                "bary_coords_map_1024.npz (they ship in the original data.zip)")

    @classmethod
    def official_size(cls, folder: str | Path, size: int | None = None) -> int:
        """Pixel size of an official map pair, read from its arrays (the file name does not tell it)."""
        p2v_path, _ = cls.official_files(folder, size)
        with np.load(p2v_path) as data:
            first = data[data.files[0]]
        return int(first.shape[0])

    @classmethod
    def load_official(cls, folder: str | Path, view_names: Sequence[str], num_vertices: int,
                      size: int | None = None) -> "LiftingMaps":
        """Read the original's ``pixel_to_vertex_map_*.npz`` / ``bary_coords_map_*.npz`` pair (dicts keyed by view).
        The size comes from the arrays; a requested ``size`` that differs is an error naming both."""
        folder = Path(folder)
        p2v_path, bary_path = cls.official_files(folder, size)
        ids, weights = [], []
        with np.load(p2v_path) as p2v, np.load(bary_path) as bary:
            for view in view_names:
                for p, data in ((p2v_path, p2v), (bary_path, bary)):
                    if view not in data:
                        raise KeyError(f"{p}: no entry for view {view!r} (has {sorted(data.keys())})")
                a, b = p2v[view], bary[view]
                n = a.shape[0]
                if a.shape != (n, n, 3) or b.shape != (n, n, 3):
                    raise ValueError(f"{folder}: view {view!r} maps have shapes {a.shape} (vertex ids) and {b.shape} "
                                     "(barycentrics); expected square (N, N, 3) arrays")
                if size is not None and n != size:
                    raise ValueError(f"{folder}: the official lifting maps are {n}×{n} (read from {p2v_path.name}'s "
                                     f"arrays), but size {size} was asked for; use mask size {n}")
                ids.append(a.astype(np.int32))
                weights.append(b.astype(np.float32))
        vertex_ids = np.stack(ids)
        outside = (vertex_ids < 0) | (vertex_ids >= num_vertices)
        vertex_ids = np.where(outside.any(-1, keepdims=True), -1, vertex_ids)
        weights = np.where(vertex_ids >= 0, np.stack(weights), 0.0).astype(np.float32)
        return cls(vertex_ids, weights, num_vertices, tuple(view_names), str(folder))
