"""Masking facial parts: part shapes from landmarks (pure geometry) and effects drawn through a
soft alpha that never reaches outside the part's polygon.

Effects: ``color`` (virtual make-up: the colour's hue and saturation with the skin's lightness
variation kept), ``solid`` (a flat fill), ``blur`` and ``pixelate`` (privacy).  A spec string is
``EFFECT[:VALUE][@OPACITY]``: ``color:#b0123a@0.6``, ``color:crimson``, ``blur``, ``blur:12``,
``pixelate:8``, ``solid:black``, ``none``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from landmask import geometry as G
from landmask.colors import parse_color
from landmask.errors import LandmaskError
from landmask.schemes import get_scheme

PART_GROUPS = {"lips": ("lips",), "eyes": ("left_eye", "right_eye"),
               "eyebrows": ("left_eyebrow", "right_eyebrow")}


# ---------------------------------------------------------------- effect specs

@dataclass(frozen=True)
class Effect:
    kind: str                       # color | solid | blur | pixelate | none
    color: tuple = (0, 0, 0)        # RGB 0..255
    amount: float = 0.0             # blur sigma / pixel block as a fraction of the part's size (0 = auto)
    opacity: float = 1.0


def parse_effect(spec: str | Effect | None, option: str = "effect") -> Effect:
    """Parse ``EFFECT[:VALUE][@OPACITY]``; errors name the option."""
    if spec is None or isinstance(spec, Effect):
        return spec or Effect("none")
    text = spec.strip()
    opacity = 1.0
    if "@" in text:
        text, op = text.rsplit("@", 1)
        try:
            opacity = float(op)
        except ValueError:
            raise LandmaskError(f"--{option} {spec!r}: opacity {op!r} is not a number") from None
        if not 0 <= opacity <= 1:
            raise LandmaskError(f"--{option} {spec!r}: opacity must be between 0 and 1")
    kind, _, value = text.partition(":")
    kind = kind.lower()
    if kind in ("color", "colour", "solid"):
        try:
            rgb = parse_color(value or ("#b0123a" if kind != "solid" else "black"))
        except ValueError:
            raise LandmaskError(f"--{option} {spec!r}: {value!r} is not a CSS colour name or #hex") from None
        return Effect("color" if kind != "solid" else "solid", rgb, 0.0, opacity)
    if kind in ("blur", "pixelate"):
        try:
            amount = float(value) if value else 0.0
        except ValueError:
            raise LandmaskError(f"--{option} {spec!r}: {value!r} is not a number") from None
        return Effect(kind, amount=amount, opacity=opacity)
    if kind == "none":
        return Effect("none")
    raise LandmaskError(f"--{option} {spec!r}: unknown effect {kind!r}; use color, solid, blur, pixelate or none")


# ---------------------------------------------------------------- shapes (pure geometry)

def smooth_closed(poly: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """A closed Catmull-Rom spline through the polygon's points (N, 2) → (N·per_segment, 2)."""
    p = np.asarray(poly, float)
    n = len(p)
    if n < 3:
        return p
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(n):
        p0, p1, p2, p3 = p[i - 1], p[i], p[(i + 1) % n], p[(i + 2) % n]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    return np.concatenate(out)


def _arc(a, b, through, n=12):
    """Points from a to b along a parabola-like arc that passes through ``through`` at its middle."""
    t = np.linspace(0, 1, n)[:, None]
    mid = (a + b) / 2
    return a + (b - a) * t + (through - mid) * (4 * t * (1 - t))


def _ellipse_eye(outer, inner, center, ratio=0.42, n=24):
    """An almond eye through both corners, as tall as ``ratio`` × its width, nudged to the centre."""
    axis = inner - outer
    width = np.linalg.norm(axis)
    if width < 1e-6:
        return np.array([outer])
    u = axis / width
    v = np.array([-u[1], u[0]])
    mid = (outer + inner) / 2
    off = float(np.dot(center - mid, v)) if np.isfinite(center).all() else 0.0
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    # sin^0.8 makes the ends pointed like a real eye, not a lemon-round ellipse
    s = np.sign(np.sin(t)) * np.abs(np.sin(t)) ** 0.8
    return mid + np.outer(np.cos(t) * width / 2, u) + np.outer(s * width * ratio / 2 + off * 0.5, v)


def part_polygons(points: np.ndarray, scheme_name: str, part: str) -> list[np.ndarray]:
    """Polygons (float, image pixels) of a named part; several polygons combine even-odd
    (lips = outer contour minus the inner mouth, so an open mouth's teeth stay unpainted)."""
    scheme = get_scheme(scheme_name)
    if scheme_name == "kaggle15":
        return _kaggle_shapes(points, scheme, part)
    polys = scheme.part_polygons(points, part)
    if "eyebrow" in part:
        return [_brow_band(polys[0], points, scheme_name)]
    return [smooth_closed(p) for p in polys]


def _brow_band(line: np.ndarray, points, scheme_name) -> np.ndarray:
    """An eyebrow as a band around its landmark line, thick as 12 % of the eye distance."""
    d = float(G.interocular(points, scheme_name)) * 0.06
    seg = np.gradient(line, axis=0)
    normal = np.stack([-seg[:, 1], seg[:, 0]], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    return smooth_closed(np.concatenate([line + normal * d, (line - normal * d)[::-1]]), 3)


def _kaggle_shapes(p, s, part) -> list[np.ndarray]:
    g = lambda n: p[s.index(n)]  # noqa: E731
    if part == "lips":
        r, l = g("mouth_right_corner"), g("mouth_left_corner")
        top, bottom = g("mouth_center_top_lip"), g("mouth_center_bottom_lip")
        # the top lip's upper edge rises a little higher off-centre (a soft Cupid's bow)
        upper = _arc(r, l, top + (top - (r + l) / 2) * 0.15)
        lower = _arc(l, r, bottom)
        return [np.concatenate([upper, lower[1:-1]])]
    if part in ("left_eye", "right_eye"):
        side = part.split("_")[0]
        return [_ellipse_eye(g(f"{side}_eye_outer_corner"), g(f"{side}_eye_inner_corner"), g(f"{side}_eye_center"))]
    if part in ("left_eyebrow", "right_eyebrow"):
        side = part.split("_")[0]
        a, b = g(f"{side}_eyebrow_outer_end"), g(f"{side}_eyebrow_inner_end")
        up = np.array([0.0, -np.linalg.norm(b - a) * 0.12])
        line = _arc(a, b, (a + b) / 2 + up, 8)
        return [_brow_band(line, p, "kaggle15")]
    raise LandmaskError(f"unknown part {part!r}")


# ---------------------------------------------------------------- rendering

def part_alpha(shape_hw, polygons, feather: float):
    """(alpha (h, w) float32 in [0, 1], (x0, y0)) for the region around the polygons.  The edge
    is feathered *inwards* over ``feather`` pixels, so alpha is 0 outside the polygons."""
    h, w = shape_hw
    pts = np.concatenate(polygons)
    if not np.isfinite(pts).all():
        return None, (0, 0)
    pad = 2
    x0, y0 = max(int(np.floor(pts[:, 0].min())) - pad, 0), max(int(np.floor(pts[:, 1].min())) - pad, 0)
    x1, y1 = min(int(np.ceil(pts[:, 0].max())) + pad + 1, w), min(int(np.ceil(pts[:, 1].max())) + pad + 1, h)
    if x1 <= x0 or y1 <= y0:
        return None, (0, 0)
    hard = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shift = 4   # sub-pixel vertex precision for fillPoly
    polys = [np.round((p - [x0, y0]) * (1 << shift)).astype(np.int32) for p in polygons]
    # even-odd combination: fill each polygon into its own layer and XOR them
    for poly in polys:
        layer = np.zeros_like(hard)
        cv2.fillPoly(layer, [poly], 255, lineType=cv2.LINE_AA, shift=shift)
        hard = np.where(layer > 0, np.where(hard > 0, np.maximum(hard, layer) - np.minimum(hard, layer), layer), hard)
    a = hard.astype(np.float32) / 255
    if feather > 0.5:
        # alpha rises with the distance inside the polygon: thin parts keep full alpha in their middle
        dist = cv2.distanceTransform((hard >= 128).astype(np.uint8), cv2.DIST_L2, 3)
        a = np.minimum(a, np.clip((dist + 0.5) / feather, 0, 1))
    return a, (x0, y0)


def _to_float(img):
    top = 65535.0 if img.dtype == np.uint16 else 255.0
    return img.astype(np.float32) / top, top


def _color_layer(region, eff: Effect, alpha):
    """The make-up colour with the region's own lightness variation kept (LAB a/b from the colour,
    L shifted towards the colour's L by the same amount everywhere)."""
    target = np.array(eff.color, np.float32)[None, None] / 255
    if region.shape[2] == 1:
        lum = float(np.dot(eff.color, [0.299, 0.587, 0.114]) / 255)
        mean = float((region[..., 0] * alpha).sum() / max(alpha.sum(), 1e-6))
        return np.clip(region + (lum - mean), 0, 1)
    lab = cv2.cvtColor(region, cv2.COLOR_RGB2LAB)
    tl = cv2.cvtColor(target, cv2.COLOR_RGB2LAB)[0, 0]
    mean_l = float((lab[..., 0] * alpha).sum() / max(alpha.sum(), 1e-6))
    lab[..., 0] = np.clip(lab[..., 0] + (tl[0] - mean_l) * 0.7, 0, 100)
    lab[..., 1], lab[..., 2] = tl[1], tl[2]
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0, 1)


def _effect_layer(region, eff: Effect, alpha, part_size):
    if eff.kind == "color":
        return _color_layer(region, eff, alpha)
    if eff.kind == "solid":
        c = np.array(eff.color, np.float32) / 255
        if region.shape[2] == 1:
            c = np.array([np.dot(c, [0.299, 0.587, 0.114])], np.float32)
        return np.broadcast_to(c, region.shape).copy()
    if eff.kind == "blur":
        sigma = eff.amount or max(2.0, part_size * 0.15)
        out = cv2.GaussianBlur(region, (0, 0), sigma)
        return out.reshape(region.shape)
    if eff.kind == "pixelate":
        block = max(2, int(round(eff.amount or max(3.0, part_size / 6))))
        h, w = region.shape[:2]
        small = cv2.resize(region, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).reshape(region.shape)
    raise ValueError(eff.kind)


def apply_effect(image: np.ndarray, polygons, eff: Effect, feather: float) -> None:
    """Draw one effect over one part, in place.  Pixels whose alpha is 0 keep their exact values."""
    if eff.kind == "none" or eff.opacity <= 0:
        return
    alpha, (x0, y0) = part_alpha(image.shape[:2], polygons, feather)
    if alpha is None or not alpha.any():
        return
    h, w = alpha.shape
    view = image[y0:y0 + h, x0:x0 + w]
    color = view[..., :3] if view.ndim == 3 else view[..., None]
    region, top = _to_float(color)
    # blur/pixelate need context beyond the polygon: take it from a margin around the region
    size = max(h, w)
    layer = _effect_layer(region, eff, alpha, size)
    a = (alpha * eff.opacity)[..., None]
    out = region * (1 - a) + layer * a
    new = np.clip(np.round(out * top), 0, top).astype(image.dtype)
    changed = alpha > 0
    if view.ndim == 3:
        view[..., :3][changed] = new[changed]
    else:
        view[changed] = new[..., 0][changed]


def mask_image(image: np.ndarray, faces, lips=None, eyes=None, eyebrows=None, feather: float | None = None) -> np.ndarray:
    """A masked copy of ``image`` (grey, RGB or RGBA; 8 or 16 bit — the same kind comes back).

    ``faces``: objects with ``points`` (K, 2) and ``scheme`` (see landmask.api.Face).
    ``lips``/``eyes``/``eyebrows``: effect specs (strings or Effect), None leaves the part alone.
    ``feather``: soft-edge width in pixels (None = 2 % of each face's eye distance)."""
    out = image.copy()
    effects = {g: parse_effect(v, g) for g, v in (("lips", lips), ("eyes", eyes), ("eyebrows", eyebrows)) if v}
    for face in faces:
        f = feather if feather is not None else max(1.0, 0.02 * float(G.interocular(face.points, face.scheme)))
        for group, eff in effects.items():
            for part in PART_GROUPS[group]:
                apply_effect(out, part_polygons(face.points, face.scheme, part), eff, f)
    return out
