"""`ciwheels render` and `diff`: the CI files of a matrix, and what a matrix change means."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ciwheels.cli.app import _MATRIX_OPTION, _PROJECT_OPTION, cli


@cli.command()
@_PROJECT_OPTION
@_MATRIX_OPTION
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 with a unified diff when the committed files are stale.")
def render(project: Path, matrix_paths: tuple[Path, ...], check: bool) -> None:
    """Write the GitHub Actions workflow and the GitLab CI file for the matrix.

    Default paths: .github/workflows/ciwheels.yml and .gitlab/ciwheels.gitlab-ci.yml (set
    `render: {github: PATH|false, gitlab: PATH|false}` in the matrix). Cells that share arch,
    policy, ISA level and image build in one job. The output is byte-stable, so commit it and
    let `ciwheels render --check` (or the pre-commit hook) catch stale files.
    """
    import difflib

    from ciwheels.project.open import render_project

    the_plan, outputs = render_project(project, matrix_paths)
    stale = 0
    for path, text in outputs.items():
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            click.echo(f"{path}: up to date", err=True)
            continue
        if check:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff(
                (old or "").splitlines(keepends=True), text.splitlines(keepends=True),
                fromfile=f"{path} (committed)" if old is not None else "/dev/null", tofile=f"{path} (rendered)"))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".ciwheels-tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        click.echo(f"wrote {path}", err=True)
    click.echo(f"{len(the_plan.jobs)} jobs, {sum(len(j.cells) for j in the_plan.jobs)} cells", err=True)
    if stale:
        click.echo(f"error: {stale} rendered file(s) are stale; run 'ciwheels render"
                   f"{'' if str(project) == '.' else ' --project ' + str(project)}' and commit the result",
                   err=True)
        sys.exit(1)


@cli.command()
@click.argument("base", required=False)
@click.argument("head", required=False)
@_PROJECT_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@click.option("--post-gitlab-note", is_flag=True,
              help="In a GitLab merge-request pipeline: also create or update one note with the markdown "
                   "(token in CIWHEELS_NOTE_TOKEN). A failure to post is a warning, never an error.")
def diff(base: str | None, head: str | None, project: Path, fmt: str, post_gitlab_note: bool) -> None:
    """What a matrix change means: cells added, removed and changed.

    BASE and HEAD are git revisions or matrix paths. Default: the merge-base with the default
    branch against the working tree; with only BASE, BASE against the working tree.
    """
    from ciwheels.views.diff import diff as do_diff
    from ciwheels.views.diff import format_markdown, format_text

    d = do_diff(project, base or None, head or None)  # "" (an unset CI variable) means the default
    if fmt == "json":
        import json

        click.echo(json.dumps(d.to_json(), indent=1))
    elif fmt == "markdown":
        click.echo(format_markdown(d), nl=False)
    else:
        click.echo(format_text(d, color=sys.stdout.isatty()))
    if post_gitlab_note:
        from ciwheels.core.errors import CiwheelsError
        from ciwheels.net.gitlab import post_gitlab_note as post

        try:
            click.echo(post(format_markdown(d)), err=True)
        except CiwheelsError as e:
            click.echo(f"warning: {e}", err=True)
