"""Cross mode's build step, run by the image's native x86_64 CPython of the target interpreter's
X.Y (images/README.md, "Cross mode"; called by ciwheels-cross-build):

    python xbuild.py TARGET_PYTHON PACKAGE OUTDIR REASON_FILE [build frontend flags...]

The isolated build environment is a native one (uv or pip install what the backend needs, for
x86_64: Cython, meson and setuptools run natively); the backend's hooks run with the target's
sysconfig (its `_sysconfigdata_*`: compilers, flags, EXT_SUFFIX, include directory),
`_PYTHON_HOST_PLATFORM=linux-<arch>` (the wheel's platform tag) and a sitecustomize that makes
`os.uname()`/`platform.machine()` report the target. The compilers the target's sysconfig names
are the image's native cross compilers (with its sysroot). Programs built for the target that
the build runs (configure checks, meson's sanity checks) run under QEMU as in an emulated build.

The wheel must then be what an emulated build makes: the target's platform and ABI tags, every
ELF file in it built for the target. Anything else (a flag this cannot honour, a failed backend,
a wrong wheel) exits 1 with the reason in REASON_FILE: the driver then builds emulated."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))

import build  # noqa: E402
import build.env  # noqa: E402
import pyproject_hooks  # noqa: E402

ELF_MACHINES = {"x86_64": 62, "aarch64": 183, "riscv64": 243, "ppc64le": 21, "s390x": 22}

SITECUSTOMIZE = '''\
# cross mode (ciwheels xbuild.py): this native interpreter reports the target
import os, sys, sysconfig
_u = os.uname()
_target = os.uname_result((_u.sysname, _u.nodename, _u.release, _u.version, {machine!r}))
os.uname = lambda: _target
sys.implementation._multiarch = {multiarch!r}
_get_paths = sysconfig.get_paths
def _paths(*args, **kwargs):
    paths = dict(_get_paths(*args, **kwargs))
    if kwargs.get("expand", args[2] if len(args) > 2 else True):
        paths["include"] = {include!r}
        paths["platinclude"] = {platinclude!r}
    return paths
sysconfig.get_paths = _paths
'''


class Refused(Exception):
    """Cross mode cannot build this: the reason, for the build report."""


def target_facts(target: Path) -> tuple[str, Path, dict]:
    """(sysconfigdata module name, its file, its variables) of the target interpreter, read from
    its files (running it would be emulated)."""
    prefix = target.resolve().parent.parent
    found = sorted(prefix.glob("lib/python3*/_sysconfigdata_*.py"))
    if len(found) != 1:
        raise Refused(f"the target interpreter's sysconfig data is not one file under {prefix}/lib")
    tree = ast.parse(found[0].read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "build_time_vars":
            return found[0].stem, found[0], ast.literal_eval(node.value)
    raise Refused(f"{found[0]} has no build_time_vars")


def parse_flags(flags: list[str]) -> tuple[dict[str, str | list[str]], str]:
    """The build frontend flags cibuildwheel passes: config settings, the installer, verbosity."""
    config: dict[str, str | list[str]] = {}
    installer = "uv" if shutil.which("uv") else "pip"
    it = iter(flags)
    for flag in it:
        if flag in ("-C", "--config-setting"):
            flag = "-C" + next(it, "")
        if flag.startswith(("-C", "--config-setting=")):
            setting = flag.removeprefix("--config-setting=").removeprefix("-C")
            key, _, value = setting.partition("=")
            old = config.get(key)
            config[key] = value if old is None else ([*old, value] if isinstance(old, list) else [old, value])
        elif flag.startswith("--installer="):
            installer = flag.partition("=")[2]
        elif flag.lstrip("-").strip("v") == "" or flag in ("--verbose", "-q", "--quiet"):
            continue
        else:
            raise Refused(f"the build frontend flag {flag!r} is not supported in cross mode")
    return config, installer


def check_wheel(wheel: Path, arch: str, soabi: str, python_tag: str) -> None:
    """The wheel is what the target's own build makes: its tags, and target ELF files only."""
    parts = wheel.name[:-4].split("-")
    plat, abi = parts[-1], parts[-2]
    if plat != f"linux_{arch}":
        raise Refused(f"the cross build made {wheel.name}, not a linux_{arch} wheel")
    if abi not in (python_tag, "abi3", "none"):
        raise Refused(f"the cross build made {wheel.name}, whose ABI tag is not {python_tag}")
    want = ELF_MACHINES[arch]
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            with zf.open(info) as f:
                head = f.read(20)
            if head[:4] != b"\x7fELF":
                continue
            machine = int.from_bytes(head[18:20], "little")
            if machine != want:
                raise Refused(f"{info.filename} in the cross-built wheel is not a {arch} ELF file (e_machine {machine})")
            name = info.filename.rsplit("/", 1)[-1]
            if ".cpython-" in name and f".{soabi}." not in name:
                raise Refused(f"{info.filename} has another interpreter's extension suffix (not {soabi})")


def auditwheel(target: str, args: list[str]) -> int:
    """`xbuild.py --auditwheel TARGET ARGS`: the image's auditwheel (/opt/ciwheels-tools), run here
    natively, with os.uname() saying the target's arch (which auditwheel's defaults read); the
    wheel's own tags say the rest."""
    _, _, facts = target_facts(Path(target))
    arch = (facts.get("MULTIARCH") or "").split("-")[0]
    u = os.uname()
    machine = os.uname_result((u.sysname, u.nodename, u.release, u.version, arch))
    os.uname = lambda: machine
    sys.path.insert(0, "/opt/ciwheels-tools/site")
    from auditwheel.main import main as auditwheel_main

    sys.argv = ["auditwheel", *args]
    return auditwheel_main()


def main() -> int:
    if sys.argv[1:2] == ["--auditwheel"]:
        return auditwheel(sys.argv[2], sys.argv[3:])
    target, package, outdir, reason_file, *flags = sys.argv[1:]
    started = time.monotonic()
    try:
        config, installer = parse_flags(flags)
        name, data_file, facts = target_facts(Path(target))
        version = facts.get("VERSION")
        if version != f"{sys.version_info[0]}.{sys.version_info[1]}":
            raise Refused(f"the native interpreter is {sys.version.split()[0]}, the target {version}")
        if facts.get("Py_GIL_DISABLED"):
            raise Refused("a free-threaded target")
        multiarch = facts.get("MULTIARCH") or ""
        arch = multiarch.split("-")[0]
        if arch not in ELF_MACHINES:
            raise Refused(f"unknown target arch {multiarch!r}")
        soabi = facts["SOABI"]
        python_tag = f"cp{version.replace('.', '')}"
        cross = Path(tempfile.mkdtemp(prefix="ciwheels-cross-"))
        shutil.copy(data_file, cross / data_file.name)
        include = facts["INCLUDEPY"]
        (cross / "sitecustomize.py").write_text(SITECUSTOMIZE.format(
            machine=arch, multiarch=multiarch, include=include, platinclude=facts.get("CONFINCLUDEPY") or include))
        cross_env = {"_PYTHON_HOST_PLATFORM": f"linux-{arch}", "_PYTHON_SYSCONFIGDATA_NAME": name,
                     "PYTHONPATH": os.pathsep.join(filter(None, [str(cross), os.environ.get("PYTHONPATH")]))}

        def runner(cmd, cwd=None, extra_environ=None):
            env = {**os.environ, **(extra_environ or {}), **cross_env}
            pyproject_hooks.default_subprocess_runner(cmd, cwd=cwd, extra_environ=env)

        out = Path(outdir)
        with build.env.DefaultIsolatedEnv(installer=installer) as env:
            builder = build.ProjectBuilder.from_isolated_env(env, package, runner=runner)
            env.install(builder.build_system_requires)
            env.install(builder.get_requires_for_build("wheel", config))
            ready = time.monotonic()
            print(f"ciwheels cross: native build environment ({installer}) ready in {ready - started:.1f} s",
                  flush=True)
            wheel = Path(builder.build("wheel", out, config))
        print(f"ciwheels cross: backend ran natively in {time.monotonic() - ready:.1f} s: {wheel.name}", flush=True)
        check_wheel(wheel, arch, soabi, python_tag)
        return 0
    except Refused as e:
        reason = str(e)
    except build.BuildBackendException as e:
        reason = f"the build backend failed in cross mode ({e.exception.__class__.__name__}; its output is above)"
    except (build.BuildException, subprocess.CalledProcessError, OSError) as e:
        reason = f"the cross build failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    Path(reason_file).write_text(reason + "\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
