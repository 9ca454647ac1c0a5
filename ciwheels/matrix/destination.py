"""Where each cell's wheels go: the one owner of that decision.

The rule, in order (the README's "Where wheels go" says the same):

1. the first registry of the cell's own matrix file whose `select` matches the cell;
2. else that file's registry without `select`;
3. else the project's registry without `select` (the first, in file order): a catch-all in one
   matrix file also catches the cells of the others;
4. else the environment's registry: `--repository-url` where the command has it, else
   `CIWHEELS_REPOSITORY_URL` (with `CIWHEELS_INDEX`), else in GitLab CI the project's own
   package registry;
5. else nowhere (plan and status report the cell "unknown"; publish refuses its wheels).

Steps 1-2 happen in resolve (per file, cached per cell shape); `assign` does 3-5 and stores a
`Destination` on every cell. The clash check, plan, status, build's dependency indexes and
publish all read `cell.destination`; nothing else decides."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ciwheels.core import secrets
from ciwheels.core.urls import check_url
from ciwheels.matrix.model import Destination, Expansion, Registry
from ciwheels.net.auth import ENV_INDEX, ENV_URL, gitlab_project_registry


def of_registry(reg: Registry) -> Destination:
    at = {"file": reg.origin.file, "line": reg.origin.line} if reg.origin and reg.origin.file else {}
    where = f" ({reg.origin.file}:{reg.origin.line})" if at else ""
    check_url(reg.url, f"registries.{reg.name}.url", **at)
    if reg.index:
        check_url(reg.index, f"registries.{reg.name}.index", **at)
    url = secrets.split_userinfo(reg.url)[0].rstrip("/")
    index = secrets.split_userinfo(reg.index)[0].rstrip("/") if reg.index else ""
    return Destination(reg.name, url, index or f"{url}/simple", f"registry {reg.name!r}{where}", reg.url, reg.index)


def environment_default(env: Mapping[str, str] | None = None, repository_url: str | None = None
                        ) -> Destination | None:
    """Step 4 of the rule: the registry of cells the matrix sends nowhere."""
    env = os.environ if env is None else env
    if repository_url:
        url, source, index = repository_url, "--repository-url", ""
    elif env.get(ENV_URL):
        url, source, index = env[ENV_URL], ENV_URL, env.get(ENV_INDEX, "")
    elif gitlab_project_registry(env):
        url, source, index = gitlab_project_registry(env), "the GitLab project's package registry", ""
    else:
        return None
    check_url(url, source if source != "the GitLab project's package registry" else "CI_API_V4_URL's registry")
    if index:
        check_url(index, ENV_INDEX)
    bare = secrets.split_userinfo(url)[0].rstrip("/")
    bare_index = secrets.split_userinfo(index)[0].rstrip("/") if index else f"{bare}/simple"
    return Destination("", bare, bare_index, source, url, index)


def catch_all(registries: Mapping[str, Registry]) -> str | None:
    """Step 3: the project's first registry without `select`."""
    return next((name for name, reg in registries.items() if reg.catch_all), None)


def assign(expansion: Expansion, registries: Mapping[str, Registry], default: Destination | None) -> None:
    """Give every cell its destination (steps 3-5; resolve did 1-2 and set `cell.registry`).
    Warns when the environment names a registry that no cell uses."""
    project_wide = catch_all(registries)
    dests = {name: of_registry(reg) for name, reg in registries.items()}
    used_default = False
    for cell in expansion.cells:
        if not cell.registry and project_wide:
            cell.registry = project_wide
            cell.origins["registry"] = registries[project_wide].origin
        if cell.registry:
            cell.destination = dests[cell.registry]
        else:
            cell.destination = default
            used_default = used_default or default is not None
    if default is not None and not used_default and expansion.cells and default.source == ENV_URL:
        expansion.warnings.append(
            f"{ENV_URL} is set, but the matrix sends every cell to one of its own registries "
            f"({', '.join(sorted({c.registry for c in expansion.cells}))}): it is not used")
