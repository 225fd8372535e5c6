"""The tiny study through a real one-node SLURM (tests/cluster/slurm_up.sh) with the project's
SLURM profile: jobs get SLURM ids, the MPI simulate job runs `srun -n 2` with the venv's Python,
and the artefacts equal those of a local run."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT, run, tiny_study, write_yaml
from rom import artefacts

SNAKEMAKE = ROOT / ".venv" / "bin" / "snakemake"
CLUSTER = ROOT / "tests" / "cluster"
TARGETS = ["results/tiny/snapshots/train.h5", "results/tiny/snapshots/test.h5"]


def study():
    return tiny_study(problem={"name": "thermal_block", "mesh": {"n": 16}, "blocks": [2, 2]},
                      design={"method": "lhs", "train": {"size": 6, "seed": 1}, "test": {"size": 4, "seed": 2}},
                      simulate={"chunk_size": 6, "mpi_ranks": 2})


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node cluster; SLURM_CONF is set for this process and the commands it starts."""
    if os.geteuid() != 0:
        pytest.skip("the one-node SLURM cluster needs root (slurmd, munged)")
    state = tmp_path_factory.mktemp("slurm")
    up = subprocess.run(["bash", CLUSTER / "slurm_up.sh", state], capture_output=True, text=True, timeout=600)
    if up.returncode != 0 and shutil.which("slurmctld") is None:
        pytest.skip(f"slurm-wlm cannot be installed here: {up.stderr.strip().splitlines()[-1:]}")
    assert up.returncode == 0, f"slurm_up.sh failed:\n{up.stderr}"
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    yield state
    subprocess.run(["bash", CLUSTER / "slurm_down.sh", state], capture_output=True, timeout=120)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


@pytest.fixture(scope="module")
def runs(slurm, tmp_path_factory):
    """The same study through SLURM and locally."""
    on_slurm, local = tmp_path_factory.mktemp("on_slurm"), tmp_path_factory.mktemp("local")
    for d in (on_slurm, local):
        write_yaml(d / "cfg.yaml", study())
    proc = run([SNAKEMAKE, *TARGETS, "--profile", ROOT / "config/profiles/slurm",
                "--slurm-init-seconds-before-status-checks", "2",
                "-s", ROOT / "Snakefile", "-d", on_slurm, "--configfile", on_slurm / "cfg.yaml"], timeout=600)
    run([SNAKEMAKE, *TARGETS, "--cores", "2", "-s", ROOT / "Snakefile", "-d", local,
         "--configfile", local / "cfg.yaml"], timeout=600)
    return on_slurm, local, proc.stdout + proc.stderr


@pytest.mark.cluster
def test_jobs_went_through_slurm(runs):
    on_slurm, _, log = runs
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S+/rule_(\w+)/", log))
    # sample, two simulate chunks (train, test), two gathers: five sbatch jobs (the resolved study
    # file is written at parse time, not by a job)
    assert len(submitted) == 5 and sorted(submitted.values()) == ["gather", "gather", "sample", "simulate", "simulate"]
    queue = run(["squeue", "--states=all", "--noheader", "--format=%i %T"]).stdout.split("\n")
    states = dict(line.split() for line in queue if line.strip())
    assert all(states.get(jobid) == "COMPLETED" for jobid in submitted), (submitted, states)


@pytest.mark.cluster
def test_simulate_ran_two_ranks_under_srun_with_the_venv(runs):
    on_slurm, _, _ = runs
    logs = sorted((on_slurm / "slurm_logs" / "rule_simulate").rglob("*.log"))
    assert len(logs) == 2  # one per chunk (train, test), named by SLURM job id
    for log in logs:
        text = log.read_text()
        assert "Shell command: srun -n 2 python -m rom simulate" in text
        assert f"Command: {ROOT}/.venv/lib/" in text  # the job step ran the venv's Snakemake
    for name in ("train", "test"):
        chunk = artefacts.read(on_slurm / f"results/tiny/snapshots/{name}/chunk0.h5")
        assert chunk.attrs["mpi_ranks"] == 2
        assert "petsc4py=" in chunk.attrs["package_versions"]  # the venv's Python (Debian petsc4py)


@pytest.mark.cluster
def test_artefacts_equal_a_local_run(runs):
    on_slurm, local, _ = runs
    a, b = artefacts.read(on_slurm / "results/tiny/parameters.h5"), artefacts.read(local / "results/tiny/parameters.h5")
    np.testing.assert_array_equal(a["mu_train"].values, b["mu_train"].values)
    for name in ("train", "test"):
        u_slurm = artefacts.read(on_slurm / f"results/tiny/snapshots/{name}.h5")["u"].values
        u_local = artefacts.read(local / f"results/tiny/snapshots/{name}.h5")["u"].values
        assert u_slurm.shape == u_local.shape == ({"train": 6, "test": 4}[name], 15 * 15)
        np.testing.assert_allclose(u_slurm, u_local, rtol=0, atol=1e-8 * np.abs(u_local).max())
        assert artefacts.read(local / f"results/tiny/snapshots/{name}/chunk0.h5").attrs["mpi_ranks"] == 2


@pytest.fixture(scope="module")
def mpi_rules(slurm, tmp_path_factory):
    """Every MPI rule through SLURM: the RB greedy (reduced_basis) and the shape family's solves
    (simulate_geometries), each with 2 ranks; and the dry run's printed commands."""
    workdir = tmp_path_factory.mktemp("mpi_rules")
    plates = {"name": "plates", "problem": {"name": "tensile_plate", "mesh": {"n": 6}},
              "design": {"method": "lhs", "train": {"size": 2, "seed": 1}, "test": {"size": 1, "seed": 2}},
              "simulate": {"mpi_ranks": 2}}
    write_yaml(workdir / "plates.yaml", plates)
    write_yaml(workdir / "cfg.yaml", {**study(), "include_studies": ["plates.yaml"],
                                      "rb": {"enabled": True, "train_size": 20, "tol": 1e-3, "max_modes": 3}})
    base = [SNAKEMAKE, "results/tiny/rom/rb.h5", "results/plates/geometries/train.h5", "--profile",
            ROOT / "config/profiles/slurm", "-s", ROOT / "Snakefile", "-d", workdir, "--configfile", workdir / "cfg.yaml"]
    dry = run([*base, "-n", "-p"], timeout=300)
    proc = run([*base, "--slurm-init-seconds-before-status-checks", "2"], timeout=600)
    return workdir, dry.stdout + dry.stderr, proc.stdout + proc.stderr


@pytest.mark.cluster
def test_every_mpi_rule_runs_under_srun(mpi_rules):
    workdir, dry, _ = mpi_rules
    # The dry run shows the real command of every MPI rule: srun with the study's ranks (simulate is
    # not needed by these targets; its srun command is checked on the first run's job logs above).
    for command in ("python -m rom reduced-basis", "python -m surrogates simulate-geometries"):
        assert f"srun -n 2 {command}" in dry, command
        assert f"mpiexec -n 2 {command}" not in dry
    for rule, command in (("reduced_basis", "python -m rom reduced-basis"),
                          ("simulate_geometries", "python -m surrogates simulate-geometries")):
        logs = sorted((workdir / "slurm_logs" / f"rule_{rule}").rglob("*.log"))
        assert logs, rule
        assert all(f"srun -n 2 {command}" in log.read_text() for log in logs), rule
    assert artefacts.read(workdir / "results/tiny/rom/rb.h5").attrs["mpi_ranks"] == 2
    geo = artefacts.read(workdir / "results/plates/geometries/train.h5")
    assert len(geo["node_offset"]) == 3  # two shapes solved
