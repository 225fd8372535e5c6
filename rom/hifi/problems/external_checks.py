"""What romflow checks around a black box's command (rom.hifi.problems.external): the launcher that runs
it on several MPI ranks (`problem.launcher`), the executable and the input files of the command
(`problem.inputs`, whose digests enter the resolved study so that editing them reruns the snapshots),
the node coordinates a command may write beside its field (`x`), the Dirichlet rows of delivered
matrices (`dirichlet_rows`), and a failed run's reason (the error-like lines of its stderr first, then
its tail)."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import string
from pathlib import Path

import numpy as np

LAUNCHERS = ("mpiexec", "srun", "none")
LAUNCHER_FIELDS = ("ranks", "workdir", "python", "root")
ERROR_LINE = re.compile(r"error|Error|ERROR|Traceback|exception|Exception|abort|Abort|ABORT|fatal|Fatal|FATAL")


# -- the failure reason ----------------------------------------------------------------------------------
def _one_line(lines) -> str:
    return " | ".join(line.strip() for line in lines if line.strip())


def failure_reason(text: str, chars: int = 300) -> str:
    """A failed command's output on one line: its first error-like lines (up to `chars`), then its tail
    (the last `chars`). A launcher's boilerplate at the end no longer hides the cause printed first."""
    from ..discretization.meshfile import tail

    text = text or ""
    end = tail(text, chars)
    errors = [line for line in text.splitlines() if line.strip() and ERROR_LINE.search(line)]
    if not errors or all(line.strip() in end for line in errors):
        return end
    first = _one_line(errors)
    first = first if len(first) <= chars else first[:chars] + "..."
    return f"{first} || tail: {end}"


# -- the launcher ----------------------------------------------------------------------------------------
def _fields(template: str, key: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"problem external: {key} = {template!r}: {exc}; expected {{placeholders}} and doubled "
                         "literal braces") from None


def executable(token: str, key: str, value: str) -> None:
    """Refuse a command whose program is neither an existing file nor on PATH ({python} is romflow's)."""
    if token in ("{python}",) or token.startswith("{python}"):
        return
    if "{" in token:  # a path built from placeholders ({root}/bin/solver): checked when it runs
        return
    if os.sep in token or token.startswith("."):
        if not Path(token).is_file():
            raise ValueError(f"problem external: {key} = {value!r}: {token}: no such file; expected the path of your "
                             "solver's executable (or a program on PATH)")
        return
    if shutil.which(token) is None:
        raise ValueError(f"problem external: {key} = {value!r}: {token}: not found on PATH; expected a program on "
                         "PATH or a path to one")


def check_launcher(value: str) -> None:
    """`problem.launcher`: mpiexec, srun, none, or a template such as '/opt/fenicsx/bin/mpiexec -n {ranks}'
    whose program exists; refused in one line naming the key."""
    if value == "none":
        return
    unknown = [f for f in _fields(value, "launcher") if f.split(".")[0].split("[")[0] not in LAUNCHER_FIELDS]
    if unknown:
        raise ValueError(f"problem external: launcher: unknown placeholder {{{unknown[0]}}}; expected some of "
                         f"{', '.join('{' + k + '}' for k in LAUNCHER_FIELDS)}")
    try:
        tokens = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"problem external: launcher = {value!r}: {exc}") from None
    if not tokens:
        raise ValueError("problem external: launcher = '': expected mpiexec, srun, none or a template such as "
                         "'/opt/fenicsx/bin/mpiexec -n {ranks}'")
    executable(tokens[0], "launcher", value)


def launcher_prefix(value: str | None, ranks: int, values: dict) -> list[str]:
    """The prefix of the command for `ranks` ranks: none for one rank or launcher none; the default (unset)
    is srun inside a SLURM allocation, mpiexec otherwise."""
    if ranks <= 1 or value == "none":
        return []
    if value is None:
        value = "srun" if "SLURM_JOB_ID" in os.environ else "mpiexec"
    if value in ("mpiexec", "srun"):
        return [value, "-n", str(ranks)]
    return [tok.format_map({**values, "ranks": ranks}) for tok in shlex.split(value)]


# -- the command's environment -----------------------------------------------------------------------
# What an MPI launcher adds to the environment of the processes it starts (Open MPI's mpiexec and PMIx,
# MPICH's hydra, PMI-1/2): the wiring of romflow's own MPI job, not settings of the user's.
LAUNCHER_VARIABLES = ("PMIX_", "PMI_", "HYDRA_", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_",
                      "OMPI_APP_CTX_", "OMPI_COMMAND", "OMPI_ARGV", "OMPI_FILE_LOCATION", "OMPI_FIRST_RANKS",
                      "OMPI_NUM_APP_CTX", "OMPI_UNIVERSE_SIZE", "OMPI_MCA_ess", "OMPI_MCA_orte_", "OMPI_MCA_pmix",
                      "OMPI_MCA_initial_wdir", "OMPI_MCA_shmem_RUNTIME_QUERY_hint")


def command_environment() -> dict:
    """The environment a black box's command starts with: romflow's as it started (os.environ: an MPI
    singleton's runtime variables, set in the C environment by PETSc in this process, are not in it),
    less what romflow's own MPI launcher set when romflow runs under one (the reduced_basis stage on
    mpi_ranks > 1): a command is not a rank of romflow's job, and another MPI's launcher or runtime
    that inherits that wiring aborts (MPICH: "Runtime environment uses unsupported PMI version PMIx").
    The user's own settings (OMPI_MCA_btl, OMPI_ALLOW_RUN_AS_ROOT, ...) pass."""
    return {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARIABLES)}


# -- provenance: the command's input files ---------------------------------------------------------------
def resolve_inputs(args: dict, base_dir: Path | None) -> None:
    """`problem.inputs` made absolute (relative to the study file) and `{study_dir}` in the command lines and
    the launcher replaced by the study file's folder, once, when the study is read (the resolved study keeps both)."""
    base = (base_dir or Path(".")).absolute()
    items = args.get("inputs")
    if isinstance(items, list):
        out = []
        for item in items:
            path = item["file"] if isinstance(item, dict) else item
            p = Path(str(path)).expanduser()
            out.append({"file": str(p if p.is_absolute() else base / p)})
        args["inputs"] = out
    escaped = str(base).replace("{", "{{").replace("}", "}}")
    for key in ("command", "operator_command", "terms_command", "entries_command", "launcher"):
        if isinstance(args.get(key), str):
            args[key] = args[key].replace("{study_dir}", escaped)


def digest_inputs(args: dict) -> None:
    """Each input's SHA-256 into the resolved study (`inputs[i].digest`): the simulate stage's trigger."""
    from ..discretization.meshfile import file_digest

    for i, item in enumerate(args.get("inputs", [])):
        if isinstance(item, str):
            item = args["inputs"][i] = {"file": item}
        if not Path(item["file"]).is_file():
            raise ValueError(f"problem external: inputs[{i}] = {item['file']!r}: no such file; expected the files "
                             "your command reads (relative paths start at the study file)")
        item["digest"] = file_digest(item["file"])


# -- delivered matrices ----------------------------------------------------------------------------------
def dirichlet_rows(A, nodes: np.ndarray, cells: np.ndarray, what: str) -> int:
    """Check the Dirichlet rows of a delivered matrix A (n_nodes x n_nodes): a row whose only nonzero is
    its diagonal (an eliminated Dirichlet row) must be a node on the boundary of the mesh. An interior
    identity row means that the matrix is not in the mesh's node order (a code's own dof numbering)
    or that its constraints are not where the mesh says. Returns the number of such rows; ValueError
    (one line, naming the first interior one and its coordinates) otherwise."""
    import scipy.sparse as sp

    from ..discretization.mesh import boundary_faces

    A = sp.csr_matrix(A)  # read only: the caller's arrays may be shared (no eliminate_zeros here)
    row = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    counts = np.bincount(row[A.data != 0], minlength=A.shape[0])
    diag = A.diagonal()
    single = np.flatnonzero((counts == 1) & (diag != 0))
    on_boundary = np.zeros(len(nodes), dtype=bool)
    on_boundary[np.unique(boundary_faces(nodes, cells))] = True
    interior = single[~on_boundary[single]]
    if len(interior):
        i = int(interior[0])
        raise ValueError(f"{what}: row {i} holds only its diagonal (a Dirichlet row) but node {i} at "
                         f"({', '.join(f'{v:.6g}' for v in nodes[i])}) is inside problem.mesh ({len(interior)} such "
                         "rows); expected rows in the mesh's node order (map the code's dofs to the mesh nodes, "
                         "e.g. dolfinx's input_global_indices) with Dirichlet rows on boundary nodes")
    return len(single)


# -- the node coordinates --------------------------------------------------------------------------------
def node_order(x: np.ndarray, nodes: np.ndarray) -> np.ndarray | None:
    """Where each row of the black box's coordinates `x` (n, dim) lies among the mesh's nodes: None when in
    the same order, else the index array `p` (the field maps as u_romflow[p] = u_file). Raises ValueError
    (one line, naming the first mismatching node and its coordinates) when x is no ordering of the nodes.
    Tolerance: 1e-8 times the diagonal of the mesh's bounding box."""
    from scipy.spatial import cKDTree

    nodes = np.asarray(nodes, dtype=float)
    x = np.asarray(x, dtype=float)
    n, dim = nodes.shape
    if x.ndim != 2 or x.shape[0] != n or x.shape[1] < dim:
        raise ValueError(f"x has shape {x.shape}; expected ({n}, {dim}) (the coordinates of the mesh's nodes)")
    tol = 1e-8 * float(np.linalg.norm(nodes.max(axis=0) - nodes.min(axis=0)))
    extra = np.abs(x[:, dim:]).max(axis=1) if x.shape[1] > dim else np.zeros(n)
    x = x[:, :dim]

    def where(i):
        return "(" + ", ".join(f"{v:.10g}" for v in x[i]) + ")"

    off = np.flatnonzero(extra > tol)
    if off.size:
        i = off[0]
        raise ValueError(f"x[{i}] has coordinate {extra[i]:.3g} beyond the mesh's {dim} dimensions")
    if np.all(np.linalg.norm(x - nodes, axis=1) <= tol):
        return None
    dist, index = cKDTree(nodes).query(x)
    bad = np.flatnonzero(dist > tol)
    if bad.size:
        i = bad[0]
        raise ValueError(f"x[{i}] = {where(i)} is no node of problem.mesh (the nearest, node {index[i]}, is "
                         f"{dist[i]:.3g} away; tolerance {tol:.3g})")
    counts = np.bincount(index, minlength=n)
    if (counts != 1).any():
        j = int(np.flatnonzero(counts > 1)[0])
        i, k = np.flatnonzero(index == j)[:2]
        raise ValueError(f"x[{i}] = {where(i)} and x[{k}] are both mesh node {j}; expected each node once")
    return index
