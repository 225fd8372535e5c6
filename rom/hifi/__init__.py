"""Full-order models. The only package that touches PETSc and MPI."""
