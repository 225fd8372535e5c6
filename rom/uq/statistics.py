"""Monte Carlo statistics of surrogate outputs, the surrogate's own error stated apart from the
Monte Carlo (sampling) error. Inputs are outputs on one i.i.d. sample of n >= 2 parameters mu_i,
shape (n, k) (1-D: k = 1), all finite. Quantiles are always numpy's ``method='inverted_cdf'``:
Q_q(x) = x_(ceil(n q)), the order statistic of rank ceil(n q), the smallest x with F_n(x) >= q.

``certified_statistics(s_N, Delta, quantiles=(), level=0.95)`` -> ``CertifiedStatistics``, kind
'certified': RB outputs s_N and bounds Delta >= 0 with |s - s_N| <= Delta for the true output s.
  Exact (no probability, every rounding of the computation included) about THIS sample:
    mean_bounds (k, 2)         contains the exact sample mean of s, (1/n) sum_i s_i; each end is
                               moved outward by mean_rounding (k,), a bound on the rounding;
    quantile_bounds (m, k, 2)  [Q_q(L), Q_q(U)] contains Q_q(s), L <= s_N - Delta and U >= s_N + Delta
                               the computed values moved one float outward;
    std_bound (k,)             |std(s) - std(s_N)| <= std_bound = ||Delta|| / sqrt(n-1) (ddof=1,
                               to rounding).
  Monte Carlo error (about the population, the law of mu), stated apart:
    mean_se (k,)               std(s_N) / sqrt(n), the CLT standard error of mean (no Delta in it):
                               an asymptotic statement, not a coverage guarantee;
  and, each with probability >= ci_level for i.i.d. draws of a continuous law (distribution-free):
    quantile_ci (m, k, 2)      [X_(r), X_(t)] of s_N: contains the population q-quantile of s_N;
    quantile_ci_certified      [L_(r), U_(t)]: contains the population q-quantile of the true s
                               (both errors at once); -inf/+inf where n is too small for the level;
    ci_ranks (m, 2) = (r, t), ci_coverage (m,): see ``order_statistic_ranks``.
  mean, std (k,), quantiles (m, k): the plain statistics of s_N (std with ddof=1).

``predictive_statistics(mean, std, quantiles=(), draws=100, seed=0, chunk_values=2**22)`` ->
``PredictiveStatistics``, kind 'predictive': a GP's predictive mean and MARGINAL std >= 0 at each
point. Each point gets ``draws`` (>= 2) values from N(mean, std^2), independent across points and
outputs: marginal sampling, not the joint posterior (correlations between points are ignored).
Output j draws from its own stream ``np.random.default_rng([seed, j])`` in row order: the draws
depend on (seed, j, draws) only, not on k or chunk_values (which only moves summation order), and
repeated calls are bitwise equal. Memory: one buffer of n * draws floats reused output by output,
plus temporaries of chunk_values floats (never n * draws * k).
  mean, std (k,), quantiles (m, k): of the n * draws pooled values (std with ddof=0).
  mean_se (k,): std of the per-point draw means (ddof=1) / sqrt(n), the Monte Carlo error over mu.
  Law of total variance of the mixture (1/n) sum_i N(mean_i, std_i^2), exact, no sampling:
    var_of_means = var(mean, ddof=0), mean_of_variances = mean(std^2); surrogate_fraction =
    mean_of_variances / (their sum), the share of the spread that is the surrogate's own
    uncertainty (0 when the sum is 0).
  The same split of the draws (an identity, to rounding): sampled_variance (pooled, ddof=0) =
  sampled_between (variance of per-point draw means) + sampled_within (mean per-point variance).
  No quantile interval: the draws of one point share its mean, so they are not i.i.d.

Bad input is a one-line ValueError naming the argument (and the first bad index).
"""
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

_U = 2.0 ** -53  # unit roundoff of float64


@dataclass
class CertifiedStatistics:
    kind: str
    n: int
    quantile_levels: np.ndarray
    mean: np.ndarray
    mean_bounds: np.ndarray
    mean_rounding: np.ndarray
    std: np.ndarray
    std_bound: np.ndarray
    mean_se: np.ndarray
    quantiles: np.ndarray
    quantile_bounds: np.ndarray
    quantile_ci: np.ndarray
    quantile_ci_certified: np.ndarray
    ci_level: float
    ci_ranks: np.ndarray
    ci_coverage: np.ndarray


@dataclass
class PredictiveStatistics:
    kind: str
    n: int
    draws: int
    seed: int
    quantile_levels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    mean_se: np.ndarray
    quantiles: np.ndarray
    var_of_means: np.ndarray
    mean_of_variances: np.ndarray
    surrogate_fraction: np.ndarray
    sampled_variance: np.ndarray
    sampled_between: np.ndarray
    sampled_within: np.ndarray


def _levels(quantiles) -> np.ndarray:
    q = np.asarray(quantiles, dtype=float)
    bad = np.flatnonzero(~((q > 0) & (q < 1)))
    if q.ndim > 1 or bad.size:
        raise ValueError(f"quantiles: levels must lie in (0, 1), got {q.ravel()[bad[0]] if bad.size else f'shape {q.shape}'}")
    return q.reshape(-1)


def _array(x, name, n_k=None, nonnegative=False) -> np.ndarray:
    """Finite (n, k) floats, n >= 2, of shape n_k if given, >= 0 if nonnegative."""
    a = np.asarray(x, dtype=float)
    a = a[:, None] if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{name}: expected shape (n, k) with n >= 2, got {np.shape(x)}")
    if n_k is not None and a.shape != n_k:
        raise ValueError(f"{name}: shape {a.shape} differs from the outputs' {n_k}")
    for what, bad in (("non-finite", ~np.isfinite(a)), ("negative", (a < 0) & nonnegative)):
        where = np.argwhere(bad)
        if where.size:
            raise ValueError(f"{name}: {what} value {a[tuple(where[0])]} at index {tuple(int(i) for i in where[0])}")
    return a


def order_statistic_ranks(n: int, q: float, level: float = 0.95) -> tuple[int, int, float]:
    """1-based ranks (r, t) with P(X_(r) <= xi_q <= X_(t)) >= level for n i.i.d. draws of ANY law,
    xi_q = inf{x: F(x) >= q}: X_(r) > xi_q needs fewer than r draws <= xi_q, a Binomial(n, F(xi_q))
    count with F(xi_q) >= q, so P <= P(B <= r-1), B ~ Binomial(n, q); symmetrically on the right.
    r is the largest rank with P(B <= r-1) <= (1-level)/2 (0: no lower end, -inf), t the smallest
    with P(B >= t) <= (1-level)/2 (n+1: +inf). Returns (r, t, P(r <= B <= t-1)), the exact coverage
    for a continuous law (a lower bound otherwise), >= level."""
    if not 0 < level < 1:
        raise ValueError(f"level: must lie in (0, 1), got {level}")
    a = (1 - level) / 2
    r = int(binom.ppf(a, n, q))  # then adjust: ppf's rounding may be off by one
    while r > 0 and binom.cdf(r - 1, n, q) > a:
        r -= 1
    while r < n and binom.cdf(r, n, q) <= a:
        r += 1
    t = int(binom.isf(a, n, q)) + 1
    while t <= n and binom.sf(t - 1, n, q) > a:
        t += 1
    while t > 1 and binom.sf(t - 2, n, q) <= a:
        t -= 1
    return r, t, float(binom.cdf(t - 1, n, q) - binom.cdf(r - 1, n, q))


def _ranked(sorted_x: np.ndarray, rank: int) -> np.ndarray:
    n = sorted_x.shape[0]
    return np.full(sorted_x.shape[1], -np.inf if rank < 1 else np.inf) if not 1 <= rank <= n else sorted_x[rank - 1]


def certified_statistics(s_N, Delta, quantiles=(), level: float = 0.95) -> CertifiedStatistics:
    s_N = _array(s_N, "s_N")
    Delta = _array(Delta, "Delta", s_N.shape, nonnegative=True)
    q = _levels(quantiles)
    n, k = s_N.shape
    # L_i <= s_N,i - Delta_i and U_i >= s_N,i + Delta_i exactly: fl() is within half a spacing of
    # the exact value, so one float further out is beyond it. Hence L_i <= s_i <= U_i exactly.
    L = np.nextafter(s_N - Delta, -np.inf)
    U = np.nextafter(s_N + Delta, np.inf)
    # mean(L) <= mean(s) <= mean(U). A computed mean of n floats is within gamma_{n+1} mean|x| of
    # the exact one in any summation order (gamma_m = m u / (1 - m u)); the factor 2 covers the
    # rounding of that bound itself, nextafter the rounding of the subtraction.
    g = 2 * (n + 1) * _U / (1 - (n + 1) * _U)
    rounding = g * np.maximum(np.abs(L).mean(0), np.abs(U).mean(0))
    mean_bounds = np.stack([np.nextafter(L.mean(0) - rounding, -np.inf),
                            np.nextafter(U.mean(0) + rounding, np.inf)], axis=-1)
    std = s_N.std(0, ddof=1)
    # The sample std is ||P x|| / sqrt(n-1), P the centring projection (a seminorm), so
    # |std(s) - std(s_N)| <= ||P e|| / sqrt(n-1) <= ||Delta|| / sqrt(n-1) with e = s - s_N.
    std_bound = np.sqrt((Delta ** 2).sum(0) / (n - 1))
    # Bracket of Q_q(s): L_i <= s_i <= U_i for every i gives L_(r) <= s_(r) <= U_(r) for every rank
    # r: the r indices with the smallest s (s_i <= s_(r)) have L_i <= s_i <= s_(r), so at least r
    # of the L are <= s_(r); the n-r+1 indices with s_i >= s_(r) have U_i >= s_(r), so at most r-1
    # of the U are below it. inverted_cdf picks the same rank ceil(n q) in all three samples (same
    # n), hence Q_q(L) <= Q_q(s) <= Q_q(U), exactly.
    m = q.size
    quants = np.quantile(s_N, q, axis=0, method="inverted_cdf").reshape(m, k)
    qb = np.stack([np.quantile(L, q, axis=0, method="inverted_cdf").reshape(m, k),
                   np.quantile(U, q, axis=0, method="inverted_cdf").reshape(m, k)], axis=-1)
    ci, cic = np.empty((m, k, 2)), np.empty((m, k, 2))
    ranks, coverage = np.zeros((m, 2), dtype=int), np.zeros(m)
    if m:
        sx, sl, su = np.sort(s_N, axis=0), np.sort(L, axis=0), np.sort(U, axis=0)
    for i, qi in enumerate(q):
        r, t, coverage[i] = order_statistic_ranks(n, qi, level)
        ranks[i] = r, t
        ci[i] = np.stack([_ranked(sx, r), _ranked(sx, t)], axis=-1)
        cic[i] = np.stack([_ranked(sl, r), _ranked(su, t)], axis=-1)
    return CertifiedStatistics("certified", n, q, s_N.mean(0), mean_bounds, rounding, std, std_bound,
                               std / np.sqrt(n), quants, qb, ci, cic, level, ranks, coverage)


def predictive_statistics(mean, std, quantiles=(), draws: int = 100, seed: int = 0,
                          chunk_values: int = 2 ** 22) -> PredictiveStatistics:
    mean = _array(mean, "mean")
    std = _array(std, "std", mean.shape, nonnegative=True)
    q = _levels(quantiles)
    if int(draws) != draws or draws < 2:
        raise ValueError(f"draws: must be an integer >= 2, got {draws}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed: must be an integer >= 0, got {seed}")
    draws = int(draws)
    n, k = mean.shape
    rows = max(1, int(chunk_values) // draws)  # rows per chunk of temporaries
    buf = np.empty((n, draws))
    out = {name: np.empty(k) for name in ("mean", "se", "var", "between", "within")}
    quants = np.empty((q.size, k))
    for j in range(k):  # one output at a time: memory n * draws
        np.random.default_rng([seed, j]).standard_normal(out=buf)
        buf *= std[:, j, None]
        buf += mean[:, j, None]
        point_means = buf.mean(1)
        grand = buf.mean()
        pooled, within = 0.0, 0.0
        for a in range(0, n, rows):  # chunks: (rows, draws) temporaries only
            block = buf[a:a + rows]
            pooled += ((block - grand) ** 2).sum()
            within += ((block - point_means[a:a + rows, None]) ** 2).sum()
        out["mean"][j], out["var"][j] = grand, pooled / (n * draws)
        out["within"][j], out["between"][j] = within / (n * draws), ((point_means - grand) ** 2).mean()
        out["se"][j] = point_means.std(ddof=1) / np.sqrt(n)
        if q.size:  # the last use of buf for this output: partition it in place
            quants[:, j] = np.quantile(buf.reshape(-1), q, method="inverted_cdf", overwrite_input=True)
    vm, mv = mean.var(0), (std ** 2).mean(0)
    total = vm + mv
    frac = np.divide(mv, total, out=np.zeros(k), where=total > 0)
    return PredictiveStatistics("predictive", n, draws, int(seed), q, out["mean"], np.sqrt(out["var"]),
                                out["se"], quants, vm, mv, frac, out["var"], out["between"], out["within"])
