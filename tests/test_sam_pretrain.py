"""The 2D model's SAM-encoder pretraining: dense targets in the SAM input's frame, and checkpoint loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from model.sam import sam_preprocess
from training.sam_pretrain import (IGNORE, PREFIX, DenseHead, build_encoder, dense_loss, load_pretrained_sam_encoder,
                                   normalise, padded_input, sample_dense_targets, DenseTargets)
from training.vision_pretrain import NUM_OBJECTS, NUM_PARTS, NUM_REGIONS, OBJECT_OFFSET


def test_dense_targets_follow_the_sam_input_frame():
    """A 200×100 photo at a 64-px input: resized to 64×32, padded on the right; one contact pixel survives."""
    labels = np.zeros((200, 100), np.uint8)
    labels[:100, :] = 9  # left hand (part 9) in the top half
    labels[100:, 50:] = OBJECT_OFFSET + 2  # object class 2 in the bottom-right quarter
    contact = np.zeros((200, 100), bool)
    contact[10, 10] = True  # a single contact pixel: area-resized it is 1/9 of an input pixel
    regions, grid_contact = sample_dense_targets(labels, {2: contact}, 64)
    assert regions.shape == (16, 16) and grid_contact.shape == (NUM_OBJECTS, 16, 16)
    assert (regions[:, 8:] == IGNORE).all()  # right half of the square is padding
    assert (regions[:8, :8] == 9).all()
    assert (regions[8:, 4:8] == 1 + NUM_PARTS + 2).all() and (regions[8:, :4] == 0).all()
    assert grid_contact.sum() == 1 and grid_contact[2, 0, 0]  # input pixel (3, 3) → cell (0, 0)


def test_normalise_matches_sam_preprocess():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 255, size=(40, 30, 3), dtype=np.uint8)
    expected, _ = sam_preprocess([image], 64)
    square, (h, w) = padded_input(image, 64, Image.BILINEAR)
    regions, _ = sample_dense_targets(np.zeros((40, 30), np.uint8), {}, 64)
    got = normalise(torch.from_numpy(square)[None], torch.from_numpy(regions)[None])
    assert (h, w) == (64, 48)
    torch.testing.assert_close(got, expected)


def test_dense_loss_ignores_padding_and_rewards_the_right_answer():
    regions = torch.full((1, 8, 8), IGNORE, dtype=torch.uint8)
    regions[:, :, :4] = 3
    contact = torch.zeros((1, NUM_OBJECTS, 8, 8), dtype=torch.bool)
    contact[0, 1, 2, 2] = True
    targets = DenseTargets(regions, contact)
    right_regions = torch.full((1, NUM_REGIONS, 8, 8), -10.0)
    right_regions[:, 3] = 10.0
    right_contact = torch.where(contact, 10.0, -10.0).float()
    good, _ = dense_loss((right_regions, right_contact), targets)
    wrong_padding = right_regions.clone()
    wrong_padding[:, :, :, 4:] = torch.randn(1, NUM_REGIONS, 8, 4)  # what the padding predicts does not count
    same, _ = dense_loss((wrong_padding, right_contact), targets)
    bad, _ = dense_loss((right_regions, -right_contact), targets)
    assert float(good) < 1e-3 and float(same) == pytest.approx(float(good)) and float(bad) > 1.0


def test_load_pretrained_sam_encoder_checks_the_encoder(tmp_path):
    encoder, size = build_encoder("synth-tiny-2d")
    assert size == 512
    head = DenseHead(encoder.config.output_channels)
    out = head(encoder(torch.zeros(1, 3, size, size))[0])
    assert out[0].shape == (1, NUM_REGIONS, size // 4, size // 4) and out[1].shape == (1, NUM_OBJECTS, size // 4, size // 4)
    state = {PREFIX + k: v.contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, str(tmp_path / "sam.safetensors"))

    class Holder(torch.nn.Module):
        def __init__(self, vision_encoder) -> None:
            super().__init__()
            self.sam = torch.nn.Module()
            self.sam.vision_encoder = vision_encoder

    target = Holder(build_encoder("synth-tiny-2d")[0])
    assert load_pretrained_sam_encoder(target, tmp_path / "sam.safetensors") == len(state)
    for k, v in encoder.state_dict().items():
        torch.testing.assert_close(target.sam.vision_encoder.state_dict()[k], v)
    other_size = Holder(build_encoder("synth-tiny")[0])  # 256-px SAM input: other position tables
    with pytest.raises(ValueError, match="does not fit"):
        load_pretrained_sam_encoder(other_size, tmp_path / "sam.safetensors")
    with pytest.raises(FileNotFoundError, match="sam_pretrain"):
        load_pretrained_sam_encoder(target, tmp_path / "missing.safetensors")
