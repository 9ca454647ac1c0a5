"""Semantics of expansion: axes, exclude, include, ISA defaults, policies and images,
overrides, builder mode, origins."""

from __future__ import annotations

import json

import pytest

from ciwheels.core.errors import CiwheelsError
from ciwheels.project.open import expand_files
from conftest import EXAMPLE, derive_cells

OPT = "-O3 -DNDEBUG -fno-strict-overflow"  # defaults.toml compile-flags: before every level's flags


def ids(expansion):
    return [c.id for c in expansion.cells]


def test_issue_example_shape():
    e = expand_files([EXAMPLE / "matrix" / "wheels.yaml"])
    # the product of the file's axes (baseline level where it names none), minus exclude, plus include
    expected, dropped = derive_cells(EXAMPLE / "matrix" / "wheels.yaml")
    assert sorted(ids(e)) == sorted(expected) and len(e.dropped) == dropped
    got = set(ids(e))
    assert "cp312-manylinux_x86_64-x86-64-v3" in got
    assert "cp312-musllinux_aarch64-armv8-a" in got  # arch without isa entry: baseline
    assert "cp313-manylinux_ppc64le-power9" in got  # include outside the axes
    assert not any(i.startswith("cp314t-") and "riscv64" in i for i in got)
    assert {d.id for d in e.dropped} == {f"cp314t-{p}_riscv64-{lv}" for p in ("manylinux", "musllinux")
                                         for lv in ("rv64gc", "rva23u64")}
    assert all("exclude[0]" in d.reason for d in e.dropped)


def test_json_fields_and_cibuildwheel_mapping():
    e = expand_files([EXAMPLE / "matrix" / "wheels.yaml"])
    cell = next(c for c in e.cells if c.id == "cp312-manylinux_riscv64-rva23u64")
    j = cell.to_json()
    for key in ("id", "python", "libc", "policy", "arch", "isa", "identifier"):
        assert key in j
    assert j["identifier"] == "cp312-manylinux_riscv64"
    assert cell.cibw["CIBW_BUILD"] == "cp312-manylinux_riscv64"
    assert cell.cibw["CIBW_ARCHS_LINUX"] == "riscv64"
    assert cell.cibw["CIBW_MANYLINUX_RISCV64_IMAGE"] == "registry.example.org/wheels/manylinux_2_35_riscv64:2026.11"
    assert cell.policy == "manylinux_2_35"  # read from the custom image's name
    assert cell.custom_image
    assert "-march=rva23u64" in cell.cibw["CIBW_ENVIRONMENT_LINUX"]
    assert cell.runner.emulated
    arm = next(c for c in e.cells if c.arch == "aarch64")
    assert not arm.runner.emulated and arm.runner.github == "ubuntu-24.04-arm" and arm.runner.gitlab == ("arm64",)
    json.dumps(j)


def test_exclude_is_partial_match_and_lists(write_matrix):
    path = write_matrix("python: [cp312, cp313, cp314]\nlibc: [glibc, musl]\narch: [x86_64, aarch64]\n"
                        "exclude:\n  - {libc: musl, arch: aarch64}\n  - {python: [cp312, cp313], arch: x86_64}\n")
    e = expand_files([path])
    assert sorted(ids(e)) == sorted([
        "cp312-manylinux_aarch64-armv8-a", "cp313-manylinux_aarch64-armv8-a", "cp314-manylinux_aarch64-armv8-a",
        "cp314-manylinux_x86_64-x86-64", "cp314-musllinux_x86_64-x86-64"])


def test_exclude_matching_nothing_warns(write_matrix):
    path = write_matrix("python: [cp312]\nexclude:\n  - {arch: riscv64}\n")
    e = expand_files([path])
    assert len(e.cells) == 1
    assert e.warnings == [f"{path}:3: exclude[0] matches no cell"]


def test_catalog_drops_impossible_cells_with_reason(write_matrix):
    path = write_matrix("python: [cp312, pp311]\nlibc: [glibc, musl]\narch: [x86_64, riscv64]\n")
    e = expand_files([path])
    assert sorted(ids(e)) == sorted([
        "cp312-manylinux_x86_64-x86-64", "cp312-musllinux_x86_64-x86-64", "cp312-manylinux_riscv64-rv64gc",
        "cp312-musllinux_riscv64-rv64gc", "pp311-manylinux_x86_64-x86-64"])
    reasons = {d.id: d.reason for d in e.dropped}
    assert "no riscv64 builds" in reasons["pp311-manylinux_riscv64-rv64gc"]
    assert "no musllinux builds" in reasons["pp311-musllinux_x86_64-x86-64"]
    pypy = next(c for c in e.cells if c.python == "pp311")
    assert pypy.cibw["CIBW_ENABLE"] == "pypy"
    # the pinned cibuildwheel builds PyPy in the arch's image: its pypy image options do nothing
    assert pypy.cibw["CIBW_MANYLINUX_X86_64_IMAGE"] == "manylinux_2_28"
    assert not any("PYPY" in k for k in pypy.cibw)


def test_aliases(write_matrix):
    path = write_matrix('python: ["3.12", "3.14t"]\narch: [amd64, arm64]\nisa: {amd64: [v3], arm64: [armv9]}\n')
    e = expand_files([path])
    assert sorted(ids(e)) == ["cp312-manylinux_aarch64-armv9-a", "cp312-manylinux_x86_64-x86-64-v3",
                              "cp314t-manylinux_aarch64-armv9-a", "cp314t-manylinux_x86_64-x86-64-v3"]


def test_policy_without_pypa_image_is_raised_with_a_note(write_matrix):
    path = write_matrix("python: [cp313]\narch: [x86_64, riscv64]\npolicy: {glibc: manylinux_2_28}\n")
    cells = {c.arch: c for c in expand_files([path]).cells}
    assert cells["x86_64"].policy == "manylinux_2_28"
    assert cells["riscv64"].policy == "manylinux_2_39"
    assert any("manylinux_2_28 has no pypa image for riscv64" in n for n in cells["riscv64"].notes)
    assert "raised to manylinux_2_39" in str(cells["riscv64"].origins["policy"])


def test_image_with_declared_policy_and_pinned_name(write_matrix):
    path = write_matrix("python: [cp313]\narch: [x86_64, riscv64]\nimages:\n"
                        "  riscv64-glibc: {image: 'localhost/rv:1', policy: manylinux_2_36}\n"
                        "  x86_64-glibc: manylinux_2_34\n")
    cells = {c.arch: c for c in expand_files([path]).cells}
    assert (cells["riscv64"].policy, cells["riscv64"].image, cells["riscv64"].custom_image) == \
        ("manylinux_2_36", "localhost/rv:1", True)
    assert (cells["x86_64"].policy, cells["x86_64"].image, cells["x86_64"].custom_image) == \
        ("manylinux_2_34", "manylinux_2_34", False)


def test_overrides_layer_and_origins(write_matrix):
    path = write_matrix(
        "python: [cp312, cp313]\narch: [x86_64, riscv64]\nisa: {x86_64: [x86-64-v3]}\n"
        "environment: {CFLAGS: -O3, FOO: top}\n"
        "test-command: pytest {project}\n"
        "overrides:\n"
        "  - select: {arch: riscv64}\n"
        "    test-command: ''\n"
        "    environment: {FOO: riscv}\n"
        "    timeout-minutes: 300\n")
    cells = {c.id: c for c in expand_files([path]).cells}
    x86 = cells["cp312-manylinux_x86_64-x86-64-v3"]
    rv = cells["cp312-manylinux_riscv64-rv64gc"]
    assert x86.environment == {"CFLAGS": f"{OPT} -march=x86-64-v3 -mneeded -O3", "CXXFLAGS": f"{OPT} -march=x86-64-v3 -mneeded",
                               "RUSTFLAGS": "-C target-cpu=x86-64-v3", "FOO": "top"}
    assert x86.test_command == "pytest {project}" and x86.timeout_minutes == 120
    assert rv.environment["FOO"] == "riscv" and rv.test_command == "" and rv.timeout_minutes == 300
    assert "CIBW_TEST_COMMAND_LINUX" not in rv.cibw
    assert x86.cibw["CIBW_REPAIR_WHEEL_COMMAND_LINUX"].startswith("auditwheel repair --disable-isa-ext-check")
    o = rv.origins
    assert (o["environment.FOO"].line, o["timeout-minutes"].line, o["test-command"].line) == (9, 10, 8)
    assert o["isa"].kind == "catalog" and "baseline" in o["isa"].detail
    assert x86.origins["isa"].line == 3 and x86.origins["environment.CXXFLAGS"].kind == "catalog"


def test_builder_mode_packages(write_matrix):
    path = write_matrix(
        "python: [cp312, cp313]\narch: [x86_64, riscv64]\n"
        "sdist-config: false\npackages:\n"
        "  - name: NumPy\n    versions: ['2.3.4', '2.3.5']\n    build-requires: [cython==3.1.4, meson-python==0.18.0]\n"
        "    exclude: [{python: cp312, arch: riscv64}]\n"
        "  - name: pyyaml\n    versions: ['6.0.3']\n")
    e = expand_files([path])
    assert len(e.cells) == 2 * (4 - 1) + 4
    cell = next(c for c in e.cells if c.id == "numpy-2.3.5-cp313-manylinux_riscv64-rv64gc")
    assert (cell.package, cell.version, cell.build_requires) == ("numpy", "2.3.5",
                                                                ("cython==3.1.4", "meson-python==0.18.0"))
    assert "PIP_CONSTRAINT" in cell.cibw["CIBW_ENVIRONMENT_LINUX"]
    assert "cython==3.1.4" in cell.cibw["CIBW_BEFORE_ALL_LINUX"]
    assert not any(c.package == "pyyaml" and c.build_requires for c in e.cells)


def test_duplicate_cell_across_files_is_an_error(write_matrix):
    a = write_matrix("python: [cp312]\n", "a.yaml")
    b = write_matrix("python: [cp312, cp313]\n", "b.yaml")
    with pytest.raises(CiwheelsError, match="defined by both"):
        expand_files([a, b])


def test_output_is_independent_of_key_order(write_matrix):
    a = write_matrix("python: [cp312, cp313]\narch: [x86_64]\nlibc: [glibc, musl]\ntest-command: t\n", "a.yaml")
    b = write_matrix("test-command: t\nlibc: [glibc, musl]\narch: [x86_64]\npython: [cp312, cp313]\n", "b.yaml")
    ja = [c.to_json() | {"matrix_file": ""} for c in expand_files([a]).cells]
    jb = [c.to_json() | {"matrix_file": ""} for c in expand_files([b]).cells]
    assert ja == jb


def test_fast_json_equals_plain_json(write_matrix):
    from ciwheels.matrix.model import cells_json

    path = write_matrix(
        "python: [cp312, cp313, pp311]\narch: [x86_64, riscv64]\nisa: {x86_64: [x86-64, x86-64-v3]}\n"
        "include: [{python: cp314, arch: s390x, isa: z15, test-command: 'true'}]\n"
        "overrides: [{select: {python: cp313}, environment: {X: '1'}}]\n"
        "sdist-config: false\npackages: [{name: a, versions: ['1', '2']}, {name: b, versions: ['3'], build-requires: [x==1]}]\n")
    cells = expand_files([path]).cells
    assert cells_json(cells) == json.dumps([c.to_json() for c in cells])


def test_wheel_files_are_matched_to_their_cells():
    from ciwheels.matrix.model import wheel_matches

    cells = {c.id: c for c in expand_files([EXAMPLE / "matrix" / "wheels.yaml"]).cells}
    ft = cells["cp314t-musllinux_x86_64-x86-64"]
    assert wheel_matches("x-1-cp314-cp314t-musllinux_1_2_x86_64.whl", ft)
    assert not wheel_matches("x-1-cp314-cp314-musllinux_1_2_x86_64.whl", ft)
    assert not wheel_matches("x-1-cp314-cp314t-manylinux_2_28_x86_64.whl", ft)
    rv = cells["cp313-manylinux_riscv64-rv64gc"]
    assert wheel_matches("x-1-cp313-cp313-manylinux_2_31_riscv64.manylinux_2_35_riscv64.whl", rv)
    assert not wheel_matches("x-1-cp313-cp313-manylinux_2_31_x86_64.whl", rv)
    assert not wheel_matches("not-a-wheel.whl", rv)
