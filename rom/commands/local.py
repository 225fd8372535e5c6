"""cluster, local_bases, adaptive_rom and figures_local (local reduced bases by clustering; the
indicator-driven adaptive hyper-reduced ROM). The algorithms live in rom.reduction.local_study and
rom.models.adaptive; this module declares the stages."""
from __future__ import annotations

import numpy as np

from rom.errors import ConfigError, UserError
from rom.hifi import capabilities as cap
from rom.stage import Artefact, Stage


def _single_thread():
    """Small dense algebra: one BLAS thread is much faster than several fighting over two cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _operators(ctx):
    from rom.hifi.discretization.operators import MESH_ONLY, Operators

    return Operators.from_dataset(ctx.read("operators", drop=MESH_ONLY))


def check_local(study: dict):
    s = study["local"]
    if s["basis_size"] > s["max_modes"]:
        raise ConfigError(f"local.basis_size = {s['basis_size']}: expected <= local.max_modes = {s['max_modes']}")
    if s["n_clusters"] > study["design"]["train"]["size"] and study["design"]["method"] not in ("grid", "list"):
        raise ConfigError(f"local.n_clusters = {s['n_clusters']}: expected at most the "
                          f"{study['design']['train']['size']} train samples")
    methods = list(s["dissimilarities"]) + (["kmeans"] if s["kmeans"] else [])
    if s["dictionary"] not in methods:
        raise ConfigError(f"local.dictionary = {s['dictionary']}: expected one of the clusterings run: {methods}")


def cluster(ctx):
    from rom.reduction.local_study import cluster_study, trajectories

    s = ctx.study["local"]
    U, mu = trajectories(ctx.read("train"))
    if s["n_clusters"] > len(U):
        raise UserError(f"local.n_clusters = {s['n_clusters']}: expected at most the {len(U)} converged train samples")
    with _single_thread():
        ds = cluster_study(U, mu, _operators(ctx).X, s, ctx.log)
    ctx.write("out", ds, "clusters")
    i_N = s["basis_size"] - 1
    for m, g, w in zip(ds["method"].values, ds["gain"].values[:, i_N], ds["worth_it"].values):
        ctx.log.info("%s: gain at N = %d: %.3g -> %s", m, s["basis_size"], g, "local dictionary" if w else "global basis")


def local_bases(ctx):
    from rom.reduction.local_study import local_bases_study, trajectories

    s = ctx.study["local"]
    U, mu = trajectories(ctx.read("train"))
    T, mu_test = trajectories(ctx.read("test"))
    C = ctx.read("clusters")
    with _single_thread():
        ds = local_bases_study(U, mu, T, mu_test, _operators(ctx).X, C, ctx.space.bounds, s)
    ctx.write("out", ds, "local_bases")
    N = int(C.attrs["basis_size_compared"])
    i = [str(m) for m in C["method"].values].index(s["dictionary"])
    ctx.log.info("%s: test gain at N = %d: %.3g (predicted %.3g); MLP accuracy %.2f", s["dictionary"], N,
                 ds["test_gain"].values[i, N - 1], C["gain"].values[i, N - 1], ds["selection_accuracy"].values[0])


def check_adaptive(study: dict):
    from rom.hifi.capabilities import has_heat_kernels
    from rom.hifi.registry import problem_class

    a = study["adaptive_rom"]
    cls = problem_class(study["problem"])
    d = cls.parameter_space(study["problem"]).dim
    if a["hyper_reduction"] in ("qdeim", "deim") and not has_heat_kernels(cls):
        raise ConfigError(f"adaptive_rom.hyper_reduction = {a['hyper_reduction']!r}: problem {cls.name} has no DEIM "
                          "kernels (the nonlinear heat problem's); expected ecm or auto (empirical cubature)")
    if a["mu"] and any(len(m) != d for m in a["mu"]):
        raise ConfigError(f"adaptive_rom.mu = {a['mu']}: expected lists of {d} values")


def adaptive_rom(ctx):
    from rom import artefacts
    from rom.hifi.solvers.solve import FullOrderModel, fom_step_function
    from rom.models.adaptive import adaptive_study

    a, sim, problem = ctx.study["adaptive_rom"], ctx.study["simulate"], ctx.problem
    train = artefacts.converged(ctx.read("train"))
    mus = np.array(a["mu"], dtype=float) if a["mu"] else ctx.read("test")["mu"].values[:1]
    fom = FullOrderModel(problem, sim["backend"], sim["petsc_options"])
    step = fom_step_function(problem, sim["backend"], sim["petsc_options"])
    with _single_thread():
        try:
            ds = adaptive_study(problem, _operators(ctx), train["u"].values, train["mu"].values, mus, a, fom, step,
                                ctx.log)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    ctx.write("out", ds, "adaptive_rom")


def figures_local(ctx):
    from rom.figures.local import local_section

    s = local_section(ctx.path("figdir"), ctx.read("clusters"), ctx.read("local"), ctx.read("adaptive"))
    ctx.section(s["title"], s["order"], s["text"], s["metrics"], s["figures"], s["tables"])


OPERATORS, TRAIN, TEST = (Artefact("operators", "fom/operators.h5"), Artefact("train", "snapshots/train.h5"),
                          Artefact("test", "snapshots/test.h5"))

STAGES = (
    Stage("cluster", cluster, "cluster the train trajectories; a priori gain of local over global bases",
          sections=("local",), needs=frozenset({cap.MESH}), switch="local", check=check_local,
          inputs=(OPERATORS, TRAIN), outputs=(Artefact("out", "rom/local/clusters.h5"),)),
    Stage("local_bases", local_bases, "local POD dictionary, online selector, test errors global vs local",
          sections=("local",), needs=frozenset({cap.MESH}), switch="local", needs_test=True,
          inputs=(OPERATORS, TRAIN, TEST, Artefact("clusters", "rom/local/clusters.h5")),
          outputs=(Artefact("out", "rom/local/local_bases.h5"),)),
    Stage("adaptive_rom", adaptive_rom, "hyper-reduced nonlinear ROM, error indicator, adaptive enrichment",
          sections=("adaptive_rom", "simulate"), needs=frozenset({cap.MESH, cap.NONLINEAR}),
          switch="adaptive_rom", check=check_adaptive, needs_test=True, inputs=(OPERATORS, TRAIN, TEST),
          outputs=(Artefact("out", "rom/adaptive_rom.h5"),)),
    Stage("figures_local", figures_local, "figures and report section of the local bases and adaptive ROM",
          sections=("report",), enabled=lambda s: s["local"]["enabled"] or s["adaptive_rom"]["enabled"],
          inputs=(Artefact("clusters", "rom/local/clusters.h5", optional=True),
                  Artefact("local", "rom/local/local_bases.h5", optional=True),
                  Artefact("adaptive", "rom/adaptive_rom.h5", optional=True)),
          outputs=(Artefact("figdir", "folder of PNG figures"), Artefact("section", "section JSON"))),
)
