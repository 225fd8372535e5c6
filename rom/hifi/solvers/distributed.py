"""Rank 0 drives full-order solves, the other ranks serve them.

A reduction (the weak greedy, POD-greedy, the dual greedy of an output) runs on rank 0 alone, but
every FOM solve is collective: inside `with RootDriven(fom, operations) as fom_solves:` rank 0 calls
fom_solves.call(name, mu) (or fom_solves.solve(mu) for the stationary solve), which broadcasts the
operation's name and mu so that every rank enters the same collective operation; the other ranks
stay in __enter__, serving operations until rank 0 leaves the block (None is broadcast), and then
skip the block's work (is_root is False).

`operations` maps names to callables mu -> result that every rank builds the same way before the
block (the stationary solve `solve`, a trajectory, the transpose solve of an output's dual problem);
only rank 0's result is used. An operation that can fail should return its failure rather than
raise, so that the ranks stay in step (the caller on rank 0 raises)."""
from __future__ import annotations

import numpy as np


class RootDriven:
    def __init__(self, fom, operations: dict | None = None):
        self.fom = fom
        self.operations = {"solve": fom.solve, **(operations or {})}
        self.comm = fom.comm.tompi4py() if fom.comm is not None else None
        self.size = 1 if self.comm is None else self.comm.size
        self.is_root = self.comm is None or self.comm.rank == 0

    def __enter__(self) -> RootDriven:
        if not self.is_root:
            while (message := self.comm.bcast(None, root=0)) is not None:
                name, mu, extra = message
                self.operations[name](mu, *extra)
        return self

    def call(self, name: str, mu: np.ndarray, *extra):
        """One collective operation started by rank 0 (its result on rank 0); `extra` arguments (small,
        picklable) follow mu to every rank."""
        if name not in self.operations:
            raise KeyError(f"operation {name!r}: expected one of {sorted(self.operations)}")
        mu = np.asarray(mu, dtype=float)
        if self.size > 1:
            self.comm.bcast((name, mu, extra), root=0)
        return self.operations[name](mu, *extra)

    def solve(self, mu: np.ndarray):
        """One collective stationary FOM solve (rom.hifi.solvers.solve.Sample; the field on rank 0)."""
        return self.call("solve", mu)

    def __exit__(self, *exc):
        if self.is_root and self.size > 1:
            self.comm.bcast(None, root=0)
        return False
