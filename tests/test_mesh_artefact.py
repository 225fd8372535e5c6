"""The mesh read once per study (issue 24): the operators artefact stores the mesh file's content and the
node order of the numbering, and the stages after `operators` build the problem from it, bit for bit the
problem of the .msh (numbering, boundary groups, X, M, A_q, f_p), without opening the file. The CSR
pattern without a global np.unique: the same indptr, indices and entry slots on random meshes."""
import subprocess
import sys

import numpy as np
import pytest
import yaml

import gmsh_meshes
from conftest import ROOT
from rom import artefacts, config
from rom.hifi.discretization import fem, meshfile
from rom.hifi.discretization import mesh as meshlib
from rom.hifi.discretization.operators import operators_dataset, read_mesh


# -- the pattern ------------------------------------------------------------------------------------
def reference_pattern(dof, n, row_range=None):
    """The np.unique construction the pattern had before (indptr, indices, elements, entry_slot)."""
    r0, r1 = row_range if row_range is not None else (0, n)
    k = dof.shape[1]
    owned = (dof >= r0) & (dof < r1)
    elements = np.flatnonzero(owned.any(axis=1))
    d = dof[elements]
    rows = np.repeat(d, k, axis=1).ravel()
    cols = np.tile(d, (1, k)).ravel()
    keep = (rows >= r0) & (rows < r1) & (cols >= 0)
    key = rows[keep] * n + cols[keep]
    unique_key, slot = np.unique(key, return_inverse=True)
    entry_slot = np.full(keep.shape, -1, dtype=np.int64)
    entry_slot[keep] = slot.ravel()
    indptr = np.zeros(r1 - r0 + 1, dtype=np.int64)
    np.cumsum(np.bincount(unique_key // n - r0, minlength=r1 - r0), out=indptr[1:])
    return indptr, (unique_key % n).astype(np.int64), elements, entry_slot


def random_dofs(rng, n_nodes, k, m, fixed_fraction, components=1):
    cells = np.array([rng.choice(n_nodes, size=k, replace=False) for _ in range(m)], dtype=np.int64).reshape(m, k)
    fixed = rng.random((n_nodes, components)) < fixed_fraction
    numbering = np.full(fixed.shape, -1, dtype=np.int64)
    numbering[~fixed] = rng.permutation(int((~fixed).sum()))
    return numbering[cells].reshape(m, k * components), int((~fixed).sum())


@pytest.mark.parametrize("packed", [True, False])
def test_pattern_equals_the_unique_construction_on_random_meshes(monkeypatch, packed):
    if not packed:  # keys too wide for the packed sort: the argsort path
        monkeypatch.setattr(fem, "PACK_BITS", 0)
    rng = np.random.default_rng(24)
    checked = 0
    for trial in range(120):
        k = int(rng.integers(2, 5))
        n_nodes = int(rng.integers(k, 80))
        dof, n = random_dofs(rng, n_nodes, k, int(rng.integers(0, 120)), rng.choice([0.0, 0.2, 0.7, 1.0]),
                             components=int(rng.integers(1, 3)))
        r0 = int(rng.integers(0, n + 1))
        for rr in (None, (r0, int(rng.integers(r0, n + 1)))):
            p = fem.Pattern.from_cell_dofs(dof, n, rr)
            ref = reference_pattern(dof, n, rr)
            for got, want in zip((p.indptr, p.indices, p.elements, p.entry_slot), ref):
                assert got.dtype == np.int64 and np.array_equal(got, want), (trial, rr)
            checked += p.nnz
    assert checked > 10000


def test_pattern_of_a_tetrahedral_mesh_and_its_assembly(tmp_path):
    mf = meshfile.read(gmsh_meshes.box(3, 0.2, tmp_path / "box.msh", regions=2))
    fixed = np.zeros(len(mf.nodes), dtype=bool)
    fixed[np.unique(mf.group_facets("x0"))] = True
    m = meshlib.SimplexMesh(mf.nodes, mf.cells, fixed)
    for rr in (None, (m.n_dofs // 3, m.n_dofs // 2)):
        p = fem.Pattern.build(m, rr)
        ref = reference_pattern(m.cell_dofs, m.n_dofs, rr)
        assert all(np.array_equal(a, b) for a, b in zip((p.indptr, p.indices, p.elements, p.entry_slot), ref))
        # sum_entries with the kept entries computed once: the bincount of the compressed entries, exactly
        K = fem.stiffness_local(m)[p.elements]
        keep = ref[3] >= 0
        want = np.bincount(ref[3][keep], weights=K.ravel()[keep], minlength=p.nnz)
        assert p.sum_entries(K).tobytes() == want.tobytes()
        term = np.arange(len(p.elements)) % 3
        flat = np.repeat(term, 16)[keep] * p.nnz + ref[3][keep]
        want = np.bincount(flat, weights=K.ravel()[keep], minlength=3 * p.nnz).reshape(3, p.nnz)
        assert p.sum_entries(K, term, 3).tobytes() == want.tobytes()


def test_rows_once_and_rows_in_equal_their_references():
    rng = np.random.default_rng(5)
    for _ in range(50):
        rows = rng.integers(0, 12, size=(int(rng.integers(1, 60)), 3))
        rows = rows[(rows[:, 0] != rows[:, 1]) & (rows[:, 1] != rows[:, 2]) & (rows[:, 0] != rows[:, 2])]
        if not len(rows):
            continue
        assert np.array_equal(meshlib.rows_once(rows), meshlib.row_counts(rows) == 1)
        other = rng.permuted(rows[: len(rows) // 2], axis=1)
        sets = {frozenset(r) for r in other}
        assert np.array_equal(meshlib.rows_in(rows, other), [frozenset(r) in sets for r in rows])


# -- the problem from the artefact ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def heat_sink(tmp_path_factory):
    """The shipped example's mesh (examples/meshes/heat_sink.py, about 3000 nodes)."""
    path = tmp_path_factory.mktemp("hs") / "heat_sink.msh"
    subprocess.run([sys.executable, str(ROOT / "examples/meshes/heat_sink.py"), str(path)], check=True)
    return path


DECLARATIONS = {
    "diffusion": {"name": "diffusion", "conductivity": {"base": "k_base", "fins": "k_fins", "pad": 390.0},
                  "source": {"pad": "s"}, "dirichlet": {"underside": "g"}, "neumann": {"heater": 3.0e4},
                  "robin": {"convective": {"h": "h_conv", "u_inf": 20.0}},
                  "reference": {"k_base": 155.0, "k_fins": 155.0, "h_conv": 20.0}},
    "transient": {"name": "diffusion", "conductivity": {"base": "k_base", "fins": 200.0, "pad": 390.0},
                  "neumann": {"heater": "q"}, "robin": {"convective": {"h": 10.0}},
                  "transient": {"dt": 0.5, "steps": 3, "initial": 20.0}},
    "elasticity": {"name": "elasticity", "young": {"base": "E", "fins": 70.0, "pad": 120.0},
                   "poisson": {"base": 0.33, "fins": 0.33, "pad": 0.34}, "body_force": {"fins": [0.0, 0.0, "b"]},
                   "traction": {"heater": [0.0, 0.0, 1.0]}, "fixed": {"underside": [0.0, 0.0, 0.0]}},
}
BOUNDS = {"k_base": [100.0, 240.0], "k_fins": [100.0, 240.0], "h_conv": [5.0, 80.0], "s": [0.0, 1.0],
          "g": [10.0, 30.0], "q": [1.0, 2.0], "E": [50.0, 90.0], "b": [-1.0, 1.0]}


def study_of(spec, msh):
    spec = {**spec, "mesh": {"file": str(msh)}}
    names = config.problem_class(spec).parameter_space(spec).names
    raw = {"name": "mesh_artefact", "problem": spec, "parameters": {n: {"bounds": BOUNDS[n]} for n in names},
           "design": {"method": "lhs", "train": {"size": 3, "seed": 1}, "test": {"size": 2, "seed": 2}},
           "simulate": {"backend": "scipy", "chunk_size": 3}}
    return config.validate(raw, "test", msh.parent)


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("kind", sorted(DECLARATIONS))
def test_problem_from_the_artefact_is_the_problem_of_the_mesh_file(heat_sink, tmp_path, monkeypatch, kind):
    study = study_of(DECLARATIONS[kind], heat_sink)
    p = config.make_problem(study)
    ops = tmp_path / "operators.h5"
    artefacts.write(operators_dataset(p), ops, study, "operators")

    def no_file(*a, **k):
        raise AssertionError("the mesh file was parsed")

    monkeypatch.setattr(meshfile, "read", no_file)
    q = config.make_problem(study, ops)
    assert type(q) is type(p) and q.file.node_order is not None
    # the mesh: arrays, regions, boundary groups, numbering
    for name in ("nodes", "cells", "cell_region", "facets", "facet_group"):
        assert same_bits(getattr(q.file, name), getattr(p.file, name)), name
    assert (q.file.regions, q.file.boundaries) == (p.file.regions, p.file.boundaries)
    assert q.file.path == p.file.path
    for name in ("order", "fixed", "numbering", "cell_dofs"):
        assert same_bits(getattr(q.mesh, name), getattr(p.mesh, name)), name
    for name in p.file.boundaries:
        assert same_bits(q.file.group_facets(name), p.file.group_facets(name))
    # the assembled matrices and loads, bit for bit
    pp, pq = fem.Pattern.build(p.mesh), fem.Pattern.build(q.mesh)
    assert same_bits(pp.indptr, pq.indptr) and same_bits(pp.indices, pq.indices)
    assert same_bits(pp.entry_slot, pq.entry_slot)
    for what in ("energy_product", "mass_product", "operator_terms", "rhs_terms"):
        assert same_bits(getattr(q, what)(pq), getattr(p, what)(pp)), what
    mu = np.mean(q.space.bounds, axis=1)
    assert same_bits(q.theta(mu), p.theta(mu)) and same_bits(q.phi(mu), p.phi(mu))
    assert same_bits(q.full_field(mu, np.ones(q.mesh.n_dofs)), p.full_field(mu, np.ones(p.mesh.n_dofs)))
    # the artefact of the rebuilt problem is the same artefact
    again = operators_dataset(q)
    first = artefacts.read(ops)
    for name in ("X", "M", "A_terms", "f_terms", "indptr", "indices", "interior_nodes", "mesh_node_order"):
        assert same_bits(again[name].values, first[name].values), name


def test_an_artefact_of_another_mesh_is_refused_and_one_without_a_mesh_falls_back(heat_sink, tmp_path):
    study = study_of(DECLARATIONS["diffusion"], heat_sink)
    ops = tmp_path / "operators.h5"
    artefacts.write(operators_dataset(config.make_problem(study)), ops, study, "operators")
    other = {**study, "problem": {**study["problem"], "mesh": {**study["problem"]["mesh"], "digest": "0" * 64}}}
    with pytest.raises(Exception, match="rerun the operators stage") as info:
        config.make_problem(other, ops)
    from rom.errors import UserError

    assert isinstance(info.value, UserError)
    bare = tmp_path / "bare.h5"
    artefacts.write(artefacts.read(ops).drop_vars(["mesh_node_order"]), bare, study, "operators")
    assert read_mesh(bare) is None
    assert config.make_problem(study, bare).file.node_order is None  # parsed from the file


def test_a_2d_mesh_round_trips(tmp_path):
    msh = gmsh_meshes.box(2, 0.1, tmp_path / "square.msh", regions=2)
    spec = {"name": "diffusion", "conductivity": {"left": "k", "right": 2.0}, "dirichlet": {"x0": 1.0},
            "robin": {"x1": {"h": 3.0}}}
    BOUNDS["k"] = [1.0, 2.0]
    study = study_of(spec, msh)
    p = config.make_problem(study)
    ops = tmp_path / "operators.h5"
    artefacts.write(operators_dataset(p), ops, study, "operators")
    q = config.make_problem(study, ops)
    pat = fem.Pattern.build(p.mesh)
    assert same_bits(q.mesh.numbering, p.mesh.numbering) and same_bits(q.mesh.cells, p.mesh.cells)
    assert same_bits(q.operator_terms(fem.Pattern.build(q.mesh)), p.operator_terms(pat))
    assert same_bits(q.rhs_terms(fem.Pattern.build(q.mesh)), p.rhs_terms(pat))


def test_simulate_after_operators_does_not_open_the_mesh_file(heat_sink, tmp_path, monkeypatch):
    """sample, operators, then simulate with the .msh renamed away (and gmsh unable to open anything):
    the snapshots equal those of a simulate that read the .msh."""
    import gmsh

    from rom import cli

    msh = tmp_path / "part.msh"
    msh.write_bytes(heat_sink.read_bytes())
    study = study_of(DECLARATIONS["diffusion"], msh)
    s = tmp_path / "study.yaml"
    s.write_text(yaml.safe_dump(study, sort_keys=False))
    params, ops = tmp_path / "parameters.h5", tmp_path / "fom" / "operators.h5"
    assert cli.main(["sample", "--study-config", str(s), "--out", str(params)]) == 0
    assert cli.main(["operators", "--study-config", str(s), "--out", str(ops)]) == 0
    ref = tmp_path / "ref.h5"
    assert cli.main(["simulate", "--study-config", str(s), "--parameters", str(params), "--out", str(ref)]) == 0

    args = cli.parser().parse_args(["simulate", "--study-config", str(s), "--parameters", str(params),
                                    "--operators", str(ops), "--out", str(tmp_path / "chunk0.h5")])
    args.petsc_args = []
    loaded = config.load(s)  # validation reads the file's group names and digest: before it goes away
    msh.rename(tmp_path / "gone.msh")

    def no_file(*a, **k):
        raise AssertionError("the mesh file was opened")

    monkeypatch.setattr(gmsh, "open", no_file)
    monkeypatch.setattr(meshfile, "read", no_file)
    ctx = cli.Context(args.stage, args, loaded)
    assert args.stage.run(ctx) == 0
    assert ctx.problem.file.node_order is not None
    new, old = artefacts.read(tmp_path / "chunk0.h5"), artefacts.read(ref)
    assert new["u"].shape == old["u"].shape and same_bits(new["u"].values, old["u"].values)
    assert same_bits(new["mu"].values, old["mu"].values)
