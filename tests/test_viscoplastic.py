"""The elasto-viscoplastic full-order model (problem `viscoplastic`) against closed forms: uniaxial creep and
relaxation of a cube (first order in dt), a constant-stress patch test on a distorted mesh, the assembled
tangent against finite differences, and 2 MPI ranks against 1."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, env
from rom import config
from rom.hifi.discretization import viscoplasticity as law
from rom.hifi.registry import PROBLEMS
from rom.hifi.solvers.solve import FullOrderModel

E, NU, C, K, N_EXP = 150e3, 0.3, 20e3, 1500.0, 5.0  # MPa, s: a nickel alloy near its creep regime
SIGMA0, T_END = 300.0, 10.0  # primary creep: the back stress reaches 14 % of sigma0 by T_END


@pytest.fixture(scope="module")
def meshes(tmp_path_factory):
    d = tmp_path_factory.mktemp("vp_meshes")
    out = {}
    for name, script, args in (("cube", "box", ["--size", "1.0"]), ("cube_fine", "box", ["--size", "0.4"]),
                               ("rect", "box", ["--size", "0.3", "--dim", "2", "--lengths", "2", "1"]),
                               *((f"notched_{h}", "notched", ["--size", str(h)]) for h in (2.0, 1.0, 0.5, 0.25))):
        out[name] = d / f"{name}.msh"
        subprocess.run([sys.executable, ROOT / f"examples/meshes/{script}.py", out[name], *args], check=True, env=env())
    return out


def problem(mesh, dt, steps, law_keys=None, region="body", **keys):
    material = {"young": E, "poisson": NU, "hardening": C, "norton_K": K, "norton_n": N_EXP, **(law_keys or {})}
    spec = {"name": "viscoplastic", "mesh": {"file": str(mesh)}, "material": {region: material},
            "temperature": {"base": 900.0, "reference": 900.0}, "dt": dt, "steps": steps, **keys}
    spec = config.validate({"name": "t", "problem": spec})["problem"]
    return PROBLEMS["viscoplastic"].from_arguments({k: v for k, v in spec.items() if k != "name"})


UNIAXIAL = {"x0": [0.0, None, None], "y0": [None, 0.0, None], "z0": [None, None, 0.0]}


def _order(errors, ratio=2.0):
    return np.log(np.asarray(errors[:-1]) / np.asarray(errors[1:])) / np.log(ratio)


def test_creep_of_a_cube_converges_at_first_order_in_dt(meshes):
    """Constant uniaxial stress on x1, symmetry planes x0, y0, z0: the FE solution is homogeneous (P1
    holds it exactly), so its error against the closed form of the Norton law with linear kinematic
    hardening is the time discretization's alone: first order for implicit Euler."""
    errors = []
    for steps in (10, 20, 40, 80):
        p = problem(meshes["cube"], T_END / steps, steps, fixed=UNIAXIAL, traction={"x1": [SIGMA0, 0.0, 0.0]})
        s = FullOrderModel(p, "scipy").solve_trajectory(np.zeros(0))
        assert s.converged
        ux = np.array([p.displacement([], u)[:, 0] for u in s.u])  # nodal u_x, (steps + 1, n_nodes)
        x = p.mesh.nodes[:, 0]
        strain = ux[:, x > 0.5] / x[x > 0.5]  # homogeneous: u_x = eps_xx x at every node
        assert np.ptp(strain, axis=1).max() <= 1e-9 * strain.max()
        exact = law.creep_strain(p.times, SIGMA0, E, C, K, N_EXP, total=True)
        errors.append(np.abs(strain[1:, 0] - exact[1:]).max())  # u(0) = 0: the load starts after t = 0
    order = _order(errors)
    assert np.all(np.diff(errors) < 0) and np.all((order > 0.9) & (order < 1.1)), (errors, order)
    assert errors[-1] < 0.01 * law.creep_strain(T_END, SIGMA0, E, C, K, N_EXP)  # 80 steps: below 1 % of eps_vp


def test_relaxation_of_a_cube_converges_at_first_order_in_dt(meshes):
    """A total strain eps0 imposed on x1 at t = 0 (lateral faces free): sigma_xx relaxes as the closed form."""
    eps0, t_end = 2.5e-3, 4.0  # 375 MPa at first: the first steps are stiff, compare at shared times
    fixed = {**UNIAXIAL, "x1": [eps0, None, None]}  # the unit cube: u_x = eps0 on x1
    errors = []
    for steps in (20, 40, 80, 160):
        p = problem(meshes["cube"], t_end / steps, steps, fixed=fixed)
        fom = FullOrderModel(p, "scipy")
        s = fom.solve_trajectory(np.zeros(0))
        assert s.converged
        cells = np.arange(len(p.mesh.cells))
        sxx = []
        z = p.initial_internal(len(cells))
        fixed_e = p.fixed_element_values([])
        dofs = p.element_dofs
        ue_prev = np.where(dofs >= 0, 0.0, fixed_e)
        for j in range(1, steps + 1):  # the stress of each step from its state and internal variables
            ue = np.where(dofs >= 0, s.u[j][np.maximum(dofs, 0)], fixed_e)
            _, z, _ = p.element_residual(cells, ue, ue_prev, z, [], p.times[j])
            sxx.append(p.dual_field(cells, ue, z, [])[:, 0])
            ue_prev = ue
        sxx = np.array(sxx)
        assert np.ptp(sxx, axis=1).max() <= 1e-8 * np.abs(sxx).max()
        shared = np.arange(1, 5) * steps // 4  # t_end / 4, t_end / 2, 3 t_end / 4, t_end
        exact = law.relaxation_stress(p.times[shared], eps0, E, C, K, N_EXP)
        errors.append(np.abs(sxx[shared - 1, 0] - exact).max())
    order = _order(errors)
    assert np.all(np.diff(errors) < 0) and np.all((order > 0.9) & (order < 1.1)), (errors, order)


def test_constant_stress_patch_test_on_a_distorted_mesh(meshes):
    """Plane strain, biaxial tractions on x1 and y1 of a 2 x 1 rectangle meshed unstructured, with a
    thermal strain and flow: every cell carries the same stress and internal variables at every step, to
    the Newton tolerance (the P1 patch test holds through the return mapping)."""
    p = problem(meshes["rect"], 1.0, 5, law_keys={"expansion": 1e-5}, fixed={"x0": [0.0, None], "y0": [None, 0.0]},
                traction={"x1": [250.0, 0.0], "y1": [0.0, 120.0]})
    s = FullOrderModel(p, "scipy").solve_trajectory(np.zeros(0))
    assert s.converged
    cells = np.arange(len(p.mesh.cells))
    dofs, z = p.element_dofs, p.initial_internal(len(cells))
    ue_prev = np.zeros(dofs.shape)
    for j in range(1, p.steps + 1):
        ue = np.where(dofs >= 0, s.u[j][np.maximum(dofs, 0)], 0.0)
        _, z, _ = p.element_residual(cells, ue, ue_prev, z, [], p.times[j])
        sig = p.dual_field(cells, ue, z, [])
        ue_prev = ue
        assert np.ptp(sig, axis=0).max() <= 1e-8 * np.abs(sig).max()
        np.testing.assert_allclose(sig[:, [0, 1, 5]].mean(axis=0), [250.0, 120.0, 0.0], atol=1e-8 * 250)
        assert z[:, 6].min() > 0 and np.ptp(z, axis=0).max() <= 1e-8 * np.abs(z).max()


def test_assembled_tangent_matches_finite_differences(meshes):
    """dR/du from the element tangents (the consistent tangent of the return mapping) against central
    differences of R, on a state with flow, a hot spot and a nonzero internal state."""
    from rom.hifi.discretization import fem
    from rom.hifi.solvers.nonlinear import ScipyNewtonStepper

    p = problem(meshes["cube"], 0.5, 4, law_keys={"expansion": 1.2e-5}, fixed={"x0": [0.0, 0.0, 0.0]},
                traction={"x1": [SIGMA0, 50.0, 0.0]},
                temperature={"base": 900.0, "reference": 900.0,
                             "hot_spot": {"center": [0.5, 0.5, 0.5], "amplitude": 80.0, "width": 0.3}})
    fom = FullOrderModel(p, "scipy")
    s = fom.solve_trajectory(np.zeros(0))
    stepper = ScipyNewtonStepper(p, fom)
    stepper.start(np.zeros(0))
    u = s.u[2] + 1e-4 * np.random.default_rng(0).standard_normal(p.mesh.n_dofs) * np.abs(s.u[2]).max()
    ue_prev = stepper.element_values(s.u[1])
    t = p.times[2]
    J = fem.Pattern.build(p.mesh).to_scipy(stepper.jacobian_values(stepper.element_values(u), ue_prev, [], t)).toarray()
    h = 1e-7 * np.abs(u).max()
    cols = np.random.default_rng(1).choice(p.mesh.n_dofs, 12, replace=False)
    for j in cols:
        d = np.zeros_like(u)
        d[j] = h
        fd = (stepper.residual(stepper.element_values(u + d), ue_prev, [], t)
              - stepper.residual(stepper.element_values(u - d), ue_prev, [], t)) / (2 * h)
        # O(h^2) truncation and rounding ~ eps |R| / h: 1e-6 of the column's scale holds both
        np.testing.assert_allclose(J[:, j], fd, atol=1e-6 * np.abs(J[:, j]).max())


def test_mesh_convergence_on_a_notched_specimen(meshes):
    """Plane strain creep of a specimen with two round side notches (clamped bottom, 200 MPa on top, 10 s),
    on four unstructured meshes halving the size: the mean top displacement and the integral of the
    cumulated viscoplastic strain converge; successive differences shrink at an observed order between P1's
    energy-norm rate (1) and the functionals' (2), as measured: 1.2 then 1.5 for both."""
    q = []
    for h in (2.0, 1.0, 0.5, 0.25):
        p = problem(meshes[f"notched_{h}"], 1.0, 10, region="specimen", fixed={"bottom": [0.0, 0.0]},
                    traction={"top": [0.0, 200.0]})
        s = FullOrderModel(p, "scipy").solve_trajectory(np.zeros(0))
        assert s.converged
        top = np.isclose(p.mesh.nodes[:, 1], 20.0)
        dofs, cells = p.element_dofs, np.arange(len(p.mesh.cells))
        z, ue_prev = p.initial_internal(len(cells)), np.zeros(dofs.shape)
        for j in range(1, p.steps + 1):
            ue = np.where(dofs >= 0, s.u[j][np.maximum(dofs, 0)], 0.0)
            _, z, _ = p.element_residual(cells, ue, ue_prev, z, [], p.times[j])
            ue_prev = ue
        q.append([p.displacement([], s.u[-1])[top, 1].mean(), z[:, 6] @ p.mesh.volumes])
    d = np.abs(np.diff(np.array(q), axis=0))  # successive differences, (3, 2)
    order = np.log2(d[:-1] / d[1:])
    assert np.all(order > 1.0) and np.all(order[-1] > 1.3), (q, order)


MPI_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[1] + "/tests")
from test_viscoplastic import problem, SIGMA0
from rom.hifi.solvers.solve import FullOrderModel
p = problem(sys.argv[2], 0.5, 6, law_keys={"expansion": 1.2e-5}, fixed={"x0": [0.0, 0.0, 0.0]},
            traction={"x1": [SIGMA0, 40.0, 0.0]}, cycle={"shape": "sine", "period": 3.0},
            temperature={"base": 900.0, "reference": 900.0,
                         "hot_spot": {"center": [0.7, 0.5, 0.5], "amplitude": 100.0, "width": 0.25}})
fom = FullOrderModel(p, "petsc", {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12, "snes_rtol": 1e-11})
s = fom.solve_trajectory(np.zeros(0))
if fom.rank == 0:
    assert s.converged, s.reason
    np.save(sys.argv[3], s.u)
"""


def test_two_mpi_ranks_equal_one(meshes, tmp_path):
    """The SNES trajectory on 2 ranks (each rank's cells and internal variables, a ghost scatter) equals the
    serial one to the solver tolerances (Newton to 1e-11 relative, CG to 1e-12)."""
    out = {}
    for ranks in (1, 2):
        out[ranks] = tmp_path / f"u{ranks}.npy"
        subprocess.run(["mpiexec", "-n", str(ranks), sys.executable, "-c", MPI_SCRIPT, str(ROOT), str(meshes["cube_fine"]),
                        str(out[ranks])], check=True, env=env(), timeout=300)
    U1, U2 = np.load(out[1]), np.load(out[2])
    assert U1.shape == U2.shape and np.abs(U1).max() > 0
    assert np.abs(U1 - U2).max() <= 1e-8 * np.abs(U1).max()


def test_bad_declarations_are_refused_in_one_line(meshes):
    with pytest.raises(ValueError, match=r"material.body.norton_K: temperatures \[900.0, 800.0\] not increasing"):
        problem(meshes["cube"], 1.0, 2, law_keys={"norton_K": [[900.0, 1.0], [800.0, 2.0]]}, fixed=UNIAXIAL)
    with pytest.raises(Exception, match="plane"):
        problem(meshes["cube"], 1.0, 2, plane="strain", fixed=UNIAXIAL)


def test_a_rigid_motion_left_free_is_refused(meshes):
    """Only u_x fixed on x0 of a 2D rectangle: the y translation is free (and the tangent singular)."""
    with pytest.raises(ValueError, match=r"fixed: 1 rigid motion\(s\) of the 2D body left free"):
        problem(meshes["rect"], 1.0, 2, fixed={"x0": [0.0, None]}, traction={"x1": [100.0, 0.0]})
    with pytest.raises(ValueError, match=r"fixed: 3 rigid motion\(s\) of the 3D body left free"):
        problem(meshes["cube"], 1.0, 2, fixed={"x0": [0.0, None, None]})


def test_the_full_order_step_of_the_rom_carries_every_cells_internal_variables(meshes):
    """fom_step_function takes and returns the internal variables of every cell of the mesh, those of cells
    with fixed dofs only (outside the Newton pattern: two clamped faces meeting at an edge) included, and
    equals the trajectory's step."""
    from rom.hifi.solvers.solve import fom_step_function

    p = problem(meshes["cube"], 1.0, 3, fixed={"x0": [0.0, 0.0, 0.0], "y0": [0.0, 0.0, 0.0]},
                traction={"x1": [SIGMA0, 0.0, 0.0]}, law_keys={"expansion": 1e-5},
                temperature={"base": 900.0, "reference": 880.0})
    s = FullOrderModel(p, "scipy").solve_trajectory(np.zeros(0))
    step = fom_step_function(p, "scipy")
    assert len(step.__closure__) and s.converged
    u1 = step(s.u[0], p.times[1], np.zeros(0))
    assert step.z.shape == (len(p.mesh.cells), p.n_internal)
    u2 = step(u1, p.times[2], np.zeros(0), step.z)
    np.testing.assert_allclose(u2, s.u[2], atol=1e-9 * np.abs(s.u[2]).max())
