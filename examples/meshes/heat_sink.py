#!/usr/bin/env python3
"""A finned heat sink for romflow's 3D example (config/studies/heat_sink.yaml), meshed with gmsh.

    python examples/meshes/heat_sink.py OUT.msh [--size 0.0025]

Lengths in metres: an aluminium base plate 40 x 40 x 4 mm with a copper heat-spreader pad
(16 x 16 x 2 mm) let into the middle of its underside, and five fins 2 mm thick, 20 mm tall on top.
Regions: base, pad, fins. Boundary groups: heater (the pad's underside, where the chip's heat flux
enters), convective (every surface in the air: fins and the top of the base), underside (the rest of
the bottom, insulated). Element size `--size` (2.5 mm: about 3000 nodes).
"""
import argparse

import gmsh

W, T = 0.040, 0.004             # base width (x, y) and thickness (z)
PAD, PAD_T = 0.016, 0.002       # pad width and depth
FINS, FIN_T, FIN_H = 5, 0.002, 0.020


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--size", type=float, default=0.0025)
    args = p.parse_args()
    gmsh.initialize(["heat_sink"], readConfigFiles=False)
    gmsh.option.setNumber("General.Terminal", 0)
    occ = gmsh.model.occ
    base = occ.addBox(0, 0, 0, W, W, T)
    pad = occ.addBox((W - PAD) / 2, (W - PAD) / 2, 0, PAD, PAD, PAD_T)
    pitch = (W - FIN_T) / (FINS - 1)
    fins = [occ.addBox(i * pitch, 0, T, FIN_T, W, FIN_H) for i in range(FINS)]
    out, parts = occ.fragment([(3, base)], [(3, pad)] + [(3, f) for f in fins])
    occ.synchronize()
    # After the fragment the base is the volume not inside the pad's box.
    vols = [t for _, t in out]
    pad_vol = [t for t in vols if occ.getCenterOfMass(3, t)[2] < PAD_T and
               abs(occ.getCenterOfMass(3, t)[0] - W / 2) < 1e-9 and occ.getMass(3, t) < 1.01 * PAD * PAD * PAD_T]
    fin_vols = [t for t in vols if occ.getCenterOfMass(3, t)[2] > T]
    base_vol = [t for t in vols if t not in pad_vol and t not in fin_vols]
    for name, tags in (("base", base_vol), ("pad", pad_vol), ("fins", fin_vols)):
        gmsh.model.addPhysicalGroup(3, tags, name=name)
    heater, convective, underside = [], [], []
    for _, s in gmsh.model.getBoundary(out, oriented=False, combined=True):
        x0, y0, z0, x1, y1, z1 = gmsh.model.getBoundingBox(2, s)
        if z1 < 1e-6:  # on the bottom plane (OCC boxes are padded by its tolerance)
            inside = x0 > (W - PAD) / 2 - 1e-6 and x1 < (W + PAD) / 2 + 1e-6 and y0 > (W - PAD) / 2 - 1e-6 \
                and y1 < (W + PAD) / 2 + 1e-6
            (heater if inside else underside).append(s)
        else:
            convective.append(s)
    for name, tags in (("heater", heater), ("convective", convective), ("underside", underside)):
        gmsh.model.addPhysicalGroup(2, tags, name=name)
    gmsh.option.setNumber("Mesh.MeshSizeMax", args.size)
    gmsh.option.setNumber("Mesh.MeshSizeMin", args.size / 2)
    gmsh.model.mesh.generate(3)
    gmsh.write(args.out)
    gmsh.finalize()


if __name__ == "__main__":
    main()
