"""Linear-algebra core of the reductions: X-inner products of row blocks, the one Gram-Schmidt,
and solves refined in extended precision.

Vectors are rows: a block U (k, n) holds k vectors of n dofs; X is a sparse SPD inner-product
matrix (None: the Euclidean product). Every routine works in the dtype of its input, float64 or
np.longdouble (80-bit on x86: eps = 1.1e-19), so the same code serves the online double path and
the offline extended-precision residual data.

Gram-Schmidt (`gram_schmidt_rows`): classical Gram-Schmidt, twice iterated per vector ("twice is
enough": the second pass removes what the rounding of the first left, to a few eps), and a third
pass only when the second still cancelled more than half of the norm (a vector nearly in the span).
One dependence threshold: a vector whose component orthogonal to the others has an X-norm at most
`dependent_tol(dtype) = DEPENDENT_ULPS * eps(dtype)` times its original X-norm is declared
dependent and adds no direction. 512 eps (1.1e-13 in double, 5.6e-17 in long double) lies above
the rounding noise of two projection passes (a few eps times the number of vectors) and far below
any tolerance a caller sets on purpose (POD energy, incremental-POD rank, greedy tolerance).
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

log = logging.getLogger("rom.linalg")

DEPENDENT_ULPS = 512
EXTENDED = np.longdouble
# False where long double is plain double (e.g. MSVC, some ARM ABIs): the extended-precision
# paths then run in double and the round-off floor of the estimators rises (docs/reduced_basis.md).
HAS_EXTENDED = bool(np.finfo(np.longdouble).eps < np.finfo(np.float64).eps)


def dependent_tol(dtype) -> float:
    return float(DEPENDENT_ULPS * np.finfo(dtype).eps)


def x_apply(X, U: np.ndarray) -> np.ndarray:
    """X applied to every row of U (k, n) or to a vector (n,)."""
    if X is None:
        return U
    return X @ U if U.ndim == 1 else (X @ U.T).T


def x_inner(A: np.ndarray, B: np.ndarray, X=None) -> np.ndarray:
    """X-inner products of two row blocks: A X B^T, shape (len(A), len(B))."""
    return np.einsum("ij,kj->ik", A, x_apply(X, B))


def x_norms(U: np.ndarray, X=None) -> np.ndarray:
    """X-norms of the rows of U (k, n), or of one vector (n,) as a scalar array."""
    XU = x_apply(X, U)
    sq = np.einsum("...j,...j->...", U, XU)
    return np.sqrt(np.maximum(sq, 0))


def orthogonalize(u: np.ndarray, blocks, X=None):
    """Component of u X-orthogonal to the X-orthonormal rows of `blocks` (one array or a sequence
    of arrays, together orthonormal: read in place, never stacked), twice iterated.

    Returns (h, e, norm_e, norm_u): the coefficients h = [block X u ...] summed over the passes,
    the rest e = u - h [blocks], and the X-norms of e and u."""
    blocks = [b for b in ([blocks] if isinstance(blocks, np.ndarray) else blocks) if len(b)]
    e = np.array(u, copy=True)
    Xe = x_apply(X, e)
    norm_u = norm = np.sqrt(max(e @ Xe, 0))
    h = [np.zeros(len(b), dtype=e.dtype) for b in blocks]
    if blocks:
        for k in range(3):
            g = [np.einsum("ij,j->i", b, Xe) for b in blocks]
            for b, gb, hb in zip(blocks, g, h):
                e -= np.einsum("i,ij->j", gb, b)
                hb += gb
            Xe = x_apply(X, e)
            previous, norm = norm, np.sqrt(max(e @ Xe, 0))
            if k >= 1 and norm > 0.5 * previous:
                break
    return (np.concatenate(h) if h else np.zeros(0, dtype=e.dtype)), e, norm, norm_u


def gram_schmidt_rows(U: np.ndarray, X=None, basis: np.ndarray | None = None, inplace: bool = False):
    """X-orthonormalize the rows of U against the X-orthonormal rows `basis` (k0, n) and among
    themselves: U^T = [basis; Q]^T R with R (k0 + len(Q), len(U)) in column echelon form.

    Dependent rows (see module doc) give no row of Q; their column of R holds their coefficients.
    inplace: Q is written over U (row j is read before any row r <= j is written: the same arithmetic,
    no second array the size of U) and returned as a view of it."""
    U = np.atleast_2d(U)
    basis = np.empty((0, U.shape[1]), dtype=U.dtype) if basis is None else basis
    k0 = len(basis)
    tol = dependent_tol(U.dtype)
    Q = U if inplace else np.empty((len(U), U.shape[1]), dtype=U.dtype)
    R = np.zeros((k0 + len(U), len(U)), dtype=U.dtype)
    r = 0
    for j, u in enumerate(U):  # one vector after the other: a loop over vectors, never over dofs
        h, e, norm, norm0 = orthogonalize(u, (basis, Q[:r]), X)
        R[: len(h), j] = h
        if norm0 > 0 and norm > tol * norm0:
            R[len(h), j] = norm
            Q[r] = e / norm
            r += 1
    return Q[:r], R[: k0 + r]


def gram_schmidt(U: np.ndarray, X=None) -> np.ndarray:
    """X-orthonormal rows spanning the rows of U (dependent rows dropped)."""
    return gram_schmidt_rows(np.array(U, dtype=np.result_type(U, np.float64)), X)[0]


def unit_lower_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve L X = B for unit lower triangular L (m, m) and B (m,) or (m, k), in the dtype of the
    data (LAPACK for double; forward substitution, a loop over the m rows, for long double)."""
    if L.dtype == np.float64 and B.dtype == np.float64:
        from scipy.linalg import solve_triangular

        return solve_triangular(L, B, lower=True, unit_diagonal=True, check_finite=False)
    X = np.array(B, dtype=np.result_type(L, B))
    for i in range(1, len(L)):
        X[i] -= L[i, :i] @ X[:i]
    return X


def orthonormality_error(V: np.ndarray, X=None) -> float:
    """max |V X V^T - I|."""
    return float(np.abs(x_inner(V, V, X) - np.eye(len(V))).max()) if len(V) else 0.0


class RefinedSolver:
    """Solves A x = b for a fixed sparse SPD-or-not A by iterative refinement whose residuals b - A x
    are formed in extended precision, around an inner double-precision solve: the result (long
    double) is accurate to ~cond(A) * eps_ld instead of cond(A) * eps_double.

    The inner solve is either one SuperLU factorization of A (`inner=None`: serial, on this process;
    right for 2D meshes, whose factors grow like n log n) or a caller's callable (B (k, n), first) ->
    A^{-1} B to a relative accuracy rtol < 1, e.g. CG + AMG on the MPI ranks (rom.hifi.solvers.
    inner_product: 3D meshes, whose factors grow like n^(4/3) in memory); `first` is False for the
    corrections, which may be solved more loosely. Refinement needs only that the inner solve contracts
    the error: each step multiplies it by q ~ cond(A) eps for the LU, by up to ~cond(A) rtol for an
    iterative solve to relative residual rtol, so two or three steps reach long-double accuracy either
    way and the inner tolerance changes the cost, not the result.

    The loop stops once the next correction, predicted as |d| q, is below long-double rounding of x; q is
    the observed contraction |d| / |previous d|, or at least `contraction`, the contraction the inner
    solve promises for a correction (an iterative solve's first solve is tighter than its corrections,
    so the observed ratio would promise too much). A loop that ends without meeting that test (no
    contraction, or max_steps) is counted in `not_arrived`. `worst_backward_error` keeps the largest
    normwise backward error ||b - A x||_inf / (||A||_inf ||x||_inf + ||b||_inf) in long double of the
    refined solutions: ~eps_ld where the refinement arrived, ~eps_double where it stopped at the
    double solve, whatever cond(A) (a relative residual would grow with cond(A) either way)."""

    def __init__(self, A: sp.spmatrix, max_steps: int = 4, A_ext: sp.spmatrix | None = None, inner=None,
                 contraction: float = 0.0):
        """A_ext: the operator whose residuals are formed, in long double, when A (double, factored)
        is only its rounding, e.g. sum_q theta_q A_q: A assembled in double differs from it by ~eps
        per entry, which moves the solution by ~eps sqrt(n) relative (1e-13 at 1e5 dofs)."""
        self.A = sp.csr_matrix(A)
        self.A_ext = self.A.astype(EXTENDED) if A_ext is None else sp.csr_matrix(A_ext)
        self.max_steps = max_steps
        self.contraction = float(contraction)
        self.worst_backward_error = 0.0
        self.not_arrived = 0  # solves (blocks of rows) whose refinement ended without meeting its test
        self.solves = 0  # inner solves (right-hand sides), refinement steps included
        self._inner = inner
        self._norm_inf = None
        if inner is not None:
            self._lu = None
        # Symmetric matrices (X, the stiffness operators): minimum degree on A + A^T and diagonal
        # pivots keep the factors ~40 % smaller than SuperLU's default column ordering.
        elif abs(self.A - self.A.T).max() == 0:
            self._lu = spla.splu(self.A.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                 options={"SymmetricMode": True})
        else:
            self._lu = spla.splu(self.A.tocsc())

    @property
    def kind(self) -> str:
        return "direct" if self._inner is None else "iterative"

    def _solve_inner(self, B: np.ndarray, first: bool = True) -> np.ndarray:
        """The inner double solve of the rows of B (k, n) or a vector (`first`: not a correction).
        SuperLU one right-hand side at a time: its multi-column solve is slower per column (measured 2x
        at 2e4 dofs)."""
        B = np.asarray(B, dtype=np.float64)
        self.solves += 1 if B.ndim == 1 else len(B)
        if self._inner is not None:
            return np.asarray(self._inner(np.atleast_2d(B), first), dtype=np.float64).reshape(B.shape)
        if B.ndim == 1:
            return self._lu.solve(B)
        return np.array([self._lu.solve(b) for b in B]).reshape(B.shape)

    def solve_double(self, B: np.ndarray) -> np.ndarray:
        """A solution in double for the rows of B (k, n) or a vector: the LU solve, or the iterative
        solve refined once with double residuals (from rtol to about the LU's accuracy)."""
        x = self._solve_inner(B)
        if self._inner is not None:
            x += self._solve_inner(np.asarray(B, dtype=np.float64) - x_apply(self.A, x), first=False)
        return x

    def solve(self, B: np.ndarray) -> np.ndarray:
        """Refined solution (long double) for the rows of B (k, n) or a vector (n,). Refinement
        contracts the error by q per step; it stops once the next correction, predicted as |d| q
        (q: the class docstring), is below long-double rounding of x."""
        B = np.asarray(B, dtype=EXTENDED)
        x = self._solve_inner(B).astype(EXTENDED)
        previous = float(np.abs(x).max()) if x.size else 0.0
        floor = np.finfo(EXTENDED).eps * previous
        arrived = previous == 0.0
        for _ in range(self.max_steps):
            if arrived:
                break
            d = self._solve_inner(B - x_apply(self.A_ext, x), first=False)
            x += d
            size = float(np.abs(d).max()) if d.size else 0.0
            if size == 0.0 or size * max(size / previous, self.contraction) <= floor:
                arrived = True
            elif size > 0.5 * previous:
                break
            previous = size
        self.not_arrived += not arrived
        if x.size:  # the check that the refinement arrived: one more long-double product
            if self._norm_inf is None:
                self._norm_inf = float(abs(self.A_ext).sum(axis=1).max())
            X2, B2 = np.atleast_2d(x), np.atleast_2d(B)
            r = np.abs(B2 - x_apply(self.A_ext, X2)).max(axis=1)
            scale = self._norm_inf * np.abs(X2).max(axis=1) + np.abs(B2).max(axis=1)
            err = np.divide(r, scale, out=np.zeros_like(r), where=scale > 0)
            self.worst_backward_error = max(self.worst_backward_error, float(err.max()))
        return x
