"""Fit an object's pose (and optionally scale) to a fixed human from contacts and the object's mask.

Two recipes share one implementation so a comparison measures the method, not the code:

``original``  the original's ``optim/``: translation from the object mask's centre back-projected at the mean depth of
              the human contact, rotation from a single ICP started at its fixed orientation (the mesh's y and z
              negated), then 250 Adam steps on 6D rotation (lr 5e-2) and translation (lr 1e-2) with its three losses
              (:mod:`optim.losses`). Two bugs of its code are not reproduced: its mask "centroid" for the initial
              translation averages the coordinates of the mask's first two pixels (``nonzero()[0]``/``[1]``), and
              its ICP compares object normals that the current rotation never moved.
``ours``      many rotation hypotheses (the 24 axis-aligned rotations, each also turned 45° about the object's up
              axis), each placed by aligning the contact centroids and refined by ICP, all scored with our
              objective; the best few are optimised briefly and the best of those to the end, with the
              correspondence, visible-silhouette and penetration terms (optionally the scale, with a prior).

The silhouette comes from :func:`optim.silhouette_backends.make_silhouette` (``FitConfig.renderer``: ours, or
PyTorch3D's when it is installed); the target mask is drawn with that renderer's edge profile.

Poses map the *centred* object mesh (its bounding-box centre at the origin) to the camera frame:
``X = s * R @ x + t``; :meth:`FitResult.object_to_camera` is the same as a 4x4 on the file's own coordinates.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree
from tqdm import tqdm

from optim import render
from optim.inputs import FitInputs
from optim.losses import (AllPairsContact, CorrespondenceContact, Penetration, centroid_loss, iou_loss,
                          original_mask_loss)
from optim.rotations import (angle_deg, axis_angle_to_matrix, cube_rotations, kabsch, matrix_to_rot6d,
                             rot6d_to_matrix, rotation_about)
from optim.silhouette_backends import RENDERERS, make_silhouette, resolve_renderer
from utils.geometry.shading import vertex_normals

ORIGINAL_ROTATION = np.diag([1.0, -1.0, -1.0])  # the original negates the object's y and z before fitting


@dataclass(frozen=True)
class FitConfig:
    recipe: str = "ours"
    iterations: int = 80
    lr_rotation: float = 0.02
    lr_translation: float = 0.005
    lr_scale: float = 0.01
    optimize_scale: bool = False
    w_mask: float = 1.0
    w_centroid: float = 0.0
    w_contact: float = 20.0
    w_penetration: float = 100.0
    w_scale_prior: float = 1.0
    penetration_tolerance: float = 0.01
    window_px: int = 96
    sigma_px: float = 0.5
    icp_iterations: int = 8
    icp_normal_weight: float = 0.1
    hypotheses: bool = True
    rescored: int = 4  # hypotheses ranked by the whole objective after the contact-only ranking
    keep_top: int = 2  # ... of which this many are optimised briefly before the best continues
    occlusion_aware: bool = True
    renderer: str = "auto"  # the soft silhouette: "torch" (ours), "pytorch3d", or "auto" (PyTorch3D when importable)

    def __post_init__(self) -> None:
        if self.recipe not in ("ours", "original"):
            raise ValueError(f"unknown recipe {self.recipe!r}: 'ours' or 'original'")
        if self.renderer not in RENDERERS:
            raise ValueError(f"unknown renderer {self.renderer!r}; choose from {', '.join(RENDERERS)}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")


RECIPES = {
    "ours": FitConfig(),
    "original": FitConfig(recipe="original", iterations=250, lr_rotation=5e-2, lr_translation=1e-2, w_mask=5.0,
                          w_centroid=1e-4, w_contact=10.0, w_penetration=0.0, w_scale_prior=0.0, icp_iterations=10,
                          icp_normal_weight=1.0, hypotheses=False, keep_top=1, occlusion_aware=False),
}


@dataclass
class Pose:
    rotation: np.ndarray
    translation: np.ndarray
    scale: float = 1.0

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation

    def to_dict(self) -> dict:
        return {"rotation": self.rotation.tolist(), "translation": self.translation.tolist(), "scale": float(self.scale)}


@dataclass
class FitResult:
    recipe: str
    pose: Pose
    init_pose: Pose
    object_center: np.ndarray  # the object-file point the pose's translation places
    losses: dict
    init_losses: dict
    history: list = field(default_factory=list)  # per iteration: {"iteration", "total", terms...}
    hypotheses: list = field(default_factory=list)  # stage 1: {"rotation", "translation", "score"} best first
    timings: dict = field(default_factory=dict)
    frames: list = field(default_factory=list)  # [(iteration, Pose)] when frames were asked for
    renderer: str = "torch"  # the silhouette renderer the fit used ("auto" resolved)

    def object_to_camera(self) -> np.ndarray:
        """4x4 from the object file's coordinates to the camera frame."""
        M = np.eye(4)
        M[:3, :3] = self.pose.scale * self.pose.rotation
        M[:3, 3] = self.pose.translation - M[:3, :3] @ self.object_center
        return M


class ObjectFitter:
    def __init__(self, inputs: FitInputs, config: FitConfig = RECIPES["ours"]):
        self.inputs = inputs
        self.config = config
        self.center = 0.5 * (inputs.object_vertices.min(0) + inputs.object_vertices.max(0))
        self.obj = inputs.object_vertices - self.center
        self.obj_t = torch.from_numpy(self.obj).float()
        self.obj_normals = vertex_normals(self.obj, inputs.object_faces)
        self.human = inputs.human_vertices
        self.human_normals = vertex_normals(self.human, inputs.human_faces)

        h_ids, o_ids = inputs.human_contact_ids, inputs.object_contact_ids
        self.h_contact_ids, self.o_contact_ids = h_ids, o_ids
        self.h_contact = self.human[h_ids]
        self.h_contact_normals = self.human_normals[h_ids]
        self.h_tree = cKDTree(np.concatenate([self.h_contact, -self.h_contact_normals * config.icp_normal_weight], 1))

        binary = self._setup_window()
        occluder = None
        if config.occlusion_aware:
            occluder = render.depth_map(self.human, inputs.human_faces, self.window)
        volume_ok = _closed_outward(self.obj, inputs.object_faces)
        self.renderer = resolve_renderer(config.renderer)
        self.silhouette = make_silhouette(self.renderer, inputs.object_faces, self.window, sigma_px=config.sigma_px,
                                          cull_back_faces=volume_ok, occluder_depth=occluder)
        self.target = self._soft_target(binary)
        if config.recipe == "original":
            self.contact = AllPairsContact(self.human, inputs.human_contact, inputs.object_contact)
        else:
            self.contact = CorrespondenceContact(self.h_contact, inputs.human_contact[h_ids], o_ids,
                                                 inputs.object_contact[o_ids])
        self.penetration = (Penetration(self.human, self.human_normals, self.obj_normals, config.penetration_tolerance)
                            if config.w_penetration > 0 else None)

    # -- set-up ------------------------------------------------------------------------------------------------
    def _setup_window(self) -> np.ndarray:
        """A window around the object's mask, resampled to ``window_px``: the silhouette is rendered there.
        Returns the mask resampled into the window (bool)."""
        mask = self.inputs.object_mask
        H, W = mask.shape
        rows, cols = np.nonzero(mask)
        u0, u1, v0, v1 = cols.min(), cols.max() + 1, rows.min(), rows.max() + 1
        self.mask_box_center = np.array([(u0 + u1) / 2.0, (v0 + v1) / 2.0])
        half = 0.8 * max(u1 - u0, v1 - v0) + 8
        cu, cv = self.mask_box_center
        wu0, wu1 = int(np.floor(cu - half)), int(np.ceil(cu + half))
        wv0, wv1 = int(np.floor(cv - half)), int(np.ceil(cv + half))
        self.window = self.inputs.camera.window(wu0, wv0, wu1, wv1, self.config.window_px)
        self.window_origin = np.array([wu0, wv0], dtype=np.float64)
        self.window_scale = np.array([self.window.width / (wu1 - wu0), self.window.height / (wv1 - wv0)])
        padded = np.zeros((wv1 - wv0, wu1 - wu0), np.float32)
        valid = np.zeros_like(padded)
        a0, a1, b0, b1 = max(wv0, 0), min(wv1, H), max(wu0, 0), min(wu1, W)
        padded[a0 - wv0:a1 - wv0, b0 - wu0:b1 - wu0] = mask[a0:a1, b0:b1]
        valid[a0 - wv0:a1 - wv0, b0 - wu0:b1 - wu0] = 1.0
        size = (self.window.width, self.window.height)
        binary = cv2.resize(padded, size, interpolation=cv2.INTER_AREA) > 0.5
        self.valid = torch.from_numpy((cv2.resize(valid, size, interpolation=cv2.INTER_AREA) > 0.5).astype(np.float32))
        self.target_box_center_window = torch.from_numpy(
            ((self.mask_box_center - self.window_origin) * self.window_scale).astype(np.float32))
        return binary

    def _soft_target(self, binary: np.ndarray) -> torch.Tensor:
        """The window mask drawn with the renderer's own edge profile (ours: a soft rim outside the edge,
        PyTorch3D's: a sigmoid across it), so the mask term is unbiased at the true pose instead of preferring a
        slightly smaller, farther object. Distances are from the pixel centre to the edge, half a pixel before the
        nearest pixel centre on the other side."""
        outside = cv2.distanceTransform((~binary).astype(np.uint8), cv2.DIST_L2, 5) - 0.5
        inside = cv2.distanceTransform(binary.astype(np.uint8), cv2.DIST_L2, 5) - 0.5
        signed = np.where(binary, -inside, outside)
        return torch.from_numpy(self.silhouette.target_profile(signed).astype(np.float32))

    # -- stage 1 -----------------------------------------------------------------------------------------------
    def icp(self, pose: Pose, iterations: int) -> Pose:
        """Rigid ICP of the object contact points onto the human contact points; nearest neighbours in position +
        (weighted) normal space, object normals facing the human's."""
        o = self.obj[self.o_contact_ids]
        on = self.obj_normals[self.o_contact_ids]
        w = self.inputs.object_contact[self.o_contact_ids]
        R, t = pose.rotation.copy(), pose.translation.copy()
        lam = self.config.icp_normal_weight
        for _ in range(iterations):
            moved = pose.scale * o @ R.T + t
            _, j = self.h_tree.query(np.concatenate([moved, on @ R.T * lam], 1))
            dR, dt = kabsch(moved, self.h_contact[j], w)
            R, t = dR @ R, dR @ t + dt
        return Pose(R, t, pose.scale)

    def original_init(self) -> Pose:
        rows, cols = np.nonzero(self.inputs.object_mask)
        depth = float(self.h_contact[:, 2].mean())
        t = self.inputs.camera.backproject(np.array([cols.mean() + 0.5, rows.mean() + 0.5]), depth)
        return Pose(ORIGINAL_ROTATION.copy(), t)

    def hypotheses(self) -> list[Pose]:
        o_mean = (self.obj[self.o_contact_ids] * self.inputs.object_contact[self.o_contact_ids, None]).sum(0) / \
            self.inputs.object_contact[self.o_contact_ids].sum()
        h_mean = self.h_contact.mean(0)
        turn = rotation_about([0, 1, 0], 45.0)
        out = []
        for C in cube_rotations():
            for R in (C, C @ turn):
                out.append(Pose(R, h_mean - R @ o_mean))
        return out

    # -- objective ---------------------------------------------------------------------------------------------
    def transformed(self, R: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return s * self.obj_t @ R.T + t

    def objective(self, R: torch.Tensor, t: torch.Tensor, log_s: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
        cfg = self.config
        s = torch.exp(log_s)
        X = self.transformed(R, t, s)
        sil = self.silhouette(X)
        terms = {}
        if cfg.recipe == "original":
            terms["mask"] = cfg.w_mask * original_mask_loss(sil * self.valid, self.target)
            terms["centroid"] = cfg.w_centroid * centroid_loss(sil * self.valid, self.target_box_center_window,
                                                               torch.from_numpy(self.window_scale).float())
        else:
            terms["mask"] = cfg.w_mask * iou_loss(sil * self.valid, self.target * self.valid)
        terms["contact"] = cfg.w_contact * self.contact(X)
        if self.penetration is not None:
            terms["penetration"] = cfg.w_penetration * self.penetration(X, R)
        if cfg.optimize_scale:
            terms["scale_prior"] = cfg.w_scale_prior * log_s ** 2
        total = sum(terms.values())
        return total, {k: float(v.detach()) for k, v in terms.items()}, sil

    def contact_score(self, pose: Pose) -> float:
        with torch.no_grad():
            X = self.transformed(torch.from_numpy(pose.rotation).float(), torch.from_numpy(pose.translation).float(),
                                 torch.tensor(float(pose.scale)))
            score = self.config.w_contact * self.contact(X)
            if self.penetration is not None:
                score = score + self.config.w_penetration * self.penetration(X, torch.from_numpy(pose.rotation).float())
        return float(score)

    def evaluate(self, pose: Pose) -> dict:
        with torch.no_grad():
            total, terms, _ = self.objective(torch.from_numpy(pose.rotation).float(),
                                             torch.from_numpy(pose.translation).float(),
                                             torch.tensor(float(np.log(pose.scale))))
        return {"total": float(total), **terms}

    # -- stage 2 -----------------------------------------------------------------------------------------------
    def optimise(self, pose: Pose, iterations: int, progress: bool = False, desc: str = "fit",
                 frame_every: int = 0, history: list | None = None, frames: list | None = None,
                 start_iteration: int = 0) -> Pose:
        cfg = self.config
        R0 = torch.from_numpy(pose.rotation).float()
        t = torch.nn.Parameter(torch.from_numpy(pose.translation).float())
        log_s = torch.nn.Parameter(torch.tensor(float(np.log(pose.scale))), requires_grad=cfg.optimize_scale)
        if cfg.recipe == "original":
            rot = torch.nn.Parameter(torch.from_numpy(matrix_to_rot6d(pose.rotation)).float())
            rotation = lambda: rot6d_to_matrix(rot)  # noqa: E731
        else:
            rot = torch.nn.Parameter(torch.zeros(3))
            rotation = lambda: axis_angle_to_matrix(rot) @ R0  # noqa: E731
        groups = [{"params": [rot], "lr": cfg.lr_rotation}, {"params": [t], "lr": cfg.lr_translation}]
        if cfg.optimize_scale:
            groups.append({"params": [log_s], "lr": cfg.lr_scale})
        optimiser = torch.optim.Adam(groups)
        best = (float("inf"), pose)
        bar = tqdm(range(iterations), desc=desc, disable=not progress, leave=False)
        for it in bar:
            optimiser.zero_grad()
            R = rotation()
            total, terms, _ = self.objective(R, t, log_s)
            current = Pose(R.detach().double().numpy(), t.detach().double().numpy(), float(torch.exp(log_s)))
            if float(total.detach()) < best[0]:
                best = (float(total.detach()), current)
            if history is not None:
                history.append({"iteration": start_iteration + it, "total": float(total.detach()), **terms})
            if frames is not None and frame_every and (start_iteration + it) % frame_every == 0:
                frames.append((start_iteration + it, current))
            total.backward()
            optimiser.step()
            bar.set_postfix(loss=f"{float(total.detach()):.4f}")
        final = Pose(rotation().detach().double().numpy(), t.detach().double().numpy(), float(torch.exp(log_s)))
        final_loss = self.evaluate(final)["total"]
        return final if final_loss <= best[0] else best[1]

    def fit(self, progress: bool = False, frame_every: int = 0) -> FitResult:
        cfg = self.config
        timings = {}
        start = time.perf_counter()
        scored = []
        if cfg.hypotheses:
            # every hypothesis is refined by ICP and ranked by its contact term (cheap); the best few by the
            # whole objective (one silhouette render each)
            refined = []
            for pose in tqdm(self.hypotheses(), desc="init: rotation hypotheses", disable=not progress, leave=False):
                pose = self.icp(pose, cfg.icp_iterations)
                refined.append((self.contact_score(pose), pose))
            refined.sort(key=lambda x: x[0])
            scored = sorted(((self.evaluate(p)["total"], p) for _, p in _distinct(refined, cfg.rescored)),
                            key=lambda x: x[0])
            kept = _distinct(scored, cfg.keep_top)
        else:
            init = self.icp(self.original_init(), cfg.icp_iterations)
            kept = [(self.evaluate(init)["total"], init)]
            scored = kept
        timings["init_s"] = time.perf_counter() - start
        init_pose = kept[0][1]
        history: list = []
        frames: list = [] if frame_every else None
        start = time.perf_counter()
        if len(kept) > 1 and cfg.iterations > 0:
            trial_its = max(1, cfg.iterations // 5)
            trials = []
            for k, (_, pose) in enumerate(kept):
                trial = self.optimise(pose, trial_its, progress, desc=f"fit: hypothesis {k + 1}/{len(kept)}")
                trials.append((self.evaluate(trial)["total"], trial, pose))
            trials.sort(key=lambda x: x[0])
            init_pose = trials[0][2]
            pose = self.optimise(trials[0][1], cfg.iterations - trial_its, progress, desc="fit: best hypothesis",
                                 frame_every=frame_every, history=history, frames=frames, start_iteration=trial_its)
        else:
            pose = self.optimise(init_pose, cfg.iterations, progress, desc="fit", frame_every=frame_every,
                                 history=history, frames=frames)
        timings["optimise_s"] = time.perf_counter() - start
        return FitResult(
            recipe=cfg.recipe, pose=pose, init_pose=init_pose, object_center=self.center,
            losses=self.evaluate(pose), init_losses=self.evaluate(init_pose), history=history,
            hypotheses=[{"rotation": p.rotation.tolist(), "translation": p.translation.tolist(), "score": s}
                        for s, p in scored[:10]],
            timings=timings, frames=frames or [], renderer=self.renderer)


def _distinct(scored: list[tuple[float, Pose]], count: int, min_angle: float = 20.0) -> list[tuple[float, Pose]]:
    kept: list[tuple[float, Pose]] = []
    for score, pose in scored:
        if all(angle_deg(pose.rotation, p.rotation) > min_angle or np.linalg.norm(pose.translation - p.translation) > 0.05
               for _, p in kept):
            kept.append((score, pose))
        if len(kept) == count:
            break
    return kept


def _closed_outward(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Consistently wound with positive volume: back faces can be culled from the silhouette."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False, validate=False)
    return bool(mesh.is_winding_consistent and mesh.volume > 0)


def fit_object(inputs: FitInputs, recipe: str = "ours", progress: bool = False, frame_every: int = 0,
               **overrides) -> FitResult:
    """Fit with a named recipe, optionally overriding any :class:`FitConfig` field."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {sorted(RECIPES)}")
    config = replace(RECIPES[recipe], **overrides)
    return ObjectFitter(inputs, config).fit(progress=progress, frame_every=frame_every)


def config_dict(config: FitConfig) -> dict:
    return asdict(config)
