"""Calibrating a trained landmark model on held-out faces: the face check's threshold, the mirror
shift that flip averaging adds back, and each point's usual confidence, written into the model
file (``landmask calibrate``; training ends by calibrating on its own validation faces)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.datasets import Sample, face_box, load_training_data, split
from landmask.errors import LandmaskError
from landmask.report import Reporter
from landmask.trainconfig import TrainConfig, read_config


# The face check: a crop is taken for a face when its confidence (the mean peak probability of the
# landmark heatmaps) is at least this fraction of the 1st percentile over validation faces.
FACE_CHECK_MARGIN = 0.9


def calibrate_run(run_dir, reporter: Reporter = Reporter()) -> dict:
    """Set, from a run's own validation faces (the split is recomputed from the run's config and
    seed), the model files' ``face_check``, ``mirror`` and ``point_confidence`` (see calibrate_model)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir / "config.yaml")
    samples = load_training_data(cfg.data, cfg.scheme, cfg.limit, Reporter())
    _, val_idx = split(len(samples), cfg.val_fraction, cfg.seed)
    if len(val_idx) == 0:
        raise LandmaskError(f"{run_dir}: the run has no validation faces to calibrate on")
    files = [run_dir / n for n in ("model.safetensors", "best.safetensors") if (run_dir / n).exists()]
    return calibrate_model(files, [samples[i] for i in val_idx], reporter)


def calibrate_heldout(model_file, data, reporter: Reporter = Reporter()) -> dict:
    """calibrate_model on the faces `landmask train --data DATA` holds out by default (5 %, seed 0)."""
    if not data:
        raise LandmaskError("calibrate --model needs --data (the data sets it was trained on: 5 % of them held out, "
                            "as training does) or --faces (folders of faces it never trained on)")
    cfg = TrainConfig(data=list(data), scheme=landmark_scheme(model_file))
    samples = load_training_data(cfg.data, cfg.scheme, cfg.limit, Reporter(), scheme_named=MODEL_SCHEME)
    _, val_idx = split(len(samples), cfg.val_fraction, cfg.seed)
    return calibrate_model([model_file], [samples[i] for i in val_idx], reporter)


MODEL_SCHEME = "the model's scheme,"   # how calibrate and train-face-check (no --scheme) name it in data errors


def landmark_scheme(model_file) -> str:
    """The point scheme of a landmark model's .safetensors file; any other file is refused by name."""
    from landmask.checkpoint import read_meta
    if Path(model_file).suffix != ".safetensors":
        raise LandmaskError(f"--model {model_file}: calibrate a .safetensors file (then export it)")
    meta = read_meta(model_file)
    if meta.get("kind", "landmarks") != "landmarks" or "scheme" not in meta:
        raise LandmaskError(f"--model {model_file}: not a landmark model (calibrate sets a landmark model's face check)")
    return meta["scheme"]


def calibrate_faces(model_file, data, reporter: Reporter = Reporter()) -> dict:
    """calibrate_model on every face of the data sets ``data`` (faces the model never trained on, such
    as folders of held-out faces made by scripts/holdout_folder.py --held, from several data sets)."""
    scheme = landmark_scheme(model_file)
    try:
        samples = load_training_data(list(data), scheme, 0, Reporter(), scheme_named=MODEL_SCHEME)
    except LandmaskError as e:   # its messages name --data, the training option
        raise LandmaskError(str(e).replace("--data", "--faces")) from None
    return calibrate_model([model_file], samples, reporter)


def calibrate_model(files, faces: list[Sample], reporter: Reporter = Reporter()) -> dict:
    """From held-out faces, set in each model file (.safetensors; each measured on its own, as a
    run's last and best weights differ): ``face_check.min_confidence`` (crops below it are not
    faces), ``mirror.shift_px`` (added back by flip averaging) and ``point_confidence.typical`` (each
    point's median confidence on these faces: the runtime reports a point's confidence relative to
    it, so 1 means as clear as usual).  Returns the first file's figures."""
    results = [_calibrate_file(Path(f), faces, reporter) for f in files]
    return results[0]


def _calibrate_file(file: Path, faces: list[Sample], reporter: Reporter) -> dict:
    from landmask.checkpoint import read_meta, update_meta
    from landmask.torch_backend import load_torch_model
    lm = load_torch_model(file)
    lm._typical = None                           # measure raw confidences, not relative ones
    crops = np.concatenate([lm.crops(s.image("grey"), [face_box(s)])[0] for s in faces])
    _, conf, point = lm.predict_crops_all(crops)
    p1 = float(np.percentile(conf, 1))
    check = {"min_confidence": round(FACE_CHECK_MARGIN * p1, 4), "validation_faces": len(faces),
             "confidence_p1": round(p1, 4), "confidence_median": round(float(np.median(conf)), 4),
             "rule": f"{FACE_CHECK_MARGIN} x the 1st percentile of validation-face confidence"}
    mirror = {"shift_px": round(mirror_shift(lm, crops), 4), "validation_faces": len(faces),
              "rule": "mean x of (prediction - mirrored prediction of the mirrored crop), crop pixels; "
                      "added to mirrored predictions when averaging with a flip (--flip)"}
    points = {"typical": [round(float(v), 5) for v in np.median(point, axis=0)], "validation_faces": len(faces),
              "rule": "median over validation faces of each point's heatmap sum of squared probabilities; the runtime reports "
                      "min(1, confidence / typical)"}
    if "learned" in read_meta(file).get("face_check", {}):   # fitted on the old bar and point confidences
        reporter.warn(f"{file}: its learned face check is dropped (fitted on the old calibration); "
                      f"run landmask train-face-check again")
    update_meta(file, {"face_check": check, "mirror": mirror, "point_confidence": points})
    reporter.info(f"{file.name}: face check: min confidence {check['min_confidence']} (1st percentile {p1:.4f} over "
                  f"{len(faces)} validation faces); mirror shift {mirror['shift_px']:+.3f} crop px; "
                  f"typical point confidence {np.median(points['typical']):.3f} (median over points)")
    return {"face_check": check, "mirror": mirror, "point_confidence": points}


def mirror_shift(lm, crops: np.ndarray) -> float:
    """How far right of its mirror image a model places points, in crop pixels: the mean x of
    ``prediction - mirrored prediction of the mirrored crop``.  About 0 for a model trained with
    mirrored crops; for one trained without them it is twice the annotations' own x offset from
    the mirror-symmetric position (HELEN's 300-W points sit about 1 % of the eye distance right
    of it), which flip averaging must add back."""
    mirrored = lm.predict_crops(np.ascontiguousarray(crops[:, :, ::-1]))
    back = G.flip_points(mirrored, lm.input_size, lm.scheme.flip_permutation)
    return float(np.nanmean(lm.predict_crops(crops)[..., 0] - back[..., 0]))
