"""configure (resolved study file) and sample (parameter designs)."""
from __future__ import annotations

import json

import xarray as xr

from rom import artefacts, config
from rom.cli import add_study_arg

SETS = ("train", "test", "validation")


def register(sub):
    p = sub.add_parser("configure", help="validate a study and write it with all defaults filled in")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--study-json", help="the study as JSON (what the Snakefile passes)")
    src.add_argument("--config", help="a study file (YAML)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=configure)

    p = sub.add_parser("sample", help="draw the train / test / validation parameter sets")
    add_study_arg(p)
    p.add_argument("--out", required=True, help="parameters.h5")
    p.set_defaults(func=sample)


def configure(args):
    if args.study_json:
        study = config.validate(json.loads(args.study_json), "study")
    else:
        study = config.load(args.config)
    config.write_study(study, args.out)


def parameters_dataset(study: dict) -> xr.Dataset:
    names, bounds, dists = config.parameter_space(study)
    try:
        sets = __import__("rom.design", fromlist=["sample_sets"]).sample_sets(study)
    except ValueError as exc:
        raise config.ConfigError(str(exc)) from None
    data = {f"mu_{s}": ((f"{s}_sample", "parameter"), sets[s]) for s in SETS}
    data["bounds"] = (("parameter", "bound"), bounds)
    data["distribution"] = ("parameter", artefacts.strings(dists))
    return xr.Dataset(data, coords={"parameter": artefacts.strings(names), "bound": artefacts.strings(["lower", "upper"])})


def sample(args):
    study = config.load(args.study_config)
    artefacts.write(parameters_dataset(study), args.out, study, "parameters")
