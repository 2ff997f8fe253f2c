"""Reading photos robustly: any format PIL or OpenCV decodes, EXIF orientation applied, alpha composited on white,
16-bit and float images converted, the longest side bounded right after decoding, and the pixel count checked from
the file's header before any pixel is decoded (a decompression bomb is refused, not decoded)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_SIDE = 2048  # photos are downscaled to this longest side right after decoding (memory stays bounded)
# Largest image any decoder may open, checked from the file's header before decoding (PIL's own warning threshold;
# PIL itself only refuses at twice that, and OpenCV has no limit of its own that we can set per call).
DEFAULT_MAX_PIXELS = 89_478_485


@dataclass
class LoadedImage:
    pixels: np.ndarray  # [H, W, 3] uint8 RGB, EXIF orientation applied, longest side <= max_side
    original_size: tuple[int, int]  # (width, height) as stored / after EXIF rotation
    source_mode: str  # PIL mode (or "cv2:<dtype>x<channels>") of the file, for the summary
    downscaled: bool


def _white_composite(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.round(rgb.astype(np.float32) * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """High-bit-depth or float pixels → uint8 (16-bit by /257, other ranges by their type's or data's range)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return np.round(arr.astype(np.float32) / 257.0).astype(np.uint8)
    data = arr.astype(np.float64)
    finite = data[np.isfinite(data)]
    hi = float(finite.max()) if finite.size else 0.0
    lo = float(finite.min()) if finite.size else 0.0
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        data = data * 255.0
    elif hi > 65535 or lo < 0:
        data = (data - lo) / max(hi - lo, 1e-12) * 255.0
    elif hi > 255:
        data = data / 257.0
    return np.round(np.clip(np.nan_to_num(data), 0, 255)).astype(np.uint8)


def _pil_to_rgb(image) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    if mode.startswith("I") or mode == "F":  # 16/32-bit grey
        gray = _scale_to_uint8(np.asarray(image))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return _white_composite(rgba[..., :3], rgba[..., 3])
    if mode in ("L", "1"):
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _fallback_header_size(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, format) from the header of the formats only OpenCV reads (Radiance HDR, PFM), else None."""
    head = data[:4096]
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        end = head.find(b"\n\n")
        if end < 0:
            raise ValueError("Radiance HDR header without its resolution line")
        line = head[end + 2:].split(b"\n", 1)[0].decode("ascii", "replace").split()
        if len(line) != 4 or {line[0][1:], line[2][1:]} != {"X", "Y"}:
            raise ValueError(f"Radiance HDR header with an unreadable resolution line {' '.join(line)!r}")
        dims = {line[0][1:]: line[1], line[2][1:]: line[3]}
        return int(dims["X"]), int(dims["Y"]), "Radiance HDR"
    if head[:2] in (b"PF", b"Pf") and head[2:3].isspace():
        fields = head[2:].split(None, 3)
        return int(fields[0]), int(fields[1]), "PFM"
    return None


class ImageTooLarge(ValueError):
    """An image whose header announces more pixels than the decoders are allowed to produce."""


def check_pixel_count(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"{what} header gives an invalid size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLarge(f"{what} of {width}x{height} = {width * height:,} pixels exceeds the limit of "
                         f"{max_pixels:,} pixels (a decompression bomb, or a photo to downscale before use)")


def _cv2_decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                max_side: int = DEFAULT_MAX_SIDE) -> tuple[np.ndarray, str, tuple[int, int]]:
    """Formats PIL does not read (HDR, PFM) through OpenCV: the size is checked from the header first, the image is
    downscaled in its own dtype before the conversion to uint8 (no full-size float64 copy).

    Returns (RGB uint8 pixels, mode, original (width, height))."""
    try:
        header = _fallback_header_size(data)
    except (ValueError, IndexError) as err:
        raise ValueError(f"unreadable image header ({err})") from err
    if header is None:
        raise ValueError("unknown image format (neither PIL nor the HDR/PFM reader recognises it)")
    width, height, kind = header
    check_pixel_count(width, height, max_pixels, kind)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        raise ValueError(f"{kind} file that OpenCV cannot decode")
    mode = f"cv2:{arr.dtype}x{1 if arr.ndim == 2 else arr.shape[2]}"
    original = (int(arr.shape[1]), int(arr.shape[0]))
    if max(arr.shape[:2]) > max_side:
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        arr, _ = _downscale(arr, max_side)
    arr = _scale_to_uint8(arr)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2), mode, original
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2), mode, original
    if arr.shape[2] == 4:
        return _white_composite(arr[..., 2::-1], arr[..., 3]), mode, original
    return np.ascontiguousarray(arr[..., 2::-1]), mode, original


def _downscale(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, bool]:
    h, w = pixels.shape[:2]
    if max(h, w) <= max_side:
        return pixels, False
    scale = max_side / max(h, w)
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), True


def load_image(path: str | Path, max_side: int = DEFAULT_MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Any photo → RGB uint8 with EXIF orientation applied and the longest side at most ``max_side``.

    Grayscale, palette, RGBA/LA (composited on white), 16-bit and float images are converted; JPEGs larger than
    needed are decoded at a reduced scale (``draft``) so a 10 000-pixel photo never lives in memory at full size.
    Every decoder is held to ``max_pixels``, checked from the file's header before any pixel is decoded.
    Raises ``ValueError`` with the reason for unreadable, truncated, oversized or non-image files.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from err
    if not data:
        raise ValueError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            original = image.size
            mode = image.mode
            if image.format == "JPEG" and max(image.size) > 2 * max_side:
                image.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale
            check_pixel_count(image.size[0], image.size[1], max_pixels, f"{image.format} image")  # as decoded
            image.load()
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90°: report the upright size
                original = (original[1], original[0])
            image = ImageOps.exif_transpose(image)
            if max(image.size) > max_side and image.mode in ("RGB", "L", "RGBA", "LA", "P", "CMYK", "YCbCr"):
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # before the float conversions
            pixels = _pil_to_rgb(image)
    except ImageTooLarge:
        raise
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(f"image too large to decode safely ({err})") from err
    except UnidentifiedImageError:
        try:
            pixels, mode, original = _cv2_decode(data, max_pixels, max_side)
        except ImageTooLarge:
            raise
        except ValueError as err:
            raise ValueError(f"not an image file or corrupt image ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:  # truncated / broken data
        raise ValueError(f"corrupt or truncated image ({err})") from err
    pixels, downscaled = _downscale(np.ascontiguousarray(pixels), max_side)
    downscaled = downscaled or max(original) > max_side
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise ValueError(f"decoded to an unusable array of shape {pixels.shape}")
    return LoadedImage(pixels, (int(original[0]), int(original[1])), mode, downscaled)
