"""Load test of `landmask serve` (run by hand; results go to docs/benchmarks.md): starts the server
on a loopback port, then N concurrent clients POST 640×480 photos to /v1/mask for a fixed time,
each on its own keep-alive connection, and reports requests/s, errors and latency percentiles.

    python benchmarks/load_test.py --clients 16 --duration 30 --workers 2

Bounded in time (--duration) and count (--max-requests), loopback only (127.0.0.1), and it stops
the server it started.  The machine's load average and the busiest other processes are printed
with the figures, since a shared machine moves them.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

from landmask.runtime import runtime_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "helen-68" / "testset"
EFFECTS = [{}, {"lips": "blur", "eyes": "none"}, {"lips": "color:#b0123a@0.6", "eyes": "pixelate"},
           {"eyes": "solid:black"}]


def photos_640x480(n: int) -> list[bytes]:
    """JPEG bytes of n 640×480 photos: the bundled sample, and HELEN test photos when present
    (each fitted into 640×480 on a grey background, face size as in the photo)."""
    import landmask
    paths = [ROOT / "landmask" / "samples" / "astronaut.jpg"]
    if SHARED.exists():
        paths += sorted(SHARED.glob("*.jpg"))[: n - 1]
    out = []
    for p in paths[:n]:
        img = landmask.read_image(p)
        s = min(640 / img.shape[1], 480 / img.shape[0])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        canvas = np.full((480, 640, 3), 110, np.uint8)
        y, x = (480 - img.shape[0]) // 2, (640 - img.shape[1]) // 2
        canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
        out.append(landmask.imageio.encode_image(canvas, "jpeg", 90))
    return out


def multipart(photo: bytes, fields: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
                 f'Content-Type: image/jpeg\r\n\r\n'.encode() + photo + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def in_process_ms(photos: list[bytes], a, repeat: int = 3) -> float:
    """Median ms of the same work without HTTP (decode, faces, mask, encode), one thread, here."""
    import landmask
    from landmask.server import mask_bytes
    cv2.setNumThreads(1)
    lm = landmask.load(a.model, threads=a.threads or 1, detect_size=a.detect_size)
    times = []
    for _ in range(repeat):
        for p in photos:
            t0 = time.perf_counter()
            mask_bytes(lm, p, "photo.jpg", {}, 40_000_000)
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, workers: int, model: str | None, threads: int | None,
                 detect_size: int | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "landmask.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers)]
    cmd += ["--model", model] if model else []
    cmd += ["--threads", str(threads)] if threads else []
    cmd += ["--detect-size", str(detect_size)] if detect_size else []
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"landmask serve exited: {proc.stderr.read().decode()}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("landmask serve did not answer /healthz within 120 s")


def client(port, bodies, stop_at, budget, results, errors, lock, timeout):
    """One client: its own keep-alive connection, one request at a time, until the time or the
    shared request budget runs out."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    i = 0
    while time.monotonic() < stop_at:
        with lock:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        body, ctype = bodies[i % len(bodies)]
        i += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/mask", body=body, headers={"Content-Type": ctype})
            r = conn.getresponse()
            data = r.read()
            dt = time.perf_counter() - t0
            ok = r.status == 200 and data[:3] == b"\xff\xd8\xff"
        except (OSError, http.client.HTTPException) as e:
            dt, ok, data = time.perf_counter() - t0, False, str(e).encode()
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        with lock:
            (results if ok else errors).append((t0, dt) if ok else (t0, data[:200]))
    conn.close()


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of a process and all its descendants so far, from /proc (Linux);
    None elsewhere."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        stats = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                stats[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / tick)   # ppid, utime + stime
    except (OSError, ValueError, AttributeError):
        return None
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo += [c for c, (pp, _) in stats.items() if pp == p]
    return total


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout
        return head.strip() + (" + uncommitted changes" if dirty.strip() else "")
    except OSError:
        return "unknown"


def busiest_processes(n: int = 5) -> list[str]:
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True).stdout
        return [" ".join(line.split()) for line in out.splitlines()[1:n + 1]]
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of measured load (default 30)")
    ap.add_argument("--max-requests", type=int, default=20000, help="stop after this many requests")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    ap.add_argument("--model", help="landmark model for the server (default: ibug68)")
    ap.add_argument("--threads", type=int, help="ONNX Runtime threads per inference call (server default 1)")
    ap.add_argument("--detect-size", type=int, help="the server's --detect-size (default: the detector's own)")
    ap.add_argument("--photos", type=int, default=8, help="distinct 640×480 photos cycled (default 8)")
    ap.add_argument("--timeout", type=float, default=10.0, help="client timeout per request, s")
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--in-process", action="store_true",
                    help="first time the same work without HTTP in this process (median ms), for comparison")
    a = ap.parse_args()
    if not (0 < a.clients <= 256 and 0 < a.duration <= 600 and a.max_requests > 0):
        raise SystemExit("--clients 1-256, --duration up to 600 s, --max-requests > 0")

    photos = photos_640x480(a.photos)
    bodies = [multipart(p, EFFECTS[i % len(EFFECTS)]) for i, p in enumerate(photos)]
    alone_ms = in_process_ms(photos, a) if a.in_process else None
    port = free_port()
    server = start_server(port, a.workers, a.model, a.threads, a.detect_size)
    try:
        # warm-up (unmeasured): every worker loads and runs once
        warm_r, warm_e, lock = [], [], threading.Lock()
        warm = [threading.Thread(target=client, args=(port, bodies, time.monotonic() + 3, [4 * a.clients],
                                                       warm_r, warm_e, lock, a.timeout)) for _ in range(a.clients)]
        [t.start() for t in warm]
        [t.join() for t in warm]
        load_before = os.getloadavg()
        others = busiest_processes()
        results, errors, budget = [], [], [a.max_requests]
        cpu_before = cpu_seconds(server.pid)
        start = time.monotonic()
        threads = [threading.Thread(target=client, args=(port, bodies, start + a.duration, budget, results,
                                                          errors, lock, a.timeout)) for _ in range(a.clients)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        wall = time.monotonic() - start
        cpu_after = cpu_seconds(server.pid)
        load_after = os.getloadavg()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()

    lat = np.array([dt for _, dt in results]) * 1000
    report = {
        "clients": a.clients, "duration_s": round(wall, 2), "workers": a.workers, "model": a.model or runtime_name("ibug68"),
        "detect_size": a.detect_size, "commit": git_commit(),
        "photos": f"{len(photos)} × 640×480 JPEG", "requests": len(results) + len(errors), "ok": len(results),
        "errors": len(errors), "requests_per_s": round(len(results) / wall, 1),
        "latency_ms": {k: round(float(np.percentile(lat, q)), 1) for k, q in
                       (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))} if len(lat) else {},
        # the server's CPU time per request: what it would cost with the machine to itself
        "server_cpu_ms_per_request": round(1000 * (cpu_after - cpu_before) / max(1, len(results)), 1)
        if cpu_before is not None and cpu_after is not None else None,
        "server_cpu_cores_used": round((cpu_after - cpu_before) / wall, 2) if cpu_before is not None else None,
        "in_process_ms_median": None if alone_ms is None else round(alone_ms, 1),
        "cpus": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after], "busiest_processes_before": others,
        "first_errors": [e.decode(errors="replace") for _, e in errors[:3]],
    }
    print(json.dumps(report, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
