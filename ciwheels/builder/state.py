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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from ciwheels.builder.upstream import IndexCache, parse_time, upstream_has_wheel
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import read_pyproject
from ciwheels.core.log import get_logger
from ciwheels.core.wheel import InvalidWheelName, parse_wheel_name
from ciwheels.matrix.model import Cell, Registry, tags_match
from ciwheels.net.auth import credentials_for
from ciwheels.net.registry import RegistryClient, Target

log = get_logger("status")
STATUS_FORMAT = 1
# the states, in the order a grid legend lists them
STATES = ("published", "missing", "failed", "known-failure", "upstream", "unknown")


def project_name_version(project: Path) -> tuple[str, str | None]:
    data = read_pyproject(project).get("project")
    if not isinstance(data, dict):
        return "", None
    return data.get("name", ""), data.get("version")


@dataclass(frozen=True, slots=True)
class CellState:
    state: str  # one of STATES
    detail: str = ""  # the wheel found, the known failure's reason, the upstream wheel, the error
    log: str = ""  # failed: link to the build log
    fingerprint: str = ""  # failed: what was built (cell_fingerprint)
    since: str = ""  # failed: when (ISO 8601, UTC)

    def to_json(self) -> dict:
        out = {"state": self.state}
        for key in ("detail", "log", "fingerprint", "since"):
            if getattr(self, key):
                out[key] = getattr(self, key)
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
    names: dict[str, str] = field(default_factory=dict)  # registry URL as given -> its name in the matrix
    pages: dict[tuple[str, str], list | None] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    parsed: dict[tuple[str, str], dict] = field(default_factory=dict)
    reads: int = 0

    @classmethod
    def of(cls, registries: dict[str, Registry]) -> Listings:
        return cls(tuple(r.url for r in registries.values()), {r.url: name for name, r in registries.items()})

    def where(self, cell: Cell) -> tuple[str, str] | None:
        """(upload URL as given, simple index URL) of the cell's destination; None when it has none."""
        dest = cell.destination
        return (dest.url_with_credentials or dest.url, dest.index) if dest else None

    def _client(self, url: str, index: str):
        creds = credentials_for(url, index=index, registry_urls=self.registry_urls, registry=self.names.get(url, ""))
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


def read_previous(source: str | None) -> dict[str, dict]:
    """{cell id: its entry} of a status JSON written before (a path or an http(s) URL; a
    missing file or a 404 is an empty memory: the first scheduled run)."""
    if not source:
        return {}
    if source.startswith(("http://", "https://")):

        resp = RegistryClient.anonymous("", retries=3, timeout=30).get(source, follow_redirects=True)
        if resp.status_code == 404:
            log.info("no previous status at %s: no failure is remembered", source)
            return {}
        if resp.status_code != 200:
            raise CiwheelsError(f"reading the previous status {source}: HTTP {resp.status_code}")
        text = resp.text
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            log.info("no previous status at %s: no failure is remembered", source)
            return {}
    try:
        data = json.loads(text)
        cells = data["cells"]
        if data.get("format") != STATUS_FORMAT or not isinstance(cells, list):
            raise ValueError
        return {c["id"]: c for c in cells if isinstance(c, dict) and "id" in c}
    except (ValueError, KeyError, TypeError):
        raise CiwheelsError(f"{source} is not a ciwheels status JSON (format {STATUS_FORMAT})") from None


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class StateOptions:
    upstream: bool = True  # ask the upstream index whether it provides the cell (builder mode)
    previous: dict[str, dict] = field(default_factory=dict)  # the last status JSON's cells
    failed_now: dict[str, str] = field(default_factory=dict)  # {cell: log link} failed in this run (gather)
    retry_failed: bool = False
    retry_after_days: float = 30.0
    now: datetime | None = None


def cell_states(project, listings: Listings, opts: StateOptions | None = None) -> dict[str, CellState]:
    """{cell id: CellState} for every cell of an opened project (pipeline.Project), in this
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
        if cell.id in opts.failed_now:
            out[cell.id] = CellState("failed", "failed in this pipeline", opts.failed_now[cell.id], fingerprint,
                                     now_iso(now))
            continue
        if upstream is not None and cell.package and packages[cell.package].upstream_wheels == "skip":
            wheel = upstream_has_wheel(upstream.files(cell.package), cell)
            if wheel:
                out[cell.id] = CellState("upstream", wheel)
                continue
        prev = opts.previous.get(cell.id)
        if prev and prev.get("state") == "failed" and prev.get("fingerprint") == fingerprint:
            since = parse_time(prev.get("since", ""))
            due = since is None or now - since >= timedelta(days=opts.retry_after_days)
            if not opts.retry_failed and not due:
                out[cell.id] = CellState("failed", prev.get("detail", ""), prev.get("log", ""), fingerprint,
                                         prev.get("since", ""))
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
