"""The CUDA path of the streamed training (skipped without a GPU): the device-resident buffer fed
from a producer thread on its own stream, the whole-step CUDA graph captured while that thread
copies, the learning-rate schedule through a checkpoint and resume, and two NCCL ranks on two
devices. Weights are compared with the eager path on the same device: the same float32 kernels,
so the tolerances only cover reduction order (Adam's update is bounded by lr per step)."""
import io
import threading

import numpy as np
import pytest
import torch

from conftest import PYTHON, run
from rom import artefacts
from surrogates.nn import MLP, Trainer
from surrogates.streaming.buffers import Buffer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
N_IN, N_OUT, BATCH = 6, 100, 64


def producer(buf, n, chunk, stop=None):
    """Puts keys 0..n-1 (rows key / n) in chunks, then closes the buffer; with `stop`, keeps
    cycling through them until stop is set."""
    def go():
        k = 0
        while True:
            keys = np.arange(k, min(k + chunk, n))
            x = np.repeat(keys[:, None], N_IN, axis=1).astype(np.float32) / n
            y = np.repeat(keys[:, None], N_OUT, axis=1).astype(np.float32) / n
            buf.put(x, y, keys)
            k = keys[-1] + 1
            if k == n and stop is None:
                buf.close()
                return
            if stop is not None and stop.is_set():
                return
            k %= n
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("policy", ["fifo", "firo"])
def test_cuda_buffer_serves_each_sample_once_through_the_side_stream(policy):
    """A full buffer of 96 holds the producer back (pending rows, moved into freed slots on the
    training stream); every row reaches the consumer once, with its own data."""
    buf = Buffer(policy, capacity=96, n_in=N_IN, n_out=N_OUT, watermark=40, device="cuda")
    t = producer(buf, 3000, chunk=16)
    served = []
    while len(served) < 3000:
        got = buf.get(BATCH, timeout=0.5)
        if got is None:
            continue
        x, y, keys = got
        k = torch.as_tensor(keys, device="cuda", dtype=torch.float32) / 3000
        assert torch.equal(x[:, 0], k) and torch.equal(y[:, -1], k)  # each row's data is its own
        served += keys.tolist()
    t.join(10)
    assert sorted(served) == list(range(3000))


def _graph_trainer(graph=True, **kw):
    torch.manual_seed(0)
    return Trainer(MLP(N_IN, N_OUT, 256, 2), device="cuda", graph=graph, batch_size=BATCH, **kw)


def test_graph_captured_while_the_producer_copies_matches_eager():
    """The producer thread copies chunks into a device Reservoir (pinned host rows, side stream)
    while the trainer captures its step (capture mode thread_local). prepare() leaves the weights
    and Adam's state as they were; then 200 graph replays on batches gathered into the static
    inputs give the eager trainer's weights on the same batches."""
    buf = Buffer("reservoir", capacity=4096, n_in=N_IN, n_out=N_OUT, watermark=512, device="cuda")
    stop = threading.Event()
    t = producer(buf, 100_000, chunk=16, stop=stop)
    graph, eager = _graph_trainer(), _graph_trainer(graph=False)
    start = [p.detach().clone() for p in graph.module.parameters()]
    graph.prepare()
    assert all(torch.equal(p, s) for p, s in zip(graph.module.parameters(), start))
    assert all(float(st["step"]) == 0 and not st["exp_avg"].any() for st in graph.opt.state.values())
    for _ in range(200):
        got = None
        while got is None:
            got = buf.get(BATCH, timeout=0.5, out=(graph.static_x, graph.static_y))
        x, y, _ = got
        eager.step(x.clone(), y.clone())
        graph.step(x, y)
    torch.cuda.synchronize()
    assert t.is_alive()  # the producer was copying all along
    stop.set()
    t.join(10)
    for p, q in zip(graph.module.parameters(), eager.module.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=200 * 1e-3 * 1e-4)


def test_resume_keeps_the_learning_rate_schedule_in_the_graph():
    """lr decays 100x per 10 batches. A graph trainer checkpointed at batch 15, loaded on the CPU
    first (as the server does) and resumed, keeps reading the schedule from its device tensor:
    after 10 more steps its weights equal an uninterrupted run's (an lr frozen at batch 15 would
    have moved them by 1e-5 where the schedule allows 2.7e-6)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    batches = [(torch.rand(BATCH, N_IN, device="cuda", generator=g), torch.rand(BATCH, N_OUT, device="cuda", generator=g))
               for _ in range(25)]
    kw = dict(lr=1e-3, lr_decay=0.01, lr_decay_batches=10)
    whole, first, resumed = (_graph_trainer(**kw) for _ in range(3))
    for x, y in batches:
        whole.step(x, y)
    for x, y in batches[:15]:
        first.step(x, y)
    f = io.BytesIO()
    torch.save(first.state_dict(), f)
    f.seek(0)
    resumed.load_state_dict(torch.load(f, map_location="cpu", weights_only=True))
    lr = resumed.opt.param_groups[0]["lr"]
    assert lr.device.type == "cuda" and lr is resumed._lr
    for x, y in batches[15:]:
        resumed.step(x, y)
        assert float(resumed._lr) == pytest.approx(1e-3 * 0.01 ** ((resumed.batches - 1) / 10), rel=1e-6)
    for p, q in zip(resumed.module.parameters(), whole.module.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-8)


def test_bf16_autocast_graph_follows_the_weights():
    """bf16 autocast inside the captured step, its cast cache off (cached casts, freed when
    autocast exits inside the capture, could be reused by later captured kernels): after 20
    replays, the graph's loss on a fixed batch equals an eager bf16 evaluation of the updated
    weights, to bf16 rounding."""
    torch.manual_seed(0)
    t = Trainer(MLP(N_IN, N_OUT, 256, 2), lr=1e-2, device="cuda", amp=True, graph=True, batch_size=BATCH)
    x, y = torch.rand(BATCH, N_IN, device="cuda"), torch.rand(BATCH, N_OUT, device="cuda")
    for _ in range(20):
        loss = t.step(x, y)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        before = torch.nn.functional.mse_loss(t.module(x).float(), y)
    t.static_x.copy_(x)
    t.static_y.copy_(y)
    t._graph.replay()  # the loss it reports is of the weights before its own update
    assert float(t.static_loss) == pytest.approx(float(before), rel=1e-2)
    assert float(loss) > float(before)


@pytest.mark.mpi
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_nccl_ranks_on_their_own_devices(tmp_path):
    from test_ddp import free_port
    from test_streaming import CLIENTS, STEPS, check_ledger, heat_study, online_args

    study = heat_study(tmp_path, device="cuda", budget_seconds=60, budget_batches=200,
                       buffer={"capacity": 100, "watermark": 10},
                       online={"simulations": CLIENTS, "max_running": 2, "backend": "scipy"})
    run([PYTHON, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", free_port(), "-m", "surrogates", *online_args(tmp_path, study)], timeout=300)
    ds = artefacts.read(tmp_path / "h.h5")
    assert ds.attrs["rank_devices"] == "['cuda:0', 'cuda:1']" and ds.attrs["rank_batches"] == "[200, 200]"
    assert len(check_ledger(ds)) == CLIENTS * STEPS
    ranks = [torch.load(tmp_path / f"m.rank{r}.pt", weights_only=True) for r in (0, 1)]
    w0, w1 = (r["trainer"]["model"] for r in ranks)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
