"""Builder mode at scale: `ciwheels plan [--missing]`, version selections against the index,
known failures, upstream wheels, needs, remembered failures, `ciwheels status`.

Registries and upstream indexes are real pypiserver instances on 127.0.0.1 (PEP 503 HTML);
PEP 691 JSON is read from devpi-server in one test and parsed from PyPI-shaped pages here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import run_ciwheels
from servers import PypiServer
from wheelfactory import make_wheel

from ciwheels.matrix.normalise import VersionSelection
from ciwheels.net.registry import IndexFile, parse_project_page
from ciwheels.builder.upstream import select_versions


def _project(tmp_path: Path, text: str) -> Path:
    project = tmp_path / "proj"
    (project / "matrix").mkdir(parents=True, exist_ok=True)
    (project / "matrix" / "wheels.yaml").write_text(text, encoding="utf-8")
    return project


def _sdist(folder: Path, name: str, version: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}-{version}.tar.gz").write_bytes(b"not really an sdist")


MATRIX = """\
python: [cp312, cp313, cp314t]
arch: [x86_64, aarch64]
registries:
  main: {{url: '{registry}'}}
sdist-config: false
packages:
  - name: demo-pkg
    versions: ["1.0", "1.1"]
  - name: other
    versions: latest
known-failures:
  - select: {{package: demo-pkg, version: "1.1", python: cp314t}}
    reason: "no free-threaded support (upstream issue 42)"
"""


# -- fast: pure functions --------------------------------------------------------------------
def test_index_pages_are_read_as_pep691_json_or_pep503_html():
    page = json.dumps({"meta": {"api-version": "1.1"}, "name": "x", "files": [
        {"filename": "x-1.0.tar.gz", "url": "../x-1.0.tar.gz", "hashes": {"sha256": "a" * 64},
         "upload-time": "2025-01-01T00:00:00.000000Z"},
        {"filename": "x-1.1.tar.gz", "url": "x-1.1.tar.gz", "hashes": {}, "yanked": "broken build"}]})
    files = parse_project_page(page, "application/vnd.pypi.simple.v1+json")
    assert files[0] == IndexFile("x-1.0.tar.gz", "../x-1.0.tar.gz", "a" * 64, False, "2025-01-01T00:00:00.000000Z")
    assert files[1].yanked and files[1].sha256 is None
    html = ('<html><body><a href="/p/x-1.0.tar.gz#sha256=aa" data-requires-python="&gt;=3.9">x-1.0.tar.gz</a>'
            '<a href="/p/x-1.1.tar.gz" data-yanked="">x-1.1.tar.gz</a></body></html>')
    files = parse_project_page(html, "text/html")
    assert [(f.filename, f.sha256, f.yanked, f.requires_python) for f in files] == [
        ("x-1.0.tar.gz", "aa", False, ">=3.9"), ("x-1.1.tar.gz", None, True, None)]


def test_version_selections_skip_yanked_pre_releases_and_young_releases():
    now = datetime(2026, 1, 31, tzinfo=UTC)

    def f(name, day=1, yanked=False):
        return IndexFile(name, upload_time=f"2026-01-{day:02d}T00:00:00Z", yanked=yanked)

    files = [f("x-1.0.tar.gz"), f("x-1.9.tar.gz"), f("x-2.0.tar.gz", 2), f("x-2.1.tar.gz", 3, yanked=True),
             f("x-2.2.tar.gz", 4), f("x-2.3rc1.tar.gz", 5), f("x-2.3.tar.gz", 29),
             f("x-2.4-cp312-cp312-manylinux_2_28_x86_64.whl", 10),  # a wheel without an sdist: not buildable
             f("x-3.0.tar.gz", 6)]
    assert select_versions("x", files, VersionSelection(newest=1), now) == ["3.0"]
    assert select_versions("x", files, VersionSelection(">=2.0,<3"), now) == ["2.0", "2.2", "2.3"]
    assert select_versions("x", files, VersionSelection(">=2.0,<3", newest=2, min_age_days=7), now) == ["2.0", "2.2"]
    assert select_versions("x", files, VersionSelection(">=2.0,<3", pre=True), now) == ["2.0", "2.2", "2.3rc1", "2.3"]


def test_plan_json_without_missing_lists_every_job_and_cell(tmp_path):
    project = _project(tmp_path, MATRIX.format(registry="http://127.0.0.1:9").replace("versions: latest",
                                                                                       'versions: ["2.0"]'))
    data = json.loads(run_ciwheels("plan", "--project", str(project), "--json", check=True).stdout)
    cells = {c["id"] for c in data["cells"]}
    assert len(cells) == 3 * 2 * 3 and "other-2.0-cp314t-manylinux_aarch64-armv8-a" in cells
    assert {c for j in data["jobs"] for c in j["cells"]} == cells
    job = next(j for j in data["jobs"] if j["id"] == "demo-pkg-1.0-manylinux_2_28_x86_64-x86-64")
    assert job["cells"] == ["demo-pkg-1.0-cp312-manylinux_x86_64-x86-64", "demo-pkg-1.0-cp313-manylinux_x86_64-x86-64",
                            "demo-pkg-1.0-cp314t-manylinux_x86_64-x86-64"]
    assert job["pythons"] == ["cp312", "cp313", "cp314t"] and job["wave"] == 0


def test_needs_orders_jobs_in_waves_and_refuses_cycles(tmp_path):
    text = ("python: [cp312]\npackages:\n  - {name: numpy, versions: ['2.3.4']}\n"
            "  - {name: scipy, versions: ['1.16.0'], needs: [numpy]}\n"
            "  - {name: scikit-learn, versions: ['1.7.0'], needs: [scipy, NumPy]}\nsdist-config: false\n")
    data = json.loads(run_ciwheels("plan", "--project", str(_project(tmp_path, text)), "--json", check=True).stdout)
    waves = {j["package"]: (j["wave"], j["needs"]) for j in data["jobs"]}
    assert waves == {"numpy": (0, []), "scipy": (1, ["numpy"]), "scikit-learn": (2, ["scipy", "numpy"])}
    cyclic = text.replace("{name: numpy, versions: ['2.3.4']}", "{name: numpy, versions: ['2.3.4'], needs: [scikit-learn]}")
    proc = run_ciwheels("plan", "--project", str(_project(tmp_path, cyclic)))
    assert proc.returncode == 2 and "needs form a cycle" in proc.stderr and "wheels.yaml:4:" in proc.stderr
    unknown = text.replace("needs: [numpy]", "needs: [numpyy]")
    proc = run_ciwheels("plan", "--project", str(_project(tmp_path, unknown)))
    assert proc.returncode == 2 and "'numpyy', which is not another package" in proc.stderr


# -- slow: real index servers ----------------------------------------------------------------
@pytest.fixture
def indexes(tmp_path):
    upstream = PypiServer(tmp_path / "upstream")
    registry = PypiServer(tmp_path / "registry")
    yield registry, upstream
    registry.close()
    upstream.close()


def _fill(registry: PypiServer, upstream: PypiServer) -> None:
    for v in ("1.0", "2.0", "2.1rc1"):
        _sdist(upstream.packages, "other", v)
    make_wheel(upstream.packages, "other", "2.0", tag="cp313-cp313-manylinux_2_28_aarch64")  # upstream ships it
    # on our registry: one multi-tag wheel (cp312 x86_64) and one abi3 wheel (cp312 and cp313 aarch64, not 3.14t)
    make_wheel(registry.packages, "demo-pkg", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64")
    make_wheel(registry.packages, "demo-pkg", "1.0", tag="cp312-abi3-manylinux_2_28_aarch64")
    make_wheel(registry.packages, "demo-pkg", "0.9", tag="cp313-cp313-manylinux_2_28_x86_64")  # another version


@pytest.mark.slow
def test_plan_missing_keeps_only_what_the_registry_lacks(tmp_path, indexes):
    registry, upstream = indexes
    _fill(registry, upstream)
    project = _project(tmp_path, MATRIX.format(registry=registry.url))
    env = {"CIWHEELS_INDEX_URL": f"{upstream.url}/simple"}
    proc = run_ciwheels("plan", "--project", str(project), "--missing", "--json", env=env, check=True)
    data = json.loads(proc.stdout)
    build = {c["id"] for c in data["cells"]}
    skipped = {s["id"]: s for s in data["skipped"]}
    assert data["versions"] == {"other": ["2.0"]}
    assert skipped["demo-pkg-1.0-cp312-manylinux_x86_64-x86-64"]["state"] == "published"  # multi-tag name
    assert skipped["demo-pkg-1.0-cp313-manylinux_aarch64-armv8-a"]["state"] == "published"  # abi3
    assert "demo-pkg-1.0-cp314t-manylinux_aarch64-armv8-a" in build  # abi3 does not serve free-threaded
    assert "demo-pkg-1.0-cp313-manylinux_x86_64-x86-64" in build  # only 0.9 is there
    assert skipped["demo-pkg-1.1-cp314t-manylinux_x86_64-x86-64"] == {
        "id": "demo-pkg-1.1-cp314t-manylinux_x86_64-x86-64", "state": "known-failure",
        "detail": "no free-threaded support (upstream issue 42)"}
    assert skipped["other-2.0-cp313-manylinux_aarch64-armv8-a"] == {
        "id": "other-2.0-cp313-manylinux_aarch64-armv8-a", "state": "upstream",
        "detail": "other-2.0-cp313-cp313-manylinux_2_28_aarch64.whl"}
    assert len(build) + len(skipped) == 3 * 2 * 3
    assert {c for j in data["jobs"] for c in j["cells"]} == build
    assert "(2 known-failure, 12 missing, 3 published, 1 upstream; 2 index reads)" in proc.stderr

    # upstream-wheels: build keeps the cell; once everything is published the plan is empty
    project = _project(tmp_path, MATRIX.format(registry=registry.url).replace(
        "versions: latest", "versions: latest\n    upstream-wheels: build"))
    data = json.loads(run_ciwheels("plan", "--project", str(project), "--missing", "--json", env=env,
                                   check=True).stdout)
    assert "other-2.0-cp313-manylinux_aarch64-armv8-a" in {c["id"] for c in data["cells"]}
    for cell in json.loads(run_ciwheels("plan", "--project", str(project), "--json", env=env,
                                        check=True).stdout)["cells"]:
        make_wheel(registry.packages, cell["package"], cell["version"],
                   tag=f"{cell['python'].removesuffix('t')}-{cell['python']}-{cell['policy']}_{cell['arch']}")
    proc = run_ciwheels("plan", "--project", str(project), "--missing", "--json", env=env, check=True)
    data = json.loads(proc.stdout)
    assert data["jobs"] == [] and data["cells"] == []


def _failed_artifact(root: Path, cell: str, job: str) -> Path:
    from ciwheels.dist.artifacts import BuildReport, write_report

    out = root / "wheels-job" / "wheelhouse" / job
    write_report(out / cell, BuildReport(cell=cell, job=job, status="failed", log=f"/builds/x/wheelhouse/{job}.log"))
    (out / f"{job}.log").write_text("error: numpy.h: No such file\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_status_records_failures_with_logs_and_the_next_plan_remembers_them(tmp_path, indexes):
    registry, upstream = indexes
    _fill(registry, upstream)
    _sdist(upstream.packages, "demo-pkg", "1.2")  # a newer upstream release, not in the matrix
    project = _project(tmp_path, MATRIX.format(registry=registry.url))
    env = {"CIWHEELS_INDEX_URL": f"{upstream.url}/simple"}
    cell = "demo-pkg-1.1-cp313-manylinux_x86_64-x86-64"
    artifacts = _failed_artifact(tmp_path / "artifacts", cell, "demo-pkg-1.1-manylinux_2_28_x86_64-x86-64")
    site = tmp_path / "public"
    proc = run_ciwheels("status", "--project", str(project), "--format", "json", "--artifacts", str(artifacts),
                        "--site", str(site), env=env, check=True)
    doc = json.loads(proc.stdout)
    assert doc["format"] == 1 and json.loads((site / "status.json").read_text()) == doc
    by_id = {c["id"]: c for c in doc["cells"]}
    failed = by_id[cell]
    assert failed["state"] == "failed" and failed["log"] == f"logs/{cell}.log" and len(failed["fingerprint"]) == 16
    assert (site / failed["log"]).read_text() == "error: numpy.h: No such file\n"
    assert by_id["demo-pkg-1.0-cp313-manylinux_aarch64-armv8-a"]["state"] == "published"
    assert by_id["other-2.0-cp313-manylinux_aarch64-armv8-a"]["state"] == "upstream"
    assert by_id["demo-pkg-1.1-cp314t-manylinux_aarch64-armv8-a"]["detail"].startswith("no free-threaded")
    assert doc["counts"] == {"published": 3, "missing": 11, "failed": 1, "known-failure": 2, "upstream": 1,
                             "unknown": 0}
    assert {p["name"]: (p["newest-upstream"], p["newest-built"]) for p in doc["packages"]} == {
        "demo-pkg": ("1.2", False), "other": ("2.0", True)}
    page = (site / "index.html").read_text()
    assert f'<a href="logs/{cell}.log"><span class="s failed"' in page and "1.2 (not built)" in page
    assert "<script" not in page and "http" not in page.replace(registry.url, "")  # self-contained
    text = run_ciwheels("status", "--project", str(project), "--previous", str(site / "status.json"), env=env,
                        check=True).stdout
    assert f"✗ {cell}" in text and "demo-pkg: newest upstream release 1.2 is not built" in text

    def planned(*extra):
        out = run_ciwheels("plan", "--project", str(project), "--missing", "--json", *extra, env=env, check=True)
        return {c["id"] for c in json.loads(out.stdout)["cells"]}

    assert cell in planned()  # no memory given: rebuilt
    assert cell not in planned("--previous", str(site / "status.json"))  # same fingerprint: not rebuilt
    assert cell in planned("--previous", str(site / "status.json"), "--retry-failed")
    assert cell in planned("--previous", str(site / "status.json"), "--retry-after", "0")
    assert cell in planned("--previous", str(tmp_path / "no-such-status.json"))  # the first scheduled run
    # another image or setting for the package: a new fingerprint, so the cell is tried again
    changed = MATRIX.format(registry=registry.url).replace('versions: ["1.0", "1.1"]',
                                                           'versions: ["1.0", "1.1"]\n    environment: {CFLAGS: -O1}')
    _project(tmp_path, changed)
    assert cell in planned("--previous", str(site / "status.json"))


NEEDS = ("python: [cp312, cp313]\narch: [x86_64, riscv64]\nregistries:\n  ours: {url: 'https://gl.example/api/v4/projects/7/packages/pypi'}\n"
         "sdist-config: false\npackages:\n  - {name: numpy, versions: ['2.3.4']}\n  - {name: scipy, versions: ['1.16.0'], needs: [numpy]}\n")


def test_plan_writes_github_outputs_and_a_gitlab_child_pipeline(tmp_path):
    from ruamel.yaml import YAML

    project = _project(tmp_path, NEEDS)
    out, child = tmp_path / "github-output", tmp_path / "child.yml"
    run_ciwheels("plan", "--project", str(project), "--github-output", str(out), "--gitlab-child", str(child),
                 check=True)
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert set(outputs) == {"wave0", "wave1", "versions", "any"} and outputs["any"] == "true"
    wave1 = json.loads(outputs["wave1"])
    assert {e["job"] for e in wave1} == {"scipy-1.16.0-manylinux_2_28_x86_64-x86-64",
                                         "scipy-1.16.0-manylinux_2_39_riscv64-rv64gc-cp312",
                                         "scipy-1.16.0-manylinux_2_39_riscv64-rv64gc-cp313"}
    x86 = next(e for e in wave1 if "x86_64" in e["job"])
    assert x86["cells"] == "scipy-1.16.0-cp312-manylinux_x86_64-x86-64 scipy-1.16.0-cp313-manylinux_x86_64-x86-64"
    gl = YAML(typ="safe").load(child.read_text())
    assert gl["stages"] == ["ciwheels-build-0", "ciwheels-build-1", "ciwheels-gather", "ciwheels-publish",
                            "ciwheels-status"]
    job = gl["build scipy-1.16.0-manylinux_2_39_riscv64-rv64gc-cp313"]
    assert job["stage"] == "ciwheels-build-1" and job["when"] == "always"
    assert job["variables"] == {"CIWHEELS_JOB": "scipy-1.16.0-manylinux_2_39_riscv64-rv64gc-cp313",
                                "CIWHEELS_CELLS": "scipy-1.16.0-cp313-manylinux_riscv64-rv64gc",
                                "CIWHEELS_QEMU": "riscv64"}
    assert gl["pages"]["artifacts"]["paths"] == ["public/"] and "ciwheels-publish" in gl


def test_a_package_that_needs_others_installs_build_dependencies_from_our_registry_first(tmp_path):
    project = _project(tmp_path, NEEDS)
    env = {"CIWHEELS_INDEX_URL": "https://pypi.example/simple", "PATH": "/usr/bin:/bin"}
    proc = run_ciwheels("build", "--project", str(project), "--dry-run", "--out", str(tmp_path / "w"),
                        "--job", "scipy-1.16.0-manylinux_2_28_x86_64-x86-64",
                        "--job", "numpy-2.3.4-manylinux_2_28_x86_64-x86-64", env=env, check=True)
    assert 'PIP_INDEX_URL="https://gl.example/api/v4/projects/7/packages/pypi/simple"' in proc.stdout
    assert 'PIP_EXTRA_INDEX_URL="https://pypi.example/simple"' in proc.stdout
    assert proc.stdout.count("PIP_INDEX_URL=") == 1  # numpy needs nothing: the upstream index as usual


@pytest.mark.slow
def test_a_scheduled_run_with_everything_published_builds_and_publishes_nothing(tmp_path, indexes):
    """The child pipeline of a no-op plan has the status page job only; GitLab's schema accepts it."""
    import subprocess
    import shutil

    from ruamel.yaml import YAML

    registry, upstream = indexes
    project = _project(tmp_path, "python: [cp312]\narch: [x86_64]\nregistries:\n"
                                 f"  main: {{url: '{registry.url}'}}\nsdist-config: false\npackages:\n  - {{name: demo-pkg, versions: latest}}\n")
    _sdist(upstream.packages, "demo-pkg", "1.0")
    make_wheel(registry.packages, "demo-pkg", "1.0", tag="cp312-cp312-manylinux_2_28_x86_64")
    env = {"CIWHEELS_INDEX_URL": f"{upstream.url}/simple"}
    out, child = tmp_path / "github-output", tmp_path / "child.yml"
    proc = run_ciwheels("plan", "--project", str(project), "--missing", "--github-output", str(out),
                        "--gitlab-child", str(child), env=env, check=True)
    assert "0 jobs, 0 cells to build (1 published; 1 index reads)" in proc.stderr
    assert out.read_text() == 'wave0=[]\nversions={"demo-pkg":["1.0"]}\nany=\n'
    gl = YAML(typ="safe").load(child.read_text())
    assert [k for k in gl if not k.startswith(".")] == ["stages", "variables", "pages"]
    tool = shutil.which("check-jsonschema")
    assert tool, "check-jsonschema is a test dependency"
    proc = subprocess.run([tool, "--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci", str(child)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_plan_missing_reads_a_pep691_json_registry(tmp_path):
    """devpi-server serves PEP 691 JSON (no upload times): the same plan as from HTML."""
    import hashlib

    from servers import DevpiServer

    from ciwheels.dist.publish import wheel_metadata
    from ciwheels.net.registry import RegistryClient, Target

    devpi = DevpiServer(tmp_path, "pw")
    try:
        wheel = make_wheel(tmp_path / "w", "demo-pkg", "1.0", tag="cp312-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64")
        client = RegistryClient(Target(devpi.url, "ci", "pw", "test", devpi.index), retries=2, backoff=0)
        assert client.upload(wheel, hashlib.sha256(wheel.read_bytes()).hexdigest(), wheel_metadata(wheel))[0] \
            == "uploaded"
        files = client.files("demo-pkg")
        assert [f.filename for f in files] == [wheel.name]
        from ciwheels.net.registry import SIMPLE_ACCEPT

        resp = client.request("GET", client.project_url("demo-pkg"), "test", headers={"Accept": SIMPLE_ACCEPT})[0]
        assert resp.headers["Content-Type"].startswith("application/vnd.pypi.simple.v1+json")
        project = _project(tmp_path, "python: [cp312, cp313, cp314t]\narch: [x86_64]\nregistries:\n"
                                     f"  main: {{url: '{devpi.url}', index: '{devpi.index}'}}\n"
                                     "sdist-config: false\npackages:\n  - {name: demo-pkg, versions: ['1.0']}\n")
        data = json.loads(run_ciwheels("plan", "--project", str(project), "--missing", "--json", "--no-upstream",
                                       check=True).stdout)
        assert [c["id"] for c in data["cells"]] == ["demo-pkg-1.0-cp314t-manylinux_x86_64-x86-64"]
        assert {s["state"] for s in data["skipped"]} == {"published"}
    finally:
        devpi.close()
