"""Renderer: exact fragments on closed-form scenes, shading, point clouds, bad meshes."""

import importlib.util

import numpy as np
import pytest
import trimesh

from utils.geometry.cameras import ViewSpec
from utils.geometry.pointcloud import render_point_cloud
from utils.geometry.raycast import rasterize
from utils.geometry.shading import normal_colors, phong_shade, to_uint8, valid_region_from_render, vertex_normals, xyz_colors

FRONT = ViewSpec("front", 2.0, 0.0, 0.0).camera()


def _quad(z: float = 0.0, half: float = 0.5):
    vertices = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], float)
    return vertices, np.array([[0, 1, 2], [0, 2, 3]])


def test_plane_fragments_depth_and_barycentrics():
    vertices, faces = _quad()
    frags = rasterize(vertices, faces, FRONT, 64, backend="embree")
    fg = frags.foreground
    # the quad spans |x|,|y| <= 0.5 at depth 2: NDC half-width 0.5/(2 tan 30°) = 0.433 -> ~27.7 px of 64
    assert 0.18 < fg.mean() < 0.2
    np.testing.assert_allclose(frags.depth[fg], 2.0, atol=1e-6)
    assert np.isinf(frags.depth[~fg]).all() and (frags.face_ids[~fg] == -1).all()
    np.testing.assert_allclose(frags.bary[fg].sum(-1), 1.0, atol=1e-6)
    # barycentric interpolation of the corners reproduces the hit point
    corners = vertices[faces[frags.face_ids[fg]]]
    np.testing.assert_allclose(np.einsum("pk,pkd->pd", frags.bary[fg], corners), frags.points[fg], atol=1e-5)
    # pixel centres: the hit point projects back onto its pixel centre
    rows, cols = np.nonzero(fg)
    pixels = FRONT.project_pixels(frags.points[fg].astype(np.float64), 64)
    np.testing.assert_allclose(pixels[:, 0], cols + 0.5, atol=1e-3)
    np.testing.assert_allclose(pixels[:, 1], rows + 0.5, atol=1e-3)


def test_nearest_surface_wins():
    near, faces = _quad(z=0.5, half=0.2)
    far, _ = _quad(z=-0.5, half=0.6)
    vertices = np.concatenate([near, far])
    frags = rasterize(vertices, np.concatenate([faces, faces + 4]), FRONT, 32)
    centre = frags.face_ids[16, 16]
    assert centre in (0, 1) and frags.depth[16, 16] == pytest.approx(1.5, abs=1e-5)
    assert frags.face_ids[1, 16] == -1 or frags.face_ids[1, 16] >= 2  # outside the small quad: far one or nothing


def test_sphere_silhouette_matches_analytic_disc():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    size = 256
    frags = rasterize(sphere.vertices, sphere.faces, FRONT, size)
    # the silhouette of a sphere of radius r at distance d is a disc of angular radius asin(r/d)
    ndc_radius = np.tan(np.arcsin(0.5 / 2.0)) / np.tan(np.deg2rad(30))
    expected = np.pi * (ndc_radius * size / 2) ** 2 / size**2
    assert frags.foreground.mean() == pytest.approx(expected, rel=0.02)


def test_mesh_without_faces_and_bad_indices_are_rejected():
    with pytest.raises(ValueError, match="no faces"):
        rasterize(np.random.rand(10, 3), np.zeros((0, 3), int), FRONT, 16)
    with pytest.raises(ValueError, match="face indices"):
        rasterize(np.random.rand(3, 3), np.array([[0, 1, 7]]), FRONT, 16)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        rasterize(np.random.rand(3, 2), np.array([[0, 1, 2]]), FRONT, 16)


def test_phong_normal_render_white_background_and_valid_region():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    frags = rasterize(sphere.vertices, sphere.faces, FRONT, 128)
    image = to_uint8(phong_shade(frags, sphere.vertices, sphere.faces, normal_colors(sphere.vertices, sphere.faces),
                                 FRONT, np.array([0.0, 0.0, 3.0])))
    assert (image[~frags.foreground] == 255).all()
    np.testing.assert_array_equal(valid_region_from_render(image), frags.foreground)
    # the centre faces the camera: normal (0,0,1) -> colour (0.5,0.5,1) * (ambient 0.5 + diffuse 0.3) + specular 0.2
    centre = image[64, 64].astype(float) / 255
    np.testing.assert_allclose(centre, np.array([0.5, 0.5, 1.0]) * 0.8 + 0.2, atol=0.03)


def test_vertex_normals_point_outwards_and_xyz_colors_range():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    normals = vertex_normals(sphere.vertices, sphere.faces)
    assert (np.einsum("ij,ij->i", normals, sphere.vertices) > 0.99).all()
    colors = xyz_colors(sphere.vertices)
    np.testing.assert_allclose(colors.min(0), 0.1, atol=1e-6)
    np.testing.assert_allclose(colors.max(0), 0.9, atol=1e-6)


def test_point_cloud_nearest_point_map():
    points = np.array([[0.0, 0.0, 0.3], [0.0, 0.0, -0.3], [0.4, 0.0, 0.0]])
    render = render_point_cloud(points, FRONT, 101, radius=0.05)
    # points 0 and 1 overlap in the image centre: the one nearer to the camera (+z) owns the pixel
    assert render.point_ids[50, 50] == 0
    col, row, _ = FRONT.project_pixels(points[2], 101)
    assert render.point_ids[int(row), int(col)] == 2
    assert (render.image[render.point_ids < 0] == 1.0).all()
    covered = (render.point_ids >= 0).sum()
    assert covered > 0 and (render.point_ids == 1).sum() == 0  # fully hidden behind point 0 (same radius)


@pytest.mark.skipif(importlib.util.find_spec("pytorch3d") is None, reason="pytorch3d not installed (optional GPU accelerator)")
def test_embree_matches_pytorch3d():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.6)
    camera = ViewSpec("v", 2.0, 45.0, 315.0, 0.0, 0.3).camera()
    a = rasterize(sphere.vertices, sphere.faces, camera, 128, backend="embree")
    b = rasterize(sphere.vertices, sphere.faces, camera, 128, backend="pytorch3d")
    assert (a.face_ids == b.face_ids).mean() > 0.995
    same = (a.face_ids == b.face_ids) & a.foreground
    np.testing.assert_allclose(a.bary[same], b.bary[same], atol=1e-3)
    np.testing.assert_allclose(a.depth[same], b.depth[same], atol=1e-4)
