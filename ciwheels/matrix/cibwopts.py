"""The one adapter from typed cell data to cibuildwheel's options (CIBW_* variables).

Nothing upstream of it writes a cibuildwheel string: resolve keeps settings, environment and
image as data, and build changes data (the flags the image's compiler accepts, the CA bundle
the container must trust) before calling this again. explain, `matrix --json`, dry runs and
real builds all show what this module returns."""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Any

from ciwheels.catalog import LIBC_PLATFORM, Catalog, Python
from ciwheels.isa.families import family
from ciwheels.matrix.cascade import combine_isa
from ciwheels.matrix.model import Cell, Origin

CONSTRAINTS_FILE = "/tmp/ciwheels-build-constraints.txt"
# Images made by `ciwheels image build` compile with native x86_64-hosted cross compilers unless
# this variable is 0 in the build container (then the image's own, emulated compilers run).
NATIVE_COMPILERS_VARIABLE = "CIWHEELS_NATIVE_COMPILERS"
# Cross mode: ciwheels' cibuildwheel patch runs this command of the image for the build step
# (images/README.md, "Cross mode"); the frontend build[uv] installs the test environment with the
# image's native uv.
CROSS_BUILD_VARIABLE = "CIWHEELS_CROSS_BUILD"
CROSS_BUILD_COMMAND = "/opt/ciwheels-xpython/ciwheels-cross-build"
CROSS_FRONTEND = "build[uv]"


def selection_options(python: Python, libc: str, arch: str, image: str) -> tuple[str, dict[str, str]]:
    """(identifier, the options that select one Python's build and its image)."""
    identifier = f"{python.id}-{LIBC_PLATFORM[libc]}_{arch}"
    cibw = {"CIBW_BUILD": identifier, "CIBW_ARCHS_LINUX": arch}
    if python.enable:
        cibw["CIBW_ENABLE"] = python.enable
    # cibuildwheel 4.3 builds PyPy in the arch's image too (container_image_for_python_configuration
    # reads manylinux_images[arch]): its manylinux-pypy_*-image options have no effect
    cibw[f"CIBW_{LIBC_PLATFORM[libc].upper()}_{arch.upper()}_IMAGE"] = image
    return identifier, cibw


def shared_options(env: dict[str, str], settings: dict[str, Any], repair: str | None) -> dict[str, str]:
    """The options that do not depend on the Python (many cells share them)."""
    cibw = {}
    env = dict(env)
    if settings.get("native-compilers", True) is False:
        env[NATIVE_COMPILERS_VARIABLE] = "0"
    if settings.get("cross"):
        env[CROSS_BUILD_VARIABLE] = CROSS_BUILD_COMMAND
        if "build-frontend" not in settings.get("cibuildwheel-options", {}):
            cibw["CIBW_BUILD_FRONTEND"] = CROSS_FRONTEND
    before_all = settings.get("before-all", "")
    build_requires = settings.get("build-requires", ())
    # cross mode installs with uv, which reads only its own variable: the pins must still hold,
    # ciwheels' build-requires (over the project's, as for pip) or the project's own (frozenlist
    # pins Cython with PIP_CONSTRAINT)
    if build_requires:
        env["PIP_CONSTRAINT"] = CONSTRAINTS_FILE
        if settings.get("cross"):
            env["UV_CONSTRAINT"] = CONSTRAINTS_FILE
        write = "printf '%s\\n' " + " ".join(shlex.quote(r) for r in build_requires) + f" > {CONSTRAINTS_FILE}"
        before_all = f"{write} && {before_all}" if before_all else write
    elif settings.get("cross") and "PIP_CONSTRAINT" in env and "UV_CONSTRAINT" not in env:
        env["UV_CONSTRAINT"] = env["PIP_CONSTRAINT"]
    if env:
        cibw["CIBW_ENVIRONMENT_LINUX"] = " ".join(f"{k}={_dq(v)}" for k, v in env.items())
    if before_all:
        cibw["CIBW_BEFORE_ALL_LINUX"] = before_all
    if settings.get("before-build"):
        cibw["CIBW_BEFORE_BUILD_LINUX"] = settings["before-build"]
    if settings.get("test-command"):
        cibw["CIBW_TEST_COMMAND_LINUX"] = settings["test-command"]
    if settings.get("test-requires"):
        cibw["CIBW_TEST_REQUIRES_LINUX"] = " ".join(settings["test-requires"])
    if repair:
        cibw["CIBW_REPAIR_WHEEL_COMMAND_LINUX"] = repair
    return cibw


def cell_settings(cell: Cell) -> dict[str, Any]:
    return {"before-all": cell.before_all, "before-build": cell.before_build, "build-requires": cell.build_requires,
            "test-command": cell.test_command, "test-requires": cell.test_requires,
            "native-compilers": cell.native_compilers, "cross": cell.cross,
            "cibuildwheel-options": cell.cibuildwheel_options}


def cibw_options(cell: Cell, catalog: Catalog, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Every CIBW_* option that builds exactly this cell. `extra_env`: variables build adds for
    the machine it runs on (e.g. the CA bundle), appended to the cell's environment."""
    _, head = selection_options(catalog.pythons[cell.python], cell.libc, cell.arch, cell.image)
    env = {**cell.environment, **(extra_env or {})}
    repair = family(cell.arch, catalog).repair_command(catalog.levels[cell.isa])
    return {**head, **shared_options(env, cell_settings(cell), repair)}


def config_file(cell: Cell) -> str:
    """The cibuildwheel config file a build runs with (`--config-file`): the cell's
    cibuildwheel-options as a [tool.cibuildwheel] table. Build always passes one, so cibuildwheel
    never reads the package's own [tool.cibuildwheel]: the cell is the one source of truth (in
    builder mode the sdist's configuration is already in it, as the lowest cascade layer)."""
    lines = ["# Written by ciwheels for this build; the matrix's cibuildwheel-options.", "[tool.cibuildwheel]"]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in sorted(cell.cibuildwheel_options.items())]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return _toml_value(str(key))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    out = []
    for ch in str(value):
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValueError(f"a lone surrogate cannot be written to TOML: {value!r}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def with_isa_flags(cell: Cell, flags: dict[str, str]) -> Cell:
    """The cell built with other ISA flags (e.g. the ones the image's compiler accepts): the
    flags are data, combined with the cell's own environment by the cascade's ISA rules."""
    env, _ = combine_isa(flags, Origin("build"), cell.user_environment,
                         {f"environment.{k}": Origin("matrix") for k in cell.user_environment})
    return replace(cell, isa_environment=dict(flags), environment=env, cibw_parts=())


def _dq(value: str) -> str:
    """Double-quote for cibuildwheel's bash-like environment parser; $VARS still expand."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'
