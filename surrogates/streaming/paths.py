"""Artefact paths of the surrogate runs of a study (the pipeline rules import these)."""
from __future__ import annotations


def runs(study: dict) -> dict[str, str]:
    """Label -> path stem of every surrogate run of a study: one online run per policy, offline."""
    out = {f"online_{p}": f"results/{study['name']}/surrogate/online_{p}" for p in study["surrogate"]["policies"]}
    out["offline"] = f"results/{study['name']}/surrogate/offline"
    return out


def labelled(study: dict, ext: str) -> str:
    """LABEL=PATH arguments of evaluate-surrogate / figures-surrogate."""
    return " ".join(f"{label}={stem}.{ext}" for label, stem in runs(study).items())
