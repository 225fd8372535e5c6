# POD + GP on fixed-mesh parametric studies (gp.enabled): fit, then test errors, coverage, figures.


gp_enabled = lambda study: runs("gp", study)
# The RB comparison is optional: only when the RB stage runs for the study.
gp_rb_inputs = lambda w: (
    {"rb": f"results/{w.study}/rom/rb_metrics.h5"}
    if STUDIES[w.study].get("rb", {}).get("enabled", False)
    else {}
)
gp_rb_args = lambda w: " ".join(f"--rb-metrics {v}" for v in gp_rb_inputs(w).values())


rule gp:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
        pod="results/{study}/rom/pod.h5",
    output:
        "results/{study}/surrogates/gp.h5",
    params:
        trigger=sections_trigger("gp", "seed"),
        threads=lambda w: STUDIES[w.study]["gp"]["threads"],
    threads: 1
    log:
        "results/{study}/logs/gp.log",
    conda:
        "../../envs/surrogates.yaml"
    shell:
        "python -m surrogates gp --study-config {input.cfg} --operators {input.operators} --train {input.train} "
        "--pod {input.pod} --threads {params.threads} --out {output} > {log} 2>&1"


rule evaluate_gp:
    input:
        unpack(gp_rb_inputs),
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        test="results/{study}/snapshots/test.h5",
        gp="results/{study}/surrogates/gp.h5",
    output:
        metrics="results/{study}/metrics/gp.h5",
        errors=report(
            "results/{study}/figures/gp/gp_errors.png",
            caption="../report/gp_errors.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        fields=report(
            "results/{study}/figures/gp/gp_fields.png",
            caption="../report/gp_fields.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        calibration=report(
            "results/{study}/figures/gp/gp_calibration.png",
            caption="../report/gp_calibration.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        section="results/{study}/sections/gp.json",
    params:
        trigger=sections_trigger("gp"),
        extra=gp_rb_args,
        threads=lambda w: STUDIES[w.study]["gp"]["threads"],
    log:
        "results/{study}/logs/evaluate_gp.log",
    conda:
        "../../envs/surrogates.yaml"
    shell:
        "python -m surrogates evaluate-gp --study-config {input.cfg} --operators {input.operators} "
        "--test {input.test} --gp {input.gp} {params.extra} --threads {params.threads} "
        "--metrics {output.metrics} --figures results/{wildcards.study}/figures/gp "
        "--section {output.section} > {log} 2>&1"


REPORT_SECTIONS.append(lambda study: [f"results/{study}/sections/gp.json"] if gp_enabled(study) else [])
