"""Writing data sets: Kaggle-format CSVs (96×96 grey face crops at the Kaggle scale, 15 points),
Kaggle test/IdLookupTable files and submissions, and 300-W folders (image + .pts)."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.batch import inside
from landmask.crops import warp
from landmask.datasets import Sample, pts_text, unique_id
from landmask.errors import LandmaskError
from landmask.imageio import decode_image, read_file_bytes, write_bytes_atomic, write_image, write_text_atomic
from landmask.metrics import KAGGLE_EYE_DISTANCE
from landmask.report import Reporter
from landmask.schemes import KAGGLE15, convert_points, get_scheme

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
    full = G.apply(m, sample.points) if get_scheme(sample.scheme).spans_face else None
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
    """A 300-W folder: each image (file copied as is, or PNG for in-memory pixels) + NAME.pts.
    Only images inside their data set's own folder are copied, and only ones that decode; the
    others are skipped and listed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, skipped = 0, []
    for i, s in enumerate(samples):
        reporter.item(i + 1, len(samples), s.source)
        stem = f"{i:06d}" if s.path is None else f"{i:06d}_{s.path.stem}"
        try:
            if s.path is not None:
                write_bytes_atomic(out_dir / f"{stem}{s.path.suffix.lower()}", _image_bytes(s))
            else:
                write_image(out_dir / f"{stem}.png", s.image("grey"))
        except LandmaskError as e:
            skipped.append(f"{s.source}: {e}")
            continue
        write_text_atomic(out_dir / f"{stem}.pts", pts_text(s.points))
        rows += 1
    return {"rows": rows, "skipped": skipped}


def _image_bytes(s: Sample) -> bytes:
    """The bytes of a sample's image file, refused when it lies outside its data set's folder (an
    annotation naming ../../etc/passwd copies nothing) or does not decode as an image."""
    if s.root is not None and not inside(s.path, s.root):
        raise LandmaskError(f"{s.path}: outside the data set's folder {s.root}; not copied")
    data = read_file_bytes(s.path)
    decode_image(data, "keep", name=str(s.path))
    return data


def check_targets(data, kaggle=None, kaggle_test=None, pts=None) -> None:
    """Refuse, before anything is read or written, outputs that would replace an input file or a
    --pts folder inside a data set's folder (its output would be read back as data)."""
    inputs = [Path(d) for d in data]
    for opt, d in (("--kaggle", kaggle), ("--kaggle-test", kaggle_test), ("--pts", pts)):
        if d and Path(d).suffix.lower() in (".csv", ".pts") and not Path(d).is_dir():   # a file's name for a folder
            raise LandmaskError(f"{opt} {d}: give a folder (its files are written into it), not a file name")
    outputs = ([("--kaggle", Path(kaggle) / "training.csv")] if kaggle else []) + \
              [("--kaggle-test", Path(kaggle_test) / n) for n in ("test.csv", "IdLookupTable.csv", "solution.csv")
               if kaggle_test]
    for opt, out in outputs:
        for d in inputs:
            if out.exists() and d.exists() and os.path.samefile(out, d):
                raise LandmaskError(f"{opt} {out.parent}: would replace the input {d}; choose another folder")
        if out.parent.exists() and not out.parent.is_dir():
            raise LandmaskError(f"{opt} {out.parent}: is a file, not a folder")
    if pts:
        if Path(pts).exists() and not Path(pts).is_dir():
            raise LandmaskError(f"--pts {pts}: is a file, not a folder")
        for d in inputs:
            if d.is_dir() and inside(pts, d):
                raise LandmaskError(f"--pts {pts}: inside the input data set {d}; the output would mix with "
                                    f"(and be read back as) the data; choose a folder outside it")


def relabel(samples: list[Sample], model, flip: bool = False, threads=None,
            reporter: Reporter = Reporter(), skipped: list | None = None) -> list[Sample]:
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
        try:
            box = face_box(s)
        except LandmaskError as e:   # a partial face without a box of its own: skipped (into ``skipped``), as convert skips it
            if skipped is not None:
                skipped.append(f"{e}; not relabelled")
            continue
        pts = lm.predict(s.image("grey"), [box], flip=flip)[0]
        out.append(replace(s, points=pts, scheme=lm.scheme.name, box=None,
                           extra={**s.extra, "relabelled_by": str(lm.path)}))
    return out


def write_submission(test_csv, lookup_csv, out_csv, model=None, threads=None, keep=()) -> dict:
    """Predict every Kaggle test image and write ``RowId,Location`` for the rows of IdLookupTable.
    ``out_csv`` may not be the test or lookup file, the model, nor any (option, file) in ``keep``."""
    from landmask.datasets import kaggle_face_box, read_kaggle_test
    from landmask.runtime import load
    inputs = [("--test", test_csv), ("--lookup", lookup_csv), *keep]
    if model is not None and not hasattr(model, "predict"):
        inputs.append(("--model", model))
    for opt, f in inputs:
        if Path(out_csv).exists() and Path(f).exists() and os.path.samefile(out_csv, f):
            raise LandmaskError(f"--out {out_csv}: is the {opt} file; it would be replaced")
    if Path(out_csv).is_dir():
        raise LandmaskError(f"--out {out_csv}: is a folder; give a file name")
    lm = load(model, "kaggle15", threads=threads)
    for f in {lm.path.with_suffix(".onnx"), lm.path.with_suffix(".safetensors")}:   # the file --model named, or resolved to
        if Path(out_csv).exists() and f.exists() and os.path.samefile(out_csv, f):
            raise LandmaskError(f"--out {out_csv}: is the --model's file {f}; it would be replaced")
    if lm.scheme.name != "kaggle15":
        raise LandmaskError(f"--model: a submission needs a kaggle15 model, not {lm.scheme.name}")
    preds = {}
    for image_id, img in _reading(test_csv, read_kaggle_test):
        preds[image_id] = lm.predict(img, [kaggle_face_box(img.shape[0])])[0]
    text, n = _reading(lookup_csv, lambda p: _submission_rows(p, preds))
    write_text_atomic(out_csv, text)
    return {"rows": n, "images": len(preds)}


def _reading(path, fn):
    """fn(path), with a file that cannot be read turned into one line naming it."""
    try:
        return fn(path)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise LandmaskError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def _submission_rows(lookup_csv, preds: dict) -> tuple[str, int]:
    """``RowId,Location`` text for each row of IdLookupTable.csv, and the row count."""
    index = {f"{n}_{a}": (j, k) for j, n in enumerate(KAGGLE15.points) for k, a in enumerate("xy")}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["RowId", "Location"])
    n, seen = 0, {}
    with open(lookup_csv, newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        missing = {"RowId", "ImageId", "FeatureName"} - set(rows.fieldnames or [])
        if missing:
            raise LandmaskError(f"{lookup_csv}, line 1: missing column(s) {', '.join(sorted(missing))} "
                                f"(an IdLookupTable.csv has RowId,ImageId,FeatureName,Location)")
        for lineno, row in enumerate(rows, 2):
            where = f"{lookup_csv}, line {lineno}"
            try:
                image_id, (j, k) = int(row["ImageId"]), index[row["FeatureName"]]
                p = preds[image_id]
            except (KeyError, TypeError, ValueError):
                raise LandmaskError(f"{where}: unknown ImageId or FeatureName "
                                    f"({row.get('ImageId')!r}, {row.get('FeatureName')!r})") from None
            row_id = unique_id(row, "RowId", seen, lineno, where)
            w.writerow([row_id, f"{np.clip(p[j, k], 0, 96):.4f}"])
            n += 1
    if n == 0:
        raise LandmaskError(f"{lookup_csv}: no rows (only a header); nothing to submit")
    return buf.getvalue(), n


def score_submission(submission_csv, solution_csv) -> float:
    """Kaggle's score: RMSE over every RowId."""
    def read(p):
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows = csv.DictReader(f)
            if not {"RowId", "Location"} <= set(rows.fieldnames or []):
                raise LandmaskError(f"{p}, line 1: expected columns RowId,Location")
            out, lines = {}, {}
            for lineno, r in enumerate(rows, 2):
                row_id = unique_id(r, "RowId", lines, lineno, f"{p}, line {lineno}")
                try:
                    v = float(r["Location"])
                except (TypeError, ValueError):
                    raise LandmaskError(f"{p}, line {lineno}: Location {r['Location']!r} is not a number") from None
                if not np.isfinite(v):
                    raise LandmaskError(f"{p}, line {lineno}: Location {r['Location']!r} is not a finite number")
                out[row_id] = v
            if not out:
                raise LandmaskError(f"{p}: no rows (only a header)")
            return out
    sub, sol = _reading(submission_csv, read), _reading(solution_csv, read)
    missing = set(sol) - set(sub)
    if missing:
        raise LandmaskError(f"{submission_csv}: {len(missing)} RowIds of the solution are missing")
    d = np.array([sub[k] - v for k, v in sol.items()])
    return float(np.sqrt(np.mean(d ** 2)))


def convert(data, kaggle=None, kaggle_test=None, pts=None, relabel_with=None, flip: bool = False,
            drop_partial: float = 0.0, seed: int = 0, reporter: Reporter = Reporter()) -> dict:
    """``landmask convert`` as one call: read the data sets ``data`` and write a Kaggle
    training.csv into ``kaggle``, the Kaggle test files into ``kaggle_test`` and/or a 300-W folder
    into ``pts``.  ``relabel_with``: a loaded landmark model whose points replace the data's own
    (``flip``: averaged with the mirrored crop's).  No output may replace an input (checked before
    anything is read).  Returns {option: {"rows", "skipped"}} per output written."""
    from landmask.datasets import load_dataset
    if not (kaggle or kaggle_test or pts):
        raise LandmaskError("convert: say what to write: --kaggle DIR, --kaggle-test DIR and/or --pts DIR")
    if flip and relabel_with is None:
        raise LandmaskError("convert: --flip only applies with --relabel MODEL")
    if drop_partial and not kaggle:
        raise LandmaskError(f"--drop-partial {drop_partial}: only applies to --kaggle DIR (a training.csv)")
    check_targets(data, kaggle, kaggle_test, pts)
    samples = [s for d in data for s in load_dataset(d)]
    unlabelled: list[str] = []
    if relabel_with is not None:
        samples = relabel(samples, relabel_with, flip, reporter=reporter, skipped=unlabelled)
    jobs = (("--kaggle", kaggle, lambda o: write_kaggle(samples, o, drop_partial, seed, reporter=reporter)),
            ("--kaggle-test", kaggle_test, lambda o: write_kaggle(samples, o, test=True, reporter=reporter)),
            ("--pts", pts, lambda o: write_pts_folder(samples, o, reporter=reporter)))
    results = {flag: {"out": str(out), **fn(out)} for flag, out, fn in jobs if out}
    for r in results.values():   # faces --relabel could not crop are skipped in every output
        r["skipped"] = unlabelled + list(r["skipped"])
    return results

