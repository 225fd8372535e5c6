"""Streamed surrogate training: train_online (server + launcher of the simulation ensemble),
train_offline (the baseline from snapshot files), evaluate_surrogate, figures_surrogate, and
stream_client (a FOM client process; the launcher starts the light entry surrogates.streaming.worker).
Declarations and argument plumbing only: the work is in surrogates.streaming (session, report, client)."""
from __future__ import annotations

import os
import sys

import numpy as np

from rom.errors import UserError
from rom.hifi import capabilities as cap
from rom.stage import Artefact, Option, Stage

SURROGATE_SECTIONS = ("problem", "parameters", "design", "simulate", "surrogate", "seed")


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


def train_online(ctx):
    from surrogates.streaming.session import train_online as run

    clients, server = _faults(ctx.option("fault") or [])
    run(ctx.study, ctx.args.study_config, ctx.option("policy"), ctx.path("model"), ctx.path("history"),
        ctx.option("checkpoint"), ctx.path("test"), ctx.option("client_logs"), clients, server, log=ctx.log.info)


def train_offline(ctx):
    from surrogates.streaming.session import train_offline as run

    run(ctx.study, ctx.path("train"), ctx.path("model"), ctx.path("history"), ctx.path("test"), log=ctx.log.info)


def evaluate(ctx):
    from surrogates.streaming.report import evaluate as run

    ds = run(ctx.study, ctx.path("test"), _pairs(ctx.option("models"), "models"))
    ctx.write("out", ds, "surrogate_metrics")
    err = ds["relative_l2_error"].values
    for i, m in enumerate(ds["model"].values):
        ctx.log.info("%s: mean relative L2 test error %.3e (max %.3e)", m, err[i].mean(), err[i].max())


def figures(ctx):
    from surrogates.streaming.report import write

    hist = {k: ctx.read_path(p) for k, p in _pairs(ctx.option("histories"), "histories").items()}
    write(ctx.study, hist, ctx.read("metrics"), ctx.read("operators"), ctx.path("loss"), ctx.path("throughput"),
          ctx.path("seen"), ctx.path("fields"), ctx.path("section"), log=ctx.log.info)


def stream_client(ctx):
    from surrogates.streaming.client import ENV_KEY_FILE, Assignment, ServerGone, run_worker, single

    a = ctx.args
    by_hand = [a.address, a.client, a.mu]
    if any(v is not None for v in by_hand) and not all(v is not None for v in by_hand):
        raise UserError("--address, --client and --mu: expected all three (one simulation by hand) or none "
                        "(the launcher's environment)")
    try:
        if a.mu is not None:
            try:
                mu = np.array([float(v) for v in a.mu.split(",")])
            except ValueError:
                raise UserError(f"--mu {a.mu}: expected comma-separated numbers") from None
            names = ctx.space.names
            if len(mu) != len(names):
                raise UserError(f"--mu {a.mu}: {len(mu)} values; expected {len(names)} ({', '.join(names)})")
            key_file = a.key_file or os.environ.get(ENV_KEY_FILE)
            if not key_file:
                raise UserError(f"--key-file: missing (or ${ENV_KEY_FILE}); expected the server's key file")
            job = single(a.address, a.client, mu, key_file, a.watch_pid)
        else:
            job = Assignment.from_environment()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        run_worker(ctx.study, job, a.backend, ctx.petsc_args)
    except ServerGone as exc:
        print(f"stream-client: {exc}; stopping", file=sys.stderr)
        return 3
    return 0


def check(study: dict):
    from surrogates.streaming.settings import validate_settings

    validate_settings(study, "config")


LABELLED = "LABEL=PATH of each run (surrogates.streaming.paths.labelled)"

STAGES = (
    Stage("train_online", train_online, "train the MLP surrogate while an ensemble of FOM clients streams its time "
          "steps (ZeroMQ); run under torchrun for data-parallel ranks", package="surrogates",
          sections=SURROGATE_SECTIONS, needs=frozenset({cap.TRANSIENT}), switch="surrogate", check=check,
          needs_test=True,
          inputs=(Artefact("test", "snapshots/test.h5 for validation", optional=True),),
          outputs=(Artefact("model", "trained model (.pt)"), Artefact("history", "history artefact (.h5)")),
          options=(Option("policy", "buffer policy", choices=("fifo", "firo", "reservoir"), required=True,
                          wildcard="policy"),
                   Option("checkpoint", "checkpoint to write and to resume from (default: <model>.ckpt)"),
                   Option("client_logs", "folder for the clients' logs"),
                   Option("fault", "fault injection (tests): CLIENT:KIND:STEP (kill|hang after STEP on the first "
                          "attempt) or server:kill:BATCH", action="append"))),
    Stage("train_offline", train_offline, "the same MLP trained from the snapshot files (DataLoader), same budget",
          package="surrogates", sections=SURROGATE_SECTIONS, needs=frozenset({cap.TRANSIENT}), switch="surrogate",
          inputs=(Artefact("train", "snapshots/train.h5"), Artefact("test", "snapshots/test.h5", optional=True)),
          outputs=(Artefact("model", "trained model (.pt)"), Artefact("history", "history artefact (.h5)"))),
    Stage("evaluate_surrogate", evaluate, "relative L2 test errors per time step of trained surrogates",
          package="surrogates", sections=("surrogate",), switch="surrogate", needs_test=True,
          inputs=(Artefact("test", "snapshots/test.h5"),), outputs=(Artefact("out", "metrics/surrogate.h5"),),
          options=(Option("models", LABELLED, required=True, many=True),)),
    Stage("figures_surrogate", figures, "report figures and section of the streamed surrogates", package="surrogates",
          sections=("surrogate", "report"), switch="surrogate",
          inputs=(Artefact("metrics", "metrics/surrogate.h5"), Artefact("operators", "fom/operators.h5")),
          outputs=(Artefact("loss", "PNG"), Artefact("throughput", "PNG"), Artefact("seen", "PNG"),
                   Artefact("fields", "PNG"), Artefact("section", "section JSON")),
          options=(Option("histories", LABELLED, required=True, many=True),)),
    Stage("stream_client", stream_client, "solve the simulations the launcher handed over (environment) and stream "
          "every time step; or one given by --address/--client/--mu", package="surrogates",
          sections=SURROGATE_SECTIONS, enabled=lambda study: False,
          options=(Option("backend", "FOM backend", choices=("petsc", "scipy"), default="petsc"),
                   Option("address", "tcp://host:port of the server (one simulation given by hand)"),
                   Option("client", "client id the server registered", type=int),
                   Option("mu", "comma-separated parameter values"),
                   Option("key_file", "the server's secret (default: $ROMFLOW_STREAM_KEY_FILE)"),
                   Option("watch_pid", "exit when this (server) process is gone", type=int))),
)
