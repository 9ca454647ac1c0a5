"""Shared by the benchmark scripts: a generated builder-mode matrix and interleaved timing of
whole processes against cibuildwheel's identifier listing."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ciwheels.catalog import load_catalog  # noqa: E402


def generate(root: Path, packages: int) -> Path:
    """A project whose matrix builds every Python x libc x arch x ISA level for `packages`
    packages (about 388 cells each)."""
    cat = load_catalog()
    pythons = [p.id for p in cat.pythons.values() if p.status != "unavailable"]
    isa = "\n".join(f"  {a.name}: [{', '.join(lv.name for lv in a.levels)}]" for a in cat.arches.values())
    pkgs = "\n".join(f"  - name: package-{i}\n    versions: ['1.{i}.0']\n    build-requires: [cython==3.1.{i}]"
                     for i in range(packages))
    # wheel tags cannot tell levels apart: a registry per level above the baseline, as a real matrix has
    registries = "\n".join(f"  {lv.name}: {{url: 'https://registry.invalid/{lv.name}', select: {{isa: {lv.name}}}}}"
                           for lv in cat.levels.values() if not lv.baseline)
    text = (f"python: [{', '.join(pythons)}]\nlibc: [glibc, musl]\narch: [{', '.join(cat.arches)}]\n"
            f"isa:\n{isa}\nexclude:\n  - {{python: cp39, libc: musl, arch: armv7l}}\n"
            f"environment: {{CFLAGS: -O2}}\ntest-command: python -c 'import sys'\nsdist-config: false\npackages:\n{pkgs}\n"
            f"registries:\n{registries}\n  baseline: {{url: 'https://registry.invalid/baseline'}}\n")
    (root / "matrix").mkdir(parents=True)
    (root / "matrix" / "bench.yaml").write_text(text)
    (root / "pyproject.toml").write_text('[project]\nname = "bench"\nversion = "0"\n')
    return root


def tools() -> tuple[str, str]:
    cibw, ciw = shutil.which("cibuildwheel"), shutil.which("ciwheels")
    if not cibw or not ciw:
        sys.exit("needs both cibuildwheel and ciwheels on PATH (pip install -e '.[test]')")
    # A regular `pip install` byte-compiles the package; an editable install under
    # PYTHONDONTWRITEBYTECODE=1 (as on our CI machines) would recompile ciwheels on every start.
    import ciwheels

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(ciwheels.__file__).parent)], check=True)
    return cibw, ciw


def run_once(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> tuple[float, str]:
    """Wall time and stdout of one whole process; exits with its output if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def compare(ours_cmd: list[str], cibw: str, root: Path, runs: int) -> tuple[list[float], list[float], str, str]:
    """Interleaved runs, so that machine noise hits both alike."""
    ours, theirs, out, out2 = [], [], "", ""
    for _ in range(runs):
        t, out = run_once(ours_cmd, root)
        ours.append(t)
        t, out2 = run_once([cibw, "--platform", "linux", "--archs", "all", "--print-build-identifiers"], root)
        theirs.append(t)
    return ours, theirs, out, out2


def report(label: str, ours: list[float], theirs: list[float], goal: float, runs: int) -> None:
    print(f"{label:40s} median {statistics.median(ours) * 1000:7.1f} ms  best {min(ours) * 1000:7.1f} ms")
    print(f"{'cibuildwheel --print-build-identifiers':40s} median {statistics.median(theirs) * 1000:7.1f} ms"
          f"  best {min(theirs) * 1000:7.1f} ms")
    # The best of N is the least noisy estimate of a command's own cost (as timeit's docs advise);
    # the median is printed too, since a 2-core CI machine is noisy.
    best = min(ours) / min(theirs)
    print(f"ratio: best-of-{runs} {best:.2f}, median {statistics.median(ours) / statistics.median(theirs):.2f}"
          f"  (goal < {goal:g}: {'met' if best < goal else 'NOT met'})")
