"""Temporal filtering of landmarks in video (pure numpy): the One Euro filter (Casiez, Roussel and
Vogel, CHI 2012) and a landmark smoother built on it.

The One Euro filter is a low-pass filter whose cut-off frequency rises with the signal's speed:
at rest it filters hard (no jitter), in fast motion it lets the signal through (no lag).  Its two
knobs are ``min_cutoff`` (Hz: lower = steadier at rest) and ``beta`` (how fast the cut-off rises
with speed: higher = less lag).

``LandmarkSmoother`` splits a face's points (K, 2) into the face's pose (centre, size, angle:
estimated from all K points, so it is steady by itself) and its shape in the face's own frame
(each point relative to the pose, in units of the face's size).  The pose is filtered lightly,
so the landmarks follow head motion without lag; the shape, where the per-point noise lives, is
filtered hard, with its own speed term so that a mouth opening quickly still follows.
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff, dt: float):
    """Smoothing factor of a first-order low-pass filter with ``cutoff`` Hz sampled every ``dt`` s."""
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff, float))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter over an array of any shape (each element filtered on its own).

    ``speed_scale`` divides the derivative before it raises the cut-off, so ``beta`` can be given
    in scale-free units (e.g. face sizes per second)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self.x = self.dx = self.t = None

    def __call__(self, x, t: float, speed_scale: float = 1.0) -> np.ndarray:
        """The filtered value of ``x`` (array) sampled at time ``t`` (seconds)."""
        x = np.asarray(x, float)
        if self.x is None or self.x.shape != x.shape:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        if not dt > 0:                       # a repeated or out-of-order time stamp: assume 30 fps
            dt = 1 / 30
        self.t = t
        dx = (x - self.x) / dt
        self.dx = self.dx + _alpha(self.d_cutoff, dt) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx) / speed_scale
        self.x = self.x + _alpha(cutoff, dt) * (x - self.x)
        return self.x.copy()


def similarity_pose(points: np.ndarray, reference: np.ndarray | None = None):
    """(centre (2,), size, angle) of a (K, 2) point set: the centroid, the RMS distance of the
    points from it, and the rotation (radians) that best maps ``reference`` (a shape in the face's
    own frame, as ``to_local`` gives) onto the points (0 without a reference)."""
    c = points.mean(axis=0)
    d = points - c
    s = float(np.sqrt((d ** 2).sum(axis=1).mean())) or 1.0
    if reference is None:
        return c, s, 0.0
    # least-squares rotation between the centred sets (2-D Procrustes)
    a = float((reference[:, 0] * d[:, 1] - reference[:, 1] * d[:, 0]).sum())
    b = float((reference * d).sum())
    return c, s, math.atan2(a, b)


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def to_local(points, centre, size, angle) -> np.ndarray:
    """Points (K, 2) in the face's own frame: centred, unrotated, in units of ``size``."""
    return (points - centre) @ _rot(angle) / size      # row vectors: p @ R == R^T p


def from_local(local, centre, size, angle) -> np.ndarray:
    return local * size @ _rot(angle).T + centre


class LandmarkSmoother:
    """Temporal filter for one face's landmarks (one instance per tracked face).

    ``strength`` scales both filters: 1 is the default, 0 turns filtering off, 2 is twice as
    steady (cut-offs halved) with more lag.  Speeds are measured in face sizes per second, so
    the same settings work for small and large faces."""

    # chosen on clips made from helen-68/trainset faces (benchmarks/video_bench.py, docs/benchmarks.md):
    # the pose opens up fast with speed (no lag on a fast pan), the shape is held steady
    POSE = {"min_cutoff": 1.0, "beta": 100.0, "d_cutoff": 4.0}
    SHAPE = {"min_cutoff": 0.3, "beta": 10.0, "d_cutoff": 1.0}

    def __init__(self, strength: float = 1.0):
        self.strength = float(strength)
        k = max(self.strength, 1e-6)
        self.pose = OneEuroFilter(self.POSE["min_cutoff"] / k, self.POSE["beta"] / k, self.POSE["d_cutoff"])
        self.shape = OneEuroFilter(self.SHAPE["min_cutoff"] / k, self.SHAPE["beta"] / k, self.SHAPE["d_cutoff"])
        self.reference = None

    def reset(self) -> None:
        self.pose.reset()
        self.shape.reset()
        self.reference = None

    def __call__(self, points: np.ndarray, t: float) -> np.ndarray:
        """Filtered (K, 2) points for the raw ``points`` seen at time ``t`` (seconds)."""
        points = np.asarray(points, float)
        if self.strength <= 0 or not np.isfinite(points).all():
            return points.copy()
        c, s, a = similarity_pose(points, self.reference)
        if self.pose.x is not None:             # keep the angle continuous across +-pi
            a = self.pose.x[3] + math.remainder(a - self.pose.x[3], 2 * math.pi)
        # pose (cx, cy, log size, angle); the centre's speed is measured in face sizes per second
        pose = self.pose(np.array([c[0], c[1], math.log(s), a]), t, speed_scale=np.array([s, s, 1.0, 1.0]))
        local = self.shape(to_local(points, c, s, a), t)
        self.reference = local
        return from_local(local, pose[:2], math.exp(pose[2]), pose[3])
