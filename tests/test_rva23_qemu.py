"""Issue #21, Done-when: an rva23u64 build of a package whose code uses Zfa, Zicond and Zcb
passes its tests under the pipelines' QEMU.

tests/rva23-demo is plain C that GCC 14, given rva23u64's expanded -march, compiles into fli.d
(Zfa), czero.eqz (Zicond) and c.zext.b/c.sext.b/c.mul (Zcb). `ciwheels build` builds it for the
cell cp313-manylinux_riscv64-rva23u64 in the riscv64 test image, as the pipelines do: the probe
picks the -march the image's GCC accepts and the QEMU_CPU the QEMU knows, and cibuildwheel runs
the package's test command in the container, under QEMU, with that QEMU_CPU.

Which QEMU: containers run riscv64 programs through the kernel's binfmt_misc entry. The
pipelines register QEMU 9.2.2 (tonistiigi/binfmt:qemu-v9.2.2), which no registry reachable here
offers; .ci/system-deps registers Debian 13's static qemu-riscv64 (10.0) in place of Debian 12's
7.2, which knows none of these extensions. The test reads which QEMU the kernel runs and needs
9 or newer. It then disassembles the built extension with the image's objdump (binutils 2.44) to
show the instructions are there, and runs the package's test against the wheel with QEMU_CPU as
it was before the fix and with each extension turned off alone: SIGILL every time."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, build_test_image, with_registries

pytestmark = pytest.mark.slow  # podman, QEMU, cibuildwheel: minutes

DEMO = Path(__file__).resolve().parent / "rva23-demo"
CELL = "cp313-manylinux_riscv64-rva23u64"
# the QEMU_CPU rva23u64 cells had before the fix (issue #21, defect 4)
OLD_RVA23 = "rv64,v=true,vlen=128,zba=true,zbb=true,zbs=true"
# what GCC 14 emits in each function (objdump -M no-aliases spelling), and its extension
EXPECTED = {"half_plus_two_c": ("fli.d", "zfa"), "keep_if_c": ("czero.eqz", "zicond"),
            "low_byte_c": ("c.zext.b", "zcb"), "sign_byte_c": ("c.sext.b", "zcb"), "times_c": ("c.mul", "zcb")}
SIGILL_EXIT = 128 + 4


def binfmt_qemu() -> tuple[str, str, tuple[int, ...]]:
    """(interpreter, flags, version) of the kernel's riscv64 entry: what every container gets."""
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-riscv64")
    assert entry.exists(), "QEMU binfmt for riscv64 (.ci/system-deps)"
    text = entry.read_text()
    interpreter = re.search(r"^interpreter (\S+)$", text, re.MULTILINE).group(1)
    flags = re.search(r"^flags: (\w*)$", text, re.MULTILINE).group(1)
    # (named *-binfmt-P, QEMU takes its first argument for the program: ask the file it links to)
    out = subprocess.run([str(Path(interpreter).resolve()), "--version"], capture_output=True, text=True,
                         timeout=30, check=False).stdout
    version = tuple(int(x) for x in re.search(r"version (\d+)\.(\d+)", out).groups())
    return interpreter, flags, version


@pytest.fixture(scope="module")
def riscv64() -> dict:
    return build_test_image("riscv64")


@pytest.fixture(scope="module")
def built(riscv64, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`ciwheels build --all` of the demo for its one rva23u64 cell: (the run, its out folder)."""
    project = tmp_path_factory.mktemp("rva23") / "proj"
    shutil.copytree(DEMO, project, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    (project / "matrix").mkdir()
    (project / "matrix" / "wheels.yaml").write_text(with_registries(
        f"python: [cp313]\narch: [riscv64]\nisa: {{riscv64: [rva23u64]}}\n"
        f"images:\n  riscv64-glibc: {{image: \"{riscv64['tag']}\", policy: manylinux_2_31}}\n"
        "test-command: python {project}/tests/check_rva23.py\n"
        # setuptools >= 75.7 takes CFLAGS from the environment in place of Python's own (-O3
        # -DNDEBUG ...), not after them (pypa/setuptools#4836): with only the level's -march the
        # extension is compiled without optimisation, and GCC makes no czero.eqz at -O0
        "environment: {CFLAGS: '-O2'}\n"))
    out = project.parent / "wheelhouse"
    proc = subprocess.run([sys.executable, "-m", "ciwheels", "build", "--project", str(project), "--all",
                           "--engine", "podman", "--out", str(out)], capture_output=True, text=True, timeout=3600, check=False,
                          env={**_env(), "PYTHONPATH": str(REPO)})
    return proc, out


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("CIWHEELS_")}


def _podman(image: str, script: str, mounts: dict[Path, str], env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    args = ["podman", "run", "--rm", "--platform", "linux/riscv64"]
    for host, inside in mounts.items():
        args += ["-v", f"{host}:{inside}:ro"]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    return subprocess.run([*args, image, "sh", "-c", script], capture_output=True, text=True, timeout=600, check=False)


def test_an_rva23u64_build_using_zfa_zicond_zcb_passes_its_tests_under_qemu_9_or_newer(built, riscv64, tmp_path):
    interpreter, flags, version = binfmt_qemu()
    assert "F" in flags and version >= (9, 0), (interpreter, flags, version)
    proc, out = built
    assert proc.returncode == 0, proc.stderr[-6000:]
    report = json.loads((out / CELL / "build-report.json").read_text())
    assert report["status"] == "ok", report
    log = "".join(p.read_text(errors="replace") for p in out.glob("*.log"))
    # the package's own test ran in the container under QEMU and passed
    assert "rva23_demo: ok" in log, log[-4000:]
    # this QEMU knows every property of the level: the build dropped none
    assert "this machine's QEMU does not know" not in proc.stderr, proc.stderr[-3000:]
    from ciwheels.catalog import load_catalog

    qemu_cpu = load_catalog().levels["rva23u64"].qemu_cpu
    wheels = list((out / CELL).glob("*.whl"))
    assert len(wheels) == 1, wheels
    unpacked = tmp_path / "wheel"
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(unpacked)
    so = next(unpacked.glob("rva23_demo/_rva23*.so"))

    # the instructions are in the extension, each in its function (the image's binutils 2.44
    # knows them; the host's 2.40 does not)
    dis = _podman(riscv64["tag"], "objdump -d -M no-aliases /w/" + so.relative_to(unpacked).as_posix(),
                  {unpacked: "/w"})
    assert dis.returncode == 0, dis.stderr
    functions = dict(re.findall(r"^[0-9a-f]+ <(\w+)>:\n((?:.+\n)+)", dis.stdout, re.MULTILINE))
    for function, (mnemonic, _) in EXPECTED.items():
        assert re.search(rf"\t{re.escape(mnemonic)}\s", functions[function]), (function, functions[function])

    # the same wheel and test, run by hand in the image: passes with the level's QEMU_CPU, dies
    # with SIGILL with the QEMU_CPU of before the fix and with each extension turned off alone
    check = "PYTHONPATH=/w /opt/python/cp313-cp313/bin/python /t/check_rva23.py; echo exit=$?"
    mounts = {unpacked: "/w", DEMO / "tests": "/t"}

    def test_with(cpu: str) -> int:
        proc = _podman(riscv64["tag"], check, mounts, {"QEMU_CPU": cpu})
        return int(re.search(r"exit=(\d+)", proc.stdout).group(1))

    assert test_with(qemu_cpu) == 0
    assert test_with(OLD_RVA23) == SIGILL_EXIT
    for extension in sorted({ext for _, ext in EXPECTED.values()}):
        assert test_with(f"{qemu_cpu},{extension}=false") == SIGILL_EXIT, extension
