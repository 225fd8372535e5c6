"""Buffer policies: FIFO and FIRO serve each sample exactly once (FIFO in order); the Reservoir
stays within capacity, never blocks once above the watermark, and its seen counts add up."""
import threading
import time

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
    served, deadline = [], time.time() + 30
    while not (buf.closed and buf.size == 0):
        assert time.time() < deadline, "the consumer starved"
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


def wait_until(condition, timeout=10.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline
        time.sleep(0.001)


def test_watermark_reached_while_the_producer_waits_for_room():
    """One chunk larger than the free room: the producer stores what fits and waits; the buffer
    is then above the watermark, so training starts and frees room (no deadlock)."""
    buf = Buffer("fifo", capacity=30, n_in=N_IN, n_out=N_OUT, watermark=29)
    t = producer(buf, 45, chunk=45)
    assert drain(buf, batch=14, n=45) == list(range(45))
    t.join(5)
    assert not t.is_alive()


def test_admit_books_and_stores_atomically():
    """admit runs under the buffer's lock: with the producer held back by a full FIFO, what it
    booked is exactly what the slots and the pending rows hold; a state round trip keeps the
    pending rows, and a drain serves every booked sample once."""
    buf = Buffer("fifo", capacity=12, n_in=N_IN, n_out=N_OUT, watermark=4)
    booked = []

    def admit(keys):
        booked.extend(keys.tolist())
        return np.ones(len(keys), dtype=bool)

    t = threading.Thread(target=lambda: buf.put(*samples(range(20)), admit=admit), daemon=True)
    t.start()
    wait_until(lambda: buf.size == 12 and len(buf.pending_key) == 8)
    with buf.cond:
        assert sorted(booked) == sorted(buf.seen_table()[0].tolist()) == list(range(20))
        state = buf.state_dict()
    buf.close()
    t.join(5)
    other = Buffer("fifo", capacity=12, n_in=N_IN, n_out=N_OUT, watermark=4)
    other.load_state_dict(state)
    other.close()
    assert drain(other, batch=5, n=20) == list(range(20))


def test_close_releases_a_waiting_producer_and_keeps_its_rows_pending():
    buf = Buffer("firo", capacity=8, n_in=N_IN, n_out=N_OUT, watermark=4)
    t = threading.Thread(target=lambda: buf.put(*samples(range(11))), daemon=True)
    t.start()
    wait_until(lambda: len(buf.pending_key) == 3)
    buf.close()
    t.join(5)
    assert not t.is_alive() and buf.size == 8 and sorted(buf.pending_key) == [8, 9, 10]
    assert sorted(drain(buf, batch=3, n=11)) == list(range(11))  # freed slots take the pending rows


@pytest.mark.parametrize("bad, key", [({"capacity": 30, "watermark": 30}, "surrogate.buffer.watermark = 30"),
                                      ({"capacity": 31}, "surrogate.buffer.capacity = 31"),
                                      ({"capacity": 12, "watermark": 4, "batch_size": 8}, "surrogate.buffer.capacity = 12")])
def test_buffer_settings_refused_in_one_line(bad, key):
    """capacity >= batch_size + ingest_chunk and watermark < capacity, checked where the study is
    validated (validate_settings) and by the library (Settings)."""
    from rom.config import ConfigError
    from surrogates.streaming.settings import Settings, validate_settings

    s = {"batch_size": 16, "capacity": 200, "watermark": 20, "ingest_chunk": 16, **bad}
    with pytest.raises(ValueError) as err:
        Settings(**s)
    assert str(err.value).startswith(key) and "\n" not in str(err.value)
    study = {"problem": {"name": "heat"}, "surrogate": {
        "enabled": True, "batch_size": s["batch_size"], "buffer": {"capacity": s["capacity"], "watermark": s["watermark"]},
        "online": {"ingest_chunk": 16, "client_command": ""}}}
    with pytest.raises(ConfigError) as err:
        validate_settings(study, "study.yaml")
    assert str(err.value).startswith(f"study.yaml: {key}") and "\n" not in str(err.value)
    study["surrogate"]["buffer"] = {"capacity": 200, "watermark": 20}
    study["surrogate"]["batch_size"] = 16
    validate_settings(study)  # the defaults' shape passes
    study["problem"]["name"] = "thermal_block"
    with pytest.raises(ConfigError, match="expects a transient problem"):
        validate_settings(study)
