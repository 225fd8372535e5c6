"""Leaf helpers every layer uses: the repository root, the results layout, atomic writes and
digests. Imports nothing from romflow."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("results")


def study_dir(study: str | dict) -> Path:
    """results/<study>/ (relative to the working directory, as Snakemake sees it)."""
    return RESULTS / (study if isinstance(study, str) else study["name"])


def study_file(study: str | dict) -> Path:
    """The resolved study file every rule of the study reads."""
    return study_dir(study) / "study.yaml"


def problem_label(study: dict) -> str:
    """How logs, messages, artefacts and reports name a study's problem: its `name`, else its `class`."""
    return study["problem"].get("name") or study["problem"].get("class") or ""


def digest(value) -> str:
    """Stable short hash of a config section (recorded in artefacts, used as a rerun trigger)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds, so a crash
    never leaves a file that looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_if_changed(path: str | Path, text: str) -> bool:
    """Write atomically, only when the content changes (so the mtime marks real changes)."""
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return True


def export_pythonpath() -> str:
    """Put the repository first on PYTHONPATH of this process (and so of the jobs it starts): the
    rules run the project's packages from the repository, in the venv and in conda envs alike."""
    parts = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    return os.environ["PYTHONPATH"]
