"""The container engine: one default for `ciwheels build` and `ciwheels image build`."""

from __future__ import annotations

import functools
import shutil
import subprocess

from ciwheels.core.errors import CiwheelsError

ENGINES = ("docker", "podman")


@functools.cache
def _answers(engine: str) -> bool:
    """Whether the engine's server answers (a docker CLI without a daemon does not)."""
    try:
        return subprocess.run([engine, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def container_engine(requested: str | None = None) -> str:
    """`requested` (--engine, CIWHEELS_ENGINE), else the first of docker and podman that is
    installed and answers, else the first installed (its own error then says why it cannot run)."""
    if requested:
        return requested
    installed = [e for e in ENGINES if shutil.which(e)]
    if not installed:
        raise CiwheelsError("no container engine found: install docker or podman, or pass --engine")
    return next((e for e in installed if _answers(e)), installed[0])
