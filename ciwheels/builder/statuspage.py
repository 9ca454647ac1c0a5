"""`ciwheels status`: every cell's state as a grid (package x version x Python x platform x
ISA level), as text, a stable JSON document (format 1) or a self-contained HTML page.

The JSON is also the failure memory of scheduled pipelines (builder/state.py): the pipeline publishes
it next to the page, and the next plan reads it back."""

from __future__ import annotations

import dataclasses
import hashlib
import html
import os
import re
import urllib.parse
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name

from ciwheels.builder.state import STATES, STATUS_FORMAT, CellState, now_iso
from ciwheels.builder.upstream import newest_release
from ciwheels.catalog import LIBC_PLATFORM
from ciwheels.core import secrets
from ciwheels.core.errors import CiwheelsError, shorten
from ciwheels.core.files import read_regular
from ciwheels.core.links import safe_link
from ciwheels.core.log import get_logger
from ciwheels.core.secrets import scrub
from ciwheels.dist.artifacts import OK_STATUSES, REPORT, atomic_write, read_report
from ciwheels.images.labels import NOT_IN_IMAGE
from ciwheels.net.registry import RegistryClient

log = get_logger("status")

MARKS = {"published": "✓", "missing": "·", "failed": "✗", "known-failure": "⊘", "upstream": "↑", "unknown": "?"}


MAX_LOG = 8 << 20  # bytes of one build log copied to the site (a longer one: its last 8 MiB)
MAX_REPORTS = 200_000  # files walked in the artifacts
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,150}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,250}")
# cibuildwheel's steps, in the words its log prints them, and what failing there means
_STEPS = (("Copying project into container", "the project could not be copied into the container"),
          ("Running before_all", "before-all failed"),
          ("Setting up build environment", "the build environment could not be set up"),
          ("Running before_build", "before-build failed"),
          ("Building wheel", "the build failed (compiling or packaging the wheel)"),
          ("Repairing wheel", "auditwheel refused the wheel (repair failed: e.g. a library it cannot bundle, or "
                              "symbols newer than the policy allows)"),
          ("Testing wheel", "the tests failed"))
_STATUS_REASONS = {NOT_IN_IMAGE: "the cell's Python is not in the image",
                   "isa-mismatch": "a binary needs a higher ISA level than the cell's",
                   "isa-unproven": "the binaries' ISA level could not be proven"}


@dataclass(frozen=True)
class FailedBuild:
    status: str
    reason: str  # why, in a sentence (failure_reason)
    log: Path | None  # the log file in the artifacts (a regular file, not a link), or None


def failure_reason(status: str, log_text: str, exit_code: int | None) -> str:
    """Why a build failed, from its report's status and the end of its log: the step of
    cibuildwheel it stopped in, or cibuildwheel's own error line."""
    if status in _STATUS_REASONS:
        first = next((ln.strip() for ln in log_text.splitlines() if ln.strip()), "")
        return _STATUS_REASONS[status] + (f": {first[:300]}" if status == NOT_IN_IMAGE and first else "")
    last_step, at = None, -1
    for words, meaning in _STEPS:
        i = log_text.rfind(words + "...")
        if i > at:
            last_step, at = meaning, i
    errors = [ln.split("error:", 1)[1].strip() for ln in log_text.splitlines()
              if ln.startswith(("cibuildwheel: error:", "::error::cibuildwheel:")) and "error:" in ln]
    if last_step:
        line = _error_line(log_text[at:].split("\n", 1)[-1])
        return f"{last_step}: {line}" if line else last_step
    if errors:
        return f"cibuildwheel: {errors[-1][:300]}"
    return "the build failed" + (f" (cibuildwheel exit {exit_code})" if exit_code is not None else "")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ERRORISH = re.compile(r"(?i)\b(error|failed|failure|refused|cannot|not found|no such|undefined reference|"
                       r"illegal instruction|segmentation fault|traceback)\b")


def _error_line(text: str) -> str:
    """The last line of a step's output that says what went wrong (at most 200 characters)."""
    for line in reversed(text.splitlines()[-400:]):
        line = _ANSI.sub("", line).strip()
        if line and _ERRORISH.search(line) and not line.startswith(("cibuildwheel: error:", "::error::")):
            return line if len(line) <= 200 else line[:197] + "..."
    return ""


def failed_builds(sources: list[Path], cells: set[str] | None = None) -> dict[str, FailedBuild]:
    """{cell: FailedBuild} of the build reports under `sources` (downloaded job artifacts, which
    are hostile in builder mode: somebody else's sdist ran in those jobs) whose build failed.
    Reports and logs are read through the one guarded reader (core.files.read_regular: no links,
    regular files only, bounded); a report that cannot be read is skipped with a warning; a
    report's `cell` is data: one that is not a cell of the project (`cells`) is ignored. A
    report's log is looked up next to the report's folder (OUT/<job>.log beside
    OUT/<cell>/build-report.json), by its file name only: the path it records is the build
    machine's."""
    out: dict[str, FailedBuild] = {}
    seen = 0
    for src in sources:
        for top, dirs, files in os.walk(src, followlinks=False):
            dirs.sort()
            seen += len(files)
            if seen > MAX_REPORTS:
                raise CiwheelsError(f"more than {MAX_REPORTS} files in the artifacts, the limit")
            if REPORT not in files:
                continue
            path = Path(top) / REPORT
            try:
                report = read_report(path)
            except CiwheelsError as e:
                log.warning("skipping a build report: %s", e.message if not e.file else f"{e.file}: {e.message}")
                continue
            if report.cell is None or report.status in OK_STATUSES:
                continue
            if cells is not None and report.cell not in cells:
                log.warning("%s: the build report names the cell %r, which is not a cell of the matrix; ignored",
                            path, shorten(report.cell, 120))
                continue
            logfile, text = None, ""
            name = PurePosixPath(report.log.replace("\\", "/")).name if report.log else ""
            if name.endswith(".log") and _SAFE_NAME.fullmatch(name):
                candidate = path.parent.parent / name
                if os.path.lexists(candidate):
                    try:
                        # scrubbed before anything is read from it: the reason lands on the page
                        text = scrub(read_regular(candidate, "build log", MAX_LOG, tail=True).decode("utf-8",
                                                                                                   "replace"))
                        logfile = candidate
                    except CiwheelsError as e:
                        log.warning("%s: %s; the failure is shown without its log", e.file, e.message)
            status = report.status or "failed"
            out[report.cell] = FailedBuild(status, failure_reason(status, text, report.cibuildwheel_exit), logfile)
    return out


def log_name(cell: str) -> str:
    """The file name of a cell's log in the site: the cell id when it is a plain name, else a
    hash of it (cell ids are data, never paths)."""
    if _SAFE_ID.fullmatch(cell) and ".." not in cell:
        return f"{cell}.log"
    return f"cell-{hashlib.sha256(cell.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}.log"


def copy_logs(failed: dict[str, FailedBuild], site: Path) -> dict[str, str]:
    """Copy failed cells' logs to SITE/logs/<cell>.log, read again through the guarded reader
    and without any remembered credential (core.secrets.scrub: a build may print its
    environment); {cell: relative link}."""
    links = {}
    for cell, build in sorted(failed.items()):
        if build.log is None:
            continue
        text = read_regular(build.log, "build log", MAX_LOG, tail=True).decode("utf-8", "replace")
        logs = site / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        name = log_name(cell)
        data = scrub(text).encode("utf-8", "replace")
        atomic_write(logs / name, lambda f: f.write(data))
        links[cell] = f"logs/{name}"
    return links


MAX_CARRIED = 200  # logs of remembered failures carried into a new site per run


def carry_logs(states: dict[str, CellState], previous: str | None, site: Path) -> dict[str, CellState]:
    """The logs of failures remembered from the previous status, copied into the new site
    (SITE/logs/, the same guarded way: bounded, scrubbed), since the new site replaces the old
    one: {cell: its state with the link}. Read relative to the previous status (its URL, only
    from that site, or its folder); a log that cannot be read leaves the failure without one."""
    todo = sorted((cid, st) for cid, st in states.items() if st.earlier_log)[:MAX_CARRIED]
    if not todo or not previous:
        return {}
    remote = previous.startswith(("http://", "https://"))
    client = RegistryClient.anonymous("", retries=2, timeout=30) if remote else None

    def read(item) -> tuple[str, str | None]:
        cid, st = item
        try:
            if remote:
                resp = client.get(urllib.parse.urljoin(previous, st.earlier_log), follow_redirects=False)
                if resp.status_code != 200:
                    return cid, None
                data = resp.content[-MAX_LOG:]
            else:
                data = read_regular(Path(previous).parent / st.earlier_log, "earlier build log", MAX_LOG, tail=True)
        except CiwheelsError:
            return cid, None
        return cid, scrub(data.decode("utf-8", "replace"))

    out = {}
    with ThreadPoolExecutor(8) as pool:
        for cid, text in pool.map(read, todo):
            if text is None:
                continue
            (site / "logs").mkdir(parents=True, exist_ok=True)
            name = log_name(cid)
            data = text.encode("utf-8", "replace")
            atomic_write(site / "logs" / name, lambda f: f.write(data))
            out[cid] = dataclasses.replace(states[cid], log=f"logs/{name}", earlier_log="")
    return out


def remember_environment_secrets(env=None) -> None:
    """The credentials a CI job has in its environment are scrubbed from what the status page
    copies (logs), whether or not this run used them."""
    env = os.environ if env is None else env
    for key in ("CIWHEELS_PASSWORD", "CI_JOB_TOKEN", "GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                "CI_REGISTRY_PASSWORD", "TWINE_PASSWORD", "UV_PUBLISH_TOKEN", "PYPI_TOKEN"):
        if env.get(key):
            secrets.remember(env[key], env.get("CIWHEELS_USERNAME", "") if key == "CIWHEELS_PASSWORD" else "")


def pipeline_url(env=None) -> str:
    """This CI pipeline's web page (GitHub Actions run, GitLab pipeline), or ""."""
    env = os.environ if env is None else env
    if env.get("CI_PIPELINE_URL"):
        return safe_link(env["CI_PIPELINE_URL"])
    if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
        return safe_link(f"{env['GITHUB_SERVER_URL'].rstrip('/')}/{env['GITHUB_REPOSITORY']}/actions/runs/"
                         f"{env['GITHUB_RUN_ID']}")
    return ""


def status_document(project, states: dict[str, CellState], now=None) -> dict:
    """The stable JSON: format, generated, counts, packages (versions selected, versions built:
    with at least one published cell, state counts, the newest upstream release and whether it
    is selected), cells (id, coordinates, state and its details)."""
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
            mine = [c for c in cells if c.get("package") == p.name]
            built = [v for v in p.versions if any(c["version"] == v and c["state"] == "published" for c in mine)]
            entry = {"name": p.name, "versions": list(p.versions), "built": built,
                     "states": {s: n for s in STATES if (n := sum(1 for c in mine if c["state"] == s))},
                     "newest-upstream": None, "newest-built": None}
            if project.upstream is not None and p.name in project.upstream.pages:
                newest = newest_release(project.upstream.pages[p.name])
                entry["newest-upstream"] = newest
                entry["newest-built"] = newest in p.versions if newest else None
            packages.append(entry)
    counts = {s: sum(1 for c in cells if c["state"] == s) for s in STATES}
    return {"format": STATUS_FORMAT, "generated": now_iso(now), "counts": counts, "packages": packages,
            "cells": cells}


def _when(c: dict) -> str:
    """'in this pipeline' or 'since <date>' of a failed cell."""
    since = c.get("since", "")[:10]
    if c.get("this-run"):
        return "in this pipeline" + (f" (failing since {since})" if since and since != "" else "")
    return f"in an earlier pipeline, since {since}" if since else "in an earlier pipeline"


def text_status(doc: dict) -> str:
    lines = []
    groups: dict[tuple, list] = defaultdict(list)
    for c in doc["cells"]:
        groups[(c.get("package", ""), c.get("version", ""))].append(c)
    failed = [c for c in doc["cells"] if c["state"] == "failed"]
    if failed:
        lines.append(f"{len(failed)} failed:")
        for c in failed:
            lines.append(f"  ✗ {c['id']}: {c.get('detail') or 'the build failed'} ({_when(c)})"
                         + (f" log: {c['log']}" if c.get("log") else "") + (f" run: {c['run']}" if c.get("run") else ""))
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
th{background:#f3f3f3}td.empty{color:#bbb}td.why{text-align:left;max-width:40rem}
.s{display:inline-block;border-radius:.3rem;padding:0 .35rem;margin:0 .1rem;font-size:.85em;border:1px solid #aaa}
.published{background:#d9f2d9;border-color:#3c963c}.missing{background:#f3f3f3}
.failed{background:#fbe3e3;border-color:#c05050}.known-failure{background:#fff3cd;border-color:#c9a227}
.upstream{background:#e6f0ff;border-color:#6d8fcf}.unknown{background:#eee}
.stale{color:#a05000;font-weight:bold}
"""


def _anchor(pkg: str, version: str) -> str:
    """The id of a package version's grid: only characters that need no escaping anywhere."""
    return "v-" + re.sub(r"[^A-Za-z0-9._-]", "_", f"{canonicalize_name(pkg)}-{version}")


def html_status(doc: dict, title: str, levels_short: dict[str, str] | None = None) -> str:
    """A self-contained page (no scripts, no external files): failures first (what, since when,
    why, the log), then each package's state, then a grid per package version. Every text is
    escaped; links are only http(s) or relative ones into the site (core.links.safe_link)."""
    e = html.escape
    short = levels_short or {}
    groups: dict[tuple, list] = defaultdict(list)
    for c in doc["cells"]:
        groups[(c.get("package", ""), c.get("version", ""))].append(c)
    anchors = {key: _anchor(*key) for key in groups if key[0]}

    def badge(state: str, text: str) -> str:
        return f'<span class="s {e(state)}">{e(text)}</span>'

    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>",
             f"<p>Generated {e(doc['generated'])}. "
             + ", ".join(f'{badge(s, MARKS[s] + " " + s)} {n}' for s, n in doc["counts"].items() if n) + "</p>"]
    failed = [c for c in doc["cells"] if c["state"] == "failed"]
    if failed:
        rows = []
        for c in failed:
            links = []
            if safe_link(c.get("log")):
                links.append(f'<a href="{e(safe_link(c["log"]))}">log</a>')
            if safe_link(c.get("run")):
                links.append(f'<a href="{e(safe_link(c["run"]))}">pipeline</a>')
            what = f"{c.get('package', '')} {c.get('version', '')}".strip()
            key = (c.get("package", ""), c.get("version", ""))
            what = f'<a href="#{anchors[key]}">{e(what)}</a>' if key in anchors else e(what)
            rows.append(f"<tr><td>{what}</td><td>{e(c['python'])}</td><td>{e(LIBC_PLATFORM.get(c['libc'], c['libc']))} "
                        f"{e(c['arch'])}</td><td>{e(short.get(c['isa'], c['isa']))}</td><td>{e(_when(c))}</td>"
                        f"<td class=\"why\">{e(c.get('detail') or 'the build failed')}</td>"
                        f"<td>{' '.join(links) or '–'}</td></tr>")
        parts.append(f'<h2 id="failures">{len(failed)} failed</h2><table><thead><tr><th>package</th><th>python</th>'
                     "<th>platform</th><th>level</th><th>when</th><th>why</th><th>links</th></tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table>")
    if doc["packages"]:
        rows = []
        for p in doc["packages"]:
            newest = p["newest-upstream"] or "?"
            cls = ' class="stale"' if p["newest-upstream"] and not p["newest-built"] else ""
            first = next((anchors[(p["name"], v)] for v in p["versions"] if (p["name"], v) in anchors), None)
            name = f'<a href="#{first}">{e(p["name"])}</a>' if first else e(p["name"])
            state = " ".join(badge(s, f"{MARKS[s]} {n} {s}") for s, n in p.get("states", {}).items()) or "–"
            rows.append(f"<tr><th>{name}</th><td>{state}</td><td>{e(', '.join(p.get('built', [])) or '–')}</td>"
                        f"<td{cls}>{e(newest)}{' (not built)' if cls else ''}</td></tr>")
        parts.append("<table><thead><tr><th>package</th><th>state</th><th>versions built</th><th>newest upstream</th>"
                     f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    for (pkg, version), cells in sorted(groups.items()):
        if pkg:
            parts.append(f'<h2 id="{anchors[(pkg, version)]}">{e(pkg)} {e(version)}</h2>')
        platforms = sorted({(c["libc"], c["arch"]) for c in cells})
        pythons = sorted({c["python"] for c in cells}, key=lambda p: (p.rstrip("t"), p))
        grid: dict[tuple, list] = defaultdict(list)
        for c in cells:
            grid[(c["python"], c["libc"], c["arch"])].append(c)
        head = "".join(f"<th>{e(LIBC_PLATFORM.get(lb, lb))} {e(a)}</th>" for lb, a in platforms)
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
                    one = f'<span class="s {e(c["state"])}" title="{e(tip)}">{label}</span>'
                    if safe_link(c.get("log")):
                        one = f'<a href="{e(safe_link(c["log"]))}">{one}</a>'
                    badges.append(one)
                tds.append(f"<td>{''.join(badges)}</td>")
            body.append(f"<tr><th>{e(py)}</th>{''.join(tds)}</tr>")
        parts.append(f"<table><thead><tr><th>python</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        reasons = sorted({(c["state"], c.get("detail", "")) for c in cells
                          if c["state"] in ("known-failure", "upstream", "failed") and c.get("detail")})
        if reasons:
            parts.append("<ul>" + "".join(f"<li>{MARKS[s]} {e(s)}: {e(d)}</li>" for s, d in reasons) + "</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)
