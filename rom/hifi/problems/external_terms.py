"""The affine black box: a user's solver that assembles its operator per term, run once to export the terms.

    problem:
      name: external
      command: "{python} solver.py --mu {mu} --mesh {mesh} --out {out}"     # one solve per sample (snapshots)
      terms_command: "{python} solver.py --mesh {mesh} --export-terms {terms}"  # run once: the terms
      parameters: [k_core, k_shell]
      mesh: {file: meshes/square.msh}
      affine:
        operator: {core: k_core, shell: "k_shell**2"}   # theta_q(mu): one expression per operator term
        rhs: {source: 1.0}                              # phi_p(mu): one expression per load term
        x_reference: {k_core: 1.0, k_shell: 1.0}        # optional: X = sum_q theta_q(mu_ref) A_q, min-theta bound
        tolerance: 1.0e-6                               # the solver's relative tolerance (the terms check)

theta_q and phi_p are expressions of the parameters: numbers, parameter names, + - * / **, parentheses
and exp, log, sqrt; checked before any job (one line naming the key).

What `terms_command` writes into the folder {terms} (it exists, empty), either
  - one PETSc binary file per term (MatView / VecView on a binary viewer): operator_<name>.petsc for
    each operator term and rhs_<name>.petsc for each load term, names as in the study; or
  - one HDF5 file terms.h5 with a group operator/<name> per operator term holding the CSR datasets
    data, indices, indptr and shape (scipy's layout), and a dataset rhs/<name> (n_nodes,) per load term.
Rows and columns are the mesh's nodes in node order (n_nodes of them, every node a dof).

Dirichlet conditions: the delivered A(mu) = sum_q theta_q(mu) A_q must carry them, as rows and columns
eliminated symmetrically (zero) with a positive diagonal on the constrained rows, and f_p zero there
(homogeneous data). Put the identity on the constrained rows in one term, or in every term: both give
the solver's solution. What the coercivity bound needs:
  - min-theta (with affine.x_reference): every A_q symmetric positive semidefinite (checked: symmetric,
    and semidefinite by Gershgorin or, up to 4000 nodes, a dense eigenvalue check), X = sum_q
    theta_q(mu_ref) A_q positive definite (so at least one term carries the identity rows), and
    theta_q(mu) > 0 over the box. Then v^T A(mu) v >= min_q theta_q(mu)/theta_q(mu_ref) v^T X v for
    every v, constrained rows included: the bound is exact algebra on the delivered terms, whichever
    term holds the identity rows. Rows eliminated on one side only (not symmetric) are refused.
  - otherwise X is the P1 H1 product K + M on every node and the coercivity lower bound comes from SCM
    (rb.scm.enabled: auto), which needs the terms symmetric only.

The snapshots still come from the user's solver (`command`, one run per sample). At the first sample a
process runs, romflow solves sum_q theta_q A_q u = sum_p phi_p f_p with the delivered terms and compares:
a relative difference (X-norm) above affine.tolerance is a one-line error naming the terms; the value is
recorded in that sample's `reason` ("EXTERNAL; terms check: relative difference ...").
"""
from __future__ import annotations

import ast
import math
import string
import tempfile
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ...errors import UserError
from .. import capabilities as cap
from ..capabilities import Sample
from .external import RESERVED, External, ExternalError, read_petsc_binary
from .external_checks import dirichlet_rows


class TermsMismatch(ExternalError, UserError):
    """The delivered terms do not reproduce the solver's own solution (one line naming the terms)."""


FUNCTIONS = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt}
OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)

AFFINE_ARGUMENTS = {
    "terms_command": {"type": "string",
                      "description": "affine black box: a command writing each term into the folder {terms} "
                                     "(rom/hifi/problems/external_terms.py)"},
    "affine": {"type": "object", "additionalProperties": False, "required": ["operator", "rhs"],
               "properties": {
                   "operator": {"type": "object", "minProperties": 1,
                                "additionalProperties": {"type": ["string", "number"]},
                                "description": "operator term name -> theta_q(mu) (an expression of the parameters)"},
                   "rhs": {"type": "object", "minProperties": 1, "additionalProperties": {"type": ["string", "number"]},
                           "description": "load term name -> phi_p(mu)"},
                   "x_reference": {"type": "object", "additionalProperties": {"type": "number"},
                                   "description": "parameters mu_ref: X = sum_q theta_q(mu_ref) A_q and the "
                                                  "min-theta coercivity bound"},
                   "tolerance": {"type": "number", "exclusiveMinimum": 0, "default": 1.0e-6,
                                 "description": "relative X-norm difference allowed between the solver's "
                                                "solution and romflow's solve of the delivered terms"},
               }},
}


def _term_name_ok(name) -> bool:
    return isinstance(name, str) and name.isidentifier()


def compile_expression(text, names, key: str):
    """A function mu (n, d) -> (n,) of the expression `text` (numbers, parameter names, + - * / **,
    parentheses, exp/log/sqrt); ValueError (one line naming `key`) otherwise."""
    src = repr(float(text)) if isinstance(text, (int, float)) and not isinstance(text, bool) else str(text)
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"{key} = {src!r}: not an expression ({exc.msg}); expected numbers, parameter names, "
                         "+ - * / **, parentheses, exp/log/sqrt") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Load, *OPS)):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            continue
        if isinstance(node, ast.Name) and (node.id in names or node.id in FUNCTIONS):
            continue
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                and len(node.args) == 1 and not node.keywords):
            continue
        what = (f"unknown name {node.id!r}" if isinstance(node, ast.Name)
                else f"{type(node).__name__.lower()} not allowed")
        raise ValueError(f"{key} = {src!r}: {what}; expected numbers, the parameters ({', '.join(names) or 'none'}), "
                         "+ - * / **, parentheses, exp/log/sqrt")
    for node in ast.walk(tree):  # a bare function name is not a value
        if isinstance(node, ast.Name) and node.id in FUNCTIONS and node.id not in names:
            parents = [p for p in ast.walk(tree) if isinstance(p, ast.Call) and p.func is node]
            if not parents:
                raise ValueError(f"{key} = {src!r}: {node.id} without an argument; expected {node.id}(...)")
    # Numbers become float64 names: numpy's arithmetic throughout (no big integers such as 9**9**9, no
    # complex powers, no ZeroDivisionError), so that every failure shows as a non-finite value below.
    constants = {}

    class _Floats(ast.NodeTransformer):
        def visit_Constant(self, node):
            name = f"_c{len(constants)}"
            constants[name] = np.float64(node.value)
            return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node)

    code = compile(ast.fix_missing_locations(_Floats().visit(tree)), key, "eval")
    names = list(names)

    def f(mu):
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        env = {"__builtins__": {}, **FUNCTIONS, **constants, **{n: mu[:, i] for i, n in enumerate(names)}}
        with np.errstate(all="ignore"):
            value = np.broadcast_to(np.asarray(eval(code, env), dtype=float), (len(mu),)).copy()  # noqa: S307
        bad = np.flatnonzero(~np.isfinite(value))
        if len(bad):
            raise ValueError(f"{key} = {src!r}: {value[bad[0]]} at {dict(zip(names, mu[bad[0]].tolist()))}; "
                             "expected a finite value everywhere in the parameter box")
        return value
    return f


def _psd(A: sp.csr_matrix) -> bool:
    """Sufficient (Gershgorin) or, for small matrices, exact check that a symmetric A is semidefinite, to
    the rounding of its own assembly: a row of k entries, each summed from a few element contributions,
    is off by about k u max|A| (a P1 stiffness row sums to zero exactly in exact arithmetic), and LAPACK's
    smallest eigenvalue by about n u ||A||."""
    A = sp.csr_matrix(A)
    u = np.finfo(float).eps / 2
    diag = A.diagonal()
    off = np.asarray(abs(A).sum(axis=1)).ravel() - np.abs(diag)
    scale = max(np.abs(A.data).max(initial=0.0), np.finfo(float).tiny)
    k = int(np.diff(A.indptr).max(initial=1))
    if np.all(diag >= off - 8 * k * u * scale):
        return True
    if A.shape[0] <= 4000:
        return bool(np.linalg.eigvalsh(A.toarray()).min() >= -8 * A.shape[0] * u * scale)
    return False


class ExternalAffine(External):
    """A black box that exports its affine terms A_q, f_p once (capabilities `stationary`, `affine`):
    certified RB on the delivered terms, snapshots from the user's solver."""

    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.AFFINE})

    @classmethod
    def variant(cls, spec: dict):
        return affine_variant(spec)

    def __init__(self, args):
        super().__init__(args)
        spec = args["affine"]
        self.operator_names, self.rhs_names = list(spec["operator"]), list(spec["rhs"])
        self._theta = [compile_expression(v, self.names, f"problem.affine.operator.{k}")
                       for k, v in spec["operator"].items()]
        self._phi = [compile_expression(v, self.names, f"problem.affine.rhs.{k}") for k, v in spec["rhs"].items()]
        self.tolerance = float(spec.get("tolerance", 1e-6))
        self.terms_check = None  # (relative difference, mu) after the first sample

    @classmethod
    def parameter_functions(cls, args: dict):
        """An instance without mesh or solver run, for theta(mu) and phi(mu), the study file's expressions
        compiled as __init__ compiles them (romflow.open); not for solves."""
        self = object.__new__(cls)  # an alternate constructor: no mesh, no solver
        self.args = dict(args)
        self.names = list(args.get("parameters", []))
        spec = args["affine"]
        self.operator_names, self.rhs_names = list(spec["operator"]), list(spec["rhs"])
        self._theta = [compile_expression(v, self.names, f"problem.affine.operator.{k}") for k, v in spec["operator"].items()]
        self._phi = [compile_expression(v, self.names, f"problem.affine.rhs.{k}") for k, v in spec["rhs"].items()]
        return self

    # -- study-file checks (before any job) ----------------------------------------------------------
    @classmethod
    def check_arguments(cls, args: dict):
        super().check_arguments(args)
        names = list(args.get("parameters", []))
        if args.get("transient") or args.get("matrices"):
            raise ValueError("problem external: affine with " + ("transient" if args.get("transient") else
                             "matrices: true") + "; expected the affine terms alone (terms_command), for a stationary "
                             "black box")
        template = args.get("terms_command")
        if not template:
            raise ValueError("problem external: terms_command: missing; expected the command that writes the affine "
                             "terms into {terms}, e.g. './solver --export-terms {terms}'")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise ValueError(f"problem external: terms_command = {template!r}: {exc}; expected {{placeholders}} "
                             "and doubled literal braces") from None
        known = {*RESERVED, *names, "terms"}
        unknown = [f for f in fields if f.split(".")[0].split("[")[0] not in known]
        if unknown:
            raise ValueError(f"problem external: terms_command: unknown placeholder {{{unknown[0]}}}; expected some "
                             f"of {', '.join('{' + k + '}' for k in sorted(known))}")
        if "terms" not in fields:
            raise ValueError("problem external: terms_command: no {terms}; expected the folder placeholder {terms} "
                             "the command writes the terms into")
        spec = args["affine"]
        for part in ("operator", "rhs"):
            for k, v in spec[part].items():
                if not _term_name_ok(k):
                    raise ValueError(f"problem.affine.{part}.{k}: not a term name; expected letters, digits and _ "
                                     "(the file name operator_<name>.petsc)")
                compile_expression(v, names, f"problem.affine.{part}.{k}")
        ref = spec.get("x_reference")
        if ref is not None:
            missing = [n for n in names if n not in ref]
            extra = [n for n in ref if n not in names]
            if missing or extra:
                raise ValueError(f"problem.affine.x_reference: {'missing ' + missing[0] if missing else 'unknown ' + extra[0]}"
                                 f"; expected a value for each parameter ({', '.join(names)})")
            mu = np.array([[float(ref[n]) for n in names]])
            for k, v in spec["operator"].items():
                t = compile_expression(v, names, f"problem.affine.operator.{k}")(mu)[0]
                if not t > 0:
                    raise ValueError(f"problem.affine.operator.{k}: theta = {t:g} at x_reference; expected > 0 "
                                     "(X = sum_q theta_q(mu_ref) A_q)")

    # -- the affine structure ------------------------------------------------------------------------
    def theta(self, mu) -> np.ndarray:
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        return np.stack([t(mu) for t in self._theta], axis=1)

    def phi(self, mu) -> np.ndarray:
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        return np.stack([p(mu) for p in self._phi], axis=1)

    @cached_property
    def delivered_terms(self) -> tuple[list[sp.csr_matrix], np.ndarray]:
        """(A_q as CSR, f_p (P, n)) from one run of terms_command."""
        n = self.mesh.n_nodes
        with tempfile.TemporaryDirectory(prefix="romflow-external-terms-") as tmp:
            workdir = Path(tmp)
            folder = workdir / "terms"
            folder.mkdir()
            escaped = str(folder).replace("{", "{{").replace("}", "}}")
            template = self.args["terms_command"].replace("{terms}", escaped)
            mu = self._reference() if self._reference() is not None else np.ones(len(self.names))
            ok, reason, _ = self.execute(template, mu, workdir, 1)
            if not ok:
                raise ExternalError(f"problem external: terms_command: {reason}")
            A, f = self._read_terms(folder)
        for name, Aq in zip(self.operator_names, A):
            if Aq.shape != (n, n):
                raise ExternalError(f"problem external: operator term {name}: shape {Aq.shape}; expected ({n}, {n}) "
                                    "(one row per mesh node)")
        for name, fp in zip(self.rhs_names, f):
            if fp.shape != (n,):
                raise ExternalError(f"problem external: load term {name}: shape {fp.shape}; expected ({n},)")
        return A, np.stack(f)

    def _read_terms(self, folder: Path):
        h5 = folder / "terms.h5"
        try:
            if h5.is_file():
                import h5py

                with h5py.File(h5, "r") as fh:
                    A = []
                    for name in self.operator_names:
                        if f"operator/{name}" not in fh:
                            raise ExternalError(f"problem external: terms_command: no group operator/{name} in "
                                                "terms.h5; expected one per problem.affine.operator term")
                        g = fh[f"operator/{name}"]
                        A.append(sp.csr_matrix((np.asarray(g["data"], float), np.asarray(g["indices"]),
                                                np.asarray(g["indptr"])), shape=tuple(int(s) for s in g["shape"][()])))
                    f = []
                    for name in self.rhs_names:
                        if f"rhs/{name}" not in fh:
                            raise ExternalError(f"problem external: terms_command: no dataset rhs/{name} in terms.h5; "
                                                "expected one per problem.affine.rhs term")
                        f.append(np.asarray(fh[f"rhs/{name}"], dtype=float))
                return A, f
            A, f = [], []
            for kind, names, out in (("mat", self.operator_names, A), ("vec", self.rhs_names, f)):
                for name in names:
                    path = folder / f"{'operator' if kind == 'mat' else 'rhs'}_{name}.petsc"
                    if not path.is_file():
                        raise ExternalError(f"problem external: terms_command wrote no {{terms}}/{path.name} (nor "
                                            "terms.h5); expected one file per term of problem.affine")
                    out.append(sp.csr_matrix(read_petsc_binary(path, kind)) if kind == "mat"
                               else read_petsc_binary(path, kind))
            return A, f
        except ExternalError:
            raise
        except Exception as exc:  # a malformed file
            raise ExternalError(f"problem external: terms_command: cannot read the terms ({exc})") from None

    def _on_pattern(self, A: sp.spmatrix, pattern, what: str) -> np.ndarray:
        A = A.tocoo()
        pos, found = pattern.positions(A.row.astype(np.int64), A.col.astype(np.int64))
        outside = ~found & (A.data != 0)
        if outside.any():
            raise ExternalError(f"problem external: {what} has {outside.sum()} nonzeros coupling nodes that share no "
                                "cell; expected a nodal discretization on problem.mesh (P1 sparsity)")
        keep = pos >= 0
        return np.bincount(pos[keep], weights=A.data[keep], minlength=pattern.nnz)

    def operator_terms(self, pattern) -> np.ndarray:
        A, _ = self.delivered_terms
        for name, Aq in zip(self.operator_names, A):
            if abs(Aq - Aq.T).max() > 1e-10 * max(np.abs(Aq.data).max(initial=0.0), np.finfo(float).tiny):
                raise ExternalError(f"problem external: operator term {name} is not symmetric; expected Dirichlet rows "
                                    "and columns eliminated symmetrically (a coercive symmetric form)")
        for name, Aq in zip(self.operator_names, A):
            try:
                dirichlet_rows(Aq, self.mesh.nodes, self.mesh.cells, f"problem external: operator term {name}")
            except ValueError as exc:
                raise ExternalError(str(exc)) from None
        return np.stack([self._on_pattern(Aq, pattern, f"operator term {name}")
                         for name, Aq in zip(self.operator_names, A)])

    def rhs_terms(self, pattern) -> np.ndarray:
        return self.delivered_terms[1][:, pattern.row_start:pattern.row_stop].copy()

    def _reference(self):
        ref = self.args["affine"].get("x_reference")
        return None if ref is None else np.array([float(ref[n]) for n in self.names])

    # -- the terms check at the first sample -----------------------------------------------------------
    def run(self, mu, ranks: int = 1):
        s = super().run(mu, ranks)
        if self.terms_check is None and s.converged:
            diff = self.check_terms(mu, s.u)
            s = Sample(s.u, s.converged, f"{s.reason}; terms check: relative difference {diff:.2e} <= "
                       f"{self.tolerance:g}", s.iterations, s.seconds)
        return s

    def check_terms(self, mu, u) -> float:
        """||u - u_terms||_X / ||u||_X for romflow's solve of the delivered terms (ExternalError above the
        tolerance)."""
        import scipy.sparse.linalg as spla

        A, f = self.delivered_terms
        th, ph = self.theta(mu)[0], self.phi(mu)[0]
        Amu = sum(t * Aq for t, Aq in zip(th, A))
        u_terms = spla.spsolve(sp.csc_matrix(Amu), ph @ f)
        from ..discretization import fem

        X = fem.Pattern.build(self.mesh)
        Xm = X.to_scipy(External.energy_product(self, X))
        d = u - u_terms
        diff = math.sqrt(max(d @ (Xm @ d), 0.0)) / max(math.sqrt(max(u @ (Xm @ u), 0.0)), np.finfo(float).tiny)
        self.terms_check = (diff, np.atleast_1d(mu))
        if not diff <= self.tolerance:
            raise TermsMismatch(f"problem external: the delivered terms ({', '.join(self.operator_names)}; "
                                f"{', '.join(self.rhs_names)}) do not reproduce the solver's solution at mu = "
                                f"{np.atleast_1d(mu).tolist()}: relative difference {diff:.2e} above "
                                f"affine.tolerance = {self.tolerance:g}; check theta/phi in problem.affine and the "
                                "terms' node order and Dirichlet rows")
        return diff


class ExternalAffineMinTheta(ExternalAffine):
    """The affine black box with affine.x_reference: X = sum_q theta_q(mu_ref) A_q and the min-theta
    coercivity bound min_q theta_q(mu) / theta_q(mu_ref) (capability `coercivity_bound`)."""

    capabilities = ExternalAffine.capabilities | {cap.COERCIVITY_BOUND}

    @cached_property
    def theta_ref(self) -> np.ndarray:
        return self.theta(self._reference())[0]

    def energy_product(self, pattern):
        A, _ = self.delivered_terms
        for name, Aq in zip(self.operator_names, A):
            if not _psd(Aq):
                raise ExternalError(f"problem external: operator term {name} is not positive semidefinite; the "
                                    "min-theta bound of affine.x_reference needs every term semidefinite; expected "
                                    "no affine.x_reference (X = K + M, SCM)")
        X = self.theta_ref @ self.operator_terms(pattern)
        return X

    def coercivity_lower_bound(self, mu) -> np.ndarray:
        """min_q theta_q(mu) / theta_q(mu_ref); 0 (no certificate: the bound is infinite) wherever a theta_q
        is not positive, for min-theta holds only where every theta_q(mu) > 0."""
        lb = (self.theta(mu) / self.theta_ref).min(axis=1)
        return np.where(lb > 0, lb, 0.0)


ExternalAffine.arguments = {**External.arguments, **AFFINE_ARGUMENTS}


def affine_variant(spec: dict):
    """The class of an affine black box: with affine.x_reference, the min-theta form."""
    return ExternalAffineMinTheta if (spec.get("affine") or {}).get("x_reference") is not None else ExternalAffine
