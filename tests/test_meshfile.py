"""Meshes from files: gmsh 2.2 and 4.1 (ASCII, binary) and meshio formats agree, physical groups by name,
the cheap group read matches the full one, and every refused mesh gets its one-line message with the
problem and the count."""
import meshio
import numpy as np
import pytest

import gmsh_meshes
from rom.hifi.discretization import meshfile
from rom.hifi.discretization.mesh import SimplexMesh, boundary_faces, simplex_volumes


@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    d = tmp_path_factory.mktemp("boxes")
    out = {}
    for dim in (2, 3):
        for version, binary in ((2.2, False), (4.1, False), (4.1, True)):
            out[dim, version, binary] = gmsh_meshes.box(dim, 0.3, d / f"b{dim}_{version}_{int(binary)}.msh", version,
                                                        binary, regions=2)
    return out


@pytest.mark.parametrize("dim", [2, 3])
def test_gmsh_formats_agree_and_keep_groups_by_name(boxes, dim):
    meshes = [meshfile.read(boxes[dim, v, b], "diffusion") for v, b in ((2.2, False), (4.1, False), (4.1, True))]
    ref = meshes[0]
    for m in meshes[1:]:
        # ASCII files print 16 significant digits: the same coordinates to one unit of round-off.
        np.testing.assert_allclose(m.nodes, ref.nodes, rtol=0, atol=4 * np.finfo(float).eps)
        np.testing.assert_array_equal(m.cells, ref.cells)
        np.testing.assert_array_equal(m.cell_region, ref.cell_region)
        assert m.groups == ref.groups
    faces = ["x0", "x1", "y0", "y1"] + (["z0", "z1"] if dim == 3 else [])
    assert set(ref.regions) == {"left", "right"} and set(ref.boundaries) == set(faces)
    assert meshfile.mesh_groups(boxes[dim, 4.1, True]) == ref.groups  # $PhysicalNames only
    # Regions by name: the cells of `left` are those with centroid x < 1/2 and they fill half the volume.
    vol = simplex_volumes(ref.nodes, ref.cells)
    assert np.all(vol > 0)
    left = ref.region_cells("left")
    assert np.all(ref.nodes[ref.cells[left]].mean(axis=1)[:, 0] < 0.5)
    assert vol[left].sum() == pytest.approx(0.5, rel=1e-12) and vol.sum() == pytest.approx(1.0, rel=1e-12)
    # Boundary groups: x0 holds the boundary faces on x = 0, all of them.
    x0 = ref.group_facets("x0")
    assert np.all(ref.nodes[x0][..., 0] == 0.0)
    bf = boundary_faces(ref.nodes, ref.cells)
    assert len(x0) == int(np.all(ref.nodes[bf][..., 0] == 0.0, axis=1).sum())


def test_a_facet_in_two_groups_is_in_both(tmp_path):
    import gmsh

    for version in (2.2, 4.1):
        with gmsh_meshes.session():
            gmsh.model.occ.addRectangle(0, 0, 0, 1, 1)
            gmsh.model.occ.synchronize()
            gmsh.model.addPhysicalGroup(2, [1], name="plate")
            gmsh.model.addPhysicalGroup(1, [1, 2], name="a")
            gmsh.model.addPhysicalGroup(1, [2, 3], name="b")
            gmsh_meshes._size(0.25)
            gmsh.model.mesh.generate(2)
            path = gmsh_meshes._write(tmp_path / f"two_{version}.msh", version)
        m = meshfile.read(path)
        lines_per_side = len(m.group_facets("a")) // 2
        assert len(m.group_facets("a")) == len(m.group_facets("b")) == 2 * lines_per_side == 8
        shared = set(map(tuple, np.sort(m.group_facets("a"), 1))) & set(map(tuple, np.sort(m.group_facets("b"), 1)))
        assert len(shared) == lines_per_side


def test_meshio_formats_are_read_with_their_integer_tags(boxes, tmp_path):
    ref = meshfile.read(boxes[3, 4.1, False])
    m = meshio.read(boxes[3, 4.1, False])
    path = tmp_path / "b.vtu"
    meshio.write(path, meshio.Mesh(m.points, m.cells, cell_data={"region": m.cell_data["gmsh:physical"]}))
    other = meshfile.read(path)
    np.testing.assert_array_equal(np.sort(np.sort(other.cells, 1), 0), np.sort(np.sort(ref.cells, 1), 0))
    assert sorted(other.regions) == ["1", "2"] and len(other.boundaries) == 6  # no names in .vtu: the tags
    assert sorted(np.bincount(other.cell_region)) == sorted(np.bincount(ref.cell_region))


def _vtu(tmp_path, name, points, cells, tags=None):
    path = tmp_path / f"{name}.vtu"
    data = {"region": [np.asarray(t, dtype=np.int64) for t in tags]} if tags else {}
    meshio.write(path, meshio.Mesh(points, cells, cell_data=data))
    return path


def _square(boxes):
    m = meshio.read(boxes[2, 4.1, False])
    tri = np.concatenate([c.data for c in m.cells if c.type == "triangle"])
    return m.points.copy(), tri


def _refused(path, *parts):
    with pytest.raises(meshfile.MeshFileError) as err:
        meshfile.read(path, "diffusion")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"problem diffusion: mesh {path.name}: "), msg
    for p in parts:
        assert p in msg, msg
    return msg


def test_unsupported_cells_are_refused_with_their_count(tmp_path):
    quads = gmsh_meshes.box(2, 0.25, tmp_path / "quads.msh", recombine=True)
    n_quads = sum(len(c.data) for c in meshio.read(quads).cells if c.type == "quad")
    assert n_quads > 0
    _refused(quads, f"{n_quads} elements of unsupported type", "Quadrilateral 4")
    p2 = gmsh_meshes.box(3, 0.5, tmp_path / "p2.msh", order=2)
    m = meshio.read(p2)
    count = sum(len(c.data) for c in m.cells if c.type in ("tetra10", "triangle6"))
    _refused(p2, f"{count} elements of unsupported type", "Tetrahedron 10", "Triangle 6")


def test_unreferenced_nodes_are_refused(boxes, tmp_path):
    pts, tri = _square(boxes)
    path = _vtu(tmp_path, "extra", np.vstack([pts, [[2.0, 2.0, 0.0], [3.0, 2.0, 0.0]]]), [("triangle", tri)])
    _refused(path, f"2 of {len(pts) + 2} nodes belong to no triangle")


def test_inverted_and_degenerate_cells_are_refused(boxes, tmp_path):
    pts, tri = _square(boxes)
    folded = tri.copy()
    folded[[3, 7, 11]] = folded[[3, 7, 11]][:, [0, 2, 1]]  # against the orientation of their surface
    _refused(_vtu(tmp_path, "folded", pts, [("triangle", folded)]), "3 inverted triangles")
    flipped = tri[:, [0, 2, 1]]  # a whole surface clockwise is no fold: reoriented
    assert np.all(simplex_volumes(pts[:, :2], meshfile.read(_vtu(tmp_path, "cw", pts, [("triangle", flipped)])).cells) > 0)
    m = meshio.read(gmsh_meshes.box(3, 0.4, tmp_path / "t.msh"))
    tet = np.concatenate([c.data for c in m.cells if c.type == "tetra"])
    bad = tet.copy()
    bad[:5] = bad[:5][:, [1, 0, 2, 3]]
    _refused(_vtu(tmp_path, "inv", m.points, [("tetra", bad)]), "5 inverted tetrahedra")
    flat = tri.copy()
    flat[0, 2] = flat[0, 0]
    _refused(_vtu(tmp_path, "flat", pts, [("triangle", flat)]), "1 degenerate cells")
    twice = np.vstack([tri, tri[:4]])
    _refused(_vtu(tmp_path, "twice", pts, [("triangle", twice)]), "4 cells are listed twice")


def test_facets_that_are_not_faces_and_bent_2d_meshes_are_refused(boxes, tmp_path):
    pts, tri = _square(boxes)
    far = np.array([[tri[0, 0], tri[-1, 1]], [tri[1, 0], tri[-2, 2]]])  # nodes that share no triangle
    path = _vtu(tmp_path, "stray", pts, [("triangle", tri), ("line", far)], [np.ones(len(tri)), [7, 7]])
    _refused(path, "2 facets of boundary group(s) 7 are not faces of its cells")
    bent = pts.copy()
    bent[0, 2] = 0.1
    _refused(_vtu(tmp_path, "bent", bent, [("triangle", tri)]), "2D mesh not in a plane z = const")
    with pytest.raises(meshfile.MeshFileError, match=r"^problem diffusion: mesh nothing.msh: file not found"):
        meshfile.read(tmp_path / "nothing.msh", "diffusion")


def test_rcm_numbering_makes_row_blocks_compact(boxes):
    """Free dofs numbered by reverse Cuthill-McKee: the bandwidth of the stiffness pattern is a small
    fraction of n, so a contiguous row block of one MPI rank couples to few dofs of the other."""
    from rom.hifi.discretization import fem

    m = meshfile.read(gmsh_meshes.box(3, 0.12, boxes[3, 4.1, False].parent / "fine.msh"))
    mesh = SimplexMesh(m.nodes, m.cells, np.zeros(len(m.nodes), dtype=bool))
    pattern = fem.Pattern.build(mesh)
    rows = np.repeat(np.arange(mesh.n_dofs), np.diff(pattern.indptr))
    band = np.abs(rows - pattern.indices).max()
    assert band < 0.25 * mesh.n_dofs
    # The numbering is a permutation and full_field inverts it.
    u = np.arange(mesh.n_dofs, dtype=float)
    np.testing.assert_array_equal(np.sort(mesh.dof_node), np.arange(mesh.n_nodes))
    np.testing.assert_array_equal(mesh.full_field(u)[mesh.dof_node], u)
