"""Landmark error metrics.  Shapes: pred, gt (N, K, 2) in the same pixels; NaN in gt = missing.

- NME: mean point error / outer-eye-corner distance (300-W convention), per face.
- RMSE in Kaggle units (``rmse_px96``): each face scaled so its outer eye corners are 51 px apart
  (their mean distance in the Kaggle 96×96 crops), then RMSE over every x and y.
- failure rate: faces with NME > 8 %; AUC of the CED curve up to 8 %, in [0, 1].
"""
from __future__ import annotations

import math
import warnings

from pathlib import Path

import numpy as np

KAGGLE_EYE_DISTANCE = 51.0
FAILURE_NME = 0.08


def point_errors(pred, gt):
    """(N, K) Euclidean errors, NaN where gt is missing."""
    return np.linalg.norm(pred - gt, axis=-1)


def nme_per_face(pred, gt, norm):
    """(N,) mean error over each face's known points / norm (N,)."""
    return np.nanmean(point_errors(pred, gt), axis=1) / norm


def rmse_kaggle(pred, gt, norm):
    scale = (KAGGLE_EYE_DISTANCE / norm)[:, None, None]
    d = (pred - gt) * scale
    return float(np.sqrt(np.nanmean(d ** 2)))


def ced_auc(nme, limit=FAILURE_NME, steps=1000):
    """Area under the cumulative error distribution curve on [0, limit], normalised to [0, 1]."""
    xs = np.linspace(0, limit, steps + 1)
    ys = np.array([(nme <= x).mean() for x in xs])
    return float(np.trapezoid(ys, xs) / limit)


def finite_or_none(x):
    """x with every NaN/inf float (at any depth of dicts and lists) replaced by None: a figure
    that could not be computed is reported as missing (JSON null), never as a number."""
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_or_none(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def summarize(pred, gt, norm, names) -> dict:
    """All figures for a set of faces: the keys ``landmask evaluate --json`` writes.  A figure
    with nothing to average (a landmark no face has) is None, not NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN slices: reported as None below
        return _summarize(pred, gt, norm, names)


def _summarize(pred, gt, norm, names) -> dict:
    nme = nme_per_face(pred, gt, norm)
    err = point_errors(pred, gt) / norm[:, None]
    d = pred - gt
    return finite_or_none({
        "n_faces": int(len(nme)),
        "nme_percent": float(np.mean(nme) * 100),
        "rmse_px96": rmse_kaggle(pred, gt, norm),
        "failure_percent": float(np.mean(nme > FAILURE_NME) * 100),
        "auc8": ced_auc(nme),
        "mae_px": float(np.nanmean(np.abs(d))),
        "rmse_px": float(np.sqrt(np.nanmean(d ** 2))),
        "per_landmark": {n: float(v * 100) for n, v in zip(names, np.nanmean(err, axis=0))},
    }) | {"nme_per_face": nme}


def plot_ced(nme_by_label: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    xs = np.linspace(0, FAILURE_NME, 200)
    for label, nme in nme_by_label.items():
        ax.plot(xs * 100, [(np.asarray(nme) <= x).mean() for x in xs], label=label)
    ax.set_xlabel("NME (% of outer-eye-corner distance)")
    ax.set_ylabel("fraction of faces")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    import io
    from landmask.imageio import write_bytes_atomic
    buf = io.BytesIO()          # then one atomic write under a unique temporary name (concurrent runs)
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def plot_curves(history: list[dict], path) -> None:
    """Loss and MAE per epoch, training and validation (as the seed project plotted them)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=90)
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "mae_px", "MAE (crop pixels)")):
        ax.plot(ep, [h[f"train_{key}"] for h in history], label="train")
        if "val_" + key in history[0]:
            ax.plot(ep, [h[f"val_{key}"] for h in history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    tmp = Path(path).with_name(".curves.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
