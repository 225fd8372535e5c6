"""Figures and report sections of the full-order stages, and the HTML report of a study."""
from __future__ import annotations

from pathlib import Path

from rom.errors import ArtefactError
from rom.hifi import capabilities as cap
from rom.stage import Artefact, Stage, problem_has


def figures_snapshots(ctx):
    from rom.figures.fom import snapshots_section

    s = snapshots_section(ctx.problem, ctx.study, ctx.read("operators"), ctx.read("train"), ctx.path("figure"),
                          ctx.path("sequence"))
    ctx.section(s["title"], s["order"], s["text"], s["metrics"], s["figures"])


def figures_pod(ctx):
    from rom.figures.fom import pod_section

    s = pod_section(ctx.read("pod"), ctx.path("spectrum"), ctx.path("errors"))
    ctx.section(s["title"], s["order"], s["text"], s["metrics"], s["figures"])


def report(ctx):
    from rom import artefacts
    from rom.report import render, study_section

    sections = ctx.path("sections")
    missing = [s for s in sections if not Path(s).is_file()]
    if missing:
        raise ArtefactError(f"{missing[0]}: report section not found")
    params = ctx.path("parameters")
    provenance = dict(artefacts.read(params).attrs) if params is not None and Path(params).is_file() else None
    render(sections, ctx.path("out"), ctx.study, [study_section(ctx.study, ctx.space, provenance)])
    ctx.log.info("report with %d sections", len(sections) + 1)


STAGES = (
    Stage("figures_snapshots", figures_snapshots, "figures of a few train solutions and the solver statistics",
          sections=("report",), enabled=problem_has(cap.MESH),
          inputs=(Artefact("operators", "fom/operators.h5"), Artefact("train", "snapshots/train.h5")),
          outputs=(Artefact("figure", "PNG of a few solutions"),
                   Artefact("sequence", "PNG of the iterations along the solve order"),
                   Artefact("section", "section JSON"))),
    Stage("figures_pod", figures_pod, "figures of the POD: eigenvalue decay, projection error vs N",
          sections=("report",), enabled=problem_has(cap.MESH), inputs=(Artefact("pod", "rom/pod.h5"),),
          outputs=(Artefact("spectrum", "PNG"), Artefact("errors", "PNG"), Artefact("section", "section JSON"))),
    Stage("report", report, "render the report sections of a study into one HTML page",
          sections=("report",),
          inputs=(Artefact("sections", "section JSON files", many=True, positional=True),
                  Artefact("parameters", "parameters.h5 (its provenance goes into the report)", optional=True)),
          outputs=(Artefact("out", "report.html"),)),
)
