"""A dictionary of local reduced bases and its online selector (Daniel, Casenave, Akkari, Ryckelynck: physics-informed cluster analysis for local bases).

Selection maps parameters to a cluster either by the nearest medoid in the (scaled) parameter
space or by a small MLP classifier trained with scikit-learn; the classifier is kept as its weight
arrays and evaluated in NumPy, so the artefact needs no pickle and selection costs a few small
matrix-vector products. Both selectors write themselves into an xarray Dataset (`to_dataset`, the
local_bases artefact) and load back from it (`from_dataset`) without scikit-learn: a loaded selector
evaluates the stored arrays with the same code, so it chooses what the trained one chose, bit for bit."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr


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

    def to_dataset(self, prefix: str = "selector") -> xr.Dataset:
        """Variables `<prefix>_W<l>` (units<l>, units<l+1>) and `<prefix>_b<l>` (units<l+1>) per layer l (the
        input units are the dimension `parameter`), `<prefix>_classes`, `<prefix>_lower`, `<prefix>_upper`,
        and the attribute `<prefix>_layers` (0: the constant classifier of one cluster)."""
        units = ["parameter"] + [f"{prefix}_units{l}" for l in range(1, len(self.weights) + 1)]
        data = {f"{prefix}_classes": (f"{prefix}_class", np.asarray(self.classes)),
                f"{prefix}_lower": ("parameter", np.asarray(self.lower, dtype=float)),
                f"{prefix}_upper": ("parameter", np.asarray(self.upper, dtype=float))}
        for l, (W, b) in enumerate(zip(self.weights, self.biases)):
            data[f"{prefix}_W{l}"] = ((units[l], units[l + 1]), np.asarray(W))
            data[f"{prefix}_b{l}"] = (units[l + 1], np.asarray(b))
        return xr.Dataset(data, attrs={f"{prefix}_layers": len(self.weights)})

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, prefix: str = "selector") -> MLPSelector:
        """The selector `to_dataset(prefix)` wrote (KeyError if the dataset has none)."""
        n = int(ds.attrs[f"{prefix}_layers"])
        arr = lambda name: np.ascontiguousarray(ds[f"{prefix}_{name}"].values)  # noqa: E731
        return cls([arr(f"W{l}") for l in range(n)], [arr(f"b{l}") for l in range(n)], arr("classes"),
                   arr("lower"), arr("upper"))


@dataclass
class NearestMedoidSelector:
    """The cluster of the nearest medoid's parameters in the box scaled to [0, 1]."""

    medoid_mu: np.ndarray  # (k, d)
    lower: np.ndarray
    upper: np.ndarray

    def predict(self, mu: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(mu) - self.lower) / (self.upper - self.lower)
        zm = (self.medoid_mu - self.lower) / (self.upper - self.lower)
        return np.argmin(((z[:, None, :] - zm[None]) ** 2).sum(axis=2), axis=1)

    def to_dataset(self, prefix: str = "medoid") -> xr.Dataset:
        """Variables `<prefix>_mu` (<prefix>, parameter), `<prefix>_lower` and `<prefix>_upper` (parameter)."""
        return xr.Dataset({f"{prefix}_mu": ((prefix, "parameter"), np.asarray(self.medoid_mu, dtype=float)),
                           f"{prefix}_lower": ("parameter", np.asarray(self.lower, dtype=float)),
                           f"{prefix}_upper": ("parameter", np.asarray(self.upper, dtype=float))})

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, prefix: str = "medoid") -> NearestMedoidSelector:
        return cls(*(np.ascontiguousarray(ds[f"{prefix}_{n}"].values) for n in ("mu", "lower", "upper")))
