# Local reduced bases by clustering, and the adaptive hyper-reduced nonlinear ROM (issue 4).


local_enabled = lambda study: runs("cluster", study)
adaptive_enabled = lambda study: runs("adaptive_rom", study)
# Inputs of figures_local: the artefacts of the enabled stages, passed on as --clusters/--local/--adaptive.
local_figure_inputs = lambda w: {
    **(
        {"clusters": f"results/{w.study}/rom/local/clusters.h5", "local": f"results/{w.study}/rom/local/local_bases.h5"}
        if local_enabled(w.study)
        else {}
    ),
    **({"adaptive": f"results/{w.study}/rom/adaptive_rom.h5"} if adaptive_enabled(w.study) else {}),
}


rule cluster:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
    output:
        out="results/{study}/rom/local/clusters.h5",
    log:
        "results/{study}/logs/cluster.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("cluster"),
        args=stage_args("cluster"),
    shell:
        command("cluster")


rule local_bases:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
        test="results/{study}/snapshots/test.h5",
        clusters="results/{study}/rom/local/clusters.h5",
    output:
        out="results/{study}/rom/local/local_bases.h5",
    log:
        "results/{study}/logs/local_bases.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("local_bases"),
        args=stage_args("local_bases"),
    shell:
        command("local_bases")


rule adaptive_rom:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
        test="results/{study}/snapshots/test.h5",
    output:
        out="results/{study}/rom/adaptive_rom.h5",
    log:
        "results/{study}/logs/adaptive_rom.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("adaptive_rom"),
        args=stage_args("adaptive_rom"),
    shell:
        command("adaptive_rom")


rule figures_local:
    input:
        unpack(local_figure_inputs),
        cfg=study_file,
    output:
        section="results/{study}/sections/local.json",
        figdir=directory("results/{study}/figures/local"),
    log:
        "results/{study}/logs/figures_local.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("figures_local"),
        args=stage_args("figures_local"),
    shell:
        command("figures_local")


REPORT_SECTIONS.append(
    lambda study: [f"results/{study}/sections/local.json"] if local_enabled(study) or adaptive_enabled(study) else []
)
