"""Render the SAM inputs and lifting maps of a template under a view set (the original ships these only as a download).

Examples::

    python -m preprocess_data.render_views --template synthbody --view-set 4MV-Z_Vitru --sizes 1024 256
    python -m preprocess_data.render_views --template smplh --body-model-dir data/body_models --official-format
    python -m preprocess_data.render_views --mesh path/to/object_mesh.obj --view-set 4MV-Z_HM_BM --output-dir out/obj
    python -m preprocess_data.render_views --point-cloud cloud.npy --view-set 4MV-Z_HM --point-radius 0.05
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from utils.geometry.mesh_io import load_mesh_file, load_point_cloud_file
from utils.geometry.normalize import normalize_mesh_vertices, normalize_point_cloud
from utils.geometry.template_views import render_template
from utils.geometry.views import VIEW_SETS, get_view_set
from utils.paths import REPO_ROOT



def default_output_dir(template: str, view_set: str) -> Path:
    return REPO_ROOT / "data" / "templates" / template / view_set


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--template", choices=["synthbody", "smpl", "smplh", "smplx"], help="canonical body model")
    source.add_argument("--mesh", type=Path, help="object mesh (obj/ply/glb…), normalised like PICO meshes")
    source.add_argument("--point-cloud", type=Path, help="object point cloud, normalised like PIAD clouds")
    parser.add_argument("--view-set", default=None, help=f"one of {sorted(VIEW_SETS)} (default: 4MV-Z_Vitru for bodies, 4MV-Z_HM_BM for meshes, 4MV-Z_HM for point clouds)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 256])
    parser.add_argument("--body-model-dir", type=Path, default=None, help="folder with smpl/, smplh/, smplx/, synthbody/")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--point-radius", type=float, default=0.05, help="NDC radius of rendered points (PIAD 0.05, LEMON 0.03)")
    parser.add_argument("--official-format", action="store_true", help="also write pixel_to_vertex_map_*/bary_coords_map_* npz")
    parser.add_argument("--backend", choices=["embree", "pytorch3d"], default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    if args.template:
        from utils.body_models import canonical_mesh, default_body_model_dir

        mesh = canonical_mesh(args.template, args.body_model_dir or default_body_model_dir())
        kind, name, vertices, faces = "body", args.template, np.asarray(mesh.vertices), np.asarray(mesh.faces)
        view_set = get_view_set(args.view_set or "4MV-Z_Vitru")
    elif args.mesh:
        raw_vertices, faces = load_mesh_file(args.mesh)
        kind, name, vertices = "object", args.mesh.stem, normalize_mesh_vertices(raw_vertices)
        view_set = get_view_set(args.view_set or "4MV-Z_HM_BM")
    else:
        kind, name = "pointcloud", args.point_cloud.stem
        vertices, faces = normalize_point_cloud(load_point_cloud_file(args.point_cloud)), None
        view_set = get_view_set(args.view_set or "4MV-Z_HM")

    output_dir = args.output_dir or default_output_dir(name, view_set.name)
    render_template(output_dir, view_set, args.sizes, kind=kind, vertices=vertices, faces=faces, name=name,
                    point_radius=args.point_radius, official_format=args.official_format, backend=args.backend,
                    overwrite=args.overwrite)
    print(f"wrote {output_dir}")
    return output_dir


if __name__ == "__main__":
    main()
