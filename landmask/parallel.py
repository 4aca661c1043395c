"""Masking many photos on several processes: one task, ``mask_one``, run by a local process pool
(``--jobs N``) or by the workers of a Dask distributed cluster (``--scheduler``), with the same
input → output plan, outputs and summary as one process (landmask.batch).

Each worker process loads the models once (the first task it runs) and keeps them; it writes each
output itself, atomically, so the outputs must be on storage every worker sees (a shared folder).
Dask (the ``cluster`` extra) is imported only when a scheduler is given; nothing here imports torch.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from landmask.batch import Summary, mask_planned, plan_masks, record, remove_stale_parts, try_mask
from landmask.errors import LandmaskError
from landmask.pool import PHOTOS_PER_PROCESS, mp_context, usable_cores
from landmask.report import Reporter


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
    threads: int = 1            # OpenCV threads per worker (the loader sets ONNX Runtime's)
    draw: bool = False          # --debug: boxes, points and outlines over the result


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
    return try_mask(Path(src), Path(dst), lm, task.effects, task.feather, task.copy_unmasked, task.quality,
                    task.draw)


def run_local(todo, task: MaskTask, jobs: int, reporter: Reporter = Reporter()) -> list:
    """try_mask results for ``todo`` [(src, dst)] in order, on ``jobs`` worker processes.  A worker
    that dies (killed by the out-of-memory killer on a huge photo, a crash in a decoder) breaks the
    pool: the photos not yet done go on in a new one; where no photo got done between two breaks,
    the first of them is tried alone, and is the one failed photo if it breaks that pool too."""
    from concurrent.futures.process import BrokenProcessPool
    results: list = []
    suspect = False
    while len(results) < len(todo):
        start = len(results)
        rest = todo[start:1 + start] if suspect else todo[start:]
        try:
            _pool_run(rest, task, 1 if suspect else jobs, results, len(todo), todo, reporter)
            suspect = False
        except BrokenProcessPool:   # the pool's other workers were stopped too, maybe mid-write: their temporaries go
            remove_stale_parts({Path(d).parent for _, d in todo[start:]})
            if suspect:   # it broke a pool of its own: that photo is the one
                results.append((None, f"{todo[start][0]}: a worker process died masking it (out of memory, "
                                      f"or a crash in a decoder); the others went on"))
                reporter.item(len(results), len(todo), str(todo[start][0]))
            suspect = len(results) == start and not suspect
    return results


def _pool_run(part, task: MaskTask, jobs: int, results: list, total: int, todo, reporter: Reporter) -> None:
    """run_local's work in one pool: try_mask of each of ``part`` appended to ``results`` in order."""
    # a few photos per round trip (a file name each way): the workers finish within a photo or so of each other
    chunk = max(1, min(4, len(part) // (jobs * 8)))
    with ProcessPoolExecutor(jobs, mp_context=mp_context(), initializer=watch_parent, initargs=(os.getpid(),)) as pool:
        it = pool.map(mask_one, [str(s) for s, _ in part], [str(d) for _, d in part],
                      [task] * len(part), chunksize=chunk)
        try:
            for r in it:
                results.append(r)
                reporter.item(len(results), total, str(todo[len(results) - 1][0]))
        except BaseException:      # WorkerSetupError, Ctrl-C, a dead worker: the photos not yet started are not started
            pool.shutdown(cancel_futures=True)
            raise


def watch_parent(pid: int, every: float = 0.5) -> None:
    """In a worker process: end it when the process that started the pool (``pid``) is gone (killed
    with SIGKILL, or dead before its Ctrl-C/SIGTERM clean-up ran), so no worker outlives its run,
    keeps writing outputs or holds the caller's stdout.  A photo half-written at that moment stays
    a temporary that the next run removes (batch.remove_stale_parts)."""
    def watch():
        while True:
            time.sleep(every)
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat", "rb") as f:    # killed but not yet reaped: a zombie
                    if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                        os._exit(1)
            except ProcessLookupError:
                os._exit(1)
            except (OSError, IndexError):   # another user's process (PermissionError), no /proc: keep going
                pass
    threading.Thread(target=watch, name="landmask-parent-watch", daemon=True).start()


def mask_chunk(pairs: list[tuple[str, str]], task: MaskTask) -> list[tuple[bool | None, str]]:
    """mask_one for each (src, dst) of ``pairs``, in order: one Dask task.  Run again in full when
    its worker dies; the outputs it had written are then written again, the same bytes under the
    same name (atomic renames), so every output still exists once."""
    return [mask_one(src, dst, task) for src, dst in pairs]


def photos_per_task(n: int, slots: int, most: int = 64) -> int:
    """How many photos one Dask task masks: about 8 tasks per worker thread, so the load evens out
    and a lost worker costs little, but at most ``most``, so the scheduler handles a task every
    few seconds per thread instead of one per photo (it spends about a millisecond per task, which
    a large cluster would otherwise saturate)."""
    return max(1, min(most, n // max(1, 8 * slots)))


def run_dask(todo, task: MaskTask, scheduler, reporter: Reporter = Reporter(), retries: int = 3,
             chunk: int | None = None) -> list:
    """try_mask results for ``todo`` in order, computed on a Dask distributed cluster: ``scheduler``
    is an address (``tcp://HOST:8786``) or a ``distributed.Client``.  The photos are partitioned into
    tasks of ``chunk`` (default photos_per_task), submitted with ``client.map`` and collected with
    ``as_completed``; a task whose worker dies runs again elsewhere (Dask reschedules lost work;
    ``retries`` covers a task that raises); the progress bar counts the photos of completed tasks."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise LandmaskError("--scheduler needs Dask: pip install 'landmask[cluster]'") from None
    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler) if own else scheduler   # waits distributed.comm.timeouts.connect (30 s)
    except (OSError, TimeoutError) as e:
        raise LandmaskError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from None
    except ValueError as e:      # not an address: 'foo', 'tcp://host' without a port
        raise LandmaskError(f"--scheduler {scheduler}: not a scheduler address, give tcp://HOST:PORT ({e})") from None
    try:
        slots = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
        chunk = chunk or photos_per_task(len(todo), slots)
        starts = range(0, len(todo), chunk)
        pairs = [[(str(s), str(d)) for s, d in todo[i:i + chunk]] for i in starts]
        futures = client.map(mask_chunk, pairs, task=task, retries=retries, pure=False)
        first = {f.key: i for f, i in zip(futures, starts)}
        results: list = [None] * len(todo)
        done = 0
        for fut, rs in as_completed(futures, with_results=True, raise_errors=False):
            i = first[fut.key]
            n = len(pairs[i // chunk])
            if fut.status == "error":   # the task failed every retry (e.g. its workers kept dying)
                exc = fut.exception()
                if isinstance(exc, WorkerSetupError):
                    client.cancel(futures)
                    raise WorkerSetupError(str(exc)) from None
                rs = [(None, f"{src}: failed on the cluster after {retries} retries ({type(exc).__name__}: {exc})")
                      for src, _ in pairs[i // chunk]]
            results[i:i + n] = rs
            done += n
            reporter.item(done, len(todo), str(todo[i + n - 1][0]))
        return results
    finally:
        if own:
            client.close()


def mask_files_parallel(inputs, out_dir, loader: Callable, *, jobs: int | None = None, scheduler=None,
                        lips=None, eyes=None, eyebrows=None, face=None, feather=None, overwrite=False,
                        copy_unmasked=False, quality: int = 95, threads: int = 1, photos_per_task: int | None = None,
                        draw: bool = False, base: str | None = None, reporter: Reporter = Reporter(),
                        single: bool | None = None) -> Summary:
    """landmask.batch.mask_files on ``jobs`` local processes or on the Dask cluster at
    ``scheduler``: the same plan (existing outputs skipped, so a stopped run resumes), the same
    outputs and the same Summary (failures in input order).  ``loader`` builds a Landmarker in each
    worker; it must be picklable (a functools.partial of landmask.load).  ``jobs`` None: one
    process per usable core, but no more than one per PHOTOS_PER_PROCESS photos to do (starting a
    process and loading the models costs about as much as masking that many), and this process
    alone for a handful."""
    from landmask.masking import resolve_effects
    effects = resolve_effects(lips, eyes, eyebrows, face)   # a bad option fails before any file
    task = MaskTask(loader, effects, feather, copy_unmasked, quality, threads, draw)
    s = Summary()
    todo = plan_masks(inputs, out_dir, overwrite, s, reporter, base, single)
    if not todo:
        return s
    if scheduler is not None:
        results = run_dask(todo, task, scheduler, reporter, chunk=photos_per_task)
    else:
        if jobs is not None and jobs < 1:
            raise LandmaskError(f"--jobs {jobs}: give 1 or more worker processes")
        jobs = min(jobs or usable_cores(), len(todo) if jobs else len(todo) // PHOTOS_PER_PROCESS)
        if jobs > 1:
            results = run_local(todo, task, jobs, reporter)
        else:   # --jobs 1 or a handful of photos: this process, one thread as each worker
            import cv2
            before = cv2.getNumThreads()
            cv2.setNumThreads(task.threads)       # the caller's setting comes back after
            try:
                mask_planned(todo, s, task.loader(), effects, feather, copy_unmasked, quality, draw, reporter)
            finally:
                cv2.setNumThreads(before)
            return s
    for (src, _), r in zip(todo, results):   # in input order, as one process counts them
        record(s, src, r, copy_unmasked, reporter)
    return s
