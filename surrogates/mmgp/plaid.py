"""PLAID datasets (pyplaid >= 1.0: Sample, ProblemDefinition, plaid.storage, CGNS on disk), the
format of the MMGP paper's benchmarks (Tensile2d, AirfRANS, ...).

A sample is one CGNS tree: the mesh in a 2D base (`Base_2_2/Zone`: GridCoordinates, TRI_3
elements), nodal fields in `<base>/<zone>/VertexFields/<name>`, scalars in `Global/<name>`. A
problem definition names the input and output features by these paths and the train / test
splits as {dataset split: ids or "all"}. `read_plaid` maps a problem definition's train (or test)
split to a Family; `write_plaid` writes romflow's families as a PLAID dataset with a problem
definition whose splits are the families' sets."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .family import Family, FamilyError, read_mesh_folder
from .geometry import MeshError, MeshSample, counter_clockwise

BASE, ZONE = "Base_2_2", "Zone"
log = logging.getLogger(__name__)


def _plaid():
    """Import pyplaid, undoing the root-logger configuration it installs at import."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        import plaid
        import plaid.storage
    except ImportError as exc:
        raise FamilyError(f"PLAID datasets need pyplaid ({exc}); expected `pip install pyplaid==1.0.0`") from None
    root.setLevel(level)
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    logging.getLogger("plaid").setLevel(logging.WARNING)
    return plaid


def field_path(name: str) -> str:
    return f"{BASE}/{ZONE}/VertexFields/{name}"


def global_path(name: str) -> str:
    return f"Global/{name}"


def _leaf(path: str) -> str:
    return str(path).rstrip("/").split("/")[-1]


def problem_definition(path, name: str | None = None):
    """(name, ProblemDefinition) of a dataset: the one named, or its only one."""
    plaid = _plaid()
    defs = plaid.storage.load_problem_definitions_from_disk(str(path)) or {}
    if name is None:
        if len(defs) != 1:
            raise FamilyError(f"{path}: {len(defs)} problem definitions ({sorted(defs)}); expected one, or "
                              "problem.problem_definition naming one")
        name = next(iter(defs))
    if name not in defs:
        raise FamilyError(f"{path}: no problem definition {name!r}; expected one of {sorted(defs)}")
    return name, defs[name]


def _sample_mesh(sample, label: str) -> MeshSample:
    nodes = sample.get_nodes()
    if nodes is None:
        raise FamilyError(f"{label}: no mesh (GridCoordinates); expected a 2D triangle mesh")
    nodes = np.asarray(nodes, dtype=float)
    if nodes.shape[1] == 3:
        if np.any(nodes[:, 2] != 0):
            raise FamilyError(f"{label}: nonzero z coordinates; expected a planar mesh")
        nodes = nodes[:, :2]
    elements = sample.get_elements()
    if "TRI_3" not in elements:
        raise FamilyError(f"{label}: elements {sorted(elements)}; expected TRI_3 triangles")
    try:
        tri = counter_clockwise(nodes, np.asarray(elements["TRI_3"], dtype=np.int64), label)
    except MeshError as exc:
        raise FamilyError(str(exc)) from None
    return MeshSample(nodes, tri)


def _single_precision(values) -> bool:
    """Stored in fewer than 64 bits (pyplaid's default hf_datasets backend stores float32)."""
    a = np.asarray(values)
    return np.issubdtype(a.dtype, np.floating) and a.dtype.itemsize < 8


def read_plaid(path, split: str, input_names=None, field_units: dict | None = None, scalar_units: dict | None = None,
               definition: str | None = None) -> Family:
    """The samples of the problem definition's `split` ("train" or "test"). Inputs: the scalar
    (Global) input features, or `input_names`; outputs: the declared fields and scalars (name ->
    unit), by default the definition's vertex-field and Global output features (no units)."""
    plaid = _plaid()
    path = Path(path)
    if not (path / "infos.yaml").is_file():
        raise FamilyError(f"{path}: not a PLAID dataset (no infos.yaml); expected a folder written by plaid.storage")
    pd_name, pd = problem_definition(path, definition)
    if split not in ("train", "test"):
        raise FamilyError(f"{path}: split {split!r}; a PLAID problem definition has train and test splits")
    outputs = [_leaf(p) for p in pd.output_features]
    if input_names is None:
        input_names = [_leaf(p) for p in pd.input_features if str(p).startswith("Global/")]
    if field_units is None:
        field_units = {_leaf(p): "" for p in pd.output_features if "/VertexFields/" in str(p) or "/PointFields/" in str(p)}
    if scalar_units is None:
        scalar_units = {_leaf(p): "" for p in pd.output_features if str(p).startswith("Global/")}
    datasets, converters = plaid.storage.init_from_disk(str(path))
    chosen = pd.train_split if split == "train" else pd.test_split
    samples, inputs, scalars, names, single = [], [], [], [], set()
    for ds_split, ids in chosen.items():
        if ds_split not in datasets:
            raise FamilyError(f"{path}: problem definition {pd_name!r} names split {ds_split!r}; the dataset has {sorted(datasets)}")
        n = len(datasets[ds_split])
        ids = range(n) if ids == "all" else [int(i) for i in ids]
        for i in ids:  # one CGNS tree per sample
            label = f"{path.name} {ds_split} sample {i}"
            s = converters[ds_split].to_plaid(datasets[ds_split], i)
            mesh = _sample_mesh(s, label)
            if _single_precision(s.get_nodes()):
                single.add("coordinates")
            for f in field_units:
                v = s.get_field(f)
                if v is None:
                    raise FamilyError(f"{label}: no vertex field {f!r}; expected one of {s.get_field_names()}")
                if _single_precision(v):
                    single.add(f"field {f}")
                mesh.fields[f] = np.asarray(v, dtype=float).ravel()

            def value(name, what):
                v = s.get_global(name)
                if v is None or np.size(v) != 1:
                    raise FamilyError(f"{label}: no scalar {what} {name!r}; expected one of {s.get_global_names()}")
                return float(np.asarray(v).ravel()[0])

            samples.append(mesh)
            inputs.append([value(x, "input") for x in input_names])
            scalars.append([value(x, "output") for x in scalar_units])
            names.append(label)
    missing = [o for o in list(field_units) + list(scalar_units) if o not in outputs]
    attrs = {"set": split, "source": f"plaid:{path}:{pd_name}"}
    if missing:
        attrs["note"] = f"outputs not in the problem definition: {missing}"
    if single:  # widened to float64 on reading, but the digits beyond float32's ~7 are lost
        attrs["precision"] = f"float32 storage: {', '.join(sorted(single))}"
        log.warning("%s: %s stored as float32 (about 7 significant digits), read as float64; the round trip is "
                    "exact only for float64 storage (write_plaid's cgns backend)", path, ", ".join(sorted(single)))
    return Family(samples, np.array(inputs, dtype=float).reshape(len(samples), len(input_names)),
                  np.array(scalars, dtype=float).reshape(len(samples), len(scalar_units)), names, list(input_names),
                  dict(field_units), dict(scalar_units), attrs)


def write_plaid(path, families: dict[str, Family], definition: str = "mmgp", overwrite: bool = False,
                backend: str = "cgns"):
    """Write families ({set name: Family}, sharing inputs and outputs) as a PLAID dataset, one
    dataset split per set, with a problem definition `definition` whose train split is the "train"
    set and test split every other set. The `cgns` backend stores float64 (an exact round trip);
    pyplaid's `hf_datasets` stores float32."""
    plaid = _plaid()
    import CGNS.PAT.cgnskeywords as CGK
    import CGNS.PAT.cgnslib as CGL

    first = next(iter(families.values()))
    for name, fam in families.items():
        if fam.input_names != first.input_names or fam.fields != first.fields or fam.scalar_names != first.scalar_names:
            raise FamilyError(f"write_plaid: set {name!r} has other inputs or outputs than {next(iter(families))!r}")

    def make(key):
        set_name, i = key
        fam = families[set_name]
        s, sample = fam.samples[i], plaid.Sample()
        sample.init_base(2, 2, BASE)
        zone = sample.init_zone(np.array([[len(s.nodes), len(s.triangles), 0]]), zone=ZONE, base=BASE)
        sample.set_nodes(np.asarray(s.nodes, dtype=float), zone=ZONE, base=BASE)
        CGL.newElements(zone, "Elements_TRI_3", CGK.TRI_3_s, np.array([1, len(s.triangles)]),
                        (np.asarray(s.triangles, dtype=np.int64) + 1).ravel().astype(np.int32))
        for f in fam.fields:
            sample.add_field(f, np.asarray(s.fields[f], dtype=float), zone=ZONE, base=BASE)
        for n, v in zip(fam.input_names, fam.inputs[i]):
            sample.add_global(n, np.array([float(v)]))
        for n, v in zip(fam.scalar_names, fam.scalars[i]):
            sample.add_global(n, np.array([float(v)]))
        return sample

    ids = {name: [(name, i) for i in range(len(f.samples))] for name, f in families.items()}
    pd = plaid.ProblemDefinition(
        input_features=[global_path(n) for n in first.input_names] + [f"{BASE}/{ZONE}/GridCoordinates"],
        output_features=[field_path(f) for f in first.fields] + [global_path(s) for s in first.scalar_names],
        train_split={"train": "all"} if "train" in families else {},
        test_split={name: "all" for name in families if name != "train"})
    plaid.storage.save_to_disk(str(path), make, ids, backend=backend, pb_defs={definition: pd}, overwrite=overwrite)


def read_set(problem, set_name: str, fields: dict, scalars: dict) -> Family:
    """Set `set_name` of a read family (problem mesh_family: mesh files or a PLAID dataset)."""
    if problem.source == "files":
        return read_mesh_folder(problem.path, set_name, problem.inputs, fields, scalars, problem.index)
    return read_plaid(problem.path, set_name, problem.inputs, fields, scalars, problem.problem_definition)
