# Streamed surrogate training (surrogate section): an online run per buffer policy (server +
# launcher of the simulation ensemble in one job), the offline baseline from the snapshot files,
# test-set evaluation and the report figures.


from surrogates.streaming.paths import labelled, runs as surrogate_runs


rule train_online:
    input:
        cfg=study_file,
        test="results/{study}/snapshots/test.h5",
    output:
        model="results/{study}/surrogate/online_{policy}.pt",
        history="results/{study}/surrogate/online_{policy}.h5",
    log:
        "results/{study}/logs/train_online_{policy}.log",
    wildcard_constraints:
        policy="fifo|firo|reservoir",
    conda:
        "../../envs/surrogates.yaml"
    threads: 2
    params:
        trigger=trigger("train_online"),
        args=stage_args(
            "train_online",
            checkpoint="results/{study}/surrogate/online_{policy}.ckpt",
            client_logs="results/{study}/logs/clients_{policy}",
        ),
    shell:
        command("train_online")


rule train_offline:
    input:
        cfg=study_file,
        train="results/{study}/snapshots/train.h5",
        test="results/{study}/snapshots/test.h5",
    output:
        model="results/{study}/surrogate/offline.pt",
        history="results/{study}/surrogate/offline.h5",
    log:
        "results/{study}/logs/train_offline.log",
    conda:
        "../../envs/surrogates.yaml"
    threads: 2
    params:
        trigger=trigger("train_offline"),
        args=stage_args("train_offline"),
    shell:
        command("train_offline")


rule evaluate_surrogate:
    input:
        cfg=study_file,
        test="results/{study}/snapshots/test.h5",
        models=lambda w: [f"{p}.pt" for p in surrogate_runs(STUDIES[w.study]).values()],
    output:
        out="results/{study}/metrics/surrogate.h5",
    log:
        "results/{study}/logs/evaluate_surrogate.log",
    conda:
        "../../envs/surrogates.yaml"
    params:
        trigger=trigger("evaluate_surrogate"),
        args=stage_args("evaluate_surrogate", models=lambda w: labelled(STUDIES[w.study], "pt").split()),
    shell:
        command("evaluate_surrogate")


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
    log:
        "results/{study}/logs/figures_surrogate.log",
    conda:
        "../../envs/surrogates.yaml"
    params:
        trigger=trigger("figures_surrogate"),
        args=stage_args("figures_surrogate", histories=lambda w: labelled(STUDIES[w.study], "h5").split()),
    shell:
        command("figures_surrogate")


REPORT_SECTIONS.append(
    lambda study: ([f"results/{study}/sections/surrogate.json"] if runs("train_online", study) else [])
)
