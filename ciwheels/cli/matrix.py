"""`ciwheels matrix`, `explain` and `schema`: the cells, one cell's settings, the file format."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ciwheels.cli.app import (
    _MATRIX_OPTION,
    _PROJECT_OPTION,
    _open,
    _print_warnings,
    cli,
)


@cli.command()
@_PROJECT_OPTION
@_MATRIX_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of cells instead of a table.")
@click.option("--grid", is_flag=True, help="A picture: Pythons by platform, with the ISA levels of each cell.")
@click.option("--format", "fmt", type=click.Choice(["text", "html"]), default="text", show_default=True,
              help="With --grid: html writes a self-contained page.")
@click.option("--status", is_flag=True, help="With --format html: mark each cell published or missing on its "
              "registry (reads the registries' indexes).")
def matrix(project: Path, matrix_paths: tuple[Path, ...], as_json: bool, grid: bool, fmt: str, status: bool) -> None:
    """List the build cells the matrix expands to.

    The table shows one row per cell: its id, Python, platform policy, arch, ISA level, the
    container image and how it runs (native or emulated). Cells dropped by `exclude` or
    because the catalog rules them out are counted; `ciwheels explain` lists them.
    """
    opened = _open(project, matrix_paths)
    expansion = opened.expansion
    _print_warnings(expansion)
    if grid or fmt == "html":
        from ciwheels.catalog import load_catalog
        from ciwheels.views.grid import html_grid, text_grid

        if fmt == "html":
            name = project.resolve().name
            marks = None
            if status:
                from ciwheels.builder.state import publish_status

                marks = publish_status(expansion.cells, opened.registries, project)
            sys.stdout.write(html_grid(expansion.cells, load_catalog(), f"ciwheels build matrix: {name}", marks))
        else:
            click.echo(text_grid(expansion.cells, load_catalog()))
        return
    if as_json:
        from ciwheels.matrix.model import cells_json

        sys.stdout.write(cells_json(expansion.cells) + "\n")
        return
    from ciwheels.views.report import cell_table

    click.echo(cell_table(expansion.cells))
    dropped = f", {len(expansion.dropped)} dropped (see 'ciwheels explain')" if expansion.dropped else ""
    click.echo(f"{len(expansion.cells)} cells from {', '.join(expansion.files)}{dropped}", err=True)


@cli.command()
@click.argument("cell", required=False)
@_PROJECT_OPTION
@_MATRIX_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def explain(cell: str | None, project: Path, matrix_paths: tuple[Path, ...], as_json: bool) -> None:
    """Show every resolved setting of CELL and where it came from.

    Without CELL: the cells that were dropped and why, and the warnings.
    CELL may also be a dropped cell's id, to see why it is not built.
    """
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.matrix.model import Dropped
    from ciwheels.views.report import explain_cell, explain_dropped

    opened = _open(project, matrix_paths)
    expansion = opened.expansion
    _print_warnings(expansion)
    if cell is None:
        if as_json:
            import json

            click.echo(json.dumps({"cells": len(expansion.cells), "dropped": [
                {"id": d.id, "reason": d.reason, "origin": str(d.origin)} for d in expansion.dropped]}, indent=1))
            return
        click.echo(f"{len(expansion.cells)} cells, {len(expansion.dropped)} dropped")
        for d in expansion.dropped:
            click.echo(f"  {d.id}: {d.reason} [{d.origin}]")
        return
    found = expansion.find(cell)
    if found is None:
        from ciwheels.core.errors import did_you_mean

        guess = did_you_mean(cell, [c.id for c in expansion.cells] + [d.id for d in expansion.dropped])
        raise CiwheelsError(f"no cell {cell!r} in {', '.join(expansion.files)}",
                            hint=(f"Did you mean {guess!r}? " if guess else "") + "'ciwheels matrix' lists the cells")
    if isinstance(found, Dropped):
        click.echo(explain_dropped(found, as_json))
        return
    click.echo(explain_cell(found, opened.catalog, as_json))


@cli.command()
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file instead of standard output.")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of matrix files.

    Point your editor at it (for VS Code's YAML extension:
    `# yaml-language-server: $schema=ciwheels-matrix.schema.json` at the top of a matrix file).
    """
    import json

    from ciwheels.catalog import load_catalog
    from ciwheels.matrix.schema import matrix_schema

    text = json.dumps(matrix_schema(load_catalog()), indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        sys.stdout.write(text)
