"""Data-parallel online training: 2 CPU ranks (torchrun, gloo), one socket and one buffer per rank,
clients dealt round-robin; the ranks end with identical weights and the ledger is complete."""
import socket

import numpy as np
import pytest
import torch

from conftest import PYTHON, run
from rom import artefacts
from test_streaming import CLIENTS, STEPS, check_ledger, heat_study, online_args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.mpi
def test_two_gloo_ranks_train_in_sync(tmp_path):
    study = heat_study(tmp_path, budget_seconds=60, budget_batches=60, buffer={"capacity": 100, "watermark": 10})
    run([PYTHON, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", free_port(), "-m", "surrogates", *online_args(tmp_path, study)], timeout=240)
    ds = artefacts.read(tmp_path / "h.h5")
    assert ds.attrs["world_size"] == 2 and ds.attrs["batches"] == 60
    assert len(check_ledger(ds)) == CLIENTS * STEPS
    # every rank trained on its own clients' samples: client i went to rank i mod 2
    ranks = [torch.load(tmp_path / f"m.rank{r}.pt", weights_only=True) for r in (0, 1)]
    keys = [r["buffer"]["key"].numpy() // STEPS for r in ranks]
    assert set(np.unique(keys[0]) % 2) == {0} and set(np.unique(keys[1]) % 2) == {1}
    w0, w1 = (r["trainer"]["model"] for r in ranks)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert ranks[0]["trainer"]["batches"] == ranks[1]["trainer"]["batches"] == 60
    # and the weights did move from their (shared, seeded) start
    torch.manual_seed(0)
    from surrogates.nn import MLP

    start = MLP(6, 81, 32, 2).state_dict()
    assert not torch.equal(start["net.0.weight"], w0["net.0.weight"])


def test_ranks_resume_from_the_newest_batch_all_of_them_saved():
    from surrogates.streaming.server import agreed_batch

    assert agreed_batch([[40, 60], [40, 60]]) == 60
    assert agreed_batch([[40, 60], [20, 40]]) == 40  # rank 1 was killed before writing batch 60
    assert agreed_batch([[60], [40]]) is None and agreed_batch([[], [40]]) is None
    assert agreed_batch([[7]]) == 7


@pytest.mark.mpi
@pytest.mark.slow  # two torchrun launches: about 40 s on an idle 2-core machine, 90 s at load 7
def test_killed_data_parallel_run_resumes_with_equal_batches(tmp_path):
    """2 gloo ranks checkpoint every 0.05 s at batches rank 0 schedules; rank 0 SIGKILLs itself
    right after a checkpoint (rank 1 may or may not have written its own), torchrun stops rank 1.
    The same command resumes both ranks at one batch count, and both end at the budget's 400
    batches with identical weights and a complete ledger."""
    import re
    import subprocess

    from conftest import env

    study = heat_study(tmp_path, budget_seconds=120, budget_batches=400, checkpoint_every_seconds=0.05,
                       buffer={"capacity": 100, "watermark": 10})
    cmd = [PYTHON, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "surrogates",
           *online_args(tmp_path, study, "--fault", "server:kill:100")]
    first = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=240)
    assert first.returncode != 0
    saved = [torch.load(tmp_path / f"m.rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert saved[0]["trainer"]["batches"] >= 100 and not saved[0]["complete"]
    cmd[cmd.index("--master-port") + 1] = str(free_port())
    second = run(cmd, timeout=240)
    resumed = [int(b) for b in re.findall(r"rank \d: resumed from \S+ at batch (\d+)", second.stdout)]
    assert len(resumed) == 2 and resumed[0] == resumed[1] >= 100
    ds = artefacts.read(tmp_path / "h.h5")
    assert ds.attrs["resumed_from_batch"] == resumed[0]
    assert ds.attrs["batches"] == 400 and ds.attrs["rank_batches"] == "[400, 400]"
    assert len(check_ledger(ds)) == CLIENTS * STEPS
    ranks = [torch.load(tmp_path / f"m.rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["complete"] and ranks[1]["complete"]
    assert ranks[0]["trainer"]["batches"] == ranks[1]["trainer"]["batches"] == 400
    w0, w1 = (r["trainer"]["model"] for r in ranks)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
