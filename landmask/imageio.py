"""Reading and writing images: one decoder path (OpenCV), clear errors, EXIF orientation,
atomic writes.  No imaging library beyond OpenCV is needed.

Images in landmask are numpy arrays in **RGB** order (H, W, 3) uint8, or (H, W) for grey; this is
stated once here and kept everywhere (OpenCV's BGR stays inside this module).
"""
from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import cv2
import numpy as np

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
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LandmaskError(f"{path}: cannot read ({e.strerror})") from None
    if not data:
        raise LandmaskError(f"{path}: empty file (0 bytes)")
    kind = sniff(data)
    if kind is None:
        raise LandmaskError(f"{path}: not an image file (or a format that cannot be read)")
    size = header_size(data, kind)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise LandmaskError(f"{path}: image too large ({size[0]}×{size[1]} pixels; the limit is {MAX_PIXELS:,})")
    if not looks_complete(data, kind):
        raise LandmaskError(f"{path}: truncated or corrupt image (the {kind} data ends early)")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        raise LandmaskError(f"{path}: truncated or corrupt image (the decoder gave up)")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise LandmaskError(f"{path}: image too large ({arr.shape[1]}×{arr.shape[0]} pixels)")
    if kind == "jpeg":
        arr = apply_orientation(arr, exif_orientation(data))
    return _convert(arr, mode)


def _convert(arr: np.ndarray, mode: str) -> np.ndarray:
    """OpenCV's BGR(A)/grey, 8 or 16 bit → the requested RGB-ordered kind."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype not in (np.uint8, np.uint16):
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB
        arr = cv2.cvtColor(arr, code)
    if mode == "keep":
        return arr
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257 + 0.5).astype(np.uint8)
    if mode == "grey":
        return to_grey(arr)
    if mode == "rgb":
        if arr.ndim == 2:
            return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
        return np.ascontiguousarray(arr[..., :3])
    raise ValueError(f"unknown mode {mode!r}")


# ---------------------------------------------------------------- container facts (pure Python)

def sniff(data: bytes) -> str | None:
    """The image format from its magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] in (b"P2", b"P3", b"P5", b"P6"):
        return "pnm"
    return None


def _jpeg_segments(data: bytes):
    """(marker, payload start, payload end) for each JPEG segment up to the start of scan."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:   # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        n = struct.unpack(">H", data[i + 2:i + 4])[0]
        yield marker, i + 4, i + 2 + n
        if marker == 0xDA:
            return
        i += 2 + n


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) read from the header without decoding, where the format allows."""
    try:
        if kind == "png":
            return struct.unpack(">II", data[16:24])
        if kind == "bmp":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if kind == "jpeg":
            for marker, a, _ in _jpeg_segments(data):
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", data[a + 1:a + 5])
                    return w, h
    except struct.error:
        return None
    return None


def looks_complete(data: bytes, kind: str) -> bool:
    """False when a JPEG has no end-of-image marker after its scan, or a PNG has no IEND chunk."""
    if kind == "jpeg":
        sos = [a for m, a, _ in _jpeg_segments(data) if m == 0xDA]
        return bool(sos) and data.find(b"\xff\xd9", sos[0]) != -1
    if kind == "png":
        return b"IEND" in data[-64:]
    return True


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of a JPEG, 1 when absent or unreadable."""
    for marker, a, b in _jpeg_segments(data):
        if marker != 0xE1 or data[a:a + 6] != b"Exif\x00\x00":
            continue
        t = data[a + 6:b]
        try:
            e = "<" if t[:2] == b"II" else ">"
            ifd = struct.unpack(e + "I", t[4:8])[0]
            (n,) = struct.unpack(e + "H", t[ifd:ifd + 2])
            for k in range(n):
                off = ifd + 2 + 12 * k
                tag, typ = struct.unpack(e + "HH", t[off:off + 4])
                if tag == 0x0112 and typ == 3:
                    v = struct.unpack(e + "H", t[off + 8:off + 10])[0]
                    return v if 1 <= v <= 8 else 1
        except struct.error:
            return 1
    return 1


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright by an EXIF orientation value."""
    ops = {2: lambda a: cv2.flip(a, 1), 3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
           4: lambda a: cv2.flip(a, 0), 5: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE), 1),
           6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
           7: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
           8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE)}
    return ops[orientation](arr) if orientation in ops else arr


# ---------------------------------------------------------------- conversions and writing

def to_grey(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey from an RGB(A), grey, or 16-bit image."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)    # a view of a larger image needs no copy


def write_image(path, image: np.ndarray, quality: int = 95) -> None:
    """Write an RGB/RGBA/grey (8 or 16 bit) array atomically: a temporary file, then a rename."""
    path = Path(path)
    ext = path.suffix.lower() or ".png"
    arr = image
    if ext in (".jpg", ".jpeg") and arr.dtype == np.uint16:   # JPEG holds 8 bits
        arr = (arr.astype(np.float32) / 257 + 0.5).astype(np.uint8)
    if ext in (".jpg", ".jpeg") and arr.ndim == 3 and arr.shape[2] == 4:
        arr = np.ascontiguousarray(arr[..., :3])
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
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def is_image_path(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES
