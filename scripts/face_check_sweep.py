"""The landmark face check's bar against false faces and faces found: for each model and bar, the
faces a pipeline keeps on photos without a human face (a folder, plus dlib's dogs.jpg) and the share of
annotated faces found through the detector on helen-68/testset and the two dlib example XML files.
Measuring only; a model's bar is set by `landmask calibrate`.

    python scripts/face_check_sweep.py --models ibug68-fast-int8 ibug68-tiny --bars 0.14 0.145 0.15 --non-faces runs/nonfaces
"""
import argparse
from pathlib import Path

import landmask
from landmask.batch import walk_images
from landmask.evaluate import evaluate
from landmask.imageio import read_image


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["ibug68"])
    ap.add_argument("--bars", nargs="+", type=float, required=True)
    ap.add_argument("--non-faces", required=True, help="a folder of photos without a human face")
    ap.add_argument("--data-root", default="../shared/data")
    a = ap.parse_args()
    d = a.data_root
    files = walk_images(Path(a.non_faces)) + [Path(d, "samples/dlib-examples/dogs.jpg")]
    images = [(f.name, read_image(f)) for f in files]
    found = [f"{d}/helen-68/testset", f"{d}/samples/dlib-examples/testing_with_face_landmarks.xml",
             f"{d}/samples/dlib-examples/training_with_face_landmarks.xml"]
    for name in a.models:
        pipe = landmask.load(name)
        check = pipe.model.meta["face_check"]
        own = check["min_confidence"]
        try:
            for bar in a.bars:
                check["min_confidence"] = bar   # the cached model: evaluate() loads the same object
                false = {n: k for n, img in images if (k := len(pipe.faces(img)))}
                rates = [evaluate(x, name, "detect")["detected_percent"] for x in found]
                print(f"{name} bar {bar} (own {own}): {sum(false.values())} false faces {false}; found "
                      + ", ".join(f"{r:.1f} %" for r in rates) + " (helen testset, dlib testing, dlib training)",
                      flush=True)
        finally:
            check["min_confidence"] = own


if __name__ == "__main__":
    main()
