"""3D → 2D → 3D round trip on the synthetic body: how much of a contact label survives masks + lifting.

    python -m bench.roundtrip            # sizes 1024 and 256, min_vertices 2 and 3

Labels are blob-shaped contact regions (1–3 balls of 5–20 cm) plus a whole hand + foot set; masks are made with the
``min_vertices`` rule, turned into confident logits (±20) and lifted with the soft rule; IoU is measured on the
vertices visible in at least one view (the others cannot be recovered by any lifting).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from utils.body_models import canonical_mesh, default_body_model_dir, load_part_segmentation
from model.lifting import Lifter
from utils.geometry.projection import contact_masks, visible_vertices
from utils.geometry.template_views import load_template, render_template
from utils.geometry.views import get_view_set


def contact_sets(vertices: np.ndarray, seed: int = 0, count: int = 8) -> np.ndarray:
    """``[count + 1, N]`` bool contact labels on the synthetic body."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        labels = np.zeros(len(vertices), bool)
        for _ in range(rng.integers(1, 4)):
            centre = vertices[rng.integers(len(vertices))]
            labels |= np.linalg.norm(vertices - centre, axis=1) < rng.uniform(0.05, 0.2)
        sets.append(labels)
    seg = load_part_segmentation(default_body_model_dir() / "synthbody" / "synthbody_segmentation.json")
    sets.append(np.isin(np.arange(len(vertices)), np.concatenate([seg["left hand"], seg["right foot"]])))
    return np.stack(sets)


def round_trip_ious(maps, labels: np.ndarray, min_vertices: int) -> np.ndarray:
    visible = visible_vertices(maps)
    masks = contact_masks(labels, maps, min_vertices=min_vertices).astype(np.float32)
    lifted = Lifter(maps)(torch.from_numpy(masks * 40 - 20)).numpy() > 0.5
    return np.array([(p & l & visible).sum() / ((p | l) & visible).sum() for p, l in zip(lifted, labels)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 256])
    args = parser.parse_args(argv)
    body = canonical_mesh("synthbody", default_body_model_dir())
    labels = contact_sets(np.asarray(body.vertices))
    with tempfile.TemporaryDirectory() as folder:
        render_template(folder, get_view_set("4MV-Z_Vitru"), args.sizes, kind="body", vertices=body.vertices,
                        faces=body.faces, name="synthbody")
        for size in args.sizes:
            maps = load_template(folder, size).maps
            print(f"{size}x{size}: {visible_vertices(maps).mean():.1%} of vertices visible in some view")
            for min_vertices in (2, 3):
                ious = round_trip_ious(maps, labels, min_vertices)
                print(f"  min_vertices={min_vertices}: IoU mean {ious.mean():.3f}, min {ious.min():.3f} over {len(ious)} label sets")


if __name__ == "__main__":
    main()
