"""pod: method of snapshots in the X (H1-seminorm) product, and the test-set projection errors vs N."""
from __future__ import annotations

from rom.hifi import capabilities as cap
from rom.stage import Artefact, Stage, problem_has


def run(ctx):
    from rom.hifi.discretization.operators import X_ONLY, x_product
    from rom.reduction.pod import BLOCK_BYTES
    from rom.reduction.pod_study import pod_study
    from rom.snapshots import SnapshotRows

    X = x_product(ctx.read("operators", drop=X_ONLY))
    # The fields are read in blocks of samples (rom.reduction.pod.pod_blocks), never whole.
    S = SnapshotRows(ctx.path("train"), ctx.read("train", drop=("u",)))
    T = SnapshotRows(ctx.path("test"), ctx.read("test", drop=("u",)))
    s = ctx.study["pod"]
    ctx.log.info("POD of %d train snapshots of %d dofs (%.1f MB, read in panels of %d MB; tol %g, at most %d modes)",
                 len(S), S.n_dofs, S.nbytes / 1e6, BLOCK_BYTES >> 20, s["tol"], s["max_modes"])
    try:
        ds = pod_study(S, T, X, s["tol"], s["max_modes"])
    finally:
        S.close()
        T.close()
    n = ds.attrs["n_modes"]
    left = ds["energy_left_out"].values[n - 1] if n else 1.0
    if n == s["max_modes"] and left > s["tol"]:
        ctx.warn(f"POD stopped at pod.max_modes = {n} with relative energy {left:.2e} left out, above pod.tol = "
                 f"{s['tol']:g}: raise max_modes or accept the larger projection error")
    ctx.log.info("%d modes; max test projection error with all of them %.3e", ds.attrs["n_modes"],
                 float(ds["test_error"].values[-1].max()) if len(T) else float("nan"))
    ctx.write("out", ds, "pod")


STAGES = (
    Stage("pod", run, "POD of the train snapshots (X = H1-seminorm product) and the test-set projection errors "
          "versus basis size", sections=("pod",), needs=frozenset({cap.MESH}), enabled=problem_has(cap.MESH),
          inputs=(Artefact("operators", "fom/operators.h5"), Artefact("train", "snapshots/train.h5"),
                  Artefact("test", "snapshots/test.h5 (may hold no sample)")),
          outputs=(Artefact("out", "rom/pod.h5"),)),
)
