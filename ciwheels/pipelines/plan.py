"""Stage 3, plan: group cells into CI jobs and resolve the render settings.

Cells that share package version, arch, libc policy, ISA level, image, runner and cibuildwheel
spec run in one job: one cibuildwheel container session builds all of its Pythons. Jobs are
then cut into chunks that respect each CI system's matrix limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ciwheels.catalog import Catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import get_logger
from ciwheels.matrix.expand import check_level_clashes
from ciwheels.matrix.model import Cell, Expansion
from ciwheels.matrix.normalise import ProjectSpec, RenderSettings


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    package: str
    version: str
    arch: str
    libc: str
    policy: str
    isa: str
    image: str
    github_runner: str
    gitlab_tags: tuple[str, ...]
    emulated: bool
    qemu_platform: str  # "" when native
    timeout_minutes: int
    cells: tuple[str, ...]
    pythons: tuple[str, ...]
    wave: int = 0  # builder mode: 1 + the wave of the packages it `needs` (0 without needs)
    needs: tuple[str, ...] = ()  # the packages it needs (their jobs run in earlier waves)
    built_image: str = ""  # the arch whose pipeline-built image (render.build-images) it builds in


@dataclass(frozen=True, slots=True)
class Plan:
    jobs: tuple[Job, ...]
    settings: RenderSettings
    images: tuple = ()  # builtimages.BuiltImage: the images the pipelines build, by arch
    registries: tuple[str, ...] = ()  # the matrix's registry names (their credentials' variables)



def _job_key(cell: Cell) -> tuple:
    return (cell.package, cell.version, cell.arch, cell.libc, cell.policy, cell.isa, cell.image,
            cell.runner, cell.cibuildwheel, cell.patches, cell.matrix_file)


def plan(expansion: Expansion, spec: ProjectSpec, catalog: Catalog) -> Plan:
    """Emulated cells get a job each unless `render: {emulated-jobs: grouped}`: one Python
    under QEMU takes 40 minutes to hours (riscv64), a platform's Pythons in one job would
    run into the hosted services' job limits."""
    per_cell = spec.render.emulated_jobs == "per-cell"
    check_level_clashes(expansion)
    groups: dict[tuple, list[Cell]] = {}
    for cell in expansion.cells:
        key = _job_key(cell) + ((cell.python,) if per_cell and cell.runner.emulated else ())
        groups.setdefault(key, []).append(cell)
    many_files = len({c.matrix_file for c in expansion.cells}) > 1
    waves = package_waves(spec)
    built = {image.ref: arch for arch, image in spec.built_images.items()}
    jobs = []
    for key, cells in groups.items():
        first = cells[0]
        base = f"{first.policy}_{first.arch}-{first.isa}"
        if first.package:
            base = f"{first.package}-{first.version}-{base}"
        if many_files:
            base = f"{Path(first.matrix_file).stem}-{base}"
        if not first.runner.emulated and first.runner.github != spec.github_runner:
            base += "-native"
        if per_cell and first.runner.emulated:
            base += f"-{first.python}"
        jobs.append(Job(
            id=base, package=first.package, version=first.version, arch=first.arch, libc=first.libc,
            policy=first.policy, isa=first.isa, image=first.image, github_runner=first.runner.github,
            gitlab_tags=first.runner.gitlab, emulated=first.runner.emulated,
            qemu_platform=catalog.arches[first.arch].qemu_platform if first.runner.emulated else "",
            timeout_minutes=max(c.timeout_minutes for c in cells),
            cells=tuple(sorted(c.id for c in cells)),
            pythons=tuple(sorted({c.python for c in cells}, key=_python_order(catalog))),
            wave=waves.get((first.matrix_file, first.package), (0, ()))[0],
            needs=waves.get((first.matrix_file, first.package), (0, ()))[1],
            built_image=built.get(first.image, ""),
        ))
    jobs.sort(key=lambda j: j.id)
    seen: dict[str, Job] = {}
    for job in jobs:
        if job.id in seen:
            raise CiwheelsError(f"two jobs would be named {job.id}: cells {seen[job.id].cells[0]} and "
                                f"{job.cells[0]} differ in runner, image or cibuildwheel; give them one")
        seen[job.id] = job
    _check_timeouts(jobs, spec, expansion)
    images = tuple(spec.built_images[a] for a in sorted(spec.built_images))
    return Plan(tuple(jobs), spec.render, images, tuple(spec.registries))


def _check_timeouts(jobs: list[Job], spec: ProjectSpec, expansion: Expansion) -> None:
    """A job limit above what the hosted services allow: an error for GitHub (its hosted
    runners stop every job at 360 minutes), a warning for GitLab (gitlab.com stops at 180 by
    default; an instance or project may allow more)."""
    s = spec.render
    github_max = int(s.defaults.get("github-max-timeout", 360))
    gitlab_max = int(s.defaults.get("gitlab-default-max-timeout", 180))
    by_id = {c.id: c for c in expansion.cells}
    for job in jobs:
        if s.github and job.timeout_minutes > github_max:
            worst = max((by_id[c] for c in job.cells), key=lambda c: c.timeout_minutes)
            origin = worst.origins.get("timeout-minutes")
            raise CiwheelsError(
                f"job {job.id} has timeout-minutes {job.timeout_minutes}, above the {github_max} minutes "
                "GitHub-hosted runners allow a job; lower it (an override with select: {arch: ...} or "
                "{python: ...}), or give the job a self-hosted runner, or set render: {github: false}",
                file=origin.file if origin and origin.kind == "matrix" else None,
                line=origin.line if origin and origin.kind == "matrix" else None, value=job.timeout_minutes)
    long = [j for j in jobs if j.timeout_minutes > gitlab_max]
    if s.gitlab and long:
        worst = max(long, key=lambda j: j.timeout_minutes)
        get_logger("plan").warning(
            "%d job(s) have timeout-minutes above gitlab.com's default limit of %d minutes (%s: %d): raise the "
            "project's limit (Settings > CI/CD > General pipelines > Timeout) or the runner's, or lower it",
            len(long), gitlab_max, worst.id, worst.timeout_minutes)
    if s.gitlab and spec.built_images and github_max > gitlab_max:  # the image jobs' timeout (gitlab.yml.j2)
        names = ", ".join(f"ciwheels-image-{arch}" for arch in sorted(spec.built_images))
        get_logger("plan").warning(
            "the GitLab image job(s) %s have a timeout of %d minutes (building an image under QEMU takes hours), "
            "above gitlab.com's default limit of %d minutes: raise the project's limit (Settings > CI/CD > "
            "General pipelines > Timeout) or the runner's, or the job stops before the image is pushed",
            names, github_max, gitlab_max)


def _python_order(catalog: Catalog):
    order = {p: i for i, p in enumerate(catalog.pythons)}
    return lambda p: order.get(p, 0)


def package_waves(spec: ProjectSpec) -> dict[tuple[str, str], tuple[int, tuple[str, ...]]]:
    """{(matrix file, package): (wave, needs)}: a package's jobs run in the wave after the
    latest wave of the packages it needs (normalise refused cycles)."""
    out: dict[tuple[str, str], tuple[int, tuple[str, ...]]] = {}
    for m in spec.matrices:
        needs = {p.name: p.needs for p in m.packages}
        depth: dict[str, int] = {}

        def wave(name: str) -> int:
            if name not in depth:
                depth[name] = 1 + max((wave(n) for n in needs[name]), default=-1)
            return depth[name]

        for p in m.packages:
            out[(m.file, p.name)] = (wave(p.name), p.needs)
    return out


def keep_cells(plan_: Plan, keep: list[Cell], catalog: Catalog) -> Plan:
    """The plan with only the cells in `keep`: jobs lose the others, jobs left empty go."""
    import dataclasses

    python = {c.id: c.python for c in keep}
    jobs = []
    for job in plan_.jobs:
        cells = tuple(c for c in job.cells if c in python)
        if not cells:
            continue
        if cells != job.cells:
            pythons = tuple(sorted({python[c] for c in cells}, key=_python_order(catalog)))
            job = dataclasses.replace(job, cells=cells, pythons=pythons)
        jobs.append(job)
    return Plan(tuple(jobs), plan_.settings, plan_.images, plan_.registries)


def job_json(job: Job) -> dict:
    return {"id": job.id, "cells": list(job.cells), "package": job.package, "version": job.version,
            "arch": job.arch, "libc": job.libc, "policy": job.policy, "isa": job.isa, "image": job.image,
            "runs-on": job.github_runner, "gitlab-tags": list(job.gitlab_tags), "emulated": job.emulated,
            "qemu": job.qemu_platform, "timeout-minutes": job.timeout_minutes, "pythons": list(job.pythons),
            "wave": job.wave, "needs": list(job.needs), "built-image": job.built_image}
