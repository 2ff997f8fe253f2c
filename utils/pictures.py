"""Every overlay and picture the demo and the evaluation draw, in one place.

Masks blended on photos and on template renders, the 2×2 view grids, side-by-side panels, the contact colours of
meshes and probability maps as grey images. Pure numpy / OpenCV on ``uint8`` RGB arrays ``[H, W, 3]``: this module
is on the ground floor and imports nothing from the model, the datasets or the demo.

Masks are always booleans: callers threshold *probabilities* (the sigmoid of the mask logits) at the same threshold
as the per-vertex contact, so a picture shows what the numbers say. The original's demo thresholded raw logits for
its overlays while lifting probabilities, so its pictures and its numbers disagreed.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from utils.metrics import sigmoid

CONTACT_RGB = (255, 0, 0)  # contact on the photo (2D) and on coloured meshes
CONTACT_RGBA = (*CONTACT_RGB, 255)
NO_CONTACT_RGBA = (204, 204, 204, 255)  # grey 0.8, as the original's meshes
VIEW_CONTACT_RGB = (255, 38, 25)  # predicted contact on the template renders
TRUTH_RGB = (40, 170, 60)  # ground truth, in the evaluation's panels
GAP_PIXELS = 8  # white gap between the pictures of a side-by-side image


def blend_mask(image: np.ndarray, mask: np.ndarray, color: Sequence[int], alpha: float = 0.5) -> np.ndarray:
    """A copy of the uint8 RGB ``image`` with the ``mask`` pixels blended towards ``color`` (every overlay we draw)."""
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    return out.astype(np.uint8)


def overlay_views(overlays: np.ndarray, masks: np.ndarray, valid: np.ndarray | None = None,
                  color: Sequence[int] = VIEW_CONTACT_RGB, alpha: float = 0.5) -> np.ndarray:
    """2×2 grid (topfront | bottomfront / topback | bottomback) of the renders ``overlays [V,H,W,3]`` with
    ``masks [V,H,W]`` (bool, restricted to ``valid`` pixels when given) blended in ``color``; an odd view count is
    padded with a white view."""
    views = [blend_mask(overlays[v], masks[v] if valid is None else masks[v] & valid[v], color, alpha)
             for v in range(len(overlays))]
    while len(views) % 2:
        views.append(np.full_like(views[0], 255))
    rows = [np.concatenate(views[i: i + 2], axis=1) for i in range(0, len(views), 2)]
    return np.concatenate(rows, axis=0)


def photo_overlay(photo: np.ndarray, probs: np.ndarray, threshold: float, alpha: float = 0.6) -> np.ndarray:
    """Contact pixels (``probs >= threshold``) of a 2D prediction blended red at ``alpha`` (the original's 2D
    overlay). ``probs`` must have the photo's size."""
    if probs.shape != photo.shape[:2]:
        raise ValueError(f"mask {probs.shape} does not match the photo {photo.shape[:2]}")
    return blend_mask(photo, probs >= threshold, CONTACT_RGB, alpha)


def _to_height(image: np.ndarray, height: int, upscale_interpolation: int) -> np.ndarray:
    if image.shape[0] == height:
        return image
    scale = height / image.shape[0]
    interpolation = cv2.INTER_AREA if scale < 1 else upscale_interpolation
    return cv2.resize(image, (max(1, int(round(image.shape[1] * scale))), height), interpolation=interpolation)


def side_by_side(photo: np.ndarray, grids: list[np.ndarray]) -> np.ndarray:
    """The demo's combined picture: the photo resized to the grids' height, then the grids, with white gaps."""
    height = max(g.shape[0] for g in grids)
    parts = []
    for image in [photo, *grids]:
        parts += [_to_height(image, height, cv2.INTER_LINEAR), np.full((height, GAP_PIXELS, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def qualitative_panel(image: np.ndarray, overlays: np.ndarray, pred_masks: np.ndarray, gt_masks: np.ndarray | None,
                      valid: np.ndarray | None = None) -> np.ndarray:
    """Evaluation of a 3D sample: input photo | predicted contact (2×2 views) | ground truth (2×2 views, green),
    all at the grid's height."""
    pred = overlay_views(overlays, pred_masks, valid)
    height = pred.shape[0]
    scale = height / image.shape[0]
    photo = cv2.resize(image, (max(1, int(round(image.shape[1] * scale))), height), interpolation=cv2.INTER_AREA)
    parts = [photo, pred]
    if gt_masks is not None:
        parts.append(overlay_views(overlays, gt_masks, valid, color=TRUTH_RGB))
    return np.concatenate(parts, axis=1)


def photo_panel(image: np.ndarray, pred_logits: np.ndarray, gt: np.ndarray, threshold: float) -> np.ndarray:
    """Evaluation of a 2D sample: photo | prediction (red) | ground truth (green), at the mask's size."""
    height, width = gt.shape
    photo = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    truth = blend_mask(photo, gt == 1, TRUTH_RGB, alpha=0.6)
    return np.concatenate([photo, photo_overlay(photo, sigmoid(pred_logits), threshold), truth], axis=1)


def vertex_colors(probs: np.ndarray, threshold: float) -> np.ndarray:
    """RGBA per vertex: contact (``probs >= threshold``) red, the rest grey."""
    colors = np.tile(np.asarray(NO_CONTACT_RGBA, np.uint8), (len(probs), 1))
    colors[probs >= threshold] = CONTACT_RGBA
    return colors


def probability_image(probs: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as an 8-bit grey image (255 = probability 1)."""
    return np.round(np.clip(probs, 0, 1) * 255).astype(np.uint8)


def encode_png(image: np.ndarray, what: str = "image") -> bytes:
    """PNG bytes of an RGB ``[H, W, 3]`` or grey ``[H, W]`` uint8 image."""
    pixels = np.ascontiguousarray(image[..., ::-1] if image.ndim == 3 else image)
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise OSError(f"could not encode {what} as PNG")
    return data.tobytes()
