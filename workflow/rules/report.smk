# The study report: every registered section, rendered into one HTML page.


rule report:
    input:
        cfg=study_file,
        sections=report_sections,
        parameters="results/{study}/parameters.h5",
    output:
        out="results/{study}/report.html",
    log:
        "results/{study}/logs/report.log",
    conda:
        "../../envs/hifi.yaml"
    params:
        trigger=trigger("report"),
        args=stage_args("report"),
    shell:
        command("report")
