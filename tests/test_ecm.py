"""Empirical cubature (rom.reduction.ecm): positive rules of few points, checked against closed forms,
Cauchy-Schwarz bounds built from the test's own least-squares fits, and the rule's own contract."""
import dataclasses

import numpy as np
import pytest
from numpy.polynomial import legendre
from numpy.polynomial import polynomial as poly
from scipy.optimize import nnls
from scipy.stats import qmc

from rom.reduction.ecm import _NNLS, Cubature, empirical_cubature, extend

EPS = np.finfo(float).eps


def training_error(cub: Cubature, G, w) -> float:
    """The relative training error recomputed from the rule alone (independent of the module)."""
    b = G @ w
    return np.linalg.norm(G[:, cub.points] @ cub.weights - b) / np.linalg.norm(b)


def check_rule(cub: Cubature, G, w, tol):
    assert cub.converged and cub.reason == "converged"
    assert np.all(cub.weights > 0) and np.all(np.diff(cub.points) > 0)  # positive, distinct points
    assert cub.error == pytest.approx(training_error(cub, G, w), rel=1e-6, abs=10 * EPS)
    assert cub.error <= tol and cub.basis_error <= tol
    assert cub.history[-1] == cub.error and cub.n_nnls >= len(cub.history) - 1


# -- 1. polynomials on [0, 1] -----------------------------------------------------------------------------

def test_polynomials_on_the_unit_interval_match_the_closed_forms():
    n, K, tol = 2000, 10, 1e-8
    h = 1.0 / n
    x = (np.arange(n) + 0.5) * h  # midpoints; midpoint weights
    w = np.full(n, h)
    G = x[None, :] ** np.arange(K)[:, None]
    cub = empirical_cubature(G, w, tol)
    check_rule(cub, G, w, tol)
    assert len(cub.points) <= K  # Caratheodory: at most the number of rows (the constant x^0 is one)
    assert cub.rank == K  # cond(G sqrt(w)) ~ 4e6: every monomial direction is far above the truncation
    xs, ws = x[cub.points], cub.weights
    bnorm = np.linalg.norm(G @ w)
    # Against the closed form: the rule is within error ||b|| of the midpoint sums (the training contract),
    # and the midpoint sum of f = x^k is 1/(k+1) - h^2 (f'(1) - f'(0)) / 24 + R with |R| <= 7 h^4 max|f^(4)| / 5760
    # (Euler-Maclaurin for the composite midpoint rule).
    for k in range(K):
        euler_maclaurin = 1 / (k + 1) - h ** 2 * (k if k >= 2 else 0) / 24
        remainder = 7 * h ** 4 * k * (k - 1) * (k - 2) * (k - 3) / 5760
        assert abs(xs ** k @ ws - euler_maclaurin) <= cub.error * bnorm + remainder + 4 * EPS, k
    assert abs(xs ** 9 @ ws - 0.1) <= tol * bnorm + h ** 2 * 9 * 8 / 24  # x^9 against the cruder midpoint bound
    # Another polynomial of the span, p = c . (1, x, .., x^9): |I~(p) - I_h(p)| <= ||c|| ||G_S w~ - b|| by
    # Cauchy-Schwarz, so within ||c|| tol ||b|| of the midpoint sum, which is h^2/24 max|p''| from the integral.
    c = np.random.default_rng(0).standard_normal(K)
    p = poly.polyval(x, c)
    exact = np.sum(c / np.arange(1, K + 1))
    d2 = poly.polyval(x, poly.polyder(c, 2))
    assert abs(p[cub.points] @ ws - p @ w) <= np.linalg.norm(c) * tol * bnorm
    assert abs(p[cub.points] @ ws - exact) <= np.linalg.norm(c) * tol * bnorm + h ** 2 / 24 * np.abs(d2).max() * 1.01
    # The shifted Legendre P9(2x - 1), exact integral 0: its monomial coefficients have norm ~7e5 (the
    # conditioning of the monomial basis), so the bound is ||c|| * error * ||b|| (the reported error, here
    # ~1e-16, not tol) plus the difference between the direct evaluation and the monomial form.
    cL = np.zeros(1)
    for j, a in enumerate(legendre.leg2poly([0] * 9 + [1])):  # P9(t) at t = 2x - 1, in powers of x
        cL = poly.polyadd(cL, a * poly.polypow([-1.0, 2.0], j))
    P9 = legendre.legval(2 * x - 1, [0] * 9 + [1])
    gap = np.abs(P9 - cL @ G).max() * (ws.sum() + 1.0)
    assert np.linalg.norm(cL) > 1e5
    assert abs(P9[cub.points] @ ws - P9 @ w) <= np.linalg.norm(cL) * max(cub.error, EPS) * bnorm + gap
    assert abs(P9[cub.points] @ ws) <= 1e-9  # and the integral of P9 is 0 (midpoint sum ~1e-18)


# -- 2. random low-rank integrands ------------------------------------------------------------------------

@pytest.mark.parametrize("n_rows", [40, 300])  # all rows at once / the randomized range finder
def test_random_low_rank_integrands(n_rows):
    r, n, tol = 20, 5000, 1e-10
    rng = np.random.default_rng(1)
    B = rng.standard_normal((r, n))  # the row space: rough random functions
    G = rng.standard_normal((n_rows, r)) @ B
    w = 0.5 + rng.random(n)
    cub = empirical_cubature(G, w, tol)
    check_rule(cub, G, w, tol)
    assert cub.rank == r + 1 and len(cub.points) <= r + 1  # the constant is not in the span: r + 1
    assert cub.weights.sum() == pytest.approx(w.sum(), rel=1e-12)  # the volume is integrated (constant=True)
    # A new integrand of the same row space, g = alpha . G exactly up to rounding (alpha by least squares):
    # |I~(g) - I(g)| <= ||alpha|| ||G_S w~ - b|| + rounding; ||alpha|| <= ||g|| / sigma_min(G) carries the
    # conditioning of the rows.
    g = rng.standard_normal(r) @ B
    alpha = np.linalg.lstsq(G.T, g, rcond=None)[0]
    e = g - alpha @ G
    bound = np.linalg.norm(alpha) * cub.error * np.linalg.norm(G @ w) + np.abs(e).max() * (w.sum() + cub.weights.sum())
    err = abs(g[cub.points] @ cub.weights - g @ w)
    assert err <= bound + 1e3 * EPS * np.abs(g).max() * w.sum()
    cond = np.linalg.norm(alpha) * np.linalg.norm(G @ w) / abs(g @ w)
    assert err <= 10 * tol * cond * abs(g @ w)  # ~ tol * cond, relative


# -- 3. an FE-like case ----------------------------------------------------------------------------------

NX, NY = 80, 60
XE, YE = np.linspace(0, 1, NX + 1) ** 1.5, np.linspace(0, 1, NY + 1) ** 1.3  # a graded grid
_X, _Y = np.meshgrid(0.5 * (XE[1:] + XE[:-1]), 0.5 * (YE[1:] + YE[:-1]), indexing="ij")
CX, CY = _X.ravel(), _Y.ravel()  # element centroids
AREA = np.outer(np.diff(XE), np.diff(YE)).ravel()  # element areas: the full weights
LO, HI = np.array([0.5, 0.0, 0.0]), np.array([2.0, 1.0, 1.0])


def fe_integrands(mu, modes):
    """Rows (mode j, parameter i): a smooth reduced test function V_j times a nonlinear material response
    s(u) = tanh(u) (1 + u)^2 of a parametrized field u(x, y; mu) (amplitude, centre, width)."""
    u = mu[:, :1] * np.exp(-((CX - mu[:, 1:2]) ** 2 + (CY - 0.5) ** 2) / (0.3 + 0.3 * mu[:, 2:3]))
    s = np.tanh(u) * (1 + u) ** 2
    return np.vstack([s * (np.cos(j * np.pi * CX / 2) * np.cos((j % 2) * np.pi * CY / 2)) for j in modes])


def params(n, seed):
    return qmc.scale(qmc.LatinHypercube(d=3, seed=seed).random(n), LO, HI)


@pytest.fixture(scope="module")
def fe():
    G = fe_integrands(params(60, 0), range(4))  # (240, 4800)
    return G, empirical_cubature(G, AREA, 1e-6)


def test_fe_like_rule_reproduces_out_of_sample_integrals(fe):
    """Bound for a new integrand g (new parameters): write g = alpha . G + e with alpha any coefficients
    (here a truncated least-squares fit in L2(w), the truncation chosen to make the bound smallest) and e
    the rest. Then I~(g) - I(g) = alpha . (G_S w~ - b) + I~(e) - I(e), so
        |I~(g) - I(g)| <= ||alpha|| error ||b|| + sum(w~) max_S |e| + sqrt(sum w) ||e||_{L2(w)}:
    the training error times the size of g in training integrands, plus the projection error of g onto
    the training row space. Both parts are computed here without the module's basis."""
    G, cub = fe
    tol = 1e-6
    check_rule(cub, G, AREA, tol)
    assert len(cub.points) <= cub.rank < 0.1 * G.shape[1]  # a reduction: ~90 of 4800 elements
    assert cub.weights.sum() == pytest.approx(AREA.sum(), rel=1e-12)
    sw = np.sqrt(AREA)
    U, s, Vt = np.linalg.svd(G * sw, full_matrices=False)
    bnorm = np.linalg.norm(G @ AREA)
    Gt = fe_integrands(params(10, 7), range(4))
    It, It_rule = Gt @ AREA, Gt[:, cub.points] @ cub.weights
    bound = np.zeros(len(Gt))
    for i, g in enumerate(Gt):
        bounds = []
        for k in np.searchsorted(-s, -s[0] * 10.0 ** -np.arange(2, 13)):
            alpha = U[:, :k] @ ((Vt[:k] @ (g * sw)) / s[:k])
            e = g - alpha @ G
            bounds.append(np.linalg.norm(alpha) * cub.error * bnorm + cub.weights.sum() * np.abs(e[cub.points]).max()
                          + np.sqrt(AREA.sum()) * np.linalg.norm(e * sw))
        bound[i] = min(bounds)
    assert np.all(np.abs(It_rule - It) <= bound)
    # The bound is informative (here its training part dominates: the 60 parameters sample the family well),
    # and the rule generalizes to the level of the training tolerance.
    assert bound.max() <= 20 * tol * np.abs(It).max()
    assert np.abs(It_rule - It).max() <= tol * np.abs(It).max()


def test_self_equilibrated_integrands_and_points_where_all_vanish(fe):
    """Residual-like integrands whose integrals are zero (up to round-off), and a strip of elements where
    every integrand vanishes (cells with fixed dofs only). One such element with weight sum(w) would
    integrate all of them and the constant exactly, alone: it must not be chosen; and the error is measured
    against the Cauchy-Schwarz bound sqrt(sum w) ||G||_{F,w}, since ||b|| is round-off."""
    G, _ = fe
    G0 = G - np.outer(G @ AREA, np.ones_like(AREA)) / AREA.sum()  # mean-free rows
    dead = CX < XE[3]  # the first three columns of elements
    G0[:, dead] = 0.0
    G0 -= np.outer(G0 @ AREA, ~dead) / AREA[~dead].sum()  # mean-free again, still 0 on the strip
    scale = np.sqrt(AREA.sum()) * np.linalg.norm(G0 * np.sqrt(AREA))
    # Integrals at the level a converged solver or a floating-point sum leaves: ||b|| = 3e-14 scale.
    G0[:, ~dead] += 3e-14 * scale / (AREA[~dead].sum() * np.sqrt(len(G0)))
    assert np.linalg.norm(G0 @ AREA) == pytest.approx(3e-14 * scale, rel=0.1)
    cub = empirical_cubature(G0, AREA, 1e-6)
    assert cub.converged and np.all(cub.weights > 0)
    assert not dead[cub.points].any() and len(cub.points) > 10
    assert cub.weights.sum() == pytest.approx(AREA.sum(), rel=1e-12)
    assert cub.error == pytest.approx(np.linalg.norm(G0[:, cub.points] @ cub.weights - G0 @ AREA) / scale, rel=1e-6, abs=1e-15)
    assert cub.error <= 1e-6


def test_max_points_stops_and_reports_the_reached_error(fe):
    G, _ = fe
    cub = empirical_cubature(G, AREA, 1e-6, max_points=5)
    assert not cub.converged and cub.reason == "max_points" and len(cub.points) == 5
    assert cub.error == pytest.approx(training_error(cub, G, AREA), rel=1e-9) and cub.error > 1e-6
    # An unreachable tolerance (below round-off) ends too, with the error reached.
    tiny = empirical_cubature(G[:40], AREA, 1e-16)
    assert not tiny.converged and tiny.error == pytest.approx(training_error(tiny, G[:40], AREA), rel=1e-6, abs=1e-15)
    assert tiny.error < 1e-12


# -- 4. extend --------------------------------------------------------------------------------------------

def test_extend_after_an_enrichment_restarts_from_the_current_points(fe):
    G, cub = fe
    tol = 1e-6
    mu = params(60, 0)
    # One more reduced mode: its 60 rows arrive, and the rows come interleaved (as (mode, snapshot) pairs
    # of a grown basis do), so the old rows are not a leading block.
    G_all = fe_integrands(mu, range(5))[np.random.default_rng(3).permutation(300)]
    new = extend(cub, G_all, AREA, tol)
    check_rule(new, G_all, AREA, tol)
    fresh = empirical_cubature(G_all, AREA, tol)
    check_rule(fresh, G_all, AREA, tol)
    # Not a strict superset in general: nnls keeps at most rank positive weights, and may swap an old point
    # for new ones (the module docstring). Here at most a few percent of the old points go.
    kept = np.isin(cub.points, new.points).sum()
    assert kept >= 0.9 * len(cub.points), (kept, len(cub.points))
    assert new.rank > cub.rank and len(new.points) > len(cub.points)
    # The restart costs about one nnls per new point, a fresh start one per point.
    assert new.n_nnls <= 0.3 * fresh.n_nnls, (new.n_nnls, fresh.n_nnls)
    assert new.n_nnls <= len(new.points) - kept + 5
    # Without a stored basis the basis is recomputed and the greedy still restarts from the points.
    bare = extend(dataclasses.replace(cub, basis=None), G_all, AREA, tol)
    check_rule(bare, G_all, AREA, tol)
    assert bare.n_nnls < 0.5 * fresh.n_nnls



def test_extend_restart_is_the_nnls_solution_on_the_old_points(fe):
    """The restart of `extend` (the warm-started NNLS from the old points and weights) against a cold
    scipy.optimize.nnls on the same columns of the returned basis: the same training error (history[0])."""
    G, cub = fe
    G_all = fe_integrands(params(60, 0), range(5))
    new = extend(cub, G_all, AREA, 1e-6)
    Phi = new.basis
    d = Phi @ AREA
    cols = Phi[:, cub.points] / np.linalg.norm(Phi[:, cub.points], axis=0)
    y, _ = nnls(cols, d / np.linalg.norm(d))
    x = y * np.linalg.norm(d) / np.linalg.norm(Phi[:, cub.points], axis=0)
    b = G_all @ AREA
    assert new.history[0] == pytest.approx(np.linalg.norm(G_all[:, cub.points] @ x - b) / np.linalg.norm(b), rel=1e-9)
    assert 0 < np.count_nonzero(y == 0) < len(y)  # some old weights went to zero: Lawson-Hanson's inner loop ran

# -- 5. bad input -----------------------------------------------------------------------------------------

def _bad(kind):
    G, w = np.ones((3, 4)), np.ones(4)
    if kind == "G nan":
        G[1, 2] = np.nan
    elif kind == "G inf at a zero weight":
        G[0, 0], w[0] = np.inf, 0.0
    elif kind == "G 1-D":
        G = np.ones(4)
    elif kind == "G text":
        G = np.array([["a"] * 4] * 3)
    elif kind == "w nan":
        w[1] = np.nan
    elif kind == "w negative":
        w[3] = -1.0
    elif kind == "w shape":
        w = np.ones(5)
    elif kind == "w zero":
        w[:] = 0.0
    return G, w


@pytest.mark.parametrize("kind, name", [("G nan", "G"), ("G inf at a zero weight", "G"), ("G 1-D", "G"), ("G text", "G"),
                                        ("w nan", "w"), ("w negative", "w"), ("w shape", "w"), ("w zero", "w")])
def test_bad_arrays_raise_one_line_naming_the_argument(kind, name):
    G, w = _bad(kind)
    with pytest.raises(ValueError, match=f"^{name}: expected ") as info:
        empirical_cubature(G, w)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, name", [({"tol": 0.0}, "tol"), ({"tol": -1e-6}, "tol"), ({"tol": float("nan")}, "tol"),
                                          ({"tol": 1.0}, "tol"), ({"max_points": 0}, "max_points"),
                                          ({"max_points": 2.5}, "max_points")])
def test_bad_settings_raise_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: expected "):
        empirical_cubature(np.ones((3, 4)), np.ones(4), **kwargs)


def test_extend_checks_its_inputs():
    G, w = np.random.default_rng(0).random((3, 50)), np.ones(50)
    cub = empirical_cubature(G, w)
    with pytest.raises(ValueError, match="^G_all: expected "):
        extend(cub, np.full((3, 50), np.inf), w)
    with pytest.raises(ValueError, match="^w: expected shape"):
        extend(cub, G, w[:49])
    with pytest.raises(ValueError, match="^cub: expected "):
        extend(cub, G[:, :40], w[:40])  # the stored basis is for 50 points


# -- 6. scale invariance ----------------------------------------------------------------------------------

def test_scaling_the_integrands_or_the_weights_changes_nothing_but_the_weights(fe):
    """A power-of-two scale is exact in floating point, and every step of the rule is scale-equivariant:
    the same points and the same weights to the last bit. A scale of 1e6 rounds G (relative 1e-16), and
    the basis directions near the truncation, at singular values ~4e-8 of the largest, move by ~1e-8:
    the same points, and weights that move by that much times cond(Phi[:, S]) (~50 here), in the norm
    of the total weight (a small weight may move more relative to itself)."""
    G, cub = fe
    exact = empirical_cubature(G * 2.0 ** 20, AREA, 1e-6)
    assert np.array_equal(exact.points, cub.points) and np.array_equal(exact.weights, cub.weights)
    big = empirical_cubature(G * 1e6, AREA, 1e-6)
    assert np.array_equal(big.points, cub.points)
    assert np.abs(big.weights - cub.weights).sum() <= 1e-6 * cub.weights.sum()
    assert big.error == pytest.approx(cub.error, rel=1e-3)
    # Weights in other units (mm^2 for m^2): the same points, the weights in the new units.
    mm = empirical_cubature(G, AREA * 1e6, 1e-6)
    assert np.array_equal(mm.points, cub.points)
    assert np.abs(mm.weights - cub.weights * 1e6).sum() <= 1e-6 * mm.weights.sum()


# -- 7. the warm-started NNLS of the greedy ---------------------------------------------------------------

def _nnls_problem(seed, m, n, degenerate=False):
    """Unit columns and a unit right-hand side (as the greedy builds them); `degenerate` adds a duplicate
    column, a positive combination of two others and a column of the right-hand side's sign-flip."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    c = rng.standard_normal(m)
    if degenerate:
        A[:, 1] = A[:, 0]
        A[:, 2] = A[:, 3] + 2 * A[:, 4]
        A[:, 5] = -c
    return A / np.linalg.norm(A, axis=0), c / np.linalg.norm(c)


def _nnls_solver(A, c, keep):
    # side columns: (label, label^2), to check that they follow the passive columns
    return _NNLS(c, 2, lambda s: A[:, s], lambda s: np.array([s, np.square(s)], dtype=float), keep)


def check_nnls(solver, A, c):
    """The solver's solution against scipy.optimize.nnls on the columns of its problem: the same objective
    (1e-12 relative, or round-off of ||c||^2 = 1 for an exact fit), nonnegative, the KKT conditions (duals
    <= 0, zero on the positive weights), a basic solution, side columns in the order of the passive ones."""
    cols = solver.labels()
    p, F = solver.p, solver.F[: solver.p]
    assert len(np.unique(cols)) == len(cols) and p <= A.shape[0]
    assert np.all(solver.y[:p] > 0)
    y = np.zeros(A.shape[1])
    y[F] = solver.y[:p]
    ref = nnls(A[:, cols], c)[0] if len(cols) else np.zeros(0)  # scipy's nnls crashes without columns
    f = np.linalg.norm(A @ y - c) ** 2
    f_ref = np.linalg.norm(A[:, cols] @ ref - c) ** 2
    assert abs(f - f_ref) <= 1e-12 * f_ref + 1e-26, (f, f_ref)
    dual = A[:, cols].T @ (c - A @ y)
    assert dual.max(initial=0.0) <= 1e-12 and np.abs(dual[y[cols] > 0]).max(initial=0.0) <= 1e-12
    if p:
        assert np.linalg.matrix_rank(A[:, F]) == p  # independent passive columns: at most m positive weights
    assert np.array_equal(solver.side[:, :p], np.array([F, F ** 2], dtype=float))
    return f


@pytest.mark.parametrize("m, n, degenerate", [(40, 15, False), (40, 40, False), (30, 60, False), (60, 25, True),
                                              (20, 80, True)])
def test_nnls_from_a_warm_start_matches_scipy(m, n, degenerate):
    """All columns passive at a feasible y0 > 0 (what `extend` starts from): Lawson-Hanson's iteration
    drops the weights that go negative and brings back the columns with a positive dual."""
    for seed in range(5):
        A, c = _nnls_problem(seed, m, n, degenerate)
        solver = _nnls_solver(A, c, np.ones(n, dtype=bool))
        y0 = np.random.default_rng(seed).random(n) + 0.1
        assert solver.start(np.arange(n), y0, 20 * n + 50)
        assert sorted(solver.labels()) == list(range(n))  # the kept columns stay in the problem, at zero or not
        check_nnls(solver, A, c)


@pytest.mark.parametrize("m, n, degenerate", [(40, 30, False), (30, 60, False), (25, 50, True)])
def test_nnls_adding_columns_one_at_a_time_matches_scipy(m, n, degenerate):
    """The greedy's use: each added column enters the passive set directly, and the solution is updated
    from the previous one. With every column kept the problem is all the columns added so far; with half
    of them kept, the others leave the problem when their weight is zero at the end of a solve."""
    for seed in range(4):
        A, c = _nnls_problem(seed, m, n, degenerate)
        order = np.random.default_rng(seed).permutation(n)
        for keep in (np.ones(n, dtype=bool), np.random.default_rng(seed + 10).random(n) < 0.5):
            solver = _nnls_solver(A, c, keep)
            f_prev = 1.0
            for i, s in enumerate(order):
                changed = solver.add(s, 20 * (i + 1) + 50)
                f = check_nnls(solver, A, c)
                # a rejected column leaves the solution as it was (its dual is <= 0); an accepted one lowers
                # the objective
                assert f <= f_prev * (1 + 1e-12) and (not changed or f < f_prev)
                f_prev = f
                if keep.all():
                    assert sorted(solver.labels()) == sorted(order[: i + 1])
                assert set(solver.labels()) >= {int(t) for t in order[: i + 1] if keep[t]} | set(solver.F[: solver.p])


def test_nnls_snapshot_restore_undoes_a_trial():
    """A greedy step that is rejected goes back to the snapshot: by dropping the appended columns, or by
    refactoring when a passive column left during the trial (and after a failed solve: maxiter)."""
    A, c = _nnls_problem(0, 40, 80)
    solver = _nnls_solver(A, c, np.zeros(80, dtype=bool))
    for s in range(30):
        solver.add(s, 1000)
    before = check_nnls(solver, A, c)
    paths = set()
    for s in range(30, 80):
        snap = solver.snapshot()
        p, y, F, Z = snap
        for maxiter in (1, 1000):  # maxiter 1: the solve fails after one weight left, if more must
            ok = solver.add(s, maxiter)
            moved = solver.low < p
            paths.add((maxiter, ok, moved))
            solver.restore(snap)
            assert solver.p == p and np.array_equal(solver.F[:p], F) and np.array_equal(solver.y[:p], y)
            assert solver.Z == Z
            assert check_nnls(solver, A, c) == pytest.approx(before, rel=1e-12)
    assert {(1, False, True), (1000, True, True), (1000, True, False)} <= paths  # each path was taken
    # and the restored solver keeps working
    for s in range(30, 80):
        solver.add(s, 1000)
        check_nnls(solver, A, c)
