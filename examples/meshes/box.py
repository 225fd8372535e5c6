#!/usr/bin/env python3
"""A box (3D) or a rectangle (--dim 2), meshed with gmsh: the specimen of homogeneous material tests
(creep, relaxation, patch tests) and of small studies.

    python examples/meshes/box.py OUT.msh [--size 0.25] [--dim 3] [--lengths 1 1 1]

Region: body. Boundary groups: x0, x1, y0, y1 (and z0, z1 in 3D), the faces (edges) at the lower and upper
coordinate of each axis.
"""
import argparse

import gmsh


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--size", type=float, default=0.25)
    p.add_argument("--dim", type=int, choices=(2, 3), default=3)
    p.add_argument("--lengths", type=float, nargs="+", default=[1.0, 1.0, 1.0])
    args = p.parse_args()
    L = (args.lengths + [1.0, 1.0, 1.0])[: args.dim]
    gmsh.initialize(["box"], readConfigFiles=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.option.setNumber("Mesh.RandomSeed", 1)
    occ = gmsh.model.occ
    body = occ.addBox(0, 0, 0, *L) if args.dim == 3 else occ.addRectangle(0, 0, 0, *L)
    occ.synchronize()
    gmsh.model.addPhysicalGroup(args.dim, [body], name="body")
    tol = 1e-9 * max(L)
    for axis, name in enumerate("xyz"[: args.dim]):
        for side, value in (("0", 0.0), ("1", L[axis])):
            faces = [t for _, t in gmsh.model.getEntities(args.dim - 1)
                     if abs(occ.getCenterOfMass(args.dim - 1, t)[axis] - value) < tol]
            gmsh.model.addPhysicalGroup(args.dim - 1, faces, name=f"{name}{side}")
    gmsh.option.setNumber("Mesh.MeshSizeMax", args.size)
    gmsh.option.setNumber("Mesh.MeshSizeMin", args.size)
    gmsh.model.mesh.generate(args.dim)
    gmsh.write(args.out)
    gmsh.finalize()


if __name__ == "__main__":
    main()
