"""SynthContact: synthetic human–object interaction images with exact per-vertex contact, in DAMON's on-disk layout.

Every sample is a SynthBody posed through smplx (pose families standing, sitting, lying, leaning, stepping, kicking,
holding/reaching; random betas in ±1.5), one to three primitive objects placed so that the contact is real (surfaces
touching or slightly interpenetrating; untouched distractors at least 30 cm away) and an RGB render from a random
camera. Contact labels are exact: a body vertex touches an object when its analytic signed distance to the object's
surface is at most ε = 2 cm (inside counts). Sample ``i`` of split ``s`` depends only on ``(seed, s, i)``, so any sample
can be regenerated alone and an interrupted run resumes where it stopped.

    python -m preprocess_data.synthcontact --output-dir data/synthcontact --num-samples 2000 --workers 2

Layout (per split ``train``, ``val``, ``test``, ``test_heldout``; ``test_heldout`` holds only the held-out
(pose family, object) combinations, which never occur in the other splits)::

    <out>/<split>/imgname.npy, images/<stem>.jpg, contact_label.npy, contact_label_objectwise.pkl,
                  body_parts_objectwise.pkl, hcontact_vitruvian_mv2/<object>/<stem>_<view>.png,
                  contact_render_2d/<object>/<stem>_contact_mask.png, objects/<stem>__<object>.ply,
                  object_contact.pkl, meta.jsonl
    <out>/README.md, <out>/splits.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from preprocess_data import synthcontact_geometry as geo
from preprocess_data import synthcontact_render as rend
from preprocess_data import synthcontact_scene as sc
from preprocess_data.datagen_common import single_threaded_children, write_bytes, write_png
from utils.paths import REPO_ROOT

DATASET_NAME = "SynthContact"
FORMAT_VERSION = 2  # 2: image-frame contact masks (contact_render_2d)
SPLITS = ("train", "val", "test", "test_heldout")
SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
VIEW_SET = "4MV-Z_Vitru_mv2"
MASK_2D_FOLDER = "contact_render_2d"  # the folder Damon2DDataset reads
LABELS_2D_FOLDER = "labels_2d"  # per image: what every pixel shows (vision pretraining targets)
LABEL_OBJECT_OFFSET = 32  # labels_2d: 0 background, 1 + part index = body part, 32 + OBJECT_NAMES index = object
MIN_VERTICES = 2
NUM_BODY_VERTICES = 6997
OWNED_ENTRIES = (*SPLITS, "README.md", "splits.json")
INDEX_FILES = ("imgname.npy", "contact_label.npy", "contact_label_objectwise.pkl", "body_parts_objectwise.pkl",
               "object_contact.pkl")


def default_output_dir() -> Path:
    return REPO_ROOT / "data" / "synthcontact"


def default_template_dir() -> Path:
    return REPO_ROOT / "data" / "templates" / "synthbody" / VIEW_SET


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 0
    num_samples: int = 2000
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    heldout_samples: int = 200
    mask_size: int = 128
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.num_samples < 0 or self.heldout_samples < 0:
            raise ValueError("--num-samples and --heldout-samples must be non-negative")
        fractions = tuple(float(f) for f in self.split_fractions)
        if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"--split-fractions needs three non-negative numbers summing to 1, got {self.split_fractions}")
        if not 16 <= self.mask_size <= 2048:
            raise ValueError(f"--mask-size must be in [16, 2048], got {self.mask_size}")

    def counts(self) -> dict[str, int]:
        train = int(round(self.num_samples * self.split_fractions[0]))
        val = int(round(self.num_samples * self.split_fractions[1]))
        val = min(val, self.num_samples - train)
        return {"train": train, "val": val, "test": self.num_samples - train - val, "test_heldout": self.heldout_samples}

    def identity(self) -> dict:
        """What makes two runs the same dataset (compared with an existing splits.json)."""
        return {"dataset": DATASET_NAME, "format_version": FORMAT_VERSION, "seed": self.seed,
                "num_samples": self.num_samples, "split_fractions": [float(f) for f in self.split_fractions],
                "heldout_samples": self.heldout_samples, "mask_size": self.mask_size, "jpeg_quality": self.jpeg_quality}


def stem_of(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The one random stream of a sample: a function of (seed, split, index) only."""
    return np.random.default_rng([int(seed), SPLIT_IDS[split], int(index)])


def combinations_for(split: str) -> list[tuple[tuple[str, str], float]]:
    heldout = set(sc.HELDOUT_COMBINATIONS)
    if split == "test_heldout":
        return [(combo, 1.0) for combo in sc.HELDOUT_COMBINATIONS]
    return [(combo, weight) for combo, (_, weight) in sc.COMBINATIONS.items() if combo not in heldout]


# ----------------------------------------------------------------------------------------------------------------
# One sample
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class SampleObject:
    name: str
    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    contact_ids: np.ndarray  # body vertex ids
    object_contact: np.ndarray  # [num object vertices] float32 0/1


@dataclass
class Sample:
    split: str
    index: int
    stem: str
    image_jpeg: bytes
    objects: list[SampleObject]
    masks: dict[str, np.ndarray]  # object -> [V, S, S] uint8 0/1 (objects with contact only)
    masks_2d: dict[str, np.ndarray]  # object -> [H, W] uint8 0/1 in the image frame (objects with contact only)
    meta: dict = field(default_factory=dict)
    labels_2d: np.ndarray | None = None  # [H, W] uint8: what each pixel of the image shows (LABEL_OBJECT_OFFSET)

    @property
    def contact_objectwise(self) -> dict[str, list[int]]:
        return {o.name: [int(i) for i in o.contact_ids] for o in self.objects if len(o.contact_ids)}


def load_mask_maps(mask_size: int, template_dir: Path | None, body_vertices: np.ndarray, body_faces: np.ndarray):
    """Lifting maps of the synthbody template under 4MV-Z_Vitru_mv2 at ``mask_size``: read from the template folder
    when it has that size for the same mesh, otherwise rasterised in memory (identical; nothing is written)."""
    from utils.geometry.geodesic import mesh_hash
    from utils.geometry.lifting_maps import LiftingMaps
    from utils.geometry.raycast import rasterize
    from utils.geometry.template_views import maps_path
    from utils.geometry.views import get_view_set

    view_set = get_view_set(VIEW_SET)
    key = mesh_hash(body_vertices, body_faces)
    if template_dir is not None:
        meta_file = Path(template_dir) / "template.json"
        if meta_file.is_file() and maps_path(template_dir, mask_size).is_file():
            meta = json.loads(meta_file.read_text())
            if meta.get("mesh_hash") == key and meta.get("view_set") == VIEW_SET:
                return LiftingMaps.load(maps_path(template_dir, mask_size)), str(template_dir)
    fragments = [rasterize(body_vertices, body_faces, v.camera(), mask_size) for v in view_set.render_views]
    return LiftingMaps.from_fragments(fragments, body_faces, len(body_vertices), view_set.view_names), "rendered in memory"


class SynthContactGenerator:
    """Per-process state (body model, masks' lifting maps) and the pure per-sample generator."""

    def __init__(self, config: GeneratorConfig, body_model_dir: str | Path | None = None,
                 template_dir: str | Path | None = None):
        from utils.body_models import canonical_mesh, default_body_model_dir

        self.config = config
        self.body_model_dir = Path(body_model_dir) if body_model_dir else default_body_model_dir()
        self.ctx = sc.BodyContext.load(self.body_model_dir)
        canon = canonical_mesh("synthbody", self.body_model_dir)
        self.canonical_vertices = np.asarray(canon.vertices)
        template = Path(template_dir) if template_dir else default_template_dir()
        self.maps, self.maps_source = load_mask_maps(config.mask_size, template, self.canonical_vertices, self.ctx.faces)
        self.view_names = tuple(self.maps.view_names)

    # -- generation ------------------------------------------------------------------------------------------------

    def generate(self, split: str, index: int) -> Sample:
        cfg = self.config
        rng = sample_rng(cfg.seed, split, index)
        combos = combinations_for(split)
        weights = np.array([w for _, w in combos], dtype=np.float64)
        family, primary = combos[int(rng.choice(len(combos), p=weights / weights.sum()))][0]
        scene = sc.sample_scene(rng, self.ctx, family, primary)
        v = scene.vertices

        surface = geo.BodySurface(v, self.ctx.faces, self.ctx.vertex_faces)
        objects: list[SampleObject] = []
        object_meta: list[dict] = []

        for obj in scene.objects:
            sample_object, meta_entry = self._build_object(rng, obj, v, surface, split, index)
            objects.append(sample_object)
            object_meta.append(meta_entry)

        body_rgb, body_color_info = rend.body_colors(rng, self.ctx.segmentation, len(v))
        all_v = np.concatenate([v] + [o.vertices for o in objects])
        offsets = np.cumsum([len(v)] + [len(o.vertices) for o in objects])[:-1]
        all_f = np.concatenate([self.ctx.faces] + [o.faces + off for o, off in zip(objects, offsets)])
        all_c = np.concatenate([body_rgb] + [o.colors for o in objects])
        # the ground only hides soles, which no camera above it can see anyway
        occluders = np.concatenate([v] + [o.vertices for o in objects if o.name != "supporting"])

        camera = self._sample_camera(rng, v, objects, occluders, scene, family)
        light = rend.sample_light(rng, camera)
        bg, bg_info = rend.background(rng, camera.height, camera.width)
        noise = float(rng.uniform(0.0, 0.02))
        image, frags = rend.render_rgb(all_v, all_f, all_c, camera, light, bg, noise, rng)
        jpeg = rend.encode_jpeg(image, cfg.jpeg_quality)

        masks, masks_2d, body_frags = self._contact_masks(objects, object_meta, v, camera)
        visible_body = int(((frags.face_ids >= 0) & (frags.face_ids < len(self.ctx.faces))).sum())
        labels_2d = self.pixel_labels(frags.face_ids, objects)
        body_pixels = visible_body if body_frags is None else int((body_frags.face_ids >= 0).sum())

        stem = stem_of(split, index)
        meta = {
            "stem": stem, "split": split, "index": int(index), "imgname": f"images/{stem}.jpg",
            "pose_family": family, "primary_object": primary,
            "interactions": {m["name"]: m["interaction"] for m in object_meta},
            "pose_info": scene.pose_info,
            "body": {
                "model": "synthbody",
                "pose": np.asarray(scene.full_pose, np.float32).reshape(-1).tolist(),  # 72 axis-angle, [0:3] = root
                "global_orient": np.asarray(scene.full_pose[0], np.float32).tolist(),
                "betas": np.asarray(scene.betas, np.float32).tolist(),
                "transl": np.asarray(scene.transl, np.float32).tolist(),
            },
            "objects": object_meta,
            "camera": camera.to_meta(),
            "image_size": [camera.width, camera.height],
            "body_pixels_2d": body_pixels,  # body silhouette (body alone) pixels: the frame of the 2D contact masks
            "visible_body_pixels_2d": visible_body,  # body pixels the image shows (objects in front removed)
            "light": {"location": [round(float(x), 6) for x in light]},
            "background": bg_info,
            "body_colors": body_color_info,
            "noise_sigma": round(noise, 6),
            "seeds": {"seed": cfg.seed, "split_id": SPLIT_IDS[split], "index": int(index),
                      "rng": "numpy.random.default_rng([seed, split_id, index])"},
            "scene_attempts": scene.attempts,
            "epsilon": sc.EPSILON,
        }
        meta["labels_2d"] = {"path": f"{LABELS_2D_FOLDER}/{stem}.png", "background": 0,
                             "parts": {name: i + 1 for i, name in enumerate(self.ctx.part_names)},
                             "objects": {o.name: LABEL_OBJECT_OFFSET + sc.OBJECT_NAMES.index(o.name) for o in objects}}
        return Sample(split, index, stem, jpeg, objects, masks, masks_2d, meta, labels_2d)

    def _build_object(self, rng: np.random.Generator, obj, v: np.ndarray, surface: "geo.BodySurface", split: str,
                      index: int) -> tuple[SampleObject, dict]:
        """Mesh, contact ground truth, colours and metadata of one scene object (draws its colours from ``rng``)."""
        spacing = sc.MESH_SPACING["supporting" if obj.name == "supporting" else
                                  "small" if obj.name in ("bottle", "baseball_bat", "sports_ball") else "default"]
        sdf = geo.object_sdf(v, obj.parts)
        ids = np.flatnonzero(sdf <= sc.EPSILON)
        # box faces are finely tessellated only where the body comes close (the only place object-side contact
        # can occur); elsewhere coarse cells render identically and keep the scene cheap to ray-cast
        near = v[sdf <= sc.EPSILON + sc.FINE_MARGIN]
        window = ((near.min(0) - sc.FINE_MARGIN, near.max(0) + sc.FINE_MARGIN) if len(near)
                  else (np.full(3, np.inf), np.full(3, -np.inf)))
        verts, faces = geo.object_mesh(obj.parts, spacing, window, sc.COARSE_SPACING)
        obj_contact = surface.contact(verts, sc.EPSILON).astype(np.float32)
        if obj.interaction == "none" and (len(ids) or obj_contact.any()):
            raise AssertionError(f"untouched {obj.name} has contact")  # excluded by the placement
        colors, base = rend.object_colors(rng, obj.name, verts)
        meta_entry = {
            "name": obj.name, "type": obj.name, "interaction": obj.interaction if len(ids) else "none",
            "intended_interaction": obj.interaction, "parts": obj.parts,
            "size": {k: round(float(x), 6) for k, x in obj.size.items()},
            "pose": {"position": [round(float(x), 6) for x in obj.position], "yaw_deg": round(float(obj.yaw_deg), 4)},
            "color": base, "mesh_spacing": spacing, "mesh_coarse_spacing": sc.COARSE_SPACING,
            "mesh_fine_window": ([np.round(window[0], 6).tolist(), np.round(window[1], 6).tolist()]
                                 if len(near) else None),
            "num_vertices": int(len(verts)), "num_faces": int(len(faces)),
            "ply": f"objects/{stem_of(split, index)}__{obj.name}.ply",
            "contact_vertices": [int(i) for i in ids],
            "object_contact_vertices": [int(i) for i in np.flatnonzero(obj_contact)],
        }
        return SampleObject(obj.name, verts, faces, colors, ids, obj_contact), meta_entry

    @staticmethod
    def _sample_camera(rng: np.random.Generator, v: np.ndarray, objects: list[SampleObject], occluders: np.ndarray,
                       scene, family: str):
        """A camera aimed at the body's contact points (contact with non-support objects preferred)."""
        contact_ids = [o.contact_ids for o in objects if o.name != "supporting" and len(o.contact_ids)]
        if not contact_ids:
            contact_ids = [o.contact_ids for o in objects if len(o.contact_ids)]
        contact_points = v[np.unique(np.concatenate(contact_ids))] if contact_ids else np.zeros((0, 3))
        object_parts = [o.parts for o in scene.objects]
        try:
            camera = rend.sample_camera(rng, v, occluders, contact_points, object_parts, lying=family == "lying")
        except geo.PlacementFailure:  # very rare: every direction tried was blocked; keep drawing (deterministic)
            camera = rend.sample_camera(rng, v, occluders, contact_points, object_parts, lying=family == "lying",
                                        tries=60)
        return camera

    def _contact_masks(self, objects: list[SampleObject], object_meta: list[dict], v: np.ndarray, camera):
        """Per-object view masks and 2D contact masks of the body; fills each ``contact_pixels_2d`` entry in place.

        Returns ``(masks, masks_2d, body_frags)``; ``body_frags`` is ``None`` when no object touches the body."""
        from utils.geometry.projection import contact_masks

        masks, masks_2d, body_frags = {}, {}, None
        for o, om in zip(objects, object_meta):
            om["contact_pixels_2d"] = 0
            if len(o.contact_ids):
                labels = np.zeros(len(v), dtype=np.float32)
                labels[o.contact_ids] = 1.0
                masks[o.name] = contact_masks(labels, self.maps, min_vertices=MIN_VERTICES)
                if body_frags is None:  # the body alone: objects must not hide the contact they make
                    body_frags = rend.render_body_fragments(v, self.ctx.faces, camera)
                masks_2d[o.name] = rend.contact_mask_2d(body_frags, self.ctx.faces, labels)
                om["contact_pixels_2d"] = int(masks_2d[o.name].sum())
        return masks, masks_2d, body_frags

    def pixel_labels(self, face_ids: np.ndarray, objects: list[SampleObject]) -> np.ndarray:
        """The image's label map from the scene's own fragments (what the camera sees): the body part of the body
        face hit (the part of its first corner), the object class of an object face, 0 for the background."""
        body_faces = self.ctx.faces
        face_label = [self.ctx.part_of_vertex[body_faces[:, 0]] + 1]
        for o in objects:
            face_label.append(np.full(len(o.faces), LABEL_OBJECT_OFFSET + sc.OBJECT_NAMES.index(o.name)))
        table = np.concatenate(face_label).astype(np.uint8)
        ids = np.asarray(face_ids)
        return np.where(ids >= 0, table[np.clip(ids, 0, None)], 0).astype(np.uint8)

    # -- writing -------------------------------------------------------------------------------------------------

    def write(self, out_dir: Path, sample: Sample) -> dict:
        split_dir = Path(out_dir) / sample.split
        for sub in ("images", "objects"):
            (split_dir / sub).mkdir(parents=True, exist_ok=True)
        for o in sample.objects:
            geo.write_ply(split_dir / "objects" / f"{sample.stem}__{o.name}.ply", o.vertices, o.faces,
                          rend_colors_uint8(o.colors))
        for name, masks in sample.masks.items():
            for view, mask in zip(self.view_names, masks):
                write_png(split_dir / "hcontact_vitruvian_mv2" / name / f"{sample.stem}_{view}.png",
                          (mask > 0).astype(np.uint8) * 255)
        for name, mask in sample.masks_2d.items():  # one per object with 3D contact, even if none of it is visible
            write_png(split_dir / MASK_2D_FOLDER / name / f"{sample.stem}_contact_mask.png",
                      (mask > 0).astype(np.uint8) * 255)
        if sample.labels_2d is not None:
            write_png(split_dir / LABELS_2D_FOLDER / f"{sample.stem}.png", sample.labels_2d)
        # the image is written last (atomically): its presence marks the sample's files as complete
        write_bytes(split_dir / "images" / f"{sample.stem}.jpg", sample.image_jpeg)
        return sample.meta

    def generate_and_write(self, out_dir: Path, split: str, index: int) -> dict:
        return self.write(out_dir, self.generate(split, index))


def rend_colors_uint8(colors: np.ndarray) -> np.ndarray:
    return np.round(np.clip(colors, 0, 1) * 255).astype(np.uint8)


def sample_files(out_dir: Path, meta: dict, view_names: Iterable[str]) -> list[Path]:
    """Every file a sample owns (used to decide whether it is complete)."""
    split_dir = Path(out_dir) / meta["split"]
    files = [split_dir / meta["imgname"]]
    if "labels_2d" in meta:
        files.append(split_dir / meta["labels_2d"]["path"])
    for obj in meta["objects"]:
        files.append(split_dir / obj["ply"])
        if obj["contact_vertices"]:
            files += [split_dir / "hcontact_vitruvian_mv2" / obj["name"] / f"{meta['stem']}_{v}.png" for v in view_names]
            files.append(split_dir / MASK_2D_FOLDER / obj["name"] / f"{meta['stem']}_contact_mask.png")
    return files


# ----------------------------------------------------------------------------------------------------------------
# Index files
# ----------------------------------------------------------------------------------------------------------------


def read_meta(path: Path) -> dict[str, dict]:
    """``stem -> meta`` from a meta.jsonl (later lines win; a truncated last line from a crash is ignored)."""
    entries: dict[str, dict] = {}
    if not path.is_file():
        return entries
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            meta = json.loads(line)
        except json.JSONDecodeError:
            continue
        entries[meta["stem"]] = meta
    return entries


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_bytes(path, buffer.getvalue())


def write_index_files(split_dir: Path, count: int, segmentation: dict[str, np.ndarray]) -> list[dict]:
    """Build the DAMON index files of a split from its meta.jsonl; returns the metas in index order."""
    from utils.body_models import body_parts_from_vertices

    split = split_dir.name
    entries = read_meta(split_dir / "meta.jsonl")
    metas = []
    for index in range(count):
        stem = stem_of(split, index)
        if stem not in entries:
            raise RuntimeError(f"{split_dir}: sample {stem} is missing from meta.jsonl; rerun the generator to resume")
        metas.append(entries[stem])
    labels = np.zeros((count, NUM_BODY_VERTICES), dtype=np.float32)
    objectwise: list[dict[str, list[int]]] = []
    body_parts: dict[str, list[str]] = {}
    object_contact: dict[str, np.ndarray] = {}
    for i, meta in enumerate(metas):
        per_object: dict[str, list[int]] = {}
        for obj in meta["objects"]:
            ids = sorted(int(x) for x in obj["contact_vertices"])
            oc = np.zeros(obj["num_vertices"], dtype=np.float32)
            oc[np.asarray(obj["object_contact_vertices"], dtype=np.int64)] = 1.0
            object_contact[f"{meta['stem']}__{obj['name']}"] = oc
            if ids:
                per_object[obj["name"]] = ids
                labels[i, ids] = 1.0
                body_parts[f"{meta['stem']}_{obj['name']}"] = [
                    str(p) for p in body_parts_from_vertices(np.asarray(ids, dtype=np.int64), segmentation)]
        objectwise.append(per_object)
    _save_npy(split_dir / "imgname.npy", np.array([m["imgname"] for m in metas], dtype=str))
    _save_npy(split_dir / "contact_label.npy", labels)
    write_bytes(split_dir / "contact_label_objectwise.pkl", pickle.dumps(objectwise, protocol=4))
    write_bytes(split_dir / "body_parts_objectwise.pkl", pickle.dumps(body_parts, protocol=4))
    write_bytes(split_dir / "object_contact.pkl", pickle.dumps(object_contact, protocol=4))
    # meta.jsonl rewritten in index order without duplicates (regenerated samples append a second line)
    text = "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in metas)
    write_bytes(split_dir / "meta.jsonl", text.encode())
    return metas


# ----------------------------------------------------------------------------------------------------------------
# Runs (output-dir checks, workers, resume)
# ----------------------------------------------------------------------------------------------------------------


def check_output_dir(out_dir: Path, config: GeneratorConfig, overwrite: bool) -> None:
    """Refuse a directory holding another dataset (or foreign files) unless ``overwrite``. With ``overwrite`` the
    entries this generator owns (split folders, README.md, splits.json) are removed so everything is generated
    afresh; anything else in the directory is left alone. Without it, the same dataset is resumed."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a directory")
    if overwrite:
        _remove_owned(out_dir)
        return
    entries = [p.name for p in out_dir.iterdir()]
    if not entries:
        return
    splits_file = out_dir / "splits.json"
    problem = None
    if splits_file.is_file():
        try:
            old = json.loads(splits_file.read_text())
        except json.JSONDecodeError:
            old = {}
        old_identity = {k: old.get(k) for k in config.identity()}
        if old_identity != config.identity():
            diff = {k: (old_identity[k], v) for k, v in config.identity().items() if old_identity[k] != v}
            problem = f"{out_dir} holds a different dataset (splits.json differs: {diff})"
    else:
        problem = f"{out_dir} is not empty and has no SynthContact splits.json (found {sorted(entries)[:5]})"
    if problem is not None:
        raise FileExistsError(problem + "; choose another --output-dir or pass --overwrite")


def _remove_owned(out_dir: Path) -> None:
    for name in OWNED_ENTRIES:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _splits_json(config: GeneratorConfig, complete: bool, extra: dict | None = None) -> dict:
    data = dict(config.identity())
    data.update({
        "counts": config.counts(),
        "splits": list(SPLITS),
        "heldout_combinations": [list(c) for c in sc.HELDOUT_COMBINATIONS],
        "train_combinations": [list(c) for c, _ in combinations_for("train")],
        "object_names": list(sc.OBJECT_NAMES),
        "pose_families": list(sc.POSE_FAMILIES),
        "epsilon_m": sc.EPSILON,
        "untouched_min_distance_m": sc.UNTOUCHED_MIN_DIST,
        "view_set": VIEW_SET,
        "min_vertices": MIN_VERTICES,
        "num_body_vertices": NUM_BODY_VERTICES,
        "body_model": "synthbody",
        "complete": complete,
    })
    if extra:
        data.update(extra)
    return data


_WORKER: SynthContactGenerator | None = None


def _init_worker(config: GeneratorConfig, body_model_dir: str | None, template_dir: str | None) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(1)
    _WORKER = SynthContactGenerator(config, body_model_dir, template_dir)


def _work(task: tuple[str, str, int]) -> dict:
    out_dir, split, index = task
    assert _WORKER is not None
    try:
        return _WORKER.generate_and_write(Path(out_dir), split, index)
    except Exception as err:  # name the sample: it can be regenerated alone with the same (seed, split, index)
        raise RuntimeError(f"SynthContact sample {stem_of(split, index)} failed: {type(err).__name__}: {err}") from err


def _append_meta(path: Path, meta: dict) -> None:
    with open(path, "ab") as handle:
        handle.write((json.dumps(meta, separators=(",", ":")) + "\n").encode())


def _repair_meta_tail(path: Path) -> None:
    """A crash may leave a partial last line; terminate it so the next appended line stays parseable."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")


def _pending_tasks(out_dir: Path, counts: dict[str, int]) -> tuple[list[tuple[str, str, int]], int]:
    """Samples still to generate as ``(out_dir, split, index)`` tasks, and how many are complete on disk already.

    Creates the split folders and repairs a ``meta.jsonl`` cut short by an interrupted run."""
    from utils.geometry.views import get_view_set

    view_names = get_view_set(VIEW_SET).view_names
    tasks: list[tuple[str, str, int]] = []
    skipped = 0
    for split in SPLITS:
        split_dir = out_dir / split
        for sub in ("images", "objects", "hcontact_vitruvian_mv2", MASK_2D_FOLDER, LABELS_2D_FOLDER):
            (split_dir / sub).mkdir(parents=True, exist_ok=True)
        _repair_meta_tail(split_dir / "meta.jsonl")
        done = read_meta(split_dir / "meta.jsonl")
        for index in range(counts[split]):
            meta = done.get(stem_of(split, index))
            if meta is not None and all(p.is_file() for p in sample_files(out_dir, meta, view_names)):
                skipped += 1
                continue
            tasks.append((str(out_dir), split, index))
    return tasks, skipped


def _generate_tasks(tasks: list[tuple[str, str, int]], out_dir: Path, config: GeneratorConfig, body_dir: str | None,
                    tmpl_dir: str | None, workers: int, bar) -> None:
    """Generate and write ``tasks`` in this process (``workers <= 1``) or a spawned pool, appending each meta line."""
    if workers <= 1:
        generator = SynthContactGenerator(config, body_dir, tmpl_dir)
        for task in tasks:
            meta = generator.generate_and_write(Path(task[0]), task[1], task[2])
            _append_meta(out_dir / meta["split"] / "meta.jsonl", meta)
            bar.update(1)
    else:
        import multiprocessing as mp

        context = mp.get_context("spawn")
        with single_threaded_children(), context.Pool(workers, initializer=_init_worker,
                                                      initargs=(config, body_dir, tmpl_dir)) as pool:
            for meta in pool.imap_unordered(_work, tasks, chunksize=2):
                _append_meta(out_dir / meta["split"] / "meta.jsonl", meta)
                bar.update(1)


def run(
    output_dir: str | Path,
    config: GeneratorConfig,
    workers: int = 2,
    overwrite: bool = False,
    body_model_dir: str | Path | None = None,
    template_dir: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Generate (or resume) a dataset; returns the final splits.json content."""
    from tqdm import tqdm

    from utils.body_models import default_body_model_dir, load_part_segmentation

    start = time.time()
    out_dir = Path(output_dir).resolve()
    check_output_dir(out_dir, config, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = {}
    if (out_dir / "splits.json").is_file():
        previous = json.loads((out_dir / "splits.json").read_text())
    (out_dir / "splits.json").write_text(json.dumps(_splits_json(config, False), indent=1))

    counts = config.counts()
    tasks, skipped = _pending_tasks(out_dir, counts)

    bar = tqdm(total=len(tasks) + skipped, initial=skipped, desc="SynthContact", unit="sample", disable=not progress,
               smoothing=0.05)
    body_dir = str(body_model_dir) if body_model_dir else None
    tmpl_dir = str(template_dir) if template_dir else None
    if tasks:
        _generate_tasks(tasks, out_dir, config, body_dir, tmpl_dir, workers, bar)
    bar.close()

    segmentation = load_part_segmentation(
        Path(body_model_dir or default_body_model_dir()) / "synthbody" / "synthbody_segmentation.json")
    stats: dict[str, Any] = {}
    for split in SPLITS:
        metas = write_index_files(out_dir / split, counts[split], segmentation)
        stats[split] = _split_stats(metas)
    elapsed = time.time() - start
    extra = {"generated_this_run": len(tasks), "skipped_existing": skipped, "stats": stats,
             "last_run_seconds": round(elapsed, 1), "workers": workers}
    if tasks or "generation_seconds" not in previous:
        extra["generation_seconds"] = round(elapsed, 1) if not skipped else None  # wall time of a complete run
    else:
        extra["generation_seconds"] = previous["generation_seconds"]
    final = _splits_json(config, True, extra)
    (out_dir / "splits.json").write_text(json.dumps(final, indent=1))
    (out_dir / "README.md").write_text(dataset_readme(config, final))
    return final


def _split_stats(metas: list[dict]) -> dict:
    combos: dict[str, int] = {}
    objects: dict[str, int] = {}
    touched_pairs = 0
    for meta in metas:
        key = f"{meta['pose_family']}/{meta['primary_object']}"
        combos[key] = combos.get(key, 0) + 1
        for obj in meta["objects"]:
            objects[obj["name"]] = objects.get(obj["name"], 0) + 1
            touched_pairs += bool(obj["contact_vertices"])
    n_obj = [len(m["objects"]) for m in metas]
    # image-frame masks: contact of the body rendered alone (self-occlusion only), as a fraction of the image
    fractions = [o["contact_pixels_2d"] / (m["image_size"][0] * m["image_size"][1])
                 for m in metas for o in m["objects"] if o["contact_vertices"]]
    return {"images": len(metas), "image_object_pairs_with_contact": touched_pairs,
            "pairs_with_empty_2d_mask": sum(1 for f in fractions if f == 0),
            "mean_2d_contact_pixel_fraction": round(float(np.mean(fractions)), 6) if fractions else None,
            "objects_per_image": {str(k): n_obj.count(k) for k in sorted(set(n_obj))},
            "untouched_objects": sum(1 for m in metas for o in m["objects"] if not o["contact_vertices"]),
            "combinations": dict(sorted(combos.items())), "objects": dict(sorted(objects.items()))}


def dataset_readme(config: GeneratorConfig, splits: dict) -> str:
    counts = splits["counts"]
    lines = [
        "# SynthContact", "",
        "Synthetic human–object interaction images with exact per-vertex contact on SynthBody (6997 vertices), in",
        "the DAMON layout. Generated by `python -m preprocess_data.synthcontact` (see docs/synthcontact.md).", "",
        f"seed {config.seed}, mask size {config.mask_size}, view set {VIEW_SET} (min_vertices {MIN_VERTICES}), "
        f"contact threshold {sc.EPSILON} m.", "",
        "| split | images | image–object pairs with contact | pairs with an empty 2D mask | mean 2D contact pixel fraction |",
        "| --- | --- | --- | --- | --- |",
    ]
    for split in SPLITS:
        s = splits.get("stats", {}).get(split, {})
        fraction = s.get("mean_2d_contact_pixel_fraction")
        lines.append(f"| {split} | {counts[split]} | {s.get('image_object_pairs_with_contact', '')} | "
                     f"{s.get('pairs_with_empty_2d_mask', '')} | {'' if fraction is None else f'{fraction:.3%}'} |")
    lines += ["", "Held-out (pose family, object) combinations, only in `test_heldout`: "
              + ", ".join(f"{f} × {o}" for f, o in sc.HELDOUT_COMBINATIONS) + ".", "",
              "Per split: `imgname.npy`, `images/`, `contact_label.npy` [N, 6997], `contact_label_objectwise.pkl`,",
              "`body_parts_objectwise.pkl`, `hcontact_vitruvian_mv2/<object>/<stem>_<view>.png`, `objects/<stem>__<object>.ply`",
              "(world = body coordinates), `object_contact.pkl`, `meta.jsonl` (everything needed to regenerate a sample).", "",
              f"2D human contact (the DAMON 2D layout): `{MASK_2D_FOLDER}/<object>/<stem>_contact_mask.png`, one per",
              "(image, object) pair in `contact_label_objectwise.pkl`, the image's width × height, 8-bit, 255 = pixels where",
              "the body, rendered alone through the image's camera, is in contact with that object (the body hides its own",
              "far side, objects hide nothing: as DAMON's contact_render_2d). The fraction is of all image pixels.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=None, help=f"default: {default_output_dir()}")
    parser.add_argument("--num-samples", type=int, default=2000, help="images in train+val+test")
    parser.add_argument("--split-fractions", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--heldout-samples", type=int, default=200, help="extra images in test_heldout")
    parser.add_argument("--mask-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument("--body-model-dir", type=Path, default=None)
    parser.add_argument("--template-dir", type=Path, default=None,
                        help=f"synthbody {VIEW_SET} template folder (default {default_template_dir()}; rendered in memory if absent)")
    parser.add_argument("--overwrite", action="store_true",
                        help="regenerate from scratch, replacing the dataset in --output-dir (other files there are kept)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    config = GeneratorConfig(seed=args.seed, num_samples=args.num_samples, split_fractions=tuple(args.split_fractions),
                             heldout_samples=args.heldout_samples, mask_size=args.mask_size,
                             jpeg_quality=args.jpeg_quality)
    out_dir = args.output_dir or default_output_dir()
    try:
        result = run(out_dir, config, workers=args.workers, overwrite=args.overwrite, body_model_dir=args.body_model_dir,
                     template_dir=args.template_dir, progress=not args.no_progress)
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {out_dir}: {result['counts']} in {result['last_run_seconds']} s "
          f"({result['generated_this_run']} generated, {result['skipped_existing']} already present)")
    return result


if __name__ == "__main__":
    main()
