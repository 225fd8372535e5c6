# Local reduced bases by clustering, and the adaptive hyper-reduced nonlinear ROM (issue 4).


local_enabled = lambda study: fixed_mesh(study) and STUDIES[study]["local"]["enabled"]
adaptive_enabled = lambda study: fixed_mesh(study) and STUDIES[study]["adaptive_rom"]["enabled"]
# Inputs of figures_local: the artefacts of the enabled stages, passed on as --clusters/--local/--adaptive.
local_figure_inputs = lambda w: {
    **({"clusters": f"results/{w.study}/rom/local/clusters.h5", "local": f"results/{w.study}/rom/local/local_bases.h5"}
       if local_enabled(w.study) else {}),
    **({"adaptive": f"results/{w.study}/rom/adaptive_rom.h5"} if adaptive_enabled(w.study) else {}),
}


rule cluster:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
    output:
        "results/{study}/rom/local/clusters.h5",
    params:
        trigger=trigger("local"),
    log:
        "results/{study}/logs/cluster.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom cluster --study-config {input.cfg} --operators {input.operators} --train {input.train} "
        "--out {output} > {log} 2>&1"


rule local_bases:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
        test="results/{study}/snapshots/test.h5",
        clusters="results/{study}/rom/local/clusters.h5",
    output:
        "results/{study}/rom/local/local_bases.h5",
    params:
        trigger=trigger("local"),
    log:
        "results/{study}/logs/local_bases.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom local-bases --study-config {input.cfg} --operators {input.operators} --train {input.train} "
        "--test {input.test} --clusters {input.clusters} --out {output} > {log} 2>&1"


rule adaptive_rom:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
        test="results/{study}/snapshots/test.h5",
    output:
        "results/{study}/rom/adaptive_rom.h5",
    params:
        trigger=trigger("adaptive_rom", "simulate"),
    log:
        "results/{study}/logs/adaptive_rom.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom adaptive-rom --study-config {input.cfg} --operators {input.operators} --train {input.train} "
        "--test {input.test} --out {output} > {log} 2>&1"


rule figures_local:
    input:
        unpack(local_figure_inputs),
        cfg=study_file,
    output:
        section="results/{study}/sections/local.json",
        figdir=directory("results/{study}/figures/local"),
    params:
        trigger=trigger("report"),
        files=lambda w, input: " ".join(
            f"--{k} {v}" for k, v in input.items() if k in ("clusters", "local", "adaptive")
        ),
    log:
        "results/{study}/logs/figures_local.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom figures-local --study-config {input.cfg} {params.files} --figdir {output.figdir} "
        "--section {output.section} > {log} 2>&1"


REPORT_SECTIONS.append(
    lambda study: [f"results/{study}/sections/local.json"]
    if local_enabled(study) or adaptive_enabled(study)
    else []
)
