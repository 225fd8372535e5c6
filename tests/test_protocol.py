"""Wire format: round trips, and malformed or foreign messages rejected, counted, survived."""
import json
import os
import time

import numpy as np
import pytest
import zmq

from surrogates.nn import Scaling
from surrogates.streaming import protocol
from surrogates.streaming.buffers import Buffer
from surrogates.streaming.server import Ledger, Receiver, Settings, bind

N, D, STEPS = 25, 5, 10
MU = np.linspace(0.1, 0.5, D)
KEY = bytes(range(32))
BOX = np.tile([0.0, 1.0], (D, 1))
EXPECT = protocol.Expect(N, BOX, STEPS * 0.01, STEPS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip(dtype):
    u = np.random.default_rng(0).random(N).astype(dtype)
    msg = protocol.decode(protocol.encode_step(3, MU, 7, 0.07, u, key=KEY), EXPECT, key=KEY)
    assert (msg.kind, msg.client, msg.step, msg.time) == ("step", 3, 7, 0.07)
    assert msg.field.dtype == dtype and np.array_equal(msg.field, u)
    assert np.array_equal(msg.mu, MU)
    bye = protocol.decode(protocol.encode_bye(3, MU, 11, key=KEY), EXPECT, key=KEY)
    assert (bye.kind, bye.steps) == ("bye", 11)


def signed(header: bytes, payload: bytes = b"", key: bytes = KEY) -> list[bytes]:
    """What a sender holding the secret can craft: any header and payload, correctly tagged."""
    return [header, payload, protocol.sign(key, header, payload)]


def _frames(**change):
    header, payload, _ = protocol.encode_step(1, MU, 2, 0.02, np.ones(N, np.float32), key=KEY)
    h = json.loads(header)
    payload = change.pop("payload", payload)
    h.update(change)
    return signed(json.dumps(h).encode(), payload)


BAD = {
    "truncated": _frames(payload=np.ones(N - 1, np.float32).tobytes()),
    "bad_dtype": _frames(dtype="int32"),
    "oversized": _frames(payload=np.ones(N + 1, np.float32).tobytes()),
    # the HMAC tag replaced the crc32 checksum: a payload changed in transit no longer matches
    "unauthenticated": _frames()[:2] + [protocol.sign(KEY, b"other", b"")],
    "bad_shape": _frames(shape=[N, 1]),
    "bad_header": signed(b"\xff not json"),
    "bad_frames": [b"{}"],
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_malformed_rejected(reason):
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(BAD[reason], EXPECT, key=KEY)
    assert err.value.reason == reason


def send_steps(push, client, steps, mu=MU):
    """A client's valid steps k at time k x dt (field filled with k)."""
    for k in steps:
        push.send_multipart(protocol.encode_step(client, mu, k, k * EXPECT.dt, np.full(N, float(k)), key=KEY))


def wait_for(condition, timeout=60.0):
    """A failure timeout only: the condition is what the test waits for."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_server_counts_and_survives_bad_messages():
    """A live receiver: every malformed or foreign message is dropped and counted by reason, and
    the valid messages around them are still accepted exactly once."""
    sock, address = bind(Settings(port=0), EXPECT)
    assert address.startswith("tcp://127.0.0.1:")
    buf = Buffer("fifo", 64, D + 1, N, watermark=1)
    known = {1: MU}
    rx = Receiver(sock, buf, Ledger(4, STEPS + 1), known, Scaling(BOX, 0.1), EXPECT, 4, KEY)
    rx.start()
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(address)
    try:
        push.send_multipart(protocol.encode_step(1, MU, 0, 0.0, np.zeros(N), key=KEY))
        for frames in BAD.values():
            push.send_multipart(frames)
        push.send_multipart(protocol.encode_step(2, MU, 0, 0.0, np.zeros(N), key=KEY))  # unknown client id
        push.send_multipart(protocol.encode_step(1, MU + 0.5, 1, 0.01, np.zeros(N), key=KEY))  # known id, foreign mu
        push.send_multipart(protocol.encode_step(1, MU, 1, 0.01, np.ones(N), key=KEY))
        push.send_multipart(protocol.encode_step(1, MU, 1, 0.01, np.ones(N), key=KEY))  # duplicate step
        send_steps(push, 1, range(2, STEPS + 1))
        push.send_multipart(protocol.encode_bye(1, MU, STEPS + 2, key=KEY))
        wait_for(lambda: rx.counts["messages"] == len(BAD) + STEPS + 5)
    finally:
        rx.stop_event.set()
        rx.join(5)
        push.close()
        sock.close(0)
    assert rx.error is None and not rx.is_alive()
    assert rx.counts["messages"] == len(BAD) + STEPS + 5
    assert rx.counts["accepted"] == STEPS + 1 and rx.counts["duplicates"] == 1
    assert rx.dropped == {**{r: 1 for r in BAD}, "unknown_client": 2}
    assert rx.finished == {1}
    keys = 1 * (STEPS + 1) + np.arange(STEPS + 1)  # client * (steps + 1) + step
    assert buf.size == STEPS + 1 and np.array_equal(np.sort(buf.key[:STEPS + 1]), keys)


# -- hostile input (issue 14) -------------------------------------------------------------------
def _header(**change) -> dict:
    h = json.loads(protocol.encode_step(1, MU, 2, 0.02, np.ones(N, np.float32), key=KEY)[0])
    h.update(change)
    return h


WIDE = protocol.Expect(N, np.tile([0.0, 1.0], (200, 1)), STEPS * 0.01, STEPS)  # a 6.9 kB header limit
CRAFTED = {  # what a sender holding the secret (a broken solver) could send: reason -> (expect, header, payload)
    "nested 3000 deep": ("too_deep", WIDE, b'{"v":2,"mu":' + b"[" * 3000 + b"]" * 3000 + b"}"),
    "nested 3 deep": ("too_deep", EXPECT, json.dumps(_header(mu=[[[0.1]]] + list(MU[1:]))).encode()),
    "closed before opened": ("too_deep", EXPECT, b'{"a":"]]]]","mu":' + b"[" * 3 + b"]" * 3 + b"}"),
    "400-digit mu": ("bad_number", EXPECT, json.dumps(_header()).replace("0.1,", "1" * 400 + ",", 1).encode()),
    "400-digit time": ("bad_number", EXPECT, json.dumps(_header(time=7)).replace(": 7,", ": " + "7" * 400 + ",").encode()),
    "NaN literal": ("bad_number", EXPECT, json.dumps(_header(time=float("nan"))).encode()),
    "v true": ("bad_header", EXPECT, json.dumps(_header(v=True)).encode()),
    "client true": ("bad_header", EXPECT, json.dumps(_header(client=True)).encode()),
    "mu of booleans": ("bad_header", EXPECT, json.dumps(_header(mu=[True] * D)).encode()),
    "float shape": ("bad_shape", EXPECT, json.dumps(_header(shape=[float(N)])).encode()),
    "bool nbytes": ("truncated", EXPECT, json.dumps(_header(nbytes=True)).encode()),
    "step 1e30": ("bad_step", EXPECT, json.dumps(_header(step=1e30)).encode()),
    "step true": ("bad_step", EXPECT, json.dumps(_header(step=True)).encode()),
    "step past the horizon": ("bad_step", EXPECT, json.dumps(_header(step=STEPS + 1)).encode()),
    "time 1e300": ("bad_time", EXPECT, json.dumps(_header(time=1e300)).encode()),
    "time 1e400 (inf)": ("bad_time", EXPECT, json.dumps(_header()).replace('"time": 0.02', '"time": 1e400').encode()),
    "time before 0": ("bad_time", EXPECT, json.dumps(_header(time=-1e-3)).encode()),
    "mu outside the box": ("bad_mu", EXPECT, json.dumps(_header(mu=[1.5] + list(MU[1:]))).encode()),
    "mu 1e300": ("bad_mu", EXPECT, json.dumps(_header(mu=[1e300] + list(MU[1:]))).encode()),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_header_rejected_with_its_reason(case):
    reason, expect, raw = CRAFTED[case]
    payload = np.ones(expect.field_size, np.float32).tobytes()
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(signed(raw, payload), expect, key=KEY)
    assert err.value.reason == reason
    # the same bytes without the secret never reach the parser
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(signed(raw, payload, key=bytes(32)), expect, key=KEY)
    assert err.value.reason == "unauthenticated"


def test_bye_with_steps_1e30_rejected():
    raw = json.dumps({"v": 2, "kind": "bye", "client": 1, "mu": list(MU), "steps": 1e30}).encode()
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(signed(raw), EXPECT, key=KEY)
    assert err.value.reason == "bad_steps"


def test_values_checked_after_the_cast_to_float32():
    """1e300 is finite in float64 and inf in float32; 2e19 is finite in float32 but its square is
    not; 1e19 and the edges of the box and of the horizon (within their slack) are accepted."""
    def step(field, t=0.02, mu=MU):
        return protocol.encode_step(1, mu, 2, t, field, key=KEY)

    for bad in (np.full(N, 1e300), np.full(N, 2e19, np.float32), np.full(N, -np.inf)):
        with pytest.raises(protocol.ProtocolError) as err:
            protocol.decode(step(bad), EXPECT, key=KEY)
        assert err.value.reason == "bad_values"
    assert protocol.decode(step(np.full(N, 1e19)), EXPECT, key=KEY).field.max() == 1e19
    horizon = EXPECT.horizon * (1 + 0.5 * protocol.TIME_SLACK)
    last = protocol.encode_step(1, np.r_[1.0, MU[1:] * 0], STEPS, horizon, np.ones(N), key=KEY)
    assert protocol.decode(last, EXPECT, key=KEY).time == horizon


def _random_value(rng, depth=0):
    kind = rng.integers(10 if depth < 3 else 7)
    return [lambda: int(rng.integers(-5, 30)), lambda: float(rng.choice([0.5, -1.0, 1e300, 1e-320, 2.0 ** 60])),
            lambda: bool(rng.integers(2)), lambda: None, lambda: str(rng.choice(["step", "bye", "float32", ""])),
            lambda: int(rng.integers(1, 10)) * 10 ** int(rng.integers(1, 40)),
            lambda: float(rng.standard_normal()),
            lambda: [_random_value(rng, depth + 1) for _ in range(rng.integers(0, 6))],
            lambda: {str(rng.integers(3)): _random_value(rng, depth + 1)},
            lambda: list(rng.random(int(rng.integers(0, 7))))][kind]()


def test_fuzzed_messages_raise_only_protocol_errors():
    """3000 random messages: valid headers with random keys replaced by random JSON values (nested,
    huge, boolean, non-finite), random byte corruption and truncation, random payload lengths and
    frame counts; most tagged with the secret so that they reach the parser. decode raises nothing
    but ProtocolError (and never through its catch-all), and whatever it accepts is in range."""
    rng = np.random.default_rng(14)
    keys = ["v", "kind", "client", "mu", "step", "time", "shape", "dtype", "nbytes", "steps"]
    accepted = 0
    for _ in range(3000):
        h = _header() if rng.random() < 0.8 else {"v": 2, "kind": "bye", "client": 1, "mu": list(MU), "steps": 3}
        for k in rng.choice(keys, size=rng.integers(0, 3), replace=False):
            h[str(k)] = _random_value(rng)
        raw = json.dumps(h, allow_nan=True).encode()
        if rng.random() < 0.2:  # byte-level damage
            b = bytearray(raw)
            for j in rng.integers(0, len(b), size=rng.integers(1, 4)):
                b[j] = int(rng.integers(256))
            raw = bytes(b[: rng.integers(1, len(b) + 1)])
        dtype = rng.choice([np.float32, np.float64])
        payload = rng.standard_normal(int(rng.choice([N, N - 1, N + 1, 0]))).astype(dtype).tobytes()
        frames = signed(raw, payload, KEY if rng.random() < 0.9 else bytes(32))
        frames = frames[: rng.choice([3, 3, 3, 2, 1])] + [b""] * int(rng.random() < 0.02)
        try:
            m = protocol.decode(frames, EXPECT, key=KEY)
        except protocol.ProtocolError as exc:
            assert exc.reason in protocol.REASONS and exc.reason != "unexpected", (exc, raw)
            continue
        accepted += 1
        assert m.kind in ("step", "bye") and type(m.client) is int and m.client >= 0
        assert np.all(m.mu >= 0) and np.all(m.mu <= 1) and len(m.mu) == D
        if m.kind == "step":
            assert 0 <= m.step <= STEPS and 0 <= m.time <= EXPECT.horizon * (1 + protocol.TIME_SLACK)
            f = m.field.astype(np.float32)
            assert f.shape == (N,) and np.isfinite(f).all() and np.abs(f).max() <= protocol.VALUE_LIMIT
        else:
            assert 0 <= m.steps <= 2 ** 62
    assert 100 < accepted < 3000  # the generator also makes valid messages: both paths ran


def test_receiver_survives_crafted_forged_and_raw_garbage():
    """A live receiver: crafted headers with the secret, the same without it, forged steps for a
    registered client, 10 kB of raw TCP garbage (ZeroMQ may read some of it as frames: they are
    dropped as bad frames or unauthenticated) and the real steps around them."""
    import socket

    sock, address = bind(Settings(port=0), EXPECT)
    buf = Buffer("fifo", 64, D + 1, N, watermark=1)
    rx = Receiver(sock, buf, Ledger(4, STEPS + 1), {1: MU, 2: MU}, Scaling(BOX, 0.1), EXPECT, 4, KEY)
    rx.start()
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(address)
    crafted = [v for v in CRAFTED.values() if v[1] is EXPECT]
    try:
        push.send_multipart(protocol.encode_step(1, MU, 0, 0.0, np.zeros(N), key=KEY))
        for _, _, raw in crafted:
            push.send_multipart(signed(raw, np.ones(N, np.float32).tobytes()))
            push.send_multipart(signed(raw, np.ones(N, np.float32).tobytes(), key=bytes(32)))
        push.send_multipart(protocol.encode_step(2, MU, 0, 0.0, np.zeros(N), key=os.urandom(32)))  # forged
        with socket.create_connection(address[len("tcp://"):].split(":")) as raw:
            raw.sendall(np.random.default_rng(1).bytes(10_000))
        send_steps(push, 1, range(1, STEPS + 1))
        push.send_multipart(protocol.encode_bye(1, MU, STEPS + 1, key=KEY))
        push.send_multipart(protocol.encode_step(2, MU, 0, 0.0, np.ones(N), key=KEY))  # the real step
        push.send_multipart(protocol.encode_bye(2, MU, 1, key=KEY))  # the last message: everything before is read
        wait_for(lambda: rx.dropped.get("incomplete_bye"))
    finally:
        rx.stop()
        push.close()
        sock.close(0)
    assert rx.error is None and rx.finished == {1}
    assert rx.counts["accepted"] == STEPS + 2 and rx.counts["duplicates"] == 0
    keys = np.r_[1 * (STEPS + 1) + np.arange(STEPS + 1), 2 * (STEPS + 1)]
    assert np.array_equal(np.sort(buf.key[:STEPS + 2]), keys)
    garbage = {k: v for k, v in rx.dropped.items() if k not in ("bad_frames", "unauthenticated")}
    expected = {}
    for reason, _, _ in crafted:
        expected[reason] = expected.get(reason, 0) + 1
    assert garbage == {**expected, "incomplete_bye": 1}  # client 2 sent one step of STEPS + 1
    assert rx.dropped.get("unauthenticated", 0) >= len(crafted) + 1


def test_snapshot_under_backpressure_books_only_what_the_buffer_holds():
    """A full FIFO holds the receiver back (nobody trains): at any moment a snapshot books exactly
    the samples in its slots and its pending rows. Restored into a fresh receiver and drained, each
    booked sample is served exactly once."""
    expect = EXPECT
    sock, address = bind(Settings(port=0, capacity=36, watermark=20, batch_size=16, ingest_chunk=4), expect)
    buf = Buffer("fifo", 36, D + 1, N, watermark=20)
    rx = Receiver(sock, buf, Ledger(8, STEPS + 1), {c: MU for c in range(8)}, Scaling(BOX, 0.1), expect, 4, KEY)
    rx.start()
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(address)
    try:
        for c in range(5):
            for k in range(STEPS + 1):
                push.send_multipart(protocol.encode_step(c, MU, k, 0.01 * k, np.full(N, c * 100 + k), key=KEY))
        wait_for(lambda: buf.producer_waiting)  # nobody trains: the receiver stays held back from here on
        snap = rx.snapshot()
    finally:
        rx.stop()
        push.close()
        sock.close(0)
    booked = set(np.flatnonzero(snap["ledger"].numpy().ravel()))
    b = snap["buffer"]
    held = b["key"].numpy().tolist() + b["pending_key"].numpy().tolist()
    assert len(b["key"]) == 36 and len(b["pending_key"]) > 0
    assert booked == set(held) and len(held) == len(booked) == snap["counts"]["accepted"]
    fresh = Buffer("fifo", 36, D + 1, N, watermark=20)
    rx2 = Receiver(None, fresh, Ledger(8, STEPS + 1), {}, Scaling(BOX, 0.1), expect, 4, KEY)
    rx2.restore(snap)
    fresh.close()
    served = []
    while not fresh.empty:
        x, y, keys = fresh.get(16, timeout=0.0)
        assert np.array_equal(y[:, 0].numpy(), (keys // (STEPS + 1)) * 100 + keys % (STEPS + 1))
        served += keys.tolist()
    assert sorted(served) == sorted(booked) and len(served) == len(set(served))
