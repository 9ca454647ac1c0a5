"""The settings cascade and the ISA families: the regression tests of two defects the old
expander had, and the rules that keep them from coming back."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib

import pytest

from ciwheels.matrix.cascade import ISA_RULES, RULES, IsaRule, Rule
from ciwheels.catalog import load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.isa.families import Generic, RiscV64, X86_64, family
from ciwheels.matrix.normalise import SETTING_KEYS, defaults_layer
from ciwheels.project.open import expand_files
from conftest import EXAMPLE, REPO, run_ciwheels

OPT = "-O3 -DNDEBUG -fno-strict-overflow"  # defaults.toml compile-flags: before every level's flags

CAT = load_catalog()
V3 = "python: [cp312, cp313]\nisa: {x86_64: [x86-64-v3]}\n"


def cell(expansion, cid):
    return next(c for c in expansion.cells if c.id == cid)


# -- defect 1: a second CFLAGS layer dropped the ISA flags ----------------------------------
@pytest.mark.parametrize("layers", [
    # top level, then an override
    "environment: {CFLAGS: -O3}\noverrides:\n  - {select: {python: cp312}, environment: {CFLAGS: -O2}}\n",
    # an override alone, and two overrides
    "overrides:\n  - {select: {python: cp312}, environment: {CFLAGS: -O1}}\n"
    "  - {select: {isa: x86-64-v3}, environment: {CFLAGS: -O2}}\n",
    # an include entry over the top level
    "environment: {CFLAGS: -O3}\ninclude:\n  - {python: cp312, arch: x86_64, isa: x86-64-v3, environment: {CFLAGS: -O2}}\n",
], ids=["top+override", "two-overrides", "top+include"])
def test_isa_flags_survive_every_layer(write_matrix, layers):
    e = expand_files([write_matrix(V3 + layers)])
    c = cell(e, "cp312-manylinux_x86_64-x86-64-v3")
    assert c.environment["CFLAGS"] == f"{OPT} -march=x86-64-v3 -mneeded -O2"
    assert c.environment["CXXFLAGS"] == f"{OPT} -march=x86-64-v3 -mneeded"  # no layer set it
    assert f'CFLAGS="{OPT} -march=x86-64-v3 -mneeded -O2"' in c.cibw["CIBW_ENVIRONMENT_LINUX"]
    # explain names both origins of the combined value
    assert "isa.toml x86-64-v3" in str(c.origins["environment.CFLAGS"])
    assert "wheels.yaml" in str(c.origins["environment.CFLAGS"])


def test_isa_flags_survive_a_packages_entry(write_matrix):
    e = expand_files([write_matrix(
        "python: [cp312]\nisa: {x86_64: [x86-64-v3]}\nenvironment: {CFLAGS: -O3}\n"
        "sdist-config: false\npackages:\n  - {name: msgpack, versions: ['1.1.2'], environment: {CFLAGS: -O2, EXTRA: '1'}}\n")])
    c = cell(e, "msgpack-1.1.2-cp312-manylinux_x86_64-x86-64-v3")
    assert c.environment["CFLAGS"] == f"{OPT} -march=x86-64-v3 -mneeded -O2"
    assert c.environment["EXTRA"] == "1"


def test_matrix_json_shows_the_final_environment(write_matrix, tmp_path):
    write_matrix(V3 + "environment: {CFLAGS: -O3}\noverrides:\n  - {select: {python: cp312}, environment: {CFLAGS: -O2}}\n")
    cells = {c["id"]: c for c in json.loads(run_ciwheels("matrix", "--project", str(tmp_path), "--json",
                                                         check=True).stdout)}
    assert cells["cp312-manylinux_x86_64-x86-64-v3"]["environment"]["CFLAGS"] == f"{OPT} -march=x86-64-v3 -mneeded -O2"
    assert cells["cp313-manylinux_x86_64-x86-64-v3"]["environment"]["CFLAGS"] == f"{OPT} -march=x86-64-v3 -mneeded -O3"


def test_every_setting_has_one_declared_rule_and_the_flags_are_prepended():
    assert set(RULES) == set(SETTING_KEYS)
    assert RULES["environment"] is Rule.MERGE
    assert all(ISA_RULES[v] is IsaRule.PREPEND for v in ("CFLAGS", "CXXFLAGS", "RUSTFLAGS"))


def test_later_layers_win_per_variable(write_matrix):
    e = expand_files([write_matrix(
        "python: [cp312]\nenvironment: {A: top, B: top}\ntimeout-minutes: 30\n"
        "overrides:\n  - {select: {python: cp312}, environment: {B: over}, timeout-minutes: 45}\n")])
    c = e.cells[0]
    assert (c.environment["A"], c.environment["B"], c.timeout_minutes) == ("top", "over", 45)
    assert "overrides[0]" in str(c.origins["environment.B"]) and "wheels.yaml:2" in str(c.origins["environment.A"])


def test_defaults_are_layer_zero_and_validated(tmp_path):
    layer = defaults_layer(CAT)
    assert layer.values == {"timeout-minutes": 120, "native-compilers": True, "cross": True}
    assert "defaults.toml" in str(layer.origins["timeout-minutes"])
    e = expand_files([EXAMPLE / "matrix" / "wheels.yaml"])
    assert all(c.timeout_minutes == 120 and "defaults.toml" in str(c.origins["timeout-minutes"]) for c in e.cells)
    # a broken catalog is reported like a broken matrix
    broken = tmp_path / "catalog"
    broken.mkdir()
    for f in CAT.path.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    text = (broken / "defaults.toml").read_text().replace("timeout-minutes = 120", "timeout-minutes = 0\nbogus = 1")
    (broken / "defaults.toml").write_text(text)
    bad = load_catalog(broken)
    with pytest.raises(CiwheelsError, match="defaults.toml.*(bogus|at least 1)"):
        defaults_layer(bad)


# -- defect 2: pinned image references came from importing cibuildwheel ----------------------
def test_pinned_image_references_are_catalog_data_equal_to_the_pinned_cibuildwheel():
    import configparser
    from importlib.resources import files

    cfg = configparser.ConfigParser()
    cfg.read_string((files("cibuildwheel") / "resources" / "pinned_docker_images.cfg").read_text())
    for arch in CAT.arches.values():
        assert arch.pinned_images == {k: v.split()[0] for k, v in cfg[arch.name].items()}, arch.name


def test_no_library_module_imports_cibuildwheel():
    """At run time cibuildwheel lives in a venv of its own (cibw.py): importing it in ciwheels'
    process reads the host's copy, or fails."""
    for path in (REPO / "ciwheels").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "cibuildwheel" for n in names), path.name
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "files":
                assert not any(isinstance(a, ast.Constant) and a.value == "cibuildwheel" for a in node.args), path.name


def test_explain_shows_the_full_pinned_reference_without_cibuildwheel(write_matrix, tmp_path):
    write_matrix("python: [cp313]\narch: [riscv64]\nisa: {riscv64: [rva23u64]}\n")
    # cibuildwheel made unimportable in the child process
    code = ("import sys; sys.modules['cibuildwheel'] = None; from ciwheels.cli import main; "
            "sys.argv = ['ciwheels'] + sys.argv[1:]; main()")
    proc = subprocess.run([sys.executable, "-c", code, "explain", "cp313-manylinux_riscv64-rva23u64", "--project",
                           str(tmp_path), "--json"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    settings = {s["setting"]: s["value"] for s in json.loads(proc.stdout)["settings"]}
    ref = CAT.arches["riscv64"].pinned_images["manylinux_2_39"]
    assert ref.startswith("quay.io/pypa/manylinux_2_39_riscv64@sha256:")
    assert settings["image"] == "manylinux_2_39" and settings["image_ref"] == ref


def test_build_probes_the_cells_image_reference(write_matrix, tmp_path):
    from ciwheels.build.run import Invocation, probe_compiler

    write_matrix("python: [cp313]\narch: [riscv64]\nisa: {riscv64: [rva22u64]}\n")
    c = expand_files([tmp_path / "matrix" / "wheels.yaml"]).cells[0]
    fake = tmp_path / "engine"
    seen = tmp_path / "seen"
    # a stand-in container engine that records its arguments and runs the probe's script with a
    # stand-in gcc playing GCC 14.2's answers (and `true` for the QEMU_CPU probe)
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "gcc").write_text("#!/bin/sh\ncat > /dev/null\ncase \"$*\" in *rva22u64*) "
                              "echo \"cc1: error: '-march=rva22u64': unsupported\" >&2; exit 1;; esac\n")
    (bin_ / "gcc").chmod(0o755)
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {seen}\nfor last; do :; done\nPATH={bin_}:$PATH exec sh -c \"$last\"\n")
    fake.chmod(0o755)
    probe = probe_compiler(Invocation("job", [c]), str(fake), CAT)
    assert c.image_ref in seen.read_text()
    assert probe.flags["CFLAGS"] == f"{OPT} {CAT.levels['rva22u64'].cflags_expanded}"
    assert f"QEMU_CPU={CAT.levels['rva22u64'].qemu_cpu}" in seen.read_text()
    # an engine that loses the exit status (a docker CLI talking to podman's API): the refusal
    # of the profile name is still a refusal, read from the probe's output
    fake.write_text(f"#!/bin/sh\nfor last; do :; done\nPATH={bin_}:$PATH sh -c \"$last\"\nexit 0\n")
    probe = probe_compiler(Invocation("job", [c]), str(fake), CAT)
    assert probe.flags["CFLAGS"] == f"{OPT} {CAT.levels['rva22u64'].cflags_expanded}"


# -- ISA families ---------------------------------------------------------------------------
def test_every_arch_has_a_family():
    assert isinstance(family("x86_64", CAT), X86_64) and isinstance(family("riscv64", CAT), RiscV64)
    for arch in ("aarch64", "ppc64le", "s390x", "i686", "armv7l"):
        f = family(arch, CAT)
        assert isinstance(f, Generic) and not f.can_tell  # aarch64: its own host detection only
    assert type(family("ppc64le", CAT)) is Generic
    assert family("x86_64", CAT).repair_command(CAT.levels["x86-64"]) is None
    assert "--disable-isa-ext-check" in family("x86_64", CAT).repair_command(CAT.levels["x86-64-v3"])


def test_riscv_probe_drops_only_what_the_compiler_does_not_know():
    level = CAT.levels["rva23u64"]

    def gcc14(flags: str) -> tuple[bool, str]:  # GCC 14.2's answers, as seen in the real image
        if "rva23u64" in flags:
            return False, "cc1: error: unknown profile 'rva23u64'"
        unknown = [e for e in ("zimop", "zcmop") if f"_{e}" in flags]
        if unknown:
            return False, "".join(f"cc1: error: extension '{e}' is unsupported\n" for e in unknown)
        return True, ""

    probe = family("riscv64", CAT).probe(level, gcc14)
    assert probe.dropped == ("zcmop", "zimop")
    assert "_zimop" not in probe.flags["CFLAGS"] and "_zicond" in probe.flags["CFLAGS"]
    assert probe.flags["QEMU_CPU"] == level.qemu_cpu


def test_build_fails_a_level_without_evidence():
    from ciwheels.dist.verify import verdict as level_status
    from ciwheels.dist.verify import Finding

    def f(status):
        return Finding("w.whl", "core.so", "x86_64", "x86-64-v3", "", status, f"a {status} binary")

    v3, base = CAT.levels["x86-64-v3"], CAT.levels["x86-64"]
    assert level_status([f("ok")], v3, True) == ("ok", "")
    assert level_status([f("undetermined")], v3, True)[0] == "isa-unproven"
    assert level_status([f("below")], v3, True)[0] == "isa-unproven"
    assert level_status([], v3, True)[0] == "isa-unproven"
    assert level_status([f("too-high")], base, True)[0] == "isa-mismatch"
    assert level_status([f("undetermined")], base, True) == ("ok", "")  # the baseline needs no evidence
    assert level_status([f("undetermined")], CAT.levels["armv9-a"], False) == ("ok", "")  # aarch64 cannot tell


def test_catalog_defaults_file_is_plain_toml_data():
    data = tomllib.loads((REPO / "matrix" / "catalog" / "defaults.toml").read_text())
    assert data["render"]["github-runner"] and data["settings"]["timeout-minutes"] > 0


# -- cibuildwheel-options and identifier selectors ------------------------------------------
def test_cibuildwheel_options_merge_per_option_and_reach_the_config_file(write_matrix):
    from ciwheels.matrix.cibwopts import config_file

    e = expand_files([write_matrix(
        "python: [cp312, cp313]\nlibc: [glibc, musl]\n"
        "cibuildwheel-options: {build-frontend: 'build[uv]', test-extras: [test]}\n"
        "overrides:\n  - select: {identifier: '*-musllinux*'}\n    cibuildwheel-options: {test-extras: [musl]}\n")])
    glibc, musl = cell(e, "cp312-manylinux_x86_64-x86-64"), cell(e, "cp312-musllinux_x86_64-x86-64")
    assert glibc.cibuildwheel_options == {"build-frontend": "build[uv]", "test-extras": ["test"]}
    assert musl.cibuildwheel_options == {"build-frontend": "build[uv]", "test-extras": ["musl"]}
    assert "overrides[0]" in str(musl.origins["cibuildwheel-options.test-extras"])
    text = config_file(musl)
    assert tomllib.loads(text)["tool"]["cibuildwheel"] == musl.cibuildwheel_options


@pytest.mark.parametrize("text, message", [
    ("cibuildwheel-options: {build-frontends: pip}\n", "unknown key 'build-frontends'.*Did you mean 'build-frontend'"),
    ("cibuildwheel-options: {skip: 'cp38-*'}\n", "'skip' cannot be set in cibuildwheel-options: the matrix sets it with exclude"),
    ("cibuildwheel-options: {manylinux-x86_64-image: foo}\n", "sets it with images"),
    ("cibuildwheel-options: {macos: {archs: x}}\n", "not a Linux option"),
    ("cibuildwheel-options: {build-verbosity: 9}\n", "must be at most 3"),
    ("cibuildwheel-options: {build-frontend: gradle}\n", "build-frontend"),
    ("overrides:\n  - {select: {identifier: 'cp3{1..9}{1..9}{1..9}{1..9}-*'}, test-command: x}\n", "more than 1000 patterns"),
])
def test_cibuildwheel_options_are_validated_with_cibuildwheels_schema(write_matrix, tmp_path, text, message):
    write_matrix("python: [cp312]\n" + text)
    proc = run_ciwheels("matrix", "--project", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "wheels.yaml:" in proc.stderr
    import re
    assert re.search(message, proc.stderr), proc.stderr


def test_identifier_selectors_use_cibuildwheels_brace_syntax(write_matrix):
    e = expand_files([write_matrix("python: [cp311, cp312, cp313, cp314]\n"
                                   "exclude:\n  - {identifier: 'cp3{11..12}-*'}\n")])
    assert sorted(c.python for c in e.cells) == ["cp313", "cp314"]


def test_the_schema_of_cibuildwheel_options_is_the_pinned_cibuildwheels():
    from importlib.resources import files

    ours = json.loads((CAT.path / "cibuildwheel.schema.json").read_text())
    theirs = json.loads((files("cibuildwheel") / "resources" / "cibuildwheel.schema.json").read_text())
    assert ours == theirs


def test_requires_python_that_vetoes_cells_is_shown_before_building(tmp_path):
    """cibuildwheel reads the package's requires-python at build time whatever the config file
    says: matrix and explain say which cells it would skip, instead of a missing wheel later."""
    (tmp_path / "matrix").mkdir()
    (tmp_path / "matrix" / "wheels.yaml").write_text("python: [cp311, cp312]\n")
    (tmp_path / "setup.cfg").write_text("[options]\npython_requires = >=3.12\n")
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    proc = run_ciwheels("matrix", "--project", str(tmp_path))
    assert proc.returncode == 0
    assert "requires-python '>=3.12' (setup.cfg) excludes cp311" in proc.stderr
    assert "cp312" not in proc.stderr.split("excludes", 1)[1].split(":", 1)[0]
    out = run_ciwheels("explain", "cp311-manylinux_x86_64-x86-64", "--project", str(tmp_path)).stdout
    assert "note: the project's requires-python '>=3.12' (setup.cfg) excludes cp311" in out
