#!/usr/bin/env python3
"""A no-op scheduled plan: `ciwheels plan --missing --json` for a 40-package builder matrix
whose every wheel is already on its registry, a pypiserver behind a loopback proxy that adds a
50 ms round trip (a remote registry). Goal: under 10 seconds, one index read per package and
registry, nothing to build. Prints the time of each run and the reads the proxy saw."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import run_once  # noqa: E402
from servers import FaultProxy, PypiServer  # noqa: E402
from wheelfactory import make_wheel  # noqa: E402

PYTHONS = ["cp310", "cp311", "cp312", "cp313", "cp314"]
ARCHES = ["x86_64", "aarch64", "riscv64"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packages", type=int, default=40)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        registry = PypiServer(root / "registry")
        upstream = PypiServer(root / "upstream")
        proxy = FaultProxy(registry.url, [], latency=args.latency)
        gets = []
        orig = proxy.server.RequestHandlerClass.do_GET

        def counting(handler):
            gets.append(handler.path)
            return orig(handler)

        proxy.server.RequestHandlerClass.do_GET = counting
        try:
            project = root / "proj"
            (project / "matrix").mkdir(parents=True)
            pkgs = "\n".join(f"  - {{name: package-{i}, versions: ['1.{i}.0']}}" for i in range(args.packages))
            (project / "matrix" / "wheels.yaml").write_text(
                f"python: [{', '.join(PYTHONS)}]\nlibc: [glibc, musl]\narch: [{', '.join(ARCHES)}]\n"
                f"registries:\n  main: {{url: '{proxy.url}'}}\nsdist-config: false\npackages:\n{pkgs}\n")
            env = {"CIWHEELS_INDEX_URL": f"{upstream.url}/simple", "PATH": "/usr/bin:/bin"}
            _, out = run_once([sys.executable, "-m", "ciwheels", "plan", "--project", str(project), "--json"], env=env)
            cells = json.loads(out)["cells"]
            for c in cells:  # every cell's wheel is published
                py = c["python"]
                plat = f"{c['policy']}_{c['arch']}"
                make_wheel(registry.packages, c["package"], c["version"], tag=f"{py}-{py}-{plat}")
            times = []
            for _ in range(args.runs):
                gets.clear()
                t, out = run_once([sys.executable, "-m", "ciwheels", "plan", "--project", str(project), "--missing",
                                   "--json"], env=env)
                times.append(t)
                data = json.loads(out)
                assert data["jobs"] == [] and data["cells"] == [], "a no-op plan must build nothing"
        finally:
            proxy.close()
            registry.close()
            upstream.close()
    print(f"{args.packages} packages, {len(cells)} cells, all published; registry {args.latency * 1000:.0f} ms away")
    print(f"ciwheels plan --missing --json: median {statistics.median(times):.2f} s, best {min(times):.2f} s "
          f"(goal < 10 s: {'met' if max(times) < 10 else 'NOT met'})")
    print(f"index reads per run: {len(gets)} for {args.packages} packages and 1 registry "
          f"({'one per package and registry' if len(gets) == args.packages else 'NOT one per package'})")


if __name__ == "__main__":
    main()
