# POD of the train snapshots and test-set projection errors.


rule pod:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
        test="results/{study}/snapshots/test.h5",
    output:
        "results/{study}/rom/pod.h5",
    params:
        trigger=trigger("pod"),
    log:
        "results/{study}/logs/pod.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom pod --study-config {input.cfg} --operators {input.operators} --train {input.train} "
        "--test {input.test} --out {output} > {log} 2>&1"


rule figures_pod:
    input:
        cfg=study_file,
        pod="results/{study}/rom/pod.h5",
    output:
        spectrum=report(
            "results/{study}/figures/pod_spectrum.png",
            caption="../report/pod_spectrum.rst",
            category="Reduced bases",
            subcategory="{study}",
        ),
        errors=report(
            "results/{study}/figures/pod_errors.png",
            caption="../report/pod_errors.rst",
            category="Reduced bases",
            subcategory="{study}",
        ),
        section="results/{study}/sections/pod.json",
    log:
        "results/{study}/logs/figures_pod.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom figures-pod --study-config {input.cfg} --pod {input.pod} --spectrum {output.spectrum} "
        "--errors {output.errors} --section {output.section} > {log} 2>&1"


REPORT_SECTIONS.append(
    lambda study: [f"results/{study}/sections/pod.json"] if fixed_mesh(study) else []
)
