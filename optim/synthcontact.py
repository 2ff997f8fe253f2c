"""Fitting problems with exact answers, from SynthContact samples (the benchmark's and the tests' source).

SynthContact records the body's parameters, every object's mesh (in the body's world frame), the camera and the
contact on both sides. From that we build what a user would have for the photo — the body in camera coordinates
with the camera intrinsics, the human and object contact, the object mesh in its own upright frame, and the
object's *visible* mask (the whole scene ray-cast through the camera, as a segmenter would see it) — plus the
ground-truth pose the fit should recover.

The object's own frame is its first primitive's frame (SynthContact stores each primitive's rotation): upright for
furniture, along the grip axis for held objects. Metadata are read by field name; fields added later are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optim import render
from optim.camera import PinholeCamera, pytorch3d_rotation_to_opencv, pytorch3d_world_to_opencv
from optim.inputs import FitInputs
from optim.metrics import Symmetry, symmetry_of
from utils.geometry.cameras import PerspectiveCamera


@dataclass
class FitProblem:
    stem: str
    split: str
    object_name: str
    pose_family: str
    inputs: FitInputs
    gt_rotation: np.ndarray  # centred object frame -> camera
    gt_translation: np.ndarray
    symmetry: Symmetry
    human_contact_ids: np.ndarray  # ground truth (for the metrics, whatever contact the fit was given)
    object_contact_ids: np.ndarray


def read_metas(split_dir: Path) -> list[dict]:
    path = Path(split_dir) / "meta.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: generate SynthContact first (python -m preprocess_data.synthcontact)")
    metas = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                meta = json.loads(line)
            except json.JSONDecodeError:
                continue  # a truncated last line from an interrupted run
            metas[meta["stem"]] = meta
    return [metas[k] for k in sorted(metas)]


def camera_of(meta: dict) -> tuple[PerspectiveCamera, PinholeCamera]:
    cam = meta["camera"]
    p3d = PerspectiveCamera(rotation=np.asarray(cam["R"], float), translation=np.asarray(cam["T"], float),
                            fov_deg=float(cam["fov_deg"]))
    width, height = (int(x) for x in meta["image_size"])
    return p3d, PinholeCamera.from_pytorch3d(p3d, int(cam["render_size"]), cam.get("crop_offset", (0, 0)), width, height)


def posed_body(meta: dict, body_model_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World vertices and faces of the sample's SynthBody, re-posed by smplx from the stored parameters."""
    import torch

    from utils.body_models import default_body_model_dir, load_body_model

    body = meta["body"]
    model = load_body_model(body.get("model", "synthbody"), body_model_dir or default_body_model_dir(),
                            num_betas=len(body["betas"]))
    pose = torch.tensor([body["pose"]], dtype=torch.float32)
    with torch.no_grad():
        out = model(betas=torch.tensor([body["betas"]], dtype=torch.float32), global_orient=pose[:, :3],
                    body_pose=pose[:, 3:], transl=torch.tensor([body["transl"]], dtype=torch.float32))
    return out.vertices[0].double().numpy(), np.asarray(model.faces, dtype=np.int64)


def fit_problems(data_dir: str | Path, split: str, stems: list[str] | None = None, exclude=("supporting",),
                 body_model_dir: Path | None = None, min_mask_pixels: int = 30):
    """Yield one :class:`FitProblem` per (image, touched object), objects in ``exclude`` skipped (the ground is a
    plane, not an object one retrieves a mesh for) and objects the photo barely shows (< ``min_mask_pixels``)."""
    import trimesh

    split_dir = Path(data_dir) / split
    for meta in read_metas(split_dir):
        if stems is not None and meta["stem"] not in stems:
            continue
        p3d, camera = camera_of(meta)
        world_body, body_faces = posed_body(meta, body_model_dir)
        human = pytorch3d_world_to_opencv(p3d, world_body)
        R_cw = pytorch3d_rotation_to_opencv(p3d)
        meshes = [(human, body_faces)]
        objects = []
        for obj in meta["objects"]:
            mesh = trimesh.load(split_dir / obj["ply"], process=False)
            verts_w, faces = np.asarray(mesh.vertices, float), np.asarray(mesh.faces, np.int64)
            meshes.append((pytorch3d_world_to_opencv(p3d, verts_w), faces))
            objects.append((obj, verts_w, faces))
        frags = None
        image = None
        for k, (obj, verts_w, faces) in enumerate(objects):
            if obj["name"] in exclude or not obj.get("contact_vertices") or not obj.get("object_contact_vertices"):
                continue
            if frags is None:
                frags = render.cast(meshes, camera)
                from optim.inputs import load_image

                image = load_image(split_dir / meta["imgname"])
            mask = frags.mesh_ids == k + 1
            if mask.sum() < min_mask_pixels:
                continue
            R_part = np.asarray(obj["parts"][0]["rotation"], dtype=np.float64)  # object frame -> world
            canonical = verts_w @ R_part
            center = 0.5 * (canonical.min(0) + canonical.max(0))
            gt_R = R_cw @ R_part
            gt_t = gt_R @ center + pytorch3d_world_to_opencv(p3d, np.zeros((1, 3)))[0]
            h_ids = np.asarray(obj["contact_vertices"], dtype=np.int64)
            o_ids = np.asarray(obj["object_contact_vertices"], dtype=np.int64)
            hc = np.zeros(len(human))
            hc[h_ids] = 1.0
            oc = np.zeros(len(verts_w))
            oc[o_ids] = 1.0
            inputs = FitInputs(image=image, camera=camera, human_vertices=human, human_faces=body_faces,
                               human_contact=hc, object_vertices=canonical, object_faces=faces, object_contact=oc,
                               object_mask=mask, sources={"synthcontact": f"{split}/{meta['stem']}/{obj['name']}"})
            yield FitProblem(meta["stem"], split, obj["name"], meta.get("pose_family", "?"), inputs.validate(), gt_R,
                             gt_t, symmetry_of(obj["name"]), h_ids, o_ids)


def write_input_dir(problem: FitProblem, meta: dict, out_dir: str | Path) -> Path:
    """Write a problem as a ``python -m optim.fit --input-dir`` folder: photo, body parameters with the camera,
    ground-truth contacts, the object mesh in its own frame and its visible mask (plus the true pose, for checks)."""
    import cv2
    import trimesh

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p3d, camera = camera_of(meta)
    body = meta["body"]
    params = {"model_type": body.get("model", "synthbody"), "betas": body["betas"], "global_orient": body["pose"][:3],
              "body_pose": body["pose"][3:], "transl": body["transl"],
              "world_to_camera": {"R": pytorch3d_rotation_to_opencv(p3d).tolist(),
                                  "t": pytorch3d_world_to_opencv(p3d, np.zeros((1, 3)))[0].tolist()},
              "camera": camera.to_dict()}
    (out / "human.json").write_text(json.dumps(params, indent=1))
    inp = problem.inputs
    cv2.imwrite(str(out / "image.jpg"), cv2.cvtColor(inp.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    np.savez_compressed(out / "hcontact_vertices.npz", pred_contact_3d=inp.human_contact.astype(np.float32))
    np.savez_compressed(out / "ocontact_vertices.npz", pred_contact_3d=inp.object_contact.astype(np.float32))
    trimesh.Trimesh(inp.object_vertices, inp.object_faces, process=False).export(out / "object_mesh.ply")
    cv2.imwrite(str(out / "object_mask.png"), inp.object_mask.astype(np.uint8) * 255)
    truth = {"source": f"SynthContact {problem.split}/{problem.stem}, object {problem.object_name}",
             "rotation": problem.gt_rotation.tolist(), "translation": problem.gt_translation.tolist(),
             "convention": "X_cam = R @ (x_file - bbox_centre(x_file)) + t"}
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1))
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write one SynthContact object as a fitting input folder.")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--stem", required=True)
    parser.add_argument("--object", required=True)
    parser.add_argument("--output-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    metas = {m["stem"]: m for m in read_metas(Path(args.data_dir) / args.split)}
    if args.stem not in metas:
        raise SystemExit(f"error: {args.stem} is not in {args.data_dir}/{args.split}")
    for problem in fit_problems(args.data_dir, args.split, stems=[args.stem]):
        if problem.object_name == args.object:
            print(write_input_dir(problem, metas[args.stem], args.output_dir))
            return
    raise SystemExit(f"error: {args.stem} has no visible touched object {args.object!r}")


if __name__ == "__main__":
    main()
