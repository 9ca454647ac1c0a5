"""ISA families: everything ciwheels does differently per architecture, behind one small protocol.

    flags(level)            -> the ISA layer of a cell's environment (CFLAGS, CXXFLAGS, RUSTFLAGS, QEMU_CPU)
    repair_command(level)   -> a cibuildwheel repair command, or None for cibuildwheel's default
    probe(level, compiles)  -> the flags the image's compiler accepts for the level (build time)
    inspect(elf, level)     -> what one binary needs, compared with the level (verify)
    can_tell                -> whether binaries carry evidence of their level at all

x86_64 reads GCC's X86_ISA_1_NEEDED note (written with -mneeded), riscv64 the
.riscv.attributes Tag_RISCV_arch string; every other arch is the generic family, whose binaries
carry no ISA marker. The levels, flags and spellings are catalog data (isa.toml)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from ciwheels.catalog import Catalog, IsaLevel, load_catalog
from ciwheels.core.errors import CiwheelsError

Compiles = Callable[[str], tuple[bool, str]]  # flags -> (accepted, compiler's stderr)


def read_host(source: str) -> str:
    """The text host detection reads: "ld.so --help" (glibc's loader) or a file such as
    /proc/cpuinfo; "" when it is not there."""
    import glob
    import subprocess

    if source == "ld.so --help":
        for ld in sorted(glob.glob("/lib64/ld-linux-*.so*") + glob.glob("/lib/ld-linux-*.so*")):
            try:
                return subprocess.run([ld, "--help"], capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
        return ""
    try:
        with open(source, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def host_arch() -> str:
    import platform


    machine = platform.machine()
    return load_catalog().arch_alias(machine) or machine


@dataclass(frozen=True)
class Inspection:
    """What one binary shows. status: ok (within the level and showing it), below (within, but
    no evidence of the level itself), too-high, undetermined."""

    needs: str
    status: str
    reason: str


@dataclass(frozen=True)
class Probe:
    flags: dict[str, str]  # the ISA environment to build with
    note: str = ""
    dropped: tuple[str, ...] = ()  # parts of the level the compiler does not know


class Generic:
    """Arches whose binaries carry no ISA level marker (aarch64, ppc64le, s390x, i686, armv7l)."""

    can_tell = False

    def __init__(self, arch: str, catalog: Catalog) -> None:
        self.arch = arch
        self.catalog = catalog

    def flags(self, level: IsaLevel) -> dict[str, str]:
        """The variables ciwheels sets for LEVEL. C/C++ flags start with the catalog's
        `compile-flags` (defaults.toml): setuptools >= 75.7 uses CFLAGS in place of the
        interpreter's own optimisation flags, so a bare -march would build without any."""
        out = {}
        base = str(self.catalog.defaults.get("compile-flags", ""))
        cflags = f"{base} {level.cflags}".strip() if level.cflags else ""
        for var, value in (("CFLAGS", cflags), ("CXXFLAGS", cflags), ("RUSTFLAGS", level.rustflags),
                           ("QEMU_CPU", level.qemu_cpu)):
            if value:
                out[var] = value
        return out

    def repair_command(self, level: IsaLevel) -> str | None:
        return None

    def probe(self, level: IsaLevel, compiles: Compiles) -> Probe:
        return Probe(self.flags(level))

    def inspect(self, elf, level: IsaLevel, dropped: tuple[str, ...] = ()) -> Inspection:
        return Inspection("", "undetermined", f"{self.arch} binaries carry no ISA level marker")

    def host_level(self, read: Callable[[str], str] = read_host) -> tuple[IsaLevel, str]:
        """The highest level this machine runs, and how that was found. `read(source)` gives the
        text of "ld.so --help" or "/proc/cpuinfo" ("" when unavailable)."""
        return self.catalog.arches[self.arch].baseline, f"no detection for {self.arch}: its baseline"

    def _highest(self, ok: Callable[[IsaLevel], bool]) -> IsaLevel:
        levels = self.catalog.arches[self.arch].levels
        return max((lv for lv in levels if lv.baseline or ok(lv)), key=lambda lv: lv.rank)


def fit_qemu_cpu(value: str, runs: Callable[[str], tuple[bool, str]]) -> tuple[str, tuple[str, ...]]:
    """QEMU_CPU ("rv64,v=true,zfa=true,...") cut to what the QEMU that runs the build knows: QEMU
    refuses to start on a property it does not have ("Property 'rv64-riscv-cpu.zfa' not found",
    QEMU 7.2 for most RVA23 extensions), so each such property is dropped and named. `runs(value)`
    runs a program of the arch under that QEMU_CPU: (it ran, its stderr). Code that uses a dropped
    extension dies with an illegal instruction there: the cell needs a newer QEMU."""
    dropped: list[str] = []
    for _ in range(value.count(",") + 1):
        ok, err = runs(value)
        if ok:
            return value, tuple(dropped)
        unknown = re.findall(r"Property '(?:[\w-]+\.)?([\w-]+)' not found", err)
        if not unknown:
            last = err.strip().splitlines()[-1] if err.strip() else "no output"
            raise CiwheelsError(f"no program of the arch runs under QEMU_CPU={value}: {last}")
        dropped += unknown
        parts = value.split(",")
        value = ",".join(parts[:1] + [p for p in parts[1:] if p.split("=", 1)[0] not in unknown])
    raise CiwheelsError(f"could not find a QEMU_CPU that this QEMU accepts (dropped {', '.join(dropped)})")


class Aarch64(Generic):
    def host_level(self, read: Callable[[str], str] = read_host) -> tuple[IsaLevel, str]:
        m = re.search(r"^Features\s*:\s*(.*)$", read("/proc/cpuinfo"), re.M)
        if not m:
            return self.catalog.arches[self.arch].baseline, "no Features line in /proc/cpuinfo: the baseline"
        features = set(m.group(1).split())
        level = self._highest(lambda lv: bool(lv.host_features) and set(lv.host_features) <= features)
        return level, f"/proc/cpuinfo Features ({', '.join(level.host_features) or 'baseline'})"


class X86_64(Generic):
    can_tell = True

    def host_level(self, read: Callable[[str], str] = read_host) -> tuple[IsaLevel, str]:
        """glibc's loader lists the glibc-hwcaps levels this CPU supports ("x86-64-v3 (supported,
        searched)"), the same test it applies to binaries with an ISA note."""
        supported = set(re.findall(r"^\s*(x86-64-v\d) \(supported", read("ld.so --help"), re.M))
        if not supported:
            return self.catalog.arches[self.arch].baseline, "ld.so --help lists no supported glibc-hwcaps level"
        level = self._highest(lambda lv: lv.name in supported)
        return level, "ld.so --help: glibc-hwcaps " + ", ".join(sorted(supported)) + " supported"
    _BITS = {1: 0, 2: 1, 4: 2, 8: 3}  # X86_ISA_1_NEEDED bit -> rank of the level

    def repair_command(self, level: IsaLevel) -> str | None:
        if level.baseline:
            return None
        # auditwheel >= 6.3 rejects or downgrades wheels whose ISA note is above the baseline;
        # ciwheels records the level itself and verifies it.
        return "auditwheel repair --disable-isa-ext-check -w {dest_dir} {wheel}"

    def inspect(self, elf, level: IsaLevel, dropped: tuple[str, ...] = ()) -> Inspection:
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
            return Inspection("", "undetermined", "no X86_ISA_1_NEEDED note (built without -mneeded)")
        ranks = [rank for bit, rank in self._BITS.items() if needed & bit]
        if not ranks:
            return Inspection(f"bits {needed:#x}", "undetermined", "X86_ISA_1_NEEDED names no known level")
        needs = self.catalog.arches[self.arch].levels[max(ranks)]
        if needs.rank > level.rank:
            return Inspection(needs.name, "too-high", f"needs {needs.name}, more than the wheel's {level.name}")
        if needs.rank < level.rank:
            return Inspection(needs.name, "below", f"needs only {needs.name}: not built for {level.name}")
        return Inspection(needs.name, "ok", f"needs {needs.name}")


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


def riscv_extensions(arch: str) -> set[str]:
    """'rv64i2p1_m2p0_..._zicsr2p0' or 'rv64gcv_zba' -> {'i', 'm', ..., 'zicsr'}."""
    arch = arch.lower()
    m = re.match(r"rv(32|64)", arch)
    if not m:
        raise ValueError(f"not a RISC-V ISA string: {arch!r}")
    first, *rest = arch[m.end():].split("_")
    exts = set(re.findall(r"([a-z])(?:\d+p\d+)?", first))
    for token in rest:
        if token:
            exts.add(re.sub(r"\d+p\d+$", "", token))
    return exts


def closure(exts: set[str]) -> set[str]:
    out = set(exts)
    while True:
        more = set().union(*(_IMPLIES.get(e, set()) for e in out)) - out
        if not more:
            return out
        out |= more


def level_extensions(level: IsaLevel) -> set[str]:
    m = re.search(r"-march=(\S+)", level.cflags_expanded or level.cflags)
    return closure(riscv_extensions(m.group(1))) if m else set()


class RiscV64(Generic):
    can_tell = True

    def host_level(self, read: Callable[[str], str] = read_host) -> tuple[IsaLevel, str]:
        """The kernel's ISA string ("isa : rv64imafdcv_zba_zbb...") in /proc/cpuinfo; a level is
        supported when every extension of its expanded string is listed."""
        m = re.search(r"^isa\s*:\s*(\S+)", read("/proc/cpuinfo"), re.M)
        if not m:
            return self.catalog.arches[self.arch].baseline, "no isa line in /proc/cpuinfo: the baseline"
        have = closure(riscv_extensions(m.group(1)))
        level = self._highest(lambda lv: level_extensions(lv) <= have)
        return level, f"/proc/cpuinfo isa {m.group(1)}"

    def _allowed(self, level: IsaLevel) -> set[str]:
        """A level allows its own extensions and those of every lower level (rva22u64 names no
        Zifencei, but its binaries link C runtime objects built for rv64gc, which does)."""
        return set().union(*(level_extensions(lv) for lv in self.catalog.arches[self.arch].levels
                             if lv.rank <= level.rank))

    def _evidence(self, level: IsaLevel, dropped: tuple[str, ...]) -> set[str]:
        """Extensions that only this level (not the one below) brings: a binary built for the
        level names at least one of them."""
        levels = self.catalog.arches[self.arch].levels
        lower = level_extensions(levels[level.rank - 1]) if level.rank else set()
        return level_extensions(level) - lower - set(dropped)

    def probe(self, level: IsaLevel, compiles: Compiles) -> Probe:
        """GCC 14 rejects the RVA profile names (-march=rva23u64): where the image's compiler says
        no, spell the level out, without the extensions that compiler does not know yet (GCC
        14.2: zimop, zcmop); the code then does not use them and stays within the level."""
        flags = self.flags(level)
        if not level.cflags_expanded:
            return Probe(flags)
        ok, _ = compiles(level.cflags)
        if ok:
            return Probe(flags, f"the compiler accepts {level.cflags}")
        expanded, dropped = level.cflags_expanded, []
        # GCC names the extensions it does not know; an older GCC passes them to binutils, which
        # names the first one it does not know: at most one round per extension
        for _ in range(expanded.count("_") + 1):
            ok, err = compiles(expanded)
            if ok:
                break
            unknown = sorted(set(re.findall(r"extension '([a-z0-9]+)'[^\n]*unsupported", err))
                             | set(re.findall(r"unknown prefixed ISA extension `([a-z0-9]+)'", err)))
            if not unknown:
                last = err.strip().splitlines()[-1] if err.strip() else ""
                raise CiwheelsError(f"the compiler accepts neither {level.cflags} nor the expanded ISA string of "
                                    f"{level.name}: {last}")
            dropped += unknown
            expanded = re.sub(r"_(" + "|".join(unknown) + r")(?=_|$|\s)", "", expanded)
        else:
            raise CiwheelsError(f"could not find an ISA string for {level.name} that the compiler accepts")
        new = {var: value.replace(level.cflags, expanded) if var in ("CFLAGS", "CXXFLAGS") else value
               for var, value in flags.items()}
        note = f"the compiler rejects {level.cflags}; using the expanded ISA string" + (
            f" without {', '.join(dropped)}, which it does not know" if dropped else "")
        return Probe(new, note, tuple(dropped))

    def inspect(self, elf, level: IsaLevel, dropped: tuple[str, ...] = ()) -> Inspection:
        arch_string = None
        section = elf.get_section_by_name(".riscv.attributes")
        if section is not None:
            for sub in section.iter_subsections():
                for subsub in sub.iter_subsubsections():
                    for attr in subsub.iter_attributes():
                        if attr.tag == "TAG_ARCH":
                            arch_string = attr.value
        if not arch_string:
            return Inspection("", "undetermined", "no .riscv.attributes Tag_RISCV_arch")
        used = closure(riscv_extensions(arch_string))
        extra = sorted(used - self._allowed(level))
        if extra:
            return Inspection(arch_string, "too-high", f"uses {', '.join(extra)}, beyond {level.name}")
        evidence = self._evidence(level, dropped)
        if not level.baseline and evidence and not used & evidence:
            return Inspection(arch_string, "below", f"names none of {', '.join(sorted(evidence))}: "
                              f"not built for {level.name}")
        return Inspection(arch_string, "ok", f"within {level.name}")


_FAMILIES = {"x86_64": X86_64, "riscv64": RiscV64, "aarch64": Aarch64}


@cache
def family(arch: str, catalog: Catalog) -> Generic:
    """The ISA family of an arch of the catalog."""
    return _FAMILIES.get(arch, Generic)(arch, catalog)
