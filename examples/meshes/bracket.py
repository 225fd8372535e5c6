#!/usr/bin/env python3
"""A 2D bracket for romflow's elasticity example (config/studies/bracket.yaml), meshed with gmsh.

    python examples/meshes/bracket.py OUT.msh [--size 0.004]

Lengths in metres: a plate 200 x 60 mm clamped on its left edge, with a bolt hole of radius 12 mm at
x = 140 mm reinforced by a ring (outer radius 22 mm) of another material. Regions: plate, ring.
Boundary groups: clamp (left edge), load (right edge), hole (the hole's edge).
"""
import argparse

import gmsh

L, H, XH, R_HOLE, R_RING = 0.200, 0.060, 0.140, 0.012, 0.022


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--size", type=float, default=0.004)
    args = p.parse_args()
    gmsh.initialize(["bracket"], readConfigFiles=False)
    gmsh.option.setNumber("General.Terminal", 0)
    occ = gmsh.model.occ
    plate = occ.addRectangle(0, 0, 0, L, H)
    ring = occ.addDisk(XH, H / 2, 0, R_RING, R_RING)
    hole = occ.addDisk(XH, H / 2, 0, R_HOLE, R_HOLE)
    ring_cut, _ = occ.cut([(2, ring)], [(2, hole)], removeTool=False)
    plate_cut, _ = occ.cut([(2, plate)], [(2, hole)])
    out, _ = occ.fragment(plate_cut, ring_cut)
    occ.synchronize()
    areas = {t: occ.getMass(2, t) for _, t in out}
    ring_tags = [t for t, a in areas.items() if a < 3.2 * (R_RING**2 - R_HOLE**2)]
    gmsh.model.addPhysicalGroup(2, [t for t in areas if t not in ring_tags], name="plate")
    gmsh.model.addPhysicalGroup(2, ring_tags, name="ring")
    clamp, load, hole_edges = [], [], []
    for _, c in gmsh.model.getBoundary(out, oriented=False, combined=True):
        x0, y0, _, x1, y1, _ = gmsh.model.getBoundingBox(1, c)
        if x1 < 1e-6:  # OCC bounding boxes are padded by its tolerance
            clamp.append(c)
        elif x0 > L - 1e-6:
            load.append(c)
        elif x0 > XH - R_RING and x1 < XH + R_RING:
            hole_edges.append(c)
    for name, tags in (("clamp", clamp), ("load", load), ("hole", hole_edges)):
        gmsh.model.addPhysicalGroup(1, tags, name=name)
    gmsh.option.setNumber("Mesh.MeshSizeMax", args.size)
    gmsh.model.mesh.generate(2)
    gmsh.write(args.out)
    gmsh.finalize()


if __name__ == "__main__":
    main()
