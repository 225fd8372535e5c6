"""Elasto-viscoplastic law (Norton + linear kinematic hardening): consistent tangent against finite
differences, the discrete equations at the returned state, uniaxial creep / relaxation against their
closed forms (first order in dt), the scalar solve certified in exact arithmetic, elastic limits and
bad inputs."""
from fractions import Fraction

import numpy as np
import pytest

from rom.hifi.discretization import elasticity
from rom.hifi.discretization import viscoplasticity as vp

EPS = np.finfo(float).eps
ENG = np.array([1.0, 1, 1, 2, 2, 2])


def _points(seed=0, m=300):
    """m random points, a third each: elastic (f_tr < 0), moderate overstress, huge overstress (K small);
    Norton exponents 3, 7, 15. State: traceless eps_vp, p > 0. Returns (eps, state, kwargs, kind)."""
    rng = np.random.default_rng(seed)
    kind = np.arange(m) % 3
    E, nu = rng.uniform(100e3, 200e3, m), rng.uniform(0.2, 0.4, m)
    C = rng.uniform(0.0, 30e3, m)
    n_exp = np.array([3.0, 7.0, 15.0])[(np.arange(m) // 3) % 3]
    K = np.where(kind == 2, rng.uniform(0.5, 2.0, m), rng.uniform(500.0, 2000.0, m))
    dt = 10.0 ** rng.uniform(-2, 2, m)
    eps_vp = rng.normal(0, 2e-3, (m, 6))
    eps_vp[:, :3] -= eps_vp[:, :3].mean(axis=1, keepdims=True)
    state = vp.State(eps_vp, rng.uniform(0, 1e-2, m))
    eps = eps_vp + rng.normal(0, 3e-3, (m, 6))
    eps_th = rng.uniform(-1e-3, 1e-3, m)
    kw = dict(E=E, nu=nu, C=C, K=K, n_exp=n_exp, eps_th=eps_th)
    # Threshold from the trial overstress, so that no finite-difference step crosses f = 0.
    J_tr = _trial_J(eps, state, **kw)
    kw["sigma_y"] = np.where(kind == 0, 1.5 * J_tr + 1.0, J_tr * rng.uniform(0.0, 0.8, m))
    return eps, state, dt, kw, kind


def _trial_J(eps, state, E, nu, C, eps_th, **_):
    """J(sigma_tr - X_n) computed independently (elasticity.material_matrix, tensor back stress)."""
    D = E[:, None, None] * np.stack([elasticity.material_matrix(v, 3) for v in nu])
    ee = eps - state.eps_vp - eps_th[:, None] * [1, 1, 1, 0, 0, 0]
    s = np.einsum("pij,pj->pi", D, ee) - (2 / 3) * C[:, None] * state.eps_vp / ENG
    d = s.copy()
    d[:, :3] -= s[:, :3].mean(axis=1, keepdims=True)
    return np.sqrt(1.5 * ((d[:, :3] ** 2).sum(1) + 2 * (d[:, 3:] ** 2).sum(1)))


def test_elastic_matrix_matches_elasticity_module():
    E, nu = np.array([1.0, 150e3, 70e3]), np.array([0.0, 0.3, 0.45])
    ref = np.stack([e * elasticity.material_matrix(v, 3) for e, v in zip(E, nu)])
    # same few operations in another order: a few ulps of the largest entry
    assert np.abs(vp.elastic_matrix(E, nu) - ref).max() <= 8 * EPS * np.abs(ref).max()


def test_consistent_tangent_against_central_differences():
    eps, state, dt, kw, kind = _points()
    sigma, new, D = vp.update(eps, state, dt, **kw)
    dp = new.p - state.p
    assert np.all(dp[kind == 0] == 0) and np.all(dp[kind > 0] > 0)
    # "huge overstress": the flow term dominates, post-step overstress y << f_tr
    J_tr = _trial_J(eps, state, **kw)
    f_tr = J_tr - kw["sigma_y"]
    y = vp.von_mises(sigma - vp.back_stress(new, kw["C"])) - kw["sigma_y"]
    assert np.median((f_tr / y)[kind == 2]) > 1e2 and (f_tr / kw["K"])[kind == 2].min() > 10
    # Central differences, step eta |eps|: truncation ~ (n eta)^2 (sigma varies on the scale |eps| / n),
    # rounding ~ rho / eta with rho = 1e-14 (solve tolerance on dp, and the rounding of sigma relative
    # to |D| |eps|); 10 times their sum, 1e-7, is the bound (measured: 2e-10).
    eta = 1e-6
    scale = np.linalg.norm(eps, axis=1)
    fd = np.empty_like(D)
    for j in range(6):
        e = np.zeros((len(eps), 6))
        e[:, j] = eta * scale
        sp = vp.update(eps + e, state, dt, tangent=False, **kw)[0]
        sm = vp.update(eps - e, state, dt, tangent=False, **kw)[0]
        fd[:, :, j] = (sp - sm) / (2 * eta * scale)[:, None]
    err = np.linalg.norm(fd - D, axis=(1, 2)) / np.linalg.norm(D, axis=(1, 2))
    bound = 10 * ((15 * eta) ** 2 + 1e-14 / eta)
    assert err.max() <= bound, (err.max(), bound)
    assert np.abs(D - D.transpose(0, 2, 1)).max() <= 1e-12 * np.abs(D).max()
    # elastic points: exactly D
    De = vp.elastic_matrix(kw["E"], kw["nu"])
    assert np.array_equal(D[kind == 0], De[kind == 0])
    # the flow softens the tangent: the viscoplastic points differ from D by far more than the FD error
    assert (np.linalg.norm(D - De, axis=(1, 2)) / np.linalg.norm(De, axis=(1, 2)))[kind == 2].min() > 1e-2


def test_returned_state_satisfies_the_discrete_equations():
    eps, state, dt, kw, kind = _points(seed=1)
    state = vp.State(state.eps_vp, np.zeros(len(eps)))  # p_n = 0: dp = p_{n+1} without cancellation
    sigma, new, _ = vp.update(eps, state, dt, tangent=False, **kw)
    el, a = kind == 0, kind > 0
    # elastic points: state untouched, no overstress
    assert np.array_equal(new.eps_vp[el], state.eps_vp[el]) and not new.p[el].any()
    assert np.all(vp.von_mises(sigma - vp.back_stress(new, kw["C"]))[el] < kw["sigma_y"][el])
    eps, state, sigma, new, dt = eps[a], vp.State(state.eps_vp[a], state.p[a]), sigma[a], new, dt[a]
    new = vp.State(new.eps_vp[a], new.p[a])
    kw = {k: v[a] for k, v in kw.items()}
    n, K, sy, C = kw["n_exp"], kw["K"], kw["sigma_y"], kw["C"]
    X = vp.back_stress(new, C)
    J = vp.von_mises(sigma - X)
    f, dp = J - sy, new.p
    # Rounding of the recomputed quantities: f from sigma and X carries ~8 eps (|sigma| + |X| + sigma_y),
    # (f/K)^n amplifies it n times; the solve tolerance is 1e-14 on dp.
    mag = np.abs(sigma).max(1) + np.abs(X).max(1) + sy
    rate_tol = n * (1e-14 + 8 * EPS * mag / f)
    rate_err = np.abs(dp / dt - (f / K) ** n) / (dp / dt)
    assert np.all(rate_err <= rate_tol), (rate_err / rate_tol).max()
    # J_{n+1} = J_tr - h dp: the radial return with h = 3 G + C
    h = 3 * kw["E"] / (2 * (1 + kw["nu"])) + C
    J_tr = _trial_J(eps, state, **kw)
    assert np.all(np.abs(J + h * dp - J_tr) <= 16 * EPS * (mag + h * dp + J_tr))
    # flow direction at the end of the step: d eps_vp = (3/2) dp dev(sigma - X) / J (engineering shears);
    # the increment loses eps |eps_vp_n| to cancellation
    flow = 1.5 * dp[:, None] * vp.deviator(sigma - X) / J[:, None] * ENG
    inc = new.eps_vp - state.eps_vp
    flow_tol = 8 * EPS * (mag / J + np.abs(state.eps_vp).max(1) / dp)
    assert np.all(np.abs(inc - flow).max(1) / dp <= flow_tol)
    assert np.abs(new.eps_vp[:, :3].sum(1)).max() <= 1e-15  # isochoric flow


@pytest.mark.parametrize("n_exp", [1.0, 2.0, 3.0, 4.5, 7.0, 10.0, 15.0, 20.0])
def test_scalar_solve_iterations_and_exact_certificate(n_exp, rounding):
    """y + hdt (y/K)^n = f over f/K and hdt/K in [1e-6, 1e6]: monotone log-Newton converges in <= 7
    iterations everywhere (measured over n in [1, 20]; 10 allowed), and dp is certified in exact
    rational arithmetic: H(z) = hdt ((f - z)/K)^n - z changes sign across z (1 -+ 1e-14)."""
    K = 1500.0
    r = np.logspace(-6, 6, 25)
    F, S = (a.ravel() for a in np.meshgrid(r, r))
    f, hdt = rounding(F * K), rounding(S * K)
    y, z, its, ok = vp.solve_overstress(f, hdt, np.full_like(f, K), np.full_like(f, n_exp))
    assert ok.all() and its.max() <= 10
    assert np.all((y > 0) & (y <= f) & (z > 0))
    if n_exp != int(n_exp):
        return
    k = int(n_exp)
    for fi, si, zi in zip(f[::7], hdt[::7], z[::7]):
        Fq, Sq, Kq = Fraction(fi), Fraction(si), Fraction(K)

        def H(zz):
            return Sq * ((Fq - zz) / Kq) ** k - zz

        lo, hi = Fraction(zi) * (1 - Fraction(1, 10**14)), Fraction(zi) * (1 + Fraction(1, 10**14))
        assert H(lo) > 0 > H(hi), (fi, si, k)


def test_nonconvergence_is_reported():
    eps, state, dt, kw, kind = _points(seed=2, m=30)
    with pytest.raises(vp.ConvergenceError, match=r"did not converge at \d+ of 30 points"):
        vp.update(eps, state, dt, maxiter=1, **kw)


def _drive(control, value, target, steps, dt, mat):
    """Mixed control at one point: strains `value` on the `control` components, stresses `target` on the
    others, Newton on the free strains with D_alg at each backward-Euler step. Returns the per-step
    (sigma, eps_vp) and the most Newton iterations a step needed."""
    free = np.flatnonzero(~control)
    state, eps = vp.State.zeros(1), np.zeros((1, 6))
    sig_hist, vp_hist, worst = [], [], 0
    for _ in range(steps):
        eps[0, control] = value
        for it in range(30):
            sig, new, D = vp.update(eps, state, dt, **mat)
            r = sig[0, free] - target[free]
            if np.abs(r).max() <= 1e-12 * 300.0:  # far below the O(1e-3) time discretization error
                worst = max(worst, it)
                break
            eps[0, free] -= np.linalg.solve(D[0][np.ix_(free, free)], r)
        else:
            raise AssertionError("mixed-control Newton did not converge")
        state = new
        sig_hist.append(sig[0])
        vp_hist.append(new.eps_vp[0])
    return np.array(sig_hist), np.array(vp_hist), worst


# Nickel-alloy-like: E, nu, C in MPa, K in MPa s^(1/n).
E, NU, C, K, N = 150e3, 0.3, 20e3, 1500.0, 5.0
MAT = dict(E=E, nu=NU, C=C, K=K, n_exp=N)
SIGMA0 = 300.0
STEPS = (20, 40, 80, 160)


def _observed_orders(errors):
    errors = np.asarray(errors)
    assert np.all(np.diff(errors) < 0), errors
    return np.log2(errors[:-1] / errors[1:])


def test_uniaxial_creep_first_order_in_dt():
    # T: the back stress C e reaches 80 % of sigma0 (y = sigma0 - C e = 0.2 sigma0), past primary creep
    T = K**N * ((0.2 * SIGMA0) ** (1 - N) - SIGMA0 ** (1 - N)) / ((N - 1) * C)
    assert C * vp.creep_strain(T, SIGMA0, E, C, K, N) == pytest.approx(0.8 * SIGMA0, rel=1e-12)
    target = np.array([SIGMA0, 0, 0, 0, 0, 0])
    errors = []
    for m in STEPS:
        sig, evp, worst = _drive(np.zeros(6, bool), 0.0, target, m, T / m, MAT)
        assert worst <= 8 and np.abs(sig - target).max() <= 1e-12 * SIGMA0
        # uniaxial stress: eps_vp = diag(e, -e/2, -e/2), no shear
        e = evp[:, 0]
        assert np.abs(evp[:, 1:3] + e[:, None] / 2).max() <= 1e-12 * e.max() and not evp[:, 3:].any()
        # compare at t = T/4, T/2, 3T/4, T (common to all step sizes)
        k = np.arange(1, 5) * (m // 4)
        exact = vp.creep_strain(k * T / m, SIGMA0, E, C, K, N)
        errors.append(np.max(np.abs(e[k - 1] - exact) / exact))
    orders = _observed_orders(errors)
    # Backward Euler: order 1, reached from below (the primary transient is stiff: rate * dt ~ 39 at the
    # first step of T/20), measured 0.925, 0.932, 0.943.
    assert np.all((orders > 0.9) & (orders < 1.1)), orders


def test_uniaxial_relaxation_first_order_in_dt():
    eps0 = SIGMA0 / E  # instantaneous stress sigma0
    T = K**N * ((0.2 * SIGMA0) ** (1 - N) - SIGMA0 ** (1 - N)) / ((N - 1) * (E + C))
    control = np.zeros(6, bool)
    control[0] = True
    errors = []
    for m in STEPS:
        sig, evp, worst = _drive(control, eps0, np.zeros(6), m, T / m, MAT)
        assert worst <= 8 and np.abs(sig[:, 1:]).max() <= 1e-12 * SIGMA0
        # sigma = E (eps0 - e) in uniaxial stress
        assert np.abs(sig[:, 0] - E * (eps0 - evp[:, 0])).max() <= 1e-11 * SIGMA0
        k = np.arange(1, 5) * (m // 4)
        exact = vp.relaxation_stress(k * T / m, eps0, E, C, K, N)
        errors.append(np.max(np.abs(sig[k - 1, 0] - exact) / exact))
    orders = _observed_orders(errors)
    assert np.all((orders > 0.9) & (orders < 1.1)), orders


def test_closed_forms_solve_their_odes():
    """The closed forms against their ODEs and their C = 0 limit. Central differences in t with step
    1e-3 s: truncation (1e-3 / time scale)^2 < 1e-8, rounding eps e / 1e-3 / rate < 1e-9: rel 1e-6."""
    t = np.linspace(10.0, 5000.0, 7)
    dt = 1e-3
    for n in (1.0, 5.0):
        e = lambda s: vp.creep_strain(s, SIGMA0, E, C, K, n)  # noqa: E731
        rate = (e(t + dt) - e(t - dt)) / (2 * dt)
        assert rate == pytest.approx(((SIGMA0 - C * e(t)) / K) ** n, rel=1e-6)
        # relaxation: e = eps0 - sigma / E obeys d e/dt = ((sigma - C e) / K)^n
        s = lambda u: vp.relaxation_stress(u, SIGMA0 / E, E, C, K, n)  # noqa: E731
        rate = -(s(t + dt) - s(t - dt)) / (2 * dt) / E
        assert rate == pytest.approx(((s(t) - C * (SIGMA0 / E - s(t) / E)) / K) ** n, rel=1e-6)
    assert vp.creep_strain(t, SIGMA0, E, 0.0, K, N) == pytest.approx(t * (SIGMA0 / K) ** N, rel=1e-15)
    assert vp.creep_strain(t, -SIGMA0, E, C, K, N, total=True) == pytest.approx(
        -SIGMA0 / E - vp.creep_strain(t, SIGMA0, E, C, K, N), rel=1e-15)


def test_elastic_limit_returns_elastic_stress_and_matrix():
    eps, state, dt, kw, kind = _points(seed=3, m=60)
    De = vp.elastic_matrix(kw["E"], kw["nu"])
    sig_el = np.einsum("pij,pj->pi", De, eps - state.eps_vp - kw["eps_th"][:, None] * [1, 1, 1, 0, 0, 0])
    kw["sigma_y"] = 0.0
    # K huge: dp = dt (y/K)^n underflows to 0 (K = 1e30), the law is elastic and so is the tangent
    sigma, new, D = vp.update(eps, state, dt, **{**kw, "K": 1e30})
    assert np.array_equal(new.p, state.p) and np.array_equal(new.eps_vp, state.eps_vp)
    assert np.abs(sigma - sig_el).max() <= 16 * EPS * np.abs(sig_el).max()
    assert np.abs(D - De).max() <= 1e-20 * np.abs(De).max()
    # dt = 0: no time to flow
    sigma, new, D = vp.update(eps, state, 0.0, **kw)
    assert np.array_equal(new.p, state.p) and np.array_equal(D, De)


def test_bad_inputs_name_the_argument():
    eps, state, dt, kw, _ = _points(seed=4, m=6)
    bad = eps.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"^eps must be finite, got 1 non-finite value\(s\)$"):
        vp.update(bad, state, dt, **kw)
    with pytest.raises(ValueError, match=r"^dt must be >= 0"):
        vp.update(eps, state, -1.0, **kw)
    with pytest.raises(ValueError, match=r"^n_exp must be >= 1"):
        vp.update(eps, state, dt, **{**kw, "n_exp": 0.5})
    with pytest.raises(ValueError, match=r"^eps must have shape \(n, 6\)"):
        vp.update(eps[:, :3], state, dt, **kw)
    with pytest.raises(ValueError, match=r"^state_n.eps_vp must have shape \(6, 6\)"):
        vp.update(eps, vp.State.zeros(5), dt, **kw)


def test_plane_strain_embedding():
    rng = np.random.default_rng(5)
    eps2 = rng.normal(0, 1e-3, (40, 3))
    E, nu = rng.uniform(100e3, 200e3, 40), rng.uniform(0.1, 0.45, 40)
    eps = vp.embed_plane_strain(eps2)
    assert np.array_equal(eps[:, vp.plane_strain_rows], eps2) and not eps[:, 2:5].any()
    sigma, _, D = vp.update(eps, vp.State.zeros(40), 1.0, E, nu, 0.0, 1500.0, 5.0, sigma_y=1e6)
    tol = 8 * EPS * np.abs(sigma).max()
    assert np.abs(sigma[:, 2] - nu * (sigma[:, 0] + sigma[:, 1])).max() <= tol
    assert not sigma[:, 3:5].any()
    D2 = D[:, vp.plane_strain_rows][:, :, vp.plane_strain_rows]
    ref = np.stack([e * elasticity.material_matrix(v, 2, "strain") for e, v in zip(E, nu)])
    assert np.abs(D2 - ref).max() <= 8 * EPS * np.abs(ref).max()
