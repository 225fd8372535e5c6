"""Defects found by a hostile-client check, each driven against a live receiver or a live run:
client ids beyond the launcher's, a flood of plain TCP connections, a bye that is not the whole
trajectory, a step past the horizon, a time that is not step x dt, a checkpoint rotation killed
half-way, an oversized frame with messages queued behind it, and client starts with the
descriptors nearly gone."""
import contextlib
import os
import resource
import socket
import stat
import subprocess

import numpy as np
import pytest
import torch
import zmq

from conftest import PYTHON, env
from surrogates.nn import Scaling
from surrogates.streaming import launcher, protocol
from surrogates.streaming.buffers import Buffer
from surrogates.streaming.server import HOLD_ENV, CheckpointFiles, Ledger, Receiver, Settings, bind
from test_protocol import BOX, EXPECT, KEY, MU, STEPS, D, N, send_steps, wait_for
from test_streaming import online_args
from test_streaming_faults import user_study


@contextlib.contextmanager
def live_receiver(clients: int = 4):
    """A receiver on a loopback socket knowing clients 0..clients-1 (the ledger's rows), and a
    PUSH socket connected to it."""
    sock, address = bind(Settings(port=0), EXPECT)
    buf = Buffer("fifo", 64, D + 1, N, watermark=1)
    rx = Receiver(sock, buf, Ledger(clients, STEPS + 1), {c: MU for c in range(clients)}, Scaling(BOX, 0.1),
                  EXPECT, 4, KEY)
    rx.start()
    push = connect(address)
    try:
        yield rx, push, address
    finally:
        rx.stop()
        push.close(0)
        sock.close(0)


def connect(address: str) -> zmq.Socket:
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(address)
    return push


def bye(push, client: int, steps: int):
    push.send_multipart(protocol.encode_bye(client, MU, steps, key=KEY))


def test_client_id_beyond_the_launchers_is_dropped_before_any_key_is_built():
    """Correctly signed steps from client 2**62 (the decoder's limit), 10**18 and 4 (one past the
    ledger): client * (steps + 1) + step no longer fits int64 for the first two. All three are
    dropped and counted as unknown clients, and the receiver goes on with the valid client."""
    with live_receiver() as (rx, push, _):
        for cid in (2 ** 62, 10 ** 18, 4):
            push.send_multipart(protocol.encode_step(cid, MU, 3, 3 * EXPECT.dt, np.ones(N), key=KEY))
        send_steps(push, 1, range(STEPS + 1))
        bye(push, 1, STEPS + 1)
        wait_for(lambda: 1 in rx.finished or rx.error is not None)
    assert rx.error is None
    assert rx.dropped == {"unknown_client": 3} and rx.counts["accepted"] == STEPS + 1


def test_bye_before_every_step_arrived_leaves_the_simulation_incomplete():
    """Half the trajectory, then a bye that says so: not done, dropped as incomplete_bye with a
    warning. The restart resends the whole trajectory (duplicates) and its bye completes it."""
    half = (STEPS + 1) // 2
    with live_receiver() as (rx, push, address):
        send_steps(push, 1, range(half))
        bye(push, 1, half)
        wait_for(lambda: rx.counts["messages"] == half + 1)
        assert rx.finished == set() and rx.dropped == {"incomplete_bye": 1}
        assert rx.warnings == [f"client 1 said bye after {half} steps but {STEPS + 1 - half} of {STEPS + 1} never "
                               f"arrived (first: step {half}): not done"]
        restart = connect(address)
        send_steps(restart, 1, range(STEPS + 1))
        bye(restart, 1, STEPS + 1)
        wait_for(lambda: 1 in rx.finished)
        restart.close()
    assert rx.counts["accepted"] == STEPS + 1 and rx.counts["duplicates"] == half


def test_step_past_the_horizon_is_dropped_alone():
    """A solver that runs one step too far: that step is dropped (bad_step); its bye, counting it,
    still completes the simulation, whose every step is in the ledger."""
    with live_receiver() as (rx, push, _):
        for k in range(STEPS + 2):
            push.send_multipart(protocol.encode_step(1, MU, k, min(k * EXPECT.dt, EXPECT.horizon), np.ones(N),
                                                     key=KEY))
        bye(push, 1, STEPS + 2)
        wait_for(lambda: rx.counts["messages"] == STEPS + 3)
    assert rx.dropped == {"bad_step": 1} and rx.finished == {1}
    assert rx.counts["accepted"] == STEPS + 1


def test_time_that_is_not_step_times_dt_is_dropped():
    """Step 3 stamped with the time of step 7 is dropped (bad_time) and the correct step 3 that
    follows is booked, not counted as its duplicate; a time off by less than TIME_SLACK passes."""
    with live_receiver() as (rx, push, _):
        push.send_multipart(protocol.encode_step(1, MU, 3, 7 * EXPECT.dt, np.ones(N), key=KEY))
        rounded = 4 * EXPECT.dt * (1 + 0.1 * protocol.TIME_SLACK)
        push.send_multipart(protocol.encode_step(1, MU, 4, rounded, np.ones(N), key=KEY))
        send_steps(push, 1, [k for k in range(STEPS + 1) if k != 4])
        bye(push, 1, STEPS + 2)
        wait_for(lambda: 1 in rx.finished)
    assert rx.dropped == {"bad_time": 1}
    assert rx.counts["accepted"] == STEPS + 1 and rx.counts["duplicates"] == 0


def test_steps_lost_behind_an_oversized_frame_are_resent_by_the_restart():
    """ZeroMQ drops the connection at a frame above ZMQ_MAXMSGSIZE, and what the client had queued
    behind it on that connection with it (it cannot skip a frame it will not read; the PUSH socket
    reconnects and sends what it still holds). Whatever got through, the simulation is done only
    if every step is in the ledger; the restart (a new connection resending the trajectory)
    completes it, each step booked once."""
    with live_receiver() as (rx, push, address):
        send_steps(push, 1, range(3))
        push.send(np.zeros(EXPECT.frame_bytes + 1, np.uint8))
        send_steps(push, 1, range(3, STEPS + 1))
        bye(push, 1, STEPS + 1)
        wait_for(lambda: rx.counts["accepted"] >= 3)
        assert 1 not in rx.finished or len(rx.ledger.missing(1)) == 0  # done only if nothing was lost
        restart = connect(address)
        send_steps(restart, 1, range(STEPS + 1))
        bye(restart, 1, STEPS + 1)
        wait_for(lambda: 1 in rx.finished)
        restart.close()
        wait_for(lambda: rx.counts["connections_dropped"] >= 1)  # the connection dropped at the frame
    assert rx.counts["accepted"] == STEPS + 1 and len(rx.ledger.missing(1)) == 0
    assert rx.error is None and set(rx.dropped) <= {"incomplete_bye"}
    assert rx.counts["connections_dropped"] >= 1  # counted as a connection, not as a dropped message


def test_only_connections_closed_before_a_bye_are_counted():
    """Three clients that say bye and close, and a plain TCP peer that never completes the ZeroMQ
    greeting: none counted. A client that closes after two steps: counted once, with a warning.
    The receiver goes on meanwhile."""
    with live_receiver() as (rx, push, address):
        for cid in (1, 2, 3):
            client = connect(address)
            send_steps(client, cid, range(STEPS + 1))
            bye(client, cid, STEPS + 1)
            client.close()
        wait_for(lambda: rx.finished == {1, 2, 3})
        with socket.create_connection(address[len("tcp://"):].split(":")):
            pass  # closed before the greeting: a failed handshake
        early = connect(address)
        send_steps(early, 0, range(2))
        early.close()
        wait_for(lambda: rx.counts["connections_dropped"] >= 1)
        send_steps(push, 0, range(STEPS + 1))
        bye(push, 0, STEPS + 1)
        wait_for(lambda: 0 in rx.finished)
    assert rx.error is None and rx.counts["connections_dropped"] == 1
    assert rx.dropped == {} and len(rx.warnings) == 1 and "before any bye" in rx.warnings[0]


def test_monitor_events_never_block_zeromq_while_the_receiver_is_held():
    """A full buffer holds the receive loop in put while 1500 connections come and go (more
    events than a monitor queue of the default high-water mark holds): ZeroMQ's I/O thread is
    never blocked, and once the buffer is drained the receiver books the rest and stops promptly."""
    sock, address = bind(Settings(port=0), EXPECT)
    buf = Buffer("fifo", 2, D + 1, N, watermark=1)
    rx = Receiver(sock, buf, Ledger(4, STEPS + 1), {c: MU for c in range(4)}, Scaling(BOX, 0.1), EXPECT, 1, KEY)
    rx.start()
    push = connect(address)
    try:
        send_steps(push, 1, range(4))
        wait_for(lambda: buf.producer_waiting)
        host, port = address[len("tcp://"):].split(":")
        for _ in range(1500):
            socket.create_connection((host, int(port))).close()
        probe = zmq.Context.instance().socket(zmq.PUSH)  # a new peer is still accepted and handshaken
        monitor = probe.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        probe.connect(address)
        assert monitor.poll(10_000)
        probe.disable_monitor()
        monitor.close(0)
        probe.close(0)
        while buf.size or buf.producer_waiting:
            buf.get(1, timeout=1.0)
        wait_for(lambda: rx.counts["accepted"] == 4)
    finally:
        rx.stop()
        push.close(0)
        sock.close(0)
    assert rx.error is None and not rx.is_alive()


# -- checkpoints ------------------------------------------------------------------------------
def test_rotation_killed_at_any_rename_leaves_a_whole_generation(tmp_path, monkeypatch):
    """Three generations written, each fsynced, file then directory. The fourth is interrupted (as
    by a kill) after each number of its renames in turn: the third generation is still whole at
    path or prev, and a fresh start removes the temporary the interrupted write left."""
    path, prev = tmp_path / "m.ckpt", tmp_path / "m.prev.ckpt"
    synced = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), fsync(fd)))
    files = CheckpointFiles(path)
    for gen in range(3):
        files.write({"gen": gen})
    assert synced == [False, True] * 3
    replace = os.replace
    for cut in range(3):
        done = []

        def killed(src, dst, cut=cut, done=done):
            if len(done) == cut:
                raise KeyboardInterrupt
            done.append(src)
            replace(src, dst)

        monkeypatch.setattr(os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            CheckpointFiles(path).write({"gen": 3})
        monkeypatch.setattr(os, "replace", replace)
        files = CheckpointFiles(path)
        whole = [torch.load(p, weights_only=True)["gen"] for p in (path, prev) if p.exists()]
        assert 2 in whole
        # what is left besides path and prev: the spares this start opened, nothing older
        assert len(list(tmp_path.glob(".m.ckpt.new*"))) == 2 - len(whole)
        files.write({"gen": 2})


# -- a flood of connections ---------------------------------------------------------------------
DESCRIPTORS = 256  # the run's RLIMIT_NOFILE, soft and hard: raising the soft limit cannot help


def test_flood_of_plain_connections_cannot_fail_the_run(tmp_path):
    """The run under RLIMIT_NOFILE 256 (soft and hard), its optimizer held after the first batch
    (server.HOLD_ENV). The test opens plain TCP connections (no ZeroMQ greeting, no key) to its
    socket on 127.0.0.1 until the server holds every descriptor it may have; two checkpoints are
    written after that, through the files opened at the start. Released, the run ends while the
    flood still holds its connections, exits 0 and writes its model and history; a stray temporary
    of an earlier killed run is gone."""
    study = user_study(tmp_path, budget_seconds=120, budget_batches=50, checkpoint_every_seconds=0.2)
    stray = tmp_path / ".m.ckpt.new-12345"
    stray.write_bytes(b"torn")
    hold, ckpt = tmp_path / "hold", tmp_path / "m.ckpt"
    hold.touch()

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))

    proc = subprocess.Popen([PYTHON, "-m", "surrogates", *online_args(tmp_path, study)],
                            env={**env(), HOLD_ENV: str(hold)}, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=limit)
    flood, log = [], []

    def generation():
        st = ckpt.stat()
        return st.st_ino, st.st_mtime_ns

    try:
        for line in proc.stdout:
            log.append(line)
            if "listening on tcp://" in line:
                host, port = line.split("listening on tcp://")[1].split(";")[0].rsplit(":", 1)
            if "training starts" in line:
                break
        assert "training starts" in log[-1], "".join(log)
        held = lambda: len(os.listdir(f"/proc/{proc.pid}/fd"))  # noqa: E731
        wait_for(ckpt.exists)
        while held() < DESCRIPTORS:
            assert proc.poll() is None and len(flood) < 4 * DESCRIPTORS, "".join(log)
            with contextlib.suppress(OSError):  # a SYN dropped while ZeroMQ catches up: retried
                flood.append(socket.create_connection((host, int(port)), timeout=5))
        seen = [generation()]
        wait_for(lambda: seen.append(generation()) or len(set(seen)) >= 3)  # two checkpoints since
        hold.unlink()
        log += proc.stdout.readlines()
        proc.wait(120)
    finally:
        proc.kill()
        for s in flood:
            s.close()
    out = "".join(log)
    assert proc.returncode == 0, out[-3000:]
    assert (tmp_path / "m.pt").is_file() and (tmp_path / "h.h5").is_file()
    assert not stray.exists() and not list(tmp_path.glob(".m.ckpt.new*"))


def test_client_starts_wait_for_descriptors(monkeypatch):
    """With fewer than DESCRIPTOR_RESERVE descriptors left, the launcher starts nothing, says so
    once, and fails nothing; once descriptors are free it starts the pending simulations."""
    left = [0]
    monkeypatch.setattr(launcher, "descriptors_left", lambda: left[0])
    ensemble = launcher.Launcher([PYTHON, "-c", "pass"], lambda sims: {}, np.zeros((2, D)), None, max_running=2)
    for _ in range(3):
        ensemble.poll({}, set())
    assert ensemble.started_processes == 0 and ensemble.workers == []
    assert ensemble.events == [f"client starts deferred: fewer than {launcher.DESCRIPTOR_RESERVE} descriptors "
                               f"left (connections to the server hold them)"]
    assert {s.state for s in ensemble.sims.values()} == {"pending"}
    left[0] = launcher.DESCRIPTOR_RESERVE
    ensemble.poll({}, set())
    assert ensemble.started_processes == 2 and {s.state for s in ensemble.sims.values()} == {"running"}
    ensemble.shutdown()
