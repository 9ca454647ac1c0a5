"""`ciwheels status`: every cell's state as a grid (package x version x Python x platform x
ISA level), as text, a stable JSON document (format 1) or a self-contained HTML page.

The JSON is also the failure memory of scheduled pipelines (status.py): the pipeline publishes
it next to the page, and the next plan reads it back."""

from __future__ import annotations

import html
import shutil
from collections import defaultdict
from pathlib import Path

from packaging.utils import canonicalize_name

from ciwheels.builder.state import STATES, STATUS_FORMAT, CellState, now_iso
from ciwheels.builder.upstream import newest_release
from ciwheels.catalog import LIBC_PLATFORM
from ciwheels.dist.artifacts import OK_STATUSES, REPORT, read_report

MARKS = {"published": "✓", "missing": "·", "failed": "✗", "known-failure": "⊘", "upstream": "↑", "unknown": "?"}


def failed_builds(sources: list[Path]) -> dict[str, tuple[str, Path | None]]:
    """{cell: (status, its log file or None)} of the build reports under `sources` (downloaded
    job artifacts) whose build failed. A report's log is looked up next to the report's folder
    (OUT/<job>.log beside OUT/<cell>/build-report.json), since the path it records is the build
    machine's."""
    out = {}
    for src in sources:
        for path in sorted(src.rglob(REPORT)):
            report = read_report(path)
            if report.cell is None or report.status in OK_STATUSES:
                continue
            log = None
            if report.log:
                candidate = path.parent.parent / Path(report.log).name
                log = candidate if candidate.is_file() else None
            out[report.cell] = (report.status or "failed", log)
    return out


def copy_logs(failed: dict[str, tuple[str, Path | None]], site: Path) -> dict[str, str]:
    """Copy failed cells' logs to SITE/logs/<cell>.log; {cell: relative link}."""
    links = {}
    for cell, (_, log) in sorted(failed.items()):
        if log is None:
            continue
        (site / "logs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, site / "logs" / f"{cell}.log")
        links[cell] = f"logs/{cell}.log"
    return links


def status_document(project, states: dict[str, CellState], now=None) -> dict:
    """The stable JSON: format, generated, counts, packages (versions built, the newest upstream
    release and whether it is built), cells (id, coordinates, state and its details)."""

    cells = []
    for c in sorted(project.expansion.cells, key=lambda c: c.id):
        st = states.get(c.id, CellState("unknown"))
        entry = {"id": c.id, "python": c.python, "platform": c.platform, "libc": c.libc, "arch": c.arch,
                 "isa": c.isa, "policy": c.policy, "registry": c.registry, **st.to_json()}
        if c.package:
            entry.update(package=c.package, version=c.version)
        cells.append(entry)
    packages = []
    for m in project.spec.matrices:
        for p in m.packages:
            entry = {"name": p.name, "versions": list(p.versions), "newest-upstream": None, "newest-built": None}
            if project.upstream is not None and p.name in project.upstream.pages:
                newest = newest_release(project.upstream.pages[p.name])
                entry["newest-upstream"] = newest
                entry["newest-built"] = newest in p.versions if newest else None
            packages.append(entry)
    counts = {s: sum(1 for c in cells if c["state"] == s) for s in STATES}
    return {"format": STATUS_FORMAT, "generated": now_iso(now), "counts": counts, "packages": packages,
            "cells": cells}


def text_status(doc: dict) -> str:
    lines = []
    groups: dict[tuple, list] = defaultdict(list)
    for c in doc["cells"]:
        groups[(c.get("package", ""), c.get("version", ""))].append(c)
    for (pkg, version), cells in sorted(groups.items()):
        if pkg:
            lines.append(f"{pkg} {version}")
        for c in cells:
            detail = c.get("detail", "") + (f" (log: {c['log']})" if c.get("log") else "")
            lines.append(f"  {MARKS[c['state']]} {c['id']:<60} {c['state']:<14} {detail}".rstrip())
    for p in doc["packages"]:
        if p["newest-upstream"] and not p["newest-built"]:
            lines.append(f"{p['name']}: newest upstream release {p['newest-upstream']} is not built")
    lines.append(", ".join(f"{n} {s}" for s, n in doc["counts"].items() if n))
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}h2{margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:center}
th{background:#f3f3f3}td.empty{color:#bbb}
.s{display:inline-block;border-radius:.3rem;padding:0 .35rem;margin:0 .1rem;font-size:.85em;border:1px solid #aaa}
.published{background:#d9f2d9;border-color:#3c963c}.missing{background:#f3f3f3}
.failed{background:#fbe3e3;border-color:#c05050}.known-failure{background:#fff3cd;border-color:#c9a227}
.upstream{background:#e6f0ff;border-color:#6d8fcf}.unknown{background:#eee}
.stale{color:#a05000;font-weight:bold}
"""


def html_status(doc: dict, title: str, levels_short: dict[str, str] | None = None) -> str:
    """A self-contained page (no scripts, no external files; failed cells link to logs/ next to it)."""
    e = html.escape
    short = levels_short or {}
    groups: dict[tuple, list] = defaultdict(list)
    for c in doc["cells"]:
        groups[(c.get("package", ""), c.get("version", ""))].append(c)
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>",
             f"<p>Generated {e(doc['generated'])}. "
             + ", ".join(f'<span class="s {s}">{MARKS[s]} {e(s)}</span> {n}' for s, n in doc["counts"].items() if n)
             + "</p>"]
    if doc["packages"]:
        rows = []
        for p in doc["packages"]:
            newest = p["newest-upstream"] or "?"
            cls = ' class="stale"' if p["newest-upstream"] and not p["newest-built"] else ""
            rows.append(f"<tr><th>{e(p['name'])}</th><td>{e(', '.join(p['versions']) or '–')}</td>"
                        f"<td{cls}>{e(newest)}{' (not built)' if cls else ''}</td></tr>")
        parts.append("<table><thead><tr><th>package</th><th>versions built</th><th>newest upstream</th></tr>"
                     f"</thead><tbody>{''.join(rows)}</tbody></table>")
    for (pkg, version), cells in sorted(groups.items()):
        if pkg:
            parts.append(f'<h2 id="{e(canonicalize_name(pkg))}-{e(version)}">{e(pkg)} {e(version)}</h2>')
        platforms = sorted({(c["libc"], c["arch"]) for c in cells})
        pythons = sorted({c["python"] for c in cells}, key=lambda p: (p.rstrip("t"), p))
        grid: dict[tuple, list] = defaultdict(list)
        for c in cells:
            grid[(c["python"], c["libc"], c["arch"])].append(c)
        head = "".join(f"<th>{e(LIBC_PLATFORM[lb])} {e(a)}</th>" for lb, a in platforms)
        body = []
        for py in pythons:
            tds = []
            for plat in platforms:
                here = grid.get((py, *plat), [])
                if not here:
                    tds.append('<td class="empty">–</td>')
                    continue
                badges = []
                for c in sorted(here, key=lambda c: c["isa"]):
                    tip = f"{c['id']}: {c['state']}" + (f" ({c['detail']})" if c.get("detail") else "")
                    label = f"{e(short.get(c['isa'], c['isa']))} {MARKS[c['state']]}"
                    badge = f'<span class="s {e(c["state"])}" title="{e(tip)}">{label}</span>'
                    if c.get("log"):
                        badge = f'<a href="{e(c["log"])}">{badge}</a>'
                    badges.append(badge)
                tds.append(f"<td>{''.join(badges)}</td>")
            body.append(f"<tr><th>{e(py)}</th>{''.join(tds)}</tr>")
        parts.append(f"<table><thead><tr><th>python</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        reasons = sorted({(c["state"], c.get("detail", "")) for c in cells
                          if c["state"] in ("known-failure", "upstream", "failed") and c.get("detail")})
        if reasons:
            parts.append("<ul>" + "".join(f"<li>{MARKS[s]} {e(s)}: {e(d)}</li>" for s, d in reasons) + "</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)
