"""Small-strain elasto-viscoplasticity at quadrature points (numpy, vectorized over points): isotropic
elasticity, Norton flow with a threshold and linear kinematic (Prager) hardening, i.e. a Chaboche law
with one linear back stress and no recall term; implicit (backward Euler) radial return and its
consistent tangent; closed-form uniaxial creep and relaxation.

Conventions (those of elasticity.py): 3D Voigt order (xx, yy, zz, yz, xz, xy); strains (eps, eps_vp,
eps_th I) carry ENGINEERING shears (gamma = 2 eps_ij), stresses (sigma, X) plain shear components;
a 6x6 matrix maps engineering strains to stresses. The state is 3D in every case: a plane-strain
caller embeds its (xx, yy, xy) strains with `embed_plane_strain` and keeps the rows / columns
`plane_strain_rows` of the tangent (sigma_zz is then the out-of-plane stress).

Law, per point (coefficients evaluated by the caller, e.g. at the point's temperature):
    sigma = D(E, nu) : (eps - eps_vp - eps_th I)
    X     = (2/3) C eps_vp                                   (eps_vp as a tensor: shears halved)
    f     = J(sigma - X) - sigma_y,   J(s) = sqrt(3/2 dev(s):dev(s))   (von Mises)
    dp/dt = <f / K>^n,   d eps_vp/dt = (3/2) dp/dt dev(sigma - X) / J(sigma - X)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

plane_strain_rows = np.array([0, 1, 5])  # the (xx, yy, xy) rows / columns of 3D Voigt arrays
TOL = 1e-14  # relative tolerance on dp of the scalar Newton solve
MAXITER = 50  # Newton iterations per point; measured worst case: 7 for n in [1, 20], f/K, h dt/K in [1e-8, 1e8]

_TRACE = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])  # Voigt identity tensor
_ENG = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])  # plain tensor components -> engineering strain Voigt
# Deviatoric projector as a Voigt matrix acting on engineering strains: I_dev : eps = dev(eps), plain.
_I_DEV = np.diag(1.0 / _ENG) - np.outer(_TRACE, _TRACE) / 3.0


class ConvergenceError(RuntimeError):
    """The scalar return-mapping equation did not converge at some points."""


@dataclass(frozen=True)
class State:
    """Internal variables at the quadrature points (never mutated: `update` returns a new State)."""

    eps_vp: np.ndarray  # (n, 6) viscoplastic strain, engineering shears, traceless
    p: np.ndarray  # (n,) cumulated viscoplastic strain

    @classmethod
    def zeros(cls, n: int) -> State:
        return cls(np.zeros((n, 6)), np.zeros(n))


def embed_plane_strain(eps2) -> np.ndarray:
    """Plane strains (..., 3) in (xx, yy, xy), engineering shear, -> 3D Voigt (..., 6) with
    eps_zz = eps_yz = eps_xz = 0."""
    eps2 = np.asarray(eps2, dtype=float)
    if eps2.shape[-1:] != (3,):
        raise ValueError(f"eps2 must have shape (..., 3), got {eps2.shape}")
    out = np.zeros(eps2.shape[:-1] + (6,))
    out[..., plane_strain_rows] = eps2
    return out


def deviator(s) -> np.ndarray:
    """Deviatoric part of Voigt tensors (..., 6) (the shears are untouched, whatever their convention)."""
    s = np.asarray(s, dtype=float)
    return s - s[..., :3].mean(axis=-1, keepdims=True) * _TRACE


def von_mises(s) -> np.ndarray:
    """von Mises equivalent sqrt(3/2 dev(s):dev(s)) of stress-like Voigt tensors (..., 6), plain shears."""
    d = deviator(s)
    return np.sqrt(1.5 * (np.einsum("...i,...i->...", d[..., :3], d[..., :3])
                          + 2.0 * np.einsum("...i,...i->...", d[..., 3:], d[..., 3:])))


def back_stress(state, C) -> np.ndarray:
    """X = (2/3) C eps_vp (n, 6), plain shears (the engineering shears of eps_vp are halved);
    `state` is a State or an eps_vp array."""
    eps_vp = np.asarray(state.eps_vp if isinstance(state, State) else state, dtype=float)
    return (2.0 / 3.0) * np.asarray(C, dtype=float)[..., None] * eps_vp / _ENG


def elastic_matrix(E, nu) -> np.ndarray:
    """Isotropic 3D Voigt matrices (..., 6, 6) for E, nu broadcast together (elasticity.material_matrix(nu, 3)
    times E, vectorized over points)."""
    E, nu = np.broadcast_arrays(np.asarray(E, dtype=float), np.asarray(nu, dtype=float))
    lam, G = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
    return lam[..., None, None] * np.outer(_TRACE, _TRACE) + 2 * G[..., None, None] * np.diag(1.0 / _ENG)


def solve_overstress(f, hdt, K, n_exp, tol: float = TOL, maxiter: int = MAXITER):
    """Solve y + z = f, z = hdt (y / K)^n, for the post-step overstress y in (0, f], per point.

    f, hdt, K > 0 and n_exp >= 1 are arrays (m,). g(y) = y + hdt (y/K)^n - f is increasing and convex,
    and so is phi(v) = log((y + z) / f) in v = log(y / y0), with the upper bound
    y0 = min(f, K (f / hdt)^(1/n)) (each term alone is <= f at the root). Newton on phi from v = 0 is
    therefore monotone (no overshoot, no bracket needed), and phi is nearly piecewise linear in v
    (slope between 1 and n), so a few iterations suffice for any n and overstress ratio. phi is
    evaluated as log1p(g / f) with y, z computed directly (no logarithm of the data), so the solve
    reaches the rounding level of g.

    Stops when the last step changed dp = z / h by less than `tol` relative (sensitivity of
    log dp to v: n through z = hdt (y/K)^n, y / z through z = f - y; the better of the two is used
    for z). Returns (y, z, iterations (m,) int, converged (m,) bool)."""
    f, hdt, K, n = (np.asarray(a, dtype=float) for a in (f, hdt, K, n_exp))
    q = hdt ** (1.0 / n) / K  # z = (q y)^n: no overflow of (y / K)^n for tiny hdt
    with np.errstate(over="ignore", divide="ignore"):
        y0 = np.minimum(f, f ** (1.0 / n) / q)
    v = np.zeros_like(f)
    its = np.zeros(f.shape, dtype=int)
    todo = np.arange(f.size)
    for _ in range(maxiter):
        if todo.size == 0:
            break
        ft, nt, yt = f[todo], n[todo], y0[todo] * np.exp(v[todo])
        zt = (q[todo] * yt) ** nt
        phi = np.log1p((yt + zt - ft) / ft)
        step = phi * (yt + zt) / (yt + nt * zt)  # phi / phi'
        v[todo] -= step
        its[todo] += 1
        with np.errstate(over="ignore", divide="ignore"):  # z = 0 (underflow): sensitivity n
            done = np.abs(step) * np.minimum(nt, yt / zt) <= tol
        todo = todo[~done]
    converged = np.ones(f.shape, dtype=bool)
    converged[todo] = False
    y = y0 * np.exp(v)
    with np.errstate(over="ignore", invalid="ignore"):
        z = hdt * (y / K) ** n  # one rounding less than (q y)^n (n times the error of q)
        z = np.where(np.isfinite(z), z, (q * y) ** n)
        # One Newton step on g(y) itself removes the rounding of y0 exp(v): |dy| / y <= eps f / (y + n z).
        y = np.minimum(y - (y + z - f) / (1.0 + n * z / y), f)
        z = hdt * (y / K) ** n
        z = np.where(np.isfinite(z), z, (q * y) ** n)
    # z from the better-conditioned formula: f - y once the flow term dominates (no cancellation).
    z = np.where(z > y, f - y, z)
    return y, z, its, converged


def _field(name: str, value, n: int, lower=None, strict=False, upper=None, upper_strict=True) -> np.ndarray:
    """Broadcast a per-point coefficient to (n,), checked finite and in range (ValueError naming it)."""
    a = np.asarray(value, dtype=float)
    try:
        a = np.broadcast_to(a, (n,))
    except ValueError:
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {a.shape}") from None
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {np.count_nonzero(~np.isfinite(a))} non-finite value(s)")
    if lower is not None and (np.any(a <= lower) if strict else np.any(a < lower)):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {lower}, got min {a.min()!r}")
    if upper is not None and (np.any(a >= upper) if upper_strict else np.any(a > upper)):
        raise ValueError(f"{name} must be {'<' if upper_strict else '<='} {upper}, got max {a.max()!r}")
    return a


def _tensors(name: str, value, n: int | None = None) -> np.ndarray:
    a = np.asarray(value, dtype=float)
    if a.ndim != 2 or a.shape[1] != 6 or (n is not None and a.shape[0] != n):
        raise ValueError(f"{name} must have shape ({'n' if n is None else n}, 6), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {np.count_nonzero(~np.isfinite(a))} non-finite value(s)")
    return a


def update(eps, state_n: State, dt, E, nu, C, K, n_exp, sigma_y=0.0, eps_th=0.0, tangent: bool = True,
           *, tol: float = TOL, maxiter: int = MAXITER):
    """Backward Euler step of the law over dt from `state_n` to the total strains `eps` (n, 6).

    dt, E, nu, C, K, n_exp, sigma_y, eps_th: scalars or (n,) (dt >= 0, E > 0, -1 < nu < 1/2, C >= 0,
    K > 0, n_exp >= 1, sigma_y >= 0; eps_th is the isotropic thermal strain, e.g. alpha (T - T_ref)).
    Returns (sigma (n, 6), State at the end of the step, D_alg (n, 6, 6) or None if not tangent).

    Radial return: with G the shear modulus and h = 3 G + C, the trial xi_tr = dev(sigma_tr - X_n),
    J_tr = J(xi_tr), f_tr = J_tr - sigma_y. Where f_tr > 0 and dt > 0, dp solves
    J_tr - h dp - sigma_y = K (dp/dt)^(1/n), i.e. the post-step overstress y = f_tr - h dp solves
    y + h dt (y/K)^n = f_tr (`solve_overstress`, relative tolerance `tol` on dp); the flow direction
    N = (3/2) xi_tr / J_tr is the end-of-step one (xi_{n+1} = (1 - h dp / J_tr) xi_tr), and
    sigma = sigma_tr - 2 G dp N, eps_vp += dp N (engineering shears), p += dp. Elsewhere dp = 0.
    Raises ConvergenceError naming how many points did not converge within `maxiter`.

    Consistent tangent D_alg = d sigma_{n+1} / d eps_{n+1}: d xi_tr / d eps = 2 G I_dev, so
    d J_tr / d eps = 2 G N and d N / d eps = (3 G / J_tr) (I_dev - (2/3) N (x) N). Differentiating the
    scalar equation, c = d dp / d J_tr = 1 / (h + K / (n dt) (dp/dt)^(1/n - 1)) = n z / (h (n z + y))
    with z = h dp. Hence, symmetric, and D where dp = 0:
        D_alg = D - 6 G^2 (dp / J_tr) I_dev + 4 G^2 (dp / J_tr - c) N (x) N
    (I_dev = diag(1, 1, 1, 1/2, 1/2, 1/2) - (1/3) 1 (x) 1 in Voigt on engineering strains; N plain)."""
    eps = _tensors("eps", eps)
    npts = len(eps)
    eps_vp_n = _tensors("state_n.eps_vp", state_n.eps_vp, npts)
    p_n = _field("state_n.p", state_n.p, npts, lower=0.0)
    dt = _field("dt", dt, npts, lower=0.0)
    E = _field("E", E, npts, lower=0.0, strict=True)
    nu = _field("nu", nu, npts, lower=-1.0, strict=True, upper=0.5)
    C = _field("C", C, npts, lower=0.0)
    K = _field("K", K, npts, lower=0.0, strict=True)
    n_exp = _field("n_exp", n_exp, npts, lower=1.0)
    sigma_y = _field("sigma_y", sigma_y, npts, lower=0.0)
    eps_th = _field("eps_th", eps_th, npts)

    G, lam = E / (2 * (1 + nu)), E * nu / ((1 + nu) * (1 - 2 * nu))
    ee = eps - eps_vp_n - eps_th[:, None] * _TRACE
    sig_tr = 2 * G[:, None] * ee / _ENG + (lam * ee[:, :3].sum(axis=1))[:, None] * _TRACE
    xi = deviator(sig_tr - back_stress(eps_vp_n, C))
    J = von_mises(xi)
    h = 3 * G + C
    act = np.flatnonzero((J - sigma_y > 0) & (dt > 0))

    y, z, _, ok = solve_overstress(J[act] - sigma_y[act], h[act] * dt[act], K[act], n_exp[act], tol, maxiter)
    if not ok.all():
        raise ConvergenceError(f"return mapping did not converge at {np.count_nonzero(~ok)} of {npts} points "
                               f"within {maxiter} Newton iterations")
    dp = np.zeros(npts)
    dp[act] = z / h[act]
    N = np.zeros((npts, 6))
    N[act] = 1.5 * xi[act] / J[act, None]
    sigma = sig_tr - (2 * G * dp)[:, None] * N
    state = State(eps_vp_n + dp[:, None] * N * _ENG, p_n + dp)
    if not tangent:
        return sigma, state, None
    D = elastic_matrix(E, nu)
    Ga, r = G[act], dp[act] / J[act]
    c = n_exp[act] * z / (h[act] * (n_exp[act] * z + y))
    Na = N[act]
    D[act] += (-6 * Ga**2 * r)[:, None, None] * _I_DEV \
        + (4 * Ga**2 * (r - c))[:, None, None] * Na[:, :, None] * Na[:, None, :]
    return sigma, state, D


def _norton_drop(t, y0, a, K, n) -> np.ndarray:
    """y0 - y(t) for dy/dt = -a (y/K)^n, y(0) = y0 > 0, a > 0: (y/y0)^(1-n) = 1 + (n-1) r t with the
    initial relative rate r = a (y0/K)^n / y0 (exponential for n = 1); expm1 / log1p keep the small-t
    digits."""
    rt = a * (y0 / K) ** n / y0 * t
    if n == 1:
        return -y0 * np.expm1(-rt)
    return -y0 * np.expm1(-np.log1p((n - 1) * rt) / (n - 1))


def _uniaxial_checks(t, E, C, K, n):
    t = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("t must be finite and >= 0")
    if not (E > 0 and C >= 0 and K > 0 and n >= 1):
        raise ValueError(f"need E > 0, C >= 0, K > 0, n >= 1, got E={E}, C={C}, K={K}, n={n}")
    return t


def creep_strain(t, sigma0: float, E: float, C: float, K: float, n: float, total: bool = False) -> np.ndarray:
    """Uniaxial creep under the constant stress sigma0 applied at t = 0 (sigma_y = 0): the axial
    viscoplastic strain e(t), d e/dt = ((sigma0 - C e) / K)^n, e(0) = 0, i.e. with y = sigma0 - C e:
    y^(1-n) = sigma0^(1-n) + (n-1) C t / K^n (exponential for n = 1; e = t (sigma0/K)^n for C = 0).
    total: return the total axial strain sigma0 / E + e instead. Odd in sigma0."""
    t = _uniaxial_checks(t, E, C, K, n)
    s, y0 = np.sign(sigma0), abs(sigma0)
    if y0 == 0:
        e = np.zeros_like(t)
    elif C == 0:
        e = t * (y0 / K) ** n
    else:
        e = _norton_drop(t, y0, C, K, n) / C
    return s * e + (sigma0 / E if total else 0.0)


def relaxation_stress(t, eps0: float, E: float, C: float, K: float, n: float) -> np.ndarray:
    """Uniaxial relaxation: total axial strain eps0 imposed at t = 0 (instantaneous elastic response),
    lateral stresses zero, sigma_y = 0. y = sigma - C e = E eps0 - (E + C) e obeys the creep ODE with C
    replaced by E + C; returns sigma(t) = E (eps0 - e(t)). Odd in eps0."""
    t = _uniaxial_checks(t, E, C, K, n)
    s, y0 = np.sign(eps0), E * abs(eps0)
    e = np.zeros_like(t) if y0 == 0 else _norton_drop(t, y0, E + C, K, n) / (E + C)
    return s * E * (abs(eps0) - e)
