"""configure (the resolved study file) and sample (the parameter designs)."""
from __future__ import annotations

from rom.hifi import capabilities as cap
from rom.stage import Artefact, Stage


def configure(ctx):
    ctx.save_study(ctx.load_study(ctx.path("config")), ctx.path("out"))


def sample(ctx):
    from rom.design import parameters_dataset

    ds = parameters_dataset(ctx.study, ctx.space)
    for s in ("train", "test", "validation"):
        ctx.log.info("%s set: %d samples", s, ds.sizes[f"{s}_sample"])
    ctx.write("out", ds, "parameters")


STAGES = (
    Stage("configure", configure, "validate a study file and write it with every default filled in", study=False,
          inputs=(Artefact("config", "a study file (YAML)"),), outputs=(Artefact("out", "the resolved study file"),)),
    Stage("sample", sample, "draw the train / test / validation parameter sets",
          sections=("problem", "parameters", "design", "seed"), needs=frozenset({cap.PARAMETERS}),
          outputs=(Artefact("out", "parameters.h5"),)),
)
