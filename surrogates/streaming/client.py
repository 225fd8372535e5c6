"""The simulation side of the stream.

A client process is handed its work by the launcher through the environment (never the command
line, which other users can read): the simulations to run (client id, parameters, server address),
the path of the run's secret (a 0600 file), and the server to watch. Any solver can join
(docs/streaming.md):

    job = Assignment.from_environment()
    for client in job.clients():              # one connected Client per simulation, in order
        for step, t, u in my_solver(client.mu):
            client.send(step, t, u)           # JSON header + raw bytes + HMAC tag over ZeroMQ PUSH
        client.finish()                       # says "bye" and waits until everything is delivered

`run_worker` is the project's own client: the transient heat FOM (PETSc under MPI, rank 0 sends; or
SciPy), set up once (interpreter, imports, assembly, factorization) and run for every simulation
of its assignment in sequence.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from . import protocol

ENV_SIMULATIONS = "ROMFLOW_STREAM_SIMULATIONS"  # JSON list of {"client", "mu", "address"[, "fault"]}
ENV_KEY_FILE = "ROMFLOW_STREAM_KEY_FILE"  # path of the 0600 file holding the run's secret (hex)
ENV_WATCH = "ROMFLOW_STREAM_WATCH"  # "host:pid" of the server process
ENV_STALL = "ROMFLOW_STREAM_STALL_SECONDS"  # give up after this long unable to deliver one message


class ServerGone(RuntimeError):
    """The server that started this client is gone: stop instead of computing for nobody."""


class Client:
    def __init__(self, address: str, client_id: int, mu, key: bytes, linger_s: float = 30.0, hwm: int = 256,
                 watch: tuple[str, int] | None = None, stall_seconds: float | None = None, poll_s: float = 1.0):
        """watch: (host, pid) of the server; checked before every send and every `poll_s` while a
        send is blocked (a full queue: backpressure), on that host only. stall_seconds: give up
        when one message could not be delivered for that long (a server on another host)."""
        self.address, self.client_id = address, int(client_id)
        self.mu = np.asarray(mu, dtype=float)
        self.key = key
        self.linger_s, self.hwm, self.poll_s = linger_s, hwm, poll_s
        self.watch, self.stall_seconds = watch, stall_seconds
        self.sent = 0
        self._sock = self._ctx = None

    def connect(self) -> Client:
        self._ctx = zmq.Context()  # its own: terminating it waits for the queued messages (see close)
        self._sock = self._ctx.socket(zmq.PUSH)
        # A full queue blocks send (backpressure) rather than dropping, in slices of poll_s so that
        # a dead server is noticed; finish waits linger_s at most.
        self._sock.setsockopt(zmq.SNDHWM, self.hwm)
        self._sock.setsockopt(zmq.SNDTIMEO, int(self.poll_s * 1000))
        self._sock.setsockopt(zmq.LINGER, int(self.linger_s * 1000))
        self._sock.connect(self.address)
        return self

    def check_server(self):
        if not self.watch or self.watch[0] != socket.gethostname():
            return
        try:
            os.kill(self.watch[1], 0)
        except ProcessLookupError:
            raise ServerGone(f"server process {self.watch[1]} is gone") from None
        except PermissionError:  # the pid now belongs to another user's process
            raise ServerGone(f"server process {self.watch[1]} is gone (pid reused)") from None

    def _send(self, frames):
        t0 = time.monotonic()
        while True:
            self.check_server()
            try:
                self._sock.send_multipart(frames, copy=False)
                return
            except zmq.Again:
                if self.stall_seconds and time.monotonic() - t0 > self.stall_seconds:
                    raise ServerGone(f"no message delivered to {self.address} for {self.stall_seconds:g} s") from None

    def send(self, step: int, time_: float, field: np.ndarray, dtype=np.float32):
        self._send(protocol.encode_step(self.client_id, self.mu, step, time_, np.asarray(field, dtype=dtype),
                                        key=self.key))
        self.sent += 1

    def finish(self):
        self._send(protocol.encode_bye(self.client_id, self.mu, self.sent, key=self.key))
        self.close(deliver=True)

    def close(self, deliver: bool = False):
        """deliver: wait up to LINGER until the queued messages are delivered; else drop them."""
        if self._sock is not None:
            self._sock.close(None if deliver else 0)
            self._ctx.term()  # what waits for the delivery: closing the socket does not
            self._sock = self._ctx = None


@dataclass
class Simulation:
    client: int
    mu: np.ndarray
    address: str
    fault: tuple[str, int] | None = None  # (kind, step): fault injection (tests)


@dataclass
class Assignment:
    """What the launcher hands one client process: its simulations, the secret, the server."""

    simulations: list[Simulation]
    key: bytes
    watch: tuple[str, int] | None = None
    stall_seconds: float | None = None
    key_file: str = field(default="", repr=False)

    def environment(self) -> dict[str, str]:
        """The environment variables that carry this assignment (the secret stays in its file)."""
        sims = [{"client": s.client, "mu": [float(m) for m in s.mu], "address": s.address,
                 **({"fault": list(s.fault)} if s.fault else {})} for s in self.simulations]
        env = {ENV_SIMULATIONS: json.dumps(sims), ENV_KEY_FILE: str(self.key_file)}
        if self.watch:
            env[ENV_WATCH] = f"{self.watch[0]}:{self.watch[1]}"
        if self.stall_seconds:
            env[ENV_STALL] = repr(float(self.stall_seconds))
        return env

    @classmethod
    def from_environment(cls, environ=None) -> Assignment:
        env = os.environ if environ is None else environ
        missing = [k for k in (ENV_SIMULATIONS, ENV_KEY_FILE) if not env.get(k)]
        if missing:
            raise ValueError(f"{', '.join(missing)} not set: expected a client started by the train-online "
                             f"launcher, or these variables set as docs/streaming.md describes")
        try:
            sims = [Simulation(int(s["client"]), np.asarray(s["mu"], dtype=float), str(s["address"]),
                               (str(s["fault"][0]), int(s["fault"][1])) if s.get("fault") else None)
                    for s in json.loads(env[ENV_SIMULATIONS])]
        except (ValueError, KeyError, TypeError, IndexError):
            raise ValueError(f"{ENV_SIMULATIONS}: expected a JSON list of {{\"client\": id, \"mu\": [...], "
                             f"\"address\": \"tcp://host:port\"}}") from None
        watch = None
        if env.get(ENV_WATCH):
            host, _, pid = env[ENV_WATCH].rpartition(":")
            watch = (host, int(pid))
        stall = float(env[ENV_STALL]) if env.get(ENV_STALL) else None
        return cls(sims, protocol.read_key(env[ENV_KEY_FILE]), watch, stall, env[ENV_KEY_FILE])

    def client(self, sim: Simulation) -> Client:
        return Client(sim.address, sim.client, sim.mu, self.key, watch=self.watch, stall_seconds=self.stall_seconds)

    def clients(self):
        """A connected Client for each simulation, in order (the previous one is closed first)."""
        for sim in self.simulations:
            c = self.client(sim).connect()
            try:
                yield c
            finally:
                c.close()


def run_worker(study: dict, job: Assignment, backend: str = "petsc", petsc_args=()):
    """Solve the study's transient problem for each assigned simulation in turn and stream every
    step (rank 0 sends). The FOM is set up once; its step matrix does not depend on mu."""
    from rom.hifi import registry
    from rom.hifi.solvers.solve import FullOrderModel

    if backend == "petsc":
        from rom.hifi.solvers import petsc

        petsc.init(list(petsc_args))
    problem = registry.make_problem(study["problem"])
    fom = FullOrderModel(problem, backend, study["simulate"]["petsc_options"])
    with fom.session():  # a persistent black box: one solver worker for this client's simulations
        _stream(fom, problem, job)


def _stream(fom, problem, job: Assignment):
    for sim in job.simulations:
        client = job.client(sim).connect() if fom.rank == 0 else None
        kind, at = sim.fault or (None, -1)
        for step, t, u, info in fom.trajectory(sim.mu):
            if info is not None and not info.converged:
                raise RuntimeError(f"client {sim.client}: step {step} did not converge ({info.reason})")
            if client is not None:
                client.send(step, t, problem.full_field(sim.mu, u))
            if step == at and kind == "kill":  # fault injection (tests): die abruptly once the steps sent are delivered
                if client is not None:
                    client.close(deliver=True)
                os.kill(os.getpid(), signal.SIGKILL)
            if step == at and kind == "hang":  # fault injection: alive but silent
                while True:
                    time.sleep(1.0)
                    if client is not None:
                        client.check_server()
        if client is not None:
            client.finish()


def single(address: str, client_id: int, mu, key_file: str | Path, watch_pid: int | None = None) -> Assignment:
    """An assignment of one simulation given by hand (a client started by other means)."""
    watch = (socket.gethostname(), int(watch_pid)) if watch_pid else None
    return Assignment([Simulation(int(client_id), np.asarray(mu, dtype=float), address)],
                      protocol.read_key(key_file), watch, None, str(key_file))
