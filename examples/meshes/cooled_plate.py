#!/usr/bin/env python3
"""A cooled plate (a turbine-blade-like part) for romflow's elasto-viscoplastic example, meshed with gmsh.

    python examples/meshes/cooled_plate.py OUT.msh [--size 1.6] [--hole-size SIZE/2] [--order 1]

Lengths in millimetres: a straight plate 60 (x) by 24 (y) by 4 (z), no fillets, with a row of four
cylindrical cooling holes of diameter 3 through the thickness (axis along z) on the centreline
y = 12 at x = 15, 25, 35, 45. Region: plate. Boundary groups: root (the face x = 0, clamped), tip (the
face x = 60, where a cyclic traction is applied), holes (the four hole walls), skin (every other outer
face: y = 0, y = 24, z = 0, z = 4). Each boundary face is in exactly one group.

P1 tetrahedra (`--order 1`, the only order taken), written as gmsh 4.1. `--size` is the element size away
from the holes; `--hole-size` (default size / 2) the size on the hole walls, graded to `--size` over
one hole diameter by a distance field. Deterministic: the same arguments give the same file.

Measured with gmsh 4.15 (default --hole-size; wall seconds of this script, one thread, on a 2-core VM);
free displacement dofs = 3 * (nodes - nodes on root):

    --size   nodes     tets      seconds   free dofs
    2.5        1,020     2,990     0.6        2,958
    2.0        1,676     5,603     0.6        4,902
    1.6        2,702     9,405     0.7        7,902   (default: a quick study)
    1.4        3,876    14,422     0.9       11,343
    1.1        6,839    27,723     1.3       20,160   (~2e4 dofs)
    0.59      33,863   162,774     6.5      100,449   (~1e5 dofs)
    0.36     131,130   693,157      31      390,519   (~4e5 dofs; 0.355: 136,741 nodes, 407,313 dofs)
"""
import argparse

import gmsh

L, W, T = 60.0, 24.0, 4.0                 # plate length (x), width (y), thickness (z)
HOLE_D, HOLE_X = 3.0, (15.0, 25.0, 35.0, 45.0)  # cooling holes: diameter, centres on y = W / 2
TOL = 1e-6                                # OCC bounding boxes are padded by its tolerance (1e-7)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--size", type=float, default=1.6, help="element size away from the holes (mm)")
    p.add_argument("--hole-size", type=float, default=None, help="element size on the hole walls (default size / 2)")
    p.add_argument("--order", type=int, default=1, choices=[1], help="element order (P1 tetrahedra only)")
    args = p.parse_args()
    hole_size = args.size / 2 if args.hole_size is None else args.hole_size
    if args.size <= 0 or hole_size <= 0:
        p.error("--size and --hole-size must be positive")
    gmsh.initialize(["cooled_plate"], readConfigFiles=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.option.setNumber("General.NumThreads", 1)
    gmsh.option.setNumber("Mesh.RandomSeed", 1)
    occ = gmsh.model.occ
    plate = occ.addBox(0, 0, 0, L, W, T)
    holes = [occ.addCylinder(x, W / 2, 0, 0, 0, T, HOLE_D / 2) for x in HOLE_X]
    out, _ = occ.cut([(3, plate)], [(3, h) for h in holes])
    occ.synchronize()
    gmsh.model.addPhysicalGroup(3, [t for _, t in out], name="plate")
    root, tip, hole_walls, skin = [], [], [], []
    for _, s in gmsh.model.getBoundary(out, oriented=False, combined=True):
        x0, y0, _, x1, y1, _ = gmsh.model.getBoundingBox(2, s)
        if x1 < TOL:
            root.append(s)
        elif x0 > L - TOL:
            tip.append(s)
        elif any(x0 > x - HOLE_D / 2 - TOL and x1 < x + HOLE_D / 2 + TOL for x in HOLE_X) \
                and y0 > (W - HOLE_D) / 2 - TOL and y1 < (W + HOLE_D) / 2 + TOL:
            hole_walls.append(s)
        else:
            skin.append(s)
    for name, tags in (("root", root), ("tip", tip), ("holes", hole_walls), ("skin", skin)):
        gmsh.model.addPhysicalGroup(2, tags, name=name)
    # Size: hole_size on the hole walls, growing linearly to size one hole diameter away.
    field = gmsh.model.mesh.field
    dist = field.add("Distance")
    field.setNumbers(dist, "SurfacesList", hole_walls)
    field.setNumber(dist, "Sampling", 60)
    grade = field.add("Threshold")
    field.setNumber(grade, "InField", dist)
    field.setNumber(grade, "SizeMin", hole_size)
    field.setNumber(grade, "SizeMax", args.size)
    field.setNumber(grade, "DistMin", 0)
    field.setNumber(grade, "DistMax", HOLE_D)
    field.setAsBackgroundMesh(grade)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.option.setNumber("Mesh.MeshSizeMax", args.size)
    gmsh.option.setNumber("Mesh.MeshSizeMin", min(hole_size, args.size))
    gmsh.option.setNumber("Mesh.ElementOrder", args.order)
    gmsh.model.mesh.generate(3)
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.write(args.out)
    gmsh.finalize()


if __name__ == "__main__":
    main()
