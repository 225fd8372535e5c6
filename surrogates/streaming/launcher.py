"""The ensemble launcher inside the training job: keeps at most K simulation clients running
(local processes, `mpiexec -n r` for r > 1 ranks, `srun` inside a SLURM allocation), restarts dead
or silent ones with the same parameters, and redraws the parameters of one that keeps crashing.

A simulation is identified by its client id; a restart keeps the id (so the server recognizes the
time steps it already has), a redraw takes a new id. States: pending, running, done, abandoned
(redrawn after too many crashes). The whole ensemble runs even when the training budget is spent
first: its steps are then booked in the ledger (the job ends when both are over).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STATES = ("pending", "running", "done", "abandoned")


@dataclass
class Simulation:
    id: int
    mu: np.ndarray
    state: str = "pending"
    crashes: int = 0
    restarts: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started: float = 0.0
    fault: tuple[str, int] | None = None  # (kind, step) on the first attempt only (tests)


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
    def __init__(self, client_argv, mus: np.ndarray, draw, max_running: int = 2, timeout: float = 30.0,
                 max_crashes: int = 2, ranks: int = 1, mode: str = "auto", log_dir: str | Path | None = None,
                 faults: dict | None = None, startup_timeout: float = 120.0):
        """client_argv(sim) -> argv of one client; draw(k) -> a fresh parameter vector for redraw k."""
        self.client_argv, self.draw = client_argv, draw
        self.max_running, self.timeout, self.max_crashes = max_running, timeout, max_crashes
        self.startup_timeout = max(startup_timeout, timeout)  # imports and solver set-up come first
        self.ranks, self.mode = ranks, mode
        self.log_dir = Path(log_dir) if log_dir else None
        self.sims = {i: Simulation(i, np.asarray(m, dtype=float)) for i, m in enumerate(mus)}
        self.n_initial = len(mus)
        self.redraws = 0
        self.events: list[str] = []
        for cid, spec in (faults or {}).items():
            self.sims[int(cid)].fault = (spec["kind"], int(spec["step"]))

    @property
    def max_clients(self) -> int:
        """Id space: the initial ensemble plus as many redraws."""
        return 2 * self.n_initial

    # -- process handling ---------------------------------------------------------------------
    def _start(self, sim: Simulation):
        argv = self.client_argv(sim)
        if sim.fault and sim.restarts == 0 and sim.crashes == 0:
            argv += ["--fault", sim.fault[0], "--fault-step", str(sim.fault[1])]
        argv = wrap(argv, self.ranks, self.mode)
        log = open(self.log_dir / f"client{sim.id}.log", "ab") if self.log_dir else subprocess.DEVNULL
        try:
            sim.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise LauncherError(f"cannot start client {sim.id} ({argv[0]}): {exc}") from None
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        sim.state, sim.started = "running", time.time()

    @staticmethod
    def _kill(sim: Simulation):
        p = sim.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)  # mpiexec / srun forward it to their ranks
            try:
                p.wait(3.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(3.0)
        sim.proc = None

    def _crashed(self, sim: Simulation, why: str):
        self._kill(sim)
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
        """One pass: book exits and silences, then start pending clients up to K.
        last_seen: client id -> time.time() of its last message; finished: ids whose bye arrived."""
        now = time.time()

        def talking(sim):  # has this attempt sent anything yet?
            return last_seen.get(sim.id, 0.0) >= sim.started

        def silent(sim):
            if talking(sim):
                return now - last_seen[sim.id] > self.timeout
            return now - sim.started > self.startup_timeout

        for sim in list(self.sims.values()):  # a redraw adds a simulation
            if sim.state != "running":
                continue
            rc = sim.proc.poll()
            if rc is not None:
                if rc == 0 and sim.id in finished:
                    sim.state, sim.proc = "done", None
                elif rc == 0:
                    # exited cleanly but its bye has not arrived yet: give it the silence timeout
                    if silent(sim):
                        self._crashed(sim, "exited without saying bye")
                else:
                    self._crashed(sim, f"died (exit status {rc})")
            elif silent(sim):
                self._crashed(sim, f"silent for more than {self.timeout:g} s" if talking(sim)
                              else f"sent nothing within {self.startup_timeout:g} s of its start")
        running = sum(s.state == "running" for s in self.sims.values())
        for sim in sorted(self.sims.values(), key=lambda s: s.id):
            if running >= self.max_running:
                break
            if sim.state == "pending":
                self._start(sim)
                running += 1

    @property
    def done(self) -> bool:
        return all(s.state in ("done", "abandoned") for s in self.sims.values())

    def shutdown(self):
        for sim in self.sims.values():
            if sim.proc is not None:
                self._kill(sim)
                if sim.state == "running":
                    sim.state = "pending"

    # -- checkpoint ---------------------------------------------------------------------------
    def table(self) -> dict:
        ids = sorted(self.sims)
        state = [self.sims[i].state for i in ids]
        return {"ids": np.array(ids), "mu": np.stack([self.sims[i].mu for i in ids]),
                "state": np.array([STATES.index("pending" if s == "running" else s) for s in state]),
                "crashes": np.array([self.sims[i].crashes for i in ids]),
                "restarts": np.array([self.sims[i].restarts for i in ids]), "redraws": self.redraws}

    def load_table(self, t: dict):
        """Restore after a server restart: running simulations become pending and are relaunched."""
        self.sims = {}
        for i, mu, st, cr, rs in zip(t["ids"], t["mu"], t["state"], t["crashes"], t["restarts"]):
            self.sims[int(i)] = Simulation(int(i), np.asarray(mu), STATES[int(st)], int(cr), int(rs))
        self.redraws = int(t["redraws"])


def client_command(study_config: str, address_of, backend: str, watch_pid: int | None):
    """argv factory for the project's own FOM client."""
    def argv(sim: Simulation) -> list[str]:
        cmd = [sys.executable, "-m", "surrogates", "stream-client", "--study-config", str(study_config),
               "--address", address_of(sim.id), "--client", str(sim.id),
               "--mu", ",".join(repr(float(m)) for m in sim.mu), "--backend", backend]
        if watch_pid:
            cmd += ["--watch-pid", str(watch_pid)]
        return cmd
    return argv
