"""The cibuildwheel a build runs: installed from the matrix's spec into an isolated, cached
environment, with the project's patch series applied (a real install from the package index)."""

from __future__ import annotations

import logging

import subprocess

import pytest

from ciwheels.cibw.install import ensure_cibuildwheel
from ciwheels.core.errors import CiwheelsError

pytestmark = pytest.mark.slow  # installs cibuildwheel into new virtual environments

GOOD = """\
--- a/cibuildwheel/__init__.py
+++ b/cibuildwheel/__init__.py
@@ -1 +1 @@
-__version__ = "4.3.3"
+__version__ = "4.3.3+riscv.patched"
"""
STALE = GOOD.replace('-__version__ = "4.3.3"', '-__version__ = "4.2.0"')


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CIWHEELS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def version(exe) -> str:
    """The version the installed (and patched) cibuildwheel reports of itself."""
    py = exe.parent / "python"
    return subprocess.run([str(py), "-c", "import cibuildwheel; print(cibuildwheel.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def logged():
    """The messages the library logs (ciwheels.log: stages log, never print)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger = logging.getLogger("ciwheels")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_spec_and_patches_installed_once(tmp_path, cache, logged):
    (tmp_path / "patches").mkdir()
    (tmp_path / "patches" / "0001-version.patch").write_text(GOOD)
    exe = ensure_cibuildwheel("cibuildwheel==4.3.3", ("patches/0001-version.patch",), tmp_path)
    assert version(exe).endswith("4.3.3+riscv.patched")
    assert str(cache) in str(exe) and any("applied 0001-version.patch to cibuildwheel 4.3.3" in x for x in logged)
    logged.clear()
    assert ensure_cibuildwheel("cibuildwheel==4.3.3", ("patches/0001-version.patch",), tmp_path) == exe
    assert logged == []  # cached: nothing installed twice


def test_patch_that_no_longer_applies_is_a_clear_error(tmp_path, cache):
    (tmp_path / "old.patch").write_text(STALE)
    with pytest.raises(CiwheelsError) as e:
        ensure_cibuildwheel("cibuildwheel==4.3.3", ("old.patch",), tmp_path)
    text = str(e.value)
    assert "the cibuildwheel patch old.patch does not apply to cibuildwheel 4.3.3" in text
    assert "rebase the patch" in text
    # no half-made environment left behind (the lock file stays: removing it would race its waiters)
    assert [p.name for p in (cache / "cibuildwheel").iterdir() if not p.name.endswith(".lock")] == []


def test_missing_patch_and_bad_spec(tmp_path, cache):
    with pytest.raises(CiwheelsError, match="cibuildwheel patch not found"):
        ensure_cibuildwheel("cibuildwheel==4.3.3", ("nope.patch",), tmp_path)
    with pytest.raises(CiwheelsError, match="cannot install cibuildwheel from 'cibuildwheel==0.0.0.404'"):
        ensure_cibuildwheel("cibuildwheel==0.0.0.404", (), tmp_path)
