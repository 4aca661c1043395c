"""Held-out NME of an ensemble: the mean of several landmark models' points (optionally each averaged
with the mirrored crop), on the faces `landmask train` holds out of helen-68/trainset and
lfpw-68/trainset (5 %, seed 0: the 44 + 40 faces of docs/experiments.md). For deciding whether an
ensemble is worth its cost; nothing ships from here.

    python scripts/ensemble_heldout.py landmask/models/ibug68.safetensors runs/hl-112
"""
import argparse

import numpy as np

from landmask.datasets import face_box, load_dataset, split
from landmask.evaluate import face_norm
from landmask.metrics import nme_per_face, rmse_kaggle
from landmask.schemes import convert_points
from landmask.torch_backend import load_landmark_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data-root", default="../shared/data")
    a = ap.parse_args()
    lms = [load_landmark_model(m) for m in a.models]
    for d in ("helen", "lfpw"):
        samples = load_dataset(f"{a.data_root}/{d}-68/trainset")
        held = [samples[i] for i in split(len(samples), 0.05, 0)[1]]
        for flip in (False, True):
            preds, gts, norms, p15, g15, n15 = [], [], [], [], [], []
            for s in held:
                pred = np.mean([lm.predict(s.image("grey"), [face_box(s)], flip=flip)[0] for lm in lms], axis=0)
                preds.append(pred), gts.append(s.points), norms.append(face_norm(s, s.points, "ibug68"))
                p15.append(convert_points(pred, "ibug68", "kaggle15"))
                g15.append(convert_points(s.points, "ibug68", "kaggle15"))
                n15.append(face_norm(s, g15[-1], "kaggle15"))
            nme = nme_per_face(np.stack(preds), np.stack(gts), np.array(norms))
            print(f"{d} ({len(held)} faces){' --flip' if flip else ''}: NME {100 * nme.mean():.3f} %  "
                  f"RMSE15 {rmse_kaggle(np.stack(p15), np.stack(g15), np.array(n15)):.3f} px96")


if __name__ == "__main__":
    main()
