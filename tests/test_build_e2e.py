"""Real builds, no fakes: the example C extension built by real cibuildwheel with podman in
images built here (`ciwheels image build`, offline from debootstrapped Debian), one x86_64
cell and two riscv64 cells (under QEMU), repaired by auditwheel, tested inside the container,
and verified both ways. Images are cached in podman's storage and the debootstrapped root
filesystems in ~/.cache/ciwheels, so a warm run takes about two minutes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE, run_ciwheels

pytestmark = pytest.mark.slow  # podman builds, QEMU emulation: minutes

MATRIX = """\
python: [cp313]
arch: [x86_64, riscv64]
isa:
  x86_64: [x86-64-v3]
  riscv64: [rv64gc, rva22u64]
images:
  x86_64-glibc: {image: "localhost/ciwheels-manylinux-x86_64:trixie", policy: manylinux_2_41}
  riscv64-glibc: {image: "localhost/ciwheels-manylinux-riscv64:trixie", policy: manylinux_2_31}
test-command: python {project}/tests/test_core.py
registries:  # two riscv64 levels: a registry each (nothing is published in these tests)
  rva22u64: {url: "https://registry.invalid/rva22u64", select: {isa: rva22u64}}
  baseline: {url: "https://registry.invalid/baseline"}
"""


@pytest.fixture(scope="module")
def images(test_images):
    return test_images


@pytest.fixture(scope="module")
def built(images, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    project = root / "proj"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".github", ".gitlab", "build", "*.egg-info"))
    (project / "matrix" / "wheels.yaml").write_text(MATRIX)
    proc = subprocess.run([sys.executable, "-m", "ciwheels", "build", "--project", str(project), "--all",
                           "--engine", "podman", "--out", str(root / "wh")], capture_output=True, text=True,
                          timeout=1800)
    return root / "wh", proc


def report(out: Path, cell: str) -> dict:
    return json.loads((out / cell / "build-report.json").read_text())


def test_all_cells_build_repair_and_test(built):
    out, proc = built
    assert proc.returncode == 0, proc.stderr[-4000:]
    for cell in ("cp313-manylinux_x86_64-x86-64-v3", "cp313-manylinux_riscv64-rv64gc",
                 "cp313-manylinux_riscv64-rva22u64"):
        r = report(out, cell)
        assert r["status"] == "ok" and len(r["wheels"]) == 1, r
        wheel = out / cell / r["wheels"][0]["file"]
        assert wheel.exists() and r["wheels"][0]["isa_check"] == "ok"
        log = Path(r["log"]).read_text()
        assert "cext_demo: ok" in log  # the example's tests ran inside the container
    # setuptools >= 75.7 compiles with CFLAGS in place of the interpreter's -O3 -DNDEBUG: ciwheels'
    # CFLAGS carry them (defaults.toml compile-flags), else the level's wheel was built with -O0
    log = Path(report(out, "cp313-manylinux_x86_64-x86-64-v3")["log"]).read_text()
    compiles = [ln for ln in log.splitlines() if "gcc" in ln and "_core.c" in ln and " -c " in ln]
    assert compiles and all(re.search(r" -O3 -DNDEBUG -fno-strict-overflow -march=x86-64-v3 -mneeded ", ln)
                            for ln in compiles), compiles or log[-3000:]
    x86 = report(out, "cp313-manylinux_x86_64-x86-64-v3")["wheels"][0]["file"]
    assert x86.startswith("cext_demo-0.1.0-cp313-cp313-") and "manylinux_2_41_x86_64" in x86
    rv = report(out, "cp313-manylinux_riscv64-rv64gc")["wheels"][0]["file"]
    # the image compiles against Debian bullseye's glibc 2.31 sysroot (issue #22)
    assert rv.endswith("manylinux_2_31_riscv64.whl"), rv
    # GCC 14 rejects the profile name: the build said so and used the expanded ISA string
    assert "rejects -march=rva22u64; using the expanded ISA string" in proc.stderr


def test_verify_both_ways(built):
    out, _ = built
    cases = [("cp313-manylinux_x86_64-x86-64-v3", "x86-64"), ("cp313-manylinux_riscv64-rva22u64", "rv64gc")]
    for cell, lower in cases:
        wheel = next((out / cell).glob("*.whl"))
        ok = run_ciwheels("verify", str(wheel), "--json")
        assert ok.returncode == 0 and {f["status"] for f in json.loads(ok.stdout)} == {"ok"}
        bad = run_ciwheels("verify", str(wheel), "--isa", lower, "--json")
        assert bad.returncode == 1 and json.loads(bad.stdout)[0]["status"] == "too-high"
    plain = next((out / "cp313-manylinux_riscv64-rv64gc").glob("*.whl"))
    assert run_ciwheels("verify", str(plain), "--isa", "rv64gc").returncode == 0


def test_builder_mode_builds_a_pypi_sdist(images, tmp_path):
    """A wheel-builder repository: no package of its own, MarkupSafe's sdist from the index."""
    (tmp_path / "matrix").mkdir()
    (tmp_path / "matrix" / "wheels.yaml").write_text(
        "python: [cp313]\narch: [x86_64]\nisa: {x86_64: [x86-64-v3]}\nimages:\n"
        "  x86_64-glibc: {image: \"localhost/ciwheels-manylinux-x86_64:trixie\", policy: manylinux_2_41}\n"
        "packages:\n  - name: MarkupSafe\n    versions: ['3.0.3']\n"
        # over its own configuration's build[uv] frontend: the local image has no uv
        "    cibuildwheel-options: {build-frontend: build}\n")
    out = tmp_path / "wh"
    job = "markupsafe-3.0.3-manylinux_2_41_x86_64-x86-64-v3"
    proc = subprocess.run([sys.executable, "-m", "ciwheels", "build", "--project", str(tmp_path), "--job", job,
                           "--engine", "podman", "--out", str(out)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = report(out, "markupsafe-3.0.3-cp313-manylinux_x86_64-x86-64-v3")
    assert r["status"] == "ok" and r["wheels"][0]["file"].startswith("markupsafe-3.0.3-cp313-cp313-manylinux")
    wheel = out / r["cell"] / r["wheels"][0]["file"]
    assert run_ciwheels("verify", str(wheel)).returncode == 0
    assert run_ciwheels("verify", str(wheel), "--isa", "x86-64").returncode == 1


def test_rendered_gitlab_pipeline_builds_gathers_and_publishes(images, tmp_path):
    """The whole rendered GitLab pipeline, for real, under gitlab-ci-local (shell executor):
    build (cibuildwheel + podman) -> gather -> publish to a local registry (pypiserver)."""
    import hashlib
    import os

    from servers import PypiServer

    glc = shutil.which("gitlab-ci-local")
    assert glc, "gitlab-ci-local is a test dependency (.ci/system-deps)"
    dist = tmp_path / "ciwheels-dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(Path(__file__).resolve().parent.parent)], check=True, capture_output=True)
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".github", ".gitlab", "build", "*.egg-info"))
    (repo / "matrix" / "wheels.yaml").write_text(
        "python: [cp313]\narch: [x86_64]\nisa: {x86_64: [x86-64-v3]}\nimages:\n"
        "  x86_64-glibc: {image: \"localhost/ciwheels-manylinux-x86_64:trixie\", policy: manylinux_2_41}\n"
        "test-command: python {project}/tests/test_core.py\n"
        # publishing a branch is opt-in (tags, schedules and manual runs publish by default)
        "render: {github: false, matrix-diff: false, publish-branch: main}\n")
    (repo / ".gitlab-ci.yml").write_text("include:\n  - local: .gitlab/ciwheels.gitlab-ci.yml\n")
    run_ciwheels("render", "--project", str(repo), check=True)
    pipeline = repo / ".gitlab" / "ciwheels.gitlab-ci.yml"
    # docker:dind cannot start here (no registry to pull it from): drop that line, use podman
    pipeline.write_text("".join(l for l in pipeline.read_text().splitlines(keepends=True)
                                if not l.startswith("  services: ")))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.email=t@example.invalid", "-c",
                                                                "user.name=t", "commit", "-qm", "wheels"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    registry = PypiServer(tmp_path / "registry", auth=("ci", "pw-7c1e"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "CIWHEELS_"))}
        proc = subprocess.run(
            [glc, "--force-shell-executor", "--shell-isolation", "--no-color",
             "--variable", f"CIWHEELS_SPEC={next(dist.glob('*.whl'))}", "--variable", "CIWHEELS_ENGINE=podman",
             "--variable", f"CIWHEELS_REPOSITORY_URL={registry.url}", "--variable", "CIWHEELS_USERNAME=ci",
             "--variable", "CIWHEELS_PASSWORD=pw-7c1e"],
            cwd=repo, capture_output=True, text=True, timeout=1800, env=env)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-5000:]
        assert " PASS  ciwheels-publish" in out and " FAIL " not in out
        hosted = sorted(registry.packages.glob("cext_demo-0.1.0-cp313-cp313-*.whl"))
        assert len(hosted) == 1 and "manylinux_2_41_x86_64" in hosted[0].name
        assert "pw-7c1e" not in out
        import urllib.request

        index = urllib.request.urlopen(f"{registry.url}/simple/cext-demo/", timeout=30).read().decode()
        assert f"#sha256={hashlib.sha256(hosted[0].read_bytes()).hexdigest()}" in index
    finally:
        registry.close()


RISCV_TIER = """\
python: [cp313, cp314]
arch: [riscv64]
images:
  riscv64-glibc: {{image: "{image}", policy: manylinux_2_31}}
test-command: {test}
render: {{emulated-jobs: grouped}}
"""


def build_riscv64_tier(images, root: Path, test: str) -> tuple[Path, subprocess.CompletedProcess]:
    project = root / "proj"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".github", ".gitlab", "build", "*.egg-info"))
    (project / "matrix" / "wheels.yaml").write_text(RISCV_TIER.format(image=images["riscv64"]["tag"], test=test))
    out = root / "wh"
    proc = subprocess.run([sys.executable, "-m", "ciwheels", "build", "--project", str(project), "--all",
                           "--engine", "podman", "--out", str(out)], capture_output=True, text=True, timeout=3600)
    return out, proc


def test_riscv64_tier_builds_two_pythons_in_one_job(images, tmp_path):
    """The issue-#11 image in a real build: the example for cp313 and cp314 on riscv64 in
    one job (one cibuildwheel session under QEMU, extensions compiled by the native cross
    compilers), each wheel repaired, tested in the container and verified."""
    out, proc = build_riscv64_tier(images, tmp_path, "python {project}/tests/test_core.py")
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = set()
    for python in ("cp313", "cp314"):
        r = report(out, f"{python}-manylinux_riscv64-rv64gc")
        jobs.add(r["job"])
        assert r["status"] == "ok" and len(r["wheels"]) == 1, r
        name = r["wheels"][0]["file"]
        assert name.startswith(f"cext_demo-0.1.0-{python}-{python}-") and name.endswith("manylinux_2_31_riscv64.whl")
        assert "cext_demo: ok" in Path(r["log"]).read_text()
        # cross mode (#23): cp313 builds natively; the test image has no native cp314
        # (conftest TEST_IMAGE_CROSS), so they fall back to the emulated build by themselves
        if python == "cp313":
            assert r["cross"] == "native", r
        else:
            assert r["cross"] == f"fallback (no native CPython for {python}-{python} in this image)", r
        verified = run_ciwheels("verify", str(out / r["cell"] / name), "--json")
        assert verified.returncode == 0 and {f["status"] for f in json.loads(verified.stdout)} == {"ok"}
    assert len(jobs) == 1, jobs


def test_riscv64_tier_keeps_the_wheels_when_one_pythons_test_fails(images, tmp_path):
    """The same job, with cp313's test made to fail: cibuildwheel stops there, build rebuilds
    cp314 on its own, keeps its wheel and reports cp313 as failed."""
    failing = ("python {project}/tests/test_core.py && "
               "python -c \"import sys; sys.exit('made to fail' if sys.version_info[:2] == (3, 13) else 0)\"")
    out, proc = build_riscv64_tier(images, tmp_path, failing)
    assert proc.returncode == 1, proc.stderr[-4000:]
    bad = report(out, "cp313-manylinux_riscv64-rv64gc")
    assert bad["status"] == "failed" and bad["wheels"] == []
    assert "made to fail" in Path(bad["log"]).read_text()
    for python in ("cp314",):
        r = report(out, f"{python}-manylinux_riscv64-rv64gc")
        assert r["status"] == "ok" and (out / r["cell"] / r["wheels"][0]["file"]).exists(), r
