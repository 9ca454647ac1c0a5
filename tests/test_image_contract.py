"""The image contract on the consumer side (#11): an image says which Pythons it carries (the
`io.ciwheels.pythons` label of one present locally, or `images: {KEY: {pythons: [...]}}` in the
matrix for one that is not), and a cell whose Python it lacks is refused before any container
starts; and the `native-compilers` setting, which turns the images' native cross compilers off.

The fast tests are in-process; the slow one builds a labelled image with podman and runs real
cibuildwheel in it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE, run_ciwheels

from ciwheels.catalog import load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.images.labels import (
    NOT_IN_IMAGE,
    POLICY_LABEL,
    PYTHONS_LABEL,
    carried_pythons,
    policy_mismatches,
    refusals,
)
from ciwheels.matrix.cibwopts import cibw_options
from ciwheels.matrix.load import load_matrix
from ciwheels.matrix.normalise import normalise
from ciwheels.project.open import expand_files

OPT = "-O3 -DNDEBUG -fno-strict-overflow"  # defaults.toml compile-flags: before every level's flags

CAT = load_catalog()
RV = "localhost/ciwheels-manylinux-riscv64:test"


def cells_of(path) -> dict:
    return {c.id: c for c in expand_files([path]).cells}


# -- images: {KEY: {pythons: [...]}} ---------------------------------------------------------------
def test_declared_pythons_are_canonical_catalog_names(write_matrix):
    path = write_matrix(f'python: [cp311, cp313]\narch: [riscv64]\nimages:\n  riscv64-glibc:\n    image: "{RV}"\n'
                        '    pythons: ["3.11", cp313, "3.14t"]\n')
    spec = normalise([load_matrix(path, CAT)], CAT)
    image = spec.matrices[0].images[("riscv64", "glibc")]
    assert image.pythons == ("cp311", "cp313", "cp314t") and image.key == "riscv64-glibc"
    assert sorted(cells_of(path)) == ["cp311-manylinux_riscv64-rv64gc", "cp313-manylinux_riscv64-rv64gc"]


def test_a_cell_the_image_lacks_is_an_error_naming_the_images_entry(write_matrix, tmp_path):
    write_matrix("python: [cp311, cp312, cp313, cp314, cp314t]\narch: [x86_64, riscv64]\n"
                 "isa: {riscv64: [rv64gc, rva23u64]}\n"
                 f"images:\n  x86_64-glibc: manylinux_2_28\n  riscv64-glibc: {{image: \"{RV}\", pythons: [cp313]}}\n"
                 + "registries: {a: {url: 'https://r.invalid/a', select: {isa: rva23u64}}, b: {url: 'https://r.invalid/b'}}\n")
    proc = run_ciwheels("matrix", "--project", str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    msg = lines[0]
    assert msg.startswith("error: ") and "matrix/wheels.yaml:6:3: " in msg  # the line of the riscv64-glibc entry
    assert f"the image {RV} (images.riscv64-glibc) carries cp313, but the matrix builds cp311, cp312, cp314, " \
           "cp314t on it: 8 cell(s)" in msg
    assert "cp311-manylinux_riscv64-rv64gc" in msg and "and 4 more" in msg  # a few named, the rest counted
    assert "exclude: [{python: [cp311, cp312, cp314, cp314t], arch: riscv64, libc: glibc}]" in msg
    assert "--python cp311 --python cp312 --python cp313 --python cp314 --python cp314t" in msg
    # every other command that opens the project says the same
    assert run_ciwheels("render", "--check", "--project", str(tmp_path)).stderr.strip() == msg


def test_cells_dropped_by_exclude_are_fine(write_matrix):
    path = write_matrix(f"python: [cp311, cp312, cp313]\narch: [x86_64, riscv64]\n"
                        f"images:\n  riscv64-glibc: {{image: \"{RV}\", pythons: [cp311, cp313]}}\n"
                        "exclude:\n  - {python: cp312, arch: riscv64}\n")
    ids = sorted(cells_of(path))
    assert "cp312-manylinux_x86_64-x86-64" in ids and "cp312-manylinux_riscv64-rv64gc" not in ids
    assert len(ids) == 5


def test_an_include_entry_the_image_lacks_is_an_error_too(write_matrix):
    path = write_matrix(f"python: [cp313]\narch: [x86_64]\nimages:\n  riscv64-glibc:\n    image: \"{RV}\"\n"
                        "    pythons: [cp313]\ninclude:\n  - {python: cp314t, arch: riscv64}\n")
    with pytest.raises(CiwheelsError) as e:
        expand_files([path])
    assert e.value.line == 4 and "builds cp314t on it: 1 cell(s) (cp314t-manylinux_riscv64-rv64gc)" in str(e.value)


def test_undeclared_images_and_other_platforms_are_not_checked(write_matrix):
    path = write_matrix(f"python: [cp312, cp313]\narch: [x86_64, riscv64]\nlibc: [glibc, musl]\n"
                        f"images:\n  riscv64-musl: {{image: \"{RV}\", pythons: [cp312, cp313]}}\n"
                        f"  riscv64-glibc: {{image: \"{RV}\"}}\n")
    assert len(cells_of(path)) == 8


@pytest.mark.parametrize("entry, expect", [
    ("{image: x, pythons: [cp313, cp313]}", "images.riscv64-glibc.pythons lists 'cp313' twice"),
    ("{image: x, pythons: []}", "images.riscv64-glibc.pythons"),
    ("{image: x, pythons: cp313}", "images.riscv64-glibc.pythons must be"),
    ("{image: x, pythons: [cp39t]}", "Did you mean"),
])
def test_bad_pythons_of_an_image(write_matrix, tmp_path, entry, expect):
    write_matrix(f"python: [cp313]\narch: [riscv64]\nimages:\n  riscv64-glibc: {entry}\n")
    proc = run_ciwheels("matrix", "--project", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "matrix/wheels.yaml:4:" in proc.stderr and expect in proc.stderr, proc.stderr


def test_the_schema_exports_the_pythons_of_an_image(tmp_path):
    schema = json.loads(run_ciwheels("schema", check=True).stdout)
    image = schema["properties"]["images"]["additionalProperties"]["anyOf"][1]["properties"]
    assert "cp314t" in image["pythons"]["items"]["enum"]
    assert schema["properties"]["native-compilers"]["type"] == "boolean"


# -- the io.ciwheels.pythons label, at build time -----------------------------------------------
def test_the_label_says_what_an_image_carries():
    assert carried_pythons(None) is None  # not present locally
    assert carried_pythons({"io.buildah.version": "1.28.2"}) is None  # not made by ciwheels
    assert carried_pythons({PYTHONS_LABEL: "cp311 cp313  cp314 cp314t"}) == ("cp311", "cp313", "cp314", "cp314t")
    assert carried_pythons({PYTHONS_LABEL: ""}) == ()


def test_refusals_name_the_image_and_what_it_carries_and_ask_once_per_image(write_matrix):
    path = write_matrix(f"python: [cp311, cp312, cp313]\narch: [x86_64, riscv64]\n"
                        f"images:\n  riscv64-glibc: \"{RV}\"\n  x86_64-glibc: localhost/plain:1\n")
    cells = list(cells_of(path).values())
    asked = []

    def pythons_of(ref):
        asked.append(ref)
        return ("cp311", "cp313") if ref == RV else None

    out = refusals(cells, pythons_of)
    assert sorted(asked) == sorted([RV, "localhost/plain:1"])  # once per image, not per cell
    assert list(out) == ["cp312-manylinux_riscv64-rv64gc"]
    why = out["cp312-manylinux_riscv64-rv64gc"]
    assert f"the image {RV} carries cp311, cp313 (label io.ciwheels.pythons), not cp312" in why
    assert "no container was started" in why
    assert refusals(cells, lambda ref: ()).keys() == {c.id for c in cells}  # a label that lists nothing
    assert NOT_IN_IMAGE == "python-not-in-image"


def test_an_image_whose_policy_is_not_the_cells_is_named_once(write_matrix):
    path = write_matrix(f"python: [cp311, cp313]\narch: [x86_64, riscv64]\nimages:\n"
                        f"  riscv64-glibc: {{image: \"{RV}\", policy: manylinux_2_35}}\n"
                        f"  x86_64-glibc: {{image: localhost/x:1, policy: manylinux_2_41}}\n")
    labels = {RV: {POLICY_LABEL: "manylinux_2_41_riscv64"}, "localhost/x:1": {POLICY_LABEL: "manylinux_2_41_x86_64"}}
    warnings = policy_mismatches(list(cells_of(path).values()), labels.get)
    assert len(warnings) == 1, warnings  # the x86_64 image agrees; the riscv64 one is named once, not per cell
    assert f"the image {RV} says its wheels get manylinux_2_41_riscv64" in warnings[0]
    assert "expects manylinux_2_35_riscv64" in warnings[0]
    assert policy_mismatches(list(cells_of(path).values()), lambda ref: None) == []  # unlabelled or absent


# -- native-compilers -----------------------------------------------------------------------------
NATIVE = """\
python: [cp312, cp313]
arch: [x86_64, riscv64]
native-compilers: false
environment: {A: "1"}
overrides:
  - select: {arch: x86_64}
    native-compilers: true
include:
  - {python: cp314, arch: riscv64, native-compilers: true}
"""


def test_native_compilers_cascades_and_false_becomes_the_variable(write_matrix):
    cells = cells_of(write_matrix(NATIVE))
    on = {cid for cid, c in cells.items() if c.native_compilers}
    assert on == {"cp312-manylinux_x86_64-x86-64", "cp313-manylinux_x86_64-x86-64", "cp314-manylinux_riscv64-rv64gc"}
    rv = cells["cp313-manylinux_riscv64-rv64gc"]
    assert rv.cibw["CIBW_ENVIRONMENT_LINUX"] == f'CFLAGS="{OPT} -march=rv64gc" CXXFLAGS="{OPT} -march=rv64gc" A="1" ' \
                                               'CIWHEELS_NATIVE_COMPILERS="0"'
    assert "CIWHEELS_NATIVE_COMPILERS" not in cells["cp314-manylinux_riscv64-rv64gc"].cibw["CIBW_ENVIRONMENT_LINUX"]
    assert "CIWHEELS_NATIVE_COMPILERS" not in cells["cp312-manylinux_x86_64-x86-64"].cibw["CIBW_ENVIRONMENT_LINUX"]
    # the adapter gives build the same options from the cell, also beside what build adds (the CA bundle)
    assert cibw_options(rv, CAT) == rv.cibw
    env = cibw_options(rv, CAT, {"PIP_CERT": "/ca.crt"})["CIBW_ENVIRONMENT_LINUX"]
    assert 'CIWHEELS_NATIVE_COMPILERS="0"' in env and 'PIP_CERT="/ca.crt"' in env
    assert "CIWHEELS_NATIVE_COMPILERS" not in rv.environment  # a setting, not a variable the matrix set
    assert "wheels.yaml:3" in str(rv.origins["native-compilers"])
    assert "overrides[0]" in str(cells["cp312-manylinux_x86_64-x86-64"].origins["native-compilers"])


def test_native_compilers_in_a_packages_entry(write_matrix):
    cells = cells_of(write_matrix("python: [cp313]\narch: [riscv64]\nsdist-config: false\npackages:\n"
                                  "  - {name: msgpack, versions: ['1.1.2'], native-compilers: false}\n"
                                  "  - {name: pyyaml, versions: ['6.0.3']}\n"))
    assert not cells["msgpack-1.1.2-cp313-manylinux_riscv64-rv64gc"].native_compilers
    assert cells["pyyaml-6.0.3-cp313-manylinux_riscv64-rv64gc"].native_compilers


def test_native_compilers_in_matrix_json_and_explain(write_matrix, tmp_path):
    write_matrix(NATIVE)
    cells = {c["id"]: c for c in json.loads(run_ciwheels("matrix", "--json", "--project", str(tmp_path),
                                                         check=True).stdout)}
    assert cells["cp313-manylinux_riscv64-rv64gc"]["native_compilers"] is False
    assert cells["cp313-manylinux_x86_64-x86-64"]["native_compilers"] is True
    assert 'CIWHEELS_NATIVE_COMPILERS="0"' in cells["cp313-manylinux_riscv64-rv64gc"]["cibw"]["CIBW_ENVIRONMENT_LINUX"]

    text = run_ciwheels("explain", "cp313-manylinux_riscv64-rv64gc", "--project", str(tmp_path), check=True).stdout
    row = next(line for line in text.splitlines() if line.strip().startswith("native-compilers"))
    assert "false (CIWHEELS_NATIVE_COMPILERS=0" in row and "wheels.yaml:3 (native-compilers)" in row
    assert 'CIWHEELS_NATIVE_COMPILERS="0"' in text  # in the cibuildwheel options explain prints
    data = json.loads(run_ciwheels("explain", "cp313-manylinux_x86_64-x86-64", "--json", "--project", str(tmp_path),
                                   check=True).stdout)
    setting = next(s for s in data["settings"] if s["setting"] == "native-compilers")
    assert setting["value"] == "true" and "overrides[0]" in setting["origin"]


def test_native_compilers_defaults_to_true_from_the_catalog(tmp_path):
    text = run_ciwheels("explain", "cp313-manylinux_x86_64-x86-64", "--project", str(EXAMPLE), check=True).stdout
    row = next(line for line in text.splitlines() if line.strip().startswith("native-compilers"))
    assert " true " in row and "catalog: defaults.toml native-compilers" in row
    assert "CIWHEELS_NATIVE_COMPILERS" not in text


def test_a_changed_native_compilers_is_a_changed_cell_in_diff(tmp_path):
    (tmp_path / "a.yaml").write_text("python: [cp313]\narch: [riscv64]\n")
    (tmp_path / "b.yaml").write_text("python: [cp313]\narch: [riscv64]\nnative-compilers: false\n")
    proc = run_ciwheels("diff", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"), "--format", "json",
                        "--project", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    changed = json.loads(proc.stdout)["changed"]
    assert [c["id"] for c in changed] == ["cp313-manylinux_riscv64-rv64gc"], changed


# -- for real: the x86_64 image `ciwheels image build` makes says it carries cp313 only -----------


@pytest.fixture
def labelled_image(test_images):
    ref = test_images["x86_64"]["tag"]
    proc = subprocess.run(["podman", "image", "inspect", "--format", "{{ index .Labels \"%s\" }}" % PYTHONS_LABEL, ref],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["cp313"], proc.stdout + proc.stderr
    return ref


@pytest.mark.slow  # cibuildwheel in the labelled image
def test_a_labelled_image_refuses_the_python_it_lacks_before_any_container(labelled_image, tmp_path):
    project = tmp_path / "proj"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".github", ".gitlab", "build", "*.egg-info"))
    (project / "matrix" / "wheels.yaml").write_text(
        f"python: [cp312, cp313]\nimages:\n  x86_64-glibc: {{image: \"{labelled_image}\", policy: manylinux_2_41}}\n"
        "test-command: python {project}/tests/test_core.py\n")
    out = tmp_path / "wh"
    proc = subprocess.run([sys.executable, "-m", "ciwheels", "build", "--project", str(project), "--all",
                           "--engine", "podman", "--out", str(out)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 1, proc.stderr[-3000:]

    refused = json.loads((out / "cp312-manylinux_x86_64-x86-64" / "build-report.json").read_text())
    assert refused["status"] == NOT_IN_IMAGE and refused["wheels"] == [] and refused["cibuildwheel_exit"] is None
    why = Path(refused["log"]).read_text()
    assert f"the image {labelled_image} carries cp313 (label io.ciwheels.pythons), not cp312" in why
    assert why.strip() in proc.stderr

    built = json.loads((out / "cp313-manylinux_x86_64-x86-64" / "build-report.json").read_text())
    assert built["status"] == "ok" and built["wheels"][0]["isa_check"] == "ok", built
    wheel = out / built["cell"] / built["wheels"][0]["file"]
    assert wheel.name.startswith("cext_demo-0.1.0-cp313-cp313-") and wheel.exists()
    log = Path(built["log"]).read_text()
    assert "cext_demo: ok" in log  # tested inside the container
    # cibuildwheel was asked for cp313 only: cp312 never reached a container (no "stopped at", no rebuild)
    assert "cp312-manylinux_x86_64" not in log and "cibuildwheel stopped at" not in proc.stderr
    assert "[1/1]" in proc.stderr  # one cibuildwheel run, for the one cell left
    summary = [line.split() for line in proc.stderr.splitlines() if line.startswith("cp31")]
    assert ["cp312-manylinux_x86_64-x86-64", NOT_IN_IMAGE, "0", "0s", "-"] in summary  # cross: "-", never started
    gathered = run_ciwheels("gather", str(out), "--out", str(tmp_path / "dist"))
    assert gathered.returncode == 0 and "cp312-manylinux_x86_64-x86-64" in gathered.stderr


@pytest.mark.slow
def test_build_and_image_build_choose_the_same_engine(tmp_path, monkeypatch):
    """#18.6: build preferred docker, `image build` podman. One default now: the first of docker
    and podman that is installed and answers. A docker CLI whose daemon is absent (what this
    machine's own docker client is) does not answer, so podman is chosen."""
    import shutil

    from ciwheels.images import engine

    podman = shutil.which("podman")
    assert podman, "podman is a system dependency of the tests"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").symlink_to(podman)
    docker = bin_dir / "docker"  # a docker CLI that cannot reach a daemon, as `docker info` then fails
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    engine._answers.cache_clear()
    assert engine.container_engine() == "podman"
    assert engine.container_engine("docker") == "docker"  # --engine wins
    (bin_dir / "podman").unlink()
    engine._answers.cache_clear()
    assert engine.container_engine() == "docker"  # installed, even if it does not answer: its error says why
    docker.unlink()
    with pytest.raises(CiwheelsError, match="no container engine found"):
        engine.container_engine()
    engine._answers.cache_clear()
