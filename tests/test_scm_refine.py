"""SCM refined where its lower bound is not positive: the shifted thermal block
A(mu) = sum_q mu_q A_q - sigma M (2x2 blocks, mu_q in [0.1, 1], sigma in [0, 1.5], 225 dofs).

alpha(mu) = lambda_min(A(mu), X) >= min_q mu_q - sigma / lambda_1(X, M) > 0.1 - 1.5 / 19.7 = 0.024 on the
whole box, but the negative mass term makes the SCM relaxation loose at the corners (sigma large, all
mu_q small): a greedy on a training set alone leaves LB <= 0 at some of the 32 corners, where the RB
error bound is infinite. The refinement adds constraint points there; the reference is LAPACK's dense
generalized eigen-solve. Runtime a few seconds."""
import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from rom.hifi.discretization.operators import Operators, operators_dataset
from rom.hifi.problems import ThermalBlock
from rom.reduction.scm import box_corners, scm_greedy

BOUNDS = np.array([[0.1, 1.0]] * 4 + [[0.0, 1.5]])


def shifted_block():
    p = ThermalBlock(16, (2, 2))
    ops = Operators.from_dataset(operators_dataset(p))
    return ops.X, [*ops.A_terms, -ops.M]


def theta(mu):
    return np.asarray(mu, dtype=float)  # (mu_0 .. mu_3, sigma): sigma multiplies -M


def dense_alpha(X, terms, mu):
    """alpha(mu) by LAPACK (dense generalized symmetric eigen-solve) and its rounding (backward
    stable: n eps times the largest eigenvalue in magnitude)."""
    Xd = X.toarray()
    out, rounding = [], []
    for th in theta(mu):
        lam = sla.eigh(sum(t * T.toarray() for t, T in zip(th, terms)), Xd, eigvals_only=True)
        out.append(lam[0])
        rounding.append(len(lam) * np.finfo(float).eps * np.abs(lam).max())
    return np.array(out), np.array(rounding)


def test_scm_refined_to_a_positive_bound_at_every_box_corner():
    X, terms = shifted_block()
    assert np.all(sp.linalg.eigsh(terms[-1], 1, which="LA")[0] < 0)  # the mass term is negative definite
    rng = np.random.default_rng(3)
    train = BOUNDS[:, 0] + np.ptp(BOUNDS, axis=1) * rng.random((40, len(BOUNDS)))
    corners = box_corners(BOUNDS)
    assert corners.shape == (32, 5)
    alpha, rounding = dense_alpha(X, terms, corners)
    assert np.all(alpha - rounding > 0)  # coercive at every corner: refinement must succeed there

    scm, h = scm_greedy(X, terms, theta, train, tol=0.5, check=corners)
    lb = scm.lower_bound(corners)
    assert h.refined and h.nonpositive == 0 and not h.warning, (h.refined, h.nonpositive, h.warning)
    assert np.all(lb > 0), lb
    # Still a lower bound: below alpha less the dense reference's own rounding.
    assert np.all(lb <= alpha - rounding), (lb - alpha).max()
    test = BOUNDS[:, 0] + np.ptp(BOUNDS, axis=1) * rng.random((30, len(BOUNDS)))
    alpha_t, rounding_t = dense_alpha(X, terms, test)
    assert np.all(scm.lower_bound(test) <= alpha_t - rounding_t)


def test_scm_warns_once_where_the_problem_is_not_coercive():
    """sigma up to 3: alpha < 0 at the corners with all mu_q = 0.1 and sigma = 3 (0.1 - 3 / 19.7): no
    refinement can make LB positive there; one warning names how many points and one of them."""
    X, terms = shifted_block()
    bounds = BOUNDS.copy()
    bounds[-1, 1] = 3.0
    train = bounds[:, 0] + np.ptp(bounds, axis=1) * np.random.default_rng(4).random((40, len(bounds)))
    # Training points must be coercive (greedy), so keep them at sigma <= 1.5.
    train[:, -1] = np.minimum(train[:, -1], 1.5)
    corners = box_corners(bounds)
    alpha, rounding = dense_alpha(X, terms, corners)
    not_coercive = alpha + rounding < 0
    assert not_coercive.any()
    scm, h = scm_greedy(X, terms, theta, train, tol=0.5, check=corners)
    lb = scm.lower_bound(corners)
    assert h.nonpositive >= not_coercive.sum() and h.warning.count("SCM lower bound <= 0") == 1
    assert np.all(lb[not_coercive] <= 0)
    assert np.all(lb <= alpha + rounding)
