"""ciwheels' own release: .github/workflows/release.yml builds the sdist and the wheel from a
tag and publishes them with trusted publishing; the version comes from the tag (hatch-vcs), and
an sdist, a checkout without tags and a tree without git still build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version
from ruamel.yaml import YAML

from conftest import REPO
from test_real_projects import actionlint, zizmor_pedantic
from test_render import check_jsonschema

RELEASE = REPO / ".github" / "workflows" / "release.yml"


def workflow() -> dict:
    return YAML(typ="safe").load(RELEASE.read_text())


def test_release_workflow_shape():
    """Tags only; the publishing job alone may mint an OIDC token, uses no secret, and every
    action is pinned by full commit SHA (the ones the rendered workflows use at the catalog's pins)."""
    wf = workflow()
    assert wf["on"] == {"push": {"tags": ["v*"]}}
    assert wf["permissions"] == {}
    jobs = wf["jobs"]
    assert jobs["build"]["permissions"] == {"contents": "read"}
    assert jobs["publish"]["permissions"] == {"id-token": "write"} and jobs["publish"]["needs"] == ["build"]
    assert jobs["publish"]["environment"]["name"] == "pypi"
    assert "secrets." not in RELEASE.read_text()
    with open(REPO / "matrix" / "catalog" / "actions.toml", "rb") as f:
        pins = {a["uses"]: a["sha"] for a in tomllib.load(f).values()}
    uses = [s["uses"] for j in jobs.values() for s in j["steps"] if "uses" in s]
    assert any(u.startswith("pypa/gh-action-pypi-publish@") for u in uses)
    for ref in uses:
        action, _, sha = ref.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", sha), ref
        if action in pins:
            assert sha == pins[action], f"{action}: the catalog pins {pins[action]}"
    checkout = jobs["build"]["steps"][0]["with"]
    assert checkout["fetch-depth"] == 0 and checkout["persist-credentials"] is False


@pytest.mark.slow  # check-jsonschema, actionlint and zizmor
def test_release_workflow_validates():
    check_jsonschema(RELEASE, None)
    actionlint(RELEASE)
    zizmor_pedantic(RELEASE)


def _tree(dest: Path) -> Path:
    """This checkout's tracked files as they are now (uncommitted edits included), without git."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args], cwd=repo,
                   check=True, capture_output=True)


def _build(source: Path, out: Path, *what: str) -> list[Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SETUPTOOLS_SCM", "CIWHEELS_"))}
    proc = subprocess.run([sys.executable, "-m", "build", *what, "--outdir", str(out), str(source)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return sorted(out.iterdir())


def _wheel_version(wheel: Path) -> tuple[str, str]:
    """(METADATA's Version, what ciwheels.__version__ reads inside the wheel)."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        version = re.search(r"^Version: (\S+)$", z.read(meta).decode(), re.M).group(1)
        written = z.read("ciwheels/core/_version.py").decode()
    return version, re.search(r"""__version__\s*=\s*(?:version\s*=\s*)?['"]([^'"]+)['"]""", written).group(1)


@pytest.mark.slow  # three builds in isolated environments (hatchling, hatch-vcs from the index)
def test_version_comes_from_the_tag_and_survives_the_sdist(tmp_path):
    tagged = _tree(tmp_path / "tagged")
    _git(tagged, "init", "-q")
    _git(tagged, "add", "-A")
    _git(tagged, "commit", "-qm", "release")
    _git(tagged, "tag", "v9.8.7")
    # the release job: `python -m build` on the tag's checkout
    built = _build(tagged, tmp_path / "dist")
    assert [p.name for p in built] == ["ciwheels-9.8.7-py3-none-any.whl", "ciwheels-9.8.7.tar.gz"]
    assert _wheel_version(built[0]) == ("9.8.7", "9.8.7")
    # from the sdist alone (no git): the same version
    with tarfile.open(built[1]) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    again = _build(tmp_path / "unpacked" / "ciwheels-9.8.7", tmp_path / "from-sdist", "--wheel")
    assert _wheel_version(again[0]) == ("9.8.7", "9.8.7")
    # a checkout without tags, and a tree without git: they build, with a development/fallback version
    untagged = _tree(tmp_path / "untagged")
    _git(untagged, "init", "-q")
    _git(untagged, "add", "-A")
    _git(untagged, "commit", "-qm", "work")
    dev = _build(untagged, tmp_path / "dev", "--wheel")
    version, written = _wheel_version(dev[0])
    assert Version(version).is_devrelease and version == written
    plain = _build(_tree(tmp_path / "plain"), tmp_path / "plain-dist", "--wheel")
    assert _wheel_version(plain[0]) == ("0.1.0", "0.1.0")
