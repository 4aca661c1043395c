"""Keypoint schemes as data: ordered point names, the flip permutation derived from them, named
part polygons, and conversion tables between schemes.

Naming convention (all schemes): ``left_``/``right_`` mean the *subject's* left/right, as in the
Kaggle set.  In a frontal photo the subject's left eye is on the image's right.  (The iBUG 68
documentation calls image-left "left"; here its point 36, on the image left, is ``right_eye_outer``.)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _side(prefix: str, names: list[str]) -> list[str]:
    return [f"{prefix}_{n}" for n in names]


# iBUG / 300-W 68 points, in their standard order (0-based).
_IBUG68 = (
    # jaw 0..16: 0 is by the subject's right ear (image left), 8 the chin
    *_side("right", [f"jaw_{i}" for i in range(8)]), "chin",
    *_side("left", [f"jaw_{i}" for i in range(7, -1, -1)]),
    # eyebrows 17..21 (subject's right, outer → inner), 22..26 (left, inner → outer)
    *_side("right", [f"brow_{i}" for i in range(5)]),
    *_side("left", [f"brow_{i}" for i in range(4, -1, -1)]),
    # nose bridge 27..30 (30 is the tip), lower nose 31..35
    "nose_bridge_0", "nose_bridge_1", "nose_bridge_2", "nose_tip",
    "right_nostril_1", "right_nostril_0", "nose_base", "left_nostril_0", "left_nostril_1",
    # right eye 36..41, clockwise in the image from the outer corner
    "right_eye_outer", "right_eye_upper_outer", "right_eye_upper_inner",
    "right_eye_inner", "right_eye_lower_inner", "right_eye_lower_outer",
    # left eye 42..47, clockwise in the image from the inner corner
    "left_eye_inner", "left_eye_upper_inner", "left_eye_upper_outer",
    "left_eye_outer", "left_eye_lower_outer", "left_eye_lower_inner",
    # outer lip 48..59, clockwise in the image from the subject's right mouth corner
    "right_mouth_corner", "right_upper_lip_1", "right_upper_lip_0", "upper_lip_top",
    "left_upper_lip_0", "left_upper_lip_1", "left_mouth_corner",
    "left_lower_lip_1", "left_lower_lip_0", "lower_lip_bottom", "right_lower_lip_0", "right_lower_lip_1",
    # inner lip 60..67, same direction
    "right_inner_corner", "right_upper_inner", "upper_inner", "left_upper_inner",
    "left_inner_corner", "left_lower_inner", "lower_inner", "right_lower_inner",
)

# Kaggle "Facial Keypoints Detection" columns, in the order of training.csv.
_KAGGLE15 = (
    "left_eye_center", "right_eye_center",
    "left_eye_inner_corner", "left_eye_outer_corner",
    "right_eye_inner_corner", "right_eye_outer_corner",
    "left_eyebrow_inner_end", "left_eyebrow_outer_end",
    "right_eyebrow_inner_end", "right_eyebrow_outer_end",
    "nose_tip", "mouth_left_corner", "mouth_right_corner",
    "mouth_center_top_lip", "mouth_center_bottom_lip",
)

# MUCT 76 points: the XM2VTS 68 layout plus 8 extra eye points (numbering from Stasm's tables,
# whose "L"/"R" are the viewer's; the names below use the subject's side).  MUCT is read and converted
# to kaggle15; the points whose left/right pairing is not documented (inner mouth 60-65, extra eye
# points 68-75) get side-free names, so they map to themselves under a flip.
_MUCT76 = (
    # 0..14: temple (viewer's left) down the jaw to the chin (7) and up to the other temple
    *_side("right", ["temple", *(f"jaw_{i}" for i in range(1, 7))]), "chin",
    *_side("left", [*(f"jaw_{i}" for i in range(6, 0, -1)), "temple"]),
    # 15..20: subject's left eyebrow (viewer's right): outer end, top outer, top inner, inner end, 2 more
    "left_brow_outer", "left_brow_top_outer", "left_brow_top_inner", "left_brow_inner",
    "left_brow_19", "left_brow_20",
    # 21..26: subject's right eyebrow, same order
    "right_brow_outer", "right_brow_top_outer", "right_brow_top_inner", "right_brow_inner",
    "right_brow_19", "right_brow_20",
    # 27..31 subject's right eye (viewer's left): outer, top, inner, bottom, pupil; 32..36 left eye
    "right_eye_outer", "right_eye_top", "right_eye_inner", "right_eye_bottom", "right_eye_pupil",
    "left_eye_outer", "left_eye_top", "left_eye_inner", "left_eye_bottom", "left_eye_pupil",
    # 37..47 nose: viewer-left side top→bottom, base, viewer-right side bottom→top, nostrils
    "right_nose_top", "right_nose_mid", "right_nose_bot0", "right_nose_bot1", "nose_base",
    "left_nose_bot1", "left_nose_bot0", "left_nose_mid", "left_nose_top", "right_nostril", "left_nostril",
    # 48..59 outer mouth from the viewer's left corner, as in iBUG 68
    "right_mouth_corner", "right_upper_lip_1", "right_upper_lip_0", "upper_lip_top",
    "left_upper_lip_0", "left_upper_lip_1", "left_mouth_corner",
    "left_lower_lip_1", "left_lower_lip_0", "lower_lip_bottom", "right_lower_lip_0", "right_lower_lip_1",
    # 60..66 inner mouth (61 top of the bottom lip, 66 bottom of the top lip), 67 nose tip
    "inner_mouth_60", "lower_lip_inner_top", "inner_mouth_62", "inner_mouth_63", "inner_mouth_64",
    "inner_mouth_65", "upper_lip_inner_bottom", "nose_tip",
    # 68..75 extra eye points
    *(f"eye_extra_{i}" for i in range(68, 76)),
)


@dataclass(frozen=True)
class Scheme:
    """An ordered set of named keypoints plus the named part polygons drawn over them."""

    name: str
    points: tuple[str, ...]
    # part name -> polygons; each polygon is a tuple of point names in drawing order.  A part with
    # several polygons is filled with the even-odd rule (the lips: outer contour minus inner mouth).
    parts: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    # part name -> how masking turns its points into a shape: "contour" (a smooth closed curve through
    # them), "band" (a line thickened into a band: eyebrows), "face" (the jaw closed over the brows,
    # lifted to the forehead), or for sparse schemes "sparse_lips", "almond" (corner, centre, corner),
    # "sparse_band" (two ends), "hull" (an ellipse around all the points)
    shapes: dict[str, str] = field(default_factory=dict)
    # the two points whose distance normalises errors and sizes (the outer eye corners)
    outer_eyes: tuple[str, str] = ("left_eye_outer", "right_eye_outer")
    # True when the face box convention is the tight box of these points (so a box can be re-made
    # from predicted points: landmark refinement, tracking); sparse schemes do not span the face
    spans_face: bool = False

    def __post_init__(self):
        if len(set(self.points)) != len(self.points):
            raise ValueError(f"scheme {self.name}: duplicate point names")

    def __len__(self) -> int:
        return len(self.points)

    def index(self, name: str) -> int:
        return self.points.index(name)

    @property
    def flip_permutation(self) -> np.ndarray:
        """perm such that, after a horizontal flip, ``new[i] = old[perm[i]]`` (left ↔ right)."""
        return np.array([self.index(_mirror_name(n)) for n in self.points], dtype=np.int64)

    def part_polygons(self, points: np.ndarray, part: str) -> list[np.ndarray]:
        """The polygons of ``part`` as float arrays (N, 2) taken from ``points`` (K, 2)."""
        return [points[self.part_indices(poly)] for poly in self.parts[part]]

    def part_indices(self, names) -> list[int]:
        return [self.index(n) for n in names]

    def part_points(self, part: str) -> list[int]:
        """Indices of every point that shapes ``part`` (for per-part confidence)."""
        return sorted({i for poly in self.parts[part] for i in self.part_indices(poly)})


def _mirror_name(name: str) -> str:
    """Swap the word ``left``/``right`` wherever it stands (``mouth_left_corner`` too)."""
    swap = {"left": "right", "right": "left"}
    return "_".join(swap.get(w, w) for w in name.split("_"))


def _names(scheme_points, idx):
    return tuple(scheme_points[i] for i in idx)


IBUG68 = Scheme(
    "ibug68", _IBUG68,
    parts={
        "lips": (_names(_IBUG68, range(48, 60)), _names(_IBUG68, range(60, 68))),
        "left_eye": (_names(_IBUG68, range(42, 48)),),
        "right_eye": (_names(_IBUG68, range(36, 42)),),
        "left_eyebrow": (_names(_IBUG68, range(22, 27)),),
        "right_eyebrow": (_names(_IBUG68, range(17, 22)),),
        # the jaw from ear to ear, then back over the brows (subject's left to right)
        "face": (_names(_IBUG68, [*range(0, 17), *range(26, 16, -1)]),),
    },
    shapes={"lips": "contour", "left_eye": "contour", "right_eye": "contour",
            "left_eyebrow": "band", "right_eyebrow": "band", "face": "face"},
    spans_face=True,
)
KAGGLE15 = Scheme(
    "kaggle15", _KAGGLE15,
    # Sparse points: the masking module rounds these skeletons into natural shapes.
    parts={
        "lips": (("mouth_right_corner", "mouth_center_top_lip", "mouth_left_corner",
                  "mouth_center_bottom_lip"),),
        "left_eye": (("left_eye_inner_corner", "left_eye_center", "left_eye_outer_corner"),),
        "right_eye": (("right_eye_outer_corner", "right_eye_center", "right_eye_inner_corner"),),
        "left_eyebrow": (("left_eyebrow_outer_end", "left_eyebrow_inner_end"),),
        "right_eyebrow": (("right_eyebrow_outer_end", "right_eyebrow_inner_end"),),
        "face": (_KAGGLE15,),
    },
    shapes={"lips": "sparse_lips", "left_eye": "almond", "right_eye": "almond",
            "left_eyebrow": "sparse_band", "right_eyebrow": "sparse_band", "face": "hull"},
    outer_eyes=("left_eye_outer_corner", "right_eye_outer_corner"),
)
MUCT76 = Scheme("muct76", _MUCT76, spans_face=True)

SCHEMES: dict[str, Scheme] = {s.name: s for s in (IBUG68, KAGGLE15, MUCT76)}


def get_scheme(name: str) -> Scheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown scheme {name!r}; known: {', '.join(SCHEMES)}") from None


# Conversion tables: target point name -> source point names whose mean gives it.
_TO_KAGGLE15_FROM_IBUG68 = {
    "left_eye_center": tuple(_IBUG68[i] for i in range(42, 48)),
    "right_eye_center": tuple(_IBUG68[i] for i in range(36, 42)),
    "left_eye_inner_corner": ("left_eye_inner",),
    "left_eye_outer_corner": ("left_eye_outer",),
    "right_eye_inner_corner": ("right_eye_inner",),
    "right_eye_outer_corner": ("right_eye_outer",),
    "left_eyebrow_inner_end": ("left_brow_4",),
    "left_eyebrow_outer_end": ("left_brow_0",),
    "right_eyebrow_inner_end": ("right_brow_4",),
    "right_eyebrow_outer_end": ("right_brow_0",),
    "nose_tip": ("nose_tip",),
    "mouth_left_corner": ("left_mouth_corner",),
    "mouth_right_corner": ("right_mouth_corner",),
    "mouth_center_top_lip": ("upper_lip_top",),
    "mouth_center_bottom_lip": ("lower_lip_bottom",),
}
_TO_KAGGLE15_FROM_MUCT76 = {
    "left_eye_center": ("left_eye_pupil",),
    "right_eye_center": ("right_eye_pupil",),
    "left_eye_inner_corner": ("left_eye_inner",),
    "left_eye_outer_corner": ("left_eye_outer",),
    "right_eye_inner_corner": ("right_eye_inner",),
    "right_eye_outer_corner": ("right_eye_outer",),
    "left_eyebrow_inner_end": ("left_brow_inner",),
    "left_eyebrow_outer_end": ("left_brow_outer",),
    "right_eyebrow_inner_end": ("right_brow_inner",),
    "right_eyebrow_outer_end": ("right_brow_outer",),
    "nose_tip": ("nose_tip",),
    "mouth_left_corner": ("left_mouth_corner",),
    "mouth_right_corner": ("right_mouth_corner",),
    "mouth_center_top_lip": ("upper_lip_top",),
    "mouth_center_bottom_lip": ("lower_lip_bottom",),
}
CONVERSIONS = {
    ("ibug68", "kaggle15"): _TO_KAGGLE15_FROM_IBUG68,
    ("muct76", "kaggle15"): _TO_KAGGLE15_FROM_MUCT76,
}


def _sources(src: str, dst: str) -> list[list[int]]:
    """For each point of ``dst``, the indices of the ``src`` points it is the mean of."""
    s, d = get_scheme(src), get_scheme(dst)
    if src == dst:
        return [[j] for j in range(len(d))]
    try:
        table = CONVERSIONS[(src, dst)]
    except KeyError:
        raise ValueError(f"no conversion from scheme {src} to {dst}") from None
    return [[s.index(n) for n in table[name]] for name in d.points]


def convert_points(points: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Convert (..., K_src, 2) points from scheme ``src`` to ``dst``; NaN in, NaN out."""
    if src == dst:
        return points
    sources = _sources(src, dst)
    out = np.empty(points.shape[:-2] + (len(sources), 2), dtype=np.float64)
    for j, idx in enumerate(sources):
        out[..., j, :] = points[..., idx, :].mean(axis=-2)
    return out


def conversion_matrix(src: str, dst: str) -> np.ndarray:
    """(K_dst, K_src) weights with ``convert_points(p, src, dst) == matrix @ p`` for complete points."""
    sources = _sources(src, dst)
    m = np.zeros((len(sources), len(get_scheme(src))))
    for j, idx in enumerate(sources):
        m[j, idx] = 1.0 / len(idx)
    return m


def can_convert(src: str, dst: str) -> bool:
    return src == dst or (src, dst) in CONVERSIONS
