"""The fitting package: soft silhouette vs Embree (and vs PyTorch3D's where installed), gradients, pose recovery,
input errors, the input-folder lookup, the CLI end to end and a benchmark smoke run."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
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
from optim.silhouette_backends import RendererUnavailable, make_silhouette, resolve_renderer
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


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_pytorch3d_silhouette_matches_ours_and_embree():
    """Runs only where PyTorch3D is installed (it is not on our CI machine)."""
    pytest.importorskip("pytorch3d.renderer")
    from optim.silhouette_pytorch3d import PyTorch3DSilhouette

    v, f = _chair_like()
    X = _place(v, 30.0, [0.05, 0.02, 2.0])
    W, H = 160, 120  # not square, principal point off centre: the camera conversion must get both right
    cam = PinholeCamera(1.6 * W, 1.6 * W, W / 2 + 7.0, H / 2 - 5.0, W, H)
    hard = render.mask_of([(X, f)], cam)
    ours = SoftSilhouette(f, cam, sigma_px=0.5)(torch.from_numpy(X).float()).numpy()
    for cull in (False, True):
        S = PyTorch3DSilhouette(f, cam, sigma_px=0.5, cull_back_faces=cull)(torch.from_numpy(X).float()).numpy()
        assert S.shape == (H, W)
        assert _iou(S > 0.5, hard) > 0.9 and _iou(S > 0.5, ours > 0.5) > 0.9, cull
        # a camera convention off by half a pixel (or a flipped axis) moves the silhouette: the centroids agree
        centroid = lambda m: np.argwhere(m).mean(0)  # noqa: E731
        assert np.abs(centroid(S > 0.5) - centroid(hard)).max() < 0.25, cull
    verts = torch.from_numpy(X).float().requires_grad_(True)
    p3d = PyTorch3DSilhouette(f, cam, sigma_px=0.5)(verts)
    p3d.sum().backward()
    assert verts.grad is not None and torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0
    # the occluder hides the same pixels for both renderers
    wall = trimesh.creation.box([0.3, 2.0, 0.01])
    wall.apply_translation([-0.15, 0, 1.5])
    depth = render.depth_map(np.asarray(wall.vertices), np.asarray(wall.faces), cam)
    visible = render.mask_of([(X, f), (np.asarray(wall.vertices), np.asarray(wall.faces))], cam)
    occluded = PyTorch3DSilhouette(f, cam, occluder_depth=depth)(torch.from_numpy(X).float()).numpy()
    assert _iou(occluded > 0.5, visible) > 0.9
    assert (occluded[np.isfinite(depth)] < 0.01).all()


def test_pytorch3d_renderer_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pytorch3d", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "pytorch3d.renderer", None)
    assert resolve_renderer("auto") == "torch"
    v, f = _chair_like()
    cam = PinholeCamera(100, 100, 32, 32, 64, 64)
    assert isinstance(make_silhouette("auto", f, cam), SoftSilhouette)
    with pytest.raises(RendererUnavailable, match="pip install"):
        make_silhouette("pytorch3d", f, cam)
    with pytest.raises(ValueError, match="unknown renderer"):
        resolve_renderer("opengl")
    with pytest.raises(ValueError, match="unknown renderer"):
        replace(RECIPES["ours"], renderer="opengl")
    inputs, _ = _synthetic_inputs()
    assert ObjectFitter(inputs, RECIPES["ours"]).renderer == "torch"  # auto, without PyTorch3D
    from optim.fit import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--input-dir", str(DEMO), "--output-dir", str(tmp_path / "out"), "--renderer", "pytorch3d", "--quiet"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "out").exists()


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


def test_input_folder_photo_rule_is_the_same_for_cli_and_load_input_dir(tmp_path):
    """One lookup for both routes: image.<ext> wins; else the folder's only photo; several candidates are refused
    with their names; masks and overlays are never the photo."""
    import argparse

    import cv2

    from optim.fit import parse_args, resolve_inputs

    def cli_names(folder: Path, *extra: str) -> dict:
        return resolve_inputs(parse_args(["--input-dir", str(folder), "--output-dir", str(tmp_path / "o"), *extra]))

    folder = _copy_demo(tmp_path / "renamed")
    (folder / "image.jpg").rename(folder / "photo.jpg")  # the only photo, under another name
    assert cli_names(folder)["image"].name == "photo.jpg"
    assert load_input_dir(folder).sources["image"].endswith("photo.jpg")

    shutil.copy(folder / "photo.jpg", folder / "other.png")  # two candidates: both routes refuse, naming them
    for route in (lambda: cli_names(folder), lambda: load_input_dir(folder)):
        with pytest.raises(FitInputError, match=r"several files could be the photo \(other\.png, photo\.jpg\)"):
            route()
    names = cli_names(folder, "--image", str(folder / "photo.jpg"))  # ... unless the flag says which
    assert names["image"] == folder / "photo.jpg"

    folder = _copy_demo(tmp_path / "named")  # image.jpg wins over other photos; masks are never candidates
    cv2.imwrite(str(folder / "overlay.png"), np.zeros((4, 4, 3), np.uint8))
    shutil.copy(folder / "image.jpg", folder / "other.jpg")
    assert cli_names(folder)["image"].name == "image.jpg"
    assert load_input_dir(folder).sources["image"].endswith("image.jpg")

    folder = _copy_demo(tmp_path / "nophoto")
    (folder / "image.jpg").unlink()
    for route in (lambda: cli_names(folder), lambda: load_input_dir(folder)):
        with pytest.raises(FitInputError, match="missing inputs.*--image"):
            route()
    (folder / "object_mesh.ply").rename(tmp_path / "mesh.ply")  # a flag fills what the folder lacks
    names = cli_names(folder, "--image", str(DEMO / "image.jpg"), "--object-mesh", str(tmp_path / "mesh.ply"))
    assert names["object_mesh"] == tmp_path / "mesh.ply" and names["human"].name == "human.json"
    with pytest.raises(FitInputError, match="--object-mesh"):
        resolve_inputs(argparse.Namespace(**{**vars(parse_args(["--output-dir", "x"])), "image": DEMO / "image.jpg"}))


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


def test_fit_benchmark_smoke(tmp_path):
    """``bench.fit`` end to end on a two-image SynthContact test split generated here: every row of the table, with
    finite numbers, and the ground-truth pose scores zero error."""
    data = tmp_path / "synth"
    subprocess.run([sys.executable, "-m", "preprocess_data.synthcontact", "--output-dir", str(data), "--num-samples",
                    "2", "--split-fractions", "0", "0", "1", "--heldout-samples", "0", "--workers", "1",
                    "--no-progress"], check=True, cwd=REPO, capture_output=True)
    from bench.fit import main

    report = main(["--data-dir", str(data), "--splits", "test", "--max-per-split", "2", "--iterations", "10",
                   "--renderer", "torch", "--output", str(tmp_path / "bench.json")])
    objects = {(r["stem"], r["object"]) for r in report["rows"]}
    assert 1 <= len(objects) <= 2
    table = {r["method"]: r for r in report["table"]}
    assert set(table) == {"gt pose", "init (original)", "original", "init (ours)", "ours"}
    for method, row in table.items():
        assert row["split"] == "test" and row["contacts"] == "gt" and row["n"] == len(objects), method
        for key in ("t_cm", "r_deg", "chamfer_cm", "contact_gap_cm", "penetration_cm", "ok"):
            assert math.isfinite(row[key]), (method, key)
    assert table["gt pose"]["t_cm"] == pytest.approx(0.0, abs=1e-9) and table["gt pose"]["chamfer_cm"] < 1e-6
    assert table["ours"]["seconds"] > 0 and table["init (ours)"]["seconds"] is None
    assert all(r["renderer"] == "torch" for r in report["rows"] if r["method"] in ("original", "ours"))
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["table"] == report["table"]
