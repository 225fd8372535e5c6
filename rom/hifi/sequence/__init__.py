"""The solve sequence of a simulate chunk: samples solved in an order where neighbours are close, each
solve starting from the Galerkin projection on the span of the earlier solutions, one PETSc option
tuned online. It drives rom.hifi.solvers (and may import petsc4py and mpi4py like them).

- ordering.py: solve paths, chunks cut along one path;
- recycling.py: the span of earlier solutions, the Galerkin initial guess;
- tuning.py: the bandit over one PETSc option;
- driver.py: `solve_sequence`, `SequenceSettings`, per-sample `SequenceFacts`."""
