"""Honest evaluation of a landmark model on an annotated data set: NME, RMSE in Kaggle units,
failure rate, CED AUC, per-landmark errors, and the CED plot."""
from __future__ import annotations

import time

import numpy as np

from landmask import geometry as G
from landmask.datasets import Sample, dataset_scheme, face_box, load_dataset
from landmask.errors import LandmaskError
from landmask.metrics import finite_or_none, plot_ced, summarize
from landmask.report import Reporter
from landmask.runtime import DEFAULT_MODELS, load
from landmask.schemes import can_convert, convert_points


def default_scheme_for(data_scheme: str) -> str:
    for s in (data_scheme, *DEFAULT_MODELS):
        if s in DEFAULT_MODELS and can_convert(data_scheme, s):
            return s
    raise LandmaskError(f"no shipped model fits data in scheme {data_scheme}")


def evaluate(data, model=None, boxes: str = "landmarks", flip: bool = False, ced_path=None,
             threads: int | None = None, detector=None, load_model=load, scout="auto",
             reporter: Reporter = Reporter()) -> dict:
    """Evaluate ``model`` (a path, a shipped name, or None for the data scheme's default) on the
    data set at ``data``.  ``boxes``: ``landmarks`` (box from the ground-truth points) or ``detect``
    (the face detector's box, matched to the annotated face); ``scout``: with ``detect``, the model
    of the first landmark pass on the detector's candidates (landmask.api.scout_model)."""
    if boxes not in ("landmarks", "detect"):
        raise LandmaskError(f"--boxes {boxes!r}: choose landmarks or detect")
    if boxes != "detect" and scout not in ("auto", "none", None):
        raise LandmaskError(f"--scout {scout}: a scout only frames detector candidates; it is used with "
                            "--boxes detect (leave --scout out with --boxes landmarks)")
    samples = load_dataset(data)
    if not samples:
        raise LandmaskError(f"{data}: no annotated faces")
    data_scheme = dataset_scheme(samples)
    # load_model(model, scheme, threads): ONNX Runtime by default; the CLI hands in a loader that
    # also runs .safetensors files in PyTorch (landmask.torch_backend) when asked to
    lm = load_model(model, default_scheme_for(data_scheme), threads=threads)
    if not can_convert(data_scheme, lm.scheme.name):
        raise LandmaskError(f"model scheme {lm.scheme.name} cannot be scored on {data_scheme} data")
    pipeline = None
    if boxes == "detect":
        from landmask.api import Landmarker, scout_model
        from landmask.detect import get_detector
        scout = scout_model(scout, lm, threads, loader=None if load_model is load else load_model)
        pipeline = Landmarker(lm, detector or get_detector(), flip=flip, scout=scout)

    t0 = time.perf_counter()
    r = _predict_faces(samples, data_scheme, lm, pipeline, flip, reporter)
    preds, gts, norms, skipped, n_missed = r["preds"], r["gts"], r["norms"], r["skipped"], r["missed"]
    partial, outside = r["partial"], r["outside"]
    if not preds:
        why = "; ".join(skipped[:3] + ([f"and {len(skipped) - 3} more skipped"] if len(skipped) > 3 else [])
                        + ([f"{n_missed} face(s) not found by the detector"] if n_missed else []))
        raise LandmaskError(f"{data}: no face could be scored" + (f" ({why})" if why else ""))
    pred, gt, norm = np.stack(preds), np.stack(gts), np.array(norms)
    result = summarize(pred, gt, norm, lm.scheme.points)
    nme = result.pop("nme_per_face")
    result = {"scheme": lm.scheme.name, "model": str(lm.path), "backend": lm.backend, "data": str(data),
              "data_scheme": data_scheme, "boxes": boxes, "flip": flip, **result,
              "seconds": time.perf_counter() - t0}
    if boxes == "detect":
        result["detected_percent"] = 100.0 * len(preds) / (len(preds) + n_missed)
        result["detector"] = getattr(pipeline.detector, "name", type(pipeline.detector).__name__)
        result["scout"] = None if pipeline.scout is None else str(pipeline.scout.path)
    if skipped:
        result["skipped"] = skipped
    # scored on their known points only / annotated beyond the image's edge: said, not hidden
    result["partial_faces"] = len(partial)
    result["faces_with_points_outside_image"] = len(outside)
    if outside:
        result["points_outside_image"] = outside[:20]
    if ced_path:
        try:
            plot_ced({f"{lm.path.name} ({boxes})": nme}, ced_path)
            result["ced_png"] = str(ced_path)
        except ImportError:
            result["ced_png"] = None
            reporter.info("the CED plot needs matplotlib (pip install 'landmask[train]'); skipped")
    return finite_or_none(result)


def _predict_faces(samples, data_scheme: str, lm, pipeline, flip: bool, reporter: Reporter) -> dict:
    """Each face's prediction beside its truth and normaliser; through ``pipeline`` (the detector
    and landmarks) when given, else from the box of the true points.  Faces that cannot be scored
    (unreadable image, no box, no normaliser) are listed in ``skipped``; faces the detector missed
    are counted in ``missed``; partly annotated faces and faces annotated beyond the image's
    edge are listed too."""
    r = {"preds": [], "gts": [], "norms": [], "skipped": [], "missed": 0, "partial": [], "outside": []}
    for i, s in enumerate(samples):
        reporter.item(i + 1, len(samples), s.source)
        try:
            image = s.image("grey")
            box = face_box(s)
            gt = convert_points(s.points, data_scheme, lm.scheme.name)
            if not np.isfinite(gt).all(axis=1).any():
                raise LandmaskError(f"{s.source}: no annotated point to score")
            norm = face_norm(s, gt, lm.scheme.name)
        except LandmaskError as e:
            r["skipped"].append(str(e))
            continue
        if np.isnan(gt).any():
            r["partial"].append(s.source)
        if _outside(gt, image.shape):
            r["outside"].append(s.source)
        if pipeline is not None:
            det = _matched_detection(pipeline.detector, image, box)
            faces = pipeline.from_detections(image, [det]) if det is not None else []
            if not faces:
                r["missed"] += 1
                continue
            r["preds"].append(faces[0].points)
        else:
            r["preds"].append(lm.predict(image, [box], flip=flip)[0])
        r["gts"].append(gt)
        r["norms"].append(norm)
    return r


def _outside(points: np.ndarray, shape) -> bool:
    """Whether a known point lies outside the image (pixel centres at 0..W-1, edges at -0.5, W-0.5)."""
    known = points[np.isfinite(points).all(axis=1)]
    h, w = shape[:2]
    return bool(((known < -0.5) | (known > [w - 0.5, h - 0.5])).any())


def face_norm(s: Sample, gt: np.ndarray, scheme: str) -> float:
    """The NME normaliser of one face: its outer-eye-corner distance (or a Kaggle crop's known scale)."""
    d = float(G.interocular(gt, scheme))
    if np.isfinite(d) and d > 0:
        return d
    if "norm" in s.extra:  # Kaggle rows without eye corners: the crop's known scale
        return float(s.extra["norm"])
    raise LandmaskError(f"{s.source}: outer eye corners are missing, so NME has no normaliser")


def _matched_detection(detector, image, truth_box, min_iou: float = 0.3):
    """The detection whose box (in the landmark-box convention) best overlaps the annotated face's
    box, if IoU ≥ min_iou; None when the face was missed."""
    best, best_iou = None, min_iou
    for d in detector.detect(image):
        iou = G.box_iou(d.landmark_box, truth_box)
        if iou >= best_iou:
            best, best_iou = d, iou
    return best
