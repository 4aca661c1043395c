"""Compare the face-detector backends (issue: pick the default by measurement).

    python scripts/detector_report.py ../shared/data

- detection rate on helen-68/testset: a face counts as found when a detected box (in the
  landmark-box convention) overlaps the ground-truth landmarks' box with IoU >= 0.3;
- median time per image;
- on the dlib example photos (43 hand-labelled faces in 9 PASCAL VOC photos, plus dogs.jpg with no
  human face): faces found and false detections (boxes that overlap no labelled face, IoU < 0.3).
"""
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from landmask import geometry as G
from landmask.datasets import load_dataset
from landmask.detect import BACKENDS
from landmask.imageio import read_image

root = Path(sys.argv[1])
helen = load_dataset(root / "helen-68" / "testset")
ex = root / "samples" / "dlib-examples"
labelled = []
for xml in ("training.xml", "testing.xml"):
    for im in ET.parse(ex / xml).getroot().iter("image"):
        boxes = [[float(b.get("left")), float(b.get("top")), float(b.get("left")) + float(b.get("width")),
                  float(b.get("top")) + float(b.get("height"))] for b in im.iter("box") if b.get("ignore") != "1"]
        labelled.append((ex / im.get("file"), boxes))
labelled.append((ex / "dogs.jpg", []))

print("| backend | helen-68/testset detection rate | median ms/image (helen, ~640 px) | "
      "dlib examples: faces found | false detections (9 photos + dogs.jpg) |")
print("|---|---|---|---|---|")
for name in sys.argv[2:] or ["landmask", "haar", "dlib"]:
    try:
        det = BACKENDS[name]()
    except Exception as e:  # dlib not installed
        print(f"| {name} | not available: {e} | | | |")
        continue
    found, times = 0, []
    for s in helen:
        img = read_image(s.path)
        t = time.perf_counter()
        faces = det.detect(img)
        times.append(time.perf_counter() - t)
        truth = G.points_box(s.points)
        found += any(G.box_iou(f.landmark_box, truth) >= 0.3 for f in faces)
    hits, false, total = 0, 0, 0
    for path, boxes in labelled:
        faces = det.detect(read_image(path))
        total += len(boxes)
        hits += sum(any(G.box_iou(f.box, b) >= 0.3 for f in faces) for b in boxes)
        false += sum(not any(G.box_iou(f.box, b) >= 0.3 for b in boxes) for f in faces)
    print(f"| {name} | {100 * found / len(helen):.1f}% ({found}/{len(helen)}) | {1000 * np.median(times):.1f} | "
          f"{hits}/{total} | {false} |")
