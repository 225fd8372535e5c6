# Shape families (problems with the geometry_family capability, mmgp.enabled): the samples solved
# (gmsh + PETSc elasticity per shape, MPI) or read (mesh files, PLAID), MMGP fit, predictions with
# variance (HDF5 + VTU), PLAID metrics, figures and report section.


mmgp_enabled = lambda study: runs("mmgp_fit", study)
# A family read from files carries its own inputs: the design's parameters apply to solved families only.
geometry_inputs = lambda w: (
    {"parameters": f"results/{w.study}/parameters.h5"}
    if pipeline.problem_has("geometry_solver")(STUDIES[w.study])
    else {}
)


rule simulate_geometries:
    input:
        unpack(geometry_inputs),
        cfg=study_file,
    output:
        out="results/{study}/geometries/{set}.h5",
    log:
        "results/{study}/logs/simulate_geometries_{set}.log",
    conda:
        "../../envs/surrogates.yaml"
    threads: mpi_ranks
    resources:
        tasks=mpi_ranks,
        mpi=mpi_resource,
    params:
        trigger=trigger("simulate_geometries"),
        args=stage_args("simulate_geometries"),
        launch=launch,
    shell:
        command("simulate_geometries")


rule mmgp_fit:
    input:
        cfg=study_file,
        train="results/{study}/geometries/train.h5",
    output:
        out="results/{study}/surrogates/mmgp.h5",
    log:
        "results/{study}/logs/mmgp_fit.log",
    conda:
        "../../envs/surrogates.yaml"
    params:
        trigger=trigger("mmgp_fit"),
        args=stage_args("mmgp_fit"),
    shell:
        command("mmgp_fit")


rule mmgp_predict:
    input:
        cfg=study_file,
        model="results/{study}/surrogates/mmgp.h5",
        family="results/{study}/geometries/test.h5",
    output:
        out="results/{study}/surrogates/mmgp_test.h5",
        vtu_dir=directory("results/{study}/surrogates/vtu"),
    log:
        "results/{study}/logs/mmgp_predict.log",
    conda:
        "../../envs/surrogates.yaml"
    params:
        trigger=trigger("mmgp_predict"),
        args=stage_args("mmgp_predict"),
    shell:
        command("mmgp_predict")


rule evaluate_mmgp:
    input:
        cfg=study_file,
        predictions="results/{study}/surrogates/mmgp_test.h5",
    output:
        metrics="results/{study}/metrics/mmgp.json",
        figures=report(
            directory("results/{study}/figures/mmgp"),
            patterns=["{name}.png"],
            caption="../report/mmgp_figures.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        section="results/{study}/sections/mmgp.json",
    log:
        "results/{study}/logs/evaluate_mmgp.log",
    conda:
        "../../envs/surrogates.yaml"
    params:
        trigger=trigger("evaluate_mmgp"),
        args=stage_args("evaluate_mmgp"),
    shell:
        command("evaluate_mmgp")


REPORT_SECTIONS.append(lambda study: [f"results/{study}/sections/mmgp.json"] if mmgp_enabled(study) else [])
