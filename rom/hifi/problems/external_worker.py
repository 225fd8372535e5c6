"""Persistent black-box workers (`problem.persistent: true`): the user's command started once per chunk,
one request per sample over its stdin/stdout (protocol: romflow/worker.py's docstring, docs/
bring_your_own.md route 3 "Persistent workers").

A session owns one worker process at a time. Each sample gets a fresh folder under the session's folder,
a JSON request line, and problem.timeout seconds for the JSON reply line (a reader thread feeds a queue,
so the wait has a timeout whatever the worker does). A worker that exits, times out or answers garbage
is stopped; the next sample starts a new one, at most `restarts` times per session (one per chunk); a
sample in flight when its worker exited is retried once on the new worker (a crash may be the worker's
state, not the sample's); after that every remaining sample fails with the reason."""
from __future__ import annotations

import collections
import json
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .external_checks import command_environment, failure_reason

_EOF = object()


class WorkerSession:
    """One chunk's worker for `problem` (an External): `solve(mu)` -> (ok, reason, seconds, workdir)."""

    def __init__(self, problem, ranks: int = 1, restarts: int = 1):
        self.problem, self.ranks, self.restarts_left = problem, int(ranks), int(restarts)
        self.root = Path(tempfile.mkdtemp(prefix="romflow-worker-"))
        self.proc = None
        self.dead_reason = ""  # set when no worker may be started any more
        self.starts = 0
        self.requests = 0

    # -- the process ---------------------------------------------------------------------------------
    def _start(self):
        argv = self.problem.argv(self.problem.command, None, self.root, self.ranks)
        self.starts += 1
        # romflow's environment less its own MPI job's wiring (external_checks.command_environment).
        self.proc = subprocess.Popen(argv, cwd=self.root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1, env=command_environment())
        self.lines: queue.Queue = queue.Queue()
        self.stderr_tail: collections.deque = collections.deque(maxlen=200)
        proc, lines, tail = self.proc, self.lines, self.stderr_tail

        def read_stdout():
            for line in proc.stdout:
                lines.put(line)
            lines.put(_EOF)

        def read_stderr():
            for line in proc.stderr:
                tail.append(line)

        for target in (read_stdout, read_stderr):
            threading.Thread(target=target, daemon=True).start()

    def _stop(self, wait: float = 5.0):
        """End the worker: EOF first (it may exit cleanly), then terminate, then kill."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _stderr(self) -> str:
        time.sleep(0.05)  # the stderr reader's last lines
        return failure_reason("".join(self.stderr_tail), 300)

    def _lost(self, reason: str) -> str:
        """The worker is gone or unusable: stop it; with no restart left, later samples fail with `reason`."""
        self._stop(wait=1.0)
        if self.restarts_left <= 0:
            self.dead_reason = f"{reason} (no restart left: one per chunk)"
        else:
            self.restarts_left -= 1
        return self.dead_reason or reason

    # -- one request ---------------------------------------------------------------------------------
    def _ask(self, mu, workdir: Path) -> tuple[str, str]:
        """('ok' | 'failed' | 'lost' | 'crashed', reason): crashed = the worker exited before answering."""
        if self.proc is None:
            try:
                self._start()
            except OSError as exc:
                reason = f"NOT_RUN: {exc.strerror or exc}"
                self.dead_reason = reason
                return "failed", reason
        names = self.problem.names
        request = {"mu": [float(v) for v in mu], "out": str(workdir / "solution.h5"), "workdir": str(workdir),
                   "parameters": {n: float(v) for n, v in zip(names, mu)}, "index": self.requests}
        self.requests += 1
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it exited: the reader's EOF says how
        deadline = time.monotonic() + self.problem.timeout
        while True:  # blank lines are not replies (a library's stray newline before serve() took stdout)
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return "lost", self._lost(f"TIMEOUT: the worker gave no reply after {self.problem.timeout:g} s")
            if line is _EOF or line.strip():
                break
        if line is _EOF:
            try:
                code = self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                code = "?"
            return "crashed", self._lost(f"WORKER_EXIT_{code}: the worker ended before replying: {self._stderr()}")
        try:
            reply = json.loads(line)
            if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
                raise ValueError("expected an object with a boolean 'ok'")
        except ValueError as exc:
            return "lost", self._lost(f"BAD_REPLY: {line.strip()[:200]!r} is not a reply line ({exc}); expected "
                                      '{"ok": true} or {"ok": false, "reason": "..."}')
        if reply["ok"]:
            return "ok", ""
        return "failed", " ".join(str(reply.get("reason") or "the worker gave no reason").split())[:600]

    def solve(self, mu, workdir: Path) -> tuple[bool, str, float]:
        """One sample into `workdir` (fresh, empty): (the worker answered ok, reason if not, seconds)."""
        mu = np.atleast_1d(np.asarray(mu, dtype=float))
        t0 = time.perf_counter()
        retried = False
        while True:
            if self.dead_reason:
                return False, self.dead_reason, time.perf_counter() - t0
            status, reason = self._ask(mu, workdir)
            if status == "ok":
                return True, "", time.perf_counter() - t0
            if status == "crashed" and not retried and not self.dead_reason:
                retried = True  # once, on the restarted worker
                for leftover in workdir.iterdir():
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
                continue
            return False, reason, time.perf_counter() - t0

    def sample_dir(self) -> Path:
        """A fresh folder for the next sample (removed by the caller once its output is read)."""
        self.samples = getattr(self, "samples", 0) + 1
        d = self.root / f"sample{self.samples}"
        d.mkdir()
        return d

    def close(self):
        self._stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
