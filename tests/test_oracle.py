"""Oracle: for every cell of a large matrix, real `cibuildwheel --platform linux
--print-build-identifiers` run with exactly the cell's CIBW_* options prints exactly that
cell's identifier; and cibuildwheel's own environment parser reads CIBW_ENVIRONMENT_LINUX back
into the cell's environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cibuildwheel.environment import parse_environment

from ciwheels.catalog import load_catalog
from ciwheels.project.open import expand_files

OPT = "-O3 -DNDEBUG -fno-strict-overflow"  # defaults.toml compile-flags: before every level's flags

CAT = load_catalog()


@pytest.fixture(scope="module")
def large_matrix(tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("oracle")
    pythons = [p.id for p in CAT.pythons.values() if p.status != "unavailable"]
    isa = "\n".join(f"  {a.name}: [{', '.join(lv.name for lv in a.levels)}]" for a in CAT.arches.values())
    text = (f"python: [{', '.join(pythons)}]\nlibc: [glibc, musl]\narch: [{', '.join(CAT.arches)}]\n"
            f"isa:\n{isa}\nenvironment:\n  CFLAGS: '-O2 -g0'\n  QUOTED: 'say \"hi\" $HOME \\\\n'\n")
    (root / "m.yaml").write_text(text)
    cells = expand_files([root / "m.yaml"]).cells
    assert len(cells) > 300
    return cells


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory) -> Path:
    pkg = tmp_path_factory.mktemp("pkg")
    (pkg / "pyproject.toml").write_text('[project]\nname = "oracle"\nversion = "0"\n')
    return pkg


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}


@pytest.mark.slow  # one real cibuildwheel run per distinct selection: minutes on two cores
def test_every_cell_selects_exactly_its_identifier(large_matrix, package_dir):
    exe = shutil.which("cibuildwheel")
    assert exe, "cibuildwheel is a test dependency"
    # cells of different ISA levels share their selectors: ask once per distinct selection
    selections: dict[tuple, list] = {}
    for cell in large_matrix:
        key = tuple(sorted((k, v) for k, v in cell.cibw.items() if k in ("CIBW_BUILD", "CIBW_ARCHS_LINUX",
                                                                          "CIBW_ENABLE")))
        selections.setdefault(key, []).append(cell)
    assert len(selections) == len({c.identifier for c in large_matrix})

    def ask(cells):
        env = {**_clean_env(), **cells[0].cibw}
        proc = subprocess.run([exe, "--platform", "linux", "--print-build-identifiers", str(package_dir)],
                              env=env, capture_output=True, text=True, timeout=120)
        return cells, proc

    with ThreadPoolExecutor(max_workers=4) as pool:
        for cells, proc in pool.map(ask, selections.values()):
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.split() == [cells[0].identifier], (cells[0].id, proc.stdout)
            assert {c.identifier for c in cells} == {cells[0].identifier}


def test_cibuildwheel_parses_cell_environment(large_matrix):
    for cell in large_matrix:
        parsed = parse_environment(cell.cibw["CIBW_ENVIRONMENT_LINUX"]).as_dictionary(
            prev_environment={"HOME": "/home/builder"})
        expected = {k: v.replace("$HOME", "/home/builder") for k, v in cell.environment.items()}
        assert {k: parsed[k] for k in expected} == expected, cell.id
    v3 = next(c for c in large_matrix if c.isa == "x86-64-v3")
    assert v3.environment["CFLAGS"] == f"{OPT} -march=x86-64-v3 -mneeded -O2 -g0"


def test_the_matrix_owns_the_configuration(tmp_path, write_matrix):
    """Build always hands cibuildwheel a config file it writes: the package's own
    [tool.cibuildwheel] (here: one that would skip everything and names an option cibuildwheel
    rejects) is never read, and the matrix's cibuildwheel-options are ones cibuildwheel accepts."""
    from ciwheels.build.run import CONFIG_FILE, Invocation

    write_matrix("python: [cp313]\ncibuildwheel-options:\n  build-frontend: build[uv]\n  build-verbosity: 1\n"
                 "  config-settings: {setup-args: ['-Dfoo=bar', '-Dx=\"y\"']}\n  test-extras: [test]\n"
                 "  repair-wheel-command: 'auditwheel repair -w {dest_dir} {wheel}'\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "owned"\nversion = "0"\n'
                                             '[tool.cibuildwheel]\nskip = "*"\nnot-an-option = 1\n')
    cell = expand_files([tmp_path / "matrix" / "wheels.yaml"]).cells[0]
    inv = Invocation("job", [cell], str(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    (out / CONFIG_FILE).write_text(inv.config)
    cmd = inv.command(str(out), shutil.which("cibuildwheel"))
    cmd.insert(1, "--print-build-identifiers")
    proc = subprocess.run(cmd, cwd=tmp_path, env={**_clean_env(), **inv.options(CAT)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["cp313-manylinux_x86_64"]
