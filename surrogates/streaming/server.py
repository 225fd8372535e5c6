"""The training server: a receiving thread (ZeroMQ PULL socket -> validation -> ledger -> buffer)
and the training loop (buffer -> optimizer step) in the main thread, so the device never waits on
the socket. The launcher runs inside the same loop (rank 0), and everything needed to resume
(model, optimizer, buffer, ledger, ensemble table, history) is checkpointed at an interval.

With torch.distributed (torchrun), every rank binds its own socket and owns its own buffer;
client i streams to rank i mod world; rank 0 runs the launcher; gradients are averaged by DDP and
the ranks agree on every step through one small all_gather per iteration.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import zmq

from . import protocol
from .buffers import Buffer


@dataclass
class Settings:
    policy: str = "reservoir"
    batch_size: int = 64
    capacity: int = 4000
    watermark: int = 500
    budget_seconds: float = 30.0
    budget_batches: int = 0  # 0: no limit
    validate_every_seconds: float = 2.0
    checkpoint_every_seconds: float = 10.0
    ingest_chunk: int = 16
    bind: str = "127.0.0.1"
    port: int = 0
    seed: int = 0


class Ledger:
    """Which (client, step) pairs were received: each is booked exactly once."""

    def __init__(self, max_clients: int, n_steps: int):
        self.got = np.zeros((max_clients, n_steps), dtype=bool)

    def book(self, client: int, step: int) -> bool:
        if self.got[client, step]:
            return False
        self.got[client, step] = True
        return True

    def entries(self) -> np.ndarray:
        """(n, 2) array of (client, step) received."""
        return np.argwhere(self.got)


class Receiver(threading.Thread):
    """Receives, validates and deduplicates messages, and puts accepted steps into the buffer."""

    def __init__(self, sock: zmq.Socket, buffer: Buffer, ledger: Ledger, known: dict, scaling, field_size: int,
                 n_params: int, max_step: int, chunk: int):
        super().__init__(daemon=True, name="receiver")
        self.sock, self.buffer, self.ledger, self.known = sock, buffer, ledger, known
        self.scaling, self.field_size, self.n_params, self.max_step = scaling, field_size, n_params, max_step
        self.chunk = chunk
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.last_seen: dict[int, float] = {}
        self.finished: set[int] = set()
        self.counts = {"messages": 0, "accepted": 0, "duplicates": 0, "bytes": 0, "dropped": 0}
        self.dropped: dict[str, int] = {}
        self.store = True  # False once training has stopped: steps are only booked in the ledger
        self.error: BaseException | None = None

    def _drop(self, reason: str):
        self.counts["dropped"] += 1
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def handle(self, frames) -> tuple | None:
        """Validate one message; returns (x, y, key) of a new accepted step or None."""
        self.counts["messages"] += 1
        try:
            msg = protocol.decode(frames, self.field_size, self.n_params, self.max_step)
        except protocol.ProtocolError as exc:
            self._drop(exc.reason)
            return None
        mu = self.known.get(msg.client)
        if mu is None or not np.allclose(mu, msg.mu, rtol=0, atol=1e-12):
            self._drop("unknown_client")  # foreign, stale or forged: never booked
            return None
        self.last_seen[msg.client] = time.time()
        if msg.kind == "bye":
            self.finished.add(msg.client)
            return None
        self.counts["bytes"] += len(frames[1])
        if not self.ledger.book(msg.client, msg.step):
            self.counts["duplicates"] += 1  # a restarted client resends steps already booked
            return None
        self.counts["accepted"] += 1
        return msg.mu, msg.time, msg.field, msg.client * (self.max_step + 1) + msg.step

    def _flush(self, rows):
        if not rows or not self.store:
            return
        mu = np.stack([r[0] for r in rows])
        x = self.scaling.inputs(mu, np.array([r[1] for r in rows]))
        y = np.stack([r[2] for r in rows]).astype(np.float32, copy=False)
        t0 = time.time()
        self.buffer.put(x, y, np.array([r[3] for r in rows]))
        if time.time() - t0 > 0.5:  # a full FIFO/FIRO held us back: clients were not silent
            now = time.time()
            for c in list(self.last_seen):
                self.last_seen[c] = now

    def run(self):
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        try:
            while not self.stop_event.is_set():
                if not poller.poll(50):
                    continue
                rows = []
                with self.lock:
                    while len(rows) < self.chunk:
                        try:
                            frames = self.sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        r = self.handle(frames)
                        if r is not None:
                            rows.append(r)
                self._flush(rows)
        except BaseException as exc:  # surfaced by the training loop, never silently lost
            self.error = exc

    def progress(self):
        with self.lock:
            return dict(self.last_seen), set(self.finished)


def bind(settings: Settings) -> tuple[zmq.Socket, str]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1024)
    host = settings.bind
    if settings.port:
        sock.bind(f"tcp://{host}:{settings.port}")
        port = settings.port
    else:
        port = sock.bind_to_random_port(f"tcp://{host}")
    return sock, f"tcp://{host}:{port}"


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


class OnlineTraining:
    """One rank's server: socket, receiver, buffer, trainer, and (rank 0) the launcher."""

    def __init__(self, settings: Settings, trainer, scaling, field_size: int, n_params: int, max_step: int,
                 max_clients: int, launcher=None, validation=None, checkpoint: str | Path | None = None,
                 rank: int = 0, world: int = 1, log=print, tag: str = ""):
        """tag: a digest of the settings; a checkpoint with another tag is not resumed."""
        self.s, self.trainer, self.scaling = settings, trainer, scaling
        self.rank, self.world, self.log, self.tag = rank, world, log, tag
        self.launcher = launcher
        self.validation = validation  # (x, y) tensors on the device, or None
        self.checkpoint = Path(checkpoint) if checkpoint else None
        n_in = n_params + 1
        self.buffer = Buffer(settings.policy, settings.capacity, n_in, field_size, settings.watermark,
                             seed=settings.seed + 7919 * rank, device=trainer.device)
        self.max_clients = max_clients
        self.ledger = Ledger(max_clients, max_step + 1)
        self._progress_cache = ({}, set())
        self.known: dict[int, np.ndarray] = {}
        self.sock, self.address = bind(settings)
        self.receiver = Receiver(self.sock, self.buffer, self.ledger, self.known, scaling, field_size, n_params,
                                 max_step, settings.ingest_chunk)
        self.history = History()
        self.seconds_before = 0.0  # training seconds of earlier runs (resume)
        self.resumed_from_batch = -1
        self.addresses = [self.address]

    # -- distributed agreement ----------------------------------------------------------------
    def _gather(self, obj):
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
        from rom.artefacts import atomic_path

        with self.receiver.lock:  # a consistent ledger / buffer / counters snapshot
            blob = {"trainer": self.trainer.state_dict(), "buffer": self.buffer.state_dict(),
                    "ledger": torch.from_numpy(self.ledger.got.copy()), "counts": dict(self.receiver.counts),
                    "dropped": dict(self.receiver.dropped), "train_seconds": train_seconds,
                    "history": {k: torch.from_numpy(v) for k, v in self.history.arrays().items()},
                    "finished": sorted(self.receiver.finished), "complete": complete, "tag": self.tag}
            if self.launcher is not None:
                blob["launcher"] = {k: torch.as_tensor(v) for k, v in self.launcher.table().items()}
        with atomic_path(self._ckpt_path()) as tmp:
            torch.save(blob, tmp)

    def load_checkpoint(self) -> bool:
        path = self._ckpt_path() if self.checkpoint else None
        if path is None or not path.is_file():
            return False
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("complete") or blob.get("tag") != self.tag:
            self.log(f"rank {self.rank}: {path} is from a finished run or other settings: starting afresh")
            return False
        self.trainer.load_state_dict(blob["trainer"])
        self.buffer.load_state_dict(blob["buffer"])
        got = blob["ledger"].numpy()
        self.ledger.got[: got.shape[0]] = got
        self.receiver.counts.update(blob["counts"])
        self.receiver.dropped.update(blob["dropped"])
        self.receiver.finished.update(int(c) for c in blob["finished"])
        self.history.load({k: v.numpy() for k, v in blob["history"].items()})
        self.seconds_before = float(blob["train_seconds"])
        self.resumed_from_batch = self.trainer.batches
        if self.launcher is not None and "launcher" in blob:
            self.launcher.load_table({k: v.numpy() for k, v in blob["launcher"].items()})
        return True

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> dict:
        resumed = self.load_checkpoint()
        self.addresses = [a for a in self._gather(self.address)]
        if resumed:
            self.log(f"rank {self.rank}: resumed from {self._ckpt_path()} at batch {self.resumed_from_batch}")
        self.receiver.start()
        self.log(f"rank {self.rank}: listening on {self.address}; policy {self.s.policy}, device {self.trainer.device}")
        t_start = time.perf_counter()
        t_first = None  # the training clock starts with the first batch
        next_val = next_ckpt = 0.0
        losses, stop_training, t_stop = [], False, None
        registry_sent: set[int] = set()
        last_poll = 0.0
        try:
            while True:
                if self.receiver.error is not None:
                    raise self.receiver.error
                now = time.perf_counter()
                train_s = self.seconds_before + (now - t_first if t_first is not None else 0.0)
                budget_spent = train_s >= self.s.budget_seconds or (
                    self.s.budget_batches and self.trainer.batches >= self.s.budget_batches)
                # rank 0 decides; every rank learns the registry of clients and the stop flags
                local = {"progress": self.receiver.progress() if self.world > 1 else None,
                         "ready": self.buffer.ready(self.s.batch_size), "drained": self._drained()}
                news, stream_done = {}, False
                if self.rank == 0 and self.launcher is not None:
                    if now - last_poll > 0.2:
                        last_seen, finished = self._merged_progress(local)
                        self.launcher.poll(last_seen, finished)
                        while self.launcher.events:
                            self.log(f"launcher: {self.launcher.events.pop(0)}")
                        last_poll = now
                    news = {i: s.mu for i, s in self.launcher.sims.items() if i not in registry_sent}
                    registry_sent.update(news)
                    stream_done = self.launcher.done
                local.update(news=news, stream_done=stream_done, budget_spent=bool(budget_spent))
                views = self._gather(local) if self.world > 1 else [local]
                if self.world > 1:
                    self._merge(views)
                lead = views[0]
                with self.receiver.lock:
                    for cid, mu in lead["news"].items():
                        if self._owned(cid):
                            self.known[cid] = np.asarray(mu)
                if lead["budget_spent"] and not stop_training:
                    stop_training, t_stop = True, time.perf_counter()
                    self.receiver.store = False
                if lead["stream_done"]:
                    self.buffer.close()
                    all_drained = all(v["drained"] for v in views)
                    if stop_training or all_drained:
                        break
                if stop_training or not all(v["ready"] for v in views):
                    time.sleep(0.02)
                    continue
                got = self.buffer.get(self.s.batch_size, timeout=0.0, out=self._static())
                if got is None:  # only possible in the distributed agreement race: skip this round
                    if self.world == 1:
                        continue
                    x = y = None
                else:
                    x, y, _ = got
                if self.world > 1:
                    if not all(self._gather(got is not None)):
                        continue
                if t_first is None:
                    t_first = time.perf_counter()
                    self.log(f"rank {self.rank}: watermark reached, training starts "
                             f"({self.buffer.size} samples in the buffer)")
                losses.append(self.trainer.step(x, y))
                now = time.perf_counter()
                train_s = self.seconds_before + now - t_first
                if train_s >= next_val:
                    self._record(train_s, losses)
                    losses = []
                    next_val = train_s + self.s.validate_every_seconds
                if self.checkpoint and train_s >= next_ckpt and self.trainer.batches > 0:
                    if next_ckpt > 0:
                        self.save_checkpoint(train_s)
                    next_ckpt = train_s + self.s.checkpoint_every_seconds
        finally:
            self.receiver.stop_event.set()
            self.receiver.join(5.0)
            if self.launcher is not None:
                self.launcher.shutdown()
            self.sock.close(0)
        end = t_stop if t_stop is not None else time.perf_counter()
        train_s = self.seconds_before + (end - t_first if t_first is not None else 0.0)
        if losses or not self.history.batches:
            self._record(train_s, losses)
        if self.checkpoint:
            self.save_checkpoint(train_s, complete=True)
        return {"train_seconds": train_s, "wall_seconds": time.perf_counter() - t_start}

    def _static(self):
        t = self.trainer
        return (t.static_x, t.static_y) if t.use_graph else None

    def _drained(self) -> bool:
        """Nothing left to train on once the stream has ended (FIFO/FIRO empty)."""
        return self.buffer.closed and self.buffer.size == 0 and (
            self.buffer.policy != "reservoir" or self.receiver.counts["accepted"] == 0)

    def _merged_progress(self, local):
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

    def summary(self) -> dict:
        c = self.receiver.counts
        return {"counts": dict(c), "dropped": dict(self.receiver.dropped), "ledger": self.ledger.entries(),
                "seen": self.buffer.seen_table(), "history": self.history.arrays(),
                "resumed_from_batch": self.resumed_from_batch}
