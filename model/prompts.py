"""From the LM's hidden state to the per-view SAM prompts: seg-token gather, ``text_hidden_fcs``, camera encoders,
attention splitter. Module and parameter names follow the released checkpoints where known, so the
converter's key map stays a rename table.
"""

from __future__ import annotations

import torch
from torch import nn


class SegBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the seg embeddings of a batch (``InteractVLMConfig.seg_batch_norm``). A training batch with a
    single seg token has no spread to measure: it is normalised with the running statistics, as at inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < 2:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                                            self.eps)
        return super().forward(x)


def build_text_hidden_fcs(hidden_size: int, out_dim: int, batch_norm: bool = False) -> nn.Sequential:
    """LISA's projection ``Linear(H,H) → ReLU → Linear(H,out) → Dropout(0)``, applied only to gathered positions;
    ``batch_norm`` appends :class:`SegBatchNorm` (index 4, so the released checkpoints' keys are unchanged)."""
    layers = [nn.Linear(hidden_size, hidden_size), nn.ReLU(inplace=True), nn.Linear(hidden_size, out_dim), nn.Dropout(0.0)]
    return nn.Sequential(*layers, *([SegBatchNorm(out_dim)] if batch_norm else []))


def seg_positions(input_ids: torch.Tensor, seg_token_ids: list[int] | tuple[int, ...]) -> torch.Tensor:
    """``[K, 2]`` (batch, position) of the hidden states that *predict* a seg token (the position before it).

    This is the original's off-by-one (inherited from LISA), kept because the released ``text_hidden_fcs`` were
    trained on it: the gathered hidden state is the one whose next-token prediction is ``[SEG]``. ``input_ids``
    already holds one token per image feature, so no image-length shift is needed.
    """
    is_seg = torch.zeros_like(input_ids, dtype=torch.bool)
    for token_id in seg_token_ids:
        is_seg |= input_ids == token_id
    is_seg[:, 0] = False  # a seg token at position 0 has no predecessor
    batch, position = torch.nonzero(is_seg, as_tuple=True)
    return torch.stack([batch, position - 1], dim=1)


def _xavier(module: nn.Module, gain: float = 1.0) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight, gain=gain)
            nn.init.zeros_(layer.bias)


class SimpleCamEncoder(nn.Module):
    """``simple``: ``Linear(5, D) + ReLU``, added to the embedding."""

    def __init__(self, out_dim: int, num_views: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(5, out_dim), nn.ReLU())
        _xavier(self)

    def forward(self, embedding: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        return embedding[:, None, :] + self.encoder(cameras)[None]


class ViewIndexCamEncoder(nn.Module):
    """``view_index``: shared ``Linear(5,D)-ReLU-Linear(D,D)-Sigmoid``, then a per-view ``Linear(D,D)``; multiplied."""

    def __init__(self, out_dim: int, num_views: int) -> None:
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(5, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim), nn.Sigmoid())
        self.view_layers = nn.ModuleList(nn.Linear(out_dim, out_dim) for _ in range(num_views))
        _xavier(self)

    def forward(self, embedding: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        shared = self.shared(cameras)
        gates = torch.stack([layer(shared[v]) for v, layer in enumerate(self.view_layers)])
        return embedding[:, None, :] * gates[None]


class VIv1CamEncoder(nn.Module):
    """``vi_v1`` (every released model): shared ``Linear(5,128)-ReLU-Linear(128,128)-ReLU``, per-view
    ``Linear(128,D)``, ``Sigmoid``: a learned per-view gate ``g_v`` and ``e_v = h ⊙ g_v``."""

    def __init__(self, out_dim: int, num_views: int, hidden: int = 128) -> None:
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.view_layers = nn.ModuleList(nn.Linear(hidden, out_dim) for _ in range(num_views))
        _xavier(self)

    def forward(self, embedding: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        shared = self.shared(cameras)
        gates = torch.sigmoid(torch.stack([layer(shared[v]) for v, layer in enumerate(self.view_layers)]))
        return embedding[:, None, :] * gates[None]


class NoCamEncoder(nn.Module):
    """``none``: the same embedding for every view."""

    def __init__(self, out_dim: int, num_views: int) -> None:
        super().__init__()
        self.num_views = num_views

    def forward(self, embedding: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        return embedding[:, None, :].expand(-1, cameras.shape[0], -1)


CAM_ENCODERS: dict[str, type[nn.Module]] = {
    "none": NoCamEncoder, "simple": SimpleCamEncoder, "view_index": ViewIndexCamEncoder, "vi_v1": VIv1CamEncoder,
}


def build_cam_encoder(kind: str, out_dim: int, num_views: int) -> nn.Module:
    try:
        return CAM_ENCODERS[kind](out_dim, num_views)
    except KeyError:
        raise ValueError(f"unknown camera encoder {kind!r}; known: {sorted(CAM_ENCODERS)}") from None


class AttentionSplitter(nn.Module):
    """Joint human+object model: attention across the V view tokens with separate human / object queries and shared
    keys/values; ``[HSEG]`` takes the human output, ``[OSEG]`` the object output. As in the original's module there
    is no residual connection: the prompt is the projected attention output alone (released joint checkpoints
    depend on that). Our names map to the original's ``input_proj``, ``query_human``, ``query_object``, ``key``,
    ``value``, ``output_proj`` (``model.convert_official``).
    """

    def __init__(self, dim: int, inner: int = 128) -> None:
        super().__init__()
        self.in_proj = nn.Linear(dim, inner)
        self.human_query = nn.Linear(inner, inner)
        self.object_query = nn.Linear(inner, inner)
        self.key = nn.Linear(inner, inner)
        self.value = nn.Linear(inner, inner)
        self.out_proj = nn.Linear(inner, dim)
        self.scale = inner**-0.5
        _xavier(self, gain=0.1)

    def forward(self, views: torch.Tensor, is_object: torch.Tensor) -> torch.Tensor:
        """``views [n, V, D]``, ``is_object [n]`` bool → ``[n, V, D]``."""
        x = self.in_proj(views)
        query = torch.where(is_object[:, None, None], self.object_query(x), self.human_query(x))
        attn = torch.softmax(query @ self.key(x).transpose(1, 2) * self.scale, dim=-1)
        return self.out_proj(attn @ self.value(x))
