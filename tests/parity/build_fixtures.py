"""Build the parity fixtures (``tests/parity/fixtures/``) with the ORIGINAL InteractVLM code as the oracle.

Not run in CI and not collected by pytest. It needs a checkout of ``saidwivedi/InteractVLM`` (79b4bf2) and a Python
with transformers 4.31.0, tokenizers 0.13.3, peft 0.4.0, accelerate 0.21.0, sentencepiece, joblib, scikit-learn,
opencv and torch (see ``tests/parity/README.md``)::

    python -m tests.parity.build_fixtures --original /work/oracle/InteractVLM \\
        --original-python /work/oracle/venv/bin/python

For every released configuration it writes procedural inputs (photos, an official-format body template folder, an
object template), then runs ``tests/parity/oracle_side.py`` under the oracle interpreter, which trains a tiny model
through the original's training-argument parser and model recipe, merges it with the original
``merge_lora_weights_and_save_hf_model.py`` (sharded ``.bin``, bf16 language model, fp32 SAM) and records the original
model's answers. Only the checkpoint, the inputs and the recorded outputs are kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
HUMAN_VIEWS = ("topfront", "bottomfront", "topback", "bottomback")
OBJECT_VIEWS = ("frontleft", "frontright", "backleft", "backright")
TEMPLATE_SIZE = 64  # = the tiny SAM input; official file names (…_1024.npz) kept, as the user had them
HUMAN_VERTICES, OBJECT_VERTICES = 6890, 500
PHOTOS = ("pexels-photo-15732209.jpeg", "pexels-photo-207569.webp")

PARTS_Q = "Which body parts are in contact with the {}? Segment these contact areas."
PARTS_A = "The contacting body parts are {}, and the contact region is {}."
AFFORD_Q = ("What type of affordance does the human-object interaction suggest? Then, segment the area on the {} "
            "where the human is making contact.")
AFFORD_A = "The affordance type is {}, and the contact region is {}."
SIMPLE_2D_Q = "Segment the area on the human's body that is in direct contact with the {} in this image."

HUMAN_ANSWERS = {"chair": "hips, left thigh", "bench": "hips", "bottle": "right hand", "skateboard": "left foot, right foot",
                 "tennis racket": "right hand", "cup": "left hand", "bicycle": "hips, left hand", "bed": "torso",
                 "scene": "left foot, right foot"}
OBJECT_ANSWERS = {"chair": "sit", "bottle": "grasp", "cup": "pour", "knife": "cut", "bicycle": "ride"}

COMMON_ARGS = ["--version=xinlai/LISA-13B-llama2-v1", "--vision_pretrained=./data/sam_vit_h_4b8939.pth",
               "--vision-tower=openai/clip-vit-large-patch14", "--img_emb_len=15", "--lora_r=8",
               "--train_from_LISA=True", "--train_from_LLAVA=False", "--eval_only=False", "--no_eval=False",
               "--epochs=30", "--batch_size=8", "--log_wandb=False", "--grad_accumulation_steps=1",
               "--steps_per_epoch=500", "--precision=bf16", "--log_base_dir=./runs"]


def _human_args(exp: str, dataset: str, view_set: str, extra: list[str]) -> list[str]:
    return COMMON_ARGS + [f"--exp_name={exp}", f"--dataset={dataset}", f"--hC_sam_view_type={view_set}",
                          "--hC_sam_input_type=norm", "--hC_mask_type=objectwise", "--hC_question_type=parts",
                          "--multiview_cam_cond=True", "--cam_encoder_type=vi_v1", "--hC_loss_weight=3.0",
                          "--bce_loss_weight=2.0", "--bce_loss_alpha=0.5", "--dice_loss_scale=1",
                          "--dice_loss_weight=1.0", "--oC_loss_weight=0.0"] + extra


CONFIGS = {
    "hcontact": dict(
        args=_human_args("interactvlm-3d-hcontact-damon", "hcontact_seg", "4MV-Z_Vitru_mv2",
                         ["--token_type=Gen", "--hcontact_seg_data=damon_hcontact", "--val_dataset=damon_hcontact",
                          "--hC_body_part_dropout_prob=0.5", "--sample_rates=1"]),
        human=["chair", "bench", "bottle", "skateboard", "tennis racket", "cup", "bicycle", "bed"], objects=[],
        view_set="4MV-Z_Vitru_mv2"),
    "hcontact-wScene": dict(
        # the released script names a view set the original never defines (4MV-Z_Vitru_wScene); FootGround is the
        # one that exists for the scene data
        args=_human_args("interactvlm-3d-hcontact-wScene", "hcontact_seg||hcontactScene_seg||vqa",
                         "4MV-Z_Vitru_FootGround",
                         ["--token_type=Gen", "--hcontact_seg_data=damon_hcontact||lemon_hcontact",
                          "--hcontactScene_seg_data=rich_hcontact", "--vqa_data=llava||damon||lemon",
                          "--val_dataset=damon_hcontact||lemon_hcontact", "--sample_rates=9,3,1",
                          "--oC_sam_view_type=4MV-Z_HM", "--oC_question_type=afford"]),
        human=["scene", "chair", "bench", "skateboard"], objects=[], view_set="4MV-Z_Vitru_FootGround"),
    "oafford": dict(
        args=COMMON_ARGS + ["--exp_name=interactvlm-3d-oafford-lemon-piad", "--dataset=oafford_seg",
                            "--sample_rates=1", "--oC_sam_view_type=4MV-Z_HM", "--oC_sam_input_type=color",
                            "--oC_ranking=lookup", "--oC_question_type=afford",
                            "--oafford_seg_data=piad_oafford||lemon_oafford", "--val_dataset=piad_oafford",
                            "--multiview_cam_cond=True", "--cam_encoder_type=vi_v1", "--oC_loss_weight=3.0",
                            "--hC_loss_weight=0.0", "--bce_loss_weight=2.0", "--bce_loss_alpha=0.5",
                            "--dice_loss_scale=1", "--dice_loss_weight=1.0", "--token_type=Gen"],
        human=[], objects=["chair", "bottle", "cup", "knife"], object_view_set="4MV-Z_HM"),
    "hcontact-ocontact": dict(
        args=_human_args("interactvlm-3d-hcontact-ocontact", "hcontact_seg||ocontact_seg||oafford_seg||vqa",
                         "4MV-Z_Vitru",
                         ["--token_type=Gen-Hu-Obj", "--sample_rates=9,9,5,2", "--oC_sam_view_type=4MV-Z_HM_BM",
                          "--oC_sam_input_type=color", "--oC_ranking=lookup", "--oC_question_type=afford",
                          "--oafford_seg_data=lemon_oafford||piad_oafford",
                          "--hcontact_seg_data=damon_hcontact||lemon_hcontact",
                          "--vqa_data=llava||damon||lemon||piad_seen",
                          "--val_dataset=damon_hcontact||pico_ocontact||piad_oafford", "--oC_loss_weight=3.0"]),
        human=["chair", "bottle", "bicycle"], objects=["chair", "bottle", "bicycle"], view_set="4MV-Z_Vitru",
        object_view_set="4MV-Z_HM_BM"),
    "h2dcontact": dict(
        args=COMMON_ARGS + ["--exp_name=interactvlm-2d-hcontact", "--dataset=h2dcontact_seg", "--sample_rates=1",
                            "--h2dcontact_seg_data=damon_h2dcontact", "--val_dataset=damon_h2dcontact",
                            "--hC_question_type=parts", "--hC_loss_weight=0.0", "--oC_loss_weight=0.0", "--bce_loss_weight=2.0",
                            "--bce_loss_alpha=0.5", "--dice_loss_scale=1", "--dice_loss_weight=1.0",
                            "--token_type=Gen"],
        human=["chair", "bottle", "skateboard", "cup"], objects=[], photo=True),
}


# ----------------------------------------------------------------------------------------------- procedural inputs
def _ellipse(size: int, view: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    cy, cx = size * (0.5 + 0.04 * (view % 2)), size * (0.5 - 0.03 * (view // 2))
    ry, rx = size * 0.42, size * (0.22 + 0.03 * view)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _lifting_maps(size: int, views: int, num_vertices: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per view: vertex triplets of a triangulated grid laid over an ellipse (−1 outside), random barycentrics."""
    rng = np.random.default_rng(seed)
    ids = np.full((views, size, size, 3), -1, np.int64)
    bary = np.zeros((views, size, size, 3), np.float32)
    inside = np.stack([_ellipse(size, v) for v in range(views)])
    yy, xx = np.mgrid[0:size, 0:size]
    for v in range(views):
        base = ((yy // 2) * 53 + (xx // 2) * 7 + v * 1201) % (num_vertices - 60)
        tri = np.stack([base, base + 1, base + 53 % num_vertices], -1) % num_vertices
        ids[v][inside[v]] = tri[inside[v]]
        weights = rng.dirichlet((2.0, 2.0, 2.0), size=(size, size)).astype(np.float32)
        bary[v][inside[v]] = weights[inside[v]]
    return ids, bary, inside


def _renders(inside: np.ndarray, seed: int, tint: tuple[float, float, float]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    views, size = inside.shape[:2]
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.full((views, size, size, 3), 255, np.uint8)
    for v in range(views):
        shade = np.stack([0.3 + 0.6 * yy, 0.3 + 0.6 * xx, 0.5 + 0.3 * np.sin(6 * (xx + yy + v))], -1)
        shade = shade * np.array(tint) + rng.normal(0, 0.02, shade.shape)
        out[v][inside[v]] = (np.clip(shade, 0, 1) * 254)[inside[v]].astype(np.uint8)
    return out


def _write_rgb(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"could not write {path}")


def write_inputs(root: Path) -> dict:
    """Photos, an official-format ``hcontact_vitruvian`` folder and an object template (p2vmap per view)."""
    inputs = root / "inputs"
    human = inputs / "hcontact_vitruvian"
    obj = inputs / "object"
    for folder in (inputs, human, obj):
        folder.mkdir(parents=True, exist_ok=True)
    photos = []
    shared = Path("/work/shared/data/real_photos")
    for i, name in enumerate(PHOTOS):
        image = cv2.imread(str(shared / name)) if (shared / name).is_file() else None
        if image is None:  # any RGB photo will do; these two are the shared demo photos
            image = (np.random.default_rng(i).random((300, 400, 3)) * 255).astype(np.uint8)
        image = cv2.resize(image, (40 + 8 * i, 56 - 8 * i), interpolation=cv2.INTER_AREA)[..., ::-1]
        path = inputs / f"photo_{i}.png"
        _write_rgb(path, image)
        photos.append(str(path))
    ids, bary, inside = _lifting_maps(TEMPLATE_SIZE, 4, HUMAN_VERTICES, seed=1)
    renders = _renders(inside, 2, (0.7, 0.8, 1.0))
    overlays = _renders(inside, 3, (0.3, 0.4, 1.0))
    np.savez_compressed(human / "pixel_to_vertex_map_1024.npz", **{v: ids[i] for i, v in enumerate(HUMAN_VIEWS)})
    np.savez_compressed(human / "bary_coords_map_1024.npz", **{v: bary[i] for i, v in enumerate(HUMAN_VIEWS)})
    for i, v in enumerate(HUMAN_VIEWS):
        _write_rgb(human / f"body_render_norm_{v}.png", renders[i])
        _write_rgb(human / f"smplh_body_render_blue_{v}.png", overlays[i])
    ids, bary, inside = _lifting_maps(TEMPLATE_SIZE, 4, OBJECT_VERTICES, seed=4)
    renders = _renders(inside, 5, (1.0, 0.8, 0.5))
    for i, v in enumerate(OBJECT_VIEWS):
        np.savez_compressed(obj / f"p2vmap_{v}.npz", pixel_to_vertices_map=ids[i], bary_coords_map=bary[i],
                            num_vertices=np.int64(OBJECT_VERTICES))
        _write_rgb(obj / f"obj_render_color_{v}.png", renders[i])
        _write_rgb(obj / f"mask_{v}.png", np.zeros((TEMPLATE_SIZE, TEMPLATE_SIZE, 3), np.uint8))
    return {"photos": photos, "human": str(human), "object": str(obj)}


# ---------------------------------------------------------------------------------------------------------- specs
def _seg(config: dict, human: bool) -> str:
    if "--token_type=Gen-Hu-Obj" in config["args"]:
        return "[HSEG]" if human else "[OSEG]"
    return "[SEG]"


def job_spec(name: str, config: dict, inputs: dict, work: Path, output: Path, seed: int) -> dict:
    samples, generate, forward = [], [], []
    human_q = SIMPLE_2D_Q if config.get("photo") else PARTS_Q
    sam = "photo" if config.get("photo") else "human"
    contact = "h2dcontact" if config.get("photo") else "hcontact"
    for image in (0, 1):
        for obj in config["human"]:
            samples.append({"image": image, "question": human_q.format(obj),
                            "answer": PARTS_A.format(HUMAN_ANSWERS[obj], _seg(config, True))})
        for obj in config["objects"]:
            samples.append({"image": image, "question": AFFORD_Q.format(obj),
                            "answer": AFFORD_A.format(OBJECT_ANSWERS[obj], _seg(config, False))})
    human_query = {"sam": sam, "view_set": config.get("view_set"), "contact_type": contact,
                   "ds_name": "damon_h2dcontact" if config.get("photo") else "damon_hcontact"}
    object_query = {"sam": "object", "view_set": config.get("object_view_set"),
                    "contact_type": "ocontact" if config["human"] else "oafford", "ds_name": "pico_ocontact",
                    "mask_paths": [str(Path(inputs["object"]) / f"mask_{v}.png") for v in OBJECT_VIEWS]}
    sides = ((config["human"], human_query, human_q, lambda o: PARTS_A.format(HUMAN_ANSWERS[o], _seg(config, True))),
             (config["objects"], object_query, AFFORD_Q,
              lambda o: AFFORD_A.format(OBJECT_ANSWERS[o], _seg(config, False))))
    for objects, query, question, answer in sides:  # per side: 2 generate queries (one per photo), 1 forward
        if not objects:
            continue
        for image, obj in ((0, objects[0]), (1, objects[1])):
            generate.append(dict(query, image=image, object=obj, question=question.format(obj)))
        forward.append(dict(query, image=0, object=objects[0], question=question.format(objects[0]),
                            answer=answer(objects[0])))
    return {"name": name, "work": str(work), "output": str(output), "templates": str(Path(inputs["human"]).parent),
            "object_template": inputs["object"], "object_views": list(OBJECT_VIEWS), "images": inputs["photos"],
            "train_args": config["args"], "train_samples": samples, "generate": generate, "forward": forward,
            "seed": seed, "train_steps": 150, "max_new_tokens": 40}


def run_oracle(original: Path, python: Path, command: str, spec: dict, log: Path | None = None) -> None:
    spec_path = Path(spec["work"]) / f"spec_{spec['name']}.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    cmd = [str(python), str(HERE / "oracle_side.py"), "--original", str(original), "--spec", str(spec_path),
           "--command", command]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if log is not None:
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"the original code failed ({' '.join(cmd)}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")


def _relative(spec: dict, root: Path) -> dict:
    """Absolute build paths → paths relative to the fixture folder (the test resolves them)."""
    text = json.dumps(spec).replace(str(root) + "/", "")
    return json.loads(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", type=Path, required=True, help="checkout of saidwivedi/InteractVLM (79b4bf2)")
    parser.add_argument("--original-python", type=Path, required=True, help="python of the transformers 4.31 venv")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--output", type=Path, default=FIXTURES)
    args = parser.parse_args(argv)
    if not (args.original / "merge_lora_weights_and_save_hf_model.py").is_file():
        sys.exit(f"{args.original} is not a checkout of saidwivedi/InteractVLM (no merge_lora_weights_and_save_hf_model.py)")
    work = args.work or Path(tempfile.mkdtemp(prefix="ivlm_oracle_"))
    work.mkdir(parents=True, exist_ok=True)
    out = args.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    inputs = write_inputs(out)
    for seed, name in enumerate(args.configs):
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        spec = job_spec(name, CONFIGS[name], inputs, work, target, seed=10 + seed)
        if name == "hcontact-ocontact":
            spec["tokenizer_record"] = str(out / "tokenizer_ids_gen_hu_obj.json")
        if name == "hcontact":
            spec["tokenizer_record"] = str(out / "tokenizer_ids_gen.json")
        print(f"[{name}] running the original code ...", flush=True)
        run_oracle(args.original.resolve(), args.original_python, "build", spec, log=work / f"{name}.log")
        (target / "spec.json").write_text(json.dumps(_relative(spec, out), indent=1))
        lines = (work / f"{name}.log").read_text().splitlines()  # keep the fine-tune and answer lines only
        (target / "oracle.log").write_text("\n".join(x for x in lines if x.startswith(("fine-tune", "generate"))) + "\n")
        print(f"[{name}] done", flush=True)
    clip = work / "openai" / "clip-vit-large-patch14"
    if clip.is_dir():
        shutil.copytree(clip, out / "clip", dirs_exist_ok=True)


if __name__ == "__main__":
    main()
