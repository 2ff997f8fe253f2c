"""Template folders on the synthetic body: the 3D→2D→3D round trip, the CLI for bodies / meshes / point clouds."""

import json

import numpy as np
import pytest
import torch
import trimesh

from bench.roundtrip import contact_sets, round_trip_ious
from preprocess_data.render_views import main as render_views_main
from utils.body_models import canonical_mesh, default_body_model_dir
from model.lifting import Lifter
from utils.geometry.projection import visible_vertices
from utils.geometry.template_views import load_template, render_template
from utils.geometry.views import get_view_set


@pytest.fixture(scope="module")
def body():
    return canonical_mesh("synthbody", default_body_model_dir())


@pytest.fixture(scope="module")
def body_folder(tmp_path_factory, body):
    folder = tmp_path_factory.mktemp("synthbody_views")
    render_template(folder, get_view_set("4MV-Z_Vitru_mv2"), [1024, 256], kind="body", vertices=body.vertices,
                    faces=body.faces, name="synthbody", official_format=True)
    return folder


@pytest.mark.parametrize("size,min_iou", [(1024, 0.95), (256, 0.9)])
def test_round_trip_recovers_visible_labels(body_folder, body, size, min_iou):
    template = load_template(body_folder, size)
    assert visible_vertices(template.maps).mean() > (0.99 if size == 1024 else 0.9)
    ious = round_trip_ious(template.maps, contact_sets(np.asarray(body.vertices)), min_vertices=2)
    assert ious.min() >= min_iou - 0.03 and ious.mean() >= min_iou, ious


def test_folder_contents_and_official_copy(body_folder, body):
    meta = json.loads((body_folder / "template.json").read_text())
    assert meta["sizes"] == [256, 1024] and meta["num_vertices"] == len(body.vertices)
    template = load_template(body_folder, 256)
    assert template.renders.shape == (4, 256, 256, 3) and template.renders.dtype == np.uint8
    # valid region = non-white pixels of the SAM input = pixels that see the body
    np.testing.assert_array_equal(template.renders.astype(int).sum(-1) < 765, template.valid)
    # the original's npz pair loads to the same maps (a folder without template.json is read as an official one)
    official = body_folder / "official"
    official.mkdir()
    for f in body_folder.glob("*_1024.npz"):
        if f.name.startswith(("pixel_to_vertex", "bary_coords")):
            (official / f.name).write_bytes(f.read_bytes())
    for f in body_folder.glob("body_render_*.png"):
        if not f.stem.endswith("_256"):
            (official / f.name).write_bytes(f.read_bytes())
    ours = load_template(body_folder, 1024)
    theirs = load_template(official, 1024, view_set=get_view_set("4MV-Z_Vitru_mv2"), num_vertices=len(body.vertices))
    np.testing.assert_array_equal(ours.maps.vertex_ids, theirs.maps.vertex_ids)
    np.testing.assert_allclose(ours.maps.weights, theirs.maps.weights)


def test_stale_folder_is_refused_and_resume_skips_done_sizes(tmp_path, body):
    view_set = get_view_set("4MV-Z_Vitru")
    render_template(tmp_path, view_set, [64], kind="body", vertices=body.vertices, faces=body.faces, name="synthbody")
    stamp = (tmp_path / "lift_maps_64.npz").stat().st_mtime_ns
    render_template(tmp_path, view_set, [64, 32], kind="body", vertices=body.vertices, faces=body.faces, name="synthbody")
    assert (tmp_path / "lift_maps_64.npz").stat().st_mtime_ns == stamp  # not re-rendered
    assert (tmp_path / "lift_maps_32.npz").is_file()
    moved = np.asarray(body.vertices) + 0.01
    with pytest.raises(FileExistsError, match="another template"):
        render_template(tmp_path, view_set, [64], kind="body", vertices=moved, faces=body.faces, name="synthbody")
    with pytest.raises(FileNotFoundError, match="render_views"):
        load_template(tmp_path / "nothing", 64)


def test_cli_object_mesh_and_point_cloud(tmp_path):
    mesh_path = tmp_path / "box.obj"
    trimesh.creation.box(extents=(2.0, 1.0, 0.5)).export(mesh_path)
    out = render_views_main(["--mesh", str(mesh_path), "--sizes", "64", "--output-dir", str(tmp_path / "box")])
    template = load_template(out, 64)
    assert template.metadata["view_set"] == "4MV-Z_HM_BM" and template.maps.num_vertices == 8
    assert template.valid.any(axis=(1, 2)).all()  # the object is seen in all four views

    rng = np.random.default_rng(0)
    piad = tmp_path / "cloud.txt"
    lines = [f"0 Mug {x:.4f} {y:.4f} {z:.4f} " + " ".join(["0"] * 17) for x, y, z in rng.normal(size=(300, 3))]
    piad.write_text("\n".join(lines))
    out = render_views_main(["--point-cloud", str(piad), "--sizes", "64", "--output-dir", str(tmp_path / "cloud")])
    template = load_template(out, 64)
    assert template.maps.vertex_ids.shape == (4, 64, 64, 1) and template.maps.num_vertices == 300
    probs = torch.rand(1, 300)
    # lifting the per-pixel value of the point each pixel sees returns that point's value for every seen point
    image = torch.from_numpy(np.where(template.maps.vertex_ids[..., 0] >= 0, probs[0].numpy()[template.maps.vertex_ids[..., 0]], 0))
    lifted = Lifter(template.maps, input_is_logits=False)(image[None].float())[0]
    seen = torch.from_numpy(visible_vertices(template.maps))
    torch.testing.assert_close(lifted[seen], probs[0][seen])


def test_cli_mesh_without_faces_is_rejected(tmp_path):
    path = tmp_path / "points.ply"
    trimesh.PointCloud(np.random.rand(20, 3)).export(path)
    with pytest.raises(ValueError, match="no faces"):
        render_views_main(["--mesh", str(path), "--sizes", "32", "--output-dir", str(tmp_path / "o")])
