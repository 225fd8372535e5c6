"""A user's solver for `surrogate.online.client_command` (tests): streams a closed-form field
u(x, t) = T_init exp(-t) + (mean of the side temperatures) (1 - exp(-t)) at every node through the
client API. `python stream_solver.py MODE NODES STEPS DT`, MODE:
  valid    the trajectory only;
  hostile  first, for each simulation, every message an attacker or a broken solver could send
           (crafted headers tagged with the secret, forged tags, a v1 message, 1e300 values and
           times, mu outside the box), then the valid trajectory.
HOSTILE lists the reasons the server must count for each simulation."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import zmq

from surrogates.streaming import protocol
from surrogates.streaming.client import Assignment

HOSTILE = {"too_deep": 1, "bad_number": 1, "bad_header": 1, "bad_shape": 1, "bad_steps": 1, "bad_values": 1,
           "bad_time": 1, "bad_mu": 1, "unauthenticated": 2, "bad_frames": 1}


def field(mu, t, nodes):
    return np.full(nodes, mu[0] * np.exp(-t) + np.mean(mu[1:]) * (1 - np.exp(-t)))


def hostile(job: Assignment, client, nodes: int, dt: float):
    key, cid, mu = job.key, client.client_id, client.mu
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(client.address)
    header, payload, _ = protocol.encode_step(cid, mu, 1, dt, field(mu, dt, nodes), key=key)
    h = json.loads(header)

    def signed(raw: bytes, data: bytes = payload):
        return [raw, data, protocol.sign(key, raw, data)]

    def changed(**kw):
        return signed(json.dumps({**h, **kw}).encode())

    deep = b'{"v":2,"kind":"step","client":%d,"x":' % cid + b"[" * 40 + b"]" * 40 + b"}"
    huge = json.dumps(h).replace(json.dumps(h["mu"][0]), "1" * 400, 1).encode()
    f64 = np.full(nodes, 1e300).tobytes()
    out = [signed(deep), signed(huge), changed(v=True), changed(shape=[float(nodes)]),
           signed(json.dumps({"v": 2, "kind": "bye", "client": cid, "mu": h["mu"], "steps": 1e30}).encode(), b""),
           signed(json.dumps({**h, "dtype": "float64", "nbytes": len(f64)}).encode(), f64),
           changed(time=1e300), changed(mu=[h["mu"][0] + 10.0] + h["mu"][1:]),
           protocol.encode_step(cid, mu, 1, dt, field(mu, dt, nodes), key=bytes(32)),  # forged: no secret
           # forged steps for the next simulation, not yet running
           protocol.encode_step(cid + 1, mu, 0, 0.0, field(mu, 0.0, nodes), key=os.urandom(32)),
           [header, payload]]  # protocol v1: no tag
    for frames in out:
        push.send_multipart(frames)
    push.close()


def main():
    mode, nodes, steps, dt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    job = Assignment.from_environment()
    for client in job.clients():
        if mode == "hostile":
            hostile(job, client, nodes, dt)
        for k in range(steps):
            client.send(k, k * dt, field(client.mu, k * dt, nodes))
        client.finish()


if __name__ == "__main__":
    main()
