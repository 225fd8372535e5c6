"""The non-affine black box through the real `snakemake` CLI with a third-party solver (scikit-fem,
examples/blackbox/skfem_block.py --model bump: k = 1 + a exp(-(x - b)^2 / 0.05)): the entries mode feeds
the matrix EIM of A(mu) and f(mu), SCM certifies the EIM-affine operator (an eigen-solve where SCM's bound
is not positive), and the RB's bounds hold against the solver's own test solutions; the error against those
solutions decreases with the number of EIM terms M and of basis vectors N."""
import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import xarray as xr

from conftest import ROOT, run, write_yaml
from rom import config
from rom.errors import ConfigError

SNAKEMAKE = [ROOT / ".venv" / "bin" / "snakemake"] if (ROOT / ".venv" / "bin" / "snakemake").exists() else ["snakemake"]
SCRIPT = "{python} {root}/examples/blackbox/skfem_block.py --model bump"
PROBLEM = {"name": "external", "parameters": ["amplitude", "center"],
           "command": f"{SCRIPT} --mu {{mu}} --mesh {{mesh}} --out {{out}}",
           "entries_command": f"{SCRIPT} --mesh {{mesh}} --entries {{request}} --out {{entries}}",
           "mesh": {"file": "meshes/square.msh", "generate": "{python} {root}/examples/meshes/square.py {file} --size 0.1"}}
STUDY = {"name": "skfem_bump", "problem": PROBLEM,
         "parameters": {"amplitude": {"bounds": [0.1, 10.0]}, "center": {"bounds": [0.3, 0.7]}},
         "design": {"method": "lhs", "train": {"size": 2, "seed": 1}, "test": {"size": 8, "seed": 2}},
         "simulate": {"chunk_size": 8},
         "eim": {"enabled": True, "train_size": 40, "test_size": 8, "tol": 1e-8, "max_modes": 30},
         "rb": {"enabled": True, "train_size": 30, "tol": 1e-5, "max_modes": 10, "n_timing": 1, "batch_size": 2}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    pytest.importorskip("skfem")
    root = tmp_path_factory.mktemp("bbeim")
    (root / "study").mkdir()
    write_yaml(root / "study" / "bump.yaml", STUDY)
    run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", root, "--configfile", root / "study" / "bump.yaml", "--cores",
         "2", "results/skfem_bump/rom/rb_metrics.h5", "results/skfem_bump/sections/eim.json"], timeout=600)
    return root / "results" / "skfem_bump"


@pytest.mark.pipeline
def test_certified_rb_on_the_delivered_entries(finished):
    eim = xr.open_dataset(finished / "rom" / "eim.h5")
    assert eim.attrs["kind"] == "entries" and eim.attrs["rhs_M"] == 1  # f = 1: one term reproduces it
    rb = xr.open_dataset(finished / "rom" / "rb.h5")
    assert rb.attrs["kinds"] == "blackbox_eim" and rb.attrs["blackbox_eim_eim_bound"] == "training_sup"
    m = xr.open_dataset(finished / "rom" / "rb_metrics.h5")
    err, bound = m["blackbox_eim_error"].values, m["blackbox_eim_estimate"].values
    # The bound of the EIM-affine model plus the training maxima of the EIM errors, against the solver's
    # own solutions at 8 test parameters (none of them a training parameter): effectivity >= 1 and finite
    # (SCM, or the eigen-solve where SCM's bound is not positive, certifies alpha everywhere).
    assert np.all(np.isfinite(bound)) and np.all(bound >= err)
    # N = 10 of a smooth two-parameter family: the worst relative error is below 1e-2 (measured 3e-3).
    assert (err[-1] / m["norm"].values).max() < 1e-2
    # The error decreases with N (worst over the test set; the greedy is not monotone per sample).
    worst = err.max(axis=1)
    assert worst[-1] < 0.05 * worst[1], worst


@pytest.mark.pipeline
def test_error_decreases_with_the_number_of_eim_terms(finished):
    """The RB model rebuilt here with numpy from the artefacts, with the first M EIM terms of A only:
    the Galerkin solution of sum_m beta_m(mu) q_m on the basis, beta from the black box's own entries."""
    from rom.hifi.registry import make_problem
    from rom.models.eim_artefact import eim_from_dataset

    study = config.load(finished / "study.yaml")
    problem = make_problem(study["problem"])
    eim = xr.open_dataset(finished / "rom" / "eim.h5")
    V = xr.open_dataset(finished / "rom" / "rb.h5")["basis"].values
    test = xr.open_dataset(finished / "snapshots" / "test.h5")
    mu, U = test["mu"].values, test["u"].values
    from rom.hifi.discretization import fem

    pattern = fem.Pattern.build(problem.mesh)
    Q = eim["matrix_coeffs"].values @ eim["matrix_snapshots"].values
    E, Ef = eim_from_dataset(eim, "matrix_"), eim_from_dataset(eim, "rhs_")
    none = np.empty(0, dtype=np.int64)
    F = Ef.coefficients(problem.entries(mu, none, none, eim["rhs_rows"].values)[1]) @ Ef.basis  # f_M(mu), (n, nodes)
    X = sp.csr_matrix((problem.energy_product(pattern), pattern.indices, pattern.indptr))
    entries = problem.entries(mu, eim["matrix_rows"].values, eim["matrix_cols"].values, none)[0]
    errors = {}
    for M in (1, 2, 4, 8, E.M):
        Et = E.truncated(M)
        beta = Et.coefficients(entries[:, :M])
        # q_m of the M-term EIM: the first M rows of the nested basis.
        A_rb = np.einsum("im,mkl->ikl", beta, np.stack([V @ sp.csr_matrix((q, pattern.indices, pattern.indptr)) @ V.T
                                                         for q in Q[:M]]))
        c = np.linalg.solve(A_rb, F @ V.T)
        e = U - c @ V
        errors[M] = np.sqrt(np.einsum("ij,ij->i", e, (X @ e.T).T)).max()
    # Decreasing in M until the EIM error falls below the RB error of N = 10 (measured: 0.31, 0.078, 0.044,
    # 3.70e-4, 3.70e-4 at M = 1, 2, 4, 8, 12): from there more terms change the error by less than 1 %.
    values = [errors[M] for M in (1, 2, 4, 8)]
    assert all(b < a for a, b in zip(values, values[1:])), errors
    assert errors[E.M] <= 1.01 * errors[8] and errors[E.M] < 1e-2 * errors[1], errors


@pytest.mark.pipeline
def test_the_entries_are_the_operator_the_solver_solves_with(finished):
    """romflow's own sparse solve of the delivered A(mu), f(mu) reproduces the solver's snapshot: the
    entries mode and the solve mode agree (to the direct solvers' rounding, cond(A) ~ 1e3 times u)."""
    from rom.hifi.discretization import fem
    from rom.hifi.registry import make_problem

    problem = make_problem(config.load(finished / "study.yaml")["problem"])
    test = xr.open_dataset(finished / "snapshots" / "test.h5")
    pattern = fem.Pattern.build(problem.mesh)
    mu = test["mu"].values[:2]
    for i, m in enumerate(mu):
        A = sp.csr_matrix((problem.operator_values(m, pattern), pattern.indices, pattern.indptr))
        u = spla.spsolve(A.tocsc(), problem.rhs(m, pattern))
        ref = test["u"].values[i]
        assert np.abs(u - ref).max() <= 1e-10 * np.abs(ref).max()


def test_eigen_fallback_is_a_certified_lower_bound():
    """EigenFallback against LAPACK's dense generalized eigenvalues (an independent reference): below
    lambda_min and within its relative tightness (rtol 1e-3) of it; an indefinite A_s(mu) gives 0."""
    from rom.reduction.scm import EigenFallback

    rng = np.random.default_rng(0)
    n = 60
    L = sp.diags([-np.ones(n - 1), 2.0 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]).tocsr()
    X = (L + sp.identity(n)).tocsr()
    terms = [L, sp.identity(n, format="csr"), sp.diags(rng.random(n)).tocsr()]
    fb = EigenFallback(terms, X)
    theta = np.array([[1.0, 0.5, 0.2], [2.0, -0.01, 1.0], [0.5, -3.0, 0.1]])
    lower = fb.lower_bound(theta)
    for th, lo in zip(theta, lower):
        A = sum(c * T for c, T in zip(th, terms)).toarray()
        lam = sla.eigh(A, X.toarray(), eigvals_only=True)[0]
        if lam <= 0:
            assert lo == 0.0
        else:
            assert lam * (1 - 2e-3) <= lo <= lam * (1 + 1e-12), (lo, lam)
    assert fb.solves == 3
    fb.lower_bound(theta[:1])
    assert fb.solves == 3  # cached


@pytest.mark.parametrize("change, match", [
    ({"entries_command": "{python} solve.py --entries {request}"}, r"entries_command: no \{entries\}"),
    ({"entries_command": "{python} s.py --entries {request} --out {entries} --mu {mu}"}, r"unknown placeholder \{mu\}"),
    ({"persistent": True, "command": "{python} s.py"}, r"entries_command with persistent: true"),
])
def test_refusals_before_any_job(tmp_path, change, match):
    import gmsh_meshes

    mesh = gmsh_meshes.square(tmp_path / "square.msh", 0.3)
    study = {**STUDY, "problem": {**PROBLEM, "mesh": {"file": str(mesh)}, **change}}
    write_yaml(tmp_path / "s.yaml", study)
    with pytest.raises(ConfigError, match=match):
        config.load(tmp_path / "s.yaml")


def test_eim_matrix_false_is_refused(tmp_path):
    import gmsh_meshes
    from rom.commands.rb import check_eim

    mesh = gmsh_meshes.square(tmp_path / "square.msh", 0.3)
    study = {**STUDY, "problem": {**PROBLEM, "mesh": {"file": str(mesh)}}, "eim": {**STUDY["eim"], "matrix": False}}
    write_yaml(tmp_path / "s.yaml", study)
    with pytest.raises(ConfigError, match="eim.matrix = false: problem external is a black box"):
        check_eim(config.load(tmp_path / "s.yaml"))  # (config.load runs the stage checks too)


ONE_SIDED = '''
import sys
import h5py
import numpy as np
import scipy.sparse as sp
sys.path.insert(0, {examples!r})
import skfem_block

mesh_file, request, out = sys.argv[1:4]
mesh, basis, keep = skfem_block.setup(mesh_file)
A = skfem_block.asm(skfem_block.laplace, basis).tolil()
for i in np.flatnonzero(keep == 0):  # Dirichlet rows replaced by identity rows, columns kept (MatZeroRows)
    A.rows[i], A.data[i] = [i], [1.0]
A = A.tocsr()
with h5py.File(request, "r") as h5:
    mu, rows, cols, f_rows = (np.asarray(h5[k]) for k in ("mu", "rows", "cols", "f_rows"))
with h5py.File(out, "w") as h5:
    h5["A"] = np.tile(np.asarray(A[rows, cols]).ravel(), (len(mu), 1))
    h5["f"] = np.ones((len(mu), len(f_rows)))
'''


def test_a_one_sided_dirichlet_elimination_is_refused(tmp_path):
    """The EIM's operator-norm errors and SCM read A as symmetric: an entries mode that eliminates the
    Dirichlet rows only (MatZeroRows: a nonsymmetric A) is refused in one line before any EIM."""
    pytest.importorskip("skfem")
    import gmsh_meshes
    from rom.hifi.discretization import fem
    from rom.hifi.problems.external import ExternalError
    from rom.hifi.registry import make_problem

    mesh = gmsh_meshes.square(tmp_path / "square.msh", 0.3)
    script = tmp_path / "one_sided.py"
    script.write_text(ONE_SIDED.format(examples=str(ROOT / "examples" / "blackbox")))
    p = make_problem({**PROBLEM, "mesh": {"file": str(mesh)},
                      "entries_command": f"{{python}} {script} {{mesh}} {{request}} {{entries}}"})
    with pytest.raises(ExternalError, match="entries_command's A is not symmetric; expected Dirichlet rows and "
                                            "columns eliminated symmetrically"):
        p.matrices_at(np.array([[1.0, 0.5]]), fem.Pattern.build(p.mesh))
