"""Reduction algorithms as plain functions on arrays (snapshots are rows: shape (n, n_dofs))."""
