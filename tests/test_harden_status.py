"""Hardening, second round (#19) and the status page across runs (#21.2, #21.6): the status
page and its failure memory built from hostile inputs (job artifacts of somebody else's sdist,
a previous status.json read over HTTP), versions from every source, pip-config.

Every output is checked for what must never be in it: files outside the folder it belongs to,
credentials, links other than http(s) and relative ones, unescaped markup."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_ciwheels
from servers import serve

SECRET = "s3cret-Token-4242"
MATRIX = """\
python: [cp312, cp313]
arch: [x86_64]
sdist-config: false
packages:
  - name: demo-pkg
    versions: ["1.0", "1.1"]
"""
CELL = "demo-pkg-1.0-cp313-manylinux_x86_64-x86-64"
JOB = "demo-pkg-1.0-manylinux_2_28_x86_64-x86-64"


def _project(tmp_path: Path, text: str = MATRIX) -> Path:
    project = tmp_path / "proj"
    (project / "matrix").mkdir(parents=True, exist_ok=True)
    (project / "matrix" / "wheels.yaml").write_text(text, encoding="utf-8")
    return project


def _report(root: Path, cell: str, *, status: str = "failed", log: str | None = f"/builds/x/{JOB}.log",
            log_text: str | None = "error: numpy.h: No such file\n", exit_code: int | None = 1) -> Path:
    """A failed build's artifact as a build job leaves it: OUT/<cell>/build-report.json and OUT/<job>.log."""
    from ciwheels.dist.artifacts import BuildReport, write_report

    out = root / "wheelhouse"
    folder = out / (cell if re.fullmatch(r"[A-Za-z0-9._-]+", cell) else "odd")
    write_report(folder, BuildReport(cell=cell, job=JOB, status=status, log=log, cibuildwheel_exit=exit_code))
    if log_text is not None and log:
        (out / Path(log).name).write_text(log_text, encoding="utf-8")
    return root


def _status(project: Path, *args: str, env: dict | None = None):
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    return run_ciwheels("status", "--project", str(project), "--no-upstream", *args, env={**base, **(env or {})})


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


class _PageParser(HTMLParser):
    """Every link, id and script of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()
        self.handlers: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if "href" in a:
            self.hrefs.append(a["href"])
        if "id" in a:
            self.ids.add(a["id"])
        self.handlers += [k for k in a if k.startswith("on")]


def check_page(page: str, site: Path | None = None, secrets: tuple[str, ...] = ()) -> _PageParser:
    """What every status page must be: no script, no event handler, every link http(s) or
    relative, every anchor present, every relative link a file of the site, no secret."""
    parsed = _PageParser()
    parsed.feed(page)
    assert "script" not in parsed.tags and not parsed.handlers and "<script" not in page.lower()
    for href in parsed.hrefs:
        if href.startswith("#"):
            assert href[1:] in parsed.ids, f"anchor {href} has no target"
        elif re.match(r"(?i)[a-z][a-z0-9+.-]*:", href):
            assert href.startswith(("http://", "https://")), href
        else:
            assert not href.startswith(("/", "\\")) and ".." not in href.split("/"), href
            if site is not None:
                assert (site / href).is_file(), f"link {href} points at nothing in the site"
    for secret in secrets:
        assert secret not in page
    return parsed


# -- Secrets and files (HIGH) -----------------------------------------------------------------
@pytest.mark.parametrize("target", ["environ", "key"])
def test_status_site_never_follows_a_job_log_that_is_a_link(tmp_path, target):
    """A log linking to /proc/self/environ (the job's CIWHEELS_PASSWORD) or to a private key
    is not published: it is refused, the failure shown without it."""
    project = _project(tmp_path)
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nPRIVATEKEYDATA\n", encoding="utf-8")
    artifacts = _report(tmp_path / "artifacts", CELL, log_text=None)
    link = artifacts / "wheelhouse" / f"{JOB}.log"
    link.symlink_to("/proc/self/environ" if target == "environ" else key)
    site = tmp_path / "site"
    proc = _status(project, "--artifacts", str(artifacts), "--site", str(site), "--format", "json",
                   env={"CIWHEELS_PASSWORD": SECRET})
    assert proc.returncode == 0, proc.stderr
    assert "link" in proc.stderr and "Traceback" not in proc.stderr
    everything = "".join(p.read_text(errors="replace") for p in site.rglob("*") if p.is_file()) + proc.stdout
    assert SECRET not in everything and "PRIVATEKEYDATA" not in everything and "PATH=" not in everything
    doc = json.loads(proc.stdout)
    failed = next(c for c in doc["cells"] if c["id"] == CELL)
    assert failed["state"] == "failed" and "log" not in failed
    assert not (site / "logs").exists()


def test_a_report_cell_is_data_never_a_path(tmp_path):
    """A report whose cell is ../../../../escaped writes nothing outside the site; a report
    of a cell the matrix does not have is ignored with a warning."""
    project = _project(tmp_path)
    artifacts = _report(tmp_path / "artifacts", "../../../../escaped")
    site = tmp_path / "deep" / "a" / "b" / "site"
    before = _tree(tmp_path)
    proc = _status(project, "--artifacts", str(artifacts), "--site", str(site))
    assert proc.returncode == 0, proc.stderr
    assert "not a cell of the matrix" in proc.stderr
    new = _tree(tmp_path) - before
    assert all(p.startswith("deep") for p in new) and not [p for p in new if "escaped" in p]
    assert not list(tmp_path.parent.glob("escaped*"))
    assert _tree(site) == {"index.html", "status.json"}


def test_log_names_in_the_site_come_from_cell_ids_only(tmp_path):
    from ciwheels.builder.statuspage import log_name

    assert log_name(CELL) == f"{CELL}.log"
    for hostile in ("../../x", "/etc/passwd", "a/b", "..", ".hidden", "x\ny", "é" * 3, "a" * 400):
        name = log_name(hostile)
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*\.log", name) and ".." not in name


def test_a_build_log_is_published_without_credentials(tmp_path):
    """A build that printed its environment: the log on the site has every credential the
    status job knows scrubbed (the registry password, the CI job token)."""
    project = _project(tmp_path)
    artifacts = _report(tmp_path / "artifacts", CELL,
                        log_text=f"CIWHEELS_PASSWORD={SECRET}\nCI_JOB_TOKEN=glcbt-abcdef123456\nerror: boom\n"
                                 f"cibuildwheel: error: cannot read https://u:{SECRET}@h.example/ with {SECRET}\n")
    site = tmp_path / "site"
    proc = _status(project, "--artifacts", str(artifacts), "--site", str(site),
                   env={"CIWHEELS_PASSWORD": SECRET, "CI_JOB_TOKEN": "glcbt-abcdef123456"})
    assert proc.returncode == 0, proc.stderr
    text = (site / "logs" / f"{CELL}.log").read_text()
    assert "error: boom" in text and SECRET not in text and "glcbt-abcdef123456" not in text
    check_page((site / "index.html").read_text(), site, (SECRET, "glcbt-abcdef123456"))
    assert SECRET not in (site / "status.json").read_text() + proc.stdout + proc.stderr
    assert "cibuildwheel: cannot read" in (site / "status.json").read_text()  # the reason, without the secret


@pytest.mark.parametrize("pin", ["../../../../escaped", "1.0 ; rm -rf ~", "1.0\n", " 1.0", "v1.0", "1.0/..", ""])
def test_pinned_versions_are_pep440_or_an_error(tmp_path, pin):
    """CIWHEELS_VERSIONS names folders, files, jobs and cells: a pin that is not exactly a PEP
    440 version is exit 2, and nothing is written (build-report.json outside --out before)."""
    project = _project(tmp_path, MATRIX.replace('versions: ["1.0", "1.1"]', "versions: latest"))
    out = tmp_path / "a" / "b" / "c" / "d" / "out"
    before = _tree(tmp_path)
    env = {"PATH": os.environ["PATH"], "CIWHEELS_VERSIONS": json.dumps({"demo-pkg": [pin]})}
    for args in (("build", "--dry-run", "--all", "--out", str(out)), ("plan", "--json"), ("matrix",)):
        proc = run_ciwheels(*args, "--project", str(project), env=env)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "CIWHEELS_VERSIONS" in proc.stderr and "PEP 440" in proc.stderr and "Traceback" not in proc.stderr
    assert _tree(tmp_path) == before


@given(st.text(max_size=30))
@settings(max_examples=200, deadline=None)
def test_the_one_version_check_takes_exactly_pep440_versions(text):
    from packaging.version import InvalidVersion, Version

    from ciwheels.core.errors import CiwheelsError
    from ciwheels.core.versions import check_version, is_version

    try:
        Version(text)
        parses = True
    except InvalidVersion:
        parses = False
    if is_version(text):
        assert parses and text == text.strip() and "/" not in text and not re.search(r"\s|;|\.\.", text)
        assert check_version(text, "x") == text
    else:
        with pytest.raises(CiwheelsError):
            check_version(text, "x")
    if parses and re.fullmatch(r"[0-9][0-9A-Za-z.!+_-]*", text):
        assert is_version(text)


def test_pip_config_never_prints_credentials_and_refuses_line_breaks(tmp_path):
    """--level prints the level registries' indexes: without the credentials in their URLs; a
    registry URL with a newline would add an index-url line of its own: exit 2."""
    project = _project(tmp_path, "python: [cp313]\narch: [x86_64]\nisa:\n  x86_64: [x86-64, x86-64-v3]\nregistries:\n"
                       f"  v3: {{url: 'https://bob:{SECRET}@gl.example/api/v4/projects/2/packages/pypi', "
                       "select: {isa: x86-64-v3}}\n"
                       f"  base: {{url: 'https://bob:{SECRET}@gl.example/api/v4/projects/1/packages/pypi'}}\n")
    proc = run_ciwheels("pip-config", "--project", str(project), "--level", "x86-64-v3")
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr and "bob" not in proc.stdout
    assert "index-url = https://gl.example/api/v4/projects/2/packages/pypi/simple/" in proc.stdout
    proc = run_ciwheels("pip-config", "--repository-url", f"https://bob:{SECRET}@h.example/x\nindex-url = https://evil/")
    assert proc.returncode == 2 and "evil" not in proc.stdout and SECRET not in proc.stdout + proc.stderr


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_pip_config_from_any_url_is_one_index_line_or_an_error(junk):
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.views.consumers import pip_config

    url = f"https://user:{SECRET}@host.example/{junk}/simple"
    try:
        text = pip_config("reg", url)
    except CiwheelsError as e:
        assert SECRET not in str(e)
        return
    assert SECRET not in text
    assert len([ln for ln in text.splitlines() if ln.startswith("index-url")]) == 1
    assert len([ln for ln in text.splitlines() if ln.startswith("url = ")]) == 1
    url_line = next(ln for ln in text.splitlines() if ln.startswith("url = "))
    assert url_line.count('"') == 2 and url_line.endswith('"')


# -- status and failure memory ----------------------------------------------------------------
def _previous(tmp_path: Path, cells: list, fmt=1) -> Path:
    path = tmp_path / "previous.json"
    path.write_text(json.dumps({"format": fmt, "cells": cells}), encoding="utf-8")
    return path


def _fingerprint(project: Path, cell: str) -> str:
    from ciwheels.builder.state import cell_fingerprint
    from ciwheels.project.open import open_project

    return cell_fingerprint(next(c for c in open_project(project).expansion.cells if c.id == cell))


def _planned(project: Path, *args: str) -> tuple[set[str], str]:
    proc = run_ciwheels("plan", "--project", str(project), "--missing", "--json", "--no-upstream",
                        "--repository-url", "http://127.0.0.1:9/nothing", *args,
                        env={"PATH": os.environ["PATH"]})
    return proc, proc.stderr


def test_a_previous_status_with_wrong_types_is_dropped_with_a_warning_not_a_crash(tmp_path):
    """detail an object, log a number, since in the future, javascript: links: the page is still
    published, the malformed entries are dropped (and named in a warning), the links are gone."""
    project = _project(tmp_path)
    fp = _fingerprint(project, CELL)
    other = "demo-pkg-1.1-cp313-manylinux_x86_64-x86-64"
    good_since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = _previous(tmp_path, [
        {"id": CELL, "state": "failed", "fingerprint": fp, "since": good_since, "detail": {"x": 1}, "log": 7},
        {"id": other, "state": "failed", "fingerprint": _fingerprint(project, other), "since": "2999-01-01T00:00:00Z",
         "detail": "d"},
        {"id": "demo-pkg-1.0-cp312-manylinux_x86_64-x86-64", "state": "failed",
         "fingerprint": _fingerprint(project, "demo-pkg-1.0-cp312-manylinux_x86_64-x86-64"), "since": good_since,
         "detail": "why", "log": "javascript:alert(document.cookie)", "run": "javascript:alert(1)"},
        None, 5, [], {"id": 3}, {"state": "failed"}])
    for fmt in ("text", "html", "json"):
        proc = _status(project, "--previous", str(previous), "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr and "dropped as malformed" in proc.stderr
        assert "javascript" not in proc.stdout
        if fmt == "html":
            check_page(proc.stdout)
        if fmt == "json":
            by_id = {c["id"]: c for c in json.loads(proc.stdout)["cells"]}
            assert by_id[CELL]["state"] == "failed" and "log" not in by_id[CELL]  # remembered, detail text only
            assert by_id[other]["state"] == "missing"  # a `since` in the future is never believed
            assert by_id["demo-pkg-1.0-cp312-manylinux_x86_64-x86-64"]["detail"] == "why"


class _AccessControlled(BaseHTTPRequestHandler):
    """A private Pages site: anonymous requests are redirected to a sign-in page (GitLab), or
    answered 401/403, by path."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/users/sign_in")
            self.end_headers()
        elif self.path.startswith("/users/sign_in"):
            body = b"<!DOCTYPE html><html><body><form>Sign in</form></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            code = int(self.path.strip("/").split("/")[0])
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.mark.parametrize("path", ["redirect/status.json", "401/status.json", "403/status.json"])
def test_a_status_url_behind_access_control_is_no_memory_with_a_warning(tmp_path, path):
    """#21.2: a private project's Pages redirect to a sign-in page, or answer 401/403: the
    scheduled plan goes on without memory (a warning), it does not stop with exit 2."""
    project = _project(tmp_path)
    server, url = serve(_AccessControlled)
    try:
        proc = run_ciwheels("plan", "--project", str(project), "--missing", "--json", "--no-upstream",
                            "--previous", f"{url}/{path}", env={"PATH": os.environ["PATH"]})
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    assert "no failure is remembered" in proc.stderr
    assert ("sign-in" in proc.stderr) if path.startswith("redirect") else ("access control" in proc.stderr)
    assert {c["id"] for c in json.loads(proc.stdout)["cells"]} >= {CELL}


class _Broken(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_plan_missing_refuses_a_registry_that_cannot_be_read(tmp_path):
    """A registry answering 500 to everything is not "all published": exit 2, not "nothing to build"."""
    server, url = serve(_Broken)
    project = _project(tmp_path, MATRIX + f"registries:\n  main: {{url: '{url}/pypi'}}\n")
    try:
        proc = run_ciwheels("plan", "--project", str(project), "--missing", "--no-upstream",
                            env={"PATH": os.environ["PATH"]})
    finally:
        server.shutdown()
    assert proc.returncode == 2 and "nothing to build" not in proc.stdout, proc.stdout + proc.stderr
    assert "cannot read the registry index" in proc.stderr and "HTTP 500" in proc.stderr


def test_a_failure_carried_over_says_since_when_and_why_and_links_only_logs_the_site_has(tmp_path):
    """#21.6 across two runs: run 1 records a failure (why: the tests failed; its log in the
    site); run 2 has no artifacts: the failure is remembered, says it was in an earlier pipeline
    and since when, keeps its reason, and links no log the new site lacks (its log is carried)."""
    project = _project(tmp_path)
    log = "Building wheel...\nok\nRepairing wheel...\nok\nTesting wheel...\nFAILED tests/test_x.py::test_y\n"
    artifacts = _report(tmp_path / "artifacts", CELL, log_text=log)
    site1, site2 = tmp_path / "run1", tmp_path / "run2"
    env = {"CI_PIPELINE_URL": "https://gitlab.example/g/p/-/pipelines/17"}
    proc = _status(project, "--artifacts", str(artifacts), "--site", str(site1), "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    first = next(c for c in json.loads(proc.stdout)["cells"] if c["id"] == CELL)
    assert first["detail"] == "the tests failed: FAILED tests/test_x.py::test_y" and first["this-run"] is True
    assert first["log"] == f"logs/{CELL}.log" and first["run"] == env["CI_PIPELINE_URL"]
    page1 = (site1 / "index.html").read_text()
    check_page(page1, site1)
    assert page1.index('id="failures"') < page1.index("<th>versions built</th>")  # failures first
    assert "in this pipeline" in page1 and "the tests failed" in page1

    proc = _status(project, "--previous", str(site1 / "status.json"), "--site", str(site2), "--format", "json",
                   env={"CI_PIPELINE_URL": "https://gitlab.example/g/p/-/pipelines/18"})
    assert proc.returncode == 0, proc.stderr
    again = next(c for c in json.loads(proc.stdout)["cells"] if c["id"] == CELL)
    assert again["state"] == "failed" and again["detail"] == first["detail"] and "this-run" not in again
    assert again["run"] == env["CI_PIPELINE_URL"] and again["since"] == first["since"]
    assert again["log"] == f"logs/{CELL}.log" and (site2 / again["log"]).is_file()  # carried into the new site
    page2 = (site2 / "index.html").read_text()
    check_page(page2, site2)
    assert "failed in this pipeline" not in page2 and "in an earlier pipeline, since" in page2
    assert "pipelines/17" in page2


@pytest.mark.parametrize("served", [True, False])
def test_a_remembered_failure_brings_its_log_into_the_new_site(tmp_path, served):
    """The new site replaces the old one: the log of a failure remembered from it is copied
    along (from the previous status' URL, or its folder), so its link works run after run."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    project = _project(tmp_path)
    artifacts = _report(tmp_path / "artifacts", CELL, log_text=f"Testing wheel...\nFAILED test_y {SECRET}\n")
    site1, site2, site3 = tmp_path / "run1", tmp_path / "run2", tmp_path / "run3"
    env = {"CIWHEELS_PASSWORD": SECRET}
    assert _status(project, "--artifacts", str(artifacts), "--site", str(site1), env=env).returncode == 0
    server = None
    if served:
        handler = functools.partial(type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                                    directory=str(site1))
        server, url = serve(handler)
        previous = f"{url}/status.json"
    else:
        previous = str(site1 / "status.json")
    try:
        proc = _status(project, "--previous", previous, "--site", str(site2), "--format", "json")
    finally:
        if server:
            server.shutdown()
    assert proc.returncode == 0, proc.stderr
    cell = next(c for c in json.loads(proc.stdout)["cells"] if c["id"] == CELL)
    assert cell["log"] == f"logs/{CELL}.log" and "this-run" not in cell
    assert "FAILED test_y" in (site2 / cell["log"]).read_text() and SECRET not in (site2 / cell["log"]).read_text()
    check_page((site2 / "index.html").read_text(), site2)
    # and once more, from the second site (a chain of schedules)
    proc = _status(project, "--previous", str(site2 / "status.json"), "--site", str(site3), "--format", "json")
    assert (site3 / "logs" / f"{CELL}.log").read_text() == (site2 / "logs" / f"{CELL}.log").read_text()


@pytest.mark.parametrize("status,log,why", [
    ("python-not-in-image", "the image x carries cp312, not cp313\n", "Python is not in the image"),
    ("failed", "Building wheel...\nRepairing wheel...\nauditwheel: error: cannot repair\n", "auditwheel refused"),
    ("failed", "Building wheel...\nerror: command 'gcc' failed\n", "the build failed (compiling or packaging the "
                                                                    "wheel): error: command 'gcc' failed"),
    ("failed", "Testing wheel...\n1 failed\n", "the tests failed"),
    ("failed", "cibuildwheel: error: No build identifiers selected\n", "No build identifiers selected"),
    ("isa-mismatch", "", "higher ISA level"),
])
def test_every_failure_says_why(tmp_path, status, log, why):
    project = _project(tmp_path)
    artifacts = _report(tmp_path / "artifacts", CELL, status=status, log_text=log)
    proc = _status(project, "--artifacts", str(artifacts), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    cell = next(c for c in json.loads(proc.stdout)["cells"] if c["id"] == CELL)
    assert why in cell["detail"]


def test_versions_built_lists_only_versions_with_a_published_cell_and_the_table_has_a_state_column(tmp_path):
    from ciwheels.builder.state import CellState
    from ciwheels.builder.statuspage import html_status, status_document
    from ciwheels.project.open import open_project

    project = open_project(_project(tmp_path))
    states = {c.id: CellState("missing") for c in project.expansion.cells}
    states["demo-pkg-1.1-cp312-manylinux_x86_64-x86-64"] = CellState("published", "x.whl")
    states[CELL] = CellState("failed", "the tests failed", fingerprint="ab", since="2026-01-01T00:00:00Z")
    doc = status_document(project, states)
    assert doc["packages"][0]["built"] == ["1.1"] and doc["packages"][0]["states"] == {
        "published": 1, "missing": 2, "failed": 1}
    page = html_status(doc, "t")
    check_page(page)
    row = re.search(r"<tr><th><a href=\"#[^\"]+\">demo-pkg</a></th><td>(.*?)</td><td>(.*?)</td>", page)
    assert row and "1 failed" in row.group(1) and row.group(2) == "1.1"


# -- generative: the previous-status reader and the page from hostile documents ---------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                     max_leaves=20)
_hostile_text = st.one_of(st.text(max_size=60), st.sampled_from([
    "javascript:alert(1)", "JaVaScRiPt:x", " javascript:x", "data:text/html,<script>x</script>", "//evil.example/x",
    "file:///etc/passwd", "logs/../../etc/passwd", '"><script>alert(1)</script>', "https://u:p@h.example/x",
    "vbscript:x", "/abs/path", "http://ok.example/log", "logs/x.log", "\\\\host\\share", "java\nscript:x"]))
_entry = st.fixed_dictionaries({"id": st.one_of(st.text(max_size=30), _scalars), "state": st.sampled_from(
    ["failed", "published", "missing", "odd", 3]), "fingerprint": st.one_of(st.text("0123456789abcdef", max_size=20),
                                                                            _scalars),
    "since": st.one_of(st.sampled_from(["2026-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "yesterday", "",
                                        "2026-01-01T00:00:00+05:00", "2026-01-01"]), _scalars),
    "detail": st.one_of(_hostile_text, _json), "log": st.one_of(_hostile_text, _json),
    "run": st.one_of(_hostile_text, _json), "tried": st.one_of(st.sampled_from(
        ["2026-03-01T00:00:00Z", "2025-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "soon"]), _scalars)})


@given(st.lists(st.one_of(_entry, _json), max_size=8))
@settings(max_examples=60, deadline=None)
def test_the_previous_status_reader_keeps_only_valid_failures(cells):
    from ciwheels.builder.state import parse_previous
    from ciwheels.builder.upstream import parse_time
    from ciwheels.core.links import safe_link

    now = datetime(2026, 6, 1, tzinfo=UTC)
    out = parse_previous({"format": 1, "cells": cells}, now)
    for cid, entry in out.items():
        assert isinstance(cid, str) and entry["state"] == "failed"
        assert re.fullmatch(r"[0-9a-f]{1,64}", entry["fingerprint"])
        assert parse_time(entry["since"]) <= parse_time(entry["tried"]) <= now + timedelta(hours=1)
        assert isinstance(entry["detail"], str) and "\n" not in entry["detail"]
        for key in ("log", "run"):
            assert entry[key] == safe_link(entry[key])
            assert not entry[key] or entry[key].startswith(("http://", "https://")) or ":" not in entry[key]


_log_lines = st.lists(st.one_of(_hostile_text, st.sampled_from([
    "cibuildwheel: error: <script>alert(1)</script>", "Building wheel...", "Testing wheel...", "Repairing wheel...",
    "::error::cibuildwheel: <img src=x onerror=alert(1)>"])), max_size=6).map("\n".join)


@given(st.lists(_entry, max_size=6), st.text(max_size=30), _log_lines)
@settings(max_examples=50, deadline=None)
def test_a_status_page_from_a_hostile_memory_is_escaped_and_links_only_http_or_relative(cells, title, log_text):
    """The page drawn from whatever a previous status.json held and whatever a build log said
    (the reason is read from it): no markup gets through, no link but http(s) and relative, no
    credential from a URL."""
    from ciwheels.builder.state import CellState, parse_previous
    from ciwheels.builder.statuspage import failure_reason, html_status, text_status

    now = datetime(2026, 6, 1, tzinfo=UTC)
    remembered = parse_previous({"format": 1, "cells": cells}, now)
    remembered["from-a-log"] = {"detail": failure_reason("failed", log_text, 1), "log": "logs/x.log", "run": "",
                                "fingerprint": "ab", "since": "2026-01-01T00:00:00Z"}
    doc_cells = []
    for i, (cid, entry) in enumerate(sorted(remembered.items())):
        st_ = CellState("failed", entry["detail"], entry["log"], entry["fingerprint"], entry["since"], entry["run"])
        doc_cells.append({"id": cid, "python": "cp313", "platform": "manylinux_x86_64", "libc": "glibc",
                          "arch": "x86_64", "isa": "x86-64", "policy": "manylinux_2_28", "registry": None,
                          "package": f"p{i % 2}", "version": "1.0", **st_.to_json()})
    counts = {s: sum(1 for c in doc_cells if c["state"] == s) for s in ("published", "failed")}
    doc = {"format": 1, "generated": "2026-06-01T00:00:00Z", "counts": counts, "cells": doc_cells,
           "packages": [{"name": "p0", "versions": ["1.0"], "built": [], "states": {"failed": 1},
                         "newest-upstream": None, "newest-built": None}]}
    page = html_status(doc, title)
    check_page(page, secrets=("u:p@",))
    text_status(doc)


class _Page(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = b'<a href="x-1.0-cp313-cp313-manylinux_2_28_x86_64.whl">x</a>'
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("version", ['"1.0 beta"', '"../../x"', "3"])
def test_the_projects_own_version_is_pep440_or_an_error(tmp_path, version):
    """A project's own static version is compared with the registry's: one that is not a PEP 440
    version was an InvalidVersion traceback in plan and status."""
    server, url = serve(_Page)
    project = _project(tmp_path, f"python: [cp313]\narch: [x86_64]\nregistries:\n  r: {{url: '{url}/pypi'}}\n")
    (project / "pyproject.toml").write_text(f'[project]\nname = "x"\nversion = {version}\n')
    try:
        for args in (("plan", "--missing"), ("status",)):
            proc = run_ciwheels(*args, "--project", str(project), "--no-upstream", env={"PATH": os.environ["PATH"]})
            assert proc.returncode == 2, proc.stderr
            assert "pyproject.toml: [project] version" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        server.shutdown()


def test_a_retry_that_fails_again_waits_another_period_and_keeps_its_first_since(tmp_path):
    """Run 1 (40 days after the first failure, due): the cell is rebuilt and fails again. Its
    memory keeps `since` (failing since then) and records the attempt in `tried`: the next plan
    does not rebuild it (it counted from `since` and rebuilt it on every schedule)."""
    project = _project(tmp_path)
    fp = _fingerprint(project, CELL)
    first = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = _previous(tmp_path, [{"id": CELL, "state": "failed", "fingerprint": fp, "since": first,
                                     "detail": "the tests failed"}])
    env = {"PATH": os.environ["PATH"]}
    plan = run_ciwheels("plan", "--project", str(project), "--missing", "--json", "--no-upstream", "--previous",
                        str(previous), env=env)
    assert CELL in {c["id"] for c in json.loads(plan.stdout)["cells"]}  # due: rebuilt
    artifacts = _report(tmp_path / "artifacts", CELL, log_text="Testing wheel...\nFAILED\n")
    site = tmp_path / "site"
    proc = _status(project, "--artifacts", str(artifacts), "--previous", str(previous), "--site", str(site),
                   "--format", "json")
    cell = next(c for c in json.loads(proc.stdout)["cells"] if c["id"] == CELL)
    assert cell["since"] == first and cell["tried"] > first and cell["this-run"] is True
    plan = run_ciwheels("plan", "--project", str(project), "--missing", "--json", "--no-upstream", "--previous",
                        str(site / "status.json"), env=env)
    assert CELL not in {c["id"] for c in json.loads(plan.stdout)["cells"]}
    assert "failing since " + first[:10] in (site / "index.html").read_text()


@pytest.mark.parametrize("days", ["nan", "inf", "-1"])
def test_retry_after_must_be_a_finite_number_of_days(tmp_path, days):
    """nan made every remembered failure never due (nan >= x is false), inf too."""
    proc = run_ciwheels("plan", "--project", str(_project(tmp_path)), "--missing", "--no-upstream", "--retry-after",
                        days, env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 2 and "--retry-after" in proc.stderr and "Traceback" not in proc.stderr


_report_text = st.one_of(st.text(max_size=40), st.sampled_from([
    "../../../../escaped", "/etc/passwd", "..", ".", "a/../../b", "<script>x</script>", CELL, "x\nlog", "logs",
    f"{JOB}.log", "../x.log", "..log", "\\\\server\\x.log"]))


@given(st.lists(st.tuples(_report_text, _report_text, st.one_of(st.none(), _report_text), st.booleans(),
                          st.text(max_size=80)), min_size=1, max_size=4))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_artifacts_never_write_outside_the_site_nor_link_out(tmp_path_factory, reports):
    """Reports whose cell, status and log name are anything, logs that are links or text with a
    credential: the site holds index.html, status.json and logs/*.log only, every link works."""
    from ciwheels.builder.statuspage import copy_logs, failed_builds, html_status
    from ciwheels.core import secrets
    from ciwheels.dist.artifacts import BuildReport, write_report

    secrets.remember(SECRET)
    root = tmp_path_factory.mktemp("hostile")
    art, site = root / "art" / "wheelhouse", root / "out" / "site"
    for i, (cell, status, log, link, text) in enumerate(reports):
        write_report(art / f"r{i}", BuildReport(cell=cell, status=status, log=log))
        if log and "/" not in log and "\x00" not in log and log not in (".", "..") and len(log) < 200:
            target = art / log
            if not target.exists() and not target.is_symlink():
                try:
                    target.symlink_to("/proc/self/environ") if link else target.write_text(text + SECRET)
                except OSError:
                    pass
    known = {CELL, "../../../../escaped", "x\nlog", "<script>x</script>"}
    failed = failed_builds([root / "art"], known)
    links = copy_logs(failed, site)
    states = {c: {"id": c, "state": "failed", "python": "cp313", "libc": "glibc", "arch": "x86_64", "isa": "x86-64",
                  "detail": b.reason, "log": links.get(c, ""), "package": "demo-pkg", "version": "1.0"}
              for c, b in failed.items()}
    doc = {"generated": "now", "counts": {"failed": len(states)}, "packages": [], "cells": list(states.values())}
    page = html_status(doc, "t")
    site.mkdir(parents=True, exist_ok=True)
    (site / "index.html").write_text(page)
    check_page(page, site, (SECRET,))
    assert set(failed) <= known
    written = {str(p.relative_to(root / "out")) for p in (root / "out").rglob("*")}
    assert all(w == "site" or w == "site/index.html" or w == "site/logs" or
               (w.startswith("site/logs/") and w.endswith(".log") and w.count("/") == 2) for w in written), written
    for p in (site / "logs").glob("*") if (site / "logs").exists() else []:
        assert SECRET not in p.read_text() and "PATH=" not in p.read_text()
