"""Certified reduced basis: exactness at the snapshots, rigorous effectivities, the round-off-stable
residual evaluation against the textbook one, batched queries, bad input, and the CLI chain."""
import logging

import numpy as np
import pytest

from conftest import tiny_study, write_yaml
from rom import artefacts
from rom.hifi.discretization.operators import Operators, operators_dataset
from rom.hifi.problems import ThermalBlock
from rom.hifi.solvers.solve import FullOrderModel
from rom.models.rb import AffineCoefficients, CoerciveRBReductor, ExtrapolationError
from rom.reduction.greedy import weak_greedy


def exact_fom(problem):
    """PETSc FOM with a direct solve: truths accurate to ~1e-14 (the options database is shared by
    the whole test process, so the KSP is set explicitly)."""
    fom = FullOrderModel(problem, "petsc")
    fom.solver.ksp.setType("preonly")
    fom.solver.ksp.getPC().setType("lu")
    return fom


def setup(n=16, blocks=(2, 2)):
    p = ThermalBlock(n, blocks)
    ops = Operators.from_dataset(operators_dataset(p))
    Q = p.n_terms
    red = CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, AffineCoefficients(p, np.ones(Q)),
                             p.default_bounds, p.parameter_names)
    return p, ops, red, exact_fom(p)


def draw(n, Q, seed):
    return 0.1 + 0.9 * np.random.default_rng(seed).random((n, Q))


def x_errors(ops, U, c, V):
    E = U - c @ V
    XE = (ops.X @ E.T).T
    XU = (ops.X @ U.T).T
    return np.sqrt(np.einsum("ij,ij->i", E, XE)), np.sqrt(np.einsum("ij,ij->i", U, XU))


def test_rb_with_all_snapshots_reproduces_the_fom():
    p, ops, red, fom = setup(n=12)
    mu = draw(7, 4, 1)
    U = np.array([fom.solve(m).u for m in mu])
    for u in U:
        assert red.extend(u)
    assert red.N == 7
    model = red.model()
    err, norm = x_errors(ops, U, model.solve_batch(mu), red.V)
    assert (err / norm).max() < 1e-10
    # The estimator sees the same: (near) zero residual at the snapshots.
    assert (model.estimate_batch(mu, model.solve_batch(mu)) / norm).max() < 1e-9


@pytest.mark.parametrize("blocks, tol", [((2, 2), 1e-4), ((3, 3), 1e-3)])
def test_effectivity_at_least_one(blocks, tol, rounding):
    """The greedy's verdict (tolerance reached, no parameter picked twice) and the effectivities
    hold on the parameters as drawn and perturbed at rounding level."""
    p, ops, red, fom = setup(n=12, blocks=blocks)
    Q = p.n_terms
    h = weak_greedy(rounding(draw(200, Q, 2)), lambda m: fom.solve(m).u, red, tol, 60)
    assert h.stop_reason == "tolerance" and h.max_estimate[-1] < tol
    assert np.all(np.diff(h.selected) != 0)
    test = rounding(draw(20, Q, 3))
    U = np.array([fom.solve(m).u for m in test])
    model = red.model()
    for N in (max(1, red.N // 2), red.N):
        mN = model.truncated(N)
        c = mN.solve_batch(test)
        err, norm = x_errors(ops, U, c, red.V[:N])
        eff = mN.estimate_batch(test, c) / err
        assert eff.min() >= 1.0, eff.min()
        # min-theta: the effectivity is at most the contrast mu_max / mu_min = 10 times the
        # continuity/coercivity ratio of the reduced residual, here well below 20.
        assert eff.max() < 20.0, eff.max()
    # At moderate accuracy (errors ~1e-2 relative) both evaluations agree.
    mN = model.truncated(max(1, red.N // 3))
    c = mN.solve_batch(test)
    np.testing.assert_allclose(mN.estimate_batch(test, c, "textbook"), mN.estimate_batch(test, c), rtol=1e-6)


def test_stable_estimator_keeps_the_bound_where_the_textbook_one_loses_it():
    p, ops, red, fom = setup(n=16)
    h = weak_greedy(draw(300, 4, 4), lambda m: fom.solve(m).u, red, 1e-12, 40)
    test = draw(30, 4, 5)
    U = np.array([fom.solve(m).u for m in test])
    model = red.model()
    rel_max = []
    for N in range(1, red.N + 1):
        c = model.truncated(N).solve_batch(test)
        err, norm = x_errors(ops, U, c, red.V[:N])
        rel_max.append((err / norm).max())
    # The first basis size whose true errors are all below 1e-11 (relative).
    N = int(np.argmax(np.array(rel_max) < 1e-11)) + 1
    assert rel_max[N - 1] < 1e-11, (h.stop_reason, rel_max)
    mN = model.truncated(N)
    c = mN.solve_batch(test)
    err, _ = x_errors(ops, U, c, red.V[:N])
    eff_stable = mN.estimate_batch(test, c, "stable") / err
    eff_textbook = mN.estimate_batch(test, c, "textbook") / err
    assert eff_stable.min() >= 1.0, eff_stable
    assert eff_stable.max() < 20.0, eff_stable
    lost = np.isnan(eff_textbook) | (eff_textbook < 1.0)
    assert lost.any(), eff_textbook
    # Where it is finite at all, the textbook value is noise, far from the stable one.
    finite = np.isfinite(eff_textbook)
    assert not finite.any() or not np.allclose(eff_textbook[finite], eff_stable[finite], rtol=0.1)


def test_batched_queries_equal_single_queries():
    p, ops, red, fom = setup(n=12)
    weak_greedy(draw(100, 4, 6), lambda m: fom.solve(m).u, red, 1e-6, 12)
    model = red.model()
    mu = draw(50, 4, 7)
    c_batch, d_batch = model.solve_and_estimate_batch(mu)
    single = [model.solve_and_estimate(m) for m in mu]
    np.testing.assert_allclose(c_batch, np.array([c for c, _ in single]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d_batch, np.array([d for _, d in single]), rtol=1e-10)
    assert model.solve_and_estimate(mu[0])[1] == pytest.approx(d_batch[0], rel=1e-10)
    np.testing.assert_array_equal(model.solve(mu[0]), single[0][0])
    # The relative estimate used by the greedy is Delta / ||u_rb||_X with ||u_rb||_X = ||c||_2.
    np.testing.assert_allclose(red.estimate(mu), d_batch / np.linalg.norm(c_batch, axis=1), rtol=1e-10)


def test_parameter_outside_the_trained_range_is_refused_or_flagged():
    p, ops, red, fom = setup(n=8)
    red.extend(fom.solve(np.full(4, 0.5)).u)
    model = red.model()
    with pytest.raises(ExtrapolationError, match=r"mu_2 = 1.5 .*outside the trained range \[0.1, 1\]"):
        model.solve([0.5, 0.5, 1.5, 0.5])
    with pytest.raises(ExtrapolationError, match="expected 4"):
        model.solve_and_estimate([0.5, 0.5])
    from dataclasses import replace

    flagged = replace(model, extrapolation="flag")
    np.testing.assert_array_equal(flagged.check([[0.5] * 4, [0.5, 0.5, 1.5, 0.5]]), [False, True])
    assert np.isfinite(flagged.solve_and_estimate([0.5, 0.5, 1.5, 0.5])[1])


def test_basis_that_lost_orthogonality_is_reorthonormalized_and_logged(caplog):
    p, ops, red, fom = setup(n=12)
    mu = draw(5, 4, 8)
    U = np.array([fom.solve(m).u for m in mu])
    for u in U:
        red.extend(u)
    V = red.V.copy()
    V[3] += 1e-6 * V[0]  # a basis damaged by round-off elsewhere
    with caplog.at_level(logging.WARNING, logger="rom.rb"):
        red.set_basis(V)
    assert red.reorthonormalizations == 1
    assert any("re-orthonormalized" in r.message for r in caplog.records)
    gram = red.V @ (ops.X @ red.V.T)
    assert np.abs(gram - np.eye(5)).max() < 1e-12
    err, norm = x_errors(ops, U, red.model().solve_batch(mu), red.V)
    assert (err / norm).max() < 1e-10


def test_unreachable_tolerance_stops_at_N_max_with_a_warning(rounding):
    p, ops, red, fom = setup(n=8)
    h = weak_greedy(rounding(draw(50, 4, 9)), lambda m: fom.solve(m).u, red, 1e-30, 3)
    assert (h.stop_reason, red.N, len(h.max_estimate)) == ("N_max", 3, 3)
    assert "not reached at N_max = 3" in h.warning


def test_cli_chain_and_bad_query(tmp_path, capsys):
    from rom.cli import main

    def cli(*args):
        return main([str(a) for a in args])

    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_study(
        design={"method": "lhs", "train": {"size": 2, "seed": 1}, "test": {"size": 5, "seed": 2}},
        simulate={"chunk_size": 8, "petsc_options": {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12}},
        rb={"enabled": True, "train_size": 60, "tol": 1e-4, "max_modes": 3, "batch_size": 500, "n_timing": 10}))
    s = tmp_path / "study.yaml"
    assert cli("configure", "--config", cfg, "--out", s) == 0
    for cmd in (["sample", "--out", tmp_path / "p.h5"], ["operators", "--out", tmp_path / "ops.h5"],
                ["simulate", "--parameters", tmp_path / "p.h5", "--set", "test", "--out", tmp_path / "test.h5"]):
        assert cli(cmd[0], "--study-config", s, *cmd[1:]) == 0
    assert cli("reduced-basis", "--study-config", s, "--operators", tmp_path / "ops.h5", "--out", tmp_path / "rb.h5") == 0
    rb = artefacts.read(tmp_path / "rb.h5")
    # tol 1e-4 is out of reach with N_max = 3: a warning in the artefact, not an exception.
    assert rb.attrs["stop_reason"] == "N_max" and "not reached" in rb.attrs["warning"]
    assert rb["basis"].shape[0] == 3 and rb["greedy_max_estimate"].shape == (3,)
    assert cli("evaluate-rom", "--study-config", s, "--operators", tmp_path / "ops.h5", "--rb", tmp_path / "rb.h5",
               "--test", tmp_path / "test.h5", "--out", tmp_path / "m.h5") == 0
    m = artefacts.read(tmp_path / "m.h5")
    assert m.attrs["affine_effectivity_min"] >= 1.0
    assert m["affine_error"].shape == (3, 5)
    assert np.all(m["affine_estimate"].values >= m["affine_error"].values)
    capsys.readouterr()
    assert cli("evaluate-rom", "--study-config", s, "--operators", tmp_path / "ops.h5", "--rb",
               tmp_path / "rb.h5", "--mu", "0.5,0.5,0.5,3") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "mu_3 = 3 (query 0) is outside the trained range [0.1, 1]" in lines[0]
    assert cli("evaluate-rom", "--study-config", s, "--operators", tmp_path / "ops.h5", "--rb",
               tmp_path / "rb.h5", "--mu", "0.5,0.5,0.5,0.9") == 0
    assert "error bound" in capsys.readouterr().out
