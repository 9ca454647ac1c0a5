"""`ciwheels verify`: does every binary in a wheel stay within the wheel's ISA level?

The reading of a binary belongs to its arch's ISA family (families.py): x86_64's
X86_ISA_1_NEEDED note, riscv64's .riscv.attributes. What a family cannot tell (aarch64 carries
no ISA marker, x86 objects built without -mneeded) is reported as undetermined, never guessed.
A binary within its level but showing nothing of it is "below" (build fails such cells above
the baseline)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ciwheels.catalog import Catalog, load_catalog
from ciwheels.errors import CiwheelsError
from ciwheels.families import family

@dataclass
class Finding:
    wheel: str
    member: str
    arch: str
    level: str
    needs: str
    status: str  # ok | below | too-high | undetermined
    reason: str


def _elf_members(z: zipfile.ZipFile):
    for info in z.infolist():
        if info.is_dir() or info.file_size < 64:
            continue
        with z.open(info) as f:
            if f.read(4) != b"\x7fELF":
                continue
        yield info.filename, z.read(info)


def _wheel_arch(name: str) -> str:
    from ciwheels.variants import InvalidWheelName, parse_wheel_name

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
    from ciwheels.artifacts import MANIFEST, REPORT, read_manifest, read_report

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


def variant_level(wheel: Path, arch: str, catalog: Catalog) -> str | None:
    """A wheel variant's level, read from its variant.json (PEP 825)."""
    from ciwheels.variants import level_of, parse_wheel_name, read_variant_json

    label = parse_wheel_name(wheel.name).label
    data = read_variant_json(wheel) if label else None
    level = level_of(data, label, arch, catalog) if data else None
    return level.name if level else None


_EM_ARCH = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_RISCV": "riscv64", "EM_PPC64": "ppc64le",
            "EM_S390": "s390x", "EM_386": "i686", "EM_ARM": "armv7l"}


def verify_binary(path: Path, level_name: str | None, catalog: Catalog) -> list[Finding]:
    """One installed binary (e.g. site-packages/pkg/_core.so): its level is `level_name`, else
    that of the installed wheel variant whose RECORD lists it (its dist-info's variant.json)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    from ciwheels.variants import installed_variant, level_of

    try:
        with open(path, "rb") as f:
            elf = ELFFile(io.BytesIO(f.read()))
    except (OSError, ELFError) as e:
        raise CiwheelsError(f"{path}: not a readable ELF binary ({e})") from None
    arch = _EM_ARCH.get(elf["e_machine"], elf["e_machine"])
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
    seen = family(arch, catalog).inspect(elf, level)
    return [Finding(str(path), path.name, arch, level.name, seen.needs, seen.status, seen.reason)]


def verify_wheel(wheel: Path, level_name: str | None = None, catalog: Catalog | None = None,
                 dropped: tuple[str, ...] = ()) -> list[Finding]:
    """One finding per ELF binary in the wheel. `dropped`: parts of the level the build's
    compiler did not know (they cannot be evidence of the level)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    catalog = catalog or load_catalog()
    if wheel.suffix != ".whl":
        return verify_binary(wheel, level_name, catalog)
    arch = _wheel_arch(wheel.name)
    level_name = level_name or recorded_level(wheel) or variant_level(wheel, arch, catalog)
    if arch not in catalog.arches:
        raise CiwheelsError(f"{wheel.name}: no ISA levels for platform {arch!r}")
    if level_name is None:
        raise CiwheelsError(f"{wheel.name}: no ISA level recorded beside it (build-report.json or manifest.json)",
                            hint="pass --isa LEVEL")
    canon = catalog.level_alias(arch, level_name)
    if canon is None:
        raise CiwheelsError(f"{wheel.name}: {level_name!r} is not an ISA level of {arch}", value=level_name,
                            allowed=[lv.name for lv in catalog.arches[arch].levels])
    level = catalog.levels[canon]
    fam = family(arch, catalog)
    try:
        z = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as e:
        raise CiwheelsError(f"{wheel}: cannot open the wheel ({e})") from None
    findings = []
    with z:
        for member, data in _elf_members(z):
            def finding(needs: str, status: str, reason: str) -> Finding:
                return Finding(wheel.name, member, arch, level.name, needs, status, reason)

            try:
                elf = ELFFile(io.BytesIO(data))
            except ELFError as e:
                findings.append(finding("", "undetermined", f"not a readable ELF file ({e})"))
                continue
            seen = fam.inspect(elf, level, dropped)
            findings.append(finding(seen.needs, seen.status, seen.reason))
    return findings


def as_json(findings: list[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], indent=1)
