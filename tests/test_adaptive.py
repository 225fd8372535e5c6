"""Hyper-reduced nonlinear ROM: FOM-size independent indicator, its correlation with the error,
and the adaptive loop keeping the error below the tolerance where the plain ROM does not."""
import copy

import numpy as np
import pytest
from scipy.stats import qmc, spearmanr
from threadpoolctl import threadpool_limits

from rom.hifi.discretization import fem
from rom.hifi.problems.nonlinear_heat import NonlinearHeat
from rom.hifi.solvers.solve import FullOrderModel, fom_step_function
from rom.models.adaptive import HyperReducedROM, relative_errors, run_adaptive

OUT_OF_TRAINING = np.array([0.5, 0.7, 170.0])  # start right of every train source, hotter than any
ERROR_TOL = 2e-2
INDICATOR_TOL = 1e-2


def _build(n, n_train=16, max_modes=40):
    p = NonlinearHeat(mesh_n=n)
    fom = FullOrderModel(p, "petsc", {})
    pat = fem.Pattern.build(p.mesh)
    X, M = pat.to_scipy(p.energy_product(pat)), pat.to_scipy(p.mass_product(pat))
    lo, hi = p.default_bounds.T
    mu = qmc.scale(qmc.LatinHypercube(d=3, seed=1).random(n_train), lo, hi)
    S = np.stack([fom.solve_trajectory(m).u for m in mu])
    with threadpool_limits(1):
        rom = HyperReducedROM.from_snapshots(p, M, X, S, mu, 1e-7, 1e-8, 1e-7, max_modes)
    return p, fom, X, rom


@pytest.fixture(scope="module")
def coarse():
    return _build(16)


def test_indicator_cost_does_not_grow_with_the_mesh(coarse):
    p16, _, _, rom16 = _build(16, max_modes=12)
    p32, _, _, rom32 = _build(32, max_modes=12)
    assert (rom16.N, rom16.m) == (rom32.N, rom32.m) == (12, 12)
    # Each DEIM dof lies in at most 6 triangles of these meshes: a bound free of the mesh size.
    bound = 6 * 12 * (3 * 12 + 10) + 2 * (2 * 6 * 12) * 12 + 2 * (2 * 6 * 12) + 12 ** 2
    ops16, ops32 = rom16.indicator_operation_count, rom32.indicator_operation_count
    assert ops16 <= bound and ops32 <= bound
    assert 0.8 < ops32 / ops16 < 1.25  # while the FOM grows four times
    assert p32.mesh.n_dofs > 4 * p16.mesh.n_dofs


def test_indicator_follows_the_true_error_and_adaptivity_keeps_it_below_the_tolerance(coarse):
    p, fom, X, rom = coarse
    ref = fom.solve_trajectory(OUT_OF_TRAINING).u
    with threadpool_limits(1):
        static = run_adaptive(copy.deepcopy(rom), OUT_OF_TRAINING)
        step = fom_step_function(p, "petsc", {})
        adaptive = run_adaptive(copy.deepcopy(rom), OUT_OF_TRAINING, INDICATOR_TOL, step)
    e_static = relative_errors(static.states, ref, X)
    e_adapt = relative_errors(adaptive.states, ref, X)
    rho = spearmanr(static.indicator[1:], e_static[1:]).correlation
    assert rho > 0.8, rho
    assert e_static.max() > ERROR_TOL, e_static.max()
    assert e_adapt.max() < ERROR_TOL, e_adapt.max()
    assert 0 < adaptive.fom_steps < p.steps  # the full model is called, but not at every step
    assert adaptive.basis_size[-1] == rom.N + adaptive.fom_steps  # one new direction per FOM step


def test_enrichment_updates_equal_a_rebuild_and_the_step_solves_the_hyper_reduced_equations(coarse):
    """The bordered updates of M_r, V U^T, U_P, the DEIM points, the reduced mesh and the Gappy data
    after enrichment equal the same quantities formed from the full bases, and a ROM step solves
    rho_c V M V^T (a - a_n) + dt V U^T (U_P^T)^{-1} g_P(a V) = 0 with g from the full-order assembly."""
    p, fom, X, rom0 = coarse
    rom = copy.deepcopy(rom0)
    ref = fom.solve_trajectory(OUT_OF_TRAINING).u
    for k in (1, 2, 5):  # three enrichments with full-order states
        rom.enrich(ref[k], OUT_OF_TRAINING, k * p.dt)
    V, U, W = rom.Vpod.basis, rom.Upod.basis, rom.Wpod.basis
    assert (rom.N, rom.m) == (rom0.N + 3, rom0.m + 3) and len(np.unique(rom.P)) == rom.m
    assert np.allclose(rom.Mr, V @ (rom.M @ V.T), atol=1e-12)
    assert np.allclose(rom.VU, V @ U.T, atol=1e-12)
    assert np.array_equal(rom.UP, U[:, rom.P])
    touching = np.flatnonzero(np.isin(rom.dof_tri, rom.P).any(axis=1))
    assert np.array_equal(np.sort(rom.E), touching)  # the reduced mesh grew by exactly the new elements
    assert np.allclose(rom.Wp, W[:, rom._flux_points(rom.E)].T, atol=1e-12)
    assert np.allclose(rom.Ve, rom._at_vertices(V, rom.E), atol=1e-14)
    B = np.linalg.solve(U[:, rom.P], U @ V.T).T  # V U^T (U_P^T)^{-1}
    a_n = rom.project(ref[5])
    t = 6 * p.dt
    a = rom.step(a_n, t, OUT_OF_TRAINING)
    g_P = p.g_vector(a @ V, OUT_OF_TRAINING, t)[rom.P]
    R = p.rho_c * (V @ (rom.M @ V.T)) @ (a - a_n) + p.dt * B @ g_P
    assert np.linalg.norm(R) < 1e-9 * np.linalg.norm(p.dt * B @ g_P)
    # The indicator on the reduced mesh equals the Gappy fit of the full-order flux at those entries.
    flux = p.flux_field(a @ V)[0][rom._flux_points(rom.E)]
    assert rom.indicator(a) == pytest.approx(rom.gappy.fit(flux)[1], rel=1e-10)
