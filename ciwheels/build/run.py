"""Stage 5b, build: run cibuildwheel for cells.

Cells are grouped into invocations (one per job and set of shared options), so one
cibuildwheel container session builds several Pythons. Before a run, build-time facts change
the cells' data (the ISA flags the image's compiler accepts, the CA bundle the container must
trust); the options are then rendered by the one adapter (matrix/cibwopts.py). After it, every wheel
is verified against its cell's ISA level. `--dry-run` prints what would run."""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.utils import canonicalize_name

from ciwheels.build.sdist import fetch_sdist
from ciwheels.catalog import Catalog
from ciwheels.cibw.install import ensure_cibuildwheel
from ciwheels.core.errors import CiwheelsError, did_you_mean
from ciwheels.core.files import sha256_file
from ciwheels.core.log import Progress, get_logger, no_progress
from ciwheels.core.resources import data_dir
from ciwheels.core.secrets import split_userinfo
from ciwheels.dist import artifacts
from ciwheels.dist.variants import make_variant
from ciwheels.dist.verify import verdict, verify_wheel
from ciwheels.images.engine import container_engine
from ciwheels.images.labels import (
    CROSS_LABEL,
    NOT_IN_IMAGE,
    POLICY_LABEL,
    SYSROOT_LABEL,
    carried_pythons,
    policy_mismatches,
    refusals,
)
from ciwheels.images.recipe import image_labels
from ciwheels.isa.families import Probe, family, fit_qemu_cpu
from ciwheels.matrix.cibwopts import cibw_options, config_file, with_isa_flags
from ciwheels.matrix.model import Cell, Expansion, wheel_matches
from ciwheels.net.http import host_ca_bundle
from ciwheels.net.registry import index_url
from ciwheels.pipelines.plan import Plan

log = get_logger("build")

_SELECTION = ("CIBW_BUILD", "CIBW_ENABLE")
CONFIG_FILE = "ciwheels-cibuildwheel.toml"


@dataclass
class Invocation:
    """One cibuildwheel run: its cells (one job, the same options but for the Python) and the
    package it builds."""

    job: str
    cells: list[Cell] = field(default_factory=list)
    package: str = ""  # a source tree or an sdist file; set by the caller
    index_env: dict[str, str] = field(default_factory=dict)  # builder `needs`: our registry first

    @property
    def is_sdist(self) -> bool:
        return self.package.endswith((".tar.gz", ".zip"))

    def where(self) -> tuple[Path, str]:
        """(folder to run in, target): cibuildwheel's {project} is then the package itself."""
        package = Path(self.package)
        return (package.parent, package.name) if self.is_sdist else (package, ".")

    def command(self, output_dir: str, exe: str = "cibuildwheel") -> list[str]:
        # The cell decides, never cibuildwheel's reading of the package's own [tool.cibuildwheel]
        # (which may also name options this cibuildwheel does not know): cibuildwheel reads the
        # file we write. In builder mode the sdist's configuration is already in the cell.
        return [exe, "--platform", "linux", "--output-dir", output_dir,
                "--config-file", str(Path(output_dir) / CONFIG_FILE), self.where()[1]]

    @property
    def config(self) -> str:
        return config_file(self.cells[0])

    def options(self, catalog: Catalog, extra_env: dict[str, str] | None = None) -> dict[str, str]:
        """The CIBW_* options of the run: the shared ones of its cells (cibwopts), selecting all
        of its Pythons."""
        extra_env = {**self.index_env, **(extra_env or {})}
        env = {k: v for k, v in cibw_options(self.cells[0], catalog, extra_env).items() if k not in _SELECTION}
        env["CIBW_BUILD"] = " ".join(sorted({c.identifier for c in self.cells}))
        enable = sorted({c.cibw["CIBW_ENABLE"] for c in self.cells if "CIBW_ENABLE" in c.cibw})
        if enable:
            env["CIBW_ENABLE"] = " ".join(enable)
        return env


def select_cells(expansion: Expansion, plan: Plan, cell_ids: tuple[str, ...], job_ids: tuple[str, ...],
                 all_cells: bool) -> list[Cell]:
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
                 fetch: bool = True, registries: dict | None = None) -> tuple[list[Cell], list[Invocation]]:
    """The cells to build and their cibuildwheel runs, each with its package: the project's
    source tree, or (builder mode, --sdist) the package version's sdist from the index."""
    wanted = None
    if sdist:
        name, _, version = sdist.partition("==")
        if not version:
            raise CiwheelsError(f"--sdist needs NAME==VERSION, not {sdist!r}")
        wanted = (canonicalize_name(name), version)
        if not any((c.package, c.version) == wanted for c in expansion.cells) \
                and any(c.package for c in expansion.cells):
            raise CiwheelsError(f"the matrix builds no {name} {version}: add it under packages:")
        all_cells = all_cells or not (cell_ids or job_ids)
    cells = select_cells(expansion, plan, cell_ids, job_ids, all_cells)
    if wanted and any(c.package for c in cells):
        cells = [c for c in cells if (c.package, c.version) == wanted]
    runs = invocations(cells, plan)
    needs = {j.id: j.needs for j in plan.jobs}
    for inv in runs:
        first = inv.cells[0]
        if needs.get(inv.job):
            inv.index_env = dependency_indexes(first)
        if first.package or wanted:
            name, version = (first.package, first.version) if first.package else wanted
            inv.package = str(fetch_sdist(name, version)) if fetch else f"{name}-{version}.tar.gz"
        else:
            inv.package = package_dir_of(project)
    return cells, runs


def dependency_indexes(cell: Cell) -> dict[str, str]:
    """A package that `needs` others installs its build dependencies from our registry first
    (our riscv64 numpy), then the upstream index: pip and uv settings for the build container.
    Without credentials: cibuildwheel writes the container's environment into the build log, so a
    token there would be published with it; both indexes are read anonymously."""
    ours = cell.destination.index if cell.destination else ""
    if not ours:
        log.warning("%s needs other packages but names no registry to install them from", cell.package)
        return {}
    upstream, user, _ = split_userinfo(index_url())
    if user:
        log.warning("%s: the upstream index is given with credentials; build containers read it without them "
                    "(the build log would show them)", cell.package)
    return {"PIP_INDEX_URL": ours, "PIP_EXTRA_INDEX_URL": upstream, "UV_INDEX": ours, "UV_DEFAULT_INDEX": upstream}


def invocations(cells: list[Cell], plan: Plan) -> list[Invocation]:
    """Cells of one job whose options differ only in the Python build in one run."""
    job_of = {cid: j.id for j in plan.jobs for cid in j.cells}
    groups: dict[tuple, Invocation] = {}
    for cell in cells:
        shared = tuple(sorted((k, v) for k, v in cell.cibw.items() if k not in _SELECTION))
        key = (job_of[cell.id], shared, config_file(cell))
        inv = groups.get(key)
        if inv is None:
            inv = groups[key] = Invocation(job_of[cell.id])
        inv.cells.append(cell)
    return list(groups.values())


def describe(inv: Invocation, output_dir: str, catalog: Catalog) -> str:
    lines = [f"# job {inv.job}: {len(inv.cells)} cells ({', '.join(c.id for c in inv.cells)})"]
    lines += [f"# {output_dir}/{CONFIG_FILE}:"] + [f"#   {line}" for line in inv.config.splitlines()]
    lines += [f"{k}={shlex.quote(v)} \\" for k, v in sorted(inv.options(catalog).items())]
    cwd, _ = inv.where()
    lines.append(f"  (cd {shlex.quote(str(cwd))} && {shlex.join(inv.command(output_dir))})")
    return "\n".join(lines)


CONTAINER_CA = "/ciwheels/ca-certificates.crt"


def trust_environment(ca_bundle: str | None) -> dict[str, str]:
    """Variables that make pip and Python in the container trust the mounted CA bundle."""
    if not ca_bundle:
        return {}
    return {v: CONTAINER_CA for v in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}


def process_environment(options: dict[str, str], engine: str, ca_bundle: str | None) -> dict[str, str]:
    """The environment cibuildwheel runs with: ours, without any CIBW_* of the caller's, plus the
    run's options and the container engine (which mounts the CA bundle)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    env.update(options)
    env["CIBW_CONTAINER_ENGINE"] = engine
    if ca_bundle:
        env["CIBW_CONTAINER_ENGINE"] = f"{engine}; create_args: --volume={ca_bundle}:{CONTAINER_CA}:ro"
    return env


def package_dir_of(project: Path) -> str:
    if not (project / "pyproject.toml").exists() and not (project / "setup.py").exists():
        raise CiwheelsError(f"{project} has no pyproject.toml or setup.py: nothing to build")
    return str(project)


def write_report(out: Path, cell: Cell, job: str, status: str, wheels: list[dict], duration: float,
                 log_file: Path | None, exit_code: int | None, cross: str | None = None) -> None:
    """OUT/<cell-id>/build-report.json, which gather and publish read."""
    artifacts.write_report(out / cell.id, artifacts.BuildReport(
        cell=cell.id, job=job, status=status, python=cell.python, isa=cell.isa, registry=cell.registry,
        arch=cell.arch, policy=cell.policy, wheels=tuple(artifacts.ReportWheel(**w) for w in wheels),
        duration_seconds=duration, log=str(log_file) if log_file else None, cibuildwheel_exit=exit_code,
        cross=cross if cross is not None else ("off" if not cell.cross else None)))


# -- cross mode (README "Cross mode") ---------------------------------------------------------
# ciwheels' patch to cibuildwheel: its build step runs the image's cross build command
CROSS_PATCH = "cibuildwheel-cross.patch"
_BUILDING = re.compile(r"Building (\S+) wheel")
_CROSS_LINE = re.compile(r"ciwheels cross: (\S+): (native|fallback \((.*)\))\s*$")


def cross_patches(cell: Cell) -> tuple[str, ...]:
    """The cibuildwheel patches a cell's build needs: the matrix's, and for cross mode ciwheels'
    own (catalog data; inert without CIWHEELS_CROSS_BUILD in the build environment)."""
    if not cell.cross:
        return cell.patches
    return (*cell.patches, str(data_dir("catalog") / CROSS_PATCH))


LOG_LINE_LIMIT = 64 << 10  # characters of one log line that are looked at (the rest is skipped)
LOG_TAIL_LINES, LOG_TAIL_WIDTH = 25, 2000  # what a failure shows of the end of the log


@dataclass
class SessionLog:
    """What ciwheels reads in a cibuildwheel session's log, taken in one pass over it with bounded
    memory: the log holds the output of other people's builds, of any length and any line length."""

    building: list[str] = field(default_factory=list)  # identifiers, in the order they started
    errors: list[str] = field(default_factory=list)  # "cibuildwheel: error: ..." lines
    cross: dict[str, str] = field(default_factory=dict)  # identifier -> "native" | "fallback (...)"
    too_recent: bool = False  # auditwheel's "too-recent versioned symbols"
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))  # the last lines, cut

    def add(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if "Building " in line and (m := _BUILDING.search(line)):
            self.building.append(m.group(1))
        elif line.startswith("cibuildwheel: error:") and len(self.errors) < 100:
            self.errors.append(line)
        elif line.startswith("ciwheels cross: ") and (m := _CROSS_LINE.match(line)):
            self.cross[m.group(1)] = m.group(2)
        self.too_recent = self.too_recent or "too-recent versioned symbols" in line
        self.tail.append(line[:LOG_TAIL_WIDTH])

    @classmethod
    def read(cls, path: Path) -> "SessionLog":
        facts = cls()
        with open(path, encoding="utf-8", errors="replace") as f:
            while line := f.readline(LOG_LINE_LIMIT):
                while len(line) == LOG_LINE_LIMIT and not line.endswith("\n"):
                    rest = f.readline(LOG_LINE_LIMIT)  # the rest of an overlong line: skipped
                    if not rest or rest.endswith("\n"):
                        break
                facts.add(line)
        return facts


def cross_outcome(log: SessionLog, identifier: str) -> str | None:
    """What the image's cross build command said for `identifier` in a cibuildwheel log: "native"
    or "fallback (<reason>)"; None when it said nothing (the build never got that far)."""
    return log.cross.get(identifier)


def without_cross(inv: Invocation, labels: dict[str, str] | None) -> str | None:
    """Cross mode needs an image that has it (`io.ciwheels.cross` names the Pythons it
    cross-builds): for an image here that does not, the invocation's cells build emulated.
    Returns why, or None. An image that is not here yet (pulled by cibuildwheel) keeps it: the
    patch builds as upstream when the image lacks the cross build command, and says so."""
    if not any(c.cross for c in inv.cells):
        return None
    if labels is None or labels.get(CROSS_LABEL, "").split():
        return None
    inv.cells = [replace(c, cross=False) for c in inv.cells]
    return f"off (the image {inv.cells[0].image_ref} has no cross mode)"


_PROBE_OK = "ciwheels-probe: ran"


def probe_compiler(inv: Invocation, engine: str, catalog: Catalog) -> Probe:
    """Ask the image's compiler which spelling of the level's flags it accepts (the ISA family
    decides whether that is needed: riscv64's profile names are new to GCC), and the QEMU that
    emulates the image which QEMU_CPU properties it knows. An answer counts only with the line
    the probe prints after it: an engine that loses the exit status (a docker CLI talking to
    podman's API) must not turn a refusal into a yes."""
    cell = inv.cells[0]
    level = catalog.levels[cell.isa]
    platform = catalog.arches[cell.arch].qemu_platform

    def run(script: str, env: dict[str, str] | None = None) -> tuple[bool, str]:
        args = [engine, "run", "--rm", "--platform", platform]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        try:
            proc = subprocess.run([*args, cell.image_ref, "sh", "-c", f"{script} && echo '{_PROBE_OK}'"],
                                  capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return False, "the probe timed out after 600 s"
        return proc.returncode == 0 and _PROBE_OK in proc.stdout.splitlines(), proc.stderr

    def compiles(flags: str) -> tuple[bool, str]:
        return run(f"echo 'int x;' | gcc {flags} -x c -c -o /dev/null -")

    result = family(cell.arch, catalog).probe(level, compiles)
    if result.note:
        log.info("%s: %s: %s", inv.job, cell.image_ref, result.note)
    qemu_cpu = result.flags.get("QEMU_CPU")
    if qemu_cpu:
        fitted, unknown = fit_qemu_cpu(qemu_cpu, lambda value: run("true", {"QEMU_CPU": value}))
        if unknown:
            log.warning("%s: this machine's QEMU does not know %s of %s: QEMU_CPU=%s; code that uses them dies "
                        "with an illegal instruction here (the pipelines install QEMU 9.2.2, which knows them)",
                        inv.job, ", ".join(unknown), level.name, fitted)
            result = Probe({**result.flags, "QEMU_CPU": fitted}, result.note, result.dropped)
    return result


def failure_hint(log: SessionLog, labels: dict[str, str] | None) -> str | None:
    """What a failed build's log means when ciwheels can tell, or None. auditwheel's "too-recent
    versioned symbols" names neither the library nor the symbols; in an image whose compilers
    use an older glibc's sysroot the extension itself fits, so a library the wheel links does not."""
    if not log.too_recent:
        return None
    labels = labels or {}
    policy = labels.get(POLICY_LABEL, "the image's policy")
    sysroot = labels.get(SYSROOT_LABEL, "none")
    if sysroot == "none":
        return (f"auditwheel refused the wheel: something in it needs a newer glibc or libstdc++ than {policy} "
                "allows. Build on an image with an older glibc, or give the cell that image's policy.")
    return (f"auditwheel refused the wheel for {policy}: a library it links needs a newer glibc or libstdc++ "
            f"than that. The image compiles extensions against the glibc of the {sysroot} sysroot, so the "
            "extension fits; a library from the image's own distribution (installed by before-all, e.g. "
            "apt-get install libfoo-dev) was built for its newer glibc. Build that library from source in "
            "before-all with the image's compilers (they use the sysroot) into /usr/local, as with pypa's "
            "manylinux images; `auditwheel show` of the unrepaired wheel names the libraries "
            "(images/README.md, \"Libraries from before-all\"). Or build without the sysroot "
            "(environment CIWHEELS_SYSROOT=0 and AUDITWHEEL_PLAT=manylinux_<base glibc>_<arch>) and give the "
            "cell that policy.")


@dataclass
class Attempt:
    """One cibuildwheel run of some cells, and what it left."""

    cells: list[Cell]
    log_path: Path
    exit_code: int
    duration: float
    wheels: dict[str, list[Path]]  # cell id -> wheels in the staging folder
    failed_at: str | None  # the identifier cibuildwheel was building when it stopped
    staging: Path
    log: SessionLog


def _run_once(inv: Invocation, cells: list[Cell], exe: Path, staging: Path, log_path: Path, engine: str,
              catalog: Catalog, ca_bundle: str | None) -> Attempt:
    run = Invocation(inv.job, cells, inv.package)
    staging.mkdir(parents=True, exist_ok=True)
    (staging / CONFIG_FILE).write_text(run.config, encoding="utf-8")
    cwd, _ = run.where()
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.run(run.command(str(staging.resolve()), str(exe)), cwd=cwd,
                              env=process_environment(run.options(catalog, trust_environment(ca_bundle)), engine,
                                                      ca_bundle),
                              stdout=log_file, stderr=subprocess.STDOUT)
    duration = round(time.monotonic() - start, 1)
    wheels: dict[str, list[Path]] = {c.id: [] for c in cells}
    for wheel in sorted(staging.glob("*.whl")):
        for cell in cells:  # an abi3 wheel serves every cell it covers
            if wheel_matches(wheel.name, cell):
                wheels[cell.id].append(wheel)
    failed_at = None
    # the session's log, read once: where a failure stopped, each cell's cross outcome, the tail
    facts = SessionLog.read(log_path) if proc.returncode != 0 or any(c.cross for c in cells) else SessionLog()
    if proc.returncode != 0:
        if facts.building:
            failed_at = facts.building[-1]
        else:  # stopped before building, for one Python (e.g. its interpreter is not in the image)
            named = {c.identifier for c in cells for line in facts.errors if c.identifier in line}
            failed_at = named.pop() if len(named) == 1 else None
    return Attempt(cells, log_path, proc.returncode, duration, wheels, failed_at, staging, facts)


def _attempts(inv: Invocation, exe: Path, staging: Path, out: Path, engine: str, catalog: Catalog,
              ca_bundle: str | None) -> list[Attempt]:
    """Build the invocation's cells; one failed cell must not lose the others. cibuildwheel
    stops at the first failed build and copies wheels out of the container only at the end, so
    after a failure every cell that has no wheel and was not the failing one is built again on
    its own (a failure before any build started, e.g. in before-all, fails them all)."""
    first = _run_once(inv, inv.cells, exe, staging, out / f"{inv.job}.log", engine, catalog, ca_bundle)
    attempts = [first]
    if first.exit_code == 0 or first.failed_at is None:
        return attempts
    again = [c for c in inv.cells if not first.wheels[c.id] and c.identifier != first.failed_at]
    if again:
        log.warning("%s: cibuildwheel stopped at %s; building the %d other cell(s) one by one", inv.job,
                    first.failed_at, len(again))
    for cell in again:
        attempts.append(_run_once(inv, [cell], exe, staging.with_name(staging.name + "-" + cell.id),
                                  out / f"{inv.job}.{cell.id}.log", engine, catalog, ca_bundle))
    return attempts


def run_all(runs: list[Invocation], out: Path, engine: str | None, catalog: Catalog, matrix_dir: Path | None = None,
            progress: Progress = no_progress) -> tuple[int, list[list[str]]]:
    """Run every invocation; wheels land in OUT/<cell-id>/ with build-report.json, for every cell
    that built, whatever happened to the others. Returns the exit code and a summary row per cell."""
    engine = container_engine(engine)
    out.mkdir(parents=True, exist_ok=True)
    summary, failed = [], 0
    ca_bundle = host_ca_bundle()
    total = sum(len(r.cells) for r in runs)
    # before any container starts: cells whose image says it lacks their Python fail alone
    labels_of = functools.cache(lambda ref: image_labels(engine, ref))
    refused = refusals([c for r in runs for c in r.cells], lambda ref: carried_pythons(labels_of(ref)))
    for warning in policy_mismatches([c for r in runs for c in r.cells if c.id not in refused], labels_of):
        log.warning("%s", warning)
    for inv in runs:
        for cell in (c for c in inv.cells if c.id in refused):
            log_path = out / f"{inv.job}.{cell.id}.log"
            log_path.write_text(refused[cell.id] + "\n", encoding="utf-8")
            log.error("%s: %s", inv.job, refused[cell.id])
            write_report(out, cell, inv.job, NOT_IN_IMAGE, [], 0.0, log_path, None)
            summary.append([cell.id, NOT_IN_IMAGE, "0", "0s", "-"])
            failed += 1
            progress(len(summary), total, "failed", cell.id, NOT_IN_IMAGE)
        inv.cells = [c for c in inv.cells if c.id not in refused]
    runs = [inv for inv in runs if inv.cells]
    for n, inv in enumerate(runs, 1):
        log.info("[%d/%d] %s: building %d cell(s) with %s (log: %s)", n, len(runs), inv.job, len(inv.cells), engine,
                 out / f"{inv.job}.log")
        first = inv.cells[0]
        cwd, _ = inv.where()
        cross_off = without_cross(inv, labels_of(first.image_ref))
        if cross_off:
            log.warning("%s: cross mode %s: building emulated", inv.job, cross_off)
        first = inv.cells[0]
        exe = ensure_cibuildwheel(first.cibuildwheel, cross_patches(first), matrix_dir or cwd)
        probe = probe_compiler(inv, engine, catalog)
        if probe.flags != first.isa_environment:
            inv.cells = [with_isa_flags(c, probe.flags) for c in inv.cells]
        fam = family(first.arch, catalog)
        for attempt in _attempts(inv, exe, out / ".staging" / inv.job, out, engine, catalog, ca_bundle):
            for cell in attempt.cells:
                if summary and any(row[0] == cell.id for row in summary):
                    continue  # reported by the first attempt (it built there) or rebuilt later
                if attempt.exit_code != 0 and not attempt.wheels[cell.id] and len(attempt.cells) > 1 \
                        and cell.identifier != attempt.failed_at and attempt.failed_at is not None:
                    continue  # lost in the failed session: its own attempt reports it
                status, placed = _place(cell, attempt, out, catalog, fam, probe)
                failed += status != "ok"
                cross = cross_off or (cross_outcome(attempt.log, cell.identifier) if cell.cross else "off")
                if cross and cross.startswith("fallback"):
                    log.warning("%s: cross mode %s: built emulated", cell.id, cross)
                write_report(out, cell, inv.job, status, placed, attempt.duration, attempt.log_path,
                             attempt.exit_code, cross)
                summary.append([cell.id, status, str(len(placed)), f"{attempt.duration:.0f}s", cross or "-"])
                progress(len(summary), total, status, cell.id)
            shutil.rmtree(attempt.staging, ignore_errors=True)  # placed: nothing is gathered twice
            if attempt.exit_code != 0:
                log.error("%s failed (cibuildwheel exit %d); last lines of %s:\n%s", inv.job, attempt.exit_code,
                          attempt.log_path, "\n".join("  " + line for line in attempt.log.tail))
                hint = failure_hint(attempt.log, labels_of(first.image_ref))
                if hint:
                    log.error("%s: %s", inv.job, hint)
    return (1 if failed else 0), summary


def _place(cell: Cell, attempt: Attempt, out: Path, catalog: Catalog, fam, probe: Probe) -> tuple[str, list[dict]]:
    """Copy the cell's wheels to OUT/<cell-id>/, verify them against its level: (status, wheels)."""
    dest = out / cell.id
    dest.mkdir(parents=True, exist_ok=True)
    placed = []
    status = "ok" if attempt.wheels[cell.id] else "failed"
    level = catalog.levels[cell.isa]
    for wheel in attempt.wheels[cell.id]:
        shutil.copyfile(wheel, dest / wheel.name)
        findings = verify_wheel(dest / wheel.name, cell.isa, catalog, dropped=probe.dropped)
        isa_check, why = verdict(findings, level, fam.can_tell)
        path = dest / wheel.name
        if isa_check == "ok" and cell.publish_as == "variant":  # repaired and verified: now labelled
            path = make_variant(path, level, catalog)
            (dest / wheel.name).unlink()
        entry = {"file": path.name, "sha256": sha256_file(path), "size": path.stat().st_size,
                 "isa_check": isa_check}
        if isa_check != "ok":
            status = isa_check
            log.error("%s: %s", wheel.name, why)
        placed.append(entry)
    return status, placed
