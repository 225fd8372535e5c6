#!/usr/bin/env python3
"""A notched specimen (2D), meshed with gmsh: a plate 10 wide and 20 high with two semicircular notches of
radius 2 on its sides at mid-height, for mesh-convergence studies.

    python examples/meshes/notched.py OUT.msh [--size 1.0] [--notch-size SIZE/4]

Region: specimen. Boundary groups: bottom (y = 0), top (y = 20), notches (the two notch arcs), sides (the
rest of the vertical edges). `--notch-size` is the element size on the notch arcs (default size / 4), graded
to `--size` over one notch radius.
"""
import argparse

import gmsh

W, H, R = 10.0, 20.0, 2.0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--size", type=float, default=1.0)
    p.add_argument("--notch-size", type=float, default=None)
    args = p.parse_args()
    notch = args.notch_size or args.size / 4
    gmsh.initialize(["notched"], readConfigFiles=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.option.setNumber("Mesh.RandomSeed", 1)
    occ = gmsh.model.occ
    plate = occ.addRectangle(0, 0, 0, W, H)
    discs = [(2, occ.addDisk(x, H / 2, 0, R, R)) for x in (0.0, W)]
    occ.cut([(2, plate)], discs)
    occ.synchronize()
    surf = [t for _, t in gmsh.model.getEntities(2)]
    gmsh.model.addPhysicalGroup(2, surf, name="specimen")
    groups = {"bottom": [], "top": [], "notches": [], "sides": []}
    for _, c in gmsh.model.getEntities(1):
        x0, y0, _, x1, y1, _ = gmsh.model.getBoundingBox(1, c)
        if y1 < 1e-6:
            groups["bottom"].append(c)
        elif y0 > H - 1e-6:
            groups["top"].append(c)
        elif y0 > H / 2 - R - 1e-6 and y1 < H / 2 + R + 1e-6 and (x1 - x0) > 1e-6:
            groups["notches"].append(c)
        else:
            groups["sides"].append(c)
    for name, curves in groups.items():
        gmsh.model.addPhysicalGroup(1, curves, name=name)
    field = gmsh.model.mesh.field
    dist = field.add("Distance")
    field.setNumbers(dist, "CurvesList", groups["notches"])
    field.setNumber(dist, "Sampling", 200)
    thr = field.add("Threshold")
    field.setNumber(thr, "InField", dist)
    field.setNumber(thr, "SizeMin", notch)
    field.setNumber(thr, "SizeMax", args.size)
    field.setNumber(thr, "DistMin", 0.0)
    field.setNumber(thr, "DistMax", R)
    field.setAsBackgroundMesh(thr)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.model.mesh.generate(2)
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.write(args.out)
    gmsh.finalize()


if __name__ == "__main__":
    main()
