"""What the two hyper-reduced ROMs share (rom.models.adaptive: DEIM; rom.models.hyper: empirical cubature):
coefficients in an append-only X-orthonormal state basis, and the record of a run."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def at_cell_dofs(dofs: np.ndarray, values: np.ndarray, fixed=0.0) -> np.ndarray:
    """Values of free-dof vectors at cell dofs `dofs` (n_sel, k) (-1 where fixed, taking `fixed` there):
    for values (n_dofs,) the element values (n_sel, k); for modes V.T (n_dofs, N) the rows (n_sel, k, N)."""
    d = np.maximum(dofs, 0)
    free = dofs >= 0
    if values.ndim > 1:
        free = free[..., None]
    return np.where(free, values[d], fixed)


class StateBasis:
    """What both hyper-reduced ROMs share: coefficients in the append-only X-orthonormal basis V of the
    incremental POD `Vpod` of the states (the same span as its modes, so that enrichment only borders)."""

    @property
    def V(self) -> np.ndarray:
        return self.Vpod.basis

    @property
    def N(self) -> int:
        return len(self.Vpod.basis)

    def project(self, u: np.ndarray) -> np.ndarray:
        return self.V @ (self.X @ u)

    def reconstruct(self, a: np.ndarray) -> np.ndarray:
        return a @ self.V[: len(a)]


@dataclass
class AdaptiveResult:
    states: np.ndarray  # (n_times, n_dofs) reconstructed ROM states (for evaluation only)
    indicator: np.ndarray  # (n_times,) indicator of each ROM step (before any enrichment)
    enriched: np.ndarray  # (n_times,) 1 where a full-order step replaced the ROM step
    basis_size: np.ndarray  # (n_times,)
    online_seconds: float  # ROM steps + indicators + enrichments (FOM steps excluded)
    fom_seconds: float
    fom_steps: int = field(default=0)
