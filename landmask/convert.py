"""Writing data sets: Kaggle-format CSVs (96×96 grey face crops at the Kaggle scale, 15 points),
Kaggle test/IdLookupTable files and submissions, and 300-W folders (image + .pts)."""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.crops import warp
from landmask.datasets import Sample
from landmask.errors import LandmaskError
from landmask.imageio import write_image, write_text_atomic
from landmask.metrics import KAGGLE_EYE_DISTANCE
from landmask.report import Reporter
from landmask.schemes import KAGGLE15, convert_points

KAGGLE_SIZE = 96
# Where the 15 points' centroid sits in a Kaggle crop (the mean Kaggle face, x right, y down).
KAGGLE_CENTROID = (48.0, 47.5)
# The four points every Kaggle row has; the other 11 are missing in most rows.
KAGGLE_ALWAYS = ("left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip")


def kaggle_affine(points15: np.ndarray) -> np.ndarray:
    """Image→Kaggle-crop affine (scale + shift, no rotation): outer eye corners 51 px apart, the
    centroid of the 15 points at KAGGLE_CENTROID."""
    d = float(G.interocular(points15, "kaggle15"))
    if not np.isfinite(d) or d <= 0:
        raise ValueError("outer eye corners are missing")
    s = KAGGLE_EYE_DISTANCE / d
    c = np.nanmean(points15, axis=0)
    return np.array([[s, 0, KAGGLE_CENTROID[0] - s * c[0]], [0, s, KAGGLE_CENTROID[1] - s * c[1]]])


def kaggle_crop(sample: Sample):
    """(96×96 uint8 crop, 15 points in it, 68 points in it or None) for one annotated face."""
    p15 = convert_points(sample.points, sample.scheme, "kaggle15")
    m = kaggle_affine(p15)
    crop = warp(sample.image("grey"), m, KAGGLE_SIZE)
    full = G.apply(m, sample.points) if sample.scheme != "kaggle15" else None
    return crop, G.apply(m, p15), full


def _coord_columns():
    return [f"{n}_{a}" for n in KAGGLE15.points for a in "xy"]


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.4f}"


def _pixels(img: np.ndarray) -> str:
    return " ".join(map(str, img.reshape(-1).tolist()))


def write_kaggle(samples: list[Sample], out_dir, drop_partial: float = 0.0, seed: int = 0,
                 test: bool = False, reporter: Reporter = Reporter()) -> dict:
    """Write ``training.csv`` (or, with ``test``, ``test.csv`` + ``IdLookupTable.csv`` +
    ``solution.csv``) into ``out_dir``.  ``drop_partial``: fraction of training rows that keep
    only the four always-present points, as in most rows of the real Kaggle set."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    cols = _coord_columns()
    keep = np.array([n in KAGGLE_ALWAYS for n in KAGGLE15.points])
    rows, skipped = [], []
    for i, s in enumerate(samples):
        reporter.item(i + 1, len(samples), s.source)
        try:
            crop, p15, _ = kaggle_crop(s)
        except (LandmaskError, ValueError) as e:
            skipped.append(f"{s.source}: {e}")
            continue
        if not test and rng.random() < drop_partial:
            p15 = p15.copy()
            p15[~keep] = np.nan
        rows.append((crop, p15))
    if test:
        _write_kaggle_test(rows, out_dir)
    else:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols + ["Image"])
        for crop, p in rows:
            w.writerow([_fmt(v) for v in p.reshape(-1)] + [_pixels(crop)])
        write_text_atomic(out_dir / "training.csv", buf.getvalue())
    return {"rows": len(rows), "skipped": skipped}


def _write_kaggle_test(rows, out_dir: Path) -> None:
    test, lookup, solution = io.StringIO(), io.StringIO(), io.StringIO()
    tw, lw, sw = (csv.writer(b, lineterminator="\n") for b in (test, lookup, solution))
    tw.writerow(["ImageId", "Image"])
    lw.writerow(["RowId", "ImageId", "FeatureName", "Location"])
    sw.writerow(["RowId", "Location"])
    row_id = 0
    for image_id, (crop, p) in enumerate(rows, 1):
        tw.writerow([image_id, _pixels(crop)])
        for j, name in enumerate(KAGGLE15.points):
            for a, axis in enumerate("xy"):
                if np.isfinite(p[j, a]):
                    row_id += 1
                    lw.writerow([row_id, image_id, f"{name}_{axis}", ""])
                    sw.writerow([row_id, _fmt(p[j, a])])
    write_text_atomic(out_dir / "test.csv", test.getvalue())
    write_text_atomic(out_dir / "IdLookupTable.csv", lookup.getvalue())
    write_text_atomic(out_dir / "solution.csv", solution.getvalue())


def write_pts_folder(samples: list[Sample], out_dir, reporter: Reporter = Reporter()) -> dict:
    """A 300-W folder: each image (file copied as is, or PNG for in-memory pixels) + NAME.pts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples):
        reporter.item(i + 1, len(samples), s.source)
        stem = f"{i:06d}" if s.path is None else f"{i:06d}_{s.path.stem}"
        if s.path is not None:
            shutil.copyfile(s.path, out_dir / f"{stem}{s.path.suffix.lower()}")
        else:
            write_image(out_dir / f"{stem}.png", s.image("grey"))
        pts = s.points
        lines = ["version: 1", f"n_points: {len(pts)}", "{"]
        lines += [f"{x:.3f} {y:.3f}" if np.isfinite(x) and np.isfinite(y) else "nan nan" for x, y in pts]
        write_text_atomic(out_dir / f"{stem}.pts", "\n".join(lines + ["}"]) + "\n")
    return {"rows": len(samples), "skipped": []}


def relabel(samples: list[Sample], model, flip: bool = False, threads=None,
            reporter: Reporter = Reporter()) -> list[Sample]:
    """The same faces with a model's points instead of their own (pseudo-labels, e.g. to give a
    data set another data set's annotation style).  Each face is cropped from the box of its own
    points, as `landmask evaluate --boxes landmarks` crops; ``flip`` averages with the mirrored crop."""
    from dataclasses import replace
    from landmask.datasets import face_box
    from landmask.runtime import load
    lm = load(model, threads=threads)   # a name or file (ONNX), or a loaded LandmarkModel
    out = []
    for i, s in enumerate(samples):
        reporter.item(i + 1, len(samples), s.source)
        pts = lm.predict(s.image("grey"), [face_box(s)], flip=flip)[0]
        out.append(replace(s, points=pts, scheme=lm.scheme.name, box=None,
                           extra={**s.extra, "relabelled_by": str(lm.path)}))
    return out


def write_submission(test_csv, lookup_csv, out_csv, model=None, threads=None) -> dict:
    """Predict every Kaggle test image and write ``RowId,Location`` for the rows of IdLookupTable."""
    from landmask.datasets import kaggle_face_box, read_kaggle_test
    from landmask.runtime import load
    lm = load(model, "kaggle15", threads=threads)
    if lm.scheme.name != "kaggle15":
        raise LandmaskError(f"--model: a submission needs a kaggle15 model, not {lm.scheme.name}")
    preds = {}
    for image_id, img in read_kaggle_test(test_csv):
        preds[image_id] = lm.predict(img, [kaggle_face_box(img.shape[0])])[0]
    index = {f"{n}_{a}": (j, k) for j, n in enumerate(KAGGLE15.points) for k, a in enumerate("xy")}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["RowId", "Location"])
    n = 0
    with open(lookup_csv, newline="") as f:
        for lineno, row in enumerate(csv.DictReader(f), 2):
            where = f"{lookup_csv}, line {lineno}"
            try:
                image_id, (j, k) = int(row["ImageId"]), index[row["FeatureName"]]
                p = preds[image_id]
            except (KeyError, TypeError, ValueError):
                raise LandmaskError(f"{where}: unknown ImageId or FeatureName "
                                    f"({row.get('ImageId')!r}, {row.get('FeatureName')!r})") from None
            w.writerow([row["RowId"], f"{np.clip(p[j, k], 0, 96):.4f}"])
            n += 1
    write_text_atomic(out_csv, buf.getvalue())
    return {"rows": n, "images": len(preds)}


def score_submission(submission_csv, solution_csv) -> float:
    """Kaggle's score: RMSE over every RowId."""
    def read(p):
        with open(p, newline="") as f:
            return {r["RowId"]: float(r["Location"]) for r in csv.DictReader(f)}
    sub, sol = read(submission_csv), read(solution_csv)
    missing = set(sol) - set(sub)
    if missing:
        raise LandmaskError(f"{submission_csv}: {len(missing)} RowIds of the solution are missing")
    d = np.array([sub[k] - v for k, v in sol.items()])
    return float(np.sqrt(np.mean(d ** 2)))
