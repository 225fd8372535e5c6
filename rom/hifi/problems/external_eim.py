"""A non-affine black box with an entries mode: the nonintrusive matrix EIM of A(mu) and f(mu).

    problem:
      name: external
      command: "{python} {study_dir}/solver.py --mu {mu} --mesh {mesh} --out {out}"       # snapshots
      entries_command: "{python} {study_dir}/solver.py --mesh {mesh} --entries {request} --out {entries}"
      parameters: [amplitude, center]
      mesh: {file: square.msh}

A code whose operator is not affine in its parameters (a conductivity field that moves with mu, a
material law evaluated per element) cannot export terms. What it can always do is assemble A(mu) and
f(mu) and hand over some of their entries. `entries_command` is that mode: it runs once per batch of
parameters, reads the HDF5 file {request}

    mu      float64 (n, d)   the parameters, in the order of problem.parameters
    rows    int64 (K,)       positions (rows[k], cols[k]) of A(mu) wanted, in the mesh's node numbering
    cols    int64 (K,)
    f_rows  int64 (L,)       rows of f(mu) wanted

and writes the HDF5 file {entries} with `A` float64 (n, K) and `f` float64 (n, L): A(mu_i)[rows[k],
cols[k]] and f(mu_i)[f_rows[l]], with the operator and load the code solves with (Dirichlet rows and
columns eliminated symmetrically with the identity on the diagonal, as PETSc's MatZeroRowsColumns or
dolfinx's assemble_matrix with bcs do). An entry outside the code's sparsity is 0.

romflow asks for every entry of the mesh's P1 pattern at the EIM's training parameters (one call: the
matrices whose entries the EIM interpolates), and online for the M + 1 magic entries of A and of f at
the query parameters (one call per batch of queries). The code assembles what it needs for that; its
cost is the online cost of a query (the reduced solve costs microseconds): the entries mode should
assemble only the elements around the wanted entries where it can.

Batches are cached per parameter array (the RB greedy and SCM ask for the same training set more than
once). The RB certified on top of it is the RB of the EIM-affine model A_M(mu) = sum_m beta_m(mu) q_m
(rom.models.eim_rb.BlackBoxEIMCoefficients: what is rigorous and what is measured on the training set).
"""
from __future__ import annotations

import shlex
import string
import tempfile
import threading
from pathlib import Path

import numpy as np

from .. import capabilities as cap
from .external import RESERVED, External, ExternalError, executable
from .external_checks import dirichlet_rows

ENTRIES_ARGUMENTS = {
    "entries_command": {"type": "string",
                        "description": "non-affine black box: a command that reads {request} (mu, rows, cols, "
                                       "f_rows) and writes the entries of A(mu) and f(mu) at {entries} "
                                       "(rom/hifi/problems/external_eim.py)"},
}
PLACEHOLDERS = ("request", "entries")


class ExternalEntries(External):
    """A black box whose `entries_command` delivers entries of A(mu) and f(mu) (capabilities `stationary`,
    `entry_probe`, `operator_entries`): the matrix EIM of both and the RB on the EIM-affine model."""

    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.ENTRY_PROBE, cap.OPERATOR_ENTRIES})
    cache_size = 8  # batches of entries kept (the greedy's training set, SCM's, the test set)

    def __init__(self, args):
        super().__init__(args)
        self._cache: dict = {}
        self._lock = threading.Lock()
        self._dirichlet_checked = False

    @classmethod
    def check_arguments(cls, args: dict):
        super().check_arguments(args)
        for key in ("transient", "matrices", "persistent"):
            if args.get(key):
                raise ValueError(f"problem external: entries_command with {key}: true; expected a stationary black "
                                 "box whose entries_command alone delivers the matrices' entries")
        template = args["entries_command"]
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise ValueError(f"problem external: entries_command = {template!r}: {exc}; expected {{placeholders}} "
                             "and doubled literal braces") from None
        known = {*RESERVED, *args.get("parameters", []), *PLACEHOLDERS} - {"mu", "out", "operator", "rhs"}
        unknown = [f for f in fields if f.split(".")[0].split("[")[0] not in known]
        if unknown:
            raise ValueError(f"problem external: entries_command: unknown placeholder {{{unknown[0]}}}; expected "
                             f"some of {', '.join('{' + k + '}' for k in sorted(known))} (the parameters come in "
                             "{request})")
        missing = [p for p in PLACEHOLDERS if p not in fields]
        if missing:
            raise ValueError(f"problem external: entries_command: no {{{missing[0]}}}; expected both {{request}} "
                             "(the file romflow writes) and {entries} (the file the command writes)")
        try:
            first = shlex.split(template)[:1]
        except ValueError as exc:
            raise ValueError(f"problem external: entries_command = {template!r}: {exc}") from None
        if first:
            executable(first[0], "entries_command", template)

    # -- the entries mode ----------------------------------------------------------------------------
    def entries(self, mu, rows, cols, f_rows) -> tuple[np.ndarray, np.ndarray]:
        """(A (n, K), f (n, L)): A(mu_i)[rows, cols] and f(mu_i)[f_rows] from one run of entries_command."""

        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        rows, cols, f_rows = (np.asarray(a, dtype=np.int64).ravel() for a in (rows, cols, f_rows))
        key = (mu.tobytes(), mu.shape, rows.tobytes(), cols.tobytes(), f_rows.tobytes())
        with self._lock:  # predict(threads > 1) queries from several threads: one run per batch
            if key not in self._cache:
                self._cache[key] = self._run_entries(mu, rows, cols, f_rows)
                while len(self._cache) > self.cache_size:
                    self._cache.pop(next(iter(self._cache)))
            return self._cache[key]

    def _run_entries(self, mu, rows, cols, f_rows):
        import h5py

        with tempfile.TemporaryDirectory(prefix="romflow-external-entries-") as tmp:
            workdir = Path(tmp)
            request, out = workdir / "request.h5", workdir / "entries.h5"
            with h5py.File(request, "w") as h5:
                h5["mu"], h5["rows"], h5["cols"], h5["f_rows"] = mu, rows, cols, f_rows
            template = self.args["entries_command"]
            for name, path in (("request", request), ("entries", out)):
                template = template.replace("{" + name + "}", str(path).replace("{", "{{").replace("}", "}}"))
            ok, reason, _ = self.execute(template, None, workdir, 1)
            if not ok:
                raise ExternalError(f"problem external: entries_command at {len(mu)} parameter(s): {reason}")
            try:
                with h5py.File(out, "r") as h5:
                    A, f = np.asarray(h5["A"], dtype=float), np.asarray(h5["f"], dtype=float)
            except (OSError, KeyError) as exc:
                raise ExternalError(f"problem external: entries_command wrote no readable {{entries}} with datasets A "
                                    f"and f ({exc})") from None
        for name, value, shape in (("A", A, (len(mu), len(rows))), ("f", f, (len(mu), len(f_rows)))):
            if value.shape != shape:
                raise ExternalError(f"problem external: entries_command: {name} has shape {value.shape}; expected "
                                    f"{shape} (one row per parameter of the request, one column per position)")
            bad = ~np.isfinite(value)
            if bad.any():
                i, k = np.argwhere(bad)[0]
                raise ExternalError(f"problem external: entries_command: {name}[{i}, {k}] = {value[i, k]} at mu = "
                                    f"{mu[i].tolist()}; expected finite entries")
        A.flags.writeable = f.flags.writeable = False  # cached: callers get read-only views
        return A, f

    def _pattern_positions(self, pattern):
        rows = np.repeat(np.arange(pattern.n_rows, dtype=np.int64), np.diff(pattern.indptr)) + pattern.row_start
        return rows, pattern.indices.astype(np.int64)

    def matrices_at(self, mu, pattern) -> tuple[np.ndarray, np.ndarray]:
        """(A(mu_i) on the P1 pattern (n, nnz), f(mu_i) at every node (n, n_nodes)) for a batch of
        parameters, from one run of entries_command; the first matrix's Dirichlet rows are checked
        against the mesh's boundary (external_checks.dirichlet_rows)."""
        import scipy.sparse as sp

        rows, cols = self._pattern_positions(pattern)
        A, f = self.entries(mu, rows, cols, np.arange(self.mesh.n_nodes))
        if len(A) and not self._dirichlet_checked and pattern.n_rows == self.mesh.n_nodes:
            A0 = sp.csr_matrix((A[0], pattern.indices, pattern.indptr))
            # The operator-norm errors of the EIM (rom.models.eim_rb.operator_errors) and SCM read A as
            # symmetric: a one-sided elimination (MatZeroRows) is refused, as for exported terms.
            if abs(A0 - A0.T).max() > 1e-10 * max(np.abs(A0.data).max(initial=0.0), np.finfo(float).tiny):
                raise ExternalError("problem external: entries_command's A is not symmetric; expected Dirichlet rows "
                                    "and columns eliminated symmetrically (MatZeroRowsColumns, dolfinx's bcs) of a "
                                    "symmetric coercive form")
            try:
                dirichlet_rows(A0, self.mesh.nodes, self.mesh.cells, "problem external: entries_command's A")
            except ValueError as exc:
                raise ExternalError(str(exc)) from None
            self._dirichlet_checked = True  # once: the code's node order does not change per parameter
        return A, f

    # -- capability `stationary` and `entry_probe` -----------------------------------------------------
    def operator_values(self, mu, pattern):
        return self.matrices_at(mu, pattern)[0][0].copy()

    def rhs(self, mu, pattern):
        return self.matrices_at(mu, pattern)[1][0][pattern.row_start:pattern.row_stop].copy()

    def entry_probe(self, pattern, slots):
        """A(mu)[slots] (n, len(slots)) at CSR positions `slots`, one entries_command run per batch."""
        rows, cols = self._pattern_positions(pattern)
        slots = np.asarray(slots, dtype=np.int64)
        r, c = rows[slots], cols[slots]
        return lambda mu: self.entries(mu, r, c, np.empty(0, dtype=np.int64))[0]


ExternalEntries.arguments = {**External.arguments, **ENTRIES_ARGUMENTS}
