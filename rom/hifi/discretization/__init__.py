"""Meshes and P1 assembly, numpy/scipy (gmsh, meshio to read and make meshes) only: never petsc4py or
mpi4py, nothing from problems, solvers or the solve sequence.

- mesh.py: the unit square's TriMesh, SimplexMesh (2D/3D, vector fields) and its dof numbering;
- meshfile.py: gmsh / meshio files, physical groups, digests;
- fem.py: P1 element kernels, quadrature, the CSR `Pattern` of a rank's rows (one bincount per assembly);
- elasticity.py: Voigt material and strain matrices, the pattern of vector-valued elements;
- viscoplasticity.py: the Norton law with linear kinematic hardening at quadrature points (radial return,
  consistent tangent) and its uniaxial closed forms;
- operators.py: the operators artefact (affine components, X and M products, the mesh)."""
