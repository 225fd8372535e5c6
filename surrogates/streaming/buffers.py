"""Training buffers between the stream and the optimizer (Melissa: Meyer et al., "Training Deep Surrogate Models with Large Scale Online Learning").

Samples live in preallocated tensors on the training device (the GPU when there is one), so a batch
is one index gather on the device. New samples arrive in chunks: `put` admits them (the server
books its ledger inside the same critical section, through `admit`) into a pending queue of host
rows, and moves pending rows into free slots as room appears, so the ledger, the slots and the
pending rows always change together and a checkpoint never holds a booked sample that is nowhere.

- FIFO: each sample served once, in arrival order; a full buffer blocks the producer.
- FIRO (first in, random out): a random batch of the present samples, each evicted once served.
- Reservoir: samples stay until the buffer is full and a newcomer replaces a random one; batches
  are random draws of the present samples, so samples are reused and training never waits once the
  watermark is reached.
Training starts once the buffer has held `watermark` samples (or the stream has ended).
Every slot counts how often its sample was served; counts of evicted samples are kept, so the
counts always add up to the number of samples served.

CUDA: the producer (the server's receiving thread) copies on its own stream, after waiting for the
training stream's queued work (a gather may still read a slot being replaced), and synchronizes
that stream before the rows become visible; the slot tensors are allocated once and never freed,
so no tensor made on the side stream is used, or freed, on the training stream.
"""
from __future__ import annotations

import ast
import contextlib
import threading

import numpy as np
import torch

POLICIES = ("fifo", "firo", "reservoir")


class Buffer:
    def __init__(self, policy: str, capacity: int, n_in: int, n_out: int, watermark: int, seed: int = 0,
                 device: str | torch.device = "cpu", dtype=torch.float32):
        if policy not in POLICIES:
            raise ValueError(f"policy = {policy!r}: expected one of {POLICIES}")
        if not 1 <= watermark < capacity:
            raise ValueError(f"watermark = {watermark}: expected 1 <= watermark < capacity ({capacity})")
        self.policy, self.capacity, self.watermark = policy, int(capacity), int(watermark)
        self.device = torch.device(device)
        self.X = torch.zeros(capacity, n_in, device=self.device, dtype=dtype)
        self.Y = torch.zeros(capacity, n_out, device=self.device, dtype=dtype)
        self.key = np.full(capacity, -1, dtype=np.int64)  # global sample key of each slot
        self.seen = np.zeros(capacity, dtype=np.int64)
        self.order = np.zeros(capacity, dtype=np.int64)  # arrival number (FIFO order)
        self.size = 0
        self.head = 0  # FIFO: slot of the oldest sample (ring)
        self.arrived = self.served = self.evicted = 0
        self.retired_seen = np.zeros(0, dtype=np.int64)  # seen counts of evicted samples
        self.retired_key = np.zeros(0, dtype=np.int64)  # and their keys
        # admitted rows not yet in a slot (host memory, pinned on CUDA)
        self.pending_x = torch.zeros(0, n_in, dtype=dtype)
        self.pending_y = torch.zeros(0, n_out, dtype=dtype)
        self.pending_key = np.zeros(0, dtype=np.int64)
        self.started = self.closed = False
        self.rng = np.random.default_rng(seed)
        self.cond = threading.Condition()  # re-entrant: admit callbacks may take it again
        self._side = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    # -- producer -----------------------------------------------------------------------------
    def _host(self, a) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.X.dtype)

    def _pin(self, t: torch.Tensor) -> torch.Tensor:
        """Pinned host rows copy to the device asynchronously (the host allocator tracks their use)."""
        return t.pin_memory() if self._side is not None and len(t) else t

    def put(self, x: np.ndarray, y: np.ndarray, keys: np.ndarray, block: bool = True, admit=None) -> int:
        """Admit samples (rows) and store them. `admit(keys) -> bool mask` runs under the buffer's
        lock and chooses the rows kept (the server books them in its ledger there). FIFO/FIRO wait
        for room when full unless block=False or the buffer is closed; rows that do not fit stay
        pending (part of the state) and move into slots as the consumer frees them.
        Returns how many rows were admitted."""
        keys = np.asarray(keys, dtype=np.int64)
        hx, hy = self._host(x), self._host(y)  # outside the lock: the consumer is not held up
        with self.cond:
            mask = np.ones(len(keys), dtype=bool) if admit is None else np.asarray(admit(keys), dtype=bool)
            if mask.any():
                m = torch.from_numpy(mask)
                self.pending_x = self._pin(torch.cat([self.pending_x, hx[m]]))
                self.pending_y = self._pin(torch.cat([self.pending_y, hy[m]]))
                self.pending_key = np.concatenate([self.pending_key, keys[mask]])
            self._settle(producer=True)
            while block and len(self.pending_key) and not self.closed:
                self.cond.wait(0.1)
                self._settle(producer=True)
            self.cond.notify_all()
        return int(mask.sum())

    @contextlib.contextmanager
    def _producer_stream(self, producer: bool):
        if self._side is None or not producer:
            yield
            return
        self._side.wait_stream(torch.cuda.default_stream(self.device))
        with torch.cuda.stream(self._side):
            yield
        self._side.synchronize()  # the rows are complete before anyone can see them

    def _settle(self, producer: bool = False):
        """Move pending rows into slots (all of them for the Reservoir, what fits otherwise)."""
        while len(self.pending_key):
            n = len(self.pending_key)
            m = min(n, self.capacity) if self.policy == "reservoir" else min(n, self.capacity - self.size)
            if m == 0:
                break
            with self._producer_stream(producer):
                x = self.pending_x[:m].to(self.device, non_blocking=True)
                y = self.pending_y[:m].to(self.device, non_blocking=True)
                self._store(x, y, self.pending_key[:m])
            self.pending_x, self.pending_y = self.pending_x[m:], self.pending_y[m:]
            self.pending_key = self.pending_key[m:]
        if self.size >= self.watermark:
            self.started = True

    def _store(self, x, y, keys):
        m = len(keys)
        free = min(m, self.capacity - self.size)
        if self.policy == "fifo":
            slots = (self.head + self.size + np.arange(free)) % self.capacity
        else:
            slots = self.size + np.arange(free)
        if self.policy == "reservoir" and free < m:  # full: newcomers replace random present samples
            victims = self.rng.choice(self.size, size=m - free, replace=False)  # old samples only
            self._retire(victims)
            slots = np.concatenate([slots, victims])
        slots_t = torch.from_numpy(slots).to(self.device)
        self.X.index_copy_(0, slots_t, x[:len(slots)])
        self.Y.index_copy_(0, slots_t, y[:len(slots)])
        self.key[slots] = keys[:len(slots)]
        self.seen[slots] = 0
        self.order[slots] = self.arrived + np.arange(len(slots))
        self.arrived += len(slots)
        self.size += free

    def _retire(self, slots):
        self.retired_seen = np.concatenate([self.retired_seen, self.seen[slots]])
        self.retired_key = np.concatenate([self.retired_key, self.key[slots]])
        self.evicted += len(slots)

    def close(self):
        """No more training input: FIFO/FIRO serve what is left regardless of the watermark, and a
        producer waiting for room returns (its rows stay pending)."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    # -- consumer -----------------------------------------------------------------------------
    @property
    def producer_waiting(self) -> bool:
        """A put is waiting for room: rows stay pending only while the buffer is open and full. Read under
        the lock: inside put, admitted rows are pending for a moment before they settle into free slots,
        and a reader outside the lock could take that moment for a full buffer."""
        with self.cond:
            return len(self.pending_key) > 0 and not self.closed

    def ready(self, batch: int) -> bool:
        if self.size == 0 or not (self.started or self.closed):
            return False
        if self.policy == "reservoir":
            return True
        return self.size >= batch or self.closed

    def get(self, batch: int, timeout: float = 0.1, out=None):
        """(x, y, keys) of up to `batch` samples, or None if none can be served within `timeout`.
        `out`: preallocated (x, y) tensors to gather into (the static inputs of a captured step)."""
        with self.cond:
            if not self.ready(batch):
                self.cond.wait_for(lambda: self.ready(batch), timeout)
                if not self.ready(batch):
                    return None
            m = min(batch, self.size)
            if self.policy == "fifo":
                slots = (self.head + np.arange(m)) % self.capacity
            else:
                slots = self.rng.choice(self.size, size=m, replace=False)
            self.seen[slots] += 1
            self.served += m
            idx = torch.from_numpy(slots).to(self.device, non_blocking=True)
            if out is not None and m == len(out[0]):
                x, y = out
                torch.index_select(self.X, 0, idx, out=x)
                torch.index_select(self.Y, 0, idx, out=y)
            else:
                x, y = self.X.index_select(0, idx), self.Y.index_select(0, idx)
            keys = self.key[slots].copy()
            if self.policy == "fifo":
                self._retire(slots)
                self.head = (self.head + m) % self.capacity
                self.size -= m
            elif self.policy == "firo":
                self._evict_compact(slots)
            if self.policy != "reservoir" and len(self.pending_key):
                self._settle()  # freed slots take pending rows (on the training stream, in order)
            self.cond.notify_all()
        return x, y, keys

    def _evict_compact(self, slots):
        """FIRO: remove served slots, moving the last present samples into the holes."""
        self._retire(slots)
        keep_tail = np.setdiff1d(np.arange(self.size - len(slots), self.size), slots)
        holes = np.setdiff1d(slots, np.arange(self.size - len(slots), self.size))
        if len(holes):
            src, dst = torch.from_numpy(keep_tail).to(self.device), torch.from_numpy(holes).to(self.device)
            self.X.index_copy_(0, dst, self.X.index_select(0, src))
            self.Y.index_copy_(0, dst, self.Y.index_select(0, src))
            for a in (self.key, self.seen, self.order):
                a[holes] = a[keep_tail]
        self.size -= len(slots)

    @property
    def empty(self) -> bool:
        """Nothing present and nothing pending."""
        return self.size == 0 and len(self.pending_key) == 0

    # -- bookkeeping --------------------------------------------------------------------------
    def seen_counts(self) -> np.ndarray:
        """How often each sample that ever entered was served (evicted ones included)."""
        return self.seen_table()[1]

    def seen_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, seen counts) of every sample that was admitted: evicted, present, pending (0)."""
        with self.cond:
            p = self._present()
            return (np.concatenate([self.retired_key, self.key[p], self.pending_key]),
                    np.concatenate([self.retired_seen, self.seen[p], np.zeros(len(self.pending_key), np.int64)]))

    def _present(self):
        if self.policy == "fifo":
            return (self.head + np.arange(self.size)) % self.capacity
        return np.arange(self.size)

    def state_dict(self) -> dict:
        """Tensors and plain numbers only (loadable with torch.load(weights_only=True))."""
        with self.cond:
            p = self._present()
            pt = torch.from_numpy(p).to(self.device)
            return {"policy": self.policy, "X": self.X.index_select(0, pt).cpu(), "Y": self.Y.index_select(0, pt).cpu(),
                    "key": torch.from_numpy(self.key[p].copy()), "seen": torch.from_numpy(self.seen[p].copy()),
                    "pending_X": self.pending_x.clone(), "pending_Y": self.pending_y.clone(),
                    "pending_key": torch.from_numpy(self.pending_key.copy()),
                    "retired_seen": torch.from_numpy(self.retired_seen.copy()),
                    "retired_key": torch.from_numpy(self.retired_key.copy()), "arrived": self.arrived,
                    "served": self.served, "evicted": self.evicted, "started": self.started,
                    "rng_state": str(self.rng.bit_generator.state)}

    def load_state_dict(self, s: dict):
        with self.cond:
            n = len(s["key"])
            if n > self.capacity:
                raise ValueError(f"checkpoint buffer holds {n} samples: expected at most capacity {self.capacity}")
            self.size, self.head = n, 0
            self.X[:n] = s["X"].to(self.device)
            self.Y[:n] = s["Y"].to(self.device)
            self.key[:n], self.seen[:n] = s["key"].numpy(), s["seen"].numpy()
            self.order[:n] = np.arange(n)
            self.pending_x = self._pin(s["pending_X"].to(self.X.dtype))
            self.pending_y = self._pin(s["pending_Y"].to(self.Y.dtype))
            self.pending_key = s["pending_key"].numpy().copy()
            self.retired_seen = s["retired_seen"].numpy().copy()
            self.retired_key = s["retired_key"].numpy().copy()
            self.arrived, self.served, self.evicted = int(s["arrived"]), int(s["served"]), int(s["evicted"])
            self.started = bool(s["started"])
            self.rng.bit_generator.state = ast.literal_eval(s["rng_state"])
            self._settle()
