"""The demo with a 2D model (``h2dcontact``): folder, file, manifest and video inputs, every output file checked,
bad inputs beside good ones, and the model-kind errors.

Uses the bundled 2D model when it exists, else a randomly initialised tiny 2D model; the answer is forced to contain
a seg token (see tests/test_demo.py) so real masks are decoded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_demo import SAMPLES, SYNTH_IMAGE, calls, demo, run_summary, tree_hash  # noqa: F401 (calls: fixture)
from utils.paths import REPO_ROOT

BUNDLED_2D = REPO_ROOT / "trained_models" / "interactvlm-tiny-2d-synthcontact"
SUFFIXES_2D = ("_mask.npz", "_mask.png", "_summary.json", "_views.png", "_combined.png")


@pytest.fixture(scope="module")
def model_2d_dir(tmp_path_factory):
    if (BUNDLED_2D / "config.json").is_file():
        return BUNDLED_2D
    from model.io import save_interactvlm
    from model.tokenizer import build_tiny_tokenizer
    from tests.test_model_2d import make_2d_model

    tokenizer = build_tiny_tokenizer()
    return save_interactvlm(make_2d_model(tokenizer), tokenizer, tmp_path_factory.mktemp("demo_2d") / "tiny-2d-random")


def check_2d_sample(out: Path, sample: str, obj: str, photo_size: tuple[int, int], threshold: float = 0.5) -> dict:
    """Every file of one 2D sample: mask npz/png at the photo's size, overlay, combined image, summary fields."""
    folder = out / sample
    stem = folder / f"{sample}_h2dcontact"
    for suffix in SUFFIXES_2D:
        assert Path(f"{stem}{suffix}").is_file(), f"missing {stem}{suffix}"
    assert not list(folder.glob("*_vertices.npz")) and not list(folder.glob("*.ply"))  # no vertices, no mesh
    width, height = photo_size
    data = np.load(f"{stem}_mask.npz")
    probs = data["pred_contact_2d"]
    assert probs.shape == (height, width) and probs.dtype == np.float32 and np.all((probs >= 0) & (probs <= 1))
    assert str(data["mode"]) == "h2dcontact" and str(data["object"]) == obj and bool(data["found_seg"])
    grey = np.asarray(Image.open(f"{stem}_mask.png"))
    assert grey.shape == (height, width) and grey.dtype == np.uint8
    np.testing.assert_allclose(grey / 255.0, probs, atol=0.5 / 255 + 1e-6)
    overlay = Image.open(f"{stem}_views.png")
    assert overlay.mode == "RGB" and overlay.size == (width, height)
    combined = Image.open(f"{stem}_combined.png")
    assert combined.size[1] == height and combined.size[0] == 2 * width + 8
    summary = json.loads(Path(f"{stem}_summary.json").read_text())
    for key in ("sample", "mode", "object", "answer", "found_seg", "prompt", "num_contact_pixels", "contact_fraction",
                "mask_size", "model", "model_kind", "training_data_note", "threshold", "queries", "notes", "files"):
        assert key in summary, key
    assert summary["model_kind"] == "2d" and summary["mask_size"] == [width, height]
    assert summary["num_contact_pixels"] == int((probs >= threshold).sum())
    assert "synthetic data only" in summary["training_data_note"]
    assert any("2D model" in note for note in summary["notes"])
    assert summary["prompt"] == f"Which body parts are in contact with the {obj}? Segment these contact areas."
    assert isinstance(summary.get("answer_body_parts", []), list)
    # contact pixels are red in the overlay, the rest is the photo
    photo = np.asarray(Image.open(f"{stem}_combined.png"))[:, :width]
    red = np.asarray(overlay)
    contact = probs >= threshold
    assert np.all(red[contact][:, 0] >= photo[contact][:, 0])
    np.testing.assert_array_equal(red[~contact], photo[~contact])
    return summary


def test_folder_mode(model_2d_dir, calls, tmp_path):  # noqa: F811
    before = tree_hash(SAMPLES)
    out = tmp_path / "out"
    assert demo(model_2d_dir, out, "--mode", "h2dcontact", "--input", SAMPLES, "--input-mode", "folder",
                "--batch-size", "4") == 0
    assert tree_hash(SAMPLES) == before, "the demo modified its input folder"
    names = sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())
    report = run_summary(out)
    assert sorted(report["ok"]) == names and report["num_failed"] == 0
    for name in names:
        summary = json.loads((out / name / f"{name}_h2dcontact_summary.json").read_text())
        check_2d_sample(out, name, name.split("__")[0], tuple(summary["processed_size"]))
    assert all(n_images == len(q) for n_images, q in calls["calls"])  # one query per image, batched
    readme = (out / "README.md").read_text()
    assert "pred_contact_2d" in readme


def test_file_and_manifest_modes_with_bad_inputs(model_2d_dir, calls, tmp_path):  # noqa: F811
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(SYNTH_IMAGE, src / "chair__good.jpg")
    rgb = np.asarray(Image.open(SYNTH_IMAGE).convert("RGB"))
    Image.fromarray(rgb).convert("L").save(src / "chair__gray.png")
    Image.fromarray(np.tile(rgb[:60, :1], (1, 10000, 1))).save(src / "chair__wide.png")  # 10 000 px wide
    (src / "chair__fake.jpg").write_text("this is not an image")
    before = tree_hash(src)
    out = tmp_path / "out"
    assert demo(model_2d_dir, out, "--mode", "h2dcontact", "--input", src, "--input-mode", "file") == 1
    assert tree_hash(src) == before
    report = run_summary(out)
    assert [f["input"] for f in report["failed"]] == ["chair__fake"]
    assert sorted(report["ok"]) == ["chair__good", "chair__gray", "chair__wide"]
    for name in report["ok"]:
        summary = json.loads((out / name / f"{name}_h2dcontact_summary.json").read_text())
        check_2d_sample(out, name, "chair", tuple(summary["processed_size"]))

    manifest = tmp_path / "list.json"
    manifest.write_text(json.dumps([{"image": str(SYNTH_IMAGE), "objects": ["chair", "bench"]}]))
    out = tmp_path / "out_manifest"
    calls["calls"].clear()
    assert demo(model_2d_dir, out, "--mode", "h2dcontact", "--input", manifest) == 0
    assert calls["calls"] == [(1, [calls["calls"][0][1][0], calls["calls"][0][1][1]])]  # both objects in one call
    report = run_summary(out)
    assert len(report["ok"]) == 2
    for name in report["ok"]:
        obj = name.rsplit("__", 1)[1]
        summary = json.loads((out / name / f"{name}_h2dcontact_summary.json").read_text())
        check_2d_sample(out, name, obj, tuple(summary["processed_size"]))


def test_video_frames_are_smoothed_on_the_photo(model_2d_dir, calls, tmp_path):  # noqa: F811
    frames = tmp_path / "frames"
    frames.mkdir()
    rgb = np.asarray(Image.open(SYNTH_IMAGE).convert("RGB"))
    for i in range(4):
        Image.fromarray(np.roll(rgb, 3 * i, axis=1)).save(frames / f"frame_{i:03d}.png")
    out = tmp_path / "out"
    assert demo(model_2d_dir, out, "--mode", "h2dcontact", "--input", frames, "--video-frames", "--object", "chair",
                "--smooth", "3") == 0
    [video] = list(out.glob("*_h2dcontact_video.npz"))
    data = np.load(video)
    height, width = rgb.shape[:2]
    assert data["pred_contact_2d"].shape == (4, height, width) == data["pred_contact_2d_raw"].shape
    raw, smooth = data["pred_contact_2d_raw"], data["pred_contact_2d"]
    np.testing.assert_allclose(smooth[1], raw[:3].mean(0), atol=1e-5)  # centred window of 3 frames


def test_model_kind_errors(model_2d_dir, tmp_path, capsys):
    assert demo(model_2d_dir, tmp_path / "o", "--mode", "hcontact", "--input", SYNTH_IMAGE) == 2
    err = capsys.readouterr().err
    assert "is a 2D contact model" in err and "h2dcontact" in err
