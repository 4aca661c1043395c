"""Landmark step of several landmark models side by side: each model's network on its own crop of
the same faces (ONNX Runtime, batch 1, one thread), in alternating turns so that all see the same
machine load.  Prints each model's median ms per face and its ratio to the first model's.

    python benchmarks/step_time.py ibug68 kaggle15 --data ../shared/data/helen-68/testset --faces 30
"""
from __future__ import annotations

import argparse

import numpy as np
from timing import median_ms  # benchmarks/timing.py

from landmask import geometry as G
from landmask.datasets import load_dataset
from landmask.runtime import load


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="shipped names or .onnx files")
    ap.add_argument("--data", required=True)
    ap.add_argument("--faces", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=20, help="calls per face and model (over 4 turns)")
    a = ap.parse_args()
    models = {m: load(m, threads=1) for m in a.models}
    per_face = {m: [] for m in models}
    for s in load_dataset(a.data)[:a.faces]:
        grey = s.image("grey")
        crops = {m: lm.crops(grey, [G.points_box(s.points)])[0] for m, lm in models.items()}
        for m, lm in models.items():   # warm up
            lm.predict_crops(crops[m])
        turns = {m: [] for m in models}
        for r in range(4):
            for m in (list(models) if r % 2 == 0 else list(models)[::-1]):
                turns[m].append(median_ms(lambda: models[m].predict_crops(crops[m]), max(1, a.repeat // 4)))
        for m in models:
            per_face[m].append(float(np.median(turns[m])))
    first = np.array(per_face[a.models[0]])
    for m in models:
        t = np.array(per_face[m])
        print(f"{m}: {np.median(t):.3f} ms median per face, {np.median(t / first):.2f} x {a.models[0]}'s "
              f"({models[m].input_size} px crops, {len(t)} faces)")


if __name__ == "__main__":
    main()
