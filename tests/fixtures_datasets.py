"""Tiny on-disk copies of the original releases' layouts for the dataset-reader tests.

Human masks are made the way the release made them: the contact vertex set is projected through a template rendered
from the synthetic body (``utils.geometry.projection.contact_masks``) and written as 8-bit PNGs (255 = contact).
Point-cloud heat maps are rendered with ``utils.geometry.pointcloud.render_point_cloud``. Everything is small
(64-px masks, 32-px object renders, 20×28 photos) so a whole layout is written in milliseconds.
"""

from __future__ import annotations

import json
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from utils.body_models import canonical_mesh, default_body_model_dir, load_part_segmentation
from utils.geometry.pointcloud import render_point_cloud
from utils.geometry.projection import contact_masks
from utils.geometry.template_views import TemplateViews, load_template, render_template
from utils.geometry.views import get_view_set

MASK_SIZE = 64
OBJECT_SIZE = 32
HUMAN_VIEW_SET = "4MV-Z_Vitru_mv2"


@dataclass
class BodyTemplate:
    folder: Path
    views: TemplateViews
    segmentation: dict[str, np.ndarray]
    num_vertices: int

    def contact(self, *parts: str) -> np.ndarray:
        """Sorted vertex ids of the union of the named parts."""
        return np.unique(np.concatenate([self.segmentation[p] for p in parts])).astype(np.int64)

    def masks(self, vertex_ids: np.ndarray, min_vertices: int = 2) -> np.ndarray:
        labels = np.zeros(self.num_vertices, dtype=np.float32)
        labels[vertex_ids] = 1.0
        return contact_masks(labels, self.views.maps, min_vertices)  # [V, M, M] in {0, 1}


def build_body_template(folder: Path, view_set: str = HUMAN_VIEW_SET, size: int = MASK_SIZE) -> BodyTemplate:
    body = canonical_mesh("synthbody", default_body_model_dir())
    render_template(folder, get_view_set(view_set), [size], kind="body", vertices=body.vertices, faces=body.faces,
                    name="synthbody")
    segmentation = load_part_segmentation(default_body_model_dir() / "synthbody" / "synthbody_segmentation.json")
    return BodyTemplate(folder, load_template(folder, size), segmentation, len(body.vertices))


def write_image(path: Path, seed: int, size: tuple[int, int] = (20, 28), mode: str = "rgb") -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    if mode == "gray":
        image = image[..., 0]
    elif mode == "rgba":
        image = np.concatenate([image, np.full((*size, 1), 128, np.uint8)], axis=2)
    if not cv2.imwrite(str(path), image):
        raise OSError(path)
    return path


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(path)


def write_pickle(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(value, handle)


def write_view_masks(folder: Path, stem: str, view_names, masks: np.ndarray) -> None:
    for view, mask in zip(view_names, masks):
        write_png(folder / f"{stem}_{view}.png", (mask > 0).astype(np.uint8) * 255)


# ------------------------------------------------------------------------------------------------------------------
# DAMON / SynthContact


DAMON_OBJECTS = [  # per image: {object: body parts in contact}; "" = empty contact (must be skipped)
    {"chair": ("hips", "left thigh", "right thigh"), "cup": ("right hand",)},
    {"supporting": ("left foot", "right foot"), "tennis_racket": ()},
    {"bench": ("hips",), "supporting": ("left foot", "right foot", "left calf")},
]


def write_damon(dataset_dir: Path, template: BodyTemplate, *, root_name: str = "damon", split: str = "train",
                view_set: str = HUMAN_VIEW_SET, long_names: bool = True, foot_ground: bool = False,
                two_d: bool = False) -> dict:
    """The DAMON layout with three images (see ``DAMON_OBJECTS``); returns what was written."""
    root = dataset_dir / root_name / split
    vs = get_view_set(view_set)
    names, objectwise, parts_table = [], [], {}
    contact_all = np.zeros((len(DAMON_OBJECTS), template.num_vertices), np.float32)
    for i, objects in enumerate(DAMON_OBJECTS):
        stem = f"img{i:03d}"
        write_image(root / "images" / f"{stem}.jpg", i)
        names.append(f"datasets/HOT-Annotated/images/{stem}.jpg" if long_names else f"images/{stem}.jpg")
        entry = {}
        for obj, parts in objects.items():
            ids = template.contact(*parts) if parts else np.zeros(0, np.int64)
            entry[obj] = ids.tolist()
            contact_all[i, ids] = 1.0
            parts_table[f"{stem}_{obj}"] = list(parts)
            if parts:
                write_view_masks(root / vs.folder / obj, stem, vs.view_names, template.masks(ids))
                if two_d:
                    write_png(root / "contact_render_2d" / obj / f"{stem}_contact_mask.png",
                              np.pad(np.full((10, 14), 255, np.uint8), ((5, 5), (7, 7))))
        objectwise.append(entry)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "imgname.npy", np.array(names))
    np.save(root / "contact_label.npy", contact_all)
    write_pickle(root / "contact_label_objectwise.pkl", objectwise)
    write_pickle(root / "body_parts_objectwise.pkl", parts_table)
    if foot_ground:
        fg_objectwise, fg_parts = [], dict(parts_table)
        for i, entry in enumerate(objectwise):
            entry = dict(entry)
            if "supporting" in entry:
                feet = template.contact("left foot", "right foot")
                entry["foot_ground"] = feet.tolist()
                fg_parts[f"img{i:03d}_foot_ground"] = fg_parts[f"img{i:03d}_supporting"]  # the original's copy (bug 16)
                write_view_masks(root / vs.folder / "foot_ground", f"img{i:03d}", vs.view_names, template.masks(feet))
            fg_objectwise.append(entry)
        write_pickle(root / "contact_label_objectwise_wFootGround.pkl", fg_objectwise)
        write_pickle(root / "body_parts_objectwise_wFootGround.pkl", fg_parts)
    return {"root": root, "names": names, "objectwise": objectwise, "parts": parts_table}


# ------------------------------------------------------------------------------------------------------------------
# LEMON human / RICH


def write_lemon_human(dataset_dir: Path, template: BodyTemplate, split: str = "val") -> dict:
    root = dataset_dir / "lemon"
    vs = get_view_set(HUMAN_VIEW_SET)
    items = [("Bag", "carry", "Bag_carry_001", ("right hand",)), ("Chair", "sit", "Chair_sit_007", ("hips", "left thigh"))]
    lines, parts = [], {}
    for k, (obj, aff, stem, body_parts) in enumerate(items):
        write_image(root / "Images" / obj / aff / f"{stem}.jpg", 10 + k)
        lines.append(f"/home/someone/LEMON/Images/{obj}/{aff}/{stem}.jpg")
        ids = template.contact(*body_parts)
        contact = np.zeros(template.num_vertices, np.float32)
        contact[ids] = 1.0
        write_pickle(root / "smplh_contact_pkl" / obj / aff / f"{stem}.pkl", contact)
        write_view_masks(root / vs.folder / obj / aff, stem, vs.view_names, template.masks(ids))
        parts[stem] = list(body_parts)
    (root / "txt_scripts").mkdir(parents=True, exist_ok=True)
    (root / "txt_scripts" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    write_pickle(root / f"body_parts_{split}.pkl", parts)
    return {"root": root, "items": items}


def write_rich(dataset_dir: Path, template: BodyTemplate, split: str = "train") -> dict:
    root = dataset_dir / "rich"
    vs = get_view_set("4MV-Z_Vitru")
    keys = ["Gym_010_pushup1_00045_cam03.png", "Gym_010_pushup1_00046_cam03.png", "LectureHall_chair_00010_cam01.png"]
    contacts, parts = {}, {}
    for k, key in enumerate(keys):
        write_image(root / "images" / key, 20 + k)
        body_parts = () if k == 2 else ("left hand", "right hand", "left foot")
        ids = template.contact(*body_parts) if body_parts else np.zeros(0, np.int64)
        contact = np.zeros(template.num_vertices, np.float32)
        contact[ids] = 1.0
        contacts[key], parts[key] = contact, list(body_parts)
        if body_parts:
            write_view_masks(root / vs.folder, Path(key).stem, vs.view_names, template.masks(ids))
    write_pickle(root / f"img_list_{split}.pkl", keys)
    write_pickle(root / f"body_parts_{split}.pkl", parts)
    write_pickle(root / f"contact_vertices_{split}.pkl", contacts)
    return {"root": root, "keys": keys, "contacts": contacts}


# ------------------------------------------------------------------------------------------------------------------
# point clouds (PIAD / LEMON object)


def sphere_points(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True) * 0.6


def write_heatmaps(render_dir: Path, point_stem: str, points: np.ndarray, heat: np.ndarray, view_set: str = "4MV-Z_HM") -> None:
    vs = get_view_set(view_set)
    render_dir.mkdir(parents=True, exist_ok=True)
    for view in vs.render_views:
        render = render_point_cloud(points, view.camera(), OBJECT_SIZE, radius=0.12)
        write_png(render_dir / f"sam_{point_stem}_{view.name}.png", (render.image[..., ::-1] * 255).round().astype(np.uint8))
        label = np.where(render.point_ids >= 0, heat[np.maximum(render.point_ids, 0)], 0.0)
        write_png(render_dir / f"mask_{point_stem}_{view.name}.png", (label * 255).round().astype(np.uint8))
        np.savez_compressed(render_dir / f"p2pmap_{point_stem}_{view.name}.npz", mapping=render.point_ids)


def write_point_file(path: Path, points: np.ndarray, affordances: np.ndarray, obj: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (p, a) in enumerate(zip(points, affordances)):
        values = " ".join(f"{v:.4f}" for v in (*p, *a))
        rows.append(f"{i} {obj} {values}" if obj is not None else values)
    path.write_text("\n".join(rows) + "\n")


def affordance_table(points: np.ndarray, columns: dict[int, float]) -> np.ndarray:
    """[P, 17] values: for each given column, heat = clip(scale · (z + 0.6) / 1.2) (a smooth gradient)."""
    table = np.zeros((len(points), 17), np.float32)
    for column, scale in columns.items():
        table[:, column] = np.clip(scale * (points[:, 2] + 0.6) / 1.2, 0.0, 1.0)
    return table


def write_piad(dataset_dir: Path, setting: str = "seen") -> dict:
    """Train split: two images with ranked candidates (the first candidate of image 0 has a zero 'open' column);
    Test split: one line-aligned pair."""
    from datasets.pointcloud import PIAD_AFFORDANCES

    root = dataset_dir / f"piad_ocontact_{setting}"
    open_col, sit_col = PIAD_AFFORDANCES.index("open"), PIAD_AFFORDANCES.index("sit")
    clouds = {}
    for split, obj, stems in (("Train", "Bag", ("Point_Train_Bag_1", "Point_Train_Bag_2")),
                              ("Train", "Chair", ("Point_Train_Chair_1",)), ("Test", "Bag", ("Point_Test_Bag_1",))):
        for k, stem in enumerate(stems):
            points = sphere_points(48, zlib.crc32(stem.encode()))
            columns = {sit_col: 1.0} if obj == "Chair" else ({} if stem == "Point_Train_Bag_1" else {open_col: 1.0})
            table = affordance_table(points, columns)
            write_point_file(root / "Point" / split / obj / f"{stem}.txt", points, table, obj)
            aff = "sit" if obj == "Chair" else "open"
            write_heatmaps(root / "rendered_points_heatmap_1025_color" / split / obj / aff, stem, points,
                           table[:, PIAD_AFFORDANCES.index(aff)])
            clouds[stem] = (points, table)
    images = {"Train": ["Img_Train_Bag_open_1.jpg", "Img_Train_Chair_sit_3.jpg"], "Test": ["Img_Test_Bag_open_2.jpg"]}
    for split, names in images.items():
        lines = []
        for k, name in enumerate(names):
            obj, aff = name.split("_")[2:4]
            write_image(root / "Img" / split / obj / aff / name, 30 + k, mode="gray" if k else "rgb")
            lines.append(f"/data/PIAD/Seen/Img/{split}/{obj}/{aff}/{name}")
        (root / f"Img_{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "Point_Test.txt").write_text("Point/Test/Bag/Point_Test_Bag_1.txt\n")
    (root / "Point_Train.txt").write_text("Point/Train/Bag/Point_Train_Bag_2.txt\nPoint/Train/Chair/Point_Train_Chair_1.txt\n")
    write_pickle(root / "piad_lookup_results_Train.pkl", {
        "Img_Train_Bag_open_1.jpg": ["/x/Point/Train/Bag/Point_Train_Bag_1.txt", "/x/Point/Train/Bag/Point_Train_Bag_2.txt"],
        "Img_Train_Chair_sit_3.jpg": ["/x/Point/Train/Chair/Point_Train_Chair_1.txt", "/x/Point/Train/Chair/missing.txt"],
    })
    return {"root": root, "clouds": clouds, "open": open_col, "sit": sit_col}


def write_lemon_object(dataset_dir: Path, split: str = "train") -> dict:
    from datasets.pointcloud import LEMON_AFFORDANCES

    root = dataset_dir / "lemon"
    carry = LEMON_AFFORDANCES.index("carry")
    points = sphere_points(40, 7)
    table = affordance_table(points, {carry: 0.8})
    write_point_file(root / "Point" / "Bag" / "Bag_obj_1.txt", points, table, None)
    write_heatmaps(root / "lemon_ocontact" / "rendered_points_heatmap_1025_color" / "Bag" / "carry", "Bag_obj_1", points,
                   table[:, carry])
    write_image(root / "Images" / "Bag" / "carry" / "Bag_carry_001.jpg", 40)
    (root / "txt_scripts").mkdir(parents=True, exist_ok=True)
    (root / "txt_scripts" / f"{split}.txt").write_text("Images/Bag/carry/Bag_carry_001.jpg\n")
    (root / "txt_scripts" / f"Point_{split}.txt").write_text("Point/Bag/Bag_obj_1.txt\n")
    write_pickle(root / "lemon_ocontact" / f"lemon_lookup_results_{split}.pkl",
                 {"Images/Bag/carry/Bag_carry_001.jpg": ["Point/Bag/Bag_obj_1.txt"]})
    return {"root": root, "points": points, "table": table, "carry": carry}


# ------------------------------------------------------------------------------------------------------------------
# PICO / VQA


def write_pico(dataset_dir: Path, split: str = "train") -> dict:
    root = dataset_dir / "pico" / split
    views = get_view_set("4MV-Z_HM_BM").view_names
    stems = ["tennis_racket__000000041045", "chair__000000000139"]
    contacts = {}
    yy, xx = np.mgrid[:OBJECT_SIZE, :OBJECT_SIZE]
    disk = (yy - 16) ** 2 + (xx - 16) ** 2 < 100
    for k, stem in enumerate(stems):
        obj = stem.split("__")[0]
        folder = root / "lowpoly_mesh_0507" / obj
        write_image(root / "images" / f"{stem}.jpg", 50 + k)
        for view in views:
            render = np.full((OBJECT_SIZE, OBJECT_SIZE, 3), 255, np.uint8)
            render[disk] = (40, 160, 90)
            write_png(folder / f"sam_{stem}_{view}.png", render)
            write_png(folder / f"mask_{stem}_{view}.png", ((disk & (yy < 16)) * 255).astype(np.uint8))
            np.savez_compressed(folder / f"p2vmap_{stem}_{view}.npz", mapping=np.zeros((OBJECT_SIZE, OBJECT_SIZE), np.int32))
        contact = np.zeros(30 + k, np.float32)
        contact[:5] = 1.0
        write_pickle(folder / f"contact_vertices_{stem}.pkl", contact)
        contacts[stem] = contact
    write_pickle(root / f"{split}_imglist.pkl", [f"/cluster/pico/images/{s}.jpg" for s in stems])
    return {"root": root, "stems": stems, "contacts": contacts, "disk": disk}


def write_vqa(dataset_dir: Path) -> dict:
    (dataset_dir / "llava_dataset").mkdir(parents=True, exist_ok=True)
    entries = [
        {"id": "000000033471", "image": "000000033471.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
            {"from": "gpt", "value": "The bus in the image is white and red."},
            {"from": "human", "value": "What feature can be seen on the back of the bus?"},
            {"from": "gpt", "value": "The back of the bus features an advertisement."}]},
        {"id": "000000052846", "image": "000000052846.png", "conversations": [
            {"from": "human", "value": "Where is the cat positioned?\n<image>"},
            {"from": "gpt", "value": "The cat is on the couch."}]},
    ]
    (dataset_dir / "llava_dataset" / "llava_instruct_150k.json").write_text(json.dumps(entries))
    write_image(dataset_dir / "coco" / "train2017" / "000000033471.png", 60, mode="rgba")
    write_image(dataset_dir / "coco" / "train2017" / "000000052846.png", 61, mode="gray")
    return {"entries": entries}
