"""GP regression: calibrated held-out intervals, ARD finds the irrelevant input,
the artefact round trip reproduces the predictor."""
import numpy as np
import pytest
import torch

from surrogates.gp import GP, coverage, homogeneous_inputs as _homogeneous, predict_pod_gp as predict

torch.set_num_threads(1)


def _data(n, seed):
    X = np.random.default_rng(seed).uniform(-1, 1, (n, 2))
    return X, np.column_stack([np.sin(3 * X[:, 0]) + 0.5 * X[:, 0] ** 2, np.cos(2 * X[:, 0])])


def test_gp_recovers_smooth_function_within_3_sigma_and_ignores_irrelevant_input():
    X, Y = _data(40, 0)
    Xt, Yt = _data(200, 1)
    gp = GP(restarts=2, iterations=40, seed=0).fit(X, Y)
    mean, var = gp.predict(Xt)
    # Calibrated intervals: of 400 held-out values a Gaussian puts 0.27% beyond 3 sigma (the
    # largest of 400 |z| is ~3 itself, so no bound on the max); allow 1%.
    z = np.abs(mean - Yt) / np.sqrt(var)
    assert np.mean(z > 3.0) <= 0.01, np.sort(z.ravel())[-5:]
    assert np.abs(mean - Yt).max() < 2e-2
    ls = gp.hyperparameters["lengthscale"]
    assert np.all(ls[:, 1] > 10 * ls[:, 0]), ls  # x_1 does not enter the function
    assert 0.90 <= coverage(Yt, mean, var) <= 0.99


def test_gp_dataset_round_trip_and_extrapolation_flag():
    X, Y = _data(30, 2)
    gp = GP(restarts=1, iterations=30, seed=1).fit(X, Y)
    again = GP.from_dataset(gp.to_dataset("gp"), "gp")
    Xt = np.array([[0.1, 0.2], [1.5, 0.0]])
    m1, v1 = gp.predict(Xt)
    m2, v2 = again.predict(Xt)
    assert np.abs(m1 - m2).max() < 1e-6 * np.abs(m1).max()
    assert np.abs(v1 - v2).max() < 1e-6 * v1.max()
    assert gp.outside(Xt).tolist() == [[False, False], [True, False]]


def test_log_input_transform_fits_inverse_conductivity_better_and_round_trips():
    """u ~ 1/mu (thermal block): in log mu the function is smooth on a uniform scale."""
    rng = np.random.default_rng(3)
    X, Xt = rng.uniform(0.1, 1.0, (16, 2)), rng.uniform(0.1, 1.0, (200, 2))
    f = lambda X: 1.0 / X[:, 0] + 0.3 / X[:, 1]  # noqa: E731
    err = {}
    for t in ("none", "log"):
        gp = GP(restarts=2, iterations=40, seed=0, input_transform=t).fit(X, f(X))
        err[t] = np.abs(gp.predict(Xt)[0][:, 0] - f(Xt)).max() / f(Xt).max()
    assert err["log"] < 0.5 * err["none"], err
    again = GP.from_dataset(gp.to_dataset("gp"), "gp")
    assert again.input_transform == "log"
    assert np.abs(again.predict(Xt[:5])[0] - gp.predict(Xt[:5])[0]).max() < 1e-6
    with pytest.raises(ValueError, match="not positive"):
        gp.predict(np.array([[0.5, -0.1]]))


def test_parameter_scaling_is_exact_for_a_homogeneous_solution():
    """Thermal block: u(2 mu) = u(mu) / 2, so the POD+GP prediction at 2 mu is half that at mu
    (variance a quarter), whatever the GP learned."""
    rng = np.random.default_rng(4)
    mu = rng.uniform(0.1, 1.0, (12, 3))
    C = np.column_stack([1.0 / mu.sum(axis=1), 1.0 / mu[:, 0]])  # homogeneous of degree -1
    x, scale = _homogeneous(mu, -1.0)
    gp = GP(restarts=1, iterations=20, seed=0, input_transform="log").fit(x, C / scale[:, None])
    c1, v1 = predict(gp, mu[:4], -1.0)
    c2, v2 = predict(gp, 2 * mu[:4], -1.0)
    assert np.allclose(c2, c1 / 2, rtol=1e-12) and np.allclose(v2, v1 / 4, rtol=1e-12)
    assert np.abs(c1 - C[:4]).max() < 1e-3 * np.abs(C).max()  # training points are interpolated
