"""training.mask_branch_probe: its two references (a probe fitted here, the lifted ground-truth masks) must measure
what they claim, independently of the mask branch they are compared with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.io import load_interactvlm
from training.mask_branch_probe import (fit_linear_probe, human_pairs, pick, seg_states, semantic_f1,
                                        trained_answer_template)
from training.recipes import get_recipe
from utils.paths import REPO_ROOT

BUNDLED = REPO_ROOT / "trained_models"


@pytest.mark.parametrize("name, recipe", [("interactvlm-tiny-synthcontact", "synth-tiny-joint"),
                                          ("interactvlm-tiny-synthcontact-opening", "synth-tiny-joint-opening"),
                                          ("interactvlm-tiny-synthcontact-opening-parts",
                                           "synth-tiny-joint-opening-parts-object")])
def test_answer_template_is_the_recipes(name, recipe):
    expected = next(s.options["answer_template"] for s in get_recipe(recipe).train if s.name == "synthcontact_hcontact")
    assert trained_answer_template(BUNDLED / name) == expected


def test_linear_probe_recovers_a_planted_linear_contact():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(16, 300))
    train, test = rng.normal(size=(600, 16)), rng.normal(size=(100, 16))
    labels = lambda x: (x @ weights > 1.0).astype(np.float32)  # noqa: E731
    probe = fit_linear_probe(train.astype(np.float32), labels(train), epochs=100)
    assert semantic_f1(probe(test.astype(np.float32)), labels(test)) > 0.85
    shuffled = probe(test[rng.permutation(len(test))].astype(np.float32))
    assert semantic_f1(shuffled, labels(test)) < 0.6  # it reads the state, not the label frequencies


def test_seg_states_of_real_pairs(tmp_path):
    from preprocess_data import synthcontact

    root = tmp_path / "data"
    synthcontact.main(["--output-dir", str(root / "synthcontact"), "--num-samples", "10", "--split-fractions", "0", "0",
                       "1", "--heldout-samples", "0", "--workers", "2", "--seed", "86420", "--no-progress"])
    torch.set_num_threads(2)
    model_dir = BUNDLED / "interactvlm-tiny-synthcontact-opening-parts"  # the default
    model, tokenizer = load_interactvlm(model_dir, device="cpu")
    model.eval()
    dataset = human_pairs(model, root, "test", trained_answer_template(model_dir))
    indices = pick(dataset, 6, seed=0, for_training=False)
    assert indices and all(dataset.records[i].class_name != "supporting" for i in indices)
    states = seg_states(model, tokenizer, dataset, indices, batch_size=4)
    assert states.hidden.shape == (len(indices), model.config.text_hidden_size)
    np.testing.assert_array_equal(states.labels, np.stack([dataset.vertex_labels(dataset.records[i]) for i in indices]))
    # the lifted ground truth is the ceiling through the renders: the label files agree with their own masks
    assert semantic_f1(states.lifted_truth, states.labels) > 0.7
    # the hook reads the state the model itself decodes: projecting it again gives the model's prediction
    with torch.no_grad():
        _, probs = model.predict_from_hidden(torch.from_numpy(states.hidden), [model.template("human")] * len(indices))
    again = np.stack([model.decision_centred(p, model.template("human")).numpy() for p in probs])
    np.testing.assert_allclose(again, states.branch_probs, atol=1e-5)
