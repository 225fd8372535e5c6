# Config access and paths shared by every rule file. The config is validated here, against the same
# schema the CLI uses, before any job runs; a bad config ends in one line and a non-zero exit.
import json
import os
import sys
from pathlib import Path

from rom import config as romconfig
from rom.commands.simulate import n_chunks

# Rules call `python -m rom`: the interpreter that runs Snakemake (the project's venv) comes first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# Open MPI refuses root without these, and more ranks than cores without oversubscription.
for _key in ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "OMPI_MCA_rmaps_base_oversubscribe"):
    os.environ.setdefault(_key, "1")

try:
    STUDIES = romconfig.studies(config, "config")
except romconfig.ConfigError as _exc:
    sys.stderr.write(f"romflow: config error: {_exc}\n")
    raise SystemExit(1)

# The resolved study files are written here, at parse time, and only when their content changes:
# they are source files of the DAG, not a rule's output. A producing rule would mask every rule
# downstream of it from Snakemake's params check, so a changed setting would not rerun its stage;
# as source files (taken ancient), each rule reruns exactly when its own sections change (`trigger`).
for _name, _study in STUDIES.items():
    romconfig.write_study(_study, Path("results", _name, "study.yaml"))

SETS = ["train", "test", "validation"]


wildcard_constraints:
    study="|".join(STUDIES),
    set="|".join(SETS),
    chunk=r"\d+",


def study_file(w):
    """The resolved study file; ancient() so that only the rule's own config sections (params
    `trigger`) cause reruns, not a change anywhere in the study."""
    return ancient(f"results/{w.study}/study.yaml")


def trigger(*sections):
    """A params value that changes exactly when the named config sections of the study change."""
    return lambda w: romconfig.digest([STUDIES[w.study].get(s) for s in sections])


FOM_SECTIONS = ("problem", "parameters", "design", "simulate", "seed")


def chunks(w):
    s = STUDIES[w.study]
    n = n_chunks(s, w.set) if not (w.set == "train" and s["design"]["method"] in ("grid", "list")) else None
    if n is None:  # grid and list designs know their size only from the parameters artefact
        n = n_chunks(s, w.set, n_design_samples(s))
    return expand("results/{study}/snapshots/{set}/chunk{chunk}.h5", study=w.study, set=w.set, chunk=range(n))


def n_design_samples(s):
    from rom.design import sample_sets

    return len(sample_sets(s)["train"])


def mpi_ranks(w):
    return STUDIES[w.study]["simulate"]["mpi_ranks"]


def mpi_launcher(w):
    """The launcher prefix of a simulate job (resource `mpi`, rank count included). The SLURM
    profile replaces it by `srun -n <ranks>`, or by nothing for one rank: the executor plugin
    rejects an MPI job with a single task."""
    return f"mpiexec -n {mpi_ranks(w)}"


def fixed_mesh(study):
    """Whether the study's problem lives on one mesh (the sample/simulate/pod chain applies)."""
    from rom.hifi.problems import PROBLEMS

    return PROBLEMS[STUDIES[study]["problem"]["name"]].fixed_mesh


# Report sections: each rule file registers a function study -> list of section JSON paths.
REPORT_SECTIONS = []


def report_sections(w):
    return [p for fn in REPORT_SECTIONS for p in fn(w.study)]
