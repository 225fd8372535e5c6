"""Progress lines for loops longer than a few seconds, written so that log files stay readable: one
plain line at most every `every` seconds (no carriage returns), with the count, the elapsed time and
an estimate of the time left from the mean time per item so far."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _fmt(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


class Progress:
    def __init__(self, total: int | None, what: str, log: logging.Logger, every: float = 5.0):
        self.total, self.what, self.log, self.every = total, what, log, every
        self.done = 0
        self.t0 = self.last = time.perf_counter()
        if total:
            log.info("%d %s to go", total, what)

    def step(self, n: int = 1, note: str = ""):
        self.done += n
        now = time.perf_counter()
        finished = self.total is not None and self.done >= self.total
        if now - self.last < self.every and not finished:
            return
        self.last = now
        elapsed = now - self.t0
        if self.total:
            left = elapsed / self.done * (self.total - self.done)
            msg = (f"{self.done}/{self.total} {self.what} ({100 * self.done / self.total:.0f}%), {_fmt(elapsed)} "
                   f"elapsed" + ("" if finished else f", about {_fmt(left)} left"))
        else:
            msg = f"{self.done} {self.what}, {_fmt(elapsed)} elapsed"
        self.log.info("%s%s", msg, f" ({note})" if note else "")


def progress(items: Iterable[T], what: str, log: logging.Logger, total: int | None = None,
             every: float = 5.0) -> Iterator[T]:
    """Iterate over `items`, logging progress lines (see module docstring)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    p = Progress(total, what, log, every)
    for item in items:
        yield item
        p.step()
