"""Online streamed training against its limit and against offline training, on one device.

(a) limit: the same MLP and batch with the data already on the device, fastest step available
    (fused Adam + captured CUDA graph on a GPU; eager PyTorch on the CPU);
(b) online: K concurrent FOM clients streaming over ZeroMQ, one run per buffer policy;
(c) offline: the same MLP from the HDF5 snapshots (DataLoader), same budget.
Prints training samples/s, ingest samples/s and MB/s, GPU utilization, the ratios online/limit and
online/offline, and the test errors of online (many distinct simulations) vs offline (few).
Columns `sims`: simulations with at least one sample trained on; `recv`: simulations received.

    .venv/bin/python benchmarks/streaming.py [--budget 20] [--mesh 32] [--steps 50] [--clients 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
os.environ.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")


def cli(*args):
    out = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{args[:3]} failed:\n{out.stderr[-3000:]}")
    return out.stdout


class GpuSampler(threading.Thread):
    """nvidia-smi utilization every 0.5 s while a run is going."""

    def __init__(self):
        super().__init__(daemon=True)
        self.values, self.stop = [], threading.Event()

    def run(self):
        while not self.stop.wait(0.5):
            q = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True)
            if q.returncode == 0 and q.stdout.strip():
                self.values.append(float(q.stdout.split()[0]))

    def mean(self):
        return f"{np.mean(self.values):.0f}%" if self.values else "n/a"


def measured(fn):
    if not (torch.cuda.is_available() and shutil.which("nvidia-smi")):
        return fn(), "n/a"
    s = GpuSampler()
    s.start()
    try:
        return fn(), None
    finally:
        s.stop.set()
        s.join()
        measured.util = s.mean()


def limit(device, n_in, n_out, study, seconds):
    """Steps on random data already on the device, fastest path."""
    from surrogates.nn import MLP, Trainer

    s = study["surrogate"]
    if device.type == "cpu":
        torch.set_num_threads(s["cpu_threads"])
    torch.manual_seed(0)
    t = Trainer(MLP(n_in, n_out, s["width"], s["depth"]), s["lr"], device=device, graph=True,
                batch_size=s["batch_size"])
    X = torch.rand(8192, n_in, device=device)
    Y = torch.rand(8192, n_out, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    sx, sy = (t.static_x, t.static_y) if t.use_graph else (None, None)

    def batch():
        idx = torch.randint(0, len(X), (s["batch_size"],), device=device, generator=g)
        if sx is not None:
            torch.index_select(X, 0, idx, out=sx)
            torch.index_select(Y, 0, idx, out=sy)
            return sx, sy
        return X[idx], Y[idx]

    for _ in range(20):
        t.step(*batch())
    if device.type == "cuda":
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            t.step(*batch())
        n += 50
        if device.type == "cuda":
            torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return n * s["batch_size"] / dt, dt / n * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=20.0, help="training seconds per run")
    ap.add_argument("--mesh", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--clients", type=int, default=2, help="K concurrent clients")
    ap.add_argument("--simulations", type=int, default=48, help="online ensemble size")
    ap.add_argument("--offline", type=int, default=4, help="offline train simulations")
    ap.add_argument("--backend", default="petsc", choices=["petsc", "scipy"])
    ap.add_argument("--policies", default="reservoir,firo,fifo")
    ap.add_argument("--keep", help="folder to keep the runs in (default: a temporary one)")
    a = ap.parse_args()

    from rom import config
    from surrogates.nn import pick_device

    work = Path(a.keep or tempfile.mkdtemp(prefix="bench_streaming_"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = {"name": "bench_stream", "problem": {"name": "heat", "mesh": {"n": a.mesh}, "dt": 0.25 / a.steps,
                                                "steps": a.steps},
           "design": {"method": "sobol", "train": {"size": a.offline, "seed": 11}, "test": {"size": 8, "seed": 12}},
           "simulate": {"chunk_size": 64, "backend": a.backend},
           "surrogate": {"enabled": True, "budget_seconds": a.budget, "validate_every_seconds": 1.0,
                         "checkpoint_every_seconds": 1e6, "buffer": {"capacity": 4000, "watermark": 500},
                         "online": {"simulations": a.simulations, "max_running": a.clients, "backend": a.backend}}}
    (work / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    study_path = work / "study.yaml"
    cli("-m", "rom", "configure", "--config", work / "cfg.yaml", "--out", study_path)
    study = config.load(study_path)
    device = pick_device(study["surrogate"]["device"])
    cli("-m", "rom", "sample", "--study-config", study_path, "--out", work / "parameters.h5")
    for s in ("train", "test"):
        cli("-m", "rom", "simulate", "--study-config", study_path, "--parameters", work / "parameters.h5",
            "--set", s, "--out", work / f"{s}.h5")
    n_out = (a.mesh + 1) ** 2
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPU cores); torch {torch.__version__}; mesh {a.mesh} ({n_out} nodes), {a.steps} steps, "
          f"MLP {study['surrogate']['width']}x{study['surrogate']['depth']}, batch {study['surrogate']['batch_size']}, "
          f"budget {a.budget:g} s per run, K = {a.clients} clients ({a.backend})")

    lim, ms = limit(device, 6, n_out, study, min(a.budget, 10.0))
    print(f"(a) limit (data on the device{', CUDA graph' if device.type == 'cuda' else ', eager'}): "
          f"{lim:,.0f} samples/s ({ms:.3f} ms/step)")

    from rom import artefacts

    rows = {}

    def run(label, *args):
        t0 = time.perf_counter()
        _, util = measured(lambda: cli("-m", "surrogates", *args))
        ds = artefacts.read(work / f"{label}.h5")
        at = ds.attrs
        train_rate = at["batches"] * at["batch_size"] / max(at["train_seconds"], 1e-9)
        wall = float(at.get("wall_seconds", time.perf_counter() - t0))
        rows[label] = dict(train=train_rate, ingest=at["samples_received"] / wall if at["mode"] == "online" else np.nan,
                           mb=at["bytes_received"] / wall / 1e6 if at["mode"] == "online" else np.nan,
                           util=util or getattr(measured, "util", "n/a"), sims=int(at["distinct_simulations"]), recv=int(at["simulations_received"]),
                           seconds=float(at["train_seconds"]), dup=int(at.get("duplicates", 0)),
                           dropped=int(at.get("dropped", 0)), msgs=int(at.get("messages", 0)),
                           val=float(ds["val_loss"].values[-1]))

    run("offline", "train-offline", "--study-config", study_path, "--train", work / "train.h5", "--test",
        work / "test.h5", "--model", work / "offline.pt", "--history", work / "offline.h5")
    policies = a.policies.split(",")
    for p in policies:
        run(f"online_{p}", "train-online", "--study-config", study_path, "--policy", p, "--test", work / "test.h5",
            "--model", work / f"online_{p}.pt", "--history", work / f"online_{p}.h5",
            "--client-logs", work / f"logs_{p}")
    models = [f"{k}={work / k}.pt" for k in rows]
    cli("-m", "surrogates", "evaluate-surrogate", "--study-config", study_path, "--test", work / "test.h5",
        "--models", *models, "--out", work / "metrics.h5")
    met = artefacts.read(work / "metrics.h5")
    err = dict(zip(met["model"].values, met["relative_l2_error"].values.mean(axis=(1, 2))))

    off = rows["offline"]["train"]
    head = f"{'run':18s} {'train s':>8s} {'samples/s':>11s} {'/limit':>7s} {'/offline':>8s} {'ingest/s':>9s} " \
           f"{'MB/s':>7s} {'GPU':>6s} {'sims':>5s} {'recv':>5s} {'dup':>4s} {'drop':>5s} {'val MSE':>9s} {'test rel L2':>11s}"
    print(head)
    for k, r in rows.items():
        print(f"{k:18s} {r['seconds']:8.1f} {r['train']:11,.0f} {r['train'] / lim:7.2f} {r['train'] / off:8.2f} "
              f"{r['ingest']:9.1f} {r['mb']:7.2f} {r['util']:>6s} {r['sims']:5d} {r['recv']:5d} {r['dup']:4d} {r['dropped']:5d} "
              f"{r['val']:9.2e} {err[k]:11.3e}")
    best = min((k for k in rows if k != "offline"), key=lambda k: err[k])
    print(f"claim (equal training time): online {best} over {rows[best]['sims']} distinct simulations: test error "
          f"{err[best]:.3e}; offline over {rows['offline']['sims']}: {err['offline']:.3e} "
          f"({'lower' if err[best] < err['offline'] else 'NOT lower'} online, "
          f"{rows[best]['sims'] / rows['offline']['sims']:.0f}x the simulations)")
    print(f"runs kept in {work}" if a.keep else "")


if __name__ == "__main__":
    main()
