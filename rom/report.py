"""The study report: every stage family writes a section (a small JSON: title, text, metrics, figures,
tables, warnings); `report` renders the sections it is given, after a section on the study itself
(parameter box, designs, seeds, provenance), into one self-contained HTML page. Warnings of every
section are repeated at the top, where a reader cannot miss them."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path

from rom.paths import atomic_path, problem_label

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}img{max-width:100%}"
         "table{border-collapse:collapse;margin:.5em 0;font-size:90%}td,th{border:1px solid #ccc;padding:2px 8px;"
         "text-align:left;vertical-align:top}figcaption{font-size:90%;color:#444}"
         ".scroll{overflow-x:auto;max-width:100%}.warn{background:#fff4e0;border-left:4px solid #e69500;"
         "padding:.4em .8em;margin:.5em 0}")


def write_section(path, title: str, order: int, text: str = "", metrics: dict | None = None,
                  figures: list[tuple[str, str]] | None = None, tables: dict | None = None,
                  warnings: list[str] | None = None):
    """figures: (png path, caption); tables: name -> {"columns": [...], "rows": [[...], ...]};
    warnings: results that contradict the stage's purpose, shown at the top of the report.
    Metric names name the quantity only (settings are metrics of their own): the cross-study
    comparison (aggregate) joins studies and sweep points by metric name."""
    section = {"title": title, "order": order, "text": text, "metrics": metrics or {},
               "figures": [{"file": str(f), "caption": c} for f, c in (figures or [])], "tables": tables or {},
               "warnings": list(warnings or [])}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(section, indent=1, default=_jsonable))


def read_section(path) -> dict:
    return json.loads(Path(path).read_text())


def _jsonable(v):
    try:
        return v.item()
    except AttributeError:
        return str(v)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def table_html(columns, rows) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def study_section(study: dict, space=None, provenance: dict | None = None) -> dict:
    """The study itself: problem, parameter box, designs and seeds, provenance of its artefacts."""
    d = study["design"]
    metrics = {"problem": problem_label(study),
               "design method": d["method"], "seed (study)": study.get("seed", 0)}
    for s in ("train", "test", "validation"):
        metrics[f"{s} design"] = f"size {d[s].get('size', 0)}, seed {d[s].get('seed', '-')}"
    if d["method"] == "grid":
        metrics["train design"] = f"grid, {d['grid_points']} points per parameter"
    tables = {}
    if space is not None:
        tables["Parameter box"] = {"columns": ["parameter", "lower", "upper", "distribution", "units"],
                                   "rows": [[n, float(b[0]), float(b[1]), dist, u] for n, b, dist, u in
                                            zip(space.names, space.bounds, space.distributions, space.units)]}
    keys = {k: v for k, v in study["problem"].items() if k not in ("name",)}
    text = "Problem settings: " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in keys.items()) + "."
    for k in ("package_versions", "git_commit", "config_digest", "created"):
        if provenance and k in provenance:
            metrics[k.replace("_", " ")] = provenance[k]
    return {"title": "Study", "order": 1, "text": text, "metrics": metrics, "figures": [], "tables": tables,
            "warnings": []}


def render(section_paths, out, study: dict, extra: list[dict] | None = None):
    sections = sorted([read_section(p) for p in section_paths] + list(extra or []), key=lambda s: s["order"])
    warnings = [(s["title"], w) for s in sections for w in s.get("warnings", [])]
    parts = [f"<h1>romflow report: {html.escape(study['name'])}</h1>",
             f"<p>{html.escape(study.get('description', ''))}</p>",
             f"<p>Problem <code>{html.escape(str(problem_label(study)))}</code>; "
             f"generated {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC.</p>"]
    if warnings:
        parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(
            f"<li>{html.escape(t)}: {html.escape(w)}</li>" for t, w in warnings) + "</ul></div>")
    parts.append("<ul>" + "".join(f"<li><a href='#s{i}'>{html.escape(s['title'])}</a></li>"
                                  for i, s in enumerate(sections)) + "</ul>")
    for i, s in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{html.escape(s['title'])}</h2><p>{html.escape(s['text'])}</p>")
        for w in s.get("warnings", []):
            parts.append(f"<div class='warn'>{html.escape(w)}</div>")
        if s["metrics"]:
            rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in s["metrics"].items())
            parts.append(f"<table class='metrics'>{rows}</table>")
        for name, t in s.get("tables", {}).items():
            parts.append(f"<h3>{html.escape(name)}</h3>" + table_html(t["columns"], t["rows"]))
        for f in s["figures"]:
            data = base64.b64encode(Path(f["file"]).read_bytes()).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}'/><figcaption>"
                         f"{html.escape(f['caption'])}</figcaption></figure>")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>romflow {html.escape(study['name'])}</title>" \
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page)
