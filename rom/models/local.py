"""A dictionary of local reduced bases and its online selector (Daniel, Casenave, Akkari, Ryckelynck: physics-informed cluster analysis for local bases).

Selection maps parameters to a cluster either by the nearest medoid in the (scaled) parameter
space or by a small MLP classifier trained with scikit-learn; the classifier is kept as its weight
arrays and evaluated in NumPy, so the artefact needs no pickle and selection costs a few small
matrix-vector products."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MLPSelector:
    """ReLU MLP weights (W_l, b_l) of a scikit-learn MLPClassifier and its class labels."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    classes: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def train(cls, mu: np.ndarray, labels: np.ndarray, bounds: np.ndarray, hidden=(32, 32), seed: int = 0,
              max_iter: int = 3000) -> MLPSelector:
        from sklearn.neural_network import MLPClassifier

        lower, upper = bounds[:, 0], bounds[:, 1]
        z = (mu - lower) / (upper - lower)
        classes = np.unique(labels)
        if len(classes) == 1:  # one cluster seen: a constant classifier
            return cls([], [], classes, lower, upper)
        clf = MLPClassifier(hidden_layer_sizes=tuple(hidden), random_state=seed, max_iter=max_iter, tol=1e-6)
        clf.fit(z, labels)
        return cls([np.asarray(w) for w in clf.coefs_], [np.asarray(b) for b in clf.intercepts_],
                   np.asarray(clf.classes_), lower, upper)

    def predict(self, mu: np.ndarray) -> np.ndarray:
        mu = np.atleast_2d(mu)
        if not self.weights:
            return np.full(len(mu), self.classes[0])
        h = (mu - self.lower) / (self.upper - self.lower)
        for W, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ W + b, 0.0)
        out = h @ self.weights[-1] + self.biases[-1]
        if out.shape[1] == 1:  # two classes: one logistic output
            return self.classes[(out[:, 0] > 0).astype(int)]
        return self.classes[np.argmax(out, axis=1)]


@dataclass
class NearestMedoidSelector:
    medoid_mu: np.ndarray  # (k, d)
    lower: np.ndarray
    upper: np.ndarray

    def predict(self, mu: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(mu) - self.lower) / (self.upper - self.lower)
        zm = (self.medoid_mu - self.lower) / (self.upper - self.lower)
        return np.argmin(((z[:, None, :] - zm[None]) ** 2).sum(axis=2), axis=1)
