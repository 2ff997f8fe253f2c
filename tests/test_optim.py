"""The fitting package: soft silhouette vs Embree, gradients, pose recovery, input errors, the CLI end to end."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from optim import render
from optim.camera import PinholeCamera
from optim.fitter import RECIPES, ObjectFitter, Pose
from optim.inputs import FitInputError, FitInputs, load_input_dir
from optim.metrics import Symmetry
from optim.rotations import angle_deg, rotation_about
from optim.silhouette import SoftSilhouette, soft_iou
from utils.paths import REPO_ROOT

REPO = REPO_ROOT
DEMO = REPO / "data" / "fit_samples" / "chair__test_000015"


def _chair_like() -> tuple[np.ndarray, np.ndarray]:
    """A seat block and a backrest, finely tessellated like SynthContact's boxes (non-convex, ~1.5k faces)."""
    seat = trimesh.creation.box([0.45, 0.08, 0.42])
    back = trimesh.creation.box([0.45, 0.45, 0.05])
    back.apply_translation([0, 0.26, -0.185])
    mesh = trimesh.util.concatenate([seat, back])
    for _ in range(3):
        mesh = mesh.subdivide()
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def _place(vertices: np.ndarray, yaw: float, t) -> np.ndarray:
    R = rotation_about([1, 0, 0], 200.0) @ rotation_about([0, 1, 0], yaw)
    return vertices @ R.T + np.asarray(t)


@pytest.mark.parametrize("size", [(160, 120), (64, 48)])
def test_soft_silhouette_matches_embree(size):
    v, f = _chair_like()
    X = _place(v, 30.0, [0.05, 0.02, 2.0])
    W, H = size
    cam = PinholeCamera(1.6 * W, 1.6 * W, W / 2, H / 2, W, H)
    hard = render.mask_of([(X, f)], cam)
    for cull in (False, True):
        S = SoftSilhouette(f, cam, sigma_px=0.5, cull_back_faces=cull)(torch.from_numpy(X).float()).numpy()
        # thresholded at 1 the soft silhouette is the hard render (pixel centres inside a face)
        assert ((S >= 1.0 - 1e-6) == hard).mean() > 0.999
        iou = ((S > 0.5) & hard).sum() / ((S > 0.5) | hard).sum()
        assert iou > 0.9, iou
        assert float(soft_iou(torch.from_numpy(S), torch.from_numpy(hard.astype(np.float32)))) > 0.85


def test_occluder_hides_the_object():
    v, f = _chair_like()
    X = _place(v, 0.0, [0.0, 0.0, 2.0])
    cam = PinholeCamera(100, 100, 32, 32, 64, 64)
    wall = trimesh.creation.box([0.3, 2.0, 0.01])
    wall.apply_translation([-0.15, 0, 1.5])  # covers the left half of the view, in front of the object
    depth = render.depth_map(np.asarray(wall.vertices), np.asarray(wall.faces), cam)
    S = SoftSilhouette(f, cam, occluder_depth=depth)(torch.from_numpy(X).float()).numpy()
    visible = render.mask_of([(X, f), (np.asarray(wall.vertices), np.asarray(wall.faces))], cam)
    assert ((S >= 1.0 - 1e-6) == visible).mean() > 0.995
    assert (S[np.isfinite(depth)] < 0.01).all()


def _synthetic_inputs(yaw=25.0, t=(0.1, 0.05, 2.2)) -> tuple[FitInputs, Pose]:
    """A 'human' (a box the chair leans on) and the chair-like object at a known pose, with exact contacts."""
    v, f = _chair_like()
    v = v - 0.5 * (v.min(0) + v.max(0))
    R = rotation_about([1, 0, 0], 200.0) @ rotation_about([0, 1, 0], yaw)
    truth = Pose(R, np.asarray(t, float))
    obj = truth.apply(v)
    body = trimesh.creation.box([0.3, 0.6, 0.3])
    for _ in range(3):
        body = body.subdivide()
    # a box "person" pressed against the seat's +x side (1 cm deep), built in the object's frame, then posed
    local = np.asarray(body.vertices) + [0.225 + 0.15 - 0.01, -0.1, 0.0]
    bv, bf = truth.apply(local), np.asarray(body.faces)
    from scipy.spatial import cKDTree

    h_contact = (cKDTree(v).query(local)[0] < 0.02).astype(float)
    o_contact = (cKDTree(local).query(v)[0] < 0.02).astype(float)
    cam = PinholeCamera(300, 300, 128, 96, 256, 192)
    mask = render.mask_of([(obj, f), (bv, bf)], cam)
    inputs = FitInputs(image=np.full((192, 256, 3), 128, np.uint8), camera=cam, human_vertices=bv, human_faces=bf,
                       human_contact=h_contact, object_vertices=v, object_faces=f, object_contact=o_contact,
                       object_mask=mask).validate()
    return inputs, truth


def test_gradients_reach_rotation_translation_scale():
    inputs, truth = _synthetic_inputs()
    fitter = ObjectFitter(inputs, replace(RECIPES["ours"], optimize_scale=True))
    omega = torch.zeros(3, requires_grad=True)
    t = torch.tensor(truth.translation + [0.03, -0.02, 0.05], dtype=torch.float32, requires_grad=True)
    log_s = torch.tensor(0.1, requires_grad=True)
    from optim.rotations import axis_angle_to_matrix

    R = axis_angle_to_matrix(omega + torch.tensor([0.05, 0.1, 0.0])) @ torch.from_numpy(truth.rotation).float()
    total, terms, _ = fitter.objective(R, t, log_s)
    total.backward()
    for name, g in (("rotation", omega.grad), ("translation", t.grad), ("scale", log_s.grad)):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
    assert set(terms) >= {"mask", "contact", "penetration", "scale_prior"}


def test_known_pose_is_recovered_from_a_perturbed_start():
    inputs, truth = _synthetic_inputs()
    fitter = ObjectFitter(inputs, replace(RECIPES["ours"], iterations=60))
    start = Pose(rotation_about([0, 1, 0], 12.0) @ truth.rotation, truth.translation + [0.04, -0.03, 0.06])
    before = np.linalg.norm(start.translation - truth.translation)
    pose = fitter.optimise(start, 60)
    assert np.linalg.norm(pose.translation - truth.translation) < 0.3 * before
    assert np.linalg.norm(pose.translation - truth.translation) < 0.02
    assert angle_deg(pose.rotation, truth.rotation) < 5.0


def test_symmetry_aware_rotation_error():
    R = rotation_about([0, 1, 0], 37.0)
    assert Symmetry("axis").rotation_error_deg(R, np.eye(3)) == pytest.approx(0.0, abs=1e-6)
    assert Symmetry("none").rotation_error_deg(R, np.eye(3)) == pytest.approx(37.0)
    assert Symmetry("discrete").rotation_error_deg(rotation_about([1, 0, 0], 180.0), np.eye(3)) == pytest.approx(0.0, abs=1e-6)
    flip = rotation_about([0, 0, 1], 180.0)
    assert Symmetry("axis_flip").rotation_error_deg(flip, np.eye(3)) == pytest.approx(0.0, abs=1e-6)
    assert Symmetry("axis").rotation_error_deg(flip, np.eye(3)) == pytest.approx(180.0)
    assert Symmetry("sphere").rotation_error_deg(flip, np.eye(3)) == 0.0


def _copy_demo(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    shutil.copytree(DEMO, folder)
    return folder


def test_bad_inputs_get_clear_errors(tmp_path):
    folder = _copy_demo(tmp_path)
    np.savez(folder / "hcontact_vertices.npz", pred_contact_3d=np.zeros(10, np.float32))
    with pytest.raises(FitInputError, match="one value per vertex"):
        load_input_dir(folder)
    folder = _copy_demo(tmp_path / "b")
    import cv2

    cv2.imwrite(str(folder / "object_mask.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(FitInputError, match="mask"):
        load_input_dir(folder)
    folder = _copy_demo(tmp_path / "c")
    h, w = cv2.imread(str(folder / "image.jpg")).shape[:2]
    cv2.imwrite(str(folder / "object_mask.png"), np.zeros((h, w), np.uint8))
    with pytest.raises(FitInputError, match="empty"):
        load_input_dir(folder)
    folder = _copy_demo(tmp_path / "d")
    params = json.loads((folder / "human.json").read_text())
    del params["camera"]
    (folder / "human.json").write_text(json.dumps(params))
    with pytest.raises(FitInputError, match="camera"):
        load_input_dir(folder)
    folder = _copy_demo(tmp_path / "e")
    (folder / "object_mesh.ply").unlink()
    with pytest.raises(FitInputError, match="object mesh"):
        load_input_dir(folder)
    folder = _copy_demo(tmp_path / "f")
    np.savez(folder / "ocontact_vertices.npz",
             pred_contact_3d=np.zeros(len(trimesh.load(folder / "object_mesh.ply", process=False).vertices), np.float32))
    with pytest.raises(FitInputError, match="no vertex above"):
        load_input_dir(folder)
    with pytest.raises(FitInputError, match="millimetres"):
        load_input_dir(_copy_demo(tmp_path / "g"), object_scale=1000.0)


def test_fit_cli_end_to_end(tmp_path):
    from optim.fit import main

    report = main(["--input-dir", str(DEMO), "--output-dir", str(tmp_path / "out"), "--quiet", "--iterations", "40",
                   "--frames", "20"])
    out = tmp_path / "out"
    for name in ("object.obj", "object.ply", "object.glb", "scene.glb", "overlay.png", "fit.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert len(list((out / "frames").glob("frame_*.png"))) >= 2
    saved = json.loads((out / "fit.json").read_text())
    assert saved["timings_s"]["total_s"] > 0 and len(saved["history"]) > 0
    for name in ("object.obj", "object.ply", "object.glb"):
        loaded = trimesh.load(out / name, force="mesh")
        assert len(loaded.vertices) > 0
    scene = trimesh.load(out / "scene.glb")
    assert len(scene.geometry) == 2
    truth = json.loads((DEMO / "ground_truth.json").read_text())
    t_err = np.linalg.norm(np.asarray(report["pose"]["translation"]) - np.asarray(truth["translation"]))
    assert t_err < 0.05, t_err
    assert report["check"]["mask_iou"] > 0.7
