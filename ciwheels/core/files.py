"""Reading the files users give us, the same way everywhere."""

from __future__ import annotations

from pathlib import Path


def read_pyproject(project: Path) -> dict:
    """PROJECT/pyproject.toml for the commands that only consult it (requires-python, the
    version, how the version is made): {} when it is missing, unreadable or not valid TOML.
    init, which starts from it, reports those cases instead."""
    import tomllib

    try:
        return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
