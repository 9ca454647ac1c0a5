#!/usr/bin/env python3
"""Publish ~300 small generated wheels to a local pypiserver with `ciwheels publish`, with
`twine upload` and with `uv publish --check-url` (uv's own skip-existing), in the same run
(each to its own fresh server), and print the ratios (goal: ciwheels at least 3x faster than
twine); then re-run ciwheels and uv with everything already present (goal for ciwheels: at
least 20x faster than its first run, and no uploads)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import run_once  # noqa: E402
from servers import FaultProxy, PypiServer  # noqa: E402
from wheelfactory import make_wheel  # noqa: E402

PASSWORD = "bench-password"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--wheels", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=8, help="ciwheels publish --jobs")
    ap.add_argument("--latency", type=float, default=0.05,
                    help="seconds of round trip added to every request (0: straight to pypiserver)")
    ap.add_argument("--scheme", default="plaintext", help="htpasswd scheme of the servers (apr_md5_crypt: "
                    "pypiserver's usual, server-bound)")
    args = ap.parse_args()
    twine = shutil.which("twine")
    uv = shutil.which("uv")  # optional: uv publish --check-url is compared when it is installed
    if not twine:
        sys.exit("needs twine (pip install -e '.[test]')")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dist = root / "dist"
        for i in range(args.wheels):
            make_wheel(dist, f"bench-{i % 30}", f"1.{i // 30}.0")
        env = {**os.environ, "CIWHEELS_USERNAME": "ci", "CIWHEELS_PASSWORD": PASSWORD}
        # pypiserver checks the password of every request; with the default apr-md5 scheme (1,000
        # rounds of pure-Python MD5) that, not the client, dominates. A plaintext htpasswd keeps
        # the server's cost out of a client comparison; both clients get the same server.
        ours_server = PypiServer(root / "a", auth=("ci", PASSWORD), scheme=args.scheme)
        twine_server = PypiServer(root / "b", auth=("ci", PASSWORD), scheme=args.scheme)
        uv_server = PypiServer(root / "c", auth=("ci", PASSWORD), scheme=args.scheme) if uv else None
        # A registry over the network answers each request after a round trip; a loopback
        # proxy adds it (--latency 0: straight to pypiserver).
        ours_proxy = FaultProxy(ours_server.url, [], latency=args.latency)
        twine_proxy = FaultProxy(twine_server.url, [], latency=args.latency)
        uv_proxy = FaultProxy(uv_server.url, [], latency=args.latency) if uv else None
        uv_first = uv_rerun = None
        try:
            ours, _ = run_once([sys.executable, "-m", "ciwheels", "publish", str(dist), "--repository-url",
                                ours_proxy.url, "--jobs", str(args.jobs)], env=env)
            theirs, _ = run_once([twine, "upload", "--non-interactive", "--disable-progress-bar", "--repository-url",
                                  twine_proxy.url, "-u", "ci", "-p", PASSWORD, *map(str, sorted(dist.glob("*.whl")))],
                                 env=env)
            rerun, out = run_once([sys.executable, "-m", "ciwheels", "publish", str(dist), "--repository-url",
                                   ours_proxy.url, "--jobs", str(args.jobs), "--json"], env=env)
            if uv:
                # uv's own skip-existing: --check-url reads the index and skips files it lists
                uv_cmd = [uv, "publish", "--publish-url", uv_proxy.url, "--check-url", f"{uv_proxy.url}/simple/",
                          "-u", "ci", "-p", PASSWORD, *map(str, sorted(dist.glob("*.whl")))]
                uv_first, _ = run_once(uv_cmd, env=env)
                uv_rerun, _ = run_once(uv_cmd, env=env)
        finally:
            ours_proxy.close()
            twine_proxy.close()
            if uv:
                uv_proxy.close()
                uv_server.close()
            ours_server.close()
            twine_server.close()
    uploads = sum(r["status"] == "uploaded" for r in json.loads(out))
    print(f"registry: pypiserver behind a {args.latency * 1000:.0f} ms round trip")
    print(f"ciwheels publish ({args.wheels} wheels, --jobs {args.jobs}): {ours:6.2f} s")
    print(f"twine upload     ({args.wheels} wheels):            {theirs:6.2f} s")
    print(f"speed-up over twine: {theirs / ours:.1f}x  (goal >= 3x: {'met' if theirs / ours >= 3 else 'NOT met'})")
    print(f"ciwheels re-run, all present: {rerun:6.2f} s, {uploads} uploads; "
          f"{ours / rerun:.1f}x faster than the first run (goal >= 20x: {'met' if ours / rerun >= 20 else 'NOT met'})")
    if uv_first is not None:
        print(f"uv publish --check-url ({args.wheels} wheels):     {uv_first:6.2f} s; re-run, all present: "
              f"{uv_rerun:6.2f} s")
        print(f"ciwheels vs uv: first upload {uv_first / ours:.1f}x, re-run with everything present "
              f"{uv_rerun / rerun:.1f}x (above 1: ciwheels is faster)")
    else:
        print("uv is not installed: uv publish --check-url not compared")
    if args.latency == 0:
        print("note: with no round trip, pypiserver (one Python process) is the bottleneck for both clients")


if __name__ == "__main__":
    main()
