#!/usr/bin/env python3
"""Time `ciwheels matrix --json` on a generated ~5,000-cell matrix against
`cibuildwheel --platform linux --archs all --print-build-identifiers` in the same run.

Both are timed as whole processes (start-up included), best and median of --runs.
Prints the ratio ciwheels / cibuildwheel; the goal is < 1."""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ciwheels.catalog import load_catalog  # noqa: E402


def generate(root: Path, packages: int) -> Path:
    cat = load_catalog()
    pythons = [p.id for p in cat.pythons.values() if p.status != "unavailable"]
    isa = "\n".join(f"  {a.name}: [{', '.join(lv.name for lv in a.levels)}]" for a in cat.arches.values())
    pkgs = "\n".join(f"  - name: package-{i}\n    versions: ['1.{i}.0']\n    build-requires: [cython==3.1.{i}]"
                     for i in range(packages))
    text = (f"python: [{', '.join(pythons)}]\nlibc: [glibc, musl]\narch: [{', '.join(cat.arches)}]\n"
            f"isa:\n{isa}\nexclude:\n  - {{python: cp39, libc: musl, arch: armv7l}}\n"
            f"environment: {{CFLAGS: -O2}}\ntest-command: python -c 'import sys'\npackages:\n{pkgs}\n")
    (root / "matrix").mkdir(parents=True)
    (root / "matrix" / "bench.yaml").write_text(text)
    (root / "pyproject.toml").write_text('[project]\nname = "bench"\nversion = "0"\n')
    return root


def timed(cmd: list[str], cwd: Path, runs: int) -> tuple[list[float], str]:
    times, out = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        out = proc.stdout
    return times, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--packages", type=int, default=13, help="builder-mode packages (about 388 cells each)")
    args = ap.parse_args()
    cibw = shutil.which("cibuildwheel")
    ciw = shutil.which("ciwheels")
    if not cibw or not ciw:
        sys.exit("needs both cibuildwheel and ciwheels on PATH (pip install -e '.[test]')")
    # A regular `pip install` byte-compiles the package; an editable install under
    # PYTHONDONTWRITEBYTECODE=1 (as on our CI machines) would recompile ciwheels on every start.
    import ciwheels

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(ciwheels.__file__).parent)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp), args.packages)
        ours, theirs, out, out2 = [], [], "", ""
        for _ in range(args.runs):  # interleaved, so that machine noise hits both alike
            t, out = timed([ciw, "matrix", "--json"], root, 1)
            ours += t
            t, out2 = timed([cibw, "--platform", "linux", "--archs", "all", "--print-build-identifiers"], root, 1)
            theirs += t
        cells = out.count('"id":')
    idents = len(out2.split())
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    print(f"ciwheels matrix --json       {cells:5d} cells        median {m_ours * 1000:7.1f} ms  best {min(ours) * 1000:7.1f} ms")
    print(f"cibuildwheel --print-build-identifiers {idents:4d} identifiers median {m_theirs * 1000:7.1f} ms  best {min(theirs) * 1000:7.1f} ms")
    # The best of N is the least noisy estimate of a command's own cost (as timeit's docs advise);
    # the median is printed too, since a 2-core CI machine is noisy.
    best = min(ours) / min(theirs)
    print(f"ratio ciwheels/cibuildwheel: best-of-{args.runs} {best:.2f}, median {m_ours / m_theirs:.2f}  "
          f"(goal < 1: {'met' if best < 1 else 'NOT met'})")


if __name__ == "__main__":
    main()
