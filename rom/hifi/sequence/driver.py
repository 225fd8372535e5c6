"""A sequence of full-order solves that learns from itself: samples solved in an order where neighbours are
close (rom.hifi.sequence.ordering), each solve handing on what it built, and one solver parameter tuned online.

What is handed on, each piece switchable (SequenceSettings, from the study's `simulate` section):

- initial guess: `projection` (Galerkin projection on the span of the previous solutions and of a reduced
  basis, rom.hifi.sequence.recycling), `previous` (the last solution), PETSc's KSPGuess `fischer` / `pod`
  (which PETSc 3.18 resets when the matrix values change, unless the preconditioner is reused), or `none`;
- preconditioner: `rebuild` (every solve, PETSc's default), `interpolation` (GAMG keeps its prolongators
  and only recomputes the coarse operators and smoothers, -pc_gamg_reuse_interpolation), `frozen` (kept
  across parameters and rebuilt by `rebuild_rule`: `iterations`, when a solve needs more than
  rebuild_factor times the iterations of the first solve after the last rebuild; `cost`, when the extra
  iterations paid since the last rebuild (timed) add up to the time of that rebuild's set-up (the
  ski-rental rule: at most twice the cost of the best rebuild schedule in hindsight, for preconditioners
  whose set-up dwarfs an iteration, such as a factorization); and for any solve that fails with it);
- deflation: `solutions` (PCDEFLATION with the newest directions of the solution span as deflation
  space and its coarse correction, the inner preconditioner being the configured one) or `none`;
- tune: a scalar PETSc option chosen per solve by a bandit on the iteration counts (rom.hifi.sequence.tuning).

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

GUESSES = ("none", "previous", "projection", "fischer", "pod")
PRECONDITIONER_REUSE = ("rebuild", "interpolation", "frozen")
REBUILD_RULES = ("iterations", "cost")
DEFLATIONS = ("none", "solutions")


@dataclass(frozen=True)
class TuneSettings:
    option: str
    range: tuple[float, float]
    points: int = 8
    policy: str = "bandit"
    scale: str = "linear"
    bandwidth: float = 0.2

    def __post_init__(self):
        object.__setattr__(self, "option", check_option(self.option))
        grid(*self.range, self.points, self.scale)
        Bandit(np.zeros(1), self.policy)

    @property
    def values(self) -> np.ndarray:
        return grid(*self.range, self.points, self.scale)


@dataclass(frozen=True)
class SequenceSettings:
    initial_guess: str = "projection"
    guess_size: int = 64
    preconditioner_reuse: str = "rebuild"
    rebuild_factor: float = 1.5
    rebuild_rule: str = "iterations"
    deflation: str = "none"
    deflation_size: int = 8
    tune: TuneSettings | None = None

    def __post_init__(self):
        for key, value, allowed in (("initial_guess", self.initial_guess, GUESSES),
                                    ("preconditioner_reuse", self.preconditioner_reuse, PRECONDITIONER_REUSE),
                                    ("rebuild_rule", self.rebuild_rule, REBUILD_RULES),
                                    ("deflation", self.deflation, DEFLATIONS)):
            if value not in allowed:
                raise ValueError(f"simulate.{key} = {value!r}: expected one of {', '.join(allowed)}")
        if self.guess_size < 1 or self.deflation_size < 1:
            raise ValueError(f"simulate.guess_size = {self.guess_size}, deflation_size = {self.deflation_size}: "
                             "expected integers >= 1")
        if not self.rebuild_factor > 1:
            raise ValueError(f"simulate.rebuild_factor = {self.rebuild_factor}: expected a number > 1")
        if self.deflation != "none" and self.preconditioner_reuse != "rebuild":
            raise ValueError(f"simulate.deflation = {self.deflation!r} with preconditioner_reuse = "
                             f"{self.preconditioner_reuse!r}: PCDEFLATION is set up again for every new deflation "
                             "space; expected preconditioner_reuse: rebuild")

    @classmethod
    def from_config(cls, sim: dict) -> "SequenceSettings":
        """From a validated `simulate` section (defaults filled in by the schema)."""
        tune = sim.get("tune") or {}
        return cls(initial_guess=sim.get("initial_guess", "projection"), guess_size=sim.get("guess_size", 64),
                   preconditioner_reuse=sim.get("preconditioner_reuse", "rebuild"),
                   rebuild_factor=sim.get("rebuild_factor", 1.5), rebuild_rule=sim.get("rebuild_rule", "iterations"),
                   deflation=sim.get("deflation", "none"),
                   deflation_size=sim.get("deflation_size", 8),
                   tune=TuneSettings(tune["option"], tuple(tune["range"]), tune.get("points", 8),
                                     tune.get("policy", "bandit"), tune.get("scale", "linear"),
                                     tune.get("bandwidth", 0.2)) if tune.get("option") else None)

    @classmethod
    def plain(cls) -> "SequenceSettings":
        """Every sample as if it were the first: no guess, a fresh preconditioner, nothing tuned."""
        return cls(initial_guess="none")


@dataclass
class SequenceFacts:
    """Per-sample facts, in the order of the samples given to solve_sequence (the design's order)."""

    position: np.ndarray       # where each sample came in the solve order
    iterations: np.ndarray     # Krylov iterations (all attempts of the sample)
    setup_seconds: np.ndarray  # matrix values, guess, PC set-up, space update (NaN: not measured apart)
    solve_seconds: np.ndarray  # the Krylov solve
    pc_rebuilt: np.ndarray     # 1: the preconditioner was built for this sample, 0: reused, -1: not tracked
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
            "pc_rebuilt": (dim, self.pc_rebuilt.astype(np.int8), {"long_name": "1 built, 0 reused, -1 not tracked"}),
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
    """A(mu) x = b(mu) on fom.solver (a rom.hifi.solvers.petsc.LinearSolver), with the reuse pieces of `settings`."""

    def __init__(self, fom, settings: SequenceSettings, basis):
        solver = fom.solver
        self.inner_pc = solver.pc_type()
        self.attrs = {"reuse_path": "linear stationary (rom.hifi.sequence)", "pc_type": self.inner_pc}
        self._threads = None  # the OpenMP limit deflation sets, restored by close()
        if solver.ksp.getType() == "preonly" and settings.initial_guess != "none":
            # A direct solve (preonly + LU/Cholesky) takes no initial guess: PETSc refuses a nonzero one.
            settings = replace(settings, initial_guess="none")
            self.attrs["guess_note"] = "ksp_type preonly (a direct solve): no initial guess"
        self.fom, self.settings, self.solver, self.problem = fom, settings, solver, fom.problem
        s = settings
        if s.preconditioner_reuse == "interpolation":
            if self.inner_pc != "gamg":
                raise ValueError(f"simulate.preconditioner_reuse = interpolation: needs pc_type gamg; the solver "
                                 f"uses {self.inner_pc!r} (expected rebuild or frozen for it)")
            solver.configure({"pc_gamg_reuse_interpolation": True}, override=True)
        if s.initial_guess in ("fischer", "pod"):
            size = {"fischer": ("ksp_guess_fischer_model", f"1,{s.guess_size}"),
                    "pod": ("ksp_guess_pod_size", s.guess_size)}[s.initial_guess]
            solver.configure({"ksp_guess_type": s.initial_guess, size[0]: size[1]})
            self.attrs["guess_note"] = ("PETSc KSPGuess: reset by PETSc 3.18 whenever the matrix values change, "
                                        "unless the preconditioner is reused")
        if s.deflation == "solutions":
            inner = {"deflation_pc_" + k: v for k, v in solver.db.getAll().items()
                     if k.startswith("pc_") and not k.startswith(("pc_type", "pc_deflation"))}
            # PCDEFLATION reads its inner preconditioner's options at every set-up: kept for those.
            self.deflation_options = {"pc_type": "deflation", "deflation_pc_pc_type": self.inner_pc,
                                      "pc_deflation_correction": True, **inner}
            solver.configure(self.deflation_options, override=True)
            # PCDEFLATION's small dense coarse solves run in OpenMP regions; on cores that MPI ranks already
            # fill, spinning OpenMP threads stall them for seconds. One thread for the sequence.
            from threadpoolctl import threadpool_limits

            self._threads = threadpool_limits(1, user_api="openmp")
            self.attrs["deflation_interface"] = ("PC.setDeflationSpace" if hasattr(solver.ksp.getPC(), "setDeflationSpace")
                                                 else "ctypes PCDeflationSetSpace (petsc4py lacks it)")
        self.affine = cap.AFFINE in self.problem.capabilities and hasattr(self.problem, "operator_terms")
        self.space = None
        if s.initial_guess == "projection" or s.deflation == "solutions":
            # The problem's own cache of its affine terms (rom.hifi.problems.P1Problem.cached_terms), when it
            # keeps one.
            cached = getattr(self.problem, "cached_terms", None)
            terms = None if not self.affine else (cached(fom.pattern, "A", self.problem.operator_terms) if cached
                                                  else self.problem.operator_terms(fom.pattern))
            self.space = SolutionSpace(solver, s.guess_size, basis, terms)
        self.attrs["projection"] = ("affine reduced matrices" if self.affine else "A(mu) V per solve") \
            if self.space is not None else "none"
        self.previous = None
        self.rebuild_next, self.reference_its = True, None
        self.pc_seconds, self.extra_seconds = 0.0, 0.0

    def _guess(self, mu, b):
        s = self.settings
        if s.initial_guess == "previous":
            return self.previous, (self.previous is not None)
        if s.initial_guess == "projection":
            theta = self.problem.theta(mu[None])[0] if self.affine else None
            return self.space.guess(b, theta), self.space.dim
        return None, 0

    def _attempt(self, mu, values, b, tuned, rebuild: bool):
        solver, s = self.solver, self.settings
        t0 = time.perf_counter()
        solver.set_values(values)
        if tuned:
            solver.configure(tuned, override=True)
        if s.preconditioner_reuse == "frozen":
            solver.reuse_preconditioner(not rebuild)
        x0, dim = self._guess(mu, b)
        if s.deflation == "solutions":
            # Before any solution, the right-hand side spans the space (PETSc's default Haar space is of
            # half the problem's size: its coarse LU would dwarf the solve).
            k = min(s.deflation_size, self.space.dim)
            solver.set_deflation_space(self.space.V[:, self.space.dim - k:] if k else b[:, None])
        t_pc = time.perf_counter()
        if s.deflation == "solutions":
            with solver.options(self.deflation_options, override=True):
                solver.setup()
        else:
            solver.setup()
        t1 = time.perf_counter()
        if rebuild:
            self.pc_seconds = t1 - t_pc
        x, info = solver.solve(b, x0)
        return x, info, t1 - t0, time.perf_counter() - t1, int(dim)

    def solve(self, mu, facts: SequenceFacts, i: int, tuned: dict | None):
        p, s = self.problem, self.settings
        t0 = time.perf_counter()
        # the first sample's assembly is timed for the stage's report (FullOrderModel.assembled)
        values, b = self.fom.assembled(p.operator_values, mu), p.rhs(mu, self.fom.pattern)
        t_assemble = time.perf_counter() - t0
        frozen = s.preconditioner_reuse == "frozen"
        rebuild = self.rebuild_next or not frozen
        x, info, setup, solve, dim = self._attempt(mu, values, b, tuned, rebuild)
        its = info.iterations
        if frozen and not rebuild and not info.converged:
            # A reused preconditioner must never cost a snapshot: solve again with a fresh one.
            x, info, setup2, solve2, dim = self._attempt(mu, values, b, tuned, True)
            its, setup, solve, rebuild = its + info.iterations, setup + setup2, solve + solve2, True
        if frozen:
            if rebuild:
                self.reference_its, self.extra_seconds = max(info.iterations, 1), 0.0
            else:
                self.extra_seconds += max(0, info.iterations - self.reference_its) * solve / max(its, 1)
            self.rebuild_next = (info.iterations > s.rebuild_factor * self.reference_its if s.rebuild_rule == "iterations"
                                 else self.extra_seconds >= self.pc_seconds)
        t2 = time.perf_counter()
        if info.converged:
            self.previous = x
            if self.space is not None:
                self.space.add(x)
        update = time.perf_counter() - t2
        facts.iterations[i], facts.setup_seconds[i], facts.solve_seconds[i] = its, t_assemble + setup + update, solve
        facts.pc_rebuilt[i], facts.guess_dim[i] = int(rebuild), dim
        u = self.solver.gather(x)
        return Sample(u, info.converged, info.reason, its, time.perf_counter() - t0)

    def close(self):
        solver = self.solver
        if self.space is not None:
            self.space.destroy()
        solver.reuse_preconditioner(False)
        if self._threads is not None:
            self._threads.restore_original_limits()
        if self.settings.deflation == "solutions":
            solver.ksp.getPC().reset()
            solver.configure({"pc_type": self.inner_pc}, override=True)
            solver.ksp.setOperators(solver.A)
