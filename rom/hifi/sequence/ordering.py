"""Solve orders of a sample set: consecutive samples close in the scaled parameter space, so that what one
solve leaves behind (its solution, its preconditioner, a tuned setting) suits the next one.

The parameter box is scaled to the unit cube (log coordinates on log-uniform axes, as the design draws
them). Two paths are offered: a greedy nearest-neighbour path (O(n^2 d), the shorter of the two, for the
sizes of a study's sample sets) and a Hilbert space-filling-curve order (O(n log n), for very large sets).
Both are deterministic functions of the design, which is itself reproducible from the study's seed.

A set is cut into simulate chunks along one global path, so each chunk holds neighbours; a chunk's
artefact keeps the design's sample order and records where each sample came in the solve order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("nearest", "hilbert", "design")


def unit_coordinates(mu: np.ndarray, bounds: np.ndarray, distributions) -> np.ndarray:
    """Parameters (n, d) mapped to [0, 1]^d: linear on uniform axes, logarithmic on log-uniform ones; an axis
    with equal bounds maps to 0."""
    mu = np.atleast_2d(np.asarray(mu, dtype=float))
    bounds = np.asarray(bounds, dtype=float).reshape(-1, 2)
    if mu.shape[1] != len(bounds):
        raise ValueError(f"parameters have {mu.shape[1]} columns but the box has {len(bounds)} rows; expected one "
                         "bound pair per parameter")
    log = np.array([d == "loguniform" for d in distributions], dtype=bool)
    if len(log) != len(bounds):
        raise ValueError(f"{len(log)} distributions for {len(bounds)} parameters; expected one per parameter")
    lo, hi = bounds[:, 0], bounds[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(log, np.log(mu) - np.log(lo), mu - lo)
        span = np.where(log, np.log(hi) - np.log(lo), hi - lo)
        return np.where(span > 0, t / np.where(span > 0, span, 1.0), 0.0)


def path_length(X: np.ndarray, order: np.ndarray) -> float:
    """Total Euclidean length of the path through the rows of X in `order`."""
    P = np.asarray(X, dtype=float)[np.asarray(order)]
    return float(np.linalg.norm(np.diff(P, axis=0), axis=1).sum())


def nearest_neighbour_path(X: np.ndarray) -> np.ndarray:
    """Greedy nearest-neighbour path through the rows of X, starting at the row farthest from the centroid
    (a path from the rim does not need a long jump back); ties go to the lowest index. Each step is one
    vectorized distance update; the steps themselves are sequential by nature."""
    X = np.asarray(X, dtype=float)
    n = len(X)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    path = np.empty(n, dtype=np.int64)
    path[0] = int(np.argmax(((X - X.mean(axis=0)) ** 2).sum(axis=1)))
    free = np.ones(n, dtype=bool)
    free[path[0]] = False
    for step in range(1, n):
        d = ((X - X[path[step - 1]]) ** 2).sum(axis=1)
        d[~free] = np.inf
        path[step] = int(np.argmin(d))
        free[path[step]] = False
    return path


def hilbert_order(X: np.ndarray, bits: int = 16) -> np.ndarray:
    """Order of the rows of X (in [0, 1]^d) along a d-dimensional Hilbert curve of 2^bits cells per axis
    (J. Skilling's transpose algorithm, vectorized over the rows; the index is compared bit by bit, so any
    d * bits works)."""
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    if n == 0:
        return np.empty(0, dtype=np.int64)
    top = 1 << (bits - 1)
    T = np.clip((X * (1 << bits)).astype(np.int64), 0, (1 << bits) - 1)
    q = top
    while q > 1:  # undo excess work: per bit plane, invert or exchange the low bits
        low = q - 1
        for i in range(d):
            hit = (T[:, i] & q) != 0
            T[hit, 0] ^= low
            swap = ((T[:, 0] ^ T[:, i]) & low) * ~hit
            T[:, 0] ^= swap
            T[:, i] ^= swap
        q >>= 1
    for i in range(1, d):  # Gray encode
        T[:, i] ^= T[:, i - 1]
    flip = np.zeros(n, dtype=np.int64)
    q = top
    while q > 1:
        flip[(T[:, d - 1] & q) != 0] ^= q - 1
        q >>= 1
    T ^= flip[:, None]
    # The index interleaves the bit planes, most significant first: plane b of axis 0, of axis 1, ...
    keys = [(T[:, i] >> b) & 1 for b in range(bits - 1, -1, -1) for i in range(d)]
    return np.lexsort(keys[::-1]).astype(np.int64)


def solve_order(X: np.ndarray, method: str = "nearest") -> np.ndarray:
    """A permutation of the rows of X (unit coordinates) in which to solve them."""
    if method == "nearest":
        return nearest_neighbour_path(X)
    if method == "hilbert":
        return hilbert_order(X)
    if method == "design":
        return np.arange(len(X), dtype=np.int64)
    raise ValueError(f"simulate.ordering = {method!r}: expected one of {', '.join(METHODS)}")


@dataclass(frozen=True)
class ChunkPlan:
    """One simulate chunk: `index` its sample indices into the set in design order (the artefact's order),
    `order` the solve order as positions into `index`, `unit` their coordinates in the unit cube."""

    index: np.ndarray
    order: np.ndarray
    unit: np.ndarray  # the chunk's parameters in unit coordinates (rows of `index`): the contextual tuning's context

    @property
    def solve_index(self) -> np.ndarray:
        """Sample indices in the order they are solved."""
        return self.index[self.order]


def chunk_plan(mu: np.ndarray, bounds: np.ndarray, distributions, chunk_size: int, chunk: int,
               method: str = "nearest") -> ChunkPlan:
    """The samples of chunk `chunk` of a set: consecutive pieces of `chunk_size` along one path through the
    whole set (method 'design' gives the design's own consecutive pieces, rom.design.chunk_indices)."""
    mu = np.atleast_2d(np.asarray(mu, dtype=float))
    n = len(mu) if mu.size else 0
    count = max(1, -(-n // chunk_size))
    if not 0 <= chunk < count:
        raise ValueError(f"chunk {chunk}: expected 0..{count - 1} for {n} samples in chunks of {chunk_size}")
    X = unit_coordinates(mu, bounds, distributions) if n else np.empty((0, len(np.reshape(bounds, (-1, 2)))))
    path = solve_order(X, method) if n else np.empty(0, dtype=np.int64)
    piece = path[chunk * chunk_size:(chunk + 1) * chunk_size]
    index = np.sort(piece)
    return ChunkPlan(index, np.searchsorted(index, piece).astype(np.int64), X[index])
