"""pysources: the CPython source pins (matrix/catalog/cpython.toml) and their fetch. The fast
tests run the real download code against HTTP servers on 127.0.0.1 (with a test catalog whose
pins are the hashes of the bytes those servers send); the slow ones check the real catalog's
Debian pins against Debian's archive and download one tarball from it."""

from __future__ import annotations

import functools
import hashlib
import lzma
import os
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from servers import HostileServer, free_port, serve

from ciwheels.images import sources as pysources
from ciwheels.catalog import load_catalog
from ciwheels.core.errors import CiwheelsError

GOOD = b"not really a tarball, but the bytes the test catalog pins for 3.13.5\n" * 500
OTHER = b"what a broken mirror sends instead\n" * 100


class Origin:
    """An HTTP server on 127.0.0.1 with fixed answers: `files` maps a path to its body,
    `status` a path to an error status (or a list of statuses to answer first, one per
    request). Every request's path is kept in `requests`."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status: dict[str, list[int]] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.requests: list[str] = []
        origin = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with lock:
                    origin.requests.append(self.path)
                    queued = origin.status.get(self.path)
                    code = queued.pop(0) if queued else None
                if code is None and self.path not in origin.files:
                    code = 404
                if code is not None:
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = origin.files[self.path]
                self.send_response(200)
                headers = {"Content-Length": str(len(body)), **origin.headers.get(self.path, {})}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server, self.url = serve(Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_catalog(path: Path, base: str) -> Path:
    """A cpython.toml of the real format whose pins are GOOD's sha256: 3.11 with its own file
    names (as the real 3.11 has), 3.12 not on the mirror (as the real 3.12 is not on Debian)."""
    sha = hashlib.sha256(GOOD).hexdigest()
    path.write_text(f'''url = "{base}/ftp/{{version}}/Python-{{version}}.tar.xz"

[mirrors]
local = "{base}/pool/python{{minor}}/python{{minor}}_{{version}}.orig.tar.xz"

["3.13"]
version = "3.13.5"
sha256 = "{sha}"

["3.11"]
version = "3.11.2"
sha256 = "{sha}"
url = "{base}/ftp/{{version}}/Python-{{version}}.tgz"
mirrors = {{ local = "{base}/pool/python{{minor}}/python{{minor}}_{{version}}.orig.tar.gz" }}

["3.12"]
version = "3.12.15"
sha256 = "{sha}"
mirrors = {{ local = "" }}
''')
    return path


@pytest.fixture(scope="module")
def origin_server():
    server = Origin()
    yield server
    server.close()


@pytest.fixture
def origin(origin_server, tmp_path, monkeypatch):
    """The module's Origin, emptied, and the test catalog pointing at it in place of the real one."""
    for state in (origin_server.files, origin_server.status, origin_server.headers, origin_server.requests):
        state.clear()
    pins = pysources.load_pins(write_catalog(tmp_path / "cpython.toml", origin_server.url))
    monkeypatch.setattr(pysources, "_catalog", lambda: pins)
    monkeypatch.setattr(pysources, "BACKOFF", 0.0)
    return origin_server


def cached_files(cache: Path) -> list[str]:
    folder = cache / "sources"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_is_verified_and_then_reused_without_any_request(tmp_path, origin):
    origin.files["/ftp/3.13.5/Python-3.13.5.tar.xz"] = GOOD
    cache = tmp_path / "cache"
    path = pysources.fetch("3.13", cache=cache)
    assert path == cache / "sources" / "Python-3.13.5.tar.xz"
    assert path.read_bytes() == GOOD
    assert origin.requests == ["/ftp/3.13.5/Python-3.13.5.tar.xz"]
    assert path.stat().st_mode & 0o044 == 0o044  # readable by whoever builds images from the cache
    assert pysources.fetch("3.13", cache=cache) == path
    assert pysources.fetch("3.13", mirror="local", cache=cache) == path  # the same bytes, whatever the source
    assert origin.requests == ["/ftp/3.13.5/Python-3.13.5.tar.xz"]
    assert cached_files(cache) == ["Python-3.13.5.tar.xz"]  # no temporary file left


def test_a_wrong_hash_is_refused_and_nothing_is_kept(tmp_path, origin):
    origin.files["/ftp/3.13.5/Python-3.13.5.tar.xz"] = OTHER
    cache = tmp_path / "cache"
    with pytest.raises(CiwheelsError) as e:
        pysources.fetch("3.13", cache=cache)
    text = str(e.value)
    assert f"{origin.url}/ftp/3.13.5/Python-3.13.5.tar.xz" in text
    assert hashlib.sha256(OTHER).hexdigest() in text and hashlib.sha256(GOOD).hexdigest() in text
    assert "not kept" in text
    assert cached_files(cache) == []
    assert len(origin.requests) == 1  # a wrong file is not tried again


def test_a_corrupt_cached_file_is_fetched_again(tmp_path, origin):
    origin.files["/ftp/3.13.5/Python-3.13.5.tar.xz"] = GOOD
    cache = tmp_path / "cache"
    path = pysources.fetch("3.13", cache=cache)
    path.write_bytes(GOOD[:-1])  # a truncated copy
    assert pysources.fetch("3.13", cache=cache).read_bytes() == GOOD
    assert len(origin.requests) == 2


def test_folder_mirror_under_either_name_and_its_errors(tmp_path, origin):
    folder = tmp_path / "tarballs"
    folder.mkdir()
    cache = tmp_path / "cache"
    with pytest.raises(CiwheelsError) as e:
        pysources.fetch("3.13", mirror=str(folder), cache=cache)
    assert "Python-3.13.5.tar.xz" in str(e.value) and "python3.13_3.13.5.orig.tar.xz" in str(e.value)
    (folder / "python3.13_3.13.5.orig.tar.xz").write_bytes(GOOD)  # Debian's name
    path = pysources.fetch("3.13", mirror=str(folder), cache=cache)
    assert path == cache / "sources" / "Python-3.13.5.tar.xz" and path.read_bytes() == GOOD
    (folder / "Python-3.11.2.tgz").write_bytes(OTHER)  # python.org's name, wrong bytes
    with pytest.raises(CiwheelsError) as e:
        pysources.fetch("3.11", mirror=str(folder), cache=cache)
    assert "Python-3.11.2.tgz" in str(e.value) and hashlib.sha256(OTHER).hexdigest() in str(e.value)
    assert cached_files(cache) == ["Python-3.13.5.tar.xz"]
    assert origin.requests == []


def test_template_and_named_mirrors(tmp_path, origin):
    origin.files["/alt/3.13/Python-3.13.5.tar.xz"] = GOOD
    origin.files["/pool/python3.11/python3.11_3.11.2.orig.tar.gz"] = GOOD
    path = pysources.fetch("3.13", mirror=origin.url + "/alt/{minor}/Python-{version}.tar.xz", cache=tmp_path)
    assert path.read_bytes() == GOOD and path.name == "Python-3.13.5.tar.xz"
    path = pysources.fetch("3.11", mirror="local", cache=tmp_path)  # 3.11's own mirror template (.tar.gz)
    assert path.read_bytes() == GOOD and path.name == "Python-3.11.2.tgz"
    assert origin.requests == ["/alt/3.13/Python-3.13.5.tar.xz", "/pool/python3.11/python3.11_3.11.2.orig.tar.gz"]


def test_bad_minors_and_sources_are_one_paragraph_errors(tmp_path, origin):
    with pytest.raises(CiwheelsError) as e:
        pysources.source_for("3.8")
    assert "'3.8'" in str(e.value) and "Allowed: 3.13, 3.11, 3.12" in str(e.value)
    with pytest.raises(CiwheelsError) as e:
        pysources.fetch("3.12", mirror="local", cache=tmp_path)
    assert "the mirror 'local' carries no Python 3.12, only 3.13, 3.11" in str(e.value)
    with pytest.raises(CiwheelsError) as e:
        pysources.source_for("3.13", "locl")
    assert "Allowed: local" in str(e.value) and "Did you mean 'local'?" in str(e.value)
    for template, words in [(origin.url + "/{version}/{file}", "{file}"), (origin.url + "/python.tar.xz", "no {version}"),
                            ("ftp://example.org/{version}.tar.xz", "not http or https"),
                            (origin.url + "/{version", "malformed")]:
        with pytest.raises(CiwheelsError) as e:
            pysources.source_for("3.13", template)
        assert words in str(e.value) and "\n" not in str(e.value)
    assert origin.requests == []


def test_http_errors_retries_and_refusals(tmp_path, origin):
    with pytest.raises(CiwheelsError) as e:
        pysources.fetch("3.13", cache=tmp_path)
    assert "HTTP 404" in str(e.value) and "--python-source" in str(e.value)
    assert len(origin.requests) == 1  # a 404 is an answer, not a reason to try again
    path = "/ftp/3.13.5/Python-3.13.5.tar.xz"
    origin.files[path] = GOOD
    origin.status[path] = [503, 500]
    origin.requests.clear()
    assert pysources.fetch("3.13", cache=tmp_path).read_bytes() == GOOD
    assert origin.requests == [path] * 3
    dead = f"http://127.0.0.1:{free_port()}/{{version}}.tar.xz"
    with pytest.raises(CiwheelsError) as e:
        pysources.fetch("3.11", mirror=dead, cache=tmp_path, attempts=2)
    assert "gave up after 2 attempts" in str(e.value)
    assert cached_files(tmp_path) == ["Python-3.13.5.tar.xz"]


def test_size_cap_by_announced_length_and_by_bytes_sent(tmp_path, origin):
    origin.files["/ftp/3.13.5/Python-3.13.5.tar.xz"] = GOOD
    with pytest.raises(CiwheelsError) as e:
        pysources.fetch("3.13", cache=tmp_path, max_bytes=len(GOOD) - 1)
    assert f"announces {len(GOOD)} bytes" in str(e.value)
    endless = HostileServer("endless")  # a body without Content-Length and without end
    try:
        started = time.monotonic()
        with pytest.raises(CiwheelsError) as e:
            pysources.fetch("3.13", mirror=endless.url + "/{version}", cache=tmp_path, max_bytes=1 << 20)
        assert "sent more than 1048576 bytes" in str(e.value)
        assert time.monotonic() - started < 10
    finally:
        endless.close()
    assert cached_files(tmp_path) == []


@pytest.mark.parametrize("mode", ["trickle", "trickle-headers"])
def test_a_trickling_server_meets_the_deadline(tmp_path, origin, mode):
    server = HostileServer(mode, interval=0.05)  # a byte every 0.05 s: never a read timeout
    try:
        started = time.monotonic()
        with pytest.raises(CiwheelsError) as e:
            pysources.fetch("3.13", mirror=server.url + "/{version}", cache=tmp_path, deadline=1.5, attempts=1)
        assert "no complete answer within 1.5 s" in str(e.value)
        assert time.monotonic() - started < 6
    finally:
        server.close()
    assert cached_files(tmp_path) == []


def test_the_real_catalog_pins_every_cpython_it_knows():
    cat = load_catalog()
    minors = {pysources.minor_of(p.id) for p in cat.pythons.values() if p.implementation == "cpython"}
    assert minors <= set(pysources.pinned()), minors - set(pysources.pinned())
    assert pysources.minor_of("cp314t") == "3.14" and pysources.minor_of("3.14t") == "3.14"
    with pytest.raises(CiwheelsError) as e:
        pysources.minor_of("pp310")
    assert "Allowed: cp39" in str(e.value)
    for minor, version in pysources.pinned().items():
        src = pysources.source_for(minor)
        assert src.url.startswith("https://www.python.org/ftp/python/") and src.filename.startswith(f"Python-{version}.")
        if minor in DEBIAN_PINS:
            assert pysources.source_for(minor, "debian").url.startswith("http://deb.debian.org/debian/pool/main/p/")
        else:  # no Debian source package: said before any download
            with pytest.raises(CiwheelsError) as e:
                pysources.source_for(minor, "debian")
            assert f"carries no Python {minor}, only 3.11, 3.13, 3.14, 3.15" in str(e.value)


# Debian's suites the catalog comment names for each pin: the oldest suite that has it.
DEBIAN_PINS = {"3.11": "bookworm", "3.13": "trixie", "3.14": "forky", "3.15": "forky"}
# 3.14 is pinned to 3.14.7, a tarball Debian's pool still serves but no current index lists (the
# 3.14.8 forky lists is not in the pool reachable here); the image tests download it.
IN_AN_INDEX = ("3.11", "3.13", "3.15")


@functools.cache
def _debian_sources(suite: str) -> dict[tuple[str, str], str]:
    """(package, file name) -> sha256 of the files of Debian `suite`'s pythonX.Y source packages,
    as its Sources index lists them."""
    with urllib.request.urlopen(f"http://deb.debian.org/debian/dists/{suite}/main/source/Sources.xz",
                                timeout=120) as resp:
        text = lzma.decompress(resp.read()).decode("utf-8", "replace")
    out = {}
    for para in text.split("\n\n"):
        package = re.match(r"Package: (python3\.\d+)$", para, re.M)
        sums = re.search(r"^Checksums-Sha256:\n((?:[ \t].*\n?)*)", para, re.M)
        if package and sums:
            for line in sums.group(1).splitlines():
                sha, _size, name = line.split()
                out[(package.group(1), name)] = sha
    return out


@pytest.mark.slow
def test_the_debian_pins_are_in_debians_sources_indexes():
    pinned = pysources.pinned()
    for minor in IN_AN_INDEX:
        suite = DEBIAN_PINS[minor]
        src = pysources.source_for(minor, "debian")
        name = src.url.rsplit("/", 1)[1]
        assert name == f"python{minor}_{pinned[minor]}.orig.tar.{'gz' if minor == '3.11' else 'xz'}"
        listed = _debian_sources(suite).get((f"python{minor}", name))
        assert listed == src.sha256, f"{suite} lists {name} with sha256 {listed}, the catalog pins {src.sha256}"


@pytest.mark.slow
def test_fetching_313_from_debian_gives_the_pinned_bytes(tmp_path, caplog):
    import logging

    # a handler of its own: in-process CLI runs earlier in the session may stop propagation
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = seen.append
    logger = logging.getLogger("ciwheels")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        path = pysources.fetch("3.13", mirror="debian", cache=tmp_path)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == pysources.source_for("3.13").sha256 == "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"
    assert path.name == "Python-3.13.5.tar.xz" and os.listdir(tmp_path / "sources") == [path.name]
    assert any("downloading http://deb.debian.org/" in r.getMessage() for r in seen)
