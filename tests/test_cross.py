"""Cross mode (issue #23): real sdists from PyPI built by `ciwheels build` for
cp313-manylinux_riscv64 in the test image, once in cross mode (the default for an emulated
arch: the wheel built by the image's native CPython 3.13 with its cross compilers, the test
environment installed by the image's native uv, the tests run under QEMU) and once emulated
(`cross: false`), compared: the same wheel name (tags), the same members, the same `ciwheels
verify` verdict, and their tests passing in the container. Then a project whose build imports the
extension it built (tests/cross-demo), which the native interpreter cannot do: the cross build
fails, the cell falls back to the emulated build by itself and the build report says so.

The packages: msgpack 1.1.2 (setuptools, C++), frozenlist 1.8.0 (Cython through its in-tree
backend), cysignals 1.12.4 (meson-python, Cython, C and C++, meson's compiler checks). Seven
riscv64 builds in all (three cross, three emulated, one fallback)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import build_test_image, run_ciwheels

pytestmark = pytest.mark.slow  # podman, QEMU, cibuildwheel, PyPI: minutes

TAG = "localhost/ciwheels-manylinux-riscv64:cross-test"
DEMO = Path(__file__).resolve().parent / "cross-demo"
PACKAGES = {
    "msgpack": ("1.1.2", ["pytest"], "pytest -q {project}/test"),
    "frozenlist": ("1.8.0", ["pytest"], "pytest -q -c /dev/null -p no:cacheprovider {project}/tests"),
    "cysignals": ("1.12.4", [], ('python -c "import cysignals.signals, cysignals.alarm, cysignals.pselect, '
                                 "cysignals.pysignals, cysignals.tests; print('cysignals: ok')\"")),
}


@pytest.fixture(scope="module")
def image() -> str:
    built = build_test_image("riscv64", TAG)
    assert "cp313" in built["cross"], built
    return built["tags"][0]


def matrix(image: str, cross: bool) -> str:
    lines = ["python: [cp313]", "arch: [riscv64]", "images:",
             f'  riscv64-glibc: {{image: "{image}", policy: manylinux_2_31}}', "packages:"]
    for name, (version, requires, test) in PACKAGES.items():
        lines.append(f"  - {{name: {name}, versions: ['{version}'], test-command: {json.dumps(test)}"
                     + (f", test-requires: {json.dumps(requires)}" if requires else "") + "}")
    if not cross:
        lines.append("cross: false")
    return "\n".join(lines) + "\n"


def build(root: Path, text: str, project: Path | None = None) -> tuple[Path, subprocess.CompletedProcess]:
    project = project or root / "builder"
    (project / "matrix").mkdir(parents=True, exist_ok=True)
    (project / "matrix" / "wheels.yaml").write_text(text)
    out = root / "wh"
    proc = subprocess.run([sys.executable, "-m", "ciwheels", "build", "--project", str(project), "--all",
                           "--engine", "podman", "--out", str(out)], capture_output=True, text=True, timeout=5400, check=False)
    return out, proc


def report(out: Path, cell: str) -> dict:
    return json.loads((out / cell / "build-report.json").read_text())


def verdict(wheel: Path) -> tuple[int, list]:
    proc = run_ciwheels("verify", str(wheel), "--json")
    return proc.returncode, sorted((f["member"], f["needs"], f["status"]) for f in json.loads(proc.stdout))


@pytest.fixture(scope="module")
def both(image, tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    return {mode: build(tmp_path_factory.mktemp(mode), matrix(image, mode == "cross"))
            for mode in ("cross", "emulated")}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_cross_build_is_the_emulated_build(both, package):
    version = PACKAGES[package][0]
    cell = f"{package}-{version}-cp313-manylinux_riscv64-rv64gc"
    wheels = {}
    for mode, (out, proc) in both.items():
        r = report(out, cell)
        assert r["status"] == "ok" and len(r["wheels"]) == 1, (mode, r, proc.stderr[-3000:])
        log = Path(r["log"]).read_text()
        if mode == "cross":
            assert r["cross"] == "native", r
            assert "ciwheels cross: cp313-manylinux_riscv64: native" in log
            assert "ciwheels cross: backend ran natively" in log
        else:
            assert r["cross"] == "off" and "ciwheels cross:" not in log, r
        assert "Testing wheel..." in log  # its tests ran in the container (emulated) and passed
        wheels[mode] = out / cell / r["wheels"][0]["file"]
    cross, emulated = wheels["cross"], wheels["emulated"]
    assert cross.name == emulated.name and cross.name.endswith("-cp313-cp313-manylinux_2_31_riscv64.whl")
    members = {mode: sorted(zipfile.ZipFile(w).namelist()) for mode, w in wheels.items()}
    assert members["cross"] == members["emulated"]
    assert verdict(cross) == verdict(emulated)
    assert verdict(cross)[0] == 0


def test_a_build_that_runs_target_code_falls_back_by_itself(image, tmp_path):
    project = tmp_path / "proj"
    shutil.copytree(DEMO, project)
    text = (f"python: [cp313]\narch: [riscv64]\nimages:\n"
            f'  riscv64-glibc: {{image: "{image}", policy: manylinux_2_31}}\n'
            "test-command: >-\n  python -c \"import crossdemo, crossdemo._table as t;\n"
            "  assert t.ANSWER == crossdemo.answer() == 42; print('crossdemo: ok')\"\n")
    out, proc = build(tmp_path, text, project)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = report(out, "cp313-manylinux_riscv64-rv64gc")
    assert r["status"] == "ok" and r["wheels"][0]["file"].endswith("-cp313-cp313-manylinux_2_31_riscv64.whl"), r
    assert r["cross"].startswith("fallback (the build backend failed in cross mode"), r
    log = Path(r["log"]).read_text()
    assert "No module named 'crossdemo._ext'" in log  # the native interpreter could not load it
    assert "crossdemo: ok" in log
    assert "cross mode fallback" in proc.stderr and "cp313-manylinux_riscv64-rv64gc" in proc.stderr
