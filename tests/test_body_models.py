"""Tests for utils.body_models and the committed SynthBody model (data/body_models/synthbody)."""

from __future__ import annotations

import json
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch
import trimesh
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from preprocess_data import make_synthetic_body as synth
from utils import body_models as bm

BODY_DIR = bm.default_body_model_dir()
SYNTH_DIR = BODY_DIR / "synthbody"
SYNTH_NPZ = SYNTH_DIR / "SYNTHBODY_NEUTRAL.npz"
SYNTH_SEG = SYNTH_DIR / "synthbody_segmentation.json"


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    with np.load(SYNTH_NPZ, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def model():
    return bm.load_body_model("synthbody", BODY_DIR)


@pytest.fixture(scope="module")
def segmentation() -> dict[str, np.ndarray]:
    return bm.load_part_segmentation(SYNTH_SEG)


def _pose(model, body_pose: torch.Tensor | None = None, betas: torch.Tensor | None = None) -> np.ndarray:
    with torch.no_grad():
        return model(body_pose=body_pose, betas=betas).vertices[0].numpy()


# ---------------------------------------------------------------------------------------------------------------
# The generated body
# ---------------------------------------------------------------------------------------------------------------


def test_model_file_has_smpl_layout(arrays):
    n = len(arrays["v_template"])
    assert n == bm.BODY_MODEL_FILES["synthbody"].num_vertices
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        assert arrays[key].dtype == np.float32, key
    assert arrays["shapedirs"].shape == (n, 3, 10)
    assert arrays["posedirs"].shape == (n, 3, 207) and not arrays["posedirs"].any()
    assert arrays["kintree_table"][0, 0] == 4294967295
    assert arrays["kintree_table"][0, 1:].tolist() == list(synth.PARENTS[1:])
    assert arrays["kintree_table"][1].tolist() == list(range(24))
    assert tuple(arrays["joint_names"].tolist()) == synth.JOINT_NAMES
    weights, regressor = arrays["weights"], arrays["J_regressor"]
    assert weights.shape == (n, 24) and weights.min() >= 0
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert regressor.shape == (24, n) and regressor.min() >= 0
    np.testing.assert_allclose(regressor.sum(axis=1), 1.0, atol=1e-5)
    joint_err = np.linalg.norm(regressor @ arrays["v_template"] - synth.designed_joints(), axis=1)
    assert joint_err.max() < 0.01
    vertex_ids = json.loads(str(arrays["vertex_ids_json"]))
    assert set(vertex_ids) == set(SMPLX_VERTEX_IDS["smplh"])
    assert all(0 <= v < n for v in vertex_ids.values())


def test_mesh_is_one_closed_shell_of_human_size(arrays):
    mesh = trimesh.Trimesh(arrays["v_template"], arrays["f"], process=False)
    assert 6000 <= len(mesh.vertices) <= 8000
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert len(mesh.split(only_watertight=False)) == 1
    lo, hi = mesh.bounds
    assert -1.2 < lo[1] < -1.1 and 0.5 < hi[1] < 0.6  # soles and head top like SMPL's template
    assert 0.8 < hi[0] < 0.9 and -0.9 < lo[0] < -0.8  # hands end near |x| = 0.85
    pelvis = arrays["J_regressor"][0] @ arrays["v_template"]
    assert np.allclose(pelvis, (0.0, -0.22, 0.0), atol=0.02)


def test_segmentation_partitions_the_vertices(arrays, segmentation):
    assert tuple(segmentation) == synth.PART_NAMES
    ids = np.concatenate(list(segmentation.values()))
    assert len(ids) == len(arrays["v_template"])
    assert np.array_equal(np.sort(ids), np.arange(len(arrays["v_template"])))


def test_hands_and_feet_are_distinct(arrays, segmentation):
    v = arrays["v_template"]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        hand, foot = v[segmentation[f"{side} hand"]], v[segmentation[f"{side} foot"]]
        assert sign * hand[:, 0].mean() > 0.6 and hand[:, 1].mean() > 0
        assert foot[:, 1].mean() < -1.0 and sign * foot[:, 0].mean() > 0
        ankle_z = synth.designed_joints()[7 if side == "left" else 8, 2]
        assert foot[:, 2].max() - ankle_z > 0.15  # feet point forward (+z), hands lie along x
        assert np.ptp(foot[:, 2]) > 2 * np.ptp(foot[:, 0])
        assert np.ptp(hand[:, 0]) > np.ptp(hand[:, 2])


def test_body_is_left_right_symmetric(arrays, segmentation):
    v = arrays["v_template"]
    mirrored = v * np.array([-1.0, 1.0, 1.0])
    tree = trimesh.Trimesh(v, arrays["f"], process=False).kdtree
    dist, _ = tree.query(mirrored)
    assert dist.max() < 1e-4
    for part in ("upper arm", "forearm", "hand", "thigh", "calf", "foot"):
        assert len(segmentation[f"left {part}"]) == len(segmentation[f"right {part}"])


# ---------------------------------------------------------------------------------------------------------------
# Posing through smplx
# ---------------------------------------------------------------------------------------------------------------


def test_zero_pose_reproduces_template(model, arrays):
    assert model.__class__.__name__ == "SMPL"
    np.testing.assert_allclose(_pose(model), arrays["v_template"], atol=1e-5)
    with torch.no_grad():
        assert model().joints.shape == (1, 24 + 21, 3)  # 21 extra joints from our vertex ids


def test_vitruvian_pose_spreads_feet_and_stays_closed(model, arrays, segmentation):
    mesh = bm.canonical_mesh("synthbody", BODY_DIR)
    rest = arrays["v_template"]
    left, right = segmentation["left foot"], segmentation["right foot"]
    assert mesh.vertices[left, 0].mean() > rest[left, 0].mean() + 0.2
    assert mesh.vertices[right, 0].mean() < rest[right, 0].mean() - 0.2
    assert mesh.is_watertight
    head = segmentation["head"]
    np.testing.assert_allclose(mesh.vertices[head], rest[head], atol=1e-5)


def test_vitruvian_body_pose_values():
    pose = bm.vitruvian_body_pose(23).reshape(23, 3)
    assert pose[0, 2] == pytest.approx(np.pi / 6) and pose[1, 2] == pytest.approx(-np.pi / 6)
    assert not pose[2:].any() and not pose[:, :2].any()


def test_bent_elbow_moves_hand_not_feet(model, arrays, segmentation):
    body_pose = torch.zeros(1, 69)
    body_pose[0, 3 * (18 - 1) + 1] = -1.5  # left elbow (SMPL joint 18 = body-pose joint 17) about y
    posed = _pose(model, body_pose=body_pose)
    rest = arrays["v_template"]
    hand, feet = segmentation["left hand"], np.concatenate([segmentation["left foot"], segmentation["right foot"]])
    assert np.linalg.norm(posed[hand] - rest[hand], axis=1).min() > 0.15
    assert np.abs(posed[feet] - rest[feet]).max() < 1e-5
    assert np.abs(posed[segmentation["right hand"]] - rest[segmentation["right hand"]]).max() < 1e-5


def test_betas_change_shape(model, arrays):
    rest = arrays["v_template"]
    for i in range(10):
        betas = torch.zeros(1, 10)
        betas[0, i] = 1.0
        shift = np.linalg.norm(_pose(model, betas=betas) - rest, axis=1).max()
        assert 0.01 < shift < 0.08, (i, shift)
    betas = torch.zeros(1, 10)
    betas[0, 3] = 2.0  # leg length: the body gets taller
    posed = _pose(model, betas=betas)
    assert np.ptp(posed[:, 1]) > np.ptp(rest[:, 1]) + 0.05


# ---------------------------------------------------------------------------------------------------------------
# Loading errors and chumpy-free pickles
# ---------------------------------------------------------------------------------------------------------------


def test_missing_model_file_error_names_path_and_site(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        bm.load_body_model("smplh", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "smplh" / "SMPLH_NEUTRAL.pkl") in message
    assert "https://mano.is.tue.mpg.de" in message
    assert "--body-model-dir" in message


def test_unknown_model_type_lists_known_types(tmp_path):
    with pytest.raises(ValueError) as info:
        bm.load_body_model("mano2", tmp_path)
    for name in ("smpl", "smplh", "smplx", "synthbody"):
        assert name in str(info.value)


def _chumpy_pickle_bytes(payload_factory) -> bytes:
    """Pickle ``payload_factory(Ch)`` where Ch masquerades as chumpy.ch.Ch; the fake modules never outlive this."""
    chumpy, chumpy_ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty_vars = set()

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    chumpy_ch.Ch, chumpy.ch = Ch, chumpy_ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, chumpy_ch
    try:
        return pickle.dumps(payload_factory(Ch), protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_chumpy_pickle_loads_to_numpy(tmp_path):
    shapedirs = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    path = tmp_path / "model.pkl"
    path.write_bytes(_chumpy_pickle_bytes(lambda Ch: {"shapedirs": Ch(shapedirs), "nested": [Ch([1.0, 2.0])],
                                                      "sparse": scipy.sparse.csc_matrix(np.eye(3)), "f": np.ones(3)}))
    assert "chumpy" not in sys.modules
    data = bm.load_pickle_without_chumpy(path)
    assert "chumpy" not in sys.modules
    assert isinstance(data["shapedirs"], np.ndarray)
    np.testing.assert_array_equal(data["shapedirs"], shapedirs)
    np.testing.assert_array_equal(data["nested"][0], [1.0, 2.0])
    assert scipy.sparse.issparse(data["sparse"])


def test_pickle_loader_refuses_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"f": os.getcwd}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        bm.load_pickle_without_chumpy(path)


def test_smpl_pickle_with_chumpy_builds_a_model(tmp_path, arrays):
    """An official-style SMPL pickle (chumpy arrays, sparse regressor) loads without chumpy and poses correctly."""
    keys = ("v_template", "f", "shapedirs", "posedirs", "weights", "kintree_table")

    def payload(Ch):
        data = {k: Ch(arrays[k]) if k in ("v_template", "shapedirs", "posedirs") else arrays[k] for k in keys}
        data["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
        return data

    (tmp_path / "smpl").mkdir()
    (tmp_path / "smpl" / "SMPL_NEUTRAL.pkl").write_bytes(_chumpy_pickle_bytes(payload))
    smpl = bm.load_body_model("smpl", tmp_path)
    np.testing.assert_allclose(_pose(smpl), arrays["v_template"], atol=1e-5)
    mesh = bm.canonical_mesh("smpl", tmp_path)
    np.testing.assert_allclose(mesh.vertices, bm.canonical_mesh("synthbody", BODY_DIR).vertices, atol=1e-5)


def test_smplh_pickle_builds_a_model_without_pca(tmp_path, arrays):
    """A SMPL-H-shaped pickle (52 joints: the two SMPL hand joints replaced by 2 x 15 finger joints) loads."""
    n = len(arrays["v_template"])
    parents = list(synth.PARENTS[:22]) + [20] * 15 + [21] * 15
    regressor = np.concatenate([arrays["J_regressor"][:22]] + [arrays["J_regressor"][22:23]] * 15
                               + [arrays["J_regressor"][23:24]] * 15)
    weights = np.concatenate([arrays["weights"][:, :22], np.zeros((n, 30), np.float32)], axis=1)
    weights[:, 20] += arrays["weights"][:, 22]
    weights[:, 21] += arrays["weights"][:, 23]
    data = {
        "v_template": arrays["v_template"], "f": arrays["f"], "shapedirs": arrays["shapedirs"],
        "posedirs": np.zeros((n, 3, 51 * 9), np.float32), "J_regressor": scipy.sparse.csc_matrix(regressor),
        "weights": weights, "kintree_table": np.array([[4294967295] + parents[1:], list(range(52))]),
        "hands_componentsl": np.eye(45), "hands_componentsr": np.eye(45),
        "hands_meanl": np.zeros(45), "hands_meanr": np.zeros(45),
    }
    (tmp_path / "smplh").mkdir()
    (tmp_path / "smplh" / "SMPLH_NEUTRAL.pkl").write_bytes(pickle.dumps(data, protocol=2))
    smplh = bm.load_body_model("smplh", tmp_path)
    assert smplh.__class__.__name__ == "SMPLH" and not smplh.use_pca
    mesh = bm.canonical_mesh("smplh", tmp_path)
    assert mesh.is_watertight and len(mesh.vertices) == n


def test_smplx_pickle_and_npz_build_the_same_model(tmp_path, arrays):
    """SMPL-X-shaped data (55 joints, padded to 10 475 vertices for smplx's own landmark ids) via .pkl and .npz."""
    pad = 10475 - len(arrays["v_template"])
    pad_weights = np.zeros((pad, 24), np.float32)
    pad_weights[:, 0] = 1.0
    base = {
        "v_template": np.concatenate([arrays["v_template"], np.zeros((pad, 3), np.float32)]),
        "shapedirs": np.concatenate([arrays["shapedirs"], np.zeros((pad, 3, 10), np.float32)]),
        "weights": np.concatenate([arrays["weights"], pad_weights]),
        "J_regressor": np.concatenate([arrays["J_regressor"], np.zeros((24, pad), np.float32)], axis=1),
    }
    n = len(base["v_template"])
    parents = list(synth.PARENTS[:22]) + [15, 15, 15] + [20] * 15 + [21] * 15
    reg = base["J_regressor"]
    weights = np.concatenate([base["weights"][:, :22], np.zeros((n, 33), np.float32)], axis=1)
    weights[:, 20] += base["weights"][:, 22]
    weights[:, 21] += base["weights"][:, 23]
    data = {
        "v_template": base["v_template"], "f": arrays["f"],
        "shapedirs": np.concatenate([base["shapedirs"], np.zeros((n, 3, 300), np.float32)], axis=2),
        "posedirs": np.zeros((n, 3, 54 * 9), np.float32), "weights": weights,
        "J_regressor": np.concatenate([reg[:22]] + [reg[15:16]] * 3 + [reg[22:23]] * 15 + [reg[23:24]] * 15),
        "kintree_table": np.array([[4294967295] + parents[1:], list(range(55))]),
        "hands_componentsl": np.eye(45), "hands_componentsr": np.eye(45),
        "hands_meanl": np.zeros(45), "hands_meanr": np.zeros(45),
        "lmk_faces_idx": np.arange(51), "lmk_bary_coords": np.full((51, 3), 1 / 3),
    }
    folder = tmp_path / "smplx"
    folder.mkdir()
    pkl_data = dict(data, J_regressor=scipy.sparse.csc_matrix(data["J_regressor"]))
    (folder / "SMPLX_NEUTRAL.pkl").write_bytes(pickle.dumps(pkl_data, protocol=2))
    assert bm.load_body_model("smplx", tmp_path).__class__.__name__ == "SMPLX"
    from_pkl = bm.canonical_mesh("smplx", tmp_path)
    np.savez(folder / "SMPLX_NEUTRAL.npz", **data)  # .npz is preferred when both exist
    assert bm.model_file_path("smplx", tmp_path).suffix == ".npz"
    from_npz = bm.canonical_mesh("smplx", tmp_path)
    np.testing.assert_allclose(from_pkl.vertices, from_npz.vertices, atol=1e-6)
    synth_canonical = bm.canonical_mesh("synthbody", BODY_DIR)
    np.testing.assert_allclose(from_npz.vertices[: len(arrays["v_template"])], synth_canonical.vertices, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Segmentation, part summaries and SMPL -> SMPL-X transfer
# ---------------------------------------------------------------------------------------------------------------


def test_load_part_segmentation_from_original_pickle(tmp_path):
    path = tmp_path / "smpl_segmentation_merged.pkl"
    path.write_bytes(pickle.dumps({"head": [3, 1, 2], "neck": np.array([4, 5])}, protocol=2))
    seg = bm.load_part_segmentation(path)
    assert list(seg) == ["head", "neck"]
    np.testing.assert_array_equal(seg["head"], [3, 1, 2])
    with pytest.raises(FileNotFoundError):
        bm.load_part_segmentation(tmp_path / "absent.json")


def test_body_parts_from_vertices_ten_percent_rule():
    seg = {"a": list(range(10)), "b": list(range(10, 20)), "c": list(range(20, 40))}
    assert bm.body_parts_from_vertices([0], seg) == ["a"]  # 1 of 10 = 10 %
    assert bm.body_parts_from_vertices([20], seg) == []  # 1 of 20 = 5 %
    assert bm.body_parts_from_vertices(np.array([20, 21, 5]), seg) == ["a", "c"]
    assert bm.body_parts_from_vertices([], seg) == []
    mask = np.zeros(40, dtype=bool)
    mask[10:15] = True
    assert bm.body_parts_from_vertices(mask, seg) == ["b"]
    assert bm.body_parts_from_vertices(mask, seg, min_coverage=0.6) == []
    scores = np.zeros(40)
    scores[[0, 1]] = 0.9
    scores[[10, 11, 12]] = 0.4  # below the 0.5 threshold
    assert bm.body_parts_from_vertices(scores, seg) == ["a"]


def _write_transfer_matrix(path, shape=(10475, 6890)) -> None:
    rows = np.arange(shape[0])
    cols = np.where(rows < shape[1], rows, 0)
    values = np.where(rows < shape[1], 1.0, 2.0)  # rows past 6890 overshoot, so the output must be clipped
    path.write_bytes(pickle.dumps({"matrix": scipy.sparse.csr_matrix((values, (rows, cols)), shape=shape)}))


def test_transfer_contact_smpl_to_smplx(tmp_path):
    path = tmp_path / "smpl_to_smplx.pkl"
    _write_transfer_matrix(path)
    contact = np.zeros((2, 6890))
    contact[0, [0, 7]] = 1.0
    contact[1, 7] = 0.5
    out = bm.transfer_contact_smpl_to_smplx(contact, path)
    assert out.shape == (2, 10475)
    assert out[0, 7] == 1.0 and out[1, 7] == 0.5 and out[0, 8] == 0.0
    assert out[0, 7000] == 1.0  # 2.0 * contact[0, 0] clipped
    assert out.min() >= 0 and out.max() <= 1
    assert bm.transfer_contact_smpl_to_smplx(contact[0], path).shape == (10475,)


def test_transfer_contact_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="smpl_to_smplx"):
        bm.transfer_contact_smpl_to_smplx(np.zeros(6890), tmp_path / "smpl_to_smplx.pkl")
    bad = tmp_path / "bad.pkl"
    _write_transfer_matrix(bad, shape=(100, 50))
    with pytest.raises(ValueError, match=r"\(100, 50\)"):
        bm.transfer_contact_smpl_to_smplx(np.zeros(6890), bad)
    good = tmp_path / "good.pkl"
    _write_transfer_matrix(good)
    with pytest.raises(ValueError, match="6890"):
        bm.transfer_contact_smpl_to_smplx(np.zeros(100), good)


# ---------------------------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------------------------


def test_npz_writer_is_byte_deterministic(tmp_path):
    arrays = {"a": np.arange(5, dtype=np.float32), "s": np.array("text")}
    synth.write_deterministic_npz(tmp_path / "1.npz", arrays)
    synth.write_deterministic_npz(tmp_path / "2.npz", arrays)
    assert (tmp_path / "1.npz").read_bytes() == (tmp_path / "2.npz").read_bytes()
    with np.load(tmp_path / "1.npz") as data:
        np.testing.assert_array_equal(data["a"], arrays["a"])


@pytest.mark.slow
def test_regeneration_matches_committed_files(tmp_path, arrays):
    """Regenerating reproduces the committed body (bit-for-bit on one machine; floats compared to 1e-6 so a CPU
    with different SIMD rounding does not fail here while topology, rigging and labels must match exactly)."""
    paths = synth.generate(tmp_path, log=lambda _msg: None)
    assert paths["segmentation"].read_text() == SYNTH_SEG.read_text()
    assert paths["readme"].read_text() == (SYNTH_DIR / "README.md").read_text()
    with np.load(paths["model"], allow_pickle=False) as fresh:
        assert sorted(fresh.files) == sorted(arrays)
        for key, committed in arrays.items():
            if committed.dtype.kind == "f":
                np.testing.assert_allclose(fresh[key], committed, atol=1e-6, err_msg=key)
            else:
                np.testing.assert_array_equal(fresh[key], committed, err_msg=key)
