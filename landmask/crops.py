"""Cutting face crops out of images: the one resampling routine used by training, evaluation and
inference, so a model sees the same pixels everywhere."""
from __future__ import annotations

import cv2
import numpy as np

from landmask import geometry as G


def warp(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Resample ``image`` into a size×size crop by the image→crop affine ``m`` (2×3).

    When the crop shrinks the image by 2× or more, the image is first reduced by an integer factor
    with area averaging, so the crop is not aliased.  Outside the image is black.
    """
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    f = int(1.0 / scale) if scale > 0 else 1
    if f >= 2:
        h, w = image.shape[:2]
        # crop the needed region first so large photos are not reduced whole
        inv = G.invert(m)
        corners = G.apply(inv, np.array([[-1, -1], [size, -1], [-1, size], [size, size]], float))
        x0 = max(int(np.floor(corners[:, 0].min())) - f, 0)
        y0 = max(int(np.floor(corners[:, 1].min())) - f, 0)
        x1 = min(int(np.ceil(corners[:, 0].max())) + f, w)
        y1 = min(int(np.ceil(corners[:, 1].max())) + f, h)
        if x1 <= x0 or y1 <= y0:
            return np.zeros((size, size) + image.shape[2:], image.dtype)
        region = image[y0:y1, x0:x1]
        small = cv2.resize(region, ((x1 - x0) // f or 1, (y1 - y0) // f or 1), interpolation=cv2.INTER_AREA)
        # image coords -> small coords: x_s = (x - x0 + 0.5) / f - 0.5
        to_small = np.array([[1 / f, 0, (0.5 - x0) / f - 0.5], [0, 1 / f, (0.5 - y0) / f - 0.5]])
        m = G.compose(m, G.invert(to_small))
        image = small
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def face_crop(grey: np.ndarray, box, size: int, scale: float = G.CROP_SCALE):
    """(crop (size, size) uint8, image→crop affine) for a face box under the crop rule."""
    m = G.crop_affine(box, size, scale)
    return warp(grey, m, size), m
