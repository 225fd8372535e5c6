"""Hostile input, backpressure and crashes end to end (CPU): a user's solver joins through
`surrogate.online.client_command` (tests/stream_solver.py); the server must drop and count every
crafted, forged or poisoned message and stay alive, keep its ledger exact through a full FIFO, a
checkpoint and a kill, bound its memory by the message size, and its clients must notice when it
dies."""
import ast
import io
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import torch
import zmq

from conftest import PYTHON, env
from rom import artefacts
from stream_solver import HOSTILE
from surrogates.cli import main as surrogates
from surrogates.streaming import protocol
from surrogates.streaming.client import Client, ServerGone
from surrogates.streaming.server import HOLD_ENV
from test_streaming import CLIENTS, STEPS, check_ledger, heat_study, online_args

HERE = Path(__file__).resolve().parent

NODES, DT = 81, 0.01  # heat_study: mesh 8 x 8, dt 0.01, STEPS steps


def solver(mode: str, steps: int = STEPS) -> str:
    return f"{PYTHON} {HERE / 'stream_solver.py'} {mode} {NODES} {steps} {DT}"


def user_study(tmp_path, mode="valid", **surrogate):
    online = {"simulations": CLIENTS, "max_running": 2, "client_timeout": 20, "client_command": solver(mode)}
    online.update(surrogate.pop("online", {}))
    return heat_study(tmp_path, online=online, **surrogate)


def test_hostile_clients_are_dropped_counted_and_survived(tmp_path):
    """Each simulation's process first sends crafted headers (deep nesting, a 400-digit number,
    v = true, a float shape, a bye with steps = 1e30), 1e300 values and times, mu outside the box,
    forged tags (also for a simulation not yet running) and a v1 message without tag; then its real
    trajectory. Every hostile message is dropped under its reason, every
    real step is booked once, the model is finite; and the four simulations ran in two processes."""
    study = user_study(tmp_path, "hostile", budget_seconds=60, budget_batches=100)
    assert surrogates(online_args(tmp_path, study)) == 0
    ds = artefacts.read(tmp_path / "h.h5")
    assert len(check_ledger(ds)) == CLIENTS * STEPS
    assert ds.attrs["samples_received"] == CLIENTS * STEPS and ds.attrs["duplicates"] == 0
    assert ast.literal_eval(ds.attrs["dropped_reasons"]) == {r: n * CLIENTS for r, n in HOSTILE.items()}
    assert ds.attrs["crashes"] == 0 and ds.attrs["client_processes"] == 2
    assert ds.attrs["batches"] == 100
    model = torch.load(tmp_path / "m.pt", weights_only=True)["state"]
    assert all(torch.isfinite(w).all() for w in model.values())
    assert not (tmp_path / "m.key").exists()  # the secret does not outlive the run


def test_diverging_training_stops_without_a_model(tmp_path, capsys):
    """lr = 1e30: after Adam's first step every weight is ~1e30 and the float32 loss overflows.
    The run stops with one line and writes neither model nor history."""
    study = user_study(tmp_path, lr=1e30, budget_seconds=60, budget_batches=200, validate_every_seconds=0.05)
    assert surrogates(online_args(tmp_path, study)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged" in err[0] and "no model saved" in err[0]
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "h.h5").exists()


def test_fifo_full_when_the_budget_ends_drains_to_the_ledger(tmp_path):
    """The budget ends after 2 batches while the FIFO is full and the clients still send: the
    receiver keeps draining the socket into the ledger, every client says bye and is done (none
    declared crashed; the silence timeout is generous, so that a loaded machine cannot make a slow
    client look crashed), and the ledger is complete."""
    study = user_study(tmp_path, budget_seconds=60, budget_batches=2, buffer={"capacity": 40, "watermark": 20},
                       online={"client_timeout": 60, "client_startup_timeout": 60})
    assert surrogates(online_args(tmp_path, study, policy="fifo")) == 0
    ds = artefacts.read(tmp_path / "h.h5")
    assert len(check_ledger(ds)) == CLIENTS * STEPS
    assert ds.attrs["crashes"] == 0 and ds.attrs["restarts"] == 0 and ds.attrs["redraws"] == 0
    assert ds.attrs["batches"] == 2 and ds["seen_count"].values.sum() == 2 * 16
    assert "connections_dropped" in ds.attrs  # counted by the receiver, recorded in the history


def held_run(tmp_path, study, *extra, policy="fifo"):
    """The server with its optimizer held after its first batch (server.HOLD_ENV) while the file
    `hold` exists; its output goes to a file."""
    hold = tmp_path / "hold"
    hold.touch()
    out = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([PYTHON, "-m", "surrogates", *online_args(tmp_path, study, *extra, policy=policy)],
                            env={**env(), HOLD_ENV: str(hold)}, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return proc, hold


def checkpoint_where(path, condition, proc, timeout=120.0):
    """The first readable checkpoint at `path` that meets `condition` (a failure timeout only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, (path.parent / "server.log").read_text()[-2000:]
        try:
            blob = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
        except Exception:  # not written yet, or rewritten while read
            blob = None
        if blob is not None and condition(blob):
            return blob
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint met the condition within {timeout:g} s")


def test_backpressure_checkpoint_and_resume_lose_no_sample(tmp_path):
    """FIFO of 40, its optimizer held after the first batch: the stream fills the buffer and the
    receiver is held back with rows pending. A checkpoint taken then books exactly what its slots,
    its pending rows and its served samples hold. The server is SIGKILLed; its clients notice and
    exit. The rerun resumes and trains every booked sample exactly once."""
    steps = 100
    study = user_study(tmp_path, budget_seconds=120, checkpoint_every_seconds=0.05,
                       buffer={"capacity": 40, "watermark": 20},
                       online={"simulations": CLIENTS, "client_command": solver("valid", steps)})
    study.write_text(study.read_text().replace(f"steps: {STEPS - 1}", f"steps: {steps - 1}"))
    proc, _ = held_run(tmp_path, study)
    try:
        checkpoint_where(tmp_path / "m.ckpt", lambda b: len(b["buffer"]["pending_key"]) > 0, proc)
    finally:
        proc.kill()
        proc.wait(10)
    # the newest checkpoint on disk, taken while held like the one seen (m.prev.ckpt where the kill fell
    # between two renames of a rotation: the rotation leaves one of the two whole at every instant)
    newest = tmp_path / "m.ckpt" if (tmp_path / "m.ckpt").exists() else tmp_path / "m.prev.ckpt"
    blob = torch.load(newest, weights_only=True)
    booked = set(np.flatnonzero(blob["ledger"].numpy().ravel()))
    b = blob["buffer"]
    slots, pending, retired = (set(b[k].numpy().tolist()) for k in ("key", "pending_key", "retired_key"))
    assert booked == slots | pending | retired and len(booked) == len(slots) + len(pending) + len(retired)
    assert len(slots) == 40 and len(pending) > 0 and len(retired) == 16  # one batch served, then held
    assert blob["trainer"]["batches"] == 1
    # The orphaned clients watch the server's pid and stop; one that had just sent its bye waits up to
    # its linger (30 s) for a delivery that cannot come: a failure timeout well beyond that.
    deadline = time.time() + 90
    while time.time() < deadline and any(_running_solvers(tmp_path)):
        time.sleep(0.2)
    assert not any(_running_solvers(tmp_path))
    assert surrogates(online_args(tmp_path, study, policy="fifo")) == 0
    ds = artefacts.read(tmp_path / "h.h5")
    assert ds.attrs["resumed_from_batch"] == 1
    pairs = np.column_stack([ds["ledger_client"].values, ds["ledger_step"].values])
    assert len(pairs) == CLIENTS * steps and len(np.unique(pairs, axis=0)) == len(pairs)
    seen = dict(zip(zip(ds["seen_client"].values, ds["seen_step"].values), ds["seen_count"].values))
    assert set(seen) == set(map(tuple, pairs)) and set(seen.values()) == {1}
    assert ds.attrs["batches"] == CLIENTS * steps // 16


def _running_solvers(tmp_path):
    """Processes whose environment carries this run's key file (the stream clients)."""
    key = str(tmp_path / "m.key").encode()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if key in (d / "environ").read_bytes():
                    yield int(d.name)
            except OSError:
                continue


SERVER = """
import json, os, sys, time
import numpy as np
from surrogates.nn import Scaling
from surrogates.streaming import protocol
from surrogates.streaming.buffers import Buffer
from surrogates.streaming.server import Ledger, Receiver, bind, receive_hwm
from surrogates.streaming.settings import Settings
n, steps = int(sys.argv[1]), 10
expect = protocol.Expect(n, np.tile([0.0, 1.0], (5, 1)), 0.1, steps)
sock, address = bind(Settings(), expect)
buf = Buffer("reservoir", 64, 6, n, watermark=1)
rx = Receiver(sock, buf, Ledger(2, steps + 1), {1: np.full(5, 0.5)}, Scaling(expect.bounds, 0.1), expect, 16,
              bytes.fromhex(os.environ["KEY"]))
rx.start()
print(json.dumps({"address": address, "bound": receive_hwm(expect, 16) * expect.message_bytes}), flush=True)


def wait(condition):
    deadline = time.time() + 60
    while not condition() and time.time() < deadline:
        time.sleep(0.02)


wait(lambda: rx.counts["accepted"] == 1)
print(json.dumps({"booked": rx.counts["accepted"]}), flush=True)
wait(lambda: 1 in rx.progress()[1])
print(json.dumps({"counts": rx.counts, "dropped": rx.dropped}), flush=True)
"""


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_frame_of_256_mb_does_not_raise_the_server_rss(tmp_path):
    """A receiver for a 32 x 32 field (1089 nodes): a 256 MB frame is refused by ZeroMQ
    (ZMQ_MAXMSGSIZE) before it is read, the connection dropped; the server's peak RSS grows by
    less than what its receive queue may legitimately hold (HWM x largest valid message, ~10 MB),
    and it still accepts the valid messages that follow."""
    key = os.urandom(32)
    server = subprocess.Popen([PYTHON, "-c", SERVER, "1089"], env={**env(), "KEY": key.hex()}, stdout=subprocess.PIPE,
                              text=True)
    try:
        info = json.loads(server.stdout.readline())
        mu, field = np.full(5, 0.5), np.zeros(1089)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 2000)
        push.connect(info["address"])
        push.send_multipart(protocol.encode_step(1, mu, 0, 0.0, field, key=key))
        # the first message booked: first-use allocations happen before the baseline
        assert json.loads(server.stdout.readline()) == {"booked": 1}
        before = _peak_rss(server.pid)
        bomb = zmq.Context.instance().socket(zmq.PUSH)
        bomb.setsockopt(zmq.LINGER, 0)
        monitor = bomb.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        bomb.connect(info["address"])
        bomb.send(np.zeros(256 << 20, np.uint8), copy=False)
        refused = monitor.poll(10_000)  # the server drops the connection at the frame's size
        after = _peak_rss(server.pid)
        bomb.disable_monitor()
        bomb.close()
        for k in range(1, 11):  # the rest of the trajectory: its bye completes it
            push.send_multipart(protocol.encode_step(1, mu, k, k * 0.01, field, key=key))
        push.send_multipart(protocol.encode_bye(1, mu, 11, key=key))
        result = json.loads(server.stdout.readline())
        push.close()
    finally:
        server.kill()
        server.wait(10)
    assert after - before < info["bound"] < 16 << 20
    assert refused and result["counts"]["accepted"] == 11 and result["dropped"] == {}


def test_client_blocked_in_send_exits_when_the_server_dies():
    """A server that stops reading: the client's queue fills and send blocks (backpressure). Once
    a send has timed out at least once (blocked for a whole poll interval, 1 s), the server is
    SIGKILLed; the blocked client notices within its poll interval and raises ServerGone instead
    of waiting forever."""
    server = subprocess.Popen([PYTHON, "-c", "import sys, time, zmq; s = zmq.Context().socket(zmq.PULL); "
                               "s.setsockopt(zmq.RCVHWM, 1); print(s.bind_to_random_port('tcp://127.0.0.1'), "
                               "flush=True); time.sleep(600)"], env=env(), stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    client = Client(f"tcp://127.0.0.1:{port}", 0, np.zeros(5), os.urandom(32), hwm=1, linger_s=0,
                    watch=(socket.gethostname(), server.pid)).connect()
    blocked, outcome, checks = threading.Event(), [], []
    check_server = client.check_server

    def check():  # called before each try of a send: a second try of the same message means it blocked
        if checks and checks[-1] == client.sent:
            blocked.set()
        checks.append(client.sent)
        check_server()

    client.check_server = check

    def stream():
        try:
            for k in range(10_000):
                client.send(k, 0.0, np.zeros(1 << 18))  # 1 MB a message
        except ServerGone as exc:
            outcome.append(exc)

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        assert blocked.wait(60) and t.is_alive() and client.sent < 10_000
        server.kill()
        server.wait(10)
        t.join(10)
    finally:
        server.kill()
        client.close()
    assert not t.is_alive() and len(outcome) == 1 and "is gone" in str(outcome[0])


def test_report_warns_when_online_is_worse_and_says_why():
    import xarray as xr

    from surrogates.streaming.report import comparison

    def run(**attrs):
        return xr.Dataset(attrs=attrs)

    off = run(mode="offline", distinct_simulations=16, batches=900)
    hist = {"online_reservoir": run(mode="online", distinct_simulations=10, batches=600, simulations_received=10,
                                    simulations_planned=24, dropped=0), "offline": off}
    warning = comparison({"online_reservoir": 0.132, "offline": 0.058}, hist)
    assert warning.startswith("Warning: the online model (online_reservoir, test error 0.132) is worse")
    assert "only 10 of 24 streamed simulations arrived" in warning and "10 distinct simulations, offline on 16" in warning
    assert "600 batches against 900" in warning
    assert comparison({"online_reservoir": 0.047, "offline": 0.056}, hist) is None
