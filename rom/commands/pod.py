"""pod: method of snapshots in the X (H1-seminorm) product, and the test-set projection errors vs N."""
from __future__ import annotations

from rom.hifi import capabilities as cap
from rom.stage import Artefact, Stage, problem_has


def run(ctx):
    from rom.hifi.discretization.operators import Operators
    from rom.reduction.pod_study import pod_study
    from rom.snapshots import snapshot_rows

    ops = Operators.from_dataset(ctx.read("operators"))
    S, T = snapshot_rows(ctx.read("train")), snapshot_rows(ctx.read("test"))
    s = ctx.study["pod"]
    ctx.log.info("POD of %d train snapshots of %d dofs (tol %g, at most %d modes)", len(S), S.shape[1], s["tol"],
                 s["max_modes"])
    ds = pod_study(S, T, ops.X, s["tol"], s["max_modes"])
    n = ds.attrs["n_modes"]
    left = ds["energy_left_out"].values[n - 1] if n else 1.0
    if n == s["max_modes"] and left > s["tol"]:
        ctx.warn(f"POD stopped at pod.max_modes = {n} with relative energy {left:.2e} left out, above pod.tol = "
                 f"{s['tol']:g}: raise max_modes or accept the larger projection error")
    ctx.log.info("%d modes; max test projection error with all of them %.3e", ds.attrs["n_modes"],
                 float(ds["test_error"].values[-1].max()) if T.size else float("nan"))
    ctx.write("out", ds, "pod")


STAGES = (
    Stage("pod", run, "POD of the train snapshots (X = H1-seminorm product) and the test-set projection errors "
          "versus basis size", sections=("pod",), needs=frozenset({cap.MESH}), enabled=problem_has(cap.MESH),
          inputs=(Artefact("operators", "fom/operators.h5"), Artefact("train", "snapshots/train.h5"),
                  Artefact("test", "snapshots/test.h5 (may hold no sample)")),
          outputs=(Artefact("out", "rom/pod.h5"),)),
)
