"""`ciwheels init`: a matrix from a project's cibuildwheel configuration."""

from __future__ import annotations

from pathlib import Path

import click

from ciwheels.cli.app import _PROJECT_OPTION, cli


@cli.command()
@_PROJECT_OPTION
@click.option("--force", is_flag=True, help="Overwrite an existing matrix/wheels.yaml.")
@click.option("--gitlab", is_flag=True,
              help="Also set up GitLab CI in a project that has only GitHub workflows (.github/).")
def init(project: Path, force: bool, gitlab: bool) -> None:
    """Start matrix/wheels.yaml from the project's build configuration.

    Selects what cibuildwheel selects on Linux: requires-python (pyproject.toml, else setup.cfg,
    else setup.py), and [tool.cibuildwheel] build, skip, archs (`auto` is the native x86_64
    only, i686 through `auto32`) and enable. Every other option is carried into the matrix
    (environment, commands, images; the rest into `cibuildwheel-options`), [tool.cibuildwheel.linux]
    merged and [[tool.cibuildwheel.overrides]] as `overrides:`. Prints what it carried and what
    it could not. Writes .gitlab-ci.yml only when one exists, the project has no .github/, or
    --gitlab is given.
    """
    from ciwheels.project.init import init_project

    for line in init_project(project, force=force, gitlab=gitlab):
        click.echo(line, err=True)
