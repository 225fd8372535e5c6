"""Training buffers between the stream and the optimizer (METHODS.md section 5).

Samples live in preallocated tensors on the training device (the GPU when there is one), so a batch
is one index gather on the device; new samples arrive in chunks (pinned host memory on CUDA, copied
on a side stream by the receiving thread, so the training stream never waits on the socket).

- FIFO: each sample served once, in arrival order; a full buffer blocks the producer.
- FIRO (first in, random out): a random batch of the present samples, each evicted once served.
- Reservoir: samples stay until the buffer is full and a newcomer replaces a random one; batches
  are random draws of the present samples, so samples are reused and training never waits once the
  watermark is reached.
Training starts only when the buffer first holds `watermark` samples (or the stream has ended).
Every slot counts how often its sample was served; counts of evicted samples are kept, so the
counts always add up to the number of samples served.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

POLICIES = ("fifo", "firo", "reservoir")


class Buffer:
    def __init__(self, policy: str, capacity: int, n_in: int, n_out: int, watermark: int, seed: int = 0,
                 device: str | torch.device = "cpu", dtype=torch.float32):
        if policy not in POLICIES:
            raise ValueError(f"policy = {policy!r}: expected one of {POLICIES}")
        if not 1 <= watermark <= capacity:
            raise ValueError(f"watermark = {watermark}: expected 1..capacity ({capacity})")
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
        self.started = self.closed = False
        self.rng = np.random.default_rng(seed)
        self.cond = threading.Condition()
        self._side = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    # -- producer -----------------------------------------------------------------------------
    def _stage(self, x: np.ndarray, y: np.ndarray):
        """Host arrays -> tensors on the device (pinned + side-stream copy on CUDA)."""
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        if self._side is None:
            return x.to(self.X.dtype), y.to(self.Y.dtype)
        with torch.cuda.stream(self._side):
            xd = x.pin_memory().to(self.device, self.X.dtype, non_blocking=True)
            yd = y.pin_memory().to(self.device, self.Y.dtype, non_blocking=True)
        self._side.synchronize()  # in the receiving thread: the training stream does not wait
        return xd, yd

    def put(self, x: np.ndarray, y: np.ndarray, keys: np.ndarray, block: bool = True) -> int:
        """Add samples (rows). FIFO/FIRO wait for room when full (unless block=False, which then
        stores what fits); returns how many were stored."""
        keys = np.asarray(keys, dtype=np.int64)
        xd, yd = self._stage(x, y)
        done = 0
        with self.cond:
            while done < len(keys):
                if self.policy == "reservoir":
                    m = min(len(keys) - done, self.capacity)
                else:
                    while self.size == self.capacity and block and not self.closed:
                        self.cond.wait(0.1)
                    m = min(len(keys) - done, self.capacity - self.size)
                    if m == 0:
                        break
                self._store(xd[done:done + m], yd[done:done + m], keys[done:done + m])
                done += m
            if self.size >= self.watermark:
                self.started = True
            self.cond.notify_all()
        return done

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
        """No more input: FIFO/FIRO serve what is left regardless of the watermark."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    # -- consumer -----------------------------------------------------------------------------
    def ready(self, batch: int) -> bool:
        if self.size == 0 or not (self.started or self.closed):
            return False
        if self.policy == "reservoir":
            return True
        return self.size >= batch or self.closed

    def get(self, batch: int, timeout: float = 0.1, out=None):
        """(x, y) of up to `batch` samples, or None if none can be served within `timeout`.
        `out`: preallocated (x, y) tensors to gather into (the static inputs of a captured step)."""
        with self.cond:
            if not self.ready(batch):
                self.cond.wait_for(lambda: self.ready(batch), timeout)
                if not self.ready(batch):
                    return None
            if self.policy == "fifo":
                m = min(batch, self.size)
                slots = (self.head + np.arange(m)) % self.capacity
            else:
                m = min(batch, self.size)
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

    # -- bookkeeping --------------------------------------------------------------------------
    def seen_counts(self) -> np.ndarray:
        """How often each sample that ever entered was served (evicted ones included)."""
        return self.seen_table()[1]

    def seen_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, seen counts) of every sample that ever entered."""
        with self.cond:
            p = self._present()
            return np.concatenate([self.retired_key, self.key[p]]), np.concatenate([self.retired_seen, self.seen[p]])

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
                    "retired_seen": torch.from_numpy(self.retired_seen.copy()),
                    "retired_key": torch.from_numpy(self.retired_key.copy()), "arrived": self.arrived,
                    "served": self.served, "evicted": self.evicted, "started": self.started,
                    "rng_state": str(self.rng.bit_generator.state)}

    def load_state_dict(self, s: dict):
        import ast

        with self.cond:
            n = len(s["key"])
            if n > self.capacity:
                raise ValueError(f"checkpoint buffer holds {n} samples: expected at most capacity {self.capacity}")
            self.size, self.head = n, 0
            self.X[:n] = s["X"].to(self.device)
            self.Y[:n] = s["Y"].to(self.device)
            self.key[:n], self.seen[:n] = s["key"].numpy(), s["seen"].numpy()
            self.order[:n] = np.arange(n)
            self.retired_seen = s["retired_seen"].numpy().copy()
            self.retired_key = s["retired_key"].numpy().copy()
            self.arrived, self.served, self.evicted = int(s["arrived"]), int(s["served"]), int(s["evicted"])
            self.started = bool(s["started"])
            self.rng.bit_generator.state = ast.literal_eval(s["rng_state"])
