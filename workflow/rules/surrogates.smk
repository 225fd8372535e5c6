# Streamed surrogate training (surrogate section): an online run per buffer policy (server +
# launcher of the simulation ensemble in one job), the offline baseline from the snapshot files,
# test-set evaluation and the report figures.


from surrogates.commands.stream import labelled, runs as surrogate_runs

SURROGATE_SECTIONS = ("problem", "parameters", "design", "simulate", "surrogate", "seed")


rule train_online:
    input:
        cfg=study_file,
        test="results/{study}/snapshots/test.h5",
    output:
        model="results/{study}/surrogate/online_{policy}.pt",
        history="results/{study}/surrogate/online_{policy}.h5",
    wildcard_constraints:
        policy="fifo|firo|reservoir",
    params:
        trigger=sections_trigger(*SURROGATE_SECTIONS),
        checkpoint="results/{study}/surrogate/online_{policy}.ckpt",
        clients="results/{study}/logs/clients_{policy}",
    threads: 2
    log:
        "results/{study}/logs/train_online_{policy}.log",
    conda:
        "../../envs/surrogates.yaml"
    shell:
        "python -m surrogates train-online --study-config {input.cfg} --policy {wildcards.policy} "
        "--test {input.test} --model {output.model} --history {output.history} "
        "--checkpoint {params.checkpoint} --client-logs {params.clients} > {log} 2>&1"


rule train_offline:
    input:
        cfg=study_file,
        train="results/{study}/snapshots/train.h5",
        test="results/{study}/snapshots/test.h5",
    output:
        model="results/{study}/surrogate/offline.pt",
        history="results/{study}/surrogate/offline.h5",
    params:
        trigger=sections_trigger(*SURROGATE_SECTIONS),
    threads: 2
    log:
        "results/{study}/logs/train_offline.log",
    conda:
        "../../envs/surrogates.yaml"
    shell:
        "python -m surrogates train-offline --study-config {input.cfg} --train {input.train} "
        "--test {input.test} --model {output.model} --history {output.history} > {log} 2>&1"


rule evaluate_surrogate:
    input:
        cfg=study_file,
        test="results/{study}/snapshots/test.h5",
        models=lambda w: [f"{p}.pt" for p in surrogate_runs(STUDIES[w.study]).values()],
    output:
        "results/{study}/metrics/surrogate.h5",
    params:
        models=lambda w: labelled(STUDIES[w.study], "pt"),
        trigger=sections_trigger("surrogate"),
    log:
        "results/{study}/logs/evaluate_surrogate.log",
    conda:
        "../../envs/surrogates.yaml"
    shell:
        "python -m surrogates evaluate-surrogate --study-config {input.cfg} --test {input.test} "
        "--models {params.models} --out {output} > {log} 2>&1"


rule figures_surrogate:
    input:
        cfg=study_file,
        operators="results/{study}/fom/operators.h5",
        metrics="results/{study}/metrics/surrogate.h5",
        histories=lambda w: [f"{p}.h5" for p in surrogate_runs(STUDIES[w.study]).values()],
    output:
        loss=report(
            "results/{study}/figures/surrogate_loss.png",
            caption="../report/surrogate_loss.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        throughput=report(
            "results/{study}/figures/surrogate_throughput.png",
            caption="../report/surrogate_throughput.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        seen=report(
            "results/{study}/figures/surrogate_seen.png",
            caption="../report/surrogate_seen.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        fields=report(
            "results/{study}/figures/surrogate_fields.png",
            caption="../report/surrogate_fields.rst",
            category="Surrogates",
            subcategory="{study}",
        ),
        section="results/{study}/sections/surrogate.json",
    params:
        histories=lambda w: labelled(STUDIES[w.study], "h5"),
        trigger=sections_trigger("surrogate", "report"),
    log:
        "results/{study}/logs/figures_surrogate.log",
    conda:
        "../../envs/surrogates.yaml"
    shell:
        "python -m surrogates figures-surrogate --study-config {input.cfg} --histories {params.histories} "
        "--metrics {input.metrics} --operators {input.operators} --loss {output.loss} "
        "--throughput {output.throughput} --seen {output.seen} --fields {output.fields} "
        "--section {output.section} > {log} 2>&1"


REPORT_SECTIONS.append(
    lambda study: (
        [f"results/{study}/sections/surrogate.json"]
        if STUDIES[study]["surrogate"]["enabled"] and fixed_mesh(study)
        else []
    )
)
