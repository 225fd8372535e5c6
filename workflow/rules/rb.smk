# Certified reduced basis (weak greedy under MPI with SCM and output duals, POD, or POD-greedy for
# transient problems), EIM for non-affine problems, evaluation and the report figures. The rules
# follow the stage declarations of rom/commands/rb.py (trigger, arguments, command).


rb_enabled = lambda study: runs("reduced_basis", study)
eim_enabled = lambda study: runs("eim", study)
# Named optional inputs of the RB rules: the EIM artefact, the train snapshots for rb.method pod.
rb_inputs = lambda w: {
    **({"eim": f"results/{w.study}/rom/eim.h5"} if eim_enabled(w.study) else {}),
    **({"train": f"results/{w.study}/snapshots/train.h5"} if STUDIES[w.study]["rb"]["method"] == "pod" else {}),
}
eim_input = lambda w: {"eim": f"results/{w.study}/rom/eim.h5"} if eim_enabled(w.study) else {}


rule eim:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
    output:
        out="results/{study}/rom/eim.h5",
    log:
        "results/{study}/logs/eim.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("eim"),
        args=stage_args("eim"),
    shell:
        command("eim")


rule reduced_basis:
    input:
        unpack(rb_inputs),
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
    output:
        out="results/{study}/rom/rb.h5",
    log:
        "results/{study}/logs/reduced_basis.log",
    conda:
        "../../envs/hifi.yaml"
    threads: mpi_ranks
    resources:
        tasks=mpi_ranks,
        mpi=mpi_resource,
    params:
        trigger=trigger("reduced_basis"),
        args=stage_args("reduced_basis"),
        launch=launch,
    shell:
        command("reduced_basis")


rule evaluate_rom:
    input:
        unpack(eim_input),
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        rb="results/{study}/rom/rb.h5",
        test="results/{study}/snapshots/test.h5",
    output:
        out="results/{study}/rom/rb_metrics.h5",
    log:
        "results/{study}/logs/evaluate_rom.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("evaluate_rom"),
        args=stage_args("evaluate_rom"),
    shell:
        command("evaluate_rom")


rule figures_rb:
    input:
        cfg=study_file,
        rb="results/{study}/rom/rb.h5",
        metrics="results/{study}/rom/rb_metrics.h5",
    output:
        convergence=report(
            "results/{study}/figures/rb_convergence.png",
            caption="../report/rb_convergence.rst",
            category="Reduced bases",
            subcategory="{study}",
        ),
        effectivity=report(
            "results/{study}/figures/rb_effectivity.png",
            caption="../report/rb_effectivity.rst",
            category="Reduced bases",
            subcategory="{study}",
        ),
        section="results/{study}/sections/rb.json",
    log:
        "results/{study}/logs/figures_rb.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("figures_rb"),
        args=stage_args("figures_rb"),
    shell:
        command("figures_rb")


rule figures_eim:
    input:
        cfg=study_file,
        eim="results/{study}/rom/eim.h5",
    output:
        figure=report(
            "results/{study}/figures/rb_eim.png",
            caption="../report/rb_eim.rst",
            category="Reduced bases",
            subcategory="{study}",
        ),
        section="results/{study}/sections/eim.json",
    log:
        "results/{study}/logs/figures_eim.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("figures_eim"),
        args=stage_args("figures_eim"),
    shell:
        command("figures_eim")


REPORT_SECTIONS.append(
    lambda study: (
        ([f"results/{study}/sections/rb.json"] if rb_enabled(study) else [])
        + ([f"results/{study}/sections/eim.json"] if eim_enabled(study) else [])
    )
)
