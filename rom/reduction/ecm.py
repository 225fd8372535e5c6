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
   integrand is nonzero), solve scipy.optimize.nnls on the selected columns, drop
   the points whose weight went to zero, repeat. By the NNLS optimality conditions every accepted step
   strictly lowers ||r||; nnls returns a basic solution, so |S| <= k (Caratheodory). The greedy stops
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
nnls of size (k, |S|) (|S| <= k). Measured on a shared 2-core machine, G (2000, 2e5) of smooth integrands:
about 8 s for k ~ 60-90, 20-30 s for k ~ 190-250 (tol 1e-6 and 1e-8).
Memory: G is read, never copied (float64 C-ordered input; anything else is converted once); besides G,
about (l + k) n_points floats at the peak (the range and the basis; the Cubature keeps the basis,
8 k n_points bytes, for `extend`), and (n_rows, l) for the projected G.

`extend` updates a cubature after the ROM basis was enriched: the stored basis starts the range finder
of the new integrand matrix (only the new directions cost probes), and the greedy restarts from the
current points (re-solved by nnls against the new integrals) instead of from nothing."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

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
    started from). `n_nnls` counts the nnls solves of the call (one per greedy step, plus the restart
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
    n_nnls: int = 0  # nnls solves this call made
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
    interleaves new rows). The greedy restarts from cub.points: nnls against the new integrals on them,
    then greedy steps as in `empirical_cubature`. The old points stay in every nnls problem until the
    end (with zero weight where nnls puts it, so that a later step can bring them back), and only those
    with zero weight at the end are left out. The result is not always a superset: nnls returns a basic
    solution (at most rank positive weights), so an old point can be swapped for new ones that integrate
    the enlarged basis better; typically a few percent are. Its cost is the new probes, one product of
    G_all with the range, and about as many nnls as new basis directions (`n_nnls`), against about rank
    for a fresh start. w must be the weights `cub` was built with; without a stored basis
    (cub.basis None) the basis is computed from scratch and only the greedy restarts."""
    G_all, w, sw = _checked(G_all, w, tol, max_points, name="G_all")
    pts = np.unique(np.asarray(cub.points, dtype=np.int64))
    n = G_all.shape[1]
    if pts.size and (pts.min() < 0 or pts.max() >= n):
        raise ValueError(f"cub: expected points in 0..{n - 1} (the columns of G_all), got {pts.min()}..{pts.max()}")
    if max_points is not None and len(pts) > max_points:
        raise ValueError(f"max_points: expected at least the {len(pts)} points of cub, got {max_points}")
    basis = cub.basis
    if basis is not None and (basis.ndim != 2 or basis.shape[1] != n):
        raise ValueError(f"cub: expected a basis with {n} columns (the points of G_all), got shape {basis.shape}")
    return _cubature(G_all, w, sw, tol, max_points, constant, seed, basis, pts, "G_all", relative_to)


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


# -- the greedy -------------------------------------------------------------------------------------------

def _cubature(G, w, sw, tol, max_points, constant, seed, basis0, S0, name, relative_to="integrals"):
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

    # The state: the selected points S, their weights x (0 only for the points `extend` started from,
    # kept until the end so that later steps may use them again), and the columns Phi[:, S] / cn[S]
    # and G[:, S] (gathered once per point: a gather from a large G costs a cache miss per entry).
    def solve(S, P, GS):
        nonlocal n_nnls
        n_nnls += 1
        try:  # unit columns and a unit right-hand side: a positive rescaling keeps the solution set
            y, _ = nnls(P, d / dn, maxiter=20 * len(S) + 50)
        except RuntimeError:  # too many iterations: a degenerate (round-off) problem
            return None
        keep = (y > 0) | pinned[S]
        S, P, GS, x = S[keep], P[:, keep], GS[:, keep], y[keep] * dn * inv_cn[S[keep]]
        r = d - (P * cn[S]) @ x
        return S, P, GS, x, r, float(np.linalg.norm(GS @ x - b)) / bden, float(np.linalg.norm(r)) / dn

    S = np.asarray(S0, dtype=np.int64)
    S = S[~excluded[S]] if len(S) else S
    pinned = np.zeros(len(w), dtype=bool)
    pinned[S] = True
    state = solve(S, Phi[:, S] * inv_cn[S], G[:, S]) if len(S) else None
    if state is None:
        S = np.zeros(0, dtype=np.int64)
        state = S, np.zeros((k, 0)), np.zeros((len(b), 0)), np.zeros(0), d.copy(), float(np.linalg.norm(b)) / bden, 1.0
    S, P, GS, x, r, eG, eB = state
    if k == 0:
        eB = 0.0
    history = [eG]
    tabu = np.zeros(len(w), dtype=bool)
    stalls = iters = 0
    reason = "converged"
    while eG > tol or eB > tol:
        if np.count_nonzero(x > 0) >= limit:
            reason = "max_points"
            break
        if iters >= max_iter:
            reason = "max_iter"
            break
        iters += 1
        score = (r @ Phi) * inv_cn  # one product over all points
        score[excluded | tabu] = -np.inf
        score[S] = -np.inf
        i = int(np.argmax(score))
        if not score[i] > 0:  # no point can lower the residual (the NNLS optimality holds everywhere)
            reason = "stalled"
            break
        trial = solve(np.append(S, i), np.column_stack([P, Phi[:, i] * inv_cn[i]]), np.column_stack([GS, G[:, i]]))
        if trial is None or trial[-1] >= eB * (1 - 1e-12):  # no progress: a round-off pick, not retried now
            tabu[i] = True
            stalls += 1
            if stalls >= _PATIENCE:
                reason = "stalled"
                break
            continue
        S, P, GS, x, r, eG, eB = trial
        tabu[:] = False
        stalls = 0
        history.append(eG)
    S, x = S[x > 0], x[x > 0]
    order = np.argsort(S)
    return Cubature(points=S[order], weights=x[order], error=eG, history=np.array(history), basis_error=eB,
                    rank=k, n_nnls=n_nnls, converged=reason == "converged", reason=reason, basis=Phi)
