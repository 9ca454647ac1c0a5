"""The riscv64 image compiles extensions against Debian bullseye's glibc 2.31 sysroot (issue #22):
real cibuildwheel runs in the real image, real auditwheel, real sdists from PyPI.

- tests/sysroot-demo: C that calls strtol, sscanf and memcpy, C++ with std::string, exceptions
  and std::stoi, built with the image's native compilers and with its emulated ones: the wheel
  is manylinux_2_31_riscv64 (auditwheel show agrees) and binds strtol@GLIBC_2.27; the same
  sources built without the sysroot (CIWHEELS_SYSROOT=0) bind __isoc23_strtol@GLIBC_2.38.
- real sdists (MarkupSafe, psutil, and cffi and hiredis, whose C calls strtoul/strtoull
  and strtol): tagged manylinux_2_31 or older, their tests pass in the image (msgpack: test_cross).

Each cibuildwheel run is one cp313 build under QEMU (about a minute with native compilers)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import build_test_image

pytestmark = pytest.mark.slow  # podman, QEMU, cibuildwheel: minutes

DEMO = Path(__file__).resolve().parent / "sysroot-demo"
POLICY = "manylinux_2_31_riscv64"
PYTHON = "cp313"  # one of the test image's
# what auditwheel's manylinux_2_31 riscv64 policy allows of GCC 10's runtime
NEWEST = {"GLIBC": (2, 31), "GLIBCXX": (3, 4, 28), "CXXABI": (1, 3, 12), "GCC": (7, 0, 0)}


@pytest.fixture(scope="module")
def riscv64() -> dict:
    return build_test_image("riscv64")


def cibuildwheel(source: Path, out: Path, image: str, *, env: dict[str, str] | None = None,
                 test: str | None = None, test_requires: str = "",
                 repair: str = "auditwheel repair -w {dest_dir} {wheel} && auditwheel show {dest_dir}/*.whl",
                 ) -> tuple[subprocess.CompletedProcess, list[Path]]:
    """One real cibuildwheel run of PYTHON-manylinux_riscv64 in `image`: (the run, its wheels)."""
    from ciwheels.build.run import process_environment, trust_environment
    from ciwheels.net.http import host_ca_bundle

    ca = host_ca_bundle()
    inside = {**trust_environment(ca), **(env or {})}
    options = {"CIBW_BUILD": f"{PYTHON}-manylinux_riscv64", "CIBW_ARCHS_LINUX": "riscv64",
               "CIBW_MANYLINUX_RISCV64_IMAGE": image, "CIBW_BUILD_VERBOSITY": "1",
               "CIBW_ENVIRONMENT_LINUX": " ".join(f"{k}={v}" for k, v in inside.items()),
               "CIBW_REPAIR_WHEEL_COMMAND_LINUX": repair,
               # cibuildwheel audits abi3 wheels (psutil's) with abi3audit in a virtualenv it
               # downloads from GitHub, which the test machines may not reach; auditwheel is the
               # audit that matters here
               "CIBW_AUDIT_COMMAND": ""}
    if test:
        options["CIBW_TEST_COMMAND"] = test
        options["CIBW_TEST_REQUIRES"] = test_requires
    # the package's own [tool.cibuildwheel] is for its CI (MarkupSafe 3.0.3 enables a group this
    # cibuildwheel no longer knows): an empty configuration file instead, the options above
    out.mkdir(parents=True, exist_ok=True)
    (out / "cibuildwheel.toml").write_text("")
    proc = subprocess.run([sys.executable, "-m", "cibuildwheel", "--platform", "linux", "--output-dir", str(out),
                           "--config-file", str(out / "cibuildwheel.toml"), str(source)], env=process_environment(options, "podman", ca), capture_output=True,
                          text=True, timeout=3600)
    return proc, sorted(out.glob("*.whl"))


def shown_policy(output: str) -> str:
    """The platform tag `auditwheel show` said the wheel is consistent with."""
    found = re.findall(r'consistent\s+with\s+the\s+following\s+platform\s+tag:\s*"([a-z0-9_]+)"', output)
    assert found, output[-3000:]
    return found[-1]


def needed_versions(data: bytes) -> set[str]:
    """NAME@VERSION of every versioned symbol an ELF shared object imports."""
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    names = {}
    verneed = elf.get_section_by_name(".gnu.version_r")
    for _, auxes in (verneed.iter_versions() if verneed else ()):
        for aux in auxes:
            names[aux["vna_other"]] = aux.name
    versym, dynsym = elf.get_section_by_name(".gnu.version"), elf.get_section_by_name(".dynsym")
    out = set()
    for i, sym in enumerate(dynsym.iter_symbols()):
        if sym.name and sym["st_shndx"] == "SHN_UNDEF":
            ndx = versym.get_symbol(i)["ndx"]
            if ndx in names:
                out.add(f"{sym.name}@{names[ndx]}")
    return out


def extension_symbols(wheel: Path) -> dict[str, set[str]]:
    """Per extension module of the wheel (not the libraries auditwheel grafted), what it imports."""
    with zipfile.ZipFile(wheel) as z:
        return {Path(n).name.split(".")[0]: needed_versions(z.read(n)) for n in z.namelist()
                if n.endswith(".so") and ".libs/" not in n}


def newest(symbols: set[str], prefix: str) -> tuple[int, ...]:
    versions = [tuple(int(x) for x in s.split("@")[1][len(prefix) + 1:].split("."))
                for s in symbols if s.split("@")[1].startswith(prefix + "_") and s.split("@")[1][len(prefix) + 1:][:1].isdigit()]
    return max(versions, default=())


def within_policy(symbols: set[str]) -> None:
    for prefix, limit in NEWEST.items():
        assert newest(symbols, prefix) <= limit, (prefix, sorted(s for s in symbols if f"@{prefix}_" in s))
    assert not [s for s in symbols if s.startswith("__isoc23_")], symbols


@pytest.mark.parametrize("compilers", ["native", "emulated"])
def test_demo_extensions_are_manylinux_2_31(riscv64, tmp_path, compilers):
    env = {"CIWHEELS_NATIVE_COMPILERS": "0"} if compilers == "emulated" else {}
    proc, wheels = cibuildwheel(DEMO, tmp_path / "out", riscv64["tag"], env=env,
                                test="python {package}/tests/check_demo.py")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert [w.name for w in wheels] == [f"sysroot_demo-0.1.0-{PYTHON}-{PYTHON}-{POLICY}.whl"]
    assert shown_policy(log) == POLICY  # auditwheel show of the repaired wheel
    assert "sysroot_demo: ok" in log  # C's strtol/sscanf and C++'s exceptions work in the image
    symbols = extension_symbols(wheels[0])
    c, cxx = symbols["_cdemo"], symbols["_cxxdemo"]
    # the pre-2.38 symbols: riscv64's glibc starts at 2.27
    assert {"strtol@GLIBC_2.27", "__isoc99_sscanf@GLIBC_2.27", "memcpy@GLIBC_2.27"} <= c, c
    assert "strtol@GLIBC_2.27" in cxx and "__cxa_throw@CXXABI_1.3" in cxx, cxx
    assert any("@GLIBCXX_3.4" in s for s in cxx), cxx  # std::string from the sysroot's libstdc++
    within_policy(c)
    within_policy(cxx)


def test_without_the_sysroot_the_same_sources_need_glibc_2_38(riscv64, tmp_path):
    """CIWHEELS_SYSROOT=0 compiles against the base's glibc 2.41 headers: the difference is the
    sysroot's. The wheel is only shown to auditwheel (repairing it to 2_31 would fail)."""
    proc, wheels = cibuildwheel(DEMO, tmp_path / "out", riscv64["tag"], env={"CIWHEELS_SYSROOT": "0"},
                                repair="auditwheel show {wheel}; cp {wheel} {dest_dir}")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and len(wheels) == 1, log[-4000:]
    symbols = extension_symbols(wheels[0])
    assert {"__isoc23_strtol@GLIBC_2.38", "__isoc23_sscanf@GLIBC_2.38"} <= symbols["_cdemo"], symbols["_cdemo"]
    assert "__isoc23_strtol@GLIBC_2.38" in symbols["_cxxdemo"], symbols["_cxxdemo"]
    major, minor = (int(x) for x in re.match(r"manylinux_(\d+)_(\d+)_riscv64", shown_policy(log)).groups())
    assert (major, minor) >= (2, 38)


def test_a_library_from_the_base_is_refused_with_an_explanation(riscv64, tmp_path):
    """A wheel linking a library of the image's distribution (trixie's liblzma, glibc 2.34) that
    before-all would install: `ciwheels build` fails the cell, the image's auditwheel shows what
    the wheel links, and ciwheels says what auditwheel's "too-recent versioned symbols" means."""
    import shutil

    from conftest import with_registries

    project = tmp_path / "proj"
    shutil.copytree(DEMO, project, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    (project / "matrix").mkdir()
    (project / "matrix" / "wheels.yaml").write_text(with_registries(
        f"python: [cp313]\narch: [riscv64]\nimages:\n  riscv64-glibc: {{image: \"{riscv64['tag']}\", "
        "policy: manylinux_2_31}\nenvironment: {SYSROOT_DEMO_LZMA: '1'}\n"))
    out = tmp_path / "wh"
    proc = subprocess.run([sys.executable, "-m", "ciwheels", "build", "--project", str(project), "--all",
                           "--engine", "podman", "--out", str(out)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 1, proc.stderr[-4000:]
    log = next(out.glob("*.log")).read_text()
    assert "too-recent versioned symbols" in log  # auditwheel's own words
    assert "what the refused wheel links" in log and "liblzma.so.5" in log  # the image's auditwheel
    assert "glibc 2.31 of the bullseye" in log
    # ciwheels' report of the failure explains it
    assert "a library it links needs a newer glibc" in proc.stderr and "bullseye sysroot" in proc.stderr
    assert "Libraries from before-all" in proc.stderr


# name==version, the test command (run in the image under QEMU), what it needs, and for the
# packages picked because they call the strtol family, which of their extension modules does
# (msgpack, the plain case, is left to tests/test_cross.py: its cross and its emulated wheel there
# are manylinux_2_31 in the same image and pass their tests)
REAL = {
    "MarkupSafe==3.0.3": ("pytest {project}/tests", "pytest", None),
    # psutil's pytest configuration loads these plugins (its [test] extra)
    # (its tests import the installed psutil only from outside the source tree, as its Makefile
    # does; test_linux.py compares with free/vmstat, which the image lacks; the network
    # interface tests need ioctls QEMU's user emulation does not pass on)
    "psutil==7.2.2": ("rm -rf /tmp/psutil-tests && mkdir /tmp/psutil-tests && cp -r {project}/tests /tmp/psutil-tests/ "
                      "&& cd /tmp/psutil-tests && python -m pytest -p no:cacheprovider -q tests/test_system.py "
                      "-k 'not sensors and not battery and not net_if'",
                      "pytest pytest-instafail pytest-xdist psleak", None),
    # parse_c_type.c: strtoul, strtoull
    "cffi==2.1.1": ("pytest {project}/src/c/test_c.py -q", "pytest", ("_cffi_backend", "strtoul")),
    # the bundled hiredis C library: vendor/hiredis/async.c calls strtol
    "hiredis==3.5.0": ("pytest {project}/tests -q", "pytest", ("hiredis", "strtol")),
}


@pytest.mark.parametrize("spec", list(REAL))
def test_real_sdists_are_manylinux_2_31_and_pass_their_tests(riscv64, tmp_path, spec):
    from ciwheels.build.sdist import fetch_sdist

    test, requires, caller = REAL[spec]
    sdist = fetch_sdist(*spec.split("=="))
    proc, wheels = cibuildwheel(sdist, tmp_path / "out", riscv64["tag"], test=test, test_requires=requires)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert len(wheels) == 1, wheels
    # cp313-cp313-<platforms>, or psutil's cp36-abi3-<platforms>
    tags = re.search(r"-cp\d+-(?:abi3|cp\d+t?)-([^-]+)\.whl$", wheels[0].name).group(1).split(".")
    policies = [tuple(int(x) for x in re.match(r"manylinux_(\d+)_(\d+)_riscv64$", t).groups()) for t in tags]
    assert min(policies) <= (2, 31) and max(policies) <= (2, 31), wheels[0].name
    shown = tuple(int(x) for x in re.match(r"manylinux_(\d+)_(\d+)_riscv64", shown_policy(log)).groups())
    assert shown <= (2, 31)
    assert re.search(r"\d+ passed", log), log[-3000:]
    symbols = extension_symbols(wheels[0])
    for module in symbols.values():
        within_policy(module)
    if caller:
        module, function = caller
        assert f"{function}@GLIBC_2.27" in symbols[module], sorted(symbols[module])
