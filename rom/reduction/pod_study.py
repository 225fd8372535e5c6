"""The POD artefact (rom/pod.h5): modes of the train snapshots in the X product, the spectrum, and the
test-set projection errors for every basis size."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import xarray as xr

from .pod import BLOCK_BYTES, pod, pod_blocks, projection_errors, projection_errors_blocks


def pod_study(S, T, X: sp.spmatrix, tol: float, max_modes: int, block_bytes: int = BLOCK_BYTES) -> xr.Dataset:
    """POD of the rows of S (train snapshots) in X, and the relative X-norm projection errors of the rows
    of T (test snapshots) onto the first N modes, N = 0..n_modes. S and T are arrays, or snapshot files
    read in blocks of `block_bytes` (rom.snapshots.SnapshotRows: rom.reduction.pod.pod_blocks)."""
    arrays = isinstance(S, np.ndarray)
    V, lam = pod(S, X, tol, max_modes) if arrays else pod_blocks(S, X, tol, max_modes, block_bytes)
    sizes = np.arange(0, len(V) + 1)
    if not len(T):
        err = np.zeros((len(sizes), 0))
    elif isinstance(T, np.ndarray):
        err = projection_errors(V, T, X, sizes)
    else:
        err = projection_errors_blocks(V, T, X, sizes, block_bytes)
    energy_left = np.clip(1.0 - np.cumsum(lam) / lam.sum(), 0.0, None) if lam.sum() > 0 else lam
    return xr.Dataset(
        {
            "modes": (("mode", "dof"), V, {"long_name": "X-orthonormal POD modes"}),
            "eigenvalues": ("snapshot_mode", lam, {"long_name": "eigenvalues of the correlation S X S^T"}),
            "energy_left_out": ("snapshot_mode", energy_left),
            "test_error": (("basis_size", "test_sample"), err, {"long_name": "relative X-norm projection error"}),
        },
        coords={"basis_size": sizes},
        attrs={"tol": tol, "n_modes": len(V), "n_train_snapshots": len(S)},
    )
