"""Online streamed training against its limit and against offline training, on one device.

(a) limit: the same MLP and batch with the data already on the device, fastest step available
    (fused Adam + captured CUDA graph on a GPU; eager PyTorch on the CPU);
(b) online: K concurrent FOM clients streaming over ZeroMQ, one run per buffer policy;
(c) offline: the same MLP from the HDF5 snapshots (DataLoader), same budget;
(d) ensemble: simulations streamed per minute with one client process per simulation (start-up
    paid every time, the launcher before issue 14) against persistent client processes
    (`surrogate.online.simulations_per_client`), with a 1 s training budget so the ensemble is
    what is timed;
(e) ingest: messages/s one live receiver takes (tag check, decode, ledger, buffer) at 4 KiB.
Prints training samples/s, ingest samples/s and MB/s, GPU utilization, the ratios online/limit and
online/offline, and the test errors of online (many distinct simulations) vs offline (few).
Columns `sims`: simulations with at least one sample trained on; `recv`: simulations received.
Every figure is labelled with the device it was measured on; the last line is a JSON object.

    .venv/bin/python benchmarks/streaming.py [--study config/studies/heat.yaml] [--budget 20]
        [--mesh 32] [--steps 50] [--clients 2] [--batch B] [--backend petsc|scipy] [--ensemble-only]

On a GPU machine without PETSc: `--backend scipy` (the reference of issue 14: --mesh 99 --batch 1024,
MLP 6 -> 256 -> 256 -> 100^2, online reservoir throughput as a fraction of the CUDA-graph limit).
"""
from __future__ import annotations

import argparse
import json
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
    """fn() and the mean GPU utilization while it ran ('n/a' without nvidia-smi)."""
    if not (torch.cuda.is_available() and shutil.which("nvidia-smi")):
        return fn(), "n/a"
    s = GpuSampler()
    s.start()
    try:
        out = fn()
    finally:
        s.stop.set()
        s.join()
    return out, s.mean()


def limit(device, n_in, n_out, study, seconds):
    """Steps on random data already on the device, fastest path (graph captured up front)."""
    from surrogates.nn import MLP, Trainer

    s = study["surrogate"]
    if device.type == "cpu":
        torch.set_num_threads(s["cpu_threads"])
    torch.manual_seed(0)
    t = Trainer(MLP(n_in, n_out, s["width"], s["depth"]), s["lr"], device=device, graph=True,
                batch_size=s["batch_size"])
    t.prepare()
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


def configure(work: Path, cfg: dict) -> dict:
    from rom import config

    (work / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    cli("-m", "rom", "configure", "--config", work / "cfg.yaml", "--out", work / "study.yaml")
    return config.load(work / "study.yaml")


def ensemble_rate(work: Path, cfg: dict, per_client: int, label: str) -> dict:
    """Simulations per minute of the study's ensemble (server start to the last bye)."""
    from rom import artefacts

    cfg = json.loads(json.dumps(cfg))
    cfg["surrogate"].update(budget_seconds=1, budget_batches=0)
    cfg["surrogate"]["online"]["simulations_per_client"] = per_client
    d = work / label
    d.mkdir(exist_ok=True)
    configure(d, cfg)
    cli("-m", "surrogates", "train-online", "--study-config", d / "study.yaml", "--policy", "reservoir",
        "--model", d / "m.pt", "--history", d / "h.h5", "--client-logs", d / "logs")
    at = artefacts.read(d / "h.h5").attrs
    return {"simulations": int(at["simulations_done"]), "seconds": float(at["ensemble_seconds"]),
            "processes": int(at["client_processes"]),
            "per_minute": 60 * int(at["simulations_done"]) / float(at["ensemble_seconds"])}


def ingest_rate(n: int = 20_000, nodes: int = 1024) -> float:
    """Messages/s through a live Receiver (HMAC check, decode, ledger, Reservoir on the CPU) from
    one PUSH socket, 4 KiB float32 fields."""
    import zmq

    from surrogates.nn import Scaling

    torch.set_num_threads(1)  # as the server on the CPU (surrogate.cpu_threads)
    from surrogates.streaming import protocol
    from surrogates.streaming.buffers import Buffer
    from surrogates.streaming.server import Ledger, Receiver, bind
    from surrogates.streaming.settings import Settings

    key, mu = protocol.new_key(), np.full(5, 0.5)
    steps = 1000
    expect = protocol.Expect(nodes, np.tile([0.0, 1.0], (5, 1)), 1.0, steps - 1)
    sock, address = bind(Settings(), expect)
    rx = Receiver(sock, Buffer("reservoir", 4000, 6, nodes, watermark=500), Ledger(n // steps + 1, steps),
                  {c: mu for c in range(n // steps + 1)}, Scaling(expect.bounds, 1.0), expect, 16, key)
    msgs = [protocol.encode_step(k // steps, mu, k % steps, (k % steps) / steps, np.zeros(nodes, np.float32), key=key)
            for k in range(n)]
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(address)
    rx.start()
    t0 = time.perf_counter()
    for m in msgs:
        push.send_multipart(m)
    while rx.counts["accepted"] < n:
        time.sleep(0.001)
    dt = time.perf_counter() - t0
    rx.stop()
    push.close(0)
    sock.close(0)
    return n / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", help="a study config to use as it is (e.g. config/studies/heat.yaml); "
                    "default: the benchmark's own heat study from the options below")
    ap.add_argument("--budget", type=float, default=20.0, help="training seconds per run")
    ap.add_argument("--mesh", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--clients", type=int, default=2, help="K concurrent clients")
    ap.add_argument("--simulations", type=int, default=48, help="online ensemble size")
    ap.add_argument("--offline", type=int, default=4, help="offline train simulations")
    ap.add_argument("--batch", type=int, help="batch size (default: the study's)")
    ap.add_argument("--backend", default="petsc", choices=["petsc", "scipy"])
    ap.add_argument("--policies", default="reservoir,firo,fifo")
    ap.add_argument("--ensemble-only", action="store_true", help="only (d) and (e)")
    ap.add_argument("--skip-ensemble", action="store_true", help="skip (d)")
    ap.add_argument("--keep", help="folder to keep the runs in (default: a temporary one)")
    a = ap.parse_args()

    from rom import artefacts
    from surrogates.nn import pick_device

    work = Path(a.keep or tempfile.mkdtemp(prefix="bench_streaming_"))
    work.mkdir(parents=True, exist_ok=True)
    if a.study:
        cfg = yaml.safe_load(Path(a.study).read_text())
        cfg.setdefault("simulate", {})["backend"] = a.backend
        cfg["simulate"]["chunk_size"] = 4096  # one simulate call per set (chunks only split jobs)
        cfg["surrogate"].setdefault("online", {})["backend"] = a.backend
    else:
        cfg = {"name": "bench_stream", "problem": {"name": "heat", "mesh": {"n": a.mesh}, "dt": 0.25 / a.steps,
                                                    "steps": a.steps},
               "design": {"method": "sobol", "train": {"size": a.offline, "seed": 11}, "test": {"size": 8, "seed": 12}},
               "simulate": {"chunk_size": 64, "backend": a.backend},
               "surrogate": {"enabled": True, "budget_seconds": a.budget, "validate_every_seconds": 1.0,
                             "checkpoint_every_seconds": 1e6, "buffer": {"capacity": 4000, "watermark": 500},
                             "online": {"simulations": a.simulations, "max_running": a.clients,
                                        "backend": a.backend}}}
    cfg["include_studies"] = []
    if a.batch:
        cfg["surrogate"]["batch_size"] = a.batch
    study = configure(work, cfg)
    s = study["surrogate"]
    device = pick_device(s["device"])
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    label = "GPU" if device.type == "cuda" else "CPU"
    n_out = (study["problem"]["mesh"]["n"] + 1) ** 2
    print(f"device: {device} ({machine}); load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}; "
          f"study {study['name']}: mesh {study['problem']['mesh']['n']} ({n_out} nodes), {study['problem']['steps']} "
          f"steps, MLP {s['width']}x{s['depth']}, batch {s['batch_size']}, budget {s['budget_seconds']:g} s per run, "
          f"K = {s['online']['max_running']} clients ({a.backend}), {s['online']['simulations']} streamed simulations")
    out = {"device": str(device), "machine": machine, "figures_measured_on": label, "study": study["name"]}

    if not a.skip_ensemble:
        one = ensemble_rate(work, cfg, 1, "ensemble_per_process")
        many = ensemble_rate(work, cfg, s["online"]["simulations_per_client"], "ensemble_persistent")
        print(f"(d) ensemble [{label} machine]: one process per simulation {one['per_minute']:.0f} simulations/min "
              f"({one['simulations']} in {one['seconds']:.1f} s, {one['processes']} processes); persistent "
              f"{many['per_minute']:.0f}/min ({many['simulations']} in {many['seconds']:.1f} s, {many['processes']} "
              f"processes): {many['per_minute'] / one['per_minute']:.1f}x")
        out["ensemble"] = {"per_process": one, "persistent": many, "speedup": many["per_minute"] / one["per_minute"]}
    rate = ingest_rate()
    print(f"(e) ingest [{label} machine]: {rate:,.0f} messages/s at 4 KiB (authenticated, validated, booked, buffered)")
    out["ingest_messages_per_s"] = rate
    if a.ensemble_only:
        print(json.dumps(out))
        return

    cli("-m", "rom", "sample", "--study-config", work / "study.yaml", "--out", work / "parameters.h5")
    for part in ("train", "test"):
        cli("-m", "rom", "simulate", "--study-config", work / "study.yaml", "--parameters", work / "parameters.h5",
            "--set", part, "--out", work / f"{part}.h5")
    from rom import config

    lim, ms = limit(device, len(config.parameter_space(study)[0]) + 1, n_out, study, min(s["budget_seconds"], 10.0))
    print(f"(a) limit [{label}] (data on the device{', fused Adam + CUDA graph' if device.type == 'cuda' else ', eager'}): "
          f"{lim:,.0f} samples/s ({ms:.3f} ms/step)")
    out["limit"] = {"samples_per_s": lim, "ms_per_step": ms}

    rows = {}

    def run(name, *args):
        _, util = measured(lambda: cli("-m", "surrogates", *args))
        ds = artefacts.read(work / f"{name}.h5")
        at = ds.attrs
        online = at["mode"] == "online"
        wall = float(at.get("wall_seconds", at["train_seconds"]))
        rows[name] = dict(train=at["batches"] * at["batch_size"] / max(at["train_seconds"], 1e-9),
                          ingest=at["samples_received"] / wall if online else np.nan,
                          mb=at["bytes_received"] / wall / 1e6 if online else np.nan,
                          util=util, sims=int(at["distinct_simulations"]), recv=int(at["simulations_received"]),
                          seconds=float(at["train_seconds"]), dup=int(at.get("duplicates", 0)),
                          dropped=int(at.get("dropped", 0)), val=float(ds["val_loss"].values[-1]))

    run("offline", "train-offline", "--study-config", work / "study.yaml", "--train", work / "train.h5", "--test",
        work / "test.h5", "--model", work / "offline.pt", "--history", work / "offline.h5")
    for p in a.policies.split(","):
        run(f"online_{p}", "train-online", "--study-config", work / "study.yaml", "--policy", p, "--test",
            work / "test.h5", "--model", work / f"online_{p}.pt", "--history", work / f"online_{p}.h5",
            "--client-logs", work / f"logs_{p}")
    cli("-m", "surrogates", "evaluate-surrogate", "--study-config", work / "study.yaml", "--test", work / "test.h5",
        "--models", *[f"{k}={work / k}.pt" for k in rows], "--out", work / "metrics.h5")
    met = artefacts.read(work / "metrics.h5")
    err = dict(zip(met["model"].values, met["relative_l2_error"].values.mean(axis=(1, 2))))

    off = rows["offline"]["train"]
    print(f"[{label}] {'run':18s} {'train s':>8s} {'samples/s':>11s} {'/limit':>7s} {'/offline':>8s} {'ingest/s':>9s} "
          f"{'MB/s':>7s} {'GPU':>6s} {'sims':>5s} {'recv':>5s} {'dup':>4s} {'drop':>5s} {'val MSE':>9s} {'test rel L2':>11s}")
    for k, r in rows.items():
        print(f"[{label}] {k:18s} {r['seconds']:8.1f} {r['train']:11,.0f} {r['train'] / lim:7.2f} {r['train'] / off:8.2f} "
              f"{r['ingest']:9.1f} {r['mb']:7.2f} {r['util']:>6s} {r['sims']:5d} {r['recv']:5d} {r['dup']:4d} "
              f"{r['dropped']:5d} {r['val']:9.2e} {err[k]:11.3e}")
    best = min((k for k in rows if k != "offline"), key=lambda k: err[k])
    print(f"claim (equal training time, {label}): online {best} over {rows[best]['sims']} distinct simulations: test "
          f"error {err[best]:.3e}; offline over {rows['offline']['sims']}: {err['offline']:.3e} "
          f"({'at least as good' if err[best] <= err['offline'] else 'WORSE'} online)")
    out["runs"] = {k: {**{q: (None if isinstance(v, float) and not np.isfinite(v) else v) for q, v in r.items()},
                       "test_error": float(err[k]), "over_limit": r["train"] / lim} for k, r in rows.items()}
    out["online_over_limit"] = {k: r["train"] / lim for k, r in rows.items() if k != "offline"}
    out["online_at_least_as_good"] = bool(err[best] <= err["offline"])
    if a.keep:
        print(f"runs kept in {work}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
