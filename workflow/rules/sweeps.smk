# Parameter studies: sweep points (rom.sweeps) share full-order artefacts, and one comparison table
# and figure cover every study and sweep point of the invocation.
import re

from rom.sweeps import families, fom_sources

# study -> the earlier study with the same full-order settings, whose artefacts it links to.
FOM_SOURCE = fom_sources(STUDIES)
SWEEP_FAMILIES = families(STUDIES)


localrules:
    reuse_fom,
    aggregate,


rule reuse_fom:
    """A relative symbolic link to another study's full-order artefact (no solve, no copy)."""
    input:
        lambda w: f"results/{FOM_SOURCE[w.study]}/{w.artefact}",
    output:
        "results/{study}/{artefact}",
    log:
        "results/{study}/logs/reuse_fom/{artefact}.log",
    wildcard_constraints:
        study="|".join(map(re.escape, FOM_SOURCE)) or "(?!)",
        artefact=r"parameters\.h5|fom/operators\.h5|snapshots/(train|test|validation)\.h5",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "ln -sfr {input} {output} > {log} 2>&1"


ruleorder: reuse_fom > sample
ruleorder: reuse_fom > operators
ruleorder: reuse_fom > gather


rule aggregate:
    input:
        studies=expand("results/{study}/study.yaml", study=STUDIES),
        # every report section of every study (rule files register theirs in REPORT_SECTIONS)
        sections=lambda w: [p for s in STUDIES for fn in REPORT_SECTIONS for p in fn(s)],
    output:
        csv="results/comparison.csv",
        html="results/comparison.html",
        figure=report(
            "results/comparison.png",
            caption="../report/comparison.rst",
            category="Comparison",
        ),
        section="results/comparison.json",
    log:
        "results/logs/aggregate.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        args=stage_args("aggregate"),
    shell:
        command("aggregate")
