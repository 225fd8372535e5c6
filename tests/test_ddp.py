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
