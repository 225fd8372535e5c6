"""The FOM client process the launcher starts: `python -m surrogates.streaming.worker STUDY BACKEND`.
Its simulations, the server address and the key file come in the environment
(surrogates.streaming.client.Assignment). It imports only what the solve needs (not the CLI,
whose artefact layer pulls in xarray and pandas: seconds per process on a loaded node).
Exit status 3: the server is gone; 2: bad input (one line on stderr)."""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[1] not in ("petsc", "scipy"):
        print("usage: python -m surrogates.streaming.worker STUDY_FILE petsc|scipy [PETSc options]", file=sys.stderr)
        return 2
    from rom import config

    from .client import Assignment, ServerGone, run_worker

    try:
        study = config.load(argv[0])
        job = Assignment.from_environment()
    except ValueError as exc:  # ConfigError is one
        print(f"stream worker: error: {exc}", file=sys.stderr)
        return 2
    try:
        run_worker(study, job, argv[1], argv[2:])
    except ServerGone as exc:
        print(f"stream worker: {exc}; stopping", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
