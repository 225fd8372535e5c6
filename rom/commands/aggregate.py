"""aggregate: one comparison table (CSV, HTML) and figure across the studies and sweep points of an
invocation, built from the `metrics` of their report sections, so it covers every stage that writes
a section without knowing the stage."""
from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path

import numpy as np

from rom import config, plots
from rom.artefacts import ArtefactError, atomic_path
from rom.report import render, write_section
from rom.sweeps import families, fom_sources

MAX_PANELS = 6


def register(sub):
    p = sub.add_parser("aggregate", help="comparison table (CSV, HTML) and figure across studies and sweep points")
    p.add_argument("--studies", nargs="+", required=True, help="results/<study>/study.yaml of every study")
    p.add_argument("--sections", nargs="*", default=[], help="results/<study>/sections/*.json")
    p.add_argument("--csv", required=True)
    p.add_argument("--html", required=True)
    p.add_argument("--figure", required=True, help="PNG")
    p.add_argument("--section", required=True, help="the comparison as a report section (JSON)")
    p.set_defaults(func=run)


def _value(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    return v if isinstance(v, int) or math.isfinite(v) else float("nan")


def table(studies: dict[str, dict], sections: dict[str, list[dict]]) -> tuple[list[str], list[list], int]:
    """Columns, rows (study, sweep parent, full-order source, problem, swept keys, metrics) and the
    index of the first metric column."""
    family = families(studies)
    source = fom_sources(studies)
    swept = list(dict.fromkeys(k for _, point in family.values() for k in point))
    metrics: dict[str, dict[str, object]] = {name: {} for name in studies}
    for name, secs in sections.items():
        for sec in sorted(secs, key=lambda s: s.get("order", 0)):
            for key, v in sec.get("metrics", {}).items():
                metrics[name][f"{sec['title']}: {key}"] = _value(v)
    metric_cols = list(dict.fromkeys(c for name in studies for c in metrics[name]))
    columns = ["study", "sweep of", "full-order artefacts of", "problem", *swept, *metric_cols]
    rows = []
    for name, study in studies.items():
        parent, point = family.get(name, ("", {}))
        rows.append([name, parent, source.get(name, name), study["problem"]["name"],
                     *(point.get(k, _setting(study, k)) for k in swept),
                     *(metrics[name].get(c, "") for c in metric_cols)])
    return columns, rows, 4 + len(swept)


def _setting(study: dict, key: str):
    node = study
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return ""
        node = node[part]
    return node


def _numeric(rows, j) -> np.ndarray | None:
    vals = [r[j] for r in rows]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return None
    return np.asarray(vals, dtype=float)


def figure(path, columns, rows, first_metric: int):
    """Bars per study for the metrics that differ between studies (at most MAX_PANELS)."""
    varying = []
    for j in range(first_metric, len(columns)):
        v = _numeric(rows, j)
        if v is not None and np.isfinite(v).sum() > 1 and np.unique(v[np.isfinite(v)]).size > 1:
            varying.append((columns[j], v))
    names = [r[0] for r in rows]
    parents = [r[1] or r[0] for r in rows]
    colours = {p: plots.plt.cm.tab10(i % 10) for i, p in enumerate(dict.fromkeys(parents))}
    panels = varying[:MAX_PANELS] or [("no metric differs between the studies", np.zeros(len(rows)))]
    fig, axes = plots.figure(len(panels), size=(max(3.2, 0.45 * len(rows) + 1.5), 3.8))
    x = np.arange(len(rows))
    for ax, (label, v) in zip(axes, panels):
        ax.bar(x, np.nan_to_num(v), color=[colours[p] for p in parents])
        finite = v[np.isfinite(v)]
        if finite.size and (finite > 0).all() and finite.max() / finite.min() > 100:
            ax.set_yscale("log")
        ax.set_title("\n".join(textwrap.wrap(label, 45)), fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    plots.save(fig, path)
    return len(varying)


def run(args):
    studies = {}
    for path in args.studies:
        study = config.load(path)
        studies[study["name"]] = study
    by_dir = {Path(p).resolve().parent: name for p, name in zip(args.studies, studies)}
    # The order of rom.config.studies(): given studies first, then sweep points (it decides which
    # study owns shared full-order artefacts).
    derived = families(studies)
    studies = {n: s for n, s in studies.items() if n not in derived} | {n: studies[n] for n in derived}
    sections: dict[str, list[dict]] = {name: [] for name in studies}
    for path in args.sections:
        owner = by_dir.get(Path(path).resolve().parent.parent)
        if owner is None:
            raise ArtefactError(f"{path}: section of no given study; expected results/<study>/sections/<name>.json")
        try:
            sections[owner].append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtefactError(f"{path}: not a readable report section ({exc})") from None
    columns, rows, first_metric = table(studies, sections)
    with atomic_path(args.csv) as tmp:
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([columns, *rows])
    n_varying = figure(args.figure, columns, rows, first_metric)
    n_points = sum(1 for r in rows if r[1])
    shared = sum(1 for r in rows if r[2] != r[0])
    text = (f"{len(rows)} studies, {n_points} of them sweep points; {shared} reuse another study's full-order "
            f"artefacts. Metrics of every report section; the figure shows those that differ between studies.")
    write_section(args.section, "Comparison across studies and sweep points", 0, text,
                  {"studies": len(rows), "sweep points": n_points, "studies reusing full-order artefacts": shared,
                   "metrics that differ": n_varying},
                  [(args.figure, "Metrics that differ between studies (colour: study and its sweep points)")],
                  {"comparison": {"columns": columns, "rows": rows}})
    problems = sorted({s["problem"]["name"] for s in studies.values()})
    render([args.section], args.html, {"name": "comparison", "problem": {"name": ", ".join(problems)},
                                       "description": f"Studies: {', '.join(studies)}."})
