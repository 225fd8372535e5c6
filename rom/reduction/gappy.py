"""Gappy POD: reconstruct a field from its values at a few points by least squares on its own POD
basis. The relative residual of the fit measures how far the observed values are from anything
the basis can represent; its cost depends only on the number of points and modes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GappyPOD:
    """W: POD basis of the field as rows (q, n); points: observed entries (p,), p > q for a
    meaningful residual."""

    W: np.ndarray
    points: np.ndarray

    def __post_init__(self):
        Wp = self.W[:, self.points].T  # (p, q)
        # Thin QR once: every fit is two small products, O(p q).
        self.Q, self.R = np.linalg.qr(Wp)

    @classmethod
    def observed(cls, Wp: np.ndarray) -> GappyPOD:
        """A fit from the modes already restricted to the observed entries, Wp (p, q): what an online
        model keeps (and borders as points and modes are added) without the full modes."""
        Wp = np.asarray(Wp, dtype=float)
        return cls(Wp.T, np.arange(len(Wp)))

    @property
    def operation_count(self) -> int:
        """Multiply-adds of one fit and its residual: Q^T v, Q c, and the norms."""
        p, q = self.Q.shape
        return 2 * p * q + 2 * p + q * q

    def fit(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        """Coefficients of the least-squares fit and its relative residual ||v - W_p c|| / ||v||."""
        v = np.asarray(values, dtype=float)
        z = self.Q.T @ v
        r = v - self.Q @ z
        norm = np.linalg.norm(v)
        coef = np.linalg.solve(self.R, z) if len(z) else z
        return coef, float(np.linalg.norm(r) / norm) if norm > 0 else 0.0

    def residual(self, values: np.ndarray) -> float:
        """The relative residual of the fit alone (no coefficients): ||v - Q Q^T v|| / ||v||."""
        r = values - self.Q @ (self.Q.T @ values)
        norm = np.sqrt(values @ values)
        return float(np.sqrt(r @ r) / norm) if norm > 0 else 0.0

    def reconstruct(self, values: np.ndarray) -> np.ndarray:
        return self.fit(values)[0] @ self.W
