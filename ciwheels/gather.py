"""Stage 5, gather: collect wheels from downloaded job artifacts in any layout into one folder
with a manifest. Nothing is lost or silently replaced: every wheel filename is validated, its
sha256 is checked against the build report that names it, one filename with two contents is an
error, and files are written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from ciwheels.artifacts import (OK_STATUSES, REPORT, BuildReport, Manifest, ManifestEntry, ReportStatus, ReportWheel,
                                atomic_write, check_wheel_name, read_report, write_manifest)
from ciwheels.errors import CiwheelsError
from ciwheels.variants import index_files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _reports(sources: list[Path]) -> tuple[dict[Path, tuple[ReportWheel, BuildReport, Path]], list[BuildReport]]:
    """{wheel path: (its report entry, the report, the report's path)}, and every report read."""
    expected: dict[Path, tuple[ReportWheel, BuildReport, Path]] = {}
    reports = []
    for src in sources:
        for report_path in sorted(src.rglob(REPORT)):
            report = read_report(report_path)
            reports.append(report)
            for entry in report.wheels:
                expected[(report_path.parent / entry.file).resolve()] = (entry, report, report_path)
    return expected, reports


def gather(sources: list[Path], out: Path, expected_cells: list[str] | None = None
           ) -> tuple[list[ManifestEntry], list[BuildReport], Manifest]:
    """Collect what exists. A wheel whose build report says it failed (e.g. its binaries do not
    match the cell's ISA level) is left out; cells without a good wheel, and `expected_cells`
    without any report, are recorded as missing in the manifest for publish to name."""
    for src in sources:
        if not src.exists():
            raise CiwheelsError(f"gather source not found: {src}")
    expected, reports = _reports(sources)
    found: dict[tuple[str | None, str], ManifestEntry] = {}
    paths: dict[tuple[str | None, str], Path] = {}
    for src in sources:
        for wheel in sorted(p for p in (src.rglob("*.whl") if src.is_dir() else [src]) if p.is_file()):
            check_wheel_name(wheel.name, str(wheel.parent))
            digest = _sha256(wheel)
            entry, report, report_path = expected.get(wheel.resolve(), (None, BuildReport(), None))
            if entry is not None and report.status not in OK_STATUSES:
                continue  # built but not verified: recorded as missing below, never published
            if entry is not None and entry.sha256 != digest:
                raise CiwheelsError(f"{wheel}: sha256 {digest} differs from {entry.sha256} recorded in "
                                    f"{report_path}; the artifact changed after the build")
            registry = report.registry or None
            item = ManifestEntry(wheel.name, digest, wheel.stat().st_size, report.cell, report.isa, registry)
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
    write_index_files(out, items)
    statuses = [ReportStatus(r.cell, r.status) for r in reports]
    reported = {r.cell for r in reports}
    statuses += [ReportStatus(cell, "missing") for cell in expected_cells or () if cell not in reported]
    manifest = Manifest(tuple(items), tuple(sorted(statuses, key=lambda r: str(r.cell))))
    write_manifest(out, manifest)
    return items, reports, manifest


def write_index_files(out: Path, items: list[ManifestEntry]) -> None:
    """Beside wheel variants, in each registry's folder, their releases' `-variants.json` (PEP
    825): uv reads it from a --find-links folder too. publish computes it again from the wheels."""
    folders: dict[Path, list[Path]] = {}
    for item in items:
        folders.setdefault((out / item.path).parent, []).append(out / item.path)
    for folder, wheels in folders.items():
        for name, data in index_files(wheels).items():
            atomic_write(folder / name, lambda f, data=data: f.write(data))


def _atomic_copy(src: Path, dst: Path) -> None:
    def copy(f) -> None:
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f, 1 << 20)

    atomic_write(dst, copy)
