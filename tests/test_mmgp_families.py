"""Shape families from outside: user mesh files (gmsh .msh 2.2 / 4.1, VTU via meshio) and PLAID
datasets (pyplaid): exact round trips, refusals naming the file, and the MMGP stages run from a
study file alone on a PLAID dataset whose outputs have other names and units."""
import csv
import json

import numpy as np
import pytest

from conftest import torch_threads
from rom.hifi.problems.elasticity import TensilePlate
from rom.hifi.problems.shape_family import uniform_inputs
from rom.hifi.solvers.shapes import solve_shapes
from surrogates.mmgp.family import Family, FamilyError, read_mesh_folder, read_mesh_sample
from surrogates.mmgp.geometry import MeshSample
from surrogates.mmgp.model import MMGP

torch_threads()
P = TensilePlate(mesh_n=6)
FIELDS, SCALARS = list(P.output_fields), list(P.output_scalars)


@pytest.fixture(scope="module")
def solved():
    """12 train and 4 test solved shapes (SciPy backend)."""
    out = {}
    for name, n, seed in (("train", 12, 3), ("test", 4, 4)):
        mu = uniform_inputs(P, n, seed)
        sol = solve_shapes(P, mu, name, 0, backend="scipy")
        out[name] = Family([MeshSample(s.nodes, s.triangles, s.fields) for s in sol], mu,
                           np.array([[s.scalars[k] for k in SCALARS] for s in sol]), [f"{name} {i}" for i in range(n)],
                           P.parameter_names, dict(P.output_fields), dict(P.output_scalars), {"set": name})
    return out


def _same(a: MeshSample, b: MeshSample, fields):
    assert np.array_equal(a.nodes, b.nodes) and np.array_equal(a.triangles, b.triangles)
    for f, g in fields.items():
        assert np.array_equal(a.fields[f], b.fields[g]), f


@pytest.mark.parametrize("fmt,suffix", [("vtu", ".vtu"), ("gmsh22", ".msh"), ("gmsh", ".msh")])
def test_mesh_file_round_trip(tmp_path, solved, fmt, suffix):
    """A sample written by meshio (binary, float64) and read back is the same sample; a vector
    field's components are read as U[0], U[1] (gmsh stores vectors with 3 components)."""
    import meshio

    s = solved["train"].samples[0]
    path = tmp_path / f"plate{suffix}"
    pts = np.column_stack([s.nodes, np.zeros(len(s.nodes))])
    meshio.write(path, meshio.Mesh(pts, [("triangle", s.triangles)],
                                   point_data={"U": np.column_stack([s.fields["u_x"], s.fields["u_y"], np.zeros(len(s.nodes))]),
                                               "vm": s.fields["von_mises"]}),
                 file_format=fmt)
    back = read_mesh_sample(path, ["U[0]", "U[1]", "vm"])
    _same(s, back, {"u_x": "U[0]", "u_y": "U[1]", "von_mises": "vm"})
    with pytest.raises(FamilyError, match=rf"^{path}: no point field 'sigma'; expected one of \[.*'U'.*'vm'"):
        read_mesh_sample(path, ["sigma"])
    with pytest.raises(FamilyError, match=rf"^{path}: point field 'U' has 3 components; expected U\[k\]"):
        read_mesh_sample(path, ["U"])
    quad = tmp_path / f"quad{suffix}"
    meshio.write(quad, meshio.Mesh(pts[:4], [("quad", np.array([[0, 1, 2, 3]]))]), file_format=fmt)
    with pytest.raises(FamilyError, match=r"no triangle cells \(found \['quad'\]\); expected a triangle mesh"):
        read_mesh_sample(quad, [])


def test_mmgp_on_a_folder_of_mesh_files_equals_the_in_memory_family(tmp_path, solved):
    """The folder route (VTU files + samples.csv) gives exactly the samples, hence exactly the
    predictions, of the family it was written from."""
    import meshio

    rows = []
    for name, fam in solved.items():
        for i, s in enumerate(fam.samples):
            file = f"{name}_{i:02d}.vtu"
            meshio.write(tmp_path / file, meshio.Mesh(np.column_stack([s.nodes, np.zeros(len(s.nodes))]),
                                                      [("triangle", s.triangles)], point_data=s.fields))
            rows.append({"file": file, "set": name, **dict(zip(fam.input_names, fam.inputs[i])),
                         **dict(zip(SCALARS, fam.scalars[i]))})
    with open(tmp_path / "samples.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    read = {n: read_mesh_folder(tmp_path, n, P.parameter_names, P.output_fields, P.output_scalars) for n in ("train", "test")}
    for n in read:
        assert np.array_equal(read[n].inputs, solved[n].inputs) and np.array_equal(read[n].scalars, solved[n].scalars)
    kw = dict(geometry_modes=2, field_modes=3, restarts=1, iterations=15, load_inputs=P.load_parameters, degrees=P.output_degrees)
    a = MMGP(FIELDS, SCALARS, P.parameter_names, **kw).fit(read["train"].samples, read["train"].inputs, read["train"].scalars)
    b = MMGP(FIELDS, SCALARS, P.parameter_names, **kw).fit(solved["train"].samples, solved["train"].inputs, solved["train"].scalars)
    pa, pb = a.predict(read["test"].samples, read["test"].inputs), b.predict(solved["test"].samples, solved["test"].inputs)
    assert np.array_equal(pa["fields_mean"][1]["u_y"], pb["fields_mean"][1]["u_y"])
    assert np.array_equal(pa["scalars_var"], pb["scalars_var"])
    (tmp_path / "samples.csv").write_text("file,set,pressure\n")
    with pytest.raises(FamilyError, match=r"samples.csv: no column 'bending'"):
        read_mesh_folder(tmp_path, "train", P.parameter_names, P.output_fields, P.output_scalars)


def _renamed(fam: Family) -> Family:
    """The family with a user's names and units: inputs P, B, nu; fields U1, U2, vm; scalar C."""
    names = {"u_x": "U1", "u_y": "U2", "von_mises": "vm"}
    return Family([MeshSample(s.nodes, s.triangles, {names[f]: v for f, v in s.fields.items()}) for s in fam.samples],
                  fam.inputs, fam.scalars[:, 1:], fam.names, ["P", "B", "nu"], {"U1": "mm", "U2": "mm", "vm": "MPa"},
                  {"C": "J"}, fam.attrs)


def test_plaid_round_trip_and_mmgp_stages_from_the_study_file(tmp_path, solved):
    """A family written as a PLAID dataset (CGNS) and read back through its problem definition's
    splits is the same family; then simulate-geometries (reading it), mmgp-fit, mmgp-predict
    (quantiles, draws, VTU) and evaluate-mmgp run on it from a study file that only declares its
    names and units."""
    from conftest import PYTHON, run, write_yaml
    from surrogates.mmgp.plaid import read_plaid, write_plaid

    fams = {n: _renamed(f) for n, f in solved.items()}
    ds = tmp_path / "plates_plaid"
    write_plaid(ds, fams, "plates")
    for n, fam in fams.items():
        back = read_plaid(ds, n, ["P", "B", "nu"], fam.field_units, fam.scalar_units)
        assert len(back.samples) == len(fam.samples)
        for a, b in zip(fam.samples, back.samples):
            _same(a, b, {f: f for f in fam.fields})
        assert np.array_equal(back.inputs, fam.inputs) and np.array_equal(back.scalars, fam.scalars)
    default = read_plaid(ds, "test")  # names from the problem definition (sorted there), no units
    assert default.input_names == ["B", "P", "nu"] and list(default.field_units) == ["U1", "U2", "vm"]
    with pytest.raises(FamilyError, match="a PLAID problem definition has train and test splits"):
        read_plaid(ds, "validation")

    study = write_yaml(tmp_path / "study.yaml", {
        "name": "plaid_plates", "problem": {"name": "mesh_family", "source": "plaid", "path": str(ds), "inputs": ["P", "B", "nu"]},
        "mmgp": {"enabled": True, "fields": {"U1": "mm", "U2": "mm", "vm": "MPa"}, "scalars": {"C": "J"},
                 "load_scaling": False, "geometry_modes": 2, "field_modes": 3, "restarts": 1, "iterations": 15,
                 "quantiles": [0.1, 0.9], "posterior_samples": 3, "vtu_samples": 2}})
    sv = ["--study-config", study]
    for n in ("train", "test"):
        run([PYTHON, "-m", "surrogates", "simulate-geometries", *sv, "--parameters", tmp_path / "unused.h5", "--set", n,
             "--out", tmp_path / f"{n}.h5"])
    run([PYTHON, "-m", "surrogates", "mmgp-fit", *sv, "--train", tmp_path / "train.h5", "--out", tmp_path / "m.h5"])
    run([PYTHON, "-m", "surrogates", "mmgp-predict", *sv, "--model", tmp_path / "m.h5", "--family", tmp_path / "test.h5",
         "--vtu-dir", tmp_path / "vtu", "--out", tmp_path / "pred.h5"])
    run([PYTHON, "-m", "surrogates", "evaluate-mmgp", *sv, "--predictions", tmp_path / "pred.h5", "--metrics",
         tmp_path / "m.json", "--figures", tmp_path / "fig", "--section", tmp_path / "s.json"])
    m = json.loads((tmp_path / "m.json").read_text())
    assert list(m["fields"]) == ["U1", "U2", "vm"] and list(m["scalars"]) == ["C"] and m["n_test"] == 4
    import xarray as xr

    pred = xr.open_dataset(tmp_path / "pred.h5", engine="h5netcdf")
    assert pred["U2_quantiles"].shape == (2, int(pred["node_offset"].values[-1])) and pred["vm_draws"].shape[0] == 3
    assert pred["U1"].attrs["units"] == "mm" and list(pred["scalar_units"].values) == ["J"]
    assert sorted(p.name for p in (tmp_path / "vtu").iterdir()) == ["sample_000.vtu", "sample_001.vtu"]
    assert (tmp_path / "fig" / "mmgp_vm.png").is_file() and (tmp_path / "s.json").is_file()
