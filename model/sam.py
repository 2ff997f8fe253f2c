"""SAM on transformers' classes: pixel preprocessing, multi-view mask decoding, and the view-embedding cache.

The human-contact SAM inputs are the same 4 renders for every query, so their image embeddings are computed once per
(renders, SAM encoder weights) and reused from memory or disk: with a cache present, hcontact inference never runs
the (ViT-H: 632M-parameter) image encoder. Object renders are cached per mesh the same way.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import SamModel

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def resize_longest_side(height: int, width: int, target: int) -> tuple[int, int]:
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_preprocess(images: np.ndarray | list[np.ndarray], image_size: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """RGB uint8 images → ``[N, 3, S, S]`` float: resize longest side to S (bilinear), normalise, pad bottom/right.

    Returns the resized ``(h, w)`` of each image, needed to crop the padding off the predicted masks.
    """
    batch, sizes = [], []
    for image in images:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"SAM input must be an RGB uint8 image [H, W, 3], got {image.shape} {image.dtype}")
        h, w = resize_longest_side(*image.shape[:2], image_size)
        if (h, w) != image.shape[:2]:
            image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
        tensor = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)
        tensor = (tensor - torch.tensor(SAM_PIXEL_MEAN)[:, None, None]) / torch.tensor(SAM_PIXEL_STD)[:, None, None]
        batch.append(F.pad(tensor, (0, image_size - w, 0, image_size - h)))
        sizes.append((h, w))
    return torch.stack(batch), sizes


def postprocess_masks(low_res: torch.Tensor, input_size: tuple[int, int], image_size: int, out_size: tuple[int, int]) -> torch.Tensor:
    """``[N, h, w]`` decoder logits → ``[N, *out_size]``: upsample to the SAM input, crop the padding, resize."""
    masks = F.interpolate(low_res[:, None].float(), (image_size, image_size), mode="bilinear", align_corners=False)
    masks = masks[..., : input_size[0], : input_size[1]]
    if tuple(masks.shape[-2:]) != tuple(out_size):
        masks = F.interpolate(masks, out_size, mode="bilinear", align_corners=False)
    return masks[:, 0]


def decode_views(
    sam: SamModel,
    image_embeddings: torch.Tensor,
    view_prompts: torch.Tensor,
    per_view_tokens: bool = False,
) -> torch.Tensor:
    """Decode V views for B queries: ``image_embeddings [B, V, C, h, w]``, ``view_prompts [B, V, C]`` → ``[B, V, 4h, 4w]``.

    Released models: every view's decoder sees all V view-conditioned tokens (spec §1.6; the original relies on a
    broadcast inside SAM). ``per_view_tokens`` gives view v only its own token.
    """
    batch, views, channels, height, width = image_embeddings.shape
    if view_prompts.shape != (batch, views, channels):
        raise ValueError(f"view prompts must be [B={batch}, V={views}, C={channels}], got {tuple(view_prompts.shape)}")
    if per_view_tokens:
        sparse = view_prompts.reshape(batch * views, 1, 1, channels)
    else:
        sparse = view_prompts[:, None].expand(batch, views, views, channels).reshape(batch * views, 1, views, channels)
    flat = image_embeddings.reshape(batch * views, channels, height, width)
    positional = sam.get_image_wide_positional_embeddings().to(flat.dtype).expand(batch * views, -1, -1, -1)
    dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).to(flat.dtype).expand(batch * views, -1, height, width)
    masks, _ = sam.mask_decoder(
        image_embeddings=flat, image_positional_embeddings=positional, sparse_prompt_embeddings=sparse.to(flat.dtype),
        dense_prompt_embeddings=dense, multimask_output=False,
    )
    return masks[:, 0, 0].reshape(batch, views, *masks.shape[-2:])


def encoder_fingerprint(sam: SamModel) -> str:
    """Cheap identity of the SAM image-encoder weights (config + per-tensor sums and a few values)."""
    digest = hashlib.sha256(json.dumps(sam.config.vision_config.to_dict(), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, param in sorted(sam.vision_encoder.state_dict().items()):
            flat = param.detach().reshape(-1).double()
            stats = torch.stack([flat.sum(), (flat * flat).sum(), flat[:4].sum(), flat[-4:].sum()])
            digest.update(name.encode())
            digest.update(stats.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class ViewEmbeddingCache:
    """SAM image embeddings of fixed renders, in memory and (optionally) on disk as safetensors keyed by a hash of the
    render pixels and the encoder weights, so a stale entry can never be served."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, torch.Tensor] = {}
        self._keys: dict[tuple[int, str], tuple[weakref.ref, int, str]] = {}  # hash each render tensor once
        self.encoder_runs = 0  # how often the encoder actually ran (tests and benchmarks read this)

    @staticmethod
    def key(pixel_values: torch.Tensor, fingerprint: str) -> str:
        digest = hashlib.sha256(fingerprint.encode())
        digest.update(pixel_values.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()[:24]

    def get(self, sam: SamModel, pixel_values: torch.Tensor, fingerprint: str) -> torch.Tensor:
        """``[V, 3, S, S]`` preprocessed renders → ``[V, C, h, w]`` embeddings (no gradient: the encoder is frozen).

        Entries stay on the device and in the dtype of the encoder; hashing the renders (~90 ms at 4×1024²) happens
        once per render tensor, not per query.
        """
        known = self._keys.get((id(pixel_values), fingerprint))
        if known is not None and known[0]() is pixel_values and known[1] == pixel_values._version:
            key = known[2]
        else:  # new tensor, or modified in place, or a recycled id: hash the pixels
            key = self.key(pixel_values, fingerprint)
            self._keys[(id(pixel_values), fingerprint)] = (weakref.ref(pixel_values), pixel_values._version, key)
        if key in self._memory:
            return self._memory[key]
        param = next(sam.vision_encoder.parameters())
        path = self.cache_dir / f"{key}.safetensors" if self.cache_dir is not None else None
        if path is not None and path.is_file():
            embeddings = load_file(str(path))["embeddings"]
        else:
            with torch.no_grad():  # one view at a time: global-attention blocks of ViT-H need ~0.5 GiB per view
                embeddings = torch.cat([sam.get_image_embeddings(view[None].to(param.device, param.dtype))
                                        for view in pixel_values]).float().cpu()
            self.encoder_runs += 1
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                save_file({"embeddings": embeddings.contiguous()}, str(tmp))
                tmp.replace(path)
        embeddings = embeddings.to(param.device, param.dtype)
        self._memory[key] = embeddings
        return embeddings

    def clear_memory(self) -> None:
        self._memory.clear()
        self._keys.clear()

    def save_to(self, directory: str | Path) -> list[Path]:
        """Write every in-memory entry to ``directory`` (shipping a model with its embeddings precomputed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for key, embeddings in self._memory.items():
            paths.append(directory / f"{key}.safetensors")
            save_file({"embeddings": embeddings.float().cpu().contiguous()}, str(paths[-1]))
        return paths
