"""The learned face check (``landmask train-face-check``): a decision, fitted on the pipeline's own
candidates, of which refined crops hold a human face.  It replaces the plain face check's bar (the
mean heatmap peak against a fraction of its lowest value on held-out faces) with a lower one,
``BAR_FRACTION`` of it, and its own score above that.  Two kinds:

- ``hog`` (the default, the shipped ibug68's): a logistic regression over the face confidence, the
  point confidences and the HOG of the crop.
- ``cnn`` (thirteenth session): a small CNN over the crop at ``CROP`` pixels, whose pooled features
  are joined by the crop's standardised face confidence and calibrated point confidences; stored as
  ONNX (base64) in the model file's metadata and run by ONNX Runtime.  Cross-validated it keeps
  fewer animal and background candidates than ``hog``, but on the photos measured it removed no
  false face, found one real face fewer and kept the same dog (docs/experiments.md), so it is not
  the default.

The plain bar keeps any crop whose heatmaps are about as sharp as a face's, and a dog's face can be,
while a person with a hand over the mouth can fall under it (a mean over all 68 heatmaps).  The
crop's pixels and the pattern of point confidences separate them better.  The check is fitted on
the pipeline's own candidates (the shipped detector, then the model's two landmark passes), so it
learns what the pipeline will see:

- faces: the training photos' annotated faces as found, and each once more with a box of a random
  shade over the mouth or one eye (a covered part must not make a face a non-face);
- non-faces: candidates on face-free pieces of the training photos (of those where the pipeline
  finds no face beyond the annotated ones: people in the background would be taught as non-faces),
  and on such pieces with a photo of an animal (or anything else without a human face:
  ``--negative-photos``) pasted on.

The candidates are mined without ``--flip``; with ``--flip`` the check scores the flip-averaged
confidences (close, not measured separately).  They are mined without a scout (the model's own first
pass); since the sixteenth session the pipeline's first pass is a scout's, which frames candidates
a little differently, with the same faces found (MODELS.md, "The scout").  Only refined crops are judged by it: without
refinement the plain bar decides.

Its threshold keeps all but ``KEEP_LOSS`` % of the clean training faces, judged by cross-validation
(each fold's scores come from a fit without that fold's photos).  The fitted check is written into
the model file's ``face_check.learned``; the runtime applies it (runtime.learned_check_score).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.errors import LandmaskError
from landmask.occlusion import random_cover
from landmask.report import Reporter

KEEP_LOSS = 0.3       # percent of clean training faces (cross-validated) the threshold may reject
BAR_FRACTION = 0.9    # the learned check judges crops down to this fraction of the plain check's bar
BLUR_SIGMA = (0.015, 0.035)   # train-face-check --blurred-faces: the blur's sigma, × the face's size
NOISE_SIGMA = (10.0, 25.0)    # train-face-check --noisy-faces: the noise's std, grey levels, ...
NOISY_FACE = 100.0            # ... on the photo shrunk until its largest face is at most this many px
HOG = {"size": 64, "block": 16, "stride": 8, "cell": 8, "bins": 9}   # 1764 numbers per crop
CROP = HOG["size"]    # side of the crops the candidates are mined at (the HOG's size, the CNN's input)
CNN = {"width": 8, "epochs": 12, "batch": 128, "lr": 3e-3}   # the CNN check's network and schedule
L2 = 10.0             # ridge penalty on the standardised weights
L2_SECOND = 1.0       # the same for the stacked second stage (three weights)
FOLDS = 5
CANVAS = 480          # side of the face-free canvases
PASTE_SIDE = (80, 460)   # longer side of a pasted negative photo on the canvas, pixels


def features(conf: np.ndarray, faces, crops: np.ndarray, grey: np.ndarray | None = None,
             haar: dict | None = None) -> np.ndarray:
    """(N, 1 + K + S*S [+ 2]): each crop's face confidence, its calibrated point confidences and its
    pixels at ``CROP`` pixels (what either kind of check is fitted on), and with ``haar`` (settings
    as runtime.HAAR) the face cascade's [found, level weight] around each face's box in ``grey``."""
    from landmask.runtime import haar_features, small_crops
    cols = [np.asarray(conf, np.float64)[:, None], np.array([f.confidence for f in faces]),
            small_crops(crops, CROP).reshape(len(crops), -1)]
    if haar is not None:
        cols.append(haar_features(grey, [f.box for f in faces], haar))
    return np.concatenate(cols, axis=1)


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


def mine(pipe, samples, negatives, composites: int, seed: int, reporter: Reporter = Reporter(),
         haar: dict | None = None, bar_fraction: float = BAR_FRACTION, blurred: bool = False,
         noisy: bool = False):
    """The pipeline's refined candidates (all that get a second pass) as (features (N, 1+K+S*S[+2]): see
    ``features``, label (N,) 1 face / 0 not, kind (N,) str, group (N,) str: the photo each came
    from, score (N,): the detector's score of each, saved with ``--candidates`` for analysis).
    ``blurred``: each photo once more blurred (a Gaussian of BLUR_SIGMA × the size of its
    largest annotated face: out of focus, or moving in a video frame), its faces found there among
    the faces; the blur's draws come from their own generator, so the other candidates stay as
    they are without it.  ``noisy``: each photo once more shrunk until its largest annotated face is
    at most NOISY_FACE px and given Gaussian noise of NOISE_SIGMA grey levels (a grainy video frame),
    its faces found there among the faces (its own generator too).  ``bar_fraction``: which photos
    count as face-free (no other candidate at or above that fraction of the bar)."""
    import cv2
    from landmask.detect_train import background
    from landmask.imageio import to_grey
    rng = np.random.default_rng(seed)
    blur_rng = np.random.default_rng([seed, 1])   # its own: --blurred-faces leaves the other draws as they were
    noise_rng = np.random.default_rng([seed, 2])  # the same for --noisy-faces
    rows = []

    def candidates(grey):
        return pipe.candidates(grey, pipe.detector.detect(grey))

    def add(found, label, kind, group, grey):
        faces, conf, crops = found
        if faces:
            rows.extend((x, label, kind, group, f.score) for x, f in zip(features(conf, faces, crops, grey, haar), faces))

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
        add(matched(found, truth), 1, "face", path, grey)
        others = matched(found, truth, keep=False)
        if not (others[1] >= bar_fraction * pipe.model.min_confidence).any():   # no other face: a face-free background
            photos.append((grey, np.concatenate(truth)))
        for s in faces:   # each face once more with the mouth or an eye covered
            covered = random_cover(grey, s.points, scheme, rng, parts)
            add(matched(candidates(covered), [s.points]), 1, "covered face", path, covered)
        side = max(float(np.ptp(t, axis=0).max()) for t in truth)   # its largest annotated face
        if blurred:   # the whole photo, by the size of that face
            soft = cv2.GaussianBlur(grey, (0, 0), blur_rng.uniform(*BLUR_SIGMA) * side)
            add(matched(candidates(soft), truth), 1, "blurred face", path, soft)
        if noisy:
            k = min(1.0, NOISY_FACE / side)
            small = cv2.resize(grey, (max(1, round(grey.shape[1] * k)), max(1, round(grey.shape[0] * k))),
                               interpolation=cv2.INTER_AREA) if k < 1 else grey
            grain = np.clip(small + noise_rng.normal(0, noise_rng.uniform(*NOISE_SIGMA), small.shape), 0, 255)
            grain = grain.astype(np.uint8)
            add(matched(candidates(grain), [(t + 0.5) * k - 0.5 for t in truth]), 1, "noisy face", path, grain)
        reporter.item(n + 1, len(by_photo), Path(path).name)
    reporter.info(f"faces: {sum(r[2] == 'face' for r in rows)} found in {len(by_photo)} photos, "
                  f"{sum(r[2] == 'covered face' for r in rows)} with a part covered, "
                  f"{sum(r[2] == 'blurred face' for r in rows)} blurred, "
                  f"{sum(r[2] == 'noisy face' for r in rows)} noisy; backgrounds from the "
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
            add(([f for f, o in zip(faces, on) if o], conf[on], crops[on]), 0, "negative photo", f"negative {k}",
                canvas)
        else:
            add(candidates(canvas), 0, "background", f"background {n}", canvas)
        reporter.item(n + 1, composites, "face-free canvases")
    if not rows:
        raise LandmaskError("--data: the detector found no candidates in its photos to fit the face check on")
    x, y, kind, group, score = zip(*rows)
    return np.array(x), np.array(y, np.float64), np.array(kind), np.array(group), np.array(score, np.float64)


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


def _folds(group: np.ndarray, seed: int) -> np.ndarray:
    """Each candidate's cross-validation fold (0..FOLDS-1), drawn per photo or canvas."""
    rng = np.random.default_rng(seed)
    names = np.unique(group)
    fold_of = dict(zip(names, rng.integers(FOLDS, size=len(names))))
    return np.array([fold_of[g] for g in group])


def _cross_validated(y: np.ndarray, fold: np.ndarray, fit_and_score) -> np.ndarray:
    """(N,) scores of each fold's candidates from ``fit_and_score(train, test)`` (boolean masks) fitted
    without that fold; NaN for a fold whose complement lacks faces or non-faces."""
    cv = np.full(len(y), np.nan)
    for k in range(FOLDS):
        if (fold == k).any() and len(np.unique(y[fold != k])) == 2:
            cv[fold == k] = fit_and_score(fold != k, fold == k)
    return cv


def _judge(cv: np.ndarray, conf: np.ndarray, kind: np.ndarray, bar: float, n_photos: int) -> tuple[float, dict]:
    """The threshold (``KEEP_LOSS`` % of the clean faces' cross-validated scores below it) and the
    share of each kind of candidate at or above ``bar`` it keeps."""
    faces = (kind == "face") & ~np.isnan(cv)
    if not faces.any():
        raise LandmaskError(f"--data: too few photos to cross-validate the face check on ({n_photos} photos and canvases)")
    threshold = float(np.percentile(cv[faces], KEEP_LOSS))
    judged = conf >= bar
    figures = {k: {"candidates": int((judged & (kind == k)).sum()),
                   "kept_percent": round(100 * float((cv[judged & (kind == k)] >= threshold).mean()), 2)
                   if (judged & (kind == k)).any() else None}
               for k in ("face", "covered face", "blurred face", "noisy face", "background", "negative photo")}
    return threshold, figures


def fit_check(x, y, kind, group, bar: float, seed: int = 0, second: int = 0) -> dict:
    """The HOG check: weights on raw features (standardisation folded in), its threshold and its
    cross-validated figures.  Fitted on the faces whose face confidence (``x[:, 0]``) reaches
    ``bar`` and on every non-face candidate; judged on those at or above ``bar``.

    The last ``second`` columns (the face cascade's) are a second opinion joined by stacking: a
    second logistic regression over [the first one's cross-validated score, those columns], so
    their weight is learnt from how the first one does on photos it has not seen (fitted with the
    rest, the many HOG numbers separate the training candidates on their own and leave them
    almost no weight).  Both stages are linear: the result is one weight vector, as without."""
    use = (y == 0) | (x[:, 0] >= bar)
    x, y, kind, group = x[use], y[use], kind[use], group[use]
    x, extra = x[:, :x.shape[1] - second], x[:, x.shape[1] - second:]
    mean, scale = x.mean(0), x.std(0) + 1e-6
    fold = _folds(group, seed)

    def fit_and_score(train, test):
        w, b = fit_logistic(x[train], y[train], mean, scale)
        return ((x[test] - mean) / scale) @ w + b
    cv = _cross_validated(y, fold, fit_and_score)
    w, b = fit_logistic(x, y, mean, scale)
    weights, bias = w / scale, b - (w / scale) @ mean
    stacked = {}
    if second:
        ok = ~np.isnan(cv)
        z = np.column_stack([np.where(ok, cv, 0.0), extra])
        z_mean, z_scale = z[ok].mean(0), z[ok].std(0) + 1e-6

        def fit_and_score2(train, test):
            if len(np.unique(y[train & ok])) < 2:   # the first stage left this fold's complement one-sided
                return np.nan
            w2, b2 = fit_logistic(z[train & ok], y[train & ok], z_mean, z_scale, l2=L2_SECOND)
            return ((z[test] - z_mean) / z_scale) @ w2 + b2
        cv = np.where(ok, _cross_validated(y, fold, fit_and_score2), np.nan)
        w2, b2 = fit_logistic(z[ok], y[ok], z_mean, z_scale, l2=L2_SECOND)
        w2, b2 = w2 / z_scale, b2 - (w2 / z_scale) @ z_mean
        weights, bias = np.r_[w2[0] * weights, w2[1:]], w2[0] * bias + b2
        stacked = {"stacked": {"first_stage_weight": round(float(w2[0]), 6),
                               "second_opinion_weights": [round(float(v), 6) for v in w2[1:]]}}
    threshold, figures = _judge(cv, x[:, 0], kind, bar, len(np.unique(group)))
    return {"kind": "hog", "weights": [float(f"{v:.6g}") for v in weights],
            "bias": float(f"{bias:.8g}"), "threshold": round(threshold, 6),
            "min_confidence": round(bar, 4), "hog": dict(HOG), **stacked, "cross_validated": figures}


def _cnn(width: int, extra: int):
    """The CNN check's network: four stride-2 blocks of two 3×3 convolutions (width, 2, 4, 4 ×
    ``width`` channels), a global mean, then one linear layer over it and ``extra`` confidences."""
    import torch
    from torch import nn

    def block(i, o):
        return [nn.Conv2d(i, o, 3, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.features = nn.Sequential(*block(1, w), *block(w, 2 * w), *block(2 * w, 4 * w), *block(4 * w, 4 * w),
                                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(4 * w + extra, 1)

        def forward(self, crop, confidences):
            return self.head(torch.cat([self.features(crop), confidences], 1))[:, 0]
    return Net()


def fit_cnn(crops: np.ndarray, ex: np.ndarray, y: np.ndarray, seed: int = 0, cnn: dict = CNN,
            ex_mirror: np.ndarray | None = None):
    """A CNN check (eval mode) fitted on (N, s, s) uint8 ``crops`` and standardised confidences
    ``ex`` (N, E): classes weighted equally, mirrored crops, contrast and ±3 px shifts drawn at
    random.  ``ex_mirror``: the column order of ``ex`` for a mirrored crop (its points swap sides;
    None: left as they are)."""
    import torch
    from landmask.runtime import cnn_check_input
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise LandmaskError(f"the face check needs faces and non-faces to learn from (found {n_pos} and {n_neg}): "
                            "more --data photos, --canvases or --negative-photos")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = _cnn(cnn["width"], ex.shape[1])
    X, E = torch.from_numpy(cnn_check_input(crops)), torch.tensor(ex, dtype=torch.float32)
    Y = torch.tensor(y, dtype=torch.float32)
    W = torch.where(Y == 1, 1.0, n_pos / n_neg)
    batch = min(cnn["batch"], len(X))
    steps = cnn["epochs"] * (len(X) // batch)
    opt = torch.optim.AdamW(net.parameters(), cnn["lr"], weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cnn["lr"], total_steps=steps)
    net.train()
    for _ in range(cnn["epochs"]):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X) - batch + 1, batch):
            b = perm[i:i + batch]
            flip = torch.rand(len(b), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], X[b].flip(3), X[b])
            eb = E[b] if ex_mirror is None else torch.where(flip[:, None], E[b][:, ex_mirror], E[b])
            xb = xb * (0.8 + 0.4 * torch.rand(len(b), 1, 1, 1, generator=g))
            dy, dx = (int(v) for v in torch.randint(-3, 4, (2,), generator=g))
            out = net(torch.roll(xb, (dy, dx), (2, 3)), eb)
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(out, Y[b], reduction="none") * W[b]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def cnn_scores(net, crops: np.ndarray, ex: np.ndarray) -> np.ndarray:
    """(N,) logits of a fitted CNN check."""
    import torch
    from landmask.runtime import cnn_check_input
    with torch.no_grad():
        return np.concatenate([net(torch.from_numpy(cnn_check_input(crops[i:i + 512])),
                                   torch.tensor(ex[i:i + 512], dtype=torch.float32)).numpy()
                               for i in range(0, len(crops), 512)]).astype(np.float64)


def cnn_to_onnx(net, size: int, extra: int) -> str:
    """The fitted CNN check as base64 ONNX (inputs ``crop`` (N, 1, size, size), ``confidences``
    (N, extra); output ``score`` (N,)), to store in the model file's metadata."""
    import base64
    import torch
    from landmask.export import onnx_bytes
    data = onnx_bytes(net, (torch.zeros(1, 1, size, size), torch.zeros(1, extra)), ["crop", "confidences"], ["score"],
                      {"crop": {0: "n"}, "confidences": {0: "n"}, "score": {0: "n"}})
    return base64.b64encode(data).decode("ascii")


def fit_cnn_check(conf_feats, crops, y, kind, group, bar: float, seed: int = 0, cnn: dict = CNN,
                  reporter: Reporter = Reporter(), point_mirror: np.ndarray | None = None) -> dict:
    """The CNN check (fitted like ``fit_check``: faces at or above ``bar`` against every non-face,
    threshold and figures cross-validated by photo) over (N, s, s) uint8 ``crops`` and the
    candidates' [face confidence, point confidences] ``conf_feats`` (N, 1 + K), standardised.
    ``point_mirror``: the scheme's flip permutation (K,), so mirrored crops get their points' mirror
    partners' confidences."""
    use = (y == 0) | (conf_feats[:, 0] >= bar)
    conf_feats, crops, y, kind, group = conf_feats[use], crops[use], y[use], kind[use], group[use]
    mean, scale = conf_feats.mean(0), conf_feats.std(0) + 1e-6
    ex = (conf_feats - mean) / scale
    # a mirrored crop's point confidences: each point takes its mirror partner's (the face confidence stays)
    ex_mirror = None if point_mirror is None else np.r_[0, 1 + np.asarray(point_mirror)]
    done = []

    def fit_and_score(train, test):
        net = fit_cnn(crops[train], ex[train], y[train], seed, cnn, ex_mirror)
        done.append(1)
        reporter.item(len(done), FOLDS + 1, "cross-validation fits")
        return cnn_scores(net, crops[test], ex[test])
    cv = _cross_validated(y, _folds(group, seed), fit_and_score)
    threshold, figures = _judge(cv, conf_feats[:, 0], kind, bar, len(np.unique(group)))
    net = fit_cnn(crops, ex, y, seed, cnn, ex_mirror)
    reporter.item(FOLDS + 1, FOLDS + 1, "the final fit")
    return {"kind": "cnn", "input": int(crops.shape[1]), "network": dict(cnn),
            "onnx": cnn_to_onnx(net, crops.shape[1], conf_feats.shape[1]),
            "conf_mean": [float(f"{v:.8g}") for v in mean], "conf_scale": [float(f"{v:.8g}") for v in scale],
            "threshold": round(threshold, 6), "min_confidence": round(bar, 4), "cross_validated": figures}


def train_face_check(model_file, data, negative_photos=(), composites: int = 8000, seed: int = 0,
                     reporter: Reporter = Reporter(), check_kind: str = "hog", haar: bool = False,
                     candidates: str | Path | None = None, bar_fraction: float = BAR_FRACTION,
                     blurred: bool = False, noisy: bool = False) -> dict:
    """Fit the learned face check of ``model_file`` (.safetensors, already calibrated) on the
    training photos of ``data`` and the face-free canvases, and write it into the file's
    ``face_check.learned``.  ``check_kind``: "hog" (a logistic regression over the confidences
    and the crop's HOG) or "cnn" (a small CNN over the crop and the confidences).  ``haar`` (hog
    only): OpenCV's face cascade's [found, level weight] around the box join the features.
    ``candidates``: an .npz file the mined candidates are saved to, or read from where it exists
    (mining is most of the time; the file is only valid for the same model, data and photos).
    ``bar_fraction``: the check judges crops down to this fraction of the plain bar; ``blurred``:
    blurred copies of the training photos' faces join the faces (``mine``); ``noisy``: small noisy
    copies of them."""
    from landmask.api import Landmarker
    from landmask.checkpoint import read_meta, update_meta
    from landmask.datasets import load_training_data
    from landmask.detect import detector_options, get_detector
    from landmask.detect_train import load_negative_photos
    from landmask.runtime import HAAR, crop_hog
    from landmask.torch_backend import load_torch_model
    if check_kind not in ("cnn", "hog"):
        raise LandmaskError(f"--check {check_kind}: cnn or hog")
    if haar and check_kind != "hog":
        raise LandmaskError("--haar: only with --check hog")
    if not 0 < bar_fraction <= 1:
        raise LandmaskError(f"--bar-fraction {bar_fraction}: give a number above 0, at most 1")
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
                            "the learned check is fitted for models whose own points frame their refined crops (ibug68)")
    lm.meta = {**lm.meta, "face_check": {k: v for k, v in meta["face_check"].items() if k != "learned"}}
    pipe = Landmarker(lm, get_detector("landmask", **detector_options("landmask")))
    from landmask.calibrate import MODEL_SCHEME
    samples = [s for s in load_training_data(data, lm.scheme.name, 0, reporter, scheme_named=MODEL_SCHEME)
               if s.path is not None]
    negatives = load_negative_photos(list(negative_photos), reporter) if negative_photos else []
    k = 1 + len(lm.scheme)
    if candidates is not None and Path(candidates).exists():
        try:
            with np.load(candidates) as f:
                x, y, kind, group = f["x"], f["y"], f["kind"], f["group"]
                mined = {"--blurred-faces": bool(f["blurred"]) if "blurred" in f else False,
                         "--noisy-faces": bool(f["noisy"]) if "noisy" in f else False,
                         "--bar-fraction": float(f["bar_fraction"]) if "bar_fraction" in f else BAR_FRACTION}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise LandmaskError(f"--candidates {candidates}: not a file of mined candidates "
                                f"({type(e).__name__}: {e or 'empty'})") from None
        width = x.shape[1] if x.ndim == 2 else -1
        if width not in (k + CROP * CROP, k + CROP * CROP + 2) or not len(x) == len(y) == len(kind) == len(group):
            raise LandmaskError(f"--candidates {candidates}: mined for another model "
                                f"({width} features a candidate, not {k + CROP * CROP} or {k + CROP * CROP + 2})")
        asked = {"--blurred-faces": bool(blurred), "--noisy-faces": bool(noisy), "--bar-fraction": float(bar_fraction)}
        said = lambda v: ("off", "on")[v] if isinstance(v, bool) else v  # noqa: E731
        differ = [f"{o} {said(v)} (this run: {said(asked[o])})" for o, v in mined.items() if v != asked[o]]
        if differ:
            raise LandmaskError(f"--candidates {candidates}: mined with " + ", ".join(differ)
                                + "; give the same options or another file")
        if haar and width == k + CROP * CROP:
            raise LandmaskError(f"--candidates {candidates}: mined without --haar")
        x = x[:, :k + CROP * CROP + (2 if haar else 0)]   # the cascade's columns: mined with --haar, not used here
        reporter.info(f"candidates: {len(x)} read from {candidates}")
    else:
        x, y, kind, group, score = mine(pipe, samples, negatives, composites, seed, reporter,
                                        HAAR if haar else None, bar_fraction, blurred, noisy)
        if candidates is not None:
            import io
            from landmask.imageio import write_bytes_atomic
            buf = io.BytesIO()
            np.savez(buf, x=x.astype(np.float32), y=y, kind=kind, group=group, score=score, blurred=bool(blurred),
                     noisy=bool(noisy), bar_fraction=float(bar_fraction))
            write_bytes_atomic(candidates, buf.getvalue())
    conf_feats, crops = x[:, :k], x[:, k:k + CROP * CROP].reshape(len(x), CROP, CROP).astype(np.uint8)
    cascade = x[:, k + CROP * CROP:]   # (N, 2) with haar, else (N, 0)
    bar = bar_fraction * lm.min_confidence
    if check_kind == "cnn":
        check = fit_cnn_check(conf_feats, crops, y, kind, group, bar, seed, reporter=reporter,
                              point_mirror=lm.scheme.flip_permutation)
        features = (f"the crop resized to {CROP} pixels (each less its mean, over its spread) into a CNN "
                    f"({CNN['width']}-{4 * CNN['width']} channels, four stride-2 blocks), its global mean joined by the "
                    "standardised face confidence and calibrated point confidences")
        rule = (f"CNN trained {CNN['epochs']} epochs (AdamW, one-cycle lr {CNN['lr']}, classes weighted equally, "
                f"mirrored crops, contrast and shift jitter) on faces at or above min_confidence ({bar_fraction} x the face "
                f"check's bar) against every non-face candidate")
    else:
        check = fit_check(np.concatenate([conf_feats, crop_hog(crops, HOG), cascade], axis=1), y, kind, group, bar, seed,
                          second=cascade.shape[1])
        features = ("the crop's face confidence, its calibrated point confidences, the HOG of the crop "
                    "resized to hog.size pixels (OpenCV's HOGDescriptor)")
        rule = (f"logistic regression (L2 {L2}) of faces at or above min_confidence ({bar_fraction} x the face "
                f"check's bar) against every non-face candidate")
        if haar:
            check["haar"] = dict(HAAR)
            features += (", and OpenCV's face cascade (haar.cascade) on a crop haar.wide times the box's side at "
                         "haar.size pixels, faces of haar.min..haar.max of it: found (0/1) and its best level weight")
            rule += (f"; the cascade's two numbers stacked on it: a second logistic regression (L2 {L2_SECOND}) over "
                     "the first's cross-validated score and them, both folded into one weight vector")
    check.update({"features": features,
                  "rule": f"{rule}; threshold: {KEEP_LOSS} % of those training faces below it, {FOLDS}-fold "
                          "cross-validated by photo",
                  "data": [str(d) for d in data], "negative_photos": len(negatives), "canvases": composites,
                  "seed": seed, **({"blurred_faces": list(BLUR_SIGMA)} if blurred else {}),
                  **({"noisy_faces": {"sigma": list(NOISE_SIGMA), "face_px": NOISY_FACE}} if noisy else {})})
    update_meta(model_file, {"face_check": {**meta["face_check"], "learned": check}})
    f = check["cross_validated"]
    reporter.info(f"learned face check ({check_kind}; cross-validated, candidates at or above {check['min_confidence']}): keeps " + ", ".join(
        f"{v['kept_percent']} % of {v['candidates']} {k} candidates" for k, v in f.items() if v["candidates"]))
    return check
