"""Hostile and careless inputs (issue 12): each bad input beside good ones, asserting the message, the exit status,
that the good inputs still produced their outputs, and that nothing outside the output folder changed.

* archives: real malicious tar and zip files (symlink chains that only escape when followed through each other, links
  planted in the destination, a wrapper-relative escape, a hard link through a link) extracted by fetch_data.sh;
* the demo's output folder: the manifest's folder, a user's files, symlinked sample folders, earlier results, a
  concurrent run, the default folder twice;
* an OpenCV-only image (Radiance HDR) announcing a huge size, bad model directories, hostile object names, a dash-led
  input name, progress bars;
* the view-embedding cache key (exact across threads, processes; dtype and weight sensitive) and the shipped cache;
* pickle-based checkpoints and data files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import demo.inputs as demo_inputs
import run_demo
from tests.archives import targz_bytes, zip_bytes
from utils.paths import REPO_ROOT

FETCH = REPO_ROOT / "fetch_data.sh"
SAMPLES = REPO_ROOT / "data" / "demo_samples"
BUNDLED = demo_inputs.DEFAULT_MODEL  # the demo's default 3D model
SYNTH_IMAGE = SAMPLES / "chair__test_000015" / "chair__test_000015.jpg"

needs_bundled = pytest.mark.skipif(not (BUNDLED / "config.json").is_file(), reason="needs the bundled model")


def tree_state(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> content hash (files), link target (symlinks) or "dir", for everything under ``folder``."""
    state = {}
    if not folder.exists():
        return state
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip) or "__pycache__" in rel:
            continue
        if path.is_symlink():
            state[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            state[rel] = "dir"
        else:
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest() + f":{stat.S_IMODE(path.stat().st_mode):o}"
    return state


# ---------------------------------------------------------------------------------------------------------- archives





# The issue's chain: each link's text stays inside the archive, but followed through the others u, v and w climb
# one, two and three levels above the install root.
CHAIN = {"d/l1": "..", "u": "d/l1/..", "v": "u/..", "w": "v/.."}

ITEM = {".zip": ("hcontact-damon", "trained_models", "interactvlm-3d-hcontact-damon.zip"),
        ".tar.gz": ("damon-dataset", "data", "damon.tar.gz")}


def _archive(kind: str, files: dict[str, bytes], links: dict[str, str]) -> bytes:
    return zip_bytes(files, links) if kind == ".zip" else targz_bytes(files, links)


def _fetch(root: Path, *items: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERACTVLM_")}
    env["INTERACTVLM_ROOT"] = str(root)
    return subprocess.run(["bash", str(FETCH), *items], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def install_root(tmp_path):
    """``<tmp>/sandbox/repo``: the install root, with a sibling and an outside folder to watch."""
    sandbox = tmp_path / "sandbox"
    (sandbox / "repo").mkdir(parents=True)
    (sandbox / "outside").mkdir()
    (sandbox / "outside" / "keep.txt").write_text("user data outside the install root")
    return sandbox / "repo"


def _place(root: Path, kind: str, payload: bytes) -> Path:
    _, dest, file = ITEM[kind]
    (root / dest).mkdir(parents=True, exist_ok=True)
    (root / dest / file).write_bytes(payload)
    return root / dest / file


GOOD_MODEL = zip_bytes({"interactvlm-3d-hcontact-damon/config.json": b"{}"}, {})


@pytest.mark.skipif(shutil.which("unzip") is None or shutil.which("tar") is None, reason="needs unzip and GNU tar")
@pytest.mark.parametrize("kind", [".zip", ".tar.gz"])
def test_archive_link_chain_escape_is_refused(install_root, kind):
    sandbox = install_root.parent
    _place(install_root, kind, _archive(kind, {"d/readme.txt": b"x"}, CHAIN))
    if kind == ".tar.gz":  # a good archive installed first in the same run must stay installed
        _place(install_root, ".zip", GOOD_MODEL)
    before = tree_state(sandbox, skip=("repo",))
    items = ["hcontact-damon", "damon-dataset"] if kind == ".tar.gz" else ["hcontact-damon"]
    out = _fetch(install_root, *items)
    assert out.returncode == 5, out.stderr
    assert "unsafe archive" in out.stderr and "resolves outside the archive" in out.stderr
    assert any(f"symlink '{name}' -> '{CHAIN[name]}'" in out.stderr for name in ("u", "v", "w"))
    assert tree_state(sandbox, skip=("repo",)) == before  # nothing outside the install root
    dest = install_root / ITEM[kind][1]
    assert not (dest / "d").exists() and not (dest / "u").exists() and not list(dest.glob(".fetch_data*"))
    if kind == ".tar.gz":
        assert (install_root / "trained_models" / "interactvlm-3d-hcontact-damon" / "config.json").is_file()

    # The second archive of the issue (v/PWNED.txt) now installs as a plain folder inside the root.
    (dest / ITEM[kind][2]).unlink()
    _place(install_root, kind, _archive(kind, {"v/PWNED.txt": b"pwned"}, {}))
    out = _fetch(install_root, ITEM[kind][0])
    assert out.returncode == 0, out.stderr
    assert (dest / "v" / "PWNED.txt").read_bytes() == b"pwned"
    assert tree_state(sandbox, skip=("repo",)) == before


@pytest.mark.skipif(shutil.which("unzip") is None or shutil.which("tar") is None, reason="needs unzip and GNU tar")
@pytest.mark.parametrize("kind", [".zip", ".tar.gz"])
@pytest.mark.parametrize("planted", ["../../outside", "inner"])
def test_merge_never_follows_a_link_of_the_destination(install_root, kind, planted):
    """A folder link already in the destination (from an older install, or planted) is never written through, even
    when it points inside the root."""
    sandbox = install_root.parent
    dest = install_root / ITEM[kind][1]
    (dest / "inner").mkdir(parents=True)
    (dest / "v").symlink_to(planted)
    _place(install_root, kind, _archive(kind, {"v/PWNED.txt": b"pwned", "good/file.txt": b"ok"}, {}))
    before = tree_state(sandbox, skip=("repo",))
    out = _fetch(install_root, ITEM[kind][0])
    assert out.returncode == 6, out.stderr
    assert "cannot install" in out.stderr and "  v\n" in out.stderr
    assert tree_state(sandbox, skip=("repo",)) == before
    assert not (dest / "inner" / "PWNED.txt").exists() and not (dest / "good").exists()
    assert (dest / ITEM[kind][2]).is_file()  # the archive is kept for the next try


@pytest.mark.skipif(shutil.which("unzip") is None or shutil.which("tar") is None, reason="needs unzip and GNU tar")
@pytest.mark.parametrize("kind, files, links, message", [
    # relative to the stripped trained_models/ wrapper, "../x" leaves the install root
    (".zip", {"trained_models/m/config.json": b"{}"}, {"trained_models/m/up": "../../x"}, "points outside"),
    # a link through a link to a file: escapes only when followed
    (".tar.gz", {"damon/a.txt": b"a"}, {"damon/l": "..", "damon/m": "l/../x"}, "resolves outside"),
    # a file in the middle of a link's path
    (".zip", {"m/a.txt": b"a"}, {"m/b": "a.txt/../x"}, "resolves outside"),
])
def test_other_escaping_link_shapes(install_root, kind, files, links, message):
    sandbox = install_root.parent
    _place(install_root, kind, _archive(kind, files, links))
    before = tree_state(sandbox, skip=("repo",))
    out = _fetch(install_root, ITEM[kind][0])
    assert out.returncode == 5, out.stderr
    assert "unsafe archive" in out.stderr and message in out.stderr
    assert tree_state(sandbox, skip=("repo",)) == before
    assert sorted(p.name for p in (install_root / ITEM[kind][1]).iterdir()) == [ITEM[kind][2]]


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_hard_link_through_a_symlink_is_refused(install_root):
    payload = targz_bytes({"damon/sub/f": b"f"}, {"damon/l": "sub"}, hardlinks={"damon/h": "damon/l/f"})
    _place(install_root, ".tar.gz", payload)
    out = _fetch(install_root, "damon-dataset")
    assert out.returncode == 5 and "goes through the symlink damon/l" in out.stderr, out.stderr
    assert "nothing extracted" in out.stderr


@pytest.mark.skipif(shutil.which("unzip") is None or shutil.which("tar") is None, reason="needs unzip and GNU tar")
@pytest.mark.parametrize("kind", [".zip", ".tar.gz"])
def test_links_that_stay_inside_still_install(install_root, kind):
    links = {"ds/latest": "train", "ds/first": "train/a.txt", "ds/deep/up": "../train/a.txt", "ds/self": "."}
    _place(install_root, kind, _archive(kind, {"ds/train/a.txt": b"a", "ds/deep/x": b"x"}, links))
    out = _fetch(install_root, ITEM[kind][0])
    assert out.returncode == 0, out.stderr
    ds = install_root / ITEM[kind][1] / "ds"
    assert (ds / "latest").is_symlink() and (ds / "latest" / "a.txt").read_bytes() == b"a"
    assert (ds / "deep" / "up").read_bytes() == b"a"


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_destination_folder_itself_may_be_a_link(install_root):
    """The supported way to keep datasets on another disk: data/ itself is the link (the user's choice)."""
    big = install_root.parent / "big_disk"
    big.mkdir()
    (install_root / "data").symlink_to(big)
    (big / "damon.tar.gz").write_bytes(targz_bytes({"damon/train/a.npy": b"a"}, {"damon/latest": "train/a.npy"}))
    out = _fetch(install_root, "damon-dataset")
    assert out.returncode == 0, out.stderr
    assert (big / "damon" / "latest").read_bytes() == b"a" and not list(big.glob(".fetch_data*"))


# ---------------------------------------------------------------------------------------------------------- demo

def demo(*args) -> int:
    return run_demo.main(["--device", "cpu", "--no-progress", "--max-new-tokens", "4", *map(str, args)])


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(SYNTH_IMAGE, src / "chair__good.jpg")
    return src


@needs_bundled
def test_output_dir_holding_the_manifest_is_refused(tmp_path, photos, capsys):
    manifest = tmp_path / "list" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps([{"image": str(photos / "chair__good.jpg"), "objects": ["chair"]}]))
    (manifest.parent / "README.md").write_text("my notes")
    (manifest.parent / "run_summary.json").write_text('{"mine": true}')
    before, before_photos = tree_state(manifest.parent), tree_state(photos)
    assert demo("--input", manifest, "--output-dir", manifest.parent) == 2
    err = capsys.readouterr().err
    assert "contains the input" in err and str(manifest) in err
    assert tree_state(manifest.parent) == before and tree_state(photos) == before_photos


@needs_bundled
def test_users_files_in_the_output_folder_are_never_overwritten(tmp_path, photos, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run_summary.json").write_text('{"mine": true}')
    before = tree_state(out)
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", out) == 2
    err = capsys.readouterr().err
    assert "run_summary.json exists and was not written by the demo" in err
    assert tree_state(out) == before
    (out / "run_summary.json").unlink()
    (out / "README.md").write_text("mine")
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", out, "--overwrite") == 2
    assert "README.md exists and was not written by the demo" in capsys.readouterr().err
    assert (out / "README.md").read_text() == "mine"


@needs_bundled
def test_symlinked_sample_folders(tmp_path, capsys):
    # an input sample folder that is a symlink: its target is protected by real path
    real = tmp_path / "elsewhere" / "chair__linked"
    real.mkdir(parents=True)
    shutil.copy(SYNTH_IMAGE, real / "chair__linked.jpg")
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "chair__linked").symlink_to(real)
    (samples / "chair__plain").mkdir()
    shutil.copy(SYNTH_IMAGE, samples / "chair__plain" / "chair__plain.jpg")
    before = tree_state(tmp_path / "elsewhere")
    assert demo("--input", samples, "--output-dir", real / "results") == 2
    assert "lies inside the input folder" in capsys.readouterr().err
    assert tree_state(tmp_path / "elsewhere") == before
    # a symlink where the output's sample folder goes is never written through
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (out / "chair__plain").symlink_to(victim)
    assert demo("--input", samples, "--output-dir", out) == 2
    assert "is a symlink" in capsys.readouterr().err and not any(victim.iterdir())
    (out / "chair__plain").unlink()
    assert demo("--input", samples, "--output-dir", out) == 0  # both samples, one read through the link
    assert sorted(json.loads((out / "run_summary.json").read_text())["ok"]) == ["chair__linked", "chair__plain"]
    assert tree_state(tmp_path / "elsewhere") == before and not any(victim.iterdir())


@needs_bundled
def test_earlier_results_need_overwrite_and_leave_nothing_stale(tmp_path, photos, capsys):
    out = tmp_path / "out"
    shutil.copy(SYNTH_IMAGE, photos / "chair__second.jpg")
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", out) == 0
    first = tree_state(out)
    assert {"chair__good", "chair__second"} <= set(first)
    (photos / "chair__second.jpg").unlink()
    (out / "my_notes.txt").write_text("kept")  # a user's file beside the results
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", out, "--threshold", "0.3") == 2
    assert "--overwrite" in capsys.readouterr().err and tree_state(out) == {**first, "my_notes.txt": tree_state(out)["my_notes.txt"]}
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", out, "--threshold", "0.3",
                "--overwrite") == 0
    assert not (out / "chair__second").exists()  # the stale sample of the first run is gone
    assert (out / "my_notes.txt").read_text() == "kept"
    summary = json.loads((out / "chair__good" / "chair__good_hcontact_summary.json").read_text())
    assert summary["threshold"] == 0.3 and json.loads((out / "run_summary.json").read_text())["ok"] == ["chair__good"]
    listed = set(json.loads((out / ".interactvlm_demo.json").read_text())["files"])
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert listed == on_disk - {"my_notes.txt"}


@needs_bundled
def test_default_output_folder_is_replaced_on_every_run(tmp_path, photos, monkeypatch):
    monkeypatch.setattr(demo_inputs, "DEFAULT_OUTPUT_ROOT", tmp_path / "fake_repo" / "outputs" / "demo")
    default = tmp_path / "fake_repo" / "outputs" / "demo" / "hcontact"
    shutil.copy(SYNTH_IMAGE, photos / "chair__second.jpg")
    assert demo("--input", photos, "--input-mode", "file") == 0
    assert (default / "chair__second").is_dir()
    (photos / "chair__second.jpg").unlink()
    assert demo("--input", photos, "--input-mode", "file") == 0  # the same command twice in a row
    assert not (default / "chair__second").exists() and (default / "chair__good").is_dir()


def test_default_folder_from_before_file_lists_is_adopted(tmp_path):
    """Results an older demo wrote into the default folder (no file list yet) are recognised by their layout and
    replaced; a file of the user's in there still stops the run."""
    from demo.output_folder import OutputFolder, OutputFolderError

    out = tmp_path / "hcontact"
    (out / "chair__a" / "object_template").mkdir(parents=True)
    (out / "README.md").write_text("# InteractVLM demo outputs: hcontact\n")
    (out / "run_summary.json").write_text("{}")
    (out / "chair__a" / "chair__a_hcontact_summary.json").write_text("{}")
    (out / "chair__a" / "object_template" / "r.png").write_bytes(b"png")
    with OutputFolder(out, replace_earlier=True, adopt_legacy=True) as folder:
        folder.open(["README.md", "run_summary.json", "chair__b"])
    assert sorted(p.name for p in out.iterdir()) == [".interactvlm_demo.json"]
    (out / "README.md").write_text("# InteractVLM demo outputs: hcontact\n")
    (out / "chair__a").mkdir()
    (out / "chair__a" / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="holds files the demo did not write"):
        with OutputFolder(out, replace_earlier=True, adopt_legacy=True) as folder:
            folder.open(["chair__a"])
    assert (out / "chair__a" / "notes.txt").read_text() == "mine"


@needs_bundled
def test_concurrent_run_into_one_folder_is_refused(tmp_path, photos, capsys):
    from demo.output_folder import OutputFolder

    out = tmp_path / "out"
    with OutputFolder(out, replace_earlier=False) as other:
        other.open(["README.md"])  # another run holds the folder
        assert demo("--input", photos, "--input-mode", "file", "--output-dir", out) == 2
        assert "another demo run is writing into" in capsys.readouterr().err
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", out, "--overwrite") == 0


# ---------------------------------------------------------------------------------------------------------- images

def _hdr_bytes(width: int, height: int, announce: tuple[int, int] | None = None) -> bytes:
    import cv2

    path_img = np.full((height, width, 3), 0.5, np.float32)
    ok, data = cv2.imencode(".hdr", path_img)
    assert ok
    data = data.tobytes()
    if announce is not None:
        data = data.replace(f"-Y {height} +X {width}".encode(), f"-Y {announce[1]} +X {announce[0]}".encode(), 1)
    return data


def test_opencv_only_image_is_held_to_the_pixel_limit(tmp_path):
    code = f"""
import resource, sys
from demo.photos import load_image
try:
    load_image(sys.argv[1])
except ValueError as err:
    print("ERR", err)
print("RSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    bomb = tmp_path / "chair__bomb.jpg"
    bomb.write_bytes(_hdr_bytes(64, 64, announce=(14000, 14000)))  # 196 M pixels announced, 2.3 MB on disk
    baseline = subprocess.run([sys.executable, "-c", code.replace("load_image(sys.argv[1])", "pass"), "x"],
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    result = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=120)
    assert "ERR" in result.stdout and "exceeds the limit" in result.stdout and "14000x14000" in result.stdout
    rss = float(result.stdout.split("RSS_MB")[1])
    base = float(baseline.stdout.split("RSS_MB")[1])
    assert rss - base < 100, (rss, base)  # refused from the header: nothing decoded

    from demo.photos import load_image

    real = tmp_path / "real.jpg"  # an honest HDR renamed .jpg still loads, downscaled in float32
    real.write_bytes(_hdr_bytes(300, 200))
    loaded = load_image(real, max_side=128)
    assert loaded.pixels.shape == (85, 128, 3) and loaded.original_size == (300, 200) and loaded.downscaled
    with pytest.raises(ValueError, match="exceeds the limit"):  # the same limit for PIL's formats
        load_image(SYNTH_IMAGE, max_pixels=1000)


@needs_bundled
def test_image_bomb_beside_good_images(tmp_path, photos):
    (photos / "chair__bomb.jpg").write_bytes(_hdr_bytes(64, 64, announce=(14000, 14000)))
    before = tree_state(photos)
    out = tmp_path / "out"
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", out) == 1
    report = json.loads((out / "run_summary.json").read_text())
    assert report["ok"] == ["chair__good"] and (out / "chair__good" / "chair__good_hcontact_vertices.npz").is_file()
    assert report["failed"][0]["input"] == "chair__bomb" and "exceeds the limit" in report["failed"][0]["reason"]
    assert tree_state(photos) == before


# ---------------------------------------------------------------------------------------------------------- models

def _broken_models(root: Path) -> dict[str, tuple[Path, str]]:
    cases = {}
    truncated = root / "truncated"
    shutil.copytree(BUNDLED, truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (truncated, "truncated or damaged")
    bad_config = root / "bad_config"
    shutil.copytree(BUNDLED, bad_config)
    (bad_config / "config.json").write_text('{"model_type": "interactvlm", ')
    cases["bad_config"] = (bad_config, "is not valid JSON")
    pickled = root / "pickled"
    shutil.copytree(BUNDLED, pickled)
    (pickled / "model.safetensors").unlink()
    import torch

    torch.save({"x": torch.zeros(1)}, pickled / "pytorch_model.bin")
    cases["pickled"] = (pickled, "only a pickle checkpoint (pytorch_model.bin)")
    return cases


@needs_bundled
def test_bad_model_directories_give_one_line_and_status_2(tmp_path, photos, capsys):
    for name, (model, message) in _broken_models(tmp_path / "models").items():
        before = tree_state(model)
        out = tmp_path / f"out_{name}"
        assert demo("--model", model, "--input", photos, "--input-mode", "file", "--output-dir", out) == 2, name
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (name, lines)
        assert tree_state(model) == before and not out.exists()
    from model.io import ModelDirError, load_interactvlm  # the library raises the same one-line error

    with pytest.raises(ModelDirError, match="truncated or damaged"):
        load_interactvlm(tmp_path / "models" / "truncated")


# ---------------------------------------------------------------------------------------------------------- names

@needs_bundled
def test_object_names_are_validated(tmp_path, photos, capsys):
    out = tmp_path / "out"
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", out, "--object", "x" * 5000) == 2
    err = capsys.readouterr().err
    assert "5000 characters long" in err and err.count("x" * 41) == 0 and not out.exists()
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", out, "--object", "chair <image>") == 2
    assert "reserved token '<image>'" in capsys.readouterr().err
    # bad names from file names fail their input only; the good photo beside them runs
    shutil.copy(SYNTH_IMAGE, photos / "chair<image>__1.jpg")
    shutil.copy(SYNTH_IMAGE, photos / "[SEG]__2.jpg")
    shutil.copy(SYNTH_IMAGE, photos / ("chair__" + "y" * 200 + ".jpg"))  # long file name: capped output name
    before = tree_state(photos)
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", out) == 1
    report = json.loads((out / "run_summary.json").read_text())
    failed = {f["input"]: f["reason"] for f in report["failed"]}
    assert set(failed) == {"chair<image>__1.jpg", "[SEG]__2.jpg"}
    assert "reserved token '<image>'" in failed["chair<image>__1.jpg"] and "'[SEG]'" in failed["[SEG]__2.jpg"]
    assert "chair__good" in report["ok"] and len(report["ok"]) == 2
    long_name = next(n for n in report["ok"] if n != "chair__good")
    assert len(long_name) <= 80 and (out / long_name / f"{long_name}_hcontact_summary.json").is_file()
    assert tree_state(photos) == before


@needs_bundled
def test_object_outside_the_training_vocabulary_is_noted(tmp_path, photos):
    summary_of = lambda out: json.loads((out / "chair__good" / "chair__good_hcontact_summary.json").read_text())  # noqa: E731
    assert demo("--input", photos, "--input-mode", "file", "--output-dir", tmp_path / "a") == 0
    if not (BUNDLED / "training_objects.json").is_file():
        assert summary_of(tmp_path / "a")["object_in_training_vocabulary"] == "unknown"
    model = tmp_path / "model"
    shutil.copytree(BUNDLED, model)
    (model / "training_objects.json").write_text(json.dumps({"objects": ["chair", "baseball_bat"]}))
    assert demo("--model", model, "--input", photos, "--input-mode", "file", "--output-dir", tmp_path / "b") == 0
    summary = summary_of(tmp_path / "b")
    assert summary["object_in_training_vocabulary"] is True and summary["training_objects"] == ["chair", "baseball_bat"]
    assert not any("training vocabulary" in n for n in summary["notes"])
    assert demo("--model", model, "--input", photos, "--input-mode", "file", "--output-dir", tmp_path / "c",
                "--object", "hovercraft") == 0
    summary = summary_of(tmp_path / "c")
    assert summary["object_in_training_vocabulary"] is False
    assert any("'hovercraft' is outside this model's training vocabulary" in n for n in summary["notes"])


@needs_bundled
def test_dash_led_input_name_through_the_script(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(SYNTH_IMAGE, work / "-chair__x.jpg")
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "run_demo.sh"), "hcontact", "-chair__x.jpg", "file",
                             "--object", "chair", "--output-dir", str(tmp_path / "out"), "--no-progress",
                             "--max-new-tokens", "4"], capture_output=True, text=True, cwd=work, timeout=300,
                            env=dict(os.environ, PYTHON=sys.executable))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "run_summary.json").read_text())["ok"] == ["chair__x"]


@needs_bundled
def test_no_progress_and_point_cloud_message(tmp_path, capsys):
    src = tmp_path / "objects"
    shutil.copytree(SAMPLES / "chair__object-demo", src / "chair__object-demo")
    (src / "chair__cloud").mkdir()
    shutil.copy(SYNTH_IMAGE, src / "chair__cloud" / "chair__cloud.jpg")
    (src / "chair__cloud" / "object_mesh.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")  # points only
    out = tmp_path / "out"
    capsys.readouterr()
    assert demo("--mode", "ocontact", "--input", src, "--output-dir", out) == 1
    err = capsys.readouterr().err
    assert "rendering" not in err and "Loading weights" not in err and "it/s" not in err
    report = json.loads((out / "run_summary.json").read_text())
    assert report["ok"] == ["chair__object-demo"]
    reason = report["failed"][0]["reason"]
    assert "--object-mesh" in reason and "render_point_cloud" not in reason and "no faces" in reason


# ---------------------------------------------------------------------------------------------------------- cache

KEY_SCRIPT = """
import sys, torch
torch.set_num_threads(int(sys.argv[2]))
from model.io import load_interactvlm
from model.sam import ViewEmbeddingCache, encoder_fingerprint
model, _ = load_interactvlm(sys.argv[1], cache_dir=None, dtype=getattr(torch, sys.argv[3]))
fp = encoder_fingerprint(model.sam)
print("KEY", fp, ViewEmbeddingCache.key(model.template("human").pixel_values, fp))
"""


def _keys(model_dir: Path, threads: int, dtype: str = "float32") -> tuple[str, str]:
    result = subprocess.run([sys.executable, "-c", KEY_SCRIPT, str(model_dir), str(threads), dtype],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("KEY "))
    return tuple(line.split()[1:])


@needs_bundled
def test_view_cache_key_is_exact(tmp_path):
    import torch

    from model.io import load_interactvlm
    from model.sam import ViewEmbeddingCache, encoder_fingerprint

    one, two = _keys(BUNDLED, 1), _keys(BUNDLED, 2)  # separate processes, 1 and 2 threads
    assert one == two
    model, _ = load_interactvlm(BUNDLED, cache_dir=None)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        in_process = encoder_fingerprint(model.sam)
        torch.set_num_threads(2)
        assert encoder_fingerprint(model.sam) == in_process == one[0]
    finally:
        torch.set_num_threads(threads)
    assert ViewEmbeddingCache.key(model.template("human").pixel_values, in_process) == one[1]
    bf16_model, _ = load_interactvlm(BUNDLED, cache_dir=None, dtype=torch.bfloat16)
    assert encoder_fingerprint(bf16_model.sam) != one[0]  # bf16 weights: another key
    with torch.no_grad():
        next(model.sam.vision_encoder.parameters()).view(-1)[0] += 1e-6  # one weight, one ulp-scale change
    assert encoder_fingerprint(model.sam) != in_process
    # the shipped cache hits on a fresh load: the encoder never runs, nothing is written anywhere
    cache = tmp_path / "cache"
    before = tree_state(BUNDLED)
    fresh, _ = load_interactvlm(BUNDLED, cache_dir=cache)
    fresh.view_embeddings(fresh.template("human"))
    assert fresh.view_cache.encoder_runs == 0 and fresh.view_cache.disk_hits == 1
    assert not cache.exists() and tree_state(BUNDLED) == before
    # bf16: computed once into the user cache (not the model folder), then read back from there
    bf16, _ = load_interactvlm(BUNDLED, cache_dir=cache, dtype=torch.bfloat16)
    emb = bf16.view_embeddings(bf16.template("human"))
    assert emb.dtype == torch.bfloat16 and bf16.view_cache.encoder_runs == 1 and len(list(cache.glob("*"))) == 1
    again, _ = load_interactvlm(BUNDLED, cache_dir=cache, dtype=torch.bfloat16)
    torch.testing.assert_close(again.view_embeddings(again.template("human")), emb, atol=0, rtol=0)
    assert again.view_cache.encoder_runs == 0 and tree_state(BUNDLED) == before


def test_cache_file_with_another_identity_is_never_served(tmp_path, tiny_model):
    from safetensors.torch import load_file, save_file

    from model.sam import ViewEmbeddingCache

    model = tiny_model
    model.view_cache = ViewEmbeddingCache(tmp_path)
    template = model.template()
    good = model.view_embeddings(template).clone()
    [path] = list(tmp_path.glob("*.safetensors"))
    # the same file name holding other embeddings and another encoder's metadata (e.g. a bf16 run): ignored
    save_file({"embeddings": load_file(str(path))["embeddings"] * 0 + 7}, str(path),
              metadata={"key": path.stem, "encoder": "0" * 32, "dtype": "torch.bfloat16"})
    model.view_cache = ViewEmbeddingCache(tmp_path)
    torch_close = __import__("torch").testing.assert_close
    torch_close(model.view_embeddings(template), good)
    assert model.view_cache.encoder_runs == 1


@needs_bundled
def test_demo_writes_nothing_under_the_repository_but_its_output(tmp_path):
    """What ``make demo`` on a fresh clone does, minus the output folder: nothing else in the repository changes
    (the shipped view embeddings hit, new caches go to the user cache folder)."""
    skip = (".venv", ".git", "outputs", ".pytest_cache", "runs")
    watched = [REPO_ROOT / "trained_models", REPO_ROOT / "data"]
    before = {str(w): tree_state(w) for w in watched}
    names_before = {p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.iterdir()}
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, INTERACTVLM_CACHE=str(cache))
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "run_demo.sh"), "hcontact", str(SAMPLES), "folder",
                             "--output-dir", str(out), "--no-progress", "--max-new-tokens", "4"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode in (0, 1), result.stderr[-2000:]  # (exit status of the samples: test_demo.py's job)
    assert json.loads((out / "run_summary.json").read_text())["num_ok"] >= 1
    assert {str(w): tree_state(w) for w in watched} == before
    assert {p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.iterdir()} - names_before - set(skip) == set()
    assert not list(cache.rglob("*.safetensors"))  # the shipped human-template embeddings were used


# ---------------------------------------------------------------------------------------------------------- pickles

class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/interactvlm-pwned-marker",))


def test_hostile_checkpoint_is_refused_before_unpickling(tmp_path):
    import torch

    from training.prepare_weights import UnsafeCheckpointError, check_checkpoint_files

    marker = Path("/tmp/interactvlm-pwned-marker")
    marker.unlink(missing_ok=True)
    tag = tmp_path / "run" / "ckpt_model" / "global_step1"
    tag.mkdir(parents=True)
    torch.save({"module": {"w": torch.zeros(2)}, "client": _Exploit()}, tag / "mp_rank_00_model_states.pt")
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
        check_checkpoint_files(tag)
    assert not marker.exists()
    (tag / "mp_rank_00_model_states.pt").write_bytes(b"\x80\x04not a zip checkpoint")
    with pytest.raises(UnsafeCheckpointError, match="cannot be scanned"):
        check_checkpoint_files(tag)
    # a clean train.py-style file (module weights + numpy RNG state) passes
    torch.save({"module": {"w": torch.zeros(2)}, "rng": np.random.get_state()}, tag / "mp_rank_00_model_states.pt")
    assert check_checkpoint_files(tag) == [tag / "mp_rank_00_model_states.pt"]


def test_data_pickles_use_the_restricted_unpickler(tmp_path):
    import pickle

    import preprocess_data.synthcontact_gallery as gallery
    from datasets.io import DatasetFormatError, load_pickle

    marker = Path("/tmp/interactvlm-pwned-marker")
    marker.unlink(missing_ok=True)
    path = tmp_path / "contact_label_objectwise.pkl"
    path.write_bytes(pickle.dumps([_Exploit()]))
    with pytest.raises(DatasetFormatError, match="refusing to load"):
        load_pickle(path, "a list")
    assert not marker.exists()
    assert gallery.load_pickle is load_pickle and not hasattr(gallery, "pickle")
