"""`ciwheels gather`, `publish` and `verify`: the wheels after the build."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ciwheels.cli.app import _INSECURE_OPTION, _PROJECT_OPTION, _progress, _seconds, cli


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
@click.option("--all-or-nothing", is_flag=True, envvar="CIWHEELS_ALL_OR_NOTHING",
              help="Publish nothing when a cell has no wheel (a release goes out complete or not at all). "
                   "The rendered pipelines set it for tags.")
@_INSECURE_OPTION
def publish(folder: Path, repository_url: str | None, registry: str | None, index_url: str | None, project: Path,
            jobs: int, retries: int, timeout: float, as_json: bool, dry_run: bool, all_or_nothing: bool,
            allow_insecure_http: bool) -> None:
    """Publish the wheels of FOLDER (a `ciwheels gather` output) to a PyPI-compatible registry.

    Files the registry already has with the same sha256 are skipped; one it has with other
    contents is an error (registries cannot overwrite). Credentials, per host and never sent to
    another: the URL's own user:token@; CIWHEELS_USERNAME_<NAME>/CIWHEELS_PASSWORD_<NAME> for
    the matrix's registry NAME; CIWHEELS_USERNAME/CIWHEELS_PASSWORD for the host of
    --repository-url or CIWHEELS_REPOSITORY_URL (else the one host of all the matrix's
    registries); in GitLab CI the job token for the instance's own API; a keyring entry.
    Re-running after any failure finishes the job and uploads nothing twice. Exit 1 if
    anything failed.
    """
    from ciwheels.core.errors import PublishFailed
    from ciwheels.core.secrets import scrub
    from ciwheels.dist.publish import plan_folder, publish_folder
    from ciwheels.dist.variants import index_files
    from ciwheels.matrix.destination import environment_default
    from ciwheels.project.open import project_registries
    from ciwheels.views.report import table

    plan = plan_folder(folder, {} if repository_url else project_registries(project), only=registry,
                       repository_url=repository_url, default=environment_default())
    if not plan.groups:
        click.echo(f"nothing to publish in {folder}", err=True)
        _fail_on_missing(plan.missing)
        return
    if all_or_nothing and plan.missing:
        count = sum(len(items) for items in plan.groups.values())
        click.echo(f"--all-or-nothing: publishing none of the {count} wheel(s), as {len(plan.missing)} cell(s) "
                   "have none", err=True)
        _fail_on_missing(plan.missing)
    if dry_run:
        for dest, items in plan.groups.items():
            for path, digest in items:
                click.echo(scrub(f"would publish {path.name} (sha256 {digest}) to {dest.url} ({dest.source})"))
            for fname in index_files([p for p, _ in items]):
                click.echo(scrub(f"would publish {fname} last to {dest.url}"))
        return
    results = publish_folder(plan, index_url=index_url, jobs=jobs, retries=retries, timeout=timeout,
                             allow_insecure_http=allow_insecure_http, progress=_progress())
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
    _fail_on_missing(plan.missing)


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
    Each wheel gets the verdict its build gave it: isa-mismatch when a binary needs more than
    its level or cannot be read (truncated, corrupt, for another arch, or a `.so` that is not
    ELF); isa-unproven when the level is above the baseline, the arch can tell, and no binary
    shows it. Exit 1 unless every wheel is ok.
    """
    from ciwheels.dist.verify import as_json as findings_json
    from ciwheels.dist.verify import verdicts, verify_wheel
    from ciwheels.views.report import table

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
    failed = {w: v for w, v in verdicts(findings).items() if v[0] != "ok"}
    for wheel, (status, why) in failed.items():
        click.echo(f"{wheel}: {status}: {why}", err=True)
    if failed or bad:
        sys.exit(1)
