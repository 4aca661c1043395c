"""The learned face check's score of every refined detector candidate in some photos, against the
check's threshold: for seeing why a false face passes (or a real one is dropped).

    python scripts/check_scores.py MODEL.onnx PHOTO [PHOTO ...]

Prints, per candidate: the face confidence, the score without the face cascade (for a check fitted
with `--haar`), the cascade's [found, level weight], the score and whether the check keeps it.
"""
from __future__ import annotations

import argparse

import numpy as np

import landmask
from landmask.api import Landmarker
from landmask.imageio import read_image, to_grey
from landmask.runtime import crop_hog, haar_features, load_onnx_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a landmark .onnx file with a learned HOG face check")
    ap.add_argument("photos", nargs="+")
    a = ap.parse_args()
    lm = load_onnx_model(a.model)
    check = lm.learned_check
    if check is None or check.get("kind", "hog") != "hog":
        raise SystemExit(f"{a.model}: no learned HOG face check")
    from landmask.api import scout_model
    pipe = Landmarker(lm, landmask.load().detector, scout=scout_model("auto", lm))   # as the pipeline frames them
    w = np.asarray(check["weights"])
    print(f"threshold {check['threshold']}, judged from face confidence {check['min_confidence']}")
    for path in a.photos:
        grey = to_grey(read_image(path))
        faces, conf, crops = pipe.candidates(grey, pipe.detector.detect(grey))
        for f, c, crop in zip(faces, conf, crops):
            x = np.concatenate([[c], f.confidence, crop_hog(crop[None], check["hog"])[0]])
            base = float(x @ w[:len(x)] + check["bias"])
            cascade = haar_features(grey, [f.box], check["haar"])[0] if "haar" in check else np.zeros(0)
            score = base + float(cascade @ w[len(x):])
            keep = score >= check["threshold"] and c >= check["min_confidence"]
            box = ", ".join(f"{v:.0f}" for v in f.box)
            print(f"{path}  box [{box}]  confidence {c:.3f}  score without cascade {base:.2f}  "
                  f"cascade {np.round(cascade, 2).tolist()}  score {score:.2f}  {'KEPT' if keep else 'dropped'}")


if __name__ == "__main__":
    main()
