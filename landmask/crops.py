"""Cutting face crops out of images: the one resampling routine used by training, evaluation and
inference, so a model sees the same pixels everywhere."""
from __future__ import annotations

import math

import cv2
import numpy as np

from landmask import geometry as G


def warp(image: np.ndarray, m: np.ndarray, size: int, grey: bool = False) -> np.ndarray:
    """Resample ``image`` into a size×size crop by the image→crop affine ``m`` (2×3).

    Only the image region the crop needs is touched: it is cut out first, converted to grey when
    ``grey`` (so a large colour photo is not converted whole for one face), and, when the crop
    shrinks the image by 2× or more, reduced by an integer factor with area averaging so the crop
    is not aliased.  Outside the image is black.
    """
    (a, b, _), (c, d, _) = m.tolist()
    scale = abs(a * d - b * c) ** 0.5
    f = max(int(1.0 / scale), 1) if scale > 0 else 1
    h, w = image.shape[:2]
    (ia, ib, tx), (ic, id_, ty) = G.invert(m).tolist()
    # the image region under the crop's corners (plain floats: this runs once per face)
    corners = ((-1, -1), (size, -1), (-1, size), (size, size))
    xs = [ia * u + ib * v + tx for u, v in corners]
    ys = [ic * u + id_ * v + ty for u, v in corners]
    pad = max(f, 2)
    x0 = max(math.floor(min(xs)) - pad, 0)
    y0 = max(math.floor(min(ys)) - pad, 0)
    x1 = min(math.ceil(max(xs)) + pad, w)
    y1 = min(math.ceil(max(ys)) + pad, h)
    if x1 <= x0 or y1 <= y0:   # the crop lies wholly outside the image
        return np.zeros((size, size) if grey else (size, size) + image.shape[2:],
                        np.uint8 if grey else image.dtype)
    if f >= 2:   # whole f×f blocks, so the reduction is exactly 1/f (and OpenCV's fast path)
        bx, by = _multiple(x0, x1, f, w), _multiple(y0, y1, f, h)
        if bx[1] - bx[0] >= f and by[1] - by[0] >= f:
            (x0, x1), (y0, y1) = bx, by
        else:                 # an image less than f pixels across: no reduction
            f = 1
    region = image[y0:y1, x0:x1]
    if grey:
        from landmask.imageio import to_grey
        region = to_grey(region)
    if f >= 2:
        region = cv2.resize(region, ((x1 - x0) // f, (y1 - y0) // f), interpolation=cv2.INTER_AREA)
    # image coords -> region coords: x_r = (x - x0 + 0.5) / f - 0.5
    to_region = np.array([[1 / f, 0, (0.5 - x0) / f - 0.5], [0, 1 / f, (0.5 - y0) / f - 0.5]])
    m = G.compose(m, G.invert(to_region))
    return cv2.warpAffine(region, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _multiple(a: int, b: int, f: int, limit: int) -> tuple[int, int]:
    """Widen [a, b) within [0, limit) to a length that is a multiple of f, or narrow it where the
    image ends.  Resizing n·f pixels to n scales by exactly 1/f; any other length would scale by
    slightly less and shift the crop against its matrix."""
    extra = -(b - a) % f
    if extra:
        grow = min(extra, limit - b)
        b += grow
        a -= min(extra - grow, a)
    b -= (b - a) % f
    return a, b


def face_crop(image: np.ndarray, box, size: int, scale: float = G.CROP_SCALE):
    """(grey crop (size, size) uint8, image→crop affine) for a face box under the crop rule; the
    image may be grey, RGB(A) or 16-bit (only the crop's region is converted)."""
    m = G.crop_affine(box, size, scale)
    return warp(image, m, size, grey=True), m
