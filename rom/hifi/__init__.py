"""Full-order models, in rooms named by role around the contracts:

- capabilities.py: what a problem can do (the Protocols every problem meets); registry.py: problems by
  name or import path;
- problems/: problem definitions (a new problem goes here), numpy/scipy only;
- discretization/: meshes, mesh files, P1 and elasticity element kernels, sparsity patterns, the
  operators artefact;
- solvers/: PETSc/MPI and SciPy linear solvers, Newton, the FullOrderModel, the distributed driver
  (with sequence/, the only code here that imports petsc4py or mpi4py);
- sequence/: the data-generation sequence of a simulate chunk (ordering, recycling, tuning).

tests/test_contracts.py checks these layers."""
