"""Rank 0 drives full-order solves, the other ranks serve them.

A reduction (the weak greedy) runs on rank 0 alone, but every FOM solve is collective: inside
`with RootDriven(fom) as fom_solves:` rank 0 calls fom_solves.solve(mu), which broadcasts mu so that
every rank enters the same solve; the other ranks stay in __enter__, serving solves until rank 0
leaves the block (None is broadcast), and then skip the block's work (is_root is False)."""
from __future__ import annotations

import numpy as np


class RootDriven:
    def __init__(self, fom):
        self.fom = fom
        self.comm = fom.comm.tompi4py() if fom.comm is not None else None
        self.size = 1 if self.comm is None else self.comm.size
        self.is_root = self.comm is None or self.comm.rank == 0

    def __enter__(self) -> "RootDriven":
        if not self.is_root:
            while (mu := self.comm.bcast(None, root=0)) is not None:
                self.fom.solve(mu)
        return self

    def solve(self, mu: np.ndarray):
        """One collective FOM solve started by rank 0 (rom.hifi.solve.Sample; the field on rank 0)."""
        if self.size > 1:
            self.comm.bcast(np.asarray(mu, dtype=float), root=0)
        return self.fom.solve(mu)

    def __exit__(self, *exc):
        if self.is_root and self.size > 1:
            self.comm.bcast(None, root=0)
        return False
