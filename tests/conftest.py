from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "cext-demo"
BAD = Path(__file__).resolve().parent / "bad"


def run_ciwheels(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """The real CLI in a child process, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "ciwheels", *args], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"ciwheels {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture
def write_matrix(tmp_path: Path):
    """Write a matrix file into a throwaway project; returns its path."""

    def write(text: str, name: str = "wheels.yaml") -> Path:
        path = tmp_path / "matrix" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write
