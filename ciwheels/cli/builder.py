"""`ciwheels plan` and `status`: what a scheduled pipeline builds, and the state of every cell."""

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

_STATE_OPTIONS = [
    click.option("--repository-url", help="The registry of cells that name none (default: CIWHEELS_REPOSITORY_URL, "
                 "in GitLab CI the project's registry)."),
    click.option("--previous", metavar="PATH|URL", envvar="CIWHEELS_PREVIOUS_STATUS",
                 help="The status JSON of an earlier run: its failed cells are not rebuilt unchanged."),
    click.option("--retry-failed", is_flag=True, envvar="CIWHEELS_RETRY_FAILED",
                 help="Rebuild remembered failures now (a pipeline variable CIWHEELS_RETRY_FAILED=1 does it too)."),
    click.option("--retry-after", type=float, default=30.0, show_default=True, metavar="DAYS",
                 envvar="CIWHEELS_RETRY_AFTER", help="Rebuild a remembered failure after this many days."),
    click.option("--no-upstream", is_flag=True, help="Do not ask the package index whether it has the wheels."),
]


def _state_options(f):
    for opt in reversed(_STATE_OPTIONS):
        f = opt(f)
    return f


def _state_opts(previous, retry_failed, retry_after, no_upstream, failed_now=None, run=""):
    import math

    from ciwheels.builder.state import StateOptions, read_previous
    from ciwheels.core.errors import CiwheelsError

    if not math.isfinite(retry_after) or retry_after < 0:
        raise CiwheelsError(f"--retry-after (CIWHEELS_RETRY_AFTER) must be a number of days, 0 or more, not {retry_after}")
    return StateOptions(upstream=not no_upstream, previous=read_previous(previous), failed_now=failed_now or {},
                        retry_failed=retry_failed, retry_after_days=retry_after, run=run)


@cli.command("plan")
@_PROJECT_OPTION
@_MATRIX_OPTION
@click.option("--missing", is_flag=True, help="Only the cells whose wheels their registry does not have (one index "
              "read per package and registry), leaving out known and remembered failures and what upstream provides.")
@click.option("--json", "as_json", is_flag=True, help='Print {"jobs": [...], "cells": [...], ...} as JSON.')
@click.option("--github-output", type=click.Path(path_type=Path, dir_okay=False),
              help="Also append the plan as GitHub step outputs to this file ($GITHUB_OUTPUT).")
@click.option("--gitlab-child", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write a GitLab child pipeline that builds the plan to this file.")
@_state_options
def plan_cmd(project: Path, matrix_paths: tuple[Path, ...], missing: bool, as_json: bool, github_output: Path | None,
             gitlab_child: Path | None, repository_url: str | None, previous: str | None, retry_failed: bool,
             retry_after: float, no_upstream: bool) -> None:
    """The jobs and cells to build: what scheduled and manual pipelines run."""
    import json

    from ciwheels.builder.schedule import make_plan
    from ciwheels.builder.state import Listings

    opened = _open(project, matrix_paths, repository_url)
    _print_warnings(opened.expansion)
    listings = Listings.of(opened.registries, repository_url)
    result = make_plan(opened, missing=missing, listings=listings,
                       opts=_state_opts(previous, retry_failed, retry_after, no_upstream) if missing else None)
    data = result.to_json(opened.expansion.cells)
    if github_output:
        from ciwheels.builder.schedule import github_outputs

        with open(github_output, "a", encoding="utf-8") as f:
            f.write(github_outputs(result, opened))
    if gitlab_child:
        from ciwheels.pipelines.render import render_child

        gitlab_child.parent.mkdir(parents=True, exist_ok=True)
        gitlab_child.write_text(render_child(opened, result, project), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(data, indent=1, sort_keys=True))
    else:
        from ciwheels.views.report import table

        click.echo(table(["job", "cells"], [[j.id, " ".join(j.cells)] for j in result.plan.jobs]) if result.plan.jobs
                   else "nothing to build")
    counts: dict[str, int] = {}
    for st in result.states.values():
        counts[st.state] = counts.get(st.state, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    click.echo(f"{len(result.plan.jobs)} jobs, {len(data['cells'])} cells to build"
               + (f" ({summary}; {result.reads} index reads)" if missing else ""), err=True)


@cli.command("status")
@_PROJECT_OPTION
@_MATRIX_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option("--artifacts", "artifact_dirs", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="Build artifacts of this pipeline (repeatable): their failed cells are recorded with their logs.")
@click.option("--site", type=click.Path(path_type=Path, file_okay=False),
              help="Write index.html, status.json and logs/ (the failed cells' logs) into this folder.")
@_state_options
def status_cmd(project: Path, matrix_paths: tuple[Path, ...], fmt: str, artifact_dirs: tuple[Path, ...],
               site: Path | None, repository_url: str | None, previous: str | None, retry_failed: bool,
               retry_after: float, no_upstream: bool) -> None:
    """Every cell's state: published, missing, failed (with its log), known failure, provided
    upstream; and per package the newest upstream release and whether it is built."""
    import json

    from ciwheels.builder.state import Listings, cell_states
    from ciwheels.builder.statuspage import (
        carry_logs,
        copy_logs,
        failed_builds,
        html_status,
        pipeline_url,
        remember_environment_secrets,
        status_document,
        text_status,
    )

    remember_environment_secrets()
    opened = _open(project, matrix_paths, repository_url)
    failed = failed_builds(list(artifact_dirs), {c.id for c in opened.expansion.cells})
    links = copy_logs(failed, site) if site else {}  # without a site there is no log to link to
    now_failed = {c: {"detail": b.reason, "log": links.get(c, "")} for c, b in failed.items()}
    opts = _state_opts(previous, retry_failed, retry_after, no_upstream, now_failed, pipeline_url())
    if not no_upstream and opened.spec.matrices and any(m.packages for m in opened.spec.matrices):
        from ciwheels.builder.upstream import IndexCache

        opened.upstream = opened.upstream or IndexCache()
        opened.upstream.prefetch(p.name for m in opened.spec.matrices for p in m.packages)
    states = cell_states(opened, Listings.of(opened.registries, repository_url), opts)
    if site:  # the new site replaces the old one: remembered failures bring their logs along
        states.update(carry_logs(states, previous, site))
    doc = status_document(opened, states)
    title = f"ciwheels status: {project.resolve().name}"
    short = {lv.name: lv.short for lv in opened.catalog.levels.values()}
    if site:
        from ciwheels.dist.artifacts import atomic_write

        site.mkdir(parents=True, exist_ok=True)
        page, data = html_status(doc, title, short).encode(), (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        atomic_write(site / "status.json", lambda f: f.write(data))
        atomic_write(site / "index.html", lambda f: f.write(page))
        click.echo(f"wrote {site / 'index.html'} and {site / 'status.json'}", err=True)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=1, sort_keys=True))
    elif fmt == "html":
        sys.stdout.write(html_status(doc, title, short))
    else:
        click.echo(text_status(doc))
