"""train.py on the real DeepSpeed ZeRO-2 path (CPU accelerator, gloo): a run, and kill -9 mid-epoch + resume."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import train
from training.data import build_validation_data
from datasets.collate import Collator
from datasets.registry import build_dataset
from model.io import load_interactvlm
from tests.conftest import make_tiny_model
from tests.fixtures_datasets import write_pico, write_piad
from training.batches import model_inputs, sample_losses
from training.build import build_model
from utils.paths import REPO_ROOT
from training.recipes import DataSource, get_recipe

REPO = REPO_ROOT
ARGS = ["--recipe", "synth-tiny", "--set", "epochs=2", "--set", "steps_per_epoch=8", "--set", "batch_size=2",
        "--set", "val_max_samples=4", "--set", "warmup_steps=2", "--set", "calibrate_thresholds=True",
        "--save-every", "2"]


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


@pytest.fixture(scope="module")
def full_run(synth_data, tmp_path_factory) -> Path:
    """One uninterrupted run of the test recipe (2 epochs x 8 optimizer steps of 2 samples)."""
    out = tmp_path_factory.mktemp("full")
    full = _train(synth_data, out)
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    return out


def _run_recipe(**changes):
    """The recipe train.py ran with ARGS (its --set overrides applied)."""
    overrides = [ARGS[i + 1] for i, arg in enumerate(ARGS) if arg == "--set"]
    return dataclasses.replace(train.apply_overrides(get_recipe("synth-tiny"), overrides), **changes)


def _heldout_loss(model, tokenizer, data: Path, recipe) -> dict[str, float]:
    """Teacher-forced losses on the splits training never sees (test: seen combinations; test_heldout: held out)."""
    valid = model.template("human").valid.cpu().numpy()
    sets = build_validation_data(recipe, data, model.config, valid)
    samples = [ds[i] for ds in sets for i in range(len(ds))]
    batch = Collator(tokenizer, model.config, training=False)(samples)
    with torch.no_grad():
        _, parts = sample_losses(model, model(**model_inputs(model, batch)), batch)
    return {"samples": len(samples), **parts}


def test_training_beats_its_own_initialisation_on_heldout_samples(synth_data, full_run):
    recipe = _run_recipe(val=(DataSource("synthcontact_hcontact", "test"), DataSource("synthcontact_hcontact", "test_heldout")))
    torch.manual_seed(recipe.seed)  # as train.py does before building the model: the run's own step-0 weights
    random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    initial, tokenizer = build_model(recipe, "cpu", synth_data)
    trained, trained_tokenizer = load_interactvlm(full_run / "last", device="cpu")
    start, end = initial.eval().state_dict(), trained.eval().state_dict()
    frozen = [k for k in start if "sam.vision_encoder." in k]
    assert frozen and all(torch.equal(start[k], end[k]) for k in frozen)  # same initialisation (frozen part kept)
    assert any(not torch.equal(start[k], end[k]) for k in start if "mask_decoder" in k)  # and the trained part moved
    before = _heldout_loss(initial, tokenizer, synth_data, recipe)
    after = _heldout_loss(trained, trained_tokenizer, synth_data, recipe)
    assert before["samples"] >= 4
    # a step that does not update (lr 0, no optimizer step, gradients lost) leaves the loss where it started
    assert after["total"] < 0.8 * before["total"], (before, after)


def test_best_export_carries_the_validation_threshold(full_run):
    """With ``calibrate_thresholds`` the best epoch's human threshold (chosen on its validation predictions) is in
    the exported config; training itself and the ``last`` export stay at the identity threshold."""
    history = [json.loads(line) for line in (full_run / "history.jsonl").read_text().splitlines()]
    saved = [r for r in history if r.get("saved_best")]
    assert saved and all(0.0 < r["synthcontact/decision_threshold_human"] < 1.0 for r in history)
    best = json.loads((full_run / "best" / "config.json").read_text())
    assert best["human_decision_threshold"] == saved[-1]["decision_thresholds"]["human"]
    assert best["human_decision_threshold"] == saved[-1]["synthcontact/decision_threshold_human"]
    assert json.loads((full_run / "last" / "config.json").read_text())["human_decision_threshold"] == 0.5


def test_calibrating_a_trained_model_directory(synth_data, full_run, tmp_path):
    """``python -m training.calibration``: the thresholds of an already trained model, chosen on its recipe's
    validation sets, are written into its config.json and nothing else changes."""
    from training.calibration import THRESHOLD_GRID, main as calibrate

    model_dir = tmp_path / "model"
    shutil.copytree(full_run / "last", model_dir)
    before = json.loads((model_dir / "config.json").read_text())
    chosen = calibrate(["--model-dir", str(model_dir), "--recipe", "synth-tiny", "--data-dir", str(synth_data)])
    after = json.loads((model_dir / "config.json").read_text())
    assert set(chosen) == {"human"} and chosen["human"] in THRESHOLD_GRID
    assert after["human_decision_threshold"] == chosen["human"]
    assert {k: v for k, v in after.items() if k != "human_decision_threshold"} == \
        {k: v for k, v in before.items() if k != "human_decision_threshold"}
    model, _ = load_interactvlm(model_dir, device="cpu")
    assert model.config.human_decision_threshold == chosen["human"]


def test_kill_and_resume_gives_the_same_weights(synth_data, full_run, tmp_path):
    assert (full_run / "best" / "model.safetensors").is_file()
    assert (full_run / "tensorboard").is_dir() and (full_run / "history.jsonl").is_file()

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
    a = load_file(str(full_run / "last" / "model.safetensors"))
    b = load_file(str(run / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-5, worst

    # release path: ZeRO checkpoint → merged model directory equal to the run's final export
    prepared = subprocess.run([sys.executable, "-m", "training.prepare_weights", "--run-dir", str(run), "--name", "tiny",
                               "--output-root", str(tmp_path / "released"), "--dataset-dir", str(synth_data)],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
    assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-2000:]
    c = load_file(str(tmp_path / "released" / "tiny" / "model.safetensors"))
    assert max(float((c[k].float() - b[k].float()).abs().max()) for k in b) < 1e-6
    assert (tmp_path / "released" / "tiny" / "training_config.json").is_file()


def test_object_samples_train_through_their_own_templates(tmp_path, tiny_tokenizer, synthbody_template_128):
    """PIAD point clouds and PICO meshes: per-sample templates from the dataset's files, losses with gradient."""
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
    assert parts["oafford_3d"] > 0 and parts["ocontact_3d"] > 0 and torch.isfinite(loss)
    decoder_grad = sum(float(p.grad.abs().sum()) for p in model.sam.mask_decoder.parameters() if p.grad is not None)
    assert decoder_grad > 0  # the 3D losses reach the mask decoder
