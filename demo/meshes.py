"""The meshes the demo colours: the canonical body with its part segmentation, and the user's object meshes,
rendered into view templates the model segments."""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from pathlib import Path

import numpy as np

from model.view_templates import ViewTemplate
from utils.body_models import BODY_MODEL_FILES, canonical_mesh, load_part_segmentation, transfer_contact_smpl_to_smplx
from utils.geometry.mesh_io import load_mesh_file
from utils.geometry.normalize import normalize_mesh_vertices
from utils.geometry.template_views import render_template
from utils.geometry.views import get_view_set


def segmentation_path(template: str, model_dir: Path, body_model_dir: Path, data_dir: Path) -> Path | None:
    """The part segmentation of the body template: one shipped with the model, else the repository's."""
    candidates = [model_dir / "templates" / "human" / "part_segmentation.json"]
    if template == "synthbody":
        candidates.append(body_model_dir / "synthbody" / "synthbody_segmentation.json")
    elif template in ("smpl", "smplh"):
        candidates += [data_dir / "smpl_segmentation_merged.pkl", data_dir / "smpl_segmentation_merged.json"]
    return next((c for c in candidates if c.is_file()), None)


class BodyAssets:
    """The body template's mesh (for the coloured body) and part segmentation (for per-part scores); what is
    missing is said in ``notes`` instead of failing the run."""

    def __init__(self, name: str, model_dir: Path, body_model_dir: Path, data_dir: Path, notes: list[str]) -> None:
        self.name, self.model_dir, self.body_model_dir, self.data_dir = name, model_dir, body_model_dir, data_dir
        self.notes = notes  # shared with the runner: every note reaches the summaries
        self.mesh: tuple[np.ndarray, np.ndarray] | None = None
        self.segmentation: dict[str, np.ndarray] | None = None

    def load_segmentation(self) -> tuple[dict[str, np.ndarray] | None, Path | None]:
        """The part segmentation (3D: per-part scores; 2D: the part names its answers use), or None with a note
        saying why."""
        path = segmentation_path(self.name, self.model_dir, self.body_model_dir, self.data_dir)
        if path is None:
            self.notes.append(f"no part segmentation for body template {self.name!r}: body parts are not reported")
            return None, None
        try:
            return load_part_segmentation(path), path
        except (OSError, ValueError) as err:
            self.notes.append(f"part segmentation {path} unreadable ({err}): body parts are not reported")
            return None, path

    def load_for_template(self, num_vertices: int) -> None:
        """Mesh and segmentation of a body template with ``num_vertices`` vertices (a mismatch: a note, no mesh)."""
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning
                warnings.simplefilter("ignore")
                mesh = canonical_mesh(self.name, self.body_model_dir)
            if len(mesh.vertices) != num_vertices:
                self.notes.append(f"the {self.name} body mesh has {len(mesh.vertices)} vertices but the template "
                                  f"{num_vertices}; no coloured body mesh is written")
            else:
                self.mesh = (np.asarray(mesh.vertices), np.asarray(mesh.faces))
        except (FileNotFoundError, ValueError, ImportError) as err:
            self.notes.append(f"no coloured body mesh: {err}")
        seg, path = self.load_segmentation()
        if seg is not None and any(len(ids) and ids.max() >= num_vertices for ids in seg.values()):
            self.notes.append(f"part segmentation {path} does not fit the {num_vertices}-vertex template: body parts "
                              "not reported")
            return
        self.segmentation = seg

    def smplx_transfer(self, probs: np.ndarray) -> np.ndarray | None:
        """SMPL-X per-vertex contact for SMPL-topology bodies when ``data/smpl_to_smplx.pkl`` exists."""
        path = self.data_dir / "smpl_to_smplx.pkl"
        if len(probs) != BODY_MODEL_FILES["smpl"].num_vertices or not path.is_file():
            return None
        return transfer_contact_smpl_to_smplx(probs, path).astype(np.float32)


def _read_object_mesh(mesh_path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:  # raises FileNotFoundError / ValueError with the reason
        return load_mesh_file(mesh_path)
    except ValueError as err:
        if "no faces" not in str(err):
            raise
        raise ValueError(f"{mesh_path}: the object mesh has no faces (a point cloud?); the demo's object modes "
                         "need a triangle mesh: pass --object-mesh with a mesh file that has faces (.obj, .ply, "
                         ".glb, .off, .stl) or put one at <sample>/object_mesh.obj") from None


class ObjectTemplates:
    """View templates of object meshes, rendered once per mesh content and run."""

    def __init__(self, config, device, progress: bool = True) -> None:
        self.config, self.device, self.progress = config, device, progress
        self._cache: dict[str, tuple[ViewTemplate, np.ndarray, np.ndarray, Path]] = {}

    def get(self, mesh_path: Path, render_dir: Path) -> tuple[ViewTemplate, np.ndarray, np.ndarray, Path]:
        """``(ViewTemplate, vertices, faces, folder)`` of an object mesh. The renders go to ``render_dir`` (inside
        the sample's output folder), never next to the input mesh."""
        vertices, faces = _read_object_mesh(mesh_path)
        key = hashlib.sha256(vertices.tobytes() + faces.tobytes()).hexdigest()[:16]
        if key in self._cache:
            return self._cache[key]
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
        template.to(self.device)
        self._cache[key] = (template, vertices, faces, render_dir)
        return self._cache[key]
