"""Mesh-morphing Gaussian processes (MMGP) for shape families without shape parameters:
geometry (topology checks, boundary numbering, ragged HDF5 families), morphing (Tutte/Floater onto
the unit disk, RBF alternative), transfer (P1 interpolation onto a common support, with clamping)
and model (POD of coordinates and fields + batched GP)."""
