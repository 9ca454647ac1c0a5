"""`ciwheels image build`: the recipe (fast tests), and the real riscv64 image it makes (slow):
every CPython asked for, cross-compiled from its upstream tarball, a manylinux policy read from
the base's glibc, and x86_64-hosted cross compilers first on PATH inside the emulated image."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from ciwheels.images.recipe import Recipe, policy_for, python_tag
from conftest import TEST_IMAGE_PYTHONS, build_test_image, run_ciwheels

EM_X86_64, EM_RISCV = 62, 243


def test_the_digest_names_the_recipe_and_its_inputs():
    plain = Recipe("riscv64", None, ("cp311", "cp313"))
    assert plain.digest() == Recipe("riscv64", None, ("cp313", "cp311")).digest()  # order does not matter
    others = {Recipe("riscv64", None, ("cp311", "cp313", "cp314")), Recipe("riscv64", "ubuntu:22.04", ("cp311", "cp313")),
              Recipe("riscv64", None, ("cp311", "cp313"), native_compilers=False), Recipe("aarch64", None, ("cp311", "cp313"))}
    others.add(Recipe("riscv64", None, ("cp311", "cp313"), cross_base="localhost/other-amd64:1"))
    others |= {Recipe("riscv64", None, ("cp311", "cp313"), sysroot="bookworm"),
               Recipe("riscv64", None, ("cp311", "cp313"), sysroot="none")}
    digests = {r.digest() for r in others}
    assert len(digests) == 7 and plain.digest() not in digests
    # riscv64's default sysroot is Debian bullseye's (glibc 2.31): naming it is the same recipe
    assert plain.sysroot == "bullseye" and Recipe("riscv64", None, ("cp311",), sysroot="bullseye").digest() == \
        Recipe("riscv64", None, ("cp311",)).digest()
    assert Recipe("x86_64", None, ("cp313",)).sysroot == "none"
    assert len(plain.digest()) == 16 and int(plain.digest(), 16) >= 0


def test_the_digest_follows_the_recipe_files(tmp_path, monkeypatch):
    from ciwheels.images import recipe as image_mod
    from ciwheels.core.resources import data_dir

    before = Recipe("riscv64", None, ("cp313",)).digest()
    images = tmp_path / "images"
    shutil.copytree(data_dir("images"), images)
    real = image_mod.data_dir
    monkeypatch.setattr(image_mod, "data_dir", lambda name: images if name == "images" else real(name))
    assert Recipe("riscv64", None, ("cp313",)).digest() == before
    (images / "python.sh").write_text((images / "python.sh").read_text() + "# changed\n")
    assert Recipe("riscv64", None, ("cp313",)).digest() != before


def test_the_sysroot_is_pinned_catalog_data_and_sets_the_policy():
    from ciwheels.images.recipe import image_catalog, sysroot_glibc

    cat = image_catalog()
    assert sysroot_glibc("riscv64", "bullseye") == "2.31" and sysroot_glibc("riscv64", "bookworm") == "2.36"
    assert sysroot_glibc("riscv64", "none") is None
    for name, sysroot in cat["sysroots"].items():
        debs = sysroot["debs"]["riscv64"]
        # glibc, kernel headers, libgcc, libstdc++ (headers and library) of the release's own GCC
        for package in ("libc6-dev", "libc6", "linux-libc-dev", "libgcc-s1", f"libgcc-{sysroot['gcc']}-dev",
                        "libstdc++6", f"libstdc++-{sysroot['gcc']}-dev"):
            assert any(p.split("/")[-1].startswith(f"{package}-riscv64-cross_") for p in debs), (name, package)
        assert all(len(sha) == 64 and int(sha, 16) >= 0 for sha in debs.values())
    dry = json.loads(run_ciwheels("image", "build", "riscv64", "--python", "cp313", "--dry-run", "--json",
                                  check=True).stdout)
    assert dry["sysroot"] == "bullseye"
    none = json.loads(run_ciwheels("image", "build", "riscv64", "--python", "cp313", "--sysroot", "none", "--dry-run",
                                   "--json", check=True).stdout)
    assert none["sysroot"] == "none" and none["digest"] != dry["digest"]


def test_policy_and_tags():
    assert policy_for("2.41", "riscv64") == "manylinux_2_41_riscv64"
    assert policy_for("2.35", "x86_64") == "manylinux_2_35_x86_64"
    assert python_tag("cp314t") == "cp314-cp314t" and python_tag("cp311") == "cp311-cp311"


def test_the_tag_is_the_repository_and_the_digest():
    r = Recipe("riscv64", "debian:trixie", ("cp311",))
    assert r.tag() == f"localhost/ciwheels-manylinux-riscv64:{r.digest()}"
    assert r.tag("ghcr.io/o/r") == f"ghcr.io/o/r/ciwheels-manylinux-riscv64:{r.digest()}"


@pytest.mark.parametrize("args, words", [
    # Debian carries no CPython 3.9 source package: said before any container starts
    (["riscv64", "--python", "cp39", "--python-source", "debian"], ["3.9", "debian"]),
    (["riscv64", "--python", "cp313", "--python-source", "/nonexistent/folder"], ["/nonexistent/folder"]),
    (["sparc"], ["no image recipe for 'sparc'", "riscv64"]),
    (["riscv64", "--python", "pp311"], ["--python 'pp311' is not a CPython", "cp311"]),
    (["riscv64", "--python", "cp313t"], ["cp313t", "cibuildwheel 4 dropped"]),
    (["riscv64", "--timeout", "0"], ["--timeout"]),
    (["riscv64", "--sysroot", "buster"], ["no sysroot 'buster' for riscv64", "bullseye, bookworm, none"]),
    (["x86_64", "--sysroot", "bullseye"], ["no sysroot 'bullseye' for x86_64", "none"]),
])
def test_bad_image_requests_are_refused_before_any_work(args, words):
    proc = run_ciwheels("image", "build", *args, "--engine", "podman")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and all(w in proc.stderr for w in words), proc.stderr


# -- the real riscv64 image -------------------------------------------------------------------

def in_image(ref: str, script: str, env: dict[str, str] | None = None) -> str:
    flags = [x for k, v in (env or {}).items() for x in ("-e", f"{k}={v}")]
    proc = subprocess.run(["podman", "run", "--rm", "--pull=never", *flags, ref, "sh", "-c", script],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def riscv64(test_images):
    return test_images["riscv64"]


@pytest.mark.slow
def test_the_image_says_what_it_carries(riscv64):
    from ciwheels.images.recipe import image_labels

    ref = riscv64["tag"]
    assert riscv64["pythons"] == list(TEST_IMAGE_PYTHONS["riscv64"])
    # the glibc of Debian bullseye's sysroot, which extensions compile against (issue #22); the
    # base (Debian trixie) has 2.41
    assert riscv64["policy"] == "manylinux_2_31_riscv64"
    labels = image_labels("podman", ref)
    assert labels["io.ciwheels.pythons"].split() == list(TEST_IMAGE_PYTHONS["riscv64"])
    assert labels["io.ciwheels.recipe"] == riscv64["digest"]
    assert labels["io.ciwheels.sysroot"] == "bullseye" and labels["io.ciwheels.policy"] == "manylinux_2_31_riscv64"
    facts = json.loads(in_image(ref, "cat /opt/python/ciwheels.json"))
    assert facts["pythons"] == list(TEST_IMAGE_PYTHONS["riscv64"]) and facts["glibc"] == "2.41"
    assert facts["native-compilers"] is True and facts["policy"] == "manylinux_2_31_riscv64"
    assert facts["sysroot"] == {"name": "bullseye", "glibc": "2.31", "libstdc++": "10"}
    assert in_image(ref, "echo $AUDITWHEEL_PLAT").strip() == "manylinux_2_31_riscv64"


@pytest.mark.slow
def test_every_cpython_is_the_pinned_upstream_release(riscv64):
    from ciwheels.images import sources as pysources

    script = ";".join(
        f"/opt/python/{python_tag(p)}/bin/python -c 'import sys, sysconfig, ssl, ctypes, sqlite3, lzma, bz2, zlib; "
        f"print(\"{p}\", sys.platform, sysconfig.get_platform(), \"%d.%d.%d\" % sys.version_info[:3], "
        f"bool(sysconfig.get_config_var(\"Py_GIL_DISABLED\")), sysconfig.get_config_var(\"CC\"))'"
        f" && /opt/python/{python_tag(p)}/bin/pip --version >/dev/null"
        f" && /opt/python/{python_tag(p)}/bin/python -m build --version >/dev/null"
        for p in TEST_IMAGE_PYTHONS["riscv64"])
    seen = {line.split()[0]: line.split()[1:] for line in in_image(riscv64["tag"], script).splitlines()}
    for p in TEST_IMAGE_PYTHONS["riscv64"]:
        platform, sysplat, version, nogil, cc = seen[p]
        assert (platform, sysplat) == ("linux", "linux-riscv64")
        assert version == pysources.source_for(pysources.minor_of(p)).version
        assert nogil == str(p.endswith("t"))
        # extensions are compiled by the name the image's compilers have (native or emulated)
        assert cc == "riscv64-linux-gnu-gcc"
    # cibuildwheel's utility interpreter, auditwheel and patchelf
    assert "auditwheel" in in_image(riscv64["tag"], "/opt/python/cp39-cp39/bin/python -V && auditwheel --version"
                                                    " && patchelf --version")


@pytest.mark.slow
def test_compilers_run_natively_and_can_be_turned_off(riscv64):
    ref = riscv64["tag"]
    probe = ("gcc -print-prog-name=cc1; command -v gcc; "
             "python3=/opt/python/cp313-cp313/bin/python; $python3 -c \"import sys; "
             "d = open(sys.argv[1], 'rb').read(20); print(d[18] | d[19] << 8)\" \"$(gcc -print-prog-name=cc1)\"")
    native = in_image(ref, probe).split()
    assert native[0].startswith("/opt/ciwheels-cross/") and int(native[2]) == EM_X86_64
    emulated = in_image(ref, probe, env={"CIWHEELS_NATIVE_COMPILERS": "0"}).split()
    assert emulated[0].startswith("/usr/libexec/gcc/riscv64-linux-gnu/") and int(emulated[2]) == EM_RISCV
    # C and C++ both build programs that run (under QEMU), and the same code from both compilers
    build = ("cd /tmp && printf '#include <stdio.h>\\nint main(void){puts(\"c\");return 0;}\\n' > a.c && "
             "printf '#include <vector>\\n#include <iostream>\\nint main(){std::vector<int> v{1,2};"
             "std::cout << v.size() << std::endl;}\\n' > b.cc && gcc -O2 -c a.c -o a.o && gcc a.o -o a && ./a && "
             "g++ -O2 b.cc -o b && ./b && sha256sum a.o | cut -c1-64")
    out_native = in_image(ref, build).split()
    out_emulated = in_image(ref, build, env={"CIWHEELS_NATIVE_COMPILERS": "0"}).split()
    assert out_native[:2] == ["c", "2"] and out_emulated[:2] == ["c", "2"]
    assert out_native[2] == out_emulated[2]  # the same GCC build: byte-identical objects


@pytest.mark.slow
def test_an_unchanged_recipe_reuses_the_image(riscv64):
    start = time.monotonic()
    again = build_test_image("riscv64")
    assert again["digest"] == riscv64["digest"] and again.get("reused") is True
    assert time.monotonic() - start < 60
