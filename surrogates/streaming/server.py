"""The training server: a receiving thread (ZeroMQ PULL socket -> authentication and validation ->
ledger -> buffer) and the training loop (buffer -> optimizer step) in the main thread, so the
device never waits on the socket. The launcher runs inside the same loop (rank 0), and everything
needed to resume (model, optimizer, buffer with its pending rows, ledger, ensemble table,
history) is checkpointed at an interval.

With torch.distributed (torchrun), every rank binds its own socket and owns its own buffer;
client i streams to rank i mod world; rank 0 runs the launcher; gradients are averaged by DDP and
the ranks agree on every step through one small all_gather per iteration: who has a batch, the
stop flags, the clients registered, and the checkpoints, which rank 0 schedules so that every rank
saves at the same batch. A resumed run loads the newest batch count that every rank has saved.

Memory is bounded by message size: every frame above the study's largest valid frame is refused by
ZeroMQ before it is read (ZMQ_MAXMSGSIZE drops the connection, and with it whatever the peer queued
behind that frame: ZeroMQ cannot skip a frame it will not read), and each connection queues at most
`receive_hwm` messages. Steps lost that way (or by a killed client) are found by the ledger: a
simulation is done only when its bye finds every one of its steps booked; otherwise the launcher
restarts it and the restart resends what was lost. ZeroMQ reports such a drop only as a
disconnect, like any other: the receiver watches its socket's monitor (read without blocking, with
a queue of its own that never fills, so libzmq's I/O thread never blocks on it) and counts
`connections_dropped`, the connections that closed before a bye arrived on them (an oversized
frame, a killed client, a sender that closed early); peers that failed the ZeroMQ handshake are
not counted.

Descriptors: ZeroMQ accepts every TCP connection there is a descriptor for, and a peer that never
completes the ZeroMQ greeting holds one for HANDSHAKE_SECONDS. So the soft RLIMIT_NOFILE is raised to
the hard limit at the start, checkpoints are written through files opened at the start, the
launcher keeps a reserve of descriptors (launcher.DESCRIPTOR_RESERVE) before it starts a client, and
the socket has a ZeroMQ context of its own, terminated (every peer's descriptor closed) before the
final checkpoint and the run's artefacts are written: a flood of connections cannot make the run fail.
"""
from __future__ import annotations

import glob
import os
import resource
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import zmq
from zmq.utils.monitor import recv_monitor_message

from . import protocol
from .buffers import Buffer
from .settings import Settings

# Test hook, off unless set: while the file this variable names exists, the training loop takes no
# batch after its first (the receiver, the launcher and the checkpoints go on), so a test can hold
# the optimizer back deterministically instead of counting on it being slower than the stream.
HOLD_ENV = "ROMFLOW_STREAM_HOLD"
RECEIVE_QUEUE_BYTES = 64 << 20  # per connection: what ZeroMQ may hold before the receiver reads it
HANDSHAKE_SECONDS = 10  # a peer silent this long after connecting (no ZeroMQ greeting) is dropped
HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | HANDSHAKE_FAILED
DROP_WARNINGS = 10  # connections dropped that are logged one by one; the rest are only counted


class TrainingDiverged(RuntimeError):
    """The loss or the weights became non-finite: nothing trustworthy can be saved."""


def receive_hwm(expect: protocol.Expect, chunk: int) -> int:
    """Messages queued per connection: RECEIVE_QUEUE_BYTES of the largest valid message, at least
    two ingest chunks, at most 1024."""
    return int(np.clip(RECEIVE_QUEUE_BYTES // expect.message_bytes, 2 * chunk, 1024))


def bind(settings: Settings, expect: protocol.Expect, ctx: zmq.Context | None = None) -> tuple[zmq.Socket, str]:
    sock = (ctx or zmq.Context.instance()).socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, expect.frame_bytes)
    sock.setsockopt(zmq.RCVHWM, receive_hwm(expect, settings.ingest_chunk))
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_SECONDS * 1000)
    host = settings.bind
    if settings.port:
        sock.bind(f"tcp://{host}:{settings.port}")
        port = settings.port
    else:
        port = sock.bind_to_random_port(f"tcp://{host}")
    return sock, f"tcp://{host}:{port}"


def raise_descriptor_limit():
    """Soft RLIMIT_NOFILE up to the hard limit: each connected peer holds a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)  # the kernel refuses more (fs.nr_open)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, hard), hard))
    except (ValueError, OSError):
        pass  # keep the soft limit; checkpoints need no new descriptor anyway


class CheckpointFiles:
    """One rank's checkpoint: `path` (the newest generation) and `prev` (the one before), rotated
    through two files opened at the start, so that writing one needs no new descriptor. A new
    generation overwrites the older file (a spare, or prev while path is whole), then the renames
    prev -> spare, path -> prev, spare -> path leave path or prev whole at every instant; the file
    and then the directory are fsynced. Temporaries of a run killed mid-rotation are removed."""

    def __init__(self, path: Path):
        self.path, self.prev = path, path.with_name(f"{path.stem}.prev{path.suffix}")
        self.spare = path.with_name(f".{path.name}.new")
        path.parent.mkdir(parents=True, exist_ok=True)
        for stray in glob.glob(f"{glob.escape(str(self.spare))}*"):
            os.unlink(stray)
        self.dir = os.open(path.parent, os.O_RDONLY)
        self.files: dict[int, Path] = {}  # descriptor -> the name its file has now
        for name in (path, self.prev):
            if name.is_file():
                self.files[os.open(name, os.O_RDWR)] = name
        for k in range(2 - len(self.files)):
            name = self.spare.with_name(f"{self.spare.name}{k or ''}")
            self.files[os.open(name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)] = name

    def write(self, blob: dict):
        # never path's file: a spare when there is one, else prev (path is whole meanwhile)
        fd = min(self.files, key=lambda f: (self.files[f] == self.path, self.files[f] == self.prev))
        other = next(f for f in self.files if f != fd)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        with open(fd, "wb", closefd=False) as f:
            torch.save(blob, f)
        os.fsync(fd)
        if self.files[fd] == self.prev:
            os.replace(self.prev, self.spare)
            self.files[fd] = self.spare
        if self.files[other] == self.path:
            os.replace(self.path, self.prev)
            self.files[other] = self.prev
        os.replace(self.files[fd], self.path)
        self.files[fd] = self.path
        os.fsync(self.dir)

    def finish(self, blob: dict):
        """The last generation, alone: a finished run keeps no previous one."""
        self.write(blob)
        for fd, name in self.files.items():
            if name != self.path:
                name.unlink(missing_ok=True)
            os.close(fd)
        os.fsync(self.dir)
        os.close(self.dir)
        self.files = {}


class Ledger:
    """Which (client, step) pairs were received: each is booked exactly once."""

    def __init__(self, max_clients: int, n_steps: int):
        self.got = np.zeros((max_clients, n_steps), dtype=bool)

    @property
    def clients(self) -> int:
        """Rows: every client id the launcher can issue."""
        return self.got.shape[0]

    def missing(self, client: int) -> np.ndarray:
        """Steps of this client not received."""
        return np.flatnonzero(~self.got[client])

    def book(self, client: int, step: int) -> bool:
        if self.got[client, step]:
            return False
        self.got[client, step] = True
        return True

    def entries(self) -> np.ndarray:
        """(n, 2) array of (client, step) received."""
        return np.argwhere(self.got)


class Receiver(threading.Thread):
    """Receives, authenticates, validates and deduplicates messages, and puts accepted steps into
    the buffer. Ledger, counters, client progress and buffer change under one lock (the buffer's):
    a snapshot never holds a booked sample that is in no slot and not pending."""

    def __init__(self, sock: zmq.Socket, buffer: Buffer, ledger: Ledger, known: dict, scaling,
                 expect: protocol.Expect, chunk: int, key: bytes):
        super().__init__(daemon=True, name="receiver")
        self.sock, self.buffer, self.ledger, self.known = sock, buffer, ledger, known
        self.scaling, self.expect, self.chunk, self.key = scaling, expect, chunk, key
        self.lock = buffer.cond
        self.stop_event = threading.Event()
        self.last_seen: dict[int, float] = {}
        self.finished: set[int] = set()
        self.counts = {"messages": 0, "accepted": 0, "duplicates": 0, "bytes": 0, "dropped": 0,
                       "connections_dropped": 0}
        # connection bookkeeping from the socket monitor, by descriptor (ZMQ_SRCFD of each message)
        self._byes: dict[int, int] = {}  # byes read from connections on this descriptor, not yet judged
        self._closed: list[int] = []  # descriptors whose disconnect is read, not yet judged
        self._last_event: dict[int, int] = {}  # since the last judgment: the newest event per descriptor
        self._handshake_failed = False  # the next disconnect is that of a peer that failed the handshake
        self.dropped: dict[str, int] = {}
        self.warnings: list[str] = []  # for the training loop's log
        self.store = True  # False once training has stopped: steps are only booked in the ledger
        self.error: BaseException | None = None

    def _drop(self, reason: str):
        self.counts["dropped"] += 1
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _decode(self, frames):
        try:
            return protocol.decode(frames, self.expect, key=self.key)
        except protocol.ProtocolError as exc:
            return exc.reason

    def _admissible(self, m):
        """Only ids the launcher can issue (the ledger's rows) go on to build a sample key."""
        return m if isinstance(m, str) or m.client < self.ledger.clients else "unknown_client"

    def ingest(self, batch: list, fds: list[int] | None = None):
        """Decode a chunk of messages (outside the lock), then book and store it atomically. fds:
        the descriptor of the connection each message came by (ZMQ_SRCFD), -1 where unknown."""
        decoded = [self._admissible(self._decode(f)) for f in batch]
        fds = fds if fds is not None else [-1] * len(batch)
        steps = [m for m in decoded if not isinstance(m, str) and m.kind == "step"]
        if steps:
            x = self.scaling.inputs(np.stack([m.mu for m in steps]), np.array([m.time for m in steps]))
            y = np.stack([m.field for m in steps])
            keys = np.array([m.client * (self.expect.max_step + 1) + m.step for m in steps])
        else:
            x = np.zeros((0, self.expect.n_params + 1), np.float32)
            y = np.zeros((0, self.expect.field_size), np.float32)
            keys = np.zeros(0, np.int64)

        def admit(_keys):
            mask, byes, j, now = np.zeros(len(steps), dtype=bool), [], 0, time.time()
            for m, fd in zip(decoded, fds):
                self.counts["messages"] += 1
                if isinstance(m, str):
                    self._drop(m)
                    continue
                mu = self.known.get(m.client)
                if mu is None or np.abs(mu - m.mu).max() > 1e-12:
                    self._drop("unknown_client")  # stale, or a registered id with other parameters
                elif m.kind == "bye":
                    self.last_seen[m.client] = now
                    byes.append(m)
                    self._byes[fd] = self._byes.get(fd, 0) + 1
                else:
                    self.last_seen[m.client] = now
                    self.counts["bytes"] += m.field.nbytes
                    if self.ledger.book(m.client, m.step):
                        self.counts["accepted"] += 1
                        mask[j] = self.store
                    else:
                        self.counts["duplicates"] += 1  # a restarted client resends steps already booked
                j += m.kind == "step"
            for m in byes:  # after the steps before them are booked
                self._finish(m)
            return mask

        self.buffer.put(x, y, keys, admit=admit)

    def _finish(self, bye):
        """A bye completes its simulation only if the ledger holds every one of its steps: the
        client's own count is not trusted (a sender may stop early, or lose steps on the way)."""
        missing = self.ledger.missing(bye.client)
        if len(missing) == 0:
            self.finished.add(bye.client)
            return
        self._drop("incomplete_bye")
        self.warnings.append(f"client {bye.client} said bye after {bye.steps} steps but {len(missing)} of "
                             f"{self.ledger.got.shape[1]} never arrived (first: step {missing[0]}): not done")

    # -- connections dropped -------------------------------------------------------------------
    def _open_monitor(self) -> zmq.Socket:
        """The data socket's monitor. libzmq's I/O thread sends each event with a blocking send, so
        the queue towards this end is unbounded (RCVHWM 0): however long the receive loop is held
        (a full buffer), ZeroMQ never waits on it. Events are small and drained every pass."""
        address = f"inproc://romflow-receiver-monitor-{id(self):x}"
        self.sock.monitor(address, MONITOR_EVENTS)
        try:
            monitor = self.sock.context.socket(zmq.PAIR)
            monitor.setsockopt(zmq.RCVHWM, 0)
            monitor.setsockopt(zmq.LINGER, 0)
            monitor.connect(address)
        except BaseException:
            self.sock.disable_monitor()
            raise
        return monitor

    def _close_monitor(self, monitor: zmq.Socket):
        """Monitoring is stopped first (no event is sent any more), then this end is closed."""
        try:
            self.sock.disable_monitor()
        finally:
            monitor.close(0)

    def _watch(self, monitor: zmq.Socket):
        """Every event queued (never waits), then the disconnects judged once the data socket holds
        no message: whatever those connections delivered has been read by then."""
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            kind, fd = event["event"], event["value"]
            if kind & HANDSHAKE_FAILED:  # its disconnect follows at once (the same I/O thread call)
                self._handshake_failed = True
                continue
            self._last_event[fd] = kind
            if kind == zmq.EVENT_DISCONNECTED:
                if self._handshake_failed:
                    self._handshake_failed = False  # never a ZeroMQ peer: carried nothing
                else:
                    self._closed.append(fd)
        if self._closed and not self.sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._judge()

    def _judge(self):
        """Each closed connection takes one bye read from its descriptor, or is counted as dropped.
        Descriptors are reused: where none was accepted again since, what is left is forgotten."""
        for fd in self._closed:
            if self._byes.get(fd, 0) > 0:
                self._byes[fd] -= 1
                continue
            with self.lock:
                self.counts["connections_dropped"] += 1
                n = self.counts["connections_dropped"]
            if n <= DROP_WARNINGS:
                self.warnings.append(
                    f"a connection closed before any bye arrived on it ({n} so far): what it had queued is "
                    f"lost (a frame above ZMQ_MAXMSGSIZE, a killed client, a sender that closed early); "
                    f"the ledger keeps its simulation unfinished" + (
                        "; further ones are only counted" if n == DROP_WARNINGS else ""))
        for fd in set(self._closed):
            if self._last_event.get(fd) == zmq.EVENT_DISCONNECTED:
                self._byes.pop(fd, None)
        self._closed.clear()
        self._last_event.clear()

    def _receive(self) -> tuple[list, list]:
        """Up to one chunk of queued messages (never waits) and the descriptor each came by."""
        batch, fds = [], []
        while len(batch) < self.chunk:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                fds.append(int(frames[0].get(zmq.SRCFD)))
            except (zmq.ZMQError, AttributeError, ValueError):
                fds.append(-1)
            batch.append([f.bytes for f in frames])
        return batch, fds

    def run(self):
        if self.buffer.device.type == "cuda":
            torch.cuda.set_device(self.buffer.device)  # the current device is per thread
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        monitor = None
        try:
            monitor = self._open_monitor()
            poller.register(monitor, zmq.POLLIN)
            while not self.stop_event.is_set():
                if poller.poll(50):
                    batch, fds = self._receive()
                    if batch:
                        self.ingest(batch, fds)
                self._watch(monitor)
            self._watch(monitor)  # the last disconnects, judged only if nothing is left unread
        except BaseException as exc:  # surfaced by the training loop, never silently lost
            self.error = exc
        finally:
            if monitor is not None:
                try:
                    self._close_monitor(monitor)
                except zmq.ZMQError as exc:
                    self.error = self.error or exc

    def stop(self):
        self.stop_event.set()
        self.buffer.close()  # a put waiting for room returns
        self.join(5.0)

    def progress(self):
        """(client -> time of its last message, clients whose bye arrived). While a put waits for
        room in a full buffer, the clients are blocked in send, not silent: all count as heard now."""
        with self.lock:
            seen = dict(self.last_seen)
            if self.buffer.producer_waiting:
                seen = dict.fromkeys(seen, time.time())
            return seen, set(self.finished)

    def snapshot(self) -> dict:
        """Ledger, buffer (slots and pending rows), counters and byes, consistent with each other."""
        with self.lock:
            return {"buffer": self.buffer.state_dict(), "ledger": torch.from_numpy(self.ledger.got.copy()),
                    "counts": dict(self.counts), "dropped": dict(self.dropped), "finished": sorted(self.finished)}

    def restore(self, blob: dict):
        with self.lock:
            self.buffer.load_state_dict(blob["buffer"])
            got = blob["ledger"].numpy()
            self.ledger.got[: got.shape[0]] = got
            self.counts.update(blob["counts"])
            self.dropped.update(blob["dropped"])
            self.finished.update(int(c) for c in blob["finished"])


@dataclass
class History:
    wall: list = field(default_factory=list)
    batches: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    received: list = field(default_factory=list)
    bytes: list = field(default_factory=list)
    trained: list = field(default_factory=list)
    lr: list = field(default_factory=list)

    def add(self, **kw):
        for k, v in kw.items():
            getattr(self, k).append(float(v))

    def arrays(self) -> dict:
        return {k: np.asarray(v, dtype=float) for k, v in self.__dict__.items()}

    def load(self, d: dict):
        for k in self.__dict__:
            setattr(self, k, [float(v) for v in d[k]])


def agreed_batch(candidates: list[list[int]]) -> int | None:
    """The newest checkpoint every rank has (batch counts per rank), or None."""
    common = set(candidates[0]).intersection(*candidates[1:])
    return max(common) if common else None


class OnlineTraining:
    """One rank's server: socket, receiver, buffer, trainer, and (rank 0) the launcher."""

    def __init__(self, settings: Settings, trainer, scaling, expect: protocol.Expect, max_clients: int, key: bytes,
                 launcher=None, validation=None, checkpoint: str | Path | None = None, rank: int = 0, world: int = 1,
                 log=print, tag: str = "", kill_after_checkpoint: int | None = None):
        """tag: a digest of the settings; a checkpoint with another tag is not resumed.
        kill_after_checkpoint: fault injection (tests): rank 0 SIGKILLs itself right after its
        first checkpoint at or after that batch, unless the run was resumed."""
        self.s, self.trainer, self.scaling, self.expect = settings, trainer, scaling, expect
        self.rank, self.world, self.log, self.tag = rank, world, log, tag
        self.launcher = launcher
        self.validation = validation  # (x, y) tensors on the device, or None
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.kill_after_checkpoint = kill_after_checkpoint
        self.hold = os.environ.get(HOLD_ENV) or None
        if self.hold and rank == 0:  # a test hook: say so, lest a stray variable hold a real run
            log(f"{HOLD_ENV} = {self.hold}: training holds after its first batch while that file exists")
        self.buffer = Buffer(settings.policy, settings.capacity, expect.n_params + 1, expect.field_size,
                             settings.watermark, seed=settings.seed + 7919 * rank, device=trainer.device)
        self.max_clients = max_clients
        self.ledger = Ledger(max_clients, expect.max_step + 1)
        self._progress_cache = ({}, set())
        self.known: dict[int, np.ndarray] = {}
        # before the socket exists: no peer can hold the descriptors these files need
        self.files = CheckpointFiles(self._ckpt_path()) if self.checkpoint else None
        raise_descriptor_limit()
        self.zmq = zmq.Context()  # its own, so that terminating it closes every peer's descriptor
        self.sock, self.address = bind(settings, expect, self.zmq)
        self.receiver = Receiver(self.sock, self.buffer, self.ledger, self.known, scaling, expect,
                                 settings.ingest_chunk, key)
        self.history = History()
        self.seconds_before = 0.0  # training seconds of earlier runs (resume)
        self.resumed_from_batch = -1
        self.addresses = [self.address]
        self.diverged: str | None = None
        self.ensemble_seconds: float | None = None  # server start -> every simulation done (rank 0)

    # -- distributed agreement ----------------------------------------------------------------
    def gather(self, obj) -> list:
        """Every rank's `obj` (collective under torch.distributed)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def _owned(self, cid: int) -> bool:
        return cid % self.world == self.rank

    # -- checkpoint ---------------------------------------------------------------------------
    def _ckpt_path(self) -> Path:
        return self.checkpoint if self.world == 1 else self.checkpoint.with_suffix(f".rank{self.rank}.pt")

    def save_checkpoint(self, train_seconds: float, complete: bool = False):
        """Atomic and durable; the previous generation is kept (as .prev) until a run completes,
        so the ranks can agree on a batch every one of them has saved."""
        if not self.trainer.finite():
            raise TrainingDiverged(f"the weights became non-finite by batch {self.trainer.batches}; no model "
                                   f"saved (lower surrogate.lr, or check the clients' fields)")
        blob = self.receiver.snapshot()
        blob.update(trainer=self.trainer.state_dict(), train_seconds=train_seconds, complete=complete, tag=self.tag,
                    history={k: torch.from_numpy(v) for k, v in self.history.arrays().items()})
        if self.launcher is not None:
            blob["launcher"] = {k: torch.as_tensor(v) for k, v in self.launcher.table().items()}
        if complete:
            self.files.finish(blob)
        else:
            self.files.write(blob)

    def _candidates(self) -> dict[int, dict]:
        """Readable checkpoints of this rank with these settings, by batch count."""
        if self.checkpoint is None:
            return {}
        out = {}
        for p in (self.files.path, self.files.prev):
            if not p.is_file():
                continue
            try:
                blob = torch.load(p, map_location="cpu", weights_only=True)
            except Exception as exc:  # a file torn by a kill: the other generation may do
                self.log(f"rank {self.rank}: {p} unreadable ({type(exc).__name__}): ignored")
                continue
            if blob.get("complete"):
                self.log(f"rank {self.rank}: {p} is from a finished run: starting afresh")
                return {}
            if blob.get("tag") != self.tag:
                self.log(f"rank {self.rank}: {p} is from other settings: ignored")
                continue
            out[int(blob["trainer"]["batches"])] = blob
        return out

    def _resume(self) -> bool:
        cands = self._candidates()
        batch = agreed_batch(self.gather(sorted(cands)))
        if batch is None:
            if cands:
                self.log(f"rank {self.rank}: no checkpoint batch common to every rank: starting afresh")
            return False
        blob = cands[batch]
        self.trainer.load_state_dict(blob["trainer"])
        self.receiver.restore(blob)
        self.history.load({k: v.numpy() for k, v in blob["history"].items()})
        self.seconds_before = float(blob["train_seconds"])
        self.resumed_from_batch = self.trainer.batches
        if self.launcher is not None and "launcher" in blob:
            self.launcher.load_table({k: v.numpy() for k, v in blob["launcher"].items()})
        return True

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> dict:
        resumed = self._resume()
        self.trainer.prepare()  # CUDA: capture the step before the receiving thread touches the device
        self.addresses = self.gather(self.address)
        if resumed:
            self.log(f"rank {self.rank}: resumed from {self._ckpt_path()} at batch {self.resumed_from_batch}")
        self.receiver.start()
        self.log(f"rank {self.rank}: listening on {self.address}; policy {self.s.policy}, device {self.trainer.device}")
        t_start = time.perf_counter()
        t_first = None  # the training clock starts with the first batch
        next_val = 0.0
        next_ckpt = None
        losses, stop_training, t_stop = [], False, None
        registry_sent: set[int] = set()
        last_poll = 0.0
        try:
            while True:
                if self.receiver.error is not None:
                    raise self.receiver.error
                while self.receiver.warnings:
                    self.log(f"rank {self.rank}: warning: {self.receiver.warnings.pop(0)}")
                now = time.perf_counter()
                train_s = self.seconds_before + (now - t_first if t_first is not None else 0.0)
                local = {"progress": self.receiver.progress() if self.world > 1 else None,
                         "ready": self.buffer.ready(self.s.batch_size) and not self._held(),
                         "drained": self._drained(), "diverged": self.diverged}
                lead = {}
                if self.rank == 0:  # rank 0 decides; every rank learns the registry, stop flags, checkpoints
                    news, stream_done = {}, False
                    if self.launcher is not None:
                        if now - last_poll > 0.2:
                            last_seen, finished = self._merged_progress()
                            self.launcher.poll(last_seen, finished)
                            while self.launcher.events:
                                self.log(f"launcher: {self.launcher.events.pop(0)}")
                            last_poll = now
                        news = {i: s.mu for i, s in self.launcher.sims.items() if i not in registry_sent}
                        registry_sent.update(news)
                        stream_done = self.launcher.done
                        if stream_done and self.ensemble_seconds is None:
                            self.ensemble_seconds = now - t_start
                    lead = {"news": news, "stream_done": stream_done, "train_s": train_s,
                            "budget_spent": bool(train_s >= self.s.budget_seconds or (
                                self.s.budget_batches and self.trainer.batches >= self.s.budget_batches)),
                            "checkpoint": bool(self.checkpoint and next_ckpt is not None and train_s >= next_ckpt)}
                local["lead"] = lead
                views = self.gather(local)
                if self.world > 1:
                    self._merge(views)
                lead = views[0]["lead"]
                bad = [v["diverged"] for v in views if v["diverged"]]
                if bad:
                    raise TrainingDiverged(bad[0])
                with self.receiver.lock:
                    for cid, mu in lead["news"].items():
                        if self._owned(cid):
                            self.known[cid] = np.asarray(mu)
                if lead["checkpoint"]:  # the same iteration, hence the same batch, on every rank
                    self.save_checkpoint(lead["train_s"])
                    next_ckpt = lead["train_s"] + self.s.checkpoint_every_seconds
                    if (self.rank == 0 and not resumed and self.kill_after_checkpoint is not None
                            and self.trainer.batches >= self.kill_after_checkpoint):
                        os.kill(os.getpid(), signal.SIGKILL)
                if lead["budget_spent"] and not stop_training:
                    stop_training, t_stop = True, time.perf_counter()
                    self.receiver.store = False
                    self.buffer.close()  # a producer held back by a full FIFO/FIRO drains to the ledger
                if lead["stream_done"]:
                    self.buffer.close()
                    if stop_training or all(v["drained"] for v in views):
                        break
                if stop_training or not all(v["ready"] for v in views):
                    time.sleep(0.02)
                    continue
                # ready stays true until this thread takes a batch: the get cannot come back empty
                x, y, _ = self.buffer.get(self.s.batch_size, timeout=0.0, out=self._static())
                if t_first is None:
                    t_first = time.perf_counter()
                    next_ckpt = self.seconds_before + self.s.checkpoint_every_seconds
                    self.log(f"rank {self.rank}: watermark reached, training starts "
                             f"({self.buffer.size} samples in the buffer)")
                losses.append(self.trainer.step(x, y))
                train_s = self.seconds_before + time.perf_counter() - t_first
                if train_s >= next_val:
                    self._record(train_s, losses)
                    losses = []
                    next_val = train_s + self.s.validate_every_seconds
        finally:
            self.receiver.stop()
            if self.launcher is not None:
                self.launcher.shutdown()
            self.sock.close(0)
            self.zmq.term()  # returns once every connection is closed: what follows has their descriptors
        if self.receiver.counts["connections_dropped"]:
            self.log(f"rank {self.rank}: {self.receiver.counts['connections_dropped']} connections closed before "
                     f"a bye (counts['connections_dropped']: oversized frames, killed clients, early closes)")
        end = t_stop if t_stop is not None else time.perf_counter()
        train_s = self.seconds_before + (end - t_first if t_first is not None else 0.0)
        if losses or not self.history.batches:
            self._record(train_s, losses)
        if self.diverged:
            raise TrainingDiverged(self.diverged)
        if self.checkpoint:
            self.save_checkpoint(train_s, complete=True)
        return {"train_seconds": train_s, "wall_seconds": time.perf_counter() - t_start,
                "ensemble_seconds": float("nan") if self.ensemble_seconds is None else self.ensemble_seconds}

    def _held(self) -> bool:
        return self.hold is not None and self.trainer.batches > 0 and os.path.exists(self.hold)

    def _static(self):
        t = self.trainer
        return (t.static_x, t.static_y) if t.use_graph else None

    def _drained(self) -> bool:
        """Nothing left to train on once the stream has ended (FIFO/FIRO empty)."""
        return self.buffer.closed and self.buffer.empty and (
            self.buffer.policy != "reservoir" or self.receiver.counts["accepted"] == 0)

    def _merged_progress(self):
        if self.world == 1:
            return self.receiver.progress()
        return self._progress_cache

    def _merge(self, views):
        """Rank 0's view of every rank's clients: latest message time, bye received."""
        last, fin = {}, set()
        for v in views:
            seen, done = v["progress"]
            for c, t in seen.items():
                last[c] = max(last.get(c, 0.0), t)
            fin |= done
        self._progress_cache = (last, fin)

    def _record(self, train_s, losses):
        val = self.trainer.evaluate(*self.validation) if self.validation is not None else float("nan")
        tl = float(torch.stack(losses).mean()) if losses else float("nan")
        c = self.receiver.counts
        self.history.add(wall=train_s, batches=self.trainer.batches, train_loss=tl, val_loss=val,
                         received=c["accepted"], bytes=c["bytes"], trained=self.buffer.served, lr=self.trainer.lr())
        self.log(f"t={train_s:7.1f}s batches={self.trainer.batches:6d} train={tl:.3e} val={val:.3e} "
                 f"received={c['accepted']} buffer={self.buffer.size}")
        finite = (not losses or np.isfinite(tl)) and (self.validation is None or np.isfinite(val))
        if not (finite and self.trainer.finite()) and self.diverged is None:
            self.diverged = (f"training diverged by batch {self.trainer.batches} (training loss {tl:.3g}, validation "
                             f"loss {val:.3g}); no model saved (lower surrogate.lr, or check the clients' fields)")

    def summary(self) -> dict | None:
        """Every rank's ledger, seen counts and counters, merged on rank 0 (collective; None on the
        other ranks)."""
        c = self.receiver.counts
        mine = {"ledger": self.ledger.entries(), "seen": self.buffer.seen_table(), "counts": dict(c),
                "dropped": dict(self.receiver.dropped), "batches": self.trainer.batches,
                "device": str(self.trainer.device)}
        views = self.gather(mine)
        if self.rank != 0:
            return None
        ledger = np.concatenate([v["ledger"] for v in views])
        ledger = ledger[np.lexsort((ledger[:, 1], ledger[:, 0]))] if len(ledger) else ledger.reshape(0, 2)
        dropped: dict[str, int] = {}
        for v in views:
            for k, n in v["dropped"].items():
                dropped[k] = dropped.get(k, 0) + n
        return {"ledger": ledger, "seen_key": np.concatenate([v["seen"][0] for v in views]),
                "seen": np.concatenate([v["seen"][1] for v in views]),
                "counts": {k: sum(v["counts"][k] for v in views) for k in c}, "dropped": dropped,
                "rank_batches": [v["batches"] for v in views], "rank_devices": [v["device"] for v in views],
                "history": self.history.arrays(),
                "resumed_from_batch": self.resumed_from_batch}
