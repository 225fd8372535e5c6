# Config access, paths and the helpers every rule file uses (no rules here). The studies of the
# invocation are validated here, against the same schema and stage declarations the CLI uses, before
# any job runs; a bad config ends in one line and a non-zero exit.
#
# Which study runs: the study files given with --configfile, alone (merged in order if several), with
# the schema's defaults for everything they do not set; with no --configfile, the default study
# config/config.yaml (and its include_studies). --config KEY=VALUE overrides apply on top either way.
import os
import shlex
import sys
from pathlib import Path

from rom import config as romconfig
from rom import pipeline
from rom.design import n_chunks as _n_chunks
from rom.paths import export_pythonpath

# Rules call `python -m rom`: the interpreter that runs Snakemake (the project's venv) comes first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# The project's packages come from the repository itself, in the venv and in the conda envs of
# --sdm conda alike (those install the dependencies only). Jobs inherit PYTHONPATH; Snakemake clears
# it when it activates a conda env, so under --sdm conda each command sets it again.
PYTHONPATH = export_pythonpath()
_deploy = workflow.deployment_settings
_CONDA_CLEARS_PYTHONPATH = (
    _deploy is not None
    and "conda" in {str(m).lower() for m in _deploy.deployment_method}
    and not _deploy.conda_not_block_search_path_envvars
)
# Open MPI refuses root without these, and more ranks than cores without oversubscription.
for _key in ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "OMPI_MCA_rmaps_base_oversubscribe"):
    os.environ.setdefault(_key, "1")

try:
    _config, _source, _base = romconfig.invocation(workflow.overwrite_configfiles, config)
    STUDIES = romconfig.studies(_config, _source, _base)
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


def trigger(stage):
    """A params value that changes exactly when the config sections the stage declares change."""
    sections = pipeline.STAGES[stage].sections
    return lambda w: romconfig.digest([STUDIES[w.study].get(s) for s in sections])


def stage_args(stage, **values):
    """The stage's command-line arguments from its declaration: --study-config, each declared input
    and output the rule names, the options its wildcards supply, and options given here (a path
    pattern formatted with the wildcards, or a function of them)."""
    s = pipeline.STAGES[stage]
    declared = {o.name for o in s.options}
    unknown = sorted(set(values) - declared)
    if unknown:
        raise ValueError(
            f"stage_args({stage!r}): {unknown} are not options of the stage; expected some of {sorted(declared)}"
        )

    def args(w, input, output):
        out = ["--study-config", input.cfg] if s.study else []
        for a in s.inputs + s.outputs:
            files = input if a in s.inputs else output
            if a.name in files.keys():
                value = files[a.name]
                out += ([] if a.positional else [a.flag]) + ([value] if isinstance(value, str) else list(value))
        for o in s.options:
            if o.wildcard is not None:
                out += [o.flag, w[o.wildcard]]
            elif o.name in values:
                v = values[o.name]
                v = v(w) if callable(v) else v.format(**dict(w.items()))
                out += [o.flag, *(v if isinstance(v, (list, tuple)) else [v])]
        return " ".join(shlex.quote(str(v)) for v in out)

    return args


def command(stage):
    """The shell command of a stage's rule (MPI stages under the launcher, `params.launch`)."""
    s = pipeline.STAGES[stage]
    launch = "{params.launch} " if s.mpi else ""
    env = f"PYTHONPATH={shlex.quote(PYTHONPATH)} " if _CONDA_CLEARS_PYTHONPATH else ""
    return f"{env}{launch}python -m {s.package} {s.command} {{params.args}} > {{log}} 2>&1"


def mpi_ranks(w):
    return STUDIES[w.study]["simulate"]["mpi_ranks"]


def mpi_launcher():
    """The one place the MPI launcher is chosen: srun under the SLURM executor (the profile's
    `executor: slurm`) and inside a SLURM allocation (where that executor's jobs run their command),
    mpiexec otherwise."""
    plugin = workflow.executor_plugin
    name = plugin.name if plugin is not None else ""
    if name == "dryrun":  # Snakemake has swapped the requested executor out: read it from the command line
        name = pipeline.requested_executor(sys.argv, os.environ) or ""
    slurm = "slurm" in name or "SLURM_JOB_ID" in os.environ
    return "srun" if slurm else "mpiexec"


def launch(w):
    """The launcher prefix of an MPI job; none for one rank (the SLURM executor plugin refuses MPI jobs
    of one task, and one rank needs no launcher)."""
    ranks = mpi_ranks(w)
    return f"{mpi_launcher()} -n {ranks}" if ranks > 1 else ""


def simulate_launch(w):
    """The simulate job's launcher: none for a black box, whose stage runs the user's command under the
    MPI launcher itself."""
    black_box = getattr(romconfig.problem_class(STUDIES[w.study]["problem"]), "black_box", False)
    return "" if black_box else launch(w)


def mpi_resource(w):
    """Resource `mpi` (what the SLURM executor plugin reads): the launcher's name for several ranks."""
    return mpi_launcher() if mpi_ranks(w) > 1 else ""


def fixed_mesh(study):
    """Whether the study's problem lives on one mesh (the sample/simulate/pod chain applies)."""
    return pipeline.fixed_mesh(STUDIES[study])


def runs(stage, study):
    """Whether a declared stage runs for the study."""
    return pipeline.STAGES[stage].runs_for(STUDIES[study])


def n_samples(study, set_name):
    return romconfig.design_sizes(STUDIES[study], romconfig.parameter_space(STUDIES[study]).dim)[set_name]


def chunks(w):
    n = _n_chunks(n_samples(w.study, w.set), STUDIES[w.study]["simulate"]["chunk_size"])
    return expand("results/{study}/snapshots/{set}/chunk{chunk}.h5", study=w.study, set=w.set, chunk=range(n))


# Report sections: each rule file registers a function study -> list of section JSON paths.
REPORT_SECTIONS = []


def report_sections(w):
    return [p for fn in REPORT_SECTIONS for p in fn(w.study)]


def study_warnings(studies):
    """The warnings stages wrote into the report sections of these studies (shown at the end of a run)."""
    import json

    out = []
    for study in studies:
        for path in sorted(Path("results", study, "sections").glob("*.json")):
            try:
                out += [f"{study}: {w}" for w in json.loads(path.read_text()).get("warnings", [])]
            except (OSError, ValueError):
                pass
    return out
