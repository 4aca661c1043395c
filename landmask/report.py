"""Progress reporting.  The library reports through a Reporter it is given and never prints; the
CLI passes one that draws progress bars on stderr."""
from __future__ import annotations

import os
import sys
import time


class Reporter:
    """Silent reporter; subclasses override what they show."""

    def info(self, msg: str) -> None: ...

    def step(self, epoch: int, step: int, total: int, loss: float) -> None: ...

    def epoch_end(self, epoch: int, metrics: dict) -> None: ...

    def item(self, done: int, total: int, name: str) -> None: ...

    def frames(self, done: int, total: int | None, fps: float, name: str) -> None: ...

    def failed(self, msg: str) -> None: ...

    def warn(self, msg: str) -> None: ...


class ConsoleReporter(Reporter):
    """Progress bars and lines on a text stream (stderr by default)."""

    def __init__(self, stream=None, width: int = 28, quiet: bool = False):
        self.stream = stream or sys.stderr or open(os.devnull, "w")   # stderr closed (2>&-): not into stdout
        self.width = width
        self.quiet = quiet          # --quiet: failures only, no progress or info lines
        self.shown_failures: set[str] = set()
        self.t0 = time.monotonic()
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self._last = 0.0

    def _bar(self, done, total):
        n = int(self.width * done / max(total, 1))
        return "█" * n + "·" * (self.width - n)

    def info(self, msg):
        if not self.quiet:
            print(msg, file=self.stream, flush=True)

    def warn(self, msg):
        """Something the user must know of (a setting dropped, say), shown even with --quiet."""
        print(f"warning: {msg}", file=self.stream, flush=True)

    def failed(self, msg):
        """One failed item, shown once, even with --quiet."""
        if msg not in self.shown_failures:
            self.shown_failures.add(msg)
            print(f"failed: {msg}", file=self.stream, flush=True)

    def _progress(self, done, total, text: str) -> None:
        """One progress line: redrawn in place on a terminal (at most 5 times a second), else a line
        every 10 s; always at the end; nothing with --quiet."""
        now = time.monotonic()
        if self.quiet or (done != total and now - self._last < (0.2 if self.tty else 10)):
            return
        self._last = now
        end = "\n" if (done == total or not self.tty) else ""
        print(f"\r{text}", end=end, file=self.stream, flush=True)

    def step(self, epoch, step, total, loss):
        self._progress(step, total, f"epoch {epoch:>3} {self._bar(step, total)} {step}/{total} loss {loss:.5f}")

    def epoch_end(self, epoch, metrics):
        if self.quiet:
            return
        parts = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        print(f"epoch {epoch:>3} done: {parts}", file=self.stream, flush=True)

    def item(self, done, total, name):
        self._progress(done, total, f"{self._bar(done, total)} {done}/{total} {name[-40:]:<40}")

    def frames(self, done, total, fps, name):
        """A video's progress: frames done (of total when known), frames per second, time left."""
        if total:
            left = (total - done) / fps if fps > 0 else float("nan")
            bar = f"{self._bar(done, total)} {done}/{total} frames"
            eta = f", {int(left // 60)}:{int(left % 60):02d} left" if left == left else ""
        else:
            bar, eta = f"{done} frames", ""
        self._progress(done, total, f"{bar} {fps:.1f} fps{eta} {name[-30:]:<30}")
