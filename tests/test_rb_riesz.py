"""The X solves of the certified RB's residual data on the MPI ranks (rb.riesz.solver: iterative, CG +
GAMG inside the long-double refinement) give the same residual data as one SuperLU factorization on
rank 0: both are refined to long-double accuracy, so they agree to cond(X) eps_ld, not to the inner
solver's tolerance."""
import numpy as np
import pytest

from conftest import rom_cli, tiny_study, write_yaml
from rom import artefacts
from rom.hifi.discretization.operators import Operators
from rom.models.steps import riesz_solver_kind
from rom.reduction.linalg import HAS_EXTENDED, RefinedSolver

EPS_LD = float(np.finfo(np.longdouble).eps)
SOLVER = {"ksp_type": "cg", "pc_type": "jacobi", "ksp_rtol": 1e-14, "ksp_atol": 1e-30, "ksp_max_it": 2000}


def thermal_block(tmp_path, riesz: str, n: int = 24):
    cfg = write_yaml(tmp_path / f"cfg_{riesz}.yaml", tiny_study(
        problem={"name": "thermal_block", "mesh": {"n": n}, "blocks": [2, 2]},
        simulate={"chunk_size": 4, "petsc_options": SOLVER},
        rb={"enabled": True, "train_size": 80, "tol": 1e-6, "max_modes": 10, "riesz": {"solver": riesz}}))
    study = tmp_path / f"study_{riesz}.yaml"
    rom_cli("configure", "--config", cfg, "--out", study)
    if not (tmp_path / "ops.h5").exists():
        rom_cli("operators", "--study-config", study, "--out", tmp_path / "ops.h5")
    return study


@pytest.mark.skipif(not HAS_EXTENDED, reason="long double is plain double here: no extended refinement to compare")
def test_iterative_x_solves_reach_the_direct_solution_to_long_double(tmp_path):
    from rom.hifi.solvers.inner_product import InnerProductSolver

    thermal_block(tmp_path, "iterative")
    ops = Operators.from_dataset(artefacts.read(tmp_path / "ops.h5"))
    B = np.vstack([ops.f_terms, np.random.default_rng(0).standard_normal((3, ops.X.shape[0]))])
    inner = InnerProductSolver(tmp_path / "ops.h5")
    iterative, direct = RefinedSolver(ops.X, inner=inner, contraction=inner.contraction), RefinedSolver(ops.X)
    z_it, z_lu = iterative.solve(B), direct.solve(B)
    # The reference: the refined direct solution, and what a plain double solve errs from it.
    err_double = float(np.abs(direct.solve_double(B) - z_lu).max() / np.abs(z_lu).max())
    err_it = float(np.abs(z_it - z_lu).max() / np.abs(z_lu).max())
    assert err_double > 1e-17  # a double solve is visibly off (measured 7.6e-16): the comparison can fail
    assert err_it < 1e-3 * err_double  # measured 3e-20: long-double accuracy, not the CG's 1e-12
    # Arrived: the backward error is at long-double rounding (a double solve leaves ~eps_double = 2.2e-16).
    assert iterative.not_arrived == 0 and direct.not_arrived == 0
    assert iterative.worst_backward_error < 100 * EPS_LD and direct.worst_backward_error < 100 * EPS_LD
    # The CG tolerances (1e-12, then 1e-10 for the correction) only set the cost: two solves per row here
    # (three where long double is wider than x87's 80 bits).
    assert 2 * len(B) <= iterative.solves <= 3 * len(B)
    assert inner.iterations > 0


@pytest.mark.mpi
@pytest.mark.skipif(not HAS_EXTENDED, reason="long double is plain double here: no extended refinement to compare")
def test_rb_stage_with_iterative_x_solves_on_two_ranks_equals_the_direct_one(tmp_path):
    """The reduced_basis stage with the X solves on 2 ranks (CG + GAMG) against SuperLU on 1 rank: the
    same greedy, and the residual Gram matrix G = Z X Z^T (what the bound evaluates) equal far below the
    RB tolerance; what differs is the FOM solves on 2 ranks (CG to 1e-14), not the X solves."""
    out = {}
    for riesz, ranks in (("direct", 1), ("iterative", 2)):
        study = thermal_block(tmp_path, riesz)
        rom_cli("reduced-basis", "--study-config", study, "--operators", tmp_path / "ops.h5",
                "--out", tmp_path / f"rb_{riesz}.h5", mpi=ranks)
        out[riesz] = artefacts.read(tmp_path / f"rb_{riesz}.h5")
    d, it = out["direct"], out["iterative"]
    assert (d.attrs["riesz_solver"], it.attrs["riesz_solver"]) == ("direct", "iterative")
    assert it.attrs["mpi_ranks"] == 2 and it.attrs["riesz_cg_iterations"] > 0
    np.testing.assert_array_equal(d["greedy_selected"].values, it["greedy_selected"].values)
    G_d, G_it = d["affine_G"].values, it["affine_G"].values
    assert np.abs(G_d - G_it).max() < 1e-12 * np.abs(G_d).max()
    rhs = len(d["affine_G"])
    assert it.attrs["riesz_inner_solves"] <= 3 * rhs and it.attrs["riesz_not_arrived"] == 0
    assert it.attrs["riesz_max_backward_error"] < 100 * EPS_LD


class _Mesh:
    def __init__(self, dim):
        self.nodes = np.zeros((4, dim))


class _Problem:
    def __init__(self, dim):
        self.mesh = _Mesh(dim)


def test_auto_is_iterative_on_3d_meshes_with_petsc_only():
    assert riesz_solver_kind("auto", _Problem(3), "petsc") == "iterative"
    assert riesz_solver_kind("auto", _Problem(2), "petsc") == "direct"
    assert riesz_solver_kind("auto", _Problem(3), "scipy") == "direct"
    assert riesz_solver_kind("direct", _Problem(3), "petsc") == "direct"
