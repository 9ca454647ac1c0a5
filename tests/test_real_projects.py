"""The 13-project exercise of the "make the main job real" issue, on fixtures: the real
pyproject.toml (and setup.cfg/setup.py) of 13 projects that build wheels with cibuildwheel today
(tests/projects/<name>/README names each sdist). `ciwheels init` must select exactly what the
pinned cibuildwheel selects, and what `ciwheels render` writes must pass check-jsonschema,
actionlint and zizmor's pedantic persona, with the pipeline properties the issue asks for."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_ciwheels
from ruamel.yaml import YAML
from test_render import GITHUB, GITLAB, check_jsonschema, tool

from ciwheels.core.errors import CiwheelsError
from ciwheels.matrix.cibwconfig import ENABLE_GROUPS
from ciwheels.pipelines.render import install_requirement
from ciwheels.project.init import init_project
from ciwheels.project.open import open_project, render_project
from ciwheels.project.workspace import requires_python

PROJECTS_DIR = Path(__file__).parent / "projects"
PROJECTS = sorted(p.name for p in PROJECTS_DIR.iterdir() if p.is_dir())
# Their [tool.cibuildwheel] enables "cpython-freethreading", a group cibuildwheel 3 removed:
# the pinned cibuildwheel stops on it, and so does init, naming the fix.
RETIRED_GROUP = {"frozenlist", "zstandard"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


def copy_project(name: str, dest: Path, *, fix: bool = True) -> Path:
    target = dest / name
    shutil.copytree(PROJECTS_DIR / name, target)
    (target / "README").unlink()
    if fix and name in RETIRED_GROUP:
        text = (target / "pyproject.toml").read_text()
        text = re.sub(r'"cpython-freethreading",?\s*', "", text)
        (target / "pyproject.toml").write_text(text)
    return target


def add_render(path: Path, line: str) -> None:
    """Add `line` (`key: value`) to the render section init wrote."""
    text = path.read_text()
    assert "\nrender:\n" in text
    path.write_text(text.replace("\nrender:\n", f"\nrender:\n  {line}\n", 1))


def add_arches(project: Path, more: list[str]) -> list[str]:
    """Add arches to the `arch:` line init wrote; the arches afterwards."""
    path = project / "matrix" / "wheels.yaml"
    arches = load_yaml(path)["arch"]
    grown = arches + [a for a in more if a not in arches]
    text = path.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("arch: "))
    path.write_text(text.replace(line, f"arch: [{', '.join(grown)}]", 1))
    return grown


def load_yaml(path: Path):
    return YAML(typ="safe").load(path.read_text())


def cells_of(project: Path) -> list:
    return open_project(project).expansion.cells


def cibuildwheel_identifiers(project: Path, archs: list[str], env: dict | None = None) -> list[str]:
    env = env if env is not None else {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    proc = subprocess.run([tool("cibuildwheel"), "--platform", "linux", "--print-build-identifiers",
                           "--archs", ",".join(archs), str(project)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return sorted(proc.stdout.split())


# -- init: the selection -------------------------------------------------------------------

# what init chose for each project: arches, the number of cells, and Pythons it must not have
EXPECTED = {
    "frozenlist": (["x86_64"], 18, set()),
    "markupsafe": (["x86_64", "aarch64", "armv7l", "ppc64le", "riscv64"], 90, set()),
    "memray": (["x86_64"], 18, set()),
    "msgpack": (["x86_64"], 16, {"cp39"}),
    "multidict": (["x86_64", "i686"], 28, {"cp39", "cp310"}),
    "numpy": (["x86_64"], 12, {"cp311"}),
    "pillow": (["x86_64"], 14, {"cp310"}),
    "psutil": (["x86_64"], 16, set()),
    "pydantic-core": (["x86_64"], 16, {"cp39"}),
    # images per override: PyPy builds in manylinux_2_28, CPython in manylinux2014
    "pycryptodome": (["x86_64"], 18, set()),
    "pyyaml": (["x86_64"], 18, set()),
    "ujson": (["x86_64"], 16, {"cp39"}),
    "yarl": (["x86_64"], 16, {"cp39"}),
    "zstandard": (["x86_64"], 18, set()),
    # meson-python; its settings live in its CI's workflow
    "pywavelets": (["x86_64"], 12, {"cp311"}),
    # scikit-build-core; submodules; PyPy and GraalPy enabled
    "boost-histogram": (["x86_64"], 20, {"cp39"}),
    # six Linux arches, riscv64 among them; per-arch overrides with inherit.environment = "append"
    "quicktions": (["x86_64", "aarch64", "i686", "ppc64le", "armv7l", "riscv64"], 99, set()),
}


def test_every_project_has_an_expectation():
    assert sorted(EXPECTED) == PROJECTS and len(PROJECTS) == 17


@pytest.mark.parametrize("name", PROJECTS)
def test_init_selection(name, tmp_path):
    """auto is the native x86_64 only (i686 only where the project asks for auto32: multidict),
    requires-python comes from setup.cfg (yarl) and setup.py (pyyaml) too, brace ranges expand."""
    project = copy_project(name, tmp_path)
    init_project(project)
    data = load_yaml(project / "matrix" / "wheels.yaml")
    arches, count, absent = EXPECTED[name]
    assert data["arch"] == arches
    expansion = open_project(project).expansion
    cells = expansion.cells
    assert len(cells) == count
    assert not absent & {c.python for c in cells}
    # build/skip patterns kept for arches not built yet are no mistake to warn about
    assert not [w for w in expansion.warnings if "matches no cell" in w]


def test_requires_python_sources_in_cibuildwheel_order():
    import tomllib

    def read(name):
        return requires_python(PROJECTS_DIR / name, tomllib.loads((PROJECTS_DIR / name / "pyproject.toml").read_text()))

    assert read("yarl") == (">=3.10", "setup.cfg")
    assert read("frozenlist") == (">=3.9", "setup.cfg")
    assert read("pyyaml") == (">=3.8", "setup.py")
    assert read("multidict") == (">= 3.11", "pyproject.toml")
    # psutil passes python_requires inside a nested call that cibuildwheel does not read either
    assert read("psutil") == (None, "")


@pytest.mark.parametrize("name", sorted(RETIRED_GROUP))
def test_unknown_enable_group_is_an_error(name, tmp_path):
    project = copy_project(name, tmp_path, fix=False)
    with pytest.raises(CiwheelsError) as e:
        init_project(project)
    text = str(e.value)
    assert "cpython-freethreading" in text and "Unknown enable group" in text and "cpython-prerelease" in text
    # the error is about the project's file and the line that names the group
    line = next(n for n, ln in enumerate((project / "pyproject.toml").read_text().splitlines(), 1)
                if ln.startswith("enable") or ln.lstrip().startswith('"cpython-freethreading"'))
    assert (e.value.file, e.value.line) == (str(project / "pyproject.toml"), line)
    assert not (project / "matrix" / "wheels.yaml").exists()


def test_enable_groups_are_the_pinned_cibuildwheels():
    from cibuildwheel.selector import EnableGroup

    assert sorted(ENABLE_GROUPS) == sorted(g.value for g in EnableGroup)


def test_init_reports_and_carries_every_option(tmp_path):
    """memray: its musllinux before-all (apk) becomes an identifier override instead of the
    glibc yum command; macOS tables and an i686 image for an arch not built are reported."""
    project = copy_project("memray", tmp_path)
    report = "\n".join(init_project(project))
    data = load_yaml(project / "matrix" / "wheels.yaml")
    assert data["before-all"].startswith("yum install -y openssl-devel")
    (override,) = data["overrides"]
    assert override["select"] == {"identifier": "*-musllinux*"}
    assert override["before-all"].startswith("apk del gettext-dev")
    # every arch's image is kept, for the arches added later (i686 is not built now)
    assert data["images"] == {"x86_64-glibc": "manylinux_2_28", "x86_64-musl": "musllinux_1_2",
                              "i686-glibc": "manylinux2014"}
    assert "not carried: [tool.cibuildwheel.macos] (not for Linux)" in report
    assert "manylinux-i686-image" in report and "not carried: manylinux-i686-image" not in report
    assert "overrides[0].before-all" in report
    musl = next(c for c in cells_of(project) if c.libc == "musl")
    glibc = next(c for c in cells_of(project) if c.libc == "glibc")
    assert musl.before_all.startswith("apk") and glibc.before_all.startswith("yum")


def test_init_carries_the_rest_into_cibuildwheel_options(tmp_path):
    project = copy_project("numpy", tmp_path)
    report = "\n".join(init_project(project))
    data = load_yaml(project / "matrix" / "wheels.yaml")
    opts = data["cibuildwheel-options"]
    assert opts["config-settings"] == {"setup-args": ["-Duse-ilp64=true", "-Dallow-noblas=false"],
                                       "build-dir": "build"}
    assert opts["before-test"].startswith("pip install -r")
    assert data["environment"] == {"RUNNER_OS": "Linux", "PKG_CONFIG_PATH": "/project/.openblas"}
    assert "not carried: overrides[0] (select '*-win32' matches no Linux build on any arch)" in report
    assert "not carried: [tool.cibuildwheel.pyodide] (not for Linux)" in report
    # psutil: an override selecting with braces and several globs
    project = copy_project("psutil", tmp_path)
    init_project(project)
    (override,) = load_yaml(project / "matrix" / "wheels.yaml")["overrides"]
    assert override["select"]["identifier"] == ["cp3{8,9,10,11,12,13t,14,14t}-*", "cp313-macosx*", "*-musllinux*"]
    assert override["cibuildwheel-options"] == {"test-extras": []}


@pytest.mark.slow
@pytest.mark.parametrize("name", PROJECTS)
def test_init_equals_cibuildwheels_selection(name, tmp_path):
    """The cells init writes are exactly real cibuildwheel's --print-build-identifiers for the
    archs init chose, run on the project's own files."""
    if name in RETIRED_GROUP:  # both stop on the retired group...
        unfixed = copy_project(name, tmp_path / "unfixed", fix=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
        proc = subprocess.run([tool("cibuildwheel"), "--platform", "linux", "--print-build-identifiers",
                               str(unfixed)], env=env, capture_output=True, text=True)
        assert proc.returncode != 0 and "Unknown enable group: cpython-freethreading" in proc.stderr
    project = copy_project(name, tmp_path)  # ...and agree once it is removed
    init_project(project)
    archs = load_yaml(project / "matrix" / "wheels.yaml")["arch"]
    ours = sorted({c.identifier for c in cells_of(project)})
    assert ours == cibuildwheel_identifiers(project, archs)
    # the README's way to grow: add arches to the matrix; cibuildwheel's selection for them holds
    grown = add_arches(project, ["aarch64", "riscv64"])
    assert sorted({c.identifier for c in cells_of(project)}) == cibuildwheel_identifiers(project, grown)


# -- init: every effective option, also for arches added later ------------------------------------

# Options cibuildwheel never applies to a Linux build (init reports them as not for Linux)
_NOT_LINUX_FIELDS = {"xbuild_tools", "xbuild_files", "pyodide_version", "test_runtime"}


def _ci_env(project: Path) -> dict[str, str]:
    """The CIBW_* a project's CI gives every cibuildwheel run: its workflows' top-level `env:`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    for wf in sorted((project / ".github" / "workflows").glob("*.yml")):
        env.update({k: str(v) for k, v in ((load_yaml(wf) or {}).get("env") or {}).items() if k.startswith("CIBW_")})
    return env


def _build_options(package_dir: Path, identifier: str, arch: str, env: dict, config_file: str = ""):
    from cibuildwheel.options import CommandLineArguments, compute_options

    args = CommandLineArguments.defaults()
    args.platform, args.package_dir, args.config_file, args.archs = "linux", package_dir, config_file, arch
    return compute_options("linux", args, env).build_options(identifier)


def _differences(theirs, ours, cell) -> list[str]:
    """The BuildOptions fields where ciwheels' build of `cell` differs from the project's own
    cibuildwheel run. ciwheels puts its ISA level's flags before the project's (CFLAGS="-march=x86-64
    $project_CFLAGS", cascade.combine_isa: a later -march wins) and picks the container engine;
    images are compared for the cell's arch. A cross cell (images/README.md, "Cross mode") adds
    exactly the cross build command to the environment and, where the project names no frontend,
    runs build[uv] in place of build; any other difference is one."""
    from ciwheels.matrix.cibwopts import CROSS_BUILD_COMMAND, CROSS_BUILD_VARIABLE, CROSS_FRONTEND

    out = []
    for name in theirs.__dataclass_fields__:
        if name in ("globals", "container_engine") or name in _NOT_LINUX_FIELDS:
            continue
        a, b = getattr(theirs, name), getattr(ours, name)
        if name in ("manylinux_images", "musllinux_images"):
            if name != ("manylinux_images" if cell.libc == "glibc" else "musllinux_images"):
                continue  # the other libc's image: cibuildwheel never starts it for this build
            a, b = (a or {}).get(cell.arch), (b or {}).get(cell.arch)
        if name == "environment":
            a, b = a.as_dictionary(prev_environment={}), b.as_dictionary(prev_environment={})
            for var, isa in cell.isa_environment.items():
                if var in b and b[var].startswith(isa):
                    b[var] = b[var][len(isa):].strip()
                    if not b[var] and var not in a:
                        del b[var]
            if cell.cross and CROSS_BUILD_VARIABLE not in a:
                assert b.pop(CROSS_BUILD_VARIABLE, None) == CROSS_BUILD_COMMAND, (cell.identifier, b)
                if "UV_CONSTRAINT" not in a and "PIP_CONSTRAINT" in b:
                    assert b.pop("UV_CONSTRAINT") == b["PIP_CONSTRAINT"], (cell.identifier, b)
            if a == b and not any("$" in v for v in a.values()):
                continue  # the same assignments; their order matters only when one refers to another
        if name == "build_frontend" and cell.cross and "build-frontend" not in cell.cibuildwheel_options:
            assert (b.name, tuple(b.args)) == (CROSS_FRONTEND, ()), (cell.identifier, b)
            b = a if a is None or (a.name == "build" and not a.args) else b
        if repr(a) != repr(b):
            out.append(f"{cell.identifier} {name}: cibuildwheel {a!r}, ciwheels {b!r}")
    return out


@pytest.mark.slow  # cibuildwheel's option reader for every cell: seconds per project
@pytest.mark.parametrize("name", PROJECTS)
def test_every_effective_option_equals_cibuildwheels(name, tmp_path):
    """For each cell, after init and after adding aarch64 and riscv64: cibuildwheel's own
    BuildOptions for the project (its pyproject.toml and its CI's CIBW_* variables) equal the
    ones cibuildwheel computes from what `ciwheels build` hands it (the config file and CIBW_*
    of the cell's invocation), selection and every option."""
    from ciwheels.build.run import CONFIG_FILE, Invocation
    from ciwheels.catalog import load_catalog

    catalog = load_catalog()
    project = copy_project(name, tmp_path)
    init_project(project)
    out = tmp_path / "out"
    out.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    for grow in (False, True):
        arches = add_arches(project, ["aarch64", "riscv64"] if grow else [])
        cells = cells_of(project)
        assert sorted({c.identifier for c in cells}) == sorted(
            i for i in cibuildwheel_identifiers(project, arches, _ci_env(project)))
        differences = []
        for cell in cells:
            inv = Invocation("job", [cell], str(project))
            (out / CONFIG_FILE).write_text(inv.config)
            theirs = _build_options(project, cell.identifier, cell.arch, _ci_env(project))
            ours = _build_options(project, cell.identifier, cell.arch, {**clean, **inv.options(catalog)},
                                  str(out / CONFIG_FILE))
            differences += _differences(theirs, ours, cell)
        assert differences == [], "\n".join(differences[:20])


# -- render: linters ------------------------------------------------------------------------

def render(project: Path) -> dict[Path, str]:
    _, outputs = render_project(project)
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return outputs


def actionlint(workflow: Path) -> None:
    proc = subprocess.run([tool("actionlint"), "-no-color", str(workflow)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def zizmor_pedantic(workflow: Path) -> None:
    proc = subprocess.run([tool("zizmor"), "--offline", "--persona=pedantic", "--format", "json", str(workflow)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", PROJECTS)
def test_rendered_pipelines_pass_the_linters(name, tmp_path):
    project = copy_project(name, tmp_path)
    init_project(project, gitlab=True)  # both pipelines, also for projects with a .github folder
    render(project)
    check_jsonschema(project / GITHUB, project / GITLAB)
    actionlint(project / GITHUB)
    zizmor_pedantic(project / GITHUB)


@pytest.mark.slow
def test_example_passes_actionlint_and_zizmor_pedantic():
    example = Path(__file__).parent.parent / "examples" / "cext-demo"
    actionlint(example / GITHUB)
    zizmor_pedantic(example / GITHUB)


# -- the pipeline properties ----------------------------------------------------------------

@pytest.fixture
def repo(tmp_path) -> Path:
    """ujson in a git repository whose default branch is master (as four of the 13 have)."""
    project = copy_project("ujson", tmp_path)
    git(project, "init", "-q", "-b", "master")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "ujson")
    return project


def test_triggers_default_branch_and_publishing(repo):
    report = "\n".join(init_project(repo))
    assert "default branch: master" in report
    assert load_yaml(repo / "matrix" / "wheels.yaml")["render"]["default-branch"] == "master"
    render(repo)
    gh = load_yaml(repo / GITHUB)
    assert gh["on"]["push"] == {"branches": ["master"], "tags": ["*"]}
    assert "workflow_dispatch" in gh["on"]
    cond = gh["jobs"]["publish"]["if"]
    assert "refs/tags/" in cond and "'schedule'" in cond and "'workflow_dispatch'" in cond
    assert "refs/heads/" not in cond  # branch publishing is opt-in
    # a tag publishes all or nothing: no release without an arch (schedules publish what built)
    step = next(s for s in gh["jobs"]["publish"]["steps"] if s.get("name") == "Publish")
    assert step["env"]["CIWHEELS_ALL_OR_NOTHING"] == "${{ startsWith(github.ref, 'refs/tags/') }}"
    rules = load_yaml(repo / GITLAB)["ciwheels-publish"]["rules"]
    assert {"if": "$CI_COMMIT_TAG", "variables": {"CIWHEELS_ALL_OR_NOTHING": "true"}} in rules
    ifs = [r["if"] for r in rules]
    # schedules and manual runs publish from the child pipeline that `ciwheels plan --missing` writes
    assert ifs == ['$CI_PIPELINE_SOURCE == "merge_request_event"',
                   '$CI_PIPELINE_SOURCE == "schedule" || $CI_PIPELINE_SOURCE == "web"', "$CI_COMMIT_TAG"]
    # opt in to branch publishing
    path = repo / "matrix" / "wheels.yaml"
    path.write_text(path.read_text().replace("default-branch: master", "default-branch: master\n  publish-branch: release"))
    render(repo)
    gh = load_yaml(repo / GITHUB)
    assert gh["on"]["push"]["branches"] == ["master", "release"]
    assert "github.ref == 'refs/heads/release'" in gh["jobs"]["publish"]["if"]
    assert {"if": '$CI_COMMIT_BRANCH == "release"'} in load_yaml(repo / GITLAB)["ciwheels-publish"]["rules"]
    # opt out: a tag publishes what built
    path.write_text(path.read_text() + "  tag-publish: what-built\n")
    render(repo)
    step = next(s for s in load_yaml(repo / GITHUB)["jobs"]["publish"]["steps"] if s.get("name") == "Publish")
    assert "CIWHEELS_ALL_OR_NOTHING" not in step["env"]
    assert {"if": "$CI_COMMIT_TAG"} in load_yaml(repo / GITLAB)["ciwheels-publish"]["rules"]


def test_default_branch_is_read_from_origin_head(repo, tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", "-b", "feature")
    from ciwheels.project.workspace import default_branch

    assert default_branch(clone) == "master"  # origin's HEAD, not the current branch
    assert default_branch(repo) == "master"  # no origin: the current branch


def test_git_versioned_projects_fetch_the_history(repo, tmp_path):
    init_project(repo)  # ujson: setuptools-scm
    render(repo)
    gh = load_yaml(repo / GITHUB)
    for job in gh["jobs"].values():
        checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
        assert checkout["with"]["fetch-depth"] == 0
    assert load_yaml(repo / GITLAB)["variables"]["GIT_DEPTH"] == "0"
    plain = copy_project("msgpack", tmp_path)  # setuptools, a static version
    init_project(plain)
    render(plain)
    checkout = load_yaml(plain / GITHUB)["jobs"]["gather"]["steps"][0]
    assert "fetch-depth" not in checkout["with"] and "GIT_DEPTH" not in load_yaml(plain / GITLAB)["variables"]
    path = plain / "matrix" / "wheels.yaml"
    add_render(path, "submodules: recursive")
    render(plain)
    assert load_yaml(plain / GITHUB)["jobs"]["gather"]["steps"][0]["with"]["submodules"] == "recursive"
    assert load_yaml(plain / GITLAB)["variables"]["GIT_SUBMODULE_STRATEGY"] == "recursive"


def test_actions_run_on_node24_and_a_matrix_pin_wins(repo):
    init_project(repo)
    render(repo)
    uses = {s["uses"] for j in load_yaml(repo / GITHUB)["jobs"].values() for s in j["steps"] if "uses" in s}
    text = (repo / GITHUB).read_text()
    for ref, version in (("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
                         ("actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
                         ("actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
                         ("actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1")):
        assert ref in uses and f"{ref}  # {version}" in text
    path = repo / "matrix" / "wheels.yaml"
    bumped = "actions/checkout@" + "a" * 40
    path.write_text(path.read_text() + f'  actions: {{checkout: "{bumped} # v9.9.9"}}\n')
    render(repo)
    assert f"{bumped}  # v9.9.9" in (repo / GITHUB).read_text()
    assert run_ciwheels("render", "--check", "--project", str(repo)).returncode == 0


def test_every_job_named_and_one_concurrency_group(repo):
    init_project(repo)
    render(repo)
    gh = load_yaml(repo / GITHUB)
    assert all("name" in job for job in gh["jobs"].values())
    assert gh["concurrency"]["group"] == "ciwheels-${{ github.workflow }}-${{ github.ref }}"


# -- emulated arches and time limits ----------------------------------------------------------

def test_emulated_cells_get_a_job_each(tmp_path):
    project = copy_project("markupsafe", tmp_path)
    init_project(project)
    plan = open_project(project).plan
    emulated = [j for j in plan.jobs if j.emulated]
    native = [j for j in plan.jobs if not j.emulated]
    # aarch64 builds on the hosted arm runners: armv7l, ppc64le and riscv64 under QEMU
    assert all(len(j.cells) == 1 for j in emulated) and len(emulated) == 54
    assert {j.arch for j in emulated} == {"armv7l", "ppc64le", "riscv64"}
    assert {len(j.cells) for j in native} == {9} and len(native) == 4
    arm = [j for j in native if j.arch == "aarch64"]
    assert len(arm) == 2 and all(j.github_runner == "ubuntu-24.04-arm" and not j.qemu_platform
                                 and j.gitlab_tags == ("saas-linux-small-arm64",) for j in arm)
    path = project / "matrix" / "wheels.yaml"
    add_render(path, "emulated-jobs: grouped")
    assert len(open_project(project).plan.jobs) == 10


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text += record.getMessage() + "\n"


def test_timeouts_per_arch_and_hosted_limits(tmp_path):
    project = copy_project("markupsafe", tmp_path)
    init_project(project)
    path = project / "matrix" / "wheels.yaml"
    base = path.read_text()
    assert base.rstrip().splitlines()[-1].startswith("  ") and "\noverrides:\n" in base  # overrides come last
    path.write_text(base + "- select: {arch: riscv64}\n  timeout-minutes: 300\n")
    records = _Records()
    logger = logging.getLogger("ciwheels")
    logger.addHandler(records)
    try:
        jobs = {j.id: j for j in open_project(project).plan.jobs}
    finally:
        logger.removeHandler(records)
    assert jobs["manylinux_2_39_riscv64-rv64gc-cp312"].timeout_minutes == 300
    assert jobs["manylinux_2_28_x86_64-x86-64"].timeout_minutes == 120
    assert "18 job(s) have timeout-minutes above gitlab.com's default limit of 180 minutes" in records.text
    render(project)
    assert load_yaml(project / GITLAB)  # a warning only
    path.write_text(base + "- select: {arch: riscv64}\n  timeout-minutes: 400\n")
    with pytest.raises(CiwheelsError, match="above the 360 minutes GitHub-hosted runners allow"):
        open_project(project).plan
    path.write_text(base + "- select: {arch: riscv64}\n  timeout-minutes: 400\n")
    add_render(path, "github: false")
    open_project(project).plan  # GitLab only: an instance may allow it


# -- installing ciwheels in CI -----------------------------------------------------------------

class _Dist:
    def __init__(self, direct_url: dict | None, version: str = "0.1.0") -> None:
        self.version = version
        self._text = json.dumps(direct_url) if direct_url is not None else None

    def read_text(self, name: str):
        return self._text if name == "direct_url.json" else None


@pytest.mark.parametrize("direct_url, expected, warns", [
    (None, "ciwheels==0.1.0", False),
    ({"url": "https://github.com/o/ciwheels.git",
      "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef0123456789abcdef01234567", "requested_revision": "v1"}},
     "ciwheels @ git+https://github.com/o/ciwheels.git@0123456789abcdef0123456789abcdef01234567", False),
    ({"url": "https://example.org/ciwheels-0.1.0.tar.gz", "archive_info": {"hashes": {"sha256": "ab" * 32}}},
     "ciwheels @ https://example.org/ciwheels-0.1.0.tar.gz#sha256=" + "ab" * 32, False),
    ({"url": "file:///nonexistent/ciwheels-0.1.0-py3-none-any.whl", "archive_info": {}}, "ciwheels==0.1.0", True),
    ({"url": "file:///nonexistent/ciwheels", "dir_info": {"editable": True}}, "ciwheels==0.1.0", True),
    # pip install git+ssh://...: runners have no ssh key; the https form of the same commit
    ({"url": "ssh://git@gitlab.example.org:2222/g/ciwheels.git",
      "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef0123456789abcdef01234567"}},
     "ciwheels @ git+https://gitlab.example.org/g/ciwheels.git@0123456789abcdef0123456789abcdef01234567", False),
    # pip install git+file:///...: a clone on this machine, without an origin: the version, loudly
    ({"url": "file:///nonexistent/ciwheels",
      "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef0123456789abcdef01234567"}}, "ciwheels==0.1.0", True),
])
def test_ci_installs_the_ciwheels_that_rendered(monkeypatch, direct_url, expected, warns):
    from importlib import metadata

    monkeypatch.setattr(metadata, "distribution", lambda name: _Dist(direct_url))
    spec, warning = install_requirement()
    assert spec == expected
    assert bool(warning) == warns
    if warns:
        assert "render: {ciwheels:" in warning


@pytest.mark.parametrize("origin", ["https://github.com/o/ciwheels.git", "git@github.com:o/ciwheels.git",
                                    "ssh://git@github.com/o/ciwheels.git"])
@pytest.mark.parametrize("installed", ["dir_info", "vcs_info"])  # pip install -e FOLDER / git+file://FOLDER
def test_local_git_checkout_pins_its_commit(monkeypatch, tmp_path, origin, installed):
    checkout = tmp_path / "ciwheels"
    checkout.mkdir()
    git(checkout, "init", "-q")
    git(checkout, "commit", "-q", "--allow-empty", "-m", "x")
    git(checkout, "remote", "add", "origin", origin)
    head = git(checkout, "rev-parse", "HEAD").strip()
    info = {"editable": True} if installed == "dir_info" else {"vcs": "git", "commit_id": head}
    _installed(monkeypatch, {"url": checkout.as_uri(), installed: info})
    spec, warning = install_requirement()
    assert spec == f"ciwheels @ git+https://github.com/o/ciwheels.git@{head}"
    assert "push that commit" in warning and "render: {ciwheels:" in warning


def test_render_key_overrides_and_the_example_keeps_dot(repo):
    init_project(repo)
    path = repo / "matrix" / "wheels.yaml"
    path.write_text(re.sub(r"\n  ciwheels: .*\n", '\n  ciwheels: "ciwheels==9.9"\n', path.read_text()))
    render(repo)
    assert load_yaml(repo / GITHUB)["env"]["CIWHEELS_SPEC"] == "ciwheels==9.9"
    assert load_yaml(repo / GITLAB)["variables"]["CIWHEELS_SPEC"] == "ciwheels==9.9"
    example = load_yaml(Path(__file__).parent.parent / "examples" / "cext-demo" / GITHUB)
    assert example["env"]["CIWHEELS_SPEC"] == "."


def _installed(monkeypatch, direct_url: dict) -> None:
    from importlib import metadata

    monkeypatch.setattr(metadata, "distribution", lambda name: _Dist(direct_url))


def _vcs(commit: str, url: str = "https://github.com/o/ciwheels.git") -> dict:
    return {"url": url, "vcs_info": {"vcs": "git", "commit_id": commit}}


def test_init_records_the_spec_and_renders_do_not_depend_on_who_renders(repo, monkeypatch):
    """A second maintainer (or pre-commit's isolated environment) with another installation
    renders the same files: the matrix says what CI installs, render warns about the difference."""
    first = "1" * 40
    _installed(monkeypatch, _vcs(first, "ssh://git@github.com/o/ciwheels.git"))
    report = "\n".join(init_project(repo))
    spec = f"ciwheels @ git+https://github.com/o/ciwheels.git@{first}"  # ssh origin: its https form
    assert load_yaml(repo / "matrix" / "wheels.yaml")["render"]["ciwheels"] == spec
    assert f"CI installs {spec}" in report and "WARNING" not in report
    outputs = render(repo)
    assert load_yaml(repo / GITHUB)["env"]["CIWHEELS_SPEC"] == spec
    _installed(monkeypatch, _vcs("2" * 40))
    records = _Records()
    logger = logging.getLogger("ciwheels")
    logger.addHandler(records)
    try:
        _, again = render_project(repo)
    finally:
        logger.removeHandler(records)
    assert again == outputs
    assert f"the pipelines install {spec} (render.ciwheels in" in records.text
    assert f"this ciwheels is ciwheels @ git+https://github.com/o/ciwheels.git@{'2' * 40}" in records.text
    assert run_ciwheels("render", "--check", "--project", str(repo)).returncode == 0


@pytest.mark.parametrize("value", ["ciwheels @ git+file:///home/me/ciwheels@" + "1" * 40, "/home/me/ciwheels",
                                   "ciwheels @ git+ssh://git@github.com/o/ciwheels.git@" + "1" * 40,
                                   "ciwheels @ file:///home/me/ciwheels-0.1.0-py3-none-any.whl"])
def test_a_spec_ci_cannot_install_is_refused(repo, value):
    init_project(repo)
    path = repo / "matrix" / "wheels.yaml"
    text = re.sub(r"\n  ciwheels: .*\n", f"\n  ciwheels: {json.dumps(value)}\n", path.read_text())
    path.write_text(text)
    line = text.splitlines().index(f"  ciwheels: {json.dumps(value)}") + 1
    proc = run_ciwheels("render", "--project", str(repo))
    assert proc.returncode == 2, proc.stderr
    assert f"wheels.yaml:{line}:" in proc.stderr and "render.ciwheels" in proc.stderr
    assert "Traceback" not in proc.stderr and not (repo / GITHUB).exists()


# -- review and hygiene ------------------------------------------------------------------------

def test_init_writes_no_gitlab_ci_into_a_github_only_project(repo):
    (repo / ".github" / "workflows").mkdir(parents=True)
    report = "\n".join(init_project(repo))
    assert not (repo / ".gitlab-ci.yml").exists() and "GitHub-only project" in report
    assert load_yaml(repo / "matrix" / "wheels.yaml")["render"]["gitlab"] is False
    outputs = render(repo)
    assert [p.relative_to(repo).as_posix() for p in outputs] == [GITHUB]
    init_project(repo, force=True, gitlab=True)
    assert (repo / ".gitlab-ci.yml").exists()
    assert "gitlab" not in load_yaml(repo / "matrix" / "wheels.yaml")["render"]


# -- inputs init reads as cibuildwheel does ------------------------------------------------------

def test_settings_kept_in_the_ci_are_carried_and_located(tmp_path):
    """pywavelets keeps its Linux wheel settings in its workflow's env: carried, and the report
    says where; values of the workflow's own matrix are named, not carried."""
    project = copy_project("pywavelets", tmp_path)
    report = "\n".join(init_project(project))
    data = load_yaml(project / "matrix" / "wheels.yaml")
    assert data["test-command"] == 'pytest --pyargs pywt -m "not slow"' and data["test-requires"] == ["pytest"]
    assert data["environment"] == {"PIP_PREFER_BINARY": "1"}
    assert data["cibuildwheel-options"] == {"build-verbosity": 2}
    where = ".github/workflows/wheel_tests_and_release.yml"
    assert f"carried from the project's CI: CIBW_BUILD_VERBOSITY ({where})" in report
    assert f"not carried: CIBW_BUILD in {where} is set from an expression" in report
    assert "CIBW_ARCHS_MACOS" not in report  # another platform's
    assert "test-command (from the CI)" in report


def test_submodules_are_checked_out(tmp_path):
    project = copy_project("boost-histogram", tmp_path)
    report = "\n".join(init_project(project))
    assert ".gitmodules names 7 submodule(s) (extern/histogram, extern/core" in report
    assert load_yaml(project / "matrix" / "wheels.yaml")["render"]["submodules"] == "recursive"
    render(project)
    for job in load_yaml(project / GITHUB)["jobs"].values():
        checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
        assert checkout["with"]["submodules"] == "recursive"
    plain = copy_project("msgpack", tmp_path)
    init_project(plain)
    assert "submodules" not in load_yaml(plain / "matrix" / "wheels.yaml")["render"]


@pytest.mark.parametrize("setup_py", [
    'setup_args = dict(python_requires=">=3.11")\nsetup(**setup_args)\n',  # read by cibuildwheel
    'if __name__ == "__main__":\n    args = dict(python_requires=">=3.10")\n    setup(**args)\n',
    'setup(python_requires=">=3.8")\nkw = dict(python_requires=">=3.12")\n',  # the last one wins
    'def main():\n    setup(python_requires=">=3.7")\n',  # nested: not read
    'setup(x=f(python_requires=">=3.6"))\n', 'x = [dict(python_requires=">=3.5")]\n',
    *[f"projects/{p}/setup.py" for p in PROJECTS if (PROJECTS_DIR / p / "setup.py").is_file()],
])
def test_setup_py_python_requires_as_cibuildwheel_reads_it(setup_py):
    from cibuildwheel.projectfiles import setup_py_python_requires as theirs

    from ciwheels.project.workspace import setup_py_python_requires as ours

    if setup_py.startswith("projects/"):  # a real project's setup.py
        setup_py = (PROJECTS_DIR.parent / setup_py).read_text()
    assert ours(setup_py) == theirs(setup_py)


def test_build_verbosity_as_a_string_and_errors_name_pyproject(tmp_path):
    """cibuildwheel reads build-verbosity = "1" (int()); an option the matrix cannot hold is an
    error about pyproject.toml and its line, never about init's temporary file."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\nrequires-python = ">=3.13"\n\n'
                                             '[tool.cibuildwheel]\ntest-command = "pytest"\nbuild-verbosity = "1"\n')
    init_project(tmp_path)
    assert load_yaml(tmp_path / "matrix" / "wheels.yaml")["cibuildwheel-options"] == {"build-verbosity": 1}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "1"\n\n[tool.cibuildwheel]\n'
                                        'test-command = "pytest"\nbuild-frontend = 3\n')
    proc = run_ciwheels("init", "--project", str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad / 'pyproject.toml'}:7: [tool.cibuildwheel] build-frontend:" in proc.stderr
    assert ".tmp" not in proc.stderr and not (bad / "matrix").exists()


def test_inherit_rules_are_carried_without_warnings_when_exact(tmp_path):
    """quicktions appends per-arch CFLAGS to its linux environment (inherit.environment =
    "append"): carried as the combined environment, no warning, since the result is cibuildwheel's
    (test_every_effective_option_equals_cibuildwheels checks every cell)."""
    project = copy_project("quicktions", tmp_path)
    report = "\n".join(init_project(project))
    assert "overrides[2].inherit.environment = 'append'" in report
    assert not [line for line in report.splitlines() if line.startswith("not carried") and "inherit" in line]
    aarch64 = next(o for o in load_yaml(project / "matrix" / "wheels.yaml")["overrides"]
                   if o["select"] == {"identifier": "*aarch64"})
    assert aarch64["environment"] == {"CFLAGS": "-O3 -g1 -pipe -fPIC -march=armv8-a -mtune=cortex-a72",
                                      "AR": "gcc-ar", "NM": "gcc-nm", "RANLIB": "gcc-ranlib"}


@pytest.mark.parametrize("entry, github, gitlab, qemu", [
    (None, "ubuntu-24.04-arm", ("saas-linux-small-arm64",), ""),  # the hosted arm runners
    ("{github: my-arm}", "my-arm", ("saas-linux-small-arm64",), ""),  # GitLab keeps its hosted one
    ("{gitlab: [arm64]}", "ubuntu-24.04-arm", ("arm64",), ""),  # and GitHub its own
    ("{emulated: true}", "ubuntu-24.04", (), "linux/arm64"),  # back to QEMU
])
def test_aarch64_runners_hosted_by_default_and_configurable(tmp_path, entry, github, gitlab, qemu):
    project = copy_project("markupsafe", tmp_path)
    init_project(project)
    if entry:
        path = project / "matrix" / "wheels.yaml"
        path.write_text(f"runners: {{aarch64: {entry}}}\n" + path.read_text())
    jobs = [j for j in open_project(project).plan.jobs if j.arch == "aarch64"]
    assert jobs and {(j.github_runner, j.gitlab_tags, j.qemu_platform) for j in jobs} == {(github, gitlab, qemu)}


def test_images_per_override_are_carried(tmp_path):
    """pycryptodome 4.5.0 builds CPython in manylinux2014 and PyPy, through an override, in
    manylinux_2_28 (PyPy 3.11 needs glibc 2.28): init carries the override's images, for PyPy
    cells the matrix does not build yet, and a PyPy cell added later builds in its own image."""
    project = copy_project("pycryptodome", tmp_path)
    report = "\n".join(init_project(project))
    assert "overrides[0].manylinux-x86_64-image" in report and "not per override" not in report
    data = load_yaml(project / "matrix" / "wheels.yaml")
    assert data["overrides"] == [{"select": {"identifier": "pp*"}, "images": {
        "x86_64-glibc": "manylinux_2_28", "i686-glibc": "manylinux_2_28", "aarch64-glibc": "manylinux_2_28"}}]
    add_arches(project, ["aarch64"])
    path = project / "matrix" / "wheels.yaml"
    path.write_text(path.read_text().replace("python: [cp39,", "python: [pp311, cp39,", 1))
    cells = {c.id: c for c in cells_of(project)}
    for arch, level in (("x86_64", "x86-64"), ("aarch64", "armv8-a")):
        pypy, cpython = cells[f"pp311-manylinux_{arch}-{level}"], cells[f"cp312-manylinux_{arch}-{level}"]
        assert (pypy.image, pypy.policy) == ("manylinux_2_28", "manylinux_2_28")
        assert (cpython.image, cpython.policy) == ("manylinux2014", "manylinux2014")
        assert pypy.origins["image"].detail == f"overrides[0].images.{arch}-glibc"
        # the variable cibuildwheel 4.3 reads for PyPy too (not CIBW_MANYLINUX_PYPY_*, which it ignores)
        assert pypy.cibw[f"CIBW_MANYLINUX_{arch.upper()}_IMAGE"] == "manylinux_2_28"
    assert cells["cp312-musllinux_x86_64-x86-64"].image == "musllinux_1_2"  # no image of its own


@pytest.mark.slow  # cibuildwheel's option reader for every cell
def test_images_per_override_equal_cibuildwheels(tmp_path):
    """The PyPy cells of pycryptodome added to the matrix: every effective option, images among
    them, equals what cibuildwheel computes for the project with PyPy enabled."""
    from ciwheels.build.run import CONFIG_FILE, Invocation
    from ciwheels.catalog import load_catalog

    catalog = load_catalog()
    project = copy_project("pycryptodome", tmp_path)
    init_project(project)
    add_arches(project, ["aarch64"])
    path = project / "matrix" / "wheels.yaml"
    path.write_text(path.read_text().replace("python: [cp39,", "python: [pp311, cp39,", 1))
    out = tmp_path / "out"
    out.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    theirs_env = {**clean, "CIBW_ENABLE": "pypy"}
    cells = [c for c in cells_of(project) if c.python in ("pp311", "cp312")]
    assert {c.python for c in cells} == {"pp311", "cp312"}
    differences = []
    for cell in cells:
        inv = Invocation("job", [cell], str(project))
        (out / CONFIG_FILE).write_text(inv.config)
        theirs = _build_options(project, cell.identifier, cell.arch, theirs_env)
        ours = _build_options(project, cell.identifier, cell.arch, {**clean, **inv.options(catalog)},
                              str(out / CONFIG_FILE))
        differences += _differences(theirs, ours, cell)
    assert differences == [], "\n".join(differences[:20])
