"""A shape family as MMGP sees it: meshes with nodal fields, scalar inputs and output scalars, and
the ways to get one: the ragged HDF5 artefact of simulate-geometries, a folder of user mesh files
(meshio: gmsh .msh 2.2 / 4.1, VTU, ...) indexed by a CSV, or a PLAID dataset (surrogates.mmgp.plaid; surrogates.mmgp.plaid.read_set reads either)."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .geometry import MeshError, MeshSample, counter_clockwise, family_dataset, read_family


class FamilyError(ValueError):
    """A family that cannot be read as declared; the message names the file or sample."""


@dataclass
class Family:
    """samples (MeshSample with the declared fields), inputs (n, p), scalars (n, s), one name per
    sample; field_units / scalar_units: the declared outputs (name -> unit), in order."""

    samples: list[MeshSample]
    inputs: np.ndarray
    scalars: np.ndarray
    names: list[str]
    input_names: list[str]
    field_units: dict[str, str]
    scalar_units: dict[str, str]
    attrs: dict = field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        return list(self.field_units)

    @property
    def scalar_names(self) -> list[str]:
        return list(self.scalar_units)

    def to_dataset(self, converged=None, extra: dict | None = None) -> xr.Dataset:
        """The ragged family artefact (geometries/<set>.h5)."""
        n = len(self.samples)
        ds = family_dataset(self.samples, dict(self.attrs), self.field_units)
        ds["mu"] = (("sample", "parameter"), self.inputs.reshape(n, len(self.input_names)))
        ds["scalars"] = (("sample", "scalar"), self.scalars.reshape(n, len(self.scalar_units)))
        ds["scalar_units"] = ("scalar", np.array(list(self.scalar_units.values()), dtype=object))
        ds["sample_name"] = ("sample", np.array(self.names, dtype=object))
        ds["converged"] = ("sample", np.ones(n, dtype=np.int8) if converged is None else np.asarray(converged, dtype=np.int8))
        for key, value in (extra or {}).items():
            ds[key] = value
        ds.attrs["fields"] = ",".join(self.fields)
        return ds.assign_coords(parameter=np.array(self.input_names, dtype=object),
                                scalar=np.array(self.scalar_names, dtype=object))


def from_dataset(ds: xr.Dataset, source: str = "family", fields=None, scalars=None) -> Family:
    """The converged samples of a family artefact; `fields` / `scalars` (names) select outputs,
    all of the artefact's by default. Refuses, naming the artefact, an output it does not hold."""
    for v in ("node_offset", "mu", "scalars", "converged"):
        if v not in ds:
            raise FamilyError(f"{source}: not a shape-family artefact (no {v!r}); expected the output of simulate-geometries")
    all_fields = [f for f in str(ds.attrs.get("fields", "")).split(",") if f] or \
        [v for v in ds.data_vars if ds[v].dims == ("node",)]
    all_scalars = [str(s) for s in ds["scalar"].values]
    fields, scalars = list(fields or all_fields), list(scalars if scalars is not None else all_scalars)
    for name, have, what in [(f, all_fields, "field") for f in fields] + [(s, all_scalars, "scalar") for s in scalars]:
        if name not in have:
            raise FamilyError(f"{source}: no {what} {name!r}; expected one of {have}")
    ok = ds["converged"].values.astype(bool)
    samples = [MeshSample(s.nodes, s.triangles, {f: s.fields[f] for f in fields}) for s, good in zip(read_family(ds), ok) if good]
    names = [str(x) for x in ds["sample_name"].values[ok]] if "sample_name" in ds else [f"sample {i}" for i in np.flatnonzero(ok)]
    cols = [all_scalars.index(s) for s in scalars]
    units = {v: str(ds[v].attrs.get("units", "")) for v in fields}
    s_units = dict(zip(all_scalars, [str(u) for u in ds["scalar_units"].values])) if "scalar_units" in ds else {}
    return Family(samples, ds["mu"].values[ok], ds["scalars"].values[ok][:, cols], [f"{source} {n}" for n in names],
                  [str(p) for p in ds["parameter"].values], units, {s: s_units.get(s, "") for s in scalars},
                  {k: v for k, v in ds.attrs.items() if k in ("set", "source")})


def declared_outputs(section: dict, problem) -> tuple[dict, dict]:
    """(fields, scalars), name -> unit: the mmgp section's `fields` / `scalars`, by default the
    problem's declared outputs (output_fields / output_scalars: capability geometry_family). A solved
    family can only give outputs its problem declares; a read family (mesh_family, which declares
    none) must declare its fields."""
    known_f, known_s = (getattr(problem, "output_fields", None) or None), (getattr(problem, "output_scalars", None) or None)
    fields = dict(section.get("fields") or known_f or {})
    scalars = dict(section.get("scalars") or known_s or {})
    if not fields:
        raise ValueError(f"mmgp.fields: empty, and problem {problem.name!r} declares no fields; expected the nodal "
                         "fields to learn as name: unit pairs")
    for what, chosen, known in (("fields", fields, known_f), ("scalars", scalars, known_s)):
        bad = [k for k in chosen if known is not None and k not in known]
        if bad:
            raise ValueError(f"mmgp.{what}.{bad[0]}: not an output of problem {problem.name!r}; expected some of {list(known)}")
    return fields, scalars


def solved_family(solutions, mu: np.ndarray, set_name: str, input_names, fields: dict, scalars: dict):
    """A Family of solved shapes (rom.hifi.solvers.shapes.ShapeSolution) with the declared outputs,
    and the solver records as artefact variables."""
    samples = [MeshSample(s.nodes, s.triangles, {f: s.fields[f] for f in fields}) for s in solutions]
    names = [f"{set_name} sample {i} (seed {s.seed})" for i, s in enumerate(solutions)]
    values = np.array([[s.scalars[k] for k in scalars] for s in solutions], dtype=float).reshape(len(solutions), len(scalars))
    extra = {"geometry_seed": ("sample", np.array([s.seed for s in solutions], dtype=np.int64)),
             "converged": ("sample", np.array([s.converged for s in solutions], dtype=np.int8)),
             "reason": ("sample", np.array([str(s.reason) for s in solutions], dtype=object)),
             "iterations": ("sample", np.array([s.iterations for s in solutions])),
             "solve_seconds": ("sample", np.array([s.seconds for s in solutions]), {"units": "s"})}
    return Family(samples, np.asarray(mu, dtype=float), values, names, list(input_names), dict(fields), dict(scalars),
                  {"set": set_name, "source": "simulated"}), extra


# -- user mesh files ------------------------------------------------------------------------------
def read_mesh_sample(path, fields) -> MeshSample:
    """One planar triangle mesh with nodal fields from a file meshio reads (gmsh .msh 2.2 / 4.1,
    VTU, ...). `fields`: point-data names, `name[k]` for component k of a vector field. Triangles
    are put counter-clockwise (geometry.counter_clockwise: a folded triangle is refused, naming it);
    a z coordinate must be zero. Refusals name the file."""
    import meshio

    path = Path(path)
    try:
        mesh = meshio.read(path)
    except Exception as exc:  # meshio raises many types for unreadable files
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise FamilyError(f"{path}: not a mesh meshio can read ({type(exc).__name__}: {first})") from None
    tri = [c.data for c in mesh.cells if c.type == "triangle"]
    if not tri:
        raise FamilyError(f"{path}: no triangle cells (found {sorted({c.type for c in mesh.cells})}); expected a triangle mesh")
    triangles = np.concatenate(tri).astype(np.int64)
    pts = np.asarray(mesh.points, dtype=float)
    if pts.shape[1] == 3:
        if np.any(pts[:, 2] != 0):
            raise FamilyError(f"{path}: nonzero z coordinates; expected a planar mesh in the xy plane")
        pts = pts[:, :2]
    try:
        triangles = counter_clockwise(pts, triangles, str(path))
    except MeshError as exc:
        raise FamilyError(str(exc)) from None
    values = {}
    for f in fields:
        name, comp = (f[:f.index("[")], int(f[f.index("[") + 1:-1])) if f.endswith("]") and "[" in f else (f, None)
        if name not in mesh.point_data:
            raise FamilyError(f"{path}: no point field {name!r}; expected one of {sorted(mesh.point_data)}")
        a = np.asarray(mesh.point_data[name], dtype=float)
        if comp is None and a.ndim > 1 and a.shape[1] > 1:
            raise FamilyError(f"{path}: point field {name!r} has {a.shape[1]} components; expected {name}[k] in the study")
        values[f] = a.reshape(len(a), -1)[:, comp or 0]
    return MeshSample(pts, triangles, values)


INDEX = "samples.csv"


def read_mesh_folder(folder, set_name: str, input_names, field_units: dict, scalar_units: dict, index: str = INDEX) -> Family:
    """The samples of set `set_name` of a folder of mesh files. The index CSV (header: `file`,
    `set`, then one column per input and per output scalar) lists them, files relative to the folder."""
    folder = Path(folder)
    path = folder / index
    if not path.is_file():
        raise FamilyError(f"{path}: index not found; expected a CSV with columns file, set, "
                          f"{', '.join(list(input_names) + list(scalar_units))}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [{k.strip(): (v or "").strip() for k, v in r.items()} for r in reader]
        header = [h.strip() for h in reader.fieldnames or []]
    need = ["file", "set", *input_names, *scalar_units]
    missing = [c for c in need if c not in header]
    if missing:
        raise FamilyError(f"{path}: no column {missing[0]!r}; expected columns {need}")
    rows = [r for r in rows if r["set"] == set_name]
    if not rows:
        raise FamilyError(f"{path}: no sample of set {set_name!r}")

    def numbers(r, cols):
        try:
            return [float(r[c]) for c in cols]
        except ValueError:
            raise FamilyError(f"{path}: {r['file']}: non-numeric value in {cols}; expected numbers") from None

    samples = [read_mesh_sample(folder / r["file"], list(field_units)) for r in rows]
    inputs = np.array([numbers(r, list(input_names)) for r in rows], dtype=float).reshape(len(rows), -1)
    scalars = np.array([numbers(r, list(scalar_units)) for r in rows], dtype=float).reshape(len(rows), -1)
    return Family(samples, inputs, scalars, [str(folder / r["file"]) for r in rows], list(input_names), dict(field_units),
                  dict(scalar_units), {"set": set_name, "source": f"files:{folder}"})


def write_vtu(samples: list[MeshSample], folder: Path, vectors: dict | None = None):
    """One VTU per sample with its nodal fields (ParaView); `vectors`: name -> (x field, y field)
    also written as 3-component vectors."""
    import meshio

    from rom.artefacts import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples):
        zeros = np.zeros(len(s.nodes))
        data = dict(s.fields)
        for name, (fx, fy) in (vectors or {}).items():
            if fx in s.fields and fy in s.fields:
                data[name] = np.column_stack([s.fields[fx], s.fields[fy], zeros])
        with atomic_path(folder / f"sample_{i:03d}.vtu") as tmp:
            meshio.write(tmp, meshio.Mesh(np.column_stack([s.nodes, zeros]), [("triangle", s.triangles)], point_data=data),
                         file_format="vtu")
