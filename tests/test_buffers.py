"""Buffer policies: FIFO and FIRO serve each sample exactly once (FIFO in order); the Reservoir
stays within capacity, never blocks once above the watermark, and its seen counts add up."""
import threading

import numpy as np
import pytest

from surrogates.streaming.buffers import Buffer

N_IN, N_OUT = 3, 5


def samples(keys):
    keys = np.asarray(keys)
    x = np.repeat(keys[:, None], N_IN, axis=1).astype(np.float32)
    return x, np.repeat(keys[:, None], N_OUT, axis=1).astype(np.float32), keys


def producer(buf, n, chunk):
    def run():
        for k in range(0, n, chunk):
            buf.put(*samples(np.arange(k, min(k + chunk, n))))
        buf.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def drain(buf, batch, n):
    """Consume until the stream is closed and empty; returns served keys in order and checks
    that every row's data belongs to its key."""
    served = []
    while not (buf.closed and buf.size == 0):
        got = buf.get(batch, timeout=0.5)
        if got is None:
            continue
        x, y, keys = got
        assert np.array_equal(x[:, 0].numpy(), keys) and np.array_equal(y[:, -1].numpy(), keys)
        served.extend(keys.tolist())
        assert len(served) <= n
    return served


def test_fifo_serves_each_sample_once_in_order():
    buf = Buffer("fifo", capacity=8, n_in=N_IN, n_out=N_OUT, watermark=4)
    t = producer(buf, 100, chunk=3)  # the producer blocks on the full buffer: backpressure
    served = drain(buf, batch=5, n=100)
    t.join(5)
    assert served == list(range(100))
    assert buf.served == 100 and np.array_equal(buf.seen_counts(), np.ones(100))


def test_firo_serves_each_sample_exactly_once():
    buf = Buffer("firo", capacity=8, n_in=N_IN, n_out=N_OUT, watermark=6, seed=1)
    t = producer(buf, 100, chunk=4)
    served = drain(buf, batch=3, n=100)
    t.join(5)
    assert sorted(served) == list(range(100))
    assert served != list(range(100))  # random out
    assert np.array_equal(np.sort(buf.seen_counts()), np.ones(100))


def test_fifo_waits_for_watermark_then_drains_on_close():
    buf = Buffer("fifo", capacity=16, n_in=N_IN, n_out=N_OUT, watermark=10)
    buf.put(*samples(range(7)))
    assert buf.get(2, timeout=0.01) is None  # below the watermark: training has not started
    buf.close()
    assert drain(buf, batch=4, n=7) == list(range(7))


def test_reservoir_capacity_no_blocking_and_seen_counts():
    cap = 20
    buf = Buffer("reservoir", capacity=cap, n_in=N_IN, n_out=N_OUT, watermark=10, seed=2)
    assert buf.get(8, timeout=0.01) is None
    buf.put(*samples(range(10)))
    served, arrived = 0, 10
    for k in range(200):
        if k % 2 == 0:  # the stream keeps coming, in chunks of 7 (some replace present samples)
            buf.put(*samples(np.arange(arrived, arrived + 7)))
            arrived += 7
        got = buf.get(8, timeout=0.0)  # above the watermark: never waits, never None
        assert got is not None
        assert len(np.unique(got[2])) == len(got[2]) == 8
        served += 8
        assert buf.size <= cap
    seen = buf.seen_counts()
    assert buf.size == cap and buf.arrived == arrived == len(seen)
    assert seen.sum() == served == buf.served
    assert buf.evicted == arrived - cap
    assert seen.max() > 1  # samples are reused


def test_reservoir_state_round_trip():
    buf = Buffer("reservoir", capacity=12, n_in=N_IN, n_out=N_OUT, watermark=4, seed=3)
    buf.put(*samples(range(30)))
    for _ in range(5):
        buf.get(4)
    other = Buffer("reservoir", capacity=12, n_in=N_IN, n_out=N_OUT, watermark=4, seed=99)
    other.load_state_dict(buf.state_dict())
    assert np.array_equal(other.seen_counts(), buf.seen_counts())
    a, b = buf.get(4), other.get(4)  # the same random stream continues
    assert np.array_equal(a[2], b[2]) and np.array_equal(a[0].numpy(), b[0].numpy())


@pytest.mark.parametrize("bad", [{"policy": "lifo"}, {"watermark": 0}, {"watermark": 13}])
def test_bad_settings(bad):
    kw = {"policy": "fifo", "capacity": 12, "n_in": N_IN, "n_out": N_OUT, "watermark": 4, **bad}
    with pytest.raises(ValueError):
        Buffer(**kw)
