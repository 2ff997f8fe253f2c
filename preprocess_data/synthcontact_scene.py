"""SynthContact scenes: a posed SynthBody plus primitive objects placed so that the contact is real.

Everything random is drawn from one ``numpy.random.Generator`` per sample, so a scene is a pure function of
``(seed, split, index)``. Poses are built joint by joint with a small forward-kinematics helper that can aim a bone at
a world direction (with a twist that orients the palm), then passed through ``smplx`` like any SMPL pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.spatial.transform import Rotation

from preprocess_data import synthcontact_geometry as geo

EPSILON = 0.02  # contact threshold (m)
UNTOUCHED_MIN_DIST = 0.30  # distractors are at least this far from the body
MAX_PENETRATION = 0.05  # no body vertex may lie deeper than this inside any object ...
MATTRESS_MAX_PENETRATION = 0.08  # ... except a bed, which is soft: heels and hands may sink deeper than the trunk

OBJECT_NAMES = ("chair", "bench", "box", "bottle", "baseball_bat", "sports_ball", "dining_table", "bed", "supporting")
POSE_FAMILIES = ("standing", "sitting", "lying", "leaning", "stepping", "kicking", "holding")

# (pose family, primary object) -> interaction; sampling weight
COMBINATIONS: dict[tuple[str, str], tuple[str, float]] = {
    ("standing", "supporting"): ("stand_on", 1.0),
    ("sitting", "chair"): ("sit", 1.2),
    ("sitting", "bench"): ("sit", 1.0),
    ("sitting", "box"): ("sit", 1.0),
    ("sitting", "bed"): ("sit", 1.0),  # on the edge: hips and thighs, not the back
    ("lying", "bed"): ("lie", 1.2),
    ("lying", "bench"): ("lie", 0.8),  # the back, not the hips and thighs of sitting
    ("leaning", "dining_table"): ("lean", 1.2),
    ("stepping", "box"): ("step_on", 1.0),
    ("stepping", "bench"): ("step_on", 1.0),
    ("kicking", "sports_ball"): ("kick", 1.2),
    ("holding", "bottle"): ("hold", 1.0),
    ("holding", "baseball_bat"): ("hold", 1.0),
    ("holding", "sports_ball"): ("hold", 1.0),
    ("holding", "box"): ("hold", 1.0),  # carried between both palms (the two-handed pose of holding a ball)
    ("sitting", "sports_ball"): ("sit", 1.0),  # an exercise ball under the hips
    ("sitting", "dining_table"): ("sit", 1.0),  # on the edge of a low table
    ("stepping", "chair"): ("step_on", 1.0),  # one foot on the seat, the backrest beyond the toes
    ("kicking", "bottle"): ("kick", 1.0),
    ("kicking", "baseball_bat"): ("kick", 1.0),
}
# Every object class is touched with different body parts in at least two training combinations (chair: hips and
# thighs when sat on, one foot when stepped on; bottle and bat: one hand when held, one foot when kicked; ball: a foot
# when kicked, the hips when sat on; table: the hands when leaned on, the hips when sat on; box: a foot when stepped
# on, both palms when carried; bench and bed: the back when lain on, the hips when sat on), so no class prior can
# give the contact; which hand or foot, the image must tell. Objects held with both hands (the two-handed pose):
TWO_HANDED = ("sports_ball", "box")
# Never in train/val; only in test_heldout. Each pairs a family and an object that both occur in train otherwise.
HELDOUT_COMBINATIONS: tuple[tuple[str, str], ...] = (("sitting", "box"), ("stepping", "bench"), ("holding", "sports_ball"))

DISTRACTOR_OBJECTS = ("chair", "bench", "box", "bottle", "baseball_bat", "sports_ball", "dining_table")

JOINTS = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
          "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
          "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand")
J = {name: i for i, name in enumerate(JOINTS)}
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
SIDES = {"left": 1.0, "right": -1.0}  # subject's left is +x

MESH_SPACING = {"default": 0.03, "small": 0.015, "supporting": 0.03}
COARSE_SPACING = 0.25  # box faces away from the body
FINE_MARGIN = 0.05  # box faces are fine within this margin of the body vertices closer than EPSILON + FINE_MARGIN


class PlacementError(geo.PlacementFailure):
    """A sampled pose/object combination could not be made valid; the sampler draws again."""


# ----------------------------------------------------------------------------------------------------------------
# Body
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class BodyContext:
    """What one process needs about SynthBody: the smplx model, topology, rest data and part segmentation."""

    model: Any
    faces: np.ndarray
    v_template: np.ndarray
    shapedirs: np.ndarray
    j_regressor: np.ndarray
    segmentation: dict[str, np.ndarray]
    vertex_faces: np.ndarray
    part_of_vertex: np.ndarray  # [V] index into part_names
    part_names: tuple[str, ...]

    @property
    def part_sizes(self) -> np.ndarray:
        return np.array([len(self.segmentation[n]) for n in self.part_names], dtype=np.float64)

    @classmethod
    def load(cls, body_model_dir) -> "BodyContext":
        from pathlib import Path

        from utils.body_models import load_body_model, load_part_segmentation

        model = load_body_model("synthbody", body_model_dir, num_betas=10)
        segmentation = load_part_segmentation(Path(body_model_dir) / "synthbody" / "synthbody_segmentation.json")
        faces = np.asarray(model.faces, dtype=np.int64)
        v_template = model.v_template.detach().cpu().numpy().astype(np.float64)
        names = tuple(segmentation)
        part_of_vertex = np.full(len(v_template), -1, dtype=np.int64)
        for i, name in enumerate(names):
            part_of_vertex[segmentation[name]] = i
        return cls(model, faces, v_template, model.shapedirs.detach().cpu().numpy().astype(np.float64),
                   model.J_regressor.detach().cpu().numpy().astype(np.float64), segmentation,
                   geo.BodySurface.vertex_face_table(faces, len(v_template)), part_of_vertex, names)

    def rest_joints(self, betas: np.ndarray) -> np.ndarray:
        shaped = self.v_template + self.shapedirs @ np.asarray(betas, dtype=np.float64)
        return self.j_regressor @ shaped

    def pose(self, betas: np.ndarray, full_pose: np.ndarray, transl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posed vertices and the 24 joints, float32 arithmetic exactly as smplx does it, on one thread."""
        return apply_transl(pose_body(self.model, betas, full_pose), transl)

    def parts_of(self, vertex_ids: np.ndarray) -> set[str]:
        return {self.part_names[i] for i in np.unique(self.part_of_vertex[np.asarray(vertex_ids, dtype=np.int64)])}


def pose_body(model: Any, betas: np.ndarray, full_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 vertices and joints of smplx without translation, computed on one thread so the bits do not depend
    on the caller's thread settings."""
    import torch

    full_pose = np.asarray(full_pose, dtype=np.float32).reshape(24, 3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = model(
                betas=torch.from_numpy(np.asarray(betas, dtype=np.float32).reshape(1, -1)),
                global_orient=torch.from_numpy(full_pose[:1].reshape(1, 3).copy()),
                body_pose=torch.from_numpy(full_pose[1:].reshape(1, 69).copy()),
                return_verts=True,
            )
    finally:
        torch.set_num_threads(threads)
    return out.vertices[0].numpy(), out.joints[0, :24].numpy()


def apply_transl(posed: tuple[np.ndarray, np.ndarray], transl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add the translation in float32 (what smplx's ``transl`` does), then widen to float64."""
    t = np.asarray(transl, dtype=np.float32).reshape(1, 3)
    verts, joints = posed
    return (verts + t).astype(np.float64), (joints + t).astype(np.float64)


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


class PoseBuilder:
    """Local joint rotations with helpers to set a bone's *world* direction (and twist)."""

    def __init__(self, rest_joints: np.ndarray):
        self.rest = np.asarray(rest_joints, dtype=np.float64)
        self.local = [Rotation.identity() for _ in range(24)]

    def glob(self, joint: int) -> Rotation:
        rot = self.local[joint]
        parent = PARENTS[joint]
        while parent >= 0:
            rot = self.local[parent] * rot
            parent = PARENTS[parent]
        return rot

    def euler(self, joint: str, degrees_xyz) -> None:
        self.local[J[joint]] = Rotation.from_euler("xyz", degrees_xyz, degrees=True)

    def set_global(self, joint: str, rotation: Rotation) -> None:
        parent = PARENTS[J[joint]]
        parent_rot = self.glob(parent) if parent >= 0 else Rotation.identity()
        self.local[J[joint]] = parent_rot.inv() * rotation

    def aim(self, joint: str, child: str, direction: np.ndarray, twist_ref: np.ndarray | None = None,
            twist_target: np.ndarray | None = None) -> None:
        """Rotate ``joint`` so its bone (towards ``child`` in the rest pose) points along ``direction`` (world); with
        ``twist_ref``/``twist_target`` also spin it about the bone so the rest vector ``twist_ref`` faces
        ``twist_target`` as closely as possible."""
        direction = _unit(direction)
        rest_dir = _unit(self.rest[J[child]] - self.rest[J[joint]])
        rot = Rotation.from_matrix(geo.rotation_between(rest_dir, direction))
        if twist_ref is not None and twist_target is not None:
            cur = rot.apply(twist_ref)
            cur = cur - direction * np.dot(cur, direction)
            tgt = np.asarray(twist_target, float) - direction * np.dot(twist_target, direction)
            if np.linalg.norm(cur) > 1e-6 and np.linalg.norm(tgt) > 1e-6:
                cur, tgt = _unit(cur), _unit(tgt)
                angle = math.atan2(np.dot(np.cross(cur, tgt), direction), np.dot(cur, tgt))
                rot = Rotation.from_rotvec(direction * angle) * rot
        self.set_global(joint, rot)

    def full_pose(self) -> np.ndarray:
        return np.stack([r.as_rotvec() for r in self.local]).astype(np.float64)


def _limb_dir(rng: np.random.Generator, side: float, elev: tuple[float, float], plane: tuple[float, float]) -> np.ndarray:
    """Body-frame direction: ``elev`` degrees up from hanging straight down, in a vertical plane turned ``plane``
    degrees from sideways (0) to forward (90); ``side`` = +1 (left, +x) or -1."""
    e = math.radians(rng.uniform(*elev))
    p = math.radians(rng.uniform(*plane))
    return _unit([side * math.sin(e) * math.cos(p), -math.cos(e), math.sin(e) * math.sin(p)])


def _leg_dir(flex_deg: float, abd_deg: float, side: float) -> np.ndarray:
    f, a = math.radians(flex_deg), math.radians(abd_deg)
    return _unit([side * math.sin(a), -math.cos(f) * math.cos(a), math.sin(f) * math.cos(a)])


def _bend(direction: np.ndarray, towards: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate ``direction`` by ``degrees`` towards ``towards`` (in their common plane)."""
    d = _unit(direction)
    t = np.asarray(towards, float) - d * np.dot(towards, d)
    if np.linalg.norm(t) < 1e-6:
        t = np.array([0.0, 1.0, 0.0]) - d * d[1]
    t = _unit(t)
    a = math.radians(degrees)
    return _unit(d * math.cos(a) + t * math.sin(a))


PALM_REST = np.array([0.0, -1.0, 0.0])  # T-pose palms face down
THUMB_REST = np.array([0.0, 0.0, 1.0])  # and thumbs point forward


def _spine(pb: PoseBuilder, rng: np.random.Generator, flex=(-4.0, 8.0), twist=10.0, side=5.0) -> None:
    for joint in ("spine1", "spine2", "spine3"):
        pb.euler(joint, [rng.uniform(*flex) / 1.5, rng.uniform(-twist, twist) / 3, rng.uniform(-side, side) / 3])
    pb.euler("neck", [rng.uniform(-10, 15), rng.uniform(-20, 20), rng.uniform(-5, 5)])
    pb.euler("head", [rng.uniform(-10, 10), rng.uniform(-15, 15), rng.uniform(-5, 5)])


def _relaxed_arm(pb: PoseBuilder, rng: np.random.Generator, side: str, root: Rotation,
                 elev=(8.0, 70.0), plane=(-20.0, 60.0), elbow=(0.0, 70.0)) -> None:
    s = SIDES[side]
    upper = root.apply(_limb_dir(rng, s, elev, plane))
    pb.aim(f"{side}_shoulder", f"{side}_elbow", upper)
    fore = _bend(upper, root.apply([0.0, 0.3, 1.0]), rng.uniform(*elbow))
    palm = root.apply([-s, -0.3, 0.0])  # palm roughly towards the thigh
    pb.aim(f"{side}_elbow", f"{side}_wrist", fore, PALM_REST, palm)
    pb.euler(f"{side}_wrist", [rng.uniform(-10, 10), rng.uniform(-10, 10), rng.uniform(-15, 15)])


def _standing_leg(pb: PoseBuilder, rng: np.random.Generator, side: str, root_yaw: Rotation,
                  flex=(-8.0, 10.0), abd=(0.0, 9.0), knee=(0.0, 12.0)) -> None:
    s = SIDES[side]
    f = rng.uniform(*flex)
    pb.aim(f"{side}_hip", f"{side}_knee", root_yaw.apply(_leg_dir(f, rng.uniform(*abd), s)))
    pb.aim(f"{side}_knee", f"{side}_ankle", root_yaw.apply(_leg_dir(f - rng.uniform(*knee), rng.uniform(0, 4), s)))
    _flat_foot(pb, rng, side, root_yaw)


def _flat_foot(pb: PoseBuilder, rng: np.random.Generator, side: str, root_yaw: Rotation) -> None:
    yaw = Rotation.from_euler("y", SIDES[side] * rng.uniform(-4, 12), degrees=True)
    pb.set_global(f"{side}_ankle", root_yaw * yaw)


# ----------------------------------------------------------------------------------------------------------------
# Pose families (each returns the full pose [24, 3] and a dict of what the placement needs)
# ----------------------------------------------------------------------------------------------------------------


def pose_standing(pb: PoseBuilder, rng: np.random.Generator) -> dict:
    root = Rotation.identity()
    _spine(pb, rng)
    for side in SIDES:
        _standing_leg(pb, rng, side, root)
        _relaxed_arm(pb, rng, side, root)
    return {}


def pose_sitting(pb: PoseBuilder, rng: np.random.Generator) -> dict:
    root = Rotation.from_euler("x", rng.uniform(-12, 6), degrees=True)
    pb.local[0] = root
    _spine(pb, rng, flex=(-2, 14))
    yaw = Rotation.identity()
    for side, s in SIDES.items():
        thigh = _leg_dir(rng.uniform(72, 98), rng.uniform(2, 16), s)
        pb.aim(f"{side}_hip", f"{side}_knee", thigh)
        shin = _leg_dir(rng.uniform(-8, 25), rng.uniform(0, 8), s)
        pb.aim(f"{side}_knee", f"{side}_ankle", shin)
        _flat_foot(pb, rng, side, yaw)
        if rng.random() < 0.5:  # hands on the thighs
            _relaxed_arm(pb, rng, side, root, elev=(20, 45), plane=(40, 85), elbow=(20, 60))
        else:
            _relaxed_arm(pb, rng, side, root, elev=(8, 60), plane=(-10, 70), elbow=(0, 80))
    return {}


def pose_lying(pb: PoseBuilder, rng: np.random.Generator) -> dict:
    """Supine, prone or on one side, with a random yaw. Limb angles are signed so limbs rest on or above the
    mattress plane rather than reaching into it (body-frame forward is up when supine, down when prone)."""
    mode = str(rng.choice(["supine", "supine", "prone", "side"]))
    yaw = Rotation.from_euler("y", rng.uniform(0, 360), degrees=True)
    roll = 0.0
    if mode == "supine":
        lie = Rotation.from_euler("x", -90, degrees=True)
    elif mode == "prone":
        lie = Rotation.from_euler("x", 90, degrees=True)
    else:
        roll = float(rng.choice([-90.0, 90.0]))  # +90: the body's left side (+x) faces up
        lie = Rotation.from_euler("z", roll, degrees=True) * Rotation.from_euler("x", -90, degrees=True)
    root = yaw * lie
    pb.local[0] = root
    _spine(pb, rng, flex=(-3, 3), twist=6, side=4)
    pb.euler("neck", [rng.uniform(-5, 5), rng.uniform(-10, 10), rng.uniform(-3, 3)])
    forward_up = {"supine": 1.0, "prone": -1.0, "side": 0.0}[mode]
    lower_side = "right" if roll > 0 else "left"
    for side, s in SIDES.items():
        if mode == "side":
            flex, knee = rng.uniform(0, 40), rng.uniform(0, 40)
            abd = rng.uniform(0, 3) if side == lower_side else rng.uniform(0, 15)
        else:
            flex, knee, abd = forward_up * rng.uniform(-2, 15), rng.uniform(0, 12), rng.uniform(0, 12)
        pb.aim(f"{side}_hip", f"{side}_knee", root.apply(_leg_dir(flex, abd, s)))
        pb.aim(f"{side}_knee", f"{side}_ankle", root.apply(_leg_dir(flex - knee, rng.uniform(0, 6), s)))
        # prone: toes point backwards so the insteps, not the toes, rest on the mattress
        pb.euler(f"{side}_ankle", [rng.uniform(0, 25) if mode != "prone" else rng.uniform(55, 80), 0, 0])
        if mode == "side":  # both arms in front of the chest, the lower one angled away from the mattress
            plane = (92, 110) if side == lower_side else (60, 100)
            _relaxed_arm(pb, rng, side, root, elev=(55, 110), plane=plane, elbow=(0, 60))
        elif rng.random() < 0.75:  # alongside the body
            plane = (0, 30) if forward_up > 0 else (-30, 0)
            _relaxed_arm(pb, rng, side, root, elev=(5, 35), plane=plane, elbow=(0, 25))
        else:  # overhead
            plane = (0, 15) if forward_up > 0 else (-15, 0)
            _relaxed_arm(pb, rng, side, root, elev=(140, 170), plane=plane, elbow=(0, 25))
    if mode == "prone":  # head turned to one side
        pb.euler("head", [0, rng.choice([-1, 1]) * rng.uniform(50, 80), 0])
    return {"mode": mode}


def pose_leaning(pb: PoseBuilder, rng: np.random.Generator) -> dict:
    pitch = rng.uniform(12, 40)
    root = Rotation.from_euler("x", pitch, degrees=True)
    pb.local[0] = root
    _spine(pb, rng, flex=(0, 12), twist=6, side=3)
    yaw = Rotation.identity()
    for side in SIDES:
        _standing_leg(pb, rng, side, yaw, flex=(-6, 4), knee=(0, 8))
    spread = rng.uniform(0, 20)
    elev = rng.uniform(35, 75)
    for side, s in SIDES.items():
        e = math.radians(elev + rng.uniform(-4, 4))
        p = math.radians(90 - spread + rng.uniform(-4, 4))
        upper = _unit([s * math.sin(e) * math.cos(p), -math.cos(e), math.sin(e) * math.sin(p)])  # world frame
        pb.aim(f"{side}_shoulder", f"{side}_elbow", upper, PALM_REST, [0, -1, 0])
        fore = _bend(upper, [0, 1, 0.3], rng.uniform(0, 15))
        pb.aim(f"{side}_elbow", f"{side}_wrist", fore, PALM_REST, [0, -1, 0])
        hand_dir = _unit([s * 0.15, -rng.uniform(0.05, 0.3), 1.0])
        pb.aim(f"{side}_wrist", f"{side}_hand", hand_dir, PALM_REST, [0, -1, 0])
    return {}


def pose_stepping(pb: PoseBuilder, rng: np.random.Generator) -> dict:
    root = Rotation.identity()
    _spine(pb, rng, flex=(0, 10))
    step = str(rng.choice(list(SIDES)))
    stand = "right" if step == "left" else "left"
    _standing_leg(pb, rng, stand, root, flex=(-5, 5), knee=(0, 6))
    s = SIDES[step]
    flex = rng.uniform(35, 75)
    pb.aim(f"{step}_hip", f"{step}_knee", _leg_dir(flex, rng.uniform(0, 10), s))
    pb.aim(f"{step}_knee", f"{step}_ankle", _leg_dir(rng.uniform(-8, 12), rng.uniform(0, 5), s))
    _flat_foot(pb, rng, step, root)
    for side in SIDES:
        _relaxed_arm(pb, rng, side, root)
    return {"side": step, "other": stand}


def pose_kicking(pb: PoseBuilder, rng: np.random.Generator) -> dict:
    root = Rotation.from_euler("x", rng.uniform(-10, 4), degrees=True)
    pb.local[0] = root
    _spine(pb, rng, flex=(-4, 6))
    kick = str(rng.choice(list(SIDES)))
    stand = "right" if kick == "left" else "left"
    _standing_leg(pb, rng, stand, Rotation.identity(), flex=(-4, 6), knee=(0, 10))
    s = SIDES[kick]
    flex = rng.uniform(18, 55)
    pb.aim(f"{kick}_hip", f"{kick}_knee", _leg_dir(flex, rng.uniform(0, 10), s))
    pb.aim(f"{kick}_knee", f"{kick}_ankle", _leg_dir(flex - rng.uniform(0, 35), rng.uniform(0, 5), s))
    pb.euler(f"{kick}_ankle", [rng.uniform(5, 35), rng.uniform(-10, 10), 0])
    for side in SIDES:
        _relaxed_arm(pb, rng, side, root, elev=(25, 80), plane=(-30, 45), elbow=(0, 60))
    return {"side": kick, "other": stand}


def pose_holding(pb: PoseBuilder, rng: np.random.Generator, two_hands: bool = False) -> dict:
    root = Rotation.identity()
    _spine(pb, rng)
    for side in SIDES:
        _standing_leg(pb, rng, side, root)
    if two_hands:
        elev, plane = rng.uniform(15, 45), rng.uniform(30, 70)
        fore_elev, fore_plane = rng.uniform(65, 100), rng.uniform(95, 115)
        for side, s in SIDES.items():
            jitter = lambda: rng.uniform(-1.5, 1.5)  # noqa: E731 - tiny asymmetry only
            e, p = math.radians(elev + jitter()), math.radians(plane + jitter())
            upper = _unit([s * math.sin(e) * math.cos(p), -math.cos(e), math.sin(e) * math.sin(p)])
            pb.aim(f"{side}_shoulder", f"{side}_elbow", upper)
            e, p = math.radians(fore_elev + jitter()), math.radians(fore_plane + jitter())
            fore = _unit([s * math.sin(e) * math.cos(p), -math.cos(e), math.sin(e) * math.sin(p)])
            pb.aim(f"{side}_elbow", f"{side}_wrist", fore, PALM_REST, [-s, 0, 0])
        return {"side": "both"}
    hold = str(rng.choice(list(SIDES)))
    other = "right" if hold == "left" else "left"
    s = SIDES[hold]
    if rng.random() < 0.7:  # hold: forearm forward
        upper = _limb_dir(rng, s, (5, 45), (30, 85))
        fore = _limb_dir(rng, s, (55, 115), (75, 105))
    else:  # reach: arm extended
        upper = _limb_dir(rng, s, (55, 125), (35, 90))
        fore = _bend(upper, [0, 1, 0], rng.uniform(0, 20))
    pb.aim(f"{hold}_shoulder", f"{hold}_elbow", upper)
    palm = _unit([-s, rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2)])
    pb.aim(f"{hold}_elbow", f"{hold}_wrist", fore, PALM_REST, palm)
    pb.euler(f"{hold}_wrist", [rng.uniform(-8, 8), rng.uniform(-8, 8), rng.uniform(-8, 8)])
    _relaxed_arm(pb, rng, other, root)
    return {"side": hold, "other": other}


POSE_SAMPLERS: dict[str, Callable[..., dict]] = {
    "standing": pose_standing, "sitting": pose_sitting, "lying": pose_lying, "leaning": pose_leaning,
    "stepping": pose_stepping, "kicking": pose_kicking, "holding": pose_holding,
}


# ----------------------------------------------------------------------------------------------------------------
# Scene
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class SceneObject:
    name: str
    interaction: str  # stand_on / sit / lie / lean / step_on / kick / hold / none
    parts: list[dict]
    size: dict
    position: list[float]
    yaw_deg: float = 0.0
    expected_parts: tuple[str, ...] = ()  # body parts the interaction must all touch (validation)
    expected_any: tuple[str, ...] = ()  # at least one of these must touch
    max_penetration: float = MAX_PENETRATION  # deepest allowed body vertex inside the object
    allowed_parts: tuple[str, ...] | None = None  # if given, contact outside these parts is rejected


@dataclass
class Scene:
    family: str
    primary: str
    pose_info: dict
    betas: np.ndarray
    full_pose: np.ndarray  # [24, 3] axis-angle (row 0 = global orient)
    transl: np.ndarray
    vertices: np.ndarray
    joints: np.ndarray
    objects: list[SceneObject] = field(default_factory=list)
    attempts: int = 1


def _part_vertices(ctx: BodyContext, vertices: np.ndarray, *parts: str) -> np.ndarray:
    ids = np.concatenate([ctx.segmentation[p] for p in parts])
    return vertices[ids]


def _ground(rng: np.random.Generator, vertices: np.ndarray, penetration: float | None = None) -> SceneObject:
    """A large thin box under the body, raised until it touches the lowest body points."""
    lo, hi = vertices.min(0), vertices.max(0)
    centre = 0.5 * (lo + hi)
    half = rng.uniform(1.5, 2.2)
    thick = 0.025
    pen = rng.uniform(0.003, 0.012) if penetration is None else penetration
    # the ground spans the whole body, so raising it until the deepest point is `pen` puts its top at min y + pen
    top = float(vertices[:, 1].min()) + pen
    parts = [geo.box([centre[0], top - thick, centre[2]], [half, thick, half])]
    return SceneObject("supporting", "stand_on", parts, {"half_extent": half, "thickness": 2 * thick},
                       [centre[0], top, centre[2]], 0.0, expected_any=("left foot", "right foot"),
                       allowed_parts=("left foot", "right foot", "left calf", "right calf"))


def _block(x0, x1, y0, y1, z0, z1) -> dict:
    return geo.box([(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2], [(x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2])


def _seat(rng: np.random.Generator, ctx: BodyContext, v: np.ndarray, name: str, floor: float) -> SceneObject:
    """Chair / bench / box / bed edge / table edge under the hips and thighs (body faces +z)."""
    hips = _part_vertices(ctx, v, "hips", "left thigh", "right thigh")
    legs_low = _part_vertices(ctx, v, "left calf", "right calf", "left foot", "right foot")
    z_front = legs_low[:, 2].min() - rng.uniform(0.01, 0.04)
    back = hips[:, 2].min()
    x_mid = float(np.mean(hips[:, 0]))
    if name == "bench":
        width = rng.uniform(1.0, 1.8)
        x_mid += rng.uniform(-1, 1) * (width / 2 - 0.35)
        depth_back = rng.uniform(0.0, 0.12)
    elif name == "chair":
        width = rng.uniform(0.42, 0.56)
        depth_back = rng.uniform(0.0, 0.06)
    elif name == "dining_table":  # sitting on the edge: the top reaches behind and to both sides
        width = rng.uniform(0.8, 1.4)
        x_mid += rng.uniform(-1, 1) * (width / 2 - 0.35)
        depth_back = rng.uniform(0.3, 0.6)
    elif name == "bed":  # sitting on the edge: the mattress reaches far behind and to both sides
        width = rng.uniform(1.0, 1.6)
        x_mid += rng.uniform(-1, 1) * (width / 2 - 0.4)
        depth_back = rng.uniform(0.8, 1.6)
    else:
        width = rng.uniform(0.40, 0.62)
        depth_back = rng.uniform(0.0, 0.15)
    z_back = back - depth_back
    if z_front - z_back < 0.25:
        raise PlacementError("seat too shallow for this pose")
    seat_bottom_guess = min(floor, hips[:, 1].min() - 0.15)
    top_guess = hips[:, 1].min() - 0.3
    parts = [_block(x_mid - width / 2, x_mid + width / 2, seat_bottom_guess - 1.0, top_guess, z_back, z_front)]
    parts, _ = geo.place_by_contact(parts, [0, 1, 0], v, rng.uniform(0.012, 0.03))
    top = parts[0]["center"][1] + parts[0]["half_extents"][1]
    if top - floor < 0.15:
        raise PlacementError("seat lower than the feet")
    parts = [_block(x_mid - width / 2, x_mid + width / 2, floor, top, z_back, z_front)]
    size = {"width": width, "depth": z_front - z_back, "height": top - floor}
    if name == "dining_table":
        parts, table_size = _table_parts(rng, x_mid - width / 2, x_mid + width / 2, z_back, z_front, floor, top)
        size.update(table_size)
    if name == "chair":
        thick = rng.uniform(0.04, 0.07)
        height = rng.uniform(0.35, 0.55)
        rest = [_block(x_mid - width / 2, x_mid + width / 2, top, top + height, z_back - 0.6 - thick, z_back - 0.6)]
        gap = -rng.uniform(0.003, 0.015) if rng.random() < 0.6 else rng.uniform(0.03, 0.1)
        rest, _ = geo.place_by_contact(rest, [0, 0, 1], v, -gap, start=0.3)
        rest_z0 = rest[0]["center"][2] - rest[0]["half_extents"][2]
        if rest_z0 < z_back:  # extend the seat backwards under the backrest
            z_back = rest_z0
            parts = [_block(x_mid - width / 2, x_mid + width / 2, floor, top, z_back, z_front)]
        parts = parts + rest
        size.update({"depth": z_front - z_back, "backrest_height": height, "backrest_thickness": thick})
    return SceneObject(name, "sit", parts, size, [x_mid, top, (z_back + z_front) / 2], 0.0,
                       expected_parts=("hips",))


def _block_under_trunk(rng: np.random.Generator, ctx: BodyContext, v: np.ndarray, margin_range: tuple[float, float],
                       height_range: tuple[float, float], sink_range: tuple[float, float]):
    """A block under a lying body (its footprint plus a random margin per side), raised until the trunk sinks in by
    a depth drawn from ``sink_range``. Returns (parts, (x0, x1, z0, z1), height); the random draws keep their order
    (margins, height, sink), so the generated scenes are the same as before this was factored out."""
    lo, hi = v.min(0), v.max(0)
    margin = rng.uniform(*margin_range, size=4)
    height = rng.uniform(*height_range)
    x0, x1, z0, z1 = lo[0] - margin[0], hi[0] + margin[1], lo[2] - margin[2], hi[2] + margin[3]
    parts = [_block(x0, x1, lo[1] - 1.0 - height, lo[1] - 1.0, z0, z1)]
    trunk = _part_vertices(ctx, v, "torso", "hips")
    parts, _ = geo.place_by_contact(parts, [0, 1, 0], trunk, rng.uniform(*sink_range))
    return parts, (x0, x1, z0, z1), height


def _bed(rng: np.random.Generator, ctx: BodyContext, v: np.ndarray) -> SceneObject:
    """A mattress block under the body. It is raised until the *trunk* sinks in by 1.8–3.5 cm (a mattress gives):
    limbs hanging lower sink deeper and touch too, and the scene is rejected if anything sinks more than 5 cm."""
    parts, (x0, x1, z0, z1), height = _block_under_trunk(rng, ctx, v, (0.08, 0.3), (0.35, 0.6), (0.018, 0.035))
    return SceneObject("bed", "lie", parts, {"width": x1 - x0, "length": z1 - z0, "height": height},
                       [(x0 + x1) / 2, parts[0]["center"][1] + height / 2, (z0 + z1) / 2], 0.0,
                       expected_any=("torso", "hips"), max_penetration=MATTRESS_MAX_PENETRATION)


def _lie_bench(rng: np.random.Generator, ctx: BodyContext, v: np.ndarray) -> SceneObject:
    """A hard bench under a lying body: the body's footprint plus a few centimetres, raised until the trunk
    touches it (1.2–2.5 cm in); unlike a mattress nothing may sink deeper than 5 cm."""
    parts, (x0, x1, z0, z1), height = _block_under_trunk(rng, ctx, v, (0.02, 0.1), (0.38, 0.5), (0.012, 0.025))
    return SceneObject("bench", "lie", parts, {"width": x1 - x0, "depth": z1 - z0, "height": height},
                       [(x0 + x1) / 2, parts[0]["center"][1] + height / 2, (z0 + z1) / 2], 0.0,
                       expected_any=("torso", "hips"))


def _table(rng: np.random.Generator, ctx: BodyContext, v: np.ndarray, floor: float) -> SceneObject:
    arm_ids = np.concatenate([ctx.segmentation[p] for p in ctx.segmentation if "arm" in p or "hand" in p])
    rest = np.setdiff1d(np.arange(len(v)), arm_ids)
    hands = _part_vertices(ctx, v, "left hand", "right hand")
    below = rest[v[rest, 1] < hands[:, 1].min() + 0.02]
    if len(below) == 0:
        raise PlacementError("no body below the hands")
    z_near = v[below, 2].max() + rng.uniform(0.02, 0.08)
    if hands[:, 2].max() < z_near + 0.06:
        raise PlacementError("hands do not reach beyond the body")
    depth, width = rng.uniform(0.6, 1.0), rng.uniform(0.8, 1.6)
    thick = rng.uniform(0.03, 0.05)
    x_mid = float(hands[:, 0].mean() + rng.uniform(-0.1, 0.1))
    x0, x1, z0, z1 = x_mid - width / 2, x_mid + width / 2, z_near, z_near + depth
    top = [_block(x0, x1, floor - 1.0 - thick, floor - 1.0, z0, z1)]
    top, _ = geo.place_by_contact(top, [0, 1, 0], v, rng.uniform(0.005, 0.015))
    y_top = top[0]["center"][1] + thick / 2
    if y_top - floor < 0.3:
        raise PlacementError("table too low")
    parts, size = _table_parts(rng, x0, x1, z0, z1, floor, y_top, thick)
    return SceneObject("dining_table", "lean", parts, size, [x_mid, y_top, (z0 + z1) / 2], 0.0,
                       expected_parts=("left hand", "right hand"),
                       allowed_parts=("left hand", "right hand", "left forearm", "right forearm"))


def _table_parts(rng: np.random.Generator, x0: float, x1: float, z0: float, z1: float, floor: float, y_top: float,
                 thick: float | None = None) -> tuple[list[dict], dict]:
    """A table top over [x0, x1] × [z0, z1] with its upper face at ``y_top``, on four legs (the top first: the
    canonical template's frame)."""
    thick = rng.uniform(0.03, 0.05) if thick is None else thick
    leg = rng.uniform(0.035, 0.06)
    inset = rng.uniform(0.02, 0.08)
    top = [_block(x0, x1, y_top - thick, y_top, z0, z1)]
    legs = [_block(x, x + leg, floor, y_top - thick, z, z + leg)
            for x in (x0 + inset, x1 - inset - leg) for z in (z0 + inset, z1 - inset - leg)]
    size = {"width": x1 - x0, "depth": z1 - z0, "height": y_top - floor, "top_thickness": thick, "leg_width": leg}
    return top + legs, size


def _sit_ball(rng: np.random.Generator, ctx: BodyContext, v: np.ndarray, floor: float) -> SceneObject:
    """An exercise ball on the floor under the lowest points of the hips, grown until they sink into it (it gives,
    like a mattress)."""
    hips = _part_vertices(ctx, v, "hips")
    seat = hips[hips[:, 1] <= hips[:, 1].min() + 0.03]
    x_c = float(seat[:, 0].mean() + rng.uniform(-0.03, 0.03))
    z_c = float(seat[:, 2].mean() + rng.uniform(-0.04, 0.03))
    pen = rng.uniform(0.015, 0.035)

    def ball(radius: float) -> dict:
        return geo.sphere([x_c, floor + radius, z_c], radius)

    lo, hi = 0.05, 0.6
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if geo.object_sdf(v, [ball(mid)]).min() > -pen:
            lo = mid
        else:
            hi = mid
    if not 0.18 <= hi <= 0.4:
        raise PlacementError(f"exercise ball radius {hi:.3f} implausible")
    part = ball(hi)
    return SceneObject("sports_ball", "sit", [part], {"radius": hi}, part["center"], 0.0, expected_parts=("hips",),
                       max_penetration=MATTRESS_MAX_PENETRATION)


def _step_block(rng: np.random.Generator, ctx: BodyContext, v: np.ndarray, name: str, info: dict,
                floor: float) -> SceneObject:
    step, other = info["side"], info["other"]
    foot = _part_vertices(ctx, v, f"{step} foot")
    support = _part_vertices(ctx, v, f"{other} foot", f"{other} calf")
    z_back = max(foot[:, 2].min() - rng.uniform(0.03, 0.12), support[:, 2].max() + 0.03)
    if foot[:, 2].max() - z_back < 0.12:
        raise PlacementError("step foot not in front of the standing leg")
    backrest = 0.0
    if name == "bench":
        width, depth = rng.uniform(1.0, 1.6), rng.uniform(0.3, 0.45)
        x_mid = foot[:, 0].mean() + rng.uniform(-1, 1) * (width / 2 - 0.2)
    elif name == "chair":  # the backrest stands beyond the toes
        width, depth = rng.uniform(0.42, 0.56), rng.uniform(0.4, 0.5)
        x_mid = foot[:, 0].mean() + rng.uniform(-0.06, 0.06)
        backrest = rng.uniform(0.04, 0.07)
    else:
        width, depth = rng.uniform(0.3, 0.55), rng.uniform(0.3, 0.55)
        x_mid = foot[:, 0].mean() + rng.uniform(-0.05, 0.05)
    z_front = max(z_back + depth, foot[:, 2].max() + 0.03 + backrest)
    parts = [_block(x_mid - width / 2, x_mid + width / 2, floor - 2.0, floor - 1.0, z_back, z_front)]
    parts, _ = geo.place_by_contact(parts, [0, 1, 0], v, rng.uniform(0.004, 0.012))
    top = parts[0]["center"][1] + parts[0]["half_extents"][1]
    if top - floor < (0.15 if name == "chair" else 0.06):
        raise PlacementError("step too low")
    parts = [_block(x_mid - width / 2, x_mid + width / 2, floor, top, z_back, z_front)]
    size = {"width": width, "depth": z_front - z_back, "height": top - floor}
    if name == "chair":
        # turned half a turn, so that the backrest is at the seat's local −z end as in every other chair
        turn = geo.rotation_y(math.pi)
        height = rng.uniform(0.35, 0.55)
        parts = [geo.box(parts[0]["center"], parts[0]["half_extents"], turn),
                 geo.box([x_mid, top + height / 2, z_front - backrest / 2], [width / 2, height / 2, backrest / 2], turn)]
        size.update({"backrest_height": height, "backrest_thickness": backrest})
    return SceneObject(name, "step_on", parts, size,
                       [x_mid, top, (z_back + z_front) / 2], 0.0, expected_parts=(f"{step} foot",),
                       allowed_parts=(f"{step} foot", f"{step} calf"))


def _kicked(rng: np.random.Generator, ctx: BodyContext, v: np.ndarray, name: str, info: dict) -> SceneObject:
    """A ball, a bottle (upright or lying across) or a bat (lying across) in front of the kicking foot's toes,
    moved towards them until they touch."""
    foot = _part_vertices(ctx, v, f"{info['side']} foot")
    front = foot[foot[:, 2] >= np.quantile(foot[:, 2], 0.8)]
    centre = np.array([front[:, 0].mean() + rng.uniform(-0.03, 0.03), front[:, 1].mean() + rng.uniform(-0.03, 0.05),
                       foot[:, 2].max() + 1.0])
    across = geo.rotation_between([0, 1, 0], [float(rng.choice([-1.0, 1.0])), 0, 0])
    if name == "sports_ball":
        radius = rng.uniform(0.1, 0.12)
        parts, size = [geo.sphere(centre, radius)], {"radius": radius}
    elif name == "bottle":
        radius, half = rng.uniform(0.028, 0.045), rng.uniform(0.08, 0.14)
        upright = rng.random() < 0.5
        axis_shift = np.array([0.0, rng.uniform(-0.1, 0.6) * half, 0.0]) if upright else \
            np.array([rng.uniform(-0.6, 0.6) * half, 0.0, 0.0])
        rot = None if upright else across
        parts, size = [geo.cylinder(centre + axis_shift, radius, half, rot)], {"radius": radius, "height": 2 * half}
    elif name == "baseball_bat":  # handle first, as the canonical template; the foot anywhere along it
        r_handle, r_barrel = rng.uniform(0.014, 0.019), rng.uniform(0.03, 0.036)
        l_handle, l_barrel = rng.uniform(0.3, 0.38), rng.uniform(0.45, 0.55)
        axis = across @ np.array([0.0, 1.0, 0.0])
        start = centre - axis * rng.uniform(0.1, 0.7)
        parts = [geo.cylinder(start + axis * l_handle / 2, r_handle, l_handle / 2, across),
                 geo.cylinder(start + axis * (l_handle + l_barrel / 2), r_barrel, l_barrel / 2, across)]
        size = {"handle_radius": r_handle, "barrel_radius": r_barrel, "length": l_handle + l_barrel}
    else:
        raise ValueError(f"no kicking placement for {name!r}")
    parts, _ = geo.place_by_contact(parts, [0, 0, -1], v, rng.uniform(0.004, 0.015))
    return SceneObject(name, "kick", parts, size, parts[0]["center"], 0.0,
                       expected_parts=(f"{info['side']} foot",),
                       allowed_parts=(f"{info['side']} foot", f"{info['side']} calf"))


def _hand_frame(pb: PoseBuilder, v: np.ndarray, ctx: BodyContext, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rot = pb.glob(J[f"{side}_wrist"])
    centre = _part_vertices(ctx, v, f"{side} hand").mean(0)
    return centre, _unit(rot.apply(PALM_REST)), _unit(rot.apply(THUMB_REST))


def _held(rng: np.random.Generator, ctx: BodyContext, pb: PoseBuilder, v: np.ndarray, name: str, info: dict) -> SceneObject:
    if name == "sports_ball":
        left, right = _hand_frame(pb, v, ctx, "left")[0], _hand_frame(pb, v, ctx, "right")[0]
        centre = 0.5 * (left + right)
        pen = rng.uniform(0.004, 0.012)
        lo, hi = 0.02, 0.4
        if geo.object_sdf(v, [geo.sphere(centre, lo)]).min() <= -pen:
            raise PlacementError("ball centre inside the body")
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if geo.object_sdf(v, [geo.sphere(centre, mid)]).min() > -pen:
                lo = mid
            else:
                hi = mid
        if not 0.08 <= hi <= 0.17:
            raise PlacementError(f"held ball radius {hi:.3f} implausible")
        return SceneObject(name, "hold", [geo.sphere(centre, hi)], {"radius": hi}, list(map(float, centre)), 0.0,
                           expected_parts=("left hand", "right hand"),
                           allowed_parts=("left hand", "right hand", "left forearm", "right forearm"))
    if name == "box":
        return _carried_box(rng, ctx, pb, v)
    side = info["side"]
    centre, palm, thumb = _hand_frame(pb, v, ctx, side)
    rot = geo.rotation_between([0, 1, 0], thumb)  # cylinder axis (local +y) along the grip axis
    if name == "bottle":
        radius, half = rng.uniform(0.028, 0.045), rng.uniform(0.08, 0.14)
        along = rng.uniform(-0.35, 0.35) * half
        parts = [geo.cylinder(centre + thumb * along, radius, half, rot)]
        size = {"radius": radius, "height": 2 * half}
    else:  # baseball bat: thin handle + thick barrel, handle end just below the hand
        r_handle, r_barrel = rng.uniform(0.014, 0.019), rng.uniform(0.03, 0.036)
        l_handle, l_barrel = rng.uniform(0.3, 0.38), rng.uniform(0.45, 0.55)
        start = -rng.uniform(0.05, 0.12)
        parts = [geo.cylinder(centre + thumb * (start + l_handle / 2), r_handle, l_handle / 2, rot),
                 geo.cylinder(centre + thumb * (start + l_handle + l_barrel / 2), r_barrel, l_barrel / 2, rot)]
        size = {"handle_radius": r_handle, "barrel_radius": r_barrel, "length": l_handle + l_barrel}
    parts = geo.translate_parts(parts, palm * 0.3)
    parts, _ = geo.place_by_contact(parts, -palm, v, rng.uniform(0.004, 0.012), start=0.3)
    return SceneObject(name, "hold", parts, size, parts[0]["center"], 0.0, expected_parts=(f"{side} hand",),
                       allowed_parts=(f"{side} hand", f"{side} forearm"))


def _carried_box(rng: np.random.Generator, ctx: BodyContext, pb: PoseBuilder, v: np.ndarray) -> SceneObject:
    """A box between both palms (its width along the hand-to-hand axis), grown until the palms press into it."""
    left, right = _hand_frame(pb, v, ctx, "left")[0], _hand_frame(pb, v, ctx, "right")[0]
    centre = 0.5 * (left + right)
    axis = _unit(left - right)
    rot = geo.rotation_between([1, 0, 0], axis)
    height, depth = rng.uniform(0.08, 0.16), rng.uniform(0.1, 0.18)  # half extents across the grip
    pen = rng.uniform(0.004, 0.012)
    lo, hi = 0.02, 0.4
    if geo.object_sdf(v, [geo.box(centre, [lo, height, depth], rot)]).min() <= -pen:
        raise PlacementError("box centre inside the body")
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if geo.object_sdf(v, [geo.box(centre, [mid, height, depth], rot)]).min() > -pen:
            lo = mid
        else:
            hi = mid
    if not 0.08 <= hi <= 0.3:
        raise PlacementError(f"carried box half-width {hi:.3f} implausible")
    return SceneObject("box", "hold", [geo.box(centre, [hi, height, depth], rot)],
                       {"width": 2 * hi, "height": 2 * height, "depth": 2 * depth}, list(map(float, centre)), 0.0,
                       expected_parts=("left hand", "right hand"),
                       allowed_parts=("left hand", "right hand", "left forearm", "right forearm"))


# ----- distractors (untouched objects) ---------------------------------------------------------------------------


def _standalone(rng: np.random.Generator, name: str, floor: float) -> tuple[list[dict], dict]:
    """An object standing on the floor at the origin (x/z centred)."""
    if name == "chair":
        w, d, h = rng.uniform(0.42, 0.56), rng.uniform(0.4, 0.5), rng.uniform(0.42, 0.5)
        bh, bt = rng.uniform(0.35, 0.55), rng.uniform(0.04, 0.07)
        return ([_block(-w / 2, w / 2, floor, floor + h, -d / 2, d / 2),
                 _block(-w / 2, w / 2, floor + h, floor + h + bh, -d / 2, -d / 2 + bt)],
                {"width": w, "depth": d, "height": h, "backrest_height": bh, "backrest_thickness": bt})
    if name == "bench":
        w, d, h = rng.uniform(1.0, 1.8), rng.uniform(0.3, 0.45), rng.uniform(0.4, 0.5)
        return [_block(-w / 2, w / 2, floor, floor + h, -d / 2, d / 2)], {"width": w, "depth": d, "height": h}
    if name == "box":
        w, d, h = rng.uniform(0.25, 0.6, size=3)
        return [_block(-w / 2, w / 2, floor, floor + h, -d / 2, d / 2)], {"width": w, "depth": d, "height": h}
    if name == "bottle":
        r, hh = rng.uniform(0.028, 0.045), rng.uniform(0.08, 0.14)
        return [geo.cylinder([0, floor + hh, 0], r, hh)], {"radius": r, "height": 2 * hh}
    if name == "sports_ball":
        r = rng.uniform(0.1, 0.12)
        return [geo.sphere([0, floor + r, 0], r)], {"radius": r}
    if name == "baseball_bat":
        rh, rb, lh, lb = rng.uniform(0.014, 0.019), rng.uniform(0.03, 0.036), rng.uniform(0.3, 0.38), rng.uniform(0.45, 0.55)
        rot = geo.rotation_between([0, 1, 0], [1, 0, 0])
        x0 = -(lh + lb) / 2
        return ([geo.cylinder([x0 + lh / 2, floor + rb, 0], rh, lh / 2, rot),
                 geo.cylinder([x0 + lh + lb / 2, floor + rb, 0], rb, lb / 2, rot)],
                {"handle_radius": rh, "barrel_radius": rb, "length": lh + lb})
    if name == "dining_table":
        w, d, h, t, leg = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.0), rng.uniform(0.7, 0.78), 0.04, 0.05
        parts = [_block(-w / 2, w / 2, floor + h - t, floor + h, -d / 2, d / 2)]
        parts += [_block(x, x + leg, floor, floor + h - t, z, z + leg)
                  for x in (-w / 2 + 0.04, w / 2 - 0.04 - leg) for z in (-d / 2 + 0.04, d / 2 - 0.04 - leg)]
        return parts, {"width": w, "depth": d, "height": h, "top_thickness": t, "leg_width": leg}
    raise ValueError(f"no standalone builder for {name!r}")


def _rotate_parts_y(parts: list[dict], yaw: float) -> list[dict]:
    rot = geo.rotation_y(yaw)
    out = []
    for part in parts:
        moved = dict(part)
        moved["center"] = list(map(float, rot @ np.asarray(part["center"])))
        moved["rotation"] = (rot @ np.asarray(part["rotation"])).tolist()
        out.append(moved)
    return out


def _distractor(rng: np.random.Generator, name: str, v: np.ndarray, floor: float,
                others: list[SceneObject]) -> SceneObject | None:
    centre = 0.5 * (v.min(0) + v.max(0))
    body_radius = float(np.linalg.norm((v - centre)[:, [0, 2]], axis=1).max())
    for _ in range(12):
        parts, size = _standalone(rng, name, floor)
        yaw = rng.uniform(0, 2 * math.pi)
        parts = _rotate_parts_y(parts, yaw)
        lo, hi = geo.parts_bounds(parts)
        obj_radius = float(np.linalg.norm((hi - lo)[[0, 2]]) / 2)
        angle = rng.uniform(0, 2 * math.pi)
        dist = body_radius * 0.6 + obj_radius + UNTOUCHED_MIN_DIST + rng.uniform(0.0, 0.6)
        offset = np.array([centre[0] + dist * math.cos(angle), 0.0, centre[2] + dist * math.sin(angle)])
        parts = geo.translate_parts(parts, offset)
        if geo.object_sdf(v, parts).min() < UNTOUCHED_MIN_DIST + 0.01:
            continue
        lo, hi = geo.parts_bounds(parts)
        clash = False
        for other in others:
            if other.name == "supporting":
                continue
            olo, ohi = geo.parts_bounds(other.parts)
            if np.all(lo < ohi + 0.05) and np.all(olo - 0.05 < hi):
                clash = True
                break
        if clash:
            continue
        return SceneObject(name, "none", parts, size, list(map(float, offset + [0, floor, 0])), math.degrees(yaw))
    return None


# ----- the whole scene --------------------------------------------------------------------------------------------


def sample_scene(rng: np.random.Generator, ctx: BodyContext, family: str, primary: str, max_attempts: int = 40) -> Scene:
    """Draw pose, shape and objects until every placement and validation succeeds."""
    last_error: Exception | None = None
    for attempt in range(1, max_attempts + 1):
        try:
            scene = _try_scene(rng, ctx, family, primary)
            scene.attempts = attempt
            return scene
        except geo.PlacementFailure as err:
            last_error = err
    raise RuntimeError(f"could not build a valid {family}/{primary} scene in {max_attempts} attempts: {last_error}")


def _try_scene(rng: np.random.Generator, ctx: BodyContext, family: str, primary: str) -> Scene:
    betas = rng.uniform(-1.5, 1.5, size=10)
    pb = PoseBuilder(ctx.rest_joints(betas))
    sampler = POSE_SAMPLERS[family]
    info = sampler(pb, rng, two_hands=True) if (family == "holding" and primary in TWO_HANDED) else sampler(pb, rng)
    full_pose = pb.full_pose()
    raw = pose_body(ctx.model, betas, full_pose)
    # translation: body centred over the origin, lowest point at y = 0
    lo, hi = raw[0].min(0).astype(np.float64), raw[0].max(0).astype(np.float64)
    transl = np.array([-(lo[0] + hi[0]) / 2, -lo[1], -(lo[2] + hi[2]) / 2], dtype=np.float32).astype(np.float64)
    v, joints = apply_transl(raw, transl)

    objects: list[SceneObject] = []
    feet_down = family in ("standing", "sitting", "leaning", "stepping", "kicking", "holding")
    ground = None
    if feet_down:
        ground = _ground(rng, v)
        want_ground = family == "standing" or rng.random() < 0.7
        if want_ground:
            objects.append(ground)
    floor = ground.position[1] if ground is not None else float(v[:, 1].min())

    if primary == "supporting":
        pass
    elif family == "sitting":
        objects.append(_sit_ball(rng, ctx, v, floor) if primary == "sports_ball" else _seat(rng, ctx, v, primary, floor))
    elif family == "lying":
        objects.append(_lie_bench(rng, ctx, v) if primary == "bench" else _bed(rng, ctx, v))
        bed = objects[-1].parts[0]
        floor = bed["center"][1] - bed["half_extents"][1]  # distractors stand where the bed stands
    elif family == "leaning":
        objects.append(_table(rng, ctx, v, floor))
    elif family == "stepping":
        objects.append(_step_block(rng, ctx, v, primary, info, floor))
    elif family == "kicking":
        objects.append(_kicked(rng, ctx, v, primary, info))
    elif family == "holding":
        objects.append(_held(rng, ctx, pb, v, primary, info))
    else:
        raise ValueError(f"no placement for {family}/{primary}")

    if rng.random() < 0.35:
        present = {o.name for o in objects}
        choices = [n for n in DISTRACTOR_OBJECTS if n not in present and (family, n) not in HELDOUT_COMBINATIONS
                   and (family, n) not in COMBINATIONS]
        if choices:
            extra = _distractor(rng, str(rng.choice(choices)), v, floor, objects)
            if extra is not None:
                objects.append(extra)

    _validate(ctx, v, objects)
    return Scene(family, primary, info, betas, full_pose, transl, v, joints, objects)


def _validate(ctx: BodyContext, v: np.ndarray, objects: list[SceneObject]) -> None:
    for obj in objects:
        sdf = geo.object_sdf(v, obj.parts)
        if sdf.min() < -obj.max_penetration:
            raise PlacementError(f"{obj.name}: body penetrates {-sdf.min():.3f} m")
        ids = np.flatnonzero(sdf <= EPSILON)
        if obj.interaction == "none":
            if sdf.min() < UNTOUCHED_MIN_DIST:
                raise PlacementError(f"{obj.name}: untouched object too close")
            continue
        if len(ids) < 5:
            raise PlacementError(f"{obj.name}: only {len(ids)} contact vertices")
        coverage = np.bincount(ctx.part_of_vertex[ids], minlength=len(ctx.part_names)) / ctx.part_sizes
        if not (coverage >= 0.1).any():
            raise PlacementError(f"{obj.name}: contact covers no body part by 10 % (empty body-part list)")
        parts = ctx.parts_of(ids)
        if obj.expected_parts and not set(obj.expected_parts) <= parts:
            raise PlacementError(f"{obj.name}: expected contact on {obj.expected_parts}, got {sorted(parts)}")
        if obj.expected_any and not set(obj.expected_any) & parts:
            raise PlacementError(f"{obj.name}: expected contact on one of {obj.expected_any}, got {sorted(parts)}")
        if obj.allowed_parts is not None and not parts <= set(obj.allowed_parts):
            raise PlacementError(f"{obj.name}: contact on {sorted(parts - set(obj.allowed_parts))}")
