"""The surrogate network and its training step.

MLP (mu, t) -> nodal field as in the Melissa heat-equation example (Meyer et al.) (6 -> 256 -> 256 -> mesh nodes, ReLU, MSE,
Adam). `Trainer.step(x, y)` is one optimizer step. On CUDA it uses a fused, capturable Adam and
replays the whole step (forward, backward, optimizer) as a captured CUDA graph on static input
tensors: a batch is then one index gather into those tensors plus one graph launch. `prepare()`
captures the graph up front (warm-up steps whose effect on the weights and the optimizer state is
undone), before any other thread uses the device, in the capture mode that restricts only the
capturing thread. The learning rate lives in one device tensor that the graph reads; it is put
back into the optimizer after a checkpoint is loaded (a loaded state brings its own, on the CPU,
which a graph would read once and freeze). bf16 autocast runs without its weight-cast cache (the
cached casts, freed when autocast exits inside the capture, could be reused by later captured
kernels while the graph still reads them).
On the CPU the step is eager PyTorch (the path tested here).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def pick_device(name: str = "auto") -> torch.device:
    """'auto': CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device = {name!r}: no CUDA device is available; expected 'auto' or 'cpu'")
    return torch.device(name)


class MLP(nn.Module):
    def __init__(self, n_in: int, n_out: int, width: int = 256, depth: int = 2):
        super().__init__()
        layers, d = [], n_in
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, n_out))
        self.net = nn.Sequential(*layers)
        self.shape = {"n_in": n_in, "n_out": n_out, "width": width, "depth": depth}

    def forward(self, x):
        return self.net(x)


class Trainer:
    """Model + Adam + exponential learning-rate decay; `graph` captures the step on CUDA."""

    def __init__(self, model: nn.Module, lr: float = 1e-3, lr_decay: float = 1.0, lr_decay_batches: int = 1000,
                 device: torch.device | str = "cpu", amp: bool = False, graph: bool = True, batch_size: int = 0,
                 ddp: bool = False):
        self.device = torch.device(device)
        self.module = model.to(self.device)
        cuda = self.device.type == "cuda"
        if ddp:  # gradients averaged over the ranks of torch.distributed (gloo on CPU, nccl on GPUs)
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.module, device_ids=[self.device] if cuda else None)
            graph = False  # DDP's all-reduce hooks are not captured here
        else:
            self.model = self.module
        self.lr0, self.lr_decay, self.lr_decay_batches = lr, lr_decay, lr_decay_batches
        self.use_graph = bool(graph and cuda and batch_size > 0)
        # A captured optimizer step reads the learning rate from a device tensor updated in place.
        self._lr = torch.tensor(lr, device=self.device) if self.use_graph else lr
        kw = {"fused": True} if cuda else {"foreach": True}
        if self.use_graph:
            kw["capturable"] = True
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self._lr, **kw)
        self.amp = bool(amp and cuda)  # bf16 autocast; the CPU path stays float32
        self.batches = 0
        self.batch_size = batch_size
        self._graph = None
        if self.use_graph:
            n_in, n_out = model.shape["n_in"], model.shape["n_out"]
            self.static_x = torch.zeros(batch_size, n_in, device=self.device)
            self.static_y = torch.zeros(batch_size, n_out, device=self.device)

    def lr(self) -> float:
        return self.lr0 * self.lr_decay ** (self.batches / self.lr_decay_batches)

    def _set_lr(self):
        for g in self.opt.param_groups:
            if torch.is_tensor(g["lr"]):
                g["lr"].fill_(self.lr())
            else:
                g["lr"] = self.lr()

    def _loss(self, x, y):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False):
            return nn.functional.mse_loss(self.model(x).float(), y)

    def _eager(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        loss = self._loss(x, y)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def prepare(self):
        """CUDA graph: warm up on a side stream (allocates the optimizer state), capture one whole
        step, then put the weights and the optimizer state back as they were, in place (the graph
        holds their addresses): the warm-up and capture steps, on the zero static inputs, leave no
        trace. Call it before other threads use the device (the server does, before its receiver
        starts); `step` calls it on first use otherwise."""
        if not self.use_graph or self._graph is not None:
            return
        params = list(self.module.parameters())
        weights = [p.detach().clone() for p in params]
        state = {i: {k: v.clone() for k, v in self.opt.state[p].items() if torch.is_tensor(v)}
                 for i, p in enumerate(params) if p in self.opt.state}
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.opt.zero_grad(set_to_none=True)
                self._loss(self.static_x, self.static_y).backward()
                self.opt.step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(self._graph, capture_error_mode="thread_local"):
            self.static_loss = self._loss(self.static_x, self.static_y)
            self.static_loss.backward()
            self.opt.step()
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
            for i, p in enumerate(params):  # Adam's moments and step count: as saved, or fresh (zero)
                for k, v in self.opt.state[p].items():
                    if torch.is_tensor(v) and i in state:
                        v.copy_(state[i][k])
                    elif torch.is_tensor(v):
                        v.zero_()

    def step(self, x, y) -> torch.Tensor:
        """One optimizer step on (x, y); returns the loss as a 0-d tensor (no host sync)."""
        self._set_lr()
        if self.use_graph and len(x) == self.batch_size:
            self.prepare()
            if x.data_ptr() != self.static_x.data_ptr():
                self.static_x.copy_(x)
                self.static_y.copy_(y)
            self._graph.replay()
            loss = self.static_loss.detach().clone()
        else:
            loss = self._eager(x, y)
        self.batches += 1
        return loss

    def finite(self) -> bool:
        """Every weight finite (one host sync)."""
        with torch.no_grad():
            return bool(torch.stack([torch.isfinite(p).all() for p in self.module.parameters()]).all())

    @torch.no_grad()
    def evaluate(self, x, y, chunk: int = 4096) -> float:
        """Mean squared error over a (possibly large) set, in chunks."""
        self.module.eval()
        total = 0.0
        for i in range(0, len(x), chunk):
            total += float(nn.functional.mse_loss(self.module(x[i:i + chunk]), y[i:i + chunk], reduction="sum"))
        self.module.train()
        return total / max(y.numel(), 1)

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "optimizer": self.opt.state_dict(), "batches": self.batches}

    def load_state_dict(self, s: dict):
        self.module.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])  # moves capturable/fused step counts to the device
        self._graph = None  # new optimizer state tensors: a graph must be captured on them
        for g in self.opt.param_groups:  # our device tensor, not the loaded copy: the graph reads it
            g["lr"] = self._lr
        self.batches = int(s["batches"])
        self._set_lr()


# -- inputs and saved models ------------------------------------------------------------------
class Scaling:
    """Maps (mu, t) to the unit box: parameters by their bounds, time by the final time."""

    def __init__(self, bounds: np.ndarray, t_end: float):
        self.lo, self.hi = np.asarray(bounds, dtype=float).T
        self.t_end = float(t_end) or 1.0

    def inputs(self, mu: np.ndarray, t: np.ndarray) -> np.ndarray:
        mu, t = np.atleast_2d(mu), np.ravel(t)
        return np.column_stack([(mu - self.lo) / (self.hi - self.lo), t / self.t_end]).astype(np.float32)


def save_model(path, model: MLP, scaling: Scaling, meta: dict):
    from rom.artefacts import atomic_path

    blob = {"state": model.state_dict(), "shape": model.shape, "lo": torch.tensor(scaling.lo),
            "hi": torch.tensor(scaling.hi), "t_end": scaling.t_end, "meta": {k: v for k, v in meta.items()}}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_model(path, device="cpu") -> tuple[MLP, Scaling, dict]:
    from rom.artefacts import ArtefactError

    if not Path(path).is_file():
        raise ArtefactError(f"{path}: surrogate model not found; expected the output of train-online/train-offline")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
        model = MLP(**blob["shape"])
        model.load_state_dict(blob["state"])
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise ArtefactError(f"{path}: not a readable surrogate model ({str(exc).splitlines()[0]})") from None
    bounds = np.column_stack([blob["lo"].numpy(), blob["hi"].numpy()])
    return model.to(device).eval(), Scaling(bounds, blob["t_end"]), blob["meta"]
