"""Hyper-reduced nonlinear ROM: FOM-size independent indicator, its correlation with the error,
and the adaptive loop keeping the error below the tolerance where the plain ROM does not."""
import copy

import numpy as np
import pytest
from scipy.stats import qmc, spearmanr
from threadpoolctl import threadpool_limits

from rom.hifi import fem
from rom.hifi.nonlinear_heat import NonlinearHeat, fom_step_function
from rom.hifi.solve import FullOrderModel
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
