"""Discrete empirical interpolation: index selection by the DEIM greedy or by QDEIM (pivoted QR),
and the interpolant f ~ U^T (U[:, P]^T)^{-1} f[P] that needs f at the selected indices only.

U holds the collateral basis as rows, shape (m, n). The error of the interpolant is at most
||(U[:, P])^{-1}||_2 times the best approximation error in span(U) (the Lebesgue constant below)."""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla


def deim(U: np.ndarray) -> np.ndarray:
    """DEIM greedy (Chaturantabut and Sorensen): index l takes the largest entry of the residual
    of interpolating mode l on the indices chosen so far. Returns m distinct indices."""
    U = np.atleast_2d(np.asarray(U, dtype=float))
    P = [int(np.argmax(np.abs(U[0])))]
    for l in range(1, len(U)):  # one greedy step per mode (m is small)
        c = np.linalg.solve(U[:l, P].T, U[l, P])
        r = U[l] - c @ U[:l]
        r[P] = 0.0  # already interpolated exactly; guards against round-off re-selection
        P.append(int(np.argmax(np.abs(r))))
    return np.array(P, dtype=np.int64)


def qdeim(U: np.ndarray) -> np.ndarray:
    """QDEIM (Drmac and Gugercin): the first m column pivots of the pivoted QR of U (m, n).
    Its Lebesgue constant is bounded by sqrt(n - m + 1) O(2^m) and is small in practice."""
    U = np.atleast_2d(np.asarray(U, dtype=float))
    _, _, piv = sla.qr(U, mode="economic", pivoting=True)
    return np.asarray(piv[: len(U)], dtype=np.int64)


def select(U: np.ndarray, method: str = "qdeim") -> np.ndarray:
    if method == "deim":
        return deim(U)
    if method == "qdeim":
        return qdeim(U)
    raise ValueError(f"method = {method!r}: expected 'deim' or 'qdeim'")


def lebesgue_constant(U: np.ndarray, P: np.ndarray) -> float:
    """||(U[:, P])^{-1}||_2 for an orthonormal U: the factor between the interpolation error and
    the best approximation error in span(U)."""
    return float(1.0 / np.linalg.svd(U[:, P], compute_uv=False).min())


def interpolate(U: np.ndarray, P: np.ndarray, f_at_P: np.ndarray) -> np.ndarray:
    """The interpolant of f (last axis holds the values at P) in span(U)."""
    return np.linalg.solve(U[:, P].T, np.asarray(f_at_P).T).T @ U
