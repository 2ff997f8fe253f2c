"""SynthContact: layout contract, exact contact, masks, determinism, held-out split and resumable runs.

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
from utils.geometry.projection import contact_masks
from utils.geometry.template_views import load_template
from utils.geometry.views import get_view_set

REPO_ROOT = Path(__file__).resolve().parents[1]
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
                # object-side contact against an independent signed distance (trimesh: positive inside the body)
                near = np.flatnonzero(cKDTree(body).query(verts)[0] < 0.1)  # body edges are far shorter than 8 cm
                assert not oc[np.setdiff1d(np.arange(len(verts)), near)].any()
                sd = trimesh.proximity.signed_distance(body_mesh, verts[near])
                dist_out = -sd  # our convention: negative inside
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
    # a crash can also leave a half-written meta line
    with open(out / "val" / "meta.jsonl", "ab") as handle:
        handle.write(b'{"stem": "val_0000')
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")
              if p.suffix in (".jpg", ".png", ".ply") and not p.name.startswith("train_000002")}
    result = synth.run(out, CONFIG, workers=2, progress=False)
    assert result["generated_this_run"] == 1 and result["skipped_existing"] == 11
    assert victim.read_bytes() == original  # regenerated in a worker process, bit-identical
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
