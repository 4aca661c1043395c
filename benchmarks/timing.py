"""The one timing rule of the benchmark scripts: the median of many calls, after some unmeasured ones."""
from __future__ import annotations

import time

import numpy as np


def median_ms(fn, repeat: int, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeat`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return 1000 * float(np.median(t))
