"""Peak resident memory of every MPI rank of a stage (a leaf: numpy and the standard library only).

A stage's ranks do not meet at a common point when an artefact is written (rank 0 writes alone while
the other ranks serve FOM solves in rom.hifi.solvers.distributed.RootDriven, or after they have
returned, in simulate), so no collective operation is ever started here. Instead every rank other
than 0 posts its figure to rank 0 in a small non-blocking send (`post`, tag TAG on COMM_WORLD) when
it writes, and when its stage function returns; rank 0 drains what has arrived (`per_rank`) and
keeps the latest figure of each rank. A rank that has not posted yet is waited for a bounded time
(never indefinitely: a rank that failed or is still serving can never hang the stage) and stays
NaN if it did not answer.

MPI is used only when the stage itself initialised it through mpi4py: this module never imports
mpi4py, it looks it up in sys.modules."""
from __future__ import annotations

import math
import resource
import sys
import time

import numpy as np

__all__ = ["TAG", "attrs", "describe", "flush", "peak_rss_mb", "per_rank", "post", "reset", "world"]

TAG = 7_304_011  # one tag of COMM_WORLD for the figures (no romflow code receives with ANY_TAG)

_latest: dict[int, float] = {}  # rank 0: the latest figure of each rank
_pending: list = []  # this rank's sends in flight, with their buffers


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): VmHWM of /proc/self/status where there is one
    (Linux's ru_maxrss keeps the largest peak of the parent at fork through exec, so a stage started by a
    large process would report that), else ru_maxrss (KB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 ** 2 if sys.platform == "darwin" else kb / 1024.0


def world():
    """mpi4py's COMM_WORLD when this process already initialised MPI through mpi4py (and has not
    finalised it), else None. Never imports mpi4py."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None:
        return None
    try:
        if not mpi.Is_initialized() or mpi.Is_finalized():
            return None
        return mpi.COMM_WORLD
    except Exception:  # noqa: BLE001 - a broken MPI is no reason to fail a stage's bookkeeping
        return None


def _launcher_rank() -> tuple[int, int]:
    """(rank, size) the MPI launcher announces in the environment; (0, 1) outside one."""
    import os

    for rank, size in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE")):
        if rank in os.environ and size in os.environ:
            try:
                r, n = int(os.environ[rank]), int(os.environ[size])
            except ValueError:
                continue
            if 0 <= r < n:
                return r, n
    return 0, 1


def reset():
    """Forget the figures of an earlier stage run in this process (tests run several)."""
    _latest.clear()
    flush(wait=0.0)
    _pending.clear()


def flush(wait: float):
    """Complete the sends in flight, waiting at most `wait` seconds; the rest is left to MPI."""
    deadline = time.monotonic() + wait
    while _pending:
        _pending[:] = [(req, buf) for req, buf in _pending if not req.Test()]
        if not _pending or time.monotonic() >= deadline:
            return
        time.sleep(0.001)


def post(comm=None):
    """On a rank other than 0: send this rank's peak so far to rank 0 without waiting for it."""
    comm = comm if comm is not None else world()
    if comm is None or comm.size == 1 or comm.rank == 0:
        return
    mpi = sys.modules["mpi4py.MPI"]
    flush(wait=0.0)
    buf = np.array([peak_rss_mb()])
    _pending.append((comm.Isend([buf, mpi.DOUBLE], dest=0, tag=TAG), buf))


def _drain(comm, mpi):
    status = mpi.Status()
    while comm.Iprobe(source=mpi.ANY_SOURCE, tag=TAG, status=status):
        buf = np.empty(1)
        source = status.Get_source()
        comm.Recv([buf, mpi.DOUBLE], source=source, tag=TAG)
        _latest[source] = max(_latest.get(source, 0.0), float(buf[0]))


def per_rank(wait: float = 0.0, comm=None) -> list[float]:
    """Peak memory (MB) of every rank in rank order, as far as this rank knows now: its own figure, and
    on rank 0 the latest each other rank posted (waiting at most `wait` seconds for ranks not heard
    from yet; NaN for a rank still silent). One process without MPI: [its own figure]."""
    comm = comm if comm is not None else world()
    own = peak_rss_mb()
    if comm is None:  # one process, or ranks whose MPI mpi4py did not start: this rank's figure alone
        rank, size = _launcher_rank()
        return [own if r == rank else math.nan for r in range(size)]
    if comm.size == 1:
        return [own]
    if comm.rank != 0:
        post(comm)
        return [own if r == comm.rank else math.nan for r in range(comm.size)]
    mpi = sys.modules["mpi4py.MPI"]
    deadline = time.monotonic() + wait
    while True:
        _drain(comm, mpi)
        if len(_latest.keys() - {0}) >= comm.size - 1 or time.monotonic() >= deadline:
            break
        time.sleep(0.002)
    return [own if r == 0 else _latest.get(r, math.nan) for r in range(comm.size)]


def attrs(figures: list[float]) -> dict:
    """The artefact attributes of per-rank figures: `peak_rss_mb_per_rank` (rank order, NaN for a rank
    not heard from when the artefact was written) and `ranks`."""
    return {"peak_rss_mb_per_rank": np.round(np.asarray(figures, dtype=float), 1), "ranks": len(figures)}


def describe(figures: list[float]) -> str:
    """'123, 118 MB (2 ranks)' for a log line."""
    shown = ", ".join("?" if math.isnan(f) else f"{f:.0f}" for f in figures)
    return f"{shown} MB ({len(figures)} rank{'s' if len(figures) != 1 else ''})"
