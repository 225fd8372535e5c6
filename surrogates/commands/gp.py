"""gp (POD + GP on a fixed-mesh parametric study) and evaluate_gp (test errors, pointwise variance,
coverage, comparison with the RB model when its metrics exist, figures and report section).
Declarations and plumbing: the work is in surrogates.pod_gp."""
from __future__ import annotations

from rom.errors import UserError
from rom.hifi import capabilities as cap
from rom.stage import Artefact, Option, Stage, all_of, none_of


def _threads(ctx):
    import torch

    torch.set_num_threads(max(1, ctx.option("threads") or ctx.study["gp"]["threads"]))


def _snapshots(ctx, name):
    """(mu (n, d), the converged fields as rom.snapshots.SnapshotRows): read in blocks of samples where used
    (surrogates.gp.BLOCK_BYTES), never whole. Close the rows."""
    from rom import artefacts
    from rom.snapshots import SnapshotRows

    meta = ctx.read(name, drop=("u",))
    U = SnapshotRows(ctx.path(name), meta)
    if len(U.field_shape) != 1:
        U.close()
        raise UserError(f"{ctx.path(name)}: POD+GP expects stationary snapshots (sample, dof); problem "
                        f"{ctx.problem.name} is transient")
    return artefacts.converged(meta)["mu"].values, U


def fit(ctx):
    from rom.hifi.discretization.operators import X_ONLY, x_product
    from surrogates.gp import BLOCK_BYTES
    from surrogates.pod_gp import fit_study

    _threads(ctx)
    s = ctx.study["gp"]
    X = x_product(ctx.read("operators", drop=X_ONLY))
    mu, U = _snapshots(ctx, "train")
    V = ctx.read("pod")["modes"].values[:s["max_modes"]]
    ctx.log.info("GP on %d train snapshots (%.1f MB, read in panels of %d MB) -> %d POD coefficients (%d restarts x "
                 "%d iterations each)", len(mu), U.nbytes / 1e6, BLOCK_BYTES >> 20, len(V), s["restarts"],
                 s["iterations"])
    try:
        ds = fit_study(s, ctx.study["seed"], ctx.problem, X, mu, U, V)
    except ValueError as exc:  # log of a non-positive parameter, non-finite snapshots, too few folds
        raise UserError(f"gp: {exc}") from None
    finally:
        U.close()
    if ds.attrs["n_converged"] < len(V):
        ctx.warn(f"{len(V) - ds.attrs['n_converged']} of {len(V)} GP outputs did not converge in gp.iterations = "
                 f"{s['iterations']}")
    ctx.log.info("fitted in %.1f s", ds.attrs["fit_seconds"])
    ctx.write("out", ds, "gp")


def evaluate(ctx):
    from rom.hifi.discretization.operators import X_ONLY, x_product
    from surrogates.pod_gp import evaluate_study

    _threads(ctx)
    ops_ds = ctx.read("operators", drop=X_ONLY)  # X, and the nodes and triangles of the figures
    mu, U = _snapshots(ctx, "test")
    try:
        ds, sec = evaluate_study(ctx.study["gp"], ctx.problem, x_product(ops_ds), ctx.read("gp"), mu,
                                 U, ops_ds, ctx.read("rb_metrics"), ctx.path("figures"))
    finally:
        U.close()
    for w in sec["warnings"]:
        ctx.warn(w)
    ctx.write("metrics", ds, "gp_metrics")
    ctx.section(sec["title"], sec["order"], sec["text"], sec["metrics"], sec["figures"], sec["tables"])


# What POD+GP reads: stationary fields on one mesh (snapshots and the mesh's X product), never an operator,
# so a black box delivering fields only qualifies.
FIELDS = all_of(cap.MESH, none_of(cap.TRANSIENT))
THREADS = Option("threads", "CPU threads of torch (default: gp.threads)", type=int)

STAGES = (
    Stage("gp", fit, "fit GPs from the parameters to the POD coefficients of the train snapshots", package="surrogates",
          sections=("gp", "seed"), needs=FIELDS, switch="gp",
          inputs=(Artefact("operators", "fom/operators.h5"), Artefact("train", "snapshots/train.h5"),
                  Artefact("pod", "rom/pod.h5 (X-orthonormal modes)")),
          outputs=(Artefact("out", "surrogates/gp.h5"),), options=(THREADS,)),
    Stage("evaluate_gp", evaluate, "POD+GP on the test set: errors, variance, coverage, figures, section",
          package="surrogates", sections=("gp",), needs=FIELDS, switch="gp",
          needs_test=True,
          inputs=(Artefact("operators", "fom/operators.h5"), Artefact("test", "snapshots/test.h5"),
                  Artefact("gp", "surrogates/gp.h5"),
                  Artefact("rb_metrics", "rom/rb_metrics.h5 of the RB stage, for the comparison", optional=True)),
          outputs=(Artefact("metrics", "metrics/gp.h5"), Artefact("figures", "folder of PNG figures"),
                   Artefact("section", "section JSON")), options=(THREADS,)),
)
