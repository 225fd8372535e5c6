"""A sequence of full-order solves that learns from itself: samples solved in an order where neighbours are
close (rom.hifi.sequence.ordering), each solve starting from what the earlier ones left, and one solver
parameter tuned online.

What is handed on (SequenceSettings, from the study's `simulate` section):

- initial guess: `projection` (Galerkin projection on the span of the previous solutions and of a reduced
  basis, rom.hifi.sequence.recycling), `previous` (the last solution), or `none`;
- tune: a scalar PETSc option chosen per solve by a bandit on the iteration counts (rom.hifi.sequence.tuning).

The preconditioner is built anew for every solve: keeping it across parameters (frozen, GAMG interpolation
reuse), PETSc's KSPGuess and PCDEFLATION measured no gain and were removed (docs/data_generation.md).

The defaults of these settings are the study schema's (workflow/schemas/config.schema.yaml), read once here:
the schema is their one source.

`solve_sequence` works with any rom.hifi.solvers.solve.FullOrderModel. Linear stationary problems on the PETSc
backend get every piece; other problems (transient, nonlinear, the SciPy backend) are solved sample by
sample in the given order, with the tuned option when PETSc solves them, and the facts that apply.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .. import capabilities as cap
from ..capabilities import Sample
from .recycling import SolutionSpace
from .tuning import Bandit, check_option, grid

GUESSES = ("none", "previous", "projection")


def _schema_defaults() -> tuple[dict, dict]:
    """The defaults of the `simulate` keys and of `simulate.tune` in the study schema (their one source)."""
    import yaml

    from rom.paths import ROOT

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    sim = schema["properties"]["simulate"]["properties"]
    return ({k: v["default"] for k, v in sim.items() if "default" in v},
            {k: v["default"] for k, v in sim["tune"]["properties"].items() if "default" in v})


SIMULATE_DEFAULTS, TUNE_DEFAULTS = _schema_defaults()


@dataclass(frozen=True)
class TuneSettings:
    option: str
    range: tuple[float, float]
    points: int = TUNE_DEFAULTS["points"]
    policy: str = TUNE_DEFAULTS["policy"]
    scale: str = TUNE_DEFAULTS["scale"]
    bandwidth: float = TUNE_DEFAULTS["bandwidth"]

    def __post_init__(self):
        object.__setattr__(self, "option", check_option(self.option))
        grid(*self.range, self.points, self.scale)
        Bandit(np.zeros(1), self.policy)

    @property
    def values(self) -> np.ndarray:
        return grid(*self.range, self.points, self.scale)


@dataclass(frozen=True)
class SequenceSettings:
    initial_guess: str = SIMULATE_DEFAULTS["initial_guess"]
    guess_size: int = SIMULATE_DEFAULTS["guess_size"]
    tune: TuneSettings | None = None

    def __post_init__(self):
        if self.initial_guess not in GUESSES:
            raise ValueError(f"simulate.initial_guess = {self.initial_guess!r}: expected one of {', '.join(GUESSES)}")
        if self.guess_size < 1:
            raise ValueError(f"simulate.guess_size = {self.guess_size}: expected an integer >= 1")

    @classmethod
    def from_config(cls, sim: dict) -> SequenceSettings:
        """From a `simulate` section; absent keys take the schema's defaults."""
        tune = sim.get("tune") or {}
        return cls(**{k: sim[k] for k in ("initial_guess", "guess_size") if k in sim},
                   tune=TuneSettings(tune["option"], tuple(tune["range"]),
                                     **{k: tune[k] for k in TUNE_DEFAULTS if k in tune}) if tune.get("option") else None)

    @classmethod
    def plain(cls) -> SequenceSettings:
        """Every sample as if it were the first: no guess, nothing tuned."""
        return cls(initial_guess="none")


@dataclass
class SequenceFacts:
    """Per-sample facts, in the order of the samples given to solve_sequence (the design's order)."""

    position: np.ndarray       # where each sample came in the solve order
    iterations: np.ndarray     # Krylov iterations
    setup_seconds: np.ndarray  # matrix values, guess, PC set-up, space update (NaN: not measured apart)
    solve_seconds: np.ndarray  # the Krylov solve
    pc_rebuilt: np.ndarray     # 1: the preconditioner was built for this sample (every linear solve), -1: not tracked
    guess_dim: np.ndarray      # dimension of the span the initial guess was projected from (0: no guess)
    tuned_value: np.ndarray    # the tuned option's value (NaN: not tuned)
    attrs: dict = field(default_factory=dict)

    def data_vars(self, dim: str = "sample") -> dict:
        """Variables for the snapshots artefact (xarray (dims, values, attrs) tuples)."""
        tuned = {"long_name": f"value of {self.attrs['tune_option']} chosen online"} if self.attrs.get("tune_option") \
            else {"long_name": "tuned option value (none tuned)"}
        return {
            "solve_position": (dim, self.position, {"long_name": "position in the chunk's solve order"}),
            "setup_seconds": (dim, self.setup_seconds, {"units": "s",
                                                   "long_name": "matrix values, initial guess, PC set-up, space update"}),
            "krylov_seconds": (dim, self.solve_seconds, {"units": "s", "long_name": "Krylov solve"}),
            "pc_rebuilt": (dim, self.pc_rebuilt.astype(np.int8), {"long_name": "1 built, -1 not tracked"}),
            "guess_dim": (dim, self.guess_dim, {"long_name": "dimension of the initial guess's projection space"}),
            "tuned_value": (dim, self.tuned_value, tuned),
        }


def _linear_petsc(fom) -> bool:
    from ..solvers.petsc import LinearSolver

    caps = fom.problem.capabilities
    return (isinstance(getattr(fom, "solver", None), LinearSolver) and cap.STATIONARY in caps
            and cap.NONLINEAR not in caps and cap.TRANSIENT not in caps)


def solve_sequence(fom, mus: np.ndarray, settings: SequenceSettings | None = None, order: np.ndarray | None = None,
                   each=None, basis: np.ndarray | None = None, contexts: np.ndarray | None = None):
    """Solve the samples `mus` (n, d) in `order` (a permutation of range(n); default: as given), handing on
    what `settings` switch on. `each(i, sample)` runs after each solve, i indexing `mus`. `basis` (r, n_dofs),
    a reduced basis, joins the projection space (initial_guess: projection); `contexts` (n, d), the parameters in unit coordinates, feed
    the contextual tuning policy (default: the problem's own box). Returns (samples in the order of `mus`,
    SequenceFacts); every rank returns, only rank 0's samples hold the fields."""
    settings = settings or SequenceSettings()
    mus = np.atleast_2d(np.asarray(mus, dtype=float))
    n = len(mus) if mus.size else 0
    order = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
    if not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError(f"solve order {order.tolist()[:8]}...: expected a permutation of range({n})")
    if contexts is None and settings.tune is not None and settings.tune.policy == "contextual":
        from .ordering import unit_coordinates

        space = fom.problem.space
        contexts = unit_coordinates(mus, space.bounds, space.distributions)
    facts = SequenceFacts(position=np.empty(n, dtype=np.int64), iterations=np.zeros(n, dtype=np.int64),
                          setup_seconds=np.full(n, np.nan), solve_seconds=np.full(n, np.nan),
                          pc_rebuilt=np.full(n, -1, dtype=np.int8), guess_dim=np.zeros(n, dtype=np.int64),
                          tuned_value=np.full(n, np.nan), attrs=_settings_attrs(settings))
    facts.position[order] = np.arange(n)
    samples: list = [None] * n
    run = _LinearSequence(fom, settings, basis) if _linear_petsc(fom) else _SampleSequence(fom, settings)
    facts.attrs.update(run.attrs)
    bandit = Bandit(settings.tune.values, settings.tune.policy, settings.tune.bandwidth) if settings.tune else None
    try:
        for i in order:
            context = None if contexts is None else contexts[i]
            arm = bandit.choose(context) if bandit is not None else None
            value = float(settings.tune.values[arm]) if bandit is not None else None
            samples[i] = run.solve(mus[i], facts, i, None if value is None else {settings.tune.option: value})
            if bandit is not None:
                facts.tuned_value[i] = value
                bandit.observe(arm, samples[i].iterations, context)
            if each is not None:
                each(int(i), samples[i])
    finally:
        run.close()
    return samples, facts


def _settings_attrs(settings: SequenceSettings) -> dict:
    d = asdict(settings)
    tune = d.pop("tune")
    out = {k: v for k, v in d.items()}
    if tune:
        out.update({f"tune_{k}": (list(v) if isinstance(v, tuple) else v) for k, v in tune.items()})
    return out


class _SampleSequence:
    """Problems the linear path does not cover: one solve_sample each, in the given order."""

    def __init__(self, fom, settings: SequenceSettings):
        from ..solvers.petsc import LinearSolver

        self.fom = fom
        self.petsc = isinstance(getattr(fom, "solver", None), LinearSolver)
        if settings.tune is not None and not self.petsc:
            raise ValueError(f"simulate.tune: the {getattr(fom, 'backend', '?')} backend has no PETSc option "
                             f"{settings.tune.option}; expected backend: petsc")
        self.attrs = {"reuse_path": "per sample (transient, nonlinear or non-PETSc problem): ordering and tuning only"}

    def solve(self, mu, facts: SequenceFacts, i: int, tuned: dict | None):
        if tuned:
            self.fom.solver.configure(tuned, override=True)
        s = self.fom.solve_sample(mu)
        facts.iterations[i], facts.solve_seconds[i] = s.iterations, s.seconds
        return s

    def close(self):
        pass


class _LinearSequence:
    """A(mu) x = b(mu) on fom.solver (a rom.hifi.solvers.petsc.LinearSolver), with the initial guess of
    `settings`; the preconditioner is built for every solve."""

    def __init__(self, fom, settings: SequenceSettings, basis):
        solver = fom.solver
        self.attrs = {"reuse_path": "linear stationary (rom.hifi.sequence)", "pc_type": solver.pc_type()}
        if solver.ksp.getType() == "preonly" and settings.initial_guess != "none":
            # A direct solve (preonly + LU/Cholesky) takes no initial guess: PETSc refuses a nonzero one.
            settings = replace(settings, initial_guess="none")
            self.attrs["guess_note"] = "ksp_type preonly (a direct solve): no initial guess"
        self.fom, self.settings, self.solver, self.problem = fom, settings, solver, fom.problem
        self.affine = cap.AFFINE in self.problem.capabilities and hasattr(self.problem, "operator_terms")
        self.space = None
        if settings.initial_guess == "projection":
            # The problem's own cache of its affine terms (rom.hifi.problems.P1Problem.cached_terms), when it
            # keeps one.
            cached = getattr(self.problem, "cached_terms", None)
            terms = None if not self.affine else (cached(fom.pattern, "A", self.problem.operator_terms) if cached
                                                  else self.problem.operator_terms(fom.pattern))
            self.space = SolutionSpace(solver, settings.guess_size, basis, terms)
        self.attrs["projection"] = ("affine reduced matrices" if self.affine else "A(mu) V per solve") \
            if self.space is not None else "none"
        self.previous = None

    def _guess(self, mu, b):
        s = self.settings
        if s.initial_guess == "previous":
            return self.previous, (self.previous is not None)
        if s.initial_guess == "projection":
            theta = self.problem.theta(mu[None])[0] if self.affine else None
            return self.space.guess(b, theta), self.space.dim
        return None, 0

    def solve(self, mu, facts: SequenceFacts, i: int, tuned: dict | None):
        p, solver = self.problem, self.solver
        t0 = time.perf_counter()
        # the first sample's assembly is timed for the stage's report (FullOrderModel.assembled)
        values, b = self.fom.assembled(p.operator_values, mu), p.rhs(mu, self.fom.pattern)
        solver.set_values(values)
        if tuned:
            solver.configure(tuned, override=True)
        x0, dim = self._guess(mu, b)
        solver.setup()
        t1 = time.perf_counter()
        x, info = solver.solve(b, x0)
        t2 = time.perf_counter()
        if info.converged:
            self.previous = x
            if self.space is not None:
                self.space.add(x)
        update = time.perf_counter() - t2
        facts.iterations[i], facts.setup_seconds[i], facts.solve_seconds[i] = info.iterations, t1 - t0 + update, t2 - t1
        facts.pc_rebuilt[i], facts.guess_dim[i] = 1, int(dim)
        u = solver.gather(x)
        return Sample(u, info.converged, info.reason, info.iterations, time.perf_counter() - t0)

    def close(self):
        if self.space is not None:
            self.space.destroy()
