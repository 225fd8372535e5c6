"""Streamed surrogate training: train-online (server + launcher of the simulation ensemble),
train-offline (the baseline from snapshot files), evaluate-surrogate, figures-surrogate, and
stream-client (the FOM client process; started by the launcher). Argument plumbing only: the work
is in surrogates.streaming (session, report, client)."""
from __future__ import annotations

import os
import sys

import numpy as np

from rom import artefacts, config
from rom.cli import UserError, add_study_arg
from surrogates.streaming.paths import labelled, runs  # noqa: F401  (workflow/rules/surrogates.smk imports them here)


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
                   help="fault injection (tests): client CLIENT does KIND (kill|hang) after STEP on its first "
                        "attempt; server:kill:BATCH: the server SIGKILLs itself after its first checkpoint at or "
                        "after BATCH")
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

    p = sub.add_parser("stream-client", help="solve the simulations the launcher handed over (environment) "
                       "and stream every time step; or one given by --address/--client/--mu")
    add_study_arg(p)
    p.add_argument("--backend", choices=["petsc", "scipy"], default="petsc")
    p.add_argument("--address", help="tcp://host:port of the server (one simulation given by hand)")
    p.add_argument("--client", type=int, help="client id the server registered")
    p.add_argument("--mu", help="comma-separated parameter values")
    p.add_argument("--key-file", help="the server's secret (default: $ROMFLOW_STREAM_KEY_FILE)")
    p.add_argument("--watch-pid", type=int, help="exit when this (server) process is gone")
    p.set_defaults(func=stream_client)


def _faults(items) -> tuple[dict, int | None]:
    clients, server = {}, None
    for f in items:
        try:
            who, kind, step = f.split(":")
            if who == "server" and kind == "kill":
                server = int(step)
            elif kind in ("kill", "hang"):
                clients[int(who)] = {"kind": kind, "step": int(step)}
            else:
                raise ValueError
        except ValueError:
            raise UserError(f"--fault {f}: expected CLIENT:KIND:STEP with KIND kill or hang (e.g. 1:kill:10), "
                            f"or server:kill:BATCH") from None
    return clients, server


def _pairs(items, what):
    out = {}
    for it in items:
        label, sep, path = it.partition("=")
        if not sep or not label or not path:
            raise UserError(f"--{what} {it}: expected LABEL=PATH")
        out[label] = path
    return out


def train_online(args):
    from surrogates.streaming.session import StreamingError, train_online as run

    study = config.load(args.study_config)
    clients, server = _faults(args.fault)
    try:
        run(study, args.study_config, args.policy, args.model, args.history, args.checkpoint, args.test,
            args.client_logs, clients, server)
    except StreamingError as exc:
        raise UserError(str(exc)) from None
    return 0


def train_offline(args):
    from surrogates.streaming.session import StreamingError, train_offline as run

    study = config.load(args.study_config)
    try:
        run(study, args.train, args.model, args.history, args.test)
    except StreamingError as exc:
        raise UserError(str(exc)) from None
    return 0


def evaluate(args):
    from surrogates.streaming.report import evaluate as run

    study = config.load(args.study_config)
    ds = run(study, args.test, _pairs(args.models, "models"))
    artefacts.write(ds, args.out, study, "surrogate_metrics")
    err = ds["relative_l2_error"].values
    for i, m in enumerate(ds["model"].values):
        print(f"{m}: mean relative L2 test error {err[i].mean():.3e} (max {err[i].max():.3e})", flush=True)


def figures(args):
    from surrogates.streaming.report import write

    study = config.load(args.study_config)
    hist = {k: artefacts.read(p) for k, p in _pairs(args.histories, "histories").items()}
    write(study, hist, artefacts.read(args.metrics), artefacts.read(args.operators), args.loss, args.throughput,
          args.seen, args.fields, args.section)


def stream_client(args):
    from surrogates.streaming.client import ENV_KEY_FILE, Assignment, ServerGone, run_worker, single

    study = config.load(args.study_config)
    by_hand = [args.address, args.client, args.mu]
    if any(v is not None for v in by_hand) and not all(v is not None for v in by_hand):
        raise UserError("--address, --client and --mu: expected all three (one simulation by hand) or none "
                        "(the launcher's environment)")
    try:
        if args.mu is not None:
            try:
                mu = np.array([float(v) for v in args.mu.split(",")])
            except ValueError:
                raise UserError(f"--mu {args.mu}: expected comma-separated numbers") from None
            names = config.parameter_space(study)[0]
            if len(mu) != len(names):
                raise UserError(f"--mu {args.mu}: {len(mu)} values; expected {len(names)} ({', '.join(names)})")
            key_file = args.key_file or os.environ.get(ENV_KEY_FILE)
            if not key_file:
                raise UserError(f"--key-file: missing (or ${ENV_KEY_FILE}); expected the server's key file")
            job = single(args.address, args.client, mu, key_file, args.watch_pid)
        else:
            job = Assignment.from_environment()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        run_worker(study, job, args.backend, args.petsc_args)
    except ServerGone as exc:
        print(f"stream-client: {exc}; stopping", file=sys.stderr)
        return 3
    return 0
