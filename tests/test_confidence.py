"""Per-point confidence: every shipped landmark model reports one per point (ONNX output 3, Face,
landmarks JSON); it separates covered from visible points on real faces, and make-up skips a
covered part while privacy effects never do."""
import numpy as np
import pytest

import landmask
from landmask import geometry as G
from landmask.masking import part_visibility
from landmask.schemes import IBUG68

from conftest import needs_shared

SAMPLE = "landmask/samples/astronaut.jpg"


def cover(image, points, part, grow=0.25):
    """A copy with a mid-grey box over the part's points, grown by ``grow`` x the eye distance."""
    idx = IBUG68.part_points(part)
    g = grow * float(G.interocular(points, "ibug68"))
    (x0, y0), (x1, y1) = np.floor(points[idx].min(0) - g).astype(int), np.ceil(points[idx].max(0) + g).astype(int)
    out = image.copy()
    out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 128
    return out


@pytest.mark.parametrize("name", ["ibug68", "ibug68-int8", "ibug68-fast", "ibug68-fast-int8", "ibug68-tiny", "kaggle15"])
def test_every_shipped_model_gives_a_calibrated_confidence_per_point(name):
    lm = landmask.load(name)
    faces = lm.faces(landmask.read_image(SAMPLE))
    k = len(IBUG68) if name != "kaggle15" else 15
    assert len(faces) == 1 and faces[0].confidence.shape == (k,)
    c = faces[0].confidence
    assert np.isfinite(c).all() and (c >= 0).all() and (c <= 1).all()
    assert np.median(c) > 0.7            # a clear frontal face: most points as clear as usual
    assert faces[0].hidden == set()
    d = faces[0].to_dict()
    assert len(d["confidence"]) == k and len(d["points"]) == k and list(d["named"]) == list(lm.model.scheme.points)


def test_a_covered_eye_is_hidden_and_its_make_up_skipped_but_not_its_privacy_mask():
    lm = landmask.load()
    image = landmask.read_image(SAMPLE)
    face = lm.faces(image)[0]
    covered = cover(image, face.points, "left_eye")
    f = lm.landmarks(covered, [G.points_box(face.points)])[0]
    assert part_visibility(f.confidence, "ibug68", "left_eye") < 0.2
    assert part_visibility(f.confidence, "ibug68", "right_eye") > 0.8
    assert "left_eye" in f.hidden and "right_eye" not in f.hidden
    idx = IBUG68.part_points("left_eye")
    x0, y0 = np.floor(face.points[idx].min(0)).astype(int)
    x1, y1 = np.ceil(face.points[idx].max(0)).astype(int)
    made_up = landmask.mask(covered, [f], eyes="color:#1f6fd1@0.8")
    assert np.array_equal(made_up[y0:y1, x0:x1], covered[y0:y1, x0:x1])      # not painted over the patch
    assert not np.array_equal(made_up, covered)                                # the visible eye was
    hidden = landmask.mask(covered, [f], eyes="solid:black")
    assert (hidden[y0:y1, x0:x1] < 40).all(axis=-1).mean() > 0.1                # privacy never fades


def test_covered_points_are_less_confident_than_visible_ones_on_the_test_set():
    """The issue's bar, on helen-68/testset (people never trained on): a random grey patch over the
    mouth or one eye; the covered points' mean confidence is below the others' in >= 95 % of faces."""
    from landmask.datasets import face_box, load_dataset
    samples = load_dataset(needs_shared("helen-68/testset"))
    lm = landmask.load().model
    rng = np.random.default_rng(0)
    below = []
    for s in samples:
        part = rng.choice(["lips", "left_eye", "right_eye"])
        image = cover(s.image("grey"), s.points, part, grow=rng.uniform(0.15, 0.4))
        _, _, c = lm.predict_all(image, [face_box(s)])
        idx = IBUG68.part_points(part)
        below.append(c[0][idx].mean() < np.delete(c[0], idx).mean())
    assert len(below) == 330 and np.mean(below) >= 0.95, np.mean(below)
