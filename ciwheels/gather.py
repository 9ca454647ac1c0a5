"""Stage 5, gather: collect wheels from downloaded job artifacts in any layout into one folder
with a manifest. Nothing is lost or silently replaced: every wheel filename is validated, its
sha256 is checked against the build report that names it, one filename with two contents is an
error, and files are written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ciwheels.errors import CiwheelsError

REPORT = "build-report.json"


@dataclass(frozen=True, slots=True)
class Gathered:
    file: str
    sha256: str
    size: int
    cell: str | None
    isa: str | None
    registry: str | None
    source: str

    @property
    def path(self) -> str:
        """Where it lies in the output: one folder per destination registry, since wheels of
        two ISA levels share one file name but go to different registries."""
        return f"{self.registry}/{self.file}" if self.registry else self.file


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_name(name: str, where: str) -> None:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    if "/" in name or "\\" in name or name in (".", "..") or ".." in Path(name).parts or name.startswith("."):
        raise CiwheelsError(f"{where}: refusing the wheel name {name!r}: it must be a plain file name")
    try:
        parse_wheel_filename(name)
    except InvalidWheelFilename as e:
        raise CiwheelsError(f"{where}: {name!r} is not a valid wheel file name ({e})") from None


def _reports(sources: list[Path]) -> tuple[dict[Path, dict], list[dict]]:
    """{wheel path: its report entry + report}, and every report read."""
    expected: dict[Path, dict] = {}
    reports = []
    for src in sources:
        for report_path in sorted(src.rglob(REPORT)):
            try:
                report = json.loads(report_path.read_text(encoding="utf-8"))
                wheels = report["wheels"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise CiwheelsError(f"{report_path}: not a ciwheels build report ({e})") from None
            reports.append(report)
            for entry in wheels:
                _check_name(str(entry.get("file", "")), str(report_path))
                expected[(report_path.parent / entry["file"]).resolve()] = {**entry, "report": report,
                                                                          "report_path": report_path}
    return expected, reports


def gather(sources: list[Path], out: Path) -> tuple[list[Gathered], list[dict]]:
    for src in sources:
        if not src.exists():
            raise CiwheelsError(f"gather source not found: {src}")
    expected, reports = _reports(sources)
    found: dict[tuple[str | None, str], Gathered] = {}
    paths: dict[tuple[str | None, str], Path] = {}
    for src in sources:
        for wheel in sorted(p for p in (src.rglob("*.whl") if src.is_dir() else [src]) if p.is_file()):
            _check_name(wheel.name, str(wheel.parent))
            digest = _sha256(wheel)
            entry = expected.get(wheel.resolve())
            if entry is not None and entry.get("sha256") != digest:
                raise CiwheelsError(f"{wheel}: sha256 {digest} differs from {entry['sha256']} recorded in "
                                    f"{entry['report_path']}; the artifact changed after the build")
            report = entry["report"] if entry else {}
            registry = report.get("registry") or None
            if registry is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", registry):
                raise CiwheelsError(f"{entry['report_path']}: registry name {registry!r} is not a plain name")
            item = Gathered(wheel.name, digest, wheel.stat().st_size, report.get("cell"), report.get("isa"),
                            registry, str(wheel))
            key = (registry, wheel.name)
            if key in found:
                if found[key].sha256 != digest:
                    raise CiwheelsError(f"{wheel.name} appears twice with different contents: {paths[key]} "
                                        f"and {wheel}; refusing to pick one")
                continue
            found[key] = item
            paths[key] = wheel
    missing = [p for p in expected if not p.exists()]
    if missing:
        raise CiwheelsError(f"{len(missing)} wheel(s) named by build reports are missing, e.g. {missing[0]}")
    out.mkdir(parents=True, exist_ok=True)
    for key, item in sorted(found.items(), key=lambda kv: kv[1].path):
        target = out / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            if _sha256(target) != item.sha256:
                raise CiwheelsError(f"{target} already exists with other contents; refusing to overwrite it")
            continue
        _atomic_copy(paths[key], target)
    items = sorted(found.values(), key=lambda i: i.path)
    manifest = {
        "wheels": [{**{k: v for k, v in asdict(i).items() if k != "source"}, "path": i.path} for i in items],
        "reports": sorted(({"cell": r.get("cell"), "status": r.get("status")} for r in reports),
                          key=lambda r: str(r["cell"])),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _atomic(out / "manifest.json", lambda f: f.write(text.encode()))
    return items, reports


def _atomic_copy(src: Path, dst: Path) -> None:
    def copy(f) -> None:
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f, 1 << 20)

    _atomic(dst, copy)


def _atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: an interrupted
    gather leaves either the old file or the complete new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".gather-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
