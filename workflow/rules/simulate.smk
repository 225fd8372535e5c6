# sample -> simulate (chunked, MPI) -> gather, plus the operators artefact of the problem.
# (results/<study>/study.yaml, the resolved config every rule reads, is written by common.smk.)


rule sample:
    input:
        cfg=study_file,
    output:
        out="results/{study}/parameters.h5",
    log:
        "results/{study}/logs/sample.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("sample"),
        args=stage_args("sample"),
    shell:
        command("sample")


rule operators:
    input:
        cfg=study_file,
    output:
        out="results/{study}/fom/operators.h5",
    log:
        "results/{study}/logs/operators.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("operators"),
        args=stage_args("operators"),
    shell:
        command("operators")


rule simulate:
    input:
        cfg=study_file,
        parameters="results/{study}/parameters.h5",
        operators="results/{study}/fom/operators.h5",
    output:
        out="results/{study}/snapshots/{set}/chunk{chunk}.h5",
    log:
        "results/{study}/logs/simulate/{set}_chunk{chunk}.log",
    conda:
        "../../envs/hifi.yaml"
    threads: mpi_ranks
    resources:
        tasks=mpi_ranks,
        mpi=mpi_resource,
    params:
        trigger=trigger("simulate"),
        args=stage_args("simulate"),
        launch=simulate_launch,
    shell:
        command("simulate")


rule gather:
    input:
        cfg=study_file,
        chunks=chunks,
    output:
        out="results/{study}/snapshots/{set}.h5",
    log:
        "results/{study}/logs/gather_{set}.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("gather"),
        args=stage_args("gather"),
    shell:
        command("gather")


rule figures_snapshots:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
    output:
        figure=report(
            "results/{study}/figures/solutions.png",
            caption="../report/solutions.rst",
            category="Full-order model",
            subcategory="{study}",
        ),
        sequence=report(
            "results/{study}/figures/solve_sequence.png",
            caption="../report/solve_sequence.rst",
            category="Full-order model",
            subcategory="{study}",
        ),
        section="results/{study}/sections/simulate.json",
    log:
        "results/{study}/logs/figures_snapshots.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("figures_snapshots"),
        args=stage_args("figures_snapshots"),
    shell:
        command("figures_snapshots")


REPORT_SECTIONS.append(lambda study: [f"results/{study}/sections/simulate.json"] if fixed_mesh(study) else [])
