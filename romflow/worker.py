"""A persistent black-box worker: your solver, started once per chunk, answers one request per sample.

    from romflow.worker import serve

    def solve(mu):                      # mu: np.ndarray, the parameters in the order of problem.parameters
        ...                             # your assembly and solve (imports and setup done once, outside)
        return {"u": u}                 # optionally "x", "times", "converged", "reason", "iterations"

    if __name__ == "__main__":
        serve(solve)

and in the study file:

    problem:
      name: external
      persistent: true
      command: "{python} {study_dir}/solver.py --mesh {mesh}"   # no {mu}, {out}: they come per request

The protocol (language neutral, one JSON object per line, UTF-8, on the worker's stdin and stdout):

  request   romflow -> worker, one line per sample:
                {"mu": [1.5, 0.25], "out": "/tmp/.../sample3/solution.h5", "workdir": "/tmp/.../sample3",
                 "parameters": {"kappa": 1.5, "x0": 0.25}, "index": 3}
            mu: the values (float64, full precision); out: where to write the solution, an HDF5 file in the
            one-shot format (dataset `u`, optional `x` and `times`, optional root attributes converged,
            reason, iterations); workdir: a fresh, empty folder for this sample (out's folder);
            parameters: the same values by name; index: the request's number in this worker's life.
            Unknown keys may be added later: ignore them.
  reply     worker -> romflow, one line per request, after {out} is written and closed:
                {"ok": true}
            or  {"ok": false, "reason": "<one line: why this sample failed>"}
  end       an empty line, or the end of stdin: the worker exits (status 0).

Rules: answer requests in order, one reply line each, and flush stdout after each reply; write nothing
else on stdout but blank lines, which romflow skips (logs go to stderr: romflow keeps stderr's tail for the reasons of failed samples). A
failed sample does not end the worker: answer {"ok": false, ...} and read the next request. romflow
gives each request problem.timeout seconds (the first one includes the worker's start); a worker that
does not answer in time, exits, or writes a line that is not such a JSON object is stopped; the chunk's
remaining samples go to a restarted worker (at most one restart per chunk; the sample that was in
flight when a worker died is retried once on it), then fail with the reason.

Under MPI (simulate.mpi_ranks > 1: the worker runs under problem.launcher) stdin reaches rank 0 only:
`serve` reads there, broadcasts each request to every rank (mpi4py's COMM_WORLD), calls `solve` on every
rank, and writes rank 0's result; so `solve` returns the whole u on rank 0 (gather it) and may return
anything on the others. `serve` moves file descriptor 1 to stderr while `solve` runs, so a library that
prints to stdout (C or Python) cannot break the protocol.
"""
from __future__ import annotations

import json
import os
import sys
import traceback

import numpy as np

__all__ = ["serve", "write_solution"]


def write_solution(path, result: dict) -> None:
    """Write `solve`'s result in the one-shot HDF5 format: u, optional x and times, root attributes."""
    import h5py

    if not isinstance(result, dict) or "u" not in result:
        raise TypeError(f"solve returned {type(result).__name__}; expected a dict with 'u'")
    with h5py.File(path, "w") as h5:
        h5["u"] = np.asarray(result["u"], dtype=float)
        for key in ("x", "times"):
            if result.get(key) is not None:
                h5[key] = np.asarray(result[key], dtype=float)
        if "converged" in result:
            h5.attrs["converged"] = int(bool(result["converged"]))
        if result.get("reason") is not None:
            h5.attrs["reason"] = str(result["reason"])
        if "iterations" in result:
            h5.attrs["iterations"] = int(result["iterations"])


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _mpi_comm():
    """COMM_WORLD when this worker was started on several MPI ranks, else None (no mpi4py import)."""
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS", "MPI_LOCALNRANKS"):
        if int(os.environ.get(var, "1") or 1) > 1:
            from mpi4py import MPI

            return MPI.COMM_WORLD if MPI.COMM_WORLD.size > 1 else None
    return None


def serve(solve, stdin=None, stdout=None, comm="auto") -> int:
    """Answer romflow's requests with `solve(mu) -> {"u": ..., ...}` until an empty line or EOF (module
    docstring: the protocol). An exception in `solve` or in writing {out} becomes
    {"ok": false, "reason": "<type>: <message>"} (its traceback on stderr) and the worker goes on.
    Returns 0, so `sys.exit(serve(solve))` works."""
    comm = _mpi_comm() if comm == "auto" else comm
    rank = comm.rank if comm is not None else 0
    redirect = stdout is None
    if redirect:  # the protocol keeps the real stdout; fd 1 (prints from any library) goes to stderr
        sys.stdout.flush()
        stdout = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    stdin = stdin or sys.stdin
    while True:
        line = stdin.readline() if rank == 0 else None
        if comm is not None:
            line = comm.bcast(line, root=0)
        if not line or not line.strip():
            break
        try:
            request = json.loads(line)
            mu = np.asarray(request["mu"], dtype=float)
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"ok": False, "reason": _one_line(f"BAD_REQUEST: {type(exc).__name__}: {exc}")}
        else:
            try:
                result = solve(mu)
                if rank == 0:
                    write_solution(request["out"], result)
                reply = {"ok": True}
            except Exception as exc:  # noqa: BLE001 - any failure of the user's solve is this sample's reason
                traceback.print_exc(file=sys.stderr)
                reply = {"ok": False, "reason": _one_line(f"{type(exc).__name__}: {exc}")}
        if comm is not None:  # rank 0 wrote the file; a failure on any rank fails the sample
            replies = comm.gather(reply, root=0)
            if rank == 0:
                reply = next((r for r in replies if not r["ok"]), reply)
        if rank == 0:
            stdout.write(json.dumps(reply) + "\n")
            stdout.flush()
    return 0
