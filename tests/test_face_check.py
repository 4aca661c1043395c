"""The learned face check (landmask train-face-check): its fit, its use by the pipeline and the
tracker, and the command's errors."""
import subprocess
import sys

import numpy as np
import pytest

import landmask
from landmask.api import Landmarker
from landmask.errors import LandmaskError
from landmask.face_check import cover, fit_check, fit_logistic, paste
from landmask.runtime import LandmarkModel, learned_check_score, load as load_model

SAMPLE = "landmask/samples/astronaut.jpg"


def test_the_fit_separates_two_classes_and_sets_its_threshold_by_cross_validation():
    rng = np.random.default_rng(0)
    faces = rng.normal(0.0, 1.0, (600, 3)) + [0.2, 0.9, 0.9]
    covered = rng.normal(0.0, 1.0, (200, 3)) + [0.2, 0.9, -0.5]    # a part hidden: still a face
    others = rng.normal(0.0, 1.0, (300, 3)) + [0.2, -3.0, -3.0]
    x = np.concatenate([faces, covered, others])
    y = np.r_[np.ones(800), np.zeros(300)]
    kind = np.array(["face"] * 600 + ["covered face"] * 200 + ["background"] * 300)
    group = np.array([f"photo {i // 2}" for i in range(len(x))])
    check = fit_check(x, y, kind, group)
    score = learned_check_score(check, x[:, 0], x[:, 1:])
    cv = check["cross_validated"]
    assert cv["face"]["kept_percent"] == pytest.approx(99.7, abs=0.2)     # KEEP_LOSS = 0.3 % of faces
    assert cv["background"]["kept_percent"] < 3 and cv["covered face"]["kept_percent"] > 80
    assert (score[:600] >= check["threshold"]).mean() > 0.99
    assert (score[800:] >= check["threshold"]).mean() < 0.03
    w, _ = fit_logistic(x, y, x.mean(0), x.std(0))
    assert abs(w[0]) < 0.2 * abs(w[1])       # the first feature carries nothing: a small weight


def test_the_fit_needs_both_classes():
    x = np.zeros((5, 2))
    with pytest.raises(LandmaskError, match="faces and non-faces"):
        fit_logistic(x, np.ones(5), x.mean(0), np.ones(2))


def learned(model: LandmarkModel, threshold: float) -> LandmarkModel:
    """The shipped model with a learned check that scores a crop by its point confidences' mean."""
    k = len(model.scheme)
    check = {"mean": [0.0] * (k + 1), "scale": [1.0] * (k + 1), "weights": [0.0] + [1.0 / k] * k,
             "bias": 0.0, "threshold": threshold}
    meta = {**model.meta, "face_check": {**model.meta["face_check"], "learned": check}}
    return LandmarkModel(model.path, meta, model._run, model.backend)


def test_the_pipeline_keeps_a_face_only_where_the_learned_check_passes():
    base = load_model("ibug68")
    image = landmask.read_image(SAMPLE)
    found = Landmarker(learned(base, 0.5), landmask.load().detector).faces(image)
    assert len(found) == 1 and np.median(found[0].confidence) > 0.7
    assert Landmarker(learned(base, 1.01), landmask.load().detector).faces(image) == []


def test_the_tracker_drops_a_face_the_learned_check_rejects():
    from landmask.tracking import Tracker
    base = load_model("ibug68")
    frame = landmask.read_image(SAMPLE)
    lm = landmask.load()
    tracker = Tracker(Landmarker(learned(base, 0.5), lm.detector))
    assert len(tracker.update(frame)) == 1
    tracker.lm = Landmarker(learned(base, 1.01), lm.detector)
    assert tracker.update(frame) == []


def test_cover_and_paste_change_only_their_region():
    grey = np.full((100, 100), 50, np.uint8)
    pts = np.array([[30.0 + i % 40, 30.0 + (i * 7) % 40] for i in range(68)])
    out = cover(grey, pts, "ibug68", "lips", 0.1, 200)
    assert (out == 200).any() and (out == 50).any() and (grey == 50).all()
    photo = (np.full((20, 40), 255, np.uint8), np.ones((20, 40), np.float32))
    pasted, (x0, y0, x1, y1) = paste(np.zeros((480, 480), np.uint8), photo, np.random.default_rng(1))
    assert 80 <= max(x1 - x0, y1 - y0) <= 461
    assert (pasted[y0:y1, x0:x1] > 250).all() and pasted.sum() == pasted[y0:y1, x0:x1].sum()


def run(*args):
    return subprocess.run([sys.executable, "-m", "landmask.cli", "train-face-check", *args],
                          capture_output=True, text=True)


def test_the_command_names_a_bad_model_file_or_option(tmp_path):
    r = run("--model", "landmask/models/ibug68.onnx", "--data", "x")
    assert r.returncode != 0 and "landmask/models/ibug68.onnx" in r.stderr and ".safetensors" in r.stderr
    r = run("--model", "landmask/models/ibug68.safetensors", "--data", "x", "--canvases", "0")
    assert r.returncode != 0 and "--canvases 0" in r.stderr
    assert "Traceback" not in r.stderr
