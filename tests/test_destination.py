"""#18: where a cell's wheels go is decided once (matrix/destination.py) and every stage reads
it; the credentials of every request are decided per host (net/auth.py).

Fast tests check the rule on expanded cells; the slow ones run the real CLI against real
pypiservers on 127.0.0.1 behind recording proxies: a scheduled builder whose matrix has only a
selecting registry (the rest goes to CIWHEELS_REPOSITORY_URL) converges after one publish, and
no registry host ever receives another host's token."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from conftest import run_ciwheels
from servers import FaultProxy, PypiServer
from wheelfactory import make_wheel

from ciwheels.dist.artifacts import BuildReport, ReportWheel, write_report
from ciwheels.core.urls import host_of
from ciwheels.net.auth import credentials_for, environment_host
from ciwheels.project.open import open_project


def _project(root: Path, files: dict[str, str]) -> Path:
    (root / "matrix").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / "matrix" / name).write_text(text, encoding="utf-8")
    return root


# -- the rule ------------------------------------------------------------------------------------
def test_a_catch_all_in_one_file_catches_the_cells_of_the_others(tmp_path, monkeypatch):
    monkeypatch.delenv("CIWHEELS_REPOSITORY_URL", raising=False)
    project = _project(tmp_path, {
        "a.yaml": "python: [cp313]\narch: [x86_64]\nregistries:\n  all: {url: 'https://r.example/all'}\n",
        "b.yaml": "python: [cp312]\narch: [aarch64]\n"})
    cells = open_project(project).expansion.cells
    assert {c.id: (c.registry, c.destination.url) for c in cells} == {
        "cp313-manylinux_x86_64-x86-64": ("all", "https://r.example/all"),
        "cp312-manylinux_aarch64-armv8-a": ("all", "https://r.example/all")}


def test_the_level_clash_check_sees_a_catch_all_of_another_file(tmp_path, monkeypatch):
    """Before, the check was keyed on the per-file registry: file b's x86-64-v3 cell named none,
    so two wheels with one file name went to one registry and publish found out after the builds."""
    monkeypatch.delenv("CIWHEELS_REPOSITORY_URL", raising=False)
    project = _project(tmp_path, {
        "a.yaml": "python: [cp313]\narch: [x86_64]\nregistries:\n  all: {url: 'https://r.example/all'}\n",
        "b.yaml": "python: [cp313]\narch: [x86_64]\nisa: {x86_64: [x86-64-v3]}\n"})
    proc = run_ciwheels("plan", "--project", str(project))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "would publish two different wheels with one file name to registry 'all'" in proc.stderr


def test_cells_no_registry_selects_go_to_the_environment_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("CIWHEELS_REPOSITORY_URL", "https://u:secret-token-1@base.example/pypi")
    project = _project(tmp_path, {"w.yaml": "python: [cp313]\narch: [x86_64]\n"
                                            "isa: {x86_64: [x86-64, x86-64-v3]}\nregistries:\n"
                                            "  fast: {url: 'https://fast.example/pypi', select: {isa: x86-64-v3}}\n"})
    cells = {c.isa: c.destination for c in open_project(project).expansion.cells}
    assert cells["x86-64-v3"].url == "https://fast.example/pypi"
    assert (cells["x86-64"].url, cells["x86-64"].source) == ("https://base.example/pypi", "CIWHEELS_REPOSITORY_URL")
    assert "secret-token-1" not in repr(cells["x86-64"])
    # --repository-url of plan/status wins over the variable
    opened = open_project(project, repository_url="https://other.example/pypi")
    assert {c.destination.url for c in opened.expansion.cells} == {"https://fast.example/pypi",
                                                                   "https://other.example/pypi"}


def test_an_environment_registry_no_cell_uses_is_a_warning(tmp_path, monkeypatch):
    """#21.5: CIWHEELS_REPOSITORY_URL was silently ignored when the matrix has registries."""
    monkeypatch.setenv("CIWHEELS_REPOSITORY_URL", "https://base.example/pypi")
    project = _project(tmp_path, {"w.yaml": "python: [cp313]\narch: [x86_64]\nregistries:\n"
                                            "  main: {url: 'https://main.example/pypi'}\n"})
    warnings = open_project(project).expansion.warnings
    assert any("CIWHEELS_REPOSITORY_URL is set, but the matrix sends every cell" in w for w in warnings)


# -- credentials per host -------------------------------------------------------------------------
def test_environment_credentials_go_to_their_one_host_only():
    env = {"CIWHEELS_USERNAME": "bob", "CIWHEELS_PASSWORD": "TOKEN-B-123456"}
    a, b = "https://alice:TOKEN-A-123456@a.example/pypi", "https://b.example/pypi"
    # the URL's own credentials win over the environment's
    assert credentials_for(a, env=env, registry_urls=[a, b]).password == "TOKEN-A-123456"
    # two hosts and no CIWHEELS_REPOSITORY_URL: the environment's token goes to neither
    assert not credentials_for(b, env=env, registry_urls=[a, b])
    assert environment_host(env, [a, b]) is None
    # one host: it is that host's
    assert credentials_for(b, env=env, registry_urls=[b, b + "/2"]).password == "TOKEN-B-123456"
    # CIWHEELS_REPOSITORY_URL names the host
    env2 = {**env, "CIWHEELS_REPOSITORY_URL": "https://b.example/x"}
    assert credentials_for(b, env=env2, registry_urls=[a, b]).password == "TOKEN-B-123456"
    assert not credentials_for("https://c.example/pypi", env=env2, registry_urls=[a, b])
    # the GitLab job token: only under the instance's API, on its host
    gl = {"CI_JOB_TOKEN": "JOB-TOKEN-123456", "CI_API_V4_URL": "https://gitlab.example/api/v4"}
    assert credentials_for("https://gitlab.example/api/v4/projects/1/packages/pypi", env=gl).source \
        == "GitLab CI job token"
    assert not credentials_for("https://gitlab.example.evil/api/v4/projects/1/packages/pypi", env=gl)
    assert not credentials_for("https://gitlab.example/api/v4x/projects/1", env=gl)
    assert host_of("https://u:p@Example.COM:443/x") == "example.com" and host_of("http://h:8080/") == "h:8080"


# -- end to end: real CLI, real servers ----------------------------------------------------------
def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def two_hosts(tmp_path):
    """Two authenticated pypiservers, each behind a proxy that records Authorization headers."""
    fast = PypiServer(tmp_path / "fast", auth=("alice", "TOKEN-A-123456"))
    base = PypiServer(tmp_path / "base", auth=("bob", "TOKEN-B-123456"))
    fast_proxy, base_proxy = FaultProxy(fast.url, []), FaultProxy(base.url, [])
    yield fast_proxy, base_proxy
    for s in (fast_proxy, base_proxy, fast, base):
        s.close()


def _build_outputs(root: Path, plan: dict) -> Path:
    """What `ciwheels build` leaves for each planned cell (a wheel and its report), made with the
    test's wheel factory: the builds are not the subject here, where their wheels go is."""
    for cell in plan["cells"]:
        folder = root / cell["id"]
        tag = f"{cell['python']}-{cell['python']}-{cell['policy']}_{cell['arch']}"
        wheel = make_wheel(folder, "demo-pkg", cell["version"], tag=tag, payload=f"LEVEL = {cell['isa']!r}\n")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        write_report(folder, BuildReport(cell=cell["id"], job="j", status="ok", python=cell["python"],
                                         isa=cell["isa"], registry=cell["registry"] or None, arch=cell["arch"],
                                         policy=cell["policy"],
                                         wheels=(ReportWheel(wheel.name, digest, wheel.stat().st_size, "ok"),)))
    return root


@pytest.mark.slow
def test_a_scheduled_builder_with_only_selecting_registries_converges_after_one_publish(tmp_path, two_hosts):
    """The README's setup for "cells that name none": a selecting registry for x86-64-v3 (its
    credentials in its URL) and CIWHEELS_REPOSITORY_URL with CIWHEELS_USERNAME/PASSWORD for the
    rest. Before: plan and status looked for the baseline at CIWHEELS_REPOSITORY_URL, publish
    refused it, so every schedule rebuilt it; and plan sent TOKEN-B to host a."""
    fast, base = two_hosts
    fast_url = fast.url.replace("http://", "http://alice:TOKEN-A-123456@")
    project = _project(tmp_path / "proj", {"wheels.yaml": (
        "python: [cp313]\narch: [x86_64]\nisa: {x86_64: [x86-64, x86-64-v3]}\n"
        f"registries:\n  fast: {{url: '{fast_url}', select: {{isa: x86-64-v3}}}}\n"
        "sdist-config: false\npackages:\n  - {name: demo-pkg, versions: ['1.0']}\n")})
    env = {"CIWHEELS_REPOSITORY_URL": base.url, "CIWHEELS_USERNAME": "bob", "CIWHEELS_PASSWORD": "TOKEN-B-123456",
           "CIWHEELS_INDEX_URL": base.url + "/simple", "PATH": "/usr/bin:/bin"}

    def plan() -> dict:
        proc = run_ciwheels("plan", "--project", str(project), "--missing", "--json", "--no-upstream", env=env,
                            subprocess=True)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    first = plan()
    assert sorted(c["isa"] for c in first["cells"]) == ["x86-64", "x86-64-v3"]
    built = _build_outputs(tmp_path / "wheelhouse", first)
    run_ciwheels("gather", str(built), "--out", str(tmp_path / "dist"), env=env, subprocess=True, check=True)
    proc = run_ciwheels("publish", str(tmp_path / "dist"), "--project", str(project), env=env, subprocess=True)
    assert proc.returncode == 0, proc.stderr
    assert "TOKEN" not in proc.stdout + proc.stderr
    assert plan()["cells"] == [], "the next schedule builds nothing"
    # each host saw its own token, or none, and never the other's
    assert _basic("bob", "TOKEN-B-123456") not in fast.authorizations
    assert _basic("alice", "TOKEN-A-123456") not in base.authorizations
    assert _basic("alice", "TOKEN-A-123456") in fast.authorizations
    assert _basic("bob", "TOKEN-B-123456") in base.authorizations


def test_matrix_status_reads_the_registries_of_the_matrix_given(tmp_path):
    """#18.4: `matrix --status` re-read PROJECT/matrix/*.yaml and ignored --matrix."""
    from http.server import BaseHTTPRequestHandler

    from servers import serve

    seen = []

    class Index(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server, url = serve(Index)
    try:
        project = _project(tmp_path / "proj", {"wheels.yaml": "python: [cp313]\narch: [x86_64]\nregistries:\n"
                                                             "  old: {url: 'http://127.0.0.1:9/old'}\n"})
        (project / "pyproject.toml").write_text('[project]\nname = "demo-pkg"\nversion = "1.0"\n')
        other = tmp_path / "other.yaml"
        other.write_text(f"python: [cp313]\narch: [x86_64]\nregistries:\n  new: {{url: '{url}/new'}}\n")
        proc = run_ciwheels("matrix", "--project", str(project), "--matrix", str(other), "--grid", "--format", "html",
                            "--status")
        assert proc.returncode == 0, proc.stderr
        assert seen == ["/new/simple/demo-pkg/"]
        assert 'title="x86-64: missing"' in proc.stdout
    finally:
        server.shutdown()


@pytest.mark.slow
def test_an_index_on_another_host_never_receives_the_registry_token(tmp_path):
    """Review of #18: credentials chosen for the upload URL's host went with every request of the
    client, the index reads on another host included; an index URL's own credentials were dropped."""
    upload_server = PypiServer(tmp_path / "up", auth=("alice", "TOKEN-A-123456"))
    up, elsewhere = FaultProxy(upload_server.url, []), FaultProxy(upload_server.url, [])
    try:
        project = _project(tmp_path / "proj", {"wheels.yaml": (
            "python: [cp313]\narch: [x86_64]\nregistries:\n"
            f"  main: {{url: '{up.url.replace('http://', 'http://alice:TOKEN-A-123456@')}', "
            f"index: '{elsewhere.url}/simple'}}\nsdist-config: false\npackages:\n  - {{name: demo-pkg, versions: ['1.0']}}\n")})
        env = {"PATH": "/usr/bin:/bin", "CIWHEELS_INDEX_URL": elsewhere.url + "/simple"}
        proc = run_ciwheels("plan", "--project", str(project), "--missing", "--json", "--no-upstream", env=env,
                            subprocess=True)
        assert proc.returncode == 0, proc.stderr
        assert elsewhere.authorizations and not any(elsewhere.authorizations), "the index host got a token"
        # the index's own credentials, on the upload URL's host, are used again
        (project / "matrix" / "wheels.yaml").write_text((project / "matrix" / "wheels.yaml").read_text().replace(
            f"index: '{elsewhere.url}/simple'", f"index: '{up.url.replace('http://', 'http://carol:TOKEN-C-123456@')}/simple'"
        ).replace("alice:TOKEN-A-123456@", ""))
        up.authorizations.clear()
        proc = run_ciwheels("plan", "--project", str(project), "--missing", "--json", "--no-upstream", env=env,
                            subprocess=True)
        assert proc.returncode == 0, proc.stderr
        assert _basic("carol", "TOKEN-C-123456") in up.authorizations
        assert "TOKEN" not in proc.stdout + proc.stderr
    finally:
        for s in (up, elsewhere, upload_server):
            s.close()


@pytest.mark.parametrize("where,value", [
    ("matrix", "http://[::1/x"), ("matrix", "ftp://h/x"), ("env", "http://[::1"), ("env", "garbage"),
    ("option", "garbage"), ("option", "http://h:99999/x"), ("option", "http://u:tok-123456789@[::1/x")])
def test_a_registry_url_that_is_not_one_is_a_paragraph_not_a_traceback(tmp_path, where, value):
    registries = f"registries:\n  main: {{url: '{value}'}}\n" if where == "matrix" else ""
    project = _project(tmp_path / "p", {"wheels.yaml": "python: [cp313]\narch: [x86_64]\n" + registries})
    env = {"PATH": "/usr/bin:/bin", **({"CIWHEELS_REPOSITORY_URL": value} if where == "env" else {})}
    args = ["plan", "--project", str(project), "--missing", "--no-upstream"] + (
        ["--repository-url", value] if where == "option" else [])
    proc = run_ciwheels(*args, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "is not an http(s) URL with a host" in proc.stderr or "must match ^https?://" in proc.stderr
    assert "tok-123456789" not in proc.stderr
    if where == "matrix":  # the matrix's own value: its file and line
        assert "wheels.yaml:4" in proc.stderr


def test_host_keys_keep_ipv6_and_ports_apart():
    assert host_of("http://[::1]:8080/x") == "[::1]:8080"
    assert host_of("http://[::1:8080]/x") == "[::1:8080]"
    assert host_of("http://h:99999/x") == "" and host_of("http://[::1/x") == ""
    assert host_of("https://h:443/") == host_of("https://h/") == "h"
