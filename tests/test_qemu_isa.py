"""Issue #21, defect 4: an rva23u64 cell's QEMU_CPU enables every extension its -march allows.

A riscv64 program built with the level's expanded -march (as the build's probe finds it for the
compiler at hand: here the host's riscv64 cross GCC 12, which knows fewer extensions than the
images' GCC 14) that executes one instruction each of Zfa (fli.d), Zicond (czero.eqz) and Zcb
(c.zext.b), the extensions GCC 14 emits for rva23u64 and QEMU's `rv64` CPU leaves off. binutils
2.40 does not know their mnemonics, so the program encodes them with .insn; the test checks the
encodings are in the linked binary.

Which QEMU: the pipelines install QEMU 9.2.2 (tonistiigi/binfmt:qemu-v9.2.2 on both services),
which no registry reachable here offers. The nearest obtainable is Debian 13's qemu-user 10.0
(.ci/system-deps unpacks it to /opt/ciwheels-qemu-trixie); it runs the program directly, not
through binfmt_misc. Every property QEMU_CPU names exists since QEMU 9.1 (zimop/zcmop, the
newest; zicbop came in 9.0). The host's QEMU 7.2 (Debian 12) knows few of them: a build there
drops them, naming them (fit_qemu_cpu), and the program dies with an illegal instruction."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ciwheels.catalog import load_catalog
from ciwheels.isa.families import family, fit_qemu_cpu, level_extensions

CAT = load_catalog()
QEMU_NEW = Path("/opt/ciwheels-qemu-trixie/usr/bin/qemu-riscv64")
CC = "riscv64-linux-gnu-gcc"

PROGRAM = r"""
#include <stdio.h>
static double zfa_fli_half(void) {
    register double r __asm__("fa0");
    __asm__ volatile(".insn r 0x53, 0, 0x79, fa0, f12, f1" : "=f"(r));  /* fli.d fa0, 0.5 */
    return r;
}
static long zicond_czero_eqz(long value, long cond) {
    register long a0 __asm__("a0");
    register long a1 __asm__("a1") = value;
    register long a2 __asm__("a2") = cond;
    __asm__ volatile(".insn r 0x33, 5, 7, a0, a1, a2" : "=r"(a0) : "r"(a1), "r"(a2));  /* czero.eqz a0, a1, a2 */
    return a0;
}
static long zcb_zext_b(long value) {
    register long a0 __asm__("a0") = value;
    __asm__ volatile(".2byte 0x9d61" : "+r"(a0));  /* c.zext.b a0 */
    return a0;
}
int main(void) {
    printf("fli.d=%g czero.eqz=%ld,%ld c.zext.b=%ld\n", zfa_fli_half(), zicond_czero_eqz(7, 1),
           zicond_czero_eqz(7, 0), zcb_zext_b(0x1ff));
    return 0;
}
"""
EXPECTED = "fli.d=0.5 czero.eqz=7,0 c.zext.b=255"
# fli.d fa0, 0.5 / czero.eqz a0, a1, a2 / c.zext.b a0, as they sit in the code (little endian)
ENCODINGS = {"zfa": ((0x79 << 25) | (1 << 20) | (12 << 15) | (10 << 7) | 0x53).to_bytes(4, "little"),
             "zicond": ((0x07 << 25) | (12 << 20) | (11 << 15) | (5 << 12) | (10 << 7) | 0x33).to_bytes(4, "little"),
             "zcb": (0x9D61).to_bytes(2, "little")}
# the QEMU_CPU rva23u64 cells had before the fix (issue #21)
OLD_RVA23 = "rv64,v=true,vlen=128,zba=true,zbb=true,zbs=true"


def test_qemu_cpu_enables_every_extension_of_the_level_that_has_instructions():
    """Catalog data against the level's own expanded -march: whatever the compiler may emit for
    the level, QEMU_CPU turns on (or QEMU's rv64 CPU has on, or it has no instructions)."""
    always_on = {"i", "m", "a", "f", "d", "c", "zicsr", "zifencei", "zmmul", "zaamo", "zalrsc", "zca", "zcd"}
    no_instructions = {"ziccif", "ziccrse", "ziccamoa", "zicclsm", "zic64b", "za64rs"}
    for level in CAT.arches["riscv64"].levels:
        if level.baseline:
            continue
        props = {p.split("=")[0] for p in level.qemu_cpu.split(",")[1:] if p.endswith("=true")}
        implied_by_v = {e for e in level_extensions(level) if e.startswith(("zve", "zvl"))}
        missing = level_extensions(level) - props - always_on - no_instructions - implied_by_v
        assert not missing, f"{level.name}: QEMU_CPU={level.qemu_cpu} leaves off {sorted(missing)}"
    assert {"zfa", "zicond", "zcb", "zfhmin"} <= set(re.findall(r"(\w+)=true", CAT.levels["rva23u64"].qemu_cpu))


def test_fit_qemu_cpu_drops_what_the_qemu_does_not_know_and_names_it():
    def qemu72(value: str) -> tuple[bool, str]:  # QEMU 7.2's answer, word for word
        for prop in value.split(",")[1:]:
            name = prop.split("=")[0]
            if name not in ("zba", "zbb", "zbs", "v", "vlen", "zkt"):
                return False, (f"qemu-riscv64-static: can't apply global rv64-riscv-cpu.{prop}: "
                               f"Property 'rv64-riscv-cpu.{name}' not found\n")
        return True, ""

    fitted, dropped = fit_qemu_cpu(CAT.levels["rva23u64"].qemu_cpu, qemu72)
    assert fitted == "rv64,v=true,vlen=128,zba=true,zbb=true,zbs=true,zkt=true"
    assert {"zfa", "zicond", "zcb", "zfhmin"} <= set(dropped)


@pytest.fixture(scope="module")
def trivial(tmp_path_factory) -> Path:
    """What the build's QEMU_CPU probe runs (`true` in the image): a program that uses nothing."""
    assert shutil.which(CC), f"{CC} is a test dependency (.ci/system-deps)"
    folder = tmp_path_factory.mktemp("true")
    (folder / "true.c").write_text("int main(void) { return 0; }\n")
    subprocess.run([CC, "-O2", "-static", "-o", str(folder / "true"), str(folder / "true.c")], check=True,
                   capture_output=True, timeout=120)
    return folder / "true"


def _fit(qemu, qemu_cpu: str, trivial: Path) -> tuple[str, tuple[str, ...]]:
    def runs(value: str) -> tuple[bool, str]:
        proc = _run(qemu, value, trivial)
        return proc.returncode == 0, proc.stderr

    return fit_qemu_cpu(qemu_cpu, runs)


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    """The program, compiled with the level's flags as the build's probe finds them for this
    compiler (the probe drops the extensions GCC 12 and binutils 2.40 do not know)."""
    assert shutil.which(CC), f"{CC} is a test dependency (.ci/system-deps)"
    folder = tmp_path_factory.mktemp("rva23")
    (folder / "rva23.c").write_text(PROGRAM)
    level = CAT.levels["rva23u64"]

    def compiles(flags: str) -> tuple[bool, str]:
        proc = subprocess.run([CC, *flags.split(), "-x", "c", "-c", "-o", "/dev/null", "-"], input="int x;",
                              capture_output=True, text=True, timeout=120)
        return proc.returncode == 0, proc.stderr

    probe = family("riscv64", CAT).probe(level, compiles)
    cflags = probe.flags["CFLAGS"]
    assert " -march=rv64imafdcv_" in f" {cflags}" and "_zba_zbb_zbs_" in cflags
    subprocess.run([CC, "-O2", "-static", *cflags.split(), "-o", str(folder / "rva23"), str(folder / "rva23.c")],
                   check=True, capture_output=True, timeout=120)
    data = (folder / "rva23").read_bytes()
    for ext, code in ENCODINGS.items():
        assert code in data, f"the binary has no {ext} instruction"
    return folder / "rva23"


def _run(qemu: str | Path, qemu_cpu: str, program: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(qemu), str(program)], env={"QEMU_CPU": qemu_cpu}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.slow  # compiles and emulates
def test_rva23u64_code_runs_under_a_qemu_9_or_newer_with_the_levels_qemu_cpu(program, trivial):
    assert QEMU_NEW.exists(), f"{QEMU_NEW}: a QEMU >= 9 for riscv64 (.ci/system-deps unpacks Debian 13's)"
    version = subprocess.run([str(QEMU_NEW), "--version"], capture_output=True, text=True).stdout
    assert int(re.search(r"version (\d+)\.", version).group(1)) >= 9
    level = CAT.levels["rva23u64"]
    qemu_cpu = family("riscv64", CAT).flags(level)["QEMU_CPU"]
    # this QEMU knows every property: the build's probe keeps them all
    assert _fit(QEMU_NEW, qemu_cpu, trivial) == (qemu_cpu, ())
    proc = _run(QEMU_NEW, qemu_cpu, program)
    assert (proc.returncode, proc.stdout.strip()) == (0, EXPECTED), proc.stderr
    # before the fix: the first of them is an illegal instruction (SIGILL)
    assert _run(QEMU_NEW, OLD_RVA23, program).returncode == -4
    # and each extension is needed: turned off alone, its instruction is illegal
    for ext in ENCODINGS:
        assert _run(QEMU_NEW, f"{qemu_cpu},{ext}=false", program).returncode == -4, ext


@pytest.mark.slow  # compiles and emulates
def test_the_hosts_qemu_7_cannot_run_it_and_the_build_says_why(program, trivial):
    """Debian 12's QEMU 7.2 refuses the properties it does not have; the build's probe drops
    them, naming Zfa, Zicond and Zcb, and the program then dies on the first of them."""
    qemu = shutil.which("qemu-riscv64-static")
    assert qemu, "qemu-user-static is a test dependency (.ci/system-deps)"
    qemu_cpu = CAT.levels["rva23u64"].qemu_cpu
    refused = _run(qemu, qemu_cpu, program)
    assert refused.returncode != 0 and "not found" in refused.stderr
    fitted, dropped = _fit(qemu, qemu_cpu, trivial)
    assert {"zfa", "zicond", "zcb"} <= set(dropped)
    assert _run(qemu, fitted, program).returncode == -4
