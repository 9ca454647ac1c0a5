"""Cross mode in the matrix and in the build's bookkeeping (issue #23), in process: which cells
get it (glibc cells of an emulated arch, unless `cross: false` or `native-compilers: false`), the
options that turn it on (the image's build command, the build[uv] frontend unless the matrix
names a frontend), ciwheels' cibuildwheel patch applying to the pinned cibuildwheel, and what a
build log's cross lines mean for the build report. The real builds are in test_cross.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import run_ciwheels

from ciwheels.build.run import (
    CROSS_PATCH,
    Invocation,
    SessionLog,
    cross_outcome,
    cross_patches,
    without_cross,
)
from ciwheels.catalog import load_catalog
from ciwheels.core.resources import data_dir
from ciwheels.dist.artifacts import BuildReport, read_report, write_report
from ciwheels.matrix.cibwopts import CROSS_BUILD_COMMAND, cibw_options
from ciwheels.project.open import expand_files

CAT = load_catalog()
BASE = "python: [cp313, cp314t]\narch: [x86_64, riscv64]\nlibc: [glibc, musl]\n"


def cells(write_matrix, text: str) -> dict:
    return {c.id: c for c in expand_files([write_matrix(text)]).cells}


def test_cross_is_on_for_emulated_glibc_cells_only(write_matrix):
    by_id = cells(write_matrix, BASE)
    rv = by_id["cp313-manylinux_riscv64-rv64gc"]
    assert rv.cross and rv.runner.emulated
    options = cibw_options(rv, CAT)
    assert f'CIWHEELS_CROSS_BUILD="{CROSS_BUILD_COMMAND}"' in options["CIBW_ENVIRONMENT_LINUX"]
    assert options["CIBW_BUILD_FRONTEND"] == "build[uv]"
    # the free-threaded cell asks for it too: the image's command falls back for it (and says so)
    assert by_id["cp314t-manylinux_riscv64-rv64gc"].cross
    for cid in ("cp313-musllinux_riscv64-rv64gc", "cp313-manylinux_x86_64-x86-64"):
        assert not by_id[cid].cross
        assert "CIWHEELS_CROSS_BUILD" not in cibw_options(by_id[cid], CAT).get("CIBW_ENVIRONMENT_LINUX", "")
        assert "CIBW_BUILD_FRONTEND" not in cibw_options(by_id[cid], CAT)


@pytest.mark.parametrize("setting", ["cross: false", "native-compilers: false",
                                     "overrides:\n  - {select: {arch: riscv64}, cross: false}"])
def test_cross_false_or_emulated_compilers_build_emulated(write_matrix, setting):
    rv = cells(write_matrix, BASE + setting + "\n")["cp313-manylinux_riscv64-rv64gc"]
    assert not rv.cross
    options = cibw_options(rv, CAT)
    assert "CIWHEELS_CROSS_BUILD" not in options.get("CIBW_ENVIRONMENT_LINUX", "") and "CIBW_BUILD_FRONTEND" not in options


def test_the_matrix_frontend_wins(write_matrix):
    rv = cells(write_matrix, BASE + "cibuildwheel-options: {build-frontend: pip}\n")["cp313-manylinux_riscv64-rv64gc"]
    assert rv.cross and "CIBW_BUILD_FRONTEND" not in cibw_options(rv, CAT)


def test_explain_and_json_show_it(tmp_path, write_matrix):
    write_matrix(BASE + "overrides:\n  - {select: {python: cp314t}, cross: false}\n")
    explained = run_ciwheels("explain", "cp314t-manylinux_riscv64-rv64gc", "--project", str(tmp_path), check=True)
    assert "cross" in explained.stdout and "wheels.yaml" in explained.stdout.split("\n  cross")[1].splitlines()[0]
    listed = json.loads(run_ciwheels("matrix", "--project", str(tmp_path), "--json", check=True).stdout)
    flags = {c["id"]: c["cross"] for c in listed["cells"]} if isinstance(listed, dict) else \
        {c["id"]: c["cross"] for c in listed}
    assert flags["cp313-manylinux_riscv64-rv64gc"] is True and flags["cp314t-manylinux_riscv64-rv64gc"] is False


def test_the_variable_is_owned_by_the_setting(tmp_path, write_matrix):
    write_matrix(BASE + "environment: {CIWHEELS_CROSS_BUILD: /bin/true}\n")
    proc = run_ciwheels("matrix", "--project", str(tmp_path))
    assert proc.returncode == 2 and "cross: true|false" in proc.stderr and "Traceback" not in proc.stderr


def test_the_patch_applies_to_the_pinned_cibuildwheel(tmp_path):
    """ciwheels' patch against the cibuildwheel the catalog pins (its installed copy)."""
    import cibuildwheel

    site = Path(cibuildwheel.__file__).resolve().parent.parent
    patch = data_dir("catalog") / CROSS_PATCH
    proc = subprocess.run(["patch", "--dry-run", "-p1", "-d", str(site), "-i", str(patch)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cross_cells_get_the_patch(write_matrix):
    by_id = cells(write_matrix, BASE)
    assert cross_patches(by_id["cp313-manylinux_riscv64-rv64gc"])[-1].endswith(CROSS_PATCH)
    assert cross_patches(by_id["cp313-manylinux_x86_64-x86-64"]) == ()


LOG = """\
Building cp313-manylinux_riscv64 wheel
ciwheels cross: cp313-manylinux_riscv64: building with the native 3.13.5 and the cross compilers
ciwheels cross: cp313-manylinux_riscv64: native
Building cp314t-manylinux_riscv64 wheel
ciwheels cross: cp314t-manylinux_riscv64: fallback (free-threaded cp314-cp314t: no native interpreter)
"""


def test_the_log_says_what_happened_per_identifier(tmp_path):
    (tmp_path / "job.log").write_text(LOG)
    facts = SessionLog.read(tmp_path / "job.log")
    assert cross_outcome(facts, "cp313-manylinux_riscv64") == "native"
    assert cross_outcome(facts, "cp314t-manylinux_riscv64") == "fallback (free-threaded cp314-cp314t: no native interpreter)"
    assert cross_outcome(facts, "cp311-manylinux_riscv64") is None


def test_the_log_is_read_in_one_bounded_pass(tmp_path):
    """A build log holds other people's output: a 40 MB line without a newline costs no more than
    64 KiB of memory at a time, and the lines after it are still seen."""
    from ciwheels.build.run import LOG_TAIL_WIDTH, failure_hint

    path = tmp_path / "job.log"
    with open(path, "w") as f:
        f.write(LOG)
        f.write("x" * (40 << 20) + "\n")
        f.write("auditwheel: error: too-recent versioned symbols\ncibuildwheel: error: Command failed\n")
    facts = SessionLog.read(path)
    assert facts.building == ["cp313-manylinux_riscv64", "cp314t-manylinux_riscv64"]
    assert cross_outcome(facts, "cp313-manylinux_riscv64") == "native"
    assert facts.errors == ["cibuildwheel: error: Command failed"] and facts.too_recent
    assert list(facts.tail)[-2:] == ["auditwheel: error: too-recent versioned symbols", "cibuildwheel: error: Command failed"]
    assert max(len(line) for line in facts.tail) == LOG_TAIL_WIDTH  # the long line, cut
    assert "auditwheel refused the wheel" in failure_hint(facts, None)


def test_an_image_without_cross_mode_builds_emulated(write_matrix):
    rv = cells(write_matrix, BASE)["cp313-manylinux_riscv64-rv64gc"]
    inv = Invocation("job", [rv])
    assert without_cross(inv, {"io.ciwheels.cross": "cp313"}) is None and inv.cells[0].cross
    assert without_cross(inv, None) is None and inv.cells[0].cross  # not here: the patch checks the image
    assert without_cross(Invocation("job", [rv]), {"io.ciwheels.cross": ""}).startswith("off (the image")
    why = without_cross(inv, {"io.ciwheels.pythons": "cp313"})
    assert why.startswith("off (the image") and not inv.cells[0].cross
    assert "CIWHEELS_CROSS_BUILD" not in inv.options(CAT).get("CIBW_ENVIRONMENT_LINUX", "")


def test_the_report_keeps_it(tmp_path):
    write_report(tmp_path, BuildReport(cell="c", status="ok", cross="fallback (why)"))
    assert read_report(tmp_path / "build-report.json").cross == "fallback (why)"


def test_build_requires_pin_uv_too(write_matrix):
    """Cross mode installs the build environment with uv, which reads UV_CONSTRAINT, not PIP_CONSTRAINT."""
    rv = cells(write_matrix, BASE + "build-requires: ['cython==3.1.4']\n")["cp313-manylinux_riscv64-rv64gc"]
    env = cibw_options(rv, CAT)["CIBW_ENVIRONMENT_LINUX"]
    assert 'PIP_CONSTRAINT="/tmp/ciwheels-build-constraints.txt"' in env
    assert 'UV_CONSTRAINT="/tmp/ciwheels-build-constraints.txt"' in env


def test_the_projects_own_pip_constraint_pins_uv_too(write_matrix):
    """frozenlist pins Cython with `PIP_CONSTRAINT = "requirements/cython.txt"` in its
    [tool.cibuildwheel.environment]: under cross mode's uv the pin must still hold; a project that
    sets UV_CONSTRAINT itself (yarl) keeps its own, and an emulated cell is left as written."""
    pinned = BASE + "environment: {PIP_CONSTRAINT: requirements/cython.txt}\n"
    rv = cells(write_matrix, pinned)["cp313-manylinux_riscv64-rv64gc"]
    env = cibw_options(rv, CAT)["CIBW_ENVIRONMENT_LINUX"]
    assert 'PIP_CONSTRAINT="requirements/cython.txt"' in env and 'UV_CONSTRAINT="requirements/cython.txt"' in env
    own = cells(write_matrix, BASE + "environment: {PIP_CONSTRAINT: a.txt, UV_CONSTRAINT: b.txt}\n")
    env = cibw_options(own["cp313-manylinux_riscv64-rv64gc"], CAT)["CIBW_ENVIRONMENT_LINUX"]
    assert 'UV_CONSTRAINT="b.txt"' in env and 'UV_CONSTRAINT="a.txt"' not in env
    both = cells(write_matrix, BASE + "environment: {UV_CONSTRAINT: b.txt}\nbuild-requires: ['cython==3.1.4']\n")
    env = cibw_options(both["cp313-manylinux_riscv64-rv64gc"], CAT)["CIBW_ENVIRONMENT_LINUX"]
    assert 'UV_CONSTRAINT="/tmp/ciwheels-build-constraints.txt"' in env and "b.txt" not in env  # the builder's pins win, as for pip
    off = cells(write_matrix, pinned + "cross: false\n")["cp313-manylinux_riscv64-rv64gc"]
    assert "UV_CONSTRAINT" not in cibw_options(off, CAT)["CIBW_ENVIRONMENT_LINUX"]


def test_the_image_recipe_chooses_its_cross_interpreters():
    """--cross-python: the default (every interpreter that can) keeps the recipe's digest, a
    subset is another recipe, and what the image cannot carry is refused before any build."""
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.images.recipe import Recipe, cross_pythons

    pythons = ("cp311", "cp313", "cp314", "cp314t")
    every = Recipe("riscv64", None, pythons)
    assert cross_pythons(every) == ("cp311", "cp313", "cp314")
    some = Recipe("riscv64", None, pythons, cross=("cp313",))
    assert cross_pythons(some) == ("cp313",) and some.digest() != every.digest()
    assert cross_pythons(Recipe("riscv64", None, pythons, cross=())) == ()
    assert cross_pythons(Recipe("riscv64", None, pythons, native_compilers=False, cross=("cp313",))) == ()
    with pytest.raises(CiwheelsError, match="cp312: the image does not carry it"):
        Recipe("riscv64", None, pythons, cross=("cp312",))
    with pytest.raises(CiwheelsError, match="cp314t: a free-threaded interpreter"):
        Recipe("riscv64", None, pythons, cross=("cp314t",))
    r = run_ciwheels("image", "build", "riscv64", "--python", "cp313", "--python", "cp314", "--dry-run", "--json",
                     "--cross-python", "none")
    assert r.returncode == 0 and json.loads(r.stdout)["cross"] == [], r.stderr
    r = run_ciwheels("image", "build", "riscv64", "--python", "cp313", "--dry-run", "--cross-python", "cp311")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--cross-python cp311" in r.stderr
