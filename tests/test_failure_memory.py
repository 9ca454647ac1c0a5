"""Issue #21, defect 1: the failure memory of scheduled GitLab pipelines survives any number of
schedules. The memory is the published status.json: the parent's `ciwheels-plan` reads it to
leave remembered failures out, and the child pipeline's `pages` job writes the next one. The
`pages` job must read the same memory, or a remembered failure that was (rightly) not rebuilt
is written back as `missing` and rebuilt by the schedule after.

These tests run the commands of the rendered jobs with the variables the rendered files give
those jobs (the variables of one job do not reach another job, nor a child pipeline), with
$CI_PAGES_URL pointing at a folder that plays the deployed Pages site. The same sequence under
gitlab-ci-local is in test_sequences.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ruamel.yaml import YAML

from conftest import run_ciwheels

MATRIX = """\
python: [cp312, cp313]
arch: [x86_64]
render: {github: false, matrix-diff: false}
"""


def _load(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def _job_env(pipeline: dict, job: str, predefined: dict[str, str]) -> dict[str, str]:
    """The environment GitLab gives `job`: predefined variables, then the file's global
    variables, then the job's own (and those of what it extends), each $VAR expanded."""
    env = dict(predefined)
    layers = [pipeline.get("variables") or {}]
    chain, name = [], job
    while name:
        chain.append(pipeline[name])
        name = pipeline[name].get("extends")
    layers += [j.get("variables") or {} for j in reversed(chain)]
    for layer in layers:
        for key, value in layer.items():
            env[key] = re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), str(value))
    return env


def _render(tmp_path: Path) -> tuple[Path, dict]:
    project = tmp_path / "proj"
    (project / "matrix").mkdir(parents=True)
    (project / "matrix" / "wheels.yaml").write_text(MATRIX, encoding="utf-8")
    (project / "pyproject.toml").write_text('[project]\nname = "memdemo"\nversion = "1.0"\n', encoding="utf-8")
    run_ciwheels("render", "--project", str(project), check=True)
    return project, _load(project / ".gitlab" / "ciwheels.gitlab-ci.yml")


def _fail(wheelhouse: Path, job: str, cell: str) -> None:
    """What `ciwheels build` leaves for a failed cell: its report and the job's log."""
    (wheelhouse / job / cell).mkdir(parents=True, exist_ok=True)
    (wheelhouse / job / f"{job}.log").write_text("error: the compiler said no\n", encoding="utf-8")
    (wheelhouse / job / cell / "build-report.json").write_text(json.dumps(
        {"cell": cell, "job": job, "status": "failed", "log": f"/builds/x/wheelhouse/{job}/{job}.log", "wheels": []}))


def test_the_child_pages_job_reads_the_memory_the_plan_job_reads(tmp_path):
    project, parent = _render(tmp_path)
    child_file = tmp_path / "child.yml"
    run_ciwheels("plan", "--project", str(project), "--gitlab-child", str(child_file), check=True)
    child = _load(child_file)
    pre = {"CI_PAGES_URL": "https://group.gitlab.example/proj"}
    plan_reads = _job_env(parent, "ciwheels-plan", pre)["CIWHEELS_PREVIOUS_STATUS"]
    assert plan_reads == "https://group.gitlab.example/proj/status.json"
    assert _job_env(child, "pages", pre).get("CIWHEELS_PREVIOUS_STATUS") == plan_reads


def test_a_remembered_failure_survives_any_number_of_schedules(tmp_path):
    """Schedule 1 builds both cells and one fails; schedules 2..5 leave it out and every page
    they publish still says failed, since schedule 1; a run with --retry-failed builds it again."""
    project, parent = _render(tmp_path)
    pages = tmp_path / "pages"  # the deployed site: what $CI_PAGES_URL serves
    pages.mkdir()
    pre = {"CI_PAGES_URL": str(pages), "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    bad, job = "cp313-manylinux_x86_64-x86-64", "manylinux_2_28_x86_64-x86-64"
    sinces = []
    for schedule in range(1, 6):
        run = tmp_path / f"run{schedule}"
        child_file = run / "ciwheels-child.yml"
        plan_env = _job_env(parent, "ciwheels-plan", pre)
        proc = run_ciwheels("plan", "--project", str(project), "--missing", "--no-upstream", "--json",
                            "--gitlab-child", str(child_file), env=plan_env, check=True)
        planned = {c["id"] for c in json.loads(proc.stdout)["cells"]}
        if schedule == 1:
            assert bad in planned
        else:
            assert bad not in planned, f"schedule {schedule} rebuilds the remembered failure"
        wheelhouse = run / "wheelhouse"
        wheelhouse.mkdir(parents=True)
        if bad in planned:
            _fail(wheelhouse, job, bad)
        child = _load(child_file)
        proc = run_ciwheels("status", "--project", str(project), "--artifacts", str(wheelhouse), "--site",
                            str(run / "public"), "--no-upstream", env=_job_env(child, "pages", pre), check=True)
        doc = json.loads((run / "public" / "status.json").read_text())
        entry = next(c for c in doc["cells"] if c["id"] == bad)
        assert entry["state"] == "failed", f"schedule {schedule}: {entry}"
        sinces.append(entry["since"])
        # GitLab deploys the pages job's public/ as the new site
        for f in (run / "public").iterdir():
            if f.is_file():
                (pages / f.name).write_bytes(f.read_bytes())
    assert len(set(sinces)) == 1, "the failure keeps the time it first failed"
    proc = run_ciwheels("plan", "--project", str(project), "--missing", "--no-upstream", "--json", "--retry-failed",
                        env=_job_env(parent, "ciwheels-plan", pre), check=True)
    assert bad in {c["id"] for c in json.loads(proc.stdout)["cells"]}
    # a pipeline variable does the same, for a manual run (GitLab: Run pipeline > variables)
    proc = run_ciwheels("plan", "--project", str(project), "--missing", "--no-upstream", "--json",
                        env={**_job_env(parent, "ciwheels-plan", pre), "CIWHEELS_RETRY_FAILED": "1"}, check=True)
    assert bad in {c["id"] for c in json.loads(proc.stdout)["cells"]}
