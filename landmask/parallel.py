"""Masking many photos on several processes: one task, ``mask_one``, run by a local process pool
(``--jobs N``) or by the workers of a Dask distributed cluster (``--scheduler``), with the same
input → output plan, outputs and summary as one process (landmask.batch).

Each worker process loads the models once (the first task it runs) and keeps them; it writes each
output itself, atomically, so the outputs must be on storage every worker sees (a shared folder).
Dask (the ``cluster`` extra) is imported only when a scheduler is given; nothing here imports torch.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from landmask.batch import Summary, plan_masks, record, try_mask
from landmask.errors import LandmaskError
from landmask.report import Reporter


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class MaskTask:
    """Everything a worker needs besides the file names; picklable, so it travels to Dask workers.
    ``loader`` is a picklable function of no arguments returning a Landmarker (e.g. a
    functools.partial of landmask.load); ``effects`` are parsed effects (masking.resolve_effects)."""
    loader: Callable
    effects: dict
    feather: float | None = None
    copy_unmasked: bool = False
    quality: int = 95
    threads: int = 1            # BLAS/OpenCV threads per worker (the loader sets ONNX Runtime's)


class WorkerSetupError(LandmaskError):
    """A worker could not load the models: the job stops with this one line, instead of one failed
    line per photo (on Dask, after the task was retried on other workers)."""


# one Landmarker per worker process and loader: loaded by the first task, reused by the rest
_LANDMARKERS: dict = {}
_LOCK = threading.Lock()        # a Dask worker with several threads loads once too


def _landmarker(task: MaskTask):
    key = repr(task.loader)
    with _LOCK:
        if key not in _LANDMARKERS:
            _LANDMARKERS.clear()    # a worker keeps one model set; a new job's replaces the last one's
            import cv2
            cv2.setNumThreads(task.threads)
            try:
                _LANDMARKERS[key] = task.loader()
            except Exception as e:
                msg = str(e) if isinstance(e, LandmaskError) else f"{type(e).__name__}: {e}"
                raise WorkerSetupError(f"a worker could not load the models: {msg}") from None
        return _LANDMARKERS[key]


def mask_one(src: str, dst: str, task: MaskTask) -> tuple[bool | None, str]:
    """Mask ``src`` into ``dst`` (written atomically) in this worker: (face found?, "") or
    (None, one line naming the file and what went wrong); never raises for a bad file.  The
    task of the local pool and of Dask.  Raises WorkerSetupError when the models do not load."""
    lm = _landmarker(task)
    return try_mask(Path(src), Path(dst), lm, task.effects, task.feather, task.copy_unmasked, task.quality)


def _fresh_worker(threads: int) -> None:
    """Pool initializer.  A forked worker must not reuse ONNX Runtime sessions its parent made
    (their thread pools did not survive the fork), so the caches start empty; BLAS and OpenMP get
    ``threads`` threads."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    from landmask import detect, runtime
    for cache in (getattr(runtime, "_CACHE", None), getattr(detect, "_CACHE", None)):
        if isinstance(cache, dict):
            cache.clear()
    _LANDMARKERS.clear()


def _mp_context():
    """fork where the OS has it (workers start in milliseconds, with the parent's modules already
    imported; the parent holds no model then), spawn elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def run_local(todo, task: MaskTask, jobs: int, reporter: Reporter = Reporter()) -> list:
    """try_mask results for ``todo`` [(src, dst)] in order, on ``jobs`` worker processes."""
    results = []
    chunk = max(1, min(16, len(todo) // (jobs * 8)))   # few round trips, yet even ends
    with ProcessPoolExecutor(jobs, mp_context=_mp_context(), initializer=_fresh_worker,
                             initargs=(task.threads,)) as pool:
        it = pool.map(mask_one, [str(s) for s, _ in todo], [str(d) for _, d in todo],
                      [task] * len(todo), chunksize=chunk)
        try:
            for i, r in enumerate(it, 1):
                results.append(r)
                reporter.item(i, len(todo), str(todo[i - 1][0]))
        except BaseException:      # WorkerSetupError, Ctrl-C: the photos not yet started are not started
            pool.shutdown(cancel_futures=True)
            raise
    return results


def run_dask(todo, task: MaskTask, scheduler, reporter: Reporter = Reporter(), retries: int = 3) -> list:
    """try_mask results for ``todo`` in order, as tasks on a Dask distributed cluster:
    ``scheduler`` is an address (``tcp://HOST:8786``) or a ``distributed.Client``.  A task whose
    worker dies is run again elsewhere (Dask's own retries and its rescheduling of lost work); the
    progress bar follows completed tasks."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise LandmaskError("--scheduler needs Dask: pip install 'landmask[cluster]'") from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler) if own else scheduler   # waits distributed.comm.timeouts.connect (30 s)
    except (OSError, TimeoutError) as e:
        raise LandmaskError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from None
    try:
        futures = client.map(mask_one, [str(s) for s, _ in todo], [str(d) for _, d in todo],
                             task=task, retries=retries, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(todo)
        for n, (fut, r) in enumerate(as_completed(futures, with_results=True, raise_errors=False), 1):
            i = index[fut.key]
            if fut.status == "error":   # the task itself failed every retry (e.g. its workers kept dying)
                exc = fut.exception()
                if isinstance(exc, WorkerSetupError):
                    client.cancel(futures)
                    raise WorkerSetupError(str(exc)) from None
                r = (None, f"{todo[i][0]}: failed on the cluster after {retries} retries "
                           f"({type(exc).__name__}: {exc})")
            results[i] = r
            reporter.item(n, len(todo), str(todo[i][0]))
        return results
    finally:
        if own:
            client.close()


def mask_files_parallel(inputs, out_dir, loader: Callable, *, jobs: int | None = None, scheduler=None,
                        lips=None, eyes=None, eyebrows=None, face=None, feather=None, overwrite=False,
                        copy_unmasked=False, quality: int = 95, threads: int = 1,
                        reporter: Reporter = Reporter()) -> Summary:
    """landmask.batch.mask_files on ``jobs`` local processes (default: the usable cores) or on the
    Dask cluster at ``scheduler``: the same plan (existing outputs skipped, so a stopped run
    resumes), the same outputs and the same Summary (failures in input order).  ``loader`` builds
    a Landmarker in each worker; it must be picklable (a functools.partial of landmask.load)."""
    from landmask.masking import resolve_effects
    effects = resolve_effects(lips, eyes, eyebrows, face)   # a bad option fails before any file
    task = MaskTask(loader, effects, feather, copy_unmasked, quality, threads)
    s = Summary()
    todo = plan_masks(inputs, out_dir, overwrite, s, reporter)
    if not todo:
        return s
    if scheduler is not None:
        results = run_dask(todo, task, scheduler, reporter)
    else:
        jobs = jobs or usable_cores()
        if jobs < 1:
            raise LandmaskError(f"--jobs {jobs}: give 1 or more worker processes")
        results = run_local(todo, task, min(jobs, len(todo)), reporter)
    for (src, _), r in zip(todo, results):   # in input order, as one process counts them
        record(s, src, r, copy_unmasked, reporter)
    return s
