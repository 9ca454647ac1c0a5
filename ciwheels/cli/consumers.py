"""`ciwheels pip-config` and `doctor`: for the people who install from the registries."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ciwheels.cli.app import _INSECURE_OPTION, _PROJECT_OPTION, _seconds, cli


def _opened(project: Path):
    """The project, opened once for the whole command; None for a folder without matrix files
    (the consumer commands also work from a URL alone). A broken matrix is an error."""
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.project.open import open_project
    from ciwheels.project.workspace import find_matrix_files

    try:
        find_matrix_files(project)
    except CiwheelsError:
        return None
    return open_project(project)


def _registry_index(opened, registry: str | None, repository_url: str | None,
                    index_url: str | None) -> tuple[str, str]:
    """(name, simple index URL) of the registry a consumer command is about."""
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.matrix.destination import environment_default
    from ciwheels.matrix.model import Registry

    if repository_url or index_url:
        name = registry or "ciwheels"
        return name, Registry(name, repository_url or "", index_url or "").simple
    registries = opened.registries if opened else {}
    if registry:
        if registry not in registries:
            raise CiwheelsError(f"no registry {registry!r} in the matrix", value=registry,
                                allowed=sorted(registries) or None)
        return registry, registries[registry].simple
    if len(registries) == 1:
        name, reg = next(iter(registries.items()))
        return name, reg.simple
    if registries:
        raise CiwheelsError("the matrix names several registries: pass --registry NAME", allowed=sorted(registries))
    default = environment_default()  # CIWHEELS_REPOSITORY_URL, else GitLab's project registry
    if default is not None:
        return ("gitlab" if default.source.startswith("the GitLab") else "ciwheels"), default.index
    raise CiwheelsError("no registry: pass --registry NAME (from the matrix), --repository-url or --index-url, "
                        "or set CIWHEELS_REPOSITORY_URL")


_LEVEL_OPTION = click.option(
    "--level", help="This machine's ISA level (default: detected: x86-64 from the glibc-hwcaps levels `ld.so --help` "
    "lists as supported, aarch64 from /proc/cpuinfo Features, riscv64 from its ISA string).")


def _level_checks(opened, level: str | None, hosted: list[str]) -> list:
    """doctor: this machine's level and how it installs, and level registries that fall
    through to PyPI for names the baseline registry hosts."""
    from ciwheels.views.consumers import Check, level_fallthrough_checks

    plan = _machine_plan(opened, level)
    if plan is None:
        return []
    where = {"variant": "wheel variants beside the baseline (uv --preview-features wheel-variants)",
             "registry": "level registries: " + ", ".join(n for n, _, _ in plan.indexes),
             "plain": "plain wheels"}[plan.mechanism]
    return [Check("this machine's ISA level", True, f"{plan.arch} {plan.level} ({plan.how}); installs {where}"),
            *level_fallthrough_checks(opened.spec.registries, opened.expansion.cells, hosted)]


@cli.command("pip-config")
@click.option("--registry", help="A registry of the matrix (default: the only one).")
@click.option("--repository-url", help="A registry URL instead of the matrix's.")
@click.option("--index-url", help="The registry's simple index, if not URL/simple/.")
@_PROJECT_OPTION
@_LEVEL_OPTION
def pip_config(registry: str | None, repository_url: str | None, index_url: str | None, project: Path,
               level: str | None) -> None:
    """Print the pip and uv settings that install from a registry's index (which falls
    through to PyPI on GitLab), and for this machine's ISA level: the uv setting for wheel
    variants, or the level registries' indexes, its level's first."""
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.views.consumers import machine_text
    from ciwheels.views.consumers import pip_config as text

    opened = _opened(project)
    plan = _machine_plan(opened, level)
    try:
        name, index = _registry_index(opened, registry, repository_url, index_url)
    except CiwheelsError:
        if plan is None or not plan.indexes:
            raise
        name, _, index = plan.indexes[-1]  # several registries: the one of this machine's baseline
    if plan is None or plan.mechanism != "registry" or registry or repository_url or index_url:
        click.echo(text(name, index), nl=False)
    if plan is not None:
        click.echo(machine_text(plan), nl=False)


def _machine_plan(opened, level: str | None):
    """This machine's MachinePlan from the project's matrix; None without a matrix."""
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.views.consumers import machine_level, machine_plan

    if opened is None:
        if level:
            raise CiwheelsError("--level needs a project with matrix files (--project)")
        return None
    arch, lv, how = machine_level(opened.catalog, level)
    return machine_plan(opened.expansion.cells, opened.spec.registries, opened.catalog, arch, lv, how)


@cli.command()
@click.option("--registry", help="A registry of the matrix (default: the only one).")
@click.option("--repository-url", help="A registry URL instead of the matrix's.")
@click.option("--index-url", help="The registry's simple index, if not URL/simple/.")
@_PROJECT_OPTION
@click.option("--dist", type=click.Path(path_type=Path, file_okay=False),
              help="A gather output: its wheels' names must be served by the registry.")
@click.option("--package", "packages", multiple=True, help="A name that must be served by the registry.")
@click.option("--unhosted", default="six", show_default=True,
              help="A pure-Python package the registry does not host, to test the fall-through.")
@click.option("--pypi", default="https://pypi.org/simple", show_default=True,
              help="The public index to check our names against.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--timeout", type=float, default=30.0, show_default=True, callback=lambda c, p, v: _seconds(v),
              help="Seconds per request, all of it.")
@_INSECURE_OPTION
@_LEVEL_OPTION
def doctor(registry: str | None, repository_url: str | None, index_url: str | None, project: Path, dist: Path | None,
           packages: tuple[str, ...], unhosted: str, pypi: str, as_json: bool, timeout: float,
           allow_insecure_http: bool, level: str | None) -> None:
    """Check a registry: its index answers, our packages are served from it, an unhosted
    package resolves through the fall-through, and none of our names is free on PyPI
    (dependency confusion). Exit 1 when a check fails."""
    from packaging.utils import canonicalize_name

    from ciwheels.views.consumers import doctor as run_doctor
    from ciwheels.views.consumers import hosted_names

    opened = _opened(project)
    _, index = _registry_index(opened, registry, repository_url, index_url)
    hosted = sorted(set(hosted_names(dist)) | {canonicalize_name(p) for p in packages})
    from ciwheels.core.secrets import scrub

    checks = run_doctor(index, hosted, unhosted, pypi, timeout, allow_insecure_http=allow_insecure_http)
    checks += _level_checks(opened, level, hosted)
    if as_json:
        import json

        click.echo(scrub(json.dumps([c.__dict__ for c in checks], indent=1)))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("warn" if c.warning else "FAIL")
            click.echo(scrub(f"{mark}  {c.name}: {c.detail}"))
    if any(not c.ok and not c.warning for c in checks):
        sys.exit(1)
