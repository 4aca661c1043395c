"""How landmask starts local worker processes, kept free of heavy imports: ``landmask mask --jobs N``
starts the fork server first thing, so that its start-up (a fresh interpreter importing landmask's
run-time modules) overlaps this process's own imports and the planning of the job, instead of
following them."""
from __future__ import annotations

import multiprocessing
import os

# what the fork server imports once, so each worker forked from it starts quickly; not onnxruntime:
# importing it starts a thread, and the fork server must stay thread-free
PRELOAD = ["landmask.parallel", "landmask.api", "landmask.imageio", "landmask.batch", "landmask.masking",
           "landmask.detect", "landmask.runtime"]

# the default --jobs starts a worker process for every 8 photos to do, up to the cores
PHOTOS_PER_PROCESS = 8


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # macOS, Windows
        return os.cpu_count() or 1


def mp_context():
    """forkserver where the OS has it, else spawn; never a plain fork: a process forked from a
    parent whose ONNX Runtime or OpenCV threads hold a lock at that moment waits on it for ever
    (seen here when the parent had masked videos first).  The fork server is a fresh process that
    imports landmask's run-time modules once; workers are forked from it, so they start quickly."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def start_fork_server() -> None:
    """Start the fork server now (it returns at once; the server imports PRELOAD in the background).
    The pool started later connects to it; when no pool is started it ends with this process."""
    if mp_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver
        forkserver.ensure_running()
