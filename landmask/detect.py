"""Face detection behind one narrow interface: ``detector.detect(image) -> list[Detection]``.

Backends: ``landmask`` (landmask's own CNN, run by ONNX Runtime; the default), ``haar`` (OpenCV's
frontal-face cascade from opencv-python-headless 4.x) and ``dlib`` (dlib's HOG detector, optional:
``pip install dlib-bin``).  Every backend reports its own box *and* the box mapped onto the
landmark-box convention (the tight box of the 68 points) that the crop rule expects.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from landmask import geometry as G
from landmask.errors import LandmaskError
from landmask.imageio import to_grey

MODELS_DIR = Path(__file__).parent / "models"


@dataclass
class Detection:
    box: np.ndarray            # (x0, y0, x1, y1) as the backend gives it, image pixels
    score: float
    landmark_box: np.ndarray   # the same face in the landmark-box convention


# Per-backend map from its own box onto the landmark box: centre shift (fractions of the box's
# width/height) and size factor, measured on helen-68/trainset by scripts/calibrate_detectors.py.
CALIBRATION = {
    "haar": {"dx": 0.008, "dy": 0.145, "scale": 0.870},  # 773 faces
    "dlib": {"dx": 0.013, "dy": 0.089, "scale": 0.991},  # 825 faces
}


def calibrate(box, cal) -> np.ndarray:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + cal["dx"] * w, (y0 + y1) / 2 + cal["dy"] * h
    hw, hh = w * cal["scale"] / 2, h * cal["scale"] / 2
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh])


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.4) -> list[int]:
    order, keep = list(np.argsort(-scores)), []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if G.box_iou(boxes[i], boxes[j]) < iou]
    return keep


DEFAULT_MIN_SCORE = 0.4   # for detector files that do not store their own (landmask export --min-score)


def is_number(v) -> bool:
    """A finite real number (a bool, a string, NaN or infinity is not): what an option's value must be."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


class LandmaskDetector:
    """landmask's own face detector (DetNet, CenterNet-style) on ONNX Runtime, run over an image
    pyramid so one call finds faces from ``min_face`` pixels up to the whole image.

    The network finds faces whose landmark box is about ``face_range`` pixels (stored in the model
    file: 12-154 px for the shipped one) at its input.  Level 0 is the image itself (never
    enlarged; shrunk only so that ``min_face``, when given, maps to 4 × the network's smallest, or
    to ``max_pixels``: 3 megapixels, so faces from about 12 px × sqrt(megapixels / 3) on a larger
    photo); each next level is ``level_step`` times smaller (the last up to 1.25 × that when it then
    fits), until the whole image is within the
    network's largest face size.  Detections of all levels are merged by non-maximum suppression.

    ``size``: a single level with the image's longer side scaled to this (the old one-scale
    behaviour, for comparison).  ``threshold`` (``--min-score``): the least centre score kept (None:
    the model file's ``min_score``, chosen when it was exported)."""

    name = "landmask"

    def __init__(self, path=None, size: int | None = None, threshold: float | None = None, threads: int | None = None,
                 min_face: float | None = None, max_pixels: int = 3_000_000, level_step: float = 4.0):
        from landmask.onnxmodel import load_onnx
        self.path = Path(path or MODELS_DIR / "detector.onnx")
        if not self.path.exists():
            raise LandmaskError(f"{self.path}: face detector model not found")
        self.sess, meta = load_onnx(self.path, threads, kind="detector")
        self.stride = int(meta["stride"])
        self.mean, self.std = meta["model"]["mean"], meta["model"]["std"]
        self.face_range = tuple(meta.get("face_range", (12.0, 170.0)))
        if min_face is not None and not min_face > 0:
            raise LandmaskError(f"--min-face {min_face}: must be a positive number of pixels")
        if level_step <= 1:
            raise LandmaskError(f"level_step {level_step}: must be more than 1")
        # the least centre score kept: --min-score, else the model file's own default (0.4 before files had one)
        # ... and min_score_plain: the least score with a landmark model judged by its plain bar (no
        # learned face check); --min-score overrides both
        stored = meta.get("min_score", DEFAULT_MIN_SCORE)
        plain = meta.get("min_score_plain", stored)
        for key, value in (("min_score", stored), ("min_score_plain", plain)):
            if threshold is None and not (is_number(value) and 0 <= value <= 1):
                raise LandmaskError(f"{self.path}: its {key} {value!r} is not a score from 0 to 1")
        self.size, self.threshold = size, float(stored if threshold is None else threshold)
        self.plain_threshold = self.threshold if threshold is not None else max(self.threshold, float(plain))
        self.min_face = float(min_face) if min_face is not None else None
        self.max_pixels, self.level_step = max_pixels, level_step
        self.input = self.sess.get_inputs()[0].name

    def scales(self, h: int, w: int) -> list[float]:
        """The pyramid's scale factors (image pixels → network pixels) for an h × w image."""
        if self.size:
            return [self.size / max(h, w)]
        lo, hi = self.face_range
        # a given min_face maps to 4 x the network's smallest face (48 px), where its recall is high
        s = min(1.0, 4 * lo / (self.min_face or 4 * lo), (self.max_pixels / (h * w)) ** 0.5)
        out, side = [s], max(h, w)
        # next level while the level's largest findable face is smaller than the image; a step up to
        # a quarter longer than level_step is taken when it makes the image fit the network's largest
        # face, saving a last tiny level (640 × 480: 1 and 0.24, not 1, 0.25 and 0.0625)
        while side * s > hi and side * s / self.level_step >= 16:
            nxt = s / self.level_step
            if side * nxt > hi and side * s / (1.25 * self.level_step) <= hi:
                nxt = hi / side
            s = nxt
            out.append(s)
        return out

    def detect(self, image: np.ndarray) -> list[Detection]:
        grey = to_grey(image)
        h, w = grey.shape
        boxes, scores = [], []
        level, at = grey, 1.0   # each level is shrunk from the previous one: cheap on a large photo
        for f in self.scales(h, w):
            if f != at:
                level = cv2.resize(level, (max(1, round(w * f)), max(1, round(h * f))),
                                   interpolation=cv2.INTER_AREA if f < at else cv2.INTER_LINEAR)
                at = f
            b, sc = self._detect_level(level, (w, h))
            boxes += b
            scores += sc
        if not boxes:
            return []
        boxes, scores = np.array(boxes), np.array(scores)
        if self.min_face:
            side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            ok = np.nonzero(side >= self.min_face * 0.8)[0]   # a little slack: box sizes are estimates
            boxes, scores = boxes[ok], scores[ok]
        return [Detection(boxes[i], scores[i], boxes[i]) for i in nms(boxes, scores)]

    def _detect_level(self, small: np.ndarray, size: tuple[int, int]):
        """Boxes (in pixels of the image, ``size`` = (width, height)) and scores found in ``small``,
        the image resized."""
        nh, nw = small.shape
        fx, fy = nw / size[0], nh / size[1]
        # pad right/bottom to a multiple of 32 (the network's total stride): geometry is unchanged
        pw, ph = -nw % 32, -nh % 32
        if pw or ph:
            small = cv2.copyMakeBorder(small, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        x = small.astype(np.float32)[None, None]
        x *= 1 / (255.0 * self.std)
        x -= self.mean / self.std
        out = self.sess.run(None, {self.input: x})[0][0]        # (5, H/8, W/8)
        return self._decode(out, fx, fy)

    def _decode(self, out, fx, fy):
        logit = out[0]
        # peaks of the centre map above the threshold, found on the logits (sigmoid is monotonic:
        # the same peaks, and only the few kept cells are turned into scores)
        peak = logit == cv2.dilate(logit, np.ones((3, 3), np.uint8))
        t = min(max(self.threshold, 1e-7), 1 - 1e-7)
        ys, xs = np.nonzero(peak & (logit >= np.log(t / (1 - t))))
        if not len(ys):
            return [], []
        dx, dy, lw, lh = out[1:, ys, xs].astype(np.float64)
        scores = 1 / (1 + np.exp(-logit[ys, xs].astype(np.float64)))
        keep = scores >= self.threshold          # the float32 logit bound may let an exact tie in
        # (training's targets put cell i's centre at pixel 8 i + 4, detect_train.targets; this reads it at
        # 8 i + 3.5: boxes sit half a network pixel up and left of what the network learned.  Reading
        # them as trained moved the 84 held-out faces' detector boxes closer (mean centre offset 6.02 →
        # 5.74 % of the face) but not their landmarks (NME through the detector 3.503/3.534 → 3.505/3.564 %:
        # the scout framing and the learned face check were fitted on these boxes); kept until the
        # detector and the check are next trained, docs/experiments.md, twenty-first session)
        cx, cy = (xs + dx + 0.5) * self.stride - 0.5, (ys + dy + 0.5) * self.stride - 0.5
        bw, bh = np.exp(lw) * self.stride, np.exp(lh) * self.stride
        # back to image pixels (pixel-centre convention)
        boxes = np.stack([(cx - bw / 2 + 0.5) / fx - 0.5, (cy - bh / 2 + 0.5) / fy - 0.5,
                          (cx + bw / 2 + 0.5) / fx - 0.5, (cy + bh / 2 + 0.5) / fy - 0.5], axis=1)
        return list(boxes[keep]), [float(v) for v in scores[keep]]


class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade (ships with opencv-python-headless 4.x)."""

    name = "haar"

    def __init__(self, min_neighbors: int = 4, max_side: int = 640):
        if not hasattr(cv2, "CascadeClassifier"):
            raise LandmaskError("this OpenCV has no CascadeClassifier (OpenCV 5 removed it); "
                                "install opencv-python-headless<5 or use --detector landmask")
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        self.min_neighbors, self.max_side = min_neighbors, max_side

    def detect(self, image):
        grey = to_grey(image)
        f = min(1.0, self.max_side / max(grey.shape))
        small = cv2.resize(grey, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else grey
        found, _, weights = self.cascade.detectMultiScale3(small, 1.1, self.min_neighbors, minSize=(20, 20),
                                                           outputRejectLevels=True)
        out = []
        for (x, y, w, h), s in zip(found, np.ravel(weights) if len(found) else []):
            box = np.array([x, y, x + w, y + h], float) / f
            out.append(Detection(box, float(s), calibrate(box, CALIBRATION["haar"])))
        return out


class DlibDetector:
    """dlib's HOG + linear SVM frontal face detector (optional extra: pip install dlib-bin)."""

    name = "dlib"

    def __init__(self, upsample: int = 0):
        try:
            import dlib
        except ImportError:
            raise LandmaskError("--detector dlib needs dlib: pip install dlib-bin") from None
        self.det, self.upsample = dlib.get_frontal_face_detector(), upsample

    def detect(self, image):
        rects, scores, _ = self.det.run(to_grey(image), self.upsample, 0.0)
        out = []
        for r, s in zip(rects, scores):
            if s <= 0:   # dlib's own default: only positive SVM scores are faces
                continue
            box = np.array([r.left(), r.top(), r.right(), r.bottom()], float)
            out.append(Detection(box, float(s), calibrate(box, CALIBRATION["dlib"])))
        return out


BACKENDS = {"landmask": LandmaskDetector, "haar": HaarDetector, "dlib": DlibDetector}


def detector_options(name: str, threads=None, detect_size=None, min_face=None, min_score=None) -> dict:
    """The user's options (--threads, --detect-size, --min-face, --min-score) as ``name``'s
    constructor arguments, checked; the pipeline applies min-face and min-score to every backend."""
    # the CLI's ranges (cli.RANGES), for the Python API too: out of them no face is ever found
    if detect_size is not None and (isinstance(detect_size, bool) or not isinstance(detect_size, (int, np.integer))
                                    or not 32 <= detect_size <= 4096):
        raise LandmaskError(f"--detect-size {detect_size!r}: a whole number of pixels from 32 to 4096")
    if min_face is not None and not (is_number(min_face) and 1 <= min_face <= 100_000):
        raise LandmaskError(f"--min-face {min_face!r}: a number of pixels from 1 to 100000")
    if min_score is not None and not is_number(min_score):
        raise LandmaskError(f"--min-score {min_score!r}: give a number")
    if min_score is not None and not 0 <= min_score <= 1 and name == "landmask":
        raise LandmaskError(f"--min-score {min_score}: landmask's detector scores are 0..1")
    if name != "landmask":
        return {}
    opts = {"threads": threads, "size": detect_size, "min_face": min_face, "threshold": min_score}
    return {k: v for k, v in opts.items() if v is not None}
_CACHE: dict = {}


def get_detector(name: str = "landmask", **options):
    """A detector backend by name, created once and reused."""
    if name not in BACKENDS:
        raise LandmaskError(f"--detector {name!r}: choose one of {', '.join(BACKENDS)}")
    key = (name, tuple(sorted(options.items())))
    if key not in _CACHE:
        _CACHE[key] = BACKENDS[name](**options)
    return _CACHE[key]
