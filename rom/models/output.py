"""Certified linear outputs s(mu) = l(mu)^T u(mu) by primal-dual reduced bases.

The dual problem A(mu)^T z(mu) = -l(mu) has its own reduced basis. With the primal and dual RB
solutions u_N = V^T c and z_N = W^T d, the primal residual r_pr = f - A u_N and the dual residual
r_du = -l - A^T z_N,

    s - l^T u_N = l^T e_pr = -z^T A e_pr = -z^T r_pr,     so the corrected output
    s_N = l^T u_N - z_N^T r_pr   has the error   s - s_N = -(z - z_N)^T r_pr = -e_du^T r_pr,

and |s - s_N| <= ||r_pr||_X' ||e_du||_X <= ||r_pr||_X' ||r_du||_X' / alpha_LB(mu): the product of
the two residual dual norms, each evaluated by the stable (orthonormalized) factor of its own
`ResidualRiesz` (inside the two `CoerciveRBReductor`s). Where the operator is an approximation
A_M (EIM, op_error(mu) >= ||A - A_M||_{X -> X'}), the computed residuals are those of A_M and
|s - s_N| <= (||r~_pr|| + op ||c||) (||r~_du|| + op ||d||) / alpha_LB + op ||c|| ||d||.

The outputs are the problem's (capability output_functionals, rom.hifi.capabilities.OutputFunctionals):
the thermal block defines the mean over a region of elements, and the flux through a side computed
consistently from the FOM equation: with the discrete boundary test function psi = sum_b w_b phi_b on
the side's nodes, int_side kappa du/dn psi = a(u, psi) - f(psi), so the outward flux f(psi) - a(u, psi)
is affine in u and in mu (its own terms and an offset).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import xarray as xr

from rom.hifi.capabilities import AffineOutput
from rom.models.rb import CoerciveRBReductor, ReducedBasisModel


def output_functional(problem, spec: dict) -> AffineOutput:
    """The AffineOutput of a study's rb.outputs entry, from a problem with the capability
    output_functionals (its `output_functional(spec)`)."""
    from rom.hifi import capabilities as cap

    if not cap.has(problem, cap.OUTPUT_FUNCTIONALS):
        raise ValueError(f"output {spec.get('name')}: problem {problem.name} declares no output functionals "
                         "(capability output_functionals)")
    return problem.output_functional(spec)




# -- dual problem ---------------------------------------------------------------------------------
class DualCoefficients:
    """Coefficients of the dual problem A(mu)^T z = -l(mu): the primal operator's theta, alpha_lb
    and op_error, with the output's lam as load coefficients (its load terms are -l_j)."""

    def __init__(self, primal, output: AffineOutput):
        self.primal, self.output = primal, output
        self.op_error = primal.op_error
        self.rhs_error = None  # the dual's load is the output functional itself: exact

    def theta(self, mu):
        return self.primal.theta(mu)

    def phi(self, mu):
        return self.output.lam(mu)

    def alpha_lb(self, mu):
        return self.primal.alpha_lb(mu)


def dual_reductor(X, A_terms, output: AffineOutput, coefficients, bounds, names=(), extrapolation="refuse",
                  estimator_method: str = "stable", solver=None) -> CoerciveRBReductor:
    """Reductor of the dual problem: operator terms A_q^T, load terms -l_j (solver: the X solver)."""
    return CoerciveRBReductor(X, [sp.csr_matrix(A.T) for A in A_terms], -np.atleast_2d(output.terms),
                              DualCoefficients(coefficients, output), bounds, names, extrapolation, estimator_method,
                              solver=solver)


def dual_fom_solve(fom, output: AffineOutput):
    """z(mu) solving A(mu)^T z = -l(mu) with the FOM's own linear solver. PETSc: the same matrix
    when A(mu) is symmetric (MatIsSymmetric, in parallel too), else KSPSolveTranspose. SciPy
    (serial): the transposed values on the structurally symmetric P1 pattern."""
    pattern = fom.pattern
    rows = slice(pattern.row_start, pattern.row_stop)
    if fom.backend == "scipy":
        T = sp.csr_matrix((np.arange(pattern.nnz, dtype=float) + 1, pattern.indices, pattern.indptr),
                          shape=(pattern.n_rows, pattern.n_dofs)).T.tocsr()
        T.sort_indices()
        if not (np.array_equal(T.indptr, pattern.indptr) and np.array_equal(T.indices, pattern.indices)):
            raise ValueError("dual solve: the operator pattern is not structurally symmetric; expected a P1 pattern")
        transpose = T.data.astype(np.int64) - 1  # values[transpose] are the values of A^T on the pattern

    def solve(mu):
        mu = np.asarray(mu, dtype=float)
        values = fom.problem.operator_values(mu, pattern)
        rhs = -(output.lam(mu[None])[0] @ output.terms[:, rows])
        if fom.backend == "scipy":
            fom.solver.set_values(values[transpose])
            z, info = fom.solver.solve(rhs)
        else:
            s = fom.solver
            s.set_values(values)
            if s.A.isSymmetric(1e-13 * max(s.A.norm(), 1.0)):
                z, info = s.solve(rhs)
            else:
                s.b.array[:] = rhs
                s.x.set(0.0)
                s.ksp.solveTranspose(s.b, s.x)
                reason = int(s.ksp.getConvergedReason())
                if reason <= 0:
                    raise RuntimeError(f"dual (transpose) solve at mu = {mu.tolist()} did not converge (reason {reason})")
                z, info = s.x.array.copy(), None
        if info is not None and not info.converged:
            raise RuntimeError(f"dual solve at mu = {mu.tolist()} did not converge ({info.reason})")
        return fom.solver.gather(z)

    return solve


def _bilinear(a: np.ndarray, B: np.ndarray, c: np.ndarray) -> np.ndarray:
    """sum_{l,n} a_il B_ln c_in for every row i: two BLAS-friendly products, no einsum path search."""
    return np.einsum("in,in->i", a @ B, c)


def _trilinear(theta: np.ndarray, T: np.ndarray, d: np.ndarray, c: np.ndarray) -> np.ndarray:
    """sum_{q,m,n} theta_iq T_qmn d_im c_in for every row i: per term q one GEMM d @ T_q and a row-wise dot
    with c (Q is small), instead of a four-operand einsum or a batched matmul of tiny matrices."""
    out = np.zeros(len(theta))
    for q in range(T.shape[0]):
        out += theta[:, q] * np.einsum("in,in->i", d @ T[q], c)
    return out


# -- primal-dual model ----------------------------------------------------------------------------
@dataclass
class OutputModel:
    """Corrected output and its bound from a primal and a dual reduced-basis model."""

    primal: ReducedBasisModel
    dual: ReducedBasisModel
    output: AffineOutput
    l_rb: np.ndarray   # (L, N) l_j^T v_n
    f_du: np.ndarray   # (P, M) f_p^T w_m
    a_du: np.ndarray   # (Q, M, N) w_m^T A_q v_n

    @classmethod
    def build(cls, primal: CoerciveRBReductor, dual: CoerciveRBReductor, A_terms, f_terms, output: AffineOutput):
        V, W = primal.V, dual.V
        f_terms = np.atleast_2d(f_terms)
        return cls(primal.model(), dual.model(), output, np.atleast_2d(output.terms) @ V.T, f_terms @ W.T,
                   np.stack([W @ (A @ V.T) for A in A_terms]))

    @property
    def N(self) -> tuple[int, int]:
        return self.primal.N, self.dual.N

    def truncated(self, N: int, M: int) -> OutputModel:
        return replace(self, primal=self.primal.truncated(N), dual=self.dual.truncated(M),
                       l_rb=self.l_rb[:, :N], f_du=self.f_du[:, :M], a_du=self.a_du[:, :M, :N])

    def evaluate(self, mu: np.ndarray, c: np.ndarray | None = None, delta_primal: np.ndarray | None = None) -> dict:
        """For a batch of parameters: the plain output l^T u_N (`s_rb`), the corrected output
        (`s`), its certified bound (`bound`), the two RB error bounds (`delta_primal`, `delta_dual`)
        and the rounding allowance the bound includes (`rounding`).

        The identity s - s_N = -e_du^T r_pr(u_N) holds for any reduced coefficients c, d, so only the
        floating-point evaluation of s_N itself is left: its sums of k terms err by at most
        gamma_k sum |terms| (Higham, any summation order), which is added to the bound. Once the
        product of the two residual norms falls below ~k eps |s| (tight tolerances), that rounding
        is what the corrected output's error is made of.

        c, delta_primal: the primal model's coefficients and bound at mu when the caller has them (several
        outputs of one primal model share its solve)."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        co = self.primal.coefficients
        c = self.primal.solve_batch(mu) if c is None else c
        d = self.dual.solve_batch(mu)
        theta, phi, lam = co.theta(mu), co.phi(mu), self.output.lam(mu)
        s_rb = _bilinear(lam, self.l_rb, c) + self.output.offset(mu)
        # z_N^T r_pr(u_N) = sum_p phi_p f_p^T z_N - sum_q theta_q z_N^T A_q u_N
        correction = _bilinear(phi, self.f_du, d) - _trilinear(theta, self.a_du, d, c)
        delta_pr = self.primal.estimate_batch(mu, c) if delta_primal is None else delta_primal
        delta_du = self.dual.estimate_batch(mu, d)
        alpha = co.alpha_lb(mu)
        with np.errstate(invalid="ignore", over="ignore"):
            bound = np.where(alpha > 0, alpha * delta_pr * delta_du, np.inf)
        if co.op_error is not None:
            bound = bound + co.op_error(mu) * np.linalg.norm(c, axis=1) * np.linalg.norm(d, axis=1)
        rounding = self.rounding(mu, c, d, theta, phi, lam)
        return {"s_rb": s_rb, "s": s_rb - correction, "bound": bound + rounding, "delta_primal": delta_pr,
                "delta_dual": delta_du, "rounding": rounding}

    def rounding(self, mu, c, d, theta, phi, lam) -> np.ndarray:
        """gamma_k times the sum of the magnitudes of every term of s_N (k: the longest sum, plus the
        offset and the final difference)."""
        L, N = self.l_rb.shape
        Q, M = self.a_du.shape[:2]
        P = self.f_du.shape[0]
        size = _bilinear(np.abs(lam), np.abs(self.l_rb), np.abs(c))
        size += _bilinear(np.abs(phi), np.abs(self.f_du), np.abs(d))
        size += _trilinear(np.abs(theta), np.abs(self.a_du), np.abs(d), np.abs(c))
        if self.output.offset_terms is not None:
            size += np.abs(self.output.offset_coef(mu)) @ np.abs(self.output.offset_terms)
        # The longest chain of roundings in any term: a sum of L N, P M or Q M N products, or a trilinear
        # term's M + N + Q + 1 (theta @ T, d @ T_q, the dot with c, the sum over q).
        k = max(L * N, P * M, Q * M * N, M + N + Q + 1) + len(np.atleast_1d(
            self.output.offset_terms if self.output.offset_terms is not None else [])) + 3
        u = np.finfo(float).eps / 2
        return k * u / (1 - k * u) * size

    def to_dataset(self, prefix: str) -> xr.Dataset:
        p = prefix
        # The dual model's dimensions carry its prefix (f"{p}dual_mode": its own basis size).
        return self.dual.to_dataset(prefix=f"{p}dual_").merge(xr.Dataset({
            f"{p}l_rb": ((f"{p}term", f"{p}mode"), self.l_rb, {"long_name": "l_j^T v_n"}),
            f"{p}f_du": ((f"{p}rhs_term", f"{p}dual_mode"), self.f_du, {"long_name": "f_p^T w_m"}),
            f"{p}a_du": ((f"{p}op_term", f"{p}dual_mode", f"{p}mode"), self.a_du, {"long_name": "w_m^T A_q v_n"}),
        }))

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, prefix: str, primal: ReducedBasisModel, output: AffineOutput):
        p = prefix
        dual = ReducedBasisModel.from_dataset(ds, DualCoefficients(primal.coefficients, output), primal.bounds,
                                              primal.parameter_names, primal.extrapolation, prefix=f"{p}dual_")
        return cls(primal, dual, output, ds[f"{p}l_rb"].values, ds[f"{p}f_du"].values, ds[f"{p}a_du"].values)
