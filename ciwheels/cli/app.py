"""The command group, its options shared by several commands, logging to stderr, and the one
place where errors become a paragraph and an exit code."""


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
    from ciwheels.net.http import check_timeout

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


def _open(project: Path, matrix_paths: tuple[Path, ...], repository_url: str | None = None):
    from ciwheels.project.open import open_project

    return open_project(project, matrix_paths, repository_url=repository_url)


def _print_warnings(expansion) -> None:
    for w in expansion.warnings:
        click.echo(f"warning: {w}", err=True)


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


def main() -> None:
    cli(prog_name="ciwheels")
