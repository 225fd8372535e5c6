"""Snapshot generation that learns from itself (rom.hifi.sequence: ordering, recycling, tuning, driver): solve orders,
reuse along the sequence, online tuning of a solver parameter. Real PETSc solves of the thermal block at a
few thousand dofs; references are SciPy direct solves. About 25 s in all on 2 cores."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from conftest import ROOT, env
from rom.design import chunk_indices, n_chunks, scale, unit_design
from rom.hifi.discretization import fem
from rom.hifi.sequence.ordering import (
    chunk_plan,
    hilbert_order,
    nearest_neighbour_path,
    path_length,
    solve_order,
    unit_coordinates,
)
from rom.hifi.solvers.solve import FullOrderModel

EPS = np.finfo(float).eps


# -- ordering ------------------------------------------------------------------------------------------------
DESIGNS = [("lhs", 64, 4), ("sobol", 64, 3), ("random", 200, 5), ("grid", 0, 3)]


@pytest.mark.parametrize("method,size,dim", DESIGNS)
@pytest.mark.parametrize("order", ["nearest", "hilbert"])
def test_order_is_a_shorter_reproducible_permutation(method, size, dim, order):
    bounds = np.array([[0.1, 1.0]] * (dim - 1) + [[1e-3, 1e1]])
    dists = ["uniform"] * (dim - 1) + ["loguniform"]
    mu = scale(unit_design(method, size, dim, seed=7, grid_points=4), bounds, dists)
    X = unit_coordinates(mu, bounds, dists)
    perm = solve_order(X, order)
    assert np.array_equal(np.sort(perm), np.arange(len(mu)))
    # Reproducible: the same design (same seed) gives the same order.
    again = solve_order(unit_coordinates(scale(unit_design(method, size, dim, seed=7, grid_points=4), bounds, dists),
                                         bounds, dists), order)
    assert np.array_equal(perm, again)
    assert path_length(X, perm) < path_length(X, np.arange(len(mu)))


def test_unit_coordinates_invert_the_design_scaling():
    """Log axes in log coordinates: the unit design is recovered from the scaled parameters."""
    bounds = np.array([[0.5, 2.0], [1e-4, 1e2], [3.0, 3.0]])
    dists = ["uniform", "loguniform", "uniform"]
    U = unit_design("lhs", 50, 3, seed=3)
    U[:, 2] = 0.0  # a fixed parameter maps to 0
    X = unit_coordinates(scale(U, bounds, dists), bounds, dists)
    assert np.abs(X - U).max() <= 64 * EPS


def test_hilbert_order_walks_a_grid_cell_by_cell():
    """On a 2^b grid the Hilbert curve moves to an adjacent cell at every step (in 2D and 3D)."""
    for d, m in ((2, 16), (3, 8)):
        cells = np.stack(np.meshgrid(*[np.arange(m)] * d, indexing="ij"), -1).reshape(-1, d)
        order = hilbert_order((cells + 0.5) / m, bits=int(np.log2(m)))
        assert np.array_equal(np.sort(order), np.arange(m ** d))
        assert np.abs(np.diff(cells[order], axis=0)).sum(axis=1).max() == 1


def test_nearest_neighbour_path_on_a_line_is_monotone():
    x = np.random.default_rng(0).permutation(np.linspace(0.0, 1.0, 40))[:, None]
    p = nearest_neighbour_path(x)
    assert np.all(np.diff(x[p, 0]) > 0) or np.all(np.diff(x[p, 0]) < 0)  # from one end to the other
    assert path_length(x, p) == pytest.approx(1.0, abs=8 * EPS)


@pytest.mark.parametrize("method", ["nearest", "hilbert"])
def test_chunks_partition_the_set_along_one_path(method):
    bounds, dists = np.array([[0.1, 1.0]] * 4), ["uniform"] * 4
    mu = scale(unit_design("lhs", 70, 4, seed=11), bounds, dists)
    X = unit_coordinates(mu, bounds, dists)
    c = 16
    plans = [chunk_plan(mu, bounds, dists, c, k, method) for k in range(n_chunks(70, c))]
    everything = np.concatenate([p.index for p in plans])
    assert np.array_equal(np.sort(everything), np.arange(70))  # disjoint and complete
    for p in plans:
        assert np.all(np.diff(p.index) > 0)  # the artefact's own order: the design's
        assert np.array_equal(np.sort(p.order), np.arange(len(p.index)))
        assert np.array_equal(p.solve_index, p.index[p.order])
    within = sum(path_length(X, p.solve_index) for p in plans)
    design = sum(path_length(X, chunk_indices(70, c, k)) for k in range(n_chunks(70, c)))
    assert within < 0.6 * design
    d = chunk_plan(mu, bounds, dists, c, 2, "design")
    assert np.array_equal(d.index, chunk_indices(70, c, 2)) and np.array_equal(d.order, np.arange(c))


def test_ordering_refuses_bad_input_in_one_line():
    with pytest.raises(ValueError, match="simulate.ordering = 'spiral': expected one of nearest, hilbert, design"):
        solve_order(np.zeros((3, 2)), "spiral")
    with pytest.raises(ValueError, match="chunk 5: expected 0..1 for 20 samples in chunks of 16"):
        chunk_plan(np.zeros((20, 2)), np.array([[0, 1], [0, 1]]), ["uniform"] * 2, 16, 5)
    with pytest.raises(ValueError, match="parameters have 3 columns but the box has 2 rows"):
        unit_coordinates(np.zeros((4, 3)), np.array([[0, 1], [0, 1]]), ["uniform"] * 2)


# -- reuse along the sequence ------------------------------------------------------------------------------
RTOL = 1e-8
# The unpreconditioned residual norm makes the stopping test ||b - A x|| <= rtol ||b|| for every variant,
# whatever initial guess it starts from.
OPTIONS = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": RTOL, "ksp_norm_type": "unpreconditioned",
           "ksp_max_it": 500}


@pytest.fixture(scope="module")
def block():
    """Thermal block 2x2 on 49^2 = 2401 free dofs, 24 parameters in solve order, direct reference solutions
    and the bounds that turn residuals into errors."""
    from rom.hifi.problems import ThermalBlock

    problem = ThermalBlock(mesh_n=50, blocks=(2, 2))
    pattern = fem.Pattern.build(problem.mesh)
    terms, f = problem.operator_terms(pattern), problem.rhs_terms(pattern)[0]
    bounds = np.array([[0.1, 1.0]] * 4)
    mu = scale(unit_design("lhs", 24, 4, seed=5), bounds, ["uniform"] * 4)
    order = solve_order(unit_coordinates(mu, bounds, ["uniform"] * 4))
    exact = np.array([spla.spsolve(pattern.to_scipy(m @ terms).tocsc(), f) for m in mu])
    # A(mu) = sum_q mu_q K_q with K_q >= 0, so lambda_min(A) >= min(mu) lambda_min(K), K = sum_q K_q.
    K = pattern.to_scipy(terms.sum(axis=0)).tocsc()
    lam_min = spla.eigsh(K, k=1, sigma=0.0, which="LM", return_eigenvectors=False)[0]
    lam_max = spla.eigsh(K, k=1, which="LA", return_eigenvectors=False)[0]
    return dict(problem=problem, mu=mu, order=order, exact=exact, f=f, lam_min=mu.min(axis=1) * lam_min,
                norm_A=mu.max(axis=1) * lam_max)


def run_sequence(block, settings, basis=None):
    from rom.hifi.sequence.driver import solve_sequence

    fom = FullOrderModel(block["problem"], "petsc", OPTIONS)
    samples, facts = solve_sequence(fom, block["mu"], settings, order=block["order"], basis=basis)
    fom.solver.destroy()
    return samples, facts


def error_bound(block, iterations):
    """||x - x*|| <= ||r|| / lambda_min(A) with ||r|| <= rtol ||b|| (the stopping test) plus the gap between
    CG's recursive and the true residual, a few eps ||A|| ||x*|| per iteration."""
    x_norm = np.linalg.norm(block["exact"], axis=1)
    gap = 4.0 * (np.asarray(iterations) + 1) * EPS * block["norm_A"] * x_norm
    return (RTOL * np.linalg.norm(block["f"]) + gap) / block["lam_min"]


def reuse_variants():
    from rom.hifi.sequence.driver import SequenceSettings as S

    return {
        "projection": S(),
        "previous": S(initial_guess="previous"),
        "projection (8 solutions)": S(guess_size=8),
    }


@pytest.fixture(scope="module")
def plain(block):
    from rom.hifi.sequence.driver import SequenceSettings

    return run_sequence(block, SequenceSettings.plain())


@pytest.mark.parametrize("name", list(reuse_variants()))
def test_reuse_changes_no_snapshot_beyond_the_solver_tolerance(block, plain, name):
    samples, facts = run_sequence(block, reuse_variants()[name])
    ref_samples, ref_facts = plain
    assert all(s.converged for s in samples)
    U, R = np.array([s.u for s in samples]), np.array([s.u for s in ref_samples])
    # Each snapshot is within the bound of the exact solution, so reuse and no reuse differ by at most both bounds.
    bound_reuse, bound_plain = error_bound(block, facts.iterations), error_bound(block, ref_facts.iterations)
    assert np.all(np.linalg.norm(U - block["exact"], axis=1) <= bound_reuse)
    assert np.all(np.linalg.norm(U - R, axis=1) <= bound_reuse + bound_plain)
    assert np.array_equal(facts.position[block["order"]], np.arange(len(block["mu"])))
    assert np.all(facts.iterations == [s.iterations for s in samples])
    assert np.all(np.isfinite(facts.setup_seconds)) and np.all(facts.solve_seconds > 0)


def test_projection_does_what_it_claims(block, plain):
    from rom.hifi.sequence.driver import SequenceSettings

    _, base = plain
    _, proj = run_sequence(block, SequenceSettings())
    assert proj.guess_dim[block["order"][0]] == 0
    assert np.array_equal(proj.guess_dim[block["order"]], np.minimum(np.arange(24), 64))  # every solution enters
    # The guess lowers the count wherever the span has grown (second half of the sequence).
    half = block["order"][12:]
    assert proj.iterations[half].sum() < 0.8 * base.iterations[half].sum()
    assert (proj.pc_rebuilt == 1).all()  # every solve builds its preconditioner


def test_reduced_basis_guess_helps_from_the_first_solve(block, plain):
    from rom.hifi.sequence.driver import SequenceSettings

    _, base = plain
    V = np.linalg.svd(block["exact"][::3], full_matrices=False)[2][:6]  # POD of 8 of the solutions
    samples, facts = run_sequence(block, SequenceSettings(guess_size=4), basis=V)
    first = block["order"][0]
    assert facts.guess_dim[first] == 6
    assert facts.iterations[first] < base.iterations[first]
    U = np.array([s.u for s in samples])
    assert np.all(np.linalg.norm(U - block["exact"], axis=1) <= error_bound(block, facts.iterations))


def test_facts_become_artefact_variables(block, plain):
    import xarray as xr

    from rom.hifi.sequence.driver import SequenceSettings

    _, facts = plain
    ds = xr.Dataset(facts.data_vars(), coords={"sample": np.arange(24)})
    assert ds["solve_position"].dtype == np.int64 and ds["pc_rebuilt"].dtype == np.int8
    assert np.array_equal(np.sort(ds["solve_position"].values), np.arange(24))
    assert np.isnan(ds["tuned_value"].values).all()
    assert facts.attrs["initial_guess"] == "none" and facts.attrs["reuse_path"].startswith("linear stationary")
    s = SequenceSettings.from_config({"initial_guess": "previous", "tune": {"option": "-pc_sor_omega", "range": [1, 1.9]}})
    assert s.initial_guess == "previous" and s.tune.option == "pc_sor_omega" and len(s.tune.values) == 8


def test_settings_refuse_bad_values_in_one_line():
    from rom.hifi.sequence.driver import SequenceSettings, TuneSettings

    with pytest.raises(ValueError, match="simulate.initial_guess = 'warm': expected one of none, previous, projection"):
        SequenceSettings(initial_guess="warm")
    with pytest.raises(ValueError, match="simulate.tune.option = 'ksp_rtol': changes what the solve computes"):
        TuneSettings("ksp_rtol", (1e-8, 1e-6))
    with pytest.raises(ValueError, match=r"simulate.tune.range = \[1.5, 1.0\]: expected two finite numbers"):
        TuneSettings("pc_sor_omega", (1.5, 1.0))
    with pytest.raises(ValueError, match="simulate.tune.policy = 'greedy': expected one of bandit, contextual"):
        TuneSettings("pc_sor_omega", (1.0, 1.9), policy="greedy")


def test_transient_problems_are_solved_in_the_given_order():
    """Heat (transient): the per-sample path; the fields do not depend on the order."""
    from rom.hifi.problems import Heat
    from rom.hifi.sequence.driver import SequenceSettings, solve_sequence

    problem = Heat(mesh_n=12, steps=5)
    mu = np.random.default_rng(2).uniform(0.0, 1.0, (4, 5))
    opts = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12}
    samples, facts = solve_sequence(FullOrderModel(problem, "petsc", opts), mu, SequenceSettings(),
                                    order=np.array([2, 0, 3, 1]))
    ref = FullOrderModel(problem, "petsc", opts).solve_samples(mu)
    for s, r in zip(samples, ref):
        assert np.abs(s.u - r.u).max() <= 1e-9 * np.abs(r.u).max()
    assert np.array_equal(facts.position, [1, 3, 0, 2]) and facts.attrs["reuse_path"].startswith("per sample")


# -- online tuning -----------------------------------------------------------------------------------------
def test_bandit_approaches_the_best_fixed_omega():
    """SSOR-preconditioned CG over 60 thermal-block systems: the bandit's total iteration count is within 20%
    of the best fixed omega of its grid (exhaustive search) and below the default omega = 1."""
    from rom.hifi.problems import ThermalBlock
    from rom.hifi.sequence.driver import SequenceSettings, TuneSettings, solve_sequence

    problem = ThermalBlock(mesh_n=40, blocks=(2, 2))
    mu = np.random.default_rng(4).uniform(0.1, 1.0, (60, 4))
    opts = {"ksp_type": "cg", "pc_type": "sor", "pc_sor_symmetric": True, "ksp_rtol": 1e-8, "ksp_max_it": 2000}
    values = TuneSettings("pc_sor_omega", (1.0, 1.95)).values

    def total(settings, omega=None):
        fom = FullOrderModel(problem, "petsc", opts)
        if omega is not None:
            fom.solver.configure({"pc_sor_omega": omega}, override=True)
        samples, facts = solve_sequence(fom, mu, settings)
        fom.solver.destroy()
        assert all(s.converged for s in samples)
        return int(facts.iterations.sum()), facts

    fixed = np.array([total(SequenceSettings.plain(), w)[0] for w in values])
    for policy in ("bandit", "contextual"):
        tuned, facts = total(SequenceSettings(initial_guess="none",
                                              tune=TuneSettings("pc_sor_omega", (1.0, 1.95), policy=policy)))
        assert tuned <= 1.2 * fixed.min(), (policy, tuned, fixed)
        assert tuned < fixed[0]
        assert np.isin(facts.tuned_value, values).all()


# -- MPI ------------------------------------------------------------------------------------------------------
MPI_SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from rom.hifi.solvers import petsc
petsc.init([])
from rom.hifi.problems import ThermalBlock
from rom.hifi.sequence.driver import SequenceSettings, solve_sequence
from rom.hifi.solvers.solve import FullOrderModel
problem = ThermalBlock(mesh_n=40, blocks=(2, 2))
mu = np.random.default_rng(1).uniform(0.1, 1.0, (8, 4))
opts = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-8, "ksp_norm_type": "unpreconditioned"}
out = {}
for name, s in (("plain", SequenceSettings.plain()), ("projection", SequenceSettings())):
    fom = FullOrderModel(problem, "petsc", opts)
    samples, facts = solve_sequence(fom, mu, s, order=np.array([3, 1, 0, 2, 7, 5, 4, 6]))
    if fom.rank == 0:
        out[name] = {"u": np.array([x.u for x in samples]).tolist(), "its": facts.iterations.tolist(),
                     "ranks": fom.comm.size}
if out:
    print(json.dumps(out))
"""


def test_sequence_on_two_ranks_matches_direct_solves():
    from rom.hifi.problems import ThermalBlock

    proc = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-c", MPI_SCRIPT, str(ROOT)], env=env(),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    problem = ThermalBlock(mesh_n=40, blocks=(2, 2))
    pattern = fem.Pattern.build(problem.mesh)
    terms, f = problem.operator_terms(pattern), problem.rhs_terms(pattern)[0]
    mu = np.random.default_rng(1).uniform(0.1, 1.0, (8, 4))
    K = pattern.to_scipy(terms.sum(axis=0)).tocsc()
    exact = np.array([spla.spsolve(pattern.to_scipy(m @ terms).tocsc(), f) for m in mu])
    ref = {"exact": exact, "f": f, "norm_A": mu.max(axis=1) * spla.eigsh(K, k=1, which="LA", return_eigenvectors=False)[0],
           "lam_min": mu.min(axis=1) * spla.eigsh(K, k=1, sigma=0.0, which="LM", return_eigenvectors=False)[0]}
    for name, r in out.items():
        assert r["ranks"] == 2
        err = np.linalg.norm(np.array(r["u"]) - exact, axis=1)
        assert np.all(err <= error_bound(ref, r["its"])), (name, err)
    assert sum(out["projection"]["its"]) < sum(out["plain"]["its"])


def test_schema_defaults_are_the_library_defaults():
    """SequenceSettings reads its defaults from the study schema (workflow/schemas), their one source: a
    validated default study and SequenceSettings() agree, so the default run is the combination the docs and
    the benchmark recommend."""
    from conftest import tiny_study
    from rom import config
    from rom.hifi.sequence.driver import SequenceSettings, TuneSettings

    sim = config.validate(tiny_study())["simulate"]
    assert SequenceSettings.from_config(sim) == SequenceSettings() == SequenceSettings.from_config({})
    props = config.schema()["properties"]["simulate"]["properties"]
    assert SequenceSettings().initial_guess == props["initial_guess"]["default"]
    assert SequenceSettings().guess_size == props["guess_size"]["default"]
    tune = TuneSettings("pc_sor_omega", (1.0, 1.9))
    assert all(getattr(tune, k) == v["default"] for k, v in props["tune"]["properties"].items() if "default" in v)
    assert sim["ordering"] == "nearest" and "option" not in sim["tune"]  # nothing tuned


# -- the simulate stage ----------------------------------------------------------------------------------------
PLAIN = {"ordering": "design", "initial_guess": "none"}


def stage_run(tmp_path, name, **simulate):
    """One simulate chunk of 24 LHS samples of the 2x2 thermal block (CG + GAMG, rtol 1e-10) through the CLI."""
    from conftest import rom_cli, tiny_study, write_yaml
    from rom import artefacts

    d = tmp_path / name
    d.mkdir()
    cfg = write_yaml(d / "cfg.yaml", tiny_study(
        problem={"name": "thermal_block", "mesh": {"n": 40}, "blocks": [2, 2]},
        design={"method": "lhs", "train": {"size": 24, "seed": 3}, "test": {"size": 0}},
        simulate={"chunk_size": 24, "mpi_ranks": 1, **simulate,
                  "petsc_options": {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-10}}))
    rom_cli("configure", "--config", cfg, "--out", d / "study.yaml")
    rom_cli("sample", "--study-config", d / "study.yaml", "--out", d / "p.h5")
    rom_cli("simulate", "--study-config", d / "study.yaml", "--parameters", d / "p.h5", "--set", "train",
            "--chunk", "0", "--out", d / "c.h5")
    return artefacts.read(d / "c.h5")


def test_simulate_stage_records_the_sequence_and_changes_no_snapshot(tmp_path):
    """The default study file (ordering nearest, projection guess) against every piece switched off: the
    artefact keeps the design's sample order, the snapshots agree to the solver tolerance, the per-sample facts
    are recorded, and the guesses save iterations after the first solves."""
    default, plain = stage_run(tmp_path, "default"), stage_run(tmp_path, "plain", **PLAIN)
    assert np.array_equal(default["sample"].values, np.arange(24))
    np.testing.assert_array_equal(default["mu"].values, plain["mu"].values)
    assert sorted(default["solve_position"].values.tolist()) == list(range(24))
    assert not np.array_equal(default["solve_position"].values, np.arange(24))  # a path, not the design order
    assert np.array_equal(plain["solve_position"].values, np.arange(24))
    U, V = default["u"].values, plain["u"].values
    # Both stop at ||r|| <= 1e-10 ||b||: the errors are below 1e-10 cond(A), and cond(A) of this 39^2-dof
    # Laplacian with contrast 10 is below 1e4 (h^-2 times the contrast): relative difference 2e-6 at most.
    rel = np.linalg.norm(U - V, axis=1) / np.linalg.norm(V, axis=1)
    assert rel.max() < 2e-6, rel.max()
    assert default.attrs["sequence_initial_guess"] == "projection" and default.attrs["ordering"] == "nearest"
    assert plain["guess_dim"].values.max() == 0 and default["guess_dim"].values.max() == 23
    order = np.argsort(default["solve_position"].values)
    its, cold = default["iterations"].values[order], plain["iterations"].values
    # the first solve has nothing to start from (its count may differ from the plain run's by the GAMG
    # eigenvalue estimate's random start, which advances along a sequence)
    assert default["guess_dim"].values[order[0]] == 0 and abs(int(its[0]) - int(cold[order[0]])) <= 2
    assert its[12:].sum() < cold[order[12:]].sum()  # later ones start from the projection
    for var in ("setup_seconds", "krylov_seconds"):
        assert np.all(default[var].values > 0)


def test_simulate_refuses_settings_it_cannot_honour_in_one_line(tmp_path):
    from conftest import PYTHON, tiny_study, write_yaml

    # a setting removed because it measured no gain (rom.config.REMOVED; every one in tests/test_config.py)
    bad = {"preconditioner_reuse": "interpolation", "petsc_options": {"ksp_type": "cg", "pc_type": "gamg"}}
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_study(simulate={"chunk_size": 4, "mpi_ranks": 1, **bad}))
    proc = subprocess.run([PYTHON, "-m", "rom", "configure", "--config", cfg, "--out", tmp_path / "s.yaml"],
                          capture_output=True, text=True, env=env(), timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "simulate.preconditioner_reuse: removed, it measured no " \
        "gain" in lines[0], proc.stderr
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_study(simulate={"chunk_size": 4, "tune": {
        "option": "ksp_rtol", "range": [1e-8, 1e-6]}}))
    proc = subprocess.run([PYTHON, "-m", "rom", "configure", "--config", cfg, "--out", tmp_path / "s.yaml"],
                          capture_output=True, text=True, env=env(), timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "simulate.tune.option = 'ksp_rtol'" in lines[0], proc.stderr


def test_a_direct_solve_takes_no_initial_guess(block):
    """ksp_type preonly + LU (a user's direct solve) with the default settings: PETSc refuses a nonzero
    initial guess for preonly, so the sequence solves without one and says so; the snapshots are the
    direct solutions to the factorization's accuracy (cond(A) eps, cond(A) < norm_A / lam_min)."""
    from rom.hifi.sequence.driver import SequenceSettings, solve_sequence

    fom = FullOrderModel(block["problem"], "petsc", {"ksp_type": "preonly", "pc_type": "lu"})
    samples, facts = solve_sequence(fom, block["mu"], SequenceSettings(), order=block["order"])
    fom.solver.destroy()
    assert facts.attrs["guess_note"].startswith("ksp_type preonly") and facts.guess_dim.max() == 0
    U = np.array([s.u for s in samples])
    rel = np.linalg.norm(U - block["exact"], axis=1) / np.linalg.norm(block["exact"], axis=1)
    cond = block["norm_A"] / block["lam_min"]
    assert all(s.converged for s in samples) and np.all(rel < 100 * cond * EPS), rel.max()


def test_an_empty_test_set_gives_an_empty_chunk(tmp_path):
    """design.test.size: 0 (POD still asks for snapshots/test.h5): one chunk with no sample, no crash."""
    from conftest import rom_cli, tiny_study, write_yaml
    from rom import artefacts

    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_study(
        design={"method": "lhs", "train": {"size": 3, "seed": 1}, "test": {"size": 0}}))
    rom_cli("configure", "--config", cfg, "--out", tmp_path / "study.yaml")
    rom_cli("sample", "--study-config", tmp_path / "study.yaml", "--out", tmp_path / "p.h5")
    rom_cli("simulate", "--study-config", tmp_path / "study.yaml", "--parameters", tmp_path / "p.h5", "--set", "test",
            "--chunk", "0", "--out", tmp_path / "c.h5")
    ds = artefacts.read(tmp_path / "c.h5")
    assert ds.sizes["sample"] == 0 and ds["u"].shape == (0, 11 * 11) and ds["mu"].shape == (0, 4)


def test_tuning_is_refused_where_no_romflow_petsc_solve_would_use_it(tmp_path):
    from conftest import PYTHON, tiny_study, write_yaml

    tune = {"option": "pc_sor_omega", "range": [1.0, 1.9]}
    for name, study, expected in (
            ("scipy", tiny_study(simulate={"backend": "scipy", "tune": tune}), "backend scipy"),
            ("nonlinear", tiny_study(problem={"name": "nonlinear_heat", "mesh": {"n": 8}}, simulate={"tune": tune}),
             "is nonlinear and solves with its own SNES")):
        cfg = write_yaml(tmp_path / f"{name}.yaml", study)
        proc = subprocess.run([PYTHON, "-m", "rom", "configure", "--config", cfg, "--out", tmp_path / "s.yaml"],
                              capture_output=True, text=True, env=env(), timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], proc.stderr
