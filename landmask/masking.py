"""Masking facial parts: part shapes from landmarks (pure geometry) and effects drawn through a
soft alpha that never reaches outside the part's polygon.

Effects: ``color`` (virtual make-up: the colour's hue and saturation with the skin's lightness
variation kept), ``solid`` (a flat fill), ``blur`` and ``pixelate`` (privacy).  A spec string is
``EFFECT[:VALUE][@OPACITY]``: ``color:#b0123a@0.6``, ``color:crimson``, ``blur``, ``blur:12``,
``pixelate:8``, ``solid:black``, ``none``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from landmask import geometry as G
from landmask.colors import parse_color
from landmask.errors import LandmaskError
from landmask.schemes import get_scheme

PART_GROUPS = {"lips": ("lips",), "eyes": ("left_eye", "right_eye"),
               "eyebrows": ("left_eyebrow", "right_eyebrow"), "face": ("face",)}
# What ``mask(image, faces)`` paints when no part is named (the CLI's defaults are these):
# make-up red lips and a light blue eye tint.  Naming any part turns the others off.
DEFAULT_EFFECTS = {"lips": "color:#b0123a@0.6", "eyes": "color:#1f6fd1@0.35"}
EFFECT_KINDS = ("color", "solid", "blur", "pixelate", "none")
MAX_EFFECT_PX = 1000.0      # a blur sigma or pixel block past this is a typo, not a wish


# ---------------------------------------------------------------- effect specs

@dataclass(frozen=True)
class Effect:
    kind: str                       # color | solid | blur | pixelate | none
    color: tuple = (0, 0, 0)        # RGB 0..255
    amount: float = 0.0             # blur sigma / pixel block in pixels (0 = from the part's size)
    opacity: float = 1.0


def parse_effect(spec: str | Effect | None, option: str = "effect") -> Effect:
    """Parse ``EFFECT[:VALUE][@OPACITY]`` (a plain colour means ``color:COLOUR``); errors name the option."""
    if spec is None or isinstance(spec, Effect):
        return spec or Effect("none")
    if not isinstance(spec, str):
        raise LandmaskError(f"--{option} {spec!r}: give an effect as text, e.g. 'color:red@0.5', 'blur' or 'none'")
    text = spec.strip()
    opacity = 1.0
    if "@" in text:
        text, op = text.rsplit("@", 1)
        opacity = _number(op, spec, option, "opacity")
        if not 0 <= opacity <= 1:
            raise LandmaskError(f"--{option} {spec!r}: opacity must be between 0 and 1")
    kind, _, value = text.partition(":")
    kind = kind.lower()
    if kind == "colour":
        kind = "color"
    if kind not in EFFECT_KINDS and not value:
        try:                          # --lips red, --lips '#b0123a@0.5'
            return Effect("color", parse_color(text), 0.0, opacity)
        except ValueError:
            pass
    if kind in EFFECT_KINDS and text.endswith(":") and not value:
        raise LandmaskError(f"--{option} {spec!r}: nothing after ':' (give a value, or plain {kind} for its default)")
    if kind in ("color", "solid"):
        try:
            rgb = parse_color(value or ("#b0123a" if kind == "color" else "black"))
        except ValueError:
            raise LandmaskError(f"--{option} {spec!r}: {value!r} is not a CSS colour name or #hex") from None
        return Effect(kind, rgb, 0.0, opacity)
    if kind in ("blur", "pixelate"):
        amount = _number(value, spec, option, "size") if value else 0.0
        if not 0 < amount <= MAX_EFFECT_PX and value:
            raise LandmaskError(f"--{option} {spec!r}: the {kind} size must be a number of pixels "
                                f"above 0 and at most {MAX_EFFECT_PX:g}")
        return Effect(kind, amount=amount, opacity=opacity)
    if kind == "none":
        if value or "@" in spec or ":" in text:
            raise LandmaskError(f"--{option} {spec!r}: none takes no value or opacity")
        return Effect("none")
    import difflib
    near = difflib.get_close_matches(kind, EFFECT_KINDS, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise LandmaskError(f"--{option} {spec!r}: unknown effect {kind!r}{hint}; use color, solid, blur, pixelate, "
                        f"none or a colour")


def _number(text: str, spec, option, what) -> float:
    try:
        v = float(text)
    except ValueError:
        raise LandmaskError(f"--{option} {spec!r}: {what} {text!r} is not a number") from None
    if not np.isfinite(v):
        raise LandmaskError(f"--{option} {spec!r}: {what} must be a finite number")
    return v


# Make-up fades on parts the model could not see (a hand over the mouth, a profile's far eye): a
# part's visibility is its points' mean confidence (1 = as clear as on a typical validation face,
# see runtime.LandmarkModel.predict_crops_all) mapped linearly from HIDDEN_BELOW (0: not painted)
# to VISIBLE_ABOVE (1: full opacity).  Chosen on held-out training faces with a grey patch over
# one part (scripts/occlusion_confidence.py, docs/experiments.md).  Privacy effects (blur,
# pixelate, solid) and the whole-face effect never fade: a wrong guess must not uncover anything.
HIDDEN_BELOW, VISIBLE_ABOVE = 0.3, 0.6


def part_visibility(confidence, scheme_name: str, part: str) -> float:
    """0..1 from the per-point confidences (K,); 1 when there are none."""
    if confidence is None:
        return 1.0
    c = float(np.mean(np.asarray(confidence, float)[get_scheme(scheme_name).part_points(part)]))
    return float(np.clip((c - HIDDEN_BELOW) / (VISIBLE_ABOVE - HIDDEN_BELOW), 0.0, 1.0))


def hidden_parts(confidence, scheme_name: str) -> set[str]:
    """Names of the parts (lips, left_eye, ...) the model could not see: visibility 0."""
    return {p for p in get_scheme(scheme_name).parts
            if p != "face" and part_visibility(confidence, scheme_name, p) == 0.0}


def resolve_effects(lips=None, eyes=None, eyebrows=None, face=None) -> dict[str, Effect]:
    """The effect per part group, parsed once: the defaults when no part is given, else only the
    given parts.  Parts whose effect is ``none`` are left out."""
    given = {"lips": lips, "eyes": eyes, "eyebrows": eyebrows, "face": face}
    if all(v is None for v in given.values()):
        given = dict(DEFAULT_EFFECTS)
    effects = {g: parse_effect(v, g) for g, v in given.items() if v is not None}
    return {g: e for g, e in effects.items() if e.kind != "none"}


# ---------------------------------------------------------------- shapes (pure geometry)

def smooth_closed(poly: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """A closed Catmull-Rom spline through the polygon's points (N, 2) → (N·per_segment, 2)."""
    p = np.asarray(poly, float)
    n = len(p)
    if n < 3:
        return p
    t = np.linspace(0, 1, per_segment, endpoint=False)[None, :, None]      # (1, T, 1)
    # all segments at once: segment i runs from p[i] to p[i + 1], shaped by p[i - 1] and p[i + 2]
    p0, p1, p2, p3 = (np.roll(p, s, axis=0)[:, None] for s in (1, 0, -1, -2))   # (N, 1, 2) each
    out = 0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                 + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3)
    return out.reshape(-1, 2)


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
    (lips = outer contour minus the inner mouth, so an open mouth's teeth stay unpainted).
    How a part's points become a shape is the scheme's data (``Scheme.shapes``)."""
    scheme = get_scheme(scheme_name)
    if part not in scheme.parts:
        raise LandmaskError(f"scheme {scheme_name} has no part {part!r}")
    polys = scheme.part_polygons(points, part)
    kind = scheme.shapes.get(part, "contour")
    eye_dist = float(G.interocular(points, scheme_name))
    return [SHAPES[kind](p, eye_dist) for p in polys]


def _contour(p, eye_dist):
    return smooth_closed(p)


def _band(line, eye_dist) -> np.ndarray:
    """An eyebrow as a band around its landmark line, thick as 12 % of the eye distance."""
    d = eye_dist * 0.06
    seg = np.gradient(line, axis=0)
    normal = np.stack([-seg[:, 1], seg[:, 0]], 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    return smooth_closed(np.concatenate([line + normal * d, (line - normal * d)[::-1]]), 3)


def _face(p, eye_dist) -> np.ndarray:
    """Jaw (17 points, ear to ear) closed over the brows (10 points), the brows lifted towards the
    hairline along the face's chin-to-brow axis by 0.45 x the eye distance."""
    jaw, brows = p[:17], p[17:]
    up = brows.mean(0) - jaw[8]
    up = up / (np.linalg.norm(up) + 1e-9)
    return smooth_closed(np.concatenate([jaw, brows + up * 0.45 * eye_dist]), 4)


def _sparse_lips(p, eye_dist) -> np.ndarray:
    """Mouth corners and lip centres (right corner, top, left corner, bottom) rounded into lips;
    the top lip's upper edge rises a little higher off-centre (a soft Cupid's bow)."""
    r, top, l, bottom = p
    upper = _arc(r, l, top + (top - (r + l) / 2) * 0.15)
    lower = _arc(l, r, bottom)
    return np.concatenate([upper, lower[1:-1]])


def _almond(p, eye_dist) -> np.ndarray:
    """An eye from (one corner, centre, other corner)."""
    a, center, b = p
    return _ellipse_eye(a, b, center)


def _sparse_band(p, eye_dist) -> np.ndarray:
    """An eyebrow from its two ends: a slight upward arc, thickened into a band."""
    a, b = p
    up = np.array([0.0, -np.linalg.norm(b - a) * 0.12])
    return _band(_arc(a, b, (a + b) / 2 + up, 8), eye_dist)


def _hull(p, eye_dist) -> np.ndarray:
    """A face from sparse points: an ellipse around them, widened to the cheeks and chin."""
    p = p[np.isfinite(p).all(1)]
    c = p.mean(0)
    w, h = max(np.ptp(p[:, 0]), eye_dist) * 0.8, max(np.ptp(p[:, 1]), eye_dist) * 0.95
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    return c + np.stack([np.cos(t) * w, np.sin(t) * h + 0.15 * h], 1)


SHAPES = {"contour": _contour, "band": _band, "face": _face, "sparse_lips": _sparse_lips,
          "almond": _almond, "sparse_band": _sparse_band, "hull": _hull}


# ---------------------------------------------------------------- rendering

def part_alpha(shape_hw, polygons, feather: float):
    """(alpha (h, w) float32 in [0, 1], (x0, y0)) for the region around the polygons.  The edge
    is feathered *inwards* over ``feather`` pixels, so alpha is 0 outside the polygons but for the
    outline's anti-aliasing (fillPoly's LINE_AA: up to about 0.25 on pixels up to ~1.5 px outside)."""
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


def mask_image(image: np.ndarray, faces, lips=None, eyes=None, eyebrows=None, face=None,
               feather: float | None = None) -> np.ndarray:
    """A masked copy of ``image`` (grey, RGB or RGBA; 8 or 16 bit — the same kind comes back).

    ``faces``: objects with ``points`` (K, 2) and ``scheme`` (see landmask.api.Face).
    ``lips``/``eyes``/``eyebrows``/``face``: effect specs (strings or Effect); with none of them
    given, DEFAULT_EFFECTS; otherwise a part given as None is left alone (see resolve_effects).
    The whole-face effect is drawn first, so parts painted on top of it stay visible.
    ``feather``: soft-edge width in pixels (None = 2 % of each face's eye distance)."""
    effects = resolve_effects(lips, eyes, eyebrows, face)
    out = image.copy()
    order = [g for g in ("face", "lips", "eyes", "eyebrows") if g in effects]
    for f in faces:
        eye_dist = float(G.interocular(f.points, f.scheme))
        soft = feather if feather is not None else max(1.0, 0.02 * eye_dist)
        conf = getattr(f, "confidence", None)
        for group in order:
            eff = effects[group]
            for part in PART_GROUPS[group]:
                if eff.kind == "color" and group != "face":      # make-up fades on hidden parts
                    eff = replace(effects[group], opacity=effects[group].opacity
                                  * part_visibility(conf, f.scheme, part))
                apply_effect(out, part_polygons(f.points, f.scheme, part), eff,
                             soft if group != "face" else max(soft, 0.1 * eye_dist))
    return out


def check_feather(feather):
    """``feather`` (soft-edge pixels, or None for the default) as given, or one LandmaskError."""
    if feather is not None and not (isinstance(feather, (int, float, np.number)) and not isinstance(feather, bool)
                                    and np.isfinite(feather) and 0 <= feather <= 1000):
        raise LandmaskError(f"feather {feather!r}: a number of pixels from 0 to 1000")
    return feather


@dataclass(frozen=True)
class CheckedFace:
    """A face as ``face_list`` passes it on: arrays of the right shapes, finite."""
    points: np.ndarray
    scheme: str
    confidence: np.ndarray | None = None
    box: np.ndarray | None = None
    score: float | None = None


POINT_LIMIT = 1e6   # pixels: farther points are no face of any image (and overflow the drawing code)


def face_list(faces) -> list[CheckedFace]:
    """``faces`` as a list of checked faces: None → [], one Face → [it].  Each needs a known
    scheme and its (K, 2) points, finite; a confidence, if any, (K,) and finite; a box, if any, 4
    finite numbers.  Anything else is one LandmaskError naming the face (a Face rebuilt from
    ``to_dict()`` lists is fine)."""
    if faces is None:
        return []
    if hasattr(faces, "points"):
        faces = [faces]
    try:
        faces = list(faces)
    except TypeError:
        raise LandmaskError(f"faces: give a list of faces (from Landmarker.faces), not {type(faces).__name__}") from None
    out = []
    for i, f in enumerate(faces):
        if not hasattr(f, "points") or not hasattr(f, "scheme"):
            raise LandmaskError(f"faces[{i}]: not a face (it needs points and a scheme, as Landmarker.faces gives)")
        try:
            k = len(get_scheme(f.scheme))
        except (ValueError, TypeError):
            raise LandmaskError(f"faces[{i}]: unknown scheme {f.scheme!r} (ibug68 or kaggle15)") from None
        pts, conf, box = (_numbers(getattr(f, a, None), i, a) for a in ("points", "confidence", "box"))
        if pts is None or pts.shape != (k, 2) or not np.isfinite(pts).all() or np.abs(pts).max() > POINT_LIMIT:
            raise LandmaskError(f"faces[{i}]: its points must be {k} finite (x, y) pairs in pixels (a {f.scheme} face), "
                                f"not {'none' if pts is None else pts.shape}")
        if conf is not None and (conf.shape != (k,) or not np.isfinite(conf).all()):
            raise LandmaskError(f"faces[{i}]: its confidence must be {k} finite numbers (one per point), or None")
        if box is not None and (box.shape != (4,) or not np.isfinite(box).all() or np.abs(box).max() > POINT_LIMIT):
            raise LandmaskError(f"faces[{i}]: its box must be 4 finite numbers (x0, y0, x1, y1), or None")
        score = getattr(f, "score", None)
        score = float(score) if isinstance(score, (int, float, np.number)) and np.isfinite(score) else None
        out.append(CheckedFace(pts, f.scheme, conf, box, score))
    return out


def _numbers(v, i: int, name: str) -> np.ndarray | None:
    if v is None:
        return None
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise LandmaskError(f"faces[{i}]: its {name} must be numbers") from None


