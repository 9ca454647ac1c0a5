"""Stage 5, gather: collect wheels from downloaded job artifacts in any layout into one folder
with a manifest. Nothing is lost or silently replaced: every wheel filename is validated, its
sha256 is checked against the build report that names it, one filename with two contents is an
error, and files are written atomically (temporary file, fsync, rename).

Artifacts are untrusted: links are never followed out of the sources (a `.whl` linking to
/proc/self/environ would copy the job's environment into the output), only regular files are
read, every read is bounded, a "wheel" that is not a zip with a .dist-info is refused, and the
output folder is never read back as a source. A source that is itself a gather output keeps
the registry, cell and level its manifest records."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import open_regular, sha256_file
from ciwheels.dist.artifacts import (
    MANIFEST,
    OK_STATUSES,
    REPORT,
    BuildReport,
    Manifest,
    ManifestEntry,
    ReportStatus,
    ReportWheel,
    atomic_write,
    check_wheel_name,
    read_manifest,
    read_report,
    write_manifest,
)
from ciwheels.dist.variants import index_files

MAX_WHEEL = 4 << 30  # bytes of one wheel (PyPI's largest are about 2 GiB)
MAX_FILES = 200_000  # entries walked in all sources


def _walk(sources: list[Path], out: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(wheels, build reports, manifests) below the sources, without following links to
    folders and without entering the output folder. A `.whl` that is a link is refused when it
    points out of the sources and skipped otherwise (what it points to is gathered itself)."""
    out_real = out.resolve()
    roots = [src.resolve() for src in sources]
    wheels, reports, manifests = [], [], []
    seen = 0

    def inside_sources(path: Path) -> bool:
        real = path.resolve()
        return any(real == r or real.is_relative_to(r) for r in roots) and not real.is_relative_to(out_real)

    def consider(path: Path) -> None:
        if path.name.endswith(".whl"):
            if path.is_symlink():
                if not inside_sources(path):
                    raise CiwheelsError(f"{path} is a link to {os.readlink(path)!r}, out of the gather sources; "
                                        "refusing to follow it")
                return
            wheels.append(path)
        elif path.name in (REPORT, MANIFEST) and not path.is_symlink():
            (reports if path.name == REPORT else manifests).append(path)

    for src in sources:
        if src.is_symlink() and not src.is_dir():
            raise CiwheelsError(f"gather source {src} is a link; pass the file itself")
        if not src.is_dir():
            consider(src)
            continue
        real = src.resolve()
        if real == out_real or real.is_relative_to(out_real):
            raise CiwheelsError(f"gather source {src} is the output folder {out} (or inside it)",
                                hint="gather into a folder outside the sources")
        try:
            for top, dirs, files in os.walk(src, onerror=_walk_error, followlinks=False):
                here = Path(top)
                dirs[:] = sorted(d for d in dirs if (here / d).resolve() != out_real)
                for name in sorted(files):
                    seen += 1
                    if seen > MAX_FILES:
                        raise CiwheelsError(f"more than {MAX_FILES} files in the gather sources, the limit")
                    consider(here / name)
        except OSError as e:
            raise CiwheelsError(f"cannot read the gather source {src}: {e.strerror or e}") from None
    return wheels, reports, manifests


def _walk_error(e: OSError) -> None:
    raise CiwheelsError(f"cannot read {e.filename}: {e.strerror or e}")


def _reports(report_paths: list[Path]) -> tuple[dict[Path, tuple[ReportWheel, BuildReport, Path]], list[BuildReport]]:
    """{wheel path: (its report entry, the report, the report's path)}, and every report read."""
    expected: dict[Path, tuple[ReportWheel, BuildReport, Path]] = {}
    reports = []
    for report_path in report_paths:
        report = read_report(report_path)
        reports.append(report)
        for entry in report.wheels:
            expected[(report_path.parent / entry.file).resolve()] = (entry, report, report_path)
    return expected, reports


def _earlier(manifest_paths: list[Path]) -> tuple[dict[Path, tuple[ManifestEntry, Path]], list[ReportStatus]]:
    """{wheel path: (its entry, the manifest)} of sources that are earlier gather outputs, and
    the cell statuses those manifests record."""
    out, statuses = {}, []
    for path in manifest_paths:
        manifest = read_manifest(path)
        statuses += manifest.reports
        for entry in manifest.wheels:
            out[(path.parent / entry.path).resolve()] = (entry, path)
    return out, statuses


def _open_regular(path: Path) -> int:
    """A file descriptor of a wheel, which must be a regular file, not a link (core.files.open_regular)."""
    return open_regular(path, "wheel", MAX_WHEEL)


def _hash_and_check(path: Path) -> tuple[str, int]:
    """(sha256, size) of a wheel, read once and bounded; a file that is not a zip holding a
    `.dist-info/WHEEL` is refused (it would only fail later, at publish)."""
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        h, size = hashlib.sha256(), 0
        for block in iter(lambda: f.read(1 << 20), b""):
            size += len(block)
            if size > MAX_WHEEL:
                raise CiwheelsError(f"{path} grew beyond {MAX_WHEEL >> 30} GiB while being read")
            h.update(block)
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
            raise CiwheelsError(f"{path} is not a wheel: not a readable zip archive ({e})") from None
    if not any(n.count("/") == 1 and n.endswith(".dist-info/WHEEL") for n in names):
        raise CiwheelsError(f"{path} is not a wheel: it holds no .dist-info/WHEEL")
    return h.hexdigest(), size


def gather(sources: list[Path], out: Path, expected_cells: list[str] | None = None
           ) -> tuple[list[ManifestEntry], list[BuildReport], Manifest]:
    """Collect what exists. A wheel whose build report says it failed (e.g. its binaries do not
    match the cell's ISA level) is left out; cells without a good wheel, and `expected_cells`
    without any report, are recorded as missing in the manifest for publish to name."""
    for src in sources:
        if not src.exists() and not src.is_symlink():
            raise CiwheelsError(f"gather source not found: {src}")
    wheel_paths, report_paths, manifest_paths = _walk(sources, out)
    expected, reports = _reports(report_paths)
    earlier, earlier_statuses = _earlier(manifest_paths)
    found: dict[tuple[str | None, str], ManifestEntry] = {}
    paths: dict[tuple[str | None, str], Path] = {}
    for wheel in sorted(wheel_paths):
        check_wheel_name(wheel.name, str(wheel.parent))
        entry, report, report_path = expected.get(wheel.resolve(), (None, BuildReport(), None))
        if entry is not None and report.status not in OK_STATUSES:
            continue  # built but not verified: recorded as missing below, never published
        digest, size = _hash_and_check(wheel)
        if entry is not None and entry.sha256 != digest:
            raise CiwheelsError(f"{wheel}: sha256 {digest} differs from {entry.sha256} recorded in "
                                f"{report_path}; the artifact changed after the build")
        previous, manifest_path = earlier.get(wheel.resolve(), (None, None))
        if entry is None and previous is not None:
            if previous.sha256 != digest:
                raise CiwheelsError(f"{wheel}: sha256 {digest} differs from {previous.sha256} recorded in "
                                    f"{manifest_path}; the artifact changed after it was gathered")
            item = ManifestEntry(wheel.name, digest, size, previous.cell, previous.isa, previous.registry)
        else:
            item = ManifestEntry(wheel.name, digest, size, report.cell, report.isa, report.registry or None)
        key = (item.registry, wheel.name)
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
    try:
        out.mkdir(parents=True, exist_ok=True)
        for key, item in sorted(found.items(), key=lambda kv: kv[1].path):
            target = out / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() or target.is_symlink():
                if target.is_symlink() or not target.is_file() or sha256_file(target) != item.sha256:
                    raise CiwheelsError(f"{target} already exists with other contents; refusing to overwrite it")
                continue
            _atomic_copy(paths[key], target, item.sha256)
        items = sorted(found.values(), key=lambda i: i.path)
        write_index_files(out, items)
        statuses = [ReportStatus(r.cell, r.status) for r in reports]
        reported = {r.cell for r in reports}
        statuses += [s for s in earlier_statuses if s.cell not in reported]
        reported |= {s.cell for s in earlier_statuses}
        statuses += [ReportStatus(cell, "missing") for cell in expected_cells or () if cell not in reported]
        manifest = Manifest(tuple(items), tuple(sorted(statuses, key=lambda r: str(r.cell))))
        write_manifest(out, manifest)
    except OSError as e:
        raise CiwheelsError(f"cannot write the gather output {out}: {e.strerror or e}"
                            + (f" ({e.filename})" if e.filename else "")) from None
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


def _atomic_copy(src: Path, dst: Path, sha256: str) -> None:
    """Copy what was hashed: the copy is hashed again, and refused if the source changed."""
    def copy(f) -> None:
        h = hashlib.sha256()
        with os.fdopen(_open_regular(src), "rb") as s:
            for block in iter(lambda: s.read(1 << 20), b""):
                h.update(block)
                f.write(block)
        if h.hexdigest() != sha256:
            raise CiwheelsError(f"{src} changed while it was being gathered")

    atomic_write(dst, copy)
