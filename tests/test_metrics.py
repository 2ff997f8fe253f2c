"""Hand-computed checks of utils/metrics.py (DECO, InteractVLM, LEMON/PICO, PIAD, LISA 2D, curves)."""

import itertools

import numpy as np
import pytest
import torch

from utils.metrics import (
    DECO_CATEGORY_MAP,
    affordance_metrics,
    binary_union_metrics,
    deco_binary_metrics,
    deco_prf,
    eps_prf,
    geodesic_errors,
    giou_ciou,
    interactvlm_binary_metrics,
    interactvlm_semantic_metrics,
    lemon_contact_metrics,
    object_contact_f1,
    object_contact_metrics,
    piad_metrics,
    precision_recall_curve,
    prediction_diversity,
    roc_auc,
    semantic_contact_metrics,
)


def onehot(n, idx):
    v = np.zeros(n)
    v[list(idx)] = 1.0
    return v


# ------------------------------------------------------------------------------------------------------------ DECO
def test_deco_five_vertex_example():
    pred = np.array([0.9, 0.6, 0.4, 0.7, 0.1])  # positives {0, 1, 3}
    gt = np.array([1, 0, 1, 1, 1])  # {0, 2, 3, 4}; TP = {0, 3}
    m = deco_prf(pred, gt)
    assert m["precision"][0] == pytest.approx(2 / 3)
    assert m["recall"][0] == pytest.approx(1 / 2)
    assert m["f1"][0] == pytest.approx(4 / 7)


def test_deco_threshold_is_inclusive():
    m = deco_prf(np.array([0.5, 0.49]), np.array([1, 0]))
    assert (m["precision"][0], m["recall"][0], m["f1"][0]) == (1.0, 1.0, 1.0)


def test_deco_edge_cases():
    pred = np.array([
        [0.1, 0.2, 0.0, 0.3],  # no prediction, GT present -> (1, 0, 0)
        [0.9, 0.0, 0.0, 0.0],  # prediction, no GT -> (0, 1, 0)
        [0.0, 0.0, 0.0, 0.0],  # neither -> "no prediction" wins -> (1, 0, 0)
        [0.9, 0.0, 0.0, 0.0],  # disjoint -> P + R = 0 -> (0, 0, 0)
    ])
    gt = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]])
    m = deco_prf(pred, gt)
    np.testing.assert_array_equal(m["precision"], [1, 0, 1, 0])
    np.testing.assert_array_equal(m["recall"], [0, 1, 0, 0])
    np.testing.assert_array_equal(m["f1"], [0, 0, 0, 0])


def test_deco_binary_means_over_images_and_torch_input():
    pred = torch.tensor([[0.9, 0.6, 0.4, 0.7, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.bfloat16)
    gt = torch.tensor([[1, 0, 1, 1, 1], [1, 0, 0, 0, 0]])
    m = deco_binary_metrics(pred, gt)
    assert m["precision"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["recall"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["f1"] == pytest.approx((4 / 7 + 0) / 2)
    assert m["count"] == 2


# -------------------------------------------------------------------------------------------------------- geodesic
@pytest.fixture
def path_dist():
    """5 vertices on a path 0-1-2-3-4 with unit edges: D[i, j] = |i - j|."""
    idx = np.arange(5)
    return np.abs(idx[:, None] - idx[None, :]).astype(np.float32)


GEO_CASES = [
    # pred set, gt set, FP, FN
    ({0, 1}, {3}, (3 + 2) / 2, 2.0),
    ({0, 4}, {1, 2}, (1 + 2) / 2, (1 + 2) / 2),
    ({2}, {2}, 0.0, 0.0),
    ({0, 4}, set(), 0.0, (0 + 1 + 2 + 1 + 0) / 5),  # empty GT: FP = 0; FN = all vertices to nearest prediction
    (set(), {2}, (2 + 1 + 0 + 1 + 2) / 5, 0.0),  # empty prediction: FP = all vertices to nearest GT
    (set(), set(), 0.0, 0.0),
]


def test_geodesic_path_graph(path_dist):
    pred = np.stack([onehot(5, p) for p, _, _, _ in GEO_CASES])
    gt = np.stack([onehot(5, g) for _, g, _, _ in GEO_CASES])
    fp, fn = geodesic_errors(pred, gt, path_dist)
    np.testing.assert_allclose(fp, [c[2] for c in GEO_CASES])
    np.testing.assert_allclose(fn, [c[3] for c in GEO_CASES])
    fp100, fn100 = geodesic_errors(pred, gt, path_dist, scale=100, chunk=2)
    np.testing.assert_allclose(fp100, 100 * fp)
    np.testing.assert_allclose(fn100, 100 * fn)


def test_geodesic_memmap_path_and_row_only_access(path_dist, tmp_path):
    pred = np.stack([onehot(5, p) for p, _, _, _ in GEO_CASES])
    gt = np.stack([onehot(5, g) for _, g, _, _ in GEO_CASES])
    ref = geodesic_errors(pred, gt, path_dist)
    np.save(tmp_path / "d.npy", path_dist)
    for source in (tmp_path / "d.npy", str(tmp_path / "d.npy"), np.load(tmp_path / "d.npy", mmap_mode="r"),
                   torch.from_numpy(path_dist)):
        got = geodesic_errors(pred, gt, source)
        np.testing.assert_allclose(got[0], ref[0])
        np.testing.assert_allclose(got[1], ref[1])

    class RowOnly:
        """Stands for a huge on-disk matrix: only row reads of at most `chunk` rows are allowed."""

        shape = path_dist.shape

        def __getitem__(self, key):
            assert not isinstance(key, tuple), "column indexing of the full matrix"
            rows = np.arange(5)[key]
            assert rows.ndim == 1 and len(rows) <= 2
            return path_dist[key]

    got = geodesic_errors(pred, gt, RowOnly(), chunk=2)
    np.testing.assert_allclose(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1])


def test_geodesic_shape_mismatch(path_dist):
    with pytest.raises(ValueError):
        geodesic_errors(np.ones((1, 4)), np.ones((1, 4)), path_dist)


# -------------------------------------------------------------------------------------------------------- semantic
def test_semantic_count_weighting_supporting_and_categories(path_dist):
    hit = (onehot(5, {1}), onehot(5, {1}))  # F1 = 1
    miss = (onehot(5, {0}), onehot(5, {4}))  # F1 = 0, P = R = 0, FP geo = 4
    samples = [
        ("img1", "chair", *hit),
        ("img2", "chair", *hit),
        ("img3", "chair", *hit),
        ("img1", "sports ball", *miss),  # spaces -> underscores
        ("img2", "supporting", *miss),
        ("img3", "dining_table", *miss),
    ]
    m = semantic_contact_metrics(samples, geodesic=path_dist, scale=100)
    assert m["per_object"]["chair"]["f1"] == 1.0 and m["per_object"]["chair"]["count"] == 3
    assert m["per_object"]["sports_ball"]["f1"] == 0.0
    assert "supporting" not in m["per_object"]
    # count-weighted over classes (= mean over pairs): (3 * 1 + 1 * 0 + 1 * 0) / 5, not the class mean 1/3
    assert m["overall"]["f1"] == pytest.approx(3 / 5)
    assert m["overall"]["count"] == 5
    assert m["overall"]["fp_geo"] == pytest.approx(100 * 4 * 2 / 5)
    assert m["per_category"]["furniture"]["f1"] == pytest.approx(3 / 4)
    assert m["per_category"]["furniture"]["count"] == 4
    assert m["per_category"]["sports equipment"]["f1"] == 0.0
    assert set(m["per_category"]) == {"furniture", "sports equipment"}
    assert len(m["per_sample"]) == 5

    with_sup = semantic_contact_metrics(samples, include_supporting=True)
    assert with_sup["overall"]["f1"] == pytest.approx(3 / 6)
    assert with_sup["per_object"]["supporting"]["count"] == 1
    assert "fp_geo" not in with_sup["overall"]


def test_semantic_missing_prediction_and_skip_empty_gt():
    samples = [("a", "cup", np.zeros(4), onehot(4, {0})), ("b", "cup", onehot(4, {1}), np.zeros(4))]
    m = semantic_contact_metrics(samples)
    assert m["overall"]["precision"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert m["overall"]["recall"] == pytest.approx(0.5)  # (0 + 1) / 2
    assert m["overall"]["f1"] == 0.0
    assert semantic_contact_metrics(samples, skip_empty_gt=True)["overall"]["count"] == 1


def test_category_map_has_69_unique_coco_objects():
    names = [n for v in DECO_CATEGORY_MAP.values() for n in v]
    assert len(names) == 69 and len(set(names)) == 69
    assert all(" " not in n for n in names)
    assert set(DECO_CATEGORY_MAP) == {"transportation", "accessories", "furniture", "everyday objects",
                                      "sports equipment", "food items", "kitchen appliances"}


# ------------------------------------------------------------------------------------------------ binary (union)
def test_binary_union_metrics():
    samples = [
        ("img1", "chair", onehot(4, {0}), onehot(4, {0})),
        ("img1", "cup", onehot(4, {2}) * 0.7, onehot(4, {1})),
        ("img2", "bed", np.full(4, 0.2), onehot(4, {3})),  # no prediction -> (1, 0, 0)
    ]
    m = binary_union_metrics(samples)
    assert m["image_ids"] == ["img1", "img2"]
    # img1: pred {0, 2} vs gt {0, 1} -> P = R = F1 = 1/2
    np.testing.assert_allclose(m["per_image"]["f1"], [0.5, 0.0])
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.25)
    assert m["f1"] == pytest.approx(0.25)
    # per-image GT override (DECO's contact_label): img1 gt {0, 2} -> perfect
    over = binary_union_metrics(samples, image_gt={"img1": onehot(4, {0, 2}), "img2": onehot(4, {3})})
    np.testing.assert_allclose(over["per_image"]["f1"], [1.0, 0.0])
    # excluded objects are left out of the union: img1 without cup -> pred {0}, gt {0}
    ex = binary_union_metrics(samples, exclude_objects=["cup"])
    np.testing.assert_allclose(ex["per_image"]["f1"], [1.0, 0.0])


def test_interactvlm_pooled_vs_deco_per_image():
    n = 10
    samples = [
        ("A", "cup", onehot(n, {0}), onehot(n, {0})),  # perfect
        ("B", "cup", onehot(n, {1, 2, 3, 4, 5}), onehot(n, {1})),  # P = 0.2, R = 1, F1 = 1/3
        ("C", "cup", np.zeros(n), onehot(n, {0})),  # empty prediction: DECO (1, 0, 0), eps (0, 0, 0)
    ]
    deco = binary_union_metrics(samples)
    assert deco["precision"] == pytest.approx((1 + 0.2 + 1) / 3)
    assert deco["recall"] == pytest.approx((1 + 1 + 0) / 3)
    assert deco["f1"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    ivlm = interactvlm_binary_metrics(samples)
    assert ivlm["precision"] == pytest.approx(2 / 6)  # pooled: TP 2, predicted 6
    assert ivlm["recall"] == pytest.approx(2 / 3)  # pooled: TP 2, GT 3
    assert ivlm["f1"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert ivlm["precision_per_image_mean"] == pytest.approx((1 + 0.2 + 0) / 3)
    assert ivlm["precision"] != pytest.approx(deco["precision"])


def test_interactvlm_gt_binarised_above_zero():
    m = eps_prf(np.array([0.9, 0.0]), np.array([0.3, 0.0]))
    assert m["f1"][0] == pytest.approx(1.0)
    assert deco_prf(np.array([0.9, 0.0]), np.array([0.3, 0.0]))["f1"][0] == 0.0  # DECO: GT >= 0.5


def test_interactvlm_semantic_soft_precision():
    samples = [
        ("a", "cup", np.array([0.2, 0.9, 0.0, 0.6]), np.array([1, 1, 0, 0])),
        ("b", "supporting", np.array([0.9, 0.9, 0.0, 0.0]), np.array([1, 1, 0, 0])),
    ]
    m = interactvlm_semantic_metrics(samples)
    cup = m["per_object"]["cup"]
    assert cup["precision"] == pytest.approx(2 / 1.7)  # > 1: count of nonzero overlaps / sum of probabilities
    assert cup["recall"] == pytest.approx(1.0)
    assert cup["f1"] == pytest.approx(0.5, abs=1e-8)  # thresholded: pred {1, 3} vs gt {0, 1}
    sup = m["per_object"]["supporting"]
    assert sup["precision"] == pytest.approx(2 / 1.8)
    assert m["overall"]["count"] == 2  # supporting included, as in the original
    assert m["overall"]["f1"] == pytest.approx((0.5 + 1.0) / 2, abs=1e-8)
    assert m["per_category"]["kitchen appliances"]["f1"] == pytest.approx(0.5, abs=1e-8)


# ---------------------------------------------------------------------------------------------- object / LEMON
def test_object_contact_f1_eps():
    pred = np.array([[0.9, 0.1, 0.6], [0.2, 0.2, 0.2]])
    gt = np.array([[1, 1, 0], [1, 0, 0]])
    m = object_contact_f1(pred, gt)
    np.testing.assert_allclose(m["per_sample"]["f1"], [0.5, 0.0], atol=1e-8)
    assert m["f1"] == pytest.approx(0.25, abs=1e-8)
    assert m["precision"] == pytest.approx(0.25, abs=1e-8)
    assert m["recall"] == pytest.approx(0.25, abs=1e-8)
    empty_gt = eps_prf(np.array([0.9, 0.1]), np.array([0, 0]))
    assert (empty_gt["precision"][0], empty_gt["recall"][0], empty_gt["f1"][0]) == (0.0, 0.0, 0.0)


def test_object_contact_metrics_on_meshes_of_different_sizes():
    preds = [np.array([0.9, 0.1, 0.6]), np.array([0.2, 0.2, 0.7, 0.8]), np.array([0.1, 0.1])]
    gts = [np.array([1, 1, 0]), np.array([0, 0, 1, 0]), np.array([1, 0])]
    m = object_contact_metrics(preds, gts, ["chair", "box", "chair"])
    # eps formulas by hand: (P 1/2, R 1/2) → F1 0.5; (P 1/2, R 1) → 2/3; empty prediction → 0
    np.testing.assert_allclose(m["per_sample"]["f1"], [0.5, 2 / 3, 0.0], atol=1e-8)
    np.testing.assert_allclose(m["per_sample"]["deco_precision"], [0.5, 0.5, 1.0])  # DECO: no prediction → P = 1
    assert m["overall"]["f1"] == pytest.approx((0.5 + 2 / 3) / 3) and m["overall"]["count"] == 3
    assert m["per_object"]["chair"]["f1"] == pytest.approx(0.25) and m["per_object"]["box"]["count"] == 1
    with pytest.raises(ValueError, match="vertices"):
        object_contact_metrics([np.zeros(3)], [np.zeros(4)])


def test_affordance_metrics_per_sample_with_the_nan_rule():
    a_pred, a_gt = np.array([0.9, 0.8, 0.1, 0.0]), np.array([1.0, 0.6, 0.2, 0.0])
    b_pred, b_gt = np.array([0.3, 0.2, 0.1]), np.array([0.4, 0.1, 0.0])  # no GT point >= 0.5: AUC/aIoU undefined
    m = affordance_metrics([a_pred, b_pred], [a_gt, b_gt], ["mug", "bag"])
    a, b = piad_metrics(a_pred[None], a_gt[None]), piad_metrics(b_pred[None], b_gt[None])
    assert m["overall"]["sim"] == pytest.approx((a["sim"] + b["sim"]) / 2)
    assert m["overall"]["mae"] == pytest.approx((a["mae"] + b["mae"]) / 2)
    assert m["overall"]["auc"] == pytest.approx(a["auc"]) and m["overall"]["aiou"] == pytest.approx(a["aiou"])
    assert m["overall"]["auc_count"] == 1 and m["overall"]["count"] == 2
    assert np.isnan(m["per_object"]["bag"]["aiou"]) and m["per_object"]["mug"]["auc"] == pytest.approx(1.0)
    dropped = affordance_metrics([np.ones(3)], [np.ones(3)], drop_all_ones=True)
    assert dropped["overall"]["count"] == 0


def test_prediction_diversity_flags_one_mask_for_everything():
    same = np.tile(onehot(10, {0, 1, 2}), (5, 1)) * 0.9
    stats = prediction_diversity(same)
    assert stats["mean_pairwise_iou"] == pytest.approx(1.0) and stats["distinct_masks"] == 1 and stats["collapsed"]
    # three masks by hand: IoU({0,1},{1,2}) = 1/3, IoU({0,1},{5}) = 0, IoU({1,2},{5}) = 0
    varied = np.stack([onehot(6, {0, 1}), onehot(6, {1, 2}), onehot(6, {5})])
    stats = prediction_diversity(varied)
    assert stats["mean_pairwise_iou"] == pytest.approx(1 / 9) and not stats["collapsed"]
    assert stats["distinct_masks"] == 3 and stats["empty_fraction"] == 0.0
    # masks that differ only below the threshold still collapse: probabilities that barely move
    wobble = 0.6 + 0.002 * np.random.default_rng(0).standard_normal((8, 20))
    stats = prediction_diversity(wobble)
    assert stats["collapsed"] and stats["max_std"] < 0.01 and stats["empty_fraction"] == 0.0
    empty = prediction_diversity(np.zeros((4, 7)))
    assert empty["mean_pairwise_iou"] == 1.0 and empty["empty_fraction"] == 1.0 and empty["collapsed"]
    with pytest.raises(ValueError, match="at least 2"):
        prediction_diversity(np.zeros((1, 7)))


def test_lemon_contact_with_geodesic(path_dist):
    pred = np.stack([onehot(5, {0, 1}), onehot(5, {0, 4})])
    gt = np.stack([onehot(5, {3}), onehot(5, {1, 2})])
    m = lemon_contact_metrics(pred, gt, geodesic=path_dist)
    assert m["fp_geo"] == pytest.approx((2.5 + 1.5) / 2)
    assert m["fn_geo"] == pytest.approx((2.0 + 1.5) / 2)
    assert m["f1"] == pytest.approx(0.0, abs=1e-8)


# ------------------------------------------------------------------------------------------------------------ PIAD
def test_piad_sim_mae():
    m = piad_metrics(np.array([[0.5, 0.5, 0.0, 0.0]]), np.array([[1.0, 0.0, 0.0, 1.0]]))
    # p/sum = [.5, .5, 0, 0], g/sum = [.5, 0, 0, .5] -> SIM = 0.5; MAE = (0.5 + 0.5 + 0 + 1) / 4
    assert m["sim"] == pytest.approx(0.5)
    assert m["mae"] == pytest.approx(0.5)


def _auc_bruteforce(y, s):
    pos, neg = s[y], s[~y]
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg)]
    return float(np.mean(wins))


def test_roc_auc_hand_and_bruteforce_with_ties():
    assert roc_auc([1, 0, 1, 0], [0.8, 0.8, 0.3, 0.1]) == pytest.approx(2.5 / 4)
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 40))
        y = rng.random(n) < 0.4
        if y.all() or not y.any():
            continue
        s = np.round(rng.random(n), 1)  # many ties
        assert roc_auc(y, s) == pytest.approx(_auc_bruteforce(y, s), abs=1e-12)
    assert np.isnan(roc_auc([0, 0, 0], [0.1, 0.2, 0.3]))
    assert np.isnan(roc_auc([1, 1], [0.1, 0.2]))


def test_roc_auc_matches_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.random(200) < 0.3
        s = np.round(rng.random(200), 2)
        assert roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)


def test_piad_aiou_by_hand():
    p = np.array([[0.9, 0.4, 0.6, 0.0]])
    g = np.array([[1.0, 0.7, 0.2, 0.0]])  # binarised {0, 1}
    # t = 0: all 4 predicted -> 2/4; t = 0.5: {0, 2} -> 1/3; t = 1: none -> 0/2
    m = piad_metrics(p, g, thresholds=[0.0, 0.5, 1.0])
    assert m["aiou"] == pytest.approx((0.5 + 1 / 3 + 0) / 3)
    # default 20 thresholds, exact binary prediction: t = 0 -> 2/4, the other 19 (t = 1 included) -> 1
    m = piad_metrics(np.array([[1.0, 1.0, 0.0, 0.0]]), np.array([[1.0, 1.0, 0.0, 0.0]]))
    assert m["aiou"] == pytest.approx((0.5 + 19) / 20)
    assert m["auc"] == pytest.approx(1.0)


def test_piad_nan_rules_and_drop_all_ones():
    pred = np.array([[0.9, 0.1, 0.2, 0.8], [0.3, 0.3, 0.3, 0.3], [0.5, 0.5, 0.5, 0.5]])
    gt = np.array([[1.0, 0.0, 0.0, 1.0], [0.1, 0.2, 0.0, 0.0], [1.0, 0.9, 0.6, 0.5]])  # ok, no positive, all ones
    m = piad_metrics(pred, gt)
    ps = m["per_sample"]
    assert ps["auc"][0] == 1.0 and np.isnan(ps["auc"][1]) and np.isnan(ps["auc"][2])
    assert not np.isnan(ps["aiou"][0]) and np.isnan(ps["aiou"][1]) and not np.isnan(ps["aiou"][2])
    assert m["auc"] == 1.0
    assert m["aiou"] == pytest.approx((ps["aiou"][0] + ps["aiou"][2]) / 2)
    assert m["count"] == 3 and m["sim"] == pytest.approx(ps["sim"].mean())
    dropped = piad_metrics(pred, gt, drop_all_ones=True)
    assert dropped["count"] == 2
    assert dropped["aiou"] == pytest.approx(ps["aiou"][0])
    assert dropped["sim"] == pytest.approx(ps["sim"][:2].mean())


# -------------------------------------------------------------------------------------------------------------- 2D
def test_giou_ciou_with_ignore():
    pred = np.array([
        [[2.0, -1.0], [3.0, 5.0]],
        [[1.0, 1.0], [-1.0, -1.0]],
        [[-1.0, -1.0], [-1.0, -1.0]],
    ])
    gt = np.array([
        [[1, 0], [-1, 1]],  # ignored pixel is predicted positive but does not count -> I = 2, U = 2
        [[0, 1], [0, 0]],  # I = 1, U = 2
        [[0, -1], [0, 0]],  # empty union -> IoU 1
    ])
    m = giou_ciou(pred, gt)
    np.testing.assert_allclose(m["intersection"], [2, 1, 0])
    np.testing.assert_allclose(m["union"], [2, 2, 0])
    np.testing.assert_allclose(m["per_mask_iou"], [2 / (2 + 1e-5), 1 / (2 + 1e-5), 1.0])
    assert m["giou"] == pytest.approx((1 + 0.5 + 1) / 3, abs=1e-5)
    assert m["ciou"] == pytest.approx(3 / 4)
    listed = giou_ciou([pred[0], np.ones((3, 3))], [gt[0], np.zeros((3, 3))])  # different sizes
    np.testing.assert_allclose(listed["union"], [2, 9])
    assert listed["ciou"] == pytest.approx(2 / 11)


# ---------------------------------------------------------------------------------------------------------- curves
def test_precision_recall_curve():
    preds = np.array([[0.9, 0.6, 0.4, 0.7, 0.1], [0.2, 0.8, 0.3, 0.55, 0.1]])
    gts = np.array([[1, 0, 1, 1, 1], [0, 1, 0, 0, 1]])
    c = precision_recall_curve(preds, gts, thresholds=[0.3, 0.5, 0.95])
    ref = deco_binary_metrics(preds, gts)
    assert c["f1"][1] == pytest.approx(ref["f1"])
    assert c["precision"][1] == pytest.approx(ref["precision"])
    assert c["recall"][2] == 0.0 and c["precision"][2] == 1.0  # nothing predicted at 0.95
    assert np.all(np.diff(c["recall"]) <= 0)
    e = precision_recall_curve(preds, gts, thresholds=[0.95], rule="eps")
    assert e["precision"][0] == 0.0


def test_small_masks_keep_a_few_contact_pixels():
    """The diversity grid keeps a mask of a few pixels (2D contact covers ~0.1 % of a photo): two photos whose
    contact lies in different places are told apart, and the grid of a mask is the largest value per cell."""
    from utils.evaluation import small_masks
    from utils.metrics import prediction_diversity

    a = np.full((300, 200), -20.0, dtype=np.float32)
    b = a.copy()
    a[10:12, 15:17] = 20.0  # 4 pixels each
    b[250:252, 150:152] = 20.0
    small = np.stack([small_masks(a), small_masks(b)])
    assert small.shape == (2, 1, 32, 32) and (small > 0.5).sum() == 2
    assert prediction_diversity(small.reshape(2, -1))["mean_pairwise_iou"] == 0.0
    views = small_masks(np.stack([a, b, a]))
    assert views.shape == (3, 32, 32) and np.allclose(views[0], views[2]) and views.max() > 0.99
