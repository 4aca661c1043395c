"""Training augmentation.  Every transform takes and returns ``(image, points)``: a grey uint8 or
float32 image and (K, 2) points in its pixels, so geometry and labels always move together.

Training reads from a *cache crop*: the face cut at twice the crop side and twice the input size
(``CACHE_FACTOR``), so shifts, zooms and rotations stay inside real pixels.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from landmask import geometry as G
from landmask.crops import warp
from landmask.datasets import Sample, face_box
from landmask.report import Reporter
from landmask.schemes import convert_points, get_scheme

CACHE_FACTOR = 2


@dataclass
class AugmentConfig:
    rotate_deg: float = 25.0     # uniform ± degrees
    scale: float = 0.15          # zoom factor uniform in [1 - scale, 1 + scale]
    shift: float = 0.08          # uniform ± fraction of the crop side
    flip: float = 0.5            # probability of a horizontal flip
    mirror_shift: float = 0.0    # added to mirrored x (output pixels): annotations not mirror-symmetric
    brightness: float = 0.2      # ± added (image in [0, 1])
    contrast: float = 0.3        # × uniform in [1 - c, 1 + c]
    blur: float = 0.2            # probability of a Gaussian blur (sigma 0.3..blur_max px)
    blur_max: float = 1.2        # the blur's largest sigma, output pixels
    noise: float = 0.03          # max std of Gaussian noise


def center_crop(cache: np.ndarray, points: np.ndarray, size: int):
    """The unaugmented crop from a cache crop: a pure translation, no resampling."""
    o = (cache.shape[0] - size) // 2
    return cache[o:o + size, o:o + size], points - o


def random_affine(cache: np.ndarray, points: np.ndarray, size: int, cfg: AugmentConfig,
                  rng: np.random.Generator):
    """Random rotation/zoom/shift about the face centre, resampled to size×size."""
    c = (cache.shape[0] - 1) / 2
    angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
    zoom = rng.uniform(1 - cfg.scale, 1 + cfg.scale)
    shift = rng.uniform(-cfg.shift, cfg.shift, size=2) * size
    to_out = np.array([[1.0, 0, (size - 1) / 2 - c], [0, 1.0, (size - 1) / 2 - c]])
    m = G.compose(to_out, G.rotation_about(c, c, angle, zoom, shift))
    out = cv2.warpAffine(cache, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    return out, G.apply(m, points)


def random_flip(image, points, perm, rng, p, shift=0.0):
    """Mirror with probability p.  ``shift`` is added to the mirrored x: when annotations sit δ right
    of the mirror-symmetric position, the mirrored face's points sit δ right of *its* content, that
    is 2δ right of the plain mirror of the points (see train.mirror_shift)."""
    if rng.random() < p:
        return np.ascontiguousarray(image[:, ::-1]), G.flip_points(points, image.shape[1], perm, shift)
    return image, points


def photometric(image: np.ndarray, points, cfg: AugmentConfig, rng: np.random.Generator):
    """uint8 → float32 in [0, 1] with random brightness, contrast, blur and noise."""
    x = image.astype(np.float32) / 255.0
    if rng.random() < cfg.blur:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, max(0.3, cfg.blur_max)))
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    x = x + rng.uniform(-cfg.brightness, cfg.brightness)
    if cfg.noise > 0:
        x = x + rng.normal(0, rng.uniform(0, cfg.noise), x.shape).astype(np.float32)
    return np.clip(x, 0, 1), points


def augment(cache, points, size, perm, cfg: AugmentConfig, rng):
    img, pts = random_affine(cache, points, size, cfg, rng)
    img, pts = random_flip(img, pts, perm, rng, cfg.flip, cfg.mirror_shift)
    return photometric(img, pts, cfg, rng)


def cut_batch(caches, points, sel, size, perm, aug: AugmentConfig | None, rng):
    """The training crops of samples ``sel``: images (B, S, S) float32 in [0, 1] and points (B, K, 2)
    float32 in crop pixels, augmented from ``rng`` (centre crops with ``aug`` None)."""
    imgs, pts = [], []
    for i in sel:
        if aug is None:
            im, p = center_crop(caches[i], points[i], size)
            im = im.astype(np.float32) / 255.0
        else:
            im, p = augment(caches[i], points[i], size, perm, aug, rng)
        imgs.append(im)
        pts.append(p)
    return np.stack(imgs), np.stack(pts).astype(np.float32)


_WORK: dict = {}    # what a batch worker (engine.BatchWorkers) reads: set when it starts


def start_batch_worker(caches, points, size, perm, aug, seed):
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the training process's to handle
    cv2.setNumThreads(1)
    _WORK.update(caches=caches, points=points, size=size, perm=perm, aug=aug, seed=seed)


def worker_ready() -> bool:
    """A batch worker's first task: it answers once it has started (BatchWorkers waits for it)."""
    return True


def cut_batch_in_worker(job):
    """Batch b of epoch e (``job`` = (e, b, sample indices)) from its own random stream."""
    epoch, b, sel = job
    w = _WORK
    rng = np.random.default_rng([w["seed"], epoch, b, 0x5eed])
    return cut_batch(w["caches"], w["points"], sel, w["size"], w["perm"], w["aug"], rng)


def build_cache(samples: list[Sample], scheme: str, size: int, reporter: Reporter, threads: int = 2,
                crop_scale: float = G.CROP_SCALE):
    """Cut each face at CACHE_FACTOR × the crop side into (2S, 2S) uint8 crops.

    Returns caches (N, 2S, 2S) uint8, points (N, K, 2) float32 in cache pixels (model scheme),
    norms (N,) outer-eye-corner distance in cache pixels (NaN where unknown).
    """
    side = size * CACHE_FACTOR

    def one(s: Sample):
        cx, cy, crop_side = G.crop_square(face_box(s), crop_scale)
        m = G.square_affine(cx, cy, crop_side * CACHE_FACTOR, side)
        pts = G.apply(m, convert_points(s.points, s.scheme, scheme))
        return warp(s.image("grey"), m, side), pts

    caches = np.empty((len(samples), side, side), np.uint8)
    points = np.empty((len(samples), len(get_scheme(scheme)), 2), np.float32)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for i, (img, pts) in enumerate(pool.map(one, samples)):
            caches[i], points[i] = img, pts
            reporter.item(i + 1, len(samples), "reading faces")
    norms = G.interocular(points.astype(np.float64), scheme)
    return caches, points, norms
