"""The catalog stays in sync with the cibuildwheel it pins: same Linux identifiers, same
pypa images per arch, same default policies. Read from the installed cibuildwheel's own
resource files, so a cibuildwheel upgrade that adds a Python or an image fails here."""

from __future__ import annotations

import configparser
import tomllib
from importlib import metadata
from importlib.resources import files

from ciwheels.catalog import load_catalog

CAT = load_catalog()
RESOURCES = files("cibuildwheel") / "resources"


def test_pinned_version_is_installed():
    pin = CAT.defaults["cibuildwheel"]
    assert pin == f"cibuildwheel=={metadata.version('cibuildwheel')}"


def test_identifiers_match_cibuildwheel():
    platforms = tomllib.loads((RESOURCES / "build-platforms.toml").read_text())
    theirs = {c["identifier"] for c in platforms["linux"]["python_configurations"]}
    from ciwheels.catalog import LIBC_PLATFORM, LIBCS

    ours = {f"{py.id}-{LIBC_PLATFORM[libc]}_{arch}" for py in CAT.pythons.values() for arch in CAT.arches
            for libc in LIBCS if py.available_on(libc, arch) is None}
    assert theirs - ours == set(), "cibuildwheel builds identifiers the catalog does not know"
    assert ours - theirs == set(), "the catalog claims identifiers cibuildwheel cannot build"


def test_pypa_images_match_pinned_images():
    cfg = configparser.ConfigParser()
    cfg.read_string((RESOURCES / "pinned_docker_images.cfg").read_text())
    for arch in CAT.arches.values():
        assert sorted(cfg[arch.name]) == sorted(arch.pypa_images), arch.name


def test_default_policies_match_cibuildwheel_defaults():
    defaults = tomllib.loads((RESOURCES / "defaults.toml").read_text())["tool"]["cibuildwheel"]
    for arch in CAT.arches.values():
        assert defaults[f"manylinux-{arch.name}-image"] == arch.default_policy["glibc"]
        assert defaults[f"musllinux-{arch.name}-image"] == arch.default_policy["musl"]


def test_every_arch_has_one_baseline_and_known_policies():
    for arch in CAT.arches.values():
        assert sum(lv.baseline for lv in arch.levels) == 1
        for policy in arch.pypa_images:
            assert policy in CAT.policies
    for py in CAT.pythons.values():
        assert py.status in {"supported", "eol", "prerelease", "unavailable"}
        for a in py.arch or ():
            assert a in CAT.arches


def test_issue_level_names_exist():
    names = {
        "x86_64": ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"],
        "aarch64": ["armv8-a", "armv8.2-a", "armv9-a"],
        "riscv64": ["rv64gc", "rva22u64", "rva23u64"],
        "ppc64le": ["power8", "power9", "power10"],
        "s390x": ["z13", "z14", "z15", "z16"],
    }
    for arch, levels in names.items():
        assert [lv.name for lv in CAT.arches[arch].levels] == levels
