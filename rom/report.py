"""The study report: every stage family writes a section (a small JSON: title, text, metrics,
figures); `report` renders the sections it is given into one self-contained HTML page."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path

from rom.artefacts import atomic_path


def write_section(path, title: str, order: int, text: str = "", metrics: dict | None = None,
                  figures: list[tuple[str, str]] | None = None, tables: dict | None = None):
    """figures: (png path, caption); tables: name -> {"columns": [...], "rows": [[...], ...]}.
    Metric names name the quantity only (settings are metrics of their own): the cross-study
    comparison (aggregate) joins studies and sweep points by metric name."""
    section = {"title": title, "order": order, "text": text, "metrics": metrics or {},
               "figures": [{"file": str(f), "caption": c} for f, c in (figures or [])], "tables": tables or {}}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(section, indent=1, default=_jsonable))


def _jsonable(v):
    try:
        return v.item()
    except AttributeError:
        return str(v)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def render(section_paths, out, study: dict):
    sections = sorted((json.loads(Path(p).read_text()) for p in section_paths), key=lambda s: s["order"])
    parts = [f"<h1>romflow report: {html.escape(study['name'])}</h1>",
             f"<p>{html.escape(study.get('description', ''))}</p>",
             f"<p>Problem <code>{html.escape(study['problem']['name'])}</code>; generated "
             f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC.</p>"]
    parts.append("<ul>" + "".join(f"<li><a href='#s{i}'>{html.escape(s['title'])}</a></li>"
                                  for i, s in enumerate(sections)) + "</ul>")
    for i, s in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{html.escape(s['title'])}</h2><p>{html.escape(s['text'])}</p>")
        if s["metrics"]:
            rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in s["metrics"].items())
            parts.append(f"<table class='metrics'>{rows}</table>")
        for name, t in s.get("tables", {}).items():
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t["columns"])
            body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in t["rows"])
            parts.append(f"<h3>{html.escape(name)}</h3><table><tr>{head}</tr>{body}</table>")
        for f in s["figures"]:
            data = base64.b64encode(Path(f["file"]).read_bytes()).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}'/><figcaption>"
                         f"{html.escape(f['caption'])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}img{max-width:100%}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
             "text-align:left}figcaption{font-size:90%;color:#444}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>romflow {html.escape(study['name'])}</title>" \
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page)
