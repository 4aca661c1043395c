"""Faces found and their landmark error on degraded photos, landmask against dlib (HOG detector
with face_recognition's one upsampling + the 68-point shape predictor), side by side on the same
images: each annotated photo as it is, darker, overexposed, low in contrast, blurred, JPEG-compressed
hard, noisy (as it is, and with its face first shrunk to at most 100 px: a grainy video frame),
shrunk so that its face is small, and turned (30 degrees; 90 degrees, a phone photo read without its
orientation).  The annotated face counts as found when a returned face's
landmark box overlaps its points' box with IoU > 0.3; NME (outer-eye-corner distance) is over the
faces found; a failure is a found face with NME > 8 %.

    pip install -e '.[train]' dlib-bin face-recognition-models 'setuptools<81'
    python scripts/degraded.py ../shared/data/helen-68/testset --faces 100
    python scripts/degraded.py HELD_HELEN HELD_LFPW --no-dlib     # choosing: held-out training faces (scripts/holdout_folder.py --held)
"""
from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

import landmask
from landmask import geometry as G
from landmask.datasets import load_dataset
from landmask.imageio import to_grey


def _turn(img, pts, deg):
    """``img`` turned ``deg`` degrees counterclockwise about its centre on a canvas that holds it
    all, and the points with it."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), deg, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c))
    m[0, 2] += (nw - w) / 2
    m[1, 2] += (nh - h) / 2
    out = cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return out, pts @ m[:, :2].T + m[:, 2]


def _jpeg(img, q):
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def conditions(face_px: float, rng):
    """name → f(grey image, points) → (image, points).  ``face_px``: the face's size, for the
    blur and the shrinking."""
    def lut(f):
        table = np.clip(f(np.arange(256, dtype=np.float64)), 0, 255).astype(np.uint8)
        return lambda g, p: (cv2.LUT(g, table), p)

    def shrink(target):
        def f(g, p):
            k = min(1.0, target / face_px)
            out = cv2.resize(g, (max(1, round(g.shape[1] * k)), max(1, round(g.shape[0] * k))),
                             interpolation=cv2.INTER_AREA)
            return out, (p + 0.5) * k - 0.5
        return f

    def noisy(g, p):
        return np.clip(g + rng.normal(0, 20, g.shape), 0, 255).astype(np.uint8), p

    return {
        "as it is": lambda g, p: (g, p),
        "dark (x0.25)": lut(lambda v: v * 0.25),
        "overexposed (x2)": lut(lambda v: v * 2.0),
        "low contrast (x0.35)": lut(lambda v: 128 + (v - 128) * 0.35),
        "blurred (sigma 3 % of the face)": lambda g, p: (cv2.GaussianBlur(g, (0, 0), 0.03 * face_px), p),
        "JPEG quality 10": lambda g, p: (_jpeg(g, 10), p),
        "noise (sigma 20)": noisy,
        "shrunk to a 40 px face": shrink(40.0),
        "noise (sigma 20), the face shrunk to at most 100 px": lambda g, p: noisy(*shrink(100.0)(g, p)),
        "turned 30 degrees": lambda g, p: _turn(g, p, 30),
        "turned 90 degrees": lambda g, p: _turn(g, p, 90),
    }


class Dlib:
    name = "dlib"

    def __init__(self, upsample: int):
        import importlib.util
        from pathlib import Path
        import dlib
        spec = importlib.util.find_spec("face_recognition_models")
        path = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
        self.det, self.pred, self.up, self.dlib = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path)), upsample, dlib

    def faces(self, grey):
        out = []
        for r in self.det(grey, self.up):
            s = self.pred(grey, r)
            out.append(np.array([[s.part(i).x, s.part(i).y] for i in range(68)], np.float64))
        return out


class Landmask:
    name = "landmask"

    def __init__(self, model, scout="auto"):
        self.lm = landmask.load(model, scout=scout)

    def faces(self, grey):
        return [f.points for f in self.lm.faces(grey)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="+", help="annotated data sets (their photos in turn)")
    ap.add_argument("--faces", type=int, default=100, help="the first N annotated faces of each (default 100)")
    ap.add_argument("--model", help="landmask's landmark model (default: the default)")
    ap.add_argument("--scout", default="auto", help="landmask's first-pass model (auto, none or a model)")
    ap.add_argument("--dlib-upsample", type=int, default=1, help="dlib HOG upsampling (face_recognition's default: 1)")
    ap.add_argument("--no-dlib", action="store_true")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    if a.faces < 1:
        ap.error(f"--faces {a.faces}: give 1 or more")
    tools = [Landmask(a.model, a.scout)] + ([] if a.no_dlib else [Dlib(a.dlib_upsample)])
    if tools[0].lm.model.scheme.name != "ibug68":
        ap.error(f"--model {a.model}: a {tools[0].lm.model.scheme.name} model; this script scores 68-point models")
    samples = [s for d in a.data for s in load_dataset(d)[:a.faces]]
    names = list(conditions(100.0, None))
    stats = {(t.name, c): {"found": 0, "nme": [], "s": 0.0} for t in tools for c in names}
    t0 = time.time()
    for i, s in enumerate(samples):
        grey = to_grey(s.image("grey"))
        face_px = float(np.ptp(s.points, axis=0).max())
        rng = np.random.default_rng(i)
        for c, f in conditions(face_px, rng).items():
            img, pts = f(grey, s.points.astype(np.float64))
            truth = G.points_box(pts)
            norm = float(G.interocular(pts, "ibug68"))
            for t in tools:
                t1 = time.perf_counter()
                found = t.faces(np.ascontiguousarray(img))
                st = stats[(t.name, c)]
                st["s"] += time.perf_counter() - t1
                best = max(found, key=lambda q: G.box_iou(G.points_box(q), truth), default=None)
                if best is not None and G.box_iou(G.points_box(best), truth) > 0.3:
                    st["found"] += 1
                    st["nme"].append(float(np.linalg.norm(best - pts, axis=1).mean() / norm))
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{len(samples)} faces, {time.time() - t0:.0f} s", flush=True)
    n = len(samples)
    rows = {}
    head = "| condition | " + " | ".join(f"{t.name}: found, NME %, failures" for t in tools) + " |"
    print(f"\n{n} faces of {' + '.join(a.data)}\n\n{head}\n|---|" + "---|" * len(tools))
    for c in names:
        cells = []
        for t in tools:
            st = stats[(t.name, c)]
            e = np.array(st["nme"])
            r = {"found": st["found"], "of": n, "nme_percent": 100 * float(e.mean()) if len(e) else None,
                 "failures": int((e > 0.08).sum()), "ms_per_photo": 1000 * st["s"] / n}
            rows.setdefault(c, {})[t.name] = r
            cells.append(f"{r['found']}/{n}, " + (f"{r['nme_percent']:.2f}" if len(e) else "–") + f", {r['failures']}")
        print(f"| {c} | " + " | ".join(cells) + " |")
    if a.json:
        from pathlib import Path
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
