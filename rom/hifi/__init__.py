"""Full-order models. The only package that touches PETSc and MPI.

Importing it registers every problem: modules defining problems are imported here."""
from . import problems  # noqa: F401
from . import nonaffine  # noqa: F401
from . import elasticity  # noqa: F401
from . import nonlinear_heat  # noqa: F401
