"""The cross-study comparison (results/comparison.{csv,html,png}): the metrics of every report section of
every study and sweep point of an invocation, side by side. A study without a value for a metric (the
tensile study has no POD) gets a blank; a metric "differs" when at least two studies have different
values for it; the page shows those first, as a table that fits the page, then everything."""
from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path

import numpy as np

from rom import plots
from rom.errors import ArtefactError
from rom.paths import atomic_path, problem_label
from rom.report import render, table_html, write_section
from rom.sweeps import families, fom_sources

MAX_PANELS = 6


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
        problem = problem_label(study)
        rows.append([name, parent, source.get(name, name), problem,
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


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def numeric(rows, j) -> np.ndarray | None:
    """Column j as floats (blank -> NaN), or None if some present value is not a number."""
    vals = [r[j] for r in rows]
    if not all(v == "" or _is_number(v) for v in vals):
        return None
    return np.array([float(v) if v != "" else np.nan for v in vals])


def differing(columns, rows, first_metric: int) -> list[int]:
    """Indices of the metric columns with at least two different values among the studies that have one
    (numbers compared to 12 significant digits: the same computation on another run is not a difference)."""
    out = []
    for j in range(first_metric, len(columns)):
        v = numeric(rows, j)
        if v is not None:
            present = v[np.isfinite(v)]
            scale = np.abs(present).max() if present.size else 0.0
            digits = 12 - int(np.floor(np.log10(scale))) if scale > 0 else 12
            distinct = np.unique(np.round(present, digits))
        else:
            distinct = {json.dumps(r[j], default=str) for r in rows if r[j] != ""}
        if len(distinct) > 1:
            out.append(j)
    return out


def figure(path, columns, rows, varying: list[int]):
    """Bars per study for the numeric metrics that differ (at most MAX_PANELS); a study without a value
    has no bar."""
    numeric_varying = [(columns[j], numeric(rows, j)) for j in varying if numeric(rows, j) is not None]
    names = [r[0] for r in rows]
    parents = [r[1] or r[0] for r in rows]
    colours = {p: plots.plt.cm.tab10(i % 10) for i, p in enumerate(dict.fromkeys(parents))}
    panels = numeric_varying[:MAX_PANELS] or [("no metric differs between the studies", np.zeros(len(rows)))]
    fig, axes = plots.figure(len(panels), size=(max(3.2, 0.45 * len(rows) + 1.5), 3.8))
    x = np.arange(len(rows))
    for ax, (label, v) in zip(axes, panels):
        ok = np.isfinite(v)
        ax.bar(x[ok], v[ok], color=[colours[p] for p, k in zip(parents, ok) if k])
        finite = v[ok]
        if finite.size and (finite > 0).all() and finite.max() / finite.min() > 100:
            ax.set_yscale("log")
        ax.set_title("\n".join(textwrap.wrap(label, 45)), fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    plots.save(fig, path)


def compare(study_list: list[dict], study_paths, section_paths, csv_path, html_path, figure_path, section_path) -> int:
    """Write the comparison CSV, figure, section and page; returns how many metrics differ."""
    studies = {s["name"]: s for s in study_list}
    by_dir = {Path(p).resolve().parent: s["name"] for p, s in zip(study_paths, study_list)}
    # The order of rom.config.studies(): given studies first, then sweep points (it decides which
    # study owns shared full-order artefacts).
    derived = families(studies)
    studies = {n: s for n, s in studies.items() if n not in derived} | {n: studies[n] for n in derived}
    sections: dict[str, list[dict]] = {name: [] for name in studies}
    for path in section_paths:
        owner = by_dir.get(Path(path).resolve().parent.parent)
        if owner is None:
            raise ArtefactError(f"{path}: section of no given study; expected results/<study>/sections/<name>.json")
        try:
            sections[owner].append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtefactError(f"{path}: not a readable report section ({exc})") from None
    columns, rows, first_metric = table(studies, sections)
    with atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([columns, *rows])
    varying = differing(columns, rows, first_metric)
    figure(figure_path, columns, rows, varying)
    n_points = sum(1 for r in rows if r[1])
    shared = sum(1 for r in rows if r[2] != r[0])
    text = (f"{len(rows)} studies, {n_points} of them sweep points; {shared} reuse another study's full-order "
            f"artefacts. Metrics of every report section (blank: the study has no such value); first the "
            f"{len(varying)} that differ between studies, one row per metric, then every metric.")
    differ_table = {"columns": ["metric", *[r[0] for r in rows]],
                    "rows": [[columns[j], *[r[j] for r in rows]] for j in varying]}
    write_section(section_path, "Comparison across studies and sweep points", 0, text,
                  {"studies": len(rows), "sweep points": n_points, "studies reusing full-order artefacts": shared,
                   "metrics that differ": len(varying)},
                  [(figure_path, "Numeric metrics that differ between studies (colour: study and its sweep points)")],
                  {"metrics that differ": differ_table, "comparison": {"columns": columns, "rows": rows}})
    problems = sorted({str(r[3]) for r in rows})
    render([section_path], html_path, {"name": "comparison", "problem": {"name": ", ".join(problems)},
                                       "description": f"Studies: {', '.join(studies)}."})
    return len(varying)


__all__ = ["compare", "differing", "figure", "numeric", "table", "table_html"]
