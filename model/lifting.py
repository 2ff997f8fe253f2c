"""2D view logits ``[B, V, H, W]`` → per-vertex values ``[B, N]``, as one precomputed sparse operator: the model's last
layer (it produces ``vertex_probs`` with gradients), hence in ``model/``; the pixel→triangle maps it is built from
are projection geometry and stay in ``utils.geometry.lifting_maps``.

The original loops over samples, views and the three barycentric slots with scatter-adds and copies ~100 MB of maps
to the device on every call. Every lifting rule it uses is a ratio of barycentric-weighted sums over the pixels that
see a vertex, i.e. sparse matrix–vector products with a matrix that depends only on the template and the cameras.
We build those matrices once (CSR, held as non-persistent buffers so ``.to(device)`` moves them) and apply them to the
whole batch in one product, gathering only the foreground pixels. Gradients flow to the logits through the
transposed matrix.

Modes (``soft``, ``hard`` and ``legacy`` are the original's rules, ``smooth`` is ours):

* ``soft`` — human contact of the fixed released models (the original's ``HumanContact3DPredictor`` since its fix
  commit 79b4bf2): per view the barycentric-weighted mean of ``sigmoid(clamp(z, ±20))`` over all pixels touching a
  vertex, averaged over the views that see it; linear in the probabilities, fully differentiable. With
  ``input_is_logits=False`` the same rule lifts probabilities directly, which with K=1 maps is the point-cloud rule
  (the original's ``ObjectPCAfford3DPredictor``).
* ``hard`` — object meshes (the original's ``ObjectMeshContact3DPredictor``): only pixels with ``p > threshold``
  take part, views averaged over those where the vertex received a selected pixel. The selection is not
  differentiable (as in the original).
* ``smooth`` — the differentiable version of ``hard``: the selection becomes ``sigmoid((p − threshold)/temperature)``.
* ``legacy`` — the original's human rule before that fix (its ``HumanContact3DPredictor`` at commit ea51617), for
  checkpoints trained with it: pixels with raw logit > threshold add their barycentric weights to their vertices and
  a count of 1, summed over views; a vertex is in contact when weight/count > threshold. Binary output, no gradient.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from utils.geometry.lifting_maps import LiftingMaps

LiftMode = Literal["soft", "hard", "smooth", "legacy"]
LOGIT_CLAMP = 20.0


class _SparseMatmul(torch.autograd.Function):
    """``matrix @ dense`` whose backward is ``matrix_t @ grad``; CSR transposes are precomputed, not derived."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, matrix_t: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.matrix_t = matrix_t
        return matrix @ dense

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, None, ctx.matrix_t @ grad


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A CSR matrix and its transpose (duplicates summed)."""
    coo = sp.coo_matrix((values.astype(np.float32), (rows, cols)), shape=shape)
    out = []
    for m in (coo.tocsr(), coo.T.tocsr()):
        m.sum_duplicates()
        m.sort_indices()
        with warnings.catch_warnings():  # "CSR support is in beta": the subset we use (CSR @ dense) is stable
            warnings.simplefilter("ignore", UserWarning)
            out.append(
                torch.sparse_csr_tensor(
                    torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices.astype(np.int64)),
                    torch.from_numpy(m.data.astype(np.float32)), size=m.shape, check_invariants=False,
                )
            )
    return out[0], out[1]


class Lifter(nn.Module):
    """Lift per-view 2D maps to per-vertex values with one of the rules in the module docstring."""

    def __init__(
        self,
        maps: LiftingMaps,
        mode: LiftMode = "soft",
        *,
        input_is_logits: bool = True,
        threshold: float = 0.3,
        temperature: float = 0.05,
    ) -> None:
        super().__init__()
        if mode not in ("soft", "hard", "smooth", "legacy"):
            raise ValueError(f"unknown lifting mode {mode!r}; use soft, hard, smooth or legacy")
        if mode == "legacy" and not input_is_logits:
            raise ValueError("the legacy rule thresholds raw logits; it needs input_is_logits=True")
        self.mode = mode
        self.input_is_logits = input_is_logits
        self.threshold = threshold
        self.temperature = temperature
        self.num_vertices = maps.num_vertices
        self.num_views = maps.num_views
        self.image_size = maps.image_size
        self.source = maps.source

        num_views, height, width, slots = maps.vertex_ids.shape
        fg = (maps.vertex_ids >= 0).all(axis=-1).reshape(-1)  # over V*H*W, view-major
        pixel_index = np.flatnonzero(fg)
        self.num_foreground = len(pixel_index)
        self.register_buffer("pixel_index", torch.from_numpy(pixel_index.astype(np.int64)), persistent=False)

        ids = maps.vertex_ids.reshape(-1, slots)[pixel_index].astype(np.int64)  # [P, K]
        weights = maps.weights.reshape(-1, slots)[pixel_index].astype(np.float64)  # [P, K]
        view = pixel_index // (height * width)
        cols = np.repeat(np.arange(len(pixel_index)), slots)
        n = self.num_vertices

        # D_v(i): total barycentric weight per (view, vertex); visible where > 0.
        denom = np.zeros((num_views, n))
        np.add.at(denom, (np.repeat(view, slots), ids.reshape(-1)), weights.reshape(-1))
        visible_views = (denom > 0).sum(axis=0)
        self.register_buffer("visible", torch.from_numpy(visible_views > 0), persistent=False)

        if mode == "soft":
            # One matrix: w_k(p) / (D_v(i) * #views seeing i); its product with probabilities is the final value.
            vertex = ids.reshape(-1)
            pix_view = np.repeat(view, slots)
            scale = denom[pix_view, vertex] * np.maximum(visible_views[vertex], 1)
            values = np.where(scale > 0, weights.reshape(-1) / np.where(scale > 0, scale, 1.0), 0.0)
            matrix, matrix_t = _csr(vertex, cols, values, (n, len(pixel_index)))
        elif mode in ("hard", "smooth"):
            # Block rows (view, vertex): per-view sums of selected weights and weighted probabilities.
            rows = np.repeat(view, slots) * n + ids.reshape(-1)
            matrix, matrix_t = _csr(rows, cols, weights.reshape(-1), (num_views * n, len(pixel_index)))
        else:  # legacy: weights and unit counts, summed over all views
            vertex = ids.reshape(-1)
            matrix, matrix_t = _csr(vertex, cols, weights.reshape(-1), (n, len(pixel_index)))
            counts, counts_t = _csr(vertex, cols, np.ones_like(weights.reshape(-1)), (n, len(pixel_index)))
            self.register_buffer("counts", counts, persistent=False)
            self.register_buffer("counts_t", counts_t, persistent=False)
        self.register_buffer("matrix", matrix, persistent=False)
        self.register_buffer("matrix_t", matrix_t, persistent=False)
        self._gather_key: tuple | None = None
        self._gather_index: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return (f"mode={self.mode}, views={self.num_views}, size={self.image_size}, vertices={self.num_vertices}, "
                f"foreground_pixels={self.num_foreground}")

    def _check(self, maps2d: torch.Tensor) -> None:
        expected = (self.num_views, *self.image_size)
        if maps2d.dim() != 4 or tuple(maps2d.shape[1:]) != expected:
            raise ValueError(
                f"lifting expects [B, {expected[0]}, {expected[1]}, {expected[2]}] view maps (maps from {self.source}), "
                f"got {tuple(maps2d.shape)}; mismatched map sizes: resize the masks to the maps' size or render maps "
                f"at {maps2d.shape[-1]} with `python -m preprocess_data.render_views --sizes {maps2d.shape[-1]}`"
            )

    def _gather(self, maps2d: torch.Tensor) -> torch.Tensor:
        """Foreground pixel values as ``[P, B]`` in one ``take`` (already in the layout the sparse product wants).

        The flat index depends on the batch size only; the last one is cached (about 8 bytes × P × B).
        """
        batch = maps2d.shape[0]
        key = (batch, maps2d.device)
        if self._gather_key != key:
            stride = self.num_views * self.image_size[0] * self.image_size[1]
            offsets = torch.arange(batch, device=maps2d.device) * stride
            self._gather_index = (self.pixel_index.to(maps2d.device)[:, None] + offsets[None, :]).reshape(-1)
            self._gather_key = key
        return torch.take(maps2d, self._gather_index).view(-1, batch).float()

    def _product(self, matrix: torch.Tensor, matrix_t: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``[P, B]`` → ``[rows, B]``."""
        return _SparseMatmul.apply(matrix, matrix_t, values)

    def forward(self, maps2d: torch.Tensor) -> torch.Tensor:
        """``[B, V, H, W]`` logits (or probabilities) → ``[B, N]`` per-vertex values in [0, 1]."""
        self._check(maps2d)
        values = self._gather(maps2d)  # [P, B]
        if self.mode == "legacy":
            selected = (values > self.threshold).float()
            weight_sum = self._product(self.matrix, self.matrix_t, selected)
            count = self._product(self.counts, self.counts_t, selected)
            ratio = torch.where(count > 0, weight_sum / count.clamp_min(1.0), torch.zeros_like(count))
            return (ratio > self.threshold).float().t()
        if not self.input_is_logits:
            probs = values
        elif torch.is_grad_enabled() and values.requires_grad:
            probs = torch.sigmoid(values.clamp(-LOGIT_CLAMP, LOGIT_CLAMP))
        else:  # inference: the gathered copy is ours, so work in place (saves two large allocations)
            probs = values.clamp_(-LOGIT_CLAMP, LOGIT_CLAMP).sigmoid_()
        if self.mode == "soft":
            return self._product(self.matrix, self.matrix_t, probs).clamp(0.0, 1.0).t()
        if self.mode == "hard":
            selected = (probs > self.threshold).to(probs.dtype)
        else:
            selected = torch.sigmoid((probs - self.threshold) / self.temperature)
        batch = maps2d.shape[0]
        numer = self._product(self.matrix, self.matrix_t, probs * selected).view(self.num_views, -1, batch)
        denom = self._product(self.matrix, self.matrix_t, selected).view(self.num_views, -1, batch)
        seen = denom > 0
        per_view = torch.where(seen, numer / torch.where(seen, denom, torch.ones_like(denom)), torch.zeros_like(denom))
        num_seen = seen.sum(dim=0)
        lifted = per_view.sum(dim=0) / num_seen.clamp_min(1)
        return torch.where(num_seen > 0, lifted, torch.zeros_like(lifted)).clamp(0.0, 1.0).t()
