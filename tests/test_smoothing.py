"""The temporal filters on synthetic motion: steady when still, no lag when moving, geometric sense."""
import numpy as np
import pytest

from landmask.smoothing import LandmarkSmoother, OneEuroFilter, from_local, similarity_pose, to_local

FPS = 30.0


def face_shape(seed=0) -> np.ndarray:
    """A face-like set of 68 points about 100 px across (fixed random shape)."""
    rng = np.random.default_rng(seed)
    a = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    r = 50 + 10 * rng.standard_normal(68)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def jitter(points) -> float:
    """Median frame-to-frame movement of the points (px)."""
    return float(np.median(np.linalg.norm(np.diff(points, axis=0), axis=2)))


def test_one_euro_steadies_a_still_signal():
    rng = np.random.default_rng(1)
    f = OneEuroFilter(min_cutoff=0.5, beta=0.0)
    x = 10 + rng.normal(0, 1, (300, 3))
    y = np.array([f(v, i / FPS) for i, v in enumerate(x)])
    assert np.std(y[100:]) < 0.3 * np.std(x[100:])
    assert abs(y[100:].mean() - 10) < 0.3


def test_one_euro_speed_term_removes_lag_on_fast_motion():
    t = np.arange(120) / FPS
    x = 300.0 * t                       # 300 px/s
    slow, fast = OneEuroFilter(0.5, beta=0.0), OneEuroFilter(0.5, beta=1.0)
    lag_slow = np.abs([slow(v, s) - v for v, s in zip(x, t)])[60:].mean()
    lag_fast = np.abs([fast(v, s) - v for v, s in zip(x, t)])[60:].mean()
    assert lag_fast < 0.1 * lag_slow and lag_fast < 1.0


def test_one_euro_first_value_and_reset():
    f = OneEuroFilter(1.0, 0.0)
    assert f(np.array([5.0]), 0.0)[0] == 5.0
    assert f(np.array([15.0]), 1 / FPS)[0] < 15.0
    f.reset()
    assert f(np.array([15.0]), 2 / FPS)[0] == 15.0


def test_local_frame_round_trip():
    p = face_shape() * 1.3 + [200, 150]
    c, s, a = similarity_pose(p, face_shape() / 60)
    assert np.allclose(from_local(to_local(p, c, s, a), c, s, a), p)


def test_landmark_smoother_steadies_a_still_face():
    rng = np.random.default_rng(2)
    truth = face_shape() + [320, 240]
    raw = truth + rng.normal(0, 0.5, (150, 68, 2))
    sm = LandmarkSmoother()
    out = np.array([sm(p, i / FPS) for i, p in enumerate(raw)])
    assert jitter(out[30:]) < 0.3 * jitter(raw[30:])
    assert np.abs(out[30:] - truth).mean() < np.abs(raw[30:] - truth).mean()


@pytest.mark.parametrize("motion", ["pan", "zoom", "turn"])
def test_landmark_smoother_follows_fast_motion(motion):
    """A fast pan (600 px/s), zoom or in-plane turn: after the first frames, the smoothed points
    stay within a pixel of the truth while noise is still removed."""
    rng = np.random.default_rng(3)
    base, truths = face_shape(), []
    for i in range(90):
        t = i / FPS
        if motion == "pan":
            p = base + [100 + 600 * t, 240]
        elif motion == "zoom":
            p = base * (1 + 1.5 * t) + [320, 240]
        else:
            a = 2.0 * t
            p = base @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + [320, 240]
        truths.append(p)
    truths = np.array(truths)
    raw = truths + rng.normal(0, 0.3, truths.shape)
    sm = LandmarkSmoother()
    out = np.array([sm(p, i / FPS) for i, p in enumerate(raw)])
    err = np.linalg.norm(out - truths, axis=2)[15:]
    off = np.linalg.norm(raw - truths, axis=2)[15:]
    assert err.mean() < 1.0 and err.mean() < off.mean() * 1.2


def test_landmark_smoother_is_scale_free_and_can_be_off():
    rng = np.random.default_rng(4)
    raw = face_shape() + [300, 200] + rng.normal(0, 0.5, (40, 68, 2))
    a, b = LandmarkSmoother(), LandmarkSmoother()
    small = np.array([a(p, i / FPS) for i, p in enumerate(raw)])
    big = np.array([b(p * 2, i / FPS) for i, p in enumerate(raw)])
    assert np.allclose(big, small * 2, atol=1e-6)
    off = LandmarkSmoother(0)
    assert np.array_equal(off(raw[5], 0.0), raw[5])
