# Uncertainty propagation and Sobol' sensitivity through a trained surrogate (uq.enabled): the
# certified RB outputs (uq.model rb) or POD + GP (pod_gp), optionally checked against FOM solves.
# The rule follows the stage declaration of rom/commands/uq.py (trigger, arguments, command).
from rom.commands.uq import model_of as uq_model

uq_enabled = lambda study: runs("uq", study)


# The model's artefact; the operators artefact where the stage builds the problem (the FOM check, the
# fields: its mesh, never the mesh file again) and for the POD+GP check's X product; the train snapshots
# for the FOM seconds per solve when no FOM check runs.
uq_pod_gp = lambda study: uq_model(STUDIES[study]) == "pod_gp"
uq_validate = lambda study: STUDIES[study]["uq"]["validate"] > 0
uq_problem = lambda study: uq_validate(study) or STUDIES[study]["uq"]["fields"]
uq_inputs = lambda w: {
    **({"gp": f"results/{w.study}/surrogates/gp.h5"} if uq_pod_gp(w.study) else {"rb": f"results/{w.study}/rom/rb.h5"}),
    **({"operators": f"results/{w.study}/fom/operators.h5"} if uq_problem(w.study) else {}),
    **({"train": f"results/{w.study}/snapshots/train.h5"} if not uq_validate(w.study) else {}),
}


rule uq:
    input:
        unpack(uq_inputs),
        cfg=study_file,
    output:
        out="results/{study}/uq/uq.h5",
        figures=directory("results/{study}/figures/uq"),
        section="results/{study}/sections/uq.json",
    log:
        "results/{study}/logs/uq.log",
    conda:
        "../../envs/surrogates.yaml"
    threads: 1
    params:
        trigger=trigger("uq"),
        args=stage_args("uq"),
    shell:
        command("uq")


REPORT_SECTIONS.append(lambda study: [f"results/{study}/sections/uq.json"] if uq_enabled(study) else [])
