"""Losses (``model.losses``): hand-computed values, ignore pixels, the dice empty-view rule, the fixed affordance loss,
the combiner's weights / divisors / task routing, and shape errors."""

import math

import pytest
import torch

from model.losses import (
    LossWeights,
    affordance_3d,
    combine_losses,
    dice_2d,
    focal_bce_2d,
    focal_bce_3d,
    mse_2d,
)


def _focal_formula(p, t, alpha, gamma):
    bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
    p_t = p if t == 1 else 1 - p
    return alpha * (1 - p_t) ** gamma * bce


# ------------------------------------------------------------------------------------------------------------------ 2D


@pytest.mark.parametrize("t", [0.0, 1.0])
def test_focal_bce_2d_single_pixel_matches_formula(t):
    z = 0.7
    p = 1 / (1 + math.exp(-z))
    got = focal_bce_2d(torch.full((1, 1, 1, 1), z), torch.full((1, 1, 1, 1), t), alpha=0.5, gamma=2.0)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(_focal_formula(p, t, 0.5, 2.0), rel=1e-5)
    # probabilities path gives the same value
    got_p = focal_bce_2d(torch.full((1, 1, 1, 1), p), torch.full((1, 1, 1, 1), t), from_logits=False)
    assert got_p.item() == pytest.approx(_focal_formula(p, t, 0.5, 2.0), rel=1e-4)


def test_focal_bce_2d_ignores_minus_one_pixels_and_empty_views_count():
    z = torch.tensor([[[[0.3, -5.0], [2.0, 9.0]]]])  # [1, 1, 2, 2]
    t = torch.tensor([[[[1.0, -1.0], [-1.0, -1.0]]]])
    only = focal_bce_2d(z, t)
    ref = focal_bce_2d(z[..., :1, :1], t[..., :1, :1])
    assert only.item() == pytest.approx(ref.item(), rel=1e-6)
    # changing an ignored pixel's prediction changes nothing
    z2 = z.clone()
    z2[0, 0, 1, 1] = -30.0
    assert focal_bce_2d(z2, t).item() == pytest.approx(only.item(), rel=1e-6)
    # a second view with only ignored pixels contributes 0 but counts: the mean halves
    z_two = torch.cat([z, z], dim=1)
    t_two = torch.cat([t, torch.full_like(t, -1.0)], dim=1)
    assert focal_bce_2d(z_two, t_two).item() == pytest.approx(only.item() / 2, rel=1e-6)


def test_focal_bce_2d_no_nan_gradient_with_ignore_pixels():
    z = torch.randn(2, 4, 5, 5, requires_grad=True)
    t = torch.randint(-1, 2, (2, 4, 5, 5)).float()
    focal_bce_2d(z, t).sum().backward()
    assert torch.isfinite(z.grad).all()
    assert (z.grad[t == -1] == 0).all()


def test_dice_2d_hand_value_and_perfect_prediction():
    p = torch.tensor([[[[0.5, 0.5], [0.0, 0.0]]]])
    t = torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]]])
    eps = 1e-5
    expected = 1 - (2 * 0.5 + eps) / (1.0 + 1.0 + eps)
    assert dice_2d(p, t, from_logits=False).item() == pytest.approx(expected, rel=1e-6)
    # perfect prediction (large logits matching the target) ≈ 0
    target = (torch.rand(3, 4, 8, 8) > 0.5).float()
    logits = (target * 2 - 1) * 50.0
    assert dice_2d(logits, target).abs().max().item() < 1e-4


def test_dice_2d_empty_view_rule_count_vs_skip():
    target = torch.zeros(1, 4, 4, 4)
    target[0, 0, :2, :2] = 1.0  # only view 0 has positives
    pred = torch.full((1, 4, 4, 4), 0.5)
    one_view = dice_2d(pred[:, :1], target[:, :1], from_logits=False).item()
    assert one_view > 0
    counted = dice_2d(pred, target, from_logits=False).item()
    skipped = dice_2d(pred, target, from_logits=False, empty_views="skip").item()
    assert counted == pytest.approx(one_view / 4, rel=1e-6)  # empty views are 0 but count
    assert skipped == pytest.approx(one_view, rel=1e-6)
    # all views empty: 0 in both modes
    assert dice_2d(pred, torch.zeros_like(target), from_logits=False).item() == 0.0
    assert dice_2d(pred, torch.zeros_like(target), from_logits=False, empty_views="skip").item() == 0.0
    with pytest.raises(ValueError, match="empty_views"):
        dice_2d(pred, target, empty_views="drop")


def test_mse_2d_per_view_mean_over_valid_pixels():
    pred = torch.tensor([[[[0.2, 0.9]], [[0.0, 0.0]]]])  # [1, 2, 1, 2]
    tgt = torch.tensor([[[[0.0, -1.0]], [[1.0, 0.5]]]])
    expected = (0.2**2 + (1.0 + 0.25) / 2) / 2
    assert mse_2d(pred, tgt).item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------------------------------------ 3D


def test_focal_bce_3d_formula_and_sparsity_term():
    p = torch.tensor([[0.8, 0.1, 0.0]])
    t = torch.tensor([[1.0, 0.0, 0.0]])
    eps = 1e-6
    terms = [_focal_formula(0.8, 1, 0.25, 2), _focal_formula(0.1, 0, 0.25, 2), _focal_formula(eps, 0, 0.25, 2)]
    mean_p = (0.8 + 0.1 + eps) / 3
    got = focal_bce_3d(p, t, sparsity=0.01).item()
    assert got == pytest.approx(sum(terms) / 3 + 0.01 * mean_p, rel=1e-5)
    no_sparsity = focal_bce_3d(p, t, sparsity=0.0).item()
    assert got - no_sparsity == pytest.approx(0.01 * mean_p, rel=1e-4)


def test_affordance_3d_has_gradient_and_is_minimal_at_target():
    torch.manual_seed(0)
    target = (torch.rand(4, 2048) > 0.8).float()
    pred = torch.rand(4, 2048, requires_grad=True)
    loss = affordance_3d(pred, target)
    assert loss.shape == (4,)
    loss.sum().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert torch.isfinite(pred.grad).all()
    at_target = affordance_3d(target.clone(), target)
    assert (at_target < loss.detach()).all()
    # the dice term is the only one left at pred == target: 1.5 − 0.5 − 0.5 = 0.5, weighted 0.3
    assert at_target.max().item() == pytest.approx(0.3 * 0.5, abs=1e-4)
    # soft targets: a prediction near the target beats random ones
    soft = torch.rand(2, 512)
    assert (affordance_3d(soft, soft) < affordance_3d(torch.rand(2, 512), soft)).all()


# ------------------------------------------------------------------------------------------------------------- combine


def test_loss_weights_from_config():
    class Cfg:
        ce_loss_weight = 0.5
        dice_loss_scale = 1000
        hC_loss_weight = 0.0

    w = LossWeights.from_config(Cfg())
    assert (w.ce, w.dice_scale, w.hcontact_3d) == (0.5, 1000.0, 0.0)
    assert (w.bce, w.dice, w.bce_alpha, w.ocontact_3d) == (2.0, 1.0, 0.5, 3.0)
    assert LossWeights.from_config({"oC_loss_weight": 1}).ocontact_3d == 1.0


def test_combine_applies_weights_and_vqa_counts_in_divisor():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6)
    gts = (torch.rand(2, 4, 6, 6) > 0.5).float()
    ce = torch.tensor(1.3)
    w = LossWeights(ce=0.7, bce=2.0, dice=0.5, hcontact_3d=3.0)
    pred3d = [torch.rand(10), torch.rand(10), None]
    gt3d = [(torch.rand(10) > 0.5).float(), (torch.rand(10) > 0.5).float(), None]
    tags = ["hcontact", "hcontact", "vqa"]
    total, parts = combine_losses(ce, tags, [logits[0], logits[1], None], [gts[0], gts[1], None], pred3d, gt3d, w)

    bce = focal_bce_2d(logits, gts, alpha=0.5).sum() / 3  # vqa sample counts in the divisor
    dice = dice_2d(logits, gts).sum() / 3
    hc = focal_bce_3d(torch.stack(pred3d[:2]), torch.stack(gt3d[:2])).mean()
    assert parts["mask_bce"].item() == pytest.approx(bce.item(), rel=1e-6)
    assert parts["mask_dice"].item() == pytest.approx(dice.item(), rel=1e-6)
    assert parts["hcontact_3d"].item() == pytest.approx(hc.item(), rel=1e-6)
    assert parts["mask_mse"].item() == 0.0 and parts["oafford_3d"].item() == 0.0
    expected = 0.7 * 1.3 + 2.0 * bce + 0.5 * dice + 3.0 * hc
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert all(not v.requires_grad for v in parts.values())

    # a stacked tensor gives the same result (vqa rows ignored)
    stacked = torch.cat([logits, torch.randn(1, 4, 6, 6)])
    stacked_gt = torch.cat([gts, torch.full((1, 4, 6, 6), -1.0)])
    total2, _ = combine_losses(ce, tags, stacked, stacked_gt, pred3d, gt3d, w)
    assert total2.item() == pytest.approx(total.item(), rel=1e-6)


def test_combine_oafford_takes_mse_prob_inputs_and_affordance_3d():
    torch.manual_seed(1)
    probs = torch.rand(2, 4, 5, 5, requires_grad=True)
    heat = torch.rand(2, 4, 5, 5)
    pts = torch.rand(2, 64, requires_grad=True)
    pts_gt = torch.rand(2, 64)
    tags = ["oafford", "oafford", "vqa", "vqa"]
    pm = [probs[0], probs[1], None, None]
    gm = [heat[0], heat[1], None, None]
    total, parts = combine_losses(0.0, tags, pm, gm, [pts[0], pts[1], None, None], [pts_gt[0], pts_gt[1], None, None])
    mse = mse_2d(probs, heat).sum() / 2  # divided by the number of oafford samples, not B
    assert parts["mask_mse"].item() == pytest.approx(mse.item(), rel=1e-6)
    bce = focal_bce_2d(probs, heat, from_logits=False).sum() / 4  # probabilities, not logits
    assert parts["mask_bce"].item() == pytest.approx(bce.item(), rel=1e-6)
    assert parts["oafford_3d"].item() == pytest.approx(affordance_3d(pts, pts_gt).mean().item(), rel=1e-6)
    w = LossWeights()
    expected = (
        w.bce * parts["mask_bce"] + w.dice * parts["mask_dice"] + w.bce * parts["mask_mse"]
        + w.ocontact_3d * parts["oafford_3d"]
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    assert pts.grad.abs().sum() > 0 and probs.grad.abs().sum() > 0


def test_combine_ocontact_variable_vertex_counts():
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 3, 3)
    gts = (torch.rand(2, 4, 3, 3) > 0.5).float()
    p3 = [torch.rand(7), torch.rand(11)]  # meshes with different vertex counts
    g3 = [(torch.rand(7) > 0.5).float(), (torch.rand(11) > 0.5).float()]
    total, parts = combine_losses(torch.tensor(0.0), ["ocontact", "ocontact"], logits, gts, p3, g3,
                                  LossWeights(ocontact_3d=2.0))
    oc = (focal_bce_3d(p3[0][None], g3[0][None]) + focal_bce_3d(p3[1][None], g3[1][None])).item() / 2
    assert parts["ocontact_3d"].item() == pytest.approx(oc, rel=1e-6)
    assert parts["hcontact_3d"].item() == 0.0
    assert total.item() == pytest.approx(
        (2.0 * parts["mask_bce"] + parts["mask_dice"] + 2.0 * oc).item(), rel=1e-6
    )


# ---------------------------------------------------------------------------------------------------------- errors


def test_shape_mismatch_messages():
    msg = r"focal_bce_2d: `target` must have the same shape.*\[2, 4, 8, 8\].*\[2, 4, 8, 9\]"
    with pytest.raises(ValueError, match=msg):
        focal_bce_2d(torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 9))
    with pytest.raises(ValueError, match=r"dice_2d: `pred` must have shape \[B, V, H, W\].*\[4, 8, 8\]"):
        dice_2d(torch.zeros(4, 8, 8), torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match=r"affordance_3d: `target`.*\[1, 2048\].*\[1, 2049\]"):
        affordance_3d(torch.zeros(1, 2048), torch.zeros(1, 2049))
    with pytest.raises(ValueError, match=r"focal_bce_3d: `pred` must have shape \[B, N\]"):
        focal_bce_3d(torch.zeros(6890), torch.zeros(6890))
    with pytest.raises(ValueError, match=r"2D mask target of sample 1 .*\[4, 8, 8\].*\[4, 8, 7\]"):
        combine_losses(0.0, ["hcontact"] * 2, [torch.zeros(4, 8, 8)] * 2, [torch.zeros(4, 8, 8), torch.zeros(4, 8, 7)])
    with pytest.raises(ValueError, match=r"sample 0 needs a 3D target"):
        combine_losses(0.0, ["hcontact"], [torch.zeros(4, 8, 8)], [torch.zeros(4, 8, 8)], [torch.zeros(5)], [None])
    with pytest.raises(ValueError, match=r"unknown task tag 'hoi'"):
        combine_losses(0.0, ["hoi"])
    with pytest.raises(ValueError, match=r"`gt_masks` must have one entry per sample \(B = 2\); got 1"):
        combine_losses(0.0, ["hcontact"] * 2, [torch.zeros(4, 8, 8)] * 2, [torch.zeros(4, 8, 8)])
