"""An installed wheel carries the catalog, the templates, the actions and the image files:
`pip install ciwheels` works away from this repository.

The wheel goes into a fresh, plain virtual environment (no system site-packages: from inside a
virtualenv those would be the *base* interpreter's, without our dependencies), together with its
dependencies, which `pip wheel` fetches from the package index pip is configured with."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import EXAMPLE, REPO, derive_cells

pytestmark = pytest.mark.slow  # pip builds and installs into a new virtual environment

# what hatch force-includes into the package (pyproject.toml), repository folder -> wheel folder
DATA = {"matrix/catalog": "ciwheels/_data/catalog", "templates": "ciwheels/_data/templates",
        "images": "ciwheels/_data/images"}
RENDERED = (".github/workflows/ciwheels.yml", ".gitlab/ciwheels.gitlab-ci.yml")


def _clean_env() -> dict[str, str]:
    """No way back to this checkout or to the outer environment; no CI settings."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith(("CI_", "CIWHEELS_"))}


def _run(args, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the built ciwheels wheel, the bin folder of a fresh venv it is installed in)."""
    root = tmp_path_factory.mktemp("packaging")
    wheelhouse = root / "wheelhouse"
    # the ciwheels wheel and a wheel of each dependency (from pip's cache or the index)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", wheelhouse, REPO], env=_clean_env())
    wheel = next(wheelhouse.glob("ciwheels-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", venv], env=_clean_env())
    py = venv / "bin" / "python"
    out = _run([py, "-c", "import sys; print(sys.prefix != sys.base_prefix)"], env=_clean_env()).stdout
    assert out.strip() == "True"
    # everything from the wheelhouse, nothing from anywhere else: the dependencies must be declared
    _run([py, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheelhouse, "ciwheels"],
         env=_clean_env())
    return wheel, venv / "bin"


def test_wheel_carries_the_data_folders(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, target in DATA.items():
        files = [p for p in (REPO / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        assert files, folder
        for path in files:
            assert f"{target}/{path.relative_to(REPO / folder).as_posix()}" in names
    assert {"ciwheels/_data/templates/github.yml.j2", "ciwheels/_data/templates/gitlab.yml.j2",
            "ciwheels/_data/catalog/actions.toml", "ciwheels/_data/images/Containerfile"} <= names


def test_installed_wheel_reads_its_own_data(installed, tmp_path):
    _, bin_dir = installed
    where = _run([bin_dir / "python", "-c", "import ciwheels.core.resources as r; print(r.data_dir('catalog'))"],
                 cwd=tmp_path, env=_clean_env()).stdout.strip()
    assert Path(where).is_relative_to(bin_dir.parent) and where.endswith("site-packages/ciwheels/_data/catalog")


def test_installed_wheel_renders_the_example(installed, tmp_path):
    """The example copied into a new git repository, at the same place as in this one, without
    its rendered pipelines: the installed ciwheels renders them again, byte for byte."""
    _, bin_dir = installed
    ciwheels = bin_dir / "ciwheels"
    repo = tmp_path / "repo"
    project = repo / EXAMPLE.relative_to(REPO)
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(
        ".github", ".gitlab", "wheelhouse", "build", "*.egg-info", "__pycache__"))
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "-c", "init.defaultBranch=main"]
    _run(git + ["init", "-q"], cwd=repo)
    _run(git + ["add", "-A"], cwd=repo)
    _run(git + ["commit", "-qm", "example"], cwd=repo)

    proc = _run([ciwheels, "render"], cwd=project, env=_clean_env())
    for rel in RENDERED:
        assert (project / rel).is_file(), f"render did not write {rel}:\n{proc.stderr}"
        assert (project / rel).read_text() == (EXAMPLE / rel).read_text(), rel
    check = subprocess.run([ciwheels, "render", "--check"], cwd=project, env=_clean_env(),
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    cells = json.loads(_run([ciwheels, "matrix", "--json"], cwd=project, env=_clean_env()).stdout)
    assert sorted(c["id"] for c in cells) == sorted(derive_cells()[0])
