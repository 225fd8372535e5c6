"""DEIM / QDEIM index selection, Gappy POD and incremental POD."""
import numpy as np
import pytest
import scipy.sparse as sp

from rom.reduction import deim
from rom.reduction.gappy import GappyPOD
from rom.reduction.incremental_pod import IncrementalPOD
from rom.reduction.pod import pod


def _family(n=400, m_mu=60):
    """Snapshots of the non-affine family f(x; mu) = exp(-mu x^2) sin(3 x) / (1 + mu x)."""
    x = np.linspace(0, 2, n)
    mu = np.linspace(0.5, 8.0, m_mu)
    return x, np.exp(-mu[:, None] * x ** 2) * np.sin(3 * x) / (1 + mu[:, None] * x)


@pytest.mark.parametrize("method", ["deim", "qdeim"])
def test_interpolation_is_exact_on_the_span_and_bounded_by_the_lebesgue_constant(method):
    _, F = _family()
    U, _ = pod(F, None, 1e-20, 8)
    P = deim.select(U, method)
    assert len(np.unique(P)) == len(U) == 8
    rng = np.random.default_rng(0)
    f = rng.standard_normal(8) @ U
    assert np.linalg.norm(deim.interpolate(U, P, f[P]) - f) < 1e-12 * np.linalg.norm(f)
    # Outside the span: ||f - I f|| <= Lebesgue constant * ||f - U^T U f|| (U orthonormal).
    _, G = _family(m_mu=37)
    lam = deim.lebesgue_constant(U, P)
    err = np.linalg.norm(deim.interpolate(U, P, G[:, P]) - G, axis=1)
    best = np.linalg.norm(G - (G @ U.T) @ U, axis=1)
    assert np.all(err <= lam * best * (1 + 1e-8) + 1e-14)
    assert lam < 100  # both selections keep the constant small on this smooth family


def test_deim_first_index_is_the_largest_entry_of_the_first_mode_and_qdeim_bound():
    _, F = _family()
    U, _ = pod(F, None, 1e-20, 8)
    assert deim.deim(U)[0] == np.argmax(np.abs(U[0]))
    n, m = U.shape[1], len(U)
    # Drmac-Gugercin: ||U_P^{-1}|| <= sqrt(n - m + 1) * sqrt(4^m + 6 m - 1) / 3 for QDEIM.
    assert deim.lebesgue_constant(U, deim.qdeim(U)) <= np.sqrt(n - m + 1) * np.sqrt(4.0 ** m + 6 * m - 1) / 3


def test_interpolation_error_decays_with_the_basis_size():
    _, F = _family()
    _, G = _family(m_mu=23)
    errs = []
    for m in (2, 4, 8):
        U, _ = pod(F, None, 1e-20, m)
        P = deim.qdeim(U)
        errs.append(np.max(np.linalg.norm(deim.interpolate(U, P, G[:, P]) - G, axis=1) / np.linalg.norm(G, axis=1)))
    assert errs[0] > 10 * errs[1] > 100 * errs[2], errs


def test_gappy_pod_residual_is_zero_on_the_span_and_exact_outside():
    rng = np.random.default_rng(1)
    W = np.linalg.qr(rng.standard_normal((50, 4)))[0].T  # 4 orthonormal modes
    pts = np.arange(0, 50, 3)
    g = GappyPOD(W, pts)
    v = rng.standard_normal(4) @ W
    coef, res = g.fit(v[pts])
    assert res < 1e-13 and np.allclose(g.reconstruct(v[pts]), v, atol=1e-12)
    # A component orthogonal to span(W[:, pts]) shows up fully in the residual.
    Wp = W[:, pts].T
    z = rng.standard_normal(len(pts))
    z -= Wp @ np.linalg.lstsq(Wp, z, rcond=None)[0]
    _, res = g.fit(v[pts] + z)
    assert res == pytest.approx(np.linalg.norm(z) / np.linalg.norm(v[pts] + z), rel=1e-10)
    assert g.operation_count == 2 * len(pts) * 4 + 2 * len(pts) + 16


def test_incremental_pod_matches_the_batch_svd_in_the_X_product():
    rng = np.random.default_rng(2)
    n = 60
    X = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(n, n)).tocsr()
    S = rng.standard_normal((6, 3)) @ rng.standard_normal((3, n)) + 1e-3 * rng.standard_normal((6, n))
    inc = IncrementalPOD.from_snapshots(S[:2], X, tol=1e-12)
    for s in S[2:]:  # one snapshot at a time
        inc.update(s)
    V, lam = pod(S, X, 1e-16, None)
    assert np.allclose(inc.sigma, np.sqrt(lam[: len(inc.sigma)]), rtol=1e-8)
    assert np.allclose(inc.V @ (X @ inc.V.T), np.eye(len(inc.V)), atol=1e-10)
    # Same subspace: every snapshot is reproduced by its X projection.
    R = S - (S @ (X @ inc.V.T)) @ inc.V
    assert np.abs(R).max() < 1e-10
    assert not inc.update(S[0] * 3.0)  # a snapshot in the span adds no direction
