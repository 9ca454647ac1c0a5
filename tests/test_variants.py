"""Wheel variants (PEP 825) for ISA levels: file names, variant.json, RECORD, the index-level
`-variants.json`, the matrix key, host level detection; and, marked slow, the whole path with
real tools: gcc-built baseline and x86-64-v3 wheels, gather, publish to one registry, real uv
installs the v3 variant and real pip the baseline, `ciwheels verify` on the installed binary."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ciwheels.catalog import load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.matrix.expand import check_level_clashes
from ciwheels.isa.families import family
from ciwheels.project.open import expand_files
from ciwheels.core import wheel
from ciwheels.dist import variants
from conftest import run_ciwheels
from wheelfactory import compile_so, make_wheel

CAT = load_catalog()
V3 = CAT.levels["x86-64-v3"]
# the variant.json uv 0.13.8 accepted (shared/notes/variants.md)
ACCEPTED = {"$schema": "https://variants-schema.wheelnext.dev/peps/850/v0.2.0.json",
            "default-priorities": {"namespace": ["x86_64"]},
            "providers": {"x86_64": {"requires": ["x86-64-variant-provider"]}},
            "variants": {"x86_64_v3": {"x86_64": {"level": ["v3"]}}}}


@pytest.mark.parametrize("name, label, build", [
    ("numpy-2.3.2-cp313-cp313-manylinux_2_28_x86_64.whl", None, ()),
    ("numpy-2.3.2-cp313-cp313-manylinux_2_28_x86_64-x86_64_v3.whl", "x86_64_v3", ()),
    ("numpy-2.3.2-1-cp313-cp313-manylinux_2_28_x86_64.whl", None, (1, "")),
    ("numpy-2.3.2-1local-cp313-cp313-manylinux_2_28_x86_64-armv8.2a.whl", "armv8.2a", (1, "local")),
    ("numpy-2.3.2-py3-none-any-0abc.whl", "0abc", ()),
])
def test_variant_names_parse(name, label, build):
    w = wheel.parse_wheel_name(name)
    assert (w.name, w.version, w.label, w.build) == ("numpy", "2.3.2", label, build)
    assert w.plain == name.replace(f"-{label}.whl", ".whl") if label else w.plain == name
    assert wheel.index_file_name(w) == "numpy-2.3.2-variants.json"


@pytest.mark.parametrize("name", [
    "numpy-2.3.2-cp313-cp313-manylinux_2_28_x86_64-X86_64_V3.whl",  # upper case
    "numpy-2.3.2-1-cp313-cp313-manylinux_2_28_x86_64-a-b.whl",  # two labels
    "numpy-2.3.2-cp313-cp313-manylinux_2_28_x86_64-x86+v3.whl",
    "numpy-2.3.2-cp313-cp313.whl",
    "numpy-2.3.2-cp313-cp313-manylinux_2_28_x86_64-x86_64_v3.tar.gz",
])
def test_bad_variant_names_are_refused(name):
    with pytest.raises(wheel.InvalidWheelName):
        wheel.parse_wheel_name(name)


def test_artifact_names_accept_variants_but_not_paths():
    from ciwheels.dist.artifacts import check_wheel_name

    check_wheel_name("demo-1.0-cp312-cp312-manylinux_2_28_x86_64-x86_64_v3.whl", "here")
    with pytest.raises(CiwheelsError):
        check_wheel_name("../demo-1.0-cp312-cp312-manylinux_2_28_x86_64-x86_64_v3.whl", "here")
    with pytest.raises(CiwheelsError, match="variant label"):
        check_wheel_name("demo-1.0-cp312-cp312-manylinux_2_28_x86_64-V3.whl", "here")


def _record(z: zipfile.ZipFile, info: str) -> dict[str, tuple[str, str]]:
    return {r[0]: (r[1], r[2]) for r in csv.reader(io.StringIO(z.read(f"{info}/RECORD").decode())) if r}


def test_make_variant_adds_variant_json_and_rewrites_record(tmp_path):
    plain = make_wheel(tmp_path, "demo", "1.0", "cp312-cp312-manylinux_2_28_x86_64", binaries={"core.so": b"\0" * 80})
    out = variants.make_variant(plain, V3, CAT)
    assert out.name == "demo-1.0-cp312-cp312-manylinux_2_28_x86_64-x86_64_v3.whl" and plain.exists()
    with zipfile.ZipFile(plain) as a, zipfile.ZipFile(out) as b:
        data = b.read("demo-1.0.dist-info/variant.json")
        assert json.loads(data) == ACCEPTED
        rec = _record(b, "demo-1.0.dist-info")
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert rec["demo-1.0.dist-info/variant.json"] == (f"sha256={digest}", str(len(data)))
        assert rec["demo-1.0.dist-info/RECORD"] == ("", "")
        assert b.namelist()[-1] == "demo-1.0.dist-info/RECORD"
        for name in a.namelist():  # everything else byte for byte, and still listed
            if not name.endswith("RECORD"):
                assert a.read(name) == b.read(name) and name in rec
    with pytest.raises(CiwheelsError, match="variant wheel already"):
        variants.make_variant(out, V3, CAT)
    assert variants.read_variant_json(plain) is None


def test_index_file_is_the_union_of_labels_and_refuses_two_meanings(tmp_path):
    tag = "cp312-cp312-manylinux_2_28_x86_64"
    v3 = variants.make_variant(make_wheel(tmp_path / "a", "demo", "1.0", tag), V3, CAT, tmp_path / "out")
    v4 = variants.make_variant(make_wheel(tmp_path / "b", "demo", "1.0", tag), CAT.levels["x86-64-v4"], CAT,
                               tmp_path / "out")
    plain = make_wheel(tmp_path / "out", "demo", "1.0", tag)
    files = variants.index_files([v3, v4, plain])
    assert list(files) == ["demo-1.0-variants.json"]
    data = json.loads(files["demo-1.0-variants.json"])
    assert data["variants"] == {"x86_64_v3": {"x86_64": {"level": ["v3"]}}, "x86_64_v4": {"x86_64": {"level": ["v4"]}}}
    assert data["providers"] == ACCEPTED["providers"] and data["$schema"] in variants.SCHEMAS
    assert variants.index_files([v4, v3]) == files  # byte-stable
    bad = dict(ACCEPTED, variants={"x86_64_v3": {"x86_64": {"level": ["v4"]}}})
    with pytest.raises(CiwheelsError, match="one label must mean one thing"):
        variants.merge([("a", ACCEPTED), ("b", bad)])
    with pytest.raises(CiwheelsError, match="schema"):  # what variantlib 0.2.2 writes
        variants.check_variant_json(dict(ACCEPTED, **{"$schema": "https://variants-schema.wheelnext.dev/v0.2.0.json"}),
                                    "x")
    # the registry already hosts a v4 variant: the file we want still names it
    hosted = {"demo": {v4.name: "x", "demo-1.0-variants.json": "y"}}
    want = variants.wanted_index_files([v3], hosted, CAT)
    assert set(json.loads(want["demo-1.0-variants.json"][1])["variants"]) == {"x86_64_v3", "x86_64_v4"}


MATRIX = """\
python: [cp312]
arch: [x86_64, aarch64, riscv64]
isa:
  x86_64: [x86-64, x86-64-v3]
  aarch64: [armv8-a, armv9-a]
  riscv64: [rv64gc, rva23u64]
{variants}
registries:
  rv23: {{url: https://example.org/rv23, select: {{isa: rva23u64}}}}
  main: {{url: https://example.org/main}}
"""


def test_matrix_variants_key_sets_how_each_cell_is_published(tmp_path):
    f = tmp_path / "wheels.yaml"
    f.write_text(MATRIX.format(variants="variants: true"))
    exp = expand_files([f])
    got = {c.id: (c.publish_as, c.variant, c.registry) for c in exp.cells}
    assert got == {
        "cp312-manylinux_x86_64-x86-64": ("plain", "", "main"),
        "cp312-manylinux_x86_64-x86-64-v3": ("variant", "x86_64_v3", "main"),
        "cp312-manylinux_aarch64-armv8-a": ("plain", "", "main"),
        "cp312-manylinux_aarch64-armv9-a": ("variant", "armv9.0a", "main"),
        "cp312-manylinux_riscv64-rv64gc": ("plain", "", "main"),
        "cp312-manylinux_riscv64-rva23u64": ("registry", "", "rv23"),
    }
    check_level_clashes(exp)  # variants keep levels apart in one registry
    proc = run_ciwheels("matrix", "--matrix", str(f), "--json", check=True)
    assert {c["id"]: c["publish_as"] for c in json.loads(proc.stdout)}["cp312-manylinux_x86_64-x86-64-v3"] == "variant"
    proc = run_ciwheels("explain", "cp312-manylinux_riscv64-rva23u64", "--matrix", str(f), check=True)
    assert "no installer has a variant provider for riscv64" in proc.stdout
    # only x86_64 as variants: aarch64's two levels now clash in `main`
    f.write_text(MATRIX.format(variants="variants: [x86_64]"))
    with pytest.raises(CiwheelsError, match="variants: \\[aarch64\\]"):
        check_level_clashes(expand_files([f]))


def test_variants_for_an_arch_without_provider_is_an_error(tmp_path):
    f = tmp_path / "wheels.yaml"
    f.write_text(MATRIX.format(variants="variants: [x86_64, riscv64]"))
    proc = run_ciwheels("matrix", "--matrix", str(f))
    assert proc.returncode == 2 and "no installer has a wheel-variant provider for riscv64" in proc.stderr


LDSO_V3 = """Subdirectories of glibc-hwcaps directories, in priority order:
  x86-64-v4
  x86-64-v3 (supported, searched)
  x86-64-v2 (supported, searched)
"""


def test_host_level_detection_per_family():
    lv, how = family("x86_64", CAT).host_level(lambda s: LDSO_V3 if s == "ld.so --help" else "")
    assert lv.name == "x86-64-v3" and "glibc-hwcaps" in how
    assert family("x86_64", CAT).host_level(lambda s: "")[0].name == "x86-64"
    graviton3 = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm " \
                "jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm\n"
    assert family("aarch64", CAT).host_level(lambda s: graviton3)[0].name == "armv8.2-a"
    assert family("aarch64", CAT).host_level(lambda s: graviton3.replace("flagm", "flagm sve2"))[0].name == "armv9-a"
    assert family("aarch64", CAT).host_level(lambda s: "Features\t: fp asimd\n")[0].name == "armv8-a"
    rva23 = "isa\t\t: " + CAT.levels["rva23u64"].cflags_expanded.split("=", 1)[1] + "\n"
    assert family("riscv64", CAT).host_level(lambda s: rva23)[0].name == "rva23u64"
    assert family("riscv64", CAT).host_level(lambda s: "isa\t\t: rv64imafdc_zicsr_zifencei\n")[0].name == "rv64gc"


def test_pip_config_for_this_machine(tmp_path):
    (tmp_path / "matrix").mkdir()
    (tmp_path / "matrix" / "wheels.yaml").write_text(MATRIX.format(variants="variants: true"))
    out = run_ciwheels("pip-config", "--project", str(tmp_path), "--level", "x86-64-v3", check=True).stdout
    assert 'preview-features = ["wheel-variants"]' in out and "index-url = https://example.org/main/simple/" in out
    out = run_ciwheels("pip-config", "--project", str(tmp_path), "--level", "rva23u64", check=True).stdout
    assert "index-url = https://example.org/rv23/simple/\nextra-index-url = https://example.org/main/simple/" in out
    assert "preview-features" not in out
    out = run_ciwheels("pip-config", "--project", str(tmp_path), "--level", "rv64gc", check=True).stdout
    assert "rv23" not in out


# -- with real tools ------------------------------------------------------------------------------
TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}-cp{sys.version_info[0]}{sys.version_info[1]}-manylinux_2_17_x86_64"
SENTINEL = "variants-job-token-6c1f"


def _built(tmp_path: Path) -> Path:
    """Build outputs of two cells, as `ciwheels build` leaves them: the baseline wheel, and the
    v3 wheel turned into its variant after verification (build._place's step)."""
    out = tmp_path / "wheelhouse"
    for cell, level, flags in (("cp-x86-64", "x86-64", ("-march=x86-64",)),
                               ("cp-x86-64-v3", "x86-64-v3", ("-march=x86-64-v3", "-mneeded"))):
        d = out / cell
        wheel = make_wheel(d, "cext", "1.0", TAG, payload=f"LEVEL = {level!r}\n",
                           binaries={"core.so": compile_so(tmp_path, "gcc", *flags)})
        findings = run_ciwheels("verify", str(wheel), "--isa", level, "--json", check=True).stdout
        assert {f["status"] for f in json.loads(findings)} == ({"ok"} if flags[-1] == "-mneeded" else {"undetermined"})
        if level != "x86-64":
            v = variants.make_variant(wheel, CAT.levels[level], CAT)
            wheel.unlink()
            wheel = v
        (d / "build-report.json").write_text(json.dumps({
            "format": 1, "cell": cell, "status": "ok", "isa": level, "registry": "main", "arch": "x86_64",
            "wheels": [{"file": wheel.name, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
                        "size": wheel.stat().st_size, "isa_check": "ok"}]}))
    return out


def _project(tmp_path: Path, url: str) -> Path:
    proj = tmp_path / "proj"
    (proj / "matrix").mkdir(parents=True)
    (proj / "matrix" / "wheels.yaml").write_text(
        f"python: [cp312]\nisa: {{x86_64: [x86-64, x86-64-v3]}}\nvariants: true\nregistries:\n  main: {{url: {url}}}\n")
    return proj


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is a test dependency (the test extra pins uv==0.13.8)")
    return uv


@pytest.mark.slow
def test_one_registry_uv_installs_the_v3_variant_pip_the_baseline(tmp_path):
    from servers import GitLabPypiStandIn

    if family("x86_64", CAT).host_level()[0].rank < V3.rank:
        pytest.skip("this machine's CPU does not support x86-64-v3 (ld.so --help): uv would rightly install the "
                    "baseline")
    dist = tmp_path / "dist"
    run_ciwheels("gather", str(_built(tmp_path)), "--out", str(dist), check=True)
    assert (dist / "main" / "cext-1.0-variants.json").is_file()  # for --find-links use
    gitlab = GitLabPypiStandIn("7", SENTINEL, "http://127.0.0.1:9")  # stores any file name, as GitLab does
    try:
        api = f"{gitlab.api}/projects/7/packages/pypi"
        proj = _project(tmp_path, api)
        env = {**os.environ, "CI_API_V4_URL": gitlab.api, "CI_PROJECT_ID": "7", "CI_JOB_TOKEN": SENTINEL}
        env.pop("CIWHEELS_REPOSITORY_URL", None)
        proc = run_ciwheels("publish", str(dist), "--project", str(proj), "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        assert gitlab.uploads[-1] == "cext-1.0-variants.json" and len(gitlab.uploads) == 3  # the index file last
        again = run_ciwheels("publish", str(dist), "--project", str(proj), "--json", env=env)
        assert again.returncode == 0 and {r["status"] for r in json.loads(again.stdout)} == {"skipped"}

        index = f"{api}/simple/"
        venv = tmp_path / "venv"
        subprocess.run([_uv(), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        py = venv / "bin" / "python"
        subprocess.run([_uv(), "pip", "install", "-q", "--no-cache", "-p", str(py), "--preview-features",
                        "wheel-variants", "--index-url", index, "cext"], check=True)
        level = subprocess.run([str(py), "-c", "import cext; print(cext.LEVEL)"], capture_output=True, text=True,
                               check=True).stdout.strip()
        assert level == "x86-64-v3"
        so = next(venv.glob("lib/python*/site-packages/cext_libs/core.so"))
        proc = run_ciwheels("verify", str(so), "--json")  # its level from the installed variant.json
        assert proc.returncode == 0, proc.stderr
        (finding,) = json.loads(proc.stdout)
        assert (finding["level"], finding["needs"], finding["status"]) == ("x86-64-v3", "x86-64-v3", "ok")

        target = tmp_path / "pip-target"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-cache-dir", "--target", str(target),
                        "--index-url", index, "cext"], check=True)
        assert "LEVEL = 'x86-64'" in (target / "cext.py").read_text()  # pip ignores variant wheels
    finally:
        gitlab.close()


@pytest.mark.slow
def test_pypiserver_refuses_the_index_file_and_publish_says_why(tmp_path):
    from servers import PypiServer

    dist = tmp_path / "dist"
    run_ciwheels("gather", str(_built(tmp_path)), "--out", str(dist), check=True)
    server = PypiServer(tmp_path / "srv", auth=("ci", SENTINEL))
    try:
        proj = _project(tmp_path, server.url)
        env = {**os.environ, "CIWHEELS_USERNAME": "ci", "CIWHEELS_PASSWORD": SENTINEL}
        proc = run_ciwheels("publish", str(dist), "--project", str(proj), "--json", env=env)
        assert proc.returncode == 1
        got = {r["file"]: r for r in json.loads(proc.stdout)}
        assert got["cext-1.0-cp%d%d-cp%d%d-manylinux_2_17_x86_64-x86_64_v3.whl" % (sys.version_info[:2] * 2)][
            "status"] == "uploaded"
        assert got["cext-1.0-variants.json"]["status"] == "failed"
        assert "accept only wheels and sdists" in got["cext-1.0-variants.json"]["detail"]
    finally:
        server.close()
