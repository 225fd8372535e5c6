"""Empirical cubature (ECM / EQP) for hyper-reduction: a few points with positive weights that
reproduce the integrals of a set of integrands, found by a greedy with non-negative least squares.

A hyper-reduced POD-Galerkin ROM evaluates its reduced internal force r(a) = sum_e w_e g_e(a) over all
quadrature points (or elements) e, with w_e the full quadrature weights (element volumes) and g_e the
projected contribution V_e^T f_e. The empirical cubature replaces the sum by one over a small set S with
positive weights w~, trained on snapshots: G (n_rows, n_points) holds one (snapshot, reduced mode)
integrand per row, valued at the points (g_e, NOT multiplied by w_e), and b = G @ w its exact integrals.
It finds S and w~ >= 0 with ||G[:, S] w~ - b|| <= tol ||b||.

Algorithm (Hernandez, Caicedo, Ferrer, "Dimensional hyper-reduction of nonlinear finite element models via
empirical cubature", CMAME 313 (2017) 687-722; the positivity and the LP view of Yano and Patera, "An LP
empirical quadrature procedure for reduced basis treatment of parametrized nonlinear PDEs", CMAME 344
(2019) 1104-1123):

1. An orthonormal basis of the integrand space: the SVD of G sqrt(w) (rows orthonormal in the
   w-weighted inner product, so every basis function counts the same whatever the scale of the rows
   of G), truncated where the Frobenius norm of the dropped part is <= 0.1 tol ||b|| / sqrt(sum w) (but
   never below 1e3 eps ||G||_{F,w}, the round-off of G sqrt(w)). By Cauchy-Schwarz, dropping a part E
   of the integrands changes their exact integrals by at most ||E||_{F,w} sqrt(sum w), so the
   truncation spends at most a tenth of the error budget tol ||b||. The tolerance is relative to ||b||,
   not to the largest singular value: the integrals are what must be reproduced, and integrands with
   small integrals next to large values (oscillating, or nearly self-equilibrated) need a finer basis.
   The basis has k <= n_rows rows; it is computed by a blocked randomized range finder (Halko,
   Martinsson, Tropp, SIAM Review 53 (2011), Alg. 4.2, with Gaussian probes of the residual as the
   stopping test; with <= 64 rows, the rows themselves), so its cost grows with k, not with n_rows^2.
2. With `constant`, the constant function joins the basis (when it is not in it already): the total
   weight sum w~ = sum w (the volume) is then integrated exactly, which the literature recommends for
   the stability of the reduced model.
3. The greedy: with d the exact integrals of the basis functions Phi (k, n_points) and r = d -
   Phi[:, S] w~ the residual, add the unselected point whose column of Phi correlates best (largest
   positive normalized inner product) with r (candidates: the points of positive weight where some
   integrand is nonzero), solve the non-negative least squares (NNLS) on the selected columns, drop
   the points whose weight went to zero, repeat. The NNLS solver is Lawson and Hanson's active-set
   method, kept warm from one step to the next (`_NNLS`): the new point enters the passive set of the
   previous solution, whose QR factorization is updated instead of rebuilt. By the NNLS optimality
   conditions every accepted step strictly lowers ||r||; the solution is basic (positive weights on
   independent columns), so |S| <= k (Caratheodory). The greedy stops
   when both the training error ||G[:, S] w~ - b|| / ||b|| and the basis error ||r|| / ||d|| are <= tol;
   the second bounds the error on any integrand g in the basis' span, unseen ones included:
   |I(g) - I~(g)| <= basis_error ||d|| ||g||_{L2(w)} (||d|| = sqrt(sum w) with the constant in the basis).
   Round-off can make a step useless (the new point gets no weight, or ||r|| does not drop): that
   point is set aside until the next useful step, and after 5 useless steps in a row, when no point
   correlates positively with r, or after 3 k + 50 steps, the greedy stops and reports the error it
   reached (`converged` False).

Cost: with l <= k + 64 the dimension of the range found (rank k of the basis), the range finder makes
about l / 64 + 1 products of G with 64 Gaussian probes, then one product G (n_rows, n_points) x
(n_points, l): about 4 n_rows n_points l flops in all, and a few products of (64, n_points) blocks with
the range. A greedy step is one product r^T Phi over all points (it reads the k x n_points basis) and one
warm-started NNLS solve of size (k, |S|) (|S| <= k): O(k |S|) for the new point, and O(k |S|) more for
each point whose weight goes to zero or comes back (a solve from scratch, as scipy.optimize.nnls does,
is O(k |S|^2)). Measured on a shared 2-core machine, G (2000, 2e5) of smooth integrands: about 8 s for
k ~ 60-90, 20-30 s for k ~ 190-250 (tol 1e-6 and 1e-8), the NNLS solves a small share of it. They
matter where n_points is not large next to k^2: in a hyper-reduced ROM's extend (n_points ~ 3e3,
k ~ 250-450, ~40 steps), 0.05-0.15 s per extend, against 0.3-1.1 s solved from scratch.
Memory: G is read, never copied (float64 C-ordered input; anything else is converted once); besides G,
about (l + k) n_points floats at the peak (the range and the basis; the Cubature keeps the basis,
8 k n_points bytes, for `extend`), (n_rows, l) for the projected G, and 3 k^2 + n_rows k for the NNLS
(its factorization, and the columns of Phi and G at the passive points).

`extend` updates a cubature after the ROM basis was enriched: the stored basis starts the range finder
of the new integrand matrix (only the new directions cost probes), and the greedy restarts from the
current points (re-solved against the new integrals, from their weights) instead of from nothing."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import get_blas_funcs, qr_delete

_SVD_SHARE = 0.1  # share of the error budget tol ||b|| the basis truncation may spend
_BLOCK = 64  # probes per pass of the range finder
_EPS = np.finfo(float).eps
_PATIENCE = 5  # consecutive greedy steps without progress (round-off) before giving up


@dataclass
class Cubature:
    """A reduced quadrature rule: integral(g) ~ g[points] @ weights.

    `error` is the relative training error ||G[:, points] @ weights - b|| / ||b||, b = G @ w (relative to
    the Cauchy-Schwarz bound sqrt(sum w) ||G||_{F,w} instead when ||b|| is below 1e3 eps times it: zero
    up to round-off, as for self-equilibrated residuals); `basis_error` the same for the orthonormal basis
    (the bound on unseen integrands in its span, module docstring). `history[i]` is the training error
    after the i-th accepted greedy step (history[0]: the starting set: empty, or the points an `extend`
    started from). `n_nnls` counts the NNLS solves of the call (one per greedy step, plus the restart
    of `extend`).
    `converged` is False when the greedy stopped before both errors reached tol; `reason` says why
    ("max_points", "stalled": no point improves the rule any more (round-off), "max_iter").
    `basis` (rank, n_points) holds the basis functions at the points (rows orthonormal in the
    w-weighted inner product, 0 at points of zero weight); `extend` starts from it. Drop it
    (dataclasses.replace(cub, basis=None)) to save memory; `extend` then recomputes it."""

    points: np.ndarray  # (m,) indices into the n_points columns of G, ascending
    weights: np.ndarray  # (m,) positive weights
    error: float
    history: np.ndarray
    basis_error: float = 0.0
    rank: int = 0  # basis functions, the constant included
    n_nnls: int = 0  # NNLS solves this call made
    converged: bool = True
    reason: str = "converged"
    basis: np.ndarray | None = field(default=None, repr=False)

    def integrate(self, values: np.ndarray) -> np.ndarray:
        """The reduced integrals of integrands given at the selected points (..., m)."""
        return np.asarray(values) @ self.weights


def empirical_cubature(G: np.ndarray, w: np.ndarray, tol: float = 1e-8, max_points: int | None = None,
                       constant: bool = True, *, seed: int = 0, relative_to: str = "integrals") -> Cubature:
    """Empirical cubature of the integrands G (n_rows, n_points) (values at the points, not multiplied
    by w) under the full weights w (n_points,) >= 0: points and positive weights with
    ||G[:, points] @ weights - G @ w|| <= tol ||G @ w|| and the orthonormal basis of the integrand space
    integrated to tol too (module docstring). At most `max_points` points (default: no limit besides
    the rank of the basis). Never selected: points of zero weight (the basis, orthonormal in the
    w-weighted inner product, does not see them) and points where every integrand vanishes (alone, one
    of them would integrate the constant and all integrands whose integrals are zero). When ||G @ w|| is
    zero up to round-off, or always with relative_to="integrands" (what a hyper-reduced ROM asks: its
    residual's integrals vanish at equilibrium to the solver's tolerance, far above round-off), errors are
    relative to sqrt(sum w) ||G||_{F,w}, the Cauchy-Schwarz bound on the integrals' size (see Cubature).
    `seed` fixes the probes of the randomized range finder: the result is deterministic. Raises ValueError (one line
    naming the argument) on non-finite G or w, negative w, mismatched shapes, tol outside (0, 1)."""
    G, w, sw = _checked(G, w, tol, max_points)
    return _cubature(G, w, sw, tol, max_points, constant, seed, None, np.zeros(0, dtype=np.int64), "G", relative_to)


def extend(cub: Cubature, G_all: np.ndarray, w: np.ndarray, tol: float = 1e-8, max_points: int | None = None,
           constant: bool = True, *, seed: int = 0, relative_to: str = "integrals") -> Cubature:
    """The cubature of G_all (n_rows', n_points), the integrands after an enrichment of the reduced
    basis, updated from `cub` (returns a new Cubature). The stored basis of `cub` starts the range
    finder of G_all, so only new directions cost probes (an old direction G_all no longer has is
    truncated away); the rows of G_all need not keep the old rows in place (a new reduced mode
    interleaves new rows). The greedy restarts from cub.points: the NNLS against the new integrals on
    them (started from cub.weights), then greedy steps as in `empirical_cubature`. The old points stay
    in every NNLS problem until the end (with zero weight where the NNLS puts it, so that a later step
    can bring them back), and only those with zero weight at the end are left out. The result is not
    always a superset: the NNLS solution is basic (at most rank positive weights), so an old point can
    be swapped for new ones that integrate the enlarged basis better; typically a few percent are. Its
    cost is the new probes, one product of G_all with the range, and about as many NNLS solves as new
    basis directions (`n_nnls`), against about rank for a fresh start. w must be the weights `cub` was
    built with; without a stored basis (cub.basis None) the basis is computed from scratch and only the
    greedy restarts."""
    G_all, w, sw = _checked(G_all, w, tol, max_points, name="G_all")
    pts, first = np.unique(np.asarray(cub.points, dtype=np.int64), return_index=True)
    x0 = np.asarray(cub.weights, dtype=np.float64)
    x0 = x0[first] if x0.shape == np.shape(cub.points) else None  # the start of the warm NNLS (any x0 > 0 will do)
    n = G_all.shape[1]
    if pts.size and (pts.min() < 0 or pts.max() >= n):
        raise ValueError(f"cub: expected points in 0..{n - 1} (the columns of G_all), got {pts.min()}..{pts.max()}")
    if max_points is not None and len(pts) > max_points:
        raise ValueError(f"max_points: expected at least the {len(pts)} points of cub, got {max_points}")
    basis = cub.basis
    if basis is not None and (basis.ndim != 2 or basis.shape[1] != n):
        raise ValueError(f"cub: expected a basis with {n} columns (the points of G_all), got shape {basis.shape}")
    return _cubature(G_all, w, sw, tol, max_points, constant, seed, basis, pts, "G_all", relative_to, x0)


# -- input ----------------------------------------------------------------------------------------------

def _checked(G, w, tol, max_points, name="G"):
    G = np.asarray(G)
    if G.ndim != 2 or G.shape[0] == 0 or G.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D array (n_rows, n_points), got shape {G.shape}")
    if not np.issubdtype(G.dtype, np.number) or np.iscomplexobj(G):
        raise ValueError(f"{name}: expected real numbers, got dtype {G.dtype}")
    G = np.ascontiguousarray(G, dtype=np.float64)  # no copy for float64 C-ordered input
    w = np.asarray(w)
    if w.shape != (G.shape[1],):
        raise ValueError(f"w: expected shape ({G.shape[1]},) (one weight per column of {name}), got {w.shape}")
    if not np.issubdtype(w.dtype, np.number) or np.iscomplexobj(w):
        raise ValueError(f"w: expected real numbers, got dtype {w.dtype}")
    w = np.asarray(w, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError("w: expected finite weights, found NaN or Inf")
    if (w < 0).any():
        raise ValueError(f"w: expected non-negative weights, found {int((w < 0).sum())} negative (min {w.min():.3g})")
    if not w.sum() > 0:
        raise ValueError("w: expected a positive total weight, got all zeros")
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)) or not 0 < tol < 1:
        raise ValueError(f"tol: expected a number in (0, 1), got {tol!r}")
    if max_points is not None and (isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer))
                                   or max_points < 1):
        raise ValueError(f"max_points: expected a positive integer or None, got {max_points!r}")
    return G, w, np.sqrt(w)


def _scan(G, w, name):
    """One pass over G in blocks of rows: b = G @ w, ||G||_{F,w} = sqrt(sum_e w_e |G_e|^2), and the
    check that G is finite (the plain sum of squares catches NaN and Inf, also where w_e = 0)."""
    n_rows, n = G.shape
    b = np.empty(n_rows)
    frob2 = total = 0.0
    step = max(1, (1 << 21) // n)  # ~16 MB of temporaries per block
    tmp = np.empty((min(step, n_rows), n))
    with np.errstate(invalid="ignore", over="ignore"):  # reported below, as one ValueError
        for i in range(0, n_rows, step):
            blk = G[i: i + step]
            b[i: i + step] = blk @ w
            sq = np.multiply(blk, blk, out=tmp[: len(blk)])
            frob2 += float((sq @ w).sum())
            total += float(sq.sum())
    if not math.isfinite(total):
        if not np.isfinite(G).all():
            raise ValueError(f"{name}: expected finite values, found NaN or Inf")
        raise ValueError(f"{name}: expected values whose squares are finite, got |{name}| up to {np.abs(G).max():.3g}")
    return b, math.sqrt(frob2)


# -- the basis --------------------------------------------------------------------------------------------

def _orth(Y, keep):
    """Orthonormal rows spanning the rows of Y (p, n) with singular value > keep, from the eigenvectors
    of the small Gram matrix Y Y^T (a tall QR of Y^T costs ten times more). The Gram matrix resolves
    singular values down to ~sqrt(eps) times the largest only: smaller ones are left for later blocks
    (the callers iterate until the residual is small), and a second pass (`_orth` on the near-orthonormal
    result) restores the orthonormality."""
    lam, U = np.linalg.eigh(Y @ Y.T)
    s = np.sqrt(np.clip(lam, 0.0, None))
    kept = s > max(keep, 1e-7 * s[-1]) if len(s) else s > 0
    return (U[:, kept] / s[kept]).T @ Y


def _deflate(Y, blocks, passes=2):
    """Y minus its projection on the orthonormal rows in `blocks` (in place), by classical Gram-Schmidt
    repeated `passes` times (one pass leaves an error ~ eps ||Y|| / (distance to the span); two are
    enough for the directions that are kept)."""
    for _ in range(passes):
        for Q in blocks:
            if len(Q):
                Y -= (Y @ Q.T) @ Q
    return Y


def _range(G, sw, target, Q0, rng):
    """Orthonormal blocks of rows (each (l_i, n)) whose span holds the rows of G sqrt(w) up to a
    residual R with ||R||_F <= target (up to the probe estimate), starting from the orthonormal rows Q0
    (None: from nothing). Blocked adaptive range finder: probe the residual with Gaussian combinations
    of the rows (E ||omega^T R||^2 = ||R||_F^2), stop when every probe of a block is <= target, else add
    the block's significant directions. With at most one block of rows, the rows themselves are the
    probes (exact). Returns the blocks (Q0 first) and the estimate of ||R||_F^2."""
    n_rows, n = G.shape
    Q = [Q0] if Q0 is not None and len(Q0) else []
    exact = n_rows <= _BLOCK
    if exact:
        R = _deflate(G * sw, Q)
    added, p = 0, _BLOCK
    while True:
        # Probes in the weighted space, as rows: (p, n_rows) x (n_rows, n). One deflation pass is enough
        # to measure them: its error, ~ eps ||G sqrt(w)||_F, is far below `target`.
        if exact:
            Y = R
        else:
            Y = rng.standard_normal((p, n_rows)) @ G
            Y *= sw
            _deflate(Y, Q, passes=1)
        norms2 = np.einsum("ij,ij->i", Y, Y)
        est = float(norms2.sum() if exact else norms2.mean())
        if (est if exact else norms2.max()) <= target ** 2 or added >= n_rows:
            break
        # A sketch's singular values exceed the residual's by ~sqrt(p): directions below target / 8 hardly
        # matter, and the next block finds any that do. Y has one >= its largest row norm > target.
        new = _orth(Y, target / 8)
        new = _orth(_deflate(new, Q, passes=1), 0.5)  # second Gram-Schmidt pass, then exact orthonormality
        if not len(new):  # cannot happen in exact arithmetic (see above); round-off must not loop forever
            break
        Q.append(new)
        added += len(new)
        if exact:
            R = _deflate(R, [new])
        else:  # a block that found few new directions is near the end: check with fewer probes
            p = _BLOCK if 2 * len(new) >= p else 16
    return Q, est


def _basis(G, sw, w, eps_svd, Q0, constant, rng):
    """The basis functions Phi (k, n) at the points: the right singular vectors of G sqrt(w) truncated
    at a Frobenius tail <= eps_svd (probe estimate of the unexplored residual included), divided by
    sqrt(w); plus the constant function when asked and missing. Returns Phi, d = Phi @ w and the
    number of rows before the constant."""
    n = G.shape[1]
    blocks, tail2 = _range(G, sw, eps_svd / 2, Q0, rng)
    X = np.vstack(blocks) if blocks else np.zeros((0, n))
    del blocks
    X *= sw  # X = Q sqrt(w): then G @ X^T = (G sqrt(w)) Q^T, and Z^T X = (Z^T Q) sqrt(w) = Phi w
    if len(X):
        _, s, Zt = np.linalg.svd(G @ X.T, full_matrices=False)  # (n_rows, l): G sqrt(w) in the range's coordinates
        tails = np.cumsum((s ** 2)[::-1])[::-1] + tail2  # tails[j]: squared Frobenius norm beyond mode j - 1
        k = int(np.count_nonzero(tails > eps_svd ** 2))
        Phi = Zt[:k] @ X
    else:
        Phi = X
    del X
    np.divide(Phi, w, out=Phi, where=w > 0)
    Phi[:, w == 0] = 0.0
    k = len(Phi)
    if constant:  # the constant function minus its w-orthogonal projection on the basis, twice
        c = 1.0 - (Phi @ w) @ Phi
        c -= (Phi @ (c * w)) @ Phi
        nc = math.sqrt(float((c * c) @ w))
        # Below sqrt(eps) sqrt(V) the constant is in the span to a relative volume error of eps.
        if nc > math.sqrt(_EPS * w.sum()):
            c[w == 0] = 0.0
            Phi = np.vstack([Phi, c / nc])
    return Phi, Phi @ w, k


# -- non-negative least squares ---------------------------------------------------------------------------

_DEP = 100 * _EPS  # a column whose part off the passive span is below this share of its norm is dependent
_trsv = get_blas_funcs("trsv", dtype=np.float64)


class _NNLS:
    """min ||A y - c|| subject to y >= 0, for a set of columns that a greedy grows one at a time: the
    active-set method of Lawson and Hanson (Solving Least Squares Problems, SIAM 1995, ch. 23), kept
    warm between the solves. scipy.optimize.nnls cannot warm-start: every call starts from the empty
    passive set and builds its factorization column by column, O(k p^2) for p passive columns, although
    consecutive greedy problems differ by one column. Here the passive columns F (those with y > 0)
    keep an economic QR factorization A_F = Q R from one solve to the next: a column enters by classical
    Gram-Schmidt with reorthogonalization (CGS2, O(k p)), one leaves by Givens rotations
    (scipy.linalg.qr_delete, in place, O(k p)), and the least-squares solution on F is one triangular
    solve. A solve that starts from the previous solution, with the new column entering the passive set
    directly, costs O(k p) when no weight goes to zero, and O(k p) more per column that leaves or
    comes back, against O(k p^2) from scratch.

    The iteration is Lawson and Hanson's: from a feasible y (y_F > 0), solve the least squares on F; while
    some weight of that solution z is <= 0, move from y towards z until the first weight reaches zero and
    move the columns at zero to the zero set Z; then the column of Z with the largest dual
    a_j^T (c - A y) above round-off enters F, unless it is dependent on F or its least-squares weight
    (the last one of the triangular system) is <= 0 (Lawson and Hanson's test: then the next one is
    tried), and so on until no dual is positive. A column enters F only if its part off span(A_F)
    exceeds _DEP times its norm, and F has at most k columns: the solution is basic (at most k positive
    weights, on independent columns).

    Columns are named by labels (the greedy's point indices): `column(labels)` returns the columns
    (k, len(labels)), or the column of one label (columns of norm ~1, unit in the greedy: the round-off
    threshold on the duals assumes it), and `sides` the same for side columns (the integrands at the points),
    kept in the order of F for the caller's residuals. A column that leaves F stays in the problem (in
    Z) until the end of the solve, and after it only if keep[label]: the problem is always F and Z."""

    def __init__(self, c, n_side, column, sides, keep):
        k = len(c)
        cap = k + 1  # at most k passive columns, and never an empty buffer
        self.c, self.k, self.column, self.sides, self.keep = c, k, column, sides, keep
        self.cnorm = float(np.linalg.norm(c))
        self.Q = np.zeros((cap, k))  # rows 0..p-1: Q^T, orthonormal rows spanning the passive columns
        self.R = np.eye(cap, order="F")  # R in [:p, :p], the identity beyond: one trsv on the whole buffer
        self.qc = np.zeros(cap)  # Q^T c, zero beyond p
        self.A = np.zeros((k, cap), order="F")  # the passive columns, in the order of R
        self.side = np.zeros((n_side, cap), order="F")
        self.y = np.zeros(cap)
        self.F = np.zeros(cap, dtype=np.int64)  # their labels
        self.p = 0
        self._set_zero([])
        self.low = 0  # lowest position of F changed since the last snapshot

    # -- the factorization and the zero set
    def _insert(self, label, a, g):
        """Append the column `label` to F (weight 0); False, and nothing changed, when it is dependent."""
        p = self.p
        if p >= self.k:
            return False
        Qp = self.Q[:p]
        h = Qp @ a
        v = a - h @ Qp
        h2 = Qp @ v  # the second Gram-Schmidt pass: orthogonal to working precision
        v -= h2 @ Qp
        h += h2
        rho = math.sqrt(v @ v)
        if not rho > _DEP * math.sqrt(a @ a):
            return False
        v /= rho
        self.Q[p] = v
        self.R[:p, p] = h
        self.R[p, p] = rho
        self.qc[p] = v @ self.c
        self.A[:, p], self.side[:, p], self.F[p], self.y[p] = a, g, label, 0.0
        self.p = p + 1
        return True

    def _pop(self):
        p = self.p - 1
        self.R[:p, p] = 0.0
        self.R[p, p] = 1.0
        self.qc[p] = 0.0
        self.p = p
        self.low = min(self.low, p)

    def _delete(self, j):
        """Move position j of F to Z (Givens rotations restore the triangular R)."""
        p = self.p
        self._push_zero(int(self.F[j]), self.A[:, j], self.side[:, j])
        if j == p - 1:
            return self._pop()
        # In place, on the buffers: Q[:p - 1] and R[:p - 1, :p - 1] become the factors without column j
        # (with p = k the factorization is the full one, and Q[:p - 1] still spans the columns left).
        Qd, Rd = qr_delete(self.Q[:p].T, self.R[:p, :p], j, 1, which="col", overwrite_qr=True, check_finite=False)
        if not (np.shares_memory(Qd, self.Q) and np.shares_memory(Rd, self.R)):  # a SciPy that did not overwrite
            self.Q[:p] = Qd.T
            self.R[:p, : Rd.shape[1]] = Rd
        self.R[p - 1, :p] = 0.0  # back to the identity beyond p - 1
        self.R[:p, p - 1] = 0.0
        self.R[p - 1, p - 1] = 1.0
        for buf in (self.A, self.side):
            buf[:, j: p - 1] = buf[:, j + 1: p]
        self.y[j: p - 1] = self.y[j + 1: p]
        self.F[j: p - 1] = self.F[j + 1: p]
        self.p = p - 1
        self.qc[: p - 1] = self.Q[: p - 1] @ self.c
        self.qc[p - 1] = 0.0
        self.low = min(self.low, j)

    def _set_zero(self, labels):
        self.Z = [int(s) for s in labels]
        idx = np.array(self.Z, dtype=np.int64)
        n = max(8, 2 * len(idx))
        self.ZA = np.zeros((self.k, n), order="F")
        self.ZS = np.zeros((self.side.shape[0], n), order="F")
        if len(idx):
            self.ZA[:, : len(idx)] = self.column(idx)
            self.ZS[:, : len(idx)] = self.sides(idx)

    def _push_zero(self, label, a, g):
        nz = len(self.Z)
        if nz == self.ZA.shape[1]:
            self.ZA = np.asfortranarray(np.hstack([self.ZA, np.zeros_like(self.ZA)]))
            self.ZS = np.asfortranarray(np.hstack([self.ZS, np.zeros_like(self.ZS)]))
        self.ZA[:, nz], self.ZS[:, nz] = a, g
        self.Z.append(label)

    def _remove_zero(self, q):
        nz = len(self.Z)
        for buf in (self.ZA, self.ZS):
            buf[:, q: nz - 1] = buf[:, q + 1: nz]
        del self.Z[q]

    def _factor(self, labels, independent=False):
        """Reset F to `labels` (weights 0), by one Householder QR when the columns are independent (or
        known to be: `independent`), else column by column; returns the labels left out as dependent."""
        self.R[:] = np.eye(len(self.y))
        self.qc[:] = 0.0
        self.p = self.low = 0
        labels = np.asarray(labels, dtype=np.int64)
        m = len(labels)
        if not m:
            return []
        A, S = self.column(labels), self.sides(labels)
        if m <= self.k:
            Qm, Rm = np.linalg.qr(A)
            if independent or np.all(np.abs(np.diag(Rm)) > _DEP * np.linalg.norm(A, axis=0)):
                self.Q[:m] = Qm.T
                self.R[:m, :m] = np.triu(Rm)
                self.qc[:m] = self.Q[:m] @ self.c
                self.A[:, :m], self.side[:, :m], self.F[:m], self.y[:m] = A, S, labels, 0.0
                self.p = m
                return []
        return [int(s) for i, s in enumerate(labels) if not self._insert(s, A[:, i], S[:, i])]

    # -- the solves
    def labels(self):
        """The columns of the problem: F, then Z."""
        return np.concatenate([self.F[: self.p], np.array(self.Z, dtype=np.int64)])

    def start(self, labels, y0, maxiter):
        """Solve on the columns `labels`, from the feasible point y0 > 0 on them (all passive; dependent
        ones start at zero). False when the iteration limit was reached (the state is then undefined)."""
        y0 = dict(zip(np.asarray(labels, dtype=np.int64).tolist(), np.asarray(y0, dtype=np.float64).tolist()))
        self._set_zero(self._factor(labels))
        self.y[: self.p] = [y0[s] for s in self.F[: self.p].tolist()]
        return self._run(maxiter)

    def add(self, label, maxiter):
        """Add the column `label` and solve again from the current solution, the new column entering
        the passive set directly. False when the solution did not change (the column is dependent on
        the passive ones, or its least-squares weight is <= 0: then its dual is <= 0 and the current
        solution stays optimal with it at zero; it joins Z if keep[label]) or when the iteration limit
        was reached (the state is then undefined: restore a snapshot)."""
        a, g = self.column(label), self.sides(label)
        if self._insert(label, a, g):
            if self.qc[self.p - 1] / self.R[self.p - 1, self.p - 1] > 0:
                return self._run(maxiter)
            self._pop()
        if self.keep[label]:
            self._push_zero(int(label), a, g)
        return False

    def _run(self, maxiter):
        it = 0
        while True:
            p = self.p
            z = _trsv(self.R, self.qc)[:p]  # the least squares on F
            if p and z.min() <= 0:  # back towards feasibility: from y to the first weight at zero
                it += 1
                if it > maxiter:
                    return False
                y = self.y[:p]
                neg = np.flatnonzero(z <= 0)
                ratio = y[neg] / (y[neg] - z[neg])
                q = int(np.argmin(ratio))
                y += ratio[q] * (z - y)
                y[neg[q]] = 0.0
                for j in np.flatnonzero(y <= 0)[::-1]:  # from the end: the positions before stay valid
                    self._delete(j)
                continue
            self.y[:p] = z
            nz = len(self.Z)
            if nz:  # the duals of the zero set; one above round-off may lower the residual
                dual = (self.c - self.A[:, :p] @ z) @ self.ZA[:, :nz]
                # their round-off, for columns of norm ~1: ~eps sqrt(k) (||c|| + sum |z|)
                tau = _EPS * math.sqrt(self.k) * (self.cnorm + float(np.abs(z).sum()))
                entered = False
                for q in np.argsort(-dual, kind="stable"):
                    if not dual[q] > tau:
                        break
                    it += 1
                    if it > maxiter:
                        return False
                    if self._insert(self.Z[q], self.ZA[:, q], self.ZS[:, q]):
                        if self.qc[self.p - 1] / self.R[self.p - 1, self.p - 1] > 0:  # Lawson-Hanson's test
                            self._remove_zero(q)
                            entered = True
                            break
                        self._pop()
                if entered:
                    continue
                kept = [q for q, s in enumerate(self.Z) if self.keep[s]]  # the others leave the problem
                if len(kept) < nz:
                    for buf in (self.ZA, self.ZS):
                        buf[:, : len(kept)] = buf[:, kept]
                    self.Z = [self.Z[q] for q in kept]
            return True

    def snapshot(self):
        """The state (F, its weights, Z), for `restore` after a rejected or failed `add`."""
        self.low = self.p
        return self.p, self.y[: self.p].copy(), self.F[: self.p].copy(), list(self.Z)

    def restore(self, snap):
        """Back to the state of `snap`, F in the same order: by dropping the columns appended since, or
        (when a column of F left in between) by refactoring F."""
        p, y, F, Z = snap
        if self.low >= p:  # only columns appended after the snapshot changed: drop them
            while self.p > p:
                self._pop()
        else:  # the snapshot's columns passed the dependence test once: all of them come back
            self._factor(F, independent=True)
        self.y[:p] = y
        self._set_zero(Z)
        self.low = self.p


# -- the greedy -------------------------------------------------------------------------------------------

def _cubature(G, w, sw, tol, max_points, constant, seed, basis0, S0, name, relative_to="integrals", x0=None):
    if relative_to not in ("integrals", "integrands"):
        raise ValueError(f"relative_to: expected 'integrals' or 'integrands', got {relative_to!r}")
    b, frob = _scan(G, w, name)
    V = float(w.sum())
    scale = math.sqrt(V) * frob  # Cauchy-Schwarz bound on ||b||
    bden = float(np.linalg.norm(b))
    # Zero up to round-off (self-equilibrated integrands, say), or asked: measure errors against the bound
    # on the integrals' size instead.
    if relative_to == "integrands" or not bden > 1e3 * _EPS * scale:
        bden = scale or 1.0
    floor = 1e3 * _EPS * frob  # singular values below this are round-off of G sqrt(w)
    eps_svd = max(_SVD_SHARE * tol * bden / math.sqrt(V), floor)
    Q0 = None if basis0 is None else basis0 * sw
    Phi, d, k_int = _basis(G, sw, w, eps_svd, Q0, constant, np.random.default_rng(seed))
    k = len(Phi)
    dn = float(np.linalg.norm(d)) or 1.0
    cn = np.sqrt(np.einsum("ij,ij->j", Phi, Phi))
    # Candidates: points of positive weight where some training integrand is nonzero. Where all vanish
    # (cells with fixed dofs only, say) only the added constant is nonzero: such a point integrates the
    # constant and every training integrand exactly, alone, and is useless to a reduced model (its
    # Jacobian vanishes there too).
    excluded = ~((np.einsum("ij,ij->j", Phi[:k_int], Phi[:k_int]) > 0) & (w > 0))
    if excluded.all():  # all integrands vanish everywhere: only the volume is left to integrate
        excluded = ~((cn > 0) & (w > 0))
    inv_cn = np.divide(1.0, cn, out=np.zeros_like(cn), where=~excluded)  # the greedy compares directions
    limit = max_points if max_points is not None else np.inf
    max_iter = 3 * k + len(S0) + 50
    n_nnls = 0

    # The NNLS problem: unit columns Phi[:, s] / cn[s] and the unit right-hand side d / dn (a positive
    # rescaling keeps the solution set); the side columns G[:, s] give the training error. Its columns:
    # the selected points, the points `extend` started from (pinned: kept at zero weight until the end, so
    # that later steps may use them again), and the new point of each step.
    S = np.asarray(S0, dtype=np.int64)
    x0 = np.ones(len(S)) if x0 is None else np.asarray(x0, dtype=np.float64)
    if len(S):
        x0, S = x0[~excluded[S]], S[~excluded[S]]
    pinned = np.zeros(len(w), dtype=bool)
    pinned[S] = True
    solver = _NNLS(d / dn, len(b), lambda s: Phi[:, s] * inv_cn[s], lambda s: G[:, s], pinned)

    def measure():
        p = solver.p
        x = solver.y[:p] * dn * inv_cn[solver.F[:p]]
        r = d - dn * (solver.A[:, :p] @ solver.y[:p])
        return x, r, float(np.linalg.norm(solver.side[:, :p] @ x - b)) / bden, float(np.linalg.norm(r)) / dn

    started = False
    if len(S):  # warm start: the previous points, their weights (scaled to the unit columns) as the start
        n_nnls += 1
        y0 = np.where(x0 > 0, x0 * cn[S] / dn, 1.0)
        started = solver.start(S, y0, 20 * len(S) + 50)
        if not started:  # the iteration limit: a degenerate (round-off) problem
            solver = _NNLS(d / dn, len(b), solver.column, solver.sides, pinned)
    if started:
        x, r, eG, eB = measure()
    else:
        x, r, eG, eB = np.zeros(0), d.copy(), float(np.linalg.norm(b)) / bden, 1.0
    if k == 0:
        eB = 0.0
    history = [eG]
    tabu = np.zeros(len(w), dtype=bool)
    stalls = iters = 0
    reason = "converged"
    while eG > tol or eB > tol:
        if solver.p >= limit:
            reason = "max_points"
            break
        if iters >= max_iter:
            reason = "max_iter"
            break
        iters += 1
        score = (r @ Phi) * inv_cn  # one product over all points
        score[excluded | tabu] = -np.inf
        score[solver.labels()] = -np.inf
        i = int(np.argmax(score))
        if not score[i] > 0:  # no point can lower the residual (the NNLS optimality holds everywhere)
            reason = "stalled"
            break
        snap = solver.snapshot()
        n_nnls += 1
        trial = measure() if solver.add(i, 20 * (solver.p + len(solver.Z) + 1) + 50) else None
        if trial is None or trial[-1] >= eB * (1 - 1e-12):  # no progress: a round-off pick, not retried now
            solver.restore(snap)
            tabu[i] = True
            stalls += 1
            if stalls >= _PATIENCE:
                reason = "stalled"
                break
            continue
        x, r, eG, eB = trial
        tabu[:] = False
        stalls = 0
        history.append(eG)
    S = solver.F[: solver.p].copy()
    S, x = S[x > 0], x[x > 0]
    order = np.argsort(S)
    return Cubature(points=S[order], weights=x[order], error=eG, history=np.array(history), basis_error=eB,
                    rank=k, n_nnls=n_nnls, converged=reason == "converged", reason=reason, basis=Phi)
