# POD of the train snapshots and test-set projection errors.


rule pod:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        train="results/{study}/snapshots/train.h5",
        test="results/{study}/snapshots/test.h5",
    output:
        out="results/{study}/rom/pod.h5",
    log:
        "results/{study}/logs/pod.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("pod"),
        args=stage_args("pod"),
    shell:
        command("pod")


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
    params:
        trigger=trigger("figures_pod"),
        args=stage_args("figures_pod"),
    shell:
        command("figures_pod")


REPORT_SECTIONS.append(lambda study: [f"results/{study}/sections/pod.json"] if fixed_mesh(study) else [])
