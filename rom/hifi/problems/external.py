"""Black-box solvers: a user's own executable run once per sample.

    problem:
      name: external
      command: "{python} {root}/examples/blackbox/poisson.py --mu {mu} --mesh {mesh} --out {out}"
      parameters: [kappa, x0]        # names, in the order of {mu}; bounds in the study's parameters section
      mesh: {file: meshes/square.msh}   # the nodes the solution lives on
      matrices: true                 # the command also writes {operator} and {rhs} (PETSc binary)
      transient: {dt: 0.01, steps: 50}  # the command writes a trajectory
      launcher: "/opt/fenicsx/bin/mpiexec -n {ranks}"   # optional: mpiexec, srun, none or a template
      inputs: [solver.py]            # optional: files whose digests enter the snapshots' trigger
      persistent: true               # optional: the command is a worker started once per chunk (below)

The command is split like a shell line (shlex) and run without a shell, in a fresh working directory
per sample, under `problem.launcher` when simulate.mpi_ranks R > 1 (default: `srun -n R` inside a SLURM
allocation, `mpiexec -n R` otherwise). Placeholders: {mu} (the values, comma-separated), each parameter
by its name ({kappa}), {out}, {operator}, {rhs}, {ranks}, {workdir}, {mesh} (the mesh file), {python}
(romflow's interpreter), {root} (romflow's repository) and {study_dir} (the study file's folder);
literal braces are doubled. The launcher, the command's executable and the inputs are checked when the
study is read (rom.hifi.problems.external_checks).

What the command writes at {out}, an HDF5 file:
    u            float64 (n_nodes,), or (steps + 1, n_nodes) for a transient problem: the solution at
                 the mesh's nodes, in the order of their tags (a gmsh file's order, meshio's `points`)
    times        optional (steps + 1,): checked against dt * k
    x            optional (n_nodes, dim): the coordinates of the nodes u is given at; a permutation of
                 the mesh's nodes is mapped to romflow's order, anything else is a failed sample
    attributes   optional on the root: converged (int, default 1), reason (str), iterations (int)
With `matrices: true` it also writes the operator A(mu) at {operator} and the right-hand side f(mu) at
{rhs} in PETSc's binary format (MatView / VecView on a binary viewer, n_nodes rows: Dirichlet rows
kept, e.g. as identity rows), from which romflow reads A(mu) on the P1 pattern of the mesh: what the
nonintrusive matrix EIM needs (entries of A(mu) at given positions, the matrices A(mu_m) at its seeds).

With `entries_command` (rom.hifi.problems.external_eim) a non-affine black box also delivers entries of
A(mu) and f(mu) without solving, per batch of parameters: the matrix EIM of both and an RB on it.

With `persistent: true` the command starts a worker once per chunk (under the launcher too) that answers
one JSON request line per sample on its stdin with one JSON reply line on its stdout, after writing {out}
in the format above (romflow/worker.py: the protocol and `serve`, a Python helper; rom.hifi.problems.
external_worker: romflow's side, restarts and timeouts). Its command takes no per-sample placeholders
({mu}, {out}, the parameter names).

A command that exits non-zero, times out or writes no valid `u` is a failed sample: its reason holds
the exit code, the error-like lines of its stderr and its tail; the other samples are kept. The X product is the P1 H1 product
K + M of the mesh (every node is a dof: the black box's boundary values included), M its mass matrix.
"""
from __future__ import annotations

import shlex
import shutil
import string
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .. import capabilities as cap
from ..capabilities import ParameterSpace, Sample
from ..discretization import fem, meshfile
from ..discretization.mesh import SimplexMesh
from .arguments import MESH_FILE, UNITS
from .base import P1Problem
from .external_checks import (
    check_launcher,
    command_environment,
    digest_inputs,
    dirichlet_rows,
    executable,
    failure_reason,
    launcher_prefix,
    node_order,
    resolve_inputs,
)

RESERVED = ("mu", "out", "operator", "rhs", "ranks", "workdir", "mesh", "python", "root")
PER_SAMPLE = ("mu", "out", "operator", "rhs")  # what a persistent worker's command cannot take


class ExternalError(RuntimeError):
    """A black-box run that delivered no usable output (one line: exit code, stderr tail)."""


def launcher(ranks: int, value: str | None = None, values: dict | None = None) -> list[str]:
    """The MPI launcher prefix for the user's command (`problem.launcher`): none for one rank."""
    return launcher_prefix(value, ranks, values or {})


CLASSID = {"mat": 1211216, "vec": 1211214}  # PETSc's binary file headers (MAT_FILE_CLASSID, VEC_FILE_CLASSID)


def read_petsc_binary(path, kind: str):
    """A matrix (scipy CSR) or vector in PETSc's binary format (MatView / VecView on a binary viewer:
    big-endian, 32- or 64-bit indices, real double values), read with numpy."""
    raw = Path(path).read_bytes()
    for index in (">i4", ">i8"):
        width = np.dtype(index).itemsize
        if len(raw) >= width and int(np.frombuffer(raw, index, 1)[0]) == CLASSID[kind]:
            break
    else:
        raise ValueError(f"no PETSc {kind} header")
    if kind == "vec":
        n = int(np.frombuffer(raw, index, 1, width)[0])
        values = np.frombuffer(raw, ">f8", offset=2 * width)
        if len(values) != n:
            raise ValueError(f"{len(values)} values; expected {n}")
        return values.astype(float)
    rows, cols, nnz = (int(v) for v in np.frombuffer(raw, index, 3, width))
    counts = np.frombuffer(raw, index, rows, 4 * width)
    indices = np.frombuffer(raw, index, nnz, (4 + rows) * width)
    values = np.frombuffer(raw, ">f8", offset=(4 + rows + nnz) * width)
    if counts.sum() != nnz or len(values) != nnz:
        raise ValueError(f"{counts.sum()} row entries and {len(values)} values; expected {nnz}")
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return sp.csr_matrix((values.astype(float), indices.astype(np.int64), indptr), shape=(rows, cols))


class External(P1Problem):
    """A black box delivering solutions only (capability `mesh`: snapshots, POD, POD+GP)."""

    name = "external"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH})
    black_box = True
    arguments = {
        "command": {"type": "string", "description": "the command run per sample (module docstring: placeholders)"},
        "parameters": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                       "uniqueItems": True, "default": [],
                       "description": "parameter names in the order of {mu} (bounds in the study's parameters section)"},
        "mesh": MESH_FILE,
        "matrices": {"type": "boolean", "default": False,
                     "description": "the command writes {operator} and {rhs} in PETSc binary format"},
        "operator_command": {"type": "string",
                             "description": "a command writing only {operator} and {rhs} (no solve), for the "
                                            "online entries of A(mu); default: command"},
        "transient": {"type": "object", "additionalProperties": False, "required": ["dt", "steps"],
                      "properties": {"dt": {"type": "number", "exclusiveMinimum": 0},
                                     "steps": {"type": "integer", "minimum": 1, "maximum": 100000}}},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 3600, "description": "seconds per sample"},
        "launcher": {"type": "string",
                     "description": "how the command runs on simulate.mpi_ranks > 1 ranks: mpiexec (the one on PATH), "
                                    "srun, none (the command starts its own ranks, e.g. with {ranks}) or a template "
                                    "such as '/opt/fenicsx/bin/mpiexec -n {ranks}'; default srun inside a SLURM "
                                    "allocation, else mpiexec"},
        "inputs": {"type": "array",
                   "items": {"anyOf": [{"type": "string"},
                                       {"type": "object", "required": ["file"], "additionalProperties": False,
                                        "properties": {"file": {"type": "string"}, "digest": {"type": "string"}}}]},
                   "description": "files the command reads (your solver script, its settings), relative to the study "
                                  "file: their digests enter the simulate trigger, so editing one reruns the "
                                  "snapshots"},
        "persistent": {"type": "boolean", "default": False,
                       "description": "the command starts a worker once per chunk that answers one request per "
                                      "sample over its stdin/stdout (romflow/worker.py: the protocol); default "
                                      "false: one process per sample"},
        "units": UNITS,
    }

    def __init__(self, args: dict):
        self.args = dict(args)
        self.units = args.get("units", "1")
        self.command = args["command"]
        self.names = list(args.get("parameters", []))
        self.timeout = float(args.get("timeout", 3600))
        self.persistent = bool(args.get("persistent", False))
        self._session = None
        mf = meshfile.read(args["mesh"]["file"], self.name)
        self.mesh_file = mf.path
        super().__init__(SimplexMesh(mf.nodes, mf.cells, np.zeros(len(mf.nodes), dtype=bool),
                                     order=np.arange(len(mf.nodes))))

    @classmethod
    def variant(cls, spec: dict):
        """The class of a black box's keys (the affine black box, `affine:`, is rom.hifi.problems.
        external_terms, chosen by the registry: that module builds on this one)."""
        if spec.get("transient"):
            return ExternalTransient
        return ExternalMatrices if spec.get("matrices") else cls

    @classmethod
    def from_arguments(cls, args):
        return cls.variant(args)(args)

    def arguments_used(self):
        return self.args

    @classmethod
    def parameter_space(cls, args: dict) -> ParameterSpace:
        names = tuple(args.get("parameters", []))
        return ParameterSpace(names, np.full((len(names), 2), np.nan),
                              used_by=tuple(f"problem.parameters[{i}]" for i in range(len(names))))

    @classmethod
    def resolve_paths(cls, args: dict, base_dir):
        """Study-relative paths: problem.inputs, and {study_dir} in the commands (the study file's folder)."""
        resolve_inputs(args, base_dir)

    @classmethod
    def check_arguments(cls, args: dict):
        if not args.get("command"):
            raise ValueError("problem external: command: missing; expected the command line of your solver, e.g. "
                             "'./solver --mu {mu} --out {out}'")
        if "mesh" not in args:
            raise ValueError("problem external: mesh: missing; expected mesh: {file: ...}, the mesh whose nodes carry "
                             "the solution the command writes")
        names = list(args.get("parameters", []))
        clash = [n for n in names if n in RESERVED]
        if clash:
            raise ValueError(f"problem external: parameters: {clash[0]!r} is a placeholder name; expected names other "
                             f"than {', '.join(RESERVED)}")
        known = set(RESERVED) | set(names)
        for key in ("command", "operator_command"):
            if key not in args:
                continue
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(args[key]) if f is not None]
            except ValueError as exc:
                raise ValueError(f"problem external: {key} = {args[key]!r}: {exc}; expected {{placeholders}} and "
                                 "doubled literal braces") from None
            unknown = [f for f in fields if f.split(".")[0].split("[")[0] not in known]
            if unknown:
                raise ValueError(f"problem external: {key}: unknown placeholder {{{unknown[0]}}}; expected some of "
                                 f"{', '.join('{' + k + '}' for k in (*RESERVED, *names))}")
        for key in ("command", "operator_command"):
            if args.get(key):
                try:
                    first = shlex.split(args[key])[:1]
                except ValueError as exc:
                    raise ValueError(f"problem external: {key} = {args[key]!r}: {exc}") from None
                if first:
                    executable(first[0], key, args[key])
        if "launcher" in args:
            check_launcher(args["launcher"])
        digest_inputs(args)
        if args.get("persistent"):
            fields = {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(args["command"])
                      if f is not None}
            per_sample = [f for f in (*PER_SAMPLE, *names) if f in fields]
            if per_sample:
                raise ValueError(f"problem external: persistent: true with {{{per_sample[0]}}} in command; expected "
                                 "a command that starts the worker once per chunk, without per-sample placeholders "
                                 "(mu and out come in each request line: romflow/worker.py), e.g. "
                                 "'{python} {study_dir}/solver.py --mesh {mesh}'")
            if args.get("matrices"):
                raise ValueError("problem external: persistent: true with matrices: true; expected one of them (a "
                                 "persistent worker delivers fields only, for now)")
        if args.get("transient") and args.get("matrices"):
            raise ValueError("problem external: matrices: true with a transient form; expected matrices only for a "
                             "stationary black box (the EIM and RB on its operator are stationary)")
        path = meshfile.ensure_mesh(args["mesh"], cls.name)
        meshfile.mesh_groups(path, cls.name)
        args["mesh"]["digest"] = meshfile.file_digest(path)

    @property
    def parameter_names(self) -> list[str]:
        return list(self.names)

    # -- inner products ------------------------------------------------------------------------------
    def energy_product(self, pattern):
        """X = K + M, the P1 H1 product on the mesh's nodes."""
        return self.mass_product(pattern) + pattern.sum_entries(
            fem.simplex_stiffness(self.mesh.nodes, self.mesh.cells[pattern.elements]))

    def mass_product(self, pattern):
        k = self.mesh.cells.shape[1]
        return pattern.sum_entries(fem.simplex_mass(self.mesh.volumes[pattern.elements], k))

    def full_field(self, mu, u):
        return np.asarray(u)

    # -- running the command ---------------------------------------------------------------------------
    def argv(self, template: str, mu: np.ndarray | None, workdir: Path, ranks: int) -> list[str]:
        """The command line for one sample (`mu`), or for a persistent worker (`mu` None: no per-sample values)."""
        from rom.paths import ROOT

        values = {"ranks": ranks, "workdir": workdir, "mesh": self.mesh_file, "python": sys.executable, "root": ROOT}
        if mu is not None:
            mu = np.atleast_1d(np.asarray(mu, dtype=float))
            values.update({"mu": ",".join(repr(float(v)) for v in mu), "out": workdir / "solution.h5",
                           "operator": workdir / "operator.petsc", "rhs": workdir / "rhs.petsc",
                           **{n: repr(float(v)) for n, v in zip(self.names, mu)}})
        return (launcher(ranks, self.args.get("launcher"), values)
                + [tok.format_map(values) for tok in shlex.split(template)])

    def execute(self, template: str, mu, workdir: Path, ranks: int) -> tuple[bool, str, float]:
        """Run one command: (exited 0, reason if not, seconds)."""
        argv = self.argv(template, mu, workdir, ranks)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=self.timeout,
                                  env=command_environment())
        except subprocess.TimeoutExpired:
            return False, f"TIMEOUT: no result after {self.timeout:g} s", time.perf_counter() - t0
        except OSError as exc:
            return False, f"NOT_RUN: {argv[0]}: {exc.strerror or exc}", time.perf_counter() - t0
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            return False, f"EXIT_{proc.returncode}: {failure_reason(proc.stderr or proc.stdout, 300)}", seconds
        return True, "", seconds

    def expected_shape(self) -> tuple[int, ...]:
        return (self.mesh.n_nodes,)

    @contextmanager
    def session(self, ranks: int = 1):
        """A persistent worker for the samples run inside (`persistent: true`; one process per sample
        otherwise): started at the first sample, stopped on exit (rom.hifi.problems.external_worker)."""
        if not self.persistent or self._session is not None:
            yield self
            return
        from .external_worker import WorkerSession

        self._session = WorkerSession(self, ranks)
        try:
            yield self
        finally:
            session, self._session = self._session, None
            session.close()
            self.worker_stats = {"worker_starts": session.starts, "worker_requests": session.requests}

    def run(self, mu, ranks: int = 1):
        """One sample through the black box: a rom.hifi.capabilities.Sample (failed with its reason when the
        command fails or its output is unusable). A persistent black box answers it in the open session (a
        worker of its own for this sample outside one)."""
        if self.persistent and self._session is None:
            with self.session(ranks):
                return self.run(mu, ranks)
        with (tempfile.TemporaryDirectory(prefix="romflow-external-") if self._session is None
              else nullcontext(self._session.sample_dir())) as tmp:
            workdir = Path(tmp)
            if self._session is None:
                ok, reason, seconds = self.execute(self.command, mu, workdir, ranks)
            else:
                ok, reason, seconds = self._session.solve(mu, workdir)
            try:
                if not ok:
                    return Sample(None, False, reason, 0, seconds)
                u, attrs = self._read_solution(workdir / "solution.h5")
                self._remember_matrices(mu, workdir)
            except ExternalError as exc:
                return Sample(None, False, str(exc), 0, seconds)
            finally:
                if self._session is not None:
                    shutil.rmtree(workdir, ignore_errors=True)
        converged = bool(int(attrs.get("converged", 1)))
        reason = str(attrs.get("reason", "EXTERNAL" if converged else "EXTERNAL_NOT_CONVERGED"))
        return Sample(u if converged else None, converged, reason, int(attrs.get("iterations", 0)), seconds)

    def _read_solution(self, path: Path):
        import h5py

        if not path.is_file():
            raise ExternalError("NO_OUTPUT: the command exited 0 but wrote no solution file {out}" if self._session is None else "NO_OUTPUT: the worker replied ok but wrote no solution file {out}")
        try:
            with h5py.File(path, "r") as h5:
                if "u" not in h5:
                    raise ExternalError(f"BAD_OUTPUT: no dataset 'u' in {{out}} (it has: {', '.join(h5) or 'nothing'})")
                u = np.asarray(h5["u"], dtype=float)
                attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
                times = np.asarray(h5["times"]) if "times" in h5 else None
                x = np.asarray(h5["x"], dtype=float) if "x" in h5 else None
        except OSError as exc:
            raise ExternalError(f"BAD_OUTPUT: {{out}} is not an HDF5 file ({exc})") from None
        if u.shape != self.expected_shape():
            raise ExternalError(f"BAD_OUTPUT: u has shape {u.shape}; expected {self.expected_shape()} (one value per "
                                "mesh node" + (" and time step)" if len(self.expected_shape()) == 2 else ")"))
        if not np.isfinite(u).all():
            raise ExternalError("BAD_OUTPUT: u has NaN or infinite values")
        if x is not None:  # the black box's node coordinates: the same nodes, maybe in another order
            try:
                order = node_order(x, self.mesh.nodes)
            except ValueError as exc:
                raise ExternalError(f"BAD_COORDINATES: {exc}") from None
            if order is not None:
                mapped = np.empty_like(u)
                mapped[..., order] = u
                u = mapped
                self.node_order = "permuted"  # recorded once by the simulate stage
        if times is not None and hasattr(self, "times") and (
                times.shape != self.times.shape or not np.allclose(times, self.times, rtol=1e-9, atol=0)):
            raise ExternalError(f"BAD_OUTPUT: times {np.asarray(times)[:3].tolist()}... differ from dt * k "
                                f"({self.times[:3].tolist()}...)")
        return u, attrs

    def _remember_matrices(self, mu, workdir):
        """A black box without matrices delivers none."""


class ExternalMatrices(External):
    """A black box that also delivers A(mu) and f(mu) with every solve (capabilities `stationary`,
    `entry_probe`): the matrices are read onto the mesh's P1 pattern, checked (pattern, Dirichlet rows)
    and their entries serve the library's matrix EIM. The pipeline's `eim` and `reduced_basis` stages need
    entries without a solve (`entries_command`, rom.hifi.problems.external_eim) or affine terms
    (rom.hifi.problems.external_terms): every online query would otherwise be a full run."""

    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.ENTRY_PROBE})

    @cached_property
    def _matrices(self) -> dict:
        return {}

    def _remember_matrices(self, mu, workdir):
        self._matrices[self._key(mu)] = self._read_matrices(workdir)

    @staticmethod
    def _key(mu):
        return tuple(np.round(np.atleast_1d(np.asarray(mu, dtype=float)), 15))

    def _read_matrices(self, workdir: Path):
        A_path, b_path = workdir / "operator.petsc", workdir / "rhs.petsc"
        if not A_path.is_file() or not b_path.is_file():
            raise ExternalError("NO_MATRICES: matrices: true, but the command wrote no {operator} or no {rhs}")
        try:
            A, b = read_petsc_binary(A_path, "mat"), read_petsc_binary(b_path, "vec")
        except Exception as exc:  # a malformed or truncated file
            raise ExternalError(f"BAD_MATRICES: cannot read {{operator}}/{{rhs}} as PETSc binary ({exc})") from None
        n = self.mesh.n_nodes
        if A.shape != (n, n) or b.shape != (n,):
            raise ExternalError(f"BAD_MATRICES: operator {A.shape} and rhs {b.shape}; expected ({n}, {n}) and ({n},) "
                                "(one row per mesh node)")
        return A.tocoo(), b

    def matrices(self, mu):
        """(A(mu) as COO, f(mu)) from the black box (run with `operator_command` when given)."""
        key = self._key(mu)
        if key not in self._matrices:
            with tempfile.TemporaryDirectory(prefix="romflow-external-") as tmp:
                workdir = Path(tmp)
                ok, reason, _ = self.execute(self.args.get("operator_command") or self.command, mu, workdir, 1)
                if not ok:
                    raise ExternalError(f"problem external: operator at mu = {list(np.atleast_1d(mu))}: {reason}")
                self._matrices[key] = self._read_matrices(workdir)
        return self._matrices[key]

    def operator_values(self, mu, pattern):
        A, _ = self.matrices(mu)
        pos, found = pattern.positions(A.row.astype(np.int64), A.col.astype(np.int64))
        outside = ~found & (A.data != 0)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise ExternalError(f"problem external: the operator has {outside.sum()} nonzeros coupling nodes that share "
                                f"no cell, the first at (row, col) = ({int(A.row[i])}, {int(A.col[i])}); expected a "
                                "nodal discretization on problem.mesh (P1 sparsity)")
        if not getattr(self, "_dirichlet_checked", False):  # once: the node order does not change per sample
            try:
                dirichlet_rows(A, self.mesh.nodes, self.mesh.cells, "problem external: the operator {operator}")
            except ValueError as exc:
                raise ExternalError(str(exc)) from None
            self._dirichlet_checked = True
        keep = pos >= 0
        return np.bincount(pos[keep], weights=A.data[keep], minlength=pattern.nnz)

    def rhs(self, mu, pattern):
        return self.matrices(mu)[1][pattern.row_start:pattern.row_stop].copy()

    def entry_probe(self, pattern, slots):
        """A(mu)[slots] for a batch of parameters, read from the black box's delivered operators."""
        slots = np.asarray(slots, dtype=np.int64)
        return lambda mu: np.stack([self.operator_values(m, pattern)[slots] for m in np.atleast_2d(mu)])


class ExternalTransient(External):
    """A black box delivering trajectories (capability `transient`): u (steps + 1, n_nodes)."""

    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.TRANSIENT})

    def __init__(self, args):
        self.dt, self.steps = float(args["transient"]["dt"]), int(args["transient"]["steps"])
        super().__init__(args)

    @property
    def times(self) -> np.ndarray:
        return self.dt * np.arange(self.steps + 1)

    def expected_shape(self):
        return (self.steps + 1, self.mesh.n_nodes)

    def initial_state(self, mu, n_rows: int) -> np.ndarray:
        """The black box's state at t = 0 (one run)."""
        s = self.run(mu)
        if not s.converged:
            raise ExternalError(f"problem external: initial state at mu = {list(np.atleast_1d(mu))}: {s.reason}")
        return s.u[0, :n_rows]
