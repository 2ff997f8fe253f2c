"""Validation-chosen decision thresholds (model.calibration, training.calibration): the remap keeps rankings and sends
the threshold to 0.5, the sweep picks the F1-maximising grid value, and a model carrying thresholds returns remapped
vertex probabilities from ``generate_contact`` (the path the demo and evaluate.py use)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transformers import LogitsProcessorList

from model.calibration import centre_on_threshold
from tests.test_demo import _Force
from tests.conftest import make_tiny_model
from training.calibration import apply_thresholds, best_threshold, reset_decision_thresholds
from utils.chat_prompt import chat_prompt
from utils.evaluation import EvalItem


def test_centre_on_threshold_is_monotone_and_sends_the_threshold_to_half() -> None:
    p = torch.linspace(0, 1, 101)
    for t in (0.1, 0.3, 0.5, 0.8):
        q = centre_on_threshold(p, t)
        assert torch.all(q[1:] >= q[:-1])
        assert float(q[0]) == 0.0 and abs(float(q[-1]) - 1.0) < 1e-6
        assert abs(float(centre_on_threshold(torch.tensor([t]), t)) - 0.5) < 1e-6
        assert torch.equal((q >= 0.5), (p >= t))
    assert torch.equal(centre_on_threshold(p, 0.5), p)
    with pytest.raises(ValueError, match="strictly between"):
        centre_on_threshold(p, 1.0)


def test_best_threshold_finds_where_faint_predictions_are_right() -> None:
    """Predictions at 0.3 on exactly the true vertices and 0.1 elsewhere: at 0.5 nothing is predicted (F1 0), at
    any threshold in (0.1, 0.3] the prediction is exact; ties go to the value nearest 0.5."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(6):
        gt = (rng.random(200) < 0.2).astype(np.float32)
        items.append(EvalItem(f"img{i}.jpg", "chair", "ocontact", np.where(gt > 0, 0.3, 0.1).astype(np.float32), gt))
    threshold, score = best_threshold(items, "ocontact")
    assert threshold == pytest.approx(0.3) and score == pytest.approx(1.0)


def test_model_thresholds_reach_generate_contact(tiny_tokenizer, synthbody_template_128) -> None:
    model = make_tiny_model(tiny_tokenizer, synthbody_template_128).eval()
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    prompt = chat_prompt(model.config, "Which body parts touch the chair?")
    query = {"image": 0, "prompt": prompt, "template": model.template("human")}
    force = [model.config.seg_token_index, tiny_tokenizer.eos_token_id]

    def probs() -> torch.Tensor:
        with torch.no_grad():
            out = model.generate_contact(tiny_tokenizer, [image], [query], max_new_tokens=4,
                                         logits_processor=LogitsProcessorList([_Force(force)]))
        assert out[0].found_seg
        return out[0].vertex_probs

    raw = probs()
    apply_thresholds(model.config, {"val/decision_threshold_human": 0.2})
    assert model.config.human_decision_threshold == 0.2
    assert torch.allclose(probs(), centre_on_threshold(raw, 0.2), atol=1e-6)
    reset_decision_thresholds(model.config)
    assert torch.allclose(probs(), raw)
