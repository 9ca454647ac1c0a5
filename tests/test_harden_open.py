"""Hardening, second round (#19): what was still open from the first round. A publish branch
that would cut its GitLab rule, a lone surrogate in the matrix, a NUL byte, a folder where a
matrix file belongs, `diff` in a bare repository or against a revision with a folder named
like a matrix file: each is one paragraph with its place and exit 2, never a traceback or a
rule silently cut."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_ciwheels
from test_render_roundtrip import GITLAB, render, with_value

from ciwheels.core.errors import CiwheelsError


@pytest.mark.parametrize("branch", ["release #1", "a: b", "it's #2", "x:"])
def test_a_publish_branch_with_a_comment_or_mapping_sign_keeps_its_whole_gitlab_rule(tmp_path, branch):
    """`release #1` became `$CI_COMMIT_BRANCH == "release` (the rest a YAML comment): the rule is
    now a quoted scalar when the branch needs it, read back whole (by ruamel and by PyYAML)."""
    docs = render(tmp_path, with_value("publish-branch", branch))
    rules = [r.get("if", "") for r in docs[GITLAB]["ciwheels-publish"]["rules"]]
    assert f'$CI_COMMIT_BRANCH == "{branch}"' in rules


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["release", " ", "#", ":", " #", ": ", "/", "-", "1", "é", "x", "\t", "."]), min_size=1,
                max_size=8).map("".join))
def test_the_publish_rule_holds_the_branch_exactly_or_is_refused(tmp_path, branch):
    try:
        docs = render(tmp_path, with_value("publish-branch", branch))
    except CiwheelsError:
        return
    rules = [r.get("if", "") for r in docs[GITLAB]["ciwheels-publish"]["rules"]]
    assert f'$CI_COMMIT_BRANCH == "{branch}"' in rules


def _project(tmp_path: Path, text: str | bytes) -> Path:
    project = tmp_path / "proj"
    (project / "matrix").mkdir(parents=True, exist_ok=True)
    path = project / "matrix" / "wheels.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return project


@pytest.mark.parametrize("where", ['environment: {X: "a\\ud800"}', '"k\\udfff": 1', 'test-command: "\\udc80"'])
def test_a_lone_surrogate_in_the_matrix_is_a_matrix_error_not_a_unicode_traceback(tmp_path, where):
    project = _project(tmp_path, f"python: [cp313]\narch: [x86_64]\n{where}\n")
    for args in (("explain", "cp313-manylinux_x86_64-x86-64"), ("matrix",), ("render", "--check")):
        proc = run_ciwheels(*args, "--project", str(project))
        assert proc.returncode == 2, (args, proc.stderr)
        assert "wheels.yaml:3:" in proc.stderr and "surrogate" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("char,name", [(b"\x00", "NUL"), (b"\x1b", "ESC"), (b"\x7f", "DEL"), (b"\xc2\x9b", "")])
def test_a_control_character_in_the_matrix_is_named_with_line_and_column(tmp_path, char, name):
    project = _project(tmp_path, b"python: [cp313]\narch: [x86_" + char + b"64]\n")
    proc = run_ciwheels("matrix", "--project", str(project))
    assert proc.returncode == 2 and "wheels.yaml:2:12:" in proc.stderr and name in proc.stderr, proc.stderr


def test_a_folder_named_like_the_matrix_file_is_called_a_folder(tmp_path):
    (tmp_path / "proj" / "matrix" / "wheels.yaml").mkdir(parents=True)
    proc = run_ciwheels("matrix", "--project", str(tmp_path / "proj"))
    assert proc.returncode == 2 and "wheels.yaml is a folder, not a matrix file" in proc.stderr


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example", "-c", "user.name=t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_diff_in_a_bare_repository_is_an_error(tmp_path):
    _git(tmp_path, "init", "-q", "--bare", "repo.git")
    for args in ((), ("HEAD",)):  # HEAD is also a file in a bare repository: it was read as a matrix
        proc = run_ciwheels("diff", *args, cwd=tmp_path / "repo.git")
        assert proc.returncode == 2 and "bare git repository" in proc.stderr, proc.stderr


def test_diff_reads_only_files_of_a_revisions_matrix_folder(tmp_path):
    project = _project(tmp_path, "python: [cp313]\narch: [x86_64]\n")
    (project / "matrix" / "extra.yaml").mkdir()
    (project / "matrix" / "extra.yaml" / "x").write_text("not a matrix\n")
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "x")
    proc = run_ciwheels("diff", "HEAD", "--project", str(project), cwd=project)
    assert proc.returncode == 0 and "no cell changes" in proc.stdout, proc.stderr
    (project / "matrix" / "wheels.yaml").unlink()
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "only a folder")
    proc = run_ciwheels("diff", "HEAD", "HEAD", "--project", str(project), cwd=project)
    assert proc.returncode == 2 and "HEAD:matrix/extra.yaml is not a file" in proc.stderr, proc.stderr


# -- init: bad input is one paragraph naming pyproject.toml, and nothing is left behind ---------
def _init_project(tmp_path: Path, cibw: str = "", **files: bytes) -> Path:
    project = tmp_path / "p"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[project]\nname = "x"\nversion = "1"\n[tool.cibuildwheel]\n{cibw}\n')
    for name, data in files.items():
        (project / name.replace("_", ".")).write_bytes(data)
    return project


@pytest.mark.parametrize("cibw,files,expect", [
    ('environment = "A=\\"unbalanced"', {}, "pyproject.toml: [tool.cibuildwheel] environment"),
    ("", {"setup_cfg": b"[options]\npython_requires = >=3.9 \xff\n"}, "setup.cfg is not UTF-8"),
    ('build-frontend = "nonsense"', {}, "pyproject.toml:5: [tool.cibuildwheel] build-frontend"),
    ("", {"_gitlab-ci_yml": b"a: [\n"}, "cannot read"),
])
def test_a_failed_init_is_one_paragraph_and_leaves_nothing_behind(tmp_path, cibw, files, expect):
    project = _init_project(tmp_path, cibw, **files)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    before = sorted(p.name for p in project.iterdir())
    proc = run_ciwheels("init", "--project", str(project))
    assert proc.returncode == 2 and expect in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert ".tmp" not in proc.stderr  # errors name what the user wrote, not our temporary file
    assert sorted(p.name for p in project.iterdir()) == before  # no matrix/, no wheels.yaml(.tmp)
    if files.get("_gitlab-ci_yml"):  # fixed: the re-run works, no "already exists; use --force"
        (project / ".gitlab-ci.yml").unlink()
        proc = run_ciwheels("init", "--project", str(project))
        assert proc.returncode == 0 and (project / "matrix" / "wheels.yaml").is_file(), proc.stderr
