"""The ensemble launcher inside the training job: keeps at most K client processes running
(local processes, `mpiexec -n r` for r > 1 ranks, `srun` inside a SLURM allocation). Each process
runs a list of simulations in sequence (interpreter, imports and solver set-up paid once per
process, not per simulation); the list is handed over in the process's environment.

A simulation is identified by its client id; a restart keeps the id (so the server recognizes the
time steps it already has), a redraw takes a new id. States: pending, running, done (its bye
arrived), abandoned (redrawn after too many crashes). When a process dies or falls silent, the
simulation it was running (the last of its list heard from: a bye may still be on the way for
those before it) counts a crash and is restarted (or redrawn after max_crashes); the rest of its
list without a bye goes back to pending, uncharged. A bye counts only when the server's ledger
holds every step of its simulation (an incomplete one leaves it running, restarted as above). The whole
ensemble runs even when the training budget is spent first: its steps are then booked in the
ledger (the job ends when both are over).

Starting a client takes descriptors (its log file, the pipes of the fork): while fewer than
DESCRIPTOR_RESERVE are left to the process (a flood of connections to the server's socket holds the
rest), starts are deferred to a later poll, never failed.
"""
from __future__ import annotations

import errno
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STATES = ("pending", "running", "done", "abandoned")
DESCRIPTOR_RESERVE = 32  # left to the rest of the process after a client start (imports, logs)


def descriptors_left() -> float:
    """Descriptors this process may still open; infinite where it cannot list its own (no /proc, e.g.
    macOS): the starts then go ahead and a failed one is handled as such (EMFILE)."""
    try:
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0] - len(os.listdir("/proc/self/fd"))
    except OSError:
        return float("inf")


@dataclass
class Simulation:
    id: int
    mu: np.ndarray
    state: str = "pending"
    crashes: int = 0
    restarts: int = 0
    fault: tuple[str, int] | None = None  # (kind, step) on the first attempt only (tests)

    @property
    def first_attempt(self) -> bool:
        return self.crashes == 0 and self.restarts == 0


@dataclass
class Worker:
    number: int
    sims: list[int]
    proc: subprocess.Popen = field(repr=False)
    started: float


class LauncherError(RuntimeError):
    """The ensemble cannot finish (every redraw keeps crashing, a client cannot be started)."""


def wrap(argv: list[str], ranks: int, mode: str = "auto") -> list[str]:
    """The client command under srun (inside SLURM), mpiexec (r > 1) or plain."""
    if mode == "auto":
        mode = "srun" if os.environ.get("SLURM_JOB_ID") and shutil.which("srun") else "local"
    if mode == "srun":
        return ["srun", "--exact", "-n", str(ranks), "-N", "1"] + argv
    if ranks > 1:
        return ["mpiexec", "-n", str(ranks)] + argv
    return argv


class Launcher:
    def __init__(self, argv: list[str], environment, mus: np.ndarray, draw, max_running: int = 2,
                 timeout: float = 30.0, max_crashes: int = 2, ranks: int = 1, mode: str = "auto",
                 log_dir: str | Path | None = None, faults: dict | None = None, startup_timeout: float = 120.0,
                 per_client: int = 32):
        """argv: the client command; environment(sims) -> the variables handed to a process that
        runs those Simulations; draw(k) -> a fresh parameter vector for redraw k; per_client: at
        most this many simulations per process."""
        self.argv, self.environment, self.draw = list(argv), environment, draw
        self.max_running, self.timeout, self.max_crashes = max_running, timeout, max_crashes
        self.startup_timeout = max(startup_timeout, timeout)  # imports and solver set-up come first
        self.ranks, self.mode, self.per_client = ranks, mode, max(1, int(per_client))
        self.log_dir = Path(log_dir) if log_dir else None
        self.sims = {i: Simulation(i, np.asarray(m, dtype=float)) for i, m in enumerate(mus)}
        self.n_initial = len(mus)
        self.redraws = 0
        self.workers: list[Worker] = []
        self.started_processes = 0
        self.events: list[str] = []
        self.deferred = False  # starts are waiting for descriptors (logged once per episode)
        for cid, spec in (faults or {}).items():
            self.sims[int(cid)].fault = (spec["kind"], int(spec["step"]))

    @property
    def max_clients(self) -> int:
        """Id space: the initial ensemble plus as many redraws."""
        return 2 * self.n_initial

    # -- process handling ---------------------------------------------------------------------
    def _start(self, sims: list[Simulation]) -> bool:
        """Start one process for these simulations; False when descriptors ran short (retry later)."""
        if descriptors_left() < DESCRIPTOR_RESERVE:
            return self._defer(f"fewer than {DESCRIPTOR_RESERVE} descriptors left")
        argv = wrap(self.argv, self.ranks, self.mode)
        env = dict(os.environ)
        env.update(self.environment(sims))
        n = self.started_processes
        log = subprocess.DEVNULL
        try:
            if self.log_dir:
                log = open(self.log_dir / f"worker{n}.log", "ab")
                log.write(f"simulations {', '.join(str(s.id) for s in sims)}\n".encode())
                log.flush()
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return self._defer(str(exc))
            raise LauncherError(f"cannot start a client ({argv[0]}): {exc}") from None
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        self.deferred = False
        self.started_processes += 1
        for s in sims:
            s.state = "running"
        self.workers.append(Worker(n, [s.id for s in sims], proc, time.time()))
        return True

    def _defer(self, why: str) -> bool:
        if not self.deferred:
            self.events.append(f"client starts deferred: {why} (connections to the server hold them)")
        self.deferred = True
        return False

    @staticmethod
    def _kill(proc: subprocess.Popen):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # mpiexec / srun forward it to their ranks
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3.0)

    def _lost(self, w: Worker, left: list[int], last_seen: dict, why: str):
        """A process died or fell silent: its current simulation crashed, the rest are pending.
        The current one is the last of its list heard from since the process started: those before
        it said bye (and theirs may still be on the way), so they are not charged."""
        self._kill(w.proc)
        self.workers.remove(w)
        heard = [i for i in left if last_seen.get(i, 0.0) >= w.started]
        current = heard[-1] if heard else left[0]
        for i in left:
            if i != current:
                self.sims[i].state = "pending"
        self._crashed(self.sims[current], why)

    def _crashed(self, sim: Simulation, why: str):
        sim.crashes += 1
        if sim.crashes > self.max_crashes:
            sim.state = "abandoned"
            if self.redraws >= self.n_initial:
                raise LauncherError(f"{self.redraws} parameter sets redrawn and client {sim.id} crashed again "
                                    f"({why}); expected a solver that finishes")
            new = Simulation(self.n_initial + self.redraws, np.asarray(self.draw(self.redraws), dtype=float))
            self.redraws += 1
            self.sims[new.id] = new
            self.events.append(f"client {sim.id} {why}; crashed {sim.crashes} times: parameters redrawn as client {new.id}")
        else:
            sim.state = "pending"
            sim.restarts += 1
            self.events.append(f"client {sim.id} {why}: restarted with the same parameters")

    def poll(self, last_seen: dict, finished: set):
        """One pass: book byes, exits and silences, then start processes for pending simulations
        up to K. last_seen: client id -> time.time() of its last message; finished: ids whose bye
        arrived."""
        now = time.time()
        for i in finished:  # also a pending one whose bye arrived after its process was given up
            if i in self.sims and self.sims[i].state in ("running", "pending"):
                self.sims[i].state = "done"
        for w in list(self.workers):
            left = [i for i in w.sims if self.sims[i].state == "running"]
            latest = max(last_seen.get(i, 0.0) for i in w.sims)
            talking = latest >= w.started  # has this process sent anything yet?
            silent = now - latest > self.timeout if talking else now - w.started > self.startup_timeout
            rc = w.proc.poll()
            if not left:  # every simulation of its list finished
                if rc is not None or silent:  # exited, or lingers after its last bye
                    self._kill(w.proc)
                    self.workers.remove(w)
            elif rc is not None and rc != 0:
                self._lost(w, left, last_seen, f"died (exit status {rc})")
            elif rc == 0 and silent:  # exited cleanly: its last byes may still be on the way
                self._lost(w, left, last_seen, "exited without saying bye")
            elif rc is None and silent:
                self._lost(w, left, last_seen, f"silent for more than {self.timeout:g} s" if talking
                           else f"sent nothing within {self.startup_timeout:g} s of its start")
        pending = [s for s in sorted(self.sims.values(), key=lambda s: s.id) if s.state == "pending"]
        while pending and len(self.workers) < self.max_running:
            # an even share of what is left for each free slot, at most per_client
            n = min(self.per_client, math.ceil(len(pending) / (self.max_running - len(self.workers))))
            if not self._start(pending[:n]):
                break
            pending = pending[n:]

    @property
    def done(self) -> bool:
        return all(s.state in ("done", "abandoned") for s in self.sims.values())

    def shutdown(self):
        for w in self.workers:
            self._kill(w.proc)
            for i in w.sims:
                if self.sims[i].state == "running":
                    self.sims[i].state = "pending"
        self.workers = []

    # -- checkpoint ---------------------------------------------------------------------------
    def table(self) -> dict:
        ids = sorted(self.sims)
        state = [self.sims[i].state for i in ids]
        return {"ids": np.array(ids), "mu": np.stack([self.sims[i].mu for i in ids]),
                "state": np.array([STATES.index("pending" if s == "running" else s) for s in state]),
                "crashes": np.array([self.sims[i].crashes for i in ids]),
                "restarts": np.array([self.sims[i].restarts for i in ids]), "redraws": self.redraws}

    def load_table(self, t: dict):
        """Restore after a server restart: running simulations become pending and are relaunched
        (fault injections concern the first run only)."""
        self.sims = {}
        for i, mu, st, cr, rs in zip(t["ids"], t["mu"], t["state"], t["crashes"], t["restarts"]):
            self.sims[int(i)] = Simulation(int(i), np.asarray(mu), STATES[int(st)], int(cr), int(rs))
        self.redraws = int(t["redraws"])


def fom_command(study_config: str, backend: str) -> list[str]:
    """argv of the project's own FOM client (its simulations come through the environment)."""
    return [sys.executable, "-m", "surrogates.streaming.worker", str(study_config), backend]
