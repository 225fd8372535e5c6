"""`python -m rom <stage> ...` and `python -m surrogates <stage> ...`: one subcommand per declared
stage (rom.pipeline.STAGES; the declarations live in rom/commands and surrogates/commands). The
parser, loading and validating the study, logging, writing artefacts with provenance and the report
section all follow from the declaration; a stage function receives a `Context`.

Arguments that start with one dash and are not ours (-ksp_monitor, -pc_type lu, ...) go to PETSc; an
unknown double-dash flag is refused. A flag that takes several values takes them after one flag or
over repeats (--family a --family b); any other flag is given once.
User errors end in one line on stderr and exit status 2; finished artefacts are never removed."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from functools import cached_property
from pathlib import Path

from rom.errors import ConfigError, UserError
from rom.paths import problem_label

__all__ = ["Context", "UserError", "add_study_arg", "main", "parser"]

DESCRIPTIONS = {
    "rom": "romflow's full-order and reduced-order stages: designs, PETSc simulations, POD, certified reduced "
           "bases, EIM, local bases, the report.",
    "surrogates": "romflow's surrogate stages: streamed neural-network training, Gaussian processes (POD + GP) "
                  "and mesh-morphing GP (MMGP).",
}


def _version() -> str:
    import rom

    return f"romflow {rom.__version__}"


class Context:
    """What a stage function works with: the validated study, its declared paths, artefact I/O with
    provenance, the problem, logging and progress, the report section."""

    def __init__(self, stage, args: argparse.Namespace, study: dict | None):
        self.stage, self.args, self.study = stage, args, study
        self.log = logging.getLogger(f"romflow.{stage.name}")
        self.warnings: list[str] = []
        self.upstream_warnings: list[str] = []  # of the artefacts read: a report section repeats them
        self.petsc_args: list[str] = getattr(args, "petsc_args", [])
        self._written: list = []  # (path, per-rank peak memory when written) of this rank's writes

    def path(self, name: str):
        """The path (or list of paths) given for a declared artefact, None for an absent optional one."""
        value = getattr(self.args, name)
        if value is None:
            return None
        return [Path(v) for v in value] if isinstance(value, list) else Path(value)

    def load_study(self, path) -> dict:
        from rom import config

        return config.load(path)

    def save_study(self, study: dict, path):
        from rom import config

        config.write_study(study, path)

    def option(self, name: str):
        return getattr(self.args, name)

    def read(self, name: str, drop=()):
        """A declared artefact loaded, less the variables named in `drop` (read lazily by the stage)."""
        from rom import artefacts

        path = self.path(name)
        if path is None:
            return None
        ds = artefacts.read(path, drop)
        self.log.info("read %s (%s)", path, ", ".join(f"{k} {v}" for k, v in ds.sizes.items()))
        self.upstream_warnings += [w for w in str(ds.attrs.get("warnings", "")).split(" | ") if w]
        return ds

    def read_path(self, path):
        """An artefact given by path rather than by a declared name (LABEL=PATH options)."""
        from rom import artefacts

        ds = artefacts.read(path)
        self.upstream_warnings += [w for w in str(ds.attrs.get("warnings", "")).split(" | ") if w]
        return ds

    def write(self, name: str, ds, kind: str | None = None, fill=None):
        """Write a declared artefact with provenance, the warnings so far and the peak memory of every
        rank so far (rom.memory: ranks not heard from yet are NaN here and filled in at the end of the
        stage). `fill(file)` adds variables too large to hold (rom.artefacts.write)."""
        from rom import artefacts, memory

        path = self.path(name)
        if self.warnings:
            ds.attrs["warnings"] = " | ".join(self.warnings)
        figures = memory.per_rank(wait=0.2)
        ds.attrs.update(memory.attrs(figures), peak_rss_when="written")
        artefacts.write(ds, path, self.study, kind or self.stage.name, fill=fill)
        self._written.append((path, figures))
        self.log.info("wrote %s (%s; %.1f MB; peak memory so far %s)", path,
                      ", ".join(f"{k} {v}" for k, v in ds.sizes.items()), path.stat().st_size / 1e6,
                      memory.describe(figures))
        return path

    def finish(self):
        """At the end of a stage that returned on this rank: every rank other than 0 posts its peak
        memory; rank 0 collects them (a bounded wait, never a collective: see rom.memory), logs one
        figure per rank, and fills the figures of ranks not heard from into the artefacts it wrote."""
        from rom import memory

        comm = memory.world()
        if comm is not None and comm.size > 1 and comm.rank != 0:
            memory.post(comm)
            memory.flush(wait=10.0)
            return None
        figures = memory.per_rank(wait=10.0, comm=comm)
        self.log.info("peak memory per rank: %s", memory.describe(figures))
        for path, written in self._written:
            if any(f != f for f in written) and path.is_file():  # NaN at write time: the final figures
                import h5py

                with h5py.File(path, "r+") as f:
                    for key, value in memory.attrs(figures).items():
                        f.attrs[key] = value
                    f.attrs["peak_rss_when"] = "stage end"
        return figures

    @cached_property
    def problem(self):
        """The study's problem; after the operators stage, on the mesh its artefact stores (a stage that
        declares the `operators` input: rom.config.make_problem), so the mesh file is parsed once."""
        from rom import config

        t0 = time.perf_counter()
        operators = getattr(self.args, "operators", None) if self.stage.name != "operators" else None
        p = config.make_problem(self.study, operators)
        mesh = getattr(p, "mesh", None)
        if mesh is not None:
            self.log.info("problem %s: %d nodes, %d cells, %d free dofs (%.2f s%s)", p.name, mesh.n_nodes,
                          len(getattr(mesh, "triangles", getattr(mesh, "cells", []))), mesh.n_dofs,
                          time.perf_counter() - t0, f", mesh from {operators}" if operators and
                          getattr(getattr(p, "file", None), "node_order", None) is not None else "")
        return p

    @cached_property
    def space(self):
        from rom import config

        return config.parameter_space(self.study)

    def progress(self, items, what: str, total: int | None = None, every: float = 5.0):
        from rom.progress import progress

        return progress(items, what, self.log, total, every)

    def warn(self, message: str):
        """A warning for the log, the artefact written next and the report section."""
        self.log.warning(message)
        self.warnings.append(message)

    def section(self, title: str, order: int, text: str = "", metrics: dict | None = None, figures=None,
                tables=None, name: str = "section"):
        from rom.report import write_section

        warnings = list(dict.fromkeys(self.upstream_warnings + self.warnings))
        write_section(self.path(name), title, order, text, metrics, figures, tables, warnings)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (the usage block is what --help is for)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Once(argparse.Action):
    """A flag of one value: a repeat is refused, where argparse would keep the last value silently."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = vars(namespace).setdefault("_flags_given", set())
        if self.dest in given:
            parser.error(f"{option_string} given twice ({getattr(namespace, self.dest)}, then {values}); "
                         "expected it once")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


def _arity(many: bool) -> dict:
    """argparse keywords of a flag with several values (kept over repeats) or with one (given once)."""
    return {"nargs": "+", "action": "extend"} if many else {"action": _Once}


def add_study_arg(p: argparse.ArgumentParser):
    p.add_argument("--study-config", required=True, action=_Once,
                   help="resolved study file (results/<study>/study.yaml)")


def _flags(stage) -> list[str]:
    """The flags of a stage's subcommand, as _add_stage declares them."""
    named = [a for a in stage.inputs + stage.outputs if not a.positional]
    return ["--study-config"] * stage.study + [a.flag for a in named] + [o.flag for o in stage.options]


def _add_stage(sub, stage):
    p = sub.add_parser(stage.command, help=stage.help, description=stage.help,
                       allow_abbrev=False)  # --chu is not --chunk: a misspelling is refused
    if stage.study:
        add_study_arg(p)
    for a in stage.inputs:
        if a.positional:
            p.add_argument(a.name, nargs="+" if a.many else None, help=f"input: {a.help}")
            continue
        p.add_argument(a.flag, dest=a.name, required=not a.optional, **_arity(a.many),
                       help=f"input: {a.help}" + (" (optional)" if a.optional else ""))
    for a in stage.outputs:
        p.add_argument(a.flag, dest=a.name, required=not a.optional, action=_Once, help=f"output: {a.help}")
    for o in stage.options:
        kw = {"dest": o.name, "help": o.help, "required": o.required}
        if o.action:
            kw["action"] = o.action
        else:
            kw.update(type=o.type, default=o.default, choices=o.choices, **_arity(o.many))
        p.add_argument(o.flag, **kw)
    p.set_defaults(stage=stage)


def parser(package: str = "rom") -> argparse.ArgumentParser:
    from rom import pipeline

    prog = f"python -m {package}"
    p = _Parser(prog=prog, description=DESCRIPTIONS[package] + "\n\n" + __doc__.split("\n\n")[-1],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="<stage>")
    for stage in pipeline.stages(package):
        _add_stage(sub, stage)
    return p


def _logging(rank: int, quiet: bool = False):
    """Log lines (progress, sizes, timings, warnings) on stdout; stderr carries the one-line error of
    a failed command alone. The rules send both to the stage's log file."""
    logging.basicConfig(stream=sys.stdout, level=logging.INFO if rank == 0 and not quiet else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", force=True)
    logging.captureWarnings(True)


def _rank() -> int:
    import os

    for key in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def run_stage(stage, args) -> int:
    from rom import config, memory

    log = logging.getLogger(f"romflow.{stage.name}")
    t0 = time.perf_counter()
    study = config.load(args.study_config) if stage.study else None
    if study is not None:  # after validation: bad input ends in its one line alone
        log.info("start: study %s, problem %s", study["name"], problem_label(study))
    memory.reset()
    ctx = Context(stage, args, study)
    status = int(stage.run(ctx) or 0)
    # Every rank that returns from the stage reaches this point; no collective is started (a rank that
    # raised exits without it, and the others must not hang waiting for it): rom.memory.
    ctx.finish()
    log.info("done in %.1f s", time.perf_counter() - t0)
    return status


def main(argv=None, package: str = "rom") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = f"python -m {package}"
    args, rest = parser(package).parse_known_args(argv)
    stray = [a for a in rest if not a.startswith("-")]
    if stray and not (rest and rest[0].startswith("-")):
        print(f"{prog}: error: unexpected arguments {stray}", file=sys.stderr)
        return 2
    unknown = [a.split("=", 1)[0] for a in rest if a.startswith("--")]
    if unknown:
        print(f"{prog} {args.command}: error: unknown flag {unknown[0]}; expected one of "
              f"{', '.join(_flags(args.stage))} (PETSc options take one dash: -ksp_monitor)", file=sys.stderr)
        return 2
    args.petsc_args = rest
    stage = getattr(args, "stage", None)
    _logging(_rank(), stage is not None and stage.quiet is not None and stage.quiet(args))
    try:
        return run_stage(args.stage, args)
    except (ConfigError, UserError) as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return 130
