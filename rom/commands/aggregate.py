"""aggregate: one comparison table (CSV, HTML) and figure across the studies and sweep points of an
invocation, built from the `metrics` of their report sections, so it covers every stage that writes
a section without knowing the stage. The logic lives in rom.comparison."""
from __future__ import annotations

from rom.stage import Artefact, Stage


def run(ctx):
    from rom.comparison import compare

    studies = [ctx.load_study(p) for p in ctx.path("studies")]
    n = compare(studies, ctx.path("studies"), ctx.path("sections") or [], ctx.path("csv"), ctx.path("html"),
                ctx.path("figure"), ctx.path("section"))
    ctx.log.info("%d studies compared; %d metrics differ between them", len(studies), n)


STAGES = (
    Stage("aggregate", run, "comparison table (CSV, HTML) and figure across studies and sweep points", study=False,
          inputs=(Artefact("studies", "results/<study>/study.yaml of every study", many=True),
                  Artefact("sections", "results/<study>/sections/*.json", many=True, optional=True)),
          outputs=(Artefact("csv", "comparison.csv"), Artefact("html", "comparison.html"),
                   Artefact("figure", "comparison.png"), Artefact("section", "comparison.json"))),
)
