#!/usr/bin/env python3
"""The unit square for romflow's black-box example (config/studies/blackbox.yaml), meshed with gmsh.

    python examples/meshes/square.py OUT.msh [--size 0.05]

Region: plate. Boundary group: wall (all four edges).
"""
import argparse

import gmsh


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--size", type=float, default=0.05)
    args = p.parse_args()
    gmsh.initialize(["square"], readConfigFiles=False)
    gmsh.option.setNumber("General.Terminal", 0)
    s = gmsh.model.occ.addRectangle(0, 0, 0, 1, 1)
    gmsh.model.occ.synchronize()
    gmsh.model.addPhysicalGroup(2, [s], name="plate")
    gmsh.model.addPhysicalGroup(1, [t for _, t in gmsh.model.getEntities(1)], name="wall")
    gmsh.option.setNumber("Mesh.MeshSizeMax", args.size)
    gmsh.model.mesh.generate(2)
    gmsh.write(args.out)
    gmsh.finalize()


if __name__ == "__main__":
    main()
