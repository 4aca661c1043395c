"""Per-point confidence against occlusion: grey patches over the mouth or one eye of annotated faces.

For each face, a mid-grey rectangle covers one part (lips, left eye or right eye: the part's points'
box, grown by 25 % of the eye distance); the model predicts from the usual crop (box from the true
points).  Prints, per covered part: the share of faces whose covered points' mean confidence is below
the uncovered points' mean, the mean ratio of the two, and how often masking's hidden-part rule
(masking.part_visibility: make-up opacity factor) treats the covered part — mean visibility and the share
flagged hidden (visibility 0) — and the same parts on the clean faces.

    python scripts/occlusion_confidence.py --data ../shared/data/helen-68/trainset --model ibug68 [--heldout]
"""
from __future__ import annotations

import argparse

import numpy as np

from landmask import geometry as G
from landmask.datasets import face_box, load_dataset
from landmask.masking import part_visibility
from landmask.schemes import IBUG68, convert_points
from landmask.torch_backend import load_landmark_model

PARTS = ("lips", "left_eye", "right_eye")


def cover(image: np.ndarray, pts: np.ndarray, part: str) -> np.ndarray:
    """A copy of the grey image with a mid-grey box over ``part`` (68-point ``pts``)."""
    idx = IBUG68.part_points(part)
    grow = 0.25 * float(G.interocular(pts, "ibug68"))
    x0, y0 = np.floor(pts[idx].min(0) - grow).astype(int)
    x1, y1 = np.ceil(pts[idx].max(0) + grow).astype(int)
    out = image.copy()
    out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 128
    return out


def measure(samples, lm):
    """Per part: rows of (covered points' mean confidence, uncovered points' mean, visibility of the
    covered part, visibility of the same part on the clean face)."""
    rows = {p: [] for p in PARTS}
    for s in samples:
        image, pts = s.image("grey"), convert_points(s.points, s.scheme, "ibug68")
        box = face_box(s)
        _, _, c0 = lm.predict_all(image, [box])
        for part in PARTS:
            _, _, c = lm.predict_all(cover(image, pts, part), [box])
            idx = IBUG68.part_points(part)
            rest = np.setdiff1d(np.arange(68), idx)
            rows[part].append((c[0][idx].mean(), c[0][rest].mean(), part_visibility(c[0], "ibug68", part),
                               part_visibility(c0[0], "ibug68", part)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--model", default="ibug68")
    ap.add_argument("--heldout", action="store_true", help="only the faces `landmask train` holds out (5 %%, seed 0)")
    a = ap.parse_args()
    lm = load_landmark_model(a.model)
    samples = []
    for d in a.data:
        part = load_dataset(d)
        if a.heldout:
            from landmask.datasets import split
            part = [part[i] for i in split(len(part), 0.05, 0)[1]]
        samples += part
    rows = measure(samples, lm)
    print(f"{len(samples)} faces, model {lm.path.name}")
    for part, r in rows.items():
        r = np.array(r, float)
        print(f"  {part:10s} covered < uncovered in {100 * (r[:, 0] < r[:, 1]).mean():5.1f} % of faces "
              f"(mean ratio {np.mean(r[:, 0] / r[:, 1]):.3f}); covered: visibility {r[:, 2].mean():.2f}, "
              f"hidden {100 * (r[:, 2] == 0).mean():5.1f} %; clean: visibility {r[:, 3].mean():.2f}, "
              f"hidden {100 * (r[:, 3] == 0).mean():.1f} %, below 0.5 {100 * (r[:, 3] < 0.5).mean():.1f} %")


if __name__ == "__main__":
    main()
