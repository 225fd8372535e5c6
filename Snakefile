# romflow: config -> sample -> simulate (PETSc, MPI) -> gather -> reduce / surrogates -> report.
# Every rule is a thin shell around `python -m rom <stage>` (or `python -m surrogates <stage>`).
from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


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
include: "workflow/rules/report.smk"


rule all:
    input:
        expand("results/{study}/report.html", study=STUDIES),
        "results/comparison.html",
    default_target: True
