"""The simulation side of the stream.

`Client` is the small API any solver can call (documented in docs/streaming.md):

    c = Client("tcp://127.0.0.1:5555", client_id=3, mu=[...]).connect()
    for step, t, u in solver:       # as soon as each time step is computed
        c.send(step, t, u)          # JSON header + raw bytes over a ZeroMQ PUSH socket
    c.finish()                      # says "bye" and waits until everything is delivered

`run_fom` is the project's own client: the transient heat FOM (PETSc under MPI, rank 0 sends; or
SciPy) streaming the full nodal field of every implicit Euler step.
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import zmq

from . import protocol


class ServerGone(RuntimeError):
    """The server that started this client is gone: stop instead of computing for nobody."""


class Client:
    def __init__(self, address: str, client_id: int, mu, linger_s: float = 30.0, hwm: int = 256,
                 watch_pid: int | None = None):
        self.address, self.client_id = address, int(client_id)
        self.mu = np.asarray(mu, dtype=float)
        self.linger_s, self.hwm, self.watch_pid = linger_s, hwm, watch_pid
        self.sent = 0
        self._ctx = self._sock = None

    def connect(self) -> "Client":
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUSH)
        # A full queue blocks send (backpressure) rather than dropping; finish waits linger_s at most.
        self._sock.setsockopt(zmq.SNDHWM, self.hwm)
        self._sock.setsockopt(zmq.LINGER, int(self.linger_s * 1000))
        self._sock.connect(self.address)
        return self

    def _check_server(self):
        if self.watch_pid:
            try:
                os.kill(self.watch_pid, 0)
            except ProcessLookupError:
                raise ServerGone(f"server process {self.watch_pid} is gone") from None

    def send(self, step: int, time_: float, field: np.ndarray, dtype=np.float32):
        self._check_server()
        self._sock.send_multipart(protocol.encode_step(self.client_id, self.mu, step, time_,
                                                       np.asarray(field, dtype=dtype)), copy=False)
        self.sent += 1

    def finish(self):
        self._check_server()
        self._sock.send_multipart(protocol.encode_bye(self.client_id, self.mu, self.sent))
        self._sock.close()  # blocks up to LINGER until queued messages are delivered
        self._sock = None


def run_fom(study: dict, address: str, client_id: int, mu, backend: str = "petsc", watch_pid: int | None = None,
            fault: str | None = None, fault_step: int = -1, petsc_args=()):
    """Solve the study's transient problem for `mu` and stream every step (rank 0 sends)."""
    from rom import config
    from rom.hifi.solve import FullOrderModel

    if backend == "petsc":
        from rom.hifi import petsc

        petsc.init(list(petsc_args))
    problem = config.make_problem(study)
    fom = FullOrderModel(problem, backend, study["simulate"]["petsc_options"])
    mu = np.asarray(mu, dtype=float)
    client = Client(address, client_id, mu, watch_pid=watch_pid).connect() if fom.rank == 0 else None
    for step, t, u, info in fom.trajectory(mu):
        if info is not None and not info.converged:
            raise RuntimeError(f"client {client_id}: step {step} did not converge ({info.reason})")
        if client is not None:
            client.send(step, t, problem.full_field(mu, u))
        if step == fault_step and fault == "kill":  # fault injection (tests): die abruptly
            os.kill(os.getpid(), signal.SIGKILL)
        if step == fault_step and fault == "hang":  # fault injection: alive but silent
            while True:
                time.sleep(1.0)
                if client is not None:
                    client._check_server()
    if client is not None:
        client.finish()
