"""rom.uq: Sobol' indices against closed forms (Ishigami, additive models), certified brackets of the
true sample mean and quantiles, coverage of the order-statistic quantile interval, GP propagation."""
import math

import numpy as np
import pytest
from scipy.stats import binom

from rom.uq import (
    certified_statistics,
    evaluate,
    order_statistic_ranks,
    predictive_statistics,
    sobol_analyze,
    sobol_design,
    sobol_indices,
)

U = 2.0 ** -53  # unit roundoff
LEVELS = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def _ishigami(X, a=7.0, b=0.1):
    return np.sin(X[:, 0]) + a * np.sin(X[:, 1]) ** 2 + b * X[:, 2] ** 4 * np.sin(X[:, 0])


def _ishigami_exact(a=7.0, b=0.1):
    """Partial variances of the Ishigami function on U[-pi, pi]^3 (Sobol' & Levitan 1999)."""
    pi4, pi8 = np.pi ** 4, np.pi ** 8
    V1, V2, V13 = 0.5 * (1 + b * pi4 / 5) ** 2, a ** 2 / 8, b ** 2 * pi8 * (1 / 18 - 1 / 50)
    V = V1 + V2 + V13  # = a^2/8 + b pi^4/5 + b^2 pi^8/18 + 1/2
    assert abs(V - (a ** 2 / 8 + b * pi4 / 5 + b ** 2 * pi8 / 18 + 0.5)) < 1e-12 * V
    return np.array([V1, V2, 0.0]) / V, np.array([V1 + V13, V2, V13]) / V


def _within_bootstrap(est, conf, exact):
    # 3 bootstrap half-widths (95%: 1.96 sigma each, so ~6 sigma of the estimator) cover the
    # estimator's error and the ~7% relative error of a std from 100 resamples; the 1e-3 floor covers
    # indices whose bootstrap spread is itself near zero.
    tol = 3 * conf + 1e-3
    assert np.all(np.abs(est - exact) <= tol), (est, exact, tol)


def test_ishigami_sobol_indices_match_closed_form():
    S1, ST = _ishigami_exact()
    N = 2 ** 13
    r = sobol_indices(["x1", "x2", "x3"], [[-np.pi, np.pi]] * 3, _ishigami, N, seed=1)
    assert r.evaluations == N * (3 + 2)
    # Meaningful: every half-width is well below the smallest gap between distinct exact indices (0.13).
    assert r.S1_conf.max() < 0.05 and r.ST_conf.max() < 0.05, (r.S1_conf, r.ST_conf)
    _within_bootstrap(r.S1[0], r.S1_conf[0], S1)
    _within_bootstrap(r.ST[0], r.ST_conf[0], ST)


def test_additive_model_with_each_distribution_matches_closed_form():
    """Y = sum c_i x_i, independent x_i: S1_i = ST_i = c_i^2 Var(x_i) / sum_j c_j^2 Var(x_j)."""
    c = np.array([1.0, 2.0, 3.0, 0.5])
    dists = ["unif", "norm", "lognorm", "triang"]
    bounds = [[0.0, 2.0], [1.0, 0.5], [0.0, 0.25], [0.0, 3.0, 0.2]]
    mode = 0.2 * 3.0
    var = np.array([4 / 12, 0.25, (math.exp(0.25 ** 2) - 1) * math.exp(0.25 ** 2),
                    (0 + 9 + mode ** 2 - 0 - 0 - 3 * mode) / 18])  # triangular: (a²+b²+m²-ab-am-bm)/18
    S = c ** 2 * var / (c ** 2 * var).sum()
    r = sobol_indices(list("abcd"), bounds, lambda X: X @ c, 2 ** 12, seed=3, dists=dists)
    _within_bootstrap(r.S1[0], r.S1_conf[0], S)
    _within_bootstrap(r.ST[0], r.ST_conf[0], S)


def test_design_evaluated_in_batches_gives_bitwise_the_same_indices():
    """Meant to be bitwise: the same design and outputs through the same analysis (the model uses only
    + and *, exact per element whatever the batch)."""
    model = lambda X: np.column_stack([X[:, 0] * X[:, 1] + X[:, 2], X[:, 0] ** 2])  # noqa: E731
    design = sobol_design(["p", "q", "r"], [[0, 1], [1, 2], [-1, 1]], 2 ** 8, seed=5)
    batches = np.concatenate([model(design.X[a:a + 333]) for a in range(0, design.evaluations, 333)])
    a = sobol_analyze(design, batches)
    b = sobol_indices(["p", "q", "r"], [[0, 1], [1, 2], [-1, 1]], model, 2 ** 8, seed=5, chunk_rows=100)
    assert np.array_equal(evaluate(design, model, chunk_rows=7), batches)
    for key in ("S1", "S1_conf", "ST", "ST_conf"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key


def _dyadic(x, bits=20):
    return np.round(np.asarray(x) * 2 ** bits) / 2 ** bits


def _certified_case(seed, n=2 ** 10, signs="random", tight=False):
    """True s (closed form of mu), s_N = s + e with |e| <= Delta and random signs. Every value is a
    multiple of 2^-20 below 2^6 in magnitude, so s_N = s + e, s_N -+ Delta and the sums are exact:
    the claims below are checked on exact numbers."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-1, 1, (n, 2))
    s = _dyadic(np.column_stack([np.sin(3 * mu[:, 0]) + mu[:, 1] ** 2, np.exp(mu[:, 0] * mu[:, 1]), mu[:, 1] ** 3]))
    Delta = _dyadic(0.05 * rng.uniform(0, 1, s.shape) * (1 + np.abs(s)))
    frac = np.ones(s.shape) if tight else np.where(rng.uniform(size=s.shape) < 0.3, 1.0, rng.uniform(size=s.shape))
    sign = rng.choice([-1.0, 1.0], s.shape) if signs == "random" else float(signs + "1")
    e = sign * np.floor(frac * Delta * 2 ** 20) / 2 ** 20
    assert np.all(np.abs(e) <= Delta)
    return s, s + e, Delta


@pytest.mark.parametrize("seed,signs", [(0, "random"), (1, "random"), (2, "random"), (3, "+"), (4, "-")])
def test_certified_brackets_contain_true_sample_mean_and_quantiles(seed, signs):
    s, s_N, Delta = _certified_case(seed, signs=signs)
    st = certified_statistics(s_N, Delta, LEVELS)
    assert st.kind == "certified"
    true_mean = np.array([math.fsum(col) / len(col) for col in s.T])  # correctly rounded; exact here
    assert np.all((st.mean_bounds[:, 0] <= true_mean) & (true_mean <= st.mean_bounds[:, 1]))
    true_q = np.quantile(s, LEVELS, axis=0, method="inverted_cdf")  # the same definition
    assert np.all((st.quantile_bounds[..., 0] <= true_q) & (true_q <= st.quantile_bounds[..., 1]))
    # std: |std(s) - std(s_N)| <= ||Delta|| / sqrt(n-1); 8 n u std covers the two computed stds.
    assert np.all(np.abs(s.std(0, ddof=1) - st.std) <= st.std_bound + 8 * len(s) * U * st.std)
    # The population quantile CIs of s_N and of s nest: the certified one adds Delta on both sides.
    assert np.all(st.quantile_ci_certified[..., 0] <= st.quantile_ci[..., 0])
    assert np.all(st.quantile_ci[..., 1] <= st.quantile_ci_certified[..., 1])


@pytest.mark.parametrize("signs,end", [("+", 0), ("-", 1)])
def test_certified_brackets_are_tight_when_every_error_is_at_its_bound(signs, end):
    s, s_N, Delta = _certified_case(7, signs=signs, tight=True)  # s = s_N -+ Delta exactly
    st = certified_statistics(s_N, Delta, LEVELS)
    true_mean = s.mean(0)  # exact: dyadic values, n a power of 2
    # That end is the exact mean of s_N -+ Delta moved outward by: one float per value (L_i, U_i are one
    # float beyond s_N,i -+ Delta_i), the rounding allowance, and one float for the subtraction.
    gap = (true_mean - st.mean_bounds[:, 0]) if end == 0 else (st.mean_bounds[:, 1] - true_mean)
    assert np.all((0 <= gap) & (gap <= np.spacing(np.abs(s)).max(0) + st.mean_rounding + 2 * np.spacing(np.abs(true_mean))))
    true_q = np.quantile(s, LEVELS, axis=0, method="inverted_cdf")
    assert np.array_equal(st.quantile_bounds[..., end], np.nextafter(true_q, [-np.inf, np.inf][end]))  # one float out


def test_std_bound_holds_and_is_attained_for_errors_along_the_centred_output():
    """e = s_N - s = 0.05 (s - mean(s)): std(s_N) = 1.05 std(s) and ||P e|| = ||e|| = ||Delta||, so the
    bound |std(s) - std(s_N)| <= ||Delta|| / sqrt(n-1) is an equality."""
    s = np.random.default_rng(8).gamma(2.0, 1.0, (500, 2))
    e = 0.05 * (s - s.mean(0))
    s_N = s + e
    st = certified_statistics(s_N, np.abs(e))
    diff = np.abs(s.std(0, ddof=1) - st.std)
    # Rounding: s_N and |e| are rounded (relative u), and each std carries ~n u relative: 8 n u std.
    tol = 8 * len(s) * U * st.std
    assert np.all(np.abs(diff - st.std_bound) <= tol), (diff, st.std_bound)


def test_certified_interval_collapses_to_the_point_without_error():
    s_N = np.random.default_rng(11).normal(2.0, 1.0, (1000, 2))  # not dyadic: rounding is real here
    n = len(s_N)
    st = certified_statistics(s_N, np.zeros_like(s_N), LEVELS)
    width = st.mean_bounds[:, 1] - st.mean_bounds[:, 0]
    # Width: the two rounding allowances, 2 gamma_{n+1} mean|s_N| each, plus one float per end.
    assert np.all(st.mean_rounding <= 2.01 * (n + 1) * U * np.abs(s_N).mean(0))
    assert np.all(width <= 2 * st.mean_rounding + 4 * np.spacing(np.abs(st.mean)))
    assert np.all((st.mean_bounds[:, 0] <= st.mean) & (st.mean <= st.mean_bounds[:, 1]))
    q = np.quantile(s_N, LEVELS, axis=0, method="inverted_cdf")
    assert np.array_equal(st.quantiles, q)
    assert np.array_equal(st.quantile_bounds[..., 0], np.nextafter(q, -np.inf))
    assert np.array_equal(st.quantile_bounds[..., 1], np.nextafter(q, np.inf))
    assert np.all(st.std_bound == 0)


@pytest.mark.parametrize("n,q", [(10, 0.5), (57, 0.1), (200, 0.9), (1000, 0.01)])
def test_order_statistic_ranks_against_brute_force(n, q):
    a = 0.025
    cdf = binom.cdf(np.arange(-1, n + 1), n, q)  # cdf[i] = P(B <= i-1)
    r = max([i for i in range(n + 1) if cdf[i] <= a] or [0])  # largest r with P(B <= r-1) <= a
    sf = binom.sf(np.arange(0, n + 1), n, q)  # sf[t-1] = P(B >= t)
    t = min([i for i in range(1, n + 1) if sf[i - 1] <= a] or [n + 1])  # smallest t with P(B >= t) <= a
    r2, t2, cov = order_statistic_ranks(n, q, 0.95)
    assert (r2, t2) == (r, t) and cov >= 0.95


@pytest.mark.parametrize("q", [0.05, 0.5, 0.9])
def test_order_statistic_interval_coverage_by_repetition(q):
    reps, n, level = 400, 200, 0.95
    x = np.random.default_rng(int(q * 100)).exponential(size=(n, reps))  # one repetition per column
    st = certified_statistics(x, np.zeros_like(x), [q], level)
    xi = -np.log1p(-q)  # the Exp(1) quantile
    hits = int(np.sum((st.quantile_ci[0, :, 0] <= xi) & (xi <= st.quantile_ci[0, :, 1])))
    p = st.ci_coverage[0]  # exact coverage of the ranks for a continuous law, >= level by construction
    assert p >= level
    # hits ~ Binomial(reps, p): a fixed seed outside its central 99.9% would be a real miscoverage.
    assert binom.ppf(5e-4, reps, p) <= hits <= binom.isf(5e-4, reps, p), (hits, p)


def _gp_case(seed=0, n=500, k=3):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0, 1, n)
    mean = np.column_stack([np.sin(6 * mu), mu ** 2, 1 + mu])
    return mean[:, :k], rng.uniform(0.0, 0.3, (n, k)) * [1, 0.1, 2][:k]


def test_gp_with_zero_std_gives_the_plain_sample_statistics():
    mean, _ = _gp_case()
    st = predictive_statistics(mean, np.zeros_like(mean), LEVELS, draws=16, seed=0)
    assert st.kind == "predictive"
    N = mean.shape[0] * st.draws
    # Pooled values are exact repeats of the means, so inverted_cdf picks the same order statistic.
    assert np.array_equal(st.quantiles, np.quantile(mean, LEVELS, axis=0, method="inverted_cdf"))
    assert np.all(st.sampled_within == 0) and np.all(st.surrogate_fraction == 0)
    # A mean of N floats is within gamma_{N+1} mean|x| of the exact one (both sides).
    assert np.all(np.abs(st.mean - mean.mean(0)) <= 2.01 * (N + 1) * U * np.abs(mean).mean(0))
    # Two-pass variances: relative error gamma_{N+3} of mean(x^2) each (means off by gamma_N add 2nd order).
    tol = 4.01 * (N + 3) * U * (mean ** 2).mean(0)
    assert np.all(np.abs(st.std ** 2 - mean.var(0)) <= tol)


def test_gp_total_variance_decomposition_adds_up():
    mean, std = _gp_case(1)
    st = predictive_statistics(mean, std, LEVELS, draws=64, seed=2, chunk_values=1000)
    N = mean.shape[0] * st.draws
    # Sampled (an identity on the draws): each of the three terms is N squares summed with relative
    # error gamma_{N+3}; the rounded means perturb them by at most gamma_N (var + mean^2) each.
    tol = 8.01 * (N + 3) * U * (st.sampled_variance + st.mean ** 2)
    assert np.all(np.abs(st.sampled_between + st.sampled_within - st.sampled_variance) <= tol)
    # Exact mixture: var(m) + mean(s^2) = mean(m^2 + s^2) - mean(m)^2 to the cancellation of the latter.
    second = (mean ** 2 + std ** 2).mean(0) - mean.mean(0) ** 2
    n = mean.shape[0]
    assert np.all(np.abs(st.var_of_means + st.mean_of_variances - second) <= 8.01 * (n + 3) * U * (mean ** 2 + std ** 2).mean(0))
    assert np.allclose(st.surrogate_fraction, st.mean_of_variances / second, rtol=1e-12, atol=0)
    # Monte Carlo: given the means, the pooled variance is var(m) + mean(s^2) + (2/N) sum (m_i - mbar) s_i z
    # + (1/N) sum s_i^2 (z^2 - 1) + O(1/N): its std is sqrt((4 mean((m-mbar)^2 s^2) + 2 mean(s^4)) / N); 5 of them.
    sigma = np.sqrt((4 * ((mean - mean.mean(0)) ** 2 * std ** 2).mean(0) + 2 * (std ** 4).mean(0)) / N)
    assert np.all(np.abs(st.sampled_variance - second) <= 5 * sigma + second / N), (st.sampled_variance - second, sigma)


def test_gp_sampling_is_reproducible_bitwise_and_per_output():
    """Meant to be bitwise: the same inputs and seed through the same code path; output 0 alone draws
    the same stream ([seed, 0]) as output 0 of three."""
    mean, std = _gp_case(2)
    a = predictive_statistics(mean, std, LEVELS, draws=32, seed=9)
    b = predictive_statistics(mean, std, LEVELS, draws=32, seed=9)
    alone = predictive_statistics(mean[:, :1], std[:, :1], LEVELS, draws=32, seed=9)
    for key in ("mean", "std", "quantiles", "sampled_variance", "sampled_between", "sampled_within", "mean_se"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
        assert np.array_equal(getattr(alone, key)[..., 0], getattr(a, key)[..., 0]), key
    assert not np.array_equal(a.mean, predictive_statistics(mean, std, LEVELS, draws=32, seed=10).mean)


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("call,match", [
    (lambda: certified_statistics(np.zeros((4, 2)), np.where(np.eye(4, 2, -2) > 0, np.nan, 0.1)), r"Delta: non-finite .* index \(2, 0\)"),
    (lambda: certified_statistics(np.zeros((4, 2)), np.where(np.eye(4, 2, -1) > 0, -1e-3, 0.1)), r"Delta: negative .* index \(1, 0\)"),
    (lambda: certified_statistics(np.zeros((4, 2)), np.full((4, 2), np.inf)), r"Delta: non-finite .* index \(0, 0\)"),
    (lambda: certified_statistics(np.zeros((4, 2)), np.zeros((4, 3))), r"Delta: shape"),
    (lambda: certified_statistics(np.zeros((4, 2)), np.zeros((4, 2)), [0.5, 1.0]), r"quantiles: .*\(0, 1\)"),
    (lambda: predictive_statistics(np.zeros((4, 2)), -np.ones((4, 2))), r"std: negative .* index \(0, 0\)"),
    (lambda: sobol_design(["a", "b"], [[0, 1], [2, 1]], 64), r"bounds: reversed .*'b'"),
    (lambda: sobol_design(["a", "b"], [[0, 1], [1, 2]], 100), r"N: .*power of 2"),
    (lambda: sobol_design(["a"], [[0, 1]], 64, dists=["beta"]), r"dists: unknown"),
    (lambda: sobol_indices(["a"], [[0, 1]], lambda X: np.where(np.arange(len(X)) == 5, np.nan, 1.0), 16),
     r"model: non-finite output at design row 5"),
])
def test_refusals_are_one_line_value_errors_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match) as excinfo:
        call()
    _one_line(excinfo)
