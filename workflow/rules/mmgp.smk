# Shape families (fixed_mesh = False, mmgp.enabled): gmsh + PETSc elasticity per sample, MMGP fit,
# predictions with variance (HDF5 + VTU), PLAID metrics, figures and report section.


mmgp_enabled = lambda study: (not fixed_mesh(study)) and STUDIES[study]["mmgp"]["enabled"]


rule simulate_geometries:
    input:
        cfg=study_file,
        parameters="results/{study}/parameters.h5",
    output:
        "results/{study}/geometries/{set}.h5",
    params:
        trigger=sections_trigger(*FOM_SECTIONS),
        launch=launch,
    threads: mpi_ranks
    resources:
        tasks=mpi_ranks,
        mpi=mpi_resource,
    log:
        "results/{study}/logs/simulate_geometries_{set}.log",
    conda:
        "../../envs/surrogates.yaml"
    shell:
        "{params.launch} python -m surrogates simulate-geometries --study-config {input.cfg} "
        "--parameters {input.parameters} --set {wildcards.set} --out {output} > {log} 2>&1"


rule mmgp_fit:
    input:
        cfg=study_file,
        train="results/{study}/geometries/train.h5",
    output:
        "results/{study}/surrogates/mmgp.h5",
    params:
        trigger=sections_trigger("mmgp", "seed"),
        threads=lambda w: STUDIES[w.study]["mmgp"]["threads"],
    log:
        "results/{study}/logs/mmgp_fit.log",
    conda:
        "../../envs/surrogates.yaml"
    shell:
        "python -m surrogates mmgp-fit --study-config {input.cfg} --train {input.train} "
        "--threads {params.threads} --out {output} > {log} 2>&1"


rule mmgp_predict:
    input:
        cfg=study_file,
        model="results/{study}/surrogates/mmgp.h5",
        family="results/{study}/geometries/test.h5",
    output:
        predictions="results/{study}/surrogates/mmgp_test.h5",
        vtu=directory("results/{study}/surrogates/vtu"),
    params:
        trigger=sections_trigger("mmgp"),
        threads=lambda w: STUDIES[w.study]["mmgp"]["threads"],
    log:
        "results/{study}/logs/mmgp_predict.log",
    conda:
        "../../envs/surrogates.yaml"
    shell:
        "python -m surrogates mmgp-predict --study-config {input.cfg} --model {input.model} "
        "--family {input.family} --vtu-dir {output.vtu} --threads {params.threads} "
        "--out {output.predictions} > {log} 2>&1"


rule evaluate_mmgp:
    input:
        cfg=study_file,
        predictions="results/{study}/surrogates/mmgp_test.h5",
    output:
        metrics="results/{study}/metrics/mmgp.json",
        fields=report(
            "results/{study}/figures/mmgp/mmgp_von_mises.png",
            caption="../report/gp_mmgp_fields.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        displacement="results/{study}/figures/mmgp/mmgp_u_y.png",
        parity=report(
            "results/{study}/figures/mmgp/mmgp_parity.png",
            caption="../report/gp_mmgp_parity.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        calibration=report(
            "results/{study}/figures/mmgp/mmgp_calibration.png",
            caption="../report/gp_calibration.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        section="results/{study}/sections/mmgp.json",
    params:
        trigger=sections_trigger("mmgp"),
    log:
        "results/{study}/logs/evaluate_mmgp.log",
    conda:
        "../../envs/surrogates.yaml"
    shell:
        "python -m surrogates evaluate-mmgp --study-config {input.cfg} --predictions {input.predictions} "
        "--metrics {output.metrics} --figures results/{wildcards.study}/figures/mmgp "
        "--section {output.section} > {log} 2>&1"


REPORT_SECTIONS.append(lambda study: [f"results/{study}/sections/mmgp.json"] if mmgp_enabled(study) else [])
