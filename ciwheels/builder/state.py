"""The state of every cell: is its wheel on its registry, did it fail to build (and is that
remembered), is it a known failure, does the upstream index already provide it? `ciwheels plan
--missing` builds the cells whose state is `missing`; `ciwheels status` draws all of them.

Registry reads: one simple-index read per (registry, package), in parallel, without following
redirects (GitLab redirects to PyPI for names it hosts nothing of). PEP 691 JSON and PEP 503
HTML both work (registry.RegistryClient.files).

Failure memory lives in the status JSON the scheduled pipeline publishes (`ciwheels status
--format json`, format 1): each failed cell carries a fingerprint of what was built (package
version, image, cibuildwheel, environment and every option) and when. The next plan reads that
file back (`--previous PATH_OR_URL`) and does not rebuild a cell whose fingerprint is unchanged
until `--retry-after` days have passed or `--retry-failed` is given."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from ciwheels.builder.upstream import IndexCache, parse_time, upstream_has_wheel
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import read_pyproject, read_regular
from ciwheels.core.links import is_relative, safe_link
from ciwheels.core.log import get_logger
from ciwheels.core.secrets import redact_url
from ciwheels.core.urls import host_of
from ciwheels.core.versions import check_version
from ciwheels.core.wheel import InvalidWheelName, parse_wheel_name
from ciwheels.matrix.model import Cell, Registry, tags_match
from ciwheels.net.auth import credentials_for
from ciwheels.net.registry import RegistryClient, Target

log = get_logger("status")
STATUS_FORMAT = 1
# the states, in the order a grid legend lists them
STATES = ("published", "missing", "failed", "known-failure", "upstream", "unknown")


def project_name_version(project: Path) -> tuple[str, str | None]:
    """([project] name, version) of PROJECT/pyproject.toml; the version, when static, must be a
    PEP 440 version (versions.check_version), since it is compared with the registry's."""
    data = read_pyproject(project).get("project")
    if not isinstance(data, dict):
        return "", None
    name, version = data.get("name", ""), data.get("version")
    if version is not None:
        check_version(version, "[project] version", file=str(project / "pyproject.toml"))
    return name if isinstance(name, str) else "", version


@dataclass(frozen=True, slots=True)
class CellState:
    state: str  # one of STATES
    detail: str = ""  # the wheel found, the known failure's reason, the upstream wheel, why a build failed
    log: str = ""  # failed: link to the build log (relative: in this site; core.links.safe_link)
    fingerprint: str = ""  # failed: what was built (cell_fingerprint)
    since: str = ""  # failed: since when (ISO 8601, UTC): the first failure of this fingerprint
    run: str = ""  # failed: the CI pipeline where it last failed (http(s))
    this_run: bool = False  # failed: in this pipeline (else remembered from an earlier one)
    tried: str = ""  # failed: the last attempt (ISO 8601, UTC); --retry-after counts from it
    earlier_log: str = ""  # remembered failure: its log's link relative to the previous status (not written)

    def to_json(self) -> dict:
        out = {"state": self.state}
        for key in ("detail", "log", "fingerprint", "since", "tried", "run"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.this_run:
            out["this-run"] = True
        return out


def cell_fingerprint(cell: Cell) -> str:
    """What a build of the cell depends on: package version, image, cibuildwheel and every
    option and environment variable. A failure is remembered for this fingerprint only."""
    data = {k: v for k, v in cell.to_json().items() if k not in ("notes", "matrix_file", "registry", "runner",
                                                                  "timeout_minutes")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Listings:
    """Registry index pages, one read per (registry index, package), cached for the run. Where a
    cell's wheels are is `cell.destination` (matrix/destination.py); the credentials of each
    read are net/auth.py's, per host."""

    registry_urls: tuple[str, ...] = ()  # every registry URL of the matrix (auth's environment host)
    option_host: str | None = None  # the host of --repository-url: CIWHEELS_PASSWORD is for it, as in publish
    names: dict[str, str] = field(default_factory=dict)  # registry URL as given -> its name in the matrix
    pages: dict[tuple[str, str], list | None] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    parsed: dict[tuple[str, str], dict] = field(default_factory=dict)
    reads: int = 0

    @classmethod
    def of(cls, registries: dict[str, Registry], repository_url: str | None = None) -> Listings:
        return cls(tuple(r.url for r in registries.values()), repository_url and host_of(repository_url) or None,
                   {r.url: name for name, r in registries.items()})

    def where(self, cell: Cell) -> tuple[str, str] | None:
        """(upload URL as given, simple index URL) of the cell's destination; None when it has none."""
        dest = cell.destination
        return (dest.url_with_credentials or dest.url, dest.index_with_credentials or dest.index) if dest else None

    def _client(self, url: str, index: str):
        creds = credentials_for(url, index=index, registry_urls=self.registry_urls, registry=self.names.get(url, ""),
                                env_host=self.option_host)
        return RegistryClient(Target(url, creds.username, creds.password, creds.source, index),
                              retries=3, timeout=30, backoff=0.5)

    def prefetch(self, wanted: set[tuple[str, str, str]], jobs: int = 16) -> None:
        """Read (url, index, name) pages in parallel."""
        todo = sorted(w for w in wanted if (w[1], w[2]) not in self.pages)
        if not todo:
            return

        def read(item):
            url, index, name = item
            try:
                return self._client(url, index).files(name), ""
            except CiwheelsError as e:
                return None, str(e)

        with ThreadPoolExecutor(min(jobs, len(todo))) as pool:
            for (url, index, name), (files, error) in zip(todo, pool.map(read, todo)):
                self.reads += 1
                self.pages[(index, name)] = files
                if error:
                    self.errors[(index, name)] = error

    def files(self, cell: Cell, name: str) -> list | None:
        where = self.where(cell)
        if where is None:
            return None
        key = (where[1], name)
        if key not in self.pages:
            self.prefetch({(where[0], where[1], name)})
        return self.pages[key]

    def wheels(self, cell: Cell, name: str) -> dict | None:
        """`wheels_by_version` of the cell's registry page, parsed once per page for the run
        (owned by this object: it ends with the run)."""
        files = self.files(cell, name)
        if files is None:
            return None
        where = self.where(cell)
        key = (where[1], name)
        if key not in self.parsed:
            self.parsed[key] = wheels_by_version(files)
        return self.parsed[key]


def wheels_by_version(files: list) -> dict:
    """{Version: [(file name, tags, variant label)]} of an index page's file list."""

    out: dict = {}
    for f in files:
        if f.filename.endswith(".whl"):
            try:
                n = parse_wheel_name(f.filename)  # plain wheels and wheel variants
                version = Version(n.version)
            except (InvalidWheelName, ValueError):
                continue
            out.setdefault(version, []).append((f.filename, n.tags, n.label))
    return out


def registry_state(cell: Cell, wheels: dict | None, version: str | None) -> CellState:
    """published or missing from a registry page's `wheels_by_version` (None: it could not be read)."""
    if wheels is None:
        return CellState("unknown", "the registry could not be read")
    if version is None:  # dynamic version of a project: the newest on the registry
        if not wheels:
            return CellState("missing")
        want = max(wheels)
    else:
        want = Version(version)
    # a variant cell's wheel carries its label; every other cell's wheel carries none
    label = getattr(cell, "variant", None) or None
    for filename, tags, wheel_label in wheels.get(want, ()):
        if wheel_label == label and tags_match(tags, cell):
            return CellState("published", filename)
    return CellState("missing")


MAX_STATUS = 64 << 20  # bytes of a previous status JSON
MAX_DETAIL = 2000  # characters of a remembered failure's reason
_HEX = "0123456789abcdef"
CLOCK_SKEW = timedelta(hours=1)  # a `since` later than now by more than this is not believed


def read_previous(source: str | None, now: datetime | None = None) -> dict[str, dict]:
    """{cell id: remembered failure} of a status JSON written before (a path or an http(s) URL).
    No memory is a warning, never a stop: a missing file or a 404 (the first scheduled run), a
    status page behind access control (401, 403, a redirect to a sign-in page), a server error
    or a document that is not a ciwheels status JSON all give an empty memory, with a warning
    (the failed cells are then built again). Entries are validated (parse_previous)."""
    if not source:
        return {}
    if source.startswith(("http://", "https://")):
        text = _fetch_previous(source)
    else:
        if not os.path.lexists(source):
            log.info("no previous status at %s: no failure is remembered", source)
            return {}
        try:
            text = read_regular(Path(source), "previous status", MAX_STATUS).decode("utf-8", errors="replace")
        except CiwheelsError as e:
            log.warning("%s; no failure is remembered", e.message)
            return {}
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or data.get("format") != STATUS_FORMAT or not isinstance(data.get("cells"), list):
        log.warning("%s is not a ciwheels status JSON (format %d)%s; no failure is remembered, failed cells are "
                    "built again", redact_url(source), STATUS_FORMAT,
                    " (an HTML page: a sign-in page of a private site?)" if text.lstrip()[:1] == "<" else "")
        return {}
    return parse_previous(data, now, source)


def _fetch_previous(url: str) -> str | None:
    shown = redact_url(url)
    try:
        resp = RegistryClient.anonymous("", retries=3, timeout=30).get(url, follow_redirects=True)
    except CiwheelsError as e:
        log.warning("cannot read the previous status (%s); no failure is remembered, failed cells are built again",
                    e.message)
        return None
    if resp.status_code == 404:
        log.info("no previous status at %s: no failure is remembered", shown)
        return None
    if resp.status_code in (401, 403):
        log.warning("the previous status %s is behind access control (HTTP %d); no failure is remembered, failed "
                    "cells are built again (make the status page readable to the pipeline, or pass --previous a "
                    "file)", shown, resp.status_code)
        return None
    if resp.status_code != 200:
        log.warning("reading the previous status %s: HTTP %d; no failure is remembered", shown, resp.status_code)
        return None
    return resp.text


def parse_previous(data: dict, now: datetime | None = None, source: str = "the previous status") -> dict[str, dict]:
    """The remembered failures of a status document: {cell id: {state, fingerprint, since,
    tried, detail, log, run}}, each value checked. An entry that is not an object, has no string id,
    a fingerprint that is not hex, or a `since` that is not a time or lies in the future (it
    would never be due for a retry) is dropped with a warning (that cell is built again);
    a `tried` (the last attempt) that is not a time between `since` and now is taken as `since`;
    a `detail` that is not text is left out; `log` and `run` keep only http(s) and relative
    links. Entries of other states are not needed and not kept."""
    now = now or datetime.now(UTC)
    out: dict[str, dict] = {}
    dropped: list[str] = []
    for i, c in enumerate(data.get("cells") or []):
        if not isinstance(c, dict) or c.get("state") != "failed":
            continue
        cid, fingerprint, since = c.get("id"), c.get("fingerprint"), c.get("since")
        if not isinstance(cid, str) or not cid or len(cid) > 500:
            dropped.append(f"cells[{i}]: no id")
            continue
        if not isinstance(fingerprint, str) or not 1 <= len(fingerprint) <= 64 or set(fingerprint) - set(_HEX):
            dropped.append(f"{cid}: fingerprint {fingerprint!r:.40}")
            continue
        when = parse_time(since) if isinstance(since, str) else None
        if when is None or when > now + CLOCK_SKEW:
            dropped.append(f"{cid}: since {since!r:.40}" + (" is in the future" if when else " is not a time"))
            continue
        detail = c.get("detail")
        tried = parse_time(c.get("tried")) if isinstance(c.get("tried"), str) else None
        tried = tried if tried is not None and when <= tried <= now + CLOCK_SKEW else when
        entry = {"state": "failed", "fingerprint": fingerprint, "since": now_iso(when), "tried": now_iso(tried),
                 "detail": " ".join(detail.split())[:MAX_DETAIL] if isinstance(detail, str) else "",
                 "log": safe_link(c.get("log")), "run": safe_link(c.get("run"))}
        out[cid] = entry
    if dropped:
        log.warning("%s: %d remembered failure(s) dropped as malformed (those cells are built again): %s",
                    redact_url(source), len(dropped), "; ".join(dropped[:5]) + (" ..." if len(dropped) > 5 else ""))
    return out


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class StateOptions:
    upstream: bool = True  # ask the upstream index whether it provides the cell (builder mode)
    previous: dict[str, dict] = field(default_factory=dict)  # the last status JSON's cells
    failed_now: dict[str, dict] = field(default_factory=dict)  # {cell: {"detail": why, "log": link}} failed now
    run: str = ""  # this pipeline's URL (CI), recorded with the failures of this run
    retry_failed: bool = False
    retry_after_days: float = 30.0
    now: datetime | None = None


def cell_states(project, listings: Listings, opts: StateOptions | None = None) -> dict[str, CellState]:
    """{cell id: CellState} for every cell of an opened project (project/open.py's Project), in this
    order of precedence: known failure (the matrix says so), published (on its registry),
    failed in this run, provided upstream (builder mode, unless `upstream-wheels: build`),
    failed before with the same fingerprint and not due for a retry, else missing."""

    opts = opts or StateOptions()
    now = opts.now or datetime.now(UTC)
    cells = project.expansion.cells
    own_name, own_version = project_name_version(project.root)
    known = [(k, m.file) for m in project.spec.matrices for k in m.known_failures]
    packages = {p.name: p for m in project.spec.matrices for p in m.packages}

    wanted = set()
    for cell in cells:
        where = listings.where(cell)
        name = canonicalize_name(cell.package or own_name)
        if where and name:
            wanted.add((where[0], where[1], name))
    listings.prefetch(wanted)
    upstream = None
    # the upstream index is read only for packages with a cell their registry lacks: a no-op
    # scheduled plan reads one page per package and registry, nothing else
    lacking = set()
    for cell in cells:
        name = canonicalize_name(cell.package or own_name)
        if cell.package and packages[cell.package].upstream_wheels == "skip" and (
                listings.where(cell) is None or registry_state(cell, listings.wheels(cell, name),
                                                               cell.version).state == "missing"):
            lacking.add(cell.package)
    if opts.upstream and lacking:
        upstream = project.upstream or IndexCache()
        project.upstream = upstream
        upstream.prefetch(lacking)
    unnamed = 0
    out: dict[str, CellState] = {}
    for cell in cells:
        attrs = {"python": cell.python, "libc": cell.libc, "arch": cell.arch, "isa": cell.isa, "policy": cell.policy,
                 "package": cell.package, "version": cell.version, "identifier": cell.identifier}
        hit = next((k for k, f in known if f == cell.matrix_file and k.selector.matches(attrs)), None)
        if hit is not None:
            out[cell.id] = CellState("known-failure", hit.reason)
            continue
        name = canonicalize_name(cell.package or own_name)
        if listings.where(cell) is None or not name:
            unnamed += 1
            state = CellState("missing", "no registry to check")
        else:
            state = registry_state(cell, listings.wheels(cell, name), cell.version or own_version)
        if state.state != "missing":
            out[cell.id] = state
            continue
        fingerprint = cell_fingerprint(cell)
        prev = opts.previous.get(cell.id)
        remembered = prev if prev and prev.get("state") == "failed" and prev.get("fingerprint") == fingerprint \
            else None
        if cell.id in opts.failed_now:
            now_failed = opts.failed_now[cell.id]
            out[cell.id] = CellState("failed", now_failed.get("detail") or "the build failed", now_failed.get("log", ""),
                                     fingerprint, remembered["since"] if remembered else now_iso(now),
                                     opts.run, True, now_iso(now))
            continue
        if upstream is not None and cell.package and packages[cell.package].upstream_wheels == "skip":
            wheel = upstream_has_wheel(upstream.files(cell.package), cell)
            if wheel:
                out[cell.id] = CellState("upstream", wheel)
                continue
        if remembered:
            # counted from the last attempt: a retry that failed again waits another period
            tried = parse_time(remembered.get("tried") or remembered.get("since", ""))
            due = tried is None or now - tried >= timedelta(days=opts.retry_after_days)
            if not opts.retry_failed and not due:
                # a log of the earlier site is not in this one: only an absolute link survives
                earlier_log = remembered.get("log", "")
                out[cell.id] = CellState("failed", remembered.get("detail", "") or "the build failed",
                                         "" if is_relative(earlier_log) else earlier_log, fingerprint,
                                         remembered.get("since", ""), remembered.get("run", ""),
                                         tried=remembered.get("tried", ""),
                                         earlier_log=earlier_log if is_relative(earlier_log) else "")
                continue
        out[cell.id] = state
    if unnamed:
        log.warning("%d cell(s) name no registry and none is given (--repository-url, CIWHEELS_REPOSITORY_URL): "
                    "counted as missing", unnamed)
    return out


def publish_status(cells: list[Cell], registries: dict[str, Registry], project: Path) -> dict[str, str]:
    """{cell id: "published" | "missing" | "unknown"} for cells that name a registry (the HTML
    grid of `ciwheels matrix --status`)."""
    listings = Listings.of(registries)
    own_name, own_version = project_name_version(project)
    named = [c for c in cells if c.destination]
    listings.prefetch({(*listings.where(c), canonicalize_name(c.package or own_name)) for c in named
                       if (c.package or own_name)})
    status = {}
    for cell in named:
        name = canonicalize_name(cell.package or own_name)
        wheels = listings.wheels(cell, name) if name else None
        status[cell.id] = registry_state(cell, wheels, cell.version or own_version).state
    return status
