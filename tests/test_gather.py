"""`ciwheels gather` on real wheels (the example built by pip) in the layouts CI artifacts have."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE, run_ciwheels


@pytest.fixture(scope="module")
def real_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns(".git*", "wheelhouse", "build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=300)
    return next(out.glob("cext_demo-*.whl"))


def artifact(root: Path, job: str, cell: str, wheel: Path, name: str | None = None, report_sha: str | None = None):
    """What `ciwheels build` leaves in a job artifact: wheelhouse/<job>/<cell>/{wheel, build-report.json}."""
    d = root / "wheelhouse" / job / cell
    d.mkdir(parents=True)
    target = d / (name or wheel.name)
    shutil.copy(wheel, target)
    digest = report_sha or hashlib.sha256(target.read_bytes()).hexdigest()
    (d / "build-report.json").write_text(json.dumps({
        "cell": cell, "job": job, "status": "ok", "isa": cell.rsplit("-", 1)[-1],
        "wheels": [{"file": target.name, "sha256": digest, "size": target.stat().st_size}]}))
    return target


@pytest.mark.slow  # the module's real_wheel fixture builds the example with pip
def test_gathers_nested_artifacts_with_manifest(tmp_path, real_wheel):
    a = artifact(tmp_path / "a", "job1", "cp311-manylinux_x86_64-x86-64", real_wheel)
    b = artifact(tmp_path / "b" / "deeper", "job2", "cp312-manylinux_x86_64-x86-64-v3", real_wheel,
                 name=real_wheel.name.replace(real_wheel.name.split("-")[2], "cp312"))
    out = tmp_path / "dist"
    proc = run_ciwheels("gather", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(w["file"] for w in manifest["wheels"]) == sorted([a.name, b.name])
    by_file = {w["file"]: w for w in manifest["wheels"]}
    assert by_file[b.name]["cell"] == "cp312-manylinux_x86_64-x86-64-v3"
    assert by_file[a.name]["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    assert (out / a.name).read_bytes() == a.read_bytes()
    assert not list(out.glob(".gather-*"))
    assert json.loads(proc.stdout)[0]["file"] in by_file


@pytest.mark.slow  # the module's real_wheel fixture builds the example with pip
def test_tampered_wheel_is_refused(tmp_path, real_wheel):
    artifact(tmp_path, "job", "cp311-manylinux_x86_64-x86-64", real_wheel, report_sha="0" * 64)
    proc = run_ciwheels("gather", str(tmp_path / "wheelhouse"), "--out", str(tmp_path / "dist"))
    assert proc.returncode == 2 and "differs from" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "dist" / "manifest.json").exists()


@pytest.mark.slow  # the module's real_wheel fixture builds the example with pip
def test_same_name_two_contents_is_refused_identical_is_merged(tmp_path, real_wheel):
    artifact(tmp_path / "x", "j1", "c1", real_wheel)
    artifact(tmp_path / "y", "j2", "c2", real_wheel)
    ok = run_ciwheels("gather", str(tmp_path / "x"), str(tmp_path / "y"), "--out", str(tmp_path / "d1"))
    assert ok.returncode == 0 and len(json.loads((tmp_path / "d1" / "manifest.json").read_text())["wheels"]) == 1
    other = tmp_path / "z" / real_wheel.name
    other.parent.mkdir()
    other.write_bytes(real_wheel.read_bytes() + b"\0")
    bad = run_ciwheels("gather", str(tmp_path / "x"), str(tmp_path / "z"), "--out", str(tmp_path / "d2"))
    assert bad.returncode == 2 and "appears twice with different contents" in bad.stderr


@pytest.mark.slow  # the module's real_wheel fixture builds the example with pip
def test_bad_names_are_refused(tmp_path, real_wheel):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notawheel.whl").write_bytes(b"x")
    proc = run_ciwheels("gather", str(tmp_path / "a"), "--out", str(tmp_path / "d"))
    assert proc.returncode == 2 and "is not a valid wheel file name" in proc.stderr
    d = tmp_path / "b" / "cell"
    d.mkdir(parents=True)
    (d / "build-report.json").write_text(json.dumps({"cell": "c", "wheels": [{"file": "../evil-1-py3-none-any.whl",
                                                                               "sha256": "0"}]}))
    proc = run_ciwheels("gather", str(tmp_path / "b"), "--out", str(tmp_path / "d"))
    assert proc.returncode == 2 and "must be a plain file name" in proc.stderr


@pytest.mark.slow  # the module's real_wheel fixture builds the example with pip
def test_existing_output_is_never_overwritten(tmp_path, real_wheel):
    artifact(tmp_path / "x", "j", "c", real_wheel)
    out = tmp_path / "dist"
    out.mkdir()
    (out / real_wheel.name).write_bytes(b"something else")
    proc = run_ciwheels("gather", str(tmp_path / "x"), "--out", str(out))
    assert proc.returncode == 2 and "refusing to overwrite" in proc.stderr
    assert (out / real_wheel.name).read_bytes() == b"something else"


def test_dry_run_reports_and_empty_sources(tmp_path):
    run_ciwheels("build", "--project", str(EXAMPLE), "--job", "manylinux_2_28_x86_64-x86-64", "--dry-run",
                 "--out", str(tmp_path / "wh"), check=True)
    proc = run_ciwheels("gather", str(tmp_path / "wh"), "--out", str(tmp_path / "dist"))
    assert proc.returncode == 0 and "5 from dry runs" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run_ciwheels("gather", str(tmp_path / "empty"), "--out", str(tmp_path / "d2"))
    assert proc.returncode == 2 and "no wheels found" in proc.stderr
