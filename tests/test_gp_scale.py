"""The gp and evaluate_gp stages on snapshot files read in blocks (rom.snapshots.SnapshotRows): the POD
coefficients, the cross-validation of the POD + GP chain and the test metrics computed block by block
equal the in-memory path's to rounding, without holding the snapshot matrix or an error array its size."""
import tracemalloc

import numpy as np
import pytest

from rom import artefacts
from rom import snapshots as snap
from rom.reduction.pod import pod
from snapshot_files import snapshot_file
from surrogates import gp as gpmod
from surrogates.pod_gp import fit_study
from test_pod_scale import laplacian

SETTINGS = {"parameter_scaling": False, "restarts": 1, "iterations": 40, "gtol": 1e-5, "input_transform": "none",
            "calibration": "cv", "folds": 3, "out_of_range_level": 0.05}


def parametric_set(m: int, n: int, seed: int, modes: int = 10):
    """Fields smooth in x and in the two parameters (amplitudes cos(k mu_0) mu_1^k on sines of k half-waves)."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.2, 1.0, (m, 2))
    k = np.arange(1, modes + 1)
    amp = np.cos(np.outer(mu[:, 0], k)) * mu[:, 1:2] ** k
    return mu, amp @ np.sin(np.pi * np.outer(k, np.linspace(0.0, 1.0, n)))


def in_memory(path):
    ds = artefacts.converged(artefacts.read(path))
    return ds["mu"].values, ds["u"].values


def lazy(path):
    meta = artefacts.read(path, drop=("u",))
    return artefacts.converged(meta)["mu"].values, snap.SnapshotRows(path, meta)


def assert_close(a, b, name, rtol=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, name
    scale = np.abs(a).max() if a.size else 0.0
    np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * scale, err_msg=name)


@pytest.fixture
def study(tmp_path):
    n = 300
    mu, U = parametric_set(40, n, 1)
    mut, Ut = parametric_set(15, n, 2)
    train = snapshot_file(tmp_path, "train", U, 6, failed={5}, mu=mu, seed=7)
    test = snapshot_file(tmp_path, "test", Ut, 4, failed={2}, mu=mut, seed=7)
    X = laplacian(n)
    V = pod(in_memory(train)[1], X, 1e-14, 6)[0]
    return train, test, X, V


@pytest.mark.parametrize("block_rows", [1, 4, 1000])
def test_blocked_gp_stage_equals_the_in_memory_one(study, block_rows, monkeypatch):
    train, test, X, V = study
    monkeypatch.setattr(gpmod, "BLOCK_BYTES", 16 * block_rows * 8 * V.shape[1])  # streamed blocks of block_rows
    mu, U = in_memory(train)
    mu1, rows = lazy(train)
    np.testing.assert_array_equal(mu1, mu)
    assert rows.shape == U.shape == (39, V.shape[1])
    assert_close(gpmod.pod_coefficients(U, X, V), gpmod.pod_coefficients(rows, X, V), "coefficients")
    old = fit_study(SETTINGS, 3, None, X, mu, U, V)
    new = fit_study(SETTINGS, 3, None, X, mu1, rows, V)
    rows.close()
    assert set(old.variables) == set(new.variables)
    for name in old.variables:  # the GPs, the modes, the cross-validated interval factors
        # The cross-validation's fold PODs are blocked (rom.reduction.pod.pod_blocks): their modes equal the
        # in-memory pod's to eps lambda_1 / lambda_k only (tests/test_pod_scale.py: 1e-10), and so do the
        # quantities calibrated on the folds' held-out errors (2e-10 relative here).
        cv = name in ("gp_variance_scale", "coefficient_interval_factor", "nodal_interval_factor")
        assert_close(old[name].values, new[name].values, name, rtol=1e-8 if cv else 1e-12)
    assert {k: v for k, v in old.attrs.items() if k != "fit_seconds"} == \
        {k: v for k, v in new.attrs.items() if k != "fit_seconds"}

    gp = gpmod.GP.from_dataset(old, "gp")
    mut, Ut = in_memory(test)
    mut1, trows = lazy(test)
    args = (old["coefficient_interval_factor"].values, old["nodal_interval_factor"].values, 0.05)
    a = gpmod.pod_gp_test_metrics(gp, V, X, mut, Ut, 0.0, *args)
    b = gpmod.pod_gp_test_metrics(gp, V, X, mut1, trows, 0.0, *args)
    assert set(a) == set(b)
    for name in a:
        if name in ("u_mean", "u_sd"):
            assert b[name].shape == a[name].shape
            for i in (0, 7, len(Ut) - 1):
                assert_close(a[name][i], b[name][i], f"{name}[{i}]")
        else:
            assert_close(a[name], b[name], name)
    np.testing.assert_array_equal(trows[3], Ut[3])
    trows.close()


def test_streamed_order_statistics_are_exact():
    rng = np.random.default_rng(0)
    values = np.abs(np.concatenate([rng.standard_normal(30_000) * 10.0 ** rng.integers(-8, 8, 30_000),
                                    np.zeros(500), np.full(40, np.inf), np.full(3, np.nan),
                                    np.repeat(rng.standard_normal(20), 200)]))
    rng.shuffle(values)
    ranks = np.unique(np.r_[0, len(values) - 1, rng.integers(0, len(values), 60)])

    def blocks():
        return iter(np.array_split(values.reshape(-1, 1), 17))

    ref = np.sort(values)[ranks]
    for budget in (1, 1000, 1 << 22):  # down to every bit narrowed by histograms
        got = gpmod.streamed_order_statistics(blocks, len(values), ranks, budget=budget)
        np.testing.assert_array_equal(got, ref)
    k = np.minimum(np.ceil(gpmod.CALIBRATION_GRID * (len(values) + 1)).astype(int), len(values))
    np.testing.assert_array_equal(gpmod.streamed_order_statistics(blocks, len(values), k - 1, budget=100),
                                  gpmod.interval_factors(values))


def test_blocked_gp_stage_never_holds_the_snapshot_matrix(tmp_path, monkeypatch):
    """Allocations traced by numpy (tracemalloc): the fit with cross-validation and the test metrics hold
    a panel of samples, a streamed block and the modes (of the stage and of the folds), where the
    in-memory path holds the matrix, its X product and the cross-validated errors."""
    n, m, k = 20_000, 200, 3  # the train matrix: 32 MB
    monkeypatch.setattr(snap, "COPY_BYTES", 1 << 20)
    monkeypatch.setattr(gpmod, "BLOCK_BYTES", 1 << 20)
    mu, U = parametric_set(m, n, 3)
    train = snapshot_file(tmp_path, "train", U, 50, mu=mu, seed=7)
    mut, Ut = parametric_set(40, n, 4)
    test = snapshot_file(tmp_path, "test", Ut, 20, mu=mut, seed=7)
    del U, Ut
    matrix = 8 * n * m
    X = laplacian(n)
    V = pod(in_memory(train)[1], X, 1e-14, k)[0]
    warm = gpmod.fit_pod_gp(mu[:10], mu[:10] ** 2, 0.0, restarts=1, iterations=2)  # torch's first-call imports
    gpmod.predict_pod_gp(warm, mu[:3], 0.0), warm.novelty(mu[:3]), warm.loo_novelty(), gpmod.gaussian_factors()
    tracemalloc.start()
    try:
        mu1, rows = lazy(train)
        ds = fit_study(SETTINGS, 0, None, X, mu1, rows, V)
        rows.close()
        fit_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        mut1, trows = lazy(test)
        gp = gpmod.GP.from_dataset(ds, "gp")
        r = gpmod.pod_gp_test_metrics(gp, V, X, mut1, trows, 0.0, ds["coefficient_interval_factor"].values,
                                      ds["nodal_interval_factor"].values)
        trows.close()
        eval_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        mu0, U0 = in_memory(train)
        fit_study(SETTINGS, 0, None, X, mu0, U0, V)
        old_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(r["relative_error"]) == 40 and np.all(np.isfinite(ds["nodal_interval_factor"].values))
    print(f"traced peaks / train matrix: blocked fit {fit_peak / matrix:.3f}, blocked test metrics "
          f"{eval_peak / matrix:.3f}, in-memory fit {old_peak / matrix:.2f}")
    modes = V.nbytes * (SETTINGS["folds"] + 2)  # V, V^2 and the folds' modes
    budget = (1 << 20) + modes + X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    assert fit_peak < 2 * budget and fit_peak < 0.25 * matrix, (fit_peak / budget, fit_peak / matrix)
    assert eval_peak < 2 * budget and eval_peak < 0.25 * matrix, (eval_peak / budget, eval_peak / matrix)
    assert old_peak > 2 * matrix
