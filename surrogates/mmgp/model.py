"""MMGP: morph every mesh onto the unit disk, transfer coordinates and fields onto one common
support, compress them with POD in the support's mass-matrix product, and regress the field
coefficients and output scalars on [geometry coefficients, scalar inputs] with a batched GP.

The chain after the GP (decompression, back-transfer) is linear, and the batched GP's outputs are
independent given the inputs, so the variance of a predicted nodal value is exactly
sum_k (T V_k)^2 var(c_k) (plus the learned noise), to which the model adds the variance of what the
chain itself cannot represent: the transfer + POD truncation error of the training fields (their
round trip onto the support, the modes and back onto their own mesh), a per-node variance on the
support.

Physics-informed load scaling (`load_inputs`): when every output is positively homogeneous in some
inputs (linear elasticity: displacements and stresses of degree 1 in the load amplitudes, compliance
of degree 2), the model regresses per-unit-load outputs y / r^d, r = ||loads||, on the load
direction loads / r instead of the loads, and multiplies back: the GP no longer has to learn the
(exact) scaling with the load magnitude, nor products such as nu * pressure."""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import xarray as xr

from rom.hifi import fem
from rom.hifi.mesh import TriMesh
from rom.reduction.pod import pod
from surrogates.gp import GP

from .geometry import MeshSample, check_mesh
from .morphing import morph
from .transfer import p1_transfer


def mass_matrix(nodes: np.ndarray, triangles: np.ndarray) -> sp.csr_matrix:
    mesh = TriMesh(nodes, triangles, np.zeros(len(nodes), dtype=bool))
    pattern = fem.Pattern.build(mesh)
    return pattern.to_scipy(pattern.assemble(fem.mass_local(mesh)))


class MMGP:
    """fit(samples, inputs, scalars) then predict(samples, inputs).

    samples: MeshSample list (nodes, triangles, nodal fields named in `fields`);
    inputs (n, p) the scalar inputs, scalars (n, s) the output scalars."""

    def __init__(self, fields: list[str], scalar_names: list[str], input_names: list[str], morphing="tutte",
                 geometry_modes=8, field_modes=8, support=0, start_point=(0.0, 0.0), restarts=2, iterations=50,
                 seed=0, load_inputs=(), degrees=None, floor_variance=True):
        self.fields, self.scalar_names, self.input_names = list(fields), list(scalar_names), list(input_names)
        unknown = [n for n in load_inputs if n not in self.input_names]
        if unknown:
            raise ValueError(f"load_inputs: {unknown[0]!r} is not an input; expected some of {self.input_names}")
        self.load_inputs = [self.input_names.index(n) for n in load_inputs]
        # Homogeneity degree of each output in the loads (1 unless given).
        self.degrees = {o: float((degrees or {}).get(o, 1.0)) for o in self.fields + self.scalar_names}
        self.floor_variance = bool(floor_variance)
        self.morphing, self.geometry_modes, self.field_modes = morphing, int(geometry_modes), int(field_modes)
        self.support, self.start_point = int(support), tuple(start_point)
        self.gp = GP(restarts, iterations, seed)
        self.timings: dict[str, float] = {}

    # -- transfer onto the common support -------------------------------------------------------
    def _to_support(self, s: MeshSample, name: str):
        check_mesh(s.nodes, s.triangles, name)
        m = morph(self.morphing, s.nodes, s.triangles, self.start_point)
        if self.morphing != "none":
            check_mesh(m, s.triangles, f"{name} (morphed with {self.morphing})")
        return m, p1_transfer(m, s.triangles, self.support_nodes)

    def fit(self, samples: list[MeshSample], inputs: np.ndarray, scalars: np.ndarray, names=None) -> "MMGP":
        t0 = time.perf_counter()
        names = names or [f"train sample {i}" for i in range(len(samples))]
        ref = samples[self.support]
        check_mesh(ref.nodes, ref.triangles, names[self.support])
        self.support_nodes = morph(self.morphing, ref.nodes, ref.triangles, self.start_point)
        self.support_triangles = ref.triangles
        self.M = mass_matrix(self.support_nodes, self.support_triangles)
        morphed, T = zip(*[self._to_support(s, n) for s, n in zip(samples, names)])
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        r = self._load_magnitude(inputs)
        X = np.stack([(Ti @ s.nodes).T.ravel() for Ti, s in zip(T, samples)])  # (n, 2 n_s): x block, y block
        # Per-unit-load fields (r = 1 without load scaling), transferred onto the support.
        own = {f: [s.fields[f] / ri ** self.degrees[f] for s, ri in zip(samples, r)] for f in self.fields}
        F = {f: np.stack([Ti @ u for Ti, u in zip(T, own[f])]) for f in self.fields}
        self.timings["morph_transfer_s"] = time.perf_counter() - t0
        M2 = sp.block_diag([self.M, self.M]).tocsr()
        self.x_mean, self.x_modes = X.mean(axis=0), pod(X - X.mean(axis=0), M2, 1e-14, self.geometry_modes)[0]
        self.M2 = M2
        self.f_mean, self.f_modes, self.f_floor = {}, {}, {}
        coef = []
        back = [p1_transfer(self.support_nodes, self.support_triangles, m) for m in morphed] if self.floor_variance else []
        for f in self.fields:
            self.f_mean[f] = F[f].mean(axis=0)
            self.f_modes[f] = pod(F[f] - self.f_mean[f], self.M, 1e-14, self.field_modes)[0]
            c = (F[f] - self.f_mean[f]) @ (self.M @ self.f_modes[f].T)
            coef.append(c)
            self.f_floor[f] = np.zeros(len(self.support_nodes))
            if self.floor_variance:
                # Round trip of every training field: support, modes, back onto its own mesh; the squared
                # residuals, moved onto the support, summed over the training set. The modes were fitted
                # to these very fields, so the in-sample residual is divided by the degrees of freedom
                # left, n - k - 1 (mean and k modes), as for a regression residual variance.
                rec = self.f_mean[f] + c @ self.f_modes[f]
                dof = max(len(samples) - len(self.f_modes[f]) - 1, 1)
                self.f_floor[f] = sum(Ti @ (u - Bi @ ri) ** 2 for Ti, Bi, u, ri in zip(T, back, own[f], rec)) / dof
        Z = self._geometry_coefficients(X)
        scalars = np.asarray(scalars, dtype=float) / r[:, None] ** self._scalar_degrees
        Y = np.column_stack(coef + [scalars])
        t1 = time.perf_counter()
        self.gp.fit(self._gp_inputs(Z, inputs, r), Y)
        self.timings["gp_fit_s"] = time.perf_counter() - t1
        self.timings["fit_s"] = time.perf_counter() - t0
        return self

    @property
    def _scalar_degrees(self) -> np.ndarray:
        return np.array([self.degrees[o] for o in self.scalar_names])

    def _load_magnitude(self, inputs: np.ndarray) -> np.ndarray:
        if not self.load_inputs:
            return np.ones(len(inputs))
        r = np.linalg.norm(inputs[:, self.load_inputs], axis=1)
        if np.any(r <= 0):
            raise ValueError(f"load scaling: sample {int(np.argmin(r))} has zero load "
                             f"({', '.join(self.input_names[j] for j in self.load_inputs)}); expected a nonzero load")
        return r

    def _gp_inputs(self, Z: np.ndarray, inputs: np.ndarray, r: np.ndarray) -> np.ndarray:
        """[geometry coefficients, inputs], the load inputs replaced by the load direction."""
        inputs = np.array(inputs, dtype=float)
        inputs[:, self.load_inputs] /= r[:, None]
        return np.column_stack([Z, inputs])

    def _geometry_coefficients(self, X: np.ndarray) -> np.ndarray:
        return (X - self.x_mean) @ (self.M2 @ self.x_modes.T)

    @property
    def n_field_coefficients(self) -> list[int]:
        return [len(self.f_modes[f]) for f in self.fields]

    def predict(self, samples: list[MeshSample], inputs: np.ndarray, names=None) -> dict:
        """Per sample: fields mean / variance on its own mesh; scalars (n, s) mean / variance;
        `outside` (n, n_gp_inputs) extrapolation flags."""
        t0 = time.perf_counter()
        names = names or [f"sample {i}" for i in range(len(samples))]
        morphed, T = zip(*[self._to_support(s, n) for s, n in zip(samples, names)]) if samples else ((), ())
        X = np.stack([(Ti @ s.nodes).T.ravel() for Ti, s in zip(T, samples)])
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        r = self._load_magnitude(inputs)
        G = self._gp_inputs(self._geometry_coefficients(X), inputs, r)
        mean, var = self.gp.predict(G)
        out = {"fields_mean": [], "fields_var": [], "outside": self.gp.outside(G)}
        sizes = np.cumsum([0] + self.n_field_coefficients)
        for i, (s, m) in enumerate(zip(samples, morphed)):
            back = p1_transfer(self.support_nodes, self.support_triangles, m)  # support -> own nodes
            fm, fv = {}, {}
            for j, f in enumerate(self.fields):
                W = back @ self.f_modes[f].T  # (n_i, k): the linear map from coefficients to nodal values
                c, v = mean[i, sizes[j]:sizes[j + 1]], var[i, sizes[j]:sizes[j + 1]]
                scale = r[i] ** self.degrees[f]
                fm[f] = scale * (back @ self.f_mean[f] + W @ c)
                fv[f] = scale**2 * ((W**2) @ v + back @ self.f_floor[f])
            out["fields_mean"].append(fm)
            out["fields_var"].append(fv)
        scale = r[:, None] ** self._scalar_degrees
        out["scalars_mean"], out["scalars_var"] = scale * mean[:, sizes[-1]:], scale**2 * var[:, sizes[-1]:]
        out["geometry_coefficients"] = G[:, :len(self.x_modes)]
        self.timings["predict_s"] = time.perf_counter() - t0
        return out

    # -- artefact -------------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        ds = self.gp.to_dataset("gp")
        ds["support_nodes"] = (("support_node", "xy"), self.support_nodes)
        ds["support_triangles"] = (("support_triangle", "vertex"), self.support_triangles)
        ds["x_mean"] = ("support_coordinate", self.x_mean)
        ds["x_modes"] = (("geometry_mode", "support_coordinate"), self.x_modes)
        for f in self.fields:
            ds[f"{f}_mean"] = ("support_node", self.f_mean[f])
            ds[f"{f}_modes"] = ((f"{f}_mode", "support_node"), self.f_modes[f])
            ds[f"{f}_floor_variance"] = ("support_node", self.f_floor[f])
        ds["degree"] = ("output", [self.degrees[o] for o in self.fields + self.scalar_names])
        ds.attrs.update(load_inputs=",".join(self.input_names[j] for j in self.load_inputs),
                        floor_variance=int(self.floor_variance), fields=",".join(self.fields), scalar_names=",".join(self.scalar_names),
                        input_names=",".join(self.input_names), morphing=self.morphing,
                        start_point=list(self.start_point), support=self.support,
                        **{f"timing_{k}": v for k, v in self.timings.items()})
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> "MMGP":
        split = lambda key: [s for s in str(ds.attrs[key]).split(",") if s]  # noqa: E731
        self = cls(split("fields"), split("scalar_names"), split("input_names"), ds.attrs["morphing"],
                   support=int(ds.attrs["support"]), start_point=tuple(np.atleast_1d(ds.attrs["start_point"])),
                   load_inputs=split("load_inputs"), floor_variance=bool(ds.attrs["floor_variance"]),
                   degrees=dict(zip(split("fields") + split("scalar_names"), ds["degree"].values.tolist())))
        self.gp = GP.from_dataset(ds, "gp")
        self.support_nodes, self.support_triangles = ds["support_nodes"].values, ds["support_triangles"].values
        self.M = mass_matrix(self.support_nodes, self.support_triangles)
        self.M2 = sp.block_diag([self.M, self.M]).tocsr()
        self.x_mean, self.x_modes = ds["x_mean"].values, ds["x_modes"].values
        self.f_mean = {f: ds[f"{f}_mean"].values for f in self.fields}
        self.f_modes = {f: ds[f"{f}_modes"].values for f in self.fields}
        self.f_floor = {f: ds[f"{f}_floor_variance"].values for f in self.fields}
        return self


def rrmse_field(ref: list[np.ndarray], pred: list[np.ndarray]) -> float:
    """PLAID field RRMSE: sqrt(mean_i ||U_ref - U_pred||^2 / (N_i ||U_ref||_inf^2))."""
    return float(np.sqrt(np.mean([((r - p) ** 2).sum() / (len(r) * np.abs(r).max() ** 2) for r, p in zip(ref, pred)])))


def rrmse_scalar(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """PLAID scalar RRMSE per column: sqrt(mean_i |w_ref - w_pred|^2 / |w_ref|^2)."""
    ref, pred = np.asarray(ref), np.asarray(pred)
    return np.sqrt(np.mean((ref - pred) ** 2 / ref**2, axis=0))
