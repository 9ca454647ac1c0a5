#!/usr/bin/env python3
"""Time `ciwheels render` (whole process: load, expand, plan, render, write) for a generated
matrix of about 1,000 cells against `cibuildwheel --platform linux --archs all
--print-build-identifiers`, in the same run. Prints the ratio; the goal is < 1.5."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import compare, generate, report, tools


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--packages", type=int, default=3, help="builder-mode packages (about 388 cells each)")
    args = ap.parse_args()
    cibw, ciw = tools()
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp), args.packages)
        ours, theirs, _, _ = compare([ciw, "render"], cibw, root, args.runs)
        cells = (root / ".github" / "workflows" / "ciwheels.yml").read_text().split("\n")[2]
    report(f"ciwheels render ({cells.strip('# ')})", ours, theirs, 1.5, args.runs)


if __name__ == "__main__":
    main()
