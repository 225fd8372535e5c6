"""Resume and robustness: Snakemake killed while simulate jobs run resumes with --rerun-incomplete
without recomputing finished chunks; a failing job names its log once (local profile, no retry)."""
import base64
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import ROOT, env, run, tiny_study, write_yaml
from rom import artefacts

SNAKEMAKE = ROOT / ".venv" / "bin" / "snakemake"
N_CHUNKS = 4


def command(workdir, *args):
    return [str(a) for a in (SNAKEMAKE, "results/tiny/snapshots/train.h5", *args, "-s", ROOT / "Snakefile",
                             "-d", workdir, "--configfile", workdir / "cfg.yaml")]


def incomplete(workdir) -> set[str]:
    """Outputs Snakemake itself marks as incomplete (.snakemake/incomplete/<base64 of the path>)."""
    folder = workdir / ".snakemake" / "incomplete"
    return {base64.b64decode(p.name).decode() for p in folder.iterdir()} if folder.is_dir() else set()


def finished(workdir, chunk_dir) -> dict:
    """Chunk files Snakemake has recorded as complete: name -> (inode, mtime in ns)."""
    marked = incomplete(workdir)
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in chunk_dir.glob("chunk*.h5")
            if str(p.relative_to(workdir)) not in marked}


@pytest.mark.pipeline
def test_killed_run_resumes_without_recomputing_finished_chunks(tmp_path):
    write_yaml(tmp_path / "cfg.yaml", tiny_study(
        design={"method": "lhs", "train": {"size": 2 * N_CHUNKS, "seed": 1}, "test": {"size": 2, "seed": 2}},
        simulate={"chunk_size": 2, "mpi_ranks": 1}))
    chunk_dir = tmp_path / "results/tiny/snapshots/train"
    # One job at a time, so the run is killed with some chunks done and others not started.
    proc = subprocess.Popen(command(tmp_path, "--cores", "1"), env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(finished(tmp_path, chunk_dir)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: Snakemake and its running job
        proc.wait()
    done = finished(tmp_path, chunk_dir)
    assert 2 <= len(done) < N_CHUNKS, done
    assert not (tmp_path / "results/tiny/snapshots/train.h5").exists()

    run(command(tmp_path, "--unlock"))  # a killed Snakemake leaves its lock behind
    resumed = run(command(tmp_path, "--cores", "2", "--rerun-incomplete"))
    log = resumed.stdout + resumed.stderr
    stats = dict(line.split()[:2] for line in log.splitlines()
                 if line.split()[:1] in (["simulate"], ["gather"]) and len(line.split()) == 2)
    assert stats == {"simulate": str(N_CHUNKS - len(done)), "gather": "1"}, log  # the job counts of the rerun
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in chunk_dir.glob("chunk*.h5")}
    assert len(after) == N_CHUNKS
    assert {name: after[name] for name in done} == done  # finished chunks untouched (same file, same mtime)
    snapshots = artefacts.read(tmp_path / "results/tiny/snapshots/train.h5")
    assert snapshots.sizes["sample"] == 2 * N_CHUNKS and snapshots["converged"].values.all()
    np.testing.assert_array_equal(snapshots["sample"].values, np.arange(2 * N_CHUNKS))


@pytest.mark.pipeline
def test_failed_job_is_not_retried_and_its_log_is_printed_once(tmp_path):
    # One CG iteration cannot reach 1e-12: every sample fails, so gather fails (max_failed_fraction 0).
    write_yaml(tmp_path / "cfg.yaml", tiny_study(
        simulate={"chunk_size": 6, "mpi_ranks": 1, "petsc_options": {"ksp_type": "cg", "ksp_max_it": 1}}))
    proc = run(command(tmp_path, "--profile", ROOT / "config/profiles/local", "--cores", "2"), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "results/tiny/logs/gather_train.log" in out  # the failing job's log path
    assert "6 of 6 samples failed" in out  # and its content (show-failed-logs)
    # An input error fails again the same way: the workstation profile does not retry it, so the
    # failed job's log is shown once (it used to be retried and shown twice).
    assert out.count("Error in rule gather") == 1
    kept = artefacts.read(tmp_path / "results/tiny/snapshots/train/chunk0.h5")
    assert kept["converged"].values.sum() == 0 and kept.sizes["sample"] == 6  # finished work kept
