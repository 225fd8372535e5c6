"""Streamed surrogate training: train-online (server + launcher of the simulation ensemble),
train-offline (the baseline from snapshot files), evaluate-surrogate, figures-surrogate, and
stream-client (one simulation that streams its time steps; started by the launcher)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from rom import artefacts, config
from rom.cli import UserError, add_study_arg


def register(sub):
    p = sub.add_parser("train-online", help="train the MLP surrogate while an ensemble of FOM clients streams "
                       "its time steps (ZeroMQ); run under torchrun for data-parallel ranks")
    add_study_arg(p)
    p.add_argument("--policy", required=True, choices=["fifo", "firo", "reservoir"])
    p.add_argument("--test", help="snapshots/test.h5 for validation (optional)")
    p.add_argument("--model", required=True, help="trained model (.pt)")
    p.add_argument("--history", required=True, help="history artefact (.h5)")
    p.add_argument("--checkpoint", help="checkpoint to write and to resume from (default: <model>.ckpt)")
    p.add_argument("--client-logs", help="folder for the clients' logs")
    p.add_argument("--fault", action="append", default=[], metavar="CLIENT:KIND:STEP",
                   help="fault injection: client CLIENT does KIND (kill|hang) after STEP on its first attempt")
    p.set_defaults(func=train_online)

    p = sub.add_parser("train-offline", help="the same MLP trained from the snapshot files (DataLoader), same budget")
    add_study_arg(p)
    p.add_argument("--train", required=True, help="snapshots/train.h5")
    p.add_argument("--test", help="snapshots/test.h5 for validation (optional)")
    p.add_argument("--model", required=True)
    p.add_argument("--history", required=True)
    p.set_defaults(func=train_offline)

    p = sub.add_parser("evaluate-surrogate", help="relative L2 test errors per time step of trained surrogates")
    add_study_arg(p)
    p.add_argument("--test", required=True)
    p.add_argument("--models", nargs="+", required=True, metavar="LABEL=PATH")
    p.add_argument("--out", required=True)
    p.set_defaults(func=evaluate)

    p = sub.add_parser("figures-surrogate", help="report figures and section of the streamed surrogates")
    add_study_arg(p)
    p.add_argument("--histories", nargs="+", required=True, metavar="LABEL=PATH")
    p.add_argument("--metrics", required=True)
    p.add_argument("--operators", required=True)
    p.add_argument("--loss", required=True)
    p.add_argument("--throughput", required=True)
    p.add_argument("--seen", required=True)
    p.add_argument("--fields", required=True)
    p.add_argument("--section", required=True)
    p.set_defaults(func=figures)

    p = sub.add_parser("stream-client", help="solve one parameter vector and stream every time step to a server")
    add_study_arg(p)
    p.add_argument("--address", required=True, help="tcp://host:port of the server")
    p.add_argument("--client", type=int, required=True, help="client id given by the launcher")
    p.add_argument("--mu", required=True, help="comma-separated parameter values")
    p.add_argument("--backend", choices=["petsc", "scipy"], default="petsc")
    p.add_argument("--watch-pid", type=int, help="exit when this (server) process is gone")
    p.add_argument("--fault", choices=["kill", "hang"], help="fault injection (tests)")
    p.add_argument("--fault-step", type=int, default=-1)
    p.set_defaults(func=stream_client)


# -- shared set-up -----------------------------------------------------------------------------
def _setup(study):
    from surrogates.nn import MLP, Scaling, Trainer, pick_device

    s = study["surrogate"]
    problem = config.make_problem(study)
    if not problem.transient:
        raise UserError(f"problem.name = {problem.name}: the streamed surrogate expects a transient problem (heat)")
    if s["buffer"]["watermark"] > s["buffer"]["capacity"]:
        raise UserError(f"surrogate.buffer.watermark = {s['buffer']['watermark']}: expected at most "
                        f"surrogate.buffer.capacity = {s['buffer']['capacity']}")
    try:
        device = pick_device(s["device"])
    except ValueError as exc:
        raise UserError(f"surrogate.{exc}") from None
    if device.type == "cpu":
        import torch

        # intra-op threads on a shared CPU spin against the clients; one thread is several times faster
        torch.set_num_threads(s["cpu_threads"])
    names, bounds, _ = config.parameter_space(study)
    scaling = Scaling(bounds, problem.times[-1])
    seed = s.get("seed", study["seed"])
    return problem, names, bounds, scaling, device, seed, (MLP, Trainer)


def _make_trainer(study, n_in, n_out, device, seed, ddp=False):
    import torch

    from surrogates.nn import MLP, Trainer

    s = study["surrogate"]
    torch.manual_seed(seed)  # same initial weights online, offline and on every DDP rank
    model = MLP(n_in, n_out, s["width"], s["depth"])
    return Trainer(model, s["lr"], s["lr_decay"], s["lr_decay_batches"], device, s["amp"], s["capture_graph"],
                   s["batch_size"], ddp=ddp)


def _validation(path, problem, scaling, device):
    import torch

    from surrogates.offline import snapshot_set

    if not path:
        return None
    X, Y, _, _ = snapshot_set(path, problem, scaling)
    return torch.from_numpy(X).to(device), torch.from_numpy(Y).to(device)


def _history_dataset(hist: dict, attrs: dict, extra: dict | None = None) -> xr.Dataset:
    data = {k: ("record", v) for k, v in hist.items()}
    data["wall"] = ("record", hist["wall"], {"units": "s", "long_name": "training wall time"})
    data.update(extra or {})
    return xr.Dataset(data, attrs=attrs)


def _log(msg):
    print(msg, flush=True)


# -- commands ----------------------------------------------------------------------------------
def train_online(args):
    import torch

    from rom.design import unit_design, scale
    from surrogates.nn import save_model
    from surrogates.streaming.launcher import STATES, Launcher, LauncherError, client_command
    from surrogates.streaming.server import OnlineTraining, Settings

    study = config.load(args.study_config)
    s, on = study["surrogate"], study["surrogate"]["online"]
    problem, names, bounds, scaling, device, seed, _ = _setup(study)
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = 0, 1
    if ddp:
        import torch.distributed as dist

        from datetime import timedelta

        # a rank that fails leaves the others in a collective: give up after two minutes, not thirty
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=120))
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda":
            device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    field_size = problem.mesh.n_nodes
    trainer = _make_trainer(study, len(names) + 1, field_size, device, seed, ddp)
    settings = Settings(policy=args.policy, batch_size=s["batch_size"], capacity=s["buffer"]["capacity"],
                        watermark=s["buffer"]["watermark"], budget_seconds=s["budget_seconds"],
                        budget_batches=s["budget_batches"], validate_every_seconds=s["validate_every_seconds"],
                        checkpoint_every_seconds=s["checkpoint_every_seconds"], ingest_chunk=on["ingest_chunk"],
                        bind=on["bind"], port=on["port"] + rank if on["port"] else 0, seed=seed)
    n_sims = on["simulations"]
    method = study["design"]["method"] if study["design"]["method"] in ("lhs", "sobol", "random") else "lhs"
    mus = scale(unit_design(method, n_sims, len(names), seed + 101), bounds, config.parameter_space(study)[2])

    def redraw(k):
        return scale(np.random.default_rng([seed, 202, k]).random(len(names)), bounds, config.parameter_space(study)[2])

    faults = {}
    for f in args.fault:
        try:
            cid, kind, step = f.split(":")
            faults[int(cid)] = {"kind": kind, "step": int(step)}
        except ValueError:
            raise UserError(f"--fault {f}: expected CLIENT:KIND:STEP, e.g. 1:kill:10") from None
    server = None
    checkpoint = args.checkpoint or str(Path(args.model).with_suffix(".ckpt"))
    launcher = None
    if rank == 0:
        log_dir = Path(args.client_logs) if args.client_logs else None
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        argv = client_command(args.study_config, lambda cid: server.addresses[cid % world], on["backend"], os.getpid())
        launcher = Launcher(argv, mus, redraw, on["max_running"], on["client_timeout"], on["max_crashes"],
                            on["client_ranks"], on["launcher"], log_dir, faults, on["client_startup_timeout"])
    import zmq

    try:
        server = OnlineTraining(settings, trainer, scaling, field_size, len(names), problem.steps, 2 * n_sims,
                                launcher, _validation(args.test, problem, scaling, device), checkpoint, rank, world,
                                _log, tag=config.digest([study[k] for k in ("problem", "parameters", "design",
                                                                             "surrogate", "seed")]
                                                         + [args.policy, world, args.fault]))
    except zmq.ZMQError as exc:
        raise UserError(f"surrogate.online.bind = {on['bind']}, port = {settings.port}: cannot bind ({exc}); "
                        f"expected an address of this machine and a free port (0 picks one)") from None
    try:
        result = server.run()
    except LauncherError as exc:
        raise UserError(str(exc)) from None
    summary = server.summary()
    ledgers = server._gather(summary["ledger"]) if world > 1 else [summary["ledger"]]
    seens = server._gather(summary["seen"]) if world > 1 else [summary["seen"]]
    counts = server._gather(summary["counts"]) if world > 1 else [summary["counts"]]
    if rank != 0:
        torch.distributed.destroy_process_group()
        return 0
    ledger = np.concatenate(ledgers)
    ledger = ledger[np.lexsort((ledger[:, 1], ledger[:, 0]))] if len(ledger) else ledger.reshape(0, 2)
    if len(ledger) == 0:
        raise UserError("no time step was received from any client; see the client logs"
                        + (f" in {args.client_logs}" if args.client_logs else ""))
    total = {k: sum(c[k] for c in counts) for k in counts[0]}
    seen_key = np.concatenate([k for k, _ in seens])
    seen = np.concatenate([c for _, c in seens])
    trained_sims = np.unique(seen_key[seen > 0] // (problem.steps + 1))
    table = launcher.table()
    states = np.array(STATES)[table["state"]]
    h = summary["history"]
    attrs = {"policy": args.policy, "device": str(device), "world_size": world, "mode": "online",
             "train_seconds": result["train_seconds"], "wall_seconds": result["wall_seconds"],
             "batches": trainer.batches, "batch_size": s["batch_size"],
             "resumed_from_batch": summary["resumed_from_batch"],
             "distinct_simulations": int(len(trained_sims)),
             "simulations_received": int(len(np.unique(ledger[:, 0]))),
             "samples_received": total["accepted"], "duplicates": total["duplicates"],
             "dropped": total["dropped"], "messages": total["messages"], "bytes_received": total["bytes"],
             "dropped_reasons": str(summary["dropped"]), "crashes": int(table["crashes"].sum()),
             "restarts": int(table["restarts"].sum()), "redraws": int(table["redraws"])}
    ds = _history_dataset(h, attrs, {
        "ledger_client": ("entry", ledger[:, 0]), "ledger_step": ("entry", ledger[:, 1]),
        "seen_count": ("sample", seen, {"long_name": "times each buffered sample was trained on"}),
        "seen_client": ("sample", seen_key // (problem.steps + 1)), "seen_step": ("sample", seen_key % (problem.steps + 1)),
        "client_mu": (("client", "parameter"), table["mu"]), "client_state": ("client", artefacts.strings(states)),
        "client_crashes": ("client", table["crashes"]),
    })
    ds = ds.assign_coords(client=table["ids"], parameter=artefacts.strings(names))
    artefacts.write(ds, args.history, study, "surrogate_history")
    save_model(args.model, trainer.module, scaling, {"policy": args.policy, "mode": "online"})
    if world > 1:
        torch.distributed.destroy_process_group()
    _log(f"done: {trainer.batches} batches in {result['train_seconds']:.1f} s, {total['accepted']} samples "
         f"from {attrs['simulations_received']} simulations ({len(trained_sims)} trained on), {total['duplicates']} duplicates, "
         f"{total['dropped']} dropped")
    return 0


def train_offline(args):
    from surrogates.nn import save_model
    from surrogates.offline import snapshot_set, train_offline as run

    study = config.load(args.study_config)
    s = study["surrogate"]
    problem, names, bounds, scaling, device, seed, _ = _setup(study)
    X, Y, mu, _ = snapshot_set(args.train, problem, scaling)
    if len(X) == 0:
        raise UserError(f"{args.train}: no converged train sample to learn from")
    trainer = _make_trainer(study, X.shape[1], Y.shape[1], device, seed)
    hist, epochs = run(trainer, X, Y, s["batch_size"], s["budget_seconds"], seed,
                       _validation(args.test, problem, scaling, device), s["validate_every_seconds"],
                       s["budget_batches"], s["offline"]["num_workers"], _log)
    h = hist.arrays()
    attrs = {"policy": "offline", "device": str(device), "mode": "offline", "train_seconds": float(h["wall"][-1]),
             "batches": trainer.batches, "batch_size": s["batch_size"], "epochs": epochs,
             "distinct_simulations": len(mu), "simulations_received": len(mu), "samples_received": len(X), "bytes_received": int(Y.nbytes)}
    artefacts.write(_history_dataset(h, attrs), args.history, study, "surrogate_history")
    save_model(args.model, trainer.module, scaling, {"policy": "offline", "mode": "offline"})
    return 0


def _pairs(items, what):
    out = {}
    for it in items:
        label, sep, path = it.partition("=")
        if not sep or not label or not path:
            raise UserError(f"--{what} {it}: expected LABEL=PATH")
        out[label] = path
    return out


def evaluate(args):
    import torch

    from surrogates.nn import load_model
    from surrogates.offline import snapshot_set

    study = config.load(args.study_config)
    problem = config.make_problem(study)
    models = _pairs(args.models, "models")
    errors, preds = [], []
    F = mu = None
    for label, path in models.items():
        model, scaling, _ = load_model(path)
        X, Y, mu, F = snapshot_set(args.test, problem, scaling)
        with torch.no_grad():
            P = model(torch.from_numpy(X)).numpy().reshape(F.shape)
        err = np.linalg.norm(P - F, axis=-1) / np.maximum(np.linalg.norm(F, axis=-1), 1e-300)
        errors.append(err)
        preds.append(P[:, -1])
    k = min(study["surrogate"]["evaluate"]["n_fields"], len(mu))
    ds = xr.Dataset(
        {"relative_l2_error": (("model", "test_sample", "time"), np.stack(errors),
                               {"long_name": "||u_NN - u_FOM|| / ||u_FOM|| over the mesh nodes"}),
         "prediction_final": (("model", "shown", "node"), np.stack(preds)[:, :k]),
         "reference_final": (("shown", "node"), F[:k, -1]),
         "mu": (("test_sample", "parameter"), mu)},
        coords={"model": artefacts.strings(models), "time": problem.times},
        attrs={"mean_error": str({m: float(e.mean()) for m, e in zip(models, errors)})})
    artefacts.write(ds, args.out, study, "surrogate_metrics")
    for m, e in zip(models, errors):
        _log(f"{m}: mean relative L2 test error {e.mean():.3e} (max {e.max():.3e})")


def figures(args):
    from rom import plots
    from rom.report import write_section

    study = config.load(args.study_config)
    hist = {k: artefacts.read(p) for k, p in _pairs(args.histories, "histories").items()}
    met = artefacts.read(args.metrics)
    ops = artefacts.read(args.operators)
    plots.semilogy(args.loss, {k: (h["wall"].values, h["val_loss"].values) for k, h in hist.items()},
                   "training wall time [s]", "validation MSE", "Validation loss vs wall time")
    fig, axes = plots.figure(2)
    for i, (k, h) in enumerate(hist.items()):  # one colour per run in every panel
        w = h["wall"].values
        dt = np.maximum(np.diff(w), 1e-9)
        if len(w) > 1:
            axes[0].plot(w[1:], np.diff(h["trained"].values) / dt, "o-", ms=3, color=f"C{i}", label=k)
            if h.attrs["mode"] == "online":
                axes[1].plot(w[1:], np.diff(h["received"].values) / dt, "o-", ms=3, color=f"C{i}", label=k)
    axes[0].set(xlabel="training wall time [s]", ylabel="samples / s", title="training throughput")
    axes[1].set(xlabel="training wall time [s]", ylabel="samples / s", title="ingest throughput (online)")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    plots.save(fig, args.throughput)
    fig, (ax,) = plots.figure()
    for i, (k, h) in enumerate(hist.items()):
        if "seen_count" in h and h.sizes.get("sample", 0):
            c = h["seen_count"].values
            ax.hist(c, bins=np.arange(c.max() + 2) - 0.5 if c.max() < 60 else 40, alpha=0.6, color=f"C{i}", label=k)
    ax.set(xlabel="times a sample was trained on", ylabel="samples", title="seen counts (online)")
    ax.legend(fontsize=8)
    plots.save(fig, args.seen)
    labels = list(met["model"].values)
    ref = met["reference_final"].values
    values = [ref[0]] + [met["prediction_final"].values[i, 0] for i in range(len(labels))]
    plots.fields(args.fields, ops["nodes"].values, ops["triangles"].values, values,
                 ["reference (FOM)"] + [f"{m} surrogate" for m in labels], label="K")
    err = met["relative_l2_error"].values
    metrics = {}
    for i, m in enumerate(labels):
        metrics[f"{m}: mean relative L2 test error"] = float(err[i].mean())
    rows = [[k, h.attrs.get("device", ""), int(h.attrs["distinct_simulations"]), int(h.attrs["samples_received"]),
             int(h.attrs["batches"]), float(h.attrs["train_seconds"]),
             float(h.attrs["batches"]) * h.attrs["batch_size"] / max(float(h.attrs["train_seconds"]), 1e-9),
             int(h.attrs.get("duplicates", 0)), int(h.attrs.get("dropped", 0)), int(h.attrs.get("crashes", 0))]
            for k, h in hist.items()]
    cols = ["run", "device", "simulations trained on", "samples received", "batches", "train s", "trained samples/s",
            "duplicates", "dropped", "client crashes"]
    text = ("MLP (mu, t) -> nodal temperature field trained online while the simulation ensemble streams "
            "its time steps over ZeroMQ, against the same model trained offline from the snapshot files "
            "for the same budget.")
    write_section(args.section, "Streamed surrogate training", 60, text, metrics,
                  [(args.loss, "Validation loss vs training wall time"),
                   (args.throughput, "Training and ingest throughput over time"),
                   (args.seen, "How often each streamed sample was trained on"),
                   (args.fields, "Final time step of a test sample: reference and surrogates")],
                  {"runs": {"columns": cols, "rows": rows}})


def stream_client(args):
    from surrogates.streaming.client import ServerGone, run_fom

    study = config.load(args.study_config)
    try:
        mu = np.array([float(v) for v in args.mu.split(",")])
    except ValueError:
        raise UserError(f"--mu {args.mu}: expected comma-separated numbers") from None
    names = config.parameter_space(study)[0]
    if len(mu) != len(names):
        raise UserError(f"--mu {args.mu}: {len(mu)} values; expected {len(names)} ({', '.join(names)})")
    try:
        run_fom(study, args.address, args.client, mu, args.backend, args.watch_pid, args.fault, args.fault_step,
                args.petsc_args)
    except ServerGone as exc:
        print(f"stream-client {args.client}: {exc}; stopping", file=sys.stderr)
        return 3
    return 0


# -- pipeline helpers (workflow/rules/surrogates.smk) --------------------------------------------
def runs(study: dict) -> dict[str, str]:
    """Label -> path stem of every surrogate run of a study: one online run per policy, offline."""
    out = {f"online_{p}": f"results/{study['name']}/surrogate/online_{p}" for p in study["surrogate"]["policies"]}
    out["offline"] = f"results/{study['name']}/surrogate/offline"
    return out


def labelled(study: dict, ext: str) -> str:
    """LABEL=PATH arguments of evaluate-surrogate / figures-surrogate."""
    return " ".join(f"{label}={stem}.{ext}" for label, stem in runs(study).items())
