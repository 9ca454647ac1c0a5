"""The `ciwheels` command line. Imports stay inside the commands so that the CLI starts fast."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ciwheels import __version__

_MATRIX_OPTION = click.option(
    "--matrix", "matrix_paths", multiple=True, type=click.Path(path_type=Path),
    help="Matrix file or folder (repeatable). Default: PROJECT/matrix/*.yaml.")
_PROJECT_OPTION = click.option(
    "--project", type=click.Path(path_type=Path, file_okay=False), default=".", show_default=True,
    help="The project folder.")


_INSECURE_OPTION = click.option(
    "--allow-insecure-http", is_flag=True, envvar="CIWHEELS_ALLOW_INSECURE_HTTP",
    help="Send credentials over plain http to a host that is not loopback (refused by default).")


def _seconds(value: float) -> float:
    """--timeout: a finite number of seconds above 0 (else the usual error, exit 2)."""
    from ciwheels.net.registry import check_timeout

    return check_timeout(value)


class _Lines(logging.Formatter):
    """The library's log records as the CLI's lines: info plain, warnings and errors labelled."""

    def format(self, record: logging.LogRecord) -> str:
        from ciwheels.core.secrets import scrub

        text = scrub(record.getMessage())
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno >= logging.WARNING:
            return f"warning: {text}"
        return text


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (click's test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging(quiet: bool) -> None:
    logger = logging.getLogger("ciwheels")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(_Lines())
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


class _Group(click.Group):
    """Turns CiwheelsError into one paragraph on stderr and its exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        from ciwheels.core.errors import CiwheelsError

        try:
            return super().invoke(ctx)
        except CiwheelsError as e:
            from ciwheels.core.secrets import scrub

            click.echo(f"error: {scrub(str(e))}", err=True)
            sys.exit(e.exit_code)
        except BrokenPipeError:
            sys.exit(1)
        except OSError as e:  # a read-only --out, an unreadable folder: the usual paragraph, not a traceback
            from ciwheels.core.secrets import scrub

            where = f"{e.filename}: " if e.filename else ""
            click.echo(scrub(f"error: {where}{e.strerror or e}."), err=True)
            sys.exit(2)
        except RecursionError:
            click.echo("error: the input is nested too deeply to read.", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ciwheels")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")
def cli(quiet: bool) -> None:
    """Build binary wheels for every CPU: Python x libc x arch x ISA level.

    Describe what to build in matrix/*.yaml (`ciwheels init` starts one), then:

    \b
      ciwheels matrix [--grid]   the build cells the matrix expands to
      ciwheels explain CELL      every setting of one cell and where it came from
      ciwheels render            GitHub Actions and GitLab CI pipelines for it
      ciwheels diff              what a matrix change means, for review
      ciwheels build --job ID    build cells with cibuildwheel (what CI jobs run)
      ciwheels verify WHEEL      check binaries against their ISA level
      ciwheels gather / publish  collect the wheels, publish them to a registry

    Data flows load -> normalise -> expand -> resolve -> plan -> render | build -> gather ->
    publish; `ciwheels explain CELL` shows what each stage decided for one cell.
    """
    _configure_logging(quiet)


def _open(project: Path, matrix_paths: tuple[Path, ...]):
    from ciwheels.project.open import open_project

    return open_project(project, matrix_paths)


def _print_warnings(expansion) -> None:
    for w in expansion.warnings:
        click.echo(f"warning: {w}", err=True)


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
                from ciwheels.project.open import project_registries
                from ciwheels.builder.state import publish_status

                marks = publish_status(expansion.cells, project_registries(project), project)
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
@_PROJECT_OPTION
@_MATRIX_OPTION
@click.option("--cell", "cell_ids", multiple=True, help="Cell id to build (repeatable).")
@click.option("--job", "job_ids", multiple=True, help="Build every cell of this job of the rendered pipelines.")
@click.option("--all", "all_cells", is_flag=True, help="Build every cell.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default="wheelhouse", show_default=True,
              help="Where wheels go (one folder per cell).")
@click.option("--engine", type=click.Choice(["docker", "podman"]), envvar="CIWHEELS_ENGINE",
              help="Container engine (default: docker if installed, else podman).")
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
    click.echo(table(["cell", "status", "wheels", "time"], summary), err=True)
    sys.exit(code)


@cli.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for the wheels and manifest.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest entries as JSON.")
@click.option("--project", type=click.Path(path_type=Path, file_okay=False),
              help="The project whose matrix says which cells to expect: cells without a report are recorded "
                   "as missing too.")
def gather(sources: tuple[Path, ...], out: Path, as_json: bool, project: Path | None) -> None:
    """Collect wheels from build artifacts (any folder layout) into OUT with a manifest.

    Checks every wheel name, checks sha256 against the build reports of `ciwheels build`,
    refuses one filename with two contents, and writes atomically. Takes what exists: cells
    that failed (or whose wheels failed verification) are recorded as missing, and publish
    exits 1 naming them after publishing the rest.
    """
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.dist.gather import gather as do_gather
    from ciwheels.views.report import table

    expected = None
    if project is not None:
        from ciwheels.project.open import open_project

        expected = [c.id for c in open_project(project).expansion.cells]
    items, reports, manifest = do_gather(list(sources), out, expected)
    if as_json:
        import json

        click.echo(json.dumps([{"file": i.file, "sha256": i.sha256, "size": i.size, "cell": i.cell, "isa": i.isa}
                               for i in items], indent=1))
    else:
        click.echo(table(["wheel", "cell", "isa", "size"],
                         [[i.file, i.cell or "-", i.isa or "-", str(i.size)] for i in items]))
    dry = [r for r in reports if r.status == "dry-run"]
    click.echo(f"gathered {len(items)} wheel(s) into {out}; {len(reports)} build report(s)"
               + (f", {len(dry)} from dry runs" if dry else ""), err=True)
    if manifest.missing:
        shown = ", ".join(manifest.missing[:10]) + (f" and {len(manifest.missing) - 10} more" if
                                                   len(manifest.missing) > 10 else "")
        click.echo(f"warning: {len(manifest.missing)} cell(s) have no wheel to publish (recorded in the manifest; "
                   f"publish names them and exits 1): {shown}", err=True)
    if not items and not reports:
        raise CiwheelsError(f"no wheels found in {', '.join(map(str, sources))}")


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
        from ciwheels.views.diff import post_gitlab_note as post
        from ciwheels.core.errors import CiwheelsError

        try:
            click.echo(post(format_markdown(d)), err=True)
        except CiwheelsError as e:
            click.echo(f"warning: {e}", err=True)


def _progress():
    """The log.Progress of long library work: a bar on a terminal; one line per item elsewhere (CI
    logs)."""
    tty = sys.stderr.isatty()

    def show(done: int, total: int, status: str, item: str, detail: str = "") -> None:
        line = f"[{done}/{total}] {status} {item}" + (f": {detail}" if status == "failed" else "")
        if not tty:
            click.echo(line, err=True)
            return
        filled = 30 * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {status:8s} {item[:50]:50s}")
        if status == "failed":
            sys.stderr.write("\n" + line + "\n")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--repository-url", help="Upload URL of the registry (GitLab: .../api/v4/projects/ID/packages/pypi). "
              "Default: the matrix's registries, else CIWHEELS_REPOSITORY_URL, else the project's registry in "
              "GitLab CI.")
@click.option("--registry", help="Publish only the wheels bound for this registry of the matrix.")
@click.option("--index-url", help="The registry's simple index, if not URL/simple/ (devpi: URL/+simple/).")
@_PROJECT_OPTION
@click.option("--jobs", type=click.IntRange(1, 32), default=4, show_default=True, help="Uploads at once.")
@click.option("--retries", type=click.IntRange(1, 20), default=6, show_default=True,
              help="Attempts per request on connection errors, timeouts, 5xx and 429.")
@click.option("--timeout", type=float, default=60.0, show_default=True, callback=lambda c, p, v: _seconds(v),
              help="Seconds per request, all of it (a server trickling bytes is cut off).")
@click.option("--json", "as_json", is_flag=True, help="Print one result per wheel as JSON.")
@click.option("--dry-run", is_flag=True, envvar="CIWHEELS_DRY_RUN", help="Say what would be published.")
@_INSECURE_OPTION
def publish(folder: Path, repository_url: str | None, registry: str | None, index_url: str | None, project: Path,
            jobs: int, retries: int, timeout: float, as_json: bool, dry_run: bool, allow_insecure_http: bool) -> None:
    """Publish the wheels of FOLDER (a `ciwheels gather` output) to a PyPI-compatible registry.

    Files the registry already has with the same sha256 are skipped; one it has with other
    contents is an error (registries cannot overwrite). Credentials: CIWHEELS_USERNAME and
    CIWHEELS_PASSWORD, or in GitLab CI the job token. Re-running after any failure finishes
    the job and uploads nothing twice. Exit 1 if anything failed.
    """
    from ciwheels.core.secrets import scrub
    from ciwheels.core.errors import PublishFailed
    from ciwheels.project.open import project_registries
    from ciwheels.catalog import load_catalog
    from ciwheels.dist.publish import Publisher, folder_manifest, route, target_for, wheels_in
    from ciwheels.views.report import table
    from ciwheels.dist.variants import index_files, publish_index_files

    manifest = folder_manifest(folder)
    wheels = wheels_in(folder, manifest)
    missing = manifest.missing if manifest else []
    if not wheels:
        click.echo(f"nothing to publish in {folder}", err=True)
        _fail_on_missing(missing)
        return
    registries = {} if repository_url else project_registries(project)
    groups = route(wheels, manifest, registries, folder=folder, only=registry, repository_url=repository_url)
    if dry_run:
        for name, items in groups.items():
            for path, digest in items:
                click.echo(scrub(f"would publish {path.name} (sha256 {digest})"
                                 + (f" to {name} ({registries[name].url})" if name else "")))
            for fname in index_files([p for p, _ in items]):
                click.echo(scrub(f"would publish {fname} last" + (f" to {name}" if name else "")))
        return
    results = []
    for name, items in groups.items():
        target = target_for(name, registries, repository_url, index_url)
        click.echo(scrub(f"publishing {len(items)} wheel(s) to {name + ': ' if name else ''}{target}"), err=True)
        publisher = Publisher(target, jobs=jobs, retries=retries, timeout=timeout, progress=_progress(),
                              allow_insecure_http=allow_insecure_http)
        done = publisher.publish(items)
        results += done + publish_index_files(publisher, items, done, load_catalog())  # -variants.json last
    if as_json:
        import json

        click.echo(scrub(json.dumps([{"file": r.file, "path": r.path, "status": r.status, "detail": r.detail,
                                      "attempts": r.attempts} for r in results], indent=1)))
    counts = {s: sum(r.status == s for r in results) for s in ("uploaded", "skipped", "failed")}
    click.echo(table(["uploaded", "skipped", "failed"], [[str(counts[s]) for s in counts]]), err=True)
    for r in results:
        if r.status == "failed":
            click.echo(scrub(f"failed: {r.path or r.file}: {r.detail}"), err=True)
    if counts["failed"]:
        raise PublishFailed(f"{counts['failed']} of {len(results)} wheel(s) were not published; "
                            "run the same command again to finish (nothing is uploaded twice)")
    _fail_on_missing(missing)


def _fail_on_missing(missing: list[str]) -> None:
    """Everything that was built is published; cells without a wheel still fail the job."""
    from ciwheels.core.errors import PublishFailed

    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise PublishFailed(f"{len(missing)} cell(s) have no wheel (their builds failed or were rejected): {shown}; "
                            "their build reports and logs are in the build jobs' artifacts")


@cli.command()
@click.argument("wheels", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--isa", help="The ISA level the wheels must stay within (default: the level recorded at build time "
              "in build-report.json or manifest.json beside the wheel, else a wheel variant's variant.json; for an "
              "installed binary, the variant.json of the installed wheel that lists it).")
@click.option("--json", "as_json", is_flag=True, help="Print one finding per binary as JSON.")
def verify(wheels: tuple[Path, ...], isa: str | None, as_json: bool) -> None:
    """Check that every binary in WHEELS needs no more than the wheel's ISA level.

    WHEELS may also be installed binaries (a .so in site-packages).

    x86_64 is read from the X86_ISA_1_NEEDED note, riscv64 from .riscv.attributes. What cannot
    be determined (aarch64 has no marker; x86 built without -mneeded) is reported, not guessed.
    Exit 1 when a binary needs more than its level, or cannot be read (truncated, corrupt, for
    another arch, or a `.so` that is not ELF).
    """
    from ciwheels.views.report import table
    from ciwheels.dist.verify import as_json as findings_json
    from ciwheels.dist.verify import verify_wheel

    findings = [f for w in wheels for f in verify_wheel(w, isa)]
    if as_json:
        click.echo(findings_json(findings))
    else:
        click.echo(table(["wheel", "binary", "level", "status", "reason"],
                         [[f.wheel, f.member, f.level, f.status, f.reason] for f in findings]))
    bad = [f for f in findings if f.status in ("too-high", "unreadable")]
    undetermined = sum(f.status == "undetermined" for f in findings)
    unreadable = sum(f.status == "unreadable" for f in findings)
    click.echo(f"{len(findings)} binaries: {len(bad) - unreadable} above their level, {undetermined} undetermined"
               + (f", {unreadable} unreadable" if unreadable else ""), err=True)
    if bad:
        sys.exit(1)


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


def _registry_index(project: Path, registry: str | None, repository_url: str | None,
                    index_url: str | None) -> tuple[str, str]:
    """(name, simple index URL) of the registry a consumer command is about."""
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.matrix.model import Registry
    from ciwheels.project.open import project_registries

    if repository_url or index_url:
        name = registry or "ciwheels"
        return name, Registry(name, repository_url or "", index_url or "").simple
    registries = project_registries(project)
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
    import os

    from ciwheels.net.registry import gitlab_project_registry

    if gitlab_project_registry(os.environ):
        return "gitlab", gitlab_project_registry(os.environ) + "/simple"
    raise CiwheelsError("no registry: pass --registry NAME (from the matrix), --repository-url or --index-url")


_LEVEL_OPTION = click.option(
    "--level", help="This machine's ISA level (default: detected: x86-64 from the glibc-hwcaps levels `ld.so --help` "
    "lists as supported, aarch64 from /proc/cpuinfo Features, riscv64 from its ISA string).")


def _level_checks(project: Path, level: str | None, hosted: list[str]) -> list:
    """doctor: this machine's level and how it installs, and level registries that fall
    through to PyPI for names the baseline registry hosts."""
    from ciwheels.views.consumers import Check, level_fallthrough_checks

    plan = _machine_plan(project, level)
    if plan is None:
        return []
    from ciwheels.project.open import open_project

    proj = open_project(project)
    where = {"variant": "wheel variants beside the baseline (uv --preview-features wheel-variants)",
             "registry": "level registries: " + ", ".join(n for n, _, _ in plan.indexes),
             "plain": "plain wheels"}[plan.mechanism]
    return [Check("this machine's ISA level", True, f"{plan.arch} {plan.level} ({plan.how}); installs {where}"),
            *level_fallthrough_checks(proj.spec.registries, proj.expansion.cells, hosted)]


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
    from ciwheels.views.consumers import machine_text
    from ciwheels.views.consumers import pip_config as text
    from ciwheels.core.errors import CiwheelsError

    plan = _machine_plan(project, level)
    try:
        name, index = _registry_index(project, registry, repository_url, index_url)
    except CiwheelsError:
        if plan is None or not plan.indexes:
            raise
        name, _, index = plan.indexes[-1]  # several registries: the one of this machine's baseline
    if plan is None or plan.mechanism != "registry" or registry or repository_url or index_url:
        click.echo(text(name, index), nl=False)
    if plan is not None:
        click.echo(machine_text(plan), nl=False)


def _machine_plan(project: Path, level: str | None):
    """This machine's MachinePlan from the project's matrix; None without a matrix."""
    from ciwheels.views.consumers import machine_level, machine_plan
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.project.open import open_project

    try:
        proj = open_project(project)
    except CiwheelsError:
        if level:
            raise
        return None
    arch, lv, how = machine_level(proj.catalog, level)
    return machine_plan(proj.expansion.cells, proj.spec.registries, proj.catalog, arch, lv, how)


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

    _, index = _registry_index(project, registry, repository_url, index_url)
    hosted = sorted(set(hosted_names(dist)) | {canonicalize_name(p) for p in packages})
    from ciwheels.core.secrets import scrub

    checks = run_doctor(index, hosted, unhosted, pypi, timeout, allow_insecure_http=allow_insecure_http)
    checks += _level_checks(project, level, hosted)
    if as_json:
        import json

        click.echo(scrub(json.dumps([c.__dict__ for c in checks], indent=1)))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("warn" if c.warning else "FAIL")
            click.echo(scrub(f"{mark}  {c.name}: {c.detail}"))
    if any(not c.ok and not c.warning for c in checks):
        sys.exit(1)


@cli.group()
def image() -> None:
    """Build images for cibuildwheel where no pypa image exists or can be pulled."""


@image.command("build")
@click.argument("arch")
@click.option("--python", "pythons", multiple=True, metavar="PYTHON",
              help="A CPython the image carries (cp311, 3.11, cp314t, ...); repeat it. Default: every CPython "
                   "the catalog builds for ARCH.")
@click.option("--python-source", envvar="CIWHEELS_PYTHON_SOURCE", metavar="MIRROR",
              help="Where the CPython tarballs come from instead of python.org: a mirror named in the catalog "
                   "(`debian`), a URL template with {version} and {minor}, or a folder. Every tarball is checked "
                   "against the catalog's sha256.")
@click.option("--base", help="Build on this Debian or Ubuntu image (e.g. ubuntu:22.04) instead of a Debian root "
                             "filesystem debootstrapped here; its glibc sets the manylinux policy.")
@click.option("--cross-base", help="The same distribution for amd64, where the cross compilers run (default: "
                                   "--base, which must then be a multi-arch reference).")
@click.option("--native-compilers/--no-native-compilers", default=True, show_default=True,
              help="Put x86_64-hosted cross compilers for ARCH first on the image's PATH (foreign arches).")
@click.option("--engine", type=click.Choice(["docker", "podman"]), envvar="CIWHEELS_ENGINE",
              help="Container engine (default: podman if installed, else docker).")
@click.option("--tag", help="Also tag the image so (default: localhost/ciwheels-manylinux-ARCH:trixie). It is "
                            "always tagged by its recipe digest too.")
@click.option("--force", is_flag=True, help="Rebuild even if an image of the same recipe exists.")
@click.option("--timeout", type=click.FloatRange(min=1, max=24 * 60), default=240, show_default=True,
              metavar="MINUTES", help="Give up on the image build after this long.")
@click.option("--json", "as_json", is_flag=True, help="Print what the image carries as JSON.")
@click.option("--dry-run", is_flag=True, help="Print the image's digest tag and recipe; build nothing.")
def image_build(arch: str, pythons: tuple[str, ...], python_source: str | None, base: str | None,
                cross_base: str | None, native_compilers: bool, engine: str | None, tag: str | None, force: bool,
                timeout: float, as_json: bool, dry_run: bool) -> None:
    """Build the manylinux-style image for ARCH (riscv64, x86_64, aarch64, ppc64le, s390x).

    The image carries every CPython asked for in /opt/python/<tag>, each compiled from its
    upstream tarball (URL and sha256 are catalog data: matrix/catalog/cpython.toml) with pip
    and build, plus auditwheel and patchelf. For a foreign arch (riscv64) the interpreters are
    cross-compiled at native speed, and x86_64-hosted cross compilers come first on PATH, so
    compiling extensions runs natively while Python itself runs under QEMU
    (CIWHEELS_NATIVE_COMPILERS=0 in a build, or the matrix's `native-compilers: false`, turns
    them off).

    Offline (no --base): debootstraps Debian trixie for ARCH and for amd64 (cached in
    ~/.cache/ciwheels or $CIWHEELS_CACHE) and imports them with `podman import --arch`. The
    manylinux policy is the base's glibc (trixie: manylinux_2_41). Tarballs are cached too. The
    image is tagged by a digest of its recipe: an unchanged recipe reuses the image. The image
    says what it carries (labels io.ciwheels.*, /opt/python/ciwheels.json); see images/README.md.
    """
    import json as _json
    import shutil

    from ciwheels.catalog import load_catalog
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.images import sources as pysources
    from ciwheels.images.recipe import Recipe, build_image, default_pythons, image_catalog, image_labels, image_tag, \
        tag_image

    cat = load_catalog()
    if arch not in image_catalog()["arches"]:
        raise CiwheelsError(f"no image recipe for {arch!r}", value=arch, allowed=sorted(image_catalog()["arches"]))
    chosen = []
    for name in pythons or default_pythons(arch):
        pid = cat.python_alias(name)
        if pid is None or cat.pythons[pid].implementation != "cpython":
            cpythons = [p.id for p in cat.pythons.values() if p.implementation == "cpython"]
            raise CiwheelsError(f"--python {name!r} is not a CPython the catalog knows", value=name, allowed=cpythons)
        why = cat.pythons[pid].available_on("glibc", arch)
        if why:
            raise CiwheelsError(f"--python {name}: {why}", value=name)
        if pid not in chosen:
            chosen.append(pid)
    order = list(cat.pythons)
    recipe = Recipe(arch, base, tuple(sorted(chosen, key=order.index)), native_compilers, cross_base)
    for pid in recipe.pythons:  # a source that cannot serve a Python is said before any container starts
        pysources.source_for(pysources.minor_of(pid), python_source)
    digest_tag, digest = recipe.tag(), recipe.digest()  # each hashes the recipe files: once
    if dry_run:
        facts = {"tag": digest_tag, "digest": digest, "arch": arch, "base": base,
                 "pythons": list(recipe.pythons), "native-compilers": native_compilers, "cross-base": cross_base}
        click.echo(_json.dumps(facts, indent=2) if as_json else facts["tag"])
        return
    engine = engine or ("podman" if shutil.which("podman") else "docker")
    tag = tag or image_tag(arch)
    labels = image_labels(engine, digest_tag)
    if labels is not None and not force:
        tag_image(engine, digest_tag, tag)
        click.echo(f"{digest_tag} exists (same recipe; --force rebuilds it)", err=True)
        policy = labels.get("io.ciwheels.policy", "")
        facts = {"tag": tag, "tags": [digest_tag, tag], "digest": digest, "arch": arch, "base": base,
                 "glibc": ".".join(policy.split("_")[1:3]) if policy.startswith("manylinux_") else None,
                 "policy": policy, "pythons": labels.get("io.ciwheels.pythons", "").split(),
                 "native-compilers": labels.get("io.ciwheels.native-compilers") == "true", "reused": True}
    else:
        facts = build_image(recipe, engine, tag, python_source=python_source, timeout=timeout * 60)
    click.echo(_json.dumps(facts, indent=2) if as_json else facts["tag"])


# -- builder at scale: plan and status (ciwheels/schedule.py, ciwheels/status.py) -------------
_STATE_OPTIONS = [
    click.option("--repository-url", help="The registry of cells that name none (default: CIWHEELS_REPOSITORY_URL, "
                 "in GitLab CI the project's registry)."),
    click.option("--previous", metavar="PATH|URL", envvar="CIWHEELS_PREVIOUS_STATUS",
                 help="The status JSON of an earlier run: its failed cells are not rebuilt unchanged."),
    click.option("--retry-failed", is_flag=True, help="Rebuild remembered failures now."),
    click.option("--retry-after", type=float, default=30.0, show_default=True, metavar="DAYS",
                 envvar="CIWHEELS_RETRY_AFTER", help="Rebuild a remembered failure after this many days."),
    click.option("--no-upstream", is_flag=True, help="Do not ask the package index whether it has the wheels."),
]


def _state_options(f):
    for opt in reversed(_STATE_OPTIONS):
        f = opt(f)
    return f


def _state_opts(previous, retry_failed, retry_after, no_upstream, failed_now=None):
    from ciwheels.builder.state import StateOptions, read_previous

    return StateOptions(upstream=not no_upstream, previous=read_previous(previous), failed_now=failed_now or {},
                        retry_failed=retry_failed, retry_after_days=retry_after)


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
    from ciwheels.net.registry import default_registry_url
    from ciwheels.builder.state import Listings

    opened = _open(project, matrix_paths)
    _print_warnings(opened.expansion)
    listings = Listings(opened.registries, default_registry_url(repository_url))
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

    from ciwheels.net.registry import default_registry_url
    from ciwheels.builder.state import Listings, cell_states
    from ciwheels.builder.statuspage import copy_logs, failed_builds, html_status, status_document, text_status

    opened = _open(project, matrix_paths)
    failed = failed_builds(list(artifact_dirs))
    links = copy_logs(failed, site) if site else {c: str(log) for c, (_, log) in failed.items() if log}
    opts = _state_opts(previous, retry_failed, retry_after, no_upstream, {c: links.get(c, "") for c in failed})
    if not no_upstream and opened.spec.matrices and any(m.packages for m in opened.spec.matrices):
        from ciwheels.builder.upstream import IndexCache

        opened.upstream = opened.upstream or IndexCache()
        opened.upstream.prefetch(p.name for m in opened.spec.matrices for p in m.packages)
    states = cell_states(opened, Listings(opened.registries, default_registry_url(repository_url)), opts)
    doc = status_document(opened, states)
    title = f"ciwheels status: {project.resolve().name}"
    short = {lv.name: lv.short for lv in opened.catalog.levels.values()}
    if site:
        site.mkdir(parents=True, exist_ok=True)
        (site / "status.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        (site / "index.html").write_text(html_status(doc, title, short), encoding="utf-8")
        click.echo(f"wrote {site / 'index.html'} and {site / 'status.json'}", err=True)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=1, sort_keys=True))
    elif fmt == "html":
        sys.stdout.write(html_status(doc, title, short))
    else:
        click.echo(text_status(doc))


def main() -> None:
    cli(prog_name="ciwheels")
