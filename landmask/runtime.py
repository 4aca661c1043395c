"""Running a trained landmark model on ONNX Runtime: load once, crop faces by the crop rule,
predict in batches, map points back to the image.

Run time only: nothing here imports torch or any training module.  The same LandmarkModel can
wrap another backend's run function (landmask.torch_backend, on the training side, runs a
.safetensors file in PyTorch).
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.crops import face_crop
from landmask.errors import LandmaskError
from landmask.onnxmodel import load_onnx
from landmask.schemes import get_scheme

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODELS = ("ibug68", "kaggle15")          # the default model of each scheme, by scheme name
# every model in MODELS_DIR, by name
SHIPPED_MODELS = DEFAULT_MODELS + ("ibug68-fast", "ibug68-tiny", "ibug68-int8", "ibug68-fast-int8")
# a default model that runs as its shipped 8-bit export where the CPU has 8-bit dot products
INT8_EXPORTS = {"ibug68": "ibug68-int8", "ibug68-fast": "ibug68-fast-int8"}
# /proc/cpuinfo flags of 8-bit dot-product instructions: x86 AVX-512 VNNI and AVX-VNNI, Arm's dot product
INT8_DOT_FLAGS = {"avx512_vnni", "avx_vnni", "asimddp"}


# A crop whose middle (the face) has a grey-level spread under FULLY_FLAT_STD is stretched about its
# mean to STRETCHED_STD (at most MAX_STRETCH ×) and centred on mid-grey before the network sees it:
# dark, foggy or backlit faces, darker or flatter than any training crop.  Between FULLY_FLAT_STD and
# FLAT_STD the crop is blended from the stretched one to itself, so a face whose spread drifts across
# the bar (a dim video) is not moved by a jump.  Clean faces are left as they are (99.5 % of HELEN +
# LFPW training crops have a spread of 18 or more, the median 40).
FULLY_FLAT_STD, FLAT_STD, STRETCHED_STD, MAX_STRETCH = 12.0, 16.0, 40.0, 4.0


def stretch_flat(crops: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 crops → float32 grey levels (0-255), each flat crop (FLAT_STD) stretched.
    The spread is measured on a region that is its own mirror image, so a crop and its mirrored
    copy (``--flip``) are treated alike.  On 84 held-out training faces made 4 × darker the default
    finds 81 instead of 76, NME 3.56 % instead of 3.99 (docs/experiments.md, seventeenth session)."""
    x = crops.astype(np.float32)
    if not len(x):
        return x
    n = x.shape[1]
    a = n // 5
    mid = x[:, a: n - a: 2, a: n - a].reshape(len(x), -1)      # every second row; columns symmetric
    std, mean = mid.std(axis=1), mid.mean(axis=1)
    flat = std < FLAT_STD
    if flat.any():
        s, m = std[flat], mean[flat][:, None, None]
        gain = np.minimum(STRETCHED_STD / np.maximum(s, 1e-3), MAX_STRETCH)[:, None, None]
        w = np.clip((FLAT_STD - s) / (FLAT_STD - FULLY_FLAT_STD), 0.0, 1.0)[:, None, None]
        stretched = np.clip((x[flat] - m) * gain + 128.0, 0.0, 255.0)
        x[flat] = w * stretched + (1.0 - w) * x[flat]
    return x


@functools.cache
def int8_dot_product() -> bool:
    """Whether this CPU has 8-bit dot-product instructions (INT8_DOT_FLAGS; Linux's /proc/cpuinfo).
    There ONNX Runtime runs an 8-bit model in about half the float time with the float's points
    (docs/benchmarks.md); without them x86 CPUs multiply 8-bit values in 16-bit sums that can
    saturate, so landmask's defaults stay float there (and where the flags cannot be read)."""
    try:
        return has_int8_dot(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return False


def has_int8_dot(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists an 8-bit dot-product flag (INT8_DOT_FLAGS) on its
    ``flags`` (x86) or ``Features`` (Arm) lines."""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & INT8_DOT_FLAGS)


def runtime_name(name: str) -> str:
    """The shipped model a shipped name runs as by default: its 8-bit export on a CPU with 8-bit
    dot products (INT8_EXPORTS), else itself."""
    return INT8_EXPORTS.get(name, name) if int8_dot_product() else name


def resolve_model_path(model: str | Path | None, scheme: str = "ibug68", prefer: str = ".onnx") -> Path:
    """The one place a model reference is resolved.  ``model``: a shipped model name (one of
    SHIPPED_MODELS), a model file, a training run folder, or None (the default model of ``scheme``)
    → the file to load.  For a name or run folder holding both an ONNX and a .safetensors file,
    ``prefer`` picks the suffix (run time: ``.onnx``; training and export: ``.safetensors``).
    The default (None) at run time is ``runtime_name`` of the scheme's: ibug68 runs as ibug68-int8
    on a CPU with 8-bit dot products; a model named is always that model."""
    name = str(model) if model is not None else (runtime_name(scheme) if prefer == ".onnx" else scheme)
    other = ".safetensors" if prefer == ".onnx" else ".onnx"
    if name in SHIPPED_MODELS:
        stem = MODELS_DIR / name
    elif Path(name).is_dir():  # a training run folder
        stem = Path(name) / "model"
    else:
        p = Path(name)
        if p.is_file():
            return p
        import difflib
        close = difflib.get_close_matches(name, SHIPPED_MODELS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise LandmaskError(f"--model {name}: no such file, and not a shipped model "
                            f"({', '.join(SHIPPED_MODELS)}){hint}")
    for suffix in (prefer, other):
        if stem.with_suffix(suffix).is_file():
            return stem.with_suffix(suffix)
    raise LandmaskError(f"--model {name}: no {stem.name}.onnx or {stem.name}.safetensors in {stem.parent}")


class LandmarkModel:
    """A loaded landmark model.  ``predict(image, boxes)`` → (N, K, 2) points in image pixels.

    ``meta``: the model file's landmask metadata; ``run``: (N, 1, S, S) float32 input →
    ((N, K, 2) crop-pixel points, (N,) face confidence[, (N, K) per-point confidence])."""

    def __init__(self, path, meta: dict, run, backend: str = "onnx"):
        self.path, self.meta, self._run, self.backend = Path(path), meta, run, backend
        m = self.meta["model"]
        self.scheme = get_scheme(self.meta["scheme"])
        self.input_size = int(m["input_size"])
        self.mean, self.std = float(m["mean"]), float(m["std"])
        self.crop_scale = float(self.meta["crop"]["scale"])
        self._perm = self.scheme.flip_permutation
        # added to the x of mirrored predictions when averaging with a flip (see train.mirror_shift)
        self.mirror_shift = float(self.meta.get("mirror", {}).get("shift_px", 0.0))
        # each point's usual confidence on validation faces (train.calibrate_model), when measured
        typical = self.meta.get("point_confidence", {}).get("typical")
        self._typical = np.asarray(typical, np.float64) if typical else None

    def __repr__(self):
        return f"LandmarkModel({self.path.name}, scheme={self.scheme.name}, input={self.input_size}, {self.backend})"

    @property
    def point_confidence_calibrated(self) -> bool:
        """Whether point confidences are relative to the model's usual ones (1 = as clear as usual)."""
        return self._typical is not None

    @property
    def min_confidence(self) -> float | None:
        """Crops whose face confidence is below this are not faces (set from validation crops by
        ``landmask calibrate``/training; None when the model file has no such figure)."""
        return self.meta.get("face_check", {}).get("min_confidence")

    @property
    def learned_check(self) -> dict | None:
        """The learned face check (``landmask train-face-check``), when the model file has one that
        fits this model (its point count) and its point confidences are calibrated (its input)."""
        v = self.meta.get("face_check", {}).get("learned")
        if v is None or self._typical is None:
            return None
        k = 1 + len(self.scheme)
        kind = v.get("kind", "hog")   # files of the eleventh session have no kind: HOG
        if kind == "cnn":
            ok = all(key in v for key in ("onnx", "input")) and len(v["conf_mean"]) == len(v["conf_scale"]) == k
        else:
            haar = v.get("haar")
            ok = (kind == "hog" and len(v["weights"]) == k + hog_length(v["hog"]) + (2 if haar is not None else 0)
                  and (haar is None or (isinstance(haar, dict) and set(HAAR) <= set(haar)
                                        and Path(str(haar["cascade"])).name == haar["cascade"]
                                        and len(haar["clip"]) == 2)))
        return v if ok else None   # a check of an unknown kind, or fitted for another model: the plain bar

    def is_face(self, conf, point_conf, crops=None, image=None, boxes=None) -> np.ndarray:
        """Whether each crop holds a face (N,) bool.  ``conf``: the crops' face confidences (N,);
        ``point_conf``: their calibrated point confidences (N, K), or Nones; ``crops``: the crops
        (N, S, S) uint8; ``image`` and ``boxes`` (N, 4): the image and the boxes they were cut for
        (a check with a face cascade looks around them).  With a learned face check (and the crops,
        and the image where it needs it): its own, lower bar on the face confidence and its score
        at least its threshold; otherwise the face confidence at least the face check's bar."""
        conf = np.asarray(conf, np.float64).reshape(-1)
        check = self.learned_check
        if (check is None or crops is None or not len(conf) or any(p is None for p in point_conf)
                or (check.get("haar") is not None and (image is None or boxes is None))):
            return np.ones(len(conf), bool) if self.min_confidence is None else conf >= self.min_confidence
        keep = conf >= check["min_confidence"]   # only those get scored
        if keep.any():
            boxes = None if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)[keep]
            keep[keep] = learned_check_score(check, conf[keep], np.asarray(point_conf, np.float64)[keep],
                                             np.asarray(crops)[keep], image, boxes) >= check["threshold"]
        return keep

    def predict_crops(self, crops: np.ndarray, flip: bool = False, confidence: bool = False):
        """(N, S, S) uint8 crops → (N, K, 2) float64 crop pixels (and, with ``confidence``, the
        (N,) face confidences).  ``flip`` averages with the mirrored crop's prediction."""
        pts, face, _ = self.predict_crops_all(crops, flip)
        return (pts, face) if confidence else pts

    def predict_crops_all(self, crops: np.ndarray, flip: bool = False):
        """(N, S, S) uint8 crops → points (N, K, 2) in crop pixels, face confidences (N,) and
        point confidences (N, K) in [0, 1]: each heatmap's sum of squared probabilities, divided by its
        usual value on validation faces and capped at 1 when the model file has that figure
        (1 = as clear as usual; a covered or turned-away point gets a spread-out heatmap)."""
        k = len(self.scheme)
        if len(crops) == 0:
            return np.zeros((0, k, 2)), np.zeros(0), np.zeros((0, k))
        x = np.concatenate([crops, crops[:, :, ::-1]]) if flip else crops
        pts, face, point = (np.asarray(a, np.float64) for a in self._run(self.model_input(x)))
        n = len(crops)
        if flip:
            pts = G.flip_average(pts[:n], pts[n:], self.input_size, self._perm, self.mirror_shift)
            point = (point[:n] + point[n:, self._perm]) / 2
        point = point[:n]
        if self._typical is not None:
            point = np.minimum(point / self._typical, 1.0)
        return pts, face[:n], point

    def model_input(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 crops → the network's (N, 1, S, S) float32 input (the model's normalisation),
        flat crops stretched first (``stretch_flat``)."""
        x = (stretch_flat(crops) / 255.0 - self.mean) / self.std
        return np.ascontiguousarray(x[:, None], dtype=np.float32)

    def crops(self, image: np.ndarray, boxes) -> tuple[np.ndarray, list[np.ndarray]]:
        out, mats = [], []
        for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            c, m = face_crop(image, box, self.input_size, self.crop_scale)
            out.append(c)
            mats.append(m)
        if not out:
            return np.zeros((0, self.input_size, self.input_size), np.uint8), []
        return np.stack(out), mats

    def predict(self, image: np.ndarray, boxes, flip: bool = False, confidence: bool = False):
        """Landmarks (N, K, 2) for every face box (x0, y0, x1, y1) in an RGB or grey image, in one
        batch (and, with ``confidence``, the (N,) face confidences)."""
        pts, face, _ = self.predict_all(image, boxes, flip)
        return (pts, face) if confidence else pts

    def predict_all(self, image: np.ndarray, boxes, flip: bool = False, with_crops: bool = False):
        """Points (N, K, 2) in image pixels, face confidences (N,) and point confidences (N, K)
        (and, ``with_crops``, the (N, S, S) crops they came from, for the learned face check)."""
        crops, mats = self.crops(image, boxes)
        pts, face, point = self.predict_crops_all(crops, flip)
        if mats:
            pts = np.stack([G.apply(G.invert(m), p) for m, p in zip(mats, pts)])
        return (pts, face, point, crops) if with_crops else (pts, face, point)


def hog_length(hog: dict) -> int:
    """The length of a crop's HOG descriptor with the learned check's ``hog`` settings."""
    per_side = (hog["size"] - hog["block"]) // hog["stride"] + 1
    return per_side * per_side * (hog["block"] // hog["cell"]) ** 2 * hog["bins"]


@functools.lru_cache(maxsize=4)
def _hog_descriptor(size: int, block: int, stride: int, cell: int, bins: int):
    """OpenCV's HOG descriptor for these settings, made once (it is asked for on every photo)."""
    import cv2
    return cv2.HOGDescriptor((size, size), (block, block), (stride, stride), (cell, cell), bins)


def crop_hog(crops: np.ndarray, hog: dict) -> np.ndarray:
    """(N, L) HOG descriptors (OpenCV's, L2-Hys blocks) of (N, S, S) uint8 crops resized to
    ``hog["size"]`` pixels: the shape of the crop's gradients, which tells a person's face from an
    animal's where the heatmaps alone do not."""
    size = hog["size"]
    desc = _hog_descriptor(size, hog["block"], hog["stride"], hog["cell"], hog["bins"])
    out = np.zeros((len(crops), hog_length(hog)), np.float64)
    for i, small in enumerate(small_crops(crops, size)):
        out[i] = desc.compute(small).ravel()
    return out


# The learned check's second opinion from OpenCV's Viola-Jones face cascade (trained on people's
# faces, not on ours): where it finds a face of about the candidate's size in a wider crop.
HAAR = {"cascade": "haarcascade_frontalface_default.xml", "wide": 1.6, "size": 96,
        "min": 0.45, "max": 0.85, "scale_factor": 1.1, "clip": [-5.0, 15.0]}   # clip: of the level weight


_haar_local = threading.local()


def _haar_cascade(name: str):
    """OpenCV's cascade ``name`` (from cv2.data), one per thread (a cascade is not shared between threads)."""
    cascades = _haar_local.__dict__.setdefault("cascades", {})
    if name not in cascades:
        import cv2
        if not hasattr(cv2, "CascadeClassifier"):
            raise LandmaskError("this model's face check needs OpenCV's CascadeClassifier, which OpenCV 5 removed: "
                                "install opencv-python-headless<5 (landmask's own requirement)")
        c = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / name))
        if c.empty():
            raise LandmaskError(f"OpenCV's face cascade {name} is missing from {cv2.data.haarcascades}")
        cascades[name] = c
    return cascades[name]


def wide_crops(grey: np.ndarray, boxes, wide: float, size: int) -> np.ndarray:
    """(N, size, size) uint8 square crops of ``grey`` centred on each box (x0, y0, x1, y1), ``wide``
    times its longer side (edges repeated outside the image; area interpolation)."""
    import cv2
    grey = np.ascontiguousarray(grey)
    h, w = grey.shape[:2]
    out = np.zeros((len(boxes), size, size), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        side = max(wide * max(x1 - x0, y1 - y0), 2.0)
        ax, ay = int(round((x0 + x1 - side) / 2)), int(round((y0 + y1 - side) / 2))
        n = int(round(side))
        cx0, cy0, cx1, cy1 = max(ax, 0), max(ay, 0), min(ax + n, w), min(ay + n, h)
        if cx1 <= cx0 or cy1 <= cy0:
            continue   # wholly outside the image: a flat crop, no face found
        piece = cv2.copyMakeBorder(grey[cy0:cy1, cx0:cx1], cy0 - ay, ay + n - cy1, cx0 - ax, ax + n - cx1,
                                   cv2.BORDER_REPLICATE)
        out[i] = cv2.resize(piece, (size, size), interpolation=cv2.INTER_AREA)
    return out


def haar_features(grey: np.ndarray, boxes, spec: dict) -> np.ndarray:
    """(N, 2) [found, level weight] of OpenCV's face cascade on a ``spec["wide"]`` times wider crop
    of each box at ``spec["size"]`` pixels, looking only for faces of ``spec["min"]``..``["max"]``
    of that crop: 1 and its best detection's level weight (clipped to ``spec["clip"]``) where it
    finds one, else 0 and 0."""
    from landmask.imageio import to_grey
    grey = to_grey(grey)   # an RGB(A) or 16-bit image too
    cascade = _haar_cascade(spec["cascade"])
    size = spec["size"]
    lo, hi = (int(size * spec["min"]),) * 2, (int(size * spec["max"]),) * 2
    out = np.zeros((len(np.asarray(boxes).reshape(-1, 4)), 2))
    for i, crop in enumerate(wide_crops(grey, boxes, spec["wide"], size)):
        rects, _, weights = cascade.detectMultiScale3(crop, scaleFactor=spec["scale_factor"], minNeighbors=0,
                                                      minSize=lo, maxSize=hi, outputRejectLevels=True)
        if len(rects):
            out[i] = 1.0, float(np.clip(np.max(weights), *spec["clip"]))
    return out


def small_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S) uint8 crops resized to (N, size, size) uint8 (area interpolation)."""
    import cv2
    if not len(crops):
        return np.zeros((0, size, size), np.uint8)
    return np.stack([cv2.resize(np.ascontiguousarray(c), (size, size), interpolation=cv2.INTER_AREA) for c in crops])


def cnn_check_input(small: np.ndarray) -> np.ndarray:
    """(N, 1, s, s) float32 input of the CNN face check from (N, s, s) uint8 crops: each crop
    scaled to [0, 1], less its mean, over its standard deviation (+ 0.05, so a flat crop stays flat)."""
    im = small.astype(np.float32)[:, None] / 255
    return (im - im.mean((2, 3), keepdims=True)) / (im.std((2, 3), keepdims=True) + 0.05)


@functools.lru_cache(maxsize=8)
def _check_session(onnx_b64: str):
    """ONNX Runtime session of a CNN face check stored (base64) in a model file's metadata."""
    import base64
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1   # a 64 px network: one thread is fastest
    return ort.InferenceSession(base64.b64decode(onnx_b64), opts, providers=["CPUExecutionProvider"])


def learned_check_score(check: dict, conf: np.ndarray, point_conf: np.ndarray, crops: np.ndarray,
                        image: np.ndarray | None = None, boxes=None) -> np.ndarray:
    """The learned face check's score (N,) of crops with face confidences ``conf`` (N,), calibrated
    point confidences ``point_conf`` (N, K) and pixels ``crops`` (N, S, S); higher = more face-like
    (landmask.face_check fits it).  ``kind`` "cnn": a small CNN's logit over the crop at
    ``input`` pixels and the standardised [face confidence, point confidences]; otherwise (files of
    the eleventh session) a logistic regression's logit over [face confidence, point confidences,
    HOG of the crop], and with ``haar`` the face cascade's [found, level weight] around ``boxes``
    in ``image`` (haar_features), run only where it can change the decision: the score without
    it is bounded by the cascade's least and greatest contribution, so a candidate clearly on one
    side of the threshold either way is scored with the bound that keeps its side."""
    conf_feats = np.concatenate([np.asarray(conf, np.float64)[:, None], point_conf], axis=1)
    if check.get("kind") == "cnn":
        sess = _check_session(check["onnx"])
        ex = (conf_feats - np.asarray(check["conf_mean"])) / np.asarray(check["conf_scale"])
        return sess.run(None, {"crop": cnn_check_input(small_crops(crops, check["input"])),
                               "confidences": ex.astype(np.float32)})[0].astype(np.float64).reshape(-1)
    x = np.concatenate([conf_feats, crop_hog(crops, check["hog"])], axis=1)
    weights = np.asarray(check["weights"], np.float64)
    score = x @ weights[:x.shape[1]] + float(check["bias"])
    if check.get("haar") is None:
        return score
    w_found, w_level = weights[x.shape[1]:]
    # the cascade adds 0 (nothing found) or w_found + w_level * level, level within its clip
    found_lo, found_hi = sorted(w_found + w_level * np.asarray(check["haar"]["clip"], np.float64))
    lo, hi = score + min(0.0, found_lo), score + max(0.0, found_hi)
    t = float(check["threshold"])
    out = np.where(lo >= t, lo, hi)            # decided without the cascade: kept (lo) or dropped (hi < t)
    need = (lo < t) & (hi >= t)
    if need.any():
        f = haar_features(image, np.asarray(boxes, np.float64).reshape(-1, 4)[need], check["haar"])
        out[need] = score[need] + f @ np.array([w_found, w_level])
    return out


def load_onnx_model(path, threads: int | None = None) -> LandmarkModel:
    """A LandmarkModel on ONNX Runtime from a landmask .onnx landmark file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        raise LandmaskError(f"{path}: a PyTorch model file (a training run's); run time uses its ONNX export: "
                            f"landmask export --model {path} --onnx {path.with_suffix('.onnx')} (or --backend torch)")
    sess, meta = load_onnx(path, threads, kind="landmarks")
    name = sess.get_inputs()[0].name
    n_out = len(sess.get_outputs())

    def run(x):
        out = sess.run(None, {name: x})
        # files exported before per-point confidence (or without a face check) lack outputs 2 and 3
        face = out[1] if n_out > 1 else np.ones(len(x), np.float32)
        point = out[2] if n_out > 2 else np.ones(out[0].shape[:2], np.float32)
        return out[0], face, point
    return LandmarkModel(path, meta, run, "onnx")


_CACHE: dict = {}


def load(model: str | Path | LandmarkModel | None = None, scheme: str = "ibug68",
         threads: int | None = None) -> LandmarkModel:
    """Load a landmark model on ONNX Runtime once and reuse it (cached by file and threads).
    ``model``: see resolve_model_path; a LandmarkModel is returned as it is."""
    if isinstance(model, LandmarkModel):
        return model
    path = resolve_model_path(model, scheme)
    st = path.stat()
    stamp, key = (st.st_mtime_ns, st.st_size), (str(path.resolve()), threads)
    if key not in _CACHE or _CACHE[key][0] != stamp:   # a file rewritten since (a new export) replaces its entry
        _CACHE[key] = (stamp, load_onnx_model(path, threads))
    return _CACHE[key][1]
