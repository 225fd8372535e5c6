"""Full-order models: the only package that touches PETSc and MPI. Problems (rom.hifi.problems and the
modules beside it) meet the contracts of rom.hifi.capabilities; rom.hifi.registry finds them by name or
import path."""
