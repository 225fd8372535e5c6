"""Meshes from files: gmsh .msh (formats 2.2 and 4.1, ASCII or binary, read with gmsh itself so that
an entity in several physical groups keeps them all) and any format meshio reads. 2D triangles and
3D tetrahedra, P1; physical groups are kept by name: cell regions (groups of the mesh dimension)
and boundary groups (groups of facets: lines in 2D, triangles in 3D).

A mesh is refused, in one line naming the problem and the count, when it has cells of another type
(quadrilaterals, second-order elements, ...), nodes that no cell uses, inverted or degenerate cells,
cells listed twice, or facets that are not faces of its cells. 2D cells are reoriented
counter-clockwise: gmsh orients each surface by its normal, so one entity's triangles share one
orientation and a triangle against that orientation is a fold (inverted).

`mesh_groups(path)` reads only the group names (the $PhysicalNames section of a .msh file), cheap
enough for validating a study before any job.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .mesh import cell_faces, first_of_rows, orient_triangles, rows_in, simplex_volumes


class MeshFileError(ValueError):
    """A mesh file that cannot be used: one line naming the problem, the file and what was wrong."""


@dataclass(frozen=True)
class MeshGroups:
    """The physical groups of a mesh file by name: `regions` (cells) and `boundaries` (facets)."""

    dim: int
    regions: tuple[str, ...]
    boundaries: tuple[str, ...]


@dataclass(frozen=True)
class MeshFile:
    """A P1 simplex mesh read from a file. `cells` (m, dim + 1) positively oriented, `cell_region` (m,)
    indexes `regions`; `facets` (f, dim) with `facet_group` (f,) indexing `boundaries` (a facet in
    several groups is listed once per group). `node_order`, when known, is the node order of the dof
    numbering (rom.hifi.discretization.mesh.node_order): a mesh read back from the operators artefact
    (rom.hifi.discretization.operators.read_mesh) carries the one it was assembled with; None for a
    mesh read from its file (the numbering computes it)."""

    path: str
    nodes: np.ndarray
    cells: np.ndarray
    cell_region: np.ndarray
    regions: tuple[str, ...]
    facets: np.ndarray
    facet_group: np.ndarray
    boundaries: tuple[str, ...]
    node_order: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return self.nodes.shape[1]

    @property
    def groups(self) -> MeshGroups:
        return MeshGroups(self.dim, self.regions, self.boundaries)

    def region_cells(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.cell_region == self.regions.index(name))

    def group_facets(self, name: str) -> np.ndarray:
        return self.facets[self.facet_group == self.boundaries.index(name)]



DOMAIN = "domain"  # the one region of a mesh without cell groups

# gmsh element types romflow takes: (dimension, nodes) of the P1 simplices; points are ignored.
_P1 = {(1, 2), (2, 3), (3, 4)}


def _where(problem: str, path) -> str:
    return f"problem {problem}: mesh {Path(path).name}" if problem else f"mesh {Path(path).name}"


def file_digest(path) -> str:
    """SHA-256 of a mesh file (the resolved study records it, so a changed mesh reruns its stages)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- group names without reading the mesh ------------------------------------------------------------
_NAME = re.compile(rb'^\s*(\d+)\s+(\d+)\s+"(.*)"\s*$')


def _msh_physical_names(path) -> list[tuple[int, str]] | None:
    """(dim, name) of the $PhysicalNames section of a .msh file (ASCII even in binary files, and
    before the nodes in both formats), or None without one."""
    with open(path, "rb") as fh:
        inside, names = False, []
        for line in fh:
            if line.startswith(b"$PhysicalNames"):
                inside = True
            elif line.startswith(b"$EndPhysicalNames"):
                return names
            elif line.startswith((b"$Entities", b"$Nodes", b"$Elements")):
                return None
            elif inside:
                m = _NAME.match(line)
                if m:
                    names.append((int(m.group(1)), m.group(3).decode()))
    return None


def mesh_groups(path, problem: str = "") -> MeshGroups:
    """Region and boundary group names of a mesh file; a .msh file with named physical groups is
    read up to its $PhysicalNames section only, other files fully."""
    path = Path(path)
    if not path.is_file():
        raise MeshFileError(f"{_where(problem, path)}: file not found ({path}); expected a mesh file (relative "
                            "paths start at the study file)")
    if path.suffix == ".msh":
        names = _msh_physical_names(path)
        if names:
            dim = max(d for d, _ in names)
            if dim >= 2:
                return MeshGroups(dim, tuple(n for d, n in names if d == dim),
                                  tuple(n for d, n in names if d == dim - 1))
    return read(path, problem).groups


# -- reading ---------------------------------------------------------------------------------------
@dataclass
class _Raw:
    """What a reader returns before the checks: coordinates (n, 3), element blocks
    (type name, dim, nodes per element, order, connectivity (m, k), label (m,)) and the physical group
    names of each (dim, label)."""

    points: np.ndarray
    blocks: list
    names: dict


def _read_gmsh(path) -> _Raw:
    import gmsh

    gmsh.initialize(["romflow"], readConfigFiles=False, interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.open(str(path))
        tags, coords, _ = gmsh.model.mesh.getNodes()
        # Nodes in the order of their tags: the file order of a gmsh-written file (and meshio's order), so
        # a black box that reads the same file numbers them alike.
        tags = tags.astype(np.int64)
        by_tag = np.argsort(tags, kind="stable")
        index = np.full(int(tags.max()) + 1 if len(tags) else 1, -1, dtype=np.int64)
        index[tags[by_tag]] = np.arange(len(tags))
        points = np.asarray(coords, dtype=float).reshape(-1, 3)[by_tag]
        blocks = []
        for dim, ent in gmsh.model.getEntities():
            types, _, enodes = gmsh.model.mesh.getElements(dim, ent)
            for t, nodes in zip(types, enodes):
                name, edim, order, k, *_ = gmsh.model.mesh.getElementProperties(t)
                conn = index[np.asarray(nodes, dtype=np.int64).reshape(-1, k)]
                blocks.append((name, edim, k, order, conn, np.full(len(conn), ent, dtype=np.int64)))
        names: dict = {}
        for dim, ptag in gmsh.model.getPhysicalGroups():
            name = gmsh.model.getPhysicalName(dim, ptag) or str(ptag)
            for ent in gmsh.model.getEntitiesForPhysicalGroup(dim, ptag):
                names.setdefault((dim, int(ent)), []).append(name)
    except Exception as exc:  # gmsh raises a bare Exception with its own message
        raise MeshFileError(f"cannot read it with gmsh ({exc})") from None
    finally:
        gmsh.finalize()
    return _Raw(points, blocks, names)


_MESHIO_DIM = {"vertex": 0, "line": 1, "triangle": 2, "quad": 2, "polygon": 2, "tetra": 3, "hexahedron": 3,
               "wedge": 3, "pyramid": 3}


def _read_meshio(path) -> _Raw:
    import meshio

    try:
        m = meshio.read(str(path))
    except Exception as exc:  # meshio raises many types for unreadable files
        raise MeshFileError(f"cannot read it with meshio ({type(exc).__name__}: {exc})") from None
    # Group tags: the first integer cell-data array (gmsh:physical, medit:ref, cell_tags, ...), named
    # through field_data {name: [tag, dim]} where the file has them.
    key = next((k for k, v in m.cell_data.items() if v and np.issubdtype(np.asarray(v[0]).dtype, np.integer)), None)
    field = {(int(v[1]), int(v[0])): k for k, v in m.field_data.items() if np.size(v) >= 2}
    blocks, names = [], {}
    for i, block in enumerate(m.cells):
        base = re.match(r"[a-z]+", block.type).group(0)
        dim = _MESHIO_DIM.get(base, 3)
        k = block.data.shape[1]
        order = 2 if base in ("line", "triangle", "tetra") and (dim, k) not in _P1 else 1
        label = (np.asarray(m.cell_data[key][i]).astype(np.int64) if key is not None
                 else np.zeros(len(block.data), dtype=np.int64))
        blocks.append((block.type, dim, k, order, np.asarray(block.data, dtype=np.int64), label))
        if key is not None:
            for t in np.unique(label):
                names[(dim, int(t))] = [field.get((dim, int(t)), str(int(t)))]
    return _Raw(np.asarray(m.points, dtype=float), blocks, names)


def read(path, problem: str = "") -> MeshFile:
    """Read and check a mesh file (see the module docstring for what is refused)."""
    path = Path(path)
    where = _where(problem, path)
    if not path.is_file():
        raise MeshFileError(f"{where}: file not found ({path}); expected a mesh file (relative paths start at the "
                            "study file)")
    try:
        raw = _read_gmsh(path) if path.suffix == ".msh" else _read_meshio(path)
    except MeshFileError as exc:
        raise MeshFileError(f"{where}: {exc}") from None
    return _checked(raw, str(path), where)


def _checked(raw: _Raw, path: str, where: str) -> MeshFile:
    top = max((b[1] for b in raw.blocks if len(b[4])), default=0)
    if top not in (2, 3):
        raise MeshFileError(f"{where}: no triangles or tetrahedra (highest cell dimension {top}); expected a 2D or 3D "
                            "mesh")
    unsupported: dict[str, int] = {}
    for name, dim, k, order, conn, _ in raw.blocks:
        facet_or_cell = dim in (top - 1, top)
        if len(conn) and facet_or_cell and ((dim, k) not in _P1 or order != 1):
            unsupported[name] = unsupported.get(name, 0) + len(conn)
    if unsupported:
        what = ", ".join(f"{n} {t}" for t, n in unsupported.items())
        raise MeshFileError(f"{where}: {sum(unsupported.values())} elements of unsupported type ({what}); expected "
                            f"P1 {'triangles' if top == 2 else 'tetrahedra'} and their facets (element order 1, "
                            "no recombination into quadrilaterals or hexahedra)")
    if top == 2:
        z = raw.points[:, 2]
        if np.ptp(z) > 1e-12 * max(np.ptp(raw.points[:, :2]), 1e-300):
            raise MeshFileError(f"{where}: 2D mesh not in a plane z = const (z spans {np.ptp(z):.3g}); expected "
                                "triangles in the xy plane")
    nodes = np.ascontiguousarray(raw.points[:, :top])
    cell_blocks = [b for b in raw.blocks if b[1] == top and len(b[4])]
    cells = np.concatenate([b[4] for b in cell_blocks])
    label = np.concatenate([b[5] for b in cell_blocks])
    used = np.zeros(len(nodes), dtype=bool)
    used[cells.ravel()] = True
    if not used.all():
        raise MeshFileError(f"{where}: {(~used).sum()} of {len(nodes)} nodes belong to no "
                            f"{'triangle' if top == 2 else 'tetrahedron'}; expected every node in a cell (remove "
                            "unreferenced nodes, e.g. gmsh's Mesh.SaveAll = 0)")
    # Regions: the physical groups of the mesh dimension, by the label (entity) of each cell.
    labels = np.unique(label)
    region_of = {int(t): raw.names.get((top, int(t)), []) for t in labels}
    several = {t: n for t, n in region_of.items() if len(n) > 1}
    if several:
        t, n = next(iter(several.items()))
        count = int(np.isin(label, list(several)).sum())
        raise MeshFileError(f"{where}: {count} cells belong to several regions ({', '.join(n)}); expected each cell "
                            "in one physical group of the mesh dimension")
    # Names in the order of the file's physical groups (that of mesh_groups).
    order = list(dict.fromkeys(n for (d, _), names in raw.names.items() if d == top for n in names))
    regions = tuple(sorted({n[0] for n in region_of.values() if n}, key=order.index))
    if regions:
        lone = [t for t, n in region_of.items() if not n]
        if lone:
            raise MeshFileError(f"{where}: {int(np.isin(label, lone).sum())} cells belong to no region; expected every "
                                f"cell in one of the physical groups {', '.join(regions)}")
        code = np.array([regions.index(region_of[int(t)][0]) for t in labels])
        cell_region = code[np.searchsorted(labels, label)]
    else:
        regions, cell_region = (DOMAIN,), np.zeros(len(cells), dtype=np.int64)
    twice = len(cells) - len(first_of_rows(cells))
    if twice:
        raise MeshFileError(f"{where}: {twice} cells are listed twice; expected each cell once")
    cells = _oriented(nodes, cells, label, where)
    # Boundary groups: facets by physical group, each group's facets once.
    by_group: dict[str, list] = {}
    for _, dim, _, _, conn, lab in raw.blocks:
        if dim != top - 1 or not len(conn):
            continue
        for t in np.unique(lab):
            for name in raw.names.get((dim, int(t)), []):
                by_group.setdefault(name, []).append(conn[lab == t])
    order = list(dict.fromkeys(n for (d, _), names in raw.names.items() if d == top - 1 for n in names))
    boundaries = tuple(sorted(by_group, key=order.index))
    groups = [np.concatenate(by_group[b]) for b in boundaries]
    groups = [g[first_of_rows(g)] for g in groups]
    facets = np.concatenate(groups) if groups else np.empty((0, top), dtype=np.int64)
    facet_group = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)]) if groups else np.empty(0, int)
    stray = ~rows_in(facets, cell_faces(cells))
    if stray.any():
        bad = sorted({boundaries[g] for g in facet_group[stray]})
        raise MeshFileError(f"{where}: {stray.sum()} facets of boundary group(s) {', '.join(bad)} are not faces of "
                            "its cells; expected a conforming mesh (facets meshed with their volumes)")
    return MeshFile(path, nodes, cells, cell_region.astype(np.int64), regions, facets, facet_group.astype(np.int64),
                    boundaries)


def _oriented(nodes, cells, label, where) -> np.ndarray:
    det = simplex_volumes(nodes, cells)
    # Degenerate: a volume at round-off of the longest edge's (|vol| <= 1e3 eps h^d), compared squared.
    p = nodes[cells]
    i, j = np.triu_indices(cells.shape[1], 1)
    e = p[:, i] - p[:, j]
    h2 = np.einsum("mkd,mkd->mk", e, e).max(axis=1)
    degenerate = det * det <= (1e3 * np.finfo(float).eps) ** 2 * h2 ** nodes.shape[1]
    if degenerate.any():
        raise MeshFileError(f"{where}: {degenerate.sum()} degenerate cells (zero volume, to round-off of their edge "
                            "lengths); expected cells of positive volume")
    if nodes.shape[1] == 3:
        if (det < 0).any():
            raise MeshFileError(f"{where}: {(det < 0).sum()} inverted tetrahedra (negative volume); expected "
                                "positively oriented cells")
        return cells

    # 2D: the majority orientation of each entity is its normal; a triangle against it is folded.
    def folded(inverted):
        raise MeshFileError(f"{where}: {len(inverted)} inverted triangles (first: triangle {inverted[0]}, "
                            "oriented against the rest of its surface: a folded mesh); expected a valid triangulation")

    return orient_triangles(nodes, cells, folded, label)


# -- a mesh made at study time -----------------------------------------------------------------------
def tail(text: str, chars: int = 400) -> str:
    """The end of a command's output on one line (for one-line messages)."""
    text = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= chars else "..." + text[-chars:]


def ensure_mesh(mesh: dict, problem: str) -> Path:
    """The mesh file of a problem's `mesh` keys, made by its `generate` command when missing: the command
    (run without a shell, in the mesh file's folder, placeholders {python}, {root} and {file}) writes a
    temporary file that replaces `file` once complete, so concurrent validations never read half a mesh."""
    import os
    import shlex
    import subprocess
    import sys

    from rom.paths import ROOT

    path = Path(mesh["file"])
    if path.is_file() or not mesh.get("generate"):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    try:
        argv = [t.format(python=sys.executable, root=ROOT, file=tmp) for t in shlex.split(mesh["generate"])]
    except (KeyError, IndexError, ValueError) as exc:
        raise MeshFileError(f"problem {problem}: mesh.generate = {mesh['generate']!r}: bad placeholder ({exc}); "
                            "expected {python}, {root} and {file}") from None
    try:
        proc = subprocess.run(argv, cwd=path.parent, capture_output=True, text=True, timeout=3600, env=dict(os.environ))
    except OSError as exc:
        raise MeshFileError(f"problem {problem}: mesh.generate: cannot run {argv[0]!r} ({exc})") from None
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        what = f"exited {proc.returncode}" if proc.returncode else f"wrote no file {tmp.name}"
        raise MeshFileError(f"problem {problem}: mesh.generate {what}: {tail(proc.stderr or proc.stdout)}")
    os.replace(tmp, path)
    return path
