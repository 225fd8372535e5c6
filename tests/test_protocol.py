"""Wire format: round trips, and malformed or foreign messages rejected, counted, survived."""
import json
import time
import zlib

import numpy as np
import pytest
import zmq

from surrogates.nn import Scaling
from surrogates.streaming import protocol
from surrogates.streaming.buffers import Buffer
from surrogates.streaming.server import Ledger, Receiver, Settings, bind

N, D, STEPS = 25, 5, 10
MU = np.linspace(0.1, 0.5, D)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip(dtype):
    u = np.random.default_rng(0).random(N).astype(dtype)
    msg = protocol.decode(protocol.encode_step(3, MU, 7, 0.07, u), N, D, STEPS)
    assert (msg.kind, msg.client, msg.step, msg.time) == ("step", 3, 7, 0.07)
    assert msg.field.dtype == dtype and np.array_equal(msg.field, u)
    assert np.array_equal(msg.mu, MU)
    bye = protocol.decode(protocol.encode_bye(3, MU, 11), N, D, STEPS)
    assert (bye.kind, bye.steps) == ("bye", 11)


def _frames(**change):
    header, payload = protocol.encode_step(1, MU, 2, 0.02, np.ones(N, np.float32))
    h = json.loads(header)
    payload = change.pop("payload", payload)
    h.update(change)
    return [json.dumps(h).encode(), payload]


BAD = {
    "truncated": _frames(payload=np.ones(N - 1, np.float32).tobytes()),
    "bad_dtype": _frames(dtype="int32"),
    "oversized": _frames(payload=np.ones(N + 1, np.float32).tobytes()),
    "bad_checksum": _frames(crc32=zlib.crc32(b"other")),
    "bad_shape": _frames(shape=[N, 1]),
    "bad_header": [b"\xff not json", b""],
    "bad_frames": [b"{}"],
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_malformed_rejected(reason):
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode(BAD[reason], N, D, STEPS)
    assert err.value.reason == reason


def test_server_counts_and_survives_bad_messages():
    """A live receiver: every malformed or foreign message is dropped and counted by reason, and
    the valid messages around them are still accepted exactly once."""
    sock, address = bind(Settings(port=0))
    assert address.startswith("tcp://127.0.0.1:")
    buf = Buffer("fifo", 64, D + 1, N, watermark=1)
    known = {1: MU}
    rx = Receiver(sock, buf, Ledger(4, STEPS + 1), known, Scaling(np.tile([0.0, 1.0], (D, 1)), 0.1), N, D, STEPS, 4)
    rx.start()
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(address)
    try:
        push.send_multipart(protocol.encode_step(1, MU, 0, 0.0, np.zeros(N)))
        for frames in BAD.values():
            push.send_multipart(frames)
        push.send_multipart(protocol.encode_step(2, MU, 0, 0.0, np.zeros(N)))  # unknown client id
        push.send_multipart(protocol.encode_step(1, MU + 1, 1, 0.0, np.zeros(N)))  # known id, foreign mu
        push.send_multipart(protocol.encode_step(1, MU, 1, 0.01, np.ones(N)))
        push.send_multipart(protocol.encode_step(1, MU, 1, 0.01, np.ones(N)))  # duplicate step
        push.send_multipart(protocol.encode_bye(1, MU, 2))
        deadline = time.time() + 10
        while rx.counts["messages"] < len(BAD) + 6 and time.time() < deadline:
            time.sleep(0.02)
    finally:
        rx.stop_event.set()
        rx.join(5)
        push.close()
        sock.close(0)
    assert rx.error is None and not rx.is_alive()
    assert rx.counts["messages"] == len(BAD) + 6
    assert rx.counts["accepted"] == 2 and rx.counts["duplicates"] == 1
    assert rx.dropped == {**{r: 1 for r in BAD}, "unknown_client": 2}
    assert rx.finished == {1}
    assert buf.size == 2 and sorted(buf.key[:2]) == [1 * (STEPS + 1), 1 * (STEPS + 1) + 1]  # client * (steps + 1) + step
