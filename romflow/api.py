"""Open a finished study's results folder and query its trained models in batches.

    import romflow

    study = romflow.open("results/thermal_block")       # reads study.yaml and lists the artefacts
    rb = study.model("rb")                              # loads rom/rb.h5 (no mesh file, no PETSc)
    p = rb.predict([[0.3, 0.5, 0.9, 0.2], [1.0, 0.1, 0.4, 0.7]])
    p.outputs["flux_bottom"], p.error["flux_bottom"], p.field_error, p.kind

A results folder is what the pipeline writes under results/<study>/ (rom.paths, workflow/rules): the
resolved study file `study.yaml` and the artefacts of the stages that ran. `Study.models` names the
trained models found there:

  rb        rom/rb.h5: the reduced basis: the affine kind with the outputs of rb.outputs and their
            primal-dual bounds; the EIM kinds (rb: the first, rb:<kind> another) with the field
            bound; the parabolic RB with its space-time bound                          openable
  pod_gp    surrogates/gp.h5: POD + Gaussian processes on the POD coefficients         openable
  mmgp      surrogates/mmgp.h5: MMGP, predict_shapes(meshes, inputs): scalars and fields with their
            predictive standard deviations on each shape's own mesh                     openable
  nn_<p>    surrogate/online_<p>.pt, surrogate/offline.pt (nn_offline): the streamed NN, fields at
            (mu, t) without an error measure (kind none); also as ONNX (surrogates.onnx_export) openable
  local     rom/local/local_bases.h5: the local POD dictionary; predict gives the cluster its online
            selector picks per query (the MLP from mu the stage trained, stored in the artefact as its
            weights and evaluated in NumPy: no scikit-learn, no retraining), no error measure (kind none),
            no fields (the stage builds no online solver)                              openable
  adaptive  rom/adaptive_rom.h5 (+ fom/operators.h5, snapshots/train.h5): the hyper-reduced nonlinear ROM
            rebuilt on the first predict by the stage's call; per query the stage's adaptive loop: its
            Gappy-POD indicator (kind indicator, not a bound), the FOM steps it took (PETSc only for the
            petsc backend, at the first enrichment), the final state                  openable

Opening reads the artefacts alone (local: its artefact, the stored selectors included; adaptive: its
artefact's presence and variables, what it evaluates with loads on the first predict). The RB's parameter functions theta(mu), phi(mu) and its coercivity
lower bound come from the problem class without its mesh (`parameter_functions`); the outputs of the
thermal block need their functional's offset, a mesh integral that rb.h5 does not store, so they build
the generated unit-square mesh in memory (no file; 10 ms at n = 48). Predictions go through the same
model classes and batched calls as the evaluation stages (rom.models.rb.ReducedBasisModel,
rom.models.output.OutputModel, surrogates.gp.predict_pod_gp): for the same batch they are bit for bit
what evaluate-rom and evaluate-gp computed, under the same BLAS and torch thread counts (the stages use
one BLAS thread and gp.threads; this module leaves both settings alone, except that local and adaptive run
their own calls under one BLAS thread, as their stages do: bit for bit what local-bases and adaptive-rom chose
and computed, tests/test_api.py).

Imports are lazy: `import romflow` loads nothing heavy; numpy/xarray/scipy (and torch for pod_gp) load
with the first model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Model", "Prediction", "Study", "open", "parameter_functions"]

# name -> artefact path in a results folder (the Snakemake layout, workflow/rules/*.smk)
ARTEFACTS = {
    "rb": "rom/rb.h5",
    "pod_gp": "surrogates/gp.h5",
    "mmgp": "surrogates/mmgp.h5",
    "local": "rom/local/local_bases.h5",
    "adaptive": "rom/adaptive_rom.h5",
}
KINDS = ("certified", "indicator", "predictive_std", "none")


# -- results ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    """What `Model.predict` returns for n parameters (a single parameter gives n = 1).

    mu            (n, d) the parameters as queried, in the order of `Model.parameters`.
    outputs       name -> (n,) scalar outputs. rb: the corrected outputs s_N = l^T u_N - z_N^T r(u_N) of
                  the study's rb.outputs; pod_gp: the predictive means of the POD coefficients
                  (pod_0, pod_1, ...: the X-inner products of u with the X-orthonormal modes).
    error         name -> (n,), the error measure of each output, what `kind` says it is.
    field_error   (n,) the error measure of the field in the X norm (the problem's energy/H1-seminorm
                  product of the free dofs). rb: Delta(mu) >= ||u(mu) - u_N(mu)||_X; pod_gp: the
                  predictive standard deviation of ||u - u_mean||_X within the POD space,
                  sqrt(sum_k var_k) (the POD truncation is not included).
    norm          (n,) ||u_pred||_X of the predicted field (X-orthonormal bases: the coefficients' 2-norm).
    kind          'certified' (rigorous bounds of the computed numbers, rounding included: the RB's
                  output and energy bounds), 'indicator' (an error estimate, not a bound),
                  'predictive_std' (a GP's calibrated standard deviation: coverage measured, not guaranteed)
                  or 'none' (a point prediction without an error measure: the streamed NN, the local bases'
                  selection). adaptive: 'indicator' (the Gappy-POD residual of the dual quantity, flux or stress, of its last ROM step).
    extrapolated  (n,) bool, queries outside the model's parameter box (only with extrapolate=True).
    coefficients  (n, N) reduced coefficients (rb: of the X-orthonormal RB; pod_gp: POD), fields=True only.
    fields        (n, n_dofs) the predicted free-dof field u_N = c V (boundary values excluded), fields=True only.
    field_std     (n, n_dofs) pod_gp: the pointwise predictive standard deviation, fields=True only.
    cluster       (n,) local: the cluster of the local-bases dictionary the online selector picks per query.
    fom_steps     (n,) adaptive: the full-order steps (each followed by an enrichment) the query's trajectory took.
    history       adaptive: name -> (n, n_times) per time step: indicator (of each ROM step, before any
                  enrichment), enriched (1 where a full-order step replaced the ROM step), basis_size.
    """

    model: str
    mu: np.ndarray
    outputs: dict
    error: dict
    field_error: np.ndarray
    norm: np.ndarray
    kind: str
    extrapolated: np.ndarray
    coefficients: np.ndarray | None = None
    fields: np.ndarray | None = None
    field_std: np.ndarray | None = field(default=None, repr=False)
    cluster: np.ndarray | None = None
    fom_steps: np.ndarray | None = None
    history: dict | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.mu)


class Model:
    """A trained model of a study. Subclasses set name, kind, parameters (names, in the order of mu)
    and bounds ((d, 2): the box the model was trained on) and implement `_predict`."""

    name: str = ""
    kind: str = ""
    parameters: list
    bounds: np.ndarray

    chunk = 4096  # rows per batched call: (chunk, N, N) reduced systems stay in cache (measured 1.5x over 65536)

    def predict(self, mu, fields: bool = False, extrapolate: bool = False, threads: int = 1) -> Prediction:
        """Predict at one parameter mu (d,) or a batch (n, d). Raises ValueError (one line) for an
        ill-shaped or non-finite mu, and for a parameter outside `bounds` unless extrapolate=True
        (then `Prediction.extrapolated` marks it, and a certified bound holds only as far as the
        coercivity lower bound does out there). Rows go through the model in chunks of `chunk`; with
        threads > 1 the chunks run on a thread pool (numpy's batched LAPACK and BLAS calls release the
        GIL). The numbers do not depend on `threads` (the same chunks); another batching of the rows agrees
        to rounding (BLAS may pick another kernel for another number of rows), within the bounds' own
        rounding allowance."""
        mu, flags = self._checked(mu, extrapolate)
        if len(mu) <= self.chunk:
            return self._predict(mu, bool(fields), flags)
        starts = range(0, len(mu), self.chunk)

        def part(i):
            return self._predict(mu[i:i + self.chunk], bool(fields), flags[i:i + self.chunk])

        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(int(threads)) as pool:
                parts = list(pool.map(part, starts))
        else:
            parts = [part(i) for i in starts]
        return _concatenated(parts)

    def _checked(self, mu, extrapolate: bool) -> tuple[np.ndarray, np.ndarray]:
        """(mu as (n, d) floats, (n,) flags of the queries outside `bounds`); the refusals of `predict`."""
        from rom.models.rb import outside  # the RB stage's own test (its 1e-12 slack at the box's faces)

        mu = checked_parameters(mu, self.parameters, self.name)
        out = outside(mu, self.bounds)
        if out.any() and not extrapolate:
            i, j = np.argwhere(out)[0]
            lo, hi = self.bounds[j]
            raise ValueError(f"{self.name}: {self.parameters[j]} = {mu[i, j]:g} (query {i}) is outside the trained range "
                             f"[{lo:g}, {hi:g}]; expected a value inside it, or predict(..., extrapolate=True)")
        return mu, out.any(axis=1)

    def _predict(self, mu: np.ndarray, fields: bool, extrapolated: np.ndarray) -> Prediction:
        raise NotImplementedError

    def __repr__(self):
        return f"<romflow model {self.name} ({self.kind}): {', '.join(self.parameters)}>"


def _concatenated(parts: list[Prediction]) -> Prediction:
    """One Prediction of the rows of `parts`, in order."""
    def cat(values):
        return None if values[0] is None else np.concatenate(values)

    first = parts[0]
    return Prediction(first.model, cat([p.mu for p in parts]),
                      {k: cat([p.outputs[k] for p in parts]) for k in first.outputs},
                      {k: cat([p.error[k] for p in parts]) for k in first.error},
                      cat([p.field_error for p in parts]), cat([p.norm for p in parts]), first.kind,
                      cat([p.extrapolated for p in parts]), cat([p.coefficients for p in parts]),
                      cat([p.fields for p in parts]), cat([p.field_std for p in parts]),
                      cat([p.cluster for p in parts]), cat([p.fom_steps for p in parts]),
                      None if first.history is None else {k: cat([p.history[k] for p in parts]) for k in first.history})


def checked_parameters(mu, names, model: str = "") -> np.ndarray:
    """mu as a float (n, d) array, d = len(names); ValueError in one line for another shape, no query,
    or a non-finite value (naming the query and the parameter)."""
    where = f"{model}: " if model else ""
    d = len(names)
    try:
        a = np.asarray(mu, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}mu: not numbers ({str(exc).splitlines()[0]}); expected an array of shape ({d},) or "
                         f"(n, {d}) ({', '.join(names)})") from None
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != d or a.shape[0] == 0:
        raise ValueError(f"{where}mu has shape {np.shape(mu)}; expected ({d},) or (n, {d}) with n >= 1 "
                         f"({', '.join(names)})")
    bad = np.argwhere(~np.isfinite(a))
    if len(bad):
        i, j = bad[0]
        raise ValueError(f"{where}{names[j]} = {a[i, j]} (query {i}) is not finite; expected finite parameters")
    return a


# -- the problem's parameter functions without its mesh ------------------------------------------------
def parameter_functions(spec: dict):
    """(problem, how) for a resolved study's `problem` section: an object with the problem's theta(mu)
    (n, Q), phi(mu) (n, P) and, where the class has one, coercivity_lower_bound(mu) (n,), equal to the
    full problem's bit for bit. how: 'parameter functions' where the class builds them without its mesh
    (its classmethod `parameter_functions(args)`: thermal_block, the declared PDEs, the affine black box),
    'full problem' where the problem object had to be built in full (a user's class: its mesh too, never
    PETSc)."""
    from rom.hifi import registry

    cls = registry.problem_class(spec)
    args = {k: v for k, v in spec.items() if k not in ("name", "class")}
    if hasattr(cls, "parameter_functions"):
        return cls.parameter_functions(args), "parameter functions"
    return registry.make_problem(spec), "full problem"


def _affine_coefficients(problem, rb_ds):
    """The coefficients of the affine model as rom.models.factory.coefficients builds them, with the
    coercivity source the artefact records (attribute coercivity: problem, min_theta, scm, or
    max(scm, <source>)) instead of testing min-theta on the operators again."""
    from rom.models.factory import ModelError, scm_bounds
    from rom.models.rb import AffineCoefficients
    from rom.reduction.scm import SCMCoefficients

    label = str(rb_ds.attrs.get("coercivity", ""))
    source = "none" if label == "scm" else label.removeprefix("max(scm, ").removesuffix(")")
    if source not in ("problem", "min_theta", "none"):
        raise ModelError(f"rb: the artefact records coercivity = {label!r}; expected problem, min_theta, scm or "
                         "max(scm, ...) (an rb.h5 written by this version of romflow)")
    Q = rb_ds["affine_A_rb"].shape[0]
    base = AffineCoefficients(problem, np.ones(Q) if source == "min_theta" else None)
    scm = scm_bounds(rb_ds, problem.theta)
    if scm is not None:
        return SCMCoefficients(base, scm, keep_base_bound=source != "none")
    if source == "none":
        raise ModelError("rb: the artefact has no SCM bounds and records no other coercivity lower bound")
    return base


# -- models -------------------------------------------------------------------------------------------
class ReducedBasis(Model):
    """The RB of rom/rb.h5 (stationary) and its outputs.

    Affine kind: predict gives the X-norm bound Delta(mu) of u - u_N (`field_error`) and per output of
    rb.outputs the corrected value and its primal-dual bound, each with the rounding allowance of its own
    online evaluation: rigorous for the computed numbers (kind 'certified'; README 'What is rigorous'). The
    bound holds inside the box; outside it (extrapolate=True) as far as the coercivity lower bound does
    (min-theta and the problem's own bound: wherever theta > 0; SCM: inside its box).

    EIM kinds (function_eim, matrix_eim, blackbox_eim; `model("rb")` takes the artefact's first kind,
    `model("rb:<kind>")` another): the field bound only (no outputs), with the EIM share the artefact was
    built with: kind 'certified' where it is rigorous (function EIM with the problem's derivative bound),
    'indicator' where it is measured on the training set or estimated. These need the full problem (its
    mesh, and for a black box its entries command) and the operators and EIM artefacts, never PETSc.

    Parabolic RB (`rb:parabolic`, a transient problem): per parameter the bound Delta_K of the space-time
    energy error up to the final time (`field_error`, kind 'certified'), the trajectory's space-time norm
    (`norm`), and with fields=True the final time's coefficients and field; from the full problem and the
    operators artefact."""

    name, kind = "rb", "certified"

    def __init__(self, study: Study, path: Path, kind: str | None = None):
        from rom import artefacts
        from rom.models.factory import output_specs
        from rom.models.output import OutputModel
        from rom.models.rb import ReducedBasisModel

        ds = artefacts.read(path)
        self.parameters = [str(v) for v in ds["parameter"].values]
        self.bounds = np.asarray(ds["bounds"].values, dtype=float)
        self.basis = ds["basis"].values
        self.outputs = {}
        if ds.attrs.get("formulation") == "parabolic":
            self._load_parabolic(study, path, ds)
            return
        kinds = str(ds.attrs["kinds"]).split(",")
        if kind is not None and kind not in kinds:
            raise KeyError(f"rb:{kind}: {path} holds the model kinds {', '.join(kinds)}")
        if "affine" not in kinds:
            self._load_eim(study, path, ds, kind or kinds[0])
            return
        self.parameters = [str(v) for v in ds["parameter"].values]
        self.bounds = np.asarray(ds["bounds"].values, dtype=float)
        self.problem, self.built_from = parameter_functions(study.config["problem"])
        coef = _affine_coefficients(self.problem, ds)
        # 'flag': Model.predict has refused what extrapolate=False refuses, before the model's own check.
        self.model = ReducedBasisModel.from_dataset(ds, coef, self.bounds, self.parameters, "flag", prefix="affine_")
        specs = output_specs(ds)
        if specs:
            from rom.hifi import registry
            from rom.models.output import output_functional

            full = registry.make_problem(study.config["problem"])  # the functionals' offsets are mesh integrals
            for spec in specs:
                out = output_functional(full, spec)
                self.outputs[spec["name"]] = OutputModel.from_dataset(ds, f"output_{spec['name']}_", self.model, out)

    def _beside(self, path: Path, *names: str) -> list[Path]:
        root = path.parent.parent  # results/<study>/ (rom/rb.h5)
        found = [root / n for n in names]
        missing = [p for p in found if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{self.name}: no {missing[0]}; expected it beside {path} (the model is evaluated "
                                    "on it)")
        return found

    def _load_parabolic(self, study: Study, path: Path, ds):
        """A parabolic RB (POD-greedy): the trajectory's coefficients and the space-time energy bound at the
        final time (kind certified), from the full problem and the operators artefact (its mass and initial
        terms)."""
        from rom import artefacts
        from rom.hifi import registry
        from rom.hifi.discretization.operators import Operators
        from rom.models.factory import load_parabolic

        (ops_path,) = self._beside(path, "fom/operators.h5")
        self.problem, self.built_from = registry.make_problem(study.config["problem"]), "full problem"
        self.model, _ = load_parabolic(self.problem, Operators.from_dataset(artefacts.read(ops_path)), ds)
        self.name, self.parabolic = "rb:parabolic", True

    def _load_eim(self, study: Study, path: Path, ds, kind: str):
        from rom import artefacts
        from rom.hifi import registry
        from rom.hifi.discretization.operators import Operators
        from rom.models import factory

        self.name = f"rb:{kind}"
        ops_path, eim_path = self._beside(path, "fom/operators.h5", "rom/eim.h5")
        self.problem, self.built_from = registry.make_problem(study.config["problem"]), "full problem"
        ops = Operators.from_dataset(artefacts.read(ops_path))
        models = factory.load_models(self.problem, ops, ds, artefacts.read(eim_path), "flag")
        self.model = models[kind]
        label = str(ds.attrs.get(f"{kind}_eim_bound", "indicator"))
        self.kind = "certified" if label == "rigorous" else "indicator"
        self.name = f"rb:{kind}"

    @property
    def N(self) -> int:
        return self.model.N

    parabolic = False

    def _predict(self, mu, fields, extrapolated):
        if self.parabolic:  # trajectories: the bound and the field at the final time
            c = self.model.solve_batch(mu)  # (n, K + 1, N)
            delta = self.model.estimate_batch(mu, c)[:, -1]
            norm = self.model.trajectory_norms(mu, c)
            cK = c[:, -1]
            return Prediction(self.name, mu, {}, {}, delta, norm, self.kind, extrapolated, cK if fields else None,
                              cK @ self.basis[: cK.shape[1]] if fields else None)
        c, delta = self.model.solve_and_estimate_batch(mu, "certified")  # +inf where alpha_LB <= 0
        outputs, error = {}, {}
        for name, om in self.outputs.items():  # the primal solve and bound shared by every output
            r = om.evaluate(mu, c, delta)
            outputs[name], error[name] = r["s"], r["bound"]
        return Prediction(self.name, mu, outputs, error, delta, np.linalg.norm(c, axis=1), self.kind, extrapolated,
                          c if fields else None, c @ self.basis[: c.shape[1]] if fields else None)


class PODGP(Model):
    """POD + GP of surrogates/gp.h5: independent GPs from mu to the POD coefficients.

    predict: the predictive means of the coefficients (outputs pod_k) and their standard deviations
    (error pod_k), with the leave-one-out or cross-validated variance calibration the fit stored
    (kind 'predictive_std': intervals calibrated, coverage measured on held-out data, not guaranteed).
    Bit for bit evaluate-gp's numbers on the same batch under the same torch thread count (gp.threads,
    default 1; this class leaves torch's setting alone)."""

    name, kind = "pod_gp", "predictive_std"

    def __init__(self, study: Study, path: Path):
        from rom import artefacts
        from surrogates.gp import GP

        ds = artefacts.read(path)
        self.gp = GP.from_dataset(ds, "gp")
        self.modes = ds["modes"].values
        self.degree = float(ds.attrs.get("solution_degree", 0.0))
        self.parameters, self.bounds = study.parameters, study.bounds

    def _predict(self, mu, fields, extrapolated):
        from surrogates.gp import predict_pod_gp

        c, var = predict_pod_gp(self.gp, mu, self.degree)
        std = np.sqrt(var)
        names = [f"pod_{k}" for k in range(c.shape[1])]
        return Prediction(self.name, mu, dict(zip(names, c.T)), dict(zip(names, std.T)), np.sqrt(var.sum(axis=1)),
                          np.linalg.norm(c, axis=1), self.kind, extrapolated, c if fields else None,
                          c @ self.modes if fields else None, np.sqrt(var @ self.modes**2) if fields else None)


class MeshMorphingGP(Model):
    """The MMGP of surrogates/mmgp.h5: a shape (a planar triangle mesh, no parameters describe it) and its
    scalar inputs -> the output scalars and fields on the shape's own mesh, each with its calibrated
    predictive standard deviation (kind 'predictive_std': coverage measured on held-out shapes, not
    guaranteed). It predicts on shapes, not from mu alone: `predict_shapes`; `predict(mu)` refuses.
    `Prediction.extrapolated` flags the shapes out of the training family (the model's out-of-range
    test on its geometry coefficients)."""

    name, kind = "mmgp", "predictive_std"

    def __init__(self, study: Study, path: Path):
        from rom import artefacts
        from surrogates.mmgp.model import MMGP

        self.gp = MMGP.from_dataset(artefacts.read(path))
        self.parameters = list(self.gp.input_names)
        self.bounds = np.full((len(self.parameters), 2), np.nan)  # the family's range is the model's test

    def predict(self, mu, fields: bool = False, extrapolate: bool = False, threads: int = 1) -> Prediction:
        raise TypeError("mmgp predicts on shapes, not from parameters alone; expected "
                        "model('mmgp').predict_shapes(meshes, inputs) with meshes as mesh files or (nodes, triangles)")

    def predict_shapes(self, meshes, inputs=None, fields: bool = False) -> Prediction:
        """meshes: mesh files meshio reads (gmsh, VTU, ...) or (nodes (n_i, 2), triangles (m_i, 3)) pairs;
        inputs (n, d) the scalar inputs in the order of `parameters` (None where there are none). Scalar
        outputs and their standard deviations by name; with fields=True the mean fields and their standard
        deviations as one dict per shape (`fields`, `field_std`; the meshes differ). Refusals are one line
        naming the shape."""
        from surrogates.mmgp.family import read_mesh_sample
        from surrogates.mmgp.geometry import MeshSample

        samples, names = [], []
        for i, m in enumerate(meshes):
            if isinstance(m, (str, Path)):
                samples.append(read_mesh_sample(m, []))
                names.append(str(m))
            else:
                nodes, triangles = m
                samples.append(MeshSample(np.asarray(nodes, dtype=float), np.asarray(triangles, dtype=np.int64), {}))
                names.append(f"shape {i}")
        d = len(self.parameters)
        mu = np.zeros((len(samples), 0)) if inputs is None and d == 0 else checked_parameters(inputs, self.parameters,
                                                                                              self.name)
        if len(mu) != len(samples):
            raise ValueError(f"mmgp: {len(samples)} shapes and {len(mu)} rows of inputs; expected one row per shape")
        out = self.gp.predict(samples, mu, names)
        sm, sv = out["scalars_mean"], np.sqrt(out["scalars_var"])
        outputs = {k: sm[:, j] for j, k in enumerate(self.gp.scalar_names)}
        error = {k: sv[:, j] for j, k in enumerate(self.gp.scalar_names)}
        nan = np.full(len(samples), np.nan)  # no field norm across meshes of different sizes
        return Prediction(self.name, mu, outputs, error, nan, nan, self.kind, np.asarray(out["out_of_range"]), None,
                          out["fields_mean"] if fields else None,
                          [{k: np.sqrt(v) for k, v in fv.items()} for fv in out["fields_var"]] if fields else None)


class NeuralSurrogate(Model):
    """A streamed (or offline) neural surrogate of surrogate/*.pt: (mu, t) -> the nodal field (boundary
    values included), float32. predict(mu, fields=True) gives the field at the final time and
    `predict_trajectory(mu, times)` at given times; no error measure (kind 'none': the network states
    none; its test errors are in metrics/surrogate.h5). The same network call as evaluate-surrogate
    (bit for bit on the same inputs); `surrogates.onnx_export` writes it as ONNX."""

    kind = "none"

    def __init__(self, study: Study, path: Path, name: str):
        from surrogates.nn import load_model

        self.name = name
        self.net, self.scaling, self.meta = load_model(path)
        self.parameters = study.parameters
        self.bounds = np.column_stack([self.scaling.lo, self.scaling.hi])
        if len(self.parameters) != len(self.bounds):
            raise ValueError(f"{name}: the network takes {len(self.bounds)} parameters; the study has "
                             f"{len(self.parameters)} ({', '.join(self.parameters)})")

    def predict_trajectory(self, mu, times, extrapolate: bool = False) -> np.ndarray:
        """Fields (n, len(times), n_nodes) at the given times, float32 as the network computes them."""
        import torch

        times = np.atleast_1d(np.asarray(times, dtype=float))
        p = self.predict(mu, extrapolate=extrapolate)  # the checks of mu
        X = self.scaling.inputs(np.repeat(p.mu, len(times), axis=0), np.tile(times, len(p.mu)))
        with torch.no_grad():
            return self.net(torch.from_numpy(X)).numpy().reshape(len(p.mu), len(times), -1)

    def _predict(self, mu, fields, extrapolated):
        nan = np.full(len(mu), np.nan)
        u = self.predict_trajectory(mu, [self.scaling.t_end], extrapolate=True)[:, 0] if fields else None
        return Prediction(self.name, mu, {}, {}, nan, nan, self.kind, extrapolated, None, u)


def _one_blas_thread():
    """The BLAS thread count the local and adaptive stages run with (rom.commands.local._single_thread): the
    same summation order, hence the same bits."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _beside_study(study: Study, model: str, *names: str) -> list[Path]:
    """Artefacts of the results folder a model is evaluated with; FileNotFoundError (one line) if one is missing."""
    found = [study.path / n for n in names]
    missing = [p for p in found if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{model}: no {missing[0]}; expected it in {study.path} (the model is evaluated "
                                "with it)")
    return found


def _artefact_with(path: Path, model: str, stage: str, *variables: str):
    from rom import artefacts

    ds = artefacts.read(path)
    missing = [v for v in variables if v not in ds]
    if missing:
        raise ValueError(f"{model}: {path} has no {missing[0]}; expected the artefact of the {stage} stage")
    return ds


class LocalBases(Model):
    """The dictionary of local reduced bases of rom/local/local_bases.h5 and its online selector.

    The local_bases stage builds, from the clustering `local.dictionary` of rom/local/clusters.h5, one POD
    basis per cluster and two selectors from mu to a cluster: the MLP classifier (the dictionary's selector,
    `selector = 'mlp'`) and the nearest medoid in the scaled parameter box (`'nearest_medoid_mu'`); it
    evaluates the dictionary by the test states' projection errors. It builds no online solver: predict
    gives the selected cluster per query (`Prediction.cluster`), no outputs and no error measure (kind
    'none': nothing estimates a local ROM's error online; the test projection errors are in the artefact),
    and refuses fields=True in one line; `basis(cluster)` gives a cluster's X-orthonormal modes.

    The artefact stores both selectors, not only their decisions: the MLP the stage trained as its weight
    matrices and bias vectors per layer (`selector_W<l>`, `selector_b<l>`, `selector_classes`, the box
    `selector_lower`/`selector_upper`, attribute `selector_layers`; none for the constant classifier of one
    cluster) and the medoids' parameters (`medoid_mu`). They load with MLPSelector.from_dataset and
    NearestMedoidSelector.from_dataset: nothing is trained again, scikit-learn is not imported, and neither
    rom/local/clusters.h5 nor snapshots/test.h5 is read. Predict evaluates the stored arrays with the code
    the stage selected with (MLPSelector.predict, one BLAS thread), so it chooses what the stage chose, bit
    for bit. On the first predict both selectors are checked on the stage's test parameters (`test_mu`,
    stored too: a few matrix-vector products) against the clusters the stage chose for them (RuntimeError
    in one line if they differ: an artefact whose selectors are not the ones that chose). Batched: one
    selector call per chunk of queries, as the stage selects its test set."""

    name, kind = "local", "none"
    selectors = ("mlp", "nearest_medoid_mu")

    def __init__(self, study: Study, path: Path):
        from rom.models.local import MLPSelector, NearestMedoidSelector

        stored = ("selector_classes", "selector_lower", "selector_upper", "medoid_mu", "medoid_lower", "medoid_upper")
        ds = _artefact_with(path, "local", "local_bases", "bases", "n_modes", "test_mu", "test_cluster_mlp",
                            "test_cluster_nearest_medoid_mu", *stored)
        if "selector_layers" not in ds.attrs:
            raise ValueError(f"local: {path} has no attribute selector_layers; expected the artefact of the "
                             "local_bases stage")
        layers = [f"selector_{a}{l}" for l in range(int(ds.attrs["selector_layers"])) for a in ("W", "b")]
        missing = [v for v in layers if v not in ds]
        if missing:
            raise ValueError(f"local: {path} has no {missing[0]}; expected the artefact of the local_bases stage")
        self._selectors = {"mlp": MLPSelector.from_dataset(ds, "selector"),
                           "nearest_medoid_mu": NearestMedoidSelector.from_dataset(ds, "medoid")}
        self._path = path
        self.dictionary = str(ds.attrs["dictionary"])
        self.parameters, self.bounds = study.parameters, study.bounds
        self.n_modes = ds["n_modes"].values
        self._bases = ds["bases"].values
        self._test_mu = ds["test_mu"].values
        self._stage_choice = {"mlp": ds["test_cluster_mlp"].values,
                              "nearest_medoid_mu": ds["test_cluster_nearest_medoid_mu"].values}
        self.selector = "mlp"
        self._checked_against_stage = False

    def basis(self, cluster: int) -> np.ndarray:
        """(n_modes, n_dofs) the X-orthonormal POD modes of one cluster (free dofs)."""
        return self._bases[int(cluster), : int(self.n_modes[int(cluster)])]

    def _built(self) -> dict:
        if not self._checked_against_stage:
            with _one_blas_thread():  # as the stage selected its test set
                for name, sel in self._selectors.items():
                    got, stage = sel.predict(self._test_mu), self._stage_choice[name]
                    if len(got) != len(stage) or not np.array_equal(got, stage):
                        raise RuntimeError(f"local: the {name} selector stored in {self._path} chooses other "
                                           "clusters for the stored test parameters than the local_bases stage "
                                           "did; expected the artefact the stage wrote")
            self._checked_against_stage = True
        return self._selectors

    def predict(self, mu, fields: bool = False, extrapolate: bool = False, threads: int = 1) -> Prediction:
        if fields:
            raise ValueError("local: no fields: the local_bases stage builds a dictionary and its selector, no "
                             "online solver; expected predict(mu) for the selected cluster, and "
                             "model.basis(cluster) for its modes")
        self._checked(mu, extrapolate)  # refusals before the selectors are checked
        self._built()  # once, before any thread pool
        return super().predict(mu, False, extrapolate, threads)

    def _predict(self, mu, fields, extrapolated):
        if self.selector not in self.selectors:
            raise ValueError(f"local: selector {self.selector!r}; expected one of {', '.join(self.selectors)}")
        with _one_blas_thread():  # as the stage selects
            cluster = self._built()[self.selector].predict(mu)
        nan = np.full(len(mu), np.nan)
        return Prediction(self.name, mu, {}, {}, nan, nan, self.kind, extrapolated, cluster=np.asarray(cluster))


class AdaptiveROM(Model):
    """The hyper-reduced POD-Galerkin ROM of the adaptive_rom stage (DEIM on the reduced mesh for the nonlinear
    heat problem, rom.models.adaptive; empirical cubature for any problem of the `nonlinear` capability, the
    viscoplastic one included, rom.models.hyper; a reduced Newton per implicit step) with its Gappy-POD
    indicator and the adaptive loop: where the indicator of a ROM step exceeds adaptive_rom.indicator_tol, one
    full-order step from the ROM state replaces it and enriches the bases (rom.models.adaptive.run_rom).

    rom/adaptive_rom.h5 keeps the stage's runs, not the ROM: on the first predict the ROM is built by the
    stage's own call (rom.models.adaptive.build_rom on the converged train trajectories of
    snapshots/train.h5, the operators of fom/operators.h5, the full problem; one BLAS thread), and each
    query runs the stage's `run_rom` on its own copy of it, so the numbers are bit for bit the stage's.
    The full-order step (simulate.backend: PETSc only for the petsc backend) is built at the first
    enrichment. predict(mu) gives per query the final time's indicator (`field_error`, kind 'indicator':
    the relative residual of the Gappy-POD fit of the ROM's heat flux, an estimate, not a bound; where the
    last step was replaced by a full-order step, it is that ROM step's value), the X norm of the final
    state, `fom_steps`, and `history` (indicator, enriched, basis_size per time step); fields=True adds the
    final state (free dofs); `predict_trajectory` every time's. predict(mu, enrich=False) runs the ROM
    without enrichment (the stage's static run: no full-order step). A loop over the parameters: each
    trajectory enriches its own copy of the ROM (inherently per trajectory), one after another (threads
    is not used)."""

    name, kind = "adaptive", "indicator"

    def __init__(self, study: Study, path: Path):
        ds = _artefact_with(path, "adaptive", "adaptive_rom", "indicator_adaptive", "enriched", "fom_steps", "mu")
        self._ops_path, self._train_path = _beside_study(study, "adaptive", "fom/operators.h5", "snapshots/train.h5")
        self.config = study.config
        self.settings = dict(study.config["adaptive_rom"])
        self.tol = float(self.settings["indicator_tol"])
        self.parameters, self.bounds = study.parameters, study.bounds
        self.n_times = ds.sizes["time"]
        self._rom0 = self._step = None
        self._enrich = True

    def _built(self):
        if self._rom0 is None:
            from rom import artefacts
            from rom.hifi import registry
            from rom.hifi.discretization.operators import Operators
            from rom.models.adaptive import build_rom

            problem = registry.make_problem(self.config["problem"])
            ops = Operators.from_dataset(artefacts.read(self._ops_path))
            train = artefacts.converged(artefacts.read(self._train_path))
            with _one_blas_thread():
                self._rom0 = build_rom(problem, ops, train["u"].values, train["mu"].values, self.settings)
            self.problem, self.X = problem, ops.X
            self._step = _FirstCallBuilds(problem, self.config["simulate"])
        return self._rom0

    @property
    def N(self) -> int:
        """The offline basis size (each trajectory's enrichments add to its own copy)."""
        return self._built().N

    def _runs(self, mu, enrich: bool) -> list:
        import copy

        from rom.models.adaptive import run_rom

        rom0 = self._built()
        with _one_blas_thread():
            if not enrich:  # the stage's static run
                return [run_rom(copy.deepcopy(rom0), m) for m in mu]
            return [run_rom(copy.deepcopy(rom0), m, self.tol, self._step) for m in mu]

    def predict(self, mu, fields: bool = False, extrapolate: bool = False, threads: int = 1,
                enrich: bool = True) -> Prediction:
        self._enrich = bool(enrich)
        try:
            return super().predict(mu, fields, extrapolate, 1)
        finally:
            self._enrich = True

    def predict_trajectory(self, mu, extrapolate: bool = False, enrich: bool = True) -> np.ndarray:
        """States (n, n_times, n_dofs) at every time step (free dofs), as run_rom reconstructs them."""
        mu, _ = self._checked(mu, extrapolate)
        return np.stack([r.states for r in self._runs(mu, enrich)])

    def _predict(self, mu, fields, extrapolated):
        runs = self._runs(mu, self._enrich)
        final = np.stack([r.states[-1] for r in runs])
        history = {"indicator": np.stack([r.indicator for r in runs]), "enriched": np.stack([r.enriched for r in runs]),
                   "basis_size": np.stack([r.basis_size for r in runs])}
        norm = np.sqrt(np.einsum("ij,ij->i", final, (self.X @ final.T).T))
        return Prediction(self.name, mu, {}, {}, history["indicator"][:, -1], norm, self.kind, extrapolated, None,
                          final if fields else None, fom_steps=np.array([r.fom_steps for r in runs]),
                          history=history)


class _FirstCallBuilds:
    """The adaptive stage's full-order step (rom.hifi.solvers.solve.fom_step_function with the study's backend
    and PETSc options), built at its first call: a query that never enriches imports no solver."""

    def __init__(self, problem, simulate: dict):
        self.problem, self.simulate, self.step = problem, simulate, None

    def __call__(self, u, t, mu, z=None):
        if self.step is None:
            from rom.hifi.solvers.solve import fom_step_function

            self.step = fom_step_function(self.problem, self.simulate["backend"], self.simulate["petsc_options"])
        return self.step(u, t, mu, z)

    @property
    def z(self):
        """The internal variables after the last step (a problem with internal variables)."""
        return self.step.z


OPENERS = {"rb": ReducedBasis, "pod_gp": PODGP, "mmgp": MeshMorphingGP, "local": LocalBases, "adaptive": AdaptiveROM}


# -- the study ----------------------------------------------------------------------------------------
class Study:
    """A finished study's results folder (results/<study>/): its resolved study file and its models.
    Build it with `romflow.open(path)`."""

    def __init__(self, path: str | Path):
        import yaml

        self.path = Path(path)
        study_file = self.path / "study.yaml"
        if not study_file.is_file():
            raise FileNotFoundError(f"{self.path}: no study.yaml; expected a study's results folder (results/<study>/, "
                                    "written by the pipeline)")
        self.config = yaml.safe_load(study_file.read_text())
        if not isinstance(self.config, dict) or "problem" not in self.config:
            raise ValueError(f"{study_file}: not a resolved study file (no problem section)")
        self.name = str(self.config.get("name", self.path.name))
        self._models: dict[str, Model] = {}
        self._space = None

    @property
    def artefacts(self) -> dict[str, Path]:
        """Model name -> artefact path, for every trained model present in the folder."""
        found = {name: self.path / rel for name, rel in ARTEFACTS.items() if (self.path / rel).is_file()}
        for pt in sorted((self.path / "surrogate").glob("*.pt")):
            policy = pt.stem.removeprefix("online_")
            found[f"nn_{policy}"] = pt
        return found

    @property
    def models(self) -> list[str]:
        """Names of the trained models present (openable or not: see `openable`)."""
        return list(self.artefacts)

    @property
    def openable(self) -> list[str]:
        """The present models of a kind romflow.open can load (every kind it lists; `model` refuses an artefact
        that is not its stage's, in one line)."""
        return [m for m in self.models if m in OPENERS or m.startswith("nn_")]

    def _parameter_space(self):
        if self._space is None:
            from rom.hifi import registry

            self._space = registry.parameter_space(self.config)
        return self._space

    @property
    def parameters(self) -> list[str]:
        """The parameter names, in the order of mu."""
        return list(self._parameter_space().names)

    @property
    def bounds(self) -> np.ndarray:
        """(d, 2) the study's parameter box (its designs' bounds)."""
        return np.asarray(self._parameter_space().bounds, dtype=float)

    def model(self, name: str) -> Model:
        """The model `name` of `models`, loaded once. KeyError (one line) for a model not present; ValueError
        or FileNotFoundError (one line) for an artefact that is not its stage's or lacks one it is evaluated with."""
        if name in self._models:
            return self._models[name]
        found = self.artefacts
        if name.startswith("rb:") and "rb" in found:  # another model kind of rom/rb.h5 (EIM artefacts hold two)
            self._models[name] = ReducedBasis(self, found["rb"], name.split(":", 1)[1])
            return self._models[name]
        if name not in found:
            raise KeyError(f"{self.name}: no model {name!r} in {self.path}; it has: {', '.join(found) or 'none'}")
        if name.startswith("nn_"):
            self._models[name] = NeuralSurrogate(self, found[name], name)
            return self._models[name]
        self._models[name] = OPENERS[name](self, found[name])
        return self._models[name]

    def __repr__(self):
        return f"<romflow study {self.name} at {self.path}: models {', '.join(self.models) or 'none'}>"


def open(path: str | Path) -> Study:  # noqa: A001 (romflow.open, as the API is named)
    """The study whose results folder is `path` (results/<study>/). Reads study.yaml only; models load on
    `Study.model(name)`."""
    return Study(path)
