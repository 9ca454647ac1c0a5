"""`ciwheels render`: byte-stable output, --check, limits, hostile values, and the generated
files checked by independent tools (check-jsonschema with GitHub's and GitLab's schemas,
zizmor, gitlab-ci-local)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import EXAMPLE, REPO, derive_cells, derive_jobs, run_ciwheels, with_registries

GITHUB = ".github/workflows/ciwheels.yml"
GITLAB = ".gitlab/ciwheels.gitlab-ci.yml"


def tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert os.path.exists(path), f"{name} is a test dependency ('.[test]' or .ci/run installs it)"
    return path


def check_jsonschema(github: Path | None, gitlab: Path | None) -> None:
    if github is not None:
        proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(github)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    if gitlab is not None:
        proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", "--data-transform",
                               "gitlab-ci", str(gitlab)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def zizmor(workflow: Path) -> None:
    proc = subprocess.run([tool("zizmor"), "--offline", "--format", "json", str(workflow)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == []


def project(tmp_path: Path, matrix: str) -> Path:
    (tmp_path / "matrix").mkdir(parents=True, exist_ok=True)
    (tmp_path / "matrix" / "wheels.yaml").write_text(with_registries(matrix))
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\n')
    return tmp_path


def load_yaml(path: Path):
    return YAML(typ="safe").load(path.read_text())


# -- the example: golden files, validators, dogfooding -----------------------------------

def test_example_outputs_are_committed_and_fresh():
    """The committed files under examples/cext-demo are the golden files."""
    proc = run_ciwheels("render", "--check", "--project", "examples/cext-demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stderr


def test_render_check_outside_git_renders_the_committed_files(tmp_path):
    """#18.5: in a tree that is not a git clone (the unpacked sdist) the project was taken as its
    own repository top, so the example's committed files looked stale. Outside git the top comes
    from the project path the committed workflow records."""
    import shutil

    copy = tmp_path / "unpacked" / "examples" / "cext-demo"
    shutil.copytree(EXAMPLE, copy)
    proc = run_ciwheels("render", "--check", "--project", str(copy), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a folder that does not end with the recorded path is its own top, as before
    other = tmp_path / "elsewhere"
    shutil.copytree(EXAMPLE, other)
    proc = run_ciwheels("render", "--check", "--project", str(other), cwd=tmp_path)
    assert proc.returncode == 1 and 'CIWHEELS_PROJECT: "."' in proc.stdout


@pytest.mark.slow  # check-jsonschema and zizmor: external tools, a second or more per run
def test_example_validates_and_audits_clean():
    check_jsonschema(EXAMPLE / GITHUB, EXAMPLE / GITLAB)
    zizmor(EXAMPLE / GITHUB)
    check_jsonschema(None, REPO / ".gitlab-ci.yml")  # the repository's own CI, which includes the example's


def test_repository_ci_includes_the_example_pipeline():
    top = load_yaml(REPO / ".gitlab-ci.yml")
    assert {"local": f"examples/cext-demo/{GITLAB}"} in top["include"]
    included = load_yaml(EXAMPLE / GITLAB)
    assert set(included["stages"]) <= set(top["stages"])


def test_example_shape():
    gh = load_yaml(EXAMPLE / GITHUB)
    assert gh["permissions"] == {}
    include = gh["jobs"]["build"]["strategy"]["matrix"]["include"]
    # one entry per native platform and ISA level, one per emulated cell
    assert len(include) == len(derive_jobs(derive_cells()[0]))
    riscv = next(e for e in include if e["job"] == "manylinux_2_35_riscv64-rva23u64-cp313")
    assert riscv == {"job": "manylinux_2_35_riscv64-rva23u64-cp313", "runs-on": "ubuntu-24.04",
                     "qemu": "linux/riscv64", "pythons": "cp313"}
    native = next(e for e in include if e["job"].startswith("manylinux_2_28_aarch64"))
    assert native["runs-on"] == "ubuntu-24.04-arm" and native["qemu"] == ""
    for name, job in gh["jobs"].items():
        assert "timeout-minutes" in job and job["permissions"] == {"contents": "read"}
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
            assert "${{" not in step.get("run", "")
    secrets = [n for n, j in gh["jobs"].items() if "secrets." in json.dumps(j)]
    # the jobs that log in to registries: each registry's own pair; the deploy token in publish only
    assert secrets == ["plan", "publish", "status"]
    assert [n for n, j in gh["jobs"].items() if "CIWHEELS_DEPLOY_TOKEN" in json.dumps(j)] == ["publish"]
    assert "pull_request" in gh["jobs"]["publish"]["if"] and "!=" in gh["jobs"]["publish"]["if"]
    assert gh["on"]["schedule"] == [{"cron": "17 3 * * 1"}]
    text = (EXAMPLE / GITHUB).read_text()
    assert text.startswith("# Generated by ciwheels ")
    assert "# Regenerate with: ciwheels render --project examples/cext-demo\n" in text
    gl = load_yaml(EXAMPLE / GITLAB)
    assert gl["ciwheels-build-arm64"]["tags"] == ["arm64"]
    # one pipeline per push (test_gitlab_workflow_runs_one_pipeline_per_event evaluates the rules)
    assert gl["workflow"]["rules"][-1] == {"if": '$CI_COMMIT_BRANCH == "main"'}
    rules = gl["ciwheels-publish"]["rules"]
    assert rules[0] == {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"', "when": "never"}
    # schedules and manual runs publish from the child pipeline of `ciwheels plan --missing`
    planned = '$CI_PIPELINE_SOURCE == "schedule" || $CI_PIPELINE_SOURCE == "web"'
    assert {"if": planned, "when": "never"} in rules
    assert {"if": "$CI_COMMIT_TAG", "variables": {"CIWHEELS_ALL_OR_NOTHING": "true"}} in rules
    assert gl[".ciwheels-build"]["rules"][0] == {"if": planned, "when": "never"}
    assert gl["ciwheels-planned"]["trigger"] == {"include": [{"artifact": "ciwheels-child.yml", "job": "ciwheels-plan"}],
                                                  "strategy": "depend"}
    assert "--missing --gitlab-child ciwheels-child.yml" in gl["ciwheels-plan"]["script"][0]
    # GitHub: the plan job's output is the planned build job's matrix
    assert gh["jobs"]["build"]["if"] == "github.event_name != 'schedule' && github.event_name != 'workflow_dispatch'"
    assert gh["jobs"]["build-planned-0"]["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.plan.outputs.wave0) }}"
    assert "needs.plan.outputs.any == 'true'" in gh["jobs"]["gather"]["if"]
    assert gh["jobs"]["status"]["needs"] == ["plan", "gather", "publish"]


# -- stability, --check, small diffs ------------------------------------------------------

MATRIX = ("python: [cp312, cp313]\nlibc: [glibc, musl]\narch: [x86_64, riscv64]\n"
          "isa: {x86_64: [x86-64, x86-64-v3]}\ntest-command: pytest\n")


def test_byte_identical_whatever_the_key_order(tmp_path):
    a = project(tmp_path / "a", MATRIX)
    reordered = "isa: {x86_64: [x86-64, x86-64-v3]}\ntest-command: pytest\narch: [x86_64, riscv64]\n" \
                "libc: [glibc, musl]\npython: [cp312, cp313]\n"
    b = project(tmp_path / "b", reordered)
    for p in (a, b):
        run_ciwheels("render", "--project", str(p), check=True)
    for rel in (GITHUB, GITLAB):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    first = (a / GITHUB).read_bytes()
    run_ciwheels("render", "--project", str(a), check=True)
    assert (a / GITHUB).read_bytes() == first


def test_check_reports_stale_files_and_writes_nothing(tmp_path):
    p = project(tmp_path, MATRIX)
    run_ciwheels("render", "--project", str(p), check=True)
    before = (p / GITHUB).read_text()
    (p / "matrix" / "wheels.yaml").write_text(with_registries(MATRIX.replace("cp313]", "cp313, cp314]")))
    proc = run_ciwheels("render", "--check", "--project", str(p))
    assert proc.returncode == 1
    assert proc.stdout.startswith("--- ") and "+++ " in proc.stdout and "cp314" in proc.stdout
    assert "stale" in proc.stderr
    assert (p / GITHUB).read_text() == before


def test_adding_a_python_is_a_small_diff(tmp_path):
    p = project(tmp_path, MATRIX)
    run_ciwheels("render", "--project", str(p), check=True)
    before = {rel: (p / rel).read_text().splitlines() for rel in (GITHUB, GITLAB)}
    (p / "matrix" / "wheels.yaml").write_text(with_registries(MATRIX.replace("cp313]", "cp313, cp314]")))
    run_ciwheels("render", "--project", str(p), check=True)
    import difflib

    jobs = 6
    for rel, old in before.items():
        new = (p / rel).read_text().splitlines()
        changed = [line for line in difflib.unified_diff(old, new, lineterm="", n=0)
                   if line[:1] in "+-" and not line.startswith(("---", "+++"))]
        # one line per job, plus the header's cell count
        assert len(changed) <= 2 * (jobs + 1), changed


# -- limits ------------------------------------------------------------------------------

def above_every_limit(tmp_path: Path) -> Path:
    """360 jobs: above GitHub's 256 per matrix and GitLab's 200 per parallel:matrix."""
    packages = "".join(f"  - name: pkg{i}\n    versions: ['1.0']\n" for i in range(30))
    p = project(tmp_path, "python: [cp312, cp313]\nlibc: [glibc, musl]\narch: [x86_64, aarch64, riscv64]\n"
                          "isa: {x86_64: [x86-64, x86-64-v2, x86-64-v3], riscv64: [rv64gc, rva23u64]}\n"
                          "render: {emulated-jobs: grouped}\nsdist-config: false\npackages:\n" + packages)
    run_ciwheels("render", "--project", str(p), check=True)
    return p


def test_above_every_limit_renders_split_pipelines(tmp_path):
    """360 jobs: above GitHub's 256 per matrix and GitLab's 200 per parallel:matrix (the
    validators run in test_rendered_pipelines_pass_the_validators)."""
    p = above_every_limit(tmp_path)
    gh, gl = load_yaml(p / GITHUB), load_yaml(p / GITLAB)
    builds = {n: j for n, j in gh["jobs"].items() if n.startswith("build") and not n.startswith("build-planned")}
    sizes = [len(j["strategy"]["matrix"]["include"]) for j in builds.values()]
    assert sum(sizes) == 30 * 2 * 6 and max(sizes) <= 256 and len(sizes) == 2
    assert sorted(gh["jobs"]["gather"]["needs"]) == sorted([*builds, "plan", "build-planned-0"])
    gl_builds = {n: j for n, j in gl.items() if n.startswith("ciwheels-build") and not n.startswith(".")}
    gl_sizes = [len(j["parallel"]["matrix"]) for j in gl_builds.values()]
    assert sum(gl_sizes) == 360 and max(gl_sizes) <= 200
    # gather takes every build artifact through stage order, not `needs` (at most 50 there)
    assert "needs" not in gl["ciwheels-gather"]
    assert all(len(j.get("needs", [])) <= 50 for j in gl.values() if isinstance(j, dict))
    names = [e["job"] for j in builds.values() for e in j["strategy"]["matrix"]["include"]]
    assert len(names) == len(set(names))


# -- hostile values ----------------------------------------------------------------------

@pytest.mark.parametrize("label, message", [
    ("ubuntu-${{ secrets.TOKEN }}", "GitHub Actions would evaluate"),
])
def test_expression_injection_is_refused(tmp_path, label, message):
    p = project(tmp_path, f"python: [cp312]\narch: [aarch64]\nrunners:\n  aarch64: {{github: '{label}'}}\n")
    proc = run_ciwheels("render", "--project", str(p))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (p / GITHUB).exists()


def test_gitlab_variable_in_tag_is_refused(tmp_path):
    p = project(tmp_path, "python: [cp312]\narch: [aarch64]\nrunners:\n  aarch64: {gitlab: ['$CI_JOB_TOKEN']}\n")
    proc = run_ciwheels("render", "--project", str(p))
    assert proc.returncode == 2 and "GitLab would expand" in proc.stderr


HOSTILE = 'arm" evil: true # }} ${ x: \\ café 🐍'  # quotes, comment and mapping marks, non-ASCII: round-trip


def hostile_values(tmp_path: Path) -> Path:
    p = project(tmp_path, "python: [cp312]\narch: [aarch64]\nrunners:\n  aarch64:\n"
                          f"    github: {json.dumps(HOSTILE, ensure_ascii=False)}\n"
                          f"    gitlab: [{json.dumps(HOSTILE.replace('$', ''), ensure_ascii=False)}]\n"
                          "environment: {EVIL: '$(rm -rf /) ${{ github.token }}'}\n")
    proc = run_ciwheels("render", "--project", str(p))
    assert proc.returncode == 0, proc.stderr
    return p


def test_yaml_injection_stays_a_plain_string(tmp_path):
    hostile = HOSTILE
    p = hostile_values(tmp_path)
    gh, gl = load_yaml(p / GITHUB), load_yaml(p / GITLAB)
    entry = gh["jobs"]["build"]["strategy"]["matrix"]["include"][0]
    assert entry["runs-on"] == hostile
    assert "evil" not in gh and "evil" not in gh["jobs"]["build"]
    tagged = [j for n, j in gl.items() if n.startswith("ciwheels-build-")]
    assert tagged[0]["tags"] == [hostile.replace("$", "")]
    # environment never reaches the YAML: jobs read it from the matrix at build time
    assert "rm -rf" not in (p / GITHUB).read_text() + (p / GITLAB).read_text()
    # characters that YAML parsers disagree on are refused, not written
    for bad in ("arm\n  evil: true", "arm\u2028evil", "arm\x85x", "arm\u202ex"):
        (p / "matrix" / "wheels.yaml").write_text(f"python: [cp312]\narch: [aarch64]\nrunners:\n  aarch64:\n"
                                                  f"    github: {json.dumps(bad)}\n")
        proc = run_ciwheels("render", "--project", str(p))
        assert proc.returncode == 2 and "refuses to write it" in proc.stderr, proc.stderr


# -- render settings ---------------------------------------------------------------------

def test_render_paths_and_disabling(tmp_path):
    p = project(tmp_path, MATRIX + "render:\n  github: false\n  gitlab: ci/wheels.yml\n  publish-branch: false\n")
    run_ciwheels("render", "--project", str(p), check=True)
    assert not (p / GITHUB).exists()
    gl = load_yaml(p / "ci" / "wheels.yml")
    assert not any("CI_COMMIT_BRANCH" in r.get("if", "") for r in gl["ciwheels-publish"]["rules"])


# -- the generated GitLab pipeline really runs (gitlab-ci-local, shell executor) ----------

@pytest.mark.slow  # gitlab-ci-local runs every job of the example's pipeline: minutes
def test_gitlab_pipeline_runs_under_gitlab_ci_local(tmp_path):
    """The example's GitLab pipeline runs: every build job runs `ciwheels build --job` (dry run:
    no pypa images can be pulled here) for exactly the job's cells, and gather collects every
    job's artifact."""
    glc = tool("gitlab-ci-local")
    wheels = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                   check=True, capture_output=True)
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".github", "wheelhouse", "*.egg-info", "build"))
    (repo / ".gitlab-ci.yml").write_text(f"include:\n  - local: {GITLAB}\n")
    run_ciwheels("render", "--project", str(repo), check=True)
    # The docker:dind service cannot start here (no image registry): drop that one line.
    pipeline = repo / GITLAB
    pipeline.write_text("".join(line for line in pipeline.read_text().splitlines(keepends=True)
                                if not line.startswith("  services: ")))
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "example"], cwd=repo, check=True)
    spec = str(next(wheels.glob("ciwheels-*.whl")))
    # A merge-request pipeline: build -> gather run, publish must not (it never runs for MRs).
    proc = subprocess.run([glc, "--force-shell-executor", "--shell-isolation", "--concurrency", "2",
                           "--variable", f"CIWHEELS_SPEC={spec}", "--variable", "CIWHEELS_DRY_RUN=1",
                           "--variable", "CI_PIPELINE_SOURCE=merge_request_event", "--no-evaluate-rule-changes",
                           "--no-color"],
                          cwd=repo, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    expected = json.loads(run_ciwheels("matrix", "--project", str(EXAMPLE), "--json", check=True).stdout)
    jobs = re.findall(r"> # job (\S+): (\d+) cells \(([^)]*)\)", out)
    built = sorted(c for _, _, cells in jobs for c in cells.split(", "))
    assert sorted(c["id"] for c in expected) == sorted(derive_cells()[0])
    job_names = {j for j, _, _ in jobs}
    assert len(job_names) == len(derive_jobs(c["id"] for c in expected))
    assert built == sorted(c["id"] for c in expected)
    # every build job, gather and the merge-request matrix-diff job
    assert out.count(" PASS ") == len(job_names) + 2 and " FAIL " not in out
    # the merge-request matrix-diff job ran, explained the (empty) change and could not post a
    # note without a token: a warning, not a failure
    assert "No build cells change." in out
    assert "warning: cannot post the merge-request note: CI_MERGE_REQUEST_IID, CIWHEELS_NOTE_TOKEN not set" in out
    # gather received every build job's artifact (the dry-run build reports) through stage order
    n = len(expected)
    assert f"gathered 0 wheel(s) into dist; {n} build report(s), {n} from dry runs" in out
    assert "ciwheels-publish" not in out


def init_into_own_gitlab_ci(tmp_path: Path) -> Path:
    """A project with its own .gitlab-ci.yml, after `ciwheels init` and `ciwheels render`."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\n')
    (tmp_path / ".gitlab-ci.yml").write_text("# mine\nstages: [test]\n\nunit:\n  stage: test\n  script: [pytest]\n")
    proc = run_ciwheels("init", "--project", str(tmp_path), check=True)
    assert "added an include of .gitlab/ciwheels.gitlab-ci.yml and the stages" in proc.stderr
    run_ciwheels("render", "--project", str(tmp_path), check=True)
    return tmp_path


def test_init_says_when_the_projects_own_workflow_replaces_the_rendered_one(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\n')
    (tmp_path / ".gitlab-ci.yml").write_text("workflow:\n  rules:\n    - when: always\n\nunit:\n  script: [pytest]\n")
    proc = run_ciwheels("init", "--project", str(tmp_path), check=True)
    assert "has its own `workflow:`, which replaces the rendered pipeline's workflow rules" in proc.stderr


def test_init_includes_the_rendered_pipeline(tmp_path):
    init_into_own_gitlab_ci(tmp_path)
    top = load_yaml(tmp_path / ".gitlab-ci.yml")
    assert top["include"] == [{"local": GITLAB}]
    assert top["stages"] == ["test", "ciwheels-build", "ciwheels-gather", "ciwheels-publish"]
    assert (tmp_path / ".gitlab-ci.yml").read_text().startswith("# mine\n")
    again = run_ciwheels("init", "--project", str(tmp_path), "--force", check=True)
    assert "already includes" in again.stderr


@pytest.mark.slow  # check-jsonschema and gitlab-ci-local
def test_init_include_is_valid_and_resolved_by_gitlab_ci_local(tmp_path):
    init_into_own_gitlab_ci(tmp_path)
    check_jsonschema(None, tmp_path / ".gitlab-ci.yml")
    # gitlab-ci-local resolves the include and sees the user's and our jobs together
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "x"],
                   cwd=tmp_path, check=True)
    listed = subprocess.run([tool("gitlab-ci-local"), "--list-json"], cwd=tmp_path, capture_output=True,
                            text=True, check=True).stdout
    names = {j["name"] for j in json.loads(listed)}
    assert {"unit", "ciwheels-gather", "ciwheels-publish"} <= names
    assert any(n.startswith("ciwheels-build: [") for n in names)


def image_jobs(tmp_path: Path) -> Path:
    p = project(tmp_path, "python: [cp313]\narch: [x86_64, riscv64]\nrender:\n  build-images: [riscv64]\n")
    run_ciwheels("render", "--project", str(p), check=True)
    return p


# (what the image jobs do: tests/test_build_images.py)


# -- the rendered pipelines above, checked by independent tools ----------------------------

@pytest.mark.slow  # check-jsonschema and zizmor: external tools, a second or more per run
@pytest.mark.parametrize("make, audit", [(above_every_limit, True), (hostile_values, False), (image_jobs, True)],
                         ids=["above-every-limit", "hostile-values", "image-jobs"])
def test_rendered_pipelines_pass_the_validators(tmp_path, make, audit):
    p = make(tmp_path)
    check_jsonschema(p / GITHUB, p / GITLAB)
    if audit:
        zizmor(p / GITHUB)


def test_two_levels_to_one_registry_are_refused_before_building(tmp_path):
    """Two ISA levels of one Python and platform make two wheels with one file name: sent to one
    registry, the second could never be published. render and build refuse; matrix still lists."""
    (tmp_path / "matrix").mkdir()
    (tmp_path / "matrix" / "wheels.yaml").write_text(
        "python: [cp313]\narch: [x86_64, riscv64]\nisa:\n  x86_64: [x86-64, x86-64-v3]\n  riscv64: [rv64gc]\n"
        "registries:\n  all: {url: 'https://registry.invalid/all'}\n")
    for args in (["render"], ["build", "--all", "--dry-run", "--out", str(tmp_path / "wh")]):
        proc = run_ciwheels(*args, "--project", str(tmp_path))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "matrix/wheels.yaml:4: cells cp313-manylinux_x86_64-x86-64 and cp313-manylinux_x86_64-x86-64-v3" \
               " would publish two different wheels with one file name to registry 'all'" in proc.stderr
        assert "Give each x86_64 level its own registry" in proc.stderr
    assert run_ciwheels("matrix", "--project", str(tmp_path)).returncode == 0
    # a registry per level: accepted
    text = (tmp_path / "matrix" / "wheels.yaml").read_text()
    (tmp_path / "matrix" / "wheels.yaml").write_text(text + "  v3: {url: 'https://registry.invalid/v3', "
                                                     "select: {isa: x86-64-v3}}\n")
    assert run_ciwheels("render", "--project", str(tmp_path)).returncode == 0


def test_a_failed_cell_does_not_stop_gather_or_publish():
    """Build jobs upload what they built (and every report and log) even when a cell failed;
    gather runs anyway and records the missing cells; publish publishes the rest."""
    gh = load_yaml(EXAMPLE / GITHUB)
    build = next(j for n, j in gh["jobs"].items() if n.startswith("build"))
    upload = next(s for s in build["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "${{ !cancelled() }}"
    assert gh["jobs"]["gather"]["if"].startswith("${{ !cancelled() && ")  # and: a schedule had something to build
    assert "--project" in next(s["run"] for s in gh["jobs"]["gather"]["steps"] if s.get("name") == "Gather")
    assert gh["jobs"]["publish"]["if"].startswith("!cancelled() && needs.gather.result == 'success'")
    gl = load_yaml(EXAMPLE / GITLAB)
    assert gl[".ciwheels-build"]["artifacts"]["when"] == "always"
    assert gl["ciwheels-gather"]["rules"][-1] == {"when": "always"} and gl["ciwheels-publish"]["needs"] == ["ciwheels-gather"]


@pytest.mark.parametrize("path", ["../outside.yml", "/tmp/ciwheels-outside.yml", "a/../../outside.yml"])
def test_output_paths_are_confined_to_the_project(tmp_path, path):
    """render.github/render.gitlab cannot name a file outside the project: neither written nor,
    with --check, read and shown as a diff."""
    outside = tmp_path / "outside.yml"
    outside.write_text("secret: kept\n")
    p = project(tmp_path / "proj", MATRIX + f"render:\n  github: {json.dumps(path)}\n")
    for args in (["render"], ["render", "--check"]):
        proc = run_ciwheels(*args, "--project", str(p))
        assert proc.returncode == 2 and "leaves the project" in proc.stderr and "secret" not in proc.stdout
    assert outside.read_text() == "secret: kept\n" and not Path("/tmp/ciwheels-outside.yml").exists()


# -- GitLab: one pipeline per push, on the branches GitHub builds ----------------------------

# What GitLab starts for each event (its documented behaviour): a push to a branch with an open
# merge request starts a branch pipeline and a merge-request pipeline. Each candidate pipeline is
# the predefined variables it sees; the workflow rules must let exactly `expected` of them run.
_UNSET = {"CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "", "CI_OPEN_MERGE_REQUESTS": "",
          "CI_MERGE_REQUEST_IID": ""}
WORKFLOW_EVENTS = {
    "push-main": ([{"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main"}], 1),
    "push-release": ([{"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "release"}], 1),
    "push-feature": ([{"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "feature"}], 0),
    "push-feature-with-mr": ([{"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "feature",
                               "CI_OPEN_MERGE_REQUESTS": "o/p!1"},
                              {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "1"}], 1),
    "push-main-with-mr": ([{"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_OPEN_MERGE_REQUESTS": "o/p!2"},
                           {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "2"}], 1),
    "tag": ([{"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.0"}], 1),
    "schedule": ([{"CI_PIPELINE_SOURCE": "schedule", "CI_COMMIT_BRANCH": "main"}], 1),
    "manual": ([{"CI_PIPELINE_SOURCE": "web", "CI_COMMIT_BRANCH": "feature"}], 1),
}


@pytest.mark.slow  # gitlab-ci-local evaluates the rules: about two seconds
def test_gitlab_workflow_runs_one_pipeline_per_event(tmp_path):
    """The rendered workflow rules, evaluated by gitlab-ci-local's rules engine (as the rules of
    one probe job per candidate pipeline, each with that pipeline's predefined variables): one
    pipeline per push, tag, merge request, schedule and manual run; none for a branch GitHub does
    not build either. The GitHub workflow's push branches are the same."""
    p = project(tmp_path / "p", "python: [cp313]\nrender: {publish-branch: release}\n")
    run_ciwheels("render", "--project", str(p), check=True)
    rules = load_yaml(p / GITLAB)["workflow"]["rules"]
    assert load_yaml(p / GITHUB)["on"]["push"]["branches"] == ["main", "release"]
    probe = tmp_path / "probe"
    probe.mkdir()
    jobs = {}
    for event, (candidates, _) in WORKFLOW_EVENTS.items():
        for i, variables in enumerate(candidates):
            jobs[f"{event}-{i}"] = {"script": ["true"], "rules": rules, "variables": {**_UNSET, **variables}}
    (probe / ".gitlab-ci.yml").write_text(json.dumps(jobs))
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=probe, check=True)
    subprocess.run(["git", "add", "-A"], cwd=probe, check=True)
    subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "x"],
                   cwd=probe, check=True)
    env = {**os.environ, "GCL_IGNORE_PREDEFINED_VARS": ",".join(["CI_PIPELINE_SOURCE", *_UNSET])}
    listed = subprocess.run([tool("gitlab-ci-local"), "--list-json"], cwd=probe, capture_output=True, text=True,
                            check=True, env=env).stdout
    runs = {j["name"]: j["when"] != "never" for j in json.loads(listed[listed.index("["):])}
    assert len(runs) == len(jobs)
    for event, (candidates, expected) in WORKFLOW_EVENTS.items():
        started = sum(runs[f"{event}-{i}"] for i in range(len(candidates)))
        assert started == expected, event


# -- credentials per registry on GitHub (#18's per-host rule, wired into the workflow) ---------

TWO_HOSTS = ("python: [cp313]\narch: [x86_64]\nisa: {x86_64: [x86-64, x86-64-v3]}\n"
             "registries:\n"
             "  fast-v3: {url: 'https://pkgs.one.example/v3', select: {isa: x86-64-v3}}\n"
             "  baseline: {url: 'https://registry.two.example/simple-upload'}\n")


def test_github_jobs_that_use_registries_get_each_registrys_own_secrets(tmp_path):
    """Registries on two hosts: CIWHEELS_USERNAME/PASSWORD reach neither (they are for one host
    only), so each registry's CIWHEELS_*_<NAME> must reach the jobs that log in to registries:
    publish (uploads), plan --missing and status (index reads of a private registry). The
    workflow's env, filled with the secrets GitHub would give, is handed to ciwheels' own
    credential rule: each registry gets its own token, and no other job names a secret."""
    from ciwheels.net.auth import credentials_for

    p = project(tmp_path, TWO_HOSTS)
    run_ciwheels("render", "--project", str(p), check=True)
    jobs = load_yaml(p / GITHUB)["jobs"]
    secrets = {"CIWHEELS_USERNAME_FAST_V3": "u-fast", "CIWHEELS_PASSWORD_FAST_V3": "tok-fast",
               "CIWHEELS_USERNAME_BASELINE": "u-base", "CIWHEELS_PASSWORD_BASELINE": "tok-base"}
    urls = ("https://pkgs.one.example/v3", "https://registry.two.example/simple-upload")
    for name in ("publish", "plan", "status"):
        step = next(s for s in jobs[name]["steps"] if s.get("name") in ("Publish", "Plan", "Status"))
        env = step["env"]
        for var in secrets:
            assert env[var] == f"${{{{ secrets.{var} }}}}", (name, var)
        # what GitHub gives the step: the secrets it names (the others unset), vars unset
        given = {k: secrets.get(m[1], "") if (m := re.fullmatch(r"\$\{\{ secrets\.(\w+) \}\}", str(v))) else ""
                 for k, v in env.items()}
        fast = credentials_for(urls[0], env=given, registry_urls=urls, registry="fast-v3", require=True)
        base = credentials_for(urls[1], env=given, registry_urls=urls, registry="baseline", require=True)
        assert (fast.username, fast.password, base.username, base.password) == ("u-fast", "tok-fast", "u-base", "tok-base")
    for name, job in jobs.items():
        if name in ("publish", "plan", "status"):
            continue
        assert "secrets." not in json.dumps(job), name


def test_a_matrix_without_registries_names_no_registry_secret(tmp_path):
    p = project(tmp_path, "python: [cp313]\narch: [x86_64]\nregistries: {}\n")
    run_ciwheels("render", "--project", str(p), check=True)
    text = (p / GITHUB).read_text()
    assert "CIWHEELS_PASSWORD_" not in text and "CIWHEELS_USERNAME_" not in text
    assert "secrets.CIWHEELS_DEPLOY_TOKEN" in text  # the one-registry setup of the README, as before


def test_two_registry_names_with_one_credential_variable_are_refused(tmp_path):
    """`fast-v3` and `fast_v3` both read CIWHEELS_PASSWORD_FAST_V3: one registry's token would
    go to the other's host. One paragraph, the file and line, exit 2."""
    p = project(tmp_path, "python: [cp313]\narch: [x86_64]\nregistries:\n"
                          "  fast-v3: {url: 'https://a.example/u', select: {isa: x86-64}}\n"
                          "  fast_v3: {url: 'https://b.example/u'}\n")
    proc = run_ciwheels("render", "--project", str(p))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "wheels.yaml:5" in proc.stderr and "'fast-v3' and 'fast_v3'" in proc.stderr
    assert "CIWHEELS_USERNAME_FAST_V3" in proc.stderr and "Traceback" not in proc.stderr
    assert not (p / GITHUB).exists()
