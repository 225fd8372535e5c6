"""Solving: the only room of rom.hifi (with the solve sequence that drives it) that imports petsc4py or
mpi4py. A problem gives values on a pattern; a solver binds them to a backend.

- petsc.py: KSP on a row-distributed AIJ matrix, options scoped to one solver; petsc_options.py:
  options tried before any job; scipy_backend.py: the serial fallback;
- nonlinear.py: Newton's method (PETSc SNES, or SciPy) on a nonlinear problem's implicit Euler step;
- solve.py: `FullOrderModel`, a problem on a backend (stationary solves, trajectories, black boxes);
- shapes.py: shape families, one mesh and one solve per sample;
- distributed.py: rank 0 drives the reductions, the other ranks serve the FOM solves."""
