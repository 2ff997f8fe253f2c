"""Recipe → datasets: the training mixture (+ collator) and the validation sets, with every reader option that
depends on the model config (view sets, mask size, valid region, question type, tokens) set in one place."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.collate import Collator
from datasets.mixing import MixedDataset
from datasets.registry import build_dataset
from utils.distributed import world_size
from training.recipes import DataSource, Recipe

HUMAN_READERS = ("damon_hcontact", "synthcontact_hcontact", "lemon_hcontact", "rich_hcontact")
HUMAN_2D_READERS = ("damon_h2dcontact", "synthcontact_h2dcontact")  # masks on the photo: no template, no valid region
OBJECT_READERS = ("piad_oafford", "piad_unseen_oafford", "lemon_oafford", "pico_ocontact", "synthcontact_ocontact",
                  "synthcontact_ocontact_canonical", "synthcontact_oafford_canonical")
RENDERING_READERS = ("synthcontact_ocontact",)  # render their meshes on first use: at the mask and the SAM input size


def _options(source: DataSource, recipe: Recipe, config, human_valid: np.ndarray | None, training: bool) -> dict:
    options = {"seed": recipe.seed, "training": training, "token_type": config.token_type, "mask_size": config.mask_size,
               "question_type": config.question_type if source.name in HUMAN_READERS + HUMAN_2D_READERS else None,
               "body_part_dropout": recipe.body_part_dropout if training else 0.0}
    if source.name in HUMAN_READERS:
        options.update(view_set=config.human_view_set, valid_mask=human_valid)
    elif source.name in OBJECT_READERS:
        options.update(view_set=config.object_view_set)
        if source.name in RENDERING_READERS:
            options.update(render_sizes=(config.sam_image_size,))
    if config.opening_turn:  # the model is trained (and later asked) with the opening turn
        options.update(opening_turn=True, opening_parts=config.opening_parts)
    options.update(source.options)
    return options


def build_training_data(recipe: Recipe, dataset_dir: str | Path, tokenizer, config,
                        human_valid: np.ndarray | None = None) -> tuple[MixedDataset, Collator]:
    sources = [build_dataset(s.name, dataset_dir, s.split, **_options(s, recipe, config, human_valid, True))
               for s in recipe.train]
    mixture = MixedDataset([[s] for s in sources], [s.rate for s in recipe.train], batch_size=recipe.batch_size,
                           grad_accumulation_steps=recipe.grad_accumulation_steps, steps_per_epoch=recipe.steps_per_epoch,
                           world_size=world_size(), seed=recipe.seed, weight_sources_by_size=recipe.weight_sources_by_size)
    return mixture, Collator(tokenizer, config, training=True)


def build_validation_data(recipe: Recipe, dataset_dir: str | Path, config, human_valid: np.ndarray | None = None) -> list:
    return [build_dataset(s.name, dataset_dir, s.split, **_options(s, recipe, config, human_valid, False)) for s in recipe.val]
