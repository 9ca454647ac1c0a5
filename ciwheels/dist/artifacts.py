"""The files stages hand to each other: a build report (`build` -> `gather`, `verify`) and a
gather manifest (`gather` -> `publish`, `verify`). This module is the only code that reads or
writes them; everything else sees the typed objects.

    OUT/<cell>/build-report.json   BuildReport: one cell's build and the wheels it made
    DIST/manifest.json             Manifest: the gathered wheels and where each one goes

Both carry `"format": 1`. A file without `format` was written before it existed and is read as
format 1. A file this version cannot read (bad JSON, wrong shape, a newer format) is a
CiwheelsError naming the file, never a traceback."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import read_regular
from ciwheels.core.wheel import InvalidWheelName, parse_wheel_name

FORMAT = 1
REPORT = "build-report.json"
MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class ReportWheel:
    """A wheel a build made, as its report records it."""

    file: str
    sha256: str | None = None
    size: int | None = None
    isa_check: str | None = None  # "ok" | "too-high"; None: not checked


@dataclass(frozen=True, slots=True)
class BuildReport:
    """OUT/<cell>/build-report.json: one cell's build. Every field but `wheels` may be missing
    from a file (reports written by hand, or by older versions)."""

    cell: str | None = None
    job: str | None = None
    status: str | None = None  # ok | failed | isa-mismatch | dry-run
    python: str | None = None
    isa: str | None = None
    registry: str | None = None  # the registry the cell's wheels go to; None: none named
    arch: str | None = None
    policy: str | None = None
    wheels: tuple[ReportWheel, ...] = ()
    duration_seconds: float | None = None
    log: str | None = None
    cibuildwheel_exit: int | None = None
    # cross mode (README "Cross mode"): "native" (built natively), "fallback (<reason>)" (built
    # emulated after all), "off" or "off (<reason>)"; None: not said (older reports)
    cross: str | None = None
    format: int = FORMAT


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One gathered wheel. `path` is where it lies in the gather output: one folder per
    destination registry, since wheels of two ISA levels share one file name."""

    file: str
    sha256: str
    size: int | None = None
    cell: str | None = None
    isa: str | None = None
    registry: str | None = None
    path: str = ""

    def __post_init__(self) -> None:
        if not self.path:
            object.__setattr__(self, "path", f"{self.registry}/{self.file}" if self.registry else self.file)


@dataclass(frozen=True, slots=True)
class ReportStatus:
    cell: str | None
    status: str | None


@dataclass(frozen=True, slots=True)
class Manifest:
    """DIST/manifest.json: what `ciwheels gather` collected."""

    wheels: tuple[ManifestEntry, ...] = ()
    reports: tuple[ReportStatus, ...] = ()
    format: int = FORMAT

    def entry(self, path: str) -> ManifestEntry | None:
        """The entry of a wheel by its path in the gather output (posix, relative)."""
        return next((w for w in self.wheels if w.path == path), None)

    @property
    def missing(self) -> list[str]:
        """Cells with no wheel to publish: failed builds, wheels that failed verification, and
        (when gather knew the plan) cells whose job left no report at all."""
        return sorted(str(r.cell) for r in self.reports if r.status not in OK_STATUSES)


OK_STATUSES = ("ok", "dry-run")


# -- checks shared by the readers and gather ---------------------------------------------------
def check_wheel_name(name: str, where: str) -> None:
    """A wheel name from an artifact must be a plain, valid wheel file name (never a path); a
    wheel variant's label (PEP 825) is allowed."""

    if "/" in name or "\\" in name or name in (".", "..") or ".." in Path(name).parts or name.startswith("."):
        raise CiwheelsError(f"{where}: refusing the wheel name {name!r}: it must be a plain file name")
    try:
        parse_wheel_name(name)
    except InvalidWheelName as e:
        raise CiwheelsError(f"{where}: {name!r} is not a valid wheel file name ({e})") from None


class _Shape(Exception):
    """A value of the wrong type or a missing key: becomes a CiwheelsError naming the file."""


def _get(data: dict, key: str, kind: type | tuple[type, ...], where: str, *, required: bool = False):
    at = f"{where}: " if where else ""
    if key not in data or data[key] is None:
        if required:
            raise _Shape(f"{at}{key!r} is missing")
        return None
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        names = " or ".join(k.__name__ for k in kinds)
        raise _Shape(f"{at}{key!r} must be {names}, not {type(value).__name__} {value!r}")
    return value


MAX_JSON = 16 << 20  # bytes of a build report or manifest


def _read_bounded(path: Path, what: str) -> bytes:
    """The bytes of a regular file (not a link) of at most MAX_JSON bytes: artifacts are
    untrusted (core.files.read_regular)."""
    return read_regular(path, what, MAX_JSON)


def _load(path: Path, what: str) -> dict:
    raw = _read_bounded(path, what)
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise CiwheelsError(f"not a ciwheels {what}: invalid JSON ({e})", file=str(path)) from None
    except RecursionError:
        raise CiwheelsError(f"not a ciwheels {what}: JSON nested too deeply", file=str(path)) from None
    if not isinstance(data, dict):
        raise CiwheelsError(f"not a ciwheels {what}: a JSON object was expected, not {type(data).__name__}",
                            file=str(path))
    version = data.get("format", FORMAT)  # no `format`: written before it existed, format 1
    if version != FORMAT or isinstance(version, bool):
        raise CiwheelsError(f"a {what} in format {version!r}, which this ciwheels cannot read "
                            f"(it reads format {FORMAT})", file=str(path),
                            hint="use the ciwheels version that wrote it, or run that stage again")
    return data


def _items(data: dict, key: str) -> list[dict]:
    items = _get(data, key, list, "", required=True)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _Shape(f"{key}[{i}] must be an object, not {type(item).__name__}")
    return items


# -- build reports ----------------------------------------------------------------------------
def report_json(report: BuildReport) -> dict:
    return {"format": report.format, "cell": report.cell, "job": report.job, "status": report.status,
            "python": report.python, "isa": report.isa, "registry": report.registry, "arch": report.arch,
            "policy": report.policy,
            "wheels": [{"file": w.file, "sha256": w.sha256, "size": w.size, "isa_check": w.isa_check}
                       for w in report.wheels],
            "duration_seconds": report.duration_seconds, "log": report.log,
            "cibuildwheel_exit": report.cibuildwheel_exit, "cross": report.cross}


def write_report(folder: Path, report: BuildReport) -> Path:
    """FOLDER/build-report.json (FOLDER: the cell's folder, beside its wheels). Returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT
    _write_json(path, report_json(report), sort_keys=False)
    return path


def read_report(path: Path) -> BuildReport:
    data = _load(path, "build report")
    try:
        wheels = []
        for i, w in enumerate(_items(data, "wheels")):
            where = f"wheels[{i}]"
            wheels.append(ReportWheel(_get(w, "file", str, where, required=True), _get(w, "sha256", str, where),
                                      _get(w, "size", int, where), _get(w, "isa_check", str, where)))
        s = {k: _get(data, k, str, "") for k in ("cell", "job", "status", "python", "isa", "registry", "arch",
                                                 "policy", "log", "cross")}
        report = BuildReport(**s, wheels=tuple(wheels),
                             duration_seconds=_get(data, "duration_seconds", (int, float), ""),
                             cibuildwheel_exit=_get(data, "cibuildwheel_exit", int, ""))
    except _Shape as e:
        raise CiwheelsError(f"not a ciwheels build report: {e}", file=str(path)) from None
    for w in report.wheels:
        check_wheel_name(w.file, str(path))
    if report.registry and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", report.registry):
        raise CiwheelsError(f"registry name {report.registry!r} is not a plain name", file=str(path))
    return report


# -- gather manifests -------------------------------------------------------------------------
def manifest_json(manifest: Manifest) -> dict:
    return {"format": manifest.format,
            "wheels": [{"file": w.file, "sha256": w.sha256, "size": w.size, "cell": w.cell, "isa": w.isa,
                        "registry": w.registry, "path": w.path} for w in manifest.wheels],
            "reports": [{"cell": r.cell, "status": r.status} for r in manifest.reports]}


def write_manifest(out: Path, manifest: Manifest) -> Path:
    """OUT/manifest.json, atomically (temporary file, fsync, rename). Returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST
    _write_json(path, manifest_json(manifest), sort_keys=True)
    return path


def read_manifest(path: Path) -> Manifest:
    data = _load(path, "manifest")
    try:
        wheels = []
        for i, w in enumerate(_items(data, "wheels")):
            where = f"wheels[{i}]"
            entry = ManifestEntry(_get(w, "file", str, where, required=True),
                                  _get(w, "sha256", str, where, required=True), _get(w, "size", int, where),
                                  _get(w, "cell", str, where), _get(w, "isa", str, where),
                                  _get(w, "registry", str, where), _get(w, "path", str, where) or "")
            wheels.append(entry)
        reports = [ReportStatus(_get(r, "cell", str, f"reports[{i}]"), _get(r, "status", str, f"reports[{i}]"))
                   for i, r in enumerate(_items(data, "reports") if "reports" in data else [])]
    except _Shape as e:
        raise CiwheelsError(f"not a ciwheels manifest: {e}", file=str(path)) from None
    for w in wheels:
        check_wheel_name(w.file, str(path))
        p = PurePosixPath(w.path)
        if p.is_absolute() or ".." in p.parts or "\\" in w.path or p.name != w.file:
            raise CiwheelsError(f"refusing the path {w.path!r} of {w.file}: it must be a relative path "
                                "inside the gather output ending in the file name", file=str(path))
    return Manifest(tuple(wheels), tuple(reports))


# -- writing ----------------------------------------------------------------------------------
def _write_json(path: Path, data: dict, *, sort_keys: bool) -> None:
    text = json.dumps(data, indent=2, sort_keys=sort_keys) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: an interrupted
    writer leaves either the old file or the complete new one, never half of one. `write(f)`
    gets the temporary file, opened for binary writing."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ciwheels-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
