"""Generative: every value that reaches a rendered pipeline (comments included) either comes
back exactly from two YAML parsers (ruamel, and PyYAML's libyaml-based loader, the family that
reads U+2028 as a line break) with the pipeline's structure unchanged, or is refused with the
one-paragraph error. Hostile strings come from hypothesis, weighted towards the characters
that broke rendering before: line and paragraph separators, NEL, NUL, CR, lone surrogates,
astral characters, quotes, `#`, `: `, `$`, `${{`, backslashes."""

from __future__ import annotations

import json
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from ciwheels.core.errors import CiwheelsError
from ciwheels.project.open import render_project

GITHUB = ".github/workflows/ciwheels.yml"
GITLAB = ".gitlab/ciwheels.gitlab-ci.yml"
NASTY = ["\n", "\r", "\x85", "\u2028", "\u2029", "\x00", "\t", "\ud800", "\U0001f40d", "é", '"', "'", "#", ": ",
         "$", "${{", "}}", "\\", "{", "[", "&", "*", "!", "%", "@", "`", "|", ">", "-", "?", " "]
hostile = st.lists(st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=3)), min_size=1,
                   max_size=6).map("".join)


def _on(node):
    """YAML 1.1 (libyaml) reads GitHub's `on:` key as the boolean true; YAML 1.2 as "on"."""
    return {("on" if k is True else k): v for k, v in node.items()} if isinstance(node, dict) else node


def parse_both(text: str):
    a = YAML(typ="safe", pure=True).load(text)
    b = _on(yaml.load(text, Loader=yaml.CSafeLoader))
    assert a == b, "ruamel and libyaml read the rendered file differently"
    return a


def shape(node):
    """The structure of a parsed pipeline: mapping keys and list lengths, not the scalars. The
    GitLab job of a runner tag is named after the tag (ciwheels-build-<tag>): one name for all."""
    if isinstance(node, dict):
        return {("ciwheels-build-TAG" if str(k).startswith("ciwheels-build-") else k): shape(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [shape(v) for v in node]
    return type(node).__name__


def scalars(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from scalars(v)
    elif isinstance(node, list):
        for v in node:
            yield from scalars(v)
    elif isinstance(node, str):
        yield node


def render(root: Path, matrix: dict, folder: str = "proj", matrix_name: str = "wheels.yaml"):
    project = root / folder
    shutil.rmtree(root, ignore_errors=True)
    (project / "matrix").mkdir(parents=True)
    if folder != "proj":  # the project's folder reaches the pipelines as its path in the repository
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\n')
    (project / "matrix" / matrix_name).write_text(to_yaml(matrix), encoding="utf-8", errors="surrogatepass")
    _, outputs = render_project(project)
    for p, text in outputs.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return {str(p.relative_to(project)): parse_both(text) for p, text in outputs.items()}


def to_yaml(node) -> str:
    """Flow YAML whose strings load back exactly: line breaks, controls, separators and lone
    surrogates as \\u escapes (raw, YAML would fold them), astral characters as themselves (an
    escaped surrogate pair would load as two lone surrogates)."""
    if isinstance(node, dict):
        return "{" + ", ".join(f"{to_yaml(k)}: {to_yaml(v)}" for k, v in node.items()) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(to_yaml(v) for v in node) + "]"
    out = []
    for ch in str(node):
        if ch in '"\\':
            out.append("\\" + ch)
        elif unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch == "\ufeff":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


BASE = {"python": ["cp313"], "arch": ["x86_64", "aarch64"],
        "runners": {"aarch64": {"github": "ubuntu-24.04-arm", "gitlab": ["arm64"]}},
        "render": {"default-branch": "main", "ciwheels": "ciwheels==1.0"}}


def with_value(field: str, value: str) -> dict:
    m = json.loads(json.dumps(BASE))
    if field == "runner":
        m["runners"]["aarch64"]["github"] = value
    elif field == "tag":
        m["runners"]["aarch64"]["gitlab"] = [value]
    elif field in ("publish-branch", "default-branch", "python", "ciwheels"):
        m["render"][field] = value
    return m


_BENIGN: dict[tuple, dict] = {}


def check(tmp_path: Path, field: str, value: str, **where) -> None:
    key = (field, tuple(sorted(where)))
    if key not in _BENIGN:
        _BENIGN[key] = render(tmp_path / "benign", with_value(field, "x"),
                              **{k: "x.yaml" if k == "matrix_name" else "x" for k in where})
    benign = _BENIGN[key]
    try:
        got = render(tmp_path / "hostile", with_value(field, value), **where)
    except (CiwheelsError, UnicodeEncodeError, OSError) as e:
        if isinstance(e, CiwheelsError):
            assert "\n" not in str(e).strip() and "Traceback" not in str(e)
        return  # refused (or, for file names, the file system refused it): never written wrongly
    assert set(got) == set(benign)
    for path in got:
        assert shape(got[path]) == shape(benign[path]), f"{field}={value!r} changed the structure of {path}"
    if field != "matrix-file":
        assert any(value in s for doc in got.values() for s in scalars(doc)), f"{field}={value!r} is not there"


FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.slow  # 20 renders and 40 parses per field
@pytest.mark.parametrize("field", ["runner", "tag", "publish-branch", "default-branch", "python", "ciwheels"])
@FAST
@given(value=hostile)
def test_hostile_render_values_round_trip_or_are_refused(tmp_path, field, value):
    check(tmp_path, field, value)


@pytest.mark.slow
@FAST
@given(value=hostile)
def test_hostile_folder_names_round_trip_or_are_refused(tmp_path, value):
    if "/" in value or value in (".", "..") or "\x00" in value:
        return  # not a folder name
    check(tmp_path, "folder", value, folder="p" + value)


@pytest.mark.slow
@FAST
@given(value=hostile)
def test_hostile_matrix_file_names_round_trip_or_are_refused(tmp_path, value):
    if "/" in value or "\x00" in value:
        return
    check(tmp_path, "matrix-file", value, matrix_name="m" + value + ".yaml")


def test_the_u2028_branch_of_the_review_is_refused_and_a_non_ascii_one_matches(tmp_path):
    with pytest.raises(CiwheelsError, match="U\\+2028"):
        render(tmp_path / "a", with_value("publish-branch", "release\u2028- if: $CI_PIPELINE_SOURCE"))
    docs = render(tmp_path / "b", with_value("publish-branch", "café"))
    rules = [r.get("if", "") for r in docs[GITLAB]["ciwheels-publish"]["rules"]]
    assert '$CI_COMMIT_BRANCH == "café"' in rules  # the text itself: GitLab compares it literally


@pytest.mark.slow  # check-jsonschema, actionlint and zizmor
def test_accepted_hostile_values_pass_the_validators(tmp_path):
    from test_real_projects import actionlint, zizmor_pedantic
    from test_render import check_jsonschema

    value = 'rel"ease # x: y \\ café 🐍 & *a !b %c @d |e >f'
    m = with_value("tag", value)  # (a runner label actionlint does not know is its own warning)
    m["render"]["publish-branch"] = "rel-é🐍#x&y!z"  # no quote or backslash: those are refused in GitLab rules
    render(tmp_path, m, folder="q")
    project = tmp_path / "q"
    check_jsonschema(project / GITHUB, project / GITLAB)
    actionlint(project / GITHUB)
    zizmor_pedantic(project / GITHUB)
