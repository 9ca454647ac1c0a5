"""The built-in catalog: Pythons, policies, arches and ISA levels, read from the TOML data
files in `matrix/catalog/` (installed as `ciwheels/_data/catalog/`)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ciwheels.core.resources import data_dir

LIBCS = ("glibc", "musl")
LIBC_PLATFORM = {"glibc": "manylinux", "musl": "musllinux"}


@dataclass(frozen=True, slots=True)
class Python:
    id: str
    version: str
    implementation: str
    status: str
    enable: str
    libc: tuple[str, ...]
    arch: tuple[str, ...] | None  # None: every arch
    aliases: tuple[str, ...]
    reason: str = ""

    def available_on(self, libc: str, arch: str) -> str | None:
        """None when a build exists, else why not."""
        if self.status == "unavailable":
            return self.reason or f"{self.id} cannot be built"
        if libc not in self.libc:
            return f"{self.implementation} {self.version} has no {LIBC_PLATFORM[libc]} builds"
        if self.arch is not None and arch not in self.arch:
            return f"{self.implementation} {self.version} has no {arch} builds (only {', '.join(self.arch)})"
        return None


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    libc: str
    version: str  # glibc or musl version
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IsaLevel:
    name: str
    arch: str
    baseline: bool
    cflags: str
    rustflags: str
    cflags_expanded: str
    aliases: tuple[str, ...]
    rank: int
    short: str = ""
    qemu_cpu: str = ""
    variant: str = ""  # PEP 825 property "namespace :: feature :: value"; "" = no variant for this level
    variant_label: str = ""  # the label of its variant wheels' file names
    host_features: tuple[str, ...] = ()  # aarch64: /proc/cpuinfo features that show the level


@dataclass(frozen=True, slots=True)
class Arch:
    name: str
    default_policy: dict[str, str]
    pypa_images: tuple[str, ...]  # policies with a pypa image on this arch
    pinned_images: dict[str, str]  # policy -> the full image reference the pinned cibuildwheel uses
    host: str | None
    qemu_platform: str
    aliases: tuple[str, ...]
    levels: tuple[IsaLevel, ...]
    variant_provider: str = ""  # the installers' built-in wheel-variant provider; "" = none exists
    hosted_github: str = ""  # GitHub's hosted runner of this arch ("" = none: emulated on x86_64)
    hosted_gitlab: tuple[str, ...] = ()  # gitlab.com's hosted runner tags of this arch

    @property
    def baseline(self) -> IsaLevel:
        return next(level for level in self.levels if level.baseline)


@dataclass(frozen=True, eq=False)  # hashed by identity: it is loaded once
class Catalog:
    pythons: dict[str, Python]
    policies: dict[str, Policy]
    arches: dict[str, Arch]
    defaults: dict[str, object]
    levels: dict[str, IsaLevel] = field(default_factory=dict)  # every level by name
    path: Path = Path()

    def python_alias(self, name: str) -> str | None:
        return _alias_lookup(name, {p.id: p.aliases for p in self.pythons.values()})

    def arch_alias(self, name: str) -> str | None:
        return _alias_lookup(name, {a.name: a.aliases for a in self.arches.values()})

    def policy_alias(self, name: str) -> str | None:
        return _alias_lookup(name, {p.name: p.aliases for p in self.policies.values()})

    def level_alias(self, arch: str, name: str) -> str | None:
        return _alias_lookup(name, {lv.name: lv.aliases for lv in self.arches[arch].levels})


def _alias_lookup(name: str, table: dict[str, tuple[str, ...]]) -> str | None:
    if name in table:
        return name
    for canonical, aliases in table.items():
        if name in aliases:
            return canonical
    return None


def _read(directory: Path, name: str) -> dict:
    with open(directory / name, "rb") as f:
        return tomllib.load(f)


@cache
def load_catalog(directory: Path | None = None) -> Catalog:
    directory = directory or data_dir("catalog")
    pythons = {
        key: Python(
            id=key,
            version=v["version"],
            implementation=v["implementation"],
            status=v["status"],
            enable=v.get("enable", ""),
            libc=tuple(v.get("libc", LIBCS)),
            arch=tuple(v["arch"]) if "arch" in v else None,
            aliases=tuple(v.get("aliases", ())),
            reason=v.get("reason", ""),
        )
        for key, v in _read(directory, "pythons.toml").items()
    }
    policies = {
        key: Policy(
            name=key,
            libc=v["libc"],
            version=v.get("glibc") or v.get("musl"),
            aliases=tuple(v.get("aliases", ())),
        )
        for key, v in _read(directory, "policies.toml").items()
    }
    isa = _read(directory, "isa.toml")
    arches = {}
    levels = {}
    for key, v in _read(directory, "arches.toml").items():
        arch_levels = tuple(
            IsaLevel(
                name=lv["name"],
                arch=key,
                baseline=lv.get("baseline", False),
                cflags=lv.get("cflags", ""),
                rustflags=lv.get("rustflags", ""),
                cflags_expanded=lv.get("cflags-expanded", ""),
                aliases=tuple(lv.get("aliases", ())),
                rank=rank,
                short=lv.get("short", lv["name"]),
                qemu_cpu=lv.get("qemu-cpu", ""),
                variant=lv.get("variant", ""),
                variant_label=lv.get("variant-label", ""),
                host_features=tuple(lv.get("host-features", ())),
            )
            for rank, lv in enumerate(isa.get(key, ()))
        )
        if sum(lv.baseline for lv in arch_levels) != 1:  # a catalog defect, not a user error
            raise ValueError(f"catalog isa.toml: arch {key} needs exactly one baseline level")
        for lv in arch_levels:
            levels[lv.name] = lv
        arches[key] = Arch(
            name=key,
            default_policy=dict(v["default-policy"]),
            pypa_images=tuple(v["pypa-images"]),
            pinned_images=dict(v["pypa-images"]),
            host=v.get("host"),
            qemu_platform=v["qemu-platform"],
            aliases=tuple(v.get("aliases", ())),
            levels=arch_levels,
            variant_provider=v.get("variant-provider", ""),
            hosted_github=(v.get("hosted-runners") or {}).get("github", ""),
            hosted_gitlab=tuple((v.get("hosted-runners") or {}).get("gitlab", ())),
        )
    return Catalog(
        pythons=pythons,
        policies=policies,
        arches=arches,
        defaults=_read(directory, "defaults.toml"),
        levels=levels,
        path=directory,
    )


def variant_arches(catalog: Catalog) -> list[str]:
    """Arches with a built-in provider in installers: their levels can be variant wheels."""
    return [a.name for a in catalog.arches.values() if a.variant_provider
            and any(lv.variant for lv in a.levels)]
