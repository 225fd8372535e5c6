# Certified reduced basis (weak greedy under MPI, or POD), EIM for non-affine problems, evaluation.


# Helpers as expressions (snakemake --lint wants no function definitions beside rules).
rb_enabled = lambda study: fixed_mesh(study) and STUDIES[study]["rb"]["enabled"]
eim_enabled = lambda study: fixed_mesh(study) and STUDIES[study]["eim"]["enabled"]
# Named optional inputs of the RB rules: the EIM artefact, the train snapshots for rb.method pod.
rb_inputs = lambda w: {
    **({"eim": f"results/{w.study}/rom/eim.h5"} if eim_enabled(w.study) else {}),
    **({"train": f"results/{w.study}/snapshots/train.h5"} if STUDIES[w.study]["rb"]["method"] == "pod" else {}),
}
rb_args = lambda w: " ".join(f"--{k} {v}" for k, v in rb_inputs(w).items())
eim_args = lambda w: f"--eim results/{w.study}/rom/eim.h5" if eim_enabled(w.study) else ""


rule eim:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
    output:
        "results/{study}/rom/eim.h5",
    params:
        trigger=sections_trigger("problem", "parameters", "eim"),
    log:
        "results/{study}/logs/eim.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom eim --study-config {input.cfg} --operators {input.operators} --out {output} > {log} 2>&1"


rule reduced_basis:
    input:
        unpack(rb_inputs),
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
    output:
        "results/{study}/rom/rb.h5",
    params:
        trigger=sections_trigger(*FOM_SECTIONS, "rb", "eim"),
        extra=rb_args,
        launch=launch,
    threads: mpi_ranks
    resources:
        tasks=mpi_ranks,
        mpi=mpi_resource,
    log:
        "results/{study}/logs/reduced_basis.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "{params.launch} python -m rom reduced-basis --study-config {input.cfg} "
        "--operators {input.operators} {params.extra} --out {output} > {log} 2>&1"


rule evaluate_rom:
    input:
        unpack(rb_inputs),
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        rb="results/{study}/rom/rb.h5",
        test="results/{study}/snapshots/test.h5",
    output:
        "results/{study}/rom/rb_metrics.h5",
    params:
        trigger=sections_trigger("rb"),
        extra=eim_args,
    log:
        "results/{study}/logs/evaluate_rom.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom evaluate-rom --study-config {input.cfg} --operators {input.operators} --rb {input.rb} "
        "{params.extra} --test {input.test} --out {output} > {log} 2>&1"


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
    shell:
        "python -m rom figures-rb --study-config {input.cfg} --rb {input.rb} --metrics {input.metrics} "
        "--convergence {output.convergence} --effectivity {output.effectivity} --section {output.section} "
        "> {log} 2>&1"


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
    shell:
        "python -m rom figures-rb --study-config {input.cfg} --eim {input.eim} --eim-figure {output.figure} "
        "--section {output.section} > {log} 2>&1"


REPORT_SECTIONS.append(
    lambda study: (
        ([f"results/{study}/sections/rb.json"] if rb_enabled(study) else [])
        + ([f"results/{study}/sections/eim.json"] if eim_enabled(study) else [])
    )
)
