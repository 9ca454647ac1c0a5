"""Hardening, secrets: nothing given as a credential appears in any output, in any form, and no
credential goes over plain http to a host that is not loopback unless the user allows it.
Real pypiserver and a hostile echoing server on 127.0.0.1, the real CLI in child processes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servers import HostileServer, PypiServer
from wheelfactory import make_wheel

from ciwheels.core import secrets as credentials
from ciwheels.core.errors import CiwheelsError
from ciwheels.net.registry import RegistryClient, Target, resolve_target

TOKEN = "tok-SENTINEL/9+x=Zq"  # '/', '+', '=' change under percent-encoding and base64


def forms(user: str, password: str) -> list[str]:
    b = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [password, urllib.parse.quote(password, safe=""), b, b.rstrip("=")]


def leaked(text: str, user: str = "ci", password: str = TOKEN) -> list[str]:
    return [f for f in forms(user, password) if f in text]


def cli(*args: str, env_extra: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "CIWHEELS_"))}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "ciwheels", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def registry(tmp_path):
    server = PypiServer(tmp_path / "registry", auth=("ci", TOKEN))
    yield server
    server.close()


@pytest.fixture
def echo():
    server = HostileServer("echo")
    yield server
    server.close()


def with_userinfo(url: str, user: str = "ci", password: str = TOKEN) -> str:
    scheme, rest = url.split("://")
    return f"{scheme}://{urllib.parse.quote(user)}:{urllib.parse.quote(password, safe='')}@{rest}"


@pytest.mark.slow
def test_token_in_repository_url_works_and_is_never_printed(tmp_path, registry):
    dist = tmp_path / "dist"
    make_wheel(dist, "ours-pkg", "1.0")
    url = with_userinfo(registry.url)
    for extra in ((), ("--json",), ("--dry-run",)):
        proc = cli("publish", str(dist), "--repository-url", url, *extra)
        assert proc.returncode == 0, proc.stderr
        assert not leaked(proc.stdout + proc.stderr), extra
    assert "uploaded" not in cli("publish", str(dist), "--repository-url", url, "--json").stdout  # skipped now
    # an error path: a wrong path on the same server, with the URL in the message
    bad = cli("publish", str(dist), "--repository-url", with_userinfo(registry.url + "/nope"), "--json",
              "--retries", "1")
    assert bad.returncode in (1, 2) and not leaked(bad.stdout + bad.stderr)
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_echoed_authorization_header_is_scrubbed(tmp_path, echo):
    dist = tmp_path / "dist"
    make_wheel(dist, "ours-pkg", "1.0")
    proc = cli("publish", str(dist), "--repository-url", echo.url, "--json", "--retries", "1",
               env_extra={"CIWHEELS_USERNAME": "ci", "CIWHEELS_PASSWORD": TOKEN})
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)[0]
    assert result["status"] == "failed" and "Authorization" in result["detail"]  # the echo is there ...
    assert not leaked(proc.stdout + proc.stderr)  # ... without the credentials in any form


@pytest.mark.slow
def test_doctor_and_pip_config_never_print_url_credentials(echo):
    url = with_userinfo(echo.url)
    for args in (("doctor", "--repository-url", url, "--pypi", echo.url + "/simple", "--package", "x"),
                 ("doctor", "--index-url", with_userinfo(echo.url + "/simple"), "--json", "--pypi",
                  echo.url + "/simple", "--package", "x"),
                 ("pip-config", "--index-url", with_userinfo(echo.url + "/simple"))):
        proc = cli(*args)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert not leaked(proc.stdout + proc.stderr), (args, proc.stdout, proc.stderr)
    # the credentials were sent (the echo server saw a request), only never shown
    assert echo.requests


@pytest.mark.slow
def test_credentials_are_not_sent_over_plain_http_to_a_remote_host(tmp_path):
    dist = tmp_path / "dist"
    make_wheel(dist, "ours-pkg", "1.0")
    remote = "http://registry.example.invalid/pypi"
    proc = cli("publish", str(dist), "--repository-url", with_userinfo(remote), "--retries", "1")
    assert proc.returncode == 2 and "plain http" in proc.stderr and "--allow-insecure-http" in proc.stderr
    assert not leaked(proc.stderr) and "Traceback" not in proc.stderr
    proc = cli("doctor", "--index-url", with_userinfo(remote + "/simple"), "--package", "x")
    assert proc.returncode == 2 and "plain http" in proc.stderr and not leaked(proc.stderr)
    # allowed explicitly: it tries (and fails to resolve the name: no network here), it does not refuse
    proc = cli("publish", str(dist), "--repository-url", with_userinfo(remote), "--retries", "1",
               "--timeout", "5", "--allow-insecure-http")
    assert "plain http" not in proc.stderr and not leaked(proc.stdout + proc.stderr)
    # without credentials, or to loopback, http is fine
    credentials.check_transport(remote, has_credentials=False)
    for host in ("127.0.0.1", "localhost", "[::1]", "127.8.9.1"):
        credentials.check_transport(f"http://{host}:8080/x", has_credentials=True)
    for host in ("10.0.0.1", "localhost.example.com", "[::ffff:10.0.0.1]", "127.0.0.1.nip.io"):
        with pytest.raises(CiwheelsError, match="plain http"):
            credentials.check_transport(f"http://{host}/x", has_credentials=True)


def test_gitlab_job_token_is_remembered_and_resolve_splits_userinfo():
    target = resolve_target(with_userinfo("https://gitlab.example.com/api/v4/projects/1/packages/pypi",
                                          "gitlab-ci-token", TOKEN), env={})
    assert target.url == "https://gitlab.example.com/api/v4/projects/1/packages/pypi"
    assert (target.username, target.password) == ("gitlab-ci-token", TOKEN)
    assert TOKEN not in str(target) and "@" not in str(target)
    message = str(CiwheelsError(f"failed: {TOKEN} {base64.b64encode(f'gitlab-ci-token:{TOKEN}'.encode()).decode()}"))
    assert not leaked(credentials.scrub(message), "gitlab-ci-token")


_SEPARATORS = " <>\n\"'"
_secret = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=_SEPARATORS + "*"),
                  min_size=4, max_size=40)


@settings(max_examples=300, deadline=None)
@given(user=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=_SEPARATORS + ":*"),
                    max_size=12),
       password=_secret, before=st.text(_SEPARATORS, max_size=5), after=st.text(_SEPARATORS, max_size=5))
def test_scrub_removes_every_form_of_any_credential(user, password, before, after):
    """Generative: for any user and password, every form the client puts on the wire or a server
    may echo (plain, percent-encoded, Basic auth base64 with or without padding, a URL's
    userinfo) is gone after scrubbing, whatever surrounds it."""
    try:
        _scrub_all_forms(user, password, before, after)
    finally:
        credentials.forget_all()  # random "credentials" must not scrub later tests' output


def _scrub_all_forms(user: str, password: str, before: str, after: str) -> None:
    client = RegistryClient(Target("https://h.example/x", user, password, "test"))
    userinfo = f"https://{urllib.parse.quote(user)}:{urllib.parse.quote(password, safe='')}@h.example/"
    for form in forms(user, password) + [userinfo]:
        text = client.scrub(before + form + after)
        assert not leaked(text, user, password), (form, text)
