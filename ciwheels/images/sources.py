"""Upstream CPython source tarballs for the build images: which release of each X.Y, where to
get it and its sha256 (catalog data, `matrix/catalog/cpython.toml`), fetched into the cache.

A download comes from python.org, a named mirror of the catalog (`debian`: Debian's
`.orig.tar.*`, python.org's files byte for byte), a URL template of the user's, or a local
folder. Whatever the source, the file is kept only when its sha256 is the pinned one; it lands
in `<cache>/sources/` under python.org's file name by an atomic rename, and a cached file with
the right hash is used without any network."""

from __future__ import annotations

import hashlib
import os
import string
import tempfile
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from ciwheels.catalog import load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import sha256_file
from ciwheels.core.log import get_logger
from ciwheels.core.resources import cache_dir, data_dir
from ciwheels.net.http import HttpClient

log = get_logger("pysources")

CATALOG = "matrix/catalog/cpython.toml"  # as errors name it
MAX_BYTES = 200 << 20  # a CPython tarball is 20-40 MB; anything past this is not one
DEADLINE = 1800.0  # seconds for a whole download, however the server trickles
ATTEMPTS = 3  # tries of one URL on connection errors, timeouts, 5xx and 429
BACKOFF = 2.0  # seconds before the second try, doubled for each further one
_FIELDS = ("version", "minor")
_SOURCE_HINT = ("Choose another source with --python-source: a mirror name, a URL template with {version} "
                "or {minor}, or a folder holding the tarballs")


@dataclass(frozen=True, slots=True)
class Source:
    """One pinned CPython tarball and where this fetch gets it. `url` is http(s), or a file://
    URL for a folder mirror; `filename` is python.org's name of the file (the cache's)."""

    minor: str  # "3.13"
    version: str  # "3.13.5"
    sha256: str
    url: str
    filename: str


@dataclass(frozen=True, slots=True)
class _Pin:
    version: str
    sha256: str
    url: str  # python.org's URL template
    mirrors: dict[str, str]  # name -> URL template


@cache
def _catalog() -> tuple[dict[str, _Pin], tuple[str, ...]]:
    return load_pins(data_dir("catalog") / "cpython.toml")


def load_pins(path: Path) -> tuple[dict[str, _Pin], tuple[str, ...]]:
    """The pins of a cpython.toml by X.Y, and its mirror names. A malformed file is a defect of
    ciwheels (the catalog ships with it), not a user error."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    default_url, mirrors = data["url"], dict(data.get("mirrors", {}))
    pins = {}
    for minor, table in data.items():
        if not isinstance(table, dict) or minor == "mirrors":
            continue
        sha = table["sha256"]
        if len(sha) != 64 or set(sha) - set("0123456789abcdef"):
            raise ValueError(f"catalog cpython.toml: [{minor}] sha256 is not 64 lowercase hex digits")
        if table["version"].rsplit(".", 1)[0] != minor:
            raise ValueError(f"catalog cpython.toml: [{minor}] pins {table['version']}, another X.Y")
        pins[minor] = _Pin(table["version"], sha, table.get("url", default_url),
                           {**mirrors, **table.get("mirrors", {})})
    return pins, tuple(mirrors)


def pinned() -> dict[str, str]:
    """X.Y -> the pinned release, e.g. {"3.13": "3.13.5", ...}."""
    return {minor: pin.version for minor, pin in _catalog()[0].items()}


def mirror_names() -> tuple[str, ...]:
    return _catalog()[1]


def minor_of(python: str) -> str:
    """The X.Y of a catalog CPython: "cp314t" -> "3.14" (also its aliases: "3.14t")."""

    cat = load_catalog()
    cpythons = [p.id for p in cat.pythons.values() if p.implementation == "cpython"]
    key = cat.python_alias(python)
    if key is None or cat.pythons[key].implementation != "cpython":
        raise CiwheelsError(f"{python!r} is not a CPython of the catalog, so it has no CPython source",
                            value=python, allowed=cpythons)
    return cat.pythons[key].version


def _pin(minor: str) -> _Pin:
    pins = _catalog()[0]
    if minor not in pins:
        raise CiwheelsError(f"no CPython source is pinned for {minor!r} in {CATALOG}", value=minor,
                            allowed=list(pins))
    return pins[minor]


def _template_fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:  # an unmatched brace
        raise CiwheelsError(f"mirror URL template {template!r} is malformed ({e})") from None


def _expand(template: str, minor: str, version: str) -> str:
    return template.format(version=version, minor=minor)


def _check_template(template: str) -> None:
    fields = _template_fields(template)
    unknown = sorted(fields - set(_FIELDS))
    if unknown:
        raise CiwheelsError(f"mirror URL template {template!r} names {{{unknown[0]}}}, which is not a placeholder",
                            value=unknown[0], allowed=[f"{{{f}}}" for f in _FIELDS])
    if not fields:
        raise CiwheelsError(f"mirror URL template {template!r} has no {{version}} or {{minor}}, so it would "
                            "fetch the same file for every Python")


def source_for(minor: str, mirror: str | None = None) -> Source:
    """The pinned tarball of `minor` ("3.13") and where to get it. `mirror`: None (python.org),
    a mirror name of the catalog, an http(s) URL template with {version} and/or {minor}, or a
    local folder holding the tarball under python.org's or Debian's file name."""
    pin = _pin(minor)
    official = _expand(pin.url, minor, pin.version)
    filename = PurePosixPath(urllib.parse.urlsplit(official).path).name

    def source(url: str) -> Source:
        return Source(minor, pin.version, pin.sha256, url, filename)

    if not mirror:
        return source(official)
    if mirror in pin.mirrors:
        if not pin.mirrors[mirror]:
            carried = [m for m, p in _catalog()[0].items() if p.mirrors.get(mirror)]
            raise CiwheelsError(f"the mirror {mirror!r} carries no Python {minor}, only "
                                f"{', '.join(carried) or 'nothing'} ({CATALOG})",
                                hint="Take it from python.org or a folder with --python-source")
        return source(_expand(pin.mirrors[mirror], minor, pin.version))
    if "://" in mirror:
        scheme = mirror.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise CiwheelsError(f"mirror URL template {mirror!r} is not http or https", value=scheme,
                                allowed=["http", "https"])
        _check_template(mirror)
        return source(_expand(mirror, minor, pin.version))
    folder = Path(mirror).expanduser()
    if folder.is_dir():
        names = [filename] + [PurePosixPath(urllib.parse.urlsplit(_expand(t, minor, pin.version)).path).name
                              for t in pin.mirrors.values() if t]
        for name in dict.fromkeys(names):
            if (folder / name).is_file():
                return source((folder / name).resolve().as_uri())
        raise CiwheelsError(f"the folder {folder} holds no tarball of Python {pin.version}: looked for "
                            + " and ".join(dict.fromkeys(names)))
    raise CiwheelsError(f"the CPython source {mirror!r} is neither a mirror name of {CATALOG}, an http(s) URL "
                        "template with {version} or {minor}, nor an existing folder", value=mirror,
                        allowed=list(pin.mirrors))


def fetch(minor: str, *, mirror: str | None = None, cache: Path | None = None, max_bytes: int = MAX_BYTES,
          deadline: float = DEADLINE, attempts: int = ATTEMPTS) -> Path:
    """The verified tarball of `minor` in `<cache>/sources/` (default cache: core/resources.cache_dir),
    downloaded (or copied from a folder mirror) unless the cache already has it with the pinned
    sha256. A file with another hash is never kept."""
    if cache is None:

        cache = cache_dir()
    src = source_for(minor, mirror)
    folder = Path(cache) / "sources"
    dest = folder / src.filename
    if dest.is_file():
        actual = sha256_file(dest)
        if actual == src.sha256:
            log.info(f"using the cached {dest}")
            return dest
        log.warning(f"the cached {dest} has sha256 {actual}, not the pinned {src.sha256}: fetching it again")
        dest.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{src.filename}.", suffix=".part")
    except OSError as e:
        raise CiwheelsError(f"cannot write to the source cache {folder}: {e.strerror or e}") from None
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users of the cache
        with os.fdopen(fd, "w+b") as out:
            if src.url.startswith("file:"):
                actual, size = _copy(Path(urllib.request.url2pathname(urllib.parse.urlsplit(src.url).path)), out,
                                     max_bytes)
            else:
                actual, size = _download(src.url, out, max_bytes=max_bytes, deadline=deadline, attempts=attempts)
        if actual != src.sha256:
            raise CiwheelsError(f"{src.url} has sha256 {actual}, but {CATALOG} pins {src.sha256} for Python "
                                f"{src.version}; the file was not kept",
                                hint="That source serves another file than python.org's tarball. " + _SOURCE_HINT)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    log.info(f"Python {src.version} source: {dest} ({size / 1e6:.1f} MB, sha256 verified)")
    return dest


def _copy(path: Path, out, max_bytes: int) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    log.info(f"copying {path}")
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise CiwheelsError(f"{path} is larger than {max_bytes} bytes, too large for a CPython tarball")
                h.update(chunk)
                out.write(chunk)
    except OSError as e:
        raise CiwheelsError(f"cannot read {path}: {e.strerror or e}") from None
    return h.hexdigest(), size


def _download(url: str, out, *, max_bytes: int, deadline: float, attempts: int) -> tuple[str, int]:
    """Download `url` into `out` through net/http.py's client (each attempt within `deadline`
    seconds in all, at most `max_bytes`, retried on connection errors, timeouts, 5xx and 429):
    (sha256, size)."""
    client = HttpClient(retries=attempts, timeout=deadline, backoff=BACKOFF, max_response=max_bytes)
    log.info(f"downloading {url}")
    try:
        resp, _ = client.request("GET", url, f"cannot download {url}", follow_redirects=True, sink=out)
    except CiwheelsError as e:
        raise CiwheelsError(str(e), hint=_SOURCE_HINT) from None
    if resp.status_code != 200:
        raise CiwheelsError(f"cannot download {url}: HTTP {resp.status_code} {resp.reason}", hint=_SOURCE_HINT)
    out.flush()
    out.seek(0)
    h, size = hashlib.sha256(), 0
    while chunk := out.read(1 << 20):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


__all__ = ["Source", "fetch", "minor_of", "mirror_names", "pinned", "source_for"]
