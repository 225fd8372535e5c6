# The study report: every registered section, rendered into one HTML page.


rule report:
    input:
        cfg=study_file,
        sections=report_sections,
    output:
        "results/{study}/report.html",
    log:
        "results/{study}/logs/report.log",
    conda:
        "../../envs/hifi.yaml"
    shell:
        "python -m rom report --study-config {input.cfg} {input.sections} --out {output} > {log} 2>&1"
