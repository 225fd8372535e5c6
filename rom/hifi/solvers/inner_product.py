"""X^{-1} B on the MPI ranks: the Riesz solves of the certified RB's residual data without a serial
factorization.

The residual factor needs z_k = X^{-1} g_k for every load term and every A_q v_n (P + N Q right-hand
sides). A SuperLU factorization of a 3D X on rank 0 grows like n^(4/3) in memory and n^2 in time (it
passed 15 GB at 4.8e5 dofs); here every rank holds only its rows of X, read from the operators artefact
(the very matrix whose long-double residuals the refinement forms on rank 0, rom.reduction.linalg.
RefinedSolver), and CG preconditioned by GAMG solves each right-hand side.

Accuracy: the refinement around these solves reaches long-double accuracy as long as each step
contracts the error (by up to ~cond(X) rtol for a solve to relative residual rtol); the tolerances set
the cost. The first solve of a right-hand side goes as far as double allows (RTOL_FIRST = 1e-12), so
that one correction solved to RTOL_CORRECTION = 1e-10 leaves ~1e-21 where the amplification is ~10: two
solves per right-hand side (3D heat sink, GAMG: ~25 and ~21 CG iterations). The refinement's stop test
assumes a correction contracts by no less than CONTRACTION = 10 RTOL_CORRECTION; where the first solve
erred more (cond(X) amplifies the residual), it sees a correction that is not yet small and takes
another step. The rb artefact keeps the worst normwise backward error of the refined representers in
long double (`riesz_max_backward_error`: ~eps_ld = 1e-19 where the refinement arrived, ~eps_double
where it did not) and how many refinements ended without meeting their test (`riesz_not_arrived`)."""
from __future__ import annotations

import numpy as np

from ..discretization.operators import n_dofs, x_rows
from . import petsc

RTOL_FIRST, RTOL_CORRECTION = 1e-12, 1e-10
CONTRACTION = 10 * RTOL_CORRECTION
DEFAULTS = {"ksp_type": "cg", "pc_type": "gamg", "ksp_atol": 0.0, "ksp_max_it": 5000,
            "ksp_norm_type": "unpreconditioned"}


class InnerProductSolver:
    """CG + GAMG on the row-distributed X, built collectively on every rank. `__call__(B)` is collective:
    every rank passes the same B (k, n) (RootDriven broadcasts it); rank 0 gets X^{-1} B (k, n), the other
    ranks None; a solve that did not converge returns a RuntimeError (the same on every rank) instead of
    raising, so that the ranks stay in step."""

    def __init__(self, operators_path, comm=None, options: dict | None = None):
        PETSc = petsc.init()
        self.comm = comm or PETSc.COMM_WORLD
        self.n = n_dofs(operators_path)
        self.r0, self.r1 = petsc.ownership(self.n, self.comm.size, self.comm.rank)
        indptr, indices, values = x_rows(operators_path, self.r0, self.r1)
        # The command line's PETSc options are meant for the FOM solves: the X solves take rb.riesz.petsc_options alone.
        self.solver = petsc.LinearSolver(self.comm, self.n, self.r0, self.r1, indptr, indices,
                                         {**DEFAULTS, **(options or {})}, command_line=False)
        self.solver.set_values(values)
        self.iterations = 0
        self.contraction = CONTRACTION
        # The tolerances are the refinement's; a ksp_rtol in rb.riesz.petsc_options replaces both.
        user = {str(k).lstrip("-"): v for k, v in (options or {}).items()}
        self._own_rtol = "ksp_rtol" not in user
        if not self._own_rtol:
            self.contraction = min(10 * float(user["ksp_rtol"]), 0.5)

    def __call__(self, B: np.ndarray, first: bool = True):
        """X^{-1} B (k, n) on rank 0: to RTOL_FIRST, or to RTOL_CORRECTION for a refinement's correction
        (`first` False), unless the study's rb.riesz.petsc_options set ksp_rtol (then `contraction`, what
        the refinement assumes of a correction, becomes 10 times that rtol)."""
        B = np.atleast_2d(np.asarray(B, dtype=float))
        out = []
        rtol = RTOL_FIRST if first else RTOL_CORRECTION
        if self._own_rtol:
            self.solver.configure({"ksp_rtol": rtol}, override=True)
        for b in B:
            x, info = self.solver.solve(b[self.r0: self.r1])
            if not info.converged:
                return RuntimeError(f"X solve of the residual data did not converge ({info.reason} after "
                                    f"{info.iterations} iterations, residual {info.residual_norm:.2e})")
            self.iterations += info.iterations
            out.append(self.solver.gather(x))
        return np.array(out) if self.comm.rank == 0 else None

    def destroy(self):
        self.solver.destroy()
