"""Lifting operator: equality with the original's loop, gradients, the object / point-cloud / legacy rules, errors."""

import numpy as np
import pytest
import torch
import trimesh

from bench.lift import reference_lift
from model.lifting import Lifter
from utils.geometry.lifting_maps import LiftingMaps
from utils.geometry.projection import contact_masks, training_targets, visible_vertices
from utils.geometry.raycast import rasterize
from utils.geometry.views import get_view_set


@pytest.fixture(scope="module")
def sphere_maps():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.6)
    view_set = get_view_set("4MV-Z_HM")
    frags = [rasterize(sphere.vertices, sphere.faces, v.camera(), 48) for v in view_set.views]
    return LiftingMaps.from_fragments(frags, sphere.faces, len(sphere.vertices), view_set.view_names), sphere


def _loop_object_rule(probs, maps, threshold):
    """The original's object-mesh lifting rule (ObjectMeshContact3DPredictor) written out per view and pixel in numpy,
    as the reference for the hard mode."""
    v_count, n = maps.num_views, maps.num_vertices
    total, seen_views = np.zeros(n), np.zeros(n)
    for v in range(v_count):
        num, den = np.zeros(n), np.zeros(n)
        ids, w, p = maps.vertex_ids[v].reshape(-1, 3), maps.weights[v].reshape(-1, 3), probs[v].reshape(-1)
        sel = (ids >= 0).all(1) & (p > threshold)
        for k in range(3):
            np.add.at(num, ids[sel, k], w[sel, k] * p[sel])
            np.add.at(den, ids[sel, k], w[sel, k])
        seen = den > 0
        total[seen] += num[seen] / den[seen]
        seen_views += seen
    return np.where(seen_views > 0, total / np.maximum(seen_views, 1), 0.0)


def test_soft_matches_reference_and_gradients(sphere_maps):
    maps, _ = sphere_maps
    logits = torch.randn(3, 4, 48, 48, dtype=torch.float32) * 5
    ids, bary = torch.from_numpy(maps.vertex_ids.astype(np.int64)), torch.from_numpy(maps.weights)
    lifter = Lifter(maps)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    ours, ref = lifter(a), reference_lift(b, ids, bary, maps.num_vertices)
    assert (ours - ref).abs().max() < 1e-5
    weights = torch.randn(3, maps.num_vertices)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    assert (a.grad - b.grad).abs().max() < 1e-6
    assert a.grad[:, :, 0, 0].abs().max() == 0  # background pixels get no gradient


def test_constant_logits_give_constant_probability_on_visible_vertices(sphere_maps):
    maps, _ = sphere_maps
    out = Lifter(maps)(torch.full((1, 4, 48, 48), 1.5))[0]
    visible = torch.from_numpy(visible_vertices(maps))
    torch.testing.assert_close(out[visible], torch.full_like(out[visible], torch.sigmoid(torch.tensor(1.5)).item()))
    assert (out[~visible] == 0).all()


def test_hard_object_rule_matches_loop_and_smooth_converges(sphere_maps):
    maps, _ = sphere_maps
    logits = torch.randn(2, 4, 48, 48) * 3
    hard = Lifter(maps, "hard")(logits)
    for b in range(2):
        expected = _loop_object_rule(torch.sigmoid(logits[b]).numpy(), maps, 0.3)
        np.testing.assert_allclose(hard[b].numpy(), expected, atol=1e-5)
    smooth = Lifter(maps, "smooth", temperature=1e-4)(logits)
    assert (smooth - hard).abs().mean() < 1e-2
    x = logits.clone().requires_grad_(True)
    Lifter(maps, "smooth")(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_point_cloud_rule_is_mean_of_pixel_values():
    # 2 views of 2x2 pixels over 3 points; probabilities are lifted directly (no sigmoid)
    ids = np.array([[[0, 0], [1, -1]], [[1, 2], [-1, -1]]])
    maps = LiftingMaps.from_point_maps(ids, 3, ("a", "b"))
    probs = torch.tensor([[[[0.2, 0.4], [0.8, 0.9]], [[0.5, 0.6], [0.7, 0.1]]]])
    out = Lifter(maps, "soft", input_is_logits=False)(probs)[0]
    # point 0: view a mean(0.2, 0.4) = 0.3; point 1: mean(view a 0.8, view b 0.5) = 0.65; point 2: view b 0.6
    torch.testing.assert_close(out, torch.tensor([0.3, 0.65, 0.6]))


def test_legacy_rule_hand_case():
    # one view, two pixels on triangle (0,1,2): weights (0.8,0.1,0.1) and (0.1,0.1,0.8)
    ids = np.array([[[[0, 1, 2], [0, 1, 2]]]], dtype=np.int32)
    w = np.array([[[[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]]], dtype=np.float32)
    maps = LiftingMaps(ids, w, 3, ("v",))
    out = Lifter(maps, "legacy")(torch.tensor([[[[1.0, 1.0]]]]))[0]
    # weight/count: v0 0.45, v1 0.1, v2 0.45 -> > 0.3
    torch.testing.assert_close(out, torch.tensor([1.0, 0.0, 1.0]))
    assert Lifter(maps, "legacy")(torch.tensor([[[[0.2, 0.2]]]])).sum() == 0  # logits below 0.3 select nothing


def test_mismatched_map_sizes_are_reported(sphere_maps):
    maps, _ = sphere_maps
    with pytest.raises(ValueError, match="mismatched map sizes"):
        Lifter(maps)(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 4, 48, 48\]"):
        Lifter(maps)(torch.zeros(1, 3, 48, 48))
    with pytest.raises(ValueError, match="must both"):
        LiftingMaps(maps.vertex_ids, maps.weights[..., :2], maps.num_vertices, maps.view_names)
    with pytest.raises(ValueError, match="another body model"):
        LiftingMaps(maps.vertex_ids, maps.weights, 10, maps.view_names)
    with pytest.raises(ValueError, match="unknown lifting mode"):
        Lifter(maps, "median")


def test_masks_min_vertices_rule():
    ids = np.array([[[[0, 1, 2], [2, 3, 4]], [[-1, -1, -1], [0, 3, 4]]]], dtype=np.int32)
    maps = LiftingMaps(ids, np.where(ids >= 0, 1 / 3, 0).astype(np.float32), 5, ("v",))
    labels = np.array([1, 1, 0, 1, 0])
    np.testing.assert_array_equal(contact_masks(labels, maps, 3)[0], [[0, 0], [0, 0]])
    np.testing.assert_array_equal(contact_masks(labels, maps, 2)[0], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(contact_masks(labels, maps, 1)[0], [[1, 1], [0, 1]])
    np.testing.assert_array_equal(training_targets(labels, maps, 2)[0], [[1, 0], [-1, 1]])
    batched = contact_masks(np.stack([labels, 1 - labels]), maps, 1)
    assert batched.shape == (2, 1, 2, 2)
    with pytest.raises(ValueError, match="vertices"):
        contact_masks(np.ones(6), maps)


def test_saved_maps_round_trip(tmp_path, sphere_maps):
    maps, _ = sphere_maps
    maps.save(tmp_path / "lift_maps_48.npz")
    loaded = LiftingMaps.load(tmp_path / "lift_maps_48.npz")
    np.testing.assert_array_equal(loaded.vertex_ids, maps.vertex_ids)
    np.testing.assert_array_equal(loaded.weights, maps.weights)
    with pytest.raises(FileNotFoundError, match="render_views"):
        LiftingMaps.load(tmp_path / "missing.npz")


def test_official_map_files_are_read_and_checked(tmp_path, sphere_maps):
    maps, _ = sphere_maps
    names = maps.view_names
    np.savez(tmp_path / "pixel_to_vertex_map_48.npz", **{v: maps.vertex_ids[i].astype(np.int64) for i, v in enumerate(names)})
    np.savez(tmp_path / "bary_coords_map_48.npz", **{v: maps.weights[i] for i, v in enumerate(names)})
    loaded = LiftingMaps.load_official(tmp_path, names, maps.num_vertices, size=48)
    np.testing.assert_array_equal(loaded.vertex_ids, maps.vertex_ids)
    np.savez(tmp_path / "bary_coords_map_48.npz", **{v: maps.weights[i, :40] for i, v in enumerate(names)})
    with pytest.raises(ValueError, match=r"\(40, 48, 3\) \(barycentrics\); expected square \(N, N, 3\)"):
        LiftingMaps.load_official(tmp_path, names, maps.num_vertices, size=48)
