# romflow: config -> sample -> simulate (PETSc, MPI) -> gather -> reduce / surrogates -> report.
# Every rule is a thin shell around `python -m rom <stage>` (or `python -m surrogates <stage>`), whose
# arguments and rerun trigger follow from the stage's declaration (rom.pipeline).
#
# Which study runs: `--configfile my_study.yaml` runs that study alone (schema defaults for the rest);
# without --configfile, the default study config/config.yaml and its include_studies.
from snakemake.utils import min_version

min_version("8.0")


# Rules call `python -m rom` from the venv that runs Snakemake: common.smk puts it first on PATH.
envvars:
    "PATH",


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/pod.smk"
include: "workflow/rules/rb.smk"
include: "workflow/rules/local.smk"
include: "workflow/rules/surrogates.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/gp.smk"
include: "workflow/rules/mmgp.smk"
include: "workflow/rules/uq.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        expand("results/{study}/report.html", study=STUDIES),
        "results/comparison.html",


onsuccess:
    for line in study_warnings(STUDIES):
        print(f"romflow: warning: {line}", file=sys.stderr)
    print(f"romflow: reports in results/<study>/report.html, logs in results/<study>/logs/", file=sys.stderr)


onerror:
    print(
        "romflow: a job failed; its log is shown above (results/<study>/logs/<rule>...). A config or "
        "input error says what to change; rerun the same command after fixing it (finished work is kept).",
        file=sys.stderr,
    )
