"""Builder mode (issue #20 §5): each package version starts from its sdist's own cibuildwheel
configuration, read with init's reader (matrix/cibwconfig.py), with the builder's settings
layered over it; explain and `matrix --json` name both origins; `sdist-config: false` opts out.

Fast tests use the real configuration files of tests/projects/<name> (copied unchanged from the
sdists their README names), packed into an sdist archive in a private cache: nothing is fetched.
The slow tests fetch the real sdists from the package index and hold the cells against
cibuildwheel's own option reader, and build with real cibuildwheel in the local image."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import run_ciwheels

from ciwheels.build.sdist import MAX_CONFIG_MEMBER, config_files
from ciwheels.core.errors import CiwheelsError
from ciwheels.project.open import open_project

OPT = "-O3 -DNDEBUG -fno-strict-overflow"  # defaults.toml compile-flags: before every level's flags

PROJECTS = Path(__file__).parent / "projects"
# the versions tests/projects/<name>/README names
REAL = {"psutil": "7.2.2", "markupsafe": "3.0.4", "pyyaml": "6.0.3"}


def pack(cache: Path, name: str, version: str, members: dict[str, bytes | str] | None = None) -> Path:
    """An sdist NAME-VERSION.tar.gz in the cache: the real config files of tests/projects/NAME
    (or `members`), under the archive's top folder, beside a module as real sdists have."""
    folder = cache / "sdists"
    folder.mkdir(parents=True, exist_ok=True)
    if members is None:
        members = {p.name: p.read_bytes() for p in (PROJECTS / name).iterdir()
                   if p.name in ("pyproject.toml", "setup.cfg", "setup.py")}
    target = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(target, "w:gz") as tf:
        for member, data in {"src/__init__.py": b"", **members}.items():
            data = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(f"{name}-{version}/{member}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return target


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private cache, and an index that cannot be reached: a test that would fetch says so."""
    root = tmp_path / "cache"
    monkeypatch.setenv("CIWHEELS_CACHE", str(root))
    monkeypatch.setenv("CIWHEELS_INDEX_URL", "http://127.0.0.1:9/simple")
    for name, version in REAL.items():
        pack(root, name, version)
    return root


def builder(tmp_path: Path, text: str) -> Path:
    project = tmp_path / "builder"
    (project / "matrix").mkdir(parents=True, exist_ok=True)
    (project / "matrix" / "wheels.yaml").write_text(text, encoding="utf-8")
    return project


def line_of(name: str, needle: str, after: str = "[tool.cibuildwheel]") -> int:
    lines = (PROJECTS / name / "pyproject.toml").read_text().splitlines()
    start = next(n for n, ln in enumerate(lines) if ln.strip().startswith(after))
    return next(n for n, ln in enumerate(lines[start:], start + 1) if ln.strip().startswith(needle))


MATRIX = """\
python: [cp312, cp313, cp314t]
libc: [glibc, musl]
arch: [x86_64, ppc64le, riscv64]
packages:
  - name: psutil
    versions: ["7.2.2"]
  - name: MarkupSafe
    versions: ["3.0.4"]
  - name: PyYAML
    versions: ["6.0.3"]
"""


def cells_by_id(project: Path) -> tuple[dict, dict]:
    e = open_project(project).expansion
    return {c.id: c for c in e.cells}, {d.id: d for d in e.dropped}


def test_cells_start_from_the_sdists_own_configuration(cache, tmp_path):
    cells, dropped = cells_by_id(builder(tmp_path, MATRIX))
    # psutil: its top-level test-command and test-extras, and for cp312 and cp314t its override's
    top = cells["psutil-7.2.2-cp313-manylinux_x86_64-x86-64"]
    assert top.test_command.startswith("make -C {project} PYTHON=python")
    assert top.cibuildwheel_options == {"test-extras": ["test"]}
    assert top.origins["test-command"].kind == "sdist"
    assert str(top.origins["test-command"]) == (
        f"sdist psutil-7.2.2.tar.gz/pyproject.toml:{line_of('psutil', 'test-command')} "
        "([tool.cibuildwheel] test-command)")
    over = cells["psutil-7.2.2-cp312-manylinux_x86_64-x86-64"]
    assert over.test_command == 'python -c "import psutil; print(psutil.__version__)"'
    assert over.cibuildwheel_options == {"test-extras": []}
    assert over.origins["test-command"].line == line_of("psutil", "test-command", "[[tool.cibuildwheel.overrides]]")
    # psutil's skip: cp3{8..12} on ppc64le/s390x and free-threaded musllinux, as cibuildwheel skips them
    assert "psutil-7.2.2-cp312-manylinux_ppc64le-power8" in dropped
    assert "psutil-7.2.2-cp314t-musllinux_x86_64-x86-64" in dropped
    assert "skips it (skip = " in dropped["psutil-7.2.2-cp312-manylinux_ppc64le-power8"].reason
    assert "psutil-7.2.2-cp313-manylinux_ppc64le-power8" in cells
    assert "psutil-7.2.2-cp314t-manylinux_x86_64-x86-64" in cells
    # MarkupSafe 3.0.4: build[uv], and plain build on musllinux ppc64le (uv is not there)
    ms = {c.split("-", 2)[2]: c for c in cells if c.startswith("markupsafe-")}
    assert cells[ms["cp313-manylinux_riscv64-rv64gc"]].cibuildwheel_options == {"build-frontend": "build[uv]"}
    assert cells[ms["cp313-musllinux_ppc64le-power8"]].cibuildwheel_options == {"build-frontend": "build"}
    # PyYAML 6.0.3's sdist has no [tool.cibuildwheel]: its cells get nothing from it, and say so
    yaml_cell = cells["pyyaml-6.0.3-cp313-manylinux_x86_64-x86-64"]
    assert yaml_cell.before_all == "" and yaml_cell.cibuildwheel_options == {}
    assert not any(o.kind == "sdist" for o in yaml_cell.origins.values())
    assert any("pyyaml-6.0.3.tar.gz sets no build settings" in n for n in yaml_cell.notes)


def test_the_builders_settings_lie_over_the_sdists_and_explain_shows_both(cache, tmp_path):
    project = builder(tmp_path, MATRIX.replace(
        '    versions: ["3.0.4"]\n',
        '    versions: ["3.0.4"]\n    cibuildwheel-options: {build-frontend: build}\n'
        '    environment: {CFLAGS: -O2}\n    test-command: python -c "import markupsafe"\n'))
    cells, _ = cells_by_id(project)
    cell = cells["markupsafe-3.0.4-cp313-manylinux_x86_64-x86-64"]
    assert cell.cibuildwheel_options == {"build-frontend": "build"}
    origin = str(cell.origins["cibuildwheel-options.build-frontend"])
    assert "packages[1].cibuildwheel-options.build-frontend" in origin
    assert "over 'build[uv]' from sdist markupsafe-3.0.4.tar.gz/pyproject.toml:" in origin
    assert cell.environment["CFLAGS"] == f"{OPT} -march=x86-64 -O2"
    proc = run_ciwheels("explain", "markupsafe-3.0.4-cp313-manylinux_x86_64-x86-64", "--project", str(project))
    assert proc.returncode == 0, proc.stderr
    assert "over 'build[uv]' from sdist markupsafe-3.0.4.tar.gz/pyproject.toml:" in proc.stdout
    psutil = run_ciwheels("explain", "psutil-7.2.2-cp313-manylinux_x86_64-x86-64", "--project", str(project))
    row = next(ln for ln in psutil.stdout.splitlines() if ln.strip().startswith("test-command"))
    assert row.endswith(f"<- sdist psutil-7.2.2.tar.gz/pyproject.toml:{line_of('psutil', 'test-command')} "
                        "([tool.cibuildwheel] test-command)")
    # `matrix --json`: each package cell's settings by origin
    data = {c["id"]: c for c in json.loads(run_ciwheels("matrix", "--json", "--project", str(project),
                                                        check=True).stdout)}
    origins = data["markupsafe-3.0.4-cp313-manylinux_x86_64-x86-64"]["origins"]
    assert origins["test-command"].startswith(str(project / "matrix" / "wheels.yaml").removeprefix(
        str(Path.cwd()) + "/")) or "packages[1].test-command" in origins["test-command"]
    assert "over 'build[uv]'" in origins["cibuildwheel-options.build-frontend"]
    assert data["psutil-7.2.2-cp313-manylinux_x86_64-x86-64"]["origins"]["test-command"].startswith(
        "sdist psutil-7.2.2.tar.gz/pyproject.toml:")


def test_opting_out_reads_no_sdist(cache, tmp_path):
    """sdist-config: false, per package or for all: the matrix's settings alone, no archive read."""
    for name, version in REAL.items():
        (cache / "sdists" / f"{name}-{version}.tar.gz").unlink()
    for text in (MATRIX.replace('    versions: ["7.2.2"]\n', '    versions: ["7.2.2"]\n    sdist-config: false\n')
                 .replace('    versions: ["3.0.4"]\n', '    versions: ["3.0.4"]\n    sdist-config: false\n')
                 .replace('    versions: ["6.0.3"]\n', '    versions: ["6.0.3"]\n    sdist-config: false\n'),
                 "sdist-config: false\n" + MATRIX):
        e = open_project(builder(tmp_path, text)).expansion
        assert not e.warnings, e.warnings  # nothing fetched: the index is unreachable
        cell = next(c for c in e.cells if c.id == "psutil-7.2.2-cp312-manylinux_ppc64le-power8")
        assert cell.test_command == "" and not any(o.kind == "sdist" for o in cell.origins.values())
    # one package opts out, the others keep theirs
    pack(cache, "psutil", "7.2.2")
    pack(cache, "pyyaml", "6.0.3")
    text = MATRIX.replace('    versions: ["3.0.4"]\n', '    versions: ["3.0.4"]\n    sdist-config: false\n')
    cells, _ = cells_by_id(builder(tmp_path, text))
    assert cells["psutil-7.2.2-cp313-manylinux_x86_64-x86-64"].test_command.startswith("make -C")
    assert cells["markupsafe-3.0.4-cp313-manylinux_x86_64-x86-64"].cibuildwheel_options == {}


def test_requires_python_of_the_sdist_drops_cells(cache, tmp_path):
    """The version being built decides: PyYAML 6.0.3 reads requires-python from setup.py (>=3.8);
    a release of it that asked for >=3.13 leaves cp312 out, with the reason."""
    setup_py = (PROJECTS / "pyyaml" / "setup.py").read_text().replace("python_requires='>=3.8'",
                                                                      "python_requires='>=3.13'")
    assert "python_requires='>=3.13'" in setup_py
    pack(cache, "pyyaml", "6.0.4", {"pyproject.toml": (PROJECTS / "pyyaml" / "pyproject.toml").read_bytes(),
                                    "setup.py": setup_py.encode()})
    text = "python: [cp312, cp313]\narch: [x86_64]\npackages:\n  - {name: pyyaml, versions: ['6.0.3', '6.0.4']}\n"
    cells, dropped = cells_by_id(builder(tmp_path, text))
    assert "pyyaml-6.0.3-cp312-manylinux_x86_64-x86-64" in cells
    assert "pyyaml-6.0.4-cp313-manylinux_x86_64-x86-64" in cells
    why = dropped["pyyaml-6.0.4-cp312-manylinux_x86_64-x86-64"]
    assert "requires-python '>=3.13' (setup.py of pyyaml-6.0.4.tar.gz)" in why.reason
    assert str(why.origin) == "sdist pyyaml-6.0.4.tar.gz/setup.py (requires-python)"


def test_bad_sdist_configuration_is_a_warning_naming_package_version_and_file(cache, tmp_path):
    real = (PROJECTS / "markupsafe" / "pyproject.toml").read_text()
    pack(cache, "markupsafe", "3.0.4", {"pyproject.toml": real.replace('build-frontend = "build[uv]"',
                                                                      'build-frontend = "build[uv]')})
    pack(cache, "psutil", "7.2.2", {"pyproject.toml": b"[tool.cibuildwheel]\n",
                                    "setup.py": b"x = 1\n" * (MAX_CONFIG_MEMBER // 6 + 1)})
    e = open_project(builder(tmp_path, MATRIX)).expansion
    bad = [w for w in e.warnings if w.startswith("markupsafe 3.0.4:")]
    assert len(bad) == 1 and "markupsafe-3.0.4.tar.gz/pyproject.toml is not valid TOML" in bad[0], e.warnings
    assert "its cells build with the matrix's settings alone" in bad[0]
    big = [w for w in e.warnings if w.startswith("psutil 7.2.2:")]
    assert len(big) == 1 and "psutil-7.2.2.tar.gz: setup.py is" in big[0] and "more than the" in big[0], e.warnings
    # the run goes on: every package keeps its cells, PyYAML's are unaffected
    assert {c.package for c in e.cells} == {"psutil", "markupsafe", "pyyaml"}


def test_settings_the_matrix_schema_refuses_are_left_out_with_a_note(cache, tmp_path):
    pack(cache, "markupsafe", "3.0.4", {"pyproject.toml": b"""[tool.cibuildwheel]
build-frontend = "build"
build-verbosity = "loud"
no-such-option = "x"
environment = { "BAD NAME" = "1", GOOD = "2" }
"""})
    cells, _ = cells_by_id(builder(tmp_path, MATRIX))
    cell = cells["markupsafe-3.0.4-cp313-manylinux_x86_64-x86-64"]
    assert cell.cibuildwheel_options == {"build-frontend": "build"}
    assert cell.environment.get("GOOD") == "2" and "BAD NAME" not in cell.environment
    notes = " ".join(cell.notes)
    assert "not carried: cibuildwheel-options.build-verbosity" in notes and "not carried: cibuildwheel-options.no-such-option" in notes
    assert "not carried: environment.BAD NAME" in notes


def test_archive_reader_is_bounded_and_follows_no_links(tmp_path):
    good = tmp_path / "demo-1.0.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        link = tarfile.TarInfo("demo-1.0/pyproject.toml")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        for name, data in (("demo-1.0/setup.cfg", b"[options]\npython_requires = >=3.12\n"),
                           ("demo-1.0/sub/pyproject.toml", b"[tool.cibuildwheel]\nskip='*'\n"),
                           ("other-1.0/setup.py", b"raise SystemExit\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert config_files(good) == {"setup.cfg": "[options]\npython_requires = >=3.12\n"}
    zipped = tmp_path / "demo-1.0.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("demo-1.0/pyproject.toml", "[tool.cibuildwheel]\nbuild = 'cp3*'\n")
        zf.writestr("demo-1.0/setup.py", b"\xff\xfe")
    with pytest.raises(CiwheelsError, match=r"demo-1.0.zip: setup.py is not UTF-8 text"):
        config_files(zipped)
    broken = tmp_path / "demo-2.0.tar.gz"
    broken.write_bytes(good.read_bytes()[:40])
    with pytest.raises(CiwheelsError, match="cannot be read as an sdist archive"):
        config_files(broken)


# -- slow: the real sdists from the index, cibuildwheel's own reader, real builds ---------------

SLOW_PACKAGES = {"psutil": "7.2.2", "markupsafe": "3.0.4", "lupa": "2.8", "setproctitle": "1.3.8"}


@pytest.mark.slow  # fetches the sdists from the package index; cibuildwheel's option reader per cell
def test_every_effective_option_equals_cibuildwheels_for_the_real_sdists(tmp_path):
    """For every cell of a builder matrix (no settings of its own), cibuildwheel's BuildOptions
    for the sdist (its own configuration, unpacked) equal the ones it computes from what `ciwheels
    build` hands it; and the cells are exactly the identifiers cibuildwheel selects."""
    from test_real_projects import (
        _build_options,
        _differences,
        cibuildwheel_identifiers,
    )

    from ciwheels.build.run import CONFIG_FILE, Invocation
    from ciwheels.build.sdist import cached_or_fetched
    from ciwheels.catalog import load_catalog

    catalog = load_catalog()
    pythons, arches = ["cp311", "cp312", "cp313", "cp314t"], ["x86_64", "aarch64", "ppc64le", "riscv64"]
    text = (f"python: [{', '.join(pythons)}]\nlibc: [glibc, musl]\narch: [{', '.join(arches)}]\npackages:\n"
            + "".join(f"  - {{name: {n}, versions: ['{v}']}}\n" for n, v in SLOW_PACKAGES.items()))
    cells = open_project(builder(tmp_path, text)).expansion.cells
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    out = tmp_path / "out"
    out.mkdir()
    differences = []
    for name, version in SLOW_PACKAGES.items():
        src = tmp_path / "src" / name
        src.mkdir(parents=True)
        for member, data in config_files(cached_or_fetched(name, version)).items():
            (src / member).write_text(data)
        own = [c for c in cells if c.package == name]
        selected = {i for i in cibuildwheel_identifiers(src, arches, clean) if i.split("-")[0] in pythons}
        assert sorted({c.identifier for c in own}) == sorted(selected), name
        for cell in own:
            if cell.isa != catalog.arches[cell.arch].baseline.name:
                continue
            inv = Invocation("job", [cell], str(src))
            (out / CONFIG_FILE).write_text(inv.config)
            theirs = _build_options(src, cell.identifier, cell.arch, clean)
            ours = _build_options(src, cell.identifier, cell.arch, {**clean, **inv.options(catalog)},
                                  str(out / CONFIG_FILE))
            # the builder chooses the images (catalog defaults here), whatever the sdist names
            differences += [d for d in _differences(theirs, ours, cell) if "_images:" not in d]
    assert differences == [], "\n".join(differences[:20])


LOCAL_IMAGE = ("images:\n  x86_64-glibc: {image: \"localhost/ciwheels-manylinux-x86_64:trixie\", "
               "policy: manylinux_2_41}\n")


def build(project: Path, job: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ciwheels", "build", "--project", str(project), "--job", job,
                           "--engine", "podman", "--out", str(out)], check=False, capture_output=True, text=True,
                          timeout=1800)


@pytest.mark.slow  # real cibuildwheel and podman builds from PyPI's sdists
def test_the_sdists_configuration_reaches_cibuildwheel_and_the_builder_lies_over_it(test_images, tmp_path):
    """MarkupSafe 3.0.3's own configuration asks for the build[uv] frontend: in the local image,
    which has no uv, cibuildwheel stops on it (so it was applied); the builder's one setting over
    it builds the wheel."""
    text = ("python: [cp313]\narch: [x86_64]\n" + LOCAL_IMAGE
            + "packages:\n  - {name: MarkupSafe, versions: ['3.0.3']}\n")
    project = builder(tmp_path, text)
    job = "markupsafe-3.0.3-manylinux_2_41_x86_64-x86-64"
    cell = "markupsafe-3.0.3-cp313-manylinux_x86_64-x86-64"
    first = build(project, job, tmp_path / "first")
    assert first.returncode != 0
    log = Path(json.loads((tmp_path / "first" / cell / "build-report.json").read_text())["log"]).read_text()
    # cibuildwheel prints the options it read (build[uv], from the sdist) and stops looking for uv
    assert "build_frontend: build[uv]" in log and "Command ['which', 'uv'] failed" in log, log[-3000:]
    builder(tmp_path, text.replace("versions: ['3.0.3']}", "versions: ['3.0.3'], "
                                   "cibuildwheel-options: {build-frontend: build}}"))
    second = build(project, job, tmp_path / "second")
    assert second.returncode == 0, second.stderr[-4000:]
    report = json.loads((tmp_path / "second" / cell / "build-report.json").read_text())
    assert report["status"] == "ok" and report["wheels"][0]["file"].startswith("markupsafe-3.0.3-cp313-cp313-")


@pytest.mark.slow  # real cibuildwheel and podman build of PyYAML's sdist from the index
def test_pyyaml_builds_with_libyaml(test_images, tmp_path):
    """The issue's case. PyYAML 6.0.3's sdist carries no [tool.cibuildwheel] (its wheels' settings
    live in its GitHub workflow, which the sdist does not ship), so builder mode has nothing of its
    own to start from: the builder's one line installs libyaml, and the wheel has the compiled
    `_yaml` extension, repaired by auditwheel, and uses it."""
    from ciwheels.build.sdist import cached_or_fetched

    files = config_files(cached_or_fetched("pyyaml", "6.0.3"))
    assert "tool.cibuildwheel" not in files["pyproject.toml"]
    project = builder(tmp_path, "python: [cp313]\narch: [x86_64]\n" + LOCAL_IMAGE + (
        "packages:\n  - name: PyYAML\n    versions: ['6.0.3']\n"
        "    before-all: apt-get update -qq && apt-get install -y -qq libyaml-dev\n"
        "    test-command: python -c \"import yaml, sys; sys.exit(0 if yaml.__with_libyaml__ else 1)\"\n"))
    out = tmp_path / "wh"
    proc = build(project, "pyyaml-6.0.3-manylinux_2_41_x86_64-x86-64", out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "pyyaml-6.0.3-cp313-manylinux_x86_64-x86-64" / "build-report.json").read_text())
    assert report["status"] == "ok", report
    name = report["wheels"][0]["file"]
    assert name.startswith("pyyaml-6.0.3-cp313-cp313-") and "manylinux" in name and name.endswith("_x86_64.whl")
    members = zipfile.ZipFile(out / report["cell"] / name).namelist()
    assert any(m.startswith("yaml/_yaml.cpython-313-x86_64-linux-gnu") and m.endswith(".so") for m in members)
    assert any(m.startswith("pyyaml.libs/libyaml") for m in members), members  # grafted by auditwheel


def test_archive_walk_stops_at_its_bounds(tmp_path, monkeypatch):
    """A gzip bomb or an archive of countless entries ends the walk at the bounds (lowered here
    so that the test writes kilobytes, not gigabytes), with an error naming the archive."""
    from ciwheels.build import sdist

    bomb = tmp_path / "demo-1.0.tar.gz"
    with tarfile.open(bomb, "w:gz") as tf:
        for name, data in (("demo-1.0/data.bin", b"\0" * 300_000), ("demo-1.0/pyproject.toml", b"[project]\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert config_files(bomb) == {"pyproject.toml": "[project]\n"}
    monkeypatch.setattr(sdist, "MAX_UNPACKED", 100_000)
    with pytest.raises(CiwheelsError, match=r"demo-1.0.tar.gz unpacks to more than"):
        config_files(bomb)
    monkeypatch.setattr(sdist, "MAX_UNPACKED", 1 << 30)
    monkeypatch.setattr(sdist, "MAX_MEMBERS", 1)
    with pytest.raises(CiwheelsError, match=r"more than 1 entries"):
        config_files(bomb)


def test_a_hostile_number_of_overrides_or_patterns_is_refused_with_a_warning(cache, tmp_path):
    many = "".join(f'[[tool.cibuildwheel.overrides]]\nselect = "cp3{n}-*"\nbuild-frontend = "build"\n'
                   for n in range(300))
    pack(cache, "markupsafe", "3.0.4", {"pyproject.toml": "[tool.cibuildwheel]\n" + many})
    wide = "[tool.cibuildwheel]\nskip = '" + " ".join(f"cp3{{0..999}}-*_{n}" for n in range(10)) + "'\n"
    pack(cache, "psutil", "7.2.2", {"pyproject.toml": wide})
    e = open_project(builder(tmp_path, MATRIX)).expansion
    assert any(w.startswith("markupsafe 3.0.4:") and "300 [[tool.cibuildwheel.overrides]], more than the 200"
               in w for w in e.warnings), e.warnings
    assert any(w.startswith("psutil 7.2.2:") and "expand to 10000 patterns, more than the 5000" in w
               for w in e.warnings), e.warnings
    assert {c.package for c in e.cells} == {"psutil", "markupsafe", "pyyaml"}


def test_an_sdist_that_cannot_be_fetched_is_an_error_not_a_quietly_different_build(cache, tmp_path):
    """A passing network failure must not change what a run builds: the unreachable index (the
    fixture's) ends the run with exit 2, naming the package, the version and the opt-out."""
    (cache / "sdists" / "psutil-7.2.2.tar.gz").unlink()
    with pytest.raises(CiwheelsError, match=r"psutil 7\.2\.2: .*sdist-config: false"):
        open_project(builder(tmp_path, MATRIX))
    r = run_ciwheels("matrix", "--project", str(builder(tmp_path, MATRIX)),
                     env={**os.environ, "CIWHEELS_CACHE": str(cache), "CIWHEELS_INDEX_URL": "http://127.0.0.1:9/simple"})
    assert r.returncode == 2 and "Traceback" not in r.stderr and "could not be fetched" in r.stderr, r.stderr
