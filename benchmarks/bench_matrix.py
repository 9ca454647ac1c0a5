#!/usr/bin/env python3
"""Time `ciwheels matrix --json` on a generated ~5,000-cell matrix against
`cibuildwheel --platform linux --archs all --print-build-identifiers`, in the same run, whole
processes (start-up included). Prints the ratio; the goal is < 1."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import compare, generate, report, tools


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--packages", type=int, default=13, help="builder-mode packages (about 388 cells each)")
    args = ap.parse_args()
    cibw, ciw = tools()
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp), args.packages)
        ours, theirs, out, _ = compare([ciw, "matrix", "--json"], cibw, root, args.runs)
    cells = out.count('"id":')
    report(f"ciwheels matrix --json ({cells} cells)", ours, theirs, 1, args.runs)


if __name__ == "__main__":
    main()
