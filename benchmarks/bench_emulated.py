#!/usr/bin/env python3
"""Emulated riscv64 builds: plain, with the image's native compilers (issue #11) and in cross
mode (issue #23), against the x86_64 build.

In one run, for each real sdist from PyPI (msgpack 1.1.2, a heavier C package, Brotli 1.1.0, and
a Cython package, frozenlist 1.8.0, by default), whole cibuildwheel runs (build and auditwheel
repair, no tests) of cp313-manylinux_riscv64 on the riscv64 build image with its native cross
compilers turned off (plain emulation: CIWHEELS_NATIVE_COMPILERS=0), on, and in cross mode (the
wheel built by the image's native CPython 3.13 with the cross compilers, as `ciwheels build`
does it: ciwheels' cibuildwheel patch, CIWHEELS_CROSS_BUILD, the build[uv] frontend), and of
cp313-manylinux_x86_64 on the x86_64 build image, interleaved, each at least twice; every run
uses the same (patched) cibuildwheel. Prints every run, then one line per package:

    <package>: speed-up N.Nx (plain S s, native compilers S s, cross S s, x86_64 S s)

(medians; the speed-up is plain over native compilers). Goals (issue #23): cross mode within 1.5x
of the x86_64 build for Brotli, within 2x for msgpack and the Cython package. A cross run that
fell back to the emulated build is an error. Needs podman, QEMU binfmt for riscv64, and the
images: `ciwheels image build riscv64` and `ciwheels image build x86_64` (each with cp313)."""

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
from ciwheels.build.run import CROSS_PATCH, cross_outcome, process_environment, trust_environment  # noqa: E402
from ciwheels.cibw.install import ensure_cibuildwheel
from ciwheels.core.resources import data_dir
from ciwheels.matrix.cibwopts import CROSS_BUILD_COMMAND, CROSS_BUILD_VARIABLE, CROSS_FRONTEND
from ciwheels.images.recipe import image_labels  # noqa: E402
from ciwheels.net.http import host_ca_bundle  # noqa: E402
from ciwheels.build.sdist import fetch_sdist  # noqa: E402  (from the package index, sha256 checked, cached)

PACKAGES = ["msgpack==1.1.2", "frozenlist==1.8.0", "Brotli==1.1.0"]
CIBUILDWHEEL = "cibuildwheel==4.3.3"  # the catalog's pin, with ciwheels' patch (inert but in cross mode)


def cibuildwheel_run(exe: Path, sdist: Path, arch: str, image: str, out: Path, config: str) -> tuple[float, str]:
    """Wall time of one whole cibuildwheel run (build and auditwheel repair, no tests), and the
    wheel's name (its tags show the policy auditwheel gave it)."""
    ca = host_ca_bundle()
    environment = {**trust_environment(ca), **({"CIWHEELS_NATIVE_COMPILERS": "0"} if config == "plain" else {}),
                   **({CROSS_BUILD_VARIABLE: CROSS_BUILD_COMMAND} if config == "cross" else {})}
    options = {"CIBW_BUILD": f"cp313-manylinux_{arch}", "CIBW_ARCHS_LINUX": arch,
               f"CIBW_MANYLINUX_{arch.upper()}_IMAGE": image,
               "CIBW_ENVIRONMENT_LINUX": " ".join(f"{k}={v}" for k, v in environment.items()),
               "CIBW_BUILD_VERBOSITY": "0"}
    if config == "cross":
        options["CIBW_BUILD_FRONTEND"] = CROSS_FRONTEND
    env = process_environment(options, "podman", ca)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # an empty configuration, as `ciwheels build` gives: not the sdist's own [tool.cibuildwheel]
    # (frozenlist's enables cpython-freethreading, which cibuildwheel 4.3.3 refuses)
    (out.parent / "empty.toml").write_text("")
    start = time.perf_counter()
    proc = subprocess.run([str(exe), "--platform", "linux", "--output-dir", str(out),
                           "--config-file", str(out.parent / "empty.toml"), str(sdist)], env=env,
                          capture_output=True, text=True, timeout=4 * 3600)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or not list(out.glob("*.whl")):
        sys.exit(f"cibuildwheel failed for {sdist.name} on {arch}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    if config == "cross" and cross_outcome(proc.stdout + proc.stderr, f"cp313-manylinux_{arch}") != "native":
        sys.exit(f"the cross build of {sdist.name} was not native:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return elapsed, next(out.glob("*.whl")).name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2, help="runs of each configuration (at least 2)")
    ap.add_argument("--riscv64-image", default="localhost/ciwheels-manylinux-riscv64:trixie")
    ap.add_argument("--x86_64-image", dest="x86_image", default="localhost/ciwheels-manylinux-x86_64:trixie")
    ap.add_argument("--skip-plain", action="store_true",
                    help="no plain-emulation runs (the longest: about 10 minutes each for Brotli here); "
                         "the line then says 'plain not run' and no speed-up")
    ap.add_argument("packages", nargs="*", default=PACKAGES, help="NAME==VERSION of sdists on PyPI")
    args = ap.parse_args()
    if args.runs < 2:
        sys.exit("--runs must be at least 2")
    for ref, needs in ((args.riscv64_image, True), (args.x86_image, False)):
        labels = image_labels("podman", ref)
        if labels is None:
            sys.exit(f"{ref} is not here: build it with `ciwheels image build` (see the docstring)")
        if "cp313" not in labels.get("io.ciwheels.pythons", "cp313").split():
            sys.exit(f"{ref} has no cp313 (it carries {labels['io.ciwheels.pythons']})")
        if needs and labels.get("io.ciwheels.native-compilers", "true") == "false":
            sys.exit(f"{ref} was built without native compilers")
        if needs and "cp313" not in labels.get("io.ciwheels.cross", "").split():
            sys.exit(f"{ref} has no cross mode for cp313 (an image of an older recipe?)")
    exe = ensure_cibuildwheel(CIBUILDWHEEL, (str(data_dir("catalog") / CROSS_PATCH),), Path.cwd())
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-emulated-") as tmp:
        root = Path(tmp)
        for spec in args.packages:
            sdist = fetch_sdist(*spec.split("=="))
            times = results.setdefault(spec, {"plain": [], "native": [], "cross": [], "x86_64": []})
            for run in range(1, args.runs + 1):
                for config, arch, image in (("plain", "riscv64", args.riscv64_image),
                                            ("native", "riscv64", args.riscv64_image),
                                            ("cross", "riscv64", args.riscv64_image),
                                            ("x86_64", "x86_64", args.x86_image)):
                    if config == "plain" and args.skip_plain:
                        continue
                    seconds, wheel = cibuildwheel_run(exe, sdist, arch, image, root / "out" / config, config)
                    times[config].append(seconds)
                    print(f"{spec} run {run}: {config:7} {seconds:7.1f} s  {wheel}", flush=True)
            summary(spec, times)  # as soon as the package is done (a long run may be stopped later)
    print(flush=True)
    for spec, times in results.items():
        summary(spec, times)


def summary(spec: str, times: dict[str, list[float]]) -> None:
    native, cross, x86 = (statistics.median(times[k]) for k in ("native", "cross", "x86_64"))
    name = spec.split("==")[0]
    if not times["plain"]:
        print(f"{name}: speed-up - (plain not run, native compilers {native:.0f} s, cross {cross:.0f} s, "
              f"x86_64 {x86:.0f} s)", flush=True)
        print(f"  cross mode: {native / cross:.1f}x faster than native compilers, {cross / x86:.1f}x the x86_64 build",
              flush=True)
        return
    plain = statistics.median(times["plain"])
    print(f"{name}: speed-up {plain / native:.1f}x (plain {plain:.0f} s, "
          f"native compilers {native:.0f} s, cross {cross:.0f} s, x86_64 {x86:.0f} s)", flush=True)
    print(f"  cross mode: {plain / cross:.1f}x faster than plain emulation, {cross / x86:.1f}x the x86_64 build",
          flush=True)


if __name__ == "__main__":
    main()
