"""One streamed training run from a validated study, and its offline baseline: the model and
device set-up, the run's secret, the ensemble, the server, the history artefact and the model file.
The CLI commands (surrogates/commands/stream.py) only parse arguments and call these."""
from __future__ import annotations

import os
import shlex
import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import xarray as xr

from rom import artefacts
from rom.errors import UserError
from rom.hifi import registry
from rom.paths import digest

from . import protocol
from .settings import settings as run_settings
from .settings import validate_settings


class StreamingError(UserError):
    """A run that cannot proceed; the message is one line naming what was wrong."""


def _log(msg):
    print(msg, flush=True)


def setup(study: dict):
    """(problem, parameter names, bounds, Scaling, device, seed) of a study's surrogate runs."""
    import torch

    from surrogates.nn import Scaling, pick_device

    validate_settings(study)
    s = study["surrogate"]
    problem = registry.make_problem(study["problem"])
    if not problem.transient:
        raise StreamingError(f"problem.name = {problem.name}: the streamed surrogate expects a transient problem (heat)")
    try:
        device = pick_device(s["device"])
    except ValueError as exc:
        raise StreamingError(f"surrogate.{exc}") from None
    if device.type == "cpu":
        # intra-op threads on a shared CPU spin against the clients; one thread is several times faster
        torch.set_num_threads(s["cpu_threads"])
    names, bounds, _ = registry.parameter_space(study)
    return problem, names, bounds, Scaling(bounds, problem.times[-1]), device, s.get("seed", study["seed"])


def make_trainer(study: dict, n_in: int, n_out: int, device, seed: int, ddp: bool = False):
    import torch

    from surrogates.nn import MLP, Trainer

    s = study["surrogate"]
    torch.manual_seed(seed)  # same initial weights online, offline and on every DDP rank
    model = MLP(n_in, n_out, s["width"], s["depth"])
    return Trainer(model, s["lr"], s["lr_decay"], s["lr_decay_batches"], device, s["amp"], s["capture_graph"],
                   s["batch_size"], ddp=ddp)


def validation_set(path, problem, scaling, device):
    import torch

    from surrogates.offline import snapshot_set

    if not path:
        return None
    X, Y, _, _ = snapshot_set(path, problem, scaling)
    return torch.from_numpy(X).to(device), torch.from_numpy(Y).to(device)


def history_dataset(hist: dict, attrs: dict, extra: dict | None = None) -> xr.Dataset:
    data = {k: ("record", v) for k, v in hist.items()}
    data["wall"] = ("record", hist["wall"], {"units": "s", "long_name": "training wall time"})
    data.update(extra or {})
    return xr.Dataset(data, attrs=attrs)


def ensemble(study: dict, names, bounds, seed: int):
    """(initial parameter vectors, redraw(k)) of the streamed ensemble (seeded)."""
    from rom.design import scale, unit_design

    dists = registry.parameter_space(study)[2]
    method = study["design"]["method"] if study["design"]["method"] in ("lhs", "sobol", "random") else "lhs"
    mus = scale(unit_design(method, study["surrogate"]["online"]["simulations"], len(names), seed + 101), bounds, dists)

    def redraw(k):
        return scale(np.random.default_rng([seed, 202, k]).random(len(names)), bounds, dists)

    return mus, redraw


def _distributed(device):
    """(rank, world, device) under torchrun; the device of this rank is set before NCCL starts."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        torch.cuda.set_device(device)  # else every rank's NCCL communicator lands on cuda:0
    # a rank that fails leaves the others in a collective: give up after two minutes, not thirty
    kw = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=120), **kw)
    return dist.get_rank(), dist.get_world_size(), device


def _broadcast(obj, world: int):
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def train_online(study: dict, study_path: str | Path, policy: str, model_path: str | Path, history_path: str | Path,
                 checkpoint: str | Path | None = None, test: str | Path | None = None,
                 client_logs: str | Path | None = None, faults: dict | None = None,
                 kill_after_checkpoint: int | None = None, log=_log) -> dict | None:
    """Train online while the ensemble streams; write the history artefact and the model (rank 0).
    faults: client id -> {"kind": "kill" | "hang", "step": k} on its first attempt (tests).
    Returns the run's summary on rank 0, None on the other ranks."""
    import torch
    import zmq

    from surrogates.nn import save_model

    from .client import Assignment, Simulation
    from .launcher import STATES, Launcher, LauncherError, fom_command
    from .server import OnlineTraining, TrainingDiverged

    s, on = study["surrogate"], study["surrogate"]["online"]
    problem, names, bounds, scaling, device, seed = setup(study)
    rank, world, device = _distributed(device)
    expect = protocol.Expect(problem.mesh.n_nodes, bounds, float(problem.times[-1]), problem.steps)
    trainer = make_trainer(study, len(names) + 1, expect.field_size, device, seed, world > 1)
    settings = run_settings(study, policy, rank)
    checkpoint = Path(checkpoint or Path(model_path).with_suffix(".ckpt"))
    key_file = checkpoint.with_suffix(".key")
    key = _broadcast(protocol.new_key() if rank == 0 else None, world)
    mus, redraw = ensemble(study, names, bounds, seed)
    server = launcher = None
    if rank == 0:
        protocol.write_key(key_file, key)
        log_dir = Path(client_logs) if client_logs else None
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        argv = shlex.split(on["client_command"]) if on.get("client_command") else fom_command(study_path, on["backend"])
        # a client unable to deliver a message for this long concludes the server is gone (another host)
        stall = 2 * max(on["client_timeout"], on["client_startup_timeout"])

        def environment(sims):
            job = Assignment([Simulation(x.id, x.mu, server.addresses[x.id % world],
                                         x.fault if x.first_attempt else None) for x in sims],
                             key, (socket.gethostname(), os.getpid()), stall, str(key_file))
            return job.environment()

        launcher = Launcher(argv, environment, mus, redraw, on["max_running"], on["client_timeout"],
                            on["max_crashes"], on["client_ranks"], on["launcher"], log_dir, faults,
                            on["client_startup_timeout"], on["simulations_per_client"])
    tag = digest([study[k] for k in ("problem", "parameters", "design", "surrogate", "seed")]
                        + [policy, world, sorted((faults or {}).items()), kill_after_checkpoint])
    try:
        try:
            server = OnlineTraining(settings, trainer, scaling, expect, 2 * len(mus), key, launcher,
                                    validation_set(test, problem, scaling, device), checkpoint, rank, world, log,
                                    tag=tag, kill_after_checkpoint=kill_after_checkpoint)
        except zmq.ZMQError as exc:
            raise StreamingError(f"surrogate.online.bind = {on['bind']}, port = {settings.port}: cannot bind ({exc}); "
                                 f"expected an address of this machine and a free port (0 picks one)") from None
        try:
            result = server.run()
        except (LauncherError, TrainingDiverged) as exc:
            raise StreamingError(str(exc)) from None
        summary = server.summary()
    finally:
        if rank == 0:
            key_file.unlink(missing_ok=True)
    if rank != 0:
        torch.distributed.destroy_process_group()
        return None
    ledger = summary["ledger"]
    if len(ledger) == 0:
        raise StreamingError("no time step was received from any client; see the client logs"
                             + (f" in {client_logs}" if client_logs else ""))
    total, seen_key, seen = summary["counts"], summary["seen_key"], summary["seen"]
    steps = problem.steps + 1
    trained_sims = np.unique(seen_key[seen > 0] // steps)
    table = launcher.table()
    states = np.array(STATES)[table["state"]]
    attrs = {"policy": policy, "device": str(device), "world_size": world, "mode": "online",
             "train_seconds": result["train_seconds"], "wall_seconds": result["wall_seconds"],
             "ensemble_seconds": result["ensemble_seconds"], "batches": trainer.batches, "batch_size": s["batch_size"],
             "rank_batches": str(summary["rank_batches"]), "rank_devices": str(summary["rank_devices"]),
             "resumed_from_batch": summary["resumed_from_batch"],
             "distinct_simulations": int(len(trained_sims)),
             "simulations_received": int(len(np.unique(ledger[:, 0]))),
             "simulations_done": int((states == "done").sum()), "simulations_planned": int(len(mus)),
             "samples_received": total["accepted"], "duplicates": total["duplicates"],
             "dropped": total["dropped"], "connections_dropped": total["connections_dropped"],
             "messages": total["messages"], "bytes_received": total["bytes"],
             "dropped_reasons": str(summary["dropped"]), "crashes": int(table["crashes"].sum()),
             "restarts": int(table["restarts"].sum()), "redraws": int(table["redraws"]),
             "client_processes": launcher.started_processes}
    ds = history_dataset(summary["history"], attrs, {
        "ledger_client": ("entry", ledger[:, 0]), "ledger_step": ("entry", ledger[:, 1]),
        "seen_count": ("sample", seen, {"long_name": "times each buffered sample was trained on"}),
        "seen_client": ("sample", seen_key // steps), "seen_step": ("sample", seen_key % steps),
        "client_mu": (("client", "parameter"), table["mu"]), "client_state": ("client", artefacts.strings(states)),
        "client_crashes": ("client", table["crashes"]),
    })
    ds = ds.assign_coords(client=table["ids"], parameter=artefacts.strings(names))
    artefacts.write(ds, history_path, study, "surrogate_history")
    save_model(model_path, trainer.module, scaling, {"policy": policy, "mode": "online"})
    if world > 1:
        torch.distributed.destroy_process_group()
    reasons = f" {summary['dropped']}" if summary["dropped"] else ""
    log(f"done: {trainer.batches} batches in {result['train_seconds']:.1f} s, {total['accepted']} samples "
        f"from {attrs['simulations_received']} simulations ({len(trained_sims)} trained on), {total['duplicates']} "
        f"duplicates, {total['dropped']} dropped{reasons}; {launcher.started_processes} client processes, "
        f"ensemble {result['ensemble_seconds']:.1f} s")
    return {**attrs, "dropped_reasons": summary["dropped"]}


def train_offline(study: dict, train: str | Path, model_path: str | Path, history_path: str | Path,
                  test: str | Path | None = None, log=_log) -> dict:
    """The same MLP trained from the snapshot files for the same budget (the baseline)."""
    from surrogates.nn import save_model
    from surrogates.offline import snapshot_set
    from surrogates.offline import train_offline as run

    s = study["surrogate"]
    problem, names, bounds, scaling, device, seed = setup(study)
    X, Y, mu, _ = snapshot_set(train, problem, scaling)
    if len(X) == 0:
        raise StreamingError(f"{train}: no converged train sample to learn from")
    trainer = make_trainer(study, X.shape[1], Y.shape[1], device, seed)
    hist, epochs = run(trainer, X, Y, s["batch_size"], s["budget_seconds"], seed,
                       validation_set(test, problem, scaling, device), s["validate_every_seconds"],
                       s["budget_batches"], s["offline"]["num_workers"], log)
    if not trainer.finite():
        raise StreamingError(f"offline training diverged by batch {trainer.batches}; no model saved "
                             f"(lower surrogate.lr)")
    h = hist.arrays()
    attrs = {"policy": "offline", "device": str(device), "mode": "offline", "train_seconds": float(h["wall"][-1]),
             "batches": trainer.batches, "batch_size": s["batch_size"], "epochs": epochs,
             "distinct_simulations": len(mu), "simulations_received": len(mu), "samples_received": len(X),
             "bytes_received": int(Y.nbytes)}
    artefacts.write(history_dataset(h, attrs), history_path, study, "surrogate_history")
    save_model(model_path, trainer.module, scaling, {"policy": "offline", "mode": "offline"})
    return attrs
