"""POD by the method of snapshots in an inner product X."""
import numpy as np
import scipy.sparse as sp

from rom.reduction.linalg import gram_schmidt
from rom.reduction.pod import pod, projection_errors


def spd(n, rng):
    B = sp.random(n, n, density=0.05, random_state=rng)
    return (B @ B.T + sp.identity(n) * n * 0.1).tocsr()


def test_modes_are_x_orthonormal_and_reproduce_the_snapshots():
    rng = np.random.default_rng(0)
    X = spd(200, rng)
    S = rng.standard_normal((12, 5)) @ rng.standard_normal((5, 200))  # rank 5
    V, lam = pod(S, X, tol=1e-14)
    assert len(V) == 5
    np.testing.assert_allclose(V @ X @ V.T, np.eye(5), atol=1e-12)
    err = projection_errors(V, S, X, [5])
    assert err.max() < 1e-10


def test_truncation_follows_the_energy_criterion():
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.standard_normal((300, 8)))
    sigma = 10.0 ** -np.arange(8)  # singular values 1, 1e-1, ..., 1e-7
    C = rng.standard_normal((8, 40))
    C = np.linalg.qr(C.T)[0].T  # orthonormal rows: S has singular values exactly sigma
    S = ((Q * sigma) @ C).T
    # energy left out after k modes: sum_{j>k} sigma_j^2 / sum sigma^2 ~ 1e-2k
    V, lam = pod(S, None, tol=1e-7)
    assert len(V) == 4
    # The correlation matrix squares the singular values: those near sqrt(eps) * sigma_max lose digits.
    np.testing.assert_allclose(np.sqrt(lam[:6]), sigma[:6], rtol=1e-6)


def test_gram_schmidt_drops_dependent_vectors():
    rng = np.random.default_rng(2)
    U = rng.standard_normal((3, 50))
    U = np.vstack([U, U[0] + 2 * U[1]])
    Q = gram_schmidt(U)
    assert len(Q) == 3
    np.testing.assert_allclose(Q @ Q.T, np.eye(3), atol=1e-14)
