"""The RB stages through the CLI (and one Snakemake run): SCM certifying a user's affine problem given by
import path, output bounds on the thermal block, parabolic RB on the heat problem, EIM + RB on the
non-affine problem. Every certified number is checked against an independent reference: FOM solutions
(direct solves), a dense generalized eigen-solve for the coercivity constant, outputs of references
refined in extended precision, FOM trajectories.

FOM solves use the SciPy backend (a direct LU) in process: PETSc's options database is process-wide
and keeps the first value a test sets. Runtime about 40 s on 2 cores, plus 60 s for the Snakemake run
(marked pipeline)."""
import json

import numpy as np
import pytest
import scipy.linalg as sla

from conftest import ROOT, run, write_yaml
from rom import artefacts
from rom.hifi.discretization.operators import Operators

SNAKEMAKE = [ROOT / ".venv" / "bin" / "snakemake"] if (ROOT / ".venv" / "bin" / "snakemake").exists() else ["snakemake"]

USER_MODULE = '''"""A user's affine problem without a coercivity bound of its own: anisotropic diffusion with reaction
(the idea of tests/test_scm.py): -div(T grad u) + mu_3 u = 1, u = 0 on the boundary,
T = [[mu_0, mu_2], [mu_2, mu_1]]. X (the H1 seminorm) is not a sum of the terms (K_xy is indefinite,
the reaction may be negative): min-theta does not apply, SCM does."""
import numpy as np

from rom.hifi import capabilities as cap
from rom.hifi.discretization import fem
from rom.hifi.capabilities import ParameterSpace
from rom.hifi.discretization.mesh import unit_square
from rom.hifi.problems import UNIT_SQUARE_MESH, Problem


class AnisotropicDiffusion(Problem):
    name = "anisotropic_diffusion"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.AFFINE})
    arguments = {"mesh": UNIT_SQUARE_MESH}

    def __init__(self, mesh_n=16):
        super().__init__(unit_square(mesh_n))

    @classmethod
    def parameter_space(cls, args):
        return ParameterSpace(("kxx", "kyy", "kxy", "reaction"), [[0.3, 1.0], [0.3, 1.0], [-0.2, 0.2], [-1.0, 1.0]])

    def operator_terms(self, pattern):
        g, a = fem.p1_gradients(self.mesh), self.mesh.areas
        kxx = np.einsum("e,ei,ej->eij", a, g[..., 0], g[..., 0])
        kyy = np.einsum("e,ei,ej->eij", a, g[..., 1], g[..., 1])
        kxy = np.einsum("e,ei,ej->eij", a, g[..., 0], g[..., 1])
        return np.stack([pattern.assemble(t) for t in (kxx, kyy, kxy + kxy.transpose(0, 2, 1), fem.mass_local(self.mesh))])

    def theta(self, mu):
        return np.asarray(mu, dtype=float)

    def rhs_terms(self, pattern):
        return pattern.assemble_vector(self.mesh, fem.load_local(self.mesh, 1.0))[None, :]

    def phi(self, mu):
        return np.ones((len(mu), 1))
'''


def user_study(folder, backend="scipy"):
    """The study file of the user problem, with its module beside it."""
    (folder / "mymodule.py").write_text(USER_MODULE)
    return write_yaml(folder / "cfg.yaml", {
        "name": "aniso",
        "problem": {"name": "anisotropic_diffusion", "class": "mymodule:AnisotropicDiffusion", "mesh": {"n": 16}},
        "design": {"method": "lhs", "train": {"size": 2, "seed": 1}, "test": {"size": 8, "seed": 2}},
        "simulate": {"chunk_size": 8, "backend": backend},
        "rb": {"enabled": True, "train_size": 100, "tol": 1e-4, "max_modes": 25, "n_timing": 10, "batch_size": 200,
               "scm": {"train_size": 60, "tol": 0.3}},
    })


def cli(*args):
    from rom.cli import main

    return main([str(a) for a in args])


def chain(tmp_path, cfg, sets=("test",), eim=False):
    """configure, sample, operators, simulate the sets, [eim], reduced-basis, evaluate-rom, figures."""
    s = tmp_path / "study.yaml"
    assert cli("configure", "--config", cfg, "--out", s) == 0
    assert cli("sample", "--study-config", s, "--out", tmp_path / "p.h5") == 0
    assert cli("operators", "--study-config", s, "--out", tmp_path / "ops.h5") == 0
    for name in sets:
        assert cli("simulate", "--study-config", s, "--parameters", tmp_path / "p.h5", "--set", name,
                   "--out", tmp_path / f"{name}.h5") == 0
    extra = []
    if eim:
        assert cli("eim", "--study-config", s, "--operators", tmp_path / "ops.h5", "--out", tmp_path / "eim.h5") == 0
        assert cli("figures-eim", "--study-config", s, "--eim", tmp_path / "eim.h5", "--figure", tmp_path / "eim.png",
                   "--section", tmp_path / "eim.json") == 0
        extra = ["--eim", tmp_path / "eim.h5"]
    assert cli("reduced-basis", "--study-config", s, "--operators", tmp_path / "ops.h5", *extra,
               "--out", tmp_path / "rb.h5") == 0
    assert cli("evaluate-rom", "--study-config", s, "--operators", tmp_path / "ops.h5", "--rb", tmp_path / "rb.h5",
               *extra, "--test", tmp_path / "test.h5", "--out", tmp_path / "m.h5") == 0
    assert cli("figures-rb", "--study-config", s, "--rb", tmp_path / "rb.h5", "--metrics", tmp_path / "m.h5",
               "--convergence", tmp_path / "c.png", "--effectivity", tmp_path / "e.png",
               "--section", tmp_path / "rb.json") == 0
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "e.png").stat().st_size > 0
    return s, artefacts.read(tmp_path / "rb.h5"), artefacts.read(tmp_path / "m.h5"), \
        json.loads((tmp_path / "rb.json").read_text())


def coercivity_constants(ops, theta):
    """alpha(mu) = lambda_min(A_s(mu), X) by LAPACK's dense generalized eigen-solve, and its rounding
    allowance (backward stable: n eps times the largest eigenvalue)."""
    X = ops.X.toarray()
    out, rounding = [], []
    for t in theta:
        A = sum(c * Aq for c, Aq in zip(t, ops.A_terms)).toarray()
        lam = sla.eigh(0.5 * (A + A.T), X, eigvals_only=True)
        out.append(lam[0])
        rounding.append(len(lam) * np.finfo(float).eps * np.abs(lam).max())
    return np.array(out), np.array(rounding)


def test_scm_certifies_a_user_problem_given_by_import_path(tmp_path, capsys):
    s, rb, m, section = chain(tmp_path, user_study(tmp_path))
    # SCM ran by itself (rb.scm.enabled: auto; min-theta does not hold) and its offline cost is recorded.
    assert rb.attrs["coercivity"] == "scm" and "scm_box" in rb and "scm_alpha" in rb
    K = int(rb.attrs["scm_K"])
    assert K == rb.sizes["scm_constraint"] >= 1
    # One eigen-solve for lambda_min(X), two per operator term (the box), one per constraint point.
    assert rb.attrs["scm_eigen_solves"] == 1 + 2 * 4 + K
    assert rb.attrs["scm_lps"] >= K and rb.attrs["scm_factorizations"] > rb.attrs["scm_eigen_solves"]
    assert rb.attrs["scm_seconds"] > 0 and rb.attrs["scm_max_gap"] <= 0.3
    # The RB bound holds at every test parameter and every basis size (FOM truths by direct solves).
    assert m.attrs["affine_violations"] == 0 and m.attrs["affine_effectivity_min_all_N"] >= 1.0
    # SCM's lower bound (as the evaluation used it) is below the coercivity constant of a dense solve.
    ops = Operators.from_dataset(artefacts.read(tmp_path / "ops.h5"))
    test = artefacts.read(tmp_path / "test.h5")
    alpha, rounding = coercivity_constants(ops, test["mu"].values)
    lb = m["affine_alpha_lb"].values
    assert np.all(lb <= alpha - rounding), (lb, alpha)
    # Tight enough to be useful: the training gap is 0.3, allow a margin between training points.
    assert np.all(lb >= 0.4 * alpha), lb / alpha
    # The report section states the bound's origin and SCM's offline cost.
    metrics = section["metrics"]
    assert metrics["coercivity lower bound"] == "scm" and metrics["SCM eigen-solves"] == rb.attrs["scm_eigen_solves"]
    assert metrics["SCM LPs"] == rb.attrs["scm_lps"] and "SCM offline seconds" in metrics
    assert "SCM" in section["text"] and not section["warnings"]
    # The single query rebuilds the SCM bound from rb.h5.
    capsys.readouterr()
    assert cli("evaluate-rom", "--study-config", s, "--operators", tmp_path / "ops.h5", "--rb", tmp_path / "rb.h5",
               "--mu", "0.5,0.6,0.1,-0.8") == 0
    assert "error bound" in capsys.readouterr().out


def test_scm_disabled_on_a_problem_without_a_bound_is_one_line(tmp_path, capsys):
    cfg = user_study(tmp_path)
    study = __import__("yaml").safe_load(cfg.read_text())
    study["rb"]["scm"]["enabled"] = False
    write_yaml(cfg, study)
    s = tmp_path / "study.yaml"
    assert cli("configure", "--config", cfg, "--out", s) == 0
    assert cli("operators", "--study-config", s, "--out", tmp_path / "ops.h5") == 0
    capsys.readouterr()
    assert cli("reduced-basis", "--study-config", s, "--operators", tmp_path / "ops.h5", "--out", tmp_path / "rb.h5") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no coercivity lower bound" in err and "expected rb.scm.enabled: auto or true" in err
    assert not (tmp_path / "rb.h5").exists()


@pytest.mark.pipeline
def test_scm_user_problem_through_snakemake(tmp_path):
    user_study(tmp_path, backend="petsc")
    study = __import__("yaml").safe_load((tmp_path / "cfg.yaml").read_text())
    study["simulate"]["petsc_options"] = {"ksp_type": "preonly", "pc_type": "lu"}
    write_yaml(tmp_path / "cfg.yaml", study)
    run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", tmp_path, "--configfile", tmp_path / "cfg.yaml", "--cores", "2",
         "results/aniso/sections/rb.json"], timeout=600)
    res = tmp_path / "results" / "aniso"
    rb, m = artefacts.read(res / "rom" / "rb.h5"), artefacts.read(res / "rom" / "rb_metrics.h5")
    assert rb.attrs["coercivity"] == "scm" and rb.attrs["scm_eigen_solves"] == 1 + 2 * 4 + rb.attrs["scm_K"]
    assert m.attrs["affine_violations"] == 0 and m.attrs["affine_effectivity_min"] >= 1.0
    section = json.loads((res / "sections" / "rb.json").read_text())
    assert section["metrics"]["SCM eigen-solves"] == rb.attrs["scm_eigen_solves"] and not section["warnings"]
    assert "SCM:" in (res / "logs" / "reduced_basis.log").read_text()


def test_output_bounds_through_the_cli(tmp_path, capsys):
    outputs = [{"name": "flux_bottom", "kind": "boundary_flux", "side": "bottom"},
               {"name": "mean_3", "kind": "region_mean", "blocks": [3]}]
    cfg = write_yaml(tmp_path / "cfg.yaml", {
        "name": "tb", "problem": {"name": "thermal_block", "mesh": {"n": 24}, "blocks": [2, 2]},
        "design": {"method": "lhs", "train": {"size": 2, "seed": 1}, "test": {"size": 10, "seed": 2}},
        "simulate": {"chunk_size": 10, "backend": "scipy"},
        "rb": {"enabled": True, "train_size": 100, "tol": 1e-4, "max_modes": 20, "n_timing": 10, "batch_size": 200,
               "outputs": outputs}})
    s, rb, m, section = chain(tmp_path, cfg)
    assert rb.attrs["coercivity"] == "min_theta" and "scm_box" not in rb
    assert json.loads(rb.attrs["outputs"]) == outputs
    for o in outputs:
        p = f"output_{o['name']}_"
        M = int(rb.attrs[f"{p}M"])
        assert M >= 2 and rb.sizes[f"{p}dual_mode"] == M and rb.sizes[f"{p}mode"] == rb.attrs["N"]
        a = m.attrs
        # Against outputs of references refined in extended precision: the bound holds everywhere ...
        assert a[f"{p}violations"] == 0 and a[f"{p}effectivity_min"] >= 1.0
        bound, err = m[f"{p}bound"].values, np.abs(m[f"{p}true"].values - m[f"{p}corrected"].values)
        assert np.all(bound >= err)
        # ... and the corrected output beats the plain one (primal x dual error against primal alone).
        assert a[f"{p}max_error"] < 0.1 * a[f"{p}max_error_plain"]
        row = [r for r in section["tables"]["Output bounds (corrected output s_N = l^T u_N - z_N^T r(u_N))"]["rows"]
               if r[0] == o["name"]]
        assert row and row[0][10] == 0
    # One query: the printed corrected output and bound against a direct FOM solve at that parameter
    # (the bound printed to 4 digits: a relative margin of 1e-3).
    from rom.hifi.problems import ThermalBlock
    from rom.hifi.solvers.solve import FullOrderModel
    from rom.models.output import output_functional

    mu = np.array([0.7, 0.2, 0.45, 0.9])
    capsys.readouterr()
    assert cli("evaluate-rom", "--study-config", s, "--operators", tmp_path / "ops.h5", "--rb", tmp_path / "rb.h5",
               "--mu", ",".join(map(str, mu))) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("output flux_bottom")][0]
    value, bound = float(line.split()[2]), float(line.split()[4])
    p = ThermalBlock(24, (2, 2))
    s_fom = output_functional(p, outputs[0]).value(mu[None], FullOrderModel(p, "scipy").solve(mu).u[None])[0]
    assert 0 < abs(value - s_fom) <= 1.001 * bound + 1e-14


def test_parabolic_rb_through_the_cli(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "cfg.yaml", {
        "name": "heat", "problem": {"name": "heat", "mesh": {"n": 12}, "dt": 0.01, "steps": 20},
        "design": {"method": "sobol", "train": {"size": 2, "seed": 11}, "test": {"size": 4, "seed": 12}},
        "simulate": {"chunk_size": 4, "backend": "scipy"},
        "rb": {"enabled": True, "train_size": 40, "tol": 1e-4, "max_modes": 25}})
    s, rb, m, section = chain(tmp_path, cfg)
    assert rb.attrs["formulation"] == "parabolic" and rb.attrs["coercivity"] == "min_theta"
    assert rb.attrs["stop_reason"] == "tolerance" and rb["greedy_max_estimate"].values[-1] < 1e-4
    a = m.attrs
    # The space-time bound holds at every step of every test trajectory, for every basis size.
    assert a["parabolic_violations"] == 0 and a["parabolic_effectivity_min_all_N"] >= 1.0
    err, est = m["parabolic_error_time"].values, m["parabolic_estimate_time"].values
    assert np.all(est[:, 1:] >= err[:, 1:])
    # The initial state (uniform T_init) is in the basis: e^0 = 0 to rounding.
    assert a["parabolic_initial_error_max"] < 1e-12 and a["parabolic_initial_estimate_max"] < 1e-12
    # alpha_LB = alpha exactly: only Young's inequality separates bound and error (measured 1.1 - 1.9).
    assert a["parabolic_effectivity_max"] < 10.0
    assert a["parabolic_max_relative_error"] < 1e-3
    assert section["metrics"]["bound violations (all N, all steps)"] == 0 and not section["warnings"]
    capsys.readouterr()
    assert cli("evaluate-rom", "--study-config", s, "--operators", tmp_path / "ops.h5", "--rb", tmp_path / "rb.h5",
               "--mu", "0.5,0.2,0.3,0.9,0.1") == 0
    assert "parabolic: N = " in capsys.readouterr().out


def test_eim_and_rb_on_the_nonaffine_problem_through_the_cli(tmp_path):
    cfg = write_yaml(tmp_path / "cfg.yaml", {
        "name": "naff", "problem": {"name": "nonaffine_diffusion", "mesh": {"n": 12}},
        "design": {"method": "lhs", "train": {"size": 2, "seed": 31}, "test": {"size": 6, "seed": 32}},
        "simulate": {"chunk_size": 6, "backend": "scipy"},
        "eim": {"enabled": True, "train_size": 60, "test_size": 20, "tol": 1e-6, "max_modes": 25, "bound_grid": 11},
        "rb": {"enabled": True, "train_size": 40, "tol": 1e-3, "max_modes": 10, "n_timing": 10, "batch_size": 100}})
    s, rb, m, section = chain(tmp_path, cfg, eim=True)
    assert rb.attrs["kinds"] == "function_eim,matrix_eim" and rb.attrs["function_eim_eim_bound"] == "rigorous"
    # The rigorous EIM share keeps the bound above the true error (FOM solves of the exact operator).
    assert m.attrs["function_eim_violations"] == 0 and m.attrs["function_eim_effectivity_min_all_N"] >= 1.0
    eim = json.loads((tmp_path / "eim.json").read_text())
    assert eim["metrics"]["function EIM terms"] == artefacts.read(tmp_path / "eim.h5").attrs["M"]
    assert "rigorous" in section["text"]
