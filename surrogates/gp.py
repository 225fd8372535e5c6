"""Gaussian-process regression on GPyTorch: Matern 5/2 with one length scale per input (ARD),
learned noise, standardized inputs and outputs, several optimizer restarts keeping the best
marginal likelihood, predictive mean and variance.

Multi-output: one *batched* exact GP with an independent GP per output column. The outputs this
project regresses are POD coefficients (uncorrelated over the training set by construction) and a
few scalars with very different smoothness, so each gets its own length scales, signal variance
and noise; a batch shares one Cholesky call per step and one optimizer, and per-output restarts
pick the best likelihood per output independently. A multitask (ICM) kernel would cost
O((n m)^3) and force one set of length scales on all outputs. Independence also makes the
propagation to fields exact: the variance of V^T c is (V^2)^T var(c).

Runs on the GPU when one is present (float64 throughout).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

_HYPER = ("lengthscale", "outputscale", "noise", "mean")
INPUT_TRANSFORMS = ("none", "log")


def _device(device=None):
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _model(X, Y, noise_floor: float):
    """Batched exact GP: X (m, n, d), Y (m, n)."""
    import gpytorch
    import torch

    batch = torch.Size([Y.shape[0]])

    class BatchGP(gpytorch.models.ExactGP):
        def __init__(self, x, y, likelihood):
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=x.shape[-1], batch_shape=batch), batch_shape=batch)

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    likelihood = gpytorch.likelihoods.GaussianLikelihood(
        batch_shape=batch, noise_constraint=gpytorch.constraints.GreaterThan(noise_floor))
    return BatchGP(X, Y, likelihood).to(X), likelihood.to(X)


class GP:
    """Independent GPs from inputs X (n, d) to outputs Y (n, m)."""

    def __init__(self, restarts: int = 3, iterations: int = 50, seed: int = 0, noise_floor: float = 1e-8,
                 calibrate: bool = True, device=None, input_transform: str = "none"):
        if input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform = {input_transform!r}: expected one of {list(INPUT_TRANSFORMS)}")
        self.input_transform = input_transform
        self.calibrate = bool(calibrate)
        self.restarts, self.iterations, self.seed = int(restarts), int(iterations), int(seed)
        self.noise_floor = float(noise_floor)
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

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "GP":
        import gpytorch
        import torch

        X, Y = np.atleast_2d(np.asarray(X, dtype=float)), np.asarray(Y, dtype=float)
        Y = Y[:, None] if Y.ndim == 1 else Y
        if len(X) != len(Y) or len(X) < 2:
            raise ValueError(f"GP.fit: expected as many inputs as outputs (>= 2), got {len(X)} and {len(Y)}")
        self.x_min, self.x_max = X.min(axis=0), X.max(axis=0)
        T = self._t(X)
        self.x_mean, self.x_std = T.mean(axis=0), np.where(T.std(axis=0) > 0, T.std(axis=0), 1.0)
        self.y_mean, self.y_std = Y.mean(axis=0), np.where(Y.std(axis=0) > 0, Y.std(axis=0), 1.0)
        m, d = Y.shape[1], X.shape[1]
        Xt = self._x(X).expand(m, -1, -1).contiguous()
        Yt = torch.as_tensor(((Y - self.y_mean) / self.y_std).T, dtype=torch.float64, device=self.device).contiguous()
        model, likelihood = _model(Xt, Yt, self.noise_floor)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
        rng = np.random.default_rng(self.seed)
        best, best_mll = None, None
        with gpytorch.settings.max_cholesky_size(100_000):
            for r in range(self.restarts):
                # First restart from the defaults scaled to standardized inputs, the others at random.
                ls = np.full((m, 1, d), np.sqrt(d)) if r == 0 else np.exp(rng.uniform(np.log(0.2), np.log(5.0), (m, 1, d))) * np.sqrt(d)
                noise = np.full((m, 1), 1e-2) if r == 0 else np.exp(rng.uniform(np.log(1e-4), np.log(1e-1), (m, 1)))
                model.initialize(**{"covar_module.base_kernel.lengthscale": torch.as_tensor(ls).to(Xt),
                                    "covar_module.outputscale": torch.ones(m).to(Xt),
                                    "mean_module.constant": torch.zeros(m).to(Xt),
                                    "likelihood.noise": torch.as_tensor(np.maximum(noise, 2 * self.noise_floor)).to(Xt)})
                model.train()
                likelihood.train()
                # L-BFGS with a strong-Wolfe line search: ~50 evaluations where Adam needs several hundred.
                opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=self.iterations, history_size=20,
                                        line_search_fn="strong_wolfe")

                def closure():
                    opt.zero_grad()
                    loss = -mll(model(Xt), Yt).sum()
                    loss.backward()
                    return loss

                opt.step(closure)
                with torch.no_grad():
                    value = mll(model(Xt), Yt)  # (m,) per-output log marginal likelihood / n
                value = torch.nan_to_num(value, nan=-torch.inf)
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if best is None:
                    best, best_mll = state, value
                else:
                    better = value > best_mll
                    for k, v in state.items():
                        if v.dim() and v.shape[0] == m:
                            mask = better.reshape((m,) + (1,) * (v.dim() - 1))
                            best[k] = torch.where(mask, v, best[k])
                    best_mll = torch.maximum(best_mll, value)
        model.load_state_dict(best)
        self.log_marginal_likelihood = best_mll.cpu().numpy() * len(X)
        self._set(model, likelihood)
        self.variance_scale = self._loo_variance_scale(Xt, Yt) if self.calibrate else np.ones(m)
        return self

    def _loo_variance_scale(self, Xt, Yt) -> np.ndarray:
        """Per-output factor >= 1 on the predictive variance: the larger of the mean squared standardized
        leave-one-out residual z_i (closed form, r_i = [K^-1 y]_i / [K^-1]_ii, var_i = 1 / [K^-1]_ii) and
        (q_95(|z|) / 1.96)^2.
        Maximum-likelihood hyperparameters from few samples are overconfident; this calibrates them."""
        import torch

        with torch.no_grad():
            K = self.model.covar_module(Xt).to_dense()
            K = K + torch.diag_embed(self.likelihood.noise.expand(-1, Xt.shape[1]))
            Kinv = torch.cholesky_inverse(torch.linalg.cholesky(K))
            resid = Yt - self.model.mean_module.constant[:, None]
            d = torch.diagonal(Kinv, dim1=-2, dim2=-1)
            r = (Kinv @ resid[..., None])[..., 0] / d
            z = (r * d.sqrt()).abs()
            z2 = (z**2).mean(dim=-1)
            # The factor that puts 95% of the leave-one-out residuals inside the 95% interval: with
            # few samples the residuals are heavier-tailed than Gaussian, and the mean square alone
            # under-covers.
            q95 = (torch.quantile(z, 0.95, dim=-1) / 1.959963984540054) ** 2
        return np.maximum(np.maximum(z2.cpu().numpy(), q95.cpu().numpy()), 1.0)

    def _set(self, model, likelihood):
        model.eval()
        likelihood.eval()
        self.model, self.likelihood = model, likelihood

    @property
    def hyperparameters(self) -> dict[str, np.ndarray]:
        """Constrained values: lengthscale (m, d) in standardized input units, outputscale (m,),
        noise (m,) and mean (m,) in standardized output units."""
        k = self.model.covar_module
        return {"lengthscale": k.base_kernel.lengthscale.detach().cpu().numpy()[:, 0, :],
                "outputscale": k.outputscale.detach().cpu().numpy(),
                "noise": self.likelihood.noise.detach().cpu().numpy()[:, 0],
                "mean": self.model.mean_module.constant.detach().cpu().numpy()}

    def predict(self, X: np.ndarray, noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance (n, m); `noise` adds the learned noise variance
        (the distribution of an observation rather than of the latent function). Variances carry
        the leave-one-out calibration factor (`variance_scale`)."""
        import gpytorch
        import torch

        Xt = self._x(np.atleast_2d(X))
        m = len(self.y_mean)
        with torch.no_grad(), gpytorch.settings.max_cholesky_size(100_000), gpytorch.settings.fast_pred_var(False):
            f = self.model(Xt.expand(m, -1, -1).contiguous())
            dist = self.likelihood(f) if noise else f
            mean, var = dist.mean.cpu().numpy().T, dist.variance.clamp_min(0.0).cpu().numpy().T
        return self.y_mean + self.y_std * mean, self.y_std**2 * self.variance_scale * var

    def outside(self, X: np.ndarray, margin: float = 1e-9) -> np.ndarray:
        """(n, d) mask of inputs outside the training range (extrapolation)."""
        X = np.atleast_2d(X)
        span = np.maximum(self.x_max - self.x_min, 1e-300)
        return (X < self.x_min - margin * span) | (X > self.x_max + margin * span)

    # -- artefacts ------------------------------------------------------------------------------
    def to_dataset(self, prefix: str = "gp") -> xr.Dataset:
        """Training data, standardization and hyperparameters: enough to rebuild the predictor."""
        X = self.model.train_inputs[0][0].cpu().numpy() * self.x_std + self.x_mean
        X = np.exp(X) if self.input_transform == "log" else X
        Y = self.model.train_targets.cpu().numpy().T * self.y_std + self.y_mean
        s, i, o = f"{prefix}_sample", f"{prefix}_input", f"{prefix}_output"
        data = {f"{prefix}_X": ((s, i), X), f"{prefix}_Y": ((s, o), Y),
                f"{prefix}_log_marginal_likelihood": (o, self.log_marginal_likelihood),
                f"{prefix}_variance_scale": (o, self.variance_scale)}
        for key, value in self.hyperparameters.items():
            data[f"{prefix}_{key}"] = ((o, i) if key == "lengthscale" else (o,), value)
        return xr.Dataset(data, attrs={f"{prefix}_restarts": self.restarts, f"{prefix}_iterations": self.iterations,
                                       f"{prefix}_input_transform": self.input_transform})

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, prefix: str = "gp", device=None) -> "GP":
        import torch

        gp = cls(int(ds.attrs.get(f"{prefix}_restarts", 1)), int(ds.attrs.get(f"{prefix}_iterations", 0)), device=device,
                 input_transform=str(ds.attrs.get(f"{prefix}_input_transform", "none")))
        X, Y = ds[f"{prefix}_X"].values, ds[f"{prefix}_Y"].values
        gp.x_min, gp.x_max = X.min(axis=0), X.max(axis=0)
        T = gp._t(X)
        gp.x_mean, gp.x_std = T.mean(axis=0), np.where(T.std(axis=0) > 0, T.std(axis=0), 1.0)
        gp.y_mean, gp.y_std = Y.mean(axis=0), np.where(Y.std(axis=0) > 0, Y.std(axis=0), 1.0)
        gp.log_marginal_likelihood = ds[f"{prefix}_log_marginal_likelihood"].values
        gp.variance_scale = ds[f"{prefix}_variance_scale"].values
        m = Y.shape[1]
        Xt = gp._x(X).expand(m, -1, -1).contiguous()
        Yt = torch.as_tensor(((Y - gp.y_mean) / gp.y_std).T, dtype=torch.float64, device=gp.device).contiguous()
        hp = {k: torch.as_tensor(ds[f"{prefix}_{k}"].values, dtype=torch.float64, device=gp.device) for k in _HYPER}
        noise_floor = min(float(hp["noise"].min()) / 2, 1e-8)
        model, likelihood = _model(Xt, Yt, noise_floor)
        model.initialize(**{"covar_module.base_kernel.lengthscale": hp["lengthscale"][:, None, :],
                            "covar_module.outputscale": hp["outputscale"], "mean_module.constant": hp["mean"],
                            "likelihood.noise": hp["noise"][:, None]})
        gp._set(model, likelihood)
        return gp


def coverage(y: np.ndarray, mean: np.ndarray, var: np.ndarray, level: float = 0.95) -> float:
    """Fraction of values inside the central `level` Gaussian interval."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    return float(np.mean(np.abs(y - mean) <= z * np.sqrt(var)))


def q2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination on held-out values (pooled over all entries)."""
    y, pred = np.asarray(y), np.asarray(pred)
    return float(1.0 - ((y - pred) ** 2).sum() / ((y - y.mean(axis=0)) ** 2).sum())
