"""Covering a part of a face: the occluder of training (``train-face-check``, ``train-detector
--occlude``) and of the covered-face measurements (scripts/covered_found.py)."""
from __future__ import annotations

import numpy as np

from landmask import geometry as G


def cover(grey: np.ndarray, points: np.ndarray, scheme: str, part: str, grow: float, shade: int) -> np.ndarray:
    """A copy of ``grey`` with a box of one shade over ``part``'s points, grown by ``grow`` × the eye distance."""
    from landmask.schemes import get_scheme
    idx = get_scheme(scheme).part_points(part)
    g = grow * float(G.interocular(points, scheme))
    (x0, y0), (x1, y1) = np.floor(points[idx].min(0) - g).astype(int), np.ceil(points[idx].max(0) + g).astype(int)
    out = grey.copy()
    out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = shade
    return out


def random_cover(grey: np.ndarray, points: np.ndarray, scheme: str, rng,
                 parts=("lips", "left_eye", "right_eye")) -> np.ndarray:
    """``cover`` with a random part of ``parts`` (the mouth or one eye), grown by 0.15-0.5 × the eye
    distance, in a random shade: a hand, sunglasses, a scarf."""
    part = parts[int(rng.integers(len(parts)))]
    return cover(grey, points, scheme, part, rng.uniform(0.15, 0.5), int(rng.integers(0, 256)))
