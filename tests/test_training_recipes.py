"""The training knobs of the bundled model's recipes: per-module learning rates, single model-field overrides, the
answer template, the vision-pretraining targets and checkpoint loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import train
from model.vision_pretrain import CONTACT_OFFSET, NUM_CLASSES, PREFIX, label_crop, load_pretrained_vision, patch_targets
from utils.recipes import get_recipe


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.text_hidden_fcs = torch.nn.Linear(2, 2)
        self.sam = torch.nn.Linear(2, 2)
        self.vlm = torch.nn.Linear(2, 2)


def test_param_groups_scale_learning_rates_by_prefix():
    recipe = get_recipe("synth-tiny").with_overrides(lr=1e-3, lr_scale={"text_hidden_fcs": 5.0, "vlm": 0.3})
    groups = train.param_groups(_Tiny(), recipe)
    lrs = sorted(g["lr"] for g in groups)
    assert lrs == pytest.approx([3e-4, 1e-3, 5e-3])
    assert sum(len(g["params"]) for g in groups) == 6
    with pytest.raises(ValueError, match="match no parameter"):
        train.param_groups(_Tiny(), recipe.with_overrides(lr_scale={"no_such_module": 2.0}))


def test_deepspeed_config_takes_one_peak_per_group():
    recipe = get_recipe("synth-tiny")
    config = train.deepspeed_config(recipe, 100, "cpu", [1e-3, 3e-3])
    assert config["scheduler"]["params"]["warmup_max_lr"] == [1e-3, 3e-3]


def test_set_overrides_one_model_field():
    recipe = train.apply_overrides(get_recipe("synth-tiny-joint"), ["model_overrides.hC_loss_weight=7.5", "epochs=1"])
    assert recipe.model_overrides["hC_loss_weight"] == 7.5 and recipe.epochs == 1
    assert recipe.model_overrides["token_type"] == "Gen-Hu-Obj"  # the other fields stay


def test_answer_template_puts_the_seg_token_after_the_parts(tmp_path):
    import tests.fixtures_datasets as fx
    from datasets.registry import build_dataset

    body = fx.build_body_template(tmp_path / "body")
    root = tmp_path / "data"
    fx.write_damon(root, body, root_name="synthcontact")
    plain = build_dataset("synthcontact_hcontact", root, "train", num_vertices=6997, training=False, load_masks=False)
    templated = build_dataset("synthcontact_hcontact", root, "train", num_vertices=6997, training=False,
                              load_masks=False, token_type="Gen-Hu-Obj",
                              answer_template="The contact is at the {body_parts}{seg}.")
    sample, other = plain[0], templated[0]
    assert sample["question"] == other["question"]
    assert other["answer"] == f"The contact is at the {', '.join(sample['body_parts'])}[HSEG]."


def test_patch_targets_are_class_fractions():
    labels = np.zeros((28, 28), dtype=np.uint8)
    labels[:14, :14] = 9  # left hand, top-left patch
    labels[:7, :14] = CONTACT_OFFSET + 9  # its upper half in contact
    labels[14:, 14:] = 32  # an object, bottom-right patch
    targets = patch_targets(labels, 14)
    assert targets.shape == (4, NUM_CLASSES)
    np.testing.assert_allclose(targets.sum(1), 1.0)
    assert targets[0, 9] == 0.5 and targets[0, CONTACT_OFFSET + 9] == 0.5
    assert targets[3, 32] == 1.0 and targets[1, 0] == 1.0
    # CLIP's crop: the shortest side to the size, centred
    wide = np.zeros((50, 100), dtype=np.uint8)
    wide[:, 50:] = 3
    cropped = label_crop(wide, 28)
    assert cropped.shape == (28, 28) and set(np.unique(cropped)) == {0, 3}


def test_load_pretrained_vision_checks_the_tower(tmp_path):
    from safetensors.torch import save_file

    from model.config import build_config
    from model.interactvlm import InteractVLMForCausalLM
    from model.io import attach_tokenizer
    from model.tokenizer import build_tiny_tokenizer

    config = build_config("tiny")
    attach_tokenizer(config, build_tiny_tokenizer())
    source, target = InteractVLMForCausalLM(config), InteractVLMForCausalLM(config)
    state = {PREFIX + k: v.contiguous() for k, v in source.vlm.model.vision_tower.state_dict().items()}
    save_file(state, str(tmp_path / "tower.safetensors"))
    assert load_pretrained_vision(target, tmp_path / "tower.safetensors") == len(state)
    for k, v in source.vlm.model.vision_tower.state_dict().items():
        torch.testing.assert_close(target.vlm.model.vision_tower.state_dict()[k], v)
    save_file(dict(list(state.items())[:3]), str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained_vision(target, tmp_path / "partial.safetensors")
    with pytest.raises(FileNotFoundError):
        load_pretrained_vision(target, tmp_path / "missing.safetensors")
