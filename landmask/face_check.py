"""The learned face check (``landmask train-face-check``): a logistic regression over a refined
crop's face confidence, its calibrated point confidences and the HOG of its pixels that decides
which crops hold a human face.  It replaces the plain face check's bar (the mean heatmap peak
against a fraction of its lowest value on held-out faces) with a lower one, ``BAR_FRACTION`` of it,
and its own score above that.

The plain bar keeps any crop whose heatmaps are about as sharp as a face's, and a dog's face can be,
while a person with a hand over the mouth can fall under it (a mean over all 68 heatmaps).  The
pattern of point confidences and the crop's gradients separate them better.  The check is fitted on
the pipeline's own candidates (the shipped detector, then the model's two landmark passes), so it
learns what the pipeline will see:

- faces: the training photos' annotated faces as found, and each once more with a box of a random
  shade over the mouth or one eye (a covered part must not make a face a non-face);
- non-faces: candidates on face-free pieces of the training photos (of those where the pipeline
  finds no face beyond the annotated ones: people in the background would be taught as non-faces),
  and on such pieces with a photo of an animal (or anything else without a human face:
  ``--negative-photos``) pasted on.

The candidates are mined without ``--flip``; with ``--flip`` the check scores the flip-averaged
confidences (close, not measured separately).  Only refined crops are judged by it: without
refinement the plain bar decides.

Its threshold keeps all but ``KEEP_LOSS`` % of the clean training faces, judged by cross-validation
(each fold's scores come from a fit without that fold's photos).  The fitted numbers are written
into the model file's ``face_check.learned``; the runtime applies them (runtime.learned_check_score).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.errors import LandmaskError
from landmask.occlusion import random_cover
from landmask.report import Reporter

KEEP_LOSS = 0.3       # percent of clean training faces (cross-validated) the threshold may reject
BAR_FRACTION = 0.9    # the learned check judges crops down to this fraction of the plain check's bar
HOG = {"size": 64, "block": 16, "stride": 8, "cell": 8, "bins": 9}   # 1764 numbers per crop
L2 = 10.0             # ridge penalty on the standardised weights
FOLDS = 5
CANVAS = 480          # side of the face-free canvases
PASTE_SIDE = (80, 460)   # longer side of a pasted negative photo on the canvas, pixels


def features(conf: np.ndarray, faces, crops: np.ndarray) -> np.ndarray:
    """(N, 1 + K + L): each crop's face confidence, its calibrated point confidences, its HOG."""
    from landmask.runtime import crop_hog
    return np.concatenate([np.asarray(conf, np.float64)[:, None], np.array([f.confidence for f in faces]),
                           crop_hog(crops, HOG)], axis=1)


def paste(canvas: np.ndarray, photo, rng) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``canvas`` with a whole negative photo (grey, alpha) pasted at a random place and scale, and
    the pasted region (x0, y0, x1, y1)."""
    import cv2
    img, alpha = photo
    scale = rng.uniform(*PASTE_SIDE) / max(img.shape)
    img = cv2.resize(img.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    y, x = int(rng.integers(0, canvas.shape[0] - h + 1)), int(rng.integers(0, canvas.shape[1] - w + 1))
    out = canvas.astype(np.float32)
    out[y:y + h, x:x + w] = out[y:y + h, x:x + w] * (1 - alpha) + img * alpha
    return out.clip(0, 255).astype(np.uint8), (x, y, x + w, y + h)


def mine(pipe, samples, negatives, composites: int, seed: int, reporter: Reporter = Reporter()):
    """The pipeline's refined candidates (all that get a second pass) as (features (N, 1+K+L), face
    confidence (N,), label (N,) 1 face / 0 not, kind (N,) str, group (N,) str: the photo each came
    from)."""
    from landmask.detect_train import background
    from landmask.imageio import to_grey
    rng = np.random.default_rng(seed)
    rows = []

    def candidates(grey):
        return pipe.candidates(grey, pipe.detector.detect(grey))

    def add(found, label, kind, group):
        faces, conf, crops = found
        if faces:
            rows.extend((x, label, kind, group) for x in features(conf, faces, crops))

    def matched(found, truth, keep=True):
        """The candidates whose points' box overlaps one of ``truth``'s (keep=False: those overlapping none)."""
        faces, conf, crops = found
        ok = np.array([max(G.box_iou(G.points_box(f.points), G.points_box(t)) for t in truth) > 0.5
                       for f in faces], bool) == keep
        return [f for f, k in zip(faces, ok) if k], conf[ok], crops[ok]

    by_photo: dict[str, list] = {}
    for s in samples:
        by_photo.setdefault(str(s.path), []).append(s)
    photos = []
    scheme = pipe.model.scheme.name
    parts = [p for p in ("lips", "left_eye", "right_eye") if p in pipe.model.scheme.parts]
    for n, (path, faces) in enumerate(sorted(by_photo.items())):
        grey = to_grey(faces[0].image("grey"))
        found = candidates(grey)
        truth = [s.points for s in faces]
        add(matched(found, truth), 1, "face", path)
        others = matched(found, truth, keep=False)
        if not (others[1] >= BAR_FRACTION * pipe.model.min_confidence).any():   # no other face: a face-free background
            photos.append((grey, np.concatenate(truth)))
        for s in faces:   # each face once more with the mouth or an eye covered
            covered = random_cover(grey, s.points, scheme, rng, parts)
            add(matched(candidates(covered), [s.points]), 1, "covered face", path)
        reporter.item(n + 1, len(by_photo), Path(path).name)
    reporter.info(f"faces: {sum(r[2] == 'face' for r in rows)} found in {len(by_photo)} photos, "
                  f"{sum(r[2] == 'covered face' for r in rows)} with a part covered; backgrounds from the "
                  f"{len(photos)} photos where no other face was found")
    if not photos:
        raise LandmaskError(f"--data: in none of its {len(by_photo)} photos were the annotated faces the only ones "
                            "found, so there is no face-free background to take non-faces from")
    for n in range(composites):
        canvas = None
        for _ in range(100 * len(photos) + 100):
            grey, pts = photos[rng.integers(len(photos))]
            canvas = background(grey, pts, (CANVAS, CANVAS), rng)
            if canvas is not None:
                break
        if canvas is None:
            raise LandmaskError(f"--data: no face-free piece found in its {len(photos)} photos without another "
                                "face (their faces fill them); add photos with more background")
        if len(negatives) and rng.random() < 0.5:
            k = int(rng.integers(len(negatives)))
            canvas, (x0, y0, x1, y1) = paste(canvas, negatives[k], rng)
            faces, conf, crops = candidates(canvas)
            on = np.array([x0 <= (b[0] + b[2]) / 2 <= x1 and y0 <= (b[1] + b[3]) / 2 <= y1
                           for b in (G.points_box(f.points) for f in faces)], bool)
            add(([f for f, o in zip(faces, on) if o], conf[on], crops[on]), 0, "negative photo", f"negative {k}")
        else:
            add(candidates(canvas), 0, "background", f"background {n}")
        reporter.item(n + 1, composites, "face-free canvases")
    if not rows:
        raise LandmaskError("--data: the detector found no candidates in its photos to fit the face check on")
    x, y, kind, group = zip(*rows)
    return np.array(x), np.array(y, np.float64), np.array(kind), np.array(group)


def fit_logistic(x: np.ndarray, y: np.ndarray, mean: np.ndarray, scale: np.ndarray, l2: float = L2):
    """(weights, bias) of a ridge logistic regression on standardised ``x``, classes weighted equally
    (Newton's method)."""
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    n_pos, n_neg = (y == 1).sum(), (y == 0).sum()
    if n_pos == 0 or n_neg == 0:
        raise LandmaskError(f"the face check needs faces and non-faces to learn from (found {n_pos} and {n_neg}): "
                            "more --data photos, --canvases or --negative-photos")
    sw = np.where(y == 1, 1.0, n_pos / n_neg)
    penalty = l2 * np.diag(np.r_[np.ones(z.shape[1] - 1), 0.0])
    w = np.zeros(z.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(z @ w, -50, 50)))
        grad = z.T @ (sw * (p - y)) + penalty @ w
        hess = (z * (sw * p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit_check(x, y, kind, group, bar: float, seed: int = 0) -> dict:
    """The learned check's weights on raw features (standardisation folded in), its threshold and
    its cross-validated figures.  Fitted on the faces whose face confidence (``x[:, 0]``) reaches
    ``bar`` and on every non-face candidate; judged on those at or above ``bar``."""
    use = (y == 0) | (x[:, 0] >= bar)
    x, y, kind, group = x[use], y[use], kind[use], group[use]
    mean, scale = x.mean(0), x.std(0) + 1e-6
    rng = np.random.default_rng(seed)
    names = np.unique(group)
    fold_of = dict(zip(names, rng.integers(FOLDS, size=len(names))))
    fold = np.array([fold_of[g] for g in group])
    cv = np.full(len(y), np.nan)
    for k in range(FOLDS):
        if (fold == k).any() and len(np.unique(y[fold != k])) == 2:
            w, b = fit_logistic(x[fold != k], y[fold != k], mean, scale)
            cv[fold == k] = ((x[fold == k] - mean) / scale) @ w + b
    faces = (kind == "face") & ~np.isnan(cv)
    if not faces.any():
        raise LandmaskError(f"--data: too few photos to cross-validate the face check on ({len(names)} photos and canvases)")
    threshold = float(np.percentile(cv[faces], KEEP_LOSS))
    w, b = fit_logistic(x, y, mean, scale)
    judged = x[:, 0] >= bar
    figures = {k: {"candidates": int((judged & (kind == k)).sum()),
                   "kept_percent": round(100 * float((cv[judged & (kind == k)] >= threshold).mean()), 2)
                   if (judged & (kind == k)).any() else None}
               for k in ("face", "covered face", "background", "negative photo")}
    return {"weights": [float(f"{v:.6g}") for v in w / scale], "bias": float(f"{b - (w / scale) @ mean:.8g}"),
            "threshold": round(threshold, 6), "min_confidence": round(bar, 4), "hog": dict(HOG),
            "cross_validated": figures}


def train_face_check(model_file, data, negative_photos=(), composites: int = 8000, seed: int = 0,
                     reporter: Reporter = Reporter()) -> dict:
    """Fit the learned face check of ``model_file`` (.safetensors, already calibrated) on the
    training photos of ``data`` and the face-free canvases, and write it into the file's
    ``face_check.learned``."""
    from landmask.api import Landmarker
    from landmask.checkpoint import read_meta, update_meta
    from landmask.datasets import load_training_data
    from landmask.detect import detector_options, get_detector
    from landmask.detect_train import load_negative_photos
    from landmask.torch_backend import load_torch_model
    model_file = Path(model_file)
    if model_file.suffix != ".safetensors":
        raise LandmaskError(f"--model {model_file}: train the face check of a .safetensors file (then export it)")
    meta = read_meta(model_file)
    lm = load_torch_model(model_file)
    if lm.min_confidence is None or not lm.point_confidence_calibrated:
        raise LandmaskError(f"--model {model_file}: calibrate it first (landmask calibrate): "
                            "the learned check works on calibrated point confidences and a fraction of the face check's bar")
    if not lm.scheme.spans_face:
        raise LandmaskError(f"--model {model_file}: a {lm.scheme.name} model's points do not span the face; "
                            "the learned check is for models whose landmarks are refined (ibug68)")
    lm.meta = {**lm.meta, "face_check": {k: v for k, v in meta["face_check"].items() if k != "learned"}}
    pipe = Landmarker(lm, get_detector("landmask", **detector_options("landmask")))
    samples = [s for s in load_training_data(data, lm.scheme.name, 0, reporter) if s.path is not None]
    negatives = load_negative_photos(list(negative_photos), reporter) if negative_photos else []
    x, y, kind, group = mine(pipe, samples, negatives, composites, seed, reporter)
    check = fit_check(x, y, kind, group, BAR_FRACTION * lm.min_confidence, seed)
    check.update({"features": "the crop's face confidence, its calibrated point confidences, the HOG of the crop "
                              "resized to hog.size pixels (OpenCV's HOGDescriptor)",
                  "rule": f"logistic regression (L2 {L2}) of faces at or above min_confidence ({BAR_FRACTION} x the face "
                          f"check's bar) against every non-face candidate; threshold: {KEEP_LOSS} % of those training "
                          f"faces below it, {FOLDS}-fold cross-validated by photo",
                  "data": [str(d) for d in data], "negative_photos": len(negatives), "canvases": composites,
                  "seed": seed})
    update_meta(model_file, {"face_check": {**meta["face_check"], "learned": check}})
    f = check["cross_validated"]
    reporter.info(f"learned face check (cross-validated, candidates at or above {check['min_confidence']}): keeps " + ", ".join(
        f"{v['kept_percent']} % of {v['candidates']} {k} candidates" for k, v in f.items() if v["candidates"]))
    return check
