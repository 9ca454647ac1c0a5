"""`ciwheels diff` on real throwaway git repositories with successive matrix commits."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import run_ciwheels, with_registries

BASE = ("python: [cp312, cp313, cp314]\nlibc: [glibc, musl]\narch: [x86_64, aarch64, riscv64]\n"
        "isa: {x86_64: [x86-64, x86-64-v3]}\nimages:\n  riscv64-glibc: localhost/rv_manylinux_2_35:1\n"
        # aarch64 under QEMU, as it was before hosted arm runners became the default
        "runners: {aarch64: {emulated: true}}\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    (tmp_path / "matrix").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\n')
    git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def commit(repo: Path, text: str, message: str) -> str:
    (repo / "matrix" / "wheels.yaml").write_text(with_registries(text))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


def as_json(repo: Path, *args: str) -> dict:
    return json.loads(run_ciwheels("diff", *args, "--project", str(repo), "--format", "json", check=True).stdout)


def test_added_removed_and_summaries(repo):
    one = commit(repo, BASE, "one")
    two = commit(repo, BASE.replace("cp314]", "cp314, cp315]").replace("aarch64, riscv64", "aarch64")
                 + "exclude: [{libc: musl, arch: aarch64}]\n", "two")
    d = as_json(repo, one, two)
    assert sorted(d["added"]) == sorted(f"cp315-{p}" for p in (
        "manylinux_x86_64-x86-64", "manylinux_x86_64-x86-64-v3", "musllinux_x86_64-x86-64",
        "musllinux_x86_64-x86-64-v3", "manylinux_aarch64-armv8-a"))
    assert "cp312-musllinux_riscv64-rv64gc" in d["removed"] and "cp313-musllinux_aarch64-armv8-a" in d["removed"]
    assert len(d["removed"]) == 3 * 2 + 3  # riscv64 on both libcs, musl aarch64
    assert d["changed"] == []
    assert "+cp315 on 3 platforms" in d["summary"]
    assert "-musllinux riscv64 (3 cells)" in d["summary"]
    assert "-manylinux riscv64 (3 cells)" in d["summary"]
    # emulated cells run one job each (render: emulated-jobs defaults to per-cell)
    assert d["pipelines"]["jobs_removed"] == [f"{platform}-{py}" for platform in (
        "manylinux_2_35_riscv64-rv64gc", "musllinux_1_2_aarch64-armv8-a", "musllinux_1_2_riscv64-rv64gc")
        for py in ("cp312", "cp313", "cp314")]
    assert d["pipelines"]["emulated_jobs"] == {"base": 4 * 3, "head": 4}


def test_changed_settings_are_named(repo):
    one = commit(repo, BASE, "one")
    commit(repo, BASE.replace("rv_manylinux_2_35:1", "rv_manylinux_2_35:2").replace(
        "{emulated: true}", "{github: ubuntu-24.04-arm}") + "test-command: pytest\n", "two")
    d = as_json(repo, one, "HEAD")
    changed = {c["id"]: {s["setting"] for s in c["settings"]} for c in d["changed"]}
    assert changed["cp312-manylinux_riscv64-rv64gc"] >= {"image", "cibw", "test_command"}
    assert "runner" in changed["cp313-musllinux_aarch64-armv8-a"]
    assert changed["cp314-manylinux_x86_64-x86-64"] == {"cibw", "test_command"}
    assert d["added"] == [] and d["removed"] == []
    image = next(s for s in d["changed"][0]["settings"] if s["setting"] in ("image", "test_command"))
    assert image["base"] != image["head"]
    assert d["pipelines"]["native_jobs"]["head"] == d["pipelines"]["native_jobs"]["base"] + 2


def test_defaults_merge_base_against_working_tree(repo):
    commit(repo, BASE, "one")
    git(repo, "checkout", "-qb", "feature")
    commit(repo, BASE.replace("cp314]", "cp314, cp314t]"), "two")
    (repo / "matrix" / "wheels.yaml").write_text(with_registries(BASE.replace("cp314]", "cp314, cp314t, cp315]")))
    d = as_json(repo)
    assert d["base"] != "working tree" and d["head"] == "working tree"
    assert {c.split("-")[0] for c in d["added"]} == {"cp314t", "cp315"}
    text = run_ciwheels("diff", "--project", str(repo), check=True).stdout
    assert "+cp314t on 6 platforms" in text and "added (" in text and "pipelines:" in text
    md = run_ciwheels("diff", "--project", str(repo), "--format", "markdown", check=True).stdout
    assert md.startswith("<!-- ciwheels-matrix-diff -->\n### ciwheels: matrix changes")
    assert "<summary>Added (" in md and "+ cp315-manylinux_x86_64-x86-64" in md


def test_two_paths(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("python: [cp312]\n")
    b.write_text("python: [cp312, cp313]\n")
    d = as_json(tmp_path, str(a), str(b))
    assert d["added"] == ["cp313-manylinux_x86_64-x86-64"] and d["removed"] == []


def test_bad_matrix_names_the_revision(repo):
    one = commit(repo, BASE.replace("cp313", "cp399"), "broken")
    commit(repo, BASE, "fixed")
    proc = run_ciwheels("diff", one, "HEAD", "--project", str(repo))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {one}:matrix/wheels.yaml:1:17: unknown python 'cp399'")
    proc = run_ciwheels("diff", "nosuchrev", "--project", str(repo))
    assert proc.returncode == 2 and "'nosuchrev' is neither a matrix path nor a git revision" in proc.stderr


def test_grid_text_and_html():
    from html.parser import HTMLParser

    from conftest import EXAMPLE, derive_cells

    text = run_ciwheels("matrix", "--grid", "--project", str(EXAMPLE), check=True).stdout.splitlines()
    assert text[0].split("  ")[0] == "python" and "musllinux riscv64" in text[0]
    row = dict(zip([h.strip() for h in text[0].split("  ") if h.strip()],
                   [v.strip() for v in text[4].split("  ") if v.strip()]))
    assert row["python"] == "cp313" and row["manylinux x86_64"] == "v1 v3" and row["manylinux ppc64le"] == "p9"
    assert row["manylinux riscv64"] == "gc 23"
    cp314t = text[6].split()
    assert cp314t[0] == "cp314t" and cp314t.count("-") == 3  # no ppc64le, no riscv64 (excluded)
    assert "v3=x86-64-v3" in text[-1]

    page = run_ciwheels("matrix", "--grid", "--format", "html", "--project", str(EXAMPLE), check=True).stdout

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.badges, self.in_row = 0, [], False

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows += 1
            if tag == "span" and ("class", "lv") in attrs or ("class", "lv base") in attrs:
                self.badges.append(dict(attrs)["title"])

    p = Cells()
    p.feed(page)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "http" not in page.split("<body>")[1]
    cells, _ = derive_cells()
    assert p.rows == 1 + len({c.split("-")[0] for c in cells})  # header + Pythons
    assert len(p.badges) == len(cells)  # one badge per cell


class GitLabNotesStandIn:
    """STAND-IN for GitLab's merge-request notes API (no real GitLab can run here): the URL
    layout, PRIVATE-TOKEN auth, X-Next-Page pagination, POST 201 and PUT 200 of
    /projects/:id/merge_requests/:iid/notes."""

    def __init__(self, token: str, fail: bool = False):
        from http.server import BaseHTTPRequestHandler

        from servers import serve

        self.notes = [{"id": i, "body": f"someone else's note {i}"} for i in range(1, 131)]
        self.requests: list[tuple[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method):
                from urllib.parse import parse_qs, urlsplit

                stand_in.requests.append((method, self.path))
                if self.headers.get("PRIVATE-TOKEN") != token:
                    return self._reply(401, {"message": "401 Unauthorized"})
                if fail:
                    return self._reply(500, {"message": "500 Internal Server Error"})
                url = urlsplit(self.path)
                if not url.path.startswith("/api/v4/projects/group%2Fproj/merge_requests/7/notes"):
                    return self._reply(404, {"message": "404 Not found"})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                if method == "GET":
                    q = parse_qs(url.query)
                    page, per = int(q["page"][0]), int(q["per_page"][0])
                    chunk = stand_in.notes[(page - 1) * per: page * per]
                    more = page * per < len(stand_in.notes)
                    return self._reply(200, chunk, {"X-Next-Page": str(page + 1) if more else ""})
                if method == "POST":
                    note = {"id": 1000 + len(stand_in.notes), "body": body["body"]}
                    stand_in.notes.append(note)
                    return self._reply(201, note)
                if method == "PUT":
                    nid = int(url.path.rsplit("/", 1)[1])
                    note = next(n for n in stand_in.notes if n["id"] == nid)
                    note["body"] = body["body"]
                    return self._reply(200, note)

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_PUT(self):
                self._route("PUT")

        self.server, base = serve(Handler)
        self.url = f"{base}/api/v4"

    def close(self):
        self.server.shutdown()


def _note_env(url: str, token: str) -> dict:
    import os

    return {**os.environ, "CI_API_V4_URL": url, "CI_PROJECT_ID": "group/proj", "CI_MERGE_REQUEST_IID": "7",
            "CIWHEELS_NOTE_TOKEN": token}


def test_merge_request_note_is_created_then_updated(repo):
    token = "glpat-SENTINEL-do-not-print"
    one = commit(repo, BASE, "one")
    commit(repo, BASE.replace("cp314]", "cp314, cp315]"), "two")
    server = GitLabNotesStandIn(token)
    try:
        for expected in ("created merge-request note", "updated merge-request note"):
            proc = run_ciwheels("diff", one, "HEAD", "--project", str(repo), "--format", "markdown",
                                "--post-gitlab-note", env=_note_env(server.url, token))
            assert proc.returncode == 0 and expected in proc.stderr, proc.stderr
            assert token not in proc.stdout + proc.stderr
        ours = [n for n in server.notes if n["body"].startswith("<!-- ciwheels-matrix-diff -->")]
        assert len(ours) == 1 and "+cp315 on 6 platforms" in ours[0]["body"]
        assert ("PUT", f"/api/v4/projects/group%2Fproj/merge_requests/7/notes/{ours[0]['id']}") in server.requests
    finally:
        server.close()


def test_note_failure_never_fails_the_job(repo):
    token = "glpat-SENTINEL-2"
    commit(repo, BASE, "one")
    server = GitLabNotesStandIn(token, fail=True)
    try:
        proc = run_ciwheels("diff", "HEAD", "HEAD", "--project", str(repo), "--post-gitlab-note",
                            env=_note_env(server.url, token))
    finally:
        server.close()
    assert proc.returncode == 0
    assert "warning: GitLab answered 500" in proc.stderr and token not in proc.stderr + proc.stdout


def test_first_pull_request_base_has_no_matrix(repo):
    """The pull request that adds the matrix: its base has none, which is an empty matrix."""
    (repo / "README").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "before ciwheels")
    base = git(repo, "rev-parse", "HEAD").strip()
    commit(repo, "python: [cp312, cp313]\n", "add a matrix")
    d = as_json(repo, base, "HEAD")
    assert sorted(d["added"]) == ["cp312-manylinux_x86_64-x86-64", "cp313-manylinux_x86_64-x86-64"]
    assert d["removed"] == [] and d["changed"] == []
    text = run_ciwheels("diff", base, "--project", str(repo), "--format", "markdown", check=True).stdout
    assert "cp312-manylinux_x86_64-x86-64" in text
