"""`ciwheels verify`: does every binary in a wheel stay within the wheel's ISA level?

- x86_64: the GNU property note X86_ISA_1_NEEDED (GCC writes it with -mneeded, which ciwheels
  adds above the baseline): bits 1/2/4/8 = x86-64 / v2 / v3 / v4.
- riscv64: the .riscv.attributes Tag_RISCV_arch string, the union of the -march of all the
  objects linked in; every extension it names must belong to the level.
- Anything else (aarch64 carries no ISA marker, x86 objects built without -mneeded) is
  reported as undetermined, never guessed."""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ciwheels.catalog import Catalog, IsaLevel, load_catalog
from ciwheels.errors import CiwheelsError

# extensions an extension implies (so that a binary naming them stays within the level)
_IMPLIES = {
    "g": {"i", "m", "a", "f", "d", "zicsr", "zifencei"},
    "m": {"zmmul"},
    "a": {"zaamo", "zalrsc"},
    "c": {"zca", "zcd"},
    "f": {"zicsr"},
    "d": {"f"},
    "b": {"zba", "zbb", "zbs"},
    "v": {"zve32f", "zve32x", "zve64d", "zve64f", "zve64x", "zvl32b", "zvl64b", "zvl128b", "zvfhmin"},
    "zcb": {"zca"},
    "zvbb": {"zvkb"},
    "zfa": {"f"},
    "zfhmin": {"f"},
}
_X86_BITS = {1: 0, 2: 1, 4: 2, 8: 3}  # X86_ISA_1_NEEDED bit -> rank of the x86_64 level


@dataclass
class Finding:
    wheel: str
    member: str
    arch: str
    level: str
    needs: str
    status: str  # ok | too-high | undetermined
    reason: str


def riscv_extensions(arch: str) -> set[str]:
    """'rv64i2p1_m2p0_..._zicsr2p0' or 'rv64gcv_zba' -> {'i', 'm', ..., 'zicsr'}."""
    arch = arch.lower()
    m = re.match(r"rv(32|64)", arch)
    if not m:
        raise ValueError(f"not a RISC-V ISA string: {arch!r}")
    first, *rest = arch[m.end():].split("_")
    exts = {x for x in re.findall(r"([a-z])(?:\d+p\d+)?", first)}
    for token in rest:
        if token:
            exts.add(re.sub(r"\d+p\d+$", "", token))
    return exts


def _closure(exts: set[str]) -> set[str]:
    out = set(exts)
    while True:
        more = set().union(*(_IMPLIES.get(e, set()) for e in out)) - out
        if not more:
            return out
        out |= more


def level_extensions(level: IsaLevel) -> set[str]:
    flags = level.cflags_expanded or level.cflags
    m = re.search(r"-march=(\S+)", flags)
    if not m:
        return set()
    return _closure(riscv_extensions(m.group(1)))


def _elf_members(z: zipfile.ZipFile):
    for info in z.infolist():
        if info.is_dir() or info.file_size < 64:
            continue
        with z.open(info) as f:
            if f.read(4) != b"\x7fELF":
                continue
        yield info.filename, z.read(info)


def _wheel_arch(name: str) -> str:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, tags = parse_wheel_filename(name)
    except InvalidWheelFilename as e:
        raise CiwheelsError(f"{name} is not a wheel file name ({e})") from None
    plat = next(iter(tags)).platform
    for arch in ("x86_64", "i686", "aarch64", "ppc64le", "s390x", "armv7l", "riscv64"):
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


def verify_wheel(wheel: Path, level_name: str | None = None, catalog: Catalog | None = None) -> list[Finding]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    catalog = catalog or load_catalog()
    arch = _wheel_arch(wheel.name)
    level_name = level_name or recorded_level(wheel)
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
            if arch == "x86_64":
                findings.append(_x86(elf, level, catalog, finding))
            elif arch == "riscv64":
                findings.append(_riscv(elf, level, catalog, finding))
            else:
                findings.append(finding("", "undetermined", f"{arch} binaries carry no ISA level marker"))
    return findings


def _x86(elf, level: IsaLevel, catalog: Catalog, finding) -> Finding:
    needed = None
    section = elf.get_section_by_name(".note.gnu.property")
    if section is not None:
        for note in section.iter_notes():
            if note["n_type"] != "NT_GNU_PROPERTY_TYPE_0":
                continue
            for prop in note["n_desc"]:
                if prop["pr_type"] == "GNU_PROPERTY_X86_ISA_1_NEEDED":
                    needed = prop["pr_data"]
    if needed is None:
        return finding("", "undetermined", "no X86_ISA_1_NEEDED note (built without -mneeded)")
    ranks = [rank for bit, rank in _X86_BITS.items() if needed & bit]
    if not ranks:
        return finding(f"bits {needed:#x}", "undetermined", "X86_ISA_1_NEEDED names no known level")
    needs = catalog.arches["x86_64"].levels[max(ranks)]
    if needs.rank > level.rank:
        return finding(needs.name, "too-high", f"needs {needs.name}, more than the wheel's {level.name}")
    return finding(needs.name, "ok", f"needs {needs.name}")


def _allowed(level: IsaLevel, catalog: Catalog) -> set[str]:
    """A level allows its own extensions and those of every lower level (rva22u64 names no
    Zifencei, but its binaries link C runtime objects built for rv64gc, which does)."""
    return set().union(*(level_extensions(lv) for lv in catalog.arches[level.arch].levels if lv.rank <= level.rank))


def _riscv(elf, level: IsaLevel, catalog: Catalog, finding) -> Finding:
    arch_string = None
    section = elf.get_section_by_name(".riscv.attributes")
    if section is not None:
        for sub in section.iter_subsections():
            for subsub in sub.iter_subsubsections():
                for attr in subsub.iter_attributes():
                    if attr.tag == "TAG_ARCH":
                        arch_string = attr.value
    if not arch_string:
        return finding("", "undetermined", "no .riscv.attributes Tag_RISCV_arch")
    extra = sorted(_closure(riscv_extensions(arch_string)) - _allowed(level, catalog))
    if extra:
        return finding(arch_string, "too-high", f"uses {', '.join(extra)}, beyond {level.name}")
    return finding(arch_string, "ok", f"within {level.name}")


def as_json(findings: list[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], indent=1)
