# sample -> simulate (chunked, MPI) -> gather, plus the operators artefact of the problem.
# (results/<study>/study.yaml, the resolved config every rule reads, is written by common.smk.)


rule sample:
    input:
        cfg=study_file,
    output:
        "results/{study}/parameters.h5",
    params:
        trigger=trigger("problem", "parameters", "design", "seed"),
    log:
        "results/{study}/logs/sample.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom sample --study-config {input.cfg} --out {output} > {log} 2>&1"


rule operators:
    input:
        cfg=study_file,
    output:
        "results/{study}/fom/operators.h5",
    params:
        trigger=trigger("problem"),
    log:
        "results/{study}/logs/operators.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom operators --study-config {input.cfg} --out {output} > {log} 2>&1"


rule simulate:
    input:
        cfg=study_file,
        parameters="results/{study}/parameters.h5",
    output:
        "results/{study}/snapshots/{set}/chunk{chunk}.h5",
    params:
        trigger=trigger(*FOM_SECTIONS),
    threads: mpi_ranks
    resources:
        tasks=mpi_ranks,
        mpi=mpi_launcher,
    log:
        "results/{study}/logs/simulate/{set}_chunk{chunk}.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "{resources.mpi} python -m rom simulate --study-config {input.cfg} "
        "--parameters {input.parameters} --set {wildcards.set} --chunk {wildcards.chunk} "
        "--out {output} > {log} 2>&1"


rule gather:
    input:
        cfg=study_file,
        chunks=chunks,
    output:
        "results/{study}/snapshots/{set}.h5",
    params:
        trigger=trigger(*FOM_SECTIONS),
    log:
        "results/{study}/logs/gather_{set}.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom gather --study-config {input.cfg} {input.chunks} --out {output} > {log} 2>&1"


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
        section="results/{study}/sections/simulate.json",
    params:
        trigger=trigger("report"),
    log:
        "results/{study}/logs/figures_snapshots.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom figures-snapshots --study-config {input.cfg} --operators {input.operators} "
        "--train {input.train} --figure {output.figure} --section {output.section} > {log} 2>&1"


REPORT_SECTIONS.append(
    lambda study: [f"results/{study}/sections/simulate.json"] if fixed_mesh(study) else []
)
