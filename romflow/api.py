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
  local     rom/local/local_bases.h5  listed (its online stage needs the FOM operators)
  adaptive  rom/adaptive_rom.h5       listed (likewise)

Opening reads the artefacts alone. The RB's parameter functions theta(mu), phi(mu) and its coercivity
lower bound come from the problem class without its mesh (`parameter_functions`); the outputs of the
thermal block need their functional's offset, a mesh integral that rb.h5 does not store, so they build
the generated unit-square mesh in memory (no file; 10 ms at n = 48). Predictions go through the same
model classes and batched calls as the evaluation stages (rom.models.rb.ReducedBasisModel,
rom.models.output.OutputModel, surrogates.gp.predict_pod_gp): for the same batch they are bit for bit
what evaluate-rom and evaluate-gp computed, under the same BLAS and torch thread counts (the stages use
one BLAS thread and gp.threads; this module leaves both settings alone).

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
NOT_OPENABLE = {
    "local": "the local reduced bases are evaluated online with the FOM operators",
    "adaptive": "the adaptive hyper-reduced ROM runs FOM steps online",
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
                  or 'none' (a point prediction without an error measure: the streamed NN).
    extrapolated  (n,) bool, queries outside the model's parameter box (only with extrapolate=True).
    coefficients  (n, N) reduced coefficients (rb: of the X-orthonormal RB; pod_gp: POD), fields=True only.
    fields        (n, n_dofs) the predicted free-dof field u_N = c V (boundary values excluded), fields=True only.
    field_std     (n, n_dofs) pod_gp: the pointwise predictive standard deviation, fields=True only.
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
        from rom.models.rb import outside  # the RB stage's own test (its 1e-12 slack at the box's faces)

        mu = checked_parameters(mu, self.parameters, self.name)
        out = outside(mu, self.bounds)
        if out.any() and not extrapolate:
            i, j = np.argwhere(out)[0]
            lo, hi = self.bounds[j]
            raise ValueError(f"{self.name}: {self.parameters[j]} = {mu[i, j]:g} (query {i}) is outside the trained range "
                             f"[{lo:g}, {hi:g}]; expected a value inside it, or predict(..., extrapolate=True)")
        flags = out.any(axis=1)
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
                      cat([p.fields for p in parts]), cat([p.field_std for p in parts]))


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


OPENERS = {"rb": ReducedBasis, "pod_gp": PODGP, "mmgp": MeshMorphingGP}


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
        """The present models of a kind romflow.open can load (an rb.h5 of a parabolic or EIM model still
        refuses on `model`, naming its kinds)."""
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
        """The model `name` of `models`, loaded once. KeyError (one line) for a model not present,
        NotImplementedError (one line) for one present but not openable yet."""
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
        if name not in OPENERS:
            why = NOT_OPENABLE[name]
            raise NotImplementedError(f"{name}: present ({found[name]}) but not yet openable by romflow.open: {why}; "
                                      f"openable here: {', '.join(self.openable) or 'none'}")
        self._models[name] = OPENERS[name](self, found[name])
        return self._models[name]

    def __repr__(self):
        return f"<romflow study {self.name} at {self.path}: models {', '.join(self.models) or 'none'}>"


def open(path: str | Path) -> Study:  # noqa: A001 (romflow.open, as the API is named)
    """The study whose results folder is `path` (results/<study>/). Reads study.yaml only; models load on
    `Study.model(name)`."""
    return Study(path)
