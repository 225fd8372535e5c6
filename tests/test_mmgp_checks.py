"""MMGP's checks on families it did not build: out-of-range flags calibrated on held-out geometry
residuals, folded elements refused at read time, non-finite references left out of the metrics,
meshes finer or coarser than the training ones flagged, float32 PLAID storage stated."""
import logging

import numpy as np
import pytest

from conftest import torch_threads
from rom.hifi.discretization.mesh import simplex_volumes
from rom.hifi.problems.elasticity import TensilePlate
from surrogates.mmgp.family import Family, FamilyError, read_mesh_sample
from surrogates.mmgp.geometry import MeshSample, boundary_edges
from surrogates.mmgp.metrics import prediction_metrics, ragged
from surrogates.mmgp.model import MMGP
from surrogates.mmgp.plaid import read_plaid, write_plaid
from surrogates.mmgp.predictions import metrics_of, predictions_dataset

torch_threads()
LEVEL = 0.1


def shapes(p: TensilePlate, seeds) -> list[MeshSample]:
    """Meshes of the shipped generator with a smooth synthetic field (the checks need no solve)."""
    out = []
    for s in seeds:
        m = p.geometry(s)
        x, y = m.nodes.T
        out.append(MeshSample(m.nodes, m.triangles, {"f": x * y + np.sin(2 * y)}))
    return out


def scalars(samples):
    return np.array([[s.fields["f"].max()] for s in samples])


@pytest.fixture(scope="module")
def fitted():
    """30 train shapes (mesh.n 6) and 8 geometry modes: modes fitted to few shapes leave in-sample
    residuals far below those of new shapes, the case the reference must not miss."""
    p = TensilePlate(mesh_n=6)
    train = shapes(p, range(30))
    mu = np.random.default_rng(0).uniform(size=(30, 1))
    m = MMGP(["f"], ["max_f"], ["a"], geometry_modes=8, field_modes=3, restarts=1, iterations=20, calibration="loo",
             out_of_range_level=LEVEL).fit(train, mu, scalars(train))
    return p, m


def test_in_family_shapes_are_flagged_at_most_at_the_level(fitted):
    """200 new shapes of the family: the flagged fraction stays below the level plus three binomial
    standard deviations (in-sample residuals as the reference flagged 20-40% here); shapes of a
    wider, deeper-notched plate are flagged."""
    p, m = fitted
    n = 200
    test = shapes(p, range(1000, 1000 + n))
    out = m.predict(test, np.random.default_rng(1).uniform(size=(n, 1)))
    assert out["out_of_range"].mean() <= LEVEL + 3 * np.sqrt(LEVEL * (1 - LEVEL) / n), out["out_of_range"].mean()
    assert not out["mesh_outside"].any()  # same mesh size: no resolution flag either
    other = shapes(TensilePlate(mesh_n=9, width=1.5, notches=3, notch_depth=0.3), range(5))
    assert m.predict(other, np.full((5, 1), 0.5))["out_of_range"].all()


def _folded(p):
    """A plate mesh with one interior node pushed across the opposite edge of one of its triangles."""
    m = p.geometry(3)
    nodes, tri = m.nodes.copy(), m.triangles
    v = np.setdiff1d(np.arange(len(nodes)), boundary_edges(tri))[0]  # an interior node
    t = np.flatnonzero((tri == v).any(axis=1))[0]
    a, b = nodes[tri[t][tri[t] != v]]
    nodes[v] = nodes[v] + 1.5 * ((a + b) / 2 - nodes[v])  # beyond the midpoint of the opposite edge
    return nodes, tri


def test_a_folded_element_is_refused_at_read_time_naming_the_file_and_element(tmp_path):
    """A fold (triangles oriented against the rest of the mesh) is refused by the reader, naming the
    file and the first folded triangle; a mesh stored clockwise throughout is a legitimate
    orientation, read counter-clockwise."""
    import meshio

    p = TensilePlate(mesh_n=6)
    nodes, tri = _folded(p)
    path = tmp_path / "folded.vtu"
    meshio.write(path, meshio.Mesh(np.column_stack([nodes, np.zeros(len(nodes))]), [("triangle", tri)],
                                   point_data={"f": nodes[:, 0]}))
    with pytest.raises(FamilyError, match=rf"^{path}: \d+ folded triangles \(first: triangle \d+, nodes \[") as info:
        read_mesh_sample(path, ["f"])
    assert "\n" not in str(info.value)
    m = p.geometry(3)
    cw = tmp_path / "clockwise.vtu"
    meshio.write(cw, meshio.Mesh(np.column_stack([m.nodes, np.zeros(len(m.nodes))]), [("triangle", m.triangles[:, ::-1])],
                                 point_data={"f": m.nodes[:, 0]}))
    back = read_mesh_sample(cw, ["f"])
    assert simplex_volumes(back.nodes, back.triangles).min() > 0


def test_a_non_finite_reference_is_left_out_of_the_metrics_and_named(fitted):
    """A NaN in one test shape's reference field (or scalar) leaves that shape out of that
    output's metrics, named in `excluded`, instead of NaN scores for all."""
    p, m = fitted
    test = shapes(p, range(2000, 2006))
    mu = np.random.default_rng(2).uniform(size=(6, 1))
    ref = scalars(test)
    test[2].fields["f"] = test[2].fields["f"].copy()
    test[2].fields["f"][5] = np.nan
    ref[4, 0] = np.inf
    fam = Family(test, mu, ref, [f"test {i}" for i in range(6)], ["a"], {"f": ""}, {"max_f": ""}, {"set": "test"})
    out = m.predict(test, mu)
    ds, _ = predictions_dataset(m, fam, out)
    met = metrics_of(ds)
    assert met["excluded"] == {"f": ["test 2"], "max_f": ["test 4"]}
    assert all(np.isfinite(v["rrmse"]) and np.isfinite(v["coverage95"]) for v in {**met["fields"], **met["scalars"]}.values())
    # The same scores as the metrics of the finite shapes alone.
    keep = [0, 1, 3, 4, 5]
    ref_f, off = ragged([test[i].fields["f"] for i in keep])
    alone = prediction_metrics({"f": ref_f}, {"f": ragged([out["fields_mean"][i]["f"] for i in keep])[0]},
                               {"f": ragged([out["fields_var"][i]["f"] for i in keep])[0]}, off, [], np.zeros((5, 0)),
                               np.zeros((5, 0)), np.zeros((5, 0)), out["interval_factors"])
    assert met["fields"]["f"]["rrmse"] == alone["fields"]["f"]["rrmse"]


def test_a_mesh_finer_or_coarser_than_the_training_ones_is_flagged(fitted):
    """The same family meshed 8x finer (mesh.n 48) or 1.5x coarser (mesh.n 4) than the training
    shapes (mesh.n 6) is flagged, and the mesh-dependent outputs (pointwise extrema) are named."""
    p, m = fitted
    fine, coarse = shapes(TensilePlate(mesh_n=48), [5000]), shapes(TensilePlate(mesh_n=4), [5001])
    out = m.predict(fine + coarse, np.full((2, 1), 0.5))
    assert out["mesh_outside"].all()
    assert 1 / 9 < out["mesh_size_ratio"][0] < 1 / 7 and 1.3 < out["mesh_size_ratio"][1] < 1.7
    assert m.mesh_dependent_outputs == ["max_f"]
    assert np.array_equal(MMGP.from_dataset(m.to_dataset()).mesh_size_ratio(fine + coarse), out["mesh_size_ratio"])


def test_float32_plaid_storage_is_stated_when_read(tmp_path, caplog):
    """pyplaid's default backend (hf_datasets) stores float32: reading says so in the log and in the
    family's attributes; the cgns backend stores float64 and reads back exactly, without a word."""
    p = TensilePlate(mesh_n=4)

    def fam(seeds, name):
        s = shapes(p, seeds)
        return Family(s, np.full((len(s), 1), 0.5), scalars(s), [str(i) for i in seeds], ["a"], {"f": ""},
                      {"max_f": ""}, {"set": name})

    sets = {"train": fam([1, 2], "train"), "test": fam([3], "test")}
    for backend in ("hf_datasets", "cgns"):
        write_plaid(tmp_path / backend, sets, "plates", backend=backend)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="surrogates.mmgp.plaid"):
            back = read_plaid(tmp_path / backend, "train", ["a"], {"f": ""}, {"max_f": ""})
        exact = np.array_equal(back.samples[0].fields["f"], sets["train"].samples[0].fields["f"])
        if backend == "cgns":
            assert exact and "precision" not in back.attrs and not caplog.records
        else:
            assert not exact and back.attrs["precision"] == "float32 storage: coordinates, field f"
            assert "stored as float32" in caplog.text and "exact only for float64 storage" in caplog.text
