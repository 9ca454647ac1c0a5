"""Stage 4b, build: run cibuildwheel for cells.

Cells are grouped into invocations (one per job and set of shared options), so one
cibuildwheel container session builds several Pythons. `--dry-run` prints what would run."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ciwheels.errors import CiwheelsError
from ciwheels.model import Cell, Expansion
from ciwheels.plan import Plan

_SELECTION = ("CIBW_BUILD", "CIBW_ENABLE")


@dataclass
class Invocation:
    """One cibuildwheel run: its cells and the environment that selects and configures them."""

    job: str
    cells: list[Cell] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    package: str = ""  # a source tree or an sdist file; set by the caller

    @property
    def is_sdist(self) -> bool:
        return self.package.endswith((".tar.gz", ".zip"))

    def where(self) -> tuple[Path, str]:
        """(folder to run in, target): cibuildwheel's {project} is then the package itself."""
        package = Path(self.package)
        return (package.parent, package.name) if self.is_sdist else (package, ".")

    def command(self, output_dir: str, exe: str = "cibuildwheel") -> list[str]:
        cmd = [exe, "--platform", "linux", "--output-dir", output_dir]
        if self.is_sdist:
            # Builder mode: the matrix decides, not the package's own [tool.cibuildwheel]
            # (which may name options this cibuildwheel does not know).
            cmd += ["--config-file", str(Path(output_dir) / "ciwheels-builder.toml")]
        return cmd + [self.where()[1]]


def select_cells(expansion: Expansion, plan: Plan, cell_ids: tuple[str, ...], job_ids: tuple[str, ...],
                 all_cells: bool) -> list[Cell]:
    from ciwheels.errors import did_you_mean

    by_id = {c.id: c for c in expansion.cells}
    jobs = {j.id: j for j in plan.jobs}
    if not (cell_ids or job_ids or all_cells):
        raise CiwheelsError("say what to build: --cell ID, --job ID or --all",
                            hint="'ciwheels matrix' lists the cells")
    chosen: dict[str, Cell] = {}
    for cid in cell_ids:
        if cid not in by_id:
            guess = did_you_mean(cid, list(by_id))
            raise CiwheelsError(f"no cell {cid!r} in the matrix", hint=f"Did you mean {guess!r}?" if guess else None)
        chosen[cid] = by_id[cid]
    for jid in job_ids:
        if jid not in jobs:
            raise CiwheelsError(f"no job {jid!r} in the matrix", value=jid, allowed=sorted(jobs))
        for cid in jobs[jid].cells:
            chosen[cid] = by_id[cid]
    if all_cells:
        chosen = by_id
    return [c for c in expansion.cells if c.id in chosen]


def prepare_runs(expansion: Expansion, plan: Plan, project: Path, cell_ids: tuple[str, ...],
                 job_ids: tuple[str, ...], all_cells: bool, sdist: str | None,
                 fetch: bool = True) -> tuple[list[Cell], list[Invocation]]:
    """The cells to build and their cibuildwheel runs, each with its package: the project's
    source tree, or (builder mode, --sdist) the package version's sdist from the index."""
    from ciwheels.expand import normalize_name

    wanted = None
    if sdist:
        name, _, version = sdist.partition("==")
        if not version:
            raise CiwheelsError(f"--sdist needs NAME==VERSION, not {sdist!r}")
        wanted = (normalize_name(name), version)
        if not any((c.package, c.version) == wanted for c in expansion.cells) \
                and any(c.package for c in expansion.cells):
            raise CiwheelsError(f"the matrix builds no {name} {version}: add it under packages:")
        all_cells = all_cells or not (cell_ids or job_ids)
    cells = select_cells(expansion, plan, cell_ids, job_ids, all_cells)
    if wanted and any(c.package for c in cells):
        cells = [c for c in cells if (c.package, c.version) == wanted]
    runs = invocations(cells, plan)
    for inv in runs:
        first = inv.cells[0]
        if first.package or wanted:
            from ciwheels.sdist import fetch_sdist

            name, version = (first.package, first.version) if first.package else wanted
            inv.package = str(fetch_sdist(name, version)) if fetch else f"{name}-{version}.tar.gz"
        else:
            inv.package = package_dir_of(project)
    return cells, runs


def invocations(cells: list[Cell], plan: Plan) -> list[Invocation]:
    job_of = {cid: j.id for j in plan.jobs for cid in j.cells}
    groups: dict[tuple, Invocation] = {}
    for cell in cells:
        shared = tuple(sorted((k, v) for k, v in cell.cibw.items() if k not in _SELECTION))
        key = (job_of[cell.id], shared)
        inv = groups.get(key)
        if inv is None:
            inv = groups[key] = Invocation(job_of[cell.id], env=dict(shared))
        inv.cells.append(cell)
    for inv in groups.values():
        inv.env["CIBW_BUILD"] = " ".join(sorted({c.identifier for c in inv.cells}))
        enable = sorted({c.cibw["CIBW_ENABLE"] for c in inv.cells if "CIBW_ENABLE" in c.cibw})
        if enable:
            inv.env["CIBW_ENABLE"] = " ".join(enable)
    return list(groups.values())


def describe(inv: Invocation, output_dir: str) -> str:
    lines = [f"# job {inv.job}: {len(inv.cells)} cells ({', '.join(c.id for c in inv.cells)})"]
    lines += [f"{k}={shlex.quote(v)} \\" for k, v in sorted(inv.env.items())]
    cwd, _ = inv.where()
    lines.append(f"  (cd {shlex.quote(str(cwd))} && {shlex.join(inv.command(output_dir))})")
    return "\n".join(lines)


def container_engine(requested: str | None) -> str:
    import shutil

    if requested:
        return requested
    for engine in ("docker", "podman"):
        if shutil.which(engine):
            return engine
    raise CiwheelsError("no container engine found: install docker or podman, or pass --engine")


CONTAINER_CA = "/ciwheels/ca-certificates.crt"


def host_ca_bundle() -> str | None:
    """The CA bundle this machine tells its own tools to trust (a TLS-inspecting proxy's
    certificate may be in it), so that pip inside the build container trusts it too."""
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(var)
        if path and os.path.isfile(path):
            return path
    return None


def environment_for(inv: Invocation, engine: str, ca_bundle: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    env.update(inv.env)
    env["CIBW_CONTAINER_ENGINE"] = engine
    if ca_bundle:
        env["CIBW_CONTAINER_ENGINE"] = f"{engine}; create_args: --volume={ca_bundle}:{CONTAINER_CA}:ro"
        trust = " ".join(f'{v}="{CONTAINER_CA}"' for v in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"))
        env["CIBW_ENVIRONMENT_LINUX"] = f"{env.get('CIBW_ENVIRONMENT_LINUX', '')} {trust}".strip()
    return env


def package_dir_of(project: Path) -> str:
    if not (project / "pyproject.toml").exists() and not (project / "setup.py").exists():
        raise CiwheelsError(f"{project} has no pyproject.toml or setup.py: nothing to build")
    return str(project)


def _wheel_cell(wheel: Path, cells: list[Cell]) -> Cell | None:
    """Which cell a wheel belongs to."""
    from ciwheels.model import wheel_matches

    return next((cell for cell in cells if wheel_matches(wheel.name, cell)), None)


def write_report(out: Path, cell: Cell, job: str, status: str, wheels: list[dict], duration: float,
                 log: Path | None, exit_code: int | None) -> None:
    """OUT/<cell-id>/build-report.json, which gather and publish read."""
    from ciwheels import artifacts

    artifacts.write_report(out / cell.id, artifacts.BuildReport(
        cell=cell.id, job=job, status=status, python=cell.python, isa=cell.isa, registry=cell.registry,
        arch=cell.arch, policy=cell.policy, wheels=tuple(artifacts.ReportWheel(**w) for w in wheels),
        duration_seconds=duration, log=str(log) if log else None, cibuildwheel_exit=exit_code))


def _image_ref(name: str, arch: str, libc: str) -> str:
    """A pinned pypa name (manylinux_2_39) -> the image cibuildwheel would use; else as given."""
    import configparser
    from importlib.resources import files

    if "/" in name or ":" in name:
        return name
    try:
        cfg = configparser.ConfigParser()
        cfg.read_string((files("cibuildwheel") / "resources" / "pinned_docker_images.cfg").read_text())
        return cfg[arch][name].split()[0]
    except (ModuleNotFoundError, KeyError, OSError):
        return name


def probe_riscv_march(inv: Invocation, engine: str, log) -> None:
    """GCC 14 rejects the RVA profile names (-march=rva23u64): ask the image's compiler, and
    where it says no, build with the same level spelled as an explicit ISA string."""
    import subprocess

    from ciwheels.catalog import load_catalog

    cell = inv.cells[0]
    level = load_catalog().levels[cell.isa]
    if cell.arch != "riscv64" or not level.cflags_expanded:
        return
    image = _image_ref(cell.image, cell.arch, cell.libc)

    def compile_with(flags: str) -> tuple[bool, str]:
        probe = f"echo 'int x;' | gcc {flags} -x c -c -o /dev/null -"
        proc = subprocess.run([engine, "run", "--rm", "--platform", "linux/riscv64", image, "sh", "-c", probe],
                              capture_output=True, text=True)
        return proc.returncode == 0, proc.stderr

    ok, _ = compile_with(level.cflags)
    if ok:
        log(f"{inv.job}: the compiler in {image} accepts {level.cflags}")
        return
    # Spell the level out; drop extensions this GCC does not know yet (GCC 14.2: zimop,
    # zcmop): the code then simply does not use them and stays within the level.
    flags, dropped = level.cflags_expanded, []
    for _ in range(8):
        ok, err = compile_with(flags)
        if ok:
            break
        unknown = sorted(set(re.findall(r"extension '([a-z0-9]+)'[^\n]*unsupported", err)))
        if not unknown:
            raise CiwheelsError(f"the compiler in {image} accepts neither {level.cflags} nor the expanded ISA "
                                f"string of {level.name}: {err.strip().splitlines()[-1] if err.strip() else ''}")
        dropped += unknown
        flags = re.sub(r"_(" + "|".join(unknown) + r")(?=_|$|\s)", "", flags)
    else:
        raise CiwheelsError(f"could not find an ISA string for {level.name} that the compiler in {image} accepts")
    log(f"{inv.job}: the compiler in {image} rejects {level.cflags}; using the expanded ISA string"
        + (f" without {', '.join(dropped)}, which it does not know" if dropped else ""))
    env = inv.env.get("CIBW_ENVIRONMENT_LINUX", "")
    inv.env["CIBW_ENVIRONMENT_LINUX"] = env.replace(level.cflags, flags)


def run_all(runs: list[Invocation], out: Path, engine: str | None, matrix_dir: Path | None = None) -> int:
    """Run every invocation; wheels land in OUT/<cell-id>/ with build-report.json. Returns the exit code."""
    import hashlib
    import subprocess
    import time

    import click

    from ciwheels.report import table
    from ciwheels.cibw import ensure_cibuildwheel
    from ciwheels.verify import verify_wheel

    engine = container_engine(engine)
    out.mkdir(parents=True, exist_ok=True)
    summary, failed = [], 0
    for n, inv in enumerate(runs, 1):
        staging = out / ".staging" / inv.job
        staging.mkdir(parents=True, exist_ok=True)
        log_path = out / f"{inv.job}.log"
        click.echo(f"[{n}/{len(runs)}] {inv.job}: building {len(inv.cells)} cell(s) with {engine} "
                   f"(log: {log_path})", err=True)
        cell = inv.cells[0]
        cwd, _ = inv.where()
        exe = ensure_cibuildwheel(cell.cibuildwheel, cell.patches, matrix_dir or cwd,
                                  log=lambda m: click.echo(m, err=True))
        probe_riscv_march(inv, engine, lambda m: click.echo(m, err=True))
        start = time.monotonic()
        with open(log_path, "w", encoding="utf-8") as log:
            (staging / "ciwheels-builder.toml").write_text("[tool.cibuildwheel]\n", encoding="utf-8")
            proc = subprocess.run(inv.command(str(staging.resolve()), str(exe)), cwd=cwd,
                                  env=environment_for(inv, engine, host_ca_bundle()),
                                  stdout=log, stderr=subprocess.STDOUT)
        duration = round(time.monotonic() - start, 1)
        placed: dict[str, list[dict]] = {c.id: [] for c in inv.cells}
        for wheel in sorted(staging.glob("*.whl")):
            cell = _wheel_cell(wheel, inv.cells)
            if cell is None:
                continue
            dest = out / cell.id
            dest.mkdir(parents=True, exist_ok=True)
            data = wheel.read_bytes()
            wheel.replace(dest / wheel.name)
            placed[cell.id].append({"file": wheel.name, "sha256": hashlib.sha256(data).hexdigest(),
                                    "size": len(data)})
        for cell in inv.cells:
            status = "ok" if proc.returncode == 0 and placed[cell.id] else "failed"
            for w in placed[cell.id]:
                too_high = [f for f in verify_wheel(out / cell.id / w["file"], cell.isa) if f.status == "too-high"]
                w["isa_check"] = "too-high" if too_high else "ok"
                if too_high:
                    status = "isa-mismatch"
                    click.echo(f"error: {w['file']}: {too_high[0].member} {too_high[0].reason}", err=True)
            failed += status != "ok"
            write_report(out, cell, inv.job, status, placed[cell.id], duration, log_path, proc.returncode)
            summary.append([cell.id, status, str(len(placed[cell.id])), f"{duration:.0f}s"])
        if proc.returncode != 0:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
            click.echo(f"error: {inv.job} failed (cibuildwheel exit {proc.returncode}); last lines of {log_path}:",
                       err=True)
            click.echo("\n".join("  " + line for line in tail), err=True)
    click.echo(table(["cell", "status", "wheels", "time"], summary), err=True)
    return 1 if failed else 0
