"""`ciwheels verify`: does every binary in a wheel stay within the wheel's ISA level?

The reading of a binary belongs to its arch's ISA family (isa/families.py): x86_64's
X86_ISA_1_NEEDED note, riscv64's .riscv.attributes. What a family cannot tell (aarch64 carries
no ISA marker, x86 objects built without -mneeded) is reported as undetermined, never guessed.
A binary within its level but showing nothing of it is "below" (build fails such cells above
the baseline)."""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ciwheels.catalog import Catalog, load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import open_regular
from ciwheels.core.wheel import InvalidWheelName, parse_wheel_name
from ciwheels.dist.artifacts import MANIFEST, REPORT, read_manifest, read_report
from ciwheels.dist.variants import (
    installed_variant,
    level_of,
    read_variant_json,
    variant_json_in,
)
from ciwheels.isa.families import family


@dataclass
class Finding:
    wheel: str
    member: str
    arch: str
    level: str
    needs: str
    status: str  # ok | below | too-high | undetermined | unreadable
    reason: str


# Bounds: a wheel is untrusted input. A member is extracted (streamed, to a temporary file, not
# into memory) only if its declared size and its compression ratio are plausible for a binary;
# the reader never takes more than the declared size, so a lying header cannot inflate it.
MAX_MEMBER = 4 << 30  # bytes of one binary, uncompressed
MAX_TOTAL = 16 << 30  # bytes of all binaries of one wheel, uncompressed
MAX_RATIO = 200  # uncompressed / compressed size of one member (binaries compress 2-10:1; deflate bombs 1000:1)
MAX_MEMBERS = 100_000  # entries in one wheel
_BINARY_SUFFIXES = (".so", ".pyd", ".dylib")

# e_machine and ELF class each family expects
_MACHINES = {"x86_64": ("EM_X86_64", "64"), "riscv64": ("EM_RISCV", "64")}


@dataclass
class _Member:
    name: str
    path: Path | None  # extracted copy, None when it was not extracted
    problem: str = ""  # why it is unreadable


def _members(z: zipfile.ZipFile, tmp: Path):
    """The wheel's ELF files and `.so` files (a `.so` that is not ELF is reported, not skipped),
    each extracted within the bounds, or with the reason it was not."""
    infos = z.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CiwheelsError(f"the wheel has {len(infos)} entries, more than the limit of {MAX_MEMBERS}")
    total = 0
    for n, info in enumerate(infos):
        if info.is_dir():
            continue
        is_binary_name = info.filename.endswith(_BINARY_SUFFIXES) or ".so." in info.filename.rsplit("/", 1)[-1]
        try:
            with z.open(info) as f:
                head = f.read(4)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
            if is_binary_name:
                yield _Member(info.filename, None, f"cannot read it from the wheel ({e})")
            continue
        if head != b"\x7fELF":
            if is_binary_name:
                yield _Member(info.filename, None, "not an ELF file")
            continue
        if info.file_size > MAX_MEMBER:
            yield _Member(info.filename, None, f"{info.file_size} bytes uncompressed, above the limit of "
                                               f"{MAX_MEMBER >> 30} GiB")
            continue
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            yield _Member(info.filename, None, f"compressed {info.file_size // info.compress_size}:1, above the "
                                               f"limit of {MAX_RATIO}:1 (a zip bomb?)")
            continue
        total += info.file_size
        if total > MAX_TOTAL:
            raise CiwheelsError(f"the wheel's binaries are more than {MAX_TOTAL >> 30} GiB uncompressed, the limit")
        out = tmp / f"member-{n}"
        try:
            with z.open(info) as src, open(out, "wb") as dst:
                left = info.file_size
                while left > 0:
                    block = src.read(min(1 << 20, left))
                    if not block:
                        break
                    dst.write(block)
                    left -= len(block)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as e:
            out.unlink(missing_ok=True)
            yield _Member(info.filename, None, f"cannot read it from the wheel ({e})")
            continue
        yield _Member(info.filename, out)
        out.unlink(missing_ok=True)


def _wheel_arch(name: str) -> str:

    try:
        tags = parse_wheel_name(name).tags  # a wheel variant's label is not a tag
    except InvalidWheelName as e:
        raise CiwheelsError(f"{name} is not a wheel file name ({e})") from None
    plat = next(iter(tags)).platform
    for arch in load_catalog().arches:
        if plat.endswith("_" + arch):
            return arch
    return plat


def recorded_level(wheel: Path) -> str | None:
    """The level recorded at build time: a build report or a gather manifest beside the wheel."""

    report = wheel.parent / REPORT
    if report.exists():
        data = read_report(report)
        if any(w.file == wheel.name for w in data.wheels):
            return data.isa
    manifest = wheel.parent / MANIFEST
    if manifest.exists():
        for w in read_manifest(manifest).wheels:
            if w.path == wheel.name and w.isa:
                return w.isa
    # gather puts a wheel bound for a registry in OUT/<registry>/, beside no manifest
    manifest = wheel.parent.parent / MANIFEST
    if manifest.exists():
        for w in read_manifest(manifest).wheels:
            if w.path == f"{wheel.parent.name}/{wheel.name}" and w.isa:
                return w.isa
    return None


def variant_level(wheel: Path, arch: str, catalog: Catalog, z: zipfile.ZipFile | None = None) -> str | None:
    """A wheel variant's level, read from its variant.json (PEP 825); `z`: the wheel, opened."""
    label = parse_wheel_name(wheel.name).label
    if not label:
        return None
    data = variant_json_in(z, wheel.name) if z is not None else read_variant_json(wheel)
    level = level_of(data, label, arch, catalog) if data else None
    return level.name if level else None


_EM_ARCH = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_RISCV": "riscv64", "EM_PPC64": "ppc64le",
            "EM_S390": "s390x", "EM_386": "i686", "EM_ARM": "armv7l"}


def verify_binary(path: Path, level_name: str | None, catalog: Catalog) -> list[Finding]:
    """One installed binary (e.g. site-packages/pkg/_core.so): its level is `level_name`, else
    that of the installed wheel variant whose RECORD lists it (its dist-info's variant.json)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    if not path.is_file() or path.stat().st_size > MAX_MEMBER:
        raise CiwheelsError(f"{path}: not a regular file within {MAX_MEMBER >> 30} GiB")
    try:
        with open(path, "rb") as f:
            machine = ELFFile(f)["e_machine"]
    except (OSError, ELFError) as e:
        raise CiwheelsError(f"{path}: not a readable ELF binary ({e})") from None
    arch = _EM_ARCH.get(machine, machine)
    if arch not in catalog.arches:
        raise CiwheelsError(f"{path}: no ISA levels for machine {arch!r}")
    if level_name is None:
        found = installed_variant(path)
        level = level_of(found[0], None, arch, catalog) if found else None
        if level is None:
            raise CiwheelsError(f"{path}: no installed wheel variant lists it; its level is unknown",
                                hint="pass --isa LEVEL")
        level_name = level.name
    canon = catalog.level_alias(arch, level_name)
    if canon is None:
        raise CiwheelsError(f"{path.name}: {level_name!r} is not an ISA level of {arch}", value=level_name,
                            allowed=[lv.name for lv in catalog.arches[arch].levels])
    level = catalog.levels[canon]

    def finding(needs: str, status: str, reason: str) -> Finding:
        return Finding(str(path), path.name, arch, level.name, needs, status, reason)

    return [_inspect(path, arch, family(arch, catalog), level, (), finding)]


def verify_wheel(wheel: Path, level_name: str | None = None, catalog: Catalog | None = None,
                 dropped: tuple[str, ...] = ()) -> list[Finding]:
    """One finding per ELF binary in the wheel. `dropped`: parts of the level the build's
    compiler did not know (they cannot be evidence of the level)."""
    catalog = catalog or load_catalog()
    if wheel.suffix != ".whl":
        return verify_binary(wheel, level_name, catalog)
    import os

    arch = _wheel_arch(wheel.name)
    # the wheel is opened once, as an untrusted file: not a link, FIFO or device (a FIFO named
    # like a wheel would block), then read as a zip (a file that is not one is an error)
    f = os.fdopen(open_regular(wheel, "wheel", 64 << 30), "rb")
    try:
        z = zipfile.ZipFile(f)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        f.close()
        raise CiwheelsError(f"{wheel}: cannot open the wheel ({e})") from None
    try:
        level_name = level_name or recorded_level(wheel) or variant_level(wheel, arch, catalog, z)
        if arch not in catalog.arches:
            raise CiwheelsError(f"{wheel.name}: no ISA levels for platform {arch!r}")
        if level_name is None:
            raise CiwheelsError(f"{wheel.name}: no ISA level recorded beside it (build-report.json or manifest.json)",
                                hint="pass --isa LEVEL")
        canon = catalog.level_alias(arch, level_name)
        if canon is None:
            raise CiwheelsError(f"{wheel.name}: {level_name!r} is not an ISA level of {arch}", value=level_name,
                                allowed=[lv.name for lv in catalog.arches[arch].levels])
    except BaseException:
        z.close()
        f.close()
        raise
    level = catalog.levels[canon]
    fam = family(arch, catalog)
    findings = []
    with f, z, tempfile.TemporaryDirectory(prefix="ciwheels-verify-") as tmp:
        for member in _members(z, Path(tmp)):
            def finding(needs: str, status: str, reason: str) -> Finding:
                return Finding(wheel.name, member.name, arch, level.name, needs, status, reason)

            if member.path is None:
                findings.append(finding("", "unreadable", member.problem))
                continue
            findings.append(_inspect(member.path, arch, fam, level, dropped, finding))
    return findings


def _inspect(path: Path, arch: str, fam, level, dropped, finding) -> Finding:
    """One binary's finding. A truncated, corrupt or foreign ELF file is "unreadable", with the
    reason: the reader (pyelftools) raises many kinds of errors on such input, and every one of
    them is a verdict about this file, never a crash of the command."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        try:
            elf = ELFFile(f)
            size = path.stat().st_size
            for table, count, entry in (("e_shoff", "e_shnum", "e_shentsize"), ("e_phoff", "e_phnum", "e_phentsize")):
                if elf[count] and elf[table] + elf[count] * elf[entry] > size:
                    return finding("", "unreadable", f"truncated or corrupt: its {table[2:]} table ends past the "
                                                     f"end of the file ({size} bytes)")
            machine, bits = elf["e_machine"], str(elf.elfclass)
            wanted = _MACHINES.get(arch)
            if wanted and (machine, bits) != wanted:
                return finding("", "unreadable", f"a {bits}-bit {machine} binary, not a {arch} one")
            seen = fam.inspect(elf, level, dropped)
        except ELFError as e:
            return finding("", "unreadable", f"not a readable ELF file ({e})")
        except Exception as e:  # noqa: BLE001 - struct.error, ValueError, KeyError, ... from corrupt input
            return finding("", "unreadable", f"a corrupt ELF file ({type(e).__name__}: {e})")
    return finding(seen.needs, seen.status, seen.reason)


def as_json(findings: list[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], indent=1)


def verdict(findings, level, can_tell: bool) -> tuple[str, str]:
    """THE verdict on one wheel's binaries against its level, for build (the report's status)
    and `ciwheels verify` (its exit code) alike: (status, why). A binary above the level, or
    unreadable (it may hide one), is "isa-mismatch"; above the baseline, where the family can
    tell, a wheel must show the level, else "isa-unproven"; otherwise "ok"."""
    too_high = [f for f in findings if f.status in ("too-high", "unreadable")]  # unreadable: may hide a level
    if too_high:
        return "isa-mismatch", f"{too_high[0].member} {too_high[0].reason}"
    if level.baseline or not can_tell:
        return "ok", ""
    if not findings:
        return "isa-unproven", f"no binary in the wheel shows {level.name}"
    weak = [f for f in findings if f.status in ("undetermined", "below")]
    if weak:
        return "isa-unproven", f"{weak[0].member}: {weak[0].reason}"
    return "ok", ""


def verdicts(findings: list[Finding], catalog: Catalog | None = None) -> dict[str, tuple[str, str]]:
    """{wheel (or binary): verdict} of `verify_wheel`'s findings, wheel by wheel."""
    catalog = catalog or load_catalog()
    by_wheel: dict[str, list[Finding]] = {}
    for f in findings:
        by_wheel.setdefault(f.wheel, []).append(f)
    out = {}
    for wheel, group in by_wheel.items():
        level = catalog.levels[group[0].level]
        out[wheel] = verdict(group, level, family(group[0].arch, catalog).can_tell)
    return out
