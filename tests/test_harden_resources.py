"""Hardening, resources and broken servers: a registry that trickles bytes or never stops
sending, a GitLab API that always has a next page or answers something that is not a list, an
index listing junk, and timeouts that are not timeouts. Every case ends, within its bound, with
the usual one-paragraph error. Real sockets on 127.0.0.1 (tests/servers.HostileServer: the
behaviour of a broken server, not a stand-in for any product); the real CLI where it matters."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from servers import HostileServer, PypiServer
from wheelfactory import make_wheel

from ciwheels.net.gitlab import MAX_NOTE_PAGES, post_gitlab_note
from ciwheels.core.errors import CiwheelsError
from ciwheels.net.registry import RegistryClient, Target, parse_simple_page

TOKEN = "glpat-SENTINEL-resources"


@pytest.fixture
def hostile(request):
    server = HostileServer(request.param)
    yield server
    server.close()


def cli(*args: str, timeout: float = 120, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "CIWHEELS_"))}
    env.update({"CIWHEELS_USERNAME": "ci", "CIWHEELS_PASSWORD": TOKEN, **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "ciwheels", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("hostile", ["trickle", "trickle-headers"], indirect=True)
def test_a_trickling_registry_cannot_hold_publish(tmp_path, hostile):
    dist = tmp_path / "dist"
    make_wheel(dist, "ours-pkg", "1.0")
    start = time.monotonic()
    proc = cli("publish", str(dist), "--repository-url", hostile.url, "--timeout", "1", "--retries", "2")
    took = time.monotonic() - start
    assert proc.returncode == 2 and "no complete answer within 1 s" in proc.stderr, proc.stderr
    assert took < 15, f"publish took {took:.1f}s against --timeout 1 --retries 2"
    assert "Traceback" not in proc.stderr and TOKEN not in proc.stderr


@pytest.mark.parametrize("hostile", ["endless"], indirect=True)
def test_an_endless_answer_is_cut_at_the_size_limit(hostile):
    client = RegistryClient(Target(hostile.url, "user", "a-password", "test"), retries=1, timeout=20, max_response=1 << 20)
    with pytest.raises(CiwheelsError, match="larger than 1 MiB .*the limit for one response"):
        client.index("x")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "1e9", "abc"])
def test_timeouts_that_are_not_timeouts_are_refused(tmp_path, value):
    dist = tmp_path / "dist"
    make_wheel(dist, "ours-pkg", "1.0")
    proc = cli("publish", str(dist), "--repository-url", "http://127.0.0.1:9/x", "--timeout", value)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--timeout" in proc.stderr


def test_timeout_checks_in_the_library():
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(CiwheelsError, match="above 0"):
            RegistryClient(Target("http://127.0.0.1:9", "", "", "t"), timeout=bad)


def test_an_index_listing_junk_names_is_read_without_them(tmp_path):
    page = ('<a href="junk.whl">junk</a><a href="../../etc/passwd#sha256=' + "0" * 64 + '">x</a>'
            '<a href="ok_pkg-1.0-py3-none-any.whl#sha256=' + "a" * 64 + '">ok</a>'
            '<a href="ok_pkg-1.1-py3-none-any.whl#sha256=not-hex">ok</a><a href="ok-pkg-1.0.tar.gz">sdist</a>')
    assert parse_simple_page(page) == {"ok_pkg-1.0-py3-none-any.whl": "a" * 64,
                                       "ok_pkg-1.1-py3-none-any.whl": None, "ok-pkg-1.0.tar.gz": None}


@pytest.mark.slow
def test_grid_status_with_junk_on_the_index(tmp_path):
    """`matrix --grid --status` parses the version of every file the index lists: junk.whl
    there is ignored, not a traceback. A real pypiserver serves a file named junk.whl."""
    server = PypiServer(tmp_path / "reg")
    try:
        make_wheel(server.packages, "ours-pkg", "1.0")
        (server.packages / "junk.whl").write_bytes(b"junk")
        (server.packages / "ours_pkg-junk.whl").write_bytes(b"junk")
        project = tmp_path / "proj"
        (project / "matrix").mkdir(parents=True)
        (project / "pyproject.toml").write_text('[project]\nname = "ours-pkg"\ndynamic = ["version"]\n')
        (project / "matrix" / "wheels.yaml").write_text(
            f"python: [cp312]\nregistries:\n  main: {{url: {server.url}}}\n")
        proc = subprocess.run([sys.executable, "-m", "ciwheels", "matrix", "--project", str(project), "--grid",
                               "--format", "html", "--status"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    finally:
        server.close()


def note_env(url: str, **extra) -> dict:
    return {"CI_API_V4_URL": url + "/api/v4", "CI_PROJECT_ID": "1", "CI_MERGE_REQUEST_IID": "2",
            "CIWHEELS_NOTE_TOKEN": TOKEN, **extra}


@pytest.mark.parametrize("hostile", ["trickle", "trickle-headers"], indirect=True)
def test_a_trickling_gitlab_api_cannot_hold_the_note_past_its_timeout(hostile):
    """#18: the note poster checked its deadline between 64 KiB reads only, so a server sending a
    byte every 0.2 s held a `timeout=1` call for as long as it liked. It now goes through the one
    HTTP client (net/http.py), whose deadline covers the whole call."""
    start = time.monotonic()
    with pytest.raises(CiwheelsError, match="within") as e:
        post_gitlab_note("body", env=note_env(hostile.url), timeout=1)
    assert time.monotonic() - start < 3, "the deadline is for the whole call"
    assert TOKEN not in str(e.value)


@pytest.mark.parametrize("hostile", ["next-page"], indirect=True)
def test_a_gitlab_api_that_always_has_a_next_page_stops_at_the_limit(hostile):
    start = time.monotonic()
    with pytest.raises(CiwheelsError, match=f"more than {MAX_NOTE_PAGES} pages of merge-request notes"):
        post_gitlab_note("body", env=note_env(hostile.url), timeout=5)
    assert time.monotonic() - start < 10
    assert len(hostile.requests) == MAX_NOTE_PAGES and not any(r.startswith("POST") for r in hostile.requests)


@pytest.mark.parametrize("hostile", ["not-a-list"], indirect=True)
def test_a_gitlab_api_answering_something_else_than_a_list_is_an_error(hostile):
    with pytest.raises(CiwheelsError, match="not a list") as e:
        post_gitlab_note("body", env=note_env(hostile.url), timeout=5)
    assert TOKEN not in str(e.value)


@pytest.mark.parametrize("hostile", ["echo"], indirect=True)
def test_the_note_token_never_goes_over_http_to_a_remote_host(hostile):
    with pytest.raises(CiwheelsError, match="plain http"):
        post_gitlab_note("body", env=note_env("http://gitlab.example.invalid"), timeout=5)
    # to loopback it is sent (the echo server answers HTML, not JSON: an error without the token)
    with pytest.raises(CiwheelsError) as e:
        post_gitlab_note("body", env=note_env(hostile.url), timeout=5)
    assert TOKEN not in str(e.value) and hostile.requests
