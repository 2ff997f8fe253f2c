"""train.py on the real DeepSpeed ZeRO-2 path (CPU accelerator, gloo): a run, and kill -9 mid-epoch + resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from utils.paths import REPO_ROOT

REPO = REPO_ROOT
ARGS = ["--recipe", "synth-tiny", "--set", "epochs=2", "--set", "steps_per_epoch=8", "--set", "batch_size=2",
        "--set", "val_max_samples=4", "--set", "warmup_steps=2", "--save-every", "2"]


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    subprocess.run([sys.executable, "-m", "preprocess_data.synthcontact", "--output-dir", str(root / "synthcontact"),
                    "--num-samples", "24", "--heldout-samples", "4", "--workers", "1", "--no-progress"],
                   cwd=REPO, check=True, capture_output=True)
    return root


def _train(data: Path, out: Path, *extra: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", *ARGS, "--dataset-dir", str(data), "--output-dir", str(out), *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if wait:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill_and_resume_gives_the_same_weights(synth_data, tmp_path):
    full = _train(synth_data, tmp_path / "full")
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    assert (tmp_path / "full" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "full" / "tensorboard").is_dir() and (tmp_path / "full" / "history.jsonl").is_file()

    run = tmp_path / "killed"
    proc = _train(synth_data, run, wait=False)
    latest = run / "ckpt_model" / "latest"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() in ("global_step2", "global_step4", "global_step6"):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed:\n" + proc.stdout.read()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    resumed = _train(synth_data, run, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "epoch 0, micro-step" in resumed.stdout
    a = load_file(str(tmp_path / "full" / "last" / "model.safetensors"))
    b = load_file(str(run / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-5, worst

    # release path: ZeRO checkpoint → merged model directory equal to the run's final export
    prepared = subprocess.run([sys.executable, "-m", "model.prepare_weights", "--run-dir", str(run), "--name", "tiny",
                               "--output-root", str(tmp_path / "released"), "--dataset-dir", str(synth_data)],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
    assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-2000:]
    c = load_file(str(tmp_path / "released" / "tiny" / "model.safetensors"))
    assert max(float((c[k].float() - b[k].float()).abs().max()) for k in b) < 1e-6
    assert (tmp_path / "released" / "tiny" / "training_config.json").is_file()


def test_object_samples_train_through_their_own_templates(tmp_path, tiny_tokenizer, synthbody_template_128):
    """PIAD point clouds and PICO meshes: per-sample templates from the dataset's files, losses with gradient."""
    import torch

    from datasets.collate import Collator
    from datasets.registry import build_dataset
    from tests.conftest import make_tiny_model
    from tests.fixtures_datasets import write_pico, write_piad
    from utils.training import model_inputs, sample_losses

    write_piad(tmp_path)
    write_pico(tmp_path)
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128, oC_loss_weight=3.0).train()
    samples = [build_dataset("piad_oafford", tmp_path, "train", mask_size=128)[0],
               build_dataset("pico_ocontact", tmp_path, "train", mask_size=128)[0]]
    batch = Collator(tiny_tokenizer, model.config, training=True)(samples)
    inputs = model_inputs(model, batch)
    assert [t.num_vertices for t in inputs["templates"]] == [len(s["vertex_labels"]) for s in samples]
    out = model(**inputs)
    loss, parts = sample_losses(model, out, batch)
    loss.backward()
    assert parts["oafford_3d"] > 0 and parts["ocontact_3d"] >= 0 and torch.isfinite(loss)
    assert model.sam.mask_decoder.iou_token.weight.grad is not None or any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in model.sam.mask_decoder.parameters())
