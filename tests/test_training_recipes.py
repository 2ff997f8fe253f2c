"""The training knobs of the bundled model's recipes: per-module learning rates, single model-field overrides, the
answer template, the vision-pretraining targets and checkpoint loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import train
from datasets.io import DatasetFormatError
from preprocess_data.datagen_common import RECIPE_HUMAN_VIEW_SETS
from training.recipes import RECIPES
from training.vision_pretrain import (NUM_PARTS, NUM_REGIONS, OBJECT_OFFSET, PREFIX, label_crop,
                                      load_pretrained_vision, sample_targets)
from training.recipes import get_recipe


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
    # a template that says the pose needs one: DAMON's layout has none, and the error names the image
    posed = build_dataset("synthcontact_hcontact", root, "train", num_vertices=6997, training=False,
                          load_masks=False, answer_template="The person is {pose}; the contact is at the {body_parts}{seg}.")
    with pytest.raises(DatasetFormatError, match="pose"):
        posed[0]


def test_patch_targets_regions_and_contact():
    labels = np.zeros((28, 28), dtype=np.uint8)
    labels[:14, :14] = 9  # left hand, top-left patch
    labels[14:, 14:] = OBJECT_OFFSET + 2  # object class 2 (box), bottom-right patch
    contact = np.zeros((28, 28), dtype=bool)
    contact[3:5, 3:5] = True  # part of the hand touches the box
    regions, parts, objects = sample_targets(labels, {2: contact}, 28, 14)
    assert regions.shape == (4, NUM_REGIONS) and parts.shape == (4, NUM_PARTS)
    np.testing.assert_allclose(regions.sum(1), 1.0)
    assert regions[0, 9] == 1.0 and regions[3, 1 + NUM_PARTS + 2] == 1.0 and regions[1, 0] == 1.0
    assert parts[0, 8] == 1.0 and parts.sum() == 1.0  # left hand (part 9 → column 8), only in the top-left patch
    assert objects[0, 2] == 1.0 and objects.sum() == 1.0
    # a contact pixel the object hides names no body part, but still the object class
    hidden = np.zeros((28, 28), dtype=bool)
    hidden[20, 20] = True
    _, parts, objects = sample_targets(labels, {2: hidden}, 28, 14)
    assert parts.sum() == 0 and objects[3, 2] == 1.0
    # CLIP's crop: the shortest side to the size, centred
    wide = np.zeros((50, 100), dtype=np.uint8)
    wide[:, 50:] = 3
    cropped = label_crop(wide, 28)
    assert cropped.shape == (28, 28) and set(np.unique(cropped)) == {0, 3}


def test_datagen_template_view_sets_are_the_recipes_view_sets():
    used = {"4MV-Z_Vitru_mv2"} | {r.model_overrides["human_view_set"] for r in RECIPES.values()
                                  if "human_view_set" in r.model_overrides}
    assert set(RECIPE_HUMAN_VIEW_SETS) == used


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
    wider = build_config("tiny", vision_image_size=224)  # another CLIP input size: other position tables
    attach_tokenizer(wider, build_tiny_tokenizer())
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained_vision(InteractVLMForCausalLM(wider), tmp_path / "tower.safetensors")


def test_run_train_sh_knows_every_recipe():
    """A recipe added to training/recipes.py but not to scripts/run_train.sh cannot be run the way the README says."""
    import re
    from utils.paths import REPO_ROOT

    script = (REPO_ROOT / "scripts" / "run_train.sh").read_text()
    known = set(re.search(r'^known="([^"]*)"', script, re.M).group(1).split())
    assert set(RECIPES) <= known, sorted(set(RECIPES) - known)
    dispatched = set(re.findall(r"[\w-]+", " ".join(re.findall(r"^  ([\w|-]+)\)", script, re.M))))
    assert set(RECIPES) <= dispatched, sorted(set(RECIPES) - dispatched)


def test_run_eval_sh_defaults_to_the_bundled_models():
    """run_eval.sh is shell and cannot import utils.paths: its default models must still be the ones the demo uses."""
    import re
    from utils.paths import DEFAULT_2D_MODEL, DEFAULT_MODEL, REPO_ROOT

    script = (REPO_ROOT / "scripts" / "run_eval.sh").read_text()
    defaults = re.findall(r'model="\$\{MODEL:-([^}]+)\}"', script)
    assert defaults == [str(DEFAULT_MODEL.relative_to(REPO_ROOT)), str(DEFAULT_2D_MODEL.relative_to(REPO_ROOT))]
