"""landmask vs dlib, side by side in one run on the same faces (run by hand; results go to
docs/benchmarks.md).  Needs the training extras and the baseline:

    pip install -e '.[train]' dlib-bin face-recognition-models 'setuptools<81'
    python benchmarks/bench.py --data ../shared/data/helen-68/testset --out docs/benchmarks.md

Timings are medians over many calls with one thread each (OMP/ORT/torch), on whatever machine runs
it; ratios are taken face by face within the same run, so machine noise largely cancels.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)
from landmask import geometry as G  # noqa: E402
from landmask.datasets import load_dataset  # noqa: E402
from landmask.schemes import convert_points  # noqa: E402
from timing import median_ms  # noqa: E402  (benchmarks/timing.py)

ROOT = Path(__file__).resolve().parents[1]


def dlib_predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    return Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"


# ------------------------------------------------------------------ tools

class LandmaskTool:
    def __init__(self, model="ibug68", backend="onnx", scout="auto"):
        from landmask.api import load
        from landmask.torch_backend import load_landmark_model
        self.lm = load(load_landmark_model(model, threads=1, backend=backend), "landmask", threads=1, scout=scout)
        self.scheme = self.lm.scheme          # the scheme's name

    def landmarks(self, img, box):
        return self.lm.landmarks(img, [box])[0].points

    def pipeline(self, img):
        from landmask.api import mask
        return mask(img, self.lm.faces(img), lips="color:#b0123a@0.6", eyes="color:#1f6fd1@0.35")

    def detect_boxes(self, img):
        return [d.landmark_box for d in self.lm.detector.detect(img)]

    def faces(self, img):
        return [(f.box, f.points) for f in self.lm.faces(img)]


class DlibTool:
    scheme = "ibug68"

    def __init__(self):
        import dlib
        self.dlib = dlib
        self.det = dlib.get_frontal_face_detector()
        self.pred = dlib.shape_predictor(str(dlib_predictor_path()))

    def shape(self, img, box):
        return self.pred(img, self.dlib.rectangle(*[int(round(v)) for v in box]))

    def landmarks(self, img, box):
        return np.array([(p.x, p.y) for p in self.shape(img, box).parts()], float)

    def detect_boxes(self, img):
        return [np.array([r.left(), r.top(), r.right(), r.bottom()], float) for r in self.det(img, 0)]

    def faces(self, img):
        return [(b, self.landmarks(img, b)) for b in self.detect_boxes(img)]

    def pipeline(self, img):
        """dlib HOG + 68-point predictor + fillPoly masking (face_recognition's makeup example)."""
        out = img.copy()
        for r in self.det(img, 0):
            p = np.array([(q.x, q.y) for q in self.pred(img, r).parts()], np.int32)
            layer = out.copy()
            cv2.fillPoly(layer, [p[48:60], p[60:68]], (176, 18, 58), lineType=cv2.LINE_AA)
            cv2.fillPoly(layer, [p[36:42], p[42:48]], (31, 111, 209), lineType=cv2.LINE_AA)
            out = cv2.addWeighted(layer, 0.6, out, 0.4, 0)
        return out


# landmask tools: name → (shipped model, backend[, scout]).  landmask-default: no model named, as the
# CLI runs it (ibug68, as ibug68-int8 on a CPU with 8-bit dot products, and its scout);
# landmask-onnx-no-scout: the float ibug68 doing every landmark pass itself (the default before the
# sixteenth session); landmask-float: the default on a CPU without 8-bit dot products (float ibug68,
# float ibug68-fast scout)
LANDMASK_TOOLS = {"landmask-default": (None, "onnx"), "landmask-onnx-no-scout": ("ibug68", "onnx", "none"),
                  "landmask-float": ("ibug68", "onnx", "ibug68-fast"),
                  "landmask-onnx": ("ibug68", "onnx"), "landmask-int8-onnx": ("ibug68-int8", "onnx"),
                  "landmask-fast-onnx": ("ibug68-fast", "onnx"), "landmask-fast-int8-onnx": ("ibug68-fast-int8", "onnx"),
                  "landmask-tiny-onnx": ("ibug68-tiny", "onnx"), "landmask-torch": ("ibug68", "torch")}


def make_tool(name):
    if name in LANDMASK_TOOLS:
        return LandmaskTool(*LANDMASK_TOOLS[name])
    if name == "seed":   # the seed preset's model (38 MB, not shipped): --seed-model
        return LandmaskTool(os.environ["BENCH_SEED_MODEL"], "torch")
    if name == "dlib":
        return DlibTool()
    raise SystemExit(f"unknown tool {name}")


# ------------------------------------------------------------------ measurements

def photo_640x480(img, pts):
    """The face's photo resized and cut to 640×480 around the face, and the points in it."""
    h, w = img.shape[:2]
    s = max(640 / w, 480 / h)
    img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    p = (pts + 0.5) * s - 0.5
    cx = np.clip(np.nanmean(p[:, 0]) - 320, 0, img.shape[1] - 640)
    cy = np.clip(np.nanmean(p[:, 1]) - 240, 0, img.shape[0] - 480)
    x0, y0 = int(cx), int(cy)
    return np.ascontiguousarray(img[y0:y0 + 480, x0:x0 + 640]), p - [x0, y0]


def nme(pred, gt, scheme):
    g = convert_points(gt, "ibug68", scheme)
    return float(np.mean(np.linalg.norm(pred - g, axis=1)) / G.interocular(g, scheme))


def run_tool(name, data, n_faces, repeat):
    """Every figure for one tool, in this process (so its peak memory is its own)."""
    from landmask.imageio import read_image
    samples = load_dataset(data)[:n_faces]
    tool = make_tool(name)
    dlib_boxes = json.loads(os.environ["BENCH_DLIB_BOXES"]) if "BENCH_DLIB_BOXES" in os.environ else None
    times, own, same, found = [], [], [], 0
    for i, s in enumerate(samples):
        img = read_image(s.path)
        truth = G.points_box(s.points)
        times.append(median_ms(lambda: tool.landmarks(img, truth), repeat))
        # each with its own detector: the detected face that best overlaps the truth
        best = max(tool.faces(img), key=lambda f: G.box_iou(f[0], truth), default=None)
        if best is not None and G.box_iou(best[0], truth) >= 0.3:
            found += 1
            own.append(nme(best[1], s.points, tool.scheme))
        # the same box for both: dlib's HOG box (landmask maps it by its calibration)
        if dlib_boxes and dlib_boxes[i] is not None:
            box = np.array(dlib_boxes[i])
            if name != "dlib":
                from landmask.detect import CALIBRATION, calibrate
                box = calibrate(box, CALIBRATION["dlib"])
            same.append(nme(tool.landmarks(img, box), s.points, tool.scheme))
    photos = [photo_640x480(read_image(s.path), s.points)[0] for s in samples[:20]]
    for p in photos[:3]:
        tool.pipeline(p)   # warm-up
    pipe = [median_ms(lambda: tool.pipeline(p), max(3, repeat // 4)) for p in photos]
    return {"tool": name, "landmark_ms": times, "nme_own_detector": own, "found": found,
            "nme_same_box": same, "pipeline_ms": pipe,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def paired_landmarks(data, n_faces, repeat, rounds=4):
    """Landmark step of landmask (ONNX) and dlib in one process, interleaved face by face and in
    ``rounds`` alternating turns, so both see the same machine load: per-face median ms of each."""
    from landmask.imageio import read_image
    tools = {k: make_tool(k).landmarks for k in LANDMASK_TOOLS if k.endswith("-onnx") or k == "landmask-default"}
    dlib_tool = make_tool("dlib")
    tools["dlib"] = dlib_tool.landmarks
    # the predictor call alone, without reading its 68 points into Python (which every caller
    # needs, but which is not the predictor's own work): the strictest comparison for landmask
    tools["dlib (predictor call only)"] = dlib_tool.shape
    times = {k: [] for k in tools}
    for s in load_dataset(data)[:n_faces]:
        img, truth = read_image(s.path), G.points_box(s.points)
        per = {k: [] for k in tools}
        for r in range(rounds):
            for k in (list(tools) if r % 2 == 0 else list(tools)[::-1]):
                per[k].append(median_ms(lambda: tools[k](img, truth), max(1, repeat // rounds)))
        for k in tools:
            times[k].append(float(np.median(per[k])))
    return times


def dlib_hog_boxes(data, n_faces):
    import dlib
    det = dlib.get_frontal_face_detector()
    from landmask.imageio import read_image
    out = []
    for s in load_dataset(data)[:n_faces]:
        truth = G.points_box(s.points)
        rs = [np.array([r.left(), r.top(), r.right(), r.bottom()], float) for r in det(read_image(s.path), 0)]
        b = max(rs, key=lambda r: G.box_iou(r, truth), default=None)
        out.append(b.tolist() if b is not None and G.box_iou(b, truth) >= 0.3 else None)
    return out


def install_size_mb() -> float:
    """Size of a fresh venv with the plain install, minus an empty venv."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "venv", f"{d}/empty"], check=True)
        subprocess.run([sys.executable, "-m", "venv", f"{d}/plain"], check=True)
        subprocess.run([f"{d}/plain/bin/pip", "install", "-q", str(ROOT)], check=True)
        du = lambda p: int(subprocess.run(["du", "-sk", p], capture_output=True, text=True).stdout.split()[0])  # noqa: E731
        return (du(f"{d}/plain") - du(f"{d}/empty")) / 1024


def report(results, sizes, install_mb, args) -> str:
    by = {r["tool"]: r for r in results}
    d = by["dlib"]
    lines = [f"# Benchmarks: landmask vs dlib", "",
             f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}; one thread per tool; "
             f"{len(d['landmark_ms'])} faces of `{args.data}`; command:", "",
             f"    python benchmarks/bench.py --data {args.data} --faces {args.faces} --repeat {args.repeat} --seed-model {args.seed_model}", "",
             "| tool | landmark step, median ms/face | ratio to dlib (median of per-face ratios) | "
             "640×480 photo: detect + landmarks + mask, median ms | its ratio to dlib (median of per-photo ratios) | "
             "NME % (own detector) | faces found | NME % (same box: dlib's) | model file MB | peak memory MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in by.items():
        ratio = np.median(np.array(r["landmark_ms"]) / np.array(d["landmark_ms"]))
        pipe_ratio = np.median(np.array(r["pipeline_ms"]) / np.array(d["pipeline_ms"]))
        lines.append(f"| {name} | {np.median(r['landmark_ms']):.3f} | {ratio:.3f} | "
                     f"{np.median(r['pipeline_ms']):.1f} | {pipe_ratio:.3f} | {100 * np.mean(r['nme_own_detector']):.2f} | "
                     f"{r['found']}/{len(r['landmark_ms'])} | "
                     f"{100 * np.mean(r['nme_same_box']) if r['nme_same_box'] else float('nan'):.2f} | "
                     f"{sizes.get(name, float('nan')):.2f} | {r['peak_rss_mb']:.0f} |")
    paired = getattr(args, "paired", None)
    if paired:
        b = np.array(paired["dlib"])
        c = np.array(paired.get("dlib (predictor call only)", b))
        lines += ["", "Landmark step measured interleaved in one process (the landmask models and dlib taking "
                  "turns on each face, so all see the same load), median ms per face and median per-face ratios. "
                  "Each landmask step is image + box → (68, 2) array (crop, model, mapping back); dlib's is the "
                  "predictor call plus reading its 68 points into an array, and, strictest, the call alone:", "",
                  "| tool | ms | ratio to dlib | ratio to dlib's call alone | faces where it is faster than dlib's call alone |",
                  "|---|---|---|---|---|"]
        for k, v in paired.items():
            a = np.array(v)
            lines.append(f"| {k} | {np.median(a):.3f} | {np.median(a / b):.3f} | {np.median(a / c):.3f} | "
                         f"{int((a < c).sum())}/{len(a)} |")
    lines += ["", f"Plain install (`pip install .`: numpy, OpenCV headless 4.x, onnxruntime, PyYAML; "
              f"no PyTorch): {install_mb:.0f} MB in a fresh virtual environment." if install_mb else "",
              "", "Notes: dlib was trained on HELEN (its test set included), so its NME here is not a "
              "held-out figure; landmask never saw helen-68/testset. The seed model predicts the 15 Kaggle "
              "points, so its NME is over those 15. 'Same box' gives every tool dlib's HOG box (landmask maps "
              "it onto its landmark-box convention with its measured calibration)."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/helen-68/testset")
    ap.add_argument("--faces", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--tools", nargs="+", default=["landmask-default", "landmask-onnx", "landmask-int8-onnx", "landmask-fast-onnx", "landmask-fast-int8-onnx",
                                                   "landmask-tiny-onnx", "landmask-torch", "dlib", "seed"])
    ap.add_argument("--out", help="write the markdown table here")
    ap.add_argument("--seed-model", default="runs/seed-v1/model.safetensors",
                    help="the seed preset's model (landmask train --preset seed)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--no-install-size", action="store_true")
    args = ap.parse_args()
    if args.one:   # child process: one tool (or "paired"), JSON on stdout
        if args.one == "paired":
            print(json.dumps(paired_landmarks(args.data, args.faces, args.repeat)))
        else:
            print(json.dumps(run_tool(args.one, args.data, args.faces, args.repeat)))
        return
    env = dict(os.environ, BENCH_DLIB_BOXES=json.dumps(dlib_hog_boxes(args.data, args.faces)),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", BENCH_SEED_MODEL=str(args.seed_model))
    if not Path(args.seed_model).exists() and "seed" in args.tools:
        print(f"no seed model at {args.seed_model}; leaving it out", file=sys.stderr)
        args.tools = [t for t in args.tools if t != "seed"]
    results = []
    for t in args.tools:
        print(f"running {t} ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--one", t, "--data", args.data, "--faces",
                              str(args.faces), "--repeat", str(args.repeat)], env=env, check=True,
                             capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    if "dlib" in args.tools and any(t in LANDMASK_TOOLS for t in args.tools):
        print("running the landmask ONNX models and dlib interleaved ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--one", "paired", "--data", args.data, "--faces",
                              str(args.faces), "--repeat", str(args.repeat)], env=env, check=True,
                             capture_output=True, text=True).stdout
        args.paired = json.loads(out.strip().splitlines()[-1])
    m = ROOT / "landmask" / "models"
    from landmask.runtime import runtime_name
    sizes = {}
    for k, (model, backend, *_) in LANDMASK_TOOLS.items():
        name = model or runtime_name("ibug68")
        sizes[k] = (m / f"{name}.{'onnx' if backend == 'onnx' else 'safetensors'}").stat().st_size / 1e6
    sizes["dlib"] = dlib_predictor_path().stat().st_size / 1e6
    if "seed" in args.tools:
        sizes["seed"] = Path(args.seed_model).stat().st_size / 1e6
    text = report(results, sizes, None if args.no_install_size else install_size_mb(), args)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
