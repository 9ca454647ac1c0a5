"""Hardening, second round (#19): index pages and version selections. Whatever an upstream
index or one of our registries sends as a project page, `plan` gets a list of that project's
files or one clear error (exit 2), never a traceback; a selection that makes no sense is a
matrix error with its line."""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_ciwheels
from servers import serve

from ciwheels.core.errors import CiwheelsError
from ciwheels.net.index import IndexFile, parse_project_page, parse_simple_page, project_of_file

PEP691 = "application/vnd.pypi.simple.v1+json"


def _page(files) -> str:
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "demo", "files": files})


@pytest.mark.parametrize("body", ["<html>not json</html>", "[1, 2]", '{"files": "demo-1.0.tar.gz"}', "null",
                                  '{"files": {"a": 1}}', "[" * 100_000],
                         ids=["html", "array", "files-str", "null", "files-obj", "deep"])
def test_a_pep691_page_that_is_not_one_is_an_error_naming_the_page(body):
    with pytest.raises(CiwheelsError, match="https://idx.example/simple/demo/"):
        parse_project_page(body, PEP691, "demo", "https://idx.example/simple/demo/")


def test_malformed_entries_are_dropped_and_other_projects_files_left_out():
    files = parse_project_page(_page([
        None, 3, "demo-1.0.tar.gz", {}, {"filename": None}, {"filename": 7}, {"filename": ""},
        {"filename": "demo-1.0.tar.gz", "hashes": "x", "yanked": {"why": 1}},
        {"filename": "demo-1.1.tar.gz", "hashes": {"sha256": ["no"]}, "upload-time": 5, "url": {"x": 1},
         "requires-python": 3},
        {"filename": "other-9.0.tar.gz"}, {"filename": "other-9.0-py3-none-any.whl"},
        {"filename": "demo-2.0-py3-none-any.whl", "yanked": "broken"}]), PEP691, "demo")
    assert files == [IndexFile("demo-1.1.tar.gz"), IndexFile("demo-2.0-py3-none-any.whl", yanked=True)]
    html = ('<a href="demo-1.0.tar.gz">x</a><a href="../../other/other-9.0.tar.gz">y</a>'
            '<a href="DEMO-1.2.zip#sha256=zz">z</a><a href="junk.whl">j</a>')
    assert sorted(parse_simple_page(html, "demo")) == ["DEMO-1.2.zip", "demo-1.0.tar.gz"]
    assert [f.filename for f in parse_project_page(html, "text/html", "demo")] == [
        "demo-1.0.tar.gz", "DEMO-1.2.zip", "junk.whl"]


def test_files_of_another_project_never_become_releases():
    """`other-9.0.tar.gz` on demo's page made `versions: latest` pick 9.0."""
    from ciwheels.builder.upstream import select_versions
    from ciwheels.matrix.normalise import VersionSelection

    files = parse_project_page(_page([{"filename": "demo-1.0.tar.gz"}, {"filename": "other-9.0.tar.gz"}]),
                               PEP691, "demo")
    assert select_versions("demo", files, VersionSelection(newest=1)) == ["1.0"]


_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
_json = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                     max_leaves=25)
_names = st.one_of(st.text(max_size=40), st.sampled_from([
    "demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl", "other-2.0.tar.gz", "demo-1.0-cp313-cp313-linux_x86_64-x86_64_v3.whl",
    "demo-1.0-variants.json", "../../etc/passwd", "demo-1.0.tar.gz/../x", "demo-..-py3-none-any.whl"]))
_entry = st.fixed_dictionaries({"filename": st.one_of(_names, _scalar)}, optional={
    "hashes": _json, "yanked": _json, "upload-time": _json, "url": _json, "requires-python": _json})


@given(st.one_of(_json, st.fixed_dictionaries({"files": st.one_of(st.lists(st.one_of(_entry, _json), max_size=8),
                                                                     _json)})))
@settings(max_examples=80, deadline=None)
def test_the_pep691_reader_returns_the_projects_files_or_one_error(data):
    try:
        files = parse_project_page(json.dumps(data), PEP691, "demo", "the page")
    except CiwheelsError as e:
        assert "the page" in str(e)
        return
    for f in files:
        assert isinstance(f, IndexFile) and isinstance(f.filename, str) and f.filename
        assert project_of_file(f.filename) in (None, "demo")
        assert f.sha256 is None or len(f.sha256) == 64
        assert isinstance(f.yanked, bool) and isinstance(f.url, str)
        assert all(v is None or isinstance(v, str) for v in (f.upload_time, f.requires_python))


@given(st.text(max_size=300))
@settings(max_examples=150, deadline=None)
def test_the_pep503_reader_never_fails(text):
    for f in parse_project_page(text, "text/html", "demo"):
        assert isinstance(f.filename, str)
    for name in parse_simple_page(text, "demo"):
        assert project_of_file(name) == "demo"


# -- through the CLI: a real HTTP index on 127.0.0.1 sends what it likes ----------------------
class _Index(BaseHTTPRequestHandler):
    body = b""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", PEP691)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def _project(tmp_path, text):
    project = tmp_path / "proj"
    (project / "matrix").mkdir(parents=True, exist_ok=True)
    (project / "matrix" / "wheels.yaml").write_text(text, encoding="utf-8")
    return project


@pytest.mark.parametrize("body,code,expect", [
    (b"<html>not json</html>", 2, "not PEP 691 JSON"),
    (b"[]", 2, "is a JSON list"),
    (b'{"files": "x"}', 2, "'files' is a str"),
    (b'{"files": [null, {"url": "x"}, {"filename": "other-9.0.tar.gz"}, {"filename": "demo-1.0.tar.gz"}]}', 0,
     "left out"),
])
def test_plan_reads_a_hostile_upstream_index_without_a_traceback(tmp_path, body, code, expect):
    handler = type("H", (_Index,), {"body": body})
    server, url = serve(handler)
    project = _project(tmp_path, "python: [cp313]\narch: [x86_64]\nsdist-config: false\npackages:\n  - {name: demo, versions: latest}\n")
    try:
        proc = run_ciwheels("plan", "--project", str(project), "--json",
                            env={"PATH": os.environ["PATH"], "CIWHEELS_INDEX_URL": f"{url}/simple"})
    finally:
        server.shutdown()
    assert proc.returncode == code, proc.stderr
    assert expect in proc.stderr and "Traceback" not in proc.stderr
    if code == 0:
        assert json.loads(proc.stdout)["versions"] == {"demo": ["1.0"]}


@pytest.mark.parametrize("selection,message", [
    ("{newest: 0}", "at least 1"), ("{min-age-days: 1e400}", "finite"), ("{min-age-days: .nan}", "finite"),
    ("{min-age-days: .inf}", "finite"), ("{min-age-days: 1e300}", "at most"), ("{newest: 1.5}", "whole number"),
    ("{newest: true}", "whole number"), ("lattest", "'latest'")])
def test_a_selection_that_makes_no_sense_is_a_matrix_error_with_its_line(tmp_path, selection, message):
    project = _project(tmp_path, f"python: [cp313]\narch: [x86_64]\npackages:\n  - name: demo\n    versions: {selection}\n"
                              "sdist-config: false\n")
    proc = run_ciwheels("matrix", "--project", str(project),
                        env={"PATH": os.environ["PATH"], "CIWHEELS_INDEX_URL": "http://127.0.0.1:9/simple"})
    assert proc.returncode == 2 and message in proc.stderr and "wheels.yaml:5:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "127.0.0.1:9" not in proc.stderr  # refused before any index read
