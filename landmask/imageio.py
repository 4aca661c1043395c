"""Reading and writing images: one decoder path, clear errors, EXIF orientation, atomic writes.

Images in landmask are numpy arrays in **RGB** order (H, W, 3) uint8, or (H, W) for grey; this is
stated once here and kept everywhere (OpenCV's BGR stays inside this module).
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from landmask.errors import LandmaskError

# Refuse images bigger than this many pixels (decompression bombs); 100 megapixels.
MAX_PIXELS = 100_000_000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}


def read_image(path, mode: str = "rgb") -> np.ndarray:
    """Decode an image file, honouring EXIF orientation.

    mode: ``"rgb"`` → (H, W, 3) uint8 RGB; ``"grey"`` → (H, W) uint8; ``"keep"`` → the file's own
    channels and depth (grey, RGB, RGBA; 8 or 16 bit), RGB-ordered.
    Raises LandmaskError naming the file for missing, empty, non-image, truncated or huge files.
    """
    path = Path(path)
    if not path.exists():
        raise LandmaskError(f"{path}: no such file")
    if path.is_dir():
        raise LandmaskError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise LandmaskError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise LandmaskError(f"{path}: image too large ({im.width}×{im.height} pixels; "
                                        f"the limit is {MAX_PIXELS:,})")
                im.load()
                im = ImageOps.exif_transpose(im)
                arr = _pil_to_array(im, mode)
    except LandmaskError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise LandmaskError(f"{path}: image too large (decompression bomb guard, "
                            f"limit {MAX_PIXELS:,} pixels)") from None
    except Image.UnidentifiedImageError:
        raise LandmaskError(f"{path}: not an image file (or a format that cannot be read)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise LandmaskError(f"{path}: truncated or corrupt image ({e})") from None
    return arr


def _pil_to_array(im: Image.Image, mode: str) -> np.ndarray:
    if mode == "grey":
        return np.asarray(im.convert("L") if im.mode not in ("I;16", "I") else _to8(im).convert("L"))
    if mode == "rgb":
        if im.mode in ("I;16", "I;16B", "I"):
            im = _to8(im)
        return np.asarray(im.convert("RGB"))
    if mode == "keep":
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(im).astype(np.uint16)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            return np.asarray(im.convert("RGBA"))
        if im.mode in ("L", "1"):
            return np.asarray(im.convert("L"))
        return np.asarray(im.convert("RGB"))
    raise ValueError(f"unknown mode {mode!r}")


def _to8(im: Image.Image) -> Image.Image:
    a = np.asarray(im).astype(np.float64)
    top = 65535.0 if a.max() > 255 else 255.0
    return Image.fromarray(np.clip(a / top * 255 + 0.5, 0, 255).astype(np.uint8))


def to_grey(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey from an RGB(A), grey, or 16-bit image."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        image = image[..., :3]
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def write_image(path, image: np.ndarray, quality: int = 95) -> None:
    """Write an RGB/RGBA/grey (8 or 16 bit) array atomically: a temporary file, then a rename."""
    path = Path(path)
    ext = path.suffix.lower() or ".png"
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:
        raise LandmaskError(f"{path}: cannot encode an image as {ext}")
    write_bytes_atomic(path, buf.tobytes())


def write_bytes_atomic(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def is_image_path(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES
