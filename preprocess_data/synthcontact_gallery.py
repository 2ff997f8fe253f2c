"""Gallery of a SynthContact dataset: each sample's RGB image beside the canonical SynthBody seen from the four mask
views (topfront, bottomfront, topback, bottomback) with its contact vertices coloured per object (red, blue, green in
the order of the legend).

    python -m preprocess_data.synthcontact_gallery --data-dir data/synthcontact --output docs/synthcontact_gallery.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from datasets.io import load_pickle
from utils.geometry.raycast import rasterize
from utils.geometry.shading import phong_shade, to_uint8
from utils.paths import REPO_ROOT

OBJECT_COLORS = np.array([[0.9, 0.1, 0.1], [0.1, 0.35, 0.95], [0.1, 0.75, 0.2]])  # RGB
BODY_GREY = np.array([0.78, 0.78, 0.78])


def pick_samples(data_dir: Path, num: int) -> list[tuple[str, int, dict]]:
    """One training sample per pose family (preferring ones that touch two objects), then held-out samples (one per
    held-out combination) until ``num`` are chosen."""
    from preprocess_data.synthcontact_scene import POSE_FAMILIES

    def metas(split: str) -> list[tuple[int, dict]]:
        meta_file = data_dir / split / "meta.jsonl"
        if not meta_file.is_file():
            return []
        return [(i, json.loads(line)) for i, line in enumerate(meta_file.read_text().splitlines())]

    def touched(meta: dict) -> int:
        return sum(bool(o["contact_vertices"]) for o in meta["objects"])

    chosen: list[tuple[str, int, dict]] = []
    train = metas("train")
    for family in POSE_FAMILIES:
        candidates = [(i, m) for i, m in train if m["pose_family"] == family]
        if candidates:
            i, m = max(candidates, key=lambda c: (min(touched(c[1]), 2), -c[0]))
            chosen.append(("train", i, m))
    seen = set()
    for i, m in metas("test_heldout"):
        combo = (m["pose_family"], m["primary_object"])
        if combo not in seen and len(chosen) < num:
            seen.add(combo)
            chosen.append(("test_heldout", i, m))
    return chosen[:num]


GALLERY_VIEWS = ("topfront", "bottomfront", "topback", "bottomback")  # the 4MV-Z_Vitru_mv2 mask views


def body_views(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, size: int) -> list[np.ndarray]:
    """The canonical body from the mask view set's cameras, so soles and palms (seen from below) show too."""
    from utils.geometry.views import get_view_set

    view_set = get_view_set("4MV-Z_Vitru_mv2")
    views = []
    for view in view_set.views:
        if view.name not in GALLERY_VIEWS:
            continue
        camera = view.camera()
        frags = rasterize(vertices, faces, camera, size)
        views.append(to_uint8(phong_shade(frags, vertices, faces, colors, camera, view_set.light_location(view.name))))
    return views


def _letterbox(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = size / max(h, w)
    resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    out = np.full((size, size, 3), 255, dtype=np.uint8)
    y, x = (size - resized.shape[0]) // 2, (size - resized.shape[1]) // 2
    out[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    return out


def make_gallery(data_dir: str | Path, output: str | Path, num: int = 8, tile: int = 176, columns: int = 2,
                 body_model_dir: str | Path | None = None) -> Path:
    from utils.body_models import canonical_mesh, default_body_model_dir

    data_dir, output = Path(data_dir), Path(output)
    canon = canonical_mesh("synthbody", body_model_dir or default_body_model_dir())
    vertices, faces = np.asarray(canon.vertices), np.asarray(canon.faces)
    caption_h = 40
    cells = []
    for split, index, meta in pick_samples(data_dir, num):
        # restricted unpickler (plain containers and arrays only): a data folder's pickle could otherwise run code
        per_object = load_pickle(data_dir / split / "contact_label_objectwise.pkl",
                                 "a list (one per sample) of {object: [vertex ids]}")[index]
        colors = np.tile(BODY_GREY, (len(vertices), 1))
        legend = []
        for k, (name, ids) in enumerate(per_object.items()):
            colors[np.asarray(ids, dtype=np.int64)] = OBJECT_COLORS[k % len(OBJECT_COLORS)]
            legend.append((name, OBJECT_COLORS[k % len(OBJECT_COLORS)]))
        image = cv2.imread(str(data_dir / split / meta["imgname"]), cv2.IMREAD_COLOR)[..., ::-1]
        row = np.concatenate([_letterbox(image, tile)] + body_views(vertices, faces, colors, tile), axis=1)
        caption = np.full((caption_h, row.shape[1], 3), 255, dtype=np.uint8)
        title = f"{meta['stem']}  {meta['pose_family']}"
        cv2.putText(caption, title, (6, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x = 6
        for name, color in legend:
            bgr = tuple(int(c * 255) for c in color)
            cv2.rectangle(caption, (x, 22), (x + 12, 34), bgr, -1)
            cv2.putText(caption, name, (x + 16, 33), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
            x += 24 + 9 * len(name)
        cells.append(np.concatenate([caption, row], axis=0))
    if not cells:
        raise FileNotFoundError(f"{data_dir}: no SynthContact samples found (run python -m preprocess_data.synthcontact)")
    blank = np.full_like(cells[0], 255)
    while len(cells) % columns:
        cells.append(blank)
    pad = np.full((cells[0].shape[0], 8, 3), 255, dtype=np.uint8)
    rows = [np.concatenate(sum([[c, pad] for c in cells[i:i + columns]], [])[:-1], axis=1)
            for i in range(0, len(cells), columns)]
    grid = np.concatenate(rows, axis=0)
    output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(output), np.ascontiguousarray(grid[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return output


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data" / "synthcontact")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "synthcontact_gallery.png")
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--tile", type=int, default=176)
    parser.add_argument("--columns", type=int, default=2)
    args = parser.parse_args(argv)
    path = make_gallery(args.data_dir, args.output, args.num, args.tile, args.columns)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return path


if __name__ == "__main__":
    main()
