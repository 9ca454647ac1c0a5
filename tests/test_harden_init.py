"""Hardening, init: the reading of pyproject.toml. Odd [tool.cibuildwheel] values, non-UTF-8
files and unbounded brace expansion are the usual one-paragraph error, never a traceback."""

from __future__ import annotations

import time

import pytest

from ciwheels.core.errors import CiwheelsError
from ciwheels.project.init import init_project


@pytest.mark.parametrize("toml", [
    '[tool]\ncibuildwheel = "yes"\n',
    '[tool.cibuildwheel]\nlinux = "x"\n',
    '[tool.cibuildwheel]\noverrides = "x"\n',
    '[tool.cibuildwheel]\noverrides = [1, 2]\n',
    'tool = 5\n',
], ids=["table-is-string", "linux-is-string", "overrides-is-string", "overrides-items", "tool-is-int"])
def test_odd_cibuildwheel_values_are_errors(tmp_path, toml):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nrequires-python = ">=3.12"\n' + toml)
    if toml.startswith("tool = 5"):  # no cibuildwheel settings at all: starting from the defaults is fine
        init_project(tmp_path)
        return
    with pytest.raises(CiwheelsError, match="must be tables") as e:
        init_project(tmp_path)
    assert "\n" not in str(e.value)


def test_non_utf8_pyproject_is_an_error(tmp_path):
    (tmp_path / "pyproject.toml").write_bytes('[project]\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(CiwheelsError, match="not UTF-8 text"):
        init_project(tmp_path)


def test_brace_expansion_in_selectors_is_bounded(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.cibuildwheel]\nbuild = "cp3{1..999999999}-* {a,b}{c,d}{e,f}{g,h}{i,j}'
        '{k,l}{m,n}{o,p}{q,r}{s,t}{u,v}"\n')
    start = time.monotonic()
    with pytest.raises(CiwheelsError, match="expands to more than 1000 patterns, the limit"):
        init_project(tmp_path)
    assert time.monotonic() - start < 2
