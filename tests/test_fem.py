"""P1 finite elements: convergence orders, affine decomposition, distributed assembly."""
import numpy as np
import pytest

from rom.hifi.discretization import fem
from rom.hifi.discretization.mesh import unit_square
from rom.hifi.discretization.operators import Operators, operators_dataset
from rom.hifi.problems import Heat, ThermalBlock
from rom.hifi.solvers import petsc

PI = np.pi


def exact(x, y):
    return np.sin(PI * x) * np.sin(PI * y)


def grad_exact(x, y):
    return PI * np.cos(PI * x) * np.sin(PI * y), PI * np.sin(PI * x) * np.cos(PI * y)


def solve_poisson(n):
    """-Laplace u = 2 pi^2 sin(pi x) sin(pi y), u = 0 on the boundary, with PETSc CG + GAMG."""
    mesh = unit_square(n)
    pattern = fem.Pattern.build(mesh)
    A = pattern.assemble(fem.stiffness_local(mesh))
    f = pattern.assemble_vector(mesh, fem.load_local(mesh, lambda x, y: 2 * PI**2 * exact(x, y)))
    PETSc = petsc.init()
    solver = petsc.LinearSolver(PETSc.COMM_SELF, mesh.n_dofs, 0, mesh.n_dofs, pattern.indptr, pattern.indices,
                                {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-13})
    solver.set_values(A)
    u, info = solver.solve(f)
    assert info.converged, info.reason
    solver.destroy()
    return fem.l2_h1_errors(mesh, mesh.full_field(u), exact, grad_exact)


def test_p1_convergence_orders():
    ns = [8, 16, 32, 64]
    errors = np.array([solve_poisson(n) for n in ns])
    rates = np.log2(errors[:-1] / errors[1:])
    assert np.all(np.abs(rates[:, 0] - 2.0) < 0.1), f"L2 rates {rates[:, 0]}"
    assert np.all(np.abs(rates[:, 1] - 1.0) < 0.1), f"H1 rates {rates[:, 1]}"


@pytest.mark.parametrize("blocks", [(2, 2), (3, 2)])
def test_affine_components_equal_direct_assembly(blocks):
    problem = ThermalBlock(mesh_n=18, blocks=blocks)
    mu = np.random.default_rng(0).uniform(0.1, 1.0, problem.n_terms)
    ops = Operators.from_dataset(operators_dataset(problem))
    pattern = fem.Pattern.build(problem.mesh)
    direct = pattern.to_scipy(pattern.assemble(fem.stiffness_local(problem.mesh, kappa=problem.kappa(mu))))
    affine = ops.assemble(problem.theta(mu[None])[0])
    assert abs(direct - affine).max() <= 1e-14 * abs(direct).max()
    # The stored X product is the Laplacian: theta = 1 for every block.
    assert abs(ops.X - ops.assemble(np.ones(problem.n_terms))).max() <= 1e-14 * abs(ops.X).max()


def test_row_block_patterns_are_slices_of_the_serial_pattern():
    problem = ThermalBlock(mesh_n=15, blocks=(3, 3))
    full = fem.Pattern.build(problem.mesh)
    values = problem.operator_terms(full)
    n = problem.mesh.n_dofs
    for r0, r1 in [petsc.ownership(n, 3, r) for r in range(3)]:
        part = fem.Pattern.build(problem.mesh, (r0, r1))
        lo, hi = full.indptr[r0], full.indptr[r1]
        np.testing.assert_array_equal(part.indices, full.indices[lo:hi])
        # The same element entries summed per slot: equal to a few ulps of the largest entry (the bound
        # holds whatever order a BLAS-free bincount or a future assembly adds them in).
        eps = np.finfo(float).eps
        np.testing.assert_allclose(problem.operator_terms(part), values[:, lo:hi], rtol=0,
                                   atol=8 * eps * np.abs(values).max())
        f = problem.rhs_terms(full)
        np.testing.assert_allclose(problem.rhs_terms(part), f[:, r0:r1], rtol=0, atol=8 * eps * np.abs(f).max())


def test_heat_lifting_reproduces_harmonic_boundary_data():
    """Boundary datum g = x (linear, harmonic): the lifted stationary solve returns g exactly."""
    problem = Heat(mesh_n=10)
    pattern = fem.Pattern.build(problem.mesh)
    K = fem.stiffness_local(problem.mesh)
    g = np.where(problem.mesh.boundary, problem.mesh.nodes[:, 0], 0.0)
    rhs = pattern.assemble_vector(problem.mesh, fem.boundary_lift_local(problem.mesh, K, g))
    import scipy.sparse.linalg as spla

    u = spla.spsolve(pattern.to_scipy(pattern.assemble(K)).tocsc(), rhs)
    np.testing.assert_allclose(u, problem.mesh.nodes[problem.mesh.interior_nodes, 0], atol=1e-12)
