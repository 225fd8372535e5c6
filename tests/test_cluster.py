"""The tiny study (with its RB greedy) and a shape family through a real one-node SLURM
(tests/cluster/slurm_up.sh) with the project's SLURM profile, in one run: jobs get SLURM ids, every MPI
rule runs `srun -n 2` with the venv's Python, and the snapshots equal those of a local run."""
import fcntl
import os
import re
import shutil
import subprocess
import tempfile

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
    """A running one-node cluster; SLURM_CONF is set for this process and the commands it starts.

    One at a time per host: slurmd links its configuration at /run/slurm/conf (configless mode,
    where srun inside a job finds it), so a second suite running at once waits for the lock
    instead of pointing the first one's job steps at its own controller."""
    if os.geteuid() != 0:
        pytest.skip("the one-node SLURM cluster needs root (slurmd, munged)")
    lock = open(os.path.join(tempfile.gettempdir(), "romflow-test-slurm.lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the lock file closes, after slurm_down.sh
    state = tmp_path_factory.mktemp("slurm")
    up = subprocess.run(["bash", CLUSTER / "slurm_up.sh", state], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        lock.close()
        if shutil.which("slurmctld") is None:
            pytest.skip(f"slurm-wlm cannot be installed here: {up.stderr.strip().splitlines()[-1:]}")
        raise AssertionError(f"slurm_up.sh failed:\n{up.stderr}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    yield state
    subprocess.run(["bash", CLUSTER / "slurm_down.sh", state], capture_output=True, timeout=120)
    lock.close()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


PLATES = {"name": "plates", "problem": {"name": "tensile_plate", "mesh": {"n": 6}},
          "design": {"method": "lhs", "train": {"size": 2, "seed": 1}, "test": {"size": 1, "seed": 2}},
          "simulate": {"mpi_ranks": 2}}
# Every MPI rule: simulate (both sets), the RB greedy (reduced_basis) and the shape family's solves
# (simulate_geometries), each with 2 ranks; plus the serial rules they need.
SLURM_TARGETS = [*TARGETS, "results/tiny/rom/rb.h5", "results/plates/geometries/train.h5"]


def write_studies(folder):
    """The tiny study with its RB greedy, including the plates family: every MPI rule has work."""
    write_yaml(folder / "plates.yaml", PLATES)
    write_yaml(folder / "cfg.yaml", {**study(), "include_studies": ["plates.yaml"],
                                     "rb": {"enabled": True, "train_size": 20, "tol": 1e-3, "max_modes": 3}})


@pytest.fixture(scope="module")
def runs(slurm, tmp_path_factory):
    """One SLURM run of every MPI rule, and the same study's snapshots run locally."""
    on_slurm, local = tmp_path_factory.mktemp("on_slurm"), tmp_path_factory.mktemp("local")
    for d in (on_slurm, local):
        write_studies(d)
    proc = run([SNAKEMAKE, *SLURM_TARGETS, "--profile", ROOT / "config/profiles/slurm",
                "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
                "-s", ROOT / "Snakefile", "-d", on_slurm, "--configfile", on_slurm / "cfg.yaml"], timeout=600)
    run([SNAKEMAKE, *TARGETS, "--cores", "2", "-s", ROOT / "Snakefile", "-d", local,
         "--configfile", local / "cfg.yaml"], timeout=600)
    return on_slurm, local, proc.stdout + proc.stderr


@pytest.mark.cluster
def test_jobs_went_through_slurm(runs):
    on_slurm, _, log = runs
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S+/rule_(\w+)/", log))
    # tiny: sample, two simulate chunks (train, test), two gathers, operators, reduced_basis; plates:
    # sample, simulate_geometries: nine sbatch jobs (the resolved study files are written at parse time)
    assert sorted(submitted.values()) == sorted(["sample", "simulate", "simulate", "gather", "gather", "operators",
                                                 "reduced_basis", "sample", "simulate_geometries"]), submitted
    queue = run(["squeue", "--states=all", "--noheader", "--format=%i %T"]).stdout.split("\n")
    states = dict(line.split() for line in queue if line.strip())
    assert all(states.get(jobid) == "COMPLETED" for jobid in submitted), (submitted, states)


@pytest.mark.cluster
def test_every_mpi_rule_ran_two_ranks_under_srun_with_the_venv(runs):
    on_slurm, _, _ = runs
    # Each job's SLURM log holds the command it ran. (A dry run cannot show it: Snakemake swaps the
    # executor for its dry-run executor, so the launcher printed there is mpiexec; docs/cluster.md.)
    for rule, command, count in (("simulate", "python -m rom simulate", 2),  # one per chunk (train, test)
                                 ("reduced_basis", "python -m rom reduced-basis", 1),
                                 ("simulate_geometries", "python -m surrogates simulate-geometries", 1)):
        logs = sorted((on_slurm / "slurm_logs" / f"rule_{rule}").rglob("*.log"))  # named by SLURM job id
        assert len(logs) == count, (rule, logs)
        for log in logs:
            text = log.read_text()
            assert f"Shell command: srun -n 2 {command}" in text, rule
            assert f"Command: {ROOT}/.venv/lib/" in text  # the job step ran the venv's Snakemake
    for name in ("train", "test"):
        chunk = artefacts.read(on_slurm / f"results/tiny/snapshots/{name}/chunk0.h5")
        assert chunk.attrs["mpi_ranks"] == 2
        assert "petsc4py=" in chunk.attrs["package_versions"]  # the venv's Python (Debian petsc4py)
    assert artefacts.read(on_slurm / "results/tiny/rom/rb.h5").attrs["mpi_ranks"] == 2
    geo = artefacts.read(on_slurm / "results/plates/geometries/train.h5")
    assert len(geo["node_offset"]) == 3  # two shapes solved


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


def test_dry_run_under_the_slurm_profile_shows_srun(tmp_path):
    """A dry run shows the command the jobs will run: Snakemake swaps the SLURM executor for its dry-run
    executor before the workflow sees it, so the launcher comes from the command line's profile."""
    write_studies(tmp_path)
    base = [SNAKEMAKE, *SLURM_TARGETS, "-s", ROOT / "Snakefile", "-d", tmp_path, "--configfile", tmp_path / "cfg.yaml",
            "-n", "-p"]
    for args, launcher in ((["--profile", ROOT / "config/profiles/slurm"], "srun"), (["--cores", "2"], "mpiexec")):
        proc = run([*base, *args], timeout=300)
        out = proc.stdout + proc.stderr
        for command in ("python -m rom simulate", "python -m rom reduced-basis",
                        "python -m surrogates simulate-geometries"):
            assert f"Shell command: {launcher} -n 2 {command}" in out, (launcher, command)
        assert ("mpi=srun" in out) == (launcher == "srun")


def test_requested_executor_is_read_from_the_command_line_and_profile(tmp_path):
    from rom.pipeline import requested_executor

    profile = tmp_path / "prof"
    profile.mkdir()
    (profile / "config.yaml").write_text("executor: slurm\njobs: 4\n")
    assert requested_executor(["snakemake", "--executor", "slurm"], {}) == "slurm"
    assert requested_executor(["snakemake", "-e", "local", "--profile", str(profile)], {}) == "local"
    assert requested_executor(["snakemake", f"--profile={profile}", "-n"], {}) == "slurm"
    assert requested_executor(["snakemake", "-n"], {"SNAKEMAKE_PROFILE": str(profile)}) == "slurm"
    assert requested_executor(["snakemake", "-n", "--profile", str(tmp_path / "missing")], {}) is None
    assert requested_executor(["snakemake", "--cores", "2"], {"XDG_CONFIG_HOME": str(tmp_path)}) is None
