# POD + GP on fixed-mesh parametric studies (gp.enabled): fit, then test errors, coverage, figures.


gp_enabled = lambda study: runs("gp", study)
# The RB comparison is optional: only when the RB stage runs for the study.
gp_rb_inputs = lambda w: (
    {"rb_metrics": f"results/{w.study}/rom/rb_metrics.h5"} if runs("evaluate_rom", w.study) else {}
)


rule gp:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
        pod="results/{study}/rom/pod.h5",
    output:
        out="results/{study}/surrogates/gp.h5",
    log:
        "results/{study}/logs/gp.log",
    conda:
        "../../envs/surrogates.yaml"
    threads: 1
    params:
        trigger=trigger("gp"),
        args=stage_args("gp"),
    shell:
        command("gp")


rule evaluate_gp:
    input:
        unpack(gp_rb_inputs),
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        test="results/{study}/snapshots/test.h5",
        gp="results/{study}/surrogates/gp.h5",
    output:
        metrics="results/{study}/metrics/gp.h5",
        figures=report(
            directory("results/{study}/figures/gp"),
            patterns=["{name}.png"],
            caption="../report/gp_figures.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        section="results/{study}/sections/gp.json",
    log:
        "results/{study}/logs/evaluate_gp.log",
    conda:
        "../../envs/surrogates.yaml"
    params:
        trigger=trigger("evaluate_gp"),
        args=stage_args("evaluate_gp"),
    shell:
        command("evaluate_gp")


REPORT_SECTIONS.append(lambda study: [f"results/{study}/sections/gp.json"] if gp_enabled(study) else [])
