"""Running a trained landmark model: load once (ONNX Runtime by default, PyTorch for .safetensors),
crop faces by the crop rule, predict in batches, map points back to the image.

Nothing here imports torch unless a .safetensors model is loaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.crops import face_crop
from landmask.errors import LandmaskError
from landmask.schemes import get_scheme

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODELS = ("ibug68", "kaggle15")          # the default model of each scheme, by scheme name
# every model in MODELS_DIR, by name
SHIPPED_MODELS = DEFAULT_MODELS + ("ibug68-fast", "ibug68-tiny", "ibug68-int8", "ibug68-fast-int8")


def resolve_model_path(model: str | Path | None, scheme: str = "ibug68") -> Path:
    """A shipped model name (one of SHIPPED_MODELS), a file path, a run folder, or None (the default
    for ``scheme``) → the model file to load (ONNX preferred for shipped models)."""
    name = str(model) if model is not None else scheme
    if name in SHIPPED_MODELS:
        for suffix in (".onnx", ".safetensors"):
            p = MODELS_DIR / f"{name}{suffix}"
            if p.exists():
                return p
        raise LandmaskError(f"the shipped model {name!r} is missing from {MODELS_DIR}")
    p = Path(name)
    if p.is_dir():  # a training run folder
        p = p / "model.safetensors"
    if not p.exists():
        import difflib
        close = difflib.get_close_matches(name, SHIPPED_MODELS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise LandmaskError(f"--model {name}: no such file, and not a shipped model "
                            f"({', '.join(SHIPPED_MODELS)}){hint}")
    return p


class LandmarkModel:
    """A loaded landmark model.  ``predict(image, boxes)`` → (N, K, 2) points in image pixels."""

    def __init__(self, path, threads: int | None = None, backend: str | None = None):
        self.path = Path(path)
        backend = backend or ("onnx" if self.path.suffix == ".onnx" else "torch")
        if backend == "onnx":
            self.meta, self._run = _load_onnx(self.path, threads)
        elif backend == "torch":
            self.meta, self._run = _load_torch(self.path, threads)
        else:
            raise LandmaskError(f"backend {backend!r}: choose onnx or torch")
        self.backend = backend
        m = self.meta["model"]
        self.scheme = get_scheme(self.meta["scheme"])
        self.input_size = int(m["input_size"])
        self.mean, self.std = float(m["mean"]), float(m["std"])
        self.crop_scale = float(self.meta["crop"]["scale"])
        self._perm = self.scheme.flip_permutation
        # added to the x of mirrored predictions when averaging with a flip (see train.mirror_shift)
        self.mirror_shift = float(self.meta.get("mirror", {}).get("shift_px", 0.0))

    def __repr__(self):
        return f"LandmarkModel({self.path.name}, scheme={self.scheme.name}, input={self.input_size}, {self.backend})"

    @property
    def min_confidence(self) -> float | None:
        """Crops whose face confidence is below this are not faces (set from validation crops by
        ``landmask calibrate``/training; None when the model file has no such figure)."""
        return self.meta.get("face_check", {}).get("min_confidence")

    def predict_crops(self, crops: np.ndarray, flip: bool = False, confidence: bool = False):
        """(N, S, S) uint8 crops → (N, K, 2) float64 crop pixels (and, with ``confidence``, the
        (N,) face confidences).  ``flip`` averages with the mirrored crop's prediction."""
        if len(crops) == 0:
            empty = np.zeros((0, len(self.scheme), 2))
            return (empty, np.zeros(0)) if confidence else empty
        x = np.concatenate([crops, crops[:, :, ::-1]]) if flip else crops
        pts, conf = self._run(self.model_input(x))
        pts = pts.astype(np.float64)
        n = len(crops)
        if flip:
            pts = G.flip_average(pts[:n], pts[n:], self.input_size, self._perm, self.mirror_shift)
        return (pts, np.asarray(conf, np.float64)[:n]) if confidence else pts

    def model_input(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 crops → the network's (N, 1, S, S) float32 input (the model's normalisation)."""
        x = (crops.astype(np.float32) / 255.0 - self.mean) / self.std
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
        crops, mats = self.crops(image, boxes)
        pts, conf = self.predict_crops(crops, flip, confidence=True)
        if mats:
            pts = np.stack([G.apply(G.invert(m), p) for m, p in zip(mats, pts)])
        return (pts, conf) if confidence else pts


def _load_onnx(path: Path, threads):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise LandmaskError(f"{path}: cannot load the ONNX model ({e})") from None
    props = sess.get_modelmeta().custom_metadata_map
    if "landmask" not in props:
        raise LandmaskError(f"{path}: an ONNX file without landmask metadata")
    name = sess.get_inputs()[0].name
    n_out = len(sess.get_outputs())

    def run(x):
        out = sess.run(None, {name: x})
        return out[0], (out[1] if n_out > 1 else np.ones(len(x), np.float32))
    return json.loads(props["landmask"]), run


def _load_torch(path: Path, threads):
    if path.suffix == ".onnx":
        raise LandmaskError(f"{path}: the PyTorch backend needs the model's .safetensors file, and this ONNX "
                            f"model has none beside it (an 8-bit export runs on ONNX Runtime only)")
    try:
        import torch
    except ImportError:
        raise LandmaskError(f"{path}: a .safetensors model needs PyTorch "
                            f"(pip install 'landmask[train]'), or use its .onnx export") from None
    from landmask.checkpoint import load_model_file
    if threads:
        torch.set_num_threads(threads)
    model, meta = load_model_file(path)

    from landmask.model import WithConfidence
    wrapped = WithConfidence(model).eval()

    def run(x):
        with torch.inference_mode():
            pts, conf = wrapped(torch.from_numpy(x))
            return pts.numpy(), conf.numpy()
    return meta, run


_CACHE: dict = {}


def load(model: str | Path | None = None, scheme: str = "ibug68", threads: int | None = None,
         backend: str | None = None) -> LandmarkModel:
    """Load a landmark model once and reuse it (cached by path, threads and backend)."""
    path = resolve_model_path(model, scheme)
    if backend == "torch" and path.suffix == ".onnx" and path.with_suffix(".safetensors").exists():
        path = path.with_suffix(".safetensors")
    key = (str(path.resolve()), threads, backend)
    if key not in _CACHE:
        _CACHE[key] = LandmarkModel(path, threads, backend)
    return _CACHE[key]
