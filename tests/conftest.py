from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import shutil
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "cext-demo"
BAD = Path(__file__).resolve().parent / "bad"


def run_ciwheels(*args: str, cwd: Path | None = None, check: bool = False, env: dict[str, str] | None = None,
                 subprocess: bool = False) -> subprocess.CompletedProcess:
    """Run `ciwheels ARGS` in `cwd` (default: the repository top).

    In-process through click's CliRunner by default (fast); `subprocess=True` runs the real
    CLI in a child process, exactly as a user does (`python -m ciwheels`). Either way the result
    looks like a `subprocess.CompletedProcess`: `.returncode`, `.stdout`, `.stderr` (text).
    `env`, if given, is the whole environment of the run (as `subprocess.run(env=...)`)."""
    run = run_ciwheels_process if subprocess else _run_in_process
    proc = run(args, cwd or REPO, env)
    if check and proc.returncode != 0:
        raise AssertionError(f"ciwheels {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def run_ciwheels_process(args, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a child process. The child imports the ciwheels of this checkout (not an
    installed one elsewhere), like the in-process runs do."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return _subprocess.run([sys.executable, "-m", "ciwheels", *args], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=120)


def _cli_runner():
    from click.testing import CliRunner

    # click 8.2 and later keep stderr apart by default and have no mix_stderr; 8.1 mixes it in
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


def _run_in_process(args, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    from ciwheels.cli import cli

    runner = _cli_runner()
    # CliRunner's env *updates* os.environ; a whole environment also unsets what it leaves out
    overlay = None if env is None else {**{k: None for k in os.environ if k not in env}, **env}
    with contextlib.chdir(cwd):
        result = runner.invoke(cli, list(args), prog_name="ciwheels", env=overlay, catch_exceptions=True)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # what the interpreter prints for an uncaught exception in a real process
        stderr += "".join(traceback.format_exception(result.exception))
    return _subprocess.CompletedProcess(["ciwheels", *args], result.exit_code, result.stdout, stderr)


_subprocess = subprocess  # run_ciwheels' `subprocess` flag shadows the module inside it


@pytest.fixture
def write_matrix(tmp_path: Path):
    """Write a matrix file into a throwaway project; returns its path."""

    def write(text: str, name: str = "wheels.yaml") -> Path:
        path = tmp_path / "matrix" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


# -- the example project's cells, derived from its matrix file without ciwheels' expansion ----

PLATFORM = {"glibc": "manylinux", "musl": "musllinux"}


def cell_id(cell: dict) -> str:
    return f"{cell['python']}-{PLATFORM[cell['libc']]}_{cell['arch']}-{cell['isa']}"


@functools.cache
def derive_cells(matrix_file: Path = EXAMPLE / "matrix" / "wheels.yaml") -> tuple[tuple[str, ...], int]:
    """(ids of the cells, number dropped by `exclude`) of a simple matrix file: the product of
    python x libc x arch x the arch's ISA levels (its catalog baseline when the file names none),
    minus what `exclude` matches, plus `include`. Independent of ciwheels.expand, so tests can
    compare the two; enough for the example (no overrides, nothing the catalog rules out)."""
    from ruamel.yaml import YAML

    from ciwheels.catalog import load_catalog

    m = YAML(typ="safe").load(matrix_file.read_text(encoding="utf-8"))
    baseline = {a.name: a.baseline.name for a in load_catalog().arches.values()}
    kept, dropped = [], 0
    for python, libc, arch in itertools.product(m["python"], m["libc"], m["arch"]):
        for isa in m.get("isa", {}).get(arch, [baseline[arch]]):
            cell = {"python": python, "libc": libc, "arch": arch, "isa": isa}
            if any(all(cell.get(k) == v for k, v in ex.items()) for ex in m.get("exclude", [])):
                dropped += 1
            else:
                kept.append(cell)
    kept += [{"isa": baseline[c["arch"]], **c} for c in m.get("include", [])]
    return tuple(cell_id(c) for c in kept), dropped


def derive_jobs(cell_ids, native_arches=("x86_64", "i686", "aarch64")) -> set[str]:
    """Build jobs: the native cells of one platform and ISA level share one (the ids minus the
    Python); an emulated cell gets its own (render: emulated-jobs defaults to per-cell). The
    example builds aarch64 on native runners."""
    jobs = set()
    for cell_id in cell_ids:
        platform = cell_id.split("-", 1)[1]
        arch = platform.split("-", 1)[0].split("_", 1)[1]
        jobs.add(platform if arch in native_arches else cell_id)
    return jobs


def _level_registries() -> str:
    """A registry per ISA level (wheel tags cannot tell levels apart, so a matrix with two levels
    of one arch must send them to different registries): appended to test matrices."""
    from ciwheels.catalog import load_catalog

    lines = ["registries:"]
    for lv in load_catalog().levels.values():
        if not lv.baseline:
            lines.append(f"  {lv.name}: {{url: 'https://registry.invalid/{lv.name}', select: {{isa: {lv.name}}}}}")
    lines.append("  baseline: {url: 'https://registry.invalid/baseline'}")
    return "\n".join(lines) + "\n"


LEVEL_REGISTRIES = _level_registries()


def with_registries(matrix: str) -> str:
    return matrix if "registries:" in matrix else matrix + LEVEL_REGISTRIES


# -- build images made here (ciwheels image build), shared by the tests that run builds ------

# What the test images carry. The riscv64 one is the issue-#11 image: several CPythons,
# cross-compiled, with native cross compilers; Debian's archive serves the tarballs offline.
# Each interpreter is minutes of a cold CI run: cp313 cross-compiles with trixie's own Python,
# cp314 with a native 3.14 built first (which cp314t reuses), and these three cover every path
# of python.sh; cp311 would add two more CPython builds and its tests' emulated fallbacks.
TEST_IMAGE_PYTHONS = {"x86_64": ("cp313",), "riscv64": ("cp313", "cp314", "cp314t")}
# cross mode's native interpreters (--cross-python): the tests cross-build cp313 only, whose native
# CPython is trixie's own (seconds); cp314 would be built (about 11 minutes cold on 2 cores), and
# in the e2e tier it shows the fallback of a Python the image has no native one for
TEST_IMAGE_CROSS = {"riscv64": ("cp313",)}


def build_test_image(arch: str, tag: str | None = None) -> dict:
    """`ciwheels image build ARCH` as a user runs it (a child process); an image of the same
    recipe is reused, so only a changed recipe or a fresh machine pays for the build (minutes).
    `tag`: a name of its own (besides the digest) instead of the default `:trixie`."""
    import json

    assert shutil.which("podman"), "podman is a test dependency (.ci/system-deps installs it)"
    if arch != "x86_64":
        assert Path(f"/proc/sys/fs/binfmt_misc/qemu-{arch}").exists(), f"QEMU binfmt for {arch} (.ci/system-deps)"
    args = ["image", "build", arch, "--engine", "podman", "--python-source", "debian", "--json",
            *(["--tag", tag] if tag else [])]
    for python in TEST_IMAGE_PYTHONS[arch]:
        args += ["--python", python]
    for python in TEST_IMAGE_CROSS.get(arch, ()):
        args += ["--cross-python", python]
    proc = _subprocess.run([sys.executable, "-m", "ciwheels", *args], capture_output=True, text=True,
                           timeout=3 * 3600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    facts = json.loads(proc.stdout)
    # the recipe's own tag: the moving one (:trixie) is re-pointed by every build of another
    # recipe on this machine, e.g. a test run of another checkout at the same time
    facts["tag"] = next(t for t in facts["tags"] if t.endswith(":" + facts["digest"]))
    return facts


@pytest.fixture(scope="session")
def test_images() -> dict[str, dict]:
    return {arch: build_test_image(arch) for arch in TEST_IMAGE_PYTHONS}
