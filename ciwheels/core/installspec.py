"""Pip requirements of ciwheels itself as a hosted CI runner must install them: git remotes in
their https form, and why a requirement names something only the rendering machine has."""

from __future__ import annotations

import re


def https_form(url: str) -> str | None:
    """A git remote in the form a hosted runner clones without credentials: https as is,
    `git@host:path`, `ssh://[user@]host[:port]/path` and `git://host/path` as https://host/path;
    None for anything else (a local path, file://)."""
    if url.startswith("https://"):
        return url
    m = re.fullmatch(r"(?:[\w.-]+@)?([\w.-]+\.[\w.-]+):(?!//)/?(.+)", url)  # scp-like: git@github.com:o/r.git
    if m and not url.startswith(("ssh:", "git:", "http:", "file:")):
        return f"https://{m.group(1)}/{m.group(2)}"
    m = re.fullmatch(r"(?:ssh|git\+ssh|git)://(?:[^@/]+@)?([\w.-]+)(?::\d+)?/(.+)", url)
    if m:
        return f"https://{m.group(1)}/{m.group(2)}"
    return None


def unreachable(spec: str) -> str | None:
    """Why CI cannot pip-install `spec`, or None: a `file:` URL or an absolute path names this
    machine. (A relative path such as "." is the CI checkout itself, as in the example.)"""
    target = spec.split("@", 1)[1].strip() if re.match(r"^[A-Za-z0-9._-]+\s*@", spec) else spec.strip()
    if re.match(r"^(git\+)?file:", target) or target.startswith(("/", "~")):
        return f"{target} is a path on the machine that rendered, not on a CI runner"
    if re.match(r"^git\+(ssh://|git@)", target):
        return f"{target} needs an ssh key a hosted runner does not have; use its https form"
    return None
