"""Hardening, verify: a wheel is untrusted. Truncated, corrupt, foreign (32-bit, other arch)
ELF files and `.so` files that are not ELF get a verdict ("unreadable", with the reason) and
exit code 1, never a traceback; a zip bomb is refused by its ratio without inflating it.
A bounded, seeded mutation fuzzer runs verify on mutated real binaries compiled here."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, run_ciwheels
from wheelfactory import compile_so, make_wheel

from ciwheels.dist import verify as verify_mod
from ciwheels.dist.verify import verify_wheel

SOURCE = "int add(int a, int b) { return a + b; }\n"
STATUSES = {"ok", "below", "too-high", "undetermined", "unreadable"}


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    t = tmp_path_factory.mktemp("elf")
    out = {"x86-v3": compile_so(t, "gcc", "-march=x86-64-v3", "-mneeded", source=SOURCE, opt="-O2"),
           "rv-v": compile_so(t, "riscv64-linux-gnu-gcc", "-march=rv64gcv", source=SOURCE, opt="-O2")}
    m32 = subprocess.run(["gcc", "-m32", "-shared", "-fPIC", "-x", "c", "-", "-o", str(t / "m32.so")],
                         input=SOURCE, text=True, capture_output=True)
    if m32.returncode == 0:
        out["x86-32"] = (t / "m32.so").read_bytes()
    else:  # no 32-bit multilib here: make the 32-bit header by hand (ELFCLASS32, EM_386)
        data = bytearray(out["x86-v3"][:64])
        data[4], data[18:20] = 1, (3).to_bytes(2, "little")
        out["x86-32"] = bytes(data) + bytes(2000)
    return out


def wheel(folder: Path, plat: str, **members: bytes) -> Path:
    return make_wheel(folder, "cext", "1.0", tag=f"cp312-cp312-{plat}", binaries=members)


def cli_verify(w: Path, isa: str):
    proc = run_ciwheels("verify", str(w), "--isa", isa, "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(proc.stdout) if proc.stdout.strip() else []


@pytest.mark.slow
def test_broken_binaries_are_unreadable_verdicts_and_fail(tmp_path, binaries):
    v3 = binaries["x86-v3"]
    w = wheel(tmp_path, "manylinux_2_28_x86_64", **{
        "truncated.so": v3[:200], "header-only.so": v3[:16], "corrupt.so": v3[:0x28] + (2**40).to_bytes(8, "little") + v3[0x30:],
        "zeroed.so": v3[:64] + bytes(len(v3) - 64),
        "m32.so": binaries["x86-32"], "riscv.so": binaries["rv-v"], "text.so": b"not an ELF file at all\n",
        "empty.so": b"", "good.so": v3})
    proc, findings = cli_verify(w, "x86-64-v3")
    by = {Path(f["member"]).name: f for f in findings}
    assert proc.returncode == 1, proc.stderr
    assert by["good.so"]["status"] == "ok"
    for name in ("truncated.so", "header-only.so", "corrupt.so", "m32.so", "riscv.so", "text.so", "empty.so"):
        assert by[name]["status"] == "unreadable", (name, by[name])
    assert by["zeroed.so"]["status"] in ("undetermined", "unreadable")  # no sections: nothing to read
    assert "32-bit" in by["m32.so"]["reason"] and "EM_RISCV" in by["riscv.so"]["reason"]
    assert by["text.so"]["reason"] == "not an ELF file"
    assert "unreadable" in proc.stderr


@pytest.mark.slow
def test_a_zip_bomb_is_refused_without_inflating_it(tmp_path):
    bomb = tmp_path / "cext-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("cext-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
        with z.open("cext/bomb.so", "w", force_zip64=True) as f:
            f.write(b"\x7fELF")
            zeros = bytes(1 << 20)
            for _ in range(300):  # 300 MiB of zeros: about 300 KB compressed
                f.write(zeros)
    assert bomb.stat().st_size < 2 << 20
    # verify in a child process of its own, whose peak memory alone is measured (os.wait4). The
    # old check read RUSAGE_CHILDREN around an in-process run: the largest of every child the test
    # session had waited for (compilers, pip, image builds), never verify itself, which is why it
    # failed on a fresh machine (an earlier child at 345 MiB) and passed here.
    # verify in a child process of its own, which reports its own peak (VmHWM of its memory map,
    # made at exec: ru_maxrss would carry the forking test process's own size over exec, which is
    # why this test failed on a fresh machine and in a long session)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out, err = tmp_path / "out", tmp_path / "err"
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write(next(l for l in open('/proc/self/status') "
            "if l.startswith('VmHWM'))))\n"
            "from ciwheels.cli import main\n"
            f"sys.argv = ['ciwheels', 'verify', {str(bomb)!r}, '--isa', 'x86-64', '--json']\nmain()\n")
    with open(out, "wb") as o, open(err, "wb") as e:
        child = subprocess.run([sys.executable, "-c", code], stdout=o, stderr=e, env=env, timeout=300)
    findings = json.loads(out.read_text() or "[]")
    assert "Traceback" not in err.read_text(), err.read_text()
    assert child.returncode == 1 and findings[0]["status"] == "unreadable"
    assert "zip bomb" in findings[0]["reason"]
    peak_mib = int(err.read_text().rsplit("VmHWM:", 1)[1].split()[0]) // 1024  # kB
    assert peak_mib < 300, f"verify used {peak_mib} MiB"


def test_a_lying_size_header_reads_no_more_than_it_declares(tmp_path, binaries, monkeypatch):
    w = wheel(tmp_path, "manylinux_2_28_x86_64", **{"a.so": binaries["x86-v3"]})
    monkeypatch.setattr(verify_mod, "MAX_MEMBER", 1000)  # a small limit stands in for a huge binary
    (finding,) = verify_wheel(w, "x86-64-v3")
    assert finding.status == "unreadable" and "above the limit" in finding.reason


def _mutations(data: bytes, rng: random.Random, n: int):
    """Deterministic mutations of a real ELF file: truncations, byte flips in the headers and
    section table, overwritten fields with extreme values, spliced random bytes."""
    shoff = int.from_bytes(data[0x28:0x30], "little")
    hot = [range(0, 64), range(max(0, shoff), min(len(data), shoff + 64 * 30))]
    for i in range(n):
        b = bytearray(data)
        kind = i % 5
        if kind == 0:
            b = b[:rng.randrange(4, len(b))]
        elif kind == 1:
            for _ in range(rng.randrange(1, 8)):
                pos = rng.choice(rng.choice(hot))
                b[pos] = rng.randrange(256)
        elif kind == 2:
            pos = rng.choice(hot[1]) if len(hot[1]) else rng.randrange(64)
            width = rng.choice((2, 4, 8))
            b[pos:pos + width] = rng.choice((b"\xff" * width, b"\x00" * width, b"\x7f" + b"\xff" * (width - 1)))
        elif kind == 3:
            pos = rng.randrange(64, len(b))
            b[pos:pos + 256] = rng.randbytes(256)
        else:
            b[4] = rng.choice((0, 1, 2, 3, 255))  # ELF class
            b[5] = rng.choice((0, 1, 2, 3))  # data encoding
        yield f"m{i}.so", bytes(b)


@pytest.mark.slow
@pytest.mark.parametrize("arch, key, isa", [("x86_64", "x86-v3", "x86-64-v3"), ("riscv64", "rv-v", "rva23u64")])
def test_elf_mutation_fuzzer(tmp_path, binaries, arch, key, isa):
    """Bounded fuzzer: 300 mutations of a real binary per arch, verified in one wheel. Every
    member gets a finding with a known status; none raises."""
    rng = random.Random(20261122)
    members = dict(_mutations(binaries[key], rng, 300))
    w = wheel(tmp_path, f"manylinux_2_28_{arch}" if arch == "x86_64" else "manylinux_2_39_riscv64", **members)
    findings = verify_wheel(w, isa)
    assert len(findings) == len(members)
    assert {f.status for f in findings} <= STATUSES
    assert any(f.status == "unreadable" for f in findings)
    assert all(f.reason for f in findings)
    for f in findings:
        assert "\n" not in f.reason


def test_a_wheel_that_is_not_a_zip_or_a_fifo_is_the_usual_error(tmp_path):
    import os

    fake = tmp_path / "cext-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    fake.write_bytes(b"PK\x03\x04 truncated")
    proc = run_ciwheels("verify", str(fake), "--isa", "x86-64")
    assert proc.returncode == 2 and "cannot open the wheel" in proc.stderr and "Traceback" not in proc.stderr
    fake.unlink()
    os.mkfifo(fake)
    proc = subprocess.run([sys.executable, "-m", "ciwheels", "verify", str(fake), "--isa", "x86-64"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr
