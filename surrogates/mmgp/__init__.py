"""Mesh-morphing Gaussian processes (MMGP) for shape families without shape parameters:
geometry (mesh checks, boundary numbering, ragged HDF5 families), morphing (barycentric
mean-value / uniform weights onto the unit disk, RBF alternative), transfer (P1 interpolation onto
a common support, with clamping), model (POD of coordinates and fields + independent GPs,
calibrated intervals, quantiles, posterior draws, out-of-range score), family (artefacts, user
mesh files), plaid (PLAID datasets), metrics (PLAID RRMSE, coverage, calibration) and predictions
(the predictions artefact)."""
