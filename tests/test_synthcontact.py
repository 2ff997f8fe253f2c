"""SynthContact: layout contract, exact contact, masks (body renders and image frame), determinism, held-out split
and resumable runs.

One small dataset (10 + 2 held-out images) is generated once per module into a temporary folder.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from preprocess_data import synthcontact as synth
from preprocess_data import synthcontact_geometry as geo
from preprocess_data import synthcontact_scene as sc
from utils.body_models import body_parts_from_vertices, default_body_model_dir, load_body_model, load_part_segmentation
from utils.geometry.cameras import PerspectiveCamera
from utils.geometry.projection import contact_masks
from utils.geometry.raycast import rasterize
from utils.geometry.template_views import load_template
from utils.geometry.views import get_view_set
from utils.paths import REPO_ROOT
from training.recipes import get_recipe

CONFIG = synth.GeneratorConfig(seed=3, num_samples=10, split_fractions=(0.8, 0.1, 0.1), heldout_samples=2, mask_size=128)
VIEWS = get_view_set(synth.VIEW_SET).view_names
EPS = sc.EPSILON


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthcontact")
    synth.run(out, CONFIG, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def segmentation():
    return load_part_segmentation(default_body_model_dir() / "synthbody" / "synthbody_segmentation.json")


@pytest.fixture(scope="module")
def body_model():
    return load_body_model("synthbody", default_body_model_dir())


def _metas(dataset: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (dataset / split / "meta.jsonl").read_text().splitlines()]


def _load(split_dir: Path, name: str):
    path = split_dir / name
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    with open(path, "rb") as handle:
        return pickle.load(handle)


def _posed_body(model, meta: dict) -> np.ndarray:
    """The body straight from smplx and the stored parameters (independent of the generator's posing code)."""
    import torch

    body = meta["body"]
    pose = torch.tensor(body["pose"], dtype=torch.float32).reshape(1, 72)
    with torch.no_grad():
        out = model(betas=torch.tensor([body["betas"]], dtype=torch.float32), global_orient=pose[:, :3],
                    body_pose=pose[:, 3:], transl=torch.tensor([body["transl"]], dtype=torch.float32))
    return out.vertices[0].numpy().astype(np.float64)


# ----------------------------------------------------------------------------------------------------------------


def test_layout_contract(dataset: Path) -> None:
    counts = CONFIG.counts()
    assert counts == {"train": 8, "val": 1, "test": 1, "test_heldout": 2}
    splits = json.loads((dataset / "splits.json").read_text())
    assert splits["complete"] and splits["counts"] == counts and splits["seed"] == CONFIG.seed
    assert [tuple(c) for c in splits["heldout_combinations"]] == list(sc.HELDOUT_COMBINATIONS)
    assert (dataset / "README.md").is_file()
    for split in synth.SPLITS:
        d = dataset / split
        n = counts[split]
        imgname = _load(d, "imgname.npy")
        labels = _load(d, "contact_label.npy")
        objectwise = _load(d, "contact_label_objectwise.pkl")
        parts = _load(d, "body_parts_objectwise.pkl")
        object_contact = _load(d, "object_contact.pkl")
        metas = _metas(d.parent, split)
        assert imgname.shape == (n,) and imgname.dtype.kind == "U"
        assert labels.shape == (n, synth.NUM_BODY_VERTICES) and labels.dtype == np.float32
        assert set(np.unique(labels)) <= {0.0, 1.0}
        assert isinstance(objectwise, list) and len(objectwise) == n and len(metas) == n
        expected_parts_keys, expected_oc_keys = set(), set()
        for i, (name, per_object, meta) in enumerate(zip(imgname, objectwise, metas)):
            stem = synth.stem_of(split, i)
            assert name == f"images/{stem}.jpg" == meta["imgname"] and meta["stem"] == stem
            image = cv2.imread(str(d / name), cv2.IMREAD_UNCHANGED)
            assert image is not None and image.ndim == 3 and image.shape[2] == 3
            assert 224 <= image.shape[0] <= 512 and 224 <= image.shape[1] <= 512
            assert [image.shape[1], image.shape[0]] == meta["image_size"]
            assert (d / name).read_bytes()[:2] == b"\xff\xd8"  # JPEG
            assert type(per_object) is dict and per_object, "every image touches at least one object"
            union = np.zeros(synth.NUM_BODY_VERTICES, dtype=np.float32)
            for obj, ids in per_object.items():
                assert type(obj) is str and obj in sc.OBJECT_NAMES
                assert type(ids) is list and ids == sorted(set(ids)) and all(type(v) is int for v in ids) and ids
                union[ids] = 1.0
                expected_parts_keys.add(f"{stem}_{obj}")
                for view in VIEWS:
                    mask = cv2.imread(str(d / "hcontact_vitruvian_mv2" / obj / f"{stem}_{view}.png"), cv2.IMREAD_UNCHANGED)
                    assert mask is not None and mask.dtype == np.uint8 and mask.shape == (128, 128)
                    assert set(np.unique(mask)) <= {0, 255}
            np.testing.assert_array_equal(labels[i], union)
            assert len(meta["body"]["pose"]) == 72 and len(meta["body"]["betas"]) == 10
            for key in ("pose_family", "interactions", "camera", "light", "background", "objects", "seeds"):
                assert key in meta
            for obj in meta["objects"]:
                key = f"{stem}__{obj['name']}"
                expected_oc_keys.add(key)
                verts, faces = geo.read_ply(d / "objects" / f"{key}.ply")
                assert len(verts) == obj["num_vertices"] and len(faces) == obj["num_faces"]
                oc = object_contact[key]
                assert oc.dtype == np.float32 and oc.shape == (len(verts),) and set(np.unique(oc)) <= {0.0, 1.0}
                assert (obj["name"] in per_object) == bool(obj["contact_vertices"])
        assert set(parts) == expected_parts_keys
        assert all(type(v) is list and all(type(p) is str for p in v) for v in parts.values())
        assert set(object_contact) == expected_oc_keys
        # no stray mask files: exactly 4 per (image, object) with contact
        masks_on_disk = {p.relative_to(d / "hcontact_vitruvian_mv2").as_posix() for p in (d / "hcontact_vitruvian_mv2").rglob("*.png")}
        expected = {f"{obj}/{synth.stem_of(split, i)}_{v}.png" for i, po in enumerate(objectwise) for obj in po for v in VIEWS}
        assert masks_on_disk == expected
        # and exactly one image-frame mask per pair listed in contact_label_objectwise.pkl (empty ones included)
        masks_2d = {p.relative_to(d / "contact_render_2d").as_posix() for p in (d / "contact_render_2d").rglob("*.png")}
        assert masks_2d == {f"{obj}/{synth.stem_of(split, i)}_contact_mask.png" for i, po in enumerate(objectwise) for obj in po}


def test_2d_masks_match_the_image_and_meta(dataset: Path) -> None:
    for split in synth.SPLITS:
        d = dataset / split
        for meta in _metas(dataset, split):
            image = cv2.imread(str(d / meta["imgname"]), cv2.IMREAD_COLOR)
            assert 0 < meta["visible_body_pixels_2d"] <= meta["body_pixels_2d"] < image.shape[0] * image.shape[1]
            for obj in meta["objects"]:
                path = d / "contact_render_2d" / obj["name"] / f"{meta['stem']}_contact_mask.png"
                if not obj["contact_vertices"]:
                    assert not path.exists() and obj["contact_pixels_2d"] == 0
                    continue
                mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                assert mask is not None and mask.dtype == np.uint8 and mask.shape == image.shape[:2]
                assert set(np.unique(mask)) <= {0, 255}
                assert int((mask == 255).sum()) == obj["contact_pixels_2d"] <= meta["body_pixels_2d"]


def _body_fragments(meta: dict, body: np.ndarray, body_faces: np.ndarray):
    """The body alone re-rendered from what is on disk: re-posed by smplx, the stored camera, cropped by the stored
    offset (only ``rasterize`` is shared with the generator)."""
    cam = meta["camera"]
    camera = PerspectiveCamera(rotation=np.array(cam["R"]), translation=np.array(cam["T"]), fov_deg=cam["fov_deg"])
    frags = rasterize(body, body_faces, camera, cam["render_size"])
    (ox, oy), (w, h) = cam["crop_offset"], meta["image_size"]
    crop = (slice(oy, oy + h), slice(ox, ox + w))
    return camera, frags.face_ids[crop], frags.bary[crop], frags.depth[crop], (ox, oy)


def test_2d_masks_agree_with_geometry(dataset: Path, body_model) -> None:
    """Masks are drawn on the body rendered alone (objects hide no contact): contact pixels lie on body faces touching
    the contact set; contact vertices not hidden by the body itself project onto (or next to) contact pixels; and the
    mask is the interpolated labels of the body faces seen at each pixel."""
    body_faces = np.asarray(body_model.faces, dtype=np.int64)
    checked_vertices = 0
    for split in ("train", "test_heldout"):
        d = dataset / split
        for meta in _metas(dataset, split)[:4]:
            body = _posed_body(body_model, meta)
            camera, face_ids, bary, depth, (ox, oy) = _body_fragments(meta, body, body_faces)
            on_body = (face_ids >= 0) & (face_ids < len(body_faces))
            assert int(on_body.sum()) == pytest.approx(meta["body_pixels_2d"], rel=0.01, abs=20)
            for obj in meta["objects"]:
                ids = np.asarray(obj["contact_vertices"], dtype=np.int64)
                if not len(ids):
                    continue
                mask = cv2.imread(str(d / "contact_render_2d" / obj["name"] / f"{meta['stem']}_contact_mask.png"),
                                  cv2.IMREAD_UNCHANGED) == 255
                labels = np.zeros(len(body))
                labels[ids] = 1.0
                # every contact pixel is a body face with a contact corner (posing noise: a few edge pixels)
                rows, cols = np.nonzero(mask)
                ok = on_body[rows, cols]
                ok[ok] = labels[body_faces[face_ids[rows[ok], cols[ok]]]].max(axis=1) > 0
                assert (~ok).sum() <= max(2, 0.02 * len(rows)), (meta["stem"], obj["name"])
                # the mask is the barycentric interpolation of the labels over the visible body faces
                expected = np.zeros_like(mask)
                expected[on_body] = np.einsum("ij,ij->i", bary[on_body], labels[body_faces[face_ids[on_body]]]) >= 0.5
                assert (expected != mask).sum() <= max(3, 0.03 * max(mask.sum(), 1)), (meta["stem"], obj["name"])
                # contact vertices the body does not hide land on or next to contact pixels
                col, row, z = camera.project_pixels(body[ids], meta["camera"]["render_size"]).T
                c, r = np.floor(col).astype(int) - ox, np.floor(row).astype(int) - oy
                inside = (c >= 1) & (r >= 1) & (c < mask.shape[1] - 1) & (r < mask.shape[0] - 1)
                c, r, z = c[inside], r[inside], z[inside]
                visible = on_body[r, c] & (np.abs(depth[r, c] - z) < 0.01)
                c, r = c[visible], r[visible]
                near = np.zeros(len(c), dtype=bool)
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        near |= mask[r + dr, c + dc]
                checked_vertices += len(c)
                # (an isolated contact vertex on faces smaller than a pixel may colour no pixel: two may miss)
                if len(c) >= 5:
                    assert (~near).sum() <= max(2, 0.05 * len(c)), (meta["stem"], obj["name"], near.mean())
    assert checked_vertices > 50, "the check saw too few visible contact vertices to mean anything"


def test_damon_2d_reader_reads_the_split(dataset: Path) -> None:
    from datasets.damon import Damon2DDataset

    reader = Damon2DDataset(dataset.parent, "train", root_name=dataset.name, num_vertices=synth.NUM_BODY_VERTICES)
    objectwise = _load(dataset / "train", "contact_label_objectwise.pkl")
    assert len(reader) == sum(len(po) for po in objectwise) and not reader.skipped
    for index in range(min(len(reader), 4)):
        sample = reader[index]
        height, width = sample["image"].shape[:2]
        assert sample["masks"].shape == (1, height, width)
        assert set(np.unique(sample["masks"])) <= {0.0, 1.0}
        assert sample["template"] == "image" and sample["vertex_labels"] is None


def _winding_number(mesh, points: np.ndarray) -> np.ndarray:
    """Generalised winding number of a closed mesh around each point (solid angles of its triangles / 4π)."""
    tri = np.asarray(mesh.triangles, dtype=np.float64)
    out = np.empty(len(points))
    for start in range(0, len(points), 32):
        rel = tri[None] - np.asarray(points[start:start + 32], dtype=np.float64)[:, None, None]
        a, b, c = rel[:, :, 0], rel[:, :, 1], rel[:, :, 2]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        dot = lambda x, y: np.einsum("pfi,pfi->pf", x, y)  # noqa: E731
        det = dot(a, np.cross(b, c))
        denom = la * lb * lc + dot(a, b) * lc + dot(a, c) * lb + dot(b, c) * la
        out[start:start + 32] = 2.0 * np.arctan2(det, denom).sum(axis=1) / (4.0 * np.pi)
    return out


def test_contact_agrees_with_geometry(dataset: Path, body_model) -> None:
    import trimesh
    from scipy.spatial import cKDTree

    faces = np.asarray(body_model.faces, dtype=np.int64)
    for split in synth.SPLITS:
        d = dataset / split
        objectwise = _load(d, "contact_label_objectwise.pkl")
        object_contact = _load(d, "object_contact.pkl")
        for meta, per_object in zip(_metas(dataset, split), objectwise):
            body = _posed_body(body_model, meta)
            body_mesh = trimesh.Trimesh(body, faces, process=False)
            for obj in meta["objects"]:
                sdf = geo.object_sdf(body, obj["parts"])
                ids = np.asarray(per_object.get(obj["name"], []), dtype=np.int64)
                contact = np.zeros(len(body), dtype=bool)
                contact[ids] = True
                clear = np.abs(sdf - EPS) > 1e-5  # float32 posing noise can only matter right at the threshold
                assert (sdf[contact & clear] <= EPS).all(), obj["name"]
                assert (sdf[~contact & clear] > EPS).all(), obj["name"]
                # the stored object mesh is the analytic object: its vertices lie on the surface ...
                verts, tri = geo.read_ply(d / "objects" / f"{meta['stem']}__{obj['name']}.ply")
                assert np.abs(geo.object_sdf(verts, obj["parts"])).max() < 1e-4
                # ... and contact vertices are within eps of the mesh (independent distance: trimesh)
                if len(ids):
                    sample = ids[:: max(1, len(ids) // 40)]
                    inside_obj = sdf[sample] < 0
                    d_mesh = trimesh.proximity.closest_point(trimesh.Trimesh(verts, tri, process=False), body[sample])[1]
                    assert (d_mesh[~inside_obj] <= EPS + 2e-3).all()
                oc = object_contact[f"{meta['stem']}__{obj['name']}"].astype(bool)
                if obj["interaction"] == "none":
                    assert not len(ids) and not oc.any() and sdf.min() >= sc.UNTOUCHED_MIN_DIST
                    continue
                # object-side contact against an independent reference: trimesh's exact unsigned distance, and inside
                # by the winding number (trimesh's signed distance takes its sign from the closest face's normal,
                # which posing flips where the skin folds: it called a point 3.6 cm outside the hips "inside")
                near = np.flatnonzero(cKDTree(body).query(verts)[0] < 0.1)  # body edges are far shorter than 8 cm
                assert not oc[np.setdiff1d(np.arange(len(verts)), near)].any()
                dist = trimesh.proximity.closest_point(body_mesh, verts[near])[1]
                dist_out = np.where(_winding_number(body_mesh, verts[near]) >= 0.5, -dist, dist)
                clear = np.abs(dist_out - EPS) > 1e-4
                assert (dist_out[oc[near] & clear] <= EPS).all(), obj["name"]
                assert (dist_out[~oc[near] & clear] > EPS).all(), obj["name"]
                assert oc.any(), f"{obj['name']} is touched by the body but has no object-side contact"


def test_masks_and_body_parts_agree_with_labels(dataset: Path, segmentation, synthbody_template_128) -> None:
    maps = load_template(synthbody_template_128, 128, get_view_set(synth.VIEW_SET)).maps
    for split in synth.SPLITS:
        d = dataset / split
        parts = _load(d, "body_parts_objectwise.pkl")
        for i, per_object in enumerate(_load(d, "contact_label_objectwise.pkl")):
            stem = synth.stem_of(split, i)
            for obj, ids in per_object.items():
                labels = np.zeros(synth.NUM_BODY_VERTICES, dtype=np.float32)
                labels[ids] = 1
                expected = contact_masks(labels, maps, min_vertices=2)
                for v, (view, exp) in enumerate(zip(VIEWS, expected)):
                    png = cv2.imread(str(d / "hcontact_vitruvian_mv2" / obj / f"{stem}_{view}.png"), cv2.IMREAD_UNCHANGED)
                    np.testing.assert_array_equal(png == 255, exp.astype(bool), err_msg=f"{stem} {obj} {view}")
                    assert not png[~maps.foreground[v]].any(), "pixels outside the body are 0"
                assert parts[f"{stem}_{obj}"] == body_parts_from_vertices(np.asarray(ids, dtype=np.int64), segmentation)
                assert parts[f"{stem}_{obj}"], "a contact set always covers >= 10 % of some part"


def test_regenerating_a_sample_is_identical(dataset: Path) -> None:
    generator = synth.SynthContactGenerator(CONFIG)
    for split, index in (("train", 5), ("test_heldout", 1)):
        sample = generator.generate(split, index)
        d = dataset / split
        assert sample.image_jpeg == (d / "images" / f"{sample.stem}.jpg").read_bytes()
        assert sample.contact_objectwise == _load(d, "contact_label_objectwise.pkl")[index]
        stored = {m["stem"]: m for m in _metas(dataset, split)}[sample.stem]
        assert json.loads(json.dumps(sample.meta)) == stored
        for obj, masks in sample.masks.items():
            for view, mask in zip(VIEWS, masks):
                png = cv2.imread(str(d / "hcontact_vitruvian_mv2" / obj / f"{sample.stem}_{view}.png"), cv2.IMREAD_UNCHANGED)
                np.testing.assert_array_equal(png, mask * 255)
        assert sample.masks_2d.keys() == sample.masks.keys()
        for obj, mask in sample.masks_2d.items():
            png = cv2.imread(str(d / "contact_render_2d" / obj / f"{sample.stem}_contact_mask.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(png, mask * 255)


def test_heldout_combinations_only_in_heldout_split(dataset: Path) -> None:
    heldout = set(sc.HELDOUT_COMBINATIONS)
    for split in ("train", "val"):
        assert not {c for c, _ in synth.combinations_for(split)} & heldout
    for split in synth.SPLITS:
        for meta in _metas(dataset, split):
            touched = {(meta["pose_family"], o["name"]) for o in meta["objects"] if o["contact_vertices"]}
            present = {(meta["pose_family"], o["name"]) for o in meta["objects"]}
            if split == "test_heldout":
                assert (meta["pose_family"], meta["primary_object"]) in heldout
                assert (meta["pose_family"], meta["primary_object"]) in touched
            elif split in ("train", "val"):
                assert not present & heldout, (meta["stem"], present & heldout)
    # every held-out family and object also occurs in training, in other combinations
    train = {c for c, _ in synth.combinations_for("train")}
    for family, obj in heldout:
        assert any(f == family for f, _ in train) and any(o == obj for _, o in train)


def test_resume_skips_existing_samples(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(dataset, out)
    victim = out / "train" / "images" / "train_000002.jpg"
    original = victim.read_bytes()
    victim.unlink()
    # a missing image-frame mask also makes its sample incomplete
    mask_2d = next((out / "train" / "contact_render_2d").rglob("train_000004_contact_mask.png"))
    mask_2d_original = mask_2d.read_bytes()
    mask_2d.unlink()
    # a crash can also leave a half-written meta line
    with open(out / "val" / "meta.jsonl", "ab") as handle:
        handle.write(b'{"stem": "val_0000')
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")
              if p.suffix in (".jpg", ".png", ".ply") and not p.name.startswith(("train_000002", "train_000004"))}
    result = synth.run(out, CONFIG, workers=2, progress=False)
    assert result["generated_this_run"] == 2 and result["skipped_existing"] == 10
    assert victim.read_bytes() == original  # regenerated in a worker process, bit-identical
    assert mask_2d.read_bytes() == mask_2d_original
    for path, mtime in before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten"
    for split in synth.SPLITS:
        for name in synth.INDEX_FILES:
            a, b = dataset / split / name, out / split / name
            if name.endswith(".npy"):
                np.testing.assert_array_equal(np.load(a), np.load(b))
            elif name == "object_contact.pkl":
                old, new = _load(a.parent, name), _load(b.parent, name)
                assert old.keys() == new.keys() and all(np.array_equal(old[k], new[k]) for k in old)
            else:
                assert _load(a.parent, name) == _load(b.parent, name)
        assert (dataset / split / "meta.jsonl").read_text() == (out / split / "meta.jsonl").read_text()


def test_refuses_other_datasets(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="no SynthContact splits.json"):
        synth.check_output_dir(foreign, CONFIG, overwrite=False)
    other = tmp_path / "other_seed"
    other.mkdir()
    (other / "splits.json").write_text(json.dumps(synth.GeneratorConfig(seed=99).identity()))
    with pytest.raises(FileExistsError, match="different dataset"):
        synth.check_output_dir(other, CONFIG, overwrite=False)
    older = tmp_path / "format_1"  # made before the 2D masks existed: regenerate with --overwrite, never mix
    older.mkdir()
    (older / "splits.json").write_text(json.dumps({**CONFIG.identity(), "format_version": 1}))
    with pytest.raises(FileExistsError, match="format_version"):
        synth.check_output_dir(older, CONFIG, overwrite=False)
    (other / "train").mkdir()
    (other / "keep.txt").write_text("not ours")
    synth.check_output_dir(other, CONFIG, overwrite=True)  # removes only what the generator owns
    assert not (other / "splits.json").exists() and not (other / "train").exists() and (other / "keep.txt").exists()
    same = tmp_path / "same"
    same.mkdir()
    (same / "splits.json").write_text(json.dumps(CONFIG.identity()))
    synth.check_output_dir(same, CONFIG, overwrite=False)  # same dataset: resumable


def test_run_datagen_script_stages() -> None:
    script = REPO_ROOT / "scripts" / "run_datagen.sh"
    bad = subprocess.run(["bash", str(script), "no_such_stage"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown stage 'no_such_stage'" in bad.stderr and "synth" in bad.stderr
    helped = subprocess.run(["bash", str(script), "synth", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--num-samples" in helped.stdout


def test_pixel_labels_match_the_image_and_geometry(dataset: Path) -> None:
    """labels_2d: one map per image, its size, background where the body-alone silhouette and the objects are not,
    and body-part labels only inside the body-alone silhouette (the body seen through the scene's own fragments)."""
    legend_parts = None
    for split in synth.SPLITS:
        d = dataset / split
        for meta in _metas(dataset, split):
            labels = cv2.imread(str(d / meta["labels_2d"]["path"]), cv2.IMREAD_UNCHANGED)
            image = cv2.imread(str(d / meta["imgname"]), cv2.IMREAD_COLOR)
            assert labels is not None and labels.dtype == np.uint8 and labels.shape == image.shape[:2]
            legend_parts = meta["labels_2d"]["parts"]
            body = (labels >= 1) & (labels < synth.LABEL_OBJECT_OFFSET)
            assert int(body.sum()) == meta["visible_body_pixels_2d"]
            objects = set(np.unique(labels[labels >= synth.LABEL_OBJECT_OFFSET]).tolist())
            assert objects <= set(meta["labels_2d"]["objects"].values())
            assert set(np.unique(labels[body]).tolist()) <= set(legend_parts.values())
    assert sorted(legend_parts.values()) == list(range(1, len(legend_parts) + 1))


# which body parts each interaction touches (the generator's expected contact, by pose family)
_TOUCHING = {"sitting": "hips", "lying": "back", "stepping": "a foot", "kicking": "a foot", "holding": "the hands",
             "leaning": "the hands"}


def test_every_object_is_touched_in_several_ways() -> None:
    """Every object class appears in training in at least two pose families that touch it with different body parts,
    so that no class prior can give its contact (the held-out combinations excluded)."""
    train = {c for c, _ in synth.combinations_for("train")}
    for obj in sc.DISTRACTOR_OBJECTS + ("bed",):
        touching = {_TOUCHING[f] for f, o in train if o == obj}
        assert len(touching) >= 2, (obj, sorted(f for f, o in train if o == obj))


@pytest.mark.parametrize("family,obj", [("sitting", "sports_ball"), ("sitting", "dining_table"), ("stepping", "chair"),
                                        ("kicking", "bottle"), ("kicking", "baseball_bat")])
def test_second_pose_families_touch_what_they_should(family: str, obj: str) -> None:
    """The placements added so that chair, bottle, bat, ball and table each have a second pose family: several
    scenes per combination build, and the object touches the family's body parts (measured on the geometry)."""
    ctx = sc.BodyContext.load(default_body_model_dir())
    for i in range(3):
        scene = sc.sample_scene(np.random.default_rng([11, i]), ctx, family, obj)
        primary = next(o for o in scene.objects if o.name == obj)
        touched = ctx.parts_of(np.flatnonzero(geo.object_sdf(scene.vertices, primary.parts) <= sc.EPSILON))
        if family == "sitting":
            assert "hips" in touched, touched
        else:
            side = scene.pose_info["side"]
            assert f"{side} foot" in touched and not touched - {f"{side} foot", f"{side} calf"}, touched


def test_canonical_object_contact(dataset: Path, tmp_path: Path) -> None:
    """preprocess_data.synthcontact_objects: one template per class, labels carried over by the unit-box map, the
    reader's masks equal to the labels drawn through the template's lifting maps."""
    from datasets.registry import build_dataset
    from preprocess_data import synthcontact_objects as so

    root = tmp_path / "data"
    shutil.copytree(dataset, root / "synthcontact")
    result = so.main(["--data-dir", str(root / "synthcontact"), "--size", "64"])
    assert sum(r["pairs"] for r in result.values()) > 0
    # the transfer is exact for a sample mesh that is the canonical mesh itself
    verts, _ = so.canonical_mesh("box")
    labels = (verts[:, 1] > 0.39).astype(np.float32)  # the top face
    moved = so.transfer_labels(verts + [1.0, 2.0, 3.0], labels, [{**so.canonical_parts("box")[0],
                               "center": list(np.add(so.canonical_parts("box")[0]["center"], [1.0, 2.0, 3.0]))}],
                               verts, so.canonical_parts("box")[0])
    np.testing.assert_array_equal(moved, labels)
    ds = build_dataset("synthcontact_ocontact_canonical", root, "train", mask_size=64, training=False,
                       template_size=64, view_set="4MV-Z_HM_BM")
    sample = ds[0]
    assert sample["task"] == "ocontact" and sample["vertex_labels"].sum() > 0
    assert sample["masks"].shape == (4, 64, 64) and (sample["masks"] == 1).any() and (sample["masks"] == -1).any()
    # the bundled recipe's object answers say the image's pose first, then the touching parts
    source = next(s for s in get_recipe("synth-tiny-joint").train if s.name == "synthcontact_ocontact_canonical")
    posed = build_dataset(source.name, root, "train", mask_size=64, training=False, template_size=64,
                          view_set="4MV-Z_HM_BM", load_masks=False, token_type="Gen-Hu-Obj", **source.options)
    for i in range(len(posed)):
        sample = posed[i]
        assert sample["answer"] == (f"The person is {recorded_pose(root, sample['meta']['stem'])}; the "
                                    f"{sample['class_name']} is in contact with the {', '.join(sample['body_parts'])}[OSEG].")


def recorded_pose(root: Path, stem: str) -> str:
    """The pose words of one image, from its meta.jsonl entry (independently of the readers)."""
    from utils.conversation import pose_phrase

    for split_dir in (root / "synthcontact").iterdir():
        meta_path = split_dir / "meta.jsonl"
        if meta_path.is_file():
            for line in meta_path.read_text().splitlines():
                meta = json.loads(line)
                if meta["stem"] == stem:
                    return pose_phrase(meta["pose_family"], meta.get("pose_info"))
    raise KeyError(stem)


def test_pose_first_answers(dataset: Path, tmp_path: Path) -> None:
    """The bundled recipe's human answers start with the pose of each image (lying told apart by facing), then the
    touching parts right before the seg token."""
    from datasets.registry import build_dataset
    from utils.conversation import pose_phrase

    root = tmp_path / "data"
    shutil.copytree(dataset, root / "synthcontact")
    source = get_recipe("synth-tiny-joint").train[0]
    assert source.name == "synthcontact_hcontact"
    posed = build_dataset(source.name, root, "train", training=False, load_masks=False, question_type="parts",
                          token_type="Gen-Hu-Obj", **source.options)
    assert len(posed) > 0
    for i in range(len(posed)):
        sample = posed[i]
        assert sample["answer"] == (f"The person is {recorded_pose(root, sample['meta']['stem'])}; the contact is at "
                                    f"the {', '.join(sample['body_parts'])}[HSEG].")
    assert pose_phrase("lying", {"mode": "prone"}) == "lying face down" != pose_phrase("lying", {"mode": "supine"})
    assert pose_phrase("juggling") == "juggling"


def test_opening_turn_says_the_pose(dataset: Path, tmp_path: Path) -> None:
    """The opening-turn recipe's human samples are two turns: the fixed opening question answered with each image's pose
    (lying told apart by facing), then the task question answered with the touching parts right before the seg
    token. The object is named only in the second question, so the pose cannot be read off the object's name."""
    from datasets.collate import IGNORE_INDEX, Collator
    from datasets.registry import build_dataset
    from model.config import build_config
    from model.io import attach_tokenizer
    from model.tokenizer import build_tiny_tokenizer
    from utils.conversation import pose_phrase

    root = tmp_path / "data"
    shutil.copytree(dataset, root / "synthcontact")
    recipe = get_recipe("synth-tiny-joint-opening")
    source = recipe.train[0]
    assert source.name == "synthcontact_hcontact" and recipe.model_overrides["opening_turn"] is True
    posed = build_dataset(source.name, root, "train", training=False, load_masks=False, question_type="parts",
                          token_type="Gen-Hu-Obj", opening_turn=True, **source.options)
    assert len(posed) > 0
    for i in range(len(posed)):
        sample = posed[i]
        (opening, said), (question, answer) = sample["conversation"]
        assert (opening, said) == ("What is the person doing?", f"The person is {recorded_pose(root, sample['meta']['stem'])}.")
        assert (sample["question"], sample["answer"]) == (question, answer)
        assert answer == f"The contact is at the {', '.join(sample['body_parts'])}[HSEG]."
        assert "doing" not in question
    from preprocess_data import synthcontact_objects as so

    so.main(["--data-dir", str(root / "synthcontact"), "--size", "64"])
    source = next(s for s in recipe.train if s.name == "synthcontact_ocontact_canonical")
    objects = build_dataset(source.name, root, "train", mask_size=64, training=False, template_size=64,
                            view_set="4MV-Z_HM_BM", load_masks=False, token_type="Gen-Hu-Obj", opening_turn=True,
                            **source.options)
    for i in range(len(objects)):
        sample = objects[i]
        assert sample["conversation"] == [
            ("What is the person doing?", f"The person is {recorded_pose(root, sample['meta']['stem'])}."),
            (sample["question"], f"The {sample['class_name']} is in contact with the {', '.join(sample['body_parts'])}[OSEG].")]
    # both answers are trained on, nothing of the questions
    tokenizer = build_tiny_tokenizer()
    config = build_config("tiny", **recipe.model_overrides)
    attach_tokenizer(config, tokenizer)
    batch = Collator(tokenizer, config, training=True)([posed[0]])
    trained = tokenizer.decode([t for t, l in zip(batch["input_ids"][0].tolist(), batch["labels"][0].tolist())
                                if l != IGNORE_INDEX])
    (_, said), (question, answer) = posed[0]["conversation"]
    assert trained == f" {said}</s> {answer}</s>"
    assert batch["generation_prompts"][0].endswith(f"{said}</s>USER: {question} ASSISTANT:")


def test_opening_parts_names_the_main_interaction(dataset: Path, tmp_path: Path) -> None:
    """With ``opening_parts`` (the -opening-parts recipes) the opening answer also names the parts touching the image's
    primary object, the same for every question about that image; the task answer about the primary object then
    repeats them. The parts come from the image's own meta.jsonl + body_parts_objectwise.pkl, and a split without
    them is an error naming the missing file, never an opening answer without parts."""
    from datasets.io import DatasetFormatError
    from datasets.registry import build_dataset
    from training.data import _options

    root = tmp_path / "data"
    shutil.copytree(dataset, root / "synthcontact")
    recipe = get_recipe("synth-tiny-joint-opening-parts")
    assert get_recipe("synth-tiny-joint-opening-parts-text").model_overrides["opening_parts"] is True
    from model.config import build_config
    config = build_config("tiny", **recipe.model_overrides)
    assert config.opening_parts and _options(recipe.train[0], recipe, config, None, True)["opening_parts"] is True
    source = recipe.train[0]
    posed = build_dataset(source.name, root, "train", training=False, load_masks=False, question_type="parts",
                          token_type="Gen-Hu-Obj", opening_turn=True, opening_parts=True, **source.options)
    primary = {m["stem"]: m["primary_object"] for m in _metas(root / "synthcontact", "train")}
    openings: dict[str, str] = {}
    checked = 0
    for i in range(len(posed)):
        sample = posed[i]
        stem, obj = sample["meta"]["stem"], sample["meta"]["object"]
        (_, said), _ = sample["conversation"]
        assert said.startswith(f"The person is {recorded_pose(root, stem)}; the main contact is at the ")
        assert openings.setdefault(stem, said) == said  # one opening answer per image
        if obj == primary[stem]:
            assert said == f"The person is {recorded_pose(root, stem)}; the main contact is at the " \
                           f"{', '.join(sample['body_parts'])}."
            checked += 1
    assert checked > 0
    meta_path = root / "synthcontact" / "train" / "meta.jsonl"
    metas = [json.loads(line) for line in meta_path.read_text().splitlines()]
    for meta in metas:
        meta.pop("primary_object")
    meta_path.write_text("".join(json.dumps(m) + "\n" for m in metas))
    broken = build_dataset(source.name, root, "train", training=False, load_masks=False, question_type="parts",
                           token_type="Gen-Hu-Obj", opening_turn=True, opening_parts=True, **source.options)
    with pytest.raises(DatasetFormatError, match="meta.jsonl, line 1: no primary_object"):
        broken[0]


def test_label_built_2d_masks_bound_the_contact(dataset: Path, tmp_path: Path) -> None:
    """training.contact2d_ceiling: the image-frame contact masks and the label maps are two outputs of the renderer
    that must agree; most contact pixels lie on a part that touches the object, and keeping only the part
    pixels next to the object's own pixels raises precision without losing much of it."""
    from training.contact2d_ceiling import ceiling

    root = tmp_path / "data"
    shutil.copytree(dataset, root / "synthcontact")
    scores = ceiling(root, "train", mask_size=128)
    parts, near = scores["parts"], scores["parts near object"]
    assert parts["count"] > 0
    assert parts["recall"] > 0.6  # 0.80 on the 796 pairs of the evaluation split
    assert near["precision"] > parts["precision"] and near["recall"] > 0.5 * parts["recall"]
    assert 0.0 < parts["f1"] < 1.0
