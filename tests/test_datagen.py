"""Data-generation stages (preprocess_data/make_*.py, scripts/run_datagen.sh) on tiny raw inputs laid out like the
real releases: every stage's outputs are read back with our readers in ``datasets/`` and compared with the raw 3D
labels (human masks at 64 px through a synthetic-body template, object renders at 24–32 px)."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets import (Damon2DDataset, DamonDataset, DatasetFormatError, LemonHumanDataset, LemonObjectDataset,
                      PicoDataset, PiadDataset, RichDataset)
from datasets.pointcloud import LEMON_AFFORDANCES, PIAD_AFFORDANCES
from preprocess_data import datagen_common, make_masks_damon, make_masks_lemon, make_masks_rich, make_pico_renders
from preprocess_data import make_piad_renders
from utils.body_models import body_parts_from_vertices, canonical_mesh, default_body_model_dir, load_part_segmentation
from utils.geometry.mesh_io import load_mesh_file
from utils.geometry.projection import training_targets
from utils.geometry.template_views import load_template, render_template
from utils.geometry.views import get_view_set
from utils.paths import REPO_ROOT

SIZE = 64
OBJ_SIZE = 24
HUMAN = ["--body", "synthbody", "--mask-size", str(SIZE), "--no-progress"]


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    """The synthetic body's template (4MV-Z_Vitru_mv2, 64 px), its maps and part segmentation."""
    folder = tmp_path_factory.mktemp("tmpl") / "templates" / "synthbody" / "4MV-Z_Vitru_mv2"
    mesh = canonical_mesh("synthbody", default_body_model_dir())
    render_template(folder, get_view_set("4MV-Z_Vitru_mv2"), [SIZE], kind="body", vertices=mesh.vertices,
                    faces=mesh.faces, name="synthbody")
    segmentation = load_part_segmentation(default_body_model_dir() / "synthbody" / "synthbody_segmentation.json")
    return {"folder": folder, "maps": load_template(folder, SIZE).maps, "seg": segmentation, "n": len(mesh.vertices)}


def data_root(tmp_path: Path, body) -> Path:
    """A dataset dir holding the body template where the stages look for it (<dataset-dir>/templates/…)."""
    root = tmp_path / "data"
    shutil.copytree(body["folder"], root / "templates" / "synthbody" / "4MV-Z_Vitru_mv2")
    return root


def parts_ids(body, *parts: str) -> np.ndarray:
    return np.unique(np.concatenate([body["seg"][p] for p in parts])).astype(np.int64)


def dense(body, ids) -> np.ndarray:
    labels = np.zeros(body["n"], np.float32)
    labels[np.asarray(ids, np.int64)] = 1.0
    return labels


def write_jpg(path: Path, seed: int, size=(20, 28)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def check_human_samples(ds, body, expected_ids: dict, min_vertices: int) -> None:
    """Every sample's masks equal the projection of its raw vertex set; labels and body parts match the raw ids."""
    assert len(ds) == len(expected_ids)
    for i, record in enumerate(ds.records):
        sample = ds[i]
        key = record.meta.get("key") or (record.meta["stem"], record.class_name)
        ids = expected_ids[key]
        np.testing.assert_array_equal(sample["vertex_labels"], dense(body, ids))
        np.testing.assert_array_equal(sample["masks"], training_targets(dense(body, ids), body["maps"], min_vertices))
        assert sample["body_parts"] == body_parts_from_vertices(np.asarray(ids, np.int64), body["seg"])


# ------------------------------------------------------------------------------------------------------------------
# DAMON


def write_raw_damon(root: Path, body, split: str) -> list[dict]:
    split_dir = root / "damon" / split
    objects = [
        {"chair": parts_ids(body, "hips", "left thigh", "right thigh"), "cup": parts_ids(body, "right hand")},
        {"supporting": np.concatenate([parts_ids(body, "left foot", "right foot"), body["seg"]["left calf"][:60]]),
         "tennis_racket": []},
        {"bench": parts_ids(body, "hips"), "supporting": np.concatenate([parts_ids(body, "left foot"),
                                                                         body["seg"]["right foot"][:3]])},
        None,  # an image without 3D labels
    ]
    names = [f"datasets/HOT-Annotated/images/{split}_img{i}.jpg" for i in range(len(objects))]
    for i, name in enumerate(names):
        write_jpg(split_dir / "images" / Path(name).name, i)
    dense_all = np.zeros((len(objects), body["n"]), np.float32)
    for i, entry in enumerate(objects):
        for ids in (entry or {}).values():
            dense_all[i, np.asarray(ids, np.int64)] = 1
    np.save(split_dir / "imgname.npy", np.array(names))
    np.save(split_dir / "contact_label.npy", dense_all)
    raw = np.empty(len(objects), dtype=object)
    raw[:] = [None if e is None else {k: list(map(int, v)) for k, v in e.items()} for e in objects]
    np.save(split_dir / "contact_label_objectwise.npy", raw, allow_pickle=True)
    return objects


def test_damon_stage(tmp_path, body):
    root = data_root(tmp_path, body)
    objects = {split: write_raw_damon(root, body, split) for split in ("train", "test")}
    # 2D sources: an object-specific mask, a per-image mask, polygons (train only)
    src = tmp_path / "hot" / "train"
    (src / "chair").mkdir(parents=True)
    cv2.imwrite(str(src / "chair" / "train_img0.png"), np.pad(np.full((4, 6), 200, np.uint8), ((3, 13), (2, 20))))
    cv2.imwrite(str(src / "train_img1.png"), np.pad(np.full((5, 5), 1, np.uint8), ((0, 15), (0, 23))))
    (src / "train_img2.json").write_text(json.dumps({"objects": {"bench": [[[1, 1], [10, 1], [10, 8], [1, 8]]]}}))

    summary = make_masks_damon.main(["--dataset-dir", str(root), *HUMAN, "--contact-2d-dir", str(tmp_path / "hot")])
    assert summary["splits"]["train"]["foot_ground"] == 2

    split_dir = root / "damon" / "train"
    # plain object-wise data, 4MV-Z_Vitru_mv2 (min_vertices 2) and 4MV-Z_Vitru (3)
    expected = {(f"train_img{i}", obj): ids for i, e in enumerate(objects["train"]) for obj, ids in (e or {}).items()
                if len(ids)}
    for view_set, min_vertices in (("4MV-Z_Vitru_mv2", 2), ("4MV-Z_Vitru", 3)):
        ds = DamonDataset(root, "train", view_set=view_set, num_vertices=body["n"], valid_mask=body["folder"],
                          training=False)
        assert ds.skipped == {"no contact": 1}
        check_human_samples(ds, body, expected, min_vertices)
    test_ds = DamonDataset(root, "test", num_vertices=body["n"], valid_mask=body["folder"], training=False)
    assert len(test_ds) == len(expected)

    # foot-ground variant: supporting dropped, foot_ground = supporting ∩ covered foot parts, parts recomputed
    fg = DamonDataset(root, "train", view_set="4MV-Z_Vitru_FootGround", num_vertices=body["n"],
                      valid_mask=body["folder"], training=False)
    feet = {"train_img1": parts_ids(body, "left foot", "right foot"), "train_img2": parts_ids(body, "left foot")}
    fg_expected = {k: v for k, v in expected.items() if k[1] != "supporting"}
    fg_expected.update({(stem, "scene"): ids for stem, ids in feet.items()})
    check_human_samples(fg, body, fg_expected, 3)
    with open(split_dir / "body_parts_objectwise_wFootGround.pkl", "rb") as handle:
        fg_parts = pickle.load(handle)
    assert fg_parts["train_img1_foot_ground"] == ["left foot", "right foot"]  # not the copied "supporting" string
    assert "left calf" in fg_parts["train_img1_supporting"]
    assert fg_parts["train_img2_foot_ground"] == ["left foot"]  # 3 right-foot vertices are < 10 % of the part

    # 2D masks: from the object mask, the per-image mask, the polygons; the other pairs have no source
    ds2d = Damon2DDataset(root, "train", num_vertices=body["n"], training=False)
    found = {(r.meta["stem"], r.meta["object"]): ds2d.read_masks(r)[0] for r in ds2d.records}
    assert sorted(found) == [("train_img0", "chair"), ("train_img1", "supporting"), ("train_img2", "bench")]
    assert found[("train_img0", "chair")].sum() == 24 and found[("train_img1", "supporting")].sum() == 25
    assert found[("train_img2", "bench")].shape == (20, 28) and found[("train_img2", "bench")].sum() == 80

    # second run: nothing is rewritten
    before = mtimes(root / "damon")
    again = make_masks_damon.main(["--dataset-dir", str(root), *HUMAN, "--contact-2d-dir", str(tmp_path / "hot")])
    assert again["mask_files_written"] == 0 and again["splits"]["train"]["tables_written"] == []
    assert mtimes(root / "damon") == before


def test_damon_errors_name_the_file(tmp_path, body):
    root = data_root(tmp_path, body)
    write_raw_damon(root, body, "train")
    objectwise = root / "damon" / "train" / "contact_label_objectwise.npy"
    objectwise.rename(objectwise.with_suffix(".bak"))
    with pytest.raises(FileNotFoundError, match="contact_label_objectwise.npy not found: expected"):
        make_masks_damon.main(["--dataset-dir", str(root), *HUMAN, "--splits", "train"])
    objectwise.with_suffix(".bak").rename(objectwise)
    np.save(root / "damon" / "train" / "contact_label.npy", np.zeros((4, 6890), np.float32))  # SMPL-sized labels
    with pytest.raises(DatasetFormatError, match=r"contact_label.npy: shape \(4, 6890\), expected \(4, 6997\)"):
        make_masks_damon.main(["--dataset-dir", str(root), *HUMAN, "--splits", "train"])
    # no template for the requested size: the message says how to render one
    with pytest.raises(FileNotFoundError, match="run_datagen.sh templates --bodies synthbody"):
        make_masks_damon.main(["--dataset-dir", str(root), "--body", "synthbody", "--mask-size", "32",
                               "--splits", "train"])


# ------------------------------------------------------------------------------------------------------------------
# point clouds (PIAD / LEMON objects)


def sphere(n: int, seed: int) -> np.ndarray:
    points = np.random.default_rng(seed).normal(size=(n, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True) * 0.5 + 0.1


def write_points(path: Path, points: np.ndarray, table: np.ndarray, obj: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [" ".join(([str(i), obj] if obj else []) + [f"{v:.5f}" for v in (*p, *a)])
            for i, (p, a) in enumerate(zip(points, table))]
    path.write_text("\n".join(rows) + "\n")


def heat_table(points: np.ndarray, columns: list[int]) -> np.ndarray:
    table = np.zeros((len(points), 17), np.float32)
    for column in columns:
        table[:, column] = np.clip((points[:, 1] + 0.4) / 1.0, 0, 1)
    return table


def check_heatmap_sample(sample, points_table: np.ndarray, column: int) -> None:
    """Soft masks = 255·affordance of the nearest point (rounded) inside the render, −1 outside; p2pmap ≥ 0 exactly
    where the SAM render is not white."""
    maps = np.stack([np.load(p)["mapping"] for p in sample["meta"]["lift_map_paths"]])
    np.testing.assert_allclose(np.loadtxt(sample["meta"]["point_path"], usecols=range(-17, 0)), points_table, atol=1e-5)
    heat = np.clip(np.loadtxt(sample["meta"]["point_path"], usecols=range(-17, 0))[:, column], 0, 1)  # as written
    expected = np.where(maps >= 0, np.round(heat[np.maximum(maps, 0)] * 255) / 255, -1.0)
    np.testing.assert_allclose(sample["masks"], expected, atol=1e-6)
    assert (maps >= 0).any(axis=(1, 2)).all()
    np.testing.assert_allclose(sample["vertex_labels"], heat, atol=1e-6)


def write_raw_piad(root: Path) -> dict:
    base = root / "piad_ocontact_seen"
    clouds = {}
    open_col, sit_col = PIAD_AFFORDANCES.index("open"), PIAD_AFFORDANCES.index("sit")
    specs = {"Train": [("Bag", "open", "Point_Train_Bag_1", [open_col]),
                       ("Chair", "sit", "Point_Train_Chair_4", [sit_col])],
             "Test": [("Bag", "open", "Point_Test_Bag_2", [open_col])]}
    for split, items in specs.items():
        img_lines, point_lines = [], []
        for k, (obj, aff, pstem, columns) in enumerate(items):
            points = sphere(60, len(clouds))
            table = heat_table(points, columns)
            write_points(base / "Point" / split / obj / f"{pstem}.txt", points, table, obj)
            clouds[pstem] = table
            name = f"Img_{split}_{obj}_{aff}_{k}.jpg"
            write_jpg(base / "Img" / split / obj / aff / name, k)
            img_lines.append(f"/cluster/PIAD/Seen/Img/{split}/{obj}/{aff}/{name}")
            point_lines.append(f"/cluster/PIAD/Seen/Point/{split}/{obj}/{pstem}.txt")
        (base / f"Img_{split}.txt").write_text("\n".join(img_lines) + "\n")
        (base / f"Point_{split}.txt").write_text("\n".join(point_lines) + "\n")
    return {"base": base, "clouds": clouds, "open": open_col, "sit": sit_col}


PIAD_ARGS = ["--size", str(OBJ_SIZE), "--no-progress"]


def test_piad_stage(tmp_path):
    root = tmp_path / "data"
    raw = write_raw_piad(root)
    summary = make_piad_renders.main(["--dataset-dir", str(root), *PIAD_ARGS])
    assert summary["piad_seen Train"]["lookup"] == "built (aligned)"
    lookup = pickle.loads((raw["base"] / "piad_lookup_results_Train.pkl").read_bytes())
    assert [Path(v[0]).name for v in lookup.values()] == ["Point_Train_Bag_1.txt", "Point_Train_Chair_4.txt"]

    for split, expected in (("train", ["Point_Train_Bag_1", "Point_Train_Chair_4"]), ("test", ["Point_Test_Bag_2"])):
        ds = PiadDataset(root, split, training=False)
        assert len(ds) == len(expected)
        for i in range(len(ds)):
            sample = ds[i]
            stem = Path(sample["meta"]["point_path"]).stem
            assert stem == expected[i]
            column = PIAD_AFFORDANCES.index(sample["meta"]["affordance"])
            check_heatmap_sample(sample, raw["clouds"][stem], column)
            render = cv2.imread(sample["meta"]["render_paths"][0])
            assert render.shape == (OBJ_SIZE, OBJ_SIZE, 3) and (render == 255).all(axis=2).any()

    before = mtimes(raw["base"])
    again = make_piad_renders.main(["--dataset-dir", str(root), *PIAD_ARGS])
    assert again["clouds_rendered"] == 0 and again["clouds_skipped"] == 3
    assert mtimes(raw["base"]) == before


def test_piad_lookup_modes(tmp_path):
    root = tmp_path / "data"
    raw = write_raw_piad(root)
    base = raw["base"]
    # unaligned training lists: the 1:1 lookup cannot be built, same-object can
    extra = sphere(60, 9)
    write_points(base / "Point" / "Train" / "Bag" / "Point_Train_Bag_7.txt", extra, heat_table(extra, []), "Bag")
    with open(base / "Point_Train.txt", "a") as handle:
        handle.write("Point/Train/Bag/Point_Train_Bag_7.txt\n")
    with pytest.raises(DatasetFormatError, match="Point_Train.txt: 3 lines but .*Img_Train.txt has 2"):
        make_piad_renders.main(["--dataset-dir", str(root), *PIAD_ARGS, "--splits", "Train"])
    summary = make_piad_renders.main(["--dataset-dir", str(root), *PIAD_ARGS, "--splits", "Train",
                                      "--lookup", "same-object"])
    assert summary["piad_seen Train"]["lookup"] == "built (same-object)"
    lookup = pickle.loads((base / "piad_lookup_results_Train.pkl").read_bytes())
    # Bag_7 has no 'open' heat: never a candidate
    assert {k.split("_")[2]: [Path(p).stem for p in v] for k, v in lookup.items()} == {
        "Bag": ["Point_Train_Bag_1"], "Chair": ["Point_Train_Chair_4"]}
    assert len(PiadDataset(root, "train", training=False)) == 2
    # missing list
    (base / "Img_Test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="Img_Test.txt not found: expected one image path per line"):
        make_piad_renders.main(["--dataset-dir", str(root), *PIAD_ARGS, "--splits", "Test"])


# ------------------------------------------------------------------------------------------------------------------
# LEMON


def write_raw_lemon(root: Path, body) -> dict:
    base = root / "lemon"
    carry, sit = LEMON_AFFORDANCES.index("carry"), LEMON_AFFORDANCES.index("sit")
    items = {"train": [("Bag", "carry", "Bag_carry_001", ("right hand", "left hand"), "Bag_pc_1", [carry]),
                       ("Chair", "sit", "Chair_sit_007", ("hips", "left thigh"), "Chair_pc_3", [sit])],
             "val": [("Bag", "carry", "Bag_carry_002", (), "Bag_pc_1", [carry])]}
    contacts, tables = {}, {}
    for split, rows in items.items():
        lines, points = [], []
        for k, (obj, aff, stem, parts, pstem, columns) in enumerate(rows):
            write_jpg(base / "Images" / obj / aff / f"{stem}.jpg", k)
            lines.append(f"/home/x/LEMON/Images/{obj}/{aff}/{stem}.jpg")
            ids = parts_ids(body, *parts) if parts else np.zeros(0, np.int64)
            contacts[stem] = ids
            path = base / "smplh_contact_pkl" / obj / aff / f"{stem}.pkl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps(dense(body, ids)))
            cloud = sphere(50, len(tables) + 3)
            tables[pstem] = heat_table(cloud, columns)
            write_points(base / "Point" / obj / f"{pstem}.txt", cloud, tables[pstem], None)
            points.append(f"Point/{obj}/{pstem}.txt")
        (base / "txt_scripts").mkdir(parents=True, exist_ok=True)
        (base / "txt_scripts" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (base / "txt_scripts" / f"Point_{split}.txt").write_text("\n".join(points) + "\n")
    return {"base": base, "contacts": contacts, "tables": tables}


def test_lemon_stage(tmp_path, body):
    root = data_root(tmp_path, body)
    raw = write_raw_lemon(root, body)
    summary = make_masks_lemon.main(["--dataset-dir", str(root), *HUMAN, "--object-size", str(OBJ_SIZE),
                                     "--workers", "2"])
    assert summary["object"]["lemon train"]["lookup"] == "built (aligned)"
    for split in ("train", "val"):
        for view_set, min_vertices in (("4MV-Z_Vitru_mv2", 2), ("4MV-Z_Vitru", 3)):
            ds = LemonHumanDataset(root, split, view_set=view_set, num_vertices=body["n"], valid_mask=body["folder"],
                                   training=False)
            expected = {(r.meta["stem"], r.class_name): raw["contacts"][r.meta["stem"]] for r in ds.records}
            assert len(expected) == (2 if split == "train" else 1)
            check_human_samples(ds, body, expected, min_vertices)
        objects = LemonObjectDataset(root, split, training=False)
        assert len(objects) == (2 if split == "train" else 1)
        for i in range(len(objects)):
            sample = objects[i]
            column = LEMON_AFFORDANCES.index(sample["meta"]["affordance"])
            check_heatmap_sample(sample, raw["tables"][Path(sample["meta"]["point_path"]).stem], column)
    # a listed image without its contact pickle
    (raw["base"] / "smplh_contact_pkl" / "Bag" / "carry" / "Bag_carry_002.pkl").unlink()
    with pytest.raises(FileNotFoundError, match=r"Bag_carry_002.pkl not found: expected the \[6997\] SMPL-H contact"):
        make_masks_lemon.main(["--dataset-dir", str(root), *HUMAN, "--parts", "human"])


# ------------------------------------------------------------------------------------------------------------------
# RICH


def test_rich_stage(tmp_path, body):
    root = data_root(tmp_path, body)
    raw = root / "rich" / "raw"
    contacts = {}
    # train: .npz records with image paths (one frame without contact), a .pkl record with an embedded image
    (raw / "train" / "frames").mkdir(parents=True)
    for k, parts in enumerate([("left hand", "right hand"), ()]):
        write_jpg(raw / "train" / "frames" / f"f{k}.png", k, size=(600, 300))
        ids = parts_ids(body, *parts) if parts else np.zeros(0, np.int64)
        np.savez(raw / "train" / f"Gym_010_pushup1_0004{k}_cam03.npz", image=np.array(f"frames/f{k}.png"),
                 contact=dense(body, ids))
        contacts[f"Gym_010_pushup1_0004{k}_cam03.png"] = ids
    image = np.random.default_rng(5).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    ids = parts_ids(body, "hips")
    (raw / "train" / "LectureHall_chair_00010_cam01.pkl").write_bytes(
        pickle.dumps({"image": image, "contact": dense(body, ids)}))
    contacts["LectureHall_chair_00010_cam01.jpg"] = ids
    # val: BSTRO TSV (METRO label rows) + base64 image TSV, converted by the stage
    label_lines, image_lines = [], []
    for k, parts in enumerate([("left foot", "right foot"), ("head",)]):
        name = f"ParkingLot_{k}/cam_01/0001{k}_01.jpg"
        ids = parts_ids(body, *parts)
        annotation = [{"contact": dense(body, ids).astype(int).tolist(), "center": [1, 2]}]  # METRO label row
        label_lines.append(f"{name}\t{json.dumps(annotation)}")
        ok, encoded = cv2.imencode(".jpg", np.full((700, 350, 3), 90 + k, np.uint8))
        image_lines.append(f"{name}\t{base64.b64encode(encoded.tobytes()).decode()}")
        contacts[f"ParkingLot_{k}_cam_01_0001{k}_01.jpg"] = ids
    (tmp_path / "val.label.tsv").write_text("\n".join(label_lines) + "\n")
    (tmp_path / "val.img.tsv").write_text("\n".join(image_lines) + "\n")

    summary = make_masks_rich.main(["--dataset-dir", str(root), *HUMAN, "--tsv", f"val={tmp_path / 'val.label.tsv'}",
                                    "--image-tsv", f"val={tmp_path / 'val.img.tsv'}"])
    assert summary["converted_val"] == 2
    assert (summary["train"]["frames"], summary["train"]["with_contact"]) == (3, 2)
    for split, count in (("train", 2), ("val", 2)):
        ds = RichDataset(root, split, num_vertices=body["n"], valid_mask=body["folder"], training=False)
        assert ds.skipped == ({"no contact": 1} if split == "train" else {})
        check_human_samples(ds, body, {r.meta["key"]: contacts[r.meta["key"]] for r in ds.records}, 3)
        assert all(s["class_name"] == "scene" for s in (ds[i] for i in range(len(ds))))
    assert cv2.imread(str(root / "rich" / "images" / "Gym_010_pushup1_00040_cam03.png")).shape == (512, 256, 3)
    assert cv2.imread(str(root / "rich" / "images" / "LectureHall_chair_00010_cam01.jpg")).shape == (40, 30, 3)
    assert cv2.imread(str(root / "rich" / "images" / "ParkingLot_1_cam_01_00011_01.jpg")).shape == (512, 256, 3)

    before = mtimes(root / "rich")
    again = make_masks_rich.main(["--dataset-dir", str(root), *HUMAN])
    assert again["files_written"] == 0 and again["frames_skipped"] == 5
    assert mtimes(root / "rich") == before
    np.savez(raw / "val" / "broken.npz", image=np.array("x.jpg"), contact=np.zeros(10))
    with pytest.raises(DatasetFormatError, match=r"broken.npz: expected 'contact' of length 6997"):
        make_masks_rich.main(["--dataset-dir", str(root), *HUMAN])


# ------------------------------------------------------------------------------------------------------------------
# PICO


def write_raw_pico(root: Path) -> dict:
    import trimesh

    samples = {}
    meshes = {"chair__000000000139": trimesh.creation.box(extents=(0.4, 0.9, 0.5)),
              "tennis_racket__000000041045": trimesh.creation.icosphere(subdivisions=2, radius=0.3)}
    for k, (name, mesh) in enumerate(meshes.items()):
        folder = root / "pico" / "train" / "raw" / name
        folder.mkdir(parents=True)
        vertices = np.asarray(mesh.vertices) * (1 + k) + np.array([2.0, -1.0, 0.5])  # un-normalised, like the release
        trimesh.Trimesh(vertices, mesh.faces, process=False).export(folder / "object.obj")
        faces = list(range(6)) if k == 0 else list(range(10))
        contact = [{"name": "humanShape", "contactPoints": ["f 3"]},
                   {"name": f"objShape_{name}", "contactPoints": [f"f {f}" for f in faces]}]
        (folder / "contact.json").write_text(json.dumps(contact))
        write_jpg(folder / "image.jpg", k)
        loaded_vertices, loaded_faces = load_mesh_file(folder / "object.obj")  # "f <i>" = the i-th face as loaded
        samples[name] = (len(loaded_vertices), np.unique(loaded_faces[faces]))
    return samples


def test_pico_stage(tmp_path):
    root = tmp_path / "data"
    samples = write_raw_pico(root)
    summary = make_pico_renders.main(["--dataset-dir", str(root), "--splits", "train", "--size", str(OBJ_SIZE),
                                      "--no-progress"])
    assert summary["meshes_rendered"] == 2
    ds = PicoDataset(root, "train", training=False)
    assert len(ds) == 2
    for i in range(len(ds)):
        sample = ds[i]
        name = sample["meta"]["stem"]
        num_vertices, ids = samples[name]
        expected = np.zeros(num_vertices, np.float32)
        expected[ids] = 1
        np.testing.assert_array_equal(sample["vertex_labels"], expected)
        assert sample["class_name"] == name.split("__")[0]
        for v, path in enumerate(sample["meta"]["lift_map_paths"]):
            with np.load(path) as maps:
                vid, bary = maps["pixel_to_vertices_map"], maps["bary_coords_map"]
                assert int(maps["num_vertices"]) == num_vertices and vid.shape == (OBJ_SIZE, OBJ_SIZE, 3)
            fg = (vid >= 0).all(axis=-1)
            np.testing.assert_allclose(bary[fg].sum(-1), 1.0, atol=1e-4)
            positive = expected[np.maximum(vid, 0)].sum(-1) >= 3
            np.testing.assert_array_equal(sample["masks"][v], np.where(fg, positive & fg, -1.0))
        assert (sample["masks"] == 1).any()
    assert pickle.loads((root / "pico" / "train" / "train_imglist.pkl").read_bytes()) == [
        "images/chair__000000000139.jpg", "images/tennis_racket__000000041045.jpg"]
    again = make_pico_renders.main(["--dataset-dir", str(root), "--splits", "train", "--size", str(OBJ_SIZE),
                                    "--no-progress"])
    assert again["meshes_rendered"] == 0 and again["meshes_skipped"] == 2
    # a contact JSON without object entries
    (root / "pico" / "train" / "raw" / "cup__1").mkdir()
    shutil.copy(root / "pico" / "train" / "raw" / "chair__000000000139" / "object.obj",
                root / "pico" / "train" / "raw" / "cup__1" / "object.obj")
    (root / "pico" / "train" / "raw" / "cup__1" / "contact.json").write_text(
        '[{"name": "humanShape", "contactPoints": []}]')
    write_jpg(root / "pico" / "train" / "raw" / "cup__1" / "image.jpg", 9)
    with pytest.raises(DatasetFormatError, match=r"cup__1/contact.json: no entry named 'objShape…'"):
        make_pico_renders.main(["--dataset-dir", str(root), "--splits", "train", "--size", str(OBJ_SIZE),
                                "--no-progress"])


# ------------------------------------------------------------------------------------------------------------------
# templates, the shell entry point


def test_templates_stage(tmp_path):
    empty_models = tmp_path / "models"
    shutil.copytree(default_body_model_dir() / "synthbody", empty_models / "synthbody")
    summary = datagen_common.templates_main(["--dataset-dir", str(tmp_path / "data"), "--view-sets", "4MV-Z_Vitru",
                                             "--sizes", "16", "--body-model-dir", str(empty_models)])
    folder = tmp_path / "data" / "templates" / "synthbody" / "4MV-Z_Vitru"
    assert summary["rendered"] == [str(folder)] and "smplh" in summary["missing_body_models"]
    assert "SMPLH_NEUTRAL.pkl" in summary["missing_body_models"]["smplh"]
    assert load_template(folder, 16).maps.num_vertices == 6997
    assert set(datagen_common.recipe_human_view_sets()) == {"4MV-Z_Vitru", "4MV-Z_Vitru_mv2", "4MV-Z_Vitru_FootGround"}


def test_run_datagen_sh_piad(tmp_path):
    root = tmp_path / "data"
    write_raw_piad(root)
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    env = {**os.environ, "PYTHON": str(venv_python)} if venv_python.is_file() else None
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "run_datagen.sh"), "piad", "--dataset-dir", str(root),
                             "--splits", "Test", *PIAD_ARGS], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(PiadDataset(root, "test", training=False)) == 1
    bad = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "run_datagen.sh"), "pico", "--dataset-dir", str(root)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert bad.returncode != 0 and "pico/train/raw not found: expected one folder per PICO sample" in bad.stderr
