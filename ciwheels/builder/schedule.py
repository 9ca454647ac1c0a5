"""`ciwheels plan`: the jobs and cells a pipeline builds. Without `--missing`, every cell (what
pushes and tags build); with it, only the cells whose state (builder/state.py's cell_states) is `missing`:
not on their registry, not a known failure, not provided upstream, not a remembered failure.
Scheduled and manual pipelines build exactly this plan (GitHub reads it with fromJSON, GitLab
runs it as a child pipeline)."""

from __future__ import annotations

from dataclasses import dataclass

from ciwheels.builder.state import CellState, Listings, StateOptions, cell_states
from ciwheels.builder.upstream import resolved_versions
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import get_logger
from ciwheels.pipelines.plan import Plan, job_json, keep_cells


@dataclass
class PlanResult:
    plan: Plan
    states: dict[str, CellState]  # {} without --missing
    versions: dict[str, list[str]]  # resolved `versions:` selections (for CIWHEELS_VERSIONS)
    reads: int = 0  # registry index reads

    def to_json(self, cells) -> dict:
        ids = {c for job in self.plan.jobs for c in job.cells}
        by_id = {c.id: c for c in cells}
        out_cells = []
        for cid in sorted(ids):
            c = by_id[cid]
            entry = {"id": cid, "python": c.python, "platform": c.platform, "arch": c.arch, "libc": c.libc,
                     "isa": c.isa, "policy": c.policy, "registry": c.registry}
            if c.package:
                entry.update(package=c.package, version=c.version)
            if cid in self.states:
                entry["state"] = self.states[cid].state
            out_cells.append(entry)
        skipped = [{"id": cid, **st.to_json()} for cid, st in sorted(self.states.items()) if cid not in ids]
        return {"jobs": [job_json(j) for j in self.plan.jobs], "cells": out_cells, "skipped": skipped,
                "versions": self.versions, "waves": sorted({j.wave for j in self.plan.jobs})}


def make_plan(project, *, missing: bool, listings: Listings | None = None,
              opts: StateOptions | None = None) -> PlanResult:
    plan = project.plan
    versions = resolved_versions(project.spec)
    if not missing:
        return PlanResult(plan, {}, versions)
    listings = listings or Listings.of(project.registries)
    states = cell_states(project, listings, opts)
    if listings.errors:
        # an unreadable registry is not "everything published": a scheduled pipeline would build nothing
        (index, name), error = sorted(listings.errors.items())[0]
        raise CiwheelsError(f"cannot read the registry index for {len(listings.errors)} package page(s), e.g. "
                            f"{name}: {error.rstrip('.')}; refusing to plan, since what is missing cannot be told",
                            hint="Check the registry URL, its credentials and whether it is up, then run again")
    keep = [c for c in project.expansion.cells if states[c.id].state == "missing"]
    return PlanResult(keep_cells(plan, keep, project.catalog), states, versions, listings.reads)


def github_outputs(result: PlanResult, project, max_jobs: int = 256) -> str:
    """Step outputs for the GitHub workflow: `wave<N>` (the matrix `include` of the planned
    build jobs of wave N, read with fromJSON; [] when none), `versions` (for CIWHEELS_VERSIONS)
    and `any`. A wave above GitHub's 256 jobs per matrix is cut: the next schedule builds the rest."""
    import json


    waves = sorted({j.wave for j in project.plan.jobs}) or [0]
    lines = []
    for wave in waves:
        entries = [{"job": j.id, "runs-on": j.github_runner, "qemu": j.qemu_platform, "pythons": " ".join(j.pythons),
                    "cells": " ".join(j.cells)} for j in result.plan.jobs if j.wave == wave]
        if len(entries) > max_jobs:
            get_logger("plan").warning("wave %d has %d jobs; building the first %d now, the rest in later runs",
                                       wave, len(entries), max_jobs)
            entries = entries[:max_jobs]
        lines.append(f"wave{wave}=" + json.dumps(entries, separators=(",", ":")))
    lines.append("versions=" + json.dumps(result.versions, sort_keys=True, separators=(",", ":")))
    lines.append("any=" + ("true" if result.plan.jobs else ""))
    return "\n".join(lines) + "\n"
