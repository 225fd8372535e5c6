"""Problem definitions: a new problem goes here, one module per family.

A problem is numpy/scipy code that meets the contracts of rom.hifi.capabilities: its parameters, its
study-file keys, and the members of each capability it declares (operator values and loads on a
pattern, affine terms, element kernels, ...). It never builds a solver (rom.hifi.solvers does) and
imports neither petsc4py nor mpi4py (tests/test_contracts.py checks the layers).

- base.py: `P1Problem`, the shared P1 problem on one mesh (`Problem` is its documented alias, the
  name users' classes derive from); arguments.py: study-file keys several families share;
- thermal.py (thermal_block, heat), nonaffine.py (nonaffine_diffusion), nonlinear_heat.py,
  elasticity.py (tensile_plate), declared.py (diffusion, elasticity declared in the study file),
  declared_viscoplastic.py (viscoplastic: elasto-viscoplasticity under a temperature loading, declared alike),
  external.py (black-box commands), shape_family.py (mesh_family, read from files)."""
from .arguments import UNIT_SQUARE_MESH, number_range, positive_range
from .base import P1Problem, Problem
from .declared import Diffusion, Elasticity, TransientDiffusion
from .declared_viscoplastic import Viscoplastic
from .elasticity import TensilePlate
from .external import External, ExternalMatrices, ExternalTransient
from .nonaffine import NonaffineDiffusion
from .nonlinear_heat import NonlinearHeat
from .shape_family import MeshFamily
from .thermal import Heat, ThermalBlock

__all__ = ["UNIT_SQUARE_MESH", "number_range", "positive_range", "P1Problem", "Problem", "ThermalBlock", "Heat",
           "NonaffineDiffusion", "NonlinearHeat", "TensilePlate", "Diffusion", "TransientDiffusion", "Elasticity",
           "External", "ExternalMatrices", "ExternalTransient", "MeshFamily", "Viscoplastic"]
