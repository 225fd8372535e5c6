"""Clustering of snapshots or trajectories for local reduced bases (Daniel, Casenave, Akkari, Ryckelynck: physics-informed cluster analysis for local bases).

Items are snapshots (n, n_dofs) or trajectories (n, n_times, n_dofs); a trajectory is compared
as one space-time vector in the product X summed over time. Dissimilarities:
- euclidean: ||u - v||_X,
- angle: sin of the angle in X, sqrt(1 - (<u, v>_X / (||u||_X ||v||_X))^2) (scale invariant:
  a snapshot and its multiples are one point),
- grassmann_geodesic / grassmann_chordal: principal angles theta_i between the subspaces spanned
  by each trajectory's first r POD modes, sqrt(sum theta_i^2) and sqrt(sum sin^2 theta_i).
k-medoids (PAM-like: k-medoids++ seeding, alternate, then best-improvement swaps; several seeded
restarts, lowest total cost kept) works on any precomputed dissimilarity; k-means (scikit-learn)
is the Euclidean baseline, run in the coordinates of an X-orthonormal basis so that its Euclidean
distances are X distances.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

DISSIMILARITIES = ("euclidean", "angle", "grassmann_geodesic", "grassmann_chordal")


def _as_items(S: np.ndarray) -> np.ndarray:
    S = np.asarray(S, dtype=float)
    return S[:, None, :] if S.ndim == 2 else S


def _apply_X(S3: np.ndarray, X) -> np.ndarray:
    flat = S3.reshape(-1, S3.shape[-1])
    return (flat if X is None else (X @ flat.T).T).reshape(S3.shape)


def gram(S: np.ndarray, X: sp.spmatrix | None = None, T: np.ndarray | None = None) -> np.ndarray:
    """<S_i, T_j> in X summed over time (T defaults to S): (n_S, n_T)."""
    S3 = _as_items(S)
    T3 = S3 if T is None else _as_items(T)
    return np.einsum("itd,jtd->ij", S3, _apply_X(T3, X))


def _norms(S3, X):
    return np.sqrt(np.clip(np.einsum("itd,itd->i", S3, _apply_X(S3, X)), 0.0, None))


def euclidean(S, X=None, T=None) -> np.ndarray:
    S3 = _as_items(S)
    T3 = S3 if T is None else _as_items(T)
    G = gram(S3, X, T3)
    d2 = _norms(S3, X)[:, None] ** 2 + _norms(T3, X)[None, :] ** 2 - 2 * G
    return np.sqrt(np.clip(d2, 0.0, None))


def angle(S, X=None, T=None) -> np.ndarray:
    S3 = _as_items(S)
    T3 = S3 if T is None else _as_items(T)
    ns, nt = _norms(S3, X), _norms(T3, X)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = gram(S3, X, T3) / np.outer(ns, nt)
    c = np.nan_to_num(c, nan=0.0)  # a zero item is at right angles to everything
    return np.sqrt(np.clip(1.0 - c ** 2, 0.0, None))


def trajectory_bases(S: np.ndarray, X=None, rank: int = 4) -> np.ndarray:
    """The first `rank` X-orthonormal POD modes of every trajectory, (n, rank, n_dofs); all
    trajectories at once by a batched eigen-decomposition of their (n_times, n_times) correlations."""
    S3 = _as_items(S)
    C = np.einsum("itd,isd->its", S3, _apply_X(S3, X))
    lam, W = np.linalg.eigh(C)  # ascending
    lam, W = lam[:, ::-1][:, :rank], W[:, :, ::-1][:, :, :rank]
    scale = np.where(lam > lam[:, :1] * 1e-12, 1.0 / np.sqrt(np.clip(lam, 1e-300, None)), 0.0)
    return np.einsum("itr,itd->ird", W * scale[:, None, :], S3)


def principal_angles(B: np.ndarray, X=None, C: np.ndarray | None = None) -> np.ndarray:
    """Principal angles between span(B_i) and span(C_j) for X-orthonormal bases (n, r, n_dofs):
    arccos of the singular values of B_i X C_j^T, (n_B, n_C, r), batched."""
    C = B if C is None else C
    cross = np.einsum("ird,jsd->ijrs", B, _apply_X(C, X))
    s = np.linalg.svd(cross, compute_uv=False)
    return np.arccos(np.clip(s, 0.0, 1.0))


def grassmann(S, X=None, T=None, rank: int = 4, metric: str = "geodesic") -> np.ndarray:
    B = trajectory_bases(S, X, rank)
    theta = principal_angles(B, X, None if T is None else trajectory_bases(T, X, rank))
    if metric == "geodesic":
        return np.sqrt((theta ** 2).sum(axis=-1))
    if metric == "chordal":
        return np.sqrt((np.sin(theta) ** 2).sum(axis=-1))
    raise ValueError(f"metric = {metric!r}: expected 'geodesic' or 'chordal'")


def dissimilarity(name: str, S, X=None, T=None, rank: int = 4) -> np.ndarray:
    """The named dissimilarity between the items of S (and of T if given)."""
    if name == "euclidean":
        return euclidean(S, X, T)
    if name == "angle":
        return angle(S, X, T)
    if name.startswith("grassmann_"):
        return grassmann(S, X, T, rank, name.split("_", 1)[1])
    raise ValueError(f"dissimilarity = {name!r}: expected one of {DISSIMILARITIES}")


@dataclass
class Clustering:
    labels: np.ndarray  # (n,) cluster of every item
    medoids: np.ndarray  # (k,) item index of each cluster's medoid (k-means: the item nearest its centre)
    cost: float  # sum of dissimilarities to the assigned medoid (k-means: inertia)
    restarts_cost: np.ndarray  # (restarts,) final cost of every restart


def _kmedoids_pp(D, k, rng):
    """k-medoids++ seeding: each next medoid drawn with probability proportional to D^2."""
    med = [int(rng.integers(len(D)))]
    for _ in range(1, k):
        d = D[:, med].min(axis=1) ** 2
        med.append(int(rng.choice(len(D), p=d / d.sum())) if d.sum() > 0 else int(rng.integers(len(D))))
    return np.array(med)


def _alternate(D, med, max_iter):
    """Voronoi iteration: assign to the nearest medoid, move each medoid to its cluster's 1-median."""
    for _ in range(max_iter):
        labels = np.argmin(D[:, med], axis=1)
        new = med.copy()
        for c in range(len(med)):  # k clusters
            members = np.flatnonzero(labels == c)
            if len(members):
                new[c] = members[np.argmin(D[np.ix_(members, members)].sum(axis=0))]
        if np.array_equal(np.sort(new), np.sort(med)):
            break
        med = new
    return med


def _swap(D, med, max_iter):
    """PAM swap phase, every (medoid slot, candidate) pair evaluated at once with the nearest and
    second nearest medoid distances; the best improving swap is taken until none improves."""
    n, k = len(D), len(med)
    if k < 2:  # one cluster: the 1-median is optimal
        return np.array([int(np.argmin(D.sum(axis=0)))])
    for _ in range(max_iter):
        Dm = D[:, med]  # (n, k)
        order = np.argsort(Dm, axis=1)
        nearest = order[:, 0]
        d1 = Dm[np.arange(n), nearest]
        d2 = Dm[np.arange(n), order[:, 1]]
        # Removing slot m leaves each item at d1, or at d2 if m was its nearest; adding h offers D[:, h].
        base = np.where(nearest[None, :] == np.arange(k)[:, None], d2[None, :], d1[None, :])  # (k, n)
        cost = np.minimum(base[:, None, :], D.T[None, :, :]).sum(axis=2)  # (k, n_candidates)
        cost[:, med] = np.inf
        m, h = np.unravel_index(np.argmin(cost), cost.shape)
        if cost[m, h] >= d1.sum() * (1 - 1e-12):
            break
        med = med.copy()
        med[m] = h
    return med


def kmedoids(D: np.ndarray, k: int, restarts: int = 8, seed: int = 0, max_iter: int = 100) -> Clustering:
    """k-medoids on a precomputed dissimilarity matrix, best of `restarts` seeded restarts."""
    D = np.asarray(D, dtype=float)
    if not 1 <= k <= len(D):
        raise ValueError(f"k = {k}: expected 1 <= k <= {len(D)} items")
    rng = np.random.default_rng(seed)
    best, costs = None, []
    for _ in range(restarts):  # a few seeded restarts
        med = _swap(D, _alternate(D, _kmedoids_pp(D, k, rng), max_iter), max_iter)
        cost = float(D[:, med].min(axis=1).sum())
        costs.append(cost)
        if best is None or cost < best[1]:
            best = (med, cost)
    med = best[0]
    labels = np.argmin(D[:, med], axis=1)
    labels[med] = np.arange(k)  # a medoid belongs to its own cluster even on ties
    return Clustering(labels, med, best[1], np.array(costs))


def orthonormal_coordinates(S, X=None) -> np.ndarray:
    """Coordinates of the items in an X-orthonormal basis of their span: Euclidean distances
    between rows equal X distances between items (trajectories: summed over time)."""
    from .pod import pod

    S3 = _as_items(S)
    n, nt, nd = S3.shape
    V, _ = pod(S3.reshape(-1, nd), X, tol=1e-14, max_modes=None)
    return np.einsum("itd,rd->itr", _apply_X(S3, X), V).reshape(n, -1)


def kmeans(S, k: int, X=None, restarts: int = 8, seed: int = 0) -> Clustering:
    """scikit-learn k-means in X-orthonormal coordinates (the Euclidean baseline)."""
    from sklearn.cluster import KMeans

    Z = orthonormal_coordinates(S, X)
    km = KMeans(n_clusters=k, n_init=restarts, random_state=seed).fit(Z)
    d = np.linalg.norm(Z[:, None, :] - km.cluster_centers_[None], axis=2)
    medoids = np.argmin(np.where(km.labels_[:, None] == np.arange(k)[None], d, np.inf), axis=0)
    return Clustering(km.labels_.astype(np.int64), medoids, float(km.inertia_), np.array([km.inertia_]))


def local_bases(S: np.ndarray, labels: np.ndarray, X=None, tol: float | list = 1e-8,
                max_modes: int | None = None) -> list[np.ndarray]:
    """One X-orthonormal POD basis per cluster from its items' snapshots (time steps flattened);
    `tol` is one relative energy tolerance shared by all clusters, or one per cluster."""
    from .pod import pod

    S3 = _as_items(S)
    k = int(labels.max()) + 1
    tols = np.broadcast_to(np.asarray(tol, dtype=float), (k,))
    return [pod(S3[labels == c].reshape(-1, S3.shape[-1]), X, float(tols[c]), max_modes)[0] for c in range(k)]


def local_projection_errors(bases: list[np.ndarray], S: np.ndarray, labels: np.ndarray, X, sizes) -> np.ndarray:
    """Relative X projection errors of every snapshot (time steps flattened) onto the first N modes
    of the basis of its item's cluster, (len(sizes), n_items * n_times); a cluster basis shorter
    than N uses all its modes."""
    from .pod import projection_errors

    S3 = _as_items(S)
    out = np.zeros((len(sizes), S3.shape[0], S3.shape[1]))
    for c, V in enumerate(bases):  # one block per cluster
        members = np.flatnonzero(labels == c)
        if not len(members):
            continue
        capped = [min(int(N), len(V)) for N in sizes]
        out[:, members] = projection_errors(V, S3[members].reshape(-1, S3.shape[-1]), X, capped).reshape(
            len(sizes), len(members), S3.shape[1])
    return out.reshape(len(sizes), -1)


def efficiency(global_errors: np.ndarray, local_errors: np.ndarray, quantile: float = 0.9) -> np.ndarray:
    """A priori gain of local over global bases at equal size: ratio of the `quantile` quantiles
    of the relative projection errors (per basis size); > 1 favours the local dictionary."""
    qg = np.quantile(global_errors, quantile, axis=-1)
    ql = np.quantile(local_errors, quantile, axis=-1)
    return qg / np.maximum(ql, 1e-300)
