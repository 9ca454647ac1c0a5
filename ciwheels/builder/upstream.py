"""Builder mode against the package index: which versions of a package to build (`versions:
latest` or `{spec, newest, min-age-days, pre}`), and whether the index already has a wheel for
a cell (upstream started shipping that platform).

Network access is explicit: the index is read only for packages whose versions need resolving
or when a caller asks about upstream wheels, once per package per run (`IndexCache`), and
through `registry.RegistryClient`, so PEP 691 JSON (PyPI, devpi) and PEP 503 HTML (pypiserver,
GitLab) both work. `CIWHEELS_VERSIONS` (JSON `{name: [versions]}`, what `ciwheels plan --json`
prints as `versions`) pins the versions instead: the build jobs of a scheduled pipeline build
exactly what its plan job resolved, even if a release appeared in between."""

from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import get_logger
from ciwheels.core.versions import check_version
from ciwheels.matrix.model import Cell, tags_match
from ciwheels.matrix.normalise import Package, ProjectSpec, VersionSelection
from ciwheels.net.index import IndexFile
from ciwheels.net.registry import RegistryClient, index_url

log = get_logger("upstream")
PIN_ENV = "CIWHEELS_VERSIONS"


class IndexCache:
    """Project pages of one index, each read at most once (reads of several names in parallel)."""

    def __init__(self, url: str | None = None, *, client: RegistryClient | None = None, jobs: int = 16) -> None:
        self.client = client or RegistryClient.anonymous(url or index_url(), retries=3, timeout=30)
        self.url = self.client.target.simple
        self.jobs = jobs
        self.pages: dict[str, list[IndexFile]] = {}
        self.reads = 0

    def prefetch(self, names) -> None:
        todo = sorted({n for n in names if n not in self.pages})
        if not todo:
            return
        with ThreadPoolExecutor(min(self.jobs, len(todo))) as pool:
            for name, files in zip(todo, pool.map(self._read, todo)):
                self.pages[name] = files

    def _read(self, name: str) -> list[IndexFile]:
        self.reads += 1
        return self.client.files(name, follow_redirects=True)

    def files(self, name: str) -> list[IndexFile]:
        if name not in self.pages:
            self.pages[name] = self._read(name)
        return self.pages[name]


def release_versions(files: list[IndexFile]) -> dict[Version, list[IndexFile]]:
    """{version: its files} from a project's files (sdists and wheels; unparsable names skipped)."""
    out: dict[Version, list[IndexFile]] = {}
    for f in files:
        try:
            if f.filename.endswith(".whl"):
                version = parse_wheel_filename(f.filename)[1]
            elif f.filename.endswith((".tar.gz", ".zip")):
                version = parse_sdist_filename(f.filename)[1]
            else:
                continue
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            continue
        out.setdefault(version, []).append(f)
    return out


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time as indexes (PEP 700 upload-time) and status files write it; UTC when it
    names no zone; None when it is not a time."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def select_versions(name: str, files: list[IndexFile], sel: VersionSelection,
                    now: datetime | None = None) -> list[str]:
    """The versions a selection picks, oldest first. A version counts when it has an sdist that
    is not yanked (we build from sdists); pre-releases only with `pre`; with `min-age-days`,
    only releases whose first file was uploaded at least that long ago (an index that serves no
    upload times, PEP 503 HTML, cannot tell: the release is then taken, with a warning)."""
    now = now or datetime.now(UTC)
    spec = SpecifierSet(sel.spec, prereleases=sel.pre or None)
    picked = []
    undated = []
    for version, vfiles in release_versions(files).items():
        sdists = [f for f in vfiles if not f.filename.endswith(".whl") and not f.yanked]
        if not sdists or (version.is_prerelease and not sel.pre) or version not in spec:
            continue
        if sel.min_age_days:
            times = [t for t in (parse_time(f.upload_time) for f in vfiles) if t]
            if not times:
                undated.append(str(version))
            elif now - min(times) < timedelta(days=sel.min_age_days):
                continue
        picked.append(version)
    picked.sort()
    if sel.newest:
        picked = picked[-sel.newest:]
    if undated:
        log.warning("%s: the index serves no upload times; min-age-days cannot hold back %s", name,
                    ", ".join(undated))
    return [str(v) for v in picked]


def pinned_versions(env: dict[str, str] | None = None) -> dict[str, list[str]] | None:
    """CIWHEELS_VERSIONS, read: {canonical name: [versions]}; every version PEP 440
    (versions.check_version), or a CiwheelsError: a pin names folders, files, job and cell ids."""
    from packaging.utils import canonicalize_name

    raw = (os.environ if env is None else env).get(PIN_ENV, "")
    if not raw:
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ValueError
    except (ValueError, RecursionError):
        raise CiwheelsError(f"{PIN_ENV} must be JSON {{name: [versions]}}, as `ciwheels plan --json` prints it "
                            f"under 'versions', not {raw[:80]!r}") from None
    return {canonicalize_name(k): [check_version(x, f"{PIN_ENV} ({k})") for x in v] for k, v in data.items()}


def needs_resolving(spec: ProjectSpec) -> list[Package]:
    return [p for m in spec.matrices for p in m.packages if p.selection is not None]


def resolve_versions(spec: ProjectSpec, cache: IndexCache | None = None, now: datetime | None = None,
                     pins: dict[str, list[str]] | None = None) -> IndexCache | None:
    """Give every package with a version selection its versions, in place. Reads the index only
    when a selection is not pinned (CIWHEELS_VERSIONS). Returns the cache it used, if any."""
    todo = needs_resolving(spec)
    if not todo:
        return cache
    pins = pinned_versions() if pins is None else pins
    if pins is None or not all(p.name in pins for p in todo):
        cache = cache or IndexCache()
        cache.prefetch(p.name for p in todo if not pins or p.name not in pins)
    for m in spec.matrices:
        out = []
        for p in m.packages:
            if p.selection is not None:
                if pins and p.name in pins:
                    versions = pins[p.name]
                else:
                    versions = select_versions(p.name, cache.files(p.name), p.selection, now)
                    if not versions:
                        log.warning("%s: no release on %s matches its versions selection; nothing to build",
                                    p.name, cache.url)
                p = dataclasses.replace(p, versions=tuple(versions))
            out.append(p)
        m.packages = out
    return cache


def resolved_versions(spec: ProjectSpec) -> dict[str, list[str]]:
    """{package: versions} of every package with a selection, for CIWHEELS_VERSIONS."""
    return {p.name: list(p.versions) for p in needs_resolving(spec)}


def upstream_has_wheel(files: list[IndexFile], cell: Cell) -> str | None:
    """The name of a wheel the index has for the cell's package version and platform (not
    yanked), else None."""
    want = Version(cell.version)
    for f in files:
        if f.filename.endswith(".whl") and not f.yanked:
            try:
                _, version, _, tags = parse_wheel_filename(f.filename)
            except (InvalidWheelFilename, InvalidVersion):
                continue
            if version == want and tags_match(tags, cell):
                return f.filename
    return None


def newest_release(files: list[IndexFile], pre: bool = False) -> str | None:
    versions = [v for v, fs in release_versions(files).items()
                if (pre or not v.is_prerelease) and any(not f.yanked for f in fs)]
    return str(max(versions)) if versions else None
