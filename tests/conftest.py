"""Shared fixtures: the project root, an environment for mpiexec as root, and tiny studies."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
}
os.environ.update(MPI_ENV)
os.environ.setdefault("MPLBACKEND", "Agg")


def torch_threads() -> None:
    """One torch thread per test process (two xdist workers share two cores), unless the run sets
    OMP_NUM_THREADS itself: `make test-portability` reruns the numerical files with 1 and 3."""
    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


def run(cmd, cwd=None, check=True, timeout=300) -> subprocess.CompletedProcess:
    """Run a command with the venv first on PATH; on failure show its output."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def rom_cli(*args, mpi: int | None = None, **kw):
    cmd = [PYTHON, "-m", "rom", *args]
    if mpi:
        cmd = ["mpiexec", "-n", str(mpi), *cmd]
    return run(cmd, **kw)


def tiny_study(**overrides) -> dict:
    """A thermal block study that solves in about a second."""
    study = {
        "name": "tiny",
        "problem": {"name": "thermal_block", "mesh": {"n": 12}, "blocks": [2, 2]},
        "design": {"method": "lhs", "train": {"size": 6, "seed": 1}, "test": {"size": 3, "seed": 2}},
        "simulate": {"chunk_size": 4, "mpi_ranks": 1},
        "pod": {"tol": 1e-12, "max_modes": 6},
    }
    for key, value in overrides.items():
        study[key] = value
    return study


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def study_file(tmp_path):
    """A resolved tiny study file and its parameters artefact, made through the CLI."""
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_study())
    rom_cli("configure", "--config", cfg, "--out", tmp_path / "study.yaml")
    rom_cli("sample", "--study-config", tmp_path / "study.yaml", "--out", tmp_path / "parameters.h5")
    return tmp_path / "study.yaml"


# -- rounding-level perturbations (tests/README.md: no claim that rounding could flip) -------------
ROUNDING = 1e-14


class Rounding:
    """Copy 0 returns its inputs as given; copy k >= 1 multiplies every entry by (1 + 1e-14 xi),
    xi ~ N(0, 1) drawn from seed k: the inputs another BLAS, thread count or compiler could have
    handed the method. A claim that holds on every copy is a property of the problem."""

    def __init__(self, copy: int):
        self.copy = copy
        self._rng = np.random.default_rng(copy)

    def __call__(self, a):
        a = np.asarray(a, dtype=float)
        return a if self.copy == 0 else a * (1.0 + ROUNDING * self._rng.standard_normal(a.shape))


@pytest.fixture(params=[0, 1, 2], ids=["as-given", "perturbed-1", "perturbed-2"])
def rounding(request) -> Rounding:
    """Reruns the test on its inputs as given and on two rounding-level perturbations of them."""
    return Rounding(request.param)
