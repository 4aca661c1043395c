"""Reading and writing images: one decoder path (OpenCV) for files and bytes, with the size read
from the header and checked before any pixel is decoded, clear errors, EXIF orientation, EXIF/ICC
kept on write, atomic writes.  No imaging library beyond OpenCV is needed.

Images in landmask are numpy arrays in **RGB** order (H, W, 3) uint8, or (H, W) for grey; this is
stated once here and kept everywhere (OpenCV's BGR stays inside this module).
"""
from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from landmask.errors import LandmaskError

# Refuse images bigger than this many pixels (decompression bombs); 100 megapixels.
MAX_PIXELS = 100_000_000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm",
                  ".pbm", ".pam", ".gif"}
# video files by name (landmask.video finds them by content too)
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
# what encode_image takes as fmt → the extension OpenCV encodes by
FORMATS = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp", "tiff": ".tif",
           "tif": ".tif", "gif": ".gif", "pnm": ".ppm", "ppm": ".ppm", "pgm": ".pgm", "pbm": ".pbm",
           "pam": ".pam"}
_HAS_METADATA = hasattr(cv2, "imdecodeWithMetadata") and hasattr(cv2, "imencodeWithMetadata")


@dataclass(frozen=True)
class Metadata:
    """What of an input file travels to its output: the container format, and the EXIF block
    (TIFF bytes, orientation already reset to 1 when the pixels were turned upright) and the ICC
    colour profile, each None when the file had none; ``lossless``: a WebP stored without loss (its
    output is written so too)."""
    fmt: str
    exif: bytes | None = None
    icc: bytes | None = None
    lossless: bool = False


def read_image(path, mode: str = "rgb", metadata: bool = False):
    """Decode an image file, honouring EXIF orientation.

    mode: ``"rgb"`` → (H, W, 3) uint8 RGB; ``"grey"`` → (H, W) uint8; ``"keep"`` → the file's own
    channels and depth (grey, RGB, RGBA; 8 or 16 bit), RGB-ordered.  With ``metadata=True``
    returns ``(image, Metadata)``.
    Raises LandmaskError naming the file for missing, unreadable, empty, non-image, truncated,
    corrupt, animated or huge files.
    """
    path = Path(path)
    image, meta = decode_with_metadata(read_file_bytes(path), mode, name=str(path))
    return (image, meta) if metadata else image


# The largest image file read (an uncompressed 100-megapixel 16-bit RGBA TIFF is 800 MB).
MAX_FILE_BYTES = 2 * 2**30


def read_file_bytes(path) -> bytes:
    """The bytes of an image file; a missing file, a folder, a device or pipe (/dev/zero, a FIFO
    would never end), an oversized or unreadable file is a LandmaskError naming it."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LandmaskError(f"{path}: no such file") from None
    except OSError as e:
        raise LandmaskError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise LandmaskError(f"{path}: is a folder, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise LandmaskError(f"{path}: not a regular file (a device, pipe or socket)")
    if st.st_size > MAX_FILE_BYTES:
        raise LandmaskError(f"{path}: {st.st_size / 2**30:.1f} GB, more than any image landmask reads "
                            f"({MAX_FILE_BYTES / 2**30:.0f} GB)")
    try:
        return path.read_bytes()
    except OSError as e:
        raise LandmaskError(f"{path}: cannot read ({e.strerror or e})") from None


def decode_image(data: bytes, mode: str = "rgb", name: str = "<bytes>") -> np.ndarray:
    """Decode an image held in memory exactly as read_image decodes a file (``name`` is what
    the error messages call it)."""
    return decode_with_metadata(data, mode, name)[0]


def decode_with_metadata(data: bytes, mode: str = "rgb", name: str = "<bytes>") -> tuple[np.ndarray, Metadata]:
    """decode_image, plus the file's format, EXIF and ICC profile (see Metadata)."""
    if mode not in ("rgb", "grey", "keep"):
        raise ValueError(f"unknown mode {mode!r}")
    data = bytes(data)
    if not data:
        raise LandmaskError(f"{name}: empty file (0 bytes)")
    kind = sniff(data)
    if kind is None:
        raise LandmaskError(f"{name}: not an image file (or a format that cannot be read)")
    size = header_size(data, kind)
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise LandmaskError(f"{name}: corrupt {kind} header (no readable image size)")
    if size[0] * size[1] > MAX_PIXELS:
        raise LandmaskError(f"{name}: image too large ({size[0]}×{size[1]} pixels; the limit is {MAX_PIXELS:,})")
    frames = frame_count(data, kind)
    if frames > 1:
        if kind == "tiff":
            raise LandmaskError(f"{name}: a TIFF of {frames} pages; only single images can be read "
                                f"(split it into one file per page)")
        raise LandmaskError(f"{name}: animated {kind} ({frames} frames); only still images can be read "
                            f"(convert it to a video or take one frame)")
    if not looks_complete(data, kind):
        raise LandmaskError(f"{name}: truncated or corrupt image (the {kind} data ends early)")
    arr, exif, icc = _decode(data, kind, name)
    if arr is None or arr.size == 0:
        raise LandmaskError(f"{name}: truncated or corrupt image (the decoder gave up)")
    if data[:2] == b"P7" and arr.ndim == 3 and arr.shape[2] >= 3:   # OpenCV reads PAM in file order (RGB), not BGR
        arr = np.ascontiguousarray(np.concatenate([arr[..., 2::-1], arr[..., 3:]], axis=2))
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise LandmaskError(f"{name}: image too large ({arr.shape[1]}×{arr.shape[0]} pixels)")
    if kind in ("jpeg", "png", "webp") and exif:
        orientation = tiff_orientation(exif)
        arr = apply_orientation(arr, orientation)
        if orientation != 1:
            exif = _reset_orientation(exif)
    return _convert(arr, mode), Metadata(kind, exif or None, icc or None, kind == "webp" and webp_lossless(data))


def own_format(fmt: str, data: bytes) -> str:
    """The format to write an image back in: its own (``fmt`` as sniffed), PAM for a P7 file (of the
    netpbm family sniffed as "pnm", the one that holds alpha)."""
    return "pam" if fmt == "pnm" and data[:2] == b"P7" else fmt


def webp_lossless(data: bytes) -> bool:
    """Whether a WebP file's image is stored without loss (a VP8L chunk, not VP8)."""
    i = 12
    while i + 8 <= len(data):
        tag, size = data[i:i + 4], int.from_bytes(data[i + 4:i + 8], "little")
        if tag in (b"VP8L", b"VP8 "):
            return tag == b"VP8L"
        i += 8 + size + (size & 1)
    return False


def icc_colour_space(icc: bytes | None) -> str | None:
    """An ICC profile's colour space ("RGB", "GRAY", "CMYK", ...; its header's bytes 16-19)."""
    return icc[16:20].decode("latin-1").strip() if icc and len(icc) >= 20 else None


_STDERR_LOCK = threading.Lock()
# libjpeg reports damaged scan data as warnings on stderr and still returns an image (grey where
# the data were bad); these are the ones that mean the pixels are not the photo's
_JPEG_CORRUPT = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid JPEG file structure")


def _decode(data: bytes, kind: str, name: str):
    """(BGR(A)/grey array or None, EXIF TIFF bytes, ICC bytes) from OpenCV; for JPEG, libjpeg's
    warnings are captured from stderr (under a lock: stderr is process-wide) and a damaged scan
    becomes an error naming the file."""
    buf = np.frombuffer(data, np.uint8)
    if kind != "jpeg":
        return _imdecode(buf)
    with _STDERR_LOCK:
        captured, result = _capture_fd2(lambda: _imdecode(buf))
    bad = [ln for ln in captured.splitlines() if ln.startswith(_JPEG_CORRUPT)]
    rest = [ln for ln in captured.splitlines() if ln and not ln.startswith(_JPEG_CORRUPT)]
    if rest and sys.stderr is not None:
        sys.stderr.write("\n".join(rest) + "\n")
    if bad:
        raise LandmaskError(f"{name}: corrupt JPEG scan data ({bad[0].strip()})")
    return result


def _imdecode(buf: np.ndarray):
    if not _HAS_METADATA:
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), _jpeg_exif(buf.tobytes()), None
    arr, types, chunks = cv2.imdecodeWithMetadata(buf, flags=cv2.IMREAD_UNCHANGED)
    exif = icc = None
    for t, c in zip(types, chunks):
        if int(t) == cv2.IMAGE_METADATA_EXIF:
            exif = np.asarray(c, np.uint8).tobytes()
        elif int(t) == cv2.IMAGE_METADATA_ICCP:
            icc = np.asarray(c, np.uint8).tobytes()
    return arr, exif, icc


_CAPTURE: dict = {}   # pid → the temporary file fd 2 is sent to while libjpeg decodes (reused, under the lock)


def _capture_fd2(fn):
    """Run fn() with file descriptor 2 sent to a temporary file; (what was written, fn's result).
    Called under _STDERR_LOCK.  With no sys.stderr (a process started with 2>&-), fd 2 may belong to
    another file by now: nothing is captured (the CLI gives such a process /dev/null as stderr
    first, which takes fd 2, so its photos are still checked)."""
    if sys.stderr is None:
        return "", fn()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):          # no stderr to borrow: decode without the check
        return "", fn()
    try:
        cap = _CAPTURE.get(os.getpid())
        if cap is None:                     # one per process: a forked child must not share its parent's offset
            _CAPTURE.clear()
            cap = _CAPTURE[os.getpid()] = tempfile.TemporaryFile()
        cap.seek(0)
        cap.truncate()
        os.dup2(cap.fileno(), 2)
    except OSError:
        os.close(saved)
        return "", fn()
    try:
        result = fn()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    cap.seek(0)
    return cap.read(65536).decode("utf-8", "replace"), result


def _convert(arr: np.ndarray, mode: str) -> np.ndarray:
    """OpenCV's BGR(A)/grey, 8 or 16 bit → the requested RGB-ordered kind."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype not in (np.uint8, np.uint16):    # float (TIFF, EXR-like) or 32-bit integer samples
        floating = arr.dtype.kind == "f"
        arr = np.nan_to_num(arr.astype(np.float64))
        if floating and arr.size and 0 <= arr.min() and arr.max() <= 1.0:
            arr = arr * 255.0                        # floating point light levels run 0..1
        arr = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
    if arr.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB
        arr = cv2.cvtColor(arr, code)
    if mode == "keep":
        return arr
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257 + 0.5).astype(np.uint8)
    if mode == "grey":
        return to_grey(arr)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(arr[..., :3])


# ---------------------------------------------------------------- container facts (pure Python)

def sniff_video(head: bytes) -> str | None:
    """The container of a video file from its first bytes: mp4 (also mov), matroska (also webm),
    avi; None when it is none of these."""
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def is_video(path) -> bool:
    """Whether ``path`` is a file whose content is a video container (found by content, not name)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return sniff_video(f.read(16)) is not None
    except OSError:
        return p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir()   # missing: the job reports it


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
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:1] == b"P" and data[1:2] in b"1234567" and data[2:3].isspace():
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
        if marker == 0xDA or n < 2:
            return
        i += 2 + n


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) read from the header without decoding, or None when the header holds none."""
    try:
        return _HEADER_SIZE[kind](data)
    except (struct.error, ValueError, IndexError):
        return None


def _png_size(data):
    if data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _bmp_size(data):
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:                                    # OS/2 core header: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


def _jpeg_size(data):
    for marker, a, _ in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[a + 1:a + 5])
            return w, h
    return None


def _tiff_size(data):
    """The first page's size (the page OpenCV decodes)."""
    e, entries = _tiff_ifd0(data)
    w, h = _tiff_value(data, e, entries.get(256)), _tiff_value(data, e, entries.get(257))
    return None if w is None or h is None else (w, h)


def _webp_size(data):
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _gif_size(data):
    """The larger of the logical screen and the first frame (OpenCV decodes onto the screen)."""
    w, h = struct.unpack("<HH", data[6:10])
    first = next(_gif_frames(data), None)
    return (max(w, first[0]), max(h, first[1])) if first else (w, h)


def _pnm_size(data):
    if data[1:2] == b"7":                            # PAM: WIDTH / HEIGHT lines
        head = data[:512].split(b"ENDHDR")[0].split()
        w = head[head.index(b"WIDTH") + 1]
        h = head[head.index(b"HEIGHT") + 1]
        return int(w), int(h)
    tokens, i = [], 2
    while len(tokens) < 2 and i < min(len(data), 4096):
        c = data[i:i + 1]
        if c == b"#":
            i = data.find(b"\n", i)
            if i < 0:
                return None
        elif c.isdigit():
            j = i
            while data[j:j + 1].isdigit():
                j += 1
            tokens.append(int(data[i:j]))
            i = j
            continue
        elif not c.isspace():
            return None
        i += 1
    return tuple(tokens) if len(tokens) == 2 else None


_HEADER_SIZE = {"png": _png_size, "bmp": _bmp_size, "jpeg": _jpeg_size, "tiff": _tiff_size,
                "webp": _webp_size, "gif": _gif_size, "pnm": _pnm_size}


def _gif_frames(data: bytes):
    """(width, height) of each frame of a GIF, walking its blocks without decoding."""
    i = 13
    if data[10] & 0x80:
        i += 3 * 2 ** ((data[10] & 7) + 1)
    while i < len(data):
        block = data[i]
        if block == 0x3B:                            # trailer
            return
        if block == 0x21:                            # extension: label, then sub-blocks
            i = _gif_skip_subblocks(data, i + 2)
        elif block == 0x2C:                          # image descriptor
            w, h, flags = struct.unpack("<HHB", data[i + 5:i + 10])
            yield w, h
            i += 10
            if flags & 0x80:
                i += 3 * 2 ** ((flags & 7) + 1)
            i = _gif_skip_subblocks(data, i + 1)     # after the LZW minimum code size
        else:
            return


def _gif_skip_subblocks(data: bytes, i: int) -> int:
    while i < len(data) and data[i]:
        i += data[i] + 1
    return i + 1


def frame_count(data: bytes, kind: str) -> int:
    """How many frames an animated GIF, WebP or PNG, or pages a TIFF holds (1 for every still
    image; a TIFF's reduced-resolution copies, thumbnails, do not count)."""
    try:
        if kind == "tiff":
            return _tiff_pages(data)
        if kind == "gif":
            return sum(1 for _ in _gif_frames(data)) or 1
        if kind == "webp" and data[12:16] == b"VP8X" and data[20] & 0x02:
            return max(2, data.count(b"ANMF"))
        if kind == "png":
            i = data.find(b"acTL", 8)
            idat = data.find(b"IDAT", 8)
            if 0 <= i < (idat if idat >= 0 else len(data)):
                (n,) = struct.unpack(">I", data[i + 4:i + 8])
                return max(n, 1)
    except (struct.error, IndexError):
        return 1
    return 1


def looks_complete(data: bytes, kind: str) -> bool:
    """False when a JPEG has no end-of-image marker after its scan, or a PNG has no IEND chunk."""
    if kind == "jpeg":
        sos = [a for m, a, _ in _jpeg_segments(data) if m == 0xDA]
        return bool(sos) and data.find(b"\xff\xd9", sos[0]) != -1
    if kind == "png":
        return b"IEND" in data[-64:]
    return True


# ---------------------------------------------------------------- EXIF (TIFF structure)

def _tiff_pages(t: bytes) -> int:
    """Full-resolution images in a TIFF: its chain of IFDs, less those marked reduced-resolution
    (NewSubfileType bit 0); at least 1."""
    e = "<" if t[:2] == b"II" else ">"
    if struct.unpack(e + "H", t[2:4])[0] != 42:      # BigTIFF (43): 8-byte offsets, not walked here
        return 1
    (ifd,) = struct.unpack(e + "I", t[4:8])
    pages, seen = 0, set()
    while ifd and ifd not in seen and len(seen) < 256 and ifd + 2 <= len(t):   # enough to tell one from many
        seen.add(ifd)
        (n,) = struct.unpack(e + "H", t[ifd:ifd + 2])
        reduced = False
        for k in range(min(n, 64)):            # tags are sorted: NewSubfileType (254) comes first
            off = ifd + 2 + 12 * k
            if struct.unpack(e + "H", t[off:off + 2])[0] == 254:
                reduced = bool((_tiff_value(t, e, off) or 0) & 1)
        pages += not reduced
        (ifd,) = struct.unpack(e + "I", t[ifd + 2 + 12 * n:ifd + 6 + 12 * n])
    return max(pages, 1)


def _tiff_ifd0(t: bytes) -> tuple[str, dict[int, int]]:
    """The byte order and {tag: offset of its 12-byte entry} of a TIFF structure's first IFD."""
    e = "<" if t[:2] == b"II" else ">"
    (ifd,) = struct.unpack(e + "I", t[4:8])
    (n,) = struct.unpack(e + "H", t[ifd:ifd + 2])
    entries = {}
    for k in range(min(n, 1000)):
        off = ifd + 2 + 12 * k
        (tag,) = struct.unpack(e + "H", t[off:off + 2])
        entries[tag] = off
    return e, entries


def _tiff_value(t: bytes, e: str, off: int | None) -> int | None:
    """The first value of a SHORT or LONG entry held in the entry itself."""
    if off is None:
        return None
    typ, count = struct.unpack(e + "HI", t[off + 2:off + 8])
    if typ == 3 and count >= 1:
        return struct.unpack(e + "H", t[off + 8:off + 10])[0]
    if typ == 4 and count >= 1:
        return struct.unpack(e + "I", t[off + 8:off + 12])[0]
    return None


def tiff_orientation(exif: bytes) -> int:
    """The orientation tag (1-8) of an EXIF block (TIFF bytes), 1 when absent or unreadable."""
    try:
        e, entries = _tiff_ifd0(exif)
        v = _tiff_value(exif, e, entries.get(0x0112))
    except (struct.error, ValueError):
        return 1
    return v if v is not None and 1 <= v <= 8 else 1


def _reset_orientation(exif: bytes) -> bytes:
    """The same EXIF with its orientation set to 1 (the pixels have been turned upright)."""
    e, entries = _tiff_ifd0(exif)
    off = entries[0x0112]
    return exif[:off + 8] + struct.pack(e + "H", 1) + exif[off + 10:]


def _jpeg_exif(data: bytes) -> bytes | None:
    """A JPEG's EXIF block (TIFF bytes) from its APP1 segment, for OpenCV without metadata support."""
    for marker, a, b in _jpeg_segments(data):
        if marker == 0xE1 and data[a:a + 6] == b"Exif\x00\x00":
            return data[a + 6:b]
    return None


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of a JPEG file's bytes, 1 when absent or unreadable."""
    exif = _jpeg_exif(data)
    return tiff_orientation(exif) if exif else 1


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


def encode_image(image: np.ndarray, fmt: str, quality: int = 95, metadata: Metadata | None = None) -> bytes:
    """An RGB/RGBA/grey (8 or 16 bit) array as the bytes of an image file.

    fmt: "jpeg", "png", "webp", ... (or a ".jpg"-style suffix); quality 1-100 (JPEG and WebP);
    metadata: EXIF and ICC profile to embed (JPEG, PNG and WebP keep them; other formats drop them).
    """
    ext = FORMATS.get(fmt.lower().lstrip("."))
    if ext is None:
        raise LandmaskError(f"cannot write images as {fmt!r} (one of: {', '.join(sorted(set(FORMATS)))})")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise LandmaskError(f"quality must be a whole number from 1 to 100, not {quality!r}")
    arr = np.asarray(image)
    if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise LandmaskError(f"cannot encode an array of shape {arr.shape} and type {arr.dtype} as an image")
    if ext in (".ppm", ".pgm", ".pbm"):   # one family: grey pixels as PGM, colour as PPM, whatever the name says
        ext = ".pgm" if arr.ndim == 2 or arr.shape[2] == 1 else ".ppm"
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = np.ascontiguousarray(arr[..., :3])
    if ext in (".jpg", ".webp", ".gif") and arr.dtype == np.uint16:   # these hold 8 bits
        arr = (arr.astype(np.float32) / 257 + 0.5).astype(np.uint8)
    if ext == ".jpg" and arr.ndim == 3 and arr.shape[2] == 4:
        arr = np.ascontiguousarray(arr[..., :3])
    if ext == ".pam":
        pass                             # OpenCV writes PAM in memory order: RGB(A) as it is
    elif arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    lossless = ext == ".webp" and metadata is not None and metadata.lossless   # above 100: OpenCV writes lossless WebP
    params = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, int(quality)],
              ".webp": [cv2.IMWRITE_WEBP_QUALITY, 101 if lossless else int(quality)],
              # no dithering: a GIF's own colours (at most 256) come back exactly, transparency too
              ".gif": [cv2.IMWRITE_GIF_DITHER, 3] if hasattr(cv2, "IMWRITE_GIF_DITHER") else [],
              # a PAM's TUPLTYPE, without which OpenCV cannot read back the file it wrote
              ".pam": [cv2.IMWRITE_PAM_TUPLETYPE, {1: cv2.IMWRITE_PAM_FORMAT_GRAYSCALE, 3: cv2.IMWRITE_PAM_FORMAT_RGB,
                                                    4: cv2.IMWRITE_PAM_FORMAT_RGB_ALPHA}[1 if arr.ndim == 2 else arr.shape[2]]],
              }.get(ext, [])
    if metadata is not None and metadata.icc and icc_colour_space(metadata.icc) != ("GRAY" if arr.ndim == 2 or arr.shape[2] == 1 else "RGB"):
        metadata = replace(metadata, icc=None)   # a CMYK (or grey) profile on RGB pixels would shift their colours
    if ext == ".jpg" and metadata is not None and metadata.exif and len(metadata.exif) > _JPEG_EXIF_MOST:
        metadata = replace(metadata, exif=None)   # a PNG's or WebP's EXIF too large for a JPEG's one APP1 segment
    icc_after = None      # an ICC profile too large for one JPEG segment: written here in several (below)
    if ext == ".jpg" and metadata is not None and metadata.icc and len(metadata.icc) > _JPEG_ICC_CHUNK:
        icc_after, metadata = metadata.icc, Metadata(metadata.fmt, metadata.exif, None)
    chunks = _metadata_chunks(metadata) if ext in (".jpg", ".png", ".webp") else ([], [])
    try:
        if chunks[0] and _HAS_METADATA:
            ok, buf = cv2.imencodeWithMetadata(ext, arr, chunks[0], chunks[1], params)
        else:
            ok, buf = cv2.imencode(ext, arr, params)
    except cv2.error as e:
        raise LandmaskError(f"cannot encode a {arr.shape} {arr.dtype} image as {ext} ({str(e).strip().splitlines()[-1]})") from None
    if not ok:
        raise LandmaskError(f"cannot encode a {arr.shape} {arr.dtype} image as {ext}")
    return _jpeg_insert_icc(buf.tobytes(), icc_after) if icc_after else buf.tobytes()


_JPEG_ICC_CHUNK = 65535 - 2 - 14      # an APP2 segment: its length field, "ICC_PROFILE\0", sequence and count
_JPEG_EXIF_MOST = 65535 - 2 - 6       # an APP1 segment: its length field and "Exif\0\0"


def _jpeg_insert_icc(jpeg: bytes, icc: bytes) -> bytes:
    """A JPEG with ``icc`` as a chain of APP2 "ICC_PROFILE" segments (the ICC specification's
    way for a profile over 64 KB), placed after the file's leading APPn segments."""
    parts = [icc[i:i + _JPEG_ICC_CHUNK] for i in range(0, len(icc), _JPEG_ICC_CHUNK)]
    if len(parts) > 255:
        return jpeg                     # over 16 MB: not representable; the pixels are what matter
    segments = b"".join(b"\xff\xe2" + struct.pack(">H", 2 + 14 + len(p)) + b"ICC_PROFILE\x00"
                        + bytes([k + 1, len(parts)]) + p for k, p in enumerate(parts))
    i = 2                               # after SOI, past APP0 (JFIF) and APP1 (EXIF)
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF and jpeg[i + 1] in (0xE0, 0xE1):
        i += 2 + struct.unpack(">H", jpeg[i + 2:i + 4])[0]
    return jpeg[:i] + segments + jpeg[i:]


def _metadata_chunks(metadata: Metadata | None) -> tuple[list[int], list[np.ndarray]]:
    if metadata is None or not _HAS_METADATA:
        return [], []
    types, chunks = [], []
    for t, blob in ((cv2.IMAGE_METADATA_EXIF, metadata.exif), (cv2.IMAGE_METADATA_ICCP, metadata.icc)):
        if blob:
            types.append(t)
            chunks.append(np.frombuffer(blob, np.uint8))
    return types, chunks


def write_image(path, image: np.ndarray, quality: int = 95, metadata: Metadata | None = None,
                fmt: str | None = None) -> None:
    """Write an RGB/RGBA/grey (8 or 16 bit) array atomically (a temporary file, then a rename),
    in the format ``fmt`` or else that of the path's suffix (PNG when it has none)."""
    path = Path(path)
    ext = fmt or path.suffix.lower() or ".png"
    try:
        data = encode_image(image, ext, quality, metadata)
    except LandmaskError as e:
        raise LandmaskError(f"{path}: {e}") from None
    write_bytes_atomic(path, data)


def part_prefix(path) -> str:
    """The start of a temporary's name next to ``path``: ``.NAME.landmask-HOST-PID.`` (then a
    random part and ``.part``).  HOST (a hash of this machine's name) and PID let a later run on
    this machine tell a temporary that a killed landmask process left (batch.remove_stale_parts)
    from anything else: another machine's writes into a shared folder, the user's own files."""
    name = Path(path).name
    while len(name.encode("utf-8", "surrogateescape")) > 120:   # room for the rest within a 255-byte name
        name = name[:-1]
    return f".{name}.landmask-{HOST_TAG}-{os.getpid()}."


def is_special_file(path) -> bool:
    """Whether ``path`` is a device, FIFO or terminal, or lies under /dev or /proc (/dev/stdout
    redirected to a file is a link into /proc): written into, never renamed over."""
    p = os.path.abspath(path)
    for _ in range(40):                     # each link in a chain, as written (realpath would follow
        if p.startswith(("/dev/", "/proc/")) and not os.path.isdir(p):   # /proc/self/fd/1 on to the file
            return True                                                  # stdout is redirected to)
        if not os.path.islink(p):
            break
        p = os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p)))
    try:
        mode = os.stat(p).st_mode                        # follows a symlink (to a FIFO, a device)
        return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
    except OSError:
        return False


def write_bytes_atomic(path, data: bytes) -> None:
    """Write bytes to a unique temporary name next to ``path`` (see part_prefix), then rename it
    over ``path``; the temporary is removed on any failure, so a half-written file never
    carries the final name.  A path that is a device, FIFO or terminal (or a link to one, like
    /dev/stdout) is written into instead.  An OSError becomes a LandmaskError naming ``path``."""
    path = Path(path)
    special = is_special_file(path)
    if special:   # a device, FIFO or terminal: written into, never renamed over (that would replace /dev/null)
        try:
            with open(path, "wb") as f:
                f.write(data)
            return
        except OSError as e:
            raise LandmaskError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=part_prefix(path), suffix=".part", dir=path.parent)
    except OSError as e:
        raise LandmaskError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise LandmaskError(f"{path}: cannot write ({e.strerror or e})") from None
        raise


_UMASK = None
HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]   # see part_prefix


def _umask() -> int:
    global _UMASK
    if _UMASK is None:   # read once: os.umask is process-wide and racy between threads
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK


def write_text_atomic(path, text: str) -> None:
    """UTF-8; file names that are not UTF-8 (held by Python as surrogate escapes) are written back
    as the bytes they were."""
    write_bytes_atomic(path, text.encode("utf-8", "surrogateescape"))


_SUFFIX_KIND = {".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".jfif": "jpeg", ".png": "png", ".bmp": "bmp",
                ".dib": "bmp", ".tif": "tiff", ".tiff": "tiff", ".webp": "webp", ".gif": "gif", ".ppm": "pnm",
                ".pgm": "pnm", ".pbm": "pnm", ".pnm": "pnm", ".pam": "pnm"}


def suffix_kind(path) -> str | None:
    """The format a file name's suffix asks for, as ``sniff`` names formats (None: no known suffix)."""
    return _SUFFIX_KIND.get(Path(path).suffix.lower())


def check_image(image, what: str = "image") -> np.ndarray:
    """An array the library can work on — (H, W) grey, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA,
    uint8 or uint16, at least 1×1 — returned as an ndarray; anything else is one LandmaskError
    naming its dtype or shape (not an error from deep inside OpenCV, nor a silent wrong result)."""
    if isinstance(image, (str, bytes, os.PathLike)) or image is None:
        raise LandmaskError(f"{what}: {type(image).__name__}, not pixels (read a file with landmask.read_image)")
    arr = np.asarray(image)
    if arr.dtype.kind == "u" and arr.dtype.itemsize in (1, 2) and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))      # big-endian 16-bit: the same values, native order
    if arr.dtype not in (np.uint8, np.uint16):
        hint = (" (for 0..1 floats: (image * 255).round().astype(numpy.uint8))" if arr.dtype.kind == "f" else "")
        raise LandmaskError(f"{what}: {arr.dtype} pixels; give uint8 (0..255) or uint16{hint}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))):
        raise LandmaskError(f"{what}: shape {arr.shape}; give (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise LandmaskError(f"{what}: empty ({arr.shape[1]}×{arr.shape[0]} pixels)")
    return arr


def pixels(image, what: str = "image") -> np.ndarray:
    """check_image, with (H, W, 1) as (H, W): the array the detector and the landmark models take."""
    arr = check_image(image, what)
    return arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr


def is_image_path(path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES
