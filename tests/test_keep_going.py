"""One failed cell must not lose the others: gather takes what exists and records what is
missing, publish publishes what was built and verified and then fails naming the missing cells.
(The build side, for real with cibuildwheel and podman, is in test_build_e2e.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ciwheels.project.open import expand_files
from conftest import run_ciwheels
from wheelfactory import make_wheel

TAG = "cp313-cp313-manylinux_2_28_x86_64"


def report(folder: Path, cell: str, status: str, wheel: Path | None = None) -> None:
    d = folder / cell
    d.mkdir(parents=True, exist_ok=True)
    wheels = []
    if wheel is not None:
        target = d / wheel.name
        target.write_bytes(wheel.read_bytes())
        wheels.append({"file": wheel.name, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
                       "size": wheel.stat().st_size})
    (d / "build-report.json").write_text(json.dumps({"format": 1, "cell": cell, "job": "j", "status": status,
                                                     "isa": "x86-64", "wheels": wheels}))


@pytest.fixture
def artifacts(tmp_path) -> Path:
    """Three cells' artifacts: one built, one failed, one whose wheel failed verification."""
    wh = tmp_path / "wheelhouse"
    report(wh, "cp313-manylinux_x86_64-x86-64", "ok", make_wheel(tmp_path / "w1", "demo", "1.0", TAG))
    report(wh, "cp312-manylinux_x86_64-x86-64", "failed")
    report(wh, "cp314-manylinux_x86_64-x86-64", "isa-unproven",
           make_wheel(tmp_path / "w2", "demo", "1.0", TAG.replace("313", "314")))
    return wh


def test_gather_takes_what_exists_and_records_what_is_missing(tmp_path, artifacts):
    (tmp_path / "matrix").mkdir()
    (tmp_path / "matrix" / "wheels.yaml").write_text("python: [cp311, cp312, cp313, cp314]\n")
    proc = run_ciwheels("gather", str(artifacts), "--out", str(tmp_path / "dist"), "--project", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    assert [w["file"] for w in manifest["wheels"]] == [f"demo-1.0-{TAG}.whl"]  # the unverified one stays out
    status = {r["cell"]: r["status"] for r in manifest["reports"]}
    assert status == {"cp311-manylinux_x86_64-x86-64": "missing", "cp312-manylinux_x86_64-x86-64": "failed",
                      "cp313-manylinux_x86_64-x86-64": "ok", "cp314-manylinux_x86_64-x86-64": "isa-unproven"}
    assert "3 cell(s) have no wheel to publish" in proc.stderr


@pytest.mark.slow  # starts pypiserver
def test_publish_publishes_what_was_built_then_names_the_missing(tmp_path, artifacts):
    from servers import PypiServer

    assert run_ciwheels("gather", str(artifacts), "--out", str(tmp_path / "dist")).returncode == 0
    server = PypiServer(tmp_path / "registry", auth=("ci", "pw-3e1"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "CIWHEELS_"))}
        env.update({"CIWHEELS_USERNAME": "ci", "CIWHEELS_PASSWORD": "pw-3e1"})
        # a tag (the rendered pipelines set CIWHEELS_ALL_OR_NOTHING=true): a release never goes
        # out without a cell; nothing is uploaded and the missing cells are named
        proc = subprocess.run([sys.executable, "-m", "ciwheels", "publish", str(tmp_path / "dist"),
                               "--repository-url", server.url], capture_output=True, text=True,
                              env={**env, "CIWHEELS_ALL_OR_NOTHING": "true"}, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert list(server.packages.glob("*.whl")) == []
        assert "publishing none of the 1 wheel(s), as 2 cell(s) have none" in proc.stderr
        assert "cp312-manylinux_x86_64-x86-64" in proc.stderr
        # any other run (GitHub renders "false" outside tags) publishes what built
        proc = subprocess.run([sys.executable, "-m", "ciwheels", "publish", str(tmp_path / "dist"),
                               "--repository-url", server.url], capture_output=True, text=True,
                              env={**env, "CIWHEELS_ALL_OR_NOTHING": "false"}, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert [p.name for p in server.packages.glob("*.whl")] == [f"demo-1.0-{TAG}.whl"]
        assert "2 cell(s) have no wheel" in proc.stderr
        assert "cp312-manylinux_x86_64-x86-64" in proc.stderr and "cp314-manylinux_x86_64-x86-64" in proc.stderr
    finally:
        server.close()


def test_an_abi3_wheel_serves_every_cell_it_covers(write_matrix):
    from ciwheels.matrix.model import wheel_matches

    cells = {c.python: c for c in expand_files([write_matrix("python: [cp311, cp313, cp314, cp314t]\n")]).cells}
    abi3 = "psutil-7.1.0-cp36-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert [p for p, c in cells.items() if wheel_matches(abi3, c)] == ["cp311", "cp313", "cp314"]
    assert not wheel_matches("psutil-7.1.0-cp36-abi3-musllinux_1_2_x86_64.whl", cells["cp313"])
    assert not wheel_matches("psutil-7.1.0-cp36-abi3-manylinux_2_17_aarch64.whl", cells["cp313"])
    assert not wheel_matches("x-1.0-cp315-abi3-manylinux_2_17_x86_64.whl", cells["cp314"])
