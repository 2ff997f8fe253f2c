"""SAM on transformers' classes: pixel preprocessing, multi-view mask decoding, and the view-embedding cache.

The human-contact SAM inputs are the same 4 renders for every query, so their image embeddings are computed once per
(renders, SAM encoder weights) and reused from memory or disk: with a cache present, hcontact inference never runs
the (ViT-H: 632M-parameter) image encoder. Object renders are cached per mesh the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers import SamConfig, SamModel
from transformers.models.sam.modeling_sam import SamAttention

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


def build_sam_model(config: SamConfig) -> SamModel:
    """``SamModel`` whose two-way blocks honour ``mask_decoder_config.attention_downsample_rate``.

    transformers builds each ``SamTwoWayAttentionBlock``'s cross-attentions with a fixed rate of 2 (only the final
    token→image attention reads the config), while segment-anything's ``TwoWayTransformer`` passes its rate to every
    block; a SAM trained with another rate would not even load. The block cross-attentions are rebuilt at the
    configured rate (a no-op for every released SAM, which uses 2).
    """
    sam = SamModel(config)
    decoder = config.mask_decoder_config
    rate = decoder.attention_downsample_rate
    if decoder.hidden_size % rate:
        raise ValueError(f"SAM mask decoder: hidden size {decoder.hidden_size} is not divisible by "
                         f"attention_downsample_rate {rate}")
    if rate != 2:
        for layer in sam.mask_decoder.transformer.layers:
            layer.cross_attn_token_to_image = SamAttention(decoder, downsample_rate=rate)
            layer.cross_attn_image_to_token = SamAttention(decoder, downsample_rate=rate)
    return sam


def decode_views(
    sam: SamModel,
    image_embeddings: torch.Tensor,
    view_prompts: torch.Tensor,
    per_view_tokens: bool = False,
) -> torch.Tensor:
    """Decode V views for B queries: ``image_embeddings [B, V, C, h, w]``, ``view_prompts [B, V, C]`` → ``[B, V, 4h, 4w]``.

    Released models: every view's decoder sees all V view-conditioned tokens (the original relies on a
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


CACHE_FORMAT = "interactvlm-view-embeddings-v2"  # part of every key: entries of older formats are never read
# config fields that describe the saved file rather than the encoder's computation
_VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "dtype", "torch_dtype", "architectures",
                         "output_attentions", "output_hidden_states", "return_dict", "id2label", "label2id")


def _stable_config(config) -> dict:
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    out = {}
    for key, value in data.items():
        if key in _VOLATILE_CONFIG_KEYS:
            continue
        out[key] = _stable_config(value) if isinstance(value, dict) else value
    return out


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The exact bytes of a tensor's values (any dtype, bf16 included), independent of its device and strides."""
    flat = tensor.detach().reshape(-1).contiguous().cpu()
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def encoder_fingerprint(sam: SamModel) -> str:
    """Exact identity of what the SAM image encoder computes: a sha256 of the vision config and, for every tensor of
    the encoder (sorted by name), its name, dtype, shape and raw bytes.

    An earlier version summed the weights in float64; the sum's reduction order depends on torch's thread count, so
    the key changed between 1 and 2 threads and a shipped cache never hit. Hashing bytes is exact: the same weights
    give the same key on any device, thread count and process, a bf16 copy of the weights a different one.
    """
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    digest.update(json.dumps(_stable_config(sam.config.vision_config), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in sorted(sam.vision_encoder.state_dict().items()):
            digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
            digest.update(tensor_bytes(tensor))
    return digest.hexdigest()[:32]


class ViewEmbeddingCache:
    """SAM image embeddings of fixed renders, in memory and on disk as safetensors keyed by an exact hash of the
    render pixels and the encoder (weights, dtype, config), so a stale entry can never be served.

    Disk lookups try ``cache_dir`` (written when the encoder has to run) and then ``read_dirs`` (read only: the
    ``view_embeddings/`` shipped in a model directory). Nothing is ever written into a ``read_dirs`` folder; shipping
    embeddings with a model is the explicit :meth:`save_to`. Each file also records its key, encoder fingerprint and
    dtype in the safetensors metadata, and a file whose metadata disagrees with the lookup is ignored.
    """

    def __init__(self, cache_dir: str | Path | None = None, read_dirs: tuple[str | Path, ...] | list = ()) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.read_dirs = [Path(d) for d in read_dirs]
        self._memory: dict[str, torch.Tensor] = {}
        self._meta: dict[str, dict[str, str]] = {}
        self._keys: dict[tuple[int, str], tuple[weakref.ref, int, str]] = {}  # hash each render tensor once
        self.encoder_runs = 0  # how often the encoder actually ran (tests and benchmarks read this)
        self.disk_hits = 0
        self.write_errors: list[str] = []  # cache folders that could not be written (the run goes on in memory)

    @staticmethod
    def key(pixel_values: torch.Tensor, fingerprint: str) -> str:
        digest = hashlib.sha256(f"{CACHE_FORMAT}\0{fingerprint}\0{pixel_values.dtype}\0"
                                f"{tuple(pixel_values.shape)}\0".encode())
        digest.update(tensor_bytes(pixel_values))
        return digest.hexdigest()[:32]

    def _read(self, key: str, fingerprint: str, dtype: torch.dtype) -> torch.Tensor | None:
        for folder in ([self.cache_dir] if self.cache_dir is not None else []) + self.read_dirs:
            path = folder / f"{key}.safetensors"
            if not path.is_file():
                continue
            try:
                with safe_open(str(path), framework="pt") as handle:
                    meta = handle.metadata() or {}
                    if meta.get("key") != key or meta.get("encoder") != fingerprint or meta.get("dtype") != str(dtype):
                        continue  # written under another identity (or by an older version): never served
                    return handle.get_tensor("embeddings")
            except (OSError, SafetensorError, KeyError, ValueError):
                continue  # a damaged cache file is a miss, not a crash
        return None

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
        embeddings = self._read(key, fingerprint, param.dtype)
        if embeddings is not None:
            self.disk_hits += 1
        else:
            with torch.no_grad():  # one view at a time: global-attention blocks of ViT-H need ~0.5 GiB per view
                embeddings = torch.cat([sam.get_image_embeddings(view[None].to(param.device, param.dtype))
                                        for view in pixel_values]).cpu()
            self.encoder_runs += 1
            if self.cache_dir is not None:
                try:
                    self._write(self.cache_dir, key, embeddings, fingerprint, param.dtype)
                except OSError as err:
                    self.write_errors.append(f"{self.cache_dir}: {err.strerror or err}")
        embeddings = embeddings.to(param.device, param.dtype)
        self._memory[key] = embeddings
        self._meta[key] = {"key": key, "encoder": fingerprint, "dtype": str(param.dtype)}
        return embeddings

    @staticmethod
    def _write(directory: Path, key: str, embeddings: torch.Tensor, fingerprint: str, dtype: torch.dtype) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{key}.safetensors"
        tmp = directory / f".{key}.{os.getpid()}.tmp"
        try:
            save_file({"embeddings": embeddings.detach().cpu().contiguous()}, str(tmp),
                      metadata={"key": key, "encoder": fingerprint, "dtype": str(dtype), "format": CACHE_FORMAT})
            os.chmod(tmp, 0o644)  # a shared cache / shipped file, not a secret
            tmp.replace(path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def clear_memory(self) -> None:
        self._memory.clear()
        self._meta.clear()
        self._keys.clear()

    def save_to(self, directory: str | Path, keys: list[str] | None = None) -> list[Path]:
        """Write in-memory entries (all, or ``keys``) to ``directory``: the explicit export that ships a model with
        its embeddings precomputed (``model.io.write_view_embeddings``)."""
        directory = Path(directory)
        paths = []
        for key in (list(self._memory) if keys is None else keys):
            meta = self._meta[key]
            paths.append(self._write(directory, key, self._memory[key], meta["encoder"], getattr(torch, meta["dtype"][6:])))
        return paths
