"""Build reports and gather manifests: the files stages hand to each other (ciwheels.artifacts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import EXAMPLE, run_ciwheels
from wheelfactory import make_wheel

from ciwheels.dist.artifacts import (FORMAT, BuildReport, Manifest, ManifestEntry, ReportStatus, ReportWheel,
                                read_manifest, read_report, write_manifest, write_report)
from ciwheels.core.errors import CiwheelsError

WHEEL = "pkg-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"


def test_report_round_trip_and_format_field(tmp_path):
    report = BuildReport("cp312-manylinux_x86_64-x86-64-v3", "job1", "ok", "cp312", "x86-64-v3", "fast", "x86_64",
                         "manylinux_2_28", (ReportWheel(WHEEL, "ab" * 32, 123, "ok"),), 12.5, "/tmp/log", 0)
    path = write_report(tmp_path / "cell", report)
    assert path == tmp_path / "cell" / "build-report.json"
    assert read_report(path) == report
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT == 1
    assert set(data) == {"format", "cell", "job", "status", "python", "isa", "registry", "arch", "policy", "wheels",
                         "duration_seconds", "log", "cibuildwheel_exit", "cross"}
    assert set(data["wheels"][0]) == {"file", "sha256", "size", "isa_check"}


def test_manifest_round_trip_and_format_field(tmp_path):
    manifest = Manifest((ManifestEntry(WHEEL, "cd" * 32, 7, "cell", "x86-64", "fast"),
                         ManifestEntry(WHEEL, "ef" * 32, 8)),
                        (ReportStatus("cell", "ok"), ReportStatus(None, "dry-run")))
    assert manifest.wheels[0].path == f"fast/{WHEEL}" and manifest.wheels[1].path == WHEEL
    path = write_manifest(tmp_path / "dist", manifest)
    assert read_manifest(path) == manifest
    data = json.loads(path.read_text())
    assert data["format"] == 1
    assert set(data["wheels"][0]) == {"file", "sha256", "size", "cell", "isa", "registry", "path"}
    assert data["reports"][0] == {"cell": "cell", "status": "ok"}
    assert not list(path.parent.glob(".ciwheels-*"))  # the temporary file was renamed


def test_files_without_format_are_format_1(tmp_path):
    (tmp_path / "build-report.json").write_text(json.dumps({"isa": "x86-64", "wheels": [{"file": WHEEL}]}))
    assert read_report(tmp_path / "build-report.json") == BuildReport(isa="x86-64", wheels=(ReportWheel(WHEEL),))
    (tmp_path / "manifest.json").write_text(json.dumps({"wheels": [{"file": WHEEL, "sha256": "00"}]}))
    assert read_manifest(tmp_path / "manifest.json").wheels[0].path == WHEEL


@pytest.mark.parametrize("text, says", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "a JSON object was expected"),
    ('{"cell": "c"}', "'wheels' is missing"),
    ('{"wheels": {"file": "x"}}', "'wheels' must be list"),
    ('{"wheels": [{"sha256": "00"}]}', "wheels[0]: 'file' is missing"),
    ('{"isa": 3, "wheels": []}', "'isa' must be str, not int 3"),
    ('{"format": 2, "wheels": []}', "format 2, which this ciwheels cannot read"),
])
def test_malformed_report_is_an_error_naming_the_file(tmp_path, text, says):
    path = tmp_path / "build-report.json"
    path.write_text(text)
    with pytest.raises(CiwheelsError) as e:
        read_report(path)
    assert str(e.value).startswith(f"{path}: ") and says in str(e.value)


@pytest.mark.parametrize("entry, says", [
    ({"file": WHEEL}, "'sha256' is missing"),
    ("x", "wheels[0] must be an object"),
    ({"file": WHEEL, "sha256": "00", "path": f"../{WHEEL}"}, "must be a relative path"),
    ({"file": WHEEL, "sha256": "00", "path": "other.whl"}, "must be a relative path"),
    ({"file": "../" + WHEEL, "sha256": "00"}, "must be a plain file name"),
])
def test_malformed_manifest_is_an_error_naming_the_file(tmp_path, entry, says):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"wheels": [entry]}))
    with pytest.raises(CiwheelsError) as e:
        read_manifest(path)
    assert str(e.value).startswith(f"{path}: ") and says in str(e.value)


def _one_paragraph(proc, path: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {path}: ") and proc.stderr.count("\n") == 1


def test_cli_malformed_report_and_manifest_exit_2(tmp_path):
    cell = tmp_path / "wh" / "cell"
    cell.mkdir(parents=True)
    report = cell / "build-report.json"
    report.write_text('{"cell": "c", "wheels": [')
    _one_paragraph(run_ciwheels("gather", str(tmp_path / "wh"), "--out", str(tmp_path / "dist")), report)
    dist = tmp_path / "pub"
    make_wheel(dist, "pkg", "1.0")
    manifest = dist / "manifest.json"
    manifest.write_text('{"wheels": [{"file": 1}]}')
    _one_paragraph(run_ciwheels("publish", str(dist), "--repository-url", "http://127.0.0.1:9/"), manifest)
    wheel = next(dist.glob("*.whl"))
    _one_paragraph(run_ciwheels("verify", str(wheel)), manifest)


def test_build_and_gather_write_format_1(tmp_path):
    run_ciwheels("build", "--project", str(EXAMPLE), "--job", "manylinux_2_28_x86_64-x86-64", "--dry-run",
                 "--out", str(tmp_path / "wh"), check=True)
    reports = sorted((tmp_path / "wh").rglob("build-report.json"))
    assert reports and all(json.loads(p.read_text())["format"] == 1 for p in reports)
    assert read_report(reports[0]).status == "dry-run"
    run_ciwheels("gather", str(tmp_path / "wh"), "--out", str(tmp_path / "dist"), check=True)
    manifest = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["wheels"] == [] and len(manifest["reports"]) == len(reports)


def test_verify_finds_the_level_in_a_manifest_above_a_registry_folder(tmp_path):
    from ciwheels.dist.verify import recorded_level

    fast = make_wheel(tmp_path / "dist" / "fast", "pkg", "1.0", tag="cp312-cp312-manylinux_2_28_x86_64")
    plain = make_wheel(tmp_path / "dist", "pkg", "1.0", tag="cp312-cp312-manylinux_2_28_x86_64")
    write_manifest(tmp_path / "dist", Manifest((ManifestEntry(fast.name, "00", isa="x86-64-v3", registry="fast"),
                                                ManifestEntry(plain.name, "11", isa="x86-64"))))
    assert recorded_level(fast) == "x86-64-v3"
    assert recorded_level(plain) == "x86-64"
