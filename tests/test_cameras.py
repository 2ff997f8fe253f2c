"""Camera math against closed-form cases (PyTorch3D conventions)."""

import numpy as np
import pytest

from utils.geometry.cameras import PerspectiveCamera, ViewSpec, look_at_view_transform
from utils.geometry.views import VIEW_SETS, get_view_set

TAN30 = np.tan(np.deg2rad(30.0))


def test_front_camera_rotation_and_translation():
    rotation, translation = look_at_view_transform(2.0, 0.0, 0.0)
    np.testing.assert_allclose(rotation, np.diag([-1.0, 1.0, -1.0]), atol=1e-12)
    np.testing.assert_allclose(translation, [0.0, 0.0, 2.0], atol=1e-12)


def test_side_camera_axes():
    rotation, translation = look_at_view_transform(2.0, 0.0, 90.0)  # camera on +x looking at the origin
    np.testing.assert_allclose(rotation[:, 0], [0, 0, 1], atol=1e-12)  # camera x axis (left in view space)
    np.testing.assert_allclose(rotation[:, 1], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(rotation[:, 2], [-1, 0, 0], atol=1e-12)
    camera = PerspectiveCamera(rotation, translation)
    np.testing.assert_allclose(camera.center, [2, 0, 0], atol=1e-12)


@pytest.mark.parametrize("dist,elev,azim", [(2, 45, 315), (2, 315, 135), (1.5, 330, 225), (3, -20, 10)])
def test_camera_center_on_sphere_and_orthonormal(dist, elev, azim):
    camera = ViewSpec("v", dist, elev, azim).camera()
    e, a = np.deg2rad(elev), np.deg2rad(azim)
    expected = dist * np.array([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)])
    np.testing.assert_allclose(camera.center, expected, atol=1e-12)
    np.testing.assert_allclose(camera.rotation.T @ camera.rotation, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(camera.rotation), 1.0, atol=1e-12)
    # the origin is straight ahead: it projects to the image centre at depth = dist
    col, row, depth = camera.project_pixels(np.zeros(3), 512)
    np.testing.assert_allclose([col, row, depth], [256, 256, dist], atol=1e-9)


def test_projection_closed_form_front_view():
    camera = ViewSpec("front", 2.0, 0.0, 0.0).camera()
    size = 100
    # a point at height 2*tan(30°) on the z=0 plane sits on the top image border (60° FoV)
    col, row, depth = camera.project_pixels(np.array([0.0, 2.0 * TAN30, 0.0]), size)
    np.testing.assert_allclose([col, row, depth], [50, 0, 2], atol=1e-9)
    # the subject's left (+x) appears on the image's right for a camera in front (+z)
    col, _, _ = camera.project_pixels(np.array([0.5, 0.0, 0.0]), size)
    np.testing.assert_allclose(col, 50 + 0.5 / (2 * TAN30) * 50, atol=1e-9)


def test_view_translation_shifts_image_up():
    size = 1000
    base = ViewSpec("a", 2.0, 0.0, 0.0).camera()
    shifted = ViewSpec("b", 2.0, 0.0, 0.0, 0.0, 0.3).camera()
    _, row0, _ = base.project_pixels(np.zeros(3), size)
    _, row1, _ = shifted.project_pixels(np.zeros(3), size)
    assert row0 == pytest.approx(500)
    assert row1 == pytest.approx(500 * (1 - 0.3 / (2 * TAN30)))  # T_y += 0.3 moves the scene up


def test_pixel_rays_go_through_pixel_centres():
    camera = ViewSpec("v", 2.0, 45.0, 315.0, 0.1, 0.3).camera()
    size = 8
    origins, directions = camera.pixel_rays(size)
    np.testing.assert_allclose(origins, np.broadcast_to(camera.center, origins.shape))
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0)
    points = origins + 3.0 * directions
    pixels = camera.project_pixels(points, size)
    rows, cols = np.divmod(np.arange(size * size), size)
    np.testing.assert_allclose(pixels[:, 0], cols + 0.5, atol=1e-9)
    np.testing.assert_allclose(pixels[:, 1], rows + 0.5, atol=1e-9)


def test_view_sets_match_the_original_tables():
    human = get_view_set("4MV-Z_Vitru")
    assert human.view_names == ("topfront", "bottomfront", "topback", "bottomback")
    np.testing.assert_allclose(
        human.camera_vectors(),
        [[0.2, 0.125, 0.875, 0.5, 0.5], [0.2, 0.875, 0.875, 0.5, 0.65], [0.2, 0.125, 0.375, 0.5, 0.5], [0.2, 0.875, 0.375, 0.5, 0.65]],
        atol=1e-6,
    )
    assert get_view_set("4MV-Z_Vitru_mv2").min_vertices == 2
    obj = get_view_set("4MV-Z_HM_BM")
    assert obj.view_names == ("frontleft", "frontright", "backleft", "backright")
    assert all(v.dist == 2.0 for v in obj.views) and all(v.dist == 1.5 for v in obj.render_views)
    assert [(v.elev, v.azim) for v in obj.views] == [(45, 315), (45, 45), (330, 135), (330, 225)]
    assert "4MV-Z_Vitru_wScene" not in VIEW_SETS  # the original's undefined name is not silently accepted
    with pytest.raises(KeyError, match="known"):
        get_view_set("4MV-Z_Vitru_wScene")


def test_degenerate_look_at_is_refused():
    with pytest.raises(ValueError, match="undefined"):
        look_at_view_transform(2.0, 90.0, 0.0)
