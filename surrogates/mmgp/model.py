"""MMGP (Casenave, Staber, Roynard): morph every mesh onto the unit disk, transfer coordinates and
fields onto one common support, compress them with POD in the support's mass-matrix product, and
regress the field coefficients and output scalars on [geometry coefficients, scalar inputs] with
independent GPs (surrogates.gp: one optimizer state per output).

The chain after the GP (decompression, back-transfer) is linear and the GP outputs are
independent given the inputs, so a nodal value's GP part is exactly Gaussian with variance
sum_k (T V_k)^2 var(c_k) (plus the learned noise), to which the model adds the variance of what
the chain itself cannot represent: the transfer + POD truncation error of the training fields
(their round trip onto the support, the modes and back onto their own mesh), a per-node variance
on the support. Pooled over nodes and shapes, the standardized errors are a scale mixture, not a
Gaussian, so intervals, quantiles and draws use per output the empirical distribution of the
standardized leave-one-out residuals of the training set pushed through the same chain
(surrogates.gp quantile recalibration). Draws take fresh coefficients for every draw and every
shape (and independent nodal noise of the floor variance for the truncation part), then map each
standardized nodal value to the calibrated distribution (a Gaussian copula).

Out-of-range score: two conformal p-values against the training set, Bonferroni-combined: the GP
novelty (surrogates.gp.GP.novelty, leave-one-out at the training inputs) and the geometry
residual (the part of a shape's transferred coordinates outside the geometry modes), referred to
the leave-one-out residuals of the training shapes (each against the modes of the others: the
in-sample residuals of modes fitted to those very shapes are too small). A shape is flagged when
p < out_of_range_level: an in-family shape is flagged with probability at most that level.

Mesh-size check: a query mesh whose size (median edge length) lies outside the training range by
more than the factor RESOLUTION_TOLERANCE is flagged (`mesh_outside`): the fields interpolate
across sizes, but outputs that are pointwise extrema over the mesh (max von Mises) resolve
differently and are extrapolated.

Physics-informed load scaling (`load_inputs`): when every output is positively homogeneous in some
inputs (linear elasticity: displacements and stresses of degree 1 in the load amplitudes, compliance
of degree 2), the model regresses per-unit-load outputs y / r^d, r = ||loads||, on the load
direction loads / r instead of the loads, and multiplies back."""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import xarray as xr

from rom.hifi.discretization import fem
from rom.hifi.discretization.mesh import TriMesh
from rom.reduction.pod import pod
from surrogates.gp import (
    CALIBRATION_GRID,
    GP,
    calibrated_normal,
    calibrated_quantile,
    conformal_p_value,
    interval_factors,
)

from .geometry import MeshSample, check_mesh, check_values, median_edge_length
from .morphing import METHODS, morph
from .transfer import p1_transfer

# In-family meshes made at one target size spread by a few percent in median edge length
# (tensile plates: 5%); a quarter beyond the training range is another target size.
RESOLUTION_TOLERANCE = 1.25


def mass_matrix(nodes: np.ndarray, triangles: np.ndarray) -> sp.csr_matrix:
    mesh = TriMesh(nodes, triangles, np.zeros(len(nodes), dtype=bool))
    pattern = fem.Pattern.build(mesh)
    return pattern.to_scipy(pattern.assemble(fem.mass_local(mesh)))


def loo_residuals(X: np.ndarray, M: sp.spmatrix, n_modes: int) -> np.ndarray:
    """(n,) the M-norm of the part of each row x_i of X outside the mean and the first `n_modes`
    POD modes of the other rows (leave-one-out), from the Gram matrix G = X M X^T alone. With the
    other rows centered on their mean m (Gram C = H G H, eigenpairs (lam_k, u_k)) and y = x_i - m,
    b_j = <x_j - m, y>: r_i^2 = ||y||^2 - sum_k (u_k . b)^2 / lam_k."""
    n = len(X)
    A = X - X.mean(axis=0)
    G = A @ (M @ A.T)
    G = 0.5 * (G + G.T)
    j = np.arange(n - 1)
    others = j[None, :] + (j[None, :] >= np.arange(n)[:, None])  # row i: every index but i
    k = min(n_modes, n - 2)  # n - 1 centered rows span n - 2 dimensions
    r2 = np.empty(n)
    for held in np.array_split(np.arange(n), max(1, n**3 // 2**22)):  # blocks of ~2^22 entries bound the memory
        K = others[held]
        C = G[K[:, :, None], K[:, None, :]]  # <x_j, x_l> over the others
        g = G[K, held[:, None]]  # <x_j, x_i>
        row = C.mean(axis=2)  # <x_j, m>
        mm = row.mean(axis=1)  # <m, m>
        C = C - row[:, :, None] - row[:, None, :] + mm[:, None, None]
        b = g - row - g.mean(axis=1, keepdims=True) + mm[:, None]
        lam, U = np.linalg.eigh(C)
        lam, U = lam[:, ::-1][:, :k], U[:, :, ::-1][:, :, :k]
        resolved = lam > lam[:, :1] * 1e-15 * n  # pod's rank cut
        z2 = np.divide(np.einsum("hjk,hj->hk", U, b) ** 2, lam, out=np.zeros_like(lam), where=resolved)
        r2[held] = G[held, held] - 2 * g.mean(axis=1) + mm - z2.sum(axis=1)
    return np.sqrt(np.maximum(r2, 0.0))


class MMGP:
    """fit(samples, inputs, scalars) then predict(samples, inputs).

    samples: MeshSample list (nodes, triangles, nodal fields named in `fields`); inputs (n, p) the
    scalar inputs named `input_names`, scalars (n, s) the output scalars named `scalar_names`;
    units: name -> unit of the outputs (carried into the artefacts)."""

    def __init__(self, fields: list[str], scalar_names: list[str], input_names: list[str], morphing="mean_value",
                 geometry_modes=16, field_modes=12, support=0, start_point=(0.0, 0.0), restarts=4, iterations=300,
                 seed=0, load_inputs=(), degrees=None, floor_variance=True, units=None, gtol=1e-5,
                 out_of_range_level=0.02, calibration="cv", folds=4):
        if calibration not in ("cv", "loo"):
            raise ValueError(f"calibration = {calibration!r}: expected 'cv' or 'loo'")
        self.calibration, self.folds, self.seed = calibration, int(folds), int(seed)
        if morphing not in METHODS:
            raise ValueError(f"morphing = {morphing!r}: expected one of {list(METHODS)}")
        self.fields, self.scalar_names, self.input_names = list(fields), list(scalar_names), list(input_names)
        unknown = [n for n in load_inputs if n not in self.input_names]
        if unknown:
            raise ValueError(f"load_inputs: {unknown[0]!r} is not an input; expected some of {self.input_names}")
        self.load_inputs = [self.input_names.index(n) for n in load_inputs]
        # Homogeneity degree of each output in the loads (1 unless given).
        self.degrees = {o: float((degrees or {}).get(o, 1.0)) for o in self.fields + self.scalar_names}
        self.units = {o: str((units or {}).get(o, "")) for o in self.fields + self.scalar_names}
        self.floor_variance = bool(floor_variance)
        self.morphing, self.geometry_modes, self.field_modes = morphing, int(geometry_modes), int(field_modes)
        self.support, self.start_point = int(support), tuple(start_point)
        self.out_of_range_level = float(out_of_range_level)
        self.gp = GP(restarts, iterations, seed, gtol=gtol)
        self.timings: dict[str, float] = {}

    # -- checks and transfer onto the common support ----------------------------------------------
    def _check(self, samples, inputs, names, what: str, fields=()):
        """Every refusal before any work: meshes, fields, inputs, loads."""
        if len(samples) != len(inputs):
            raise ValueError(f"MMGP.{what}: {len(samples)} samples and {len(inputs)} input rows; expected as many")
        if inputs.shape[1] != len(self.input_names):
            raise ValueError(f"MMGP.{what}: {inputs.shape[1]} inputs per sample; expected {len(self.input_names)} "
                             f"({', '.join(self.input_names)})")
        for s, name in zip(samples, names):
            check_mesh(s.nodes, s.triangles, name)
            for f in fields:
                if f not in s.fields:
                    raise ValueError(f"{name}: no field {f!r}; expected the fields {self.fields}")
                if len(s.fields[f]) != len(s.nodes):
                    raise ValueError(f"{name}: field {f!r} has {len(s.fields[f])} values; expected one per node ({len(s.nodes)})")
                bad = np.flatnonzero(~np.isfinite(s.fields[f]))
                if len(bad):
                    raise ValueError(f"{name}: field {f!r} is not finite at {len(bad)} nodes (first: node {bad[0]}); "
                                     "expected finite training fields")
        check_values(inputs, "input", names, self.input_names)
        self._load_magnitude(inputs, names)

    def _to_support(self, s: MeshSample, name: str):
        m = morph(self.morphing, s.nodes, s.triangles, self.start_point)
        if self.morphing != "none":  # a fold (possible with rbf) is refused, naming the sample
            check_mesh(m, s.triangles, f"{name} (morphed with {self.morphing})")
        return m, p1_transfer(m, s.triangles, self.support_nodes)

    def _morph_all(self, samples, names):
        if not samples:
            return [], []
        morphed, T = zip(*[self._to_support(s, n) for s, n in zip(samples, names)])
        return list(morphed), list(T)

    def _coordinates(self, T, samples) -> np.ndarray:
        return np.stack([(Ti @ s.nodes).T.ravel() for Ti, s in zip(T, samples)])  # (n, 2 n_s): x block, y block

    def fit(self, samples: list[MeshSample], inputs: np.ndarray, scalars: np.ndarray, names=None) -> MMGP:
        t0 = time.perf_counter()
        names = list(names or [f"train sample {i}" for i in range(len(samples))])
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        scalars = np.asarray(scalars, dtype=float).reshape(len(samples), len(self.scalar_names))
        if len(samples) < 4:
            raise ValueError(f"MMGP.fit: {len(samples)} training samples; expected at least 4")
        if not 0 <= self.support < len(samples):
            raise ValueError(f"MMGP.fit: support = {self.support}; expected a training sample index below {len(samples)}")
        self._check(samples, inputs, names, "fit", self.fields)
        check_values(scalars, "output scalar", names, self.scalar_names)
        ref = samples[self.support]
        self.support_nodes = morph(self.morphing, ref.nodes, ref.triangles, self.start_point)
        self.support_triangles = ref.triangles
        self.M = mass_matrix(self.support_nodes, self.support_triangles)
        self.M2 = sp.block_diag([self.M, self.M]).tocsr()
        morphed, T = self._morph_all(samples, names)
        r = self._load_magnitude(inputs, names)
        X = self._coordinates(T, samples)
        # Per-unit-load fields (r = 1 without load scaling), transferred onto the support.
        own = {f: [s.fields[f] / ri ** self.degrees[f] for s, ri in zip(samples, r)] for f in self.fields}
        F = {f: np.stack([Ti @ u for Ti, u in zip(T, own[f])]) for f in self.fields}
        self.timings["morph_transfer_s"] = time.perf_counter() - t0
        back = [p1_transfer(self.support_nodes, self.support_triangles, m) for m in morphed]  # support -> own nodes
        # Geometry and field PODs of the whole training set; with `floor_variance`, the round trip of every
        # training field (support, modes, back onto its own mesh): the squared residuals, moved onto the
        # support, summed over the training set and divided by the degrees of freedom left, n - k - 1
        # (mean and k modes: the modes were fitted to these very fields), as for a regression residual variance.
        self.x_mean, self.x_modes, reduced = self._reduce(X, F, T, back, own, np.arange(len(samples)))
        self.f_mean, self.f_modes, self.f_floor = {}, {}, {}
        coef = []
        for f in self.fields:
            self.f_mean[f], self.f_modes[f], c, self.f_floor[f] = reduced[f]
            coef.append(c)
        Z = self._geometry_coefficients(X)
        # The reference of a new shape's residual: each training shape's residual against the modes
        # of the others (in-sample residuals of modes fitted to those very shapes are too small).
        self.train_geometry_residual = loo_residuals(X, self.M2, len(self.x_modes))
        self.train_mesh_size = np.array([median_edge_length(s.nodes, s.triangles) for s in samples])
        Y = np.column_stack(coef + [scalars / r[:, None] ** self._scalar_degrees])
        t1 = time.perf_counter()
        self.gp.fit(self._gp_inputs(Z, inputs, r), Y, self.output_names)
        self.train_novelty = self.gp.loo_novelty()
        if self.calibration == "cv" and len(samples) >= 2 * self.folds:
            self.interval_factors = self._cv_interval_factors(X, F, T, back, own, inputs, r, Y)
        else:
            self.interval_factors = self._loo_interval_factors(back, own)
        self.timings["gp_fit_s"] = time.perf_counter() - t1
        self.timings["fit_s"] = time.perf_counter() - t0
        return self

    def _reduce(self, X, F, T, back, own, keep):
        """Geometry and field PODs and floor variances of the samples `keep` (the fit's own steps)."""
        xm = X[keep].mean(axis=0)
        xV = pod(X[keep] - xm, self.M2, 1e-14, self.geometry_modes)[0]
        fields = {}
        for f in self.fields:
            fm = F[f][keep].mean(axis=0)
            V = pod(F[f][keep] - fm, self.M, 1e-14, self.field_modes)[0]
            c = (F[f] - fm) @ (self.M @ V.T)
            floor = np.zeros(len(self.support_nodes))
            if self.floor_variance:
                dof = max(len(keep) - len(V) - 1, 1)
                floor = sum(T[i] @ (own[f][i] - back[i] @ (fm + c[i] @ V)) ** 2 for i in keep) / dof
            fields[f] = (fm, V, c, floor)
        return xm, xV, fields

    def _cv_interval_factors(self, X, F, T, back, own, inputs, r, Y) -> dict[str, np.ndarray]:
        """Per output, the calibrated half-width factors of the standardized errors of K-fold
        cross-validation of the whole chain: POD of the geometry and fields of the other folds,
        GPs on their coefficients (one restart, warm-started from the full fit), prediction of the
        held-out shapes through the same support and back onto their own meshes. Leave-one-out
        residuals of the GPs alone are blind to the POD's shrinkage of the training coefficients
        on the higher modes (the modes are fitted to those very shapes), which makes the intervals
        of 120-shape families too narrow."""
        n = len(X)
        order = np.random.default_rng(self.seed).permutation(n)
        res = {o: [] for o in self.fields + self.scalar_names}
        sd = {o: [] for o in self.fields + self.scalar_names}
        n_c = self.n_field_coefficients
        for held in np.array_split(order, self.folds):  # K refits
            keep = np.setdiff1d(order, held)
            xm, xV, fields = self._reduce(X, F, T, back, own, keep)
            Z = (X - xm) @ (self.M2 @ xV.T)
            Yf = np.column_stack([fields[f][2] for f in self.fields] + [Y[:, sum(n_c):]])
            same = Yf.shape[1] == Y.shape[1] and len(xV) == len(self.x_modes)
            gp = GP(1, self.gp.iterations, self.seed, gtol=self.gp.gtol)
            gp.fit(self._gp_inputs(Z[keep], inputs[keep], r[keep]), Yf[keep], start=self.gp.theta.cpu().numpy() if same else None)
            mean, var = gp.predict(self._gp_inputs(Z[held], inputs[held], r[held]))
            sizes = np.cumsum([0] + [len(fields[f][1]) for f in self.fields])
            for j, f in enumerate(self.fields):
                fm, V, _, floor = fields[f]
                for row, i in enumerate(held):
                    B = back[i]
                    c, v = mean[row, sizes[j]:sizes[j + 1]], var[row, sizes[j]:sizes[j + 1]]
                    res[f].append(own[f][i] - B @ (fm + c @ V))
                    sd[f].append(np.sqrt((B @ V.T) ** 2 @ v + B @ floor))
            for k, name in enumerate(self.scalar_names):
                res[name].append(Y[held, sum(n_c) + k] - mean[:, sizes[-1] + k])
                sd[name].append(np.sqrt(var[:, sizes[-1] + k]))
        out = {}
        for o in res:
            e, s = np.concatenate(res[o]), np.concatenate(sd[o])
            random = (s > 0) | (e != 0)  # exactly predicted Dirichlet values say nothing
            out[o] = interval_factors(np.divide(e[random], s[random], out=np.full(int(random.sum()), np.inf),
                                                where=s[random] > 0))
        return out

    def _loo_interval_factors(self, back, own) -> dict[str, np.ndarray]:
        """Per output, the calibrated half-width factors (surrogates.gp.interval_factors) of the
        standardized leave-one-out residuals: for a field, of every training node's value against
        its prediction from the GP's leave-one-out coefficients through the same chain (own mesh,
        floor variance included); for a scalar, of the GP's leave-one-out residuals."""
        c_loo, v_loo = self.gp.loo()
        sizes = np.cumsum([0] + self.n_field_coefficients)
        out = {}
        for j, f in enumerate(self.fields):
            sl, V = slice(sizes[j], sizes[j + 1]), self.f_modes[f]
            res = np.concatenate([u - B @ (self.f_mean[f] + c @ V) for B, u, c in zip(back, own[f], c_loo[:, sl])])
            sd = np.sqrt(np.concatenate([(B @ V.T) ** 2 @ v + B @ self.f_floor[f] for B, v in zip(back, v_loo[:, sl])]))
            # Nodes without variance (Dirichlet values, predicted exactly) say nothing about the
            # intervals: left out.
            random = (sd > 0) | (res != 0)
            z = np.divide(res[random], sd[random], out=np.full(int(random.sum()), np.inf), where=sd[random] > 0)
            out[f] = interval_factors(z)
        z = self.gp.loo_z()
        for k, name in enumerate(self.scalar_names):
            out[name] = interval_factors(z[:, sizes[-1] + k])
        return out

    @property
    def output_names(self) -> list[str]:
        """The GP's outputs: every field's POD coefficients, then the scalars."""
        return [f"{f} POD coefficient {k}" for f in self.fields for k in range(len(self.f_modes[f]))] + self.scalar_names

    @property
    def _scalar_degrees(self) -> np.ndarray:
        return np.array([self.degrees[o] for o in self.scalar_names])

    def _load_magnitude(self, inputs: np.ndarray, names) -> np.ndarray:
        if not self.load_inputs:
            return np.ones(len(inputs))
        r = np.linalg.norm(inputs[:, self.load_inputs], axis=1)
        if np.any(r <= 0):
            raise ValueError(f"{names[int(np.argmin(r))]}: zero load "
                             f"({', '.join(self.input_names[j] for j in self.load_inputs)}); expected a nonzero load "
                             "(load scaling divides by it)")
        return r

    def _gp_inputs(self, Z: np.ndarray, inputs: np.ndarray, r: np.ndarray) -> np.ndarray:
        """[geometry coefficients, inputs], the load inputs replaced by the load direction."""
        inputs = np.array(inputs, dtype=float)
        inputs[:, self.load_inputs] /= r[:, None]
        return np.column_stack([Z, inputs])

    def _geometry_coefficients(self, X: np.ndarray) -> np.ndarray:
        return (X - self.x_mean) @ (self.M2 @ self.x_modes.T)

    def _geometry_residual(self, X: np.ndarray, Z: np.ndarray) -> np.ndarray:
        R = X - self.x_mean - Z @ self.x_modes
        return np.sqrt(np.maximum(np.einsum("ij,ij->i", R, (self.M2 @ R.T).T), 0.0))

    @property
    def n_field_coefficients(self) -> list[int]:
        return [len(self.f_modes[f]) for f in self.fields]

    @property
    def mesh_dependent_outputs(self) -> list[str]:
        """The scalars named as pointwise extrema over the mesh (max_..., min_...): they change with
        the mesh size, where the nodal fields converge."""
        return [o for o in self.scalar_names if o.startswith(("max", "min"))]

    def mesh_size_ratio(self, samples: list[MeshSample]) -> np.ndarray:
        """(n,) each mesh's size over the nearest end of the training range of sizes (1 inside it,
        below 1 finer, above 1 coarser)."""
        h = np.array([median_edge_length(s.nodes, s.triangles) for s in samples])
        return h / np.clip(h, self.train_mesh_size.min(), self.train_mesh_size.max())

    def out_of_range_p_value(self, G: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """Bonferroni combination of the conformal p-values of the GP novelty and of the geometry residual."""
        p_gp = conformal_p_value(self.train_novelty, self.gp.novelty(G))
        p_geo = conformal_p_value(self.train_geometry_residual, residual)
        return np.minimum(2.0 * np.minimum(p_gp, p_geo), 1.0)

    def predict(self, samples: list[MeshSample], inputs: np.ndarray, names=None, quantiles=(), draws: int = 0,
                seed: int = 0) -> dict:
        """Per sample: fields mean / variance on its own mesh; scalars (n, s) mean / variance;
        `outside` (n, n_gp_inputs) training-box flags, `out_of_range_p` (n,) and `out_of_range` (n,),
        `mesh_size_ratio` (n,) and `mesh_outside` (n,) (mesh size beyond RESOLUTION_TOLERANCE).
        With `quantiles` (levels in (0, 1)): fields_quantiles (per sample, field: (n_q, n_i)) and
        scalars_quantiles (n, n_q, s); with `draws` > 0: fields_draws (per sample, field:
        (draws, n_i)) and scalars_draws (n, draws, s), every draw and shape with fresh coefficients."""
        t0 = time.perf_counter()
        names = list(names or [f"sample {i}" for i in range(len(samples))])
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        quantiles = np.asarray(quantiles, dtype=float).ravel()
        if np.any((quantiles <= 0) | (quantiles >= 1)):
            raise ValueError(f"quantiles {quantiles.tolist()}: expected levels strictly between 0 and 1")
        self._check(samples, inputs, names, "predict")
        morphed, T = self._morph_all(samples, names)
        X = self._coordinates(T, samples)
        r = self._load_magnitude(inputs, names)
        Z = self._geometry_coefficients(X)
        G = self._gp_inputs(Z, inputs, r)
        mean, var = self.gp.predict(G)
        p = self.out_of_range_p_value(G, self._geometry_residual(X, Z))
        size = self.mesh_size_ratio(samples)
        out = {"fields_mean": [], "fields_var": [], "outside": self.gp.outside(G), "out_of_range_p": p,
               "out_of_range": p < self.out_of_range_level, "geometry_coefficients": Z, "mesh_size_ratio": size,
               "mesh_outside": (size > RESOLUTION_TOLERANCE) | (size < 1 / RESOLUTION_TOLERANCE)}
        rng = np.random.default_rng(seed)
        if len(quantiles):
            out["fields_quantiles"] = []
        if draws:
            out["fields_draws"] = []
        sizes = np.cumsum([0] + self.n_field_coefficients)
        for i, m in enumerate(morphed):  # one back-transfer matrix per shape
            back = p1_transfer(self.support_nodes, self.support_triangles, m)  # support -> own nodes
            fm, fv, fq, fd = {}, {}, {}, {}
            for j, f in enumerate(self.fields):
                W = back @ self.f_modes[f].T  # (n_i, k): the linear map from coefficients to nodal values
                c, v = mean[i, sizes[j]:sizes[j + 1]], var[i, sizes[j]:sizes[j + 1]]
                scale = r[i] ** self.degrees[f]
                floor = back @ self.f_floor[f]
                fm[f] = scale * (back @ self.f_mean[f] + W @ c)
                fv[f] = scale**2 * ((W**2) @ v + floor)
                if len(quantiles):
                    fq[f] = fm[f] + calibrated_quantile(self.interval_factors[f], quantiles)[:, None] * np.sqrt(fv[f])
                if draws:  # fresh coefficients per draw; standardized by the chain's std, then calibrated
                    dev = np.sqrt(v) * rng.standard_normal((draws, len(c))) @ W.T
                    dev = dev + np.sqrt(floor) * rng.standard_normal((draws, len(floor)))
                    sd = np.sqrt((W**2) @ v + floor)  # zero at nodes without variance (Dirichlet values)
                    xi = np.divide(dev, sd, out=np.zeros_like(dev), where=sd > 0)
                    fd[f] = fm[f] + scale * sd * calibrated_normal(self.interval_factors[f], xi)
            out["fields_mean"].append(fm)
            out["fields_var"].append(fv)
            if len(quantiles):
                out["fields_quantiles"].append(fq)
            if draws:
                out["fields_draws"].append(fd)
        scale = r[:, None] ** self._scalar_degrees
        sm, sv = scale * mean[:, sizes[-1]:], scale**2 * var[:, sizes[-1]:]
        out["scalars_mean"], out["scalars_var"] = sm, sv
        fac = [self.interval_factors[k] for k in self.scalar_names]
        if len(quantiles):
            zq = np.stack([calibrated_quantile(a, quantiles) for a in fac], axis=-1) if fac else np.zeros((len(quantiles), 0))
            out["scalars_quantiles"] = sm[:, None, :] + zq[None] * np.sqrt(sv)[:, None, :]
        if draws:
            xi = rng.standard_normal((len(sm), draws, sm.shape[1]))
            z = np.stack([calibrated_normal(a, xi[..., k]) for k, a in enumerate(fac)], axis=-1) if fac else xi
            out["scalars_draws"] = sm[:, None, :] + np.sqrt(sv)[:, None, :] * z
        out["interval_factors"] = self.interval_factors
        self.timings["predict_s"] = time.perf_counter() - t0
        return out

    # -- artefact -------------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        ds = self.gp.to_dataset("gp")
        ds = ds.assign_coords(gp_output=np.array(self.output_names, dtype=object))
        ds["support_nodes"] = (("support_node", "xy"), self.support_nodes)
        ds["support_triangles"] = (("support_triangle", "vertex"), self.support_triangles)
        ds["x_mean"] = ("support_coordinate", self.x_mean)
        ds["x_modes"] = (("geometry_mode", "support_coordinate"), self.x_modes)
        ds["train_geometry_residual"] = ("gp_sample", self.train_geometry_residual)
        ds["train_novelty"] = ("gp_sample", self.train_novelty)
        ds["train_mesh_size"] = ("gp_sample", self.train_mesh_size, {"long_name": "median edge length"})
        for f in self.fields:
            ds[f"{f}_mean"] = ("support_node", self.f_mean[f], {"units": self.units[f]})
            ds[f"{f}_modes"] = ((f"{f}_mode", "support_node"), self.f_modes[f])
            ds[f"{f}_floor_variance"] = ("support_node", self.f_floor[f])
        ds["degree"] = ("output", [self.degrees[o] for o in self.fields + self.scalar_names])
        outputs = self.fields + self.scalar_names
        ds["interval_factor"] = (("output", "calibration_level"), np.stack([self.interval_factors[o] for o in outputs]),
                                 {"long_name": "calibrated half-width of the central interval, in predicted standard deviations"})
        ds = ds.assign_coords(calibration_level=CALIBRATION_GRID)
        ds["units"] = ("output", np.array([self.units[o] for o in self.fields + self.scalar_names], dtype=object))
        ds.attrs.update(load_inputs=",".join(self.input_names[j] for j in self.load_inputs),
                        floor_variance=int(self.floor_variance), fields=",".join(self.fields),
                        scalar_names=",".join(self.scalar_names),
                        input_names=",".join(self.input_names), morphing=self.morphing, geometry_modes=self.geometry_modes,
                        field_modes=self.field_modes, start_point=list(self.start_point), support=self.support,
                        out_of_range_level=self.out_of_range_level, n_converged=int(self.gp.converged.sum()),
                        calibration=self.calibration, folds=self.folds, seed=self.seed,
                        **{f"timing_{k}": v for k, v in self.timings.items()})
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> MMGP:
        split = lambda key: [s for s in str(ds.attrs[key]).split(",") if s]  # noqa: E731
        outputs = split("fields") + split("scalar_names")
        self = cls(split("fields"), split("scalar_names"), split("input_names"), ds.attrs["morphing"],
                   int(ds.attrs["geometry_modes"]), int(ds.attrs["field_modes"]), support=int(ds.attrs["support"]),
                   start_point=tuple(np.atleast_1d(ds.attrs["start_point"])), load_inputs=split("load_inputs"),
                   floor_variance=bool(ds.attrs["floor_variance"]), degrees=dict(zip(outputs, ds["degree"].values.tolist())),
                   units=dict(zip(outputs, [str(u) for u in ds["units"].values])),
                   out_of_range_level=float(ds.attrs["out_of_range_level"]), calibration=str(ds.attrs["calibration"]),
                   folds=int(ds.attrs["folds"]), seed=int(ds.attrs["seed"]))
        self.gp = GP.from_dataset(ds, "gp")
        self.support_nodes, self.support_triangles = ds["support_nodes"].values, ds["support_triangles"].values
        self.M = mass_matrix(self.support_nodes, self.support_triangles)
        self.M2 = sp.block_diag([self.M, self.M]).tocsr()
        self.x_mean, self.x_modes = ds["x_mean"].values, ds["x_modes"].values
        self.f_mean = {f: ds[f"{f}_mean"].values for f in self.fields}
        self.f_modes = {f: ds[f"{f}_modes"].values for f in self.fields}
        self.f_floor = {f: ds[f"{f}_floor_variance"].values for f in self.fields}
        self.train_geometry_residual, self.train_novelty = ds["train_geometry_residual"].values, ds["train_novelty"].values
        self.train_mesh_size = ds["train_mesh_size"].values
        self.interval_factors = dict(zip(outputs, ds["interval_factor"].values))
        return self
