"""pod: method of snapshots in the H1-seminorm product, and test-set projection errors vs N."""
from __future__ import annotations

import numpy as np
import xarray as xr

from rom import artefacts, config
from rom.cli import add_study_arg


def register(sub):
    p = sub.add_parser("pod", help="POD of the train snapshots (X = H1-seminorm product) and the test-set "
                       "projection errors versus basis size")
    add_study_arg(p)
    p.add_argument("--operators", required=True)
    p.add_argument("--train", required=True, help="snapshots/train.h5")
    p.add_argument("--test", required=True, help="snapshots/test.h5")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def converged_rows(ds: xr.Dataset) -> np.ndarray:
    """Snapshot matrix (n, n_dofs) of the converged samples (time steps flattened into rows)."""
    U = artefacts.converged(ds)["u"].values
    return U.reshape(-1, U.shape[-1])


def run(args):
    from rom.hifi.operators import Operators
    from rom.reduction.pod import pod, projection_errors

    study = config.load(args.study_config)
    ops = Operators.from_dataset(artefacts.read(args.operators))
    S = converged_rows(artefacts.read(args.train))
    T = converged_rows(artefacts.read(args.test))
    settings = study["pod"]
    V, lam = pod(S, ops.X, settings["tol"], settings["max_modes"])
    sizes = np.arange(0, len(V) + 1)
    err = projection_errors(V, T, ops.X, sizes) if len(T) else np.zeros((len(sizes), 0))
    energy_left = np.clip(1.0 - np.cumsum(lam) / lam.sum(), 0.0, None) if lam.sum() > 0 else lam
    ds = xr.Dataset(
        {
            "modes": (("mode", "dof"), V, {"long_name": "X-orthonormal POD modes"}),
            "eigenvalues": ("snapshot_mode", lam, {"long_name": "eigenvalues of the correlation S X S^T"}),
            "energy_left_out": ("snapshot_mode", energy_left),
            "test_error": (("basis_size", "test_sample"), err, {"long_name": "relative X-norm projection error"}),
        },
        coords={"basis_size": sizes},
        attrs={"tol": settings["tol"], "n_modes": len(V), "n_train_snapshots": len(S)},
    )
    artefacts.write(ds, args.out, study, "pod")
