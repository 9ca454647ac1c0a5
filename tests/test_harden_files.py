"""Hardening, files: artifacts are untrusted. gather never follows a link out of its sources,
never reads special files, refuses what is not a wheel, never re-reads its own output, and keeps
each wheel's registry; publish never uploads a file outside its folder; malformed reports and
manifests are the usual error. Real files, links and FIFOs; the real CLI in child processes."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_ciwheels
from wheelfactory import make_wheel

from ciwheels.dist.artifacts import read_manifest, read_report
from ciwheels.core.errors import CiwheelsError

V3 = "cp312-manylinux_x86_64-x86-64-v3"


def artifact(folder: Path, wheel: Path, *, registry: str | None = None, cell: str = V3) -> Path:
    """What `ciwheels build` leaves: the wheel beside a build-report.json naming it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / wheel.name
    if wheel != target:
        target.write_bytes(wheel.read_bytes())
    (folder / "build-report.json").write_text(json.dumps({
        "cell": cell, "status": "ok", "isa": "x86-64-v3" if cell.endswith("-v3") else "x86-64",
        "registry": registry, "wheels": [{"file": target.name, "sha256": hashlib.sha256(target.read_bytes())
                                          .hexdigest()}]}))
    return target


def gather(*args: str):
    proc = run_ciwheels("gather", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.slow
def test_a_wheel_linking_to_proc_environ_is_refused(tmp_path):
    src = tmp_path / "artifacts" / "cell"
    src.mkdir(parents=True)
    os.symlink("/proc/self/environ", src / "evil-1.0-py3-none-any.whl")
    out = tmp_path / "dist"
    proc = gather(str(tmp_path / "artifacts"), "--out", str(out))
    assert proc.returncode == 2 and "out of the gather sources" in proc.stderr
    assert not out.exists() or not any(out.rglob("*.whl"))
    # also given directly as a source, and a link to a real wheel elsewhere
    proc = gather(str(src / "evil-1.0-py3-none-any.whl"), "--out", str(out))
    assert proc.returncode == 2 and not (out / "evil-1.0-py3-none-any.whl").exists()
    elsewhere = make_wheel(tmp_path / "elsewhere", "elsewhere", "1.0")
    (src / "evil-1.0-py3-none-any.whl").unlink()
    os.symlink(elsewhere, src / elsewhere.name)
    assert gather(str(tmp_path / "artifacts"), "--out", str(out)).returncode == 2


def test_a_link_inside_the_sources_is_not_gathered_twice(tmp_path):
    wheel = artifact(tmp_path / "a" / "cell", make_wheel(tmp_path / "w", "ours", "1.0"))
    os.symlink(wheel, tmp_path / "a" / wheel.name)  # same sources: its target is gathered on its own
    proc = gather(str(tmp_path / "a"), "--out", str(tmp_path / "dist"))
    assert proc.returncode == 0, proc.stderr
    assert [w["file"] for w in json.loads((tmp_path / "dist" / "manifest.json").read_text())["wheels"]] == [wheel.name]


def test_special_files_are_never_read(tmp_path):
    src = tmp_path / "a"
    src.mkdir()
    os.mkfifo(src / "fifo-1.0-py3-none-any.whl")  # reading it would block forever
    proc = gather(str(src), "--out", str(tmp_path / "dist"))
    assert proc.returncode == 2 and "not a regular file" in proc.stderr
    os.unlink(src / "fifo-1.0-py3-none-any.whl")
    os.mkfifo(src / "build-report.json")
    proc = gather(str(src), "--out", str(tmp_path / "dist"))
    assert proc.returncode == 2 and "not a regular file" in proc.stderr


@pytest.mark.parametrize("content, message", [
    (b"this is not a zip", "not a readable zip archive"),
    (b"", "not a readable zip archive"),
    (None, "holds no .dist-info/WHEEL"),
])
def test_a_file_that_is_not_a_wheel_is_refused_at_gather(tmp_path, content, message):
    src = tmp_path / "a"
    src.mkdir()
    fake = src / "fake-1.0-py3-none-any.whl"
    if content is None:
        with zipfile.ZipFile(fake, "w") as z:
            z.writestr("fake.py", "x = 1\n")
    else:
        fake.write_bytes(content)
    proc = gather(str(src), "--out", str(tmp_path / "dist"))
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.slow
def test_out_inside_a_source_is_not_gathered_again_and_registries_are_kept(tmp_path):
    wheel = make_wheel(tmp_path / "w", "ours", "1.0", tag="cp312-cp312-manylinux_2_28_x86_64")
    artifact(tmp_path / "wh" / "v3cell", wheel, registry="v3")
    artifact(tmp_path / "wh" / "basecell", wheel, registry=None, cell="cp312-manylinux_x86_64-x86-64")
    out = tmp_path / "wh" / "dist"
    for _ in range(2):  # the second run walks a source holding the first run's output
        proc = gather(str(tmp_path / "wh"), "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        entries = read_manifest(out / "manifest.json").wheels
        assert sorted((e.path, e.registry) for e in entries) == [(wheel.name, None), (f"v3/{wheel.name}", "v3")]
    # a gather output as the source of another gather keeps what its manifest records
    proc = gather(str(out), "--out", str(tmp_path / "again"))
    assert proc.returncode == 0, proc.stderr
    entries = {e.path: e for e in read_manifest(tmp_path / "again" / "manifest.json").wheels}
    assert entries[f"v3/{wheel.name}"].registry == "v3" and entries[f"v3/{wheel.name}"].isa == "x86-64-v3"
    # and the output folder itself is not a source
    assert gather(str(out), "--out", str(out)).returncode == 2


def test_an_unwritable_out_is_the_usual_error(tmp_path):
    artifact(tmp_path / "a" / "cell", make_wheel(tmp_path / "w", "ours", "1.0"))
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file" / "dist", Path("/proc/ciwheels-cannot-write-here")):
        proc = gather(str(tmp_path / "a"), "--out", str(out))
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1


@pytest.mark.slow
def test_publish_never_uploads_from_outside_its_folder(tmp_path):
    secret = make_wheel(tmp_path / "secret", "secret", "1.0")
    dist = tmp_path / "dist"
    dist.mkdir()
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    (dist / "manifest.json").write_text(json.dumps({"wheels": [
        {"file": secret.name, "sha256": digest, "path": f"../secret/{secret.name}"}]}))
    proc = run_ciwheels("publish", str(dist), "--repository-url", "http://127.0.0.1:9/x", "--dry-run")
    assert proc.returncode == 2 and "refusing the path" in proc.stderr
    (dist / "manifest.json").unlink()
    os.symlink(secret, dist / secret.name)  # a plain folder with a link out of it
    proc = run_ciwheels("publish", str(dist), "--repository-url", "http://127.0.0.1:9/x", "--dry-run")
    assert proc.returncode == 2 and "not a regular file inside" in proc.stderr


def test_builder_versions_are_pep440_before_they_name_a_folder(write_matrix):
    path = write_matrix('python: [cp312]\npackages:\n  - name: numpy\n    versions: ["1.0/../../.."]\n')
    proc = run_ciwheels("matrix", "--matrix", str(path))
    assert proc.returncode == 2 and "not a valid version (PEP 440)" in proc.stderr


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
                     max_leaves=20)
_keys = st.sampled_from(["format", "cell", "status", "isa", "registry", "wheels", "file", "sha256", "size",
                         "path", "reports", "duration_seconds"])
_shaped = st.dictionaries(_keys, _json | st.lists(st.dictionaries(_keys, _json, max_size=5), max_size=3),
                          max_size=8)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_json | _shaped, raw=st.binary(max_size=40))
def test_malformed_reports_and_manifests_are_errors_never_crashes(tmp_path, data, raw):
    """Generative: any JSON value (and any bytes) as a build report or manifest is read or is a
    CiwheelsError naming the file; never another exception."""
    path = tmp_path / "x.json"
    for content in (json.dumps(data).encode(), raw):
        path.write_bytes(content)
        for reader in (read_report, read_manifest):
            try:
                reader(path)
            except CiwheelsError as e:
                assert str(path) in str(e)


def test_deeply_nested_and_huge_reports_are_errors(tmp_path):
    path = tmp_path / "build-report.json"
    path.write_bytes(b"[" * 100_000)
    with pytest.raises(CiwheelsError, match="nested too deeply|invalid JSON"):
        read_report(path)
    with open(path, "wb") as f:
        f.truncate(17 << 20)  # sparse: 17 MiB of zeros, above the limit
    with pytest.raises(CiwheelsError, match="larger than 16 MiB"):
        read_report(path)


def test_a_manifest_naming_an_unknown_registry_is_an_error(tmp_path):
    wheel = make_wheel(tmp_path / "dist" / "ghost", "ours", "1.0")
    (tmp_path / "dist" / "manifest.json").write_text(json.dumps({"wheels": [
        {"file": wheel.name, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(), "registry": "ghost",
         "path": f"ghost/{wheel.name}"}]}))
    project = tmp_path / "proj"
    (project / "matrix").mkdir(parents=True)
    (project / "matrix" / "wheels.yaml").write_text("python: [cp312]\n")
    proc = run_ciwheels("publish", str(tmp_path / "dist"), "--project", str(project), "--dry-run")
    assert proc.returncode == 2 and "'ghost'" in proc.stderr and "does not define" in proc.stderr


@pytest.mark.slow
def test_two_levels_with_one_file_name_to_one_url_are_two_results(tmp_path):
    """Results are per wheel path: the v3 and baseline wheels of one file name sent to one
    --repository-url are reported separately, the second refused, neither hidden."""
    from servers import PypiServer

    server = PypiServer(tmp_path / "reg")
    try:
        dist = tmp_path / "dist"
        base = make_wheel(dist / "generic", "ours", "1.0")
        v3 = make_wheel(dist / "v3", "ours", "1.0", payload="# built for v3\n")
        entries = [{"file": w.name, "sha256": hashlib.sha256(w.read_bytes()).hexdigest(), "registry": reg,
                    "path": f"{reg}/{w.name}"} for w, reg in ((base, "generic"), (v3, "v3"))]
        (dist / "manifest.json").write_text(json.dumps({"wheels": entries}))
        import subprocess
        import sys

        env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "CIWHEELS_"))}
        env.update({"CIWHEELS_USERNAME": "ci", "CIWHEELS_PASSWORD": "any-password"})  # no auth on this server
        proc = subprocess.run([sys.executable, "-m", "ciwheels", "publish", str(dist), "--repository-url",
                               server.url, "--json", "--retries", "1"], capture_output=True, text=True, env=env,
                              timeout=120)
        results = {Path(r["path"]).parent.name: r for r in json.loads(proc.stdout)}
        assert proc.returncode == 1 and len(results) == 2
        assert results["generic"]["status"] == "uploaded" and results["v3"]["status"] == "failed"
        assert "same file name with other contents" in results["v3"]["detail"]
    finally:
        server.close()
