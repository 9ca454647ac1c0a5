"""`ciwheels build`: run cibuildwheel for cells."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ciwheels.cli.app import _MATRIX_OPTION, _PROJECT_OPTION, cli


@cli.command()
@_PROJECT_OPTION
@_MATRIX_OPTION
@click.option("--cell", "cell_ids", multiple=True, help="Cell id to build (repeatable).")
@click.option("--job", "job_ids", multiple=True, help="Build every cell of this job of the rendered pipelines.")
@click.option("--all", "all_cells", is_flag=True, help="Build every cell.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default="wheelhouse", show_default=True,
              help="Where wheels go (one folder per cell).")
@click.option("--engine", type=click.Choice(["docker", "podman"]), envvar="CIWHEELS_ENGINE",
              help="Container engine (default: the first of docker and podman that is installed and answers).")
@click.option("--dry-run", is_flag=True, envvar="CIWHEELS_DRY_RUN",
              help="Print the cibuildwheel runs instead of running them (env CIWHEELS_DRY_RUN=1).")
@click.option("--sdist", metavar="NAME==VERSION",
              help="Build a third-party package from its sdist on the package index (builder mode: the "
                   "cells of that package version; jobs of builder matrices fetch their sdist themselves).")
def build(project: Path, matrix_paths: tuple[Path, ...], cell_ids: tuple[str, ...], job_ids: tuple[str, ...],
          all_cells: bool, out: Path, engine: str | None, dry_run: bool, sdist: str | None) -> None:
    """Build wheels for cells with cibuildwheel.

    Cells of one job build in one cibuildwheel run (one container session for several Pythons).
    """
    from ciwheels.build.run import describe, prepare_runs
    from ciwheels.project.open import open_project

    opened = open_project(project, matrix_paths)
    cells, runs = prepare_runs(opened.expansion, opened.plan, project, cell_ids, job_ids, all_cells, sdist,
                               fetch=not dry_run, registries=opened.registries)
    if dry_run:
        from ciwheels.build.run import write_report

        for inv in runs:
            click.echo(describe(inv, str(out / ".staging" / inv.job), opened.catalog))
            for cell in inv.cells:
                write_report(out, cell, inv.job, "dry-run", [], 0.0, None, None)
        click.echo(f"dry run: {len(runs)} cibuildwheel run(s) for {len(cells)} cell(s); reports in {out}", err=True)
        return
    from ciwheels.build.run import run_all
    from ciwheels.views.report import table

    matrix_dir = Path(cells[0].matrix_file).resolve().parent if cells else None
    code, summary = run_all(runs, out, engine, opened.catalog, matrix_dir)
    click.echo(table(["cell", "status", "wheels", "time", "cross"], summary), err=True)
    sys.exit(code)
