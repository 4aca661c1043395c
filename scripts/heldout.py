"""Score models on held-out *training* faces, for choosing between models without the test set.

The held-out faces are a run's validation split, recomputed from the data, fraction and seed exactly
as `landmask train` splits them (default: helen-68/trainset, 5 %, seed 0 = the 44 faces the HELEN
fine-tunes held out). Prints the 68-point NME and, for 68-point models, the RMSE (Kaggle units) of
the 15 Kaggle points derived from the 68 (the 68 → 15 table); for 15-point models, their own RMSE.

    python scripts/heldout.py runs/ibug68-v2ft runs/ibug68-v3 [--flip] [--fraction 0.05 --seed 0]
    python scripts/heldout.py --ensemble landmask/models/ibug68.safetensors runs/hl-112   # their mean points
"""
from __future__ import annotations

import argparse

import numpy as np

from landmask.datasets import face_box, load_dataset
from landmask.evaluate import face_norm
from landmask.metrics import nme_per_face, rmse_kaggle
from landmask.torch_backend import load_landmark_model
from landmask.schemes import convert_points
from landmask.datasets import split


def score(models, samples, flip=False):
    """``models``: one model, or a list of models of one scheme scored as an ensemble (the mean of their points)."""
    lms = [load_landmark_model(m) for m in (models if isinstance(models, list) else [models])]
    name = lms[0].scheme.name
    preds, gts, norms, p15, g15, n15 = [], [], [], [], [], []
    for s in samples:
        pred = np.mean([lm.predict(s.image("grey"), [face_box(s)], flip=flip)[0] for lm in lms], axis=0)
        gt = convert_points(s.points, s.scheme, name)
        preds.append(pred), gts.append(gt), norms.append(face_norm(s, gt, name))
        p15.append(convert_points(pred, name, "kaggle15"))
        g15.append(convert_points(s.points, s.scheme, "kaggle15"))
        n15.append(face_norm(s, g15[-1], "kaggle15"))
    nme = nme_per_face(np.stack(preds), np.stack(gts), np.array(norms))
    return {"scheme": name, "nme_percent": 100 * float(nme.mean()),
            "rmse15_px96": rmse_kaggle(np.stack(p15), np.stack(g15), np.array(n15))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", default="../shared/data/helen-68/trainset")
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flip", action="store_true")
    ap.add_argument("--ensemble", action="store_true", help="score the mean of the models' points as one model")
    a = ap.parse_args()
    samples = load_dataset(a.data)
    _, val = split(len(samples), a.fraction, a.seed)
    held = [samples[i] for i in val]
    print(f"{len(held)} held-out faces of {a.data} (fraction {a.fraction}, seed {a.seed})")
    for m in ([a.models] if a.ensemble else a.models):
        r = score(m, held, a.flip)
        print(f"{' + '.join(m) if a.ensemble else m}: {r['scheme']} NME {r['nme_percent']:.3f} %  "
              f"RMSE15 {r['rmse15_px96']:.3f} px96")


if __name__ == "__main__":
    main()
