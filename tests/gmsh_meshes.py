"""Meshes the tests write with gmsh (.msh files with named physical groups)."""
from __future__ import annotations

from pathlib import Path

import gmsh
import numpy as np

R1, R2 = 0.5, 1.0  # radii of the annulus / spherical shell sectors


class session:
    def __enter__(self):
        gmsh.initialize(["tests"], readConfigFiles=False, interruptible=False)
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("Mesh.RandomSeed", 1)
        return gmsh

    def __exit__(self, *exc):
        gmsh.finalize()


def _write(path, version=4.1, binary=False):
    gmsh.option.setNumber("Mesh.MshFileVersion", version)
    gmsh.option.setNumber("Mesh.Binary", int(binary))
    gmsh.write(str(path))
    return Path(path)


def _size(h):
    gmsh.option.setNumber("Mesh.MeshSizeMax", h)
    gmsh.option.setNumber("Mesh.MeshSizeMin", h)


def large_cube(path, dofs: float, build) -> Path:
    """A unit-cube mesh of about `dofs` nodes for the benchmarks, cached at `path`: `build(occ)` adds the
    volumes and physical groups; meshed at an eighth of the nodes and refined once (gmsh's 1-to-8 split,
    much faster than meshing fine), written as binary gmsh 4.1."""
    path = Path(path)
    if path.exists():
        return path
    h = (0.9 / (dofs / 8)) ** (1 / 3)  # gmsh puts about 0.9 / h^3 nodes in the unit cube
    with session():
        gmsh.option.setNumber("General.NumThreads", 1)
        build(gmsh.model.occ)
        _size(h)
        gmsh.model.mesh.generate(3)
        gmsh.model.mesh.refine()
        _write(path.with_suffix(".tmp.msh"), 4.1, binary=True)
    path.with_suffix(".tmp.msh").replace(path)
    return path


def sector(dim: int, h: float, path, refinements: int = 0) -> list[Path]:
    """A quarter annulus (2D) or an octant of a spherical shell (3D), R1 < r < R2, region `shell`,
    boundary groups `inner` (r = R1), `outer` (r = R2) and `sides` (the planes of symmetry). With
    refinements > 0, also the uniformly refined meshes (path stem + _<level>)."""
    with session():
        occ = gmsh.model.occ
        if dim == 2:
            ring, _ = occ.cut([(2, occ.addDisk(0, 0, 0, R2, R2))], [(2, occ.addDisk(0, 0, 0, R1, R1))])
            out, _ = occ.intersect(ring, [(2, occ.addRectangle(0, 0, 0, 2, 2))])
        else:
            ring, _ = occ.cut([(3, occ.addSphere(0, 0, 0, R2))], [(3, occ.addSphere(0, 0, 0, R1))])
            out, _ = occ.intersect(ring, [(3, occ.addBox(0, 0, 0, 2, 2, 2))])
        occ.synchronize()
        gmsh.model.addPhysicalGroup(dim, [out[0][1]], name="shell")
        groups = {"inner": [], "outer": [], "sides": []}
        for d, t in gmsh.model.getBoundary(out, oriented=False):
            lo, hi = np.array(gmsh.model.getBoundingBox(d, t)).reshape(2, 3)
            flat = np.min((hi - lo)[:dim]) < 1e-6  # a plane of symmetry
            if flat:
                groups["sides"].append(t)
            else:
                groups["inner" if np.linalg.norm(occ.getCenterOfMass(d, t)) < (R1 + R2) / 2 else "outer"].append(t)
        for name, tags in groups.items():
            gmsh.model.addPhysicalGroup(dim - 1, tags, name=name)
        _size(h)
        gmsh.model.mesh.generate(dim)
        paths = [_write(path)]
        for level in range(1, refinements + 1):
            gmsh.model.mesh.refine()
            paths.append(_write(Path(path).with_name(f"{Path(path).stem}_{level}.msh")))
    return paths


def box(dim: int, h: float, path, version=4.1, binary=False, regions=1, recombine=False, order=1) -> Path:
    """The unit square or cube, regions `left` and `right` (x < 1/2, x > 1/2) when regions = 2 (else
    `body`), boundary groups x0, x1, y0, y1[, z0, z1] (the faces x = 0, ...)."""
    with session():
        occ = gmsh.model.occ
        if regions == 2:
            parts = ([occ.addRectangle(0, 0, 0, 0.5, 1), occ.addRectangle(0.5, 0, 0, 0.5, 1)] if dim == 2 else
                     [occ.addBox(0, 0, 0, 0.5, 1, 1), occ.addBox(0.5, 0, 0, 0.5, 1, 1)])
            out, _ = occ.fragment([(dim, parts[0])], [(dim, parts[1])])
        else:
            out = [(dim, occ.addRectangle(0, 0, 0, 1, 1) if dim == 2 else occ.addBox(0, 0, 0, 1, 1, 1))]
        occ.synchronize()
        if regions == 2:
            for name, left in (("left", True), ("right", False)):
                tags = [t for _, t in out if (occ.getCenterOfMass(dim, t)[0] < 0.5) == left]
                gmsh.model.addPhysicalGroup(dim, tags, name=name)
        else:
            gmsh.model.addPhysicalGroup(dim, [t for _, t in out], name="body")
        faces: dict[str, list] = {}
        for _, t in gmsh.model.getBoundary(out, oriented=False, combined=True):
            lo, hi = np.array(gmsh.model.getBoundingBox(dim - 1, t)).reshape(2, 3)
            for axis in range(dim):
                if hi[axis] - lo[axis] < 1e-6:
                    side = "01"[int(lo[axis] > 0.5)]
                    faces.setdefault(f"{'xyz'[axis]}{side}", []).append(t)
        for name in sorted(faces):
            gmsh.model.addPhysicalGroup(dim - 1, faces[name], name=name)
        _size(h)
        if recombine:
            gmsh.option.setNumber("Mesh.RecombineAll", 1)
        gmsh.model.mesh.generate(dim)
        if order > 1:
            gmsh.model.mesh.setOrder(order)
        return _write(path, version, binary)


def square(path, size: float) -> Path:
    """The unit square of examples/meshes/square.py (physical groups `domain` and `wall`), written by
    gmsh in a subprocess (gmsh's own process state stays out of the test's)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, root / "examples" / "meshes" / "square.py", path, "--size", str(size)], check=True)
    return Path(path)
