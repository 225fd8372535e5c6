"""The POD artefact (rom/pod.h5): modes of the train snapshots in the X product, the spectrum, and the
test-set projection errors for every basis size."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import xarray as xr

from .pod import pod, projection_errors


def pod_study(S: np.ndarray, T: np.ndarray, X: sp.spmatrix, tol: float, max_modes: int) -> xr.Dataset:
    """POD of the rows of S (train snapshots) in X, and the relative X-norm projection errors of the rows
    of T (test snapshots) onto the first N modes, N = 0..n_modes."""
    V, lam = pod(S, X, tol, max_modes)
    sizes = np.arange(0, len(V) + 1)
    err = projection_errors(V, T, X, sizes) if len(T) else np.zeros((len(sizes), 0))
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
