"""Pure geometry: face boxes, the crop rule, and the affine maps between image and crop.

Coordinate convention (the whole package): x to the right, y down, in pixels of the image as
given, with the *centre* of the top-left pixel at (0, 0).  This is OpenCV's convention for
``warpAffine``/``resize``; a pixel (col, row) covers [col - 0.5, col + 0.5).
"""
from __future__ import annotations

import numpy as np

# The crop rule.  A face box (x0, y0, x1, y1) becomes a square crop centred on the box centre
# with side CROP_SCALE × max(box width, box height).  Boxes from the landmarks are the tight
# bounding box of the points; detector boxes are first mapped onto that kind of box by the
# detector's own calibration (see landmask.detect).
CROP_SCALE = 1.5


def points_box(points: np.ndarray) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) around the finite points of a (K, 2) array."""
    p = points[np.isfinite(points).all(axis=1)]
    if len(p) == 0:
        raise ValueError("no finite points to make a box from")
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()], dtype=np.float64)


def crop_square(box, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """(cx, cy, side) of the square crop for a face box under the crop rule."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0) * scale
    return (x0 + x1) / 2, (y0 + y1) / 2, side


def square_affine(cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """2×3 matrix mapping image coordinates into a size×size crop of the square (cx, cy, side).

    Pixel-centre convention: the square's left edge x = cx - side/2 maps to -0.5 and its right edge
    to size - 0.5.
    """
    s = size / side
    return np.array([[s, 0.0, -0.5 - (cx - side / 2) * s],
                     [0.0, s, -0.5 - (cy - side / 2) * s]], dtype=np.float64)


def crop_affine(box, size: int, scale: float = CROP_SCALE) -> np.ndarray:
    """2×3 image→crop matrix for a face box under the crop rule."""
    return square_affine(*crop_square(box, scale), size)


def rotation_about(cx: float, cy: float, degrees: float, scale: float = 1.0,
                   shift=(0.0, 0.0)) -> np.ndarray:
    """2×3 matrix: rotate by ``degrees`` (counter-clockwise on screen) and scale about (cx, cy),
    then shift."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a) * scale, np.sin(a) * scale
    return np.array([[c, s, (1 - c) * cx - s * cy + shift[0]],
                     [-s, c, s * cx + (1 - c) * cy + shift[1]]], dtype=np.float64)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2×3 affine that applies ``b`` first, then ``a``."""
    out = np.empty((2, 3))
    out[:, :2] = a[:, :2] @ b[:, :2]
    out[:, 2] = a[:, :2] @ b[:, 2] + a[:, 2]
    return out


def invert(m: np.ndarray) -> np.ndarray:
    (a, b, tx), (c, d, ty) = m.tolist()
    det = a * d - b * c
    if det == 0:
        raise np.linalg.LinAlgError("a singular affine has no inverse")
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)]])


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine to (..., 2) points; NaN stays NaN."""
    return points @ m[:, :2].T + m[:, 2]


def flip_points(points: np.ndarray, width: int, perm: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Mirror (..., K, 2) points of an image ``width`` pixels wide and swap left/right names;
    ``shift`` is added to the mirrored x (for annotations that sit off the mirror-symmetric
    position: see train.mirror_shift)."""
    out = points.copy()
    out[..., 0] = (width - 1 + shift) - out[..., 0]
    return out[..., perm, :]


def flip_average(points: np.ndarray, mirrored: np.ndarray, width: int, perm: np.ndarray,
                 shift: float = 0.0) -> np.ndarray:
    """Flip averaging: the mean of points found on a crop and those found on its mirror image
    (``mirrored``, in the mirrored crop's pixels, mapped back by ``flip_points``)."""
    return (points + flip_points(mirrored, width, perm, shift)) / 2


def interocular(points: np.ndarray, scheme_name: str) -> np.ndarray:
    """Distance between the outer eye corners (the 300-W NME normaliser), shape (...)."""
    from landmask.schemes import get_scheme  # schemes is geometry's only sibling import
    s = get_scheme(scheme_name)
    a, b = (s.index(n) for n in s.outer_eyes)
    return np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1)


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
