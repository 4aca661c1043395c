"""A model's mean signed error on plain and on mirrored crops, in % of the eye distance: the check
that found HELEN's annotations are not mirror-symmetric (docs/experiments.md, fourth session).

A model trained with mirrored crops on annotations that sit δ right of the mirror-symmetric
position errs by about -δ on plain crops and +δ on mirrored ones; a model trained without mirrored
crops has no bias on plain crops and +2δ on mirrored ones (its mirror shift).

    python scripts/mirror_bias.py MODEL [--data ../shared/data/helen-68/trainset --faces 150]
"""
from __future__ import annotations

import argparse

import numpy as np

from landmask import geometry as G
from landmask.datasets import face_box, load_dataset
from landmask.runtime import load
from landmask.schemes import convert_points


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", default="../shared/data/helen-68/trainset")
    ap.add_argument("--faces", type=int, default=150, help="the first N faces of the data")
    a = ap.parse_args()
    lm = load(a.model)
    name, perm, s = lm.scheme.name, lm.scheme.flip_permutation, lm.input_size
    rows = {"plain": [], "mirrored": []}
    for f in load_dataset(a.data)[:a.faces]:
        crops, mats = lm.crops(f.image("grey"), [face_box(f)])
        truth = G.apply(mats[0], convert_points(f.points, f.scheme, name))
        norm = G.interocular(truth, name)
        rows["plain"].append((lm.predict_crops(crops)[0] - truth) / norm)
        mirrored = lm.predict_crops(np.ascontiguousarray(crops[:, :, ::-1]))[0]
        rows["mirrored"].append((mirrored - G.flip_points(truth, s, perm)) / norm)
    print(f"{a.model} on {a.faces} faces of {a.data}: mean signed error, % of the eye distance")
    for k, v in rows.items():
        dx, dy = 100 * np.nanmean(np.stack(v), axis=(0, 1))
        print(f"  {k:9s} crops: x {dx:+.3f}  y {dy:+.3f}")


if __name__ == "__main__":
    main()
