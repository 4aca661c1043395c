"""Measure landmask.detect.CALIBRATION: for the Haar and dlib backends, the mean centre shift and
size factor that map each backend's box onto the tight box of the 68 landmarks, over the faces of a
training set that the backend finds (IoU >= 0.3 with the landmark box).

    python scripts/calibrate_detectors.py ../shared/data/helen-68/trainset
"""
import sys

import numpy as np

from landmask import geometry as G
from landmask.datasets import load_dataset
from landmask.detect import BACKENDS

samples = load_dataset(sys.argv[1])
for name in ("haar", "dlib"):
    det = BACKENDS[name]()
    rows = []
    for s in samples:
        truth = G.points_box(s.points)
        found = det.detect(s.image("grey"))
        if not found:
            continue
        d = max(found, key=lambda f: G.box_iou(f.box, truth))
        if G.box_iou(d.box, truth) < 0.3:
            continue
        x0, y0, x1, y1 = d.box
        w, h = x1 - x0, y1 - y0
        tcx, tcy = (truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2
        rows.append(((tcx - (x0 + x1) / 2) / w, (tcy - (y0 + y1) / 2) / h,
                     max(truth[2] - truth[0], truth[3] - truth[1]) / max(w, h)))
    dx, dy, scale = np.median(rows, axis=0)
    print(f'"{name}": {{"dx": {dx:.3f}, "dy": {dy:.3f}, "scale": {scale:.3f}}},  # {len(rows)} faces')
