"""Faces found through the detector when a part is covered: each annotated face of a data set once as it
is and once with a box of a random shade over its mouth or one eye (grown by 0.15-0.5 x the eye
distance, seeded), counted as found when a face of the pipeline overlaps its points' box (IoU > 0.5).

    python scripts/covered_found.py ../shared/data/helen-68/testset --model ibug68
"""
import argparse

import numpy as np

import landmask
from landmask import geometry as G
from landmask.datasets import load_dataset
from landmask.occlusion import random_cover
from landmask.imageio import to_grey


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--model", help="default: landmask's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scout", default="auto", help="the first-pass model (auto, none or a model)")
    a = ap.parse_args()
    pipe = landmask.load(a.model, scout=a.scout)
    rng = np.random.default_rng(a.seed)
    found = {"clean": 0, "covered": 0}
    samples = load_dataset(a.data)
    for s in samples:
        grey = to_grey(s.image("grey"))
        covered = random_cover(grey, s.points, "ibug68", rng)
        for name, img in (("clean", grey), ("covered", covered)):
            truth = G.points_box(s.points)
            found[name] += any(G.box_iou(G.points_box(f.points), truth) > 0.5 for f in pipe.faces(img))
    n = len(samples)
    print(f"{pipe.model.path.name} (first pass: {pipe.scout.path.name if pipe.scout else 'its own'}) on {a.data}: found {found['clean']}/{n} faces as they are, "
          f"{found['covered']}/{n} with the mouth or an eye covered ({100 * found['covered'] / n:.1f} %)")


if __name__ == "__main__":
    main()
