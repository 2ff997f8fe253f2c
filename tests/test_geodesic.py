"""Geodesic distances: accuracy against great circles, disk cache, shape checks."""

import numpy as np
import pytest
import trimesh

from utils.geometry.geodesic import compute_geodesic_matrix, geodesic_matrix, load_geodesic_matrix


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=3)


def _great_circle(vertices):
    unit = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    return np.arccos(np.clip(unit @ unit.T, -1, 1))


def test_heat_method_close_to_great_circle_distances(sphere):
    dist = compute_geodesic_matrix(sphere.vertices, sphere.faces, progress=False)
    exact = _great_circle(np.asarray(sphere.vertices))
    assert np.abs(dist - exact).mean() < 0.03  # 642-vertex sphere; error shrinks with resolution
    np.testing.assert_array_equal(dist, dist.T)
    assert (np.diag(dist) == 0).all()


def test_graph_method_follows_edges(sphere):
    graph = compute_geodesic_matrix(sphere.vertices, sphere.faces, method="graph")
    edges = np.asarray(sphere.edges_unique)
    lengths = np.linalg.norm(sphere.vertices[edges[:, 0]] - sphere.vertices[edges[:, 1]], axis=1)
    np.testing.assert_allclose(graph[edges[:, 0], edges[:, 1]], lengths, rtol=1e-5)
    assert np.abs(graph - _great_circle(np.asarray(sphere.vertices))).mean() < 0.15


def test_cache_is_reused(tmp_path, sphere):
    first = geodesic_matrix(sphere.vertices, sphere.faces, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.glob("geodesic_heat_*.npy"))
    assert len(files) == 1
    second = geodesic_matrix(sphere.vertices, sphere.faces, cache_dir=tmp_path, progress=False)
    assert isinstance(second, np.memmap)  # read back from disk, not recomputed
    np.testing.assert_array_equal(first, second)


def test_load_checks_shape(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected \(6890, 6890\)"):
        load_geodesic_matrix(tmp_path / "d.npy", 6890)
    with pytest.raises(FileNotFoundError):
        load_geodesic_matrix(tmp_path / "missing.npy", 5)
    with pytest.raises(ValueError, match="unknown geodesic method"):
        compute_geodesic_matrix(np.eye(3), np.array([[0, 1, 2]]), method="exact")
