"""Video benchmark: steadiness, lag and accuracy of tracked + smoothed landmarks on clips with known
truth, and the frame rate of ``landmask mask`` on a 640x480 30 fps clip.

Clips are made from annotated *training* photos (helen-68/trainset by default; never the test set):
each photo is placed in a 640x480 frame by a known similarity transform per frame, sensor noise is
added, the frames are encoded to H.264 and decoded again (as a camera file would be), and the truth
is the photo's 68 annotated points moved by the same transform.  Clips (3 s at 30 fps):

  still   face on a tripod, sensor noise only
  shake   smooth hand-held shake: three sines 0.3-1.7 Hz, about 3 px, and a slight roll
  pan     fast pan with zoom: 300 px across and back (up to 470 px/s), zoom 1 -> 1.3
  leave   the face leaves the picture to the right and comes back
  two     two faces side by side, each with its own gentle shake

Per clip, smoothing off and on: NME per frame (% of the outer-eye distance), jitter (median over
frames and points of |frame-to-frame movement - true movement|, % of the outer-eye distance), lag
(the time shift that best aligns the face's centre with the truth, ms), and the frames with the face
found among those where it is fully in view.

    python benchmarks/video_bench.py                     # accuracy clips + fps
    python benchmarks/video_bench.py --skip-fps --faces 8
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import landmask  # noqa: E402
from landmask.datasets import load_dataset  # noqa: E402
from landmask.smoothing import LandmarkSmoother  # noqa: E402
from landmask.tracking import Tracker  # noqa: E402

W, H, FPS = 640, 480, 30
IOD = 80.0                    # outer-eye distance of a face in the frame, px (a webcam at arm's length)
CLIPS = ("still", "shake", "pan", "leave", "two")


# ---------------------------------------------------------------- clips with truth

def pick_faces(data: str, k: int, seed: int = 0):
    """k annotated faces (cropped photo, points in the crop) spread over the data set."""
    samples = sorted(load_dataset(data), key=lambda s: s.source)
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(samples)):
        s = samples[i]
        p = s.points
        if not np.isfinite(p).all() or np.linalg.norm(p[36] - p[45]) < 50:
            continue
        img = s.image("rgb")
        x0, y0 = np.maximum(p.min(0) - 0.6 * (p.max(0) - p.min(0)), 0).astype(int)
        x1, y1 = np.minimum(p.max(0) + 0.6 * (p.max(0) - p.min(0)), [img.shape[1], img.shape[0]]).astype(int)
        out.append((np.ascontiguousarray(img[y0:y1, x0:x1]), p - [x0, y0], s.source))
        if len(out) == k:
            break
    return out


def placement(points, centre, scale, angle_deg) -> np.ndarray:
    """2x3 matrix putting the face's centre at ``centre`` with outer-eye distance IOD * scale."""
    c = points.mean(0)
    f = IOD * scale / np.linalg.norm(points[36] - points[45])
    m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), angle_deg, f)
    m[:, 2] += np.asarray(centre) - c
    return m


def motion(clip: str, t: float, which: int = 0):
    """(centre, scale, roll in degrees) of face ``which`` at time t (s) in a clip."""
    if clip == "still":
        return (W / 2, H / 2), 1.0, 0.0
    if clip in ("shake", "two"):
        ph = 1.3 * which
        dx = 2.0 * np.sin(2 * np.pi * 0.3 * t + ph) + 1.2 * np.sin(2 * np.pi * 0.9 * t + 2 * ph) \
            + 0.6 * np.sin(2 * np.pi * 1.7 * t + 1)
        dy = 1.5 * np.sin(2 * np.pi * 0.5 * t + 0.7 + ph) + 0.8 * np.sin(2 * np.pi * 1.3 * t + 2)
        roll = 0.4 * np.sin(2 * np.pi * 0.4 * t + ph)
        if clip == "shake":
            return (W / 2 + dx, H / 2 + dy), 1.0, roll
        return (W * (0.27 if which == 0 else 0.73) + dx, H / 2 + dy), 0.85, roll
    if clip == "pan":
        u = (1 - np.cos(2 * np.pi * t / 2.0)) / 2          # 0 -> 1 -> 0 over 2 s
        return (W / 2 - 150 + 300 * u, H / 2), 1.0 + 0.3 * u, 0.0
    if clip == "leave":                                     # in view, out to the right, back
        x = np.interp(t, [0, 0.5, 1.1, 1.7, 2.3, 3.0], [W / 2, W / 2, W + 200, W + 200, W / 2, W / 2])
        return (x, H / 2), 1.0, 0.0
    raise ValueError(clip)


def render(clip: str, faces, n: int, noise: float, rng) -> tuple[list, list]:
    """Frames (n, H, W, 3) uint8 and truth: per frame a list of (68, 2) points, one per face."""
    frames, truth = [], []
    bg = cv2.GaussianBlur(rng.uniform(60, 140, (H, W, 3)).astype(np.float32), (0, 0), 25)
    for i in range(n):
        t = i / FPS
        canvas, pts = bg.copy(), []
        for k, (img, p, _) in enumerate(faces[:2] if clip == "two" else faces[:1]):
            centre, scale, roll = motion(clip, t, k)
            m = placement(p, centre, scale, roll)
            warped = cv2.warpAffine(img.astype(np.float32), m, (W, H), flags=cv2.INTER_LINEAR)
            inside = cv2.warpAffine(np.ones(img.shape[:2], np.float32), m, (W, H))[..., None]
            canvas = canvas * (1 - inside) + warped * inside
            pts.append(cv2.transform(p[None], m)[0])
        canvas += rng.normal(0, noise, canvas.shape)
        frames.append(np.clip(canvas, 0, 255).astype(np.uint8))
        truth.append(pts)
    return frames, truth


def h264_round_trip(frames, crf: int = 20) -> list[np.ndarray]:
    """Encode as a camera would (H.264, yuv420p) and decode again."""
    import av
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mp4")
    s = out.add_stream("libx264", rate=FPS, options={"crf": str(crf), "preset": "veryfast"})
    s.width, s.height, s.pix_fmt = W, H, "yuv420p"
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(f, format="rgb24")
        vf.pts = i
        for pkt in s.encode(vf):
            out.mux(pkt)
    for pkt in s.encode(None):
        out.mux(pkt)
    out.close()
    buf.seek(0)
    with av.open(buf) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# ---------------------------------------------------------------- metrics

def track_clip(lm, frames, detect_every: int) -> list[dict]:
    """Raw tracked faces per frame: [{track id: (68, 2) points}]."""
    tr = Tracker(lm, detect_every=detect_every)
    return [{f.track: f.points for f in tr.update(fr)} for fr in frames]


def per_frame(lm, frames) -> list[dict]:
    """Detect and refine on every frame, no tracking (the photo pipeline run per frame)."""
    return [{k: f.points for k, f in enumerate(lm.faces(fr))} for fr in frames]


def smooth_tracks(raw, strength: float) -> list[dict]:
    if strength <= 0:
        return raw
    sm, out = {}, []
    for i, faces in enumerate(raw):
        out.append({k: sm.setdefault(k, LandmarkSmoother(strength))(p, i / FPS) for k, p in faces.items()})
    return out


def match(pred: dict, truth_pts) -> int | None:
    """The track whose centre is nearest the true face's centre (within one eye distance)."""
    c = truth_pts.mean(0)
    best = min(pred, key=lambda k: np.linalg.norm(pred[k].mean(0) - c), default=None)
    if best is None or np.linalg.norm(pred[best].mean(0) - c) > np.linalg.norm(truth_pts[36] - truth_pts[45]):
        return None
    return best


def in_view(p) -> bool:
    return bool((p.min(0) >= 0).all() and p[:, 0].max() <= W - 1 and p[:, 1].max() <= H - 1)


def clip_metrics(pred, truth, clip) -> dict:
    nme, jit, found, visible = [], [], 0, 0
    centres = {}
    for face in range(len(truth[0])):
        prev = None
        for i, (pf, tf) in enumerate(zip(pred, truth)):
            g = tf[face]
            iod = np.linalg.norm(g[36] - g[45])
            k = match(pf, g)
            if in_view(g):
                visible += 1
                found += k is not None
            if k is None:
                prev = None
                continue
            p = pf[k]
            nme.append(100 * np.linalg.norm(p - g, axis=1).mean() / iod)
            if prev is not None and prev[0] == k:
                d = (p - prev[1]) - (g - prev[2])
                jit.extend(100 * np.linalg.norm(d, axis=1) / iod)
            prev = (k, p, g)
            if face == 0:
                centres[i] = p.mean(0)
    r = {"nme": float(np.mean(nme)) if nme else float("nan"),
         "jitter": float(np.median(jit)) if jit else float("nan"),
         "found": 100.0 * found / max(visible, 1)}
    if clip == "pan":
        r["lag_ms"] = lag_ms(centres, truth)
    return r


def lag_ms(centres: dict, truth) -> float:
    """The delay (ms) of the face's centre behind the truth's that fits best (centre offsets from
    annotation style are removed as a constant)."""
    idx = np.array(sorted(centres))
    c = np.array([centres[i] for i in idx])
    g = np.array([truth[i][0].mean(0) for i in range(len(truth))])
    t = np.arange(len(truth)) / FPS
    best, best_err = 0.0, np.inf
    for s in np.arange(-0.05, 0.2, 0.001):
        gs = np.stack([np.interp(t[idx] - s, t, g[:, j]) for j in range(2)], axis=1)
        d = c - gs
        err = np.linalg.norm(d - d.mean(0), axis=1).mean()
        if err < best_err:
            best, best_err = s, err
    return 1000 * best


def accuracy(args, lm) -> dict:
    faces = pick_faces(args.data, max(args.faces, 2), args.seed)
    rng = np.random.default_rng(args.seed)
    results = {c: {} for c in args.clips}
    raws = {}
    for c in args.clips:
        runs = []
        groups = [faces[i:i + 2] for i in range(0, len(faces) - 1, 2)] if c == "two" else [[f] for f in faces]
        for g in groups[: args.faces]:
            frames, truth = render(c, g, args.frames, args.noise, rng)
            frames = h264_round_trip(frames)
            runs.append((track_clip(lm, frames, args.detect_every), truth,
                         per_frame(lm, frames) if args.per_frame else None))
        raws[c] = runs
        if args.per_frame:
            ms = [clip_metrics(pf, truth, c) for _, truth, pf in runs]
            results[c]["per-frame detection, no tracking, no smoothing"] = {
                k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
        for s in args.strengths:
            ms = [clip_metrics(smooth_tracks(raw, s), truth, c) for raw, truth, _ in runs]
            results[c][f"tracked, smooth {s:g}"] = {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
        print(c, json.dumps(results[c]), flush=True)
    return {"faces": [f[2] for f in faces], "clips": results}


# ---------------------------------------------------------------- speed of the whole command

def fps_clip(path: Path, lm_faces, seconds: float = 10.0):
    """A 640x480 30 fps one-face clip with AAC audio (the shake motion), written to ``path``."""
    import av
    rng = np.random.default_rng(1)
    n = int(seconds * FPS)
    frames, _ = render("shake", lm_faces[:1], n, 2.0, rng)
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=FPS, options={"crf": "20", "preset": "veryfast"})
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    a = out.add_stream("aac", rate=48000)
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(f, format="rgb24")
        vf.pts = i
        for pkt in v.encode(vf):
            out.mux(pkt)
    for k in range(0, int(seconds * 48000), 1024):
        tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(k, k + 1024) / 48000)).astype(np.float32)[None]
        af = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        af.sample_rate, af.pts = 48000, k
        for pkt in a.encode(af):
            out.mux(pkt)
    for s in (v, a):
        for pkt in s.encode(None):
            out.mux(pkt)
    out.close()
    return n


def transcode_only(src: str, dst: str) -> None:
    """The floor: decode + RGB conversion + H.264 encode + audio copy, no faces (same settings)."""
    from landmask.video import VideoWriter, _frames_of, open_video
    c, v, info = open_video(src)
    w = VideoWriter(dst, info.width, info.height, v.average_rate, v.time_base, list(c.streams.audio))
    for kind, item in _frames_of(c, v, list(c.streams.audio), src):
        if kind == "copy":
            w.mux_copy(item)
        else:
            w.write(item.to_ndarray(format="rgb24"), item.pts, item.time_base)
    w.close()
    c.close()


def _child_cpu() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def speed(args, faces) -> dict:
    exe = str(Path(sys.executable).parent / "landmask")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip640.mp4"
        n = fps_clip(clip, faces, args.fps_seconds)
        rows = {"landmask mask (whole command)": [], "transcode only (in process)": []}
        extra = {}
        for opts in args.fps_models:
            rows[f"landmask mask --model {opts}"] = []
        loads = []
        cpu = []
        for _ in range(args.fps_runs):                   # interleaved, so load changes hit all alike
            loads.append(os.getloadavg()[0])
            t0, c0 = time.perf_counter(), _child_cpu()
            subprocess.run([exe, "mask", str(clip), "-o", f"{tmp}/out", "--overwrite"], check=True,
                           capture_output=True)
            rows["landmask mask (whole command)"].append(n / (time.perf_counter() - t0))
            cpu.append(_child_cpu() - c0)
            for m in args.fps_models:
                t0 = time.perf_counter()
                subprocess.run([exe, "mask", str(clip), "-o", f"{tmp}/out", "--overwrite", "--model", m],
                               check=True, capture_output=True)
                rows[f"landmask mask --model {m}"].append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            transcode_only(str(clip), f"{tmp}/plain.mp4")
            rows["transcode only (in process)"].append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import landmask; landmask.load()"], check=True)
        extra["start-up (import + load models), s"] = time.perf_counter() - t0
    out = {k: {"median_fps": float(np.median(v)), "runs": [round(x, 1) for x in v]} for k, v in rows.items()}
    out.update(extra)
    out["frames"] = n
    # CPU seconds the whole command used (all its threads): what an idle 2-core machine must supply
    out["landmask mask: CPU seconds per run (median)"] = float(np.median(cpu))
    out["landmask mask: fps if its CPU time were spread over 2 idle cores"] = n / (float(np.median(cpu)) / 2)
    out["load_average_1min"] = [round(x, 2) for x in loads]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/helen-68/trainset"))
    ap.add_argument("--faces", type=int, default=6, help="faces (clips) per kind of clip")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--noise", type=float, default=2.0, help="sensor noise, grey levels (std)")
    ap.add_argument("--detect-every", type=int, default=10)
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-frame", action="store_true",
                    help="also score the photo pipeline run on every frame (detect + refine, no tracking)")
    ap.add_argument("--clips", nargs="+", default=list(CLIPS), choices=CLIPS)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-fps", action="store_true")
    ap.add_argument("--fps-runs", type=int, default=5)
    ap.add_argument("--fps-seconds", type=float, default=10.0)
    ap.add_argument("--fps-models", nargs="*", default=[], help="also time these --model choices")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if "testset" in args.data:
        ap.error("--data: use training faces; the test set is for generalisation figures only")
    lm = landmask.load()
    res = {"settings": {k: v for k, v in vars(args).items() if k != "json"}}
    if not args.skip_accuracy:
        res["accuracy"] = accuracy(args, lm)
    if not args.skip_fps:
        res["fps"] = speed(args, pick_faces(args.data, 1, args.seed))
        print(json.dumps(res["fps"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
