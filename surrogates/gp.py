"""Gaussian-process regression in PyTorch (float64, GPU when present): Matern 5/2 with one length
scale per input (ARD), a constant mean, learned Gaussian noise, standardized inputs and outputs.

Multi-output = independent GPs, one per output column, evaluated as one batch (one batched
Cholesky per likelihood evaluation). Each output has its own optimizer state: a batched L-BFGS
whose two-loop recursion, step length (a weak Wolfe line search by bracketing) and stopping test
are per output, so an output's fit does not depend on which other outputs share its batch. The
stopping test knows the loss's own rounding level (`_negative_log_likelihood`), so whether a fit
converged is a property of the problem, not of the BLAS that summed it. Restarts start
every output from the same points (drawn from `seed` and the restart index only), keep per output
the restart of best marginal likelihood, and a restart whose likelihood is not finite (a failed
Cholesky, NaN) is discarded for that output instead of aborting the fit. Convergence (gradient
norm, loss change, iterations) is recorded per output.

Calibration: per-output variance factor, the mean squared standardized leave-one-out residual
(closed form from K^-1); interval half-widths from the empirical distribution of those residuals
(quantile recalibration, `interval_factors`), so intervals hold at every level, not only on average.
Novelty: the latent posterior variance fraction 1 - k*^T K^-1 k* / s^2
averaged over the outputs, compared with its leave-one-out values at the training inputs (a
conformal p-value: under exchangeability a new in-family input gets p <= a with probability <= a).

Also here: the POD + GP helpers of fixed-mesh studies (parameter scaling, decompression)."""
from __future__ import annotations

import numpy as np
import xarray as xr

INPUT_TRANSFORMS = ("none", "log")
_SQRT5 = 5.0 ** 0.5
_UNIT_ROUNDOFF = 2.0 ** -53  # float64


def _device(device=None):
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def matern52(A, B, lengthscale, outputscale):
    """s^2 (1 + sqrt5 r + 5/3 r^2) exp(-sqrt5 r), r the ARD distance: A (m, a, d), B (m, b, d),
    lengthscale (m, d), outputscale (m,) -> (m, a, b). Distances from the Gram matrix, without
    centring on a batch mean (a bad row must not leak into the others)."""
    import torch

    a, b = A / lengthscale[:, None, :], B / lengthscale[:, None, :]
    r2 = (a * a).sum(-1)[:, :, None] + (b * b).sum(-1)[:, None, :] - 2.0 * a @ b.transpose(-1, -2)
    r = torch.sqrt(torch.clamp_min(r2, 1e-36))  # clamped: finite gradient at r = 0
    return outputscale[:, None, None] * (1.0 + _SQRT5 * r + (5.0 / 3.0) * r * r) * torch.exp(-_SQRT5 * r)


def _unpack(theta, d: int, noise_floor: float):
    """theta (m, d + 3) = [log lengthscale (d), log outputscale, log(noise - floor), mean]."""
    import torch

    return (torch.exp(theta[:, :d]), torch.exp(theta[:, d]), noise_floor + torch.exp(theta[:, d + 1]),
            theta[:, d + 2])


def _negative_log_likelihood(theta, X, Y, noise_floor: float, gradient: bool = True):
    """Per-output negative log marginal likelihood / n, (m,), +inf where the Cholesky fails, and its
    gradient in theta (m, p) in closed form: d(n nll)/d theta_p = tr((K^-1 - a a^T) dK/d theta_p) / 2,
    a = K^-1 (y - c); for a log length scale dK/d log l_j = s^2 (5/3)(1 + sqrt5 r) exp(-sqrt5 r) D_j,
    D_j = (x_j - x'_j)^2 / l_j^2, whose trace against B = A o (...) is
    2 sum_a u_aj^2 (B 1)_a - 2 u_j^T B u_j (u = x / l): batched matrix products, no autograd.

    With the gradient comes the loss's rounding level (m,): the computed Cholesky factor is exact
    for K + dK with ||dK||_2 of order u ||K||_2 (Higham, Accuracy and Stability, Thm 10.3, whose
    worst-case factor n is not attained in practice), and to first order the per-sample loss moves by
    tr((K^-1 - a a^T) dK) / (2n), at most (tr K^-1 + a^T a) u ||K||_2 / (2n) with
    ||K||_2 <= tr K = n (s^2 + noise). So rounding = u (s^2 + noise) (tr K^-1 + a^T a) / 2: below
    it, loss differences are rounding, and a BLAS with another summation order resolves them
    differently. Returns (nll, None) without the gradient, (nll, g, rounding) with it."""
    import torch

    m, n = Y.shape
    d = X.shape[-1]
    ls, s2, noise, c = _unpack(theta, d, noise_floor)
    # In place where possible: the (m, n, n) passes, not the flops, dominate on a CPU.
    u = X[None] / ls[:, None, :]
    sq = (u * u).sum(-1)
    r = torch.bmm(u, u.transpose(-1, -2)).mul_(-2.0).add_(sq[:, :, None]).add_(sq[:, None, :]).clamp_min_(0.0).sqrt_()
    e = r.mul(-_SQRT5).exp_()
    poly = r.mul(_SQRT5).add_(1.0)
    K = r.square_().mul_(5.0 / 3.0).add_(poly).mul_(e).mul_(s2[:, None, None])
    K.diagonal(dim1=-2, dim2=-1).add_(noise[:, None])
    L, info = torch.linalg.cholesky_ex(K)
    del K
    ok = (info == 0) & torch.isfinite(theta).all(-1)
    if not bool(ok.all()):
        L = torch.where(ok[:, None, None], L, torch.eye(n, dtype=X.dtype, device=X.device))
    yc = Y - c[:, None]
    alpha = torch.cholesky_solve(yc[..., None], L)[..., 0]
    fit = (yc * alpha).sum(-1)
    nll = (0.5 * fit + torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)) / n + 0.5 * np.log(2 * np.pi)
    ok = ok & torch.isfinite(nll)
    nll = torch.where(ok, nll, torch.full_like(nll, np.inf))
    if not gradient:
        return nll, None
    A = torch.cholesky_inverse(L)
    del L
    trKinv, aa = torch.diagonal(A, dim1=-2, dim2=-1).sum(-1), (alpha * alpha).sum(-1)
    rounding = torch.where(ok, 0.5 * _UNIT_ROUNDOFF * (s2 + noise) * (trKinv + aa), torch.full_like(nll, np.inf))
    trA = trKinv - aa
    B = A.baddbmm_(alpha[:, :, None], alpha[:, None, :], alpha=-1.0).mul_(poly.mul_(e).mul_((5.0 / 3.0) * s2[:, None, None]))
    g = torch.empty_like(theta)
    g[:, :d] = (u * u * B.sum(-1)[..., None]).sum(1) - (u * torch.bmm(B, u)).sum(1)
    g[:, d] = 0.5 * (n - fit - noise * trA)
    g[:, d + 1] = 0.5 * (noise - noise_floor) * trA
    g[:, d + 2] = -alpha.sum(-1)
    g = torch.where(ok[:, None], g / n, torch.zeros_like(g))
    return nll, g, rounding


def _evaluate(fun, x, rows):
    """fun's (f, g, rounding); a function that states no rounding level gets u |f|."""
    out = fun(x, rows)
    f, g = out[0], out[1]
    rounding = out[2] if len(out) > 2 else _UNIT_ROUNDOFF * f.abs()
    return f, g, rounding.nan_to_num(nan=np.inf)


def batched_lbfgs(fun, x0, max_iter: int, gtol: float = 1e-5, ftol: float = 1e-9, history: int = 10,
                  max_backtracks: int = 30):
    """Minimize m independent smooth functions at once: fun(x (k, p), rows (k,)) evaluates rows
    `rows` of the batch and returns (f (k,), g (k, p)) or (f, g, rounding (k,)), rounding the
    level below which differences of f are rounding (default u |f|).

    Per row: the L-BFGS direction d (two-loop recursion over the last `history` pairs), then a weak
    Wolfe line search by bracketing (Armijo decrease, curvature g(x + t d) . d >= 0.9 g . d, so every
    stored pair has s . y > 0). Stopping tests, each stated so that a rounding-level change of the
    inputs cannot flip it:
      1  max |g| <= gtol;
      2  the accepted step decreased f, or the quasi-Newton model predicts it to decrease
         (-g . d / 2), by at most ftol max(1, |f|);
      5  no step along d decreases f (step lengths down to 2^-max_backtracks), and the model
         predicts a decrease below f's rounding level: as close to the minimum as f resolves. Where
         a line search stalls at a minimum the prediction is typically orders of magnitude below that
         level (1e-9 against 7e-6 on tests/test_gp.py's fit), so another summation order (another
         BLAS) reaches the same verdict;
      3  iteration budget spent;
      4  no step decreases f although the model predicts more than its rounding level, twice in a
         row (the first time, the memory is dropped and steepest descent tried);
     -1  not finite at x0.
    Returns x, f, g, iterations (m,), status (m,), rounding (m,)."""
    import torch

    x = x0.clone()
    m, p = x.shape
    dev = x.device
    f, g, rounding = _evaluate(fun, x, torch.arange(m, device=dev))
    S = torch.zeros(m, history, p, dtype=x.dtype, device=dev)
    Yh = torch.zeros_like(S)
    valid = torch.zeros(m, history, dtype=torch.bool, device=dev)
    status = torch.where(torch.isfinite(f), 0, -1).to(torch.int64)
    status = torch.where((status == 0) & (g.abs().amax(-1) <= gtol), 1, status)
    iterations = torch.zeros(m, dtype=torch.int64, device=dev)
    for _ in range(max_iter):
        act = torch.nonzero(status == 0)[:, 0]
        if len(act) == 0:
            break
        ga, Sa, Ya, va = g[act], S[act], Yh[act], valid[act]
        # Two-loop recursion, newest pair first; invalid pairs contribute nothing.
        sy = (Sa * Ya).sum(-1)
        rho = torch.where(va, 1.0 / torch.where(va, sy, torch.ones_like(sy)), torch.zeros_like(sy))
        q = ga.clone()
        alpha = torch.zeros_like(sy)
        for i in range(history - 1, -1, -1):
            alpha[:, i] = rho[:, i] * (Sa[:, i] * q).sum(-1)
            q = q - alpha[:, i, None] * Ya[:, i]
        newest = torch.where(va.any(-1), history - 1 - torch.flip(va, [1]).to(torch.int64).argmax(-1), 0)
        rows_a = torch.arange(len(act), device=dev)
        yy = (Ya[rows_a, newest] ** 2).sum(-1)
        gamma = torch.where(va.any(-1), sy[rows_a, newest] / torch.where(yy > 0, yy, torch.ones_like(yy)),
                            1.0 / torch.clamp_min(ga.abs().sum(-1), 1.0))
        r = gamma[:, None] * q
        for i in range(history):
            beta = rho[:, i] * (Ya[:, i] * r).sum(-1)
            r = r + Sa[:, i] * (alpha[:, i] - beta)[:, None]
        d = -r
        slope = (d * ga).sum(-1)
        bad = ~(slope < 0)  # not a descent direction: restart the memory, steepest descent
        d = torch.where(bad[:, None], -ga / torch.clamp_min(ga.abs().sum(-1), 1.0)[:, None], d)
        slope = (d * ga).sum(-1)
        valid[act[bad]] = False
        had_memory = valid[act].any(-1)
        # The quadratic model's predicted decrease -slope / 2 below the loss's tolerance: converged.
        predicted = -0.5 * slope
        small = predicted <= ftol * torch.clamp_min(f[act].abs(), 1.0)
        status[act[small]] = 2
        act, d, slope, had_memory, predicted = act[~small], d[~small], slope[~small], had_memory[~small], predicted[~small]
        if len(act) == 0:
            break
        k = len(act)
        t = torch.ones(k, dtype=x.dtype, device=dev)
        lo, hi = torch.zeros_like(t), torch.full_like(t, np.inf)
        x_new, f_new, g_new, r_new = x[act].clone(), f[act].clone(), g[act].clone(), rounding[act].clone()
        found = torch.zeros(k, dtype=torch.bool, device=dev)  # an Armijo point is held
        pending = torch.ones(k, dtype=torch.bool, device=dev)
        for _ in range(max_backtracks):
            idx = torch.nonzero(pending)[:, 0]
            if len(idx) == 0:
                break
            xt = x[act[idx]] + t[idx, None] * d[idx]
            ft, gt, rt = _evaluate(fun, xt, act[idx])
            finite = torch.isfinite(ft) & torch.isfinite(gt).all(-1)
            armijo = finite & (ft <= f[act[idx]] + 1e-4 * t[idx] * slope[idx])
            curved = (gt * d[idx]).sum(-1) >= 0.9 * slope[idx]
            keep_pt = armijo & (~found[idx] | (ft < f_new[idx]))
            sel = idx[keep_pt]
            x_new[sel], f_new[sel], g_new[sel], r_new[sel] = xt[keep_pt], ft[keep_pt], gt[keep_pt], rt[keep_pt]
            found[sel] = True
            pending[idx[armijo & curved]] = False
            shrink, grow = idx[~armijo], idx[armijo & ~curved]
            hi[shrink] = t[shrink]
            lo[grow] = t[grow]
            t[shrink] = 0.5 * (lo[shrink] + hi[shrink])
            t[grow] = torch.where(torch.isfinite(hi[grow]), 0.5 * (lo[grow] + hi[grow]), 2.0 * t[grow])
        stalled = ~found
        rows = act[found]
        s, yv = x_new[found] - x[rows], g_new[found] - g[rows]
        curv = (s * yv).sum(-1) > 1e-12 * torch.sqrt((s * s).sum(-1) * (yv * yv).sum(-1))
        push = rows[curv]
        S[push] = torch.cat([S[push, 1:], s[curv, None]], 1)
        Yh[push] = torch.cat([Yh[push, 1:], yv[curv, None]], 1)
        valid[push] = torch.cat([valid[push, 1:], torch.ones(len(push), 1, dtype=torch.bool, device=dev)], 1)
        decrease = f[rows] - f_new[found]
        x[rows], f[rows], g[rows], rounding[rows] = x_new[found], f_new[found], g_new[found], r_new[found]
        iterations[act] += 1
        st = torch.zeros(k, dtype=torch.int64, device=dev)
        st[found] = torch.where(g[rows].abs().amax(-1) <= gtol, 1,
                                torch.where(decrease <= ftol * torch.clamp_min(f[rows].abs(), 1.0), 2, 0))
        # A failed line search where the model predicts less than the loss's rounding level: as close
        # to the minimum as the loss can resolve. Otherwise the quasi-Newton memory misled it: drop
        # it and try steepest descent once before giving up.
        at_rounding = stalled & (predicted <= rounding[act])
        st[at_rounding] = 5
        retry = stalled & ~at_rounding & had_memory
        valid[act[retry]] = False
        st[stalled & ~at_rounding & ~had_memory] = 4
        status[act] = st
    status = torch.where(status == 0, 3, status)
    return x, f, g, iterations, status, rounding


CONVERGENCE_STATUS = {1: "gradient norm", 2: "loss change", 5: "predicted decrease below the loss's rounding level",
                      3: "iteration budget spent", 4: "line search found no decrease", -1: "not finite at the start"}
CONVERGED_STATUS = (1, 2, 5)


def restart_point(r: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """Restart r's log-hyperparameters (d + 3,), the same for every output: the defaults for r = 0
    (length scales sqrt(d) in standardized inputs, unit output scale, noise 1e-2), then draws from
    rng, called once per restart in order, so that the point depends on (seed, r) only."""
    if r == 0:
        return np.concatenate([np.full(d, 0.5 * np.log(d)), [0.0, np.log(1e-2), 0.0]])
    return np.concatenate([0.5 * np.log(d) + rng.uniform(np.log(0.2), np.log(5.0), d),
                           [rng.uniform(np.log(0.3), np.log(3.0)), rng.uniform(np.log(1e-4), np.log(1e-1)), 0.0]])


class GP:
    """Independent GPs from inputs X (n, d) to outputs Y (n, m).

    restarts x iterations: L-BFGS runs per output (the first from default hyperparameters, the
    others from seeded random ones); gtol: convergence threshold on the largest gradient component
    of the per-sample negative log likelihood in the log-hyperparameters."""

    def __init__(self, restarts: int = 4, iterations: int = 300, seed: int = 0, noise_floor: float = 1e-8,
                 calibrate: bool = True, device=None, input_transform: str = "none", gtol: float = 1e-5):
        if input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform = {input_transform!r}: expected one of {list(INPUT_TRANSFORMS)}")
        self.input_transform = input_transform
        self.calibrate = bool(calibrate)
        self.restarts, self.iterations, self.seed = int(restarts), int(iterations), int(seed)
        self.noise_floor, self.gtol, self.ftol = float(noise_floor), float(gtol), 1e-9
        self.device = _device(device)

    # -- standardization ------------------------------------------------------------------------
    def _t(self, X) -> np.ndarray:
        """Inputs in the GP's coordinates: log for positive inputs that act multiplicatively
        (conductivities: the solution varies like 1/mu, smoother in log mu)."""
        X = np.asarray(X, dtype=float)
        if self.input_transform == "log":
            if np.any(X <= 0):
                raise ValueError(f"input_transform = 'log': input {X[X <= 0].ravel()[0]} is not positive; "
                                 "expected positive inputs (or input_transform: none)")
            return np.log(X)
        return X

    def _x(self, X):
        import torch

        Z = (self._t(X) - self.x_mean) / self.x_std
        return torch.as_tensor(Z, dtype=torch.float64, device=self.device)

    def _standardize(self, X: np.ndarray, Y: np.ndarray):
        self.x_min, self.x_max = X.min(axis=0), X.max(axis=0)
        T = self._t(X)
        self.x_mean, self.x_std = T.mean(axis=0), np.where(T.std(axis=0) > 0, T.std(axis=0), 1.0)
        # Per output on a contiguous copy: the same summation order whichever columns share Y.
        Yc = np.ascontiguousarray(Y.T)
        self.y_mean, y_std = Yc.mean(axis=1), Yc.std(axis=1)
        self.y_std = np.where(y_std > 0, y_std, 1.0)

    def fit(self, X: np.ndarray, Y: np.ndarray, output_names=None, start=None) -> GP:
        """start: (m, d + 3) log-hyperparameters (GP.theta of a related fit) for restart 0 instead
        of the defaults: a warm start."""
        import torch

        X, Y = np.atleast_2d(np.asarray(X, dtype=float)), np.asarray(Y, dtype=float)
        Y = Y[:, None] if Y.ndim == 1 else Y
        if len(X) != len(Y) or len(X) < 2:
            raise ValueError(f"GP.fit: expected as many inputs as outputs (>= 2), got {len(X)} and {len(Y)}")
        names = list(output_names) if output_names is not None else [f"output {k}" for k in range(Y.shape[1])]
        for A, what in ((X, "input"), (Y, "output")):
            bad = np.argwhere(~np.isfinite(A))
            if len(bad):
                i, j = bad[0]
                label = names[j] if what == "output" else f"input {j}"
                raise ValueError(f"GP.fit: training sample {i} has a non-finite {what} ({label} = {A[i, j]}); "
                                 "expected finite training data")
        self._standardize(X, Y)
        n, m, d = len(X), Y.shape[1], X.shape[1]
        Xt = self._x(X)
        Yt = torch.as_tensor((np.ascontiguousarray(Y.T) - self.y_mean[:, None]) / self.y_std[:, None], dtype=torch.float64,
                             device=self.device)

        def fun(theta, rows):
            return _negative_log_likelihood(theta, Xt, Yt[rows], self.noise_floor)

        warm = None if start is None else np.asarray(start, dtype=float).reshape(m, d + 3)
        rng = np.random.default_rng(self.seed)
        best_f = torch.full((m,), np.inf, dtype=torch.float64, device=self.device)
        best = torch.zeros(m, d + 3, dtype=torch.float64, device=self.device)
        best_rounding = torch.zeros(m, dtype=torch.float64, device=self.device)
        info = {k: np.zeros(m, dtype=np.int64) for k in ("iterations", "status", "restarts_discarded", "best_restart")}
        grad = np.full(m, np.nan)
        for r in range(self.restarts):
            rows = np.tile(restart_point(r, d, rng), (m, 1))
            if r == 0 and warm is not None:
                rows = warm
            theta0 = torch.as_tensor(rows, dtype=torch.float64, device=self.device)
            with torch.no_grad():
                x, f, g, its, status, rounding = batched_lbfgs(fun, theta0, self.iterations, self.gtol, self.ftol)
            failed = ~torch.isfinite(f)
            info["restarts_discarded"] += failed.cpu().numpy()
            # Better by more than the stopping tolerance and both losses' rounding levels: near-ties
            # keep the earlier restart, so rounding-level differences never decide.
            margin = torch.maximum(10 * self.ftol * torch.clamp_min(best_f.abs(), 1.0), 2 * torch.maximum(rounding, best_rounding))
            margin = torch.where(torch.isfinite(best_f), margin, 0.0)
            better = (f < best_f - margin) & ~failed
            best = torch.where(better[:, None], x, best)
            best_f = torch.where(better, f, best_f)
            best_rounding = torch.where(better, rounding, best_rounding)
            b = better.cpu().numpy()
            info["iterations"][b], info["status"][b] = its.cpu().numpy()[b], status.cpu().numpy()[b]
            info["best_restart"][b] = r
            grad[b] = g.abs().amax(-1).cpu().numpy()[b]
        lost = np.flatnonzero(~np.isfinite(best_f.cpu().numpy()))
        if len(lost):
            raise ValueError(f"GP.fit: {names[lost[0]]}: every one of {self.restarts} restarts gave a non-finite "
                             "likelihood; expected finite, non-constant training outputs")
        self.convergence = {"iterations": info["iterations"], "status": info["status"], "gradient_norm": grad,
                            "restarts_discarded": info["restarts_discarded"], "best_restart": info["best_restart"]}
        self.log_marginal_likelihood = -best_f.cpu().numpy() * n
        self._set(Xt, Yt, best)
        self.variance_scale = self._loo_variance_scale() if self.calibrate else np.ones(m)
        return self

    @property
    def converged(self) -> np.ndarray:
        """(m,) whether each output's optimizer stopped on its gradient, loss-change or
        rounding-level test (`batched_lbfgs`)."""
        return np.isin(self.convergence["status"], CONVERGED_STATUS)

    def _set(self, Xt, Yt, theta):
        """Posterior pieces for fixed hyperparameters theta (m, d + 3)."""
        import torch

        self.Xt, self.Yt, self.theta = Xt, Yt, theta
        m, n = Yt.shape
        ls, s2, noise, c = _unpack(theta, Xt.shape[-1], self.noise_floor)
        self._ls, self._s2, self._noise, self._c = ls, s2, noise, c
        Xb = Xt.expand(m, -1, -1)
        K = matern52(Xb, Xb, ls, s2) + noise[:, None, None] * torch.eye(n, dtype=Xt.dtype, device=Xt.device)
        self._L = torch.linalg.cholesky(K)
        self._alpha = torch.cholesky_solve((Yt - c[:, None])[..., None], self._L)[..., 0]

    def _loo_standardized(self):
        """Closed-form leave-one-out residuals r_i = [K^-1 y]_i / [K^-1]_ii and predictive variances
        1 / [K^-1]_ii (observation, noise included), standardized outputs: (r, var) (m, n)."""
        import torch

        Kinv = torch.cholesky_inverse(self._L)
        dinv = torch.diagonal(Kinv, dim1=-2, dim2=-1)
        return self._alpha / dinv, 1.0 / dinv

    def _loo_variance_scale(self) -> np.ndarray:
        """Per-output mean squared standardized leave-one-out residual: maximum-likelihood
        hyperparameters can be over- or under-confident; this puts the LOO z-scores at unit variance."""
        r, var = self._loo_standardized()
        return ((r * r / var).mean(-1)).cpu().numpy()

    def loo_z(self) -> np.ndarray:
        """(n, m) standardized leave-one-out residuals (calibrated variance: unit mean square)."""
        r, var = self._loo_standardized()
        return (r / var.sqrt()).T.cpu().numpy() / np.sqrt(self.variance_scale)

    def loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out predictive mean and (calibrated) variance at the training inputs, (n, m)."""
        r, var = self._loo_standardized()
        y = self.Yt.T.cpu().numpy()
        return self.y_mean + self.y_std * (y - r.T.cpu().numpy()), self.y_std**2 * self.variance_scale * var.T.cpu().numpy()

    @property
    def hyperparameters(self) -> dict[str, np.ndarray]:
        """lengthscale (m, d) in standardized input units, outputscale (m,), noise (m,) and mean (m,)
        in standardized output units."""
        return {"lengthscale": self._ls.cpu().numpy(), "outputscale": self._s2.cpu().numpy(),
                "noise": self._noise.cpu().numpy(), "mean": self._c.cpu().numpy()}

    def _check_inputs(self, X: np.ndarray):
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        if len(bad):
            j = np.flatnonzero(~np.isfinite(X[bad[0]]))[0]
            raise ValueError(f"GP.predict: query {bad[0]} has a non-finite input {j} ({X[bad[0], j]}); expected finite inputs")

    def _latent(self, X: np.ndarray):
        """Standardized latent posterior mean and variance (m, q) at X (q, d)."""
        import torch

        X = np.atleast_2d(np.asarray(X, dtype=float))
        self._check_inputs(X)
        Q = self._x(X)
        m = len(self._c)
        Ks = matern52(Q.expand(m, -1, -1), self.Xt.expand(m, -1, -1), self._ls, self._s2)  # (m, q, n)
        mean = self._c[:, None] + (Ks @ self._alpha[..., None])[..., 0]
        v = torch.linalg.solve_triangular(self._L, Ks.transpose(-1, -2), upper=False)
        var = torch.clamp_min(self._s2[:, None] - (v * v).sum(-2), 0.0)
        return mean, var

    def predict(self, X: np.ndarray, noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance (n, m); `noise` adds the learned noise variance (the
        distribution of an observation rather than of the latent function). Variances carry the
        leave-one-out calibration factor (`variance_scale`)."""
        import torch

        with torch.no_grad():
            mean, var = self._latent(X)
            if noise:
                var = var + self._noise[:, None]
        mean, var = mean.T.cpu().numpy(), var.T.cpu().numpy()
        return self.y_mean + self.y_std * mean, self.y_std**2 * self.variance_scale * var

    def outside(self, X: np.ndarray, margin: float = 1e-9) -> np.ndarray:
        """(n, d) mask of inputs outside the training box (per input, informative)."""
        X = np.atleast_2d(X)
        span = np.maximum(self.x_max - self.x_min, 1e-300)
        return (X < self.x_min - margin * span) | (X > self.x_max + margin * span)

    # -- novelty ------------------------------------------------------------------------------
    def novelty(self, X: np.ndarray) -> np.ndarray:
        """(n,) latent variance fraction 1 - k*^T K^-1 k* / s^2, averaged over the outputs: 0 on a
        training input, 1 far from all of them (in each output's own ARD metric)."""
        import torch

        with torch.no_grad():
            return (self._latent(X)[1] / self._s2[:, None]).mean(0).cpu().numpy()

    def loo_novelty(self) -> np.ndarray:
        """(n,) the novelty of each training input with respect to the others (exact LOO:
        latent LOO variance = 1 / [K^-1]_ii - noise)."""
        import torch

        with torch.no_grad():
            var = self._loo_standardized()[1] - self._noise[:, None]
            return (torch.clamp_min(var, 0.0) / self._s2[:, None]).mean(0).cpu().numpy()

    # -- artefacts ------------------------------------------------------------------------------
    def to_dataset(self, prefix: str = "gp") -> xr.Dataset:
        """Training data, standardization, hyperparameters and convergence: enough to rebuild the predictor."""
        X = self.Xt.cpu().numpy() * self.x_std + self.x_mean
        X = np.exp(X) if self.input_transform == "log" else X
        Y = self.Yt.cpu().numpy().T * self.y_std + self.y_mean
        s, i, o = f"{prefix}_sample", f"{prefix}_input", f"{prefix}_output"
        data = {f"{prefix}_X": ((s, i), X), f"{prefix}_Y": ((s, o), Y),
                f"{prefix}_log_marginal_likelihood": (o, self.log_marginal_likelihood),
                f"{prefix}_variance_scale": (o, self.variance_scale),
                f"{prefix}_theta": ((o, f"{prefix}_theta_index"), self.theta.cpu().numpy(),
                                    {"long_name": "log lengthscales, log outputscale, log(noise - floor), mean"})}
        for key, value in self.hyperparameters.items():
            data[f"{prefix}_{key}"] = ((o, i) if key == "lengthscale" else (o,), value)
        for key, value in self.convergence.items():
            data[f"{prefix}_{key}"] = (o, value)
        data[f"{prefix}_converged"] = (o, self.converged.astype(np.int8))
        return xr.Dataset(data, attrs={f"{prefix}_restarts": self.restarts, f"{prefix}_iterations": self.iterations,
                                       f"{prefix}_gtol": self.gtol, f"{prefix}_noise_floor": self.noise_floor,
                                       f"{prefix}_input_transform": self.input_transform,
                                       f"{prefix}_status_codes": "; ".join(f"{k}: {v}" for k, v in CONVERGENCE_STATUS.items())})

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, prefix: str = "gp", device=None) -> GP:
        import torch

        gp = cls(int(ds.attrs[f"{prefix}_restarts"]), int(ds.attrs[f"{prefix}_iterations"]), device=device,
                 input_transform=str(ds.attrs[f"{prefix}_input_transform"]),
                 noise_floor=float(ds.attrs[f"{prefix}_noise_floor"]), gtol=float(ds.attrs[f"{prefix}_gtol"]))
        X, Y = ds[f"{prefix}_X"].values, ds[f"{prefix}_Y"].values
        gp._standardize(X, Y)
        gp.log_marginal_likelihood = ds[f"{prefix}_log_marginal_likelihood"].values
        gp.variance_scale = ds[f"{prefix}_variance_scale"].values
        gp.convergence = {k: ds[f"{prefix}_{k}"].values for k in
                          ("iterations", "status", "gradient_norm", "restarts_discarded", "best_restart")}
        Yt = torch.as_tensor((np.ascontiguousarray(Y.T) - gp.y_mean[:, None]) / gp.y_std[:, None], dtype=torch.float64,
                             device=gp.device)
        gp._set(gp._x(X), Yt, torch.as_tensor(ds[f"{prefix}_theta"].values, dtype=torch.float64, device=gp.device))
        return gp


def conformal_p_value(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """p = (1 + #{reference >= score}) / (n + 1): for a score exchangeable with the n reference
    scores, P(p <= a) <= a."""
    ref = np.sort(np.asarray(reference, dtype=float))
    above = len(ref) - np.searchsorted(ref, np.asarray(scores, dtype=float), side="left")
    return (1.0 + above) / (len(ref) + 1.0)


# -- calibrated intervals -----------------------------------------------------------------------
# Quantile recalibration (Kuleshov, Fenner, Ermon 2018): a Gaussian predictive distribution whose
# variance is right on average still misstates every level when the standardized errors are not
# Gaussian (pooled nodal errors are a scale mixture: heavier-tailed). Intervals therefore use, per
# output, the empirical distribution of the standardized leave-one-out residuals |z|: at central
# level a the half-width is factor(a) * std, factor(a) the ceil(a (n + 1))-th smallest |z| (the
# conformal rank: coverage >= a for an exchangeable new residual). Gaussian z gives the usual
# factor Phi^-1((1 + a) / 2).
CALIBRATION_GRID = np.round(np.concatenate([np.arange(0.01, 1.0, 0.01), [0.995, 0.999]]), 3)


def interval_factors(abs_z: np.ndarray, grid: np.ndarray = CALIBRATION_GRID) -> np.ndarray:
    """Half-width factors at the central levels `grid` from standardized residuals |z| (any shape)."""
    z = np.sort(np.abs(np.asarray(abs_z, dtype=float)).ravel())
    k = np.minimum(np.ceil(grid * (len(z) + 1)).astype(int), len(z))
    return z[k - 1]


def gaussian_factors(grid: np.ndarray = CALIBRATION_GRID) -> np.ndarray:
    from scipy.stats import norm

    return norm.ppf(0.5 + grid / 2)


def half_width(factors: np.ndarray, level, grid: np.ndarray = CALIBRATION_GRID) -> np.ndarray:
    """factor(level) by linear interpolation on the grid (0 at level 0); beyond the last grid level
    the factor grows like the Gaussian one."""
    level = np.asarray(level, dtype=float)
    g, f = np.concatenate([[0.0], grid]), np.concatenate([[0.0], factors])
    out = np.interp(np.minimum(level, grid[-1]), g, f)
    tail = level > grid[-1]
    if np.any(tail):
        from scipy.stats import norm

        out = np.where(tail, f[-1] * norm.ppf(0.5 + np.minimum(level, 1 - 1e-16) / 2) / norm.ppf(0.5 + grid[-1] / 2), out)
    return out


def calibrated_quantile(factors: np.ndarray, q) -> np.ndarray:
    """Standardized quantile at one-sided level q of the symmetric calibrated distribution."""
    q = np.asarray(q, dtype=float)
    return np.sign(q - 0.5) * half_width(factors, np.abs(2 * q - 1))


def calibrated_normal(factors: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """Standard-normal draws mapped to the calibrated distribution (a Gaussian copula: the draws
    keep the correlation structure they came with, and get calibrated marginals)."""
    from scipy.stats import norm

    return np.sign(xi) * half_width(factors, 2 * norm.cdf(np.abs(xi)) - 1)


def calibrated_coverage(y, mean, std, factors, level: float = 0.95) -> float:
    """Fraction of values inside the calibrated central `level` interval."""
    return float(np.mean(np.abs(np.asarray(y) - mean) <= half_width(factors, level) * np.asarray(std)))


# -- metrics ------------------------------------------------------------------------------------
def coverage(y: np.ndarray, mean: np.ndarray, var: np.ndarray, level: float = 0.95) -> float:
    """Fraction of values inside the central `level` Gaussian interval."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    return float(np.mean(np.abs(y - mean) <= z * np.sqrt(var)))


CALIBRATION_LEVELS = np.round(np.arange(0.1, 1.0, 0.1).tolist() + [0.95, 0.99], 2)


def calibration_curve(y, mean, var, levels=CALIBRATION_LEVELS) -> np.ndarray:
    """Observed coverage of the central Gaussian intervals at each nominal level."""
    return np.array([coverage(y, mean, var, a) for a in levels])


def q2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination on held-out values (pooled over all entries)."""
    y, pred = np.asarray(y), np.asarray(pred)
    return float(1.0 - ((y - pred) ** 2).sum() / ((y - y.mean(axis=0)) ** 2).sum())


# -- POD + GP on fixed-mesh studies -------------------------------------------------------------
def homogeneous_inputs(mu: np.ndarray, degree: float) -> tuple[np.ndarray, np.ndarray]:
    """GP inputs and output factor of the parameter scaling: when u(lambda mu) = lambda^degree u(mu)
    (thermal block: -div(mu grad u) = 1, u = 0 on the boundary, degree -1), the GP regresses
    ||mu||^-degree u on the direction mu / ||mu|| and multiplies back (exact, not learned)."""
    mu = np.atleast_2d(np.asarray(mu, dtype=float))
    if degree == 0:
        return mu, np.ones(len(mu))
    r = np.linalg.norm(mu, axis=1)
    return mu / r[:, None], r**degree


def fit_pod_gp(mu: np.ndarray, coefficients: np.ndarray, degree: float, **gp_options) -> GP:
    """GP from the parameters to the POD coefficients (n, k), with the parameter scaling of `degree`."""
    x, scale = homogeneous_inputs(mu, degree)
    return GP(**gp_options).fit(x, coefficients / scale[:, None], [f"POD coefficient {k}" for k in range(coefficients.shape[1])])


def predict_pod_gp(gp: GP, mu: np.ndarray, degree: float) -> tuple[np.ndarray, np.ndarray]:
    """POD coefficients' mean and variance (n, modes) at parameters mu."""
    x, scale = homogeneous_inputs(mu, degree)
    c, var = gp.predict(x)
    return scale[:, None] * c, scale[:, None] ** 2 * var


# Snapshots too large to hold are passed as rows read in blocks of samples (rom.snapshots.SnapshotRows or
# ArrayRows: n_rows, n_dofs, rows(i, j), take(positions)): the POD coefficients, the cross-validation and
# the test metrics are then computed block by block, with the arithmetic of the in-memory path per row.
BLOCK_BYTES = 256 << 20  # the panel of the blocked POD (rom.reduction.pod.pod_blocks), which streams blocks of
# a quarter of it; the other passes stream blocks of 1/16 of it (their few temporaries are block-sized)


def _lazy(U) -> bool:
    return not isinstance(U, np.ndarray) and hasattr(U, "rows")


def _blocks(U, block_bytes: int | None):
    """(i, j, rows i:j) of U in streamed blocks of whole samples, 1/16 of block_bytes (see BLOCK_BYTES)."""
    from rom.reduction.pod import _steps

    _, stream = _steps(U, (block_bytes or BLOCK_BYTES) // 4)
    for i in range(0, U.n_rows, stream):
        j = min(U.n_rows, i + stream)
        yield i, j, U.rows(i, j)


def _rows_times(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B for a block of rows A, as the rows of a taller A get it: a single row is multiplied as two
    (numpy multiplies one row as a vector, in another summation order than a matrix's rows)."""
    if len(A) == 1:
        A2 = np.concatenate([A, A])
        return ((np.asfortranarray(A2) if A.strides[0] < A.strides[1] else A2) @ B)[:1]  # A's layout kept
    return A @ B


def pod_coefficients(U: np.ndarray, X, V: np.ndarray, block_bytes: int | None = None) -> np.ndarray:
    """X-inner products of the snapshots U (n, dofs) with X-orthonormal modes V (k, dofs); U may be rows
    read in blocks (see BLOCK_BYTES)."""
    if not _lazy(U):
        return (X @ U.T).T @ V.T
    out = np.empty((U.n_rows, len(V)))
    for i, j, B in _blocks(U, block_bytes):
        out[i:j] = _block_coefficients(B, X, V)
    return out


def _block_coefficients(B: np.ndarray, X, V: np.ndarray) -> np.ndarray:
    """pod_coefficients of a block of rows, a single row multiplied as a matrix's rows (_rows_times)."""
    B2 = np.concatenate([B, B]) if len(B) == 1 else B
    return ((X @ B2.T).T @ V.T)[:len(B)]


def pod_gp_cross_validation(mu: np.ndarray, U: np.ndarray, X, V: np.ndarray, degree: float, folds: int = 4,
                            seed: int = 0, block_bytes: int | None = None,
                            **gp_options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out errors of POD+GP by K-fold cross-validation of the whole chain (POD of the other
    folds' snapshots, GP on their coefficients, prediction of the held-out ones).

    Leave-one-out residuals of the GP alone are blind to the chain's main bias: the training
    coefficients on the higher modes are shrunk by the POD that was fitted to those very snapshots
    (thermal block, 24 snapshots: train std of modes 9-12 four to five times below the test
    std), so the GP learns too small a function. A held-out snapshot's coefficients are honest.
    Returns, per snapshot, the held-out coefficient errors on the modes V (n, k), the fold model's
    variances in V's basis (n, k), var_k = sum_l <V'_l, V_k>_X^2 var'_l, and the nodal errors (n, dofs).
    With U rows read in blocks, the folds' PODs are blocked (rom.reduction.pod.pod_blocks) and the nodal
    errors are returned as HeldOutErrors (computed block by block where they are used)."""
    from rom.reduction.pod import pod

    if _lazy(U):
        return _pod_gp_cross_validation_blocks(mu, U, X, V, degree, folds, seed, block_bytes, **gp_options)
    n, k = len(mu), len(V)
    order = np.random.default_rng(seed).permutation(n)
    e_coef, v_coef, e_node = np.empty((n, k)), np.empty((n, k)), np.empty(U.shape)
    for held in np.array_split(order, folds):  # K small fits
        keep = np.setdiff1d(order, held)
        Vf = pod(U[keep], X, 1e-14, k)[0]
        gp = fit_pod_gp(mu[keep], pod_coefficients(U[keep], X, Vf), degree, seed=seed, **gp_options)
        c, var = predict_pod_gp(gp, mu[held], degree)
        e_node[held] = U[held] - c @ Vf
        e_coef[held] = pod_coefficients(e_node[held], X, V)
        v_coef[held] = var @ ((X @ Vf.T).T @ V.T) ** 2  # squared X-inner products of the two bases
    return e_coef, v_coef, e_node


class HeldOutErrors:
    """The cross-validated nodal errors (n, dofs) of snapshots read in blocks, never held: row i is
    U_i - c_i V_f, c_i the held-out prediction of sample i by its fold f's model (modes V_f)."""

    def __init__(self, U, fold: np.ndarray, coefficients: np.ndarray, fold_modes: list):
        self.U, self.fold, self.coefficients, self.fold_modes = U, fold, coefficients, fold_modes
        self.shape = (U.n_rows, U.n_dofs)

    def __len__(self) -> int:
        return self.shape[0]

    def errors(self, i: int, rows: np.ndarray) -> np.ndarray:
        """The nodal errors of rows i:i+len(rows) of U (given), in place of them."""
        for f, Vf in enumerate(self.fold_modes):
            sel = np.flatnonzero(self.fold[i:i + len(rows)] == f)
            if len(sel):
                rows[sel] = rows[sel] - _rows_times(self.coefficients[i + sel], Vf)
        return rows

    def blocks(self, block_bytes: int | None = None):
        """(i, j, errors of rows i:j) in streamed blocks."""
        for i, j, B in _blocks(self.U, block_bytes):
            yield i, j, self.errors(i, B)


def _pod_gp_cross_validation_blocks(mu, U, X, V, degree, folds, seed, block_bytes, **gp_options):
    """pod_gp_cross_validation of rows read in blocks: the same folds, models and per-row arithmetic."""
    from rom.reduction.pod import pod_blocks

    n, k = len(mu), len(V)
    order = np.random.default_rng(seed).permutation(n)
    e_coef, v_coef, pred = np.empty((n, k)), np.empty((n, k)), np.empty((n, k))
    fold, fold_modes = np.empty(n, dtype=np.int64), []
    for f, held in enumerate(np.array_split(order, folds)):  # K small fits
        keep = np.setdiff1d(order, held)
        train = U.take(keep)
        try:
            Vf = pod_blocks(train, X, 1e-14, k, block_bytes or BLOCK_BYTES)[0]
            gp = fit_pod_gp(mu[keep], pod_coefficients(train, X, Vf, block_bytes), degree, seed=seed, **gp_options)
        finally:
            train.close()
        c, var = predict_pod_gp(gp, mu[held], degree)
        fold[held], pred[held] = f, c
        fold_modes.append(Vf)
        v_coef[held] = var @ ((X @ Vf.T).T @ V.T) ** 2  # squared X-inner products of the two bases
    e_node = HeldOutErrors(U, fold, pred, fold_modes)
    for i, j, E in e_node.blocks(block_bytes):
        e_coef[i:j] = pod_coefficients(E, X, V)
    return e_coef, v_coef, e_node


def streamed_order_statistics(blocks, total: int, ranks, budget: int = 1 << 22, bits: int = 12) -> np.ndarray:
    """np.sort(values)[ranks] of `total` non-negative float64 values (NaN sorted last) delivered by
    blocks() (a new iterator of arrays on each call), exactly, without holding them: the values' bit
    patterns (as uint64, ordered as the values) are narrowed `bits` bits a pass by per-rank histograms
    until the candidates of all ranks number at most `budget`, which are then collected and sorted.
    Three passes for 1e8 values spread over ten octaves."""
    ranks = np.asarray(ranks, dtype=np.int64)
    out = np.empty(len(ranks))
    if not len(ranks):
        return out
    if ranks.min() < 0 or ranks.max() >= total:
        raise IndexError(f"ranks {ranks.min()}..{ranks.max()} of {total} values")
    shift, prefix, local, count = 64, np.zeros(len(ranks), np.uint64), ranks.copy(), np.full(len(ranks), total)
    width = 1 << bits

    def candidates(keys, groups):
        """(position in groups, or -1) of every key with the current prefix."""
        if shift == 64:
            return np.zeros(len(keys), np.int64)
        top = keys >> np.uint64(shift)
        pos = np.minimum(np.searchsorted(groups, top), len(groups) - 1)
        return np.where(groups[pos] == top, pos, -1)

    while True:
        groups, first = np.unique(prefix, return_index=True)
        if count[first].sum() <= budget or shift == 0:
            picked = [[] for _ in groups]
            for block in blocks():
                keys = np.ascontiguousarray(block, dtype=np.float64).ravel().view(np.uint64)
                pos = candidates(keys, groups)
                hit = np.flatnonzero(pos >= 0)
                for g in np.unique(pos[hit]):
                    picked[g].append(keys[hit[pos[hit] == g]])
            for g, p in enumerate(groups):
                keys = np.sort(np.concatenate(picked[g]) if picked[g] else np.empty(0, np.uint64))
                at = prefix == p
                out[at] = keys[local[at]].view(np.float64)
            return out
        step = min(bits, shift)
        hist = np.zeros(len(groups) * width, np.int64)
        for block in blocks():
            keys = np.ascontiguousarray(block, dtype=np.float64).ravel().view(np.uint64)
            pos = candidates(keys, groups)
            hit = pos >= 0
            low = (keys[hit] >> np.uint64(shift - step)) & np.uint64((1 << step) - 1)
            hist += np.bincount(pos[hit] * width + low.astype(np.int64), minlength=len(hist))
        cum = np.cumsum(hist.reshape(len(groups), width), axis=1)
        g = np.searchsorted(groups, prefix)
        b = np.array([np.searchsorted(cum[gi], r, side="right") for gi, r in zip(g, local)])
        local = local - np.where(b > 0, cum[g, np.maximum(b - 1, 0)], 0)
        count = hist.reshape(len(groups), width)[g, b]
        prefix = (prefix << np.uint64(step)) | b.astype(np.uint64)
        shift -= step


def calibrate_pod_gp(gp: GP, V: np.ndarray, e_coef: np.ndarray, v_coef: np.ndarray, e_node: np.ndarray,
                     block_bytes: int | None = None):
    """Multiply gp.variance_scale by the mean squared cross-validated z-score of each mode and
    return the calibrated interval factors (per mode (k, L), nodal (L,)) of the rescaled z-scores.
    e_node may be HeldOutErrors (snapshots read in blocks): the nodal factors, order statistics of
    n x dofs z-scores, are then selected exactly in a few streamed passes (streamed_order_statistics)."""
    scale = np.mean(e_coef**2 / v_coef, axis=0)
    gp.variance_scale = gp.variance_scale * scale
    z = e_coef / np.sqrt(v_coef * scale)
    coef_f = np.stack([interval_factors(z[:, j]) for j in range(z.shape[1])])
    if isinstance(e_node, HeldOutErrors):  # the nodal z-scores' order statistics, streamed
        V2 = V**2

        def blocks():
            for i, j, E in e_node.blocks(block_bytes):
                sd = np.sqrt(_rows_times(v_coef[i:j] * scale, V2))
                yield np.abs(np.divide(E, sd, out=np.where(E == 0, 0.0, np.inf), where=sd > 0))

        total = e_node.shape[0] * e_node.shape[1]
        k = np.minimum(np.ceil(CALIBRATION_GRID * (total + 1)).astype(int), total)  # as interval_factors
        budget = max(1 << 12, (block_bytes or BLOCK_BYTES) // 64)  # candidates collected: 1/8 of a streamed block
        return coef_f, streamed_order_statistics(blocks, total, k - 1, budget), scale
    sd = np.sqrt((v_coef * scale) @ V**2)
    z_node = np.divide(e_node, sd, out=np.where(e_node == 0, 0.0, np.inf), where=sd > 0)
    return coef_f, interval_factors(z_node), scale


def pod_gp_test_metrics(gp: GP, V: np.ndarray, X, mu: np.ndarray, U: np.ndarray, degree: float,
                        coef_factors: np.ndarray, nodal_factors: np.ndarray, level: float = 0.05,
                        block_bytes: int | None = None) -> dict:
    """POD+GP on a test set: X-norm relative errors (and of the projection on the modes), per-mode
    z-score s.d. and calibrated 95% coverage, nodal calibration curve, conformal out-of-range
    p-values (GP novelty against its leave-one-out values) flagged below `level`. U may be rows read in
    blocks (see BLOCK_BYTES): "u_mean" and "u_sd" are then Decompressed (rows computed when indexed)."""
    if _lazy(U):
        return _pod_gp_test_metrics_blocks(gp, V, X, mu, U, degree, coef_factors, nodal_factors, level, block_bytes)
    c, var = predict_pod_gp(gp, mu, degree)
    u_mean, u_sd = c @ V, np.sqrt(var @ V**2)  # exact: independent GP outputs, linear decompression

    def norm(A):
        return np.sqrt(np.clip(np.einsum("ij,ij->i", A, (X @ A.T).T), 0, None))

    unorm = norm(U)
    C_ref = pod_coefficients(U, X, V)
    z = (C_ref - c) / np.sqrt(var)
    nodal = np.array([calibrated_coverage(U, u_mean, u_sd, nodal_factors, a) for a in CALIBRATION_LEVELS])
    x = homogeneous_inputs(mu, degree)[0]
    p = conformal_p_value(gp.loo_novelty(), gp.novelty(x))
    return {"relative_error": norm(U - u_mean) / unorm, "projection_error": norm(U - C_ref @ V) / unorm,
            "coefficients_mean": c, "coefficients_var": var, "coefficients_ref": C_ref,
            "z_sd": z.std(axis=0), "coverage95_modes": np.array([calibrated_coverage(C_ref[:, j], c[:, j], np.sqrt(var[:, j]),
                                                                                     coef_factors[j]) for j in range(len(V))]),
            "nodal_calibration": nodal, "nodal_calibration_gaussian": calibration_curve(U, u_mean, u_sd**2),
            "coverage95_field": float(nodal[list(CALIBRATION_LEVELS).index(0.95)]),
            "out_of_range_p": p, "out_of_range": p < level, "outside_training_box": gp.outside(x).any(axis=1),
            "u_mean": u_mean, "u_sd": u_sd}


class Decompressed:
    """The fields (n, dofs) of coefficients c (n, k) on modes V, f(c) @ W: row i computed when indexed."""

    def __init__(self, c: np.ndarray, W: np.ndarray, f=None):
        self.c, self.W, self.f = c, W, f
        self.shape = (len(c), W.shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        row = _rows_times(self.c[int(i)][None, :], self.W)
        return (row if self.f is None else self.f(row))[0]


def _pod_gp_test_metrics_blocks(gp, V, X, mu, U, degree, coef_factors, nodal_factors, level, block_bytes):
    """pod_gp_test_metrics of test snapshots read in blocks: per block of samples the errors, reference
    coefficients and the counts of nodal values inside the intervals; the same per-row arithmetic."""
    c, var = predict_pod_gp(gp, mu, degree)
    V2 = V**2

    def norm(A):
        return np.sqrt(np.clip(np.einsum("ij,ij->i", A, (X @ A.T).T), 0, None))

    n = U.n_rows
    rel, proj, C_ref = np.empty(n), np.empty(n), np.empty((n, len(V)))
    widths = [half_width(nodal_factors, a) for a in CALIBRATION_LEVELS]
    gauss = [_norm_ppf(0.5 + a / 2) for a in CALIBRATION_LEVELS]
    inside, inside_gauss = np.zeros(len(CALIBRATION_LEVELS), np.int64), np.zeros(len(CALIBRATION_LEVELS), np.int64)
    for i, j, B in _blocks(U, block_bytes):
        u_mean, u_sd = _rows_times(c[i:j], V), np.sqrt(_rows_times(var[i:j], V2))
        unorm = norm(B)
        C_ref[i:j] = _block_coefficients(B, X, V)
        rel[i:j] = norm(B - u_mean) / unorm
        proj[i:j] = norm(B - _rows_times(C_ref[i:j], V)) / unorm
        dev = np.abs(B - u_mean)
        del B, u_mean
        for a, w in enumerate(widths):  # calibrated_coverage and coverage, counted
            inside[a] += np.count_nonzero(dev <= w * u_sd)
        u_var = u_sd**2
        u_var = np.sqrt(u_var, out=u_var)
        for a, zg in enumerate(gauss):
            inside_gauss[a] += np.count_nonzero(dev <= zg * u_var)
    total = n * U.n_dofs
    z = (C_ref - c) / np.sqrt(var)
    nodal = inside / total
    x = homogeneous_inputs(mu, degree)[0]
    p = conformal_p_value(gp.loo_novelty(), gp.novelty(x))
    return {"relative_error": rel, "projection_error": proj,
            "coefficients_mean": c, "coefficients_var": var, "coefficients_ref": C_ref,
            "z_sd": z.std(axis=0), "coverage95_modes": np.array([calibrated_coverage(C_ref[:, j], c[:, j], np.sqrt(var[:, j]),
                                                                                     coef_factors[j]) for j in range(len(V))]),
            "nodal_calibration": nodal, "nodal_calibration_gaussian": inside_gauss / total,
            "coverage95_field": float(nodal[list(CALIBRATION_LEVELS).index(0.95)]),
            "out_of_range_p": p, "out_of_range": p < level, "outside_training_box": gp.outside(x).any(axis=1),
            "u_mean": Decompressed(c, V), "u_sd": Decompressed(var, V2, np.sqrt)}


def _norm_ppf(q: float) -> float:
    from scipy.stats import norm

    return norm.ppf(q)
