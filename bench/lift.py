"""Lifting benchmark: our sparse operator against the original's loop, measured side by side in one run.

    python -m bench.lift                     # B=8, V=4, 1024², synthetic body (~7k vertices)
    python -m bench.lift --batch 2 --size 256 --repeats 2

Prints the max abs difference of the outputs (target ≤ 1e-5), both times and their ratio (target ≥ 20×), the
backward time of our operator, and the time to render the 4 views (Embree) of the template.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from model.lifting import LOGIT_CLAMP, Lifter
from utils.geometry.lifting_maps import LiftingMaps
from utils.geometry.raycast import rasterize
from utils.geometry.views import get_view_set


def reference_lift(logits: torch.Tensor, vertex_ids: torch.Tensor, bary: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """The original ``HumanContact3DPredictor`` (soft version): samples × views × 3 barycentric slots, scatter-adds."""
    batch, num_views = logits.shape[:2]
    outputs = []
    for b in range(batch):
        contact_sum = torch.zeros(num_vertices)
        view_count = torch.zeros(num_vertices)
        for v in range(num_views):
            probs = torch.sigmoid(logits[b, v].clamp(-LOGIT_CLAMP, LOGIT_CLAMP))
            ids, weights = vertex_ids[v], bary[v]
            valid = ((ids >= 0) & (ids < num_vertices)).all(dim=-1)
            p, ids, weights = probs[valid], ids[valid], weights[valid]
            numer = torch.zeros(num_vertices)
            denom = torch.zeros(num_vertices)
            for k in range(3):
                numer.scatter_add_(0, ids[:, k], weights[:, k] * p)
                denom.scatter_add_(0, ids[:, k], weights[:, k])
            seen = denom > 0
            contact_sum += torch.where(seen, numer / denom.clamp_min(1e-12), torch.zeros_like(numer))
            view_count += seen.float()
        lifted = torch.where(view_count > 0, contact_sum / view_count.clamp_min(1), torch.zeros_like(contact_sum))
        outputs.append(lifted.clamp(0, 1))
    return torch.stack(outputs)


def _time(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from utils.body_models import canonical_mesh, default_body_model_dir

    mesh = canonical_mesh("synthbody", default_body_model_dir())
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    view_set = get_view_set("4MV-Z_Vitru")
    start = time.perf_counter()
    fragments = [rasterize(vertices, faces, v.camera(), args.size) for v in view_set.render_views]
    render_s = time.perf_counter() - start
    maps = LiftingMaps.from_fragments(fragments, faces, len(vertices), view_set.view_names)
    start = time.perf_counter()
    lifter = Lifter(maps, "soft")
    build_s = time.perf_counter() - start

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(args.batch, view_set.num_views, args.size, args.size, generator=gen) * 4
    vertex_ids = torch.from_numpy(maps.vertex_ids.astype(np.int64))
    bary = torch.from_numpy(maps.weights)

    with torch.no_grad():
        ref_s, ref = _time(lambda: reference_lift(logits, vertex_ids, bary, maps.num_vertices), args.repeats)
        ours_s, ours = _time(lambda: lifter(logits), args.repeats)
    leaf = logits.clone().requires_grad_(True)
    start = time.perf_counter()
    lifter(leaf).sum().backward()
    fwd_bwd_s = time.perf_counter() - start

    result = {
        "vertices": len(vertices), "faces": len(faces), "batch": args.batch, "views": view_set.num_views, "size": args.size,
        "foreground_pixels": lifter.num_foreground, "threads": torch.get_num_threads(),
        "max_abs_diff": float((ours - ref).abs().max()), "reference_s": ref_s, "ours_s": ours_s,
        "speedup": ref_s / ours_s, "ours_forward_backward_s": fwd_bwd_s, "operator_build_s": build_s,
        "render_4_views_s": render_s,
    }
    print(f"template: synthetic body, {len(vertices)} vertices, {len(faces)} faces; B={args.batch}, V={view_set.num_views}, "
          f"{args.size}x{args.size}, {lifter.num_foreground} foreground pixels, {torch.get_num_threads()} threads")
    print(f"max |ours - reference|      : {result['max_abs_diff']:.2e}  (target <= 1e-5)")
    print(f"reference (original's loop) : {ref_s * 1e3:9.1f} ms")
    print(f"ours (sparse operator)      : {ours_s * 1e3:9.1f} ms   speed-up x{result['speedup']:.1f}  (target >= 20)")
    print(f"ours forward+backward       : {fwd_bwd_s * 1e3:9.1f} ms   operator build {build_s:.2f} s (once per template)")
    print(f"render 4 views at {args.size} (Embree): {render_s:.2f} s")
    return result


if __name__ == "__main__":
    main()
