"""Opening a project: the one place where the stages are chained.

    find matrix files -> load (validate) -> normalise (typed spec) -> expand -> resolve (cells)
                                                                   -> plan (jobs)

Every command starts from `open_project`, so no stage is run twice and no command reaches
back into raw YAML for something an earlier stage already knew."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ciwheels.build.sdist import cached_or_fetched, config_files
from ciwheels.builder.upstream import IndexCache, needs_resolving, resolve_versions
from ciwheels.catalog import Catalog, load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import read_pyproject
from ciwheels.core.log import get_logger
from ciwheels.matrix import destination
from ciwheels.matrix.cibwconfig import sdist_config
from ciwheels.matrix.expand import expand
from ciwheels.matrix.load import MatrixDoc, load_files
from ciwheels.matrix.model import Expansion, Registry
from ciwheels.matrix.normalise import ProjectSpec, normalise
from ciwheels.pipelines.builtimages import give_built_images
from ciwheels.pipelines.plan import Plan, plan
from ciwheels.pipelines.render import (
    install_requirement,
    render_plan,
    versioned_from_git,
)
from ciwheels.project.workspace import (
    default_branch,
    find_matrix_files,
    repository_top,
    requires_python,
    requires_python_of,
)


@dataclass
class Project:
    """A loaded project: its matrix documents, the typed spec, the cells, and (on demand) the plan."""

    root: Path
    catalog: Catalog
    files: list[Path]
    docs: list[MatrixDoc]
    spec: ProjectSpec
    expansion: Expansion
    upstream: IndexCache | None = None  # the upstream index pages read while opening (one read per package)

    @cached_property
    def plan(self) -> Plan:
        return plan(self.expansion, self.spec, self.catalog)

    @property
    def registries(self) -> dict[str, Registry]:
        return self.spec.registries


def open_docs(root: Path, docs: list[MatrixDoc], catalog: Catalog | None = None,
              files: list[Path] | None = None, *, repository_url: str | None = None) -> Project:
    """A project from documents already loaded (e.g. from a git revision). `repository_url`:
    the registry of cells the matrix sends nowhere (matrix/destination.py), else the environment's."""
    catalog = catalog or load_catalog()
    spec = normalise(docs, catalog)
    index = None
    if needs_resolving(spec):  # `versions: latest` or a selection: the only reason to read the index here
        index = resolve_versions(spec)
    read_sdist_configs(spec, catalog)
    expansion = expand(spec, catalog)
    destination.assign(expansion, spec.registries, destination.environment_default(repository_url=repository_url))
    if spec.render.build_images:  # their digests need the cells' Pythons: see builtimages.py

        expansion = give_built_images(spec, expansion, catalog)
    project = Project(root, catalog, files or [], docs, spec, expansion)
    project.upstream = index
    return project


def read_sdist_configs(spec: ProjectSpec, catalog: Catalog) -> None:
    """Builder mode: every package version starts from its sdist's own cibuildwheel configuration
    (what init reads of a project), read when the project is opened, so that the cells, explain,
    `matrix --json`, the plan's fingerprints and the build all see the same settings. The sdist
    comes from the cache, else the index (the build fetches it anyway). It is somebody else's
    code: pyproject.toml, setup.cfg and setup.py are read from the archive, bounded, never run.
    A configuration that cannot be read (bad TOML, over the bounds, not an archive) is a warning
    naming package, version and file, and those cells build with the matrix's settings alone: the
    same answer every time. An sdist that cannot be fetched is an error instead: a passing network
    failure must not change what a run builds (`sdist-config: false` opts out)."""
    from concurrent.futures import ThreadPoolExecutor

    log = get_logger("sdist")
    todo = [(m, pkg, version) for m in spec.matrices for pkg in m.packages if pkg.sdist_config
            for version in pkg.versions]
    if not todo:
        return

    def fetch(key: tuple[str, str]):
        try:
            return cached_or_fetched(*key)
        except CiwheelsError as e:
            return e

    keys = sorted({(pkg.name, version) for _, pkg, version in todo})  # two files may list one version
    # downloads of the sdists not cached yet in parallel; reading them here, one by one (ast.parse
    # of their setup.py is not safe in threads on CPython 3.11)
    with ThreadPoolExecutor(min(8, len(keys))) as pool:
        results = dict(zip(keys, pool.map(fetch, keys)))
    unfetched = [f"{name} {version}: {str(results[(name, version)]).rstrip('.')}" for name, version in keys
                 if isinstance(results[(name, version)], CiwheelsError)]
    if unfetched:
        raise CiwheelsError("builder mode reads each package's sdist for its own cibuildwheel configuration, and "
                            "these could not be fetched: " + "; ".join(unfetched) + ". Try again, or set "
                            "`sdist-config: false` on the package (or at the top of the matrix file) to build "
                            "with the matrix's settings alone")
    for key, archive in results.items():
        if not isinstance(archive, CiwheelsError):
            try:
                results[key] = _sdist_config_of(archive, catalog)
            except CiwheelsError as e:
                results[key] = e
    for m, pkg, version in todo:
        own = results[(pkg.name, version)]
        if isinstance(own, CiwheelsError):
            m.warnings.append(f"{pkg.name} {version}: its sdist's own cibuildwheel configuration is not used "
                              f"({own}); its cells build with the matrix's settings alone")
            continue
        m.sdist[(pkg.name, version)] = own
        log.info("%s %s: %s", pkg.name, version, own.summary(notes=False))


def _sdist_config_of(archive: Path, catalog: Catalog):
    """The SdistConfig of one sdist, read bounded (build/sdist.py config_files)."""
    import tomllib

    files = config_files(archive)
    try:
        pyproject = tomllib.loads(files.get("pyproject.toml", ""))
    except (tomllib.TOMLDecodeError, RecursionError):
        pyproject = {}  # sdist_config says what is wrong with it
    return sdist_config(archive.name, files, requires_python_of(
        pyproject, files.get("setup.cfg"), files.get("setup.py")), catalog)


def open_project(project: Path, matrix_paths: tuple[Path, ...] = (), *, display_root: Path | None = None,
                 repository_url: str | None = None) -> Project:
    """Find, load, validate and expand the project's matrix files (PROJECT/matrix/*.yaml, or
    the --matrix paths). Files are shown relative to `display_root` (default: the current folder)."""
    catalog = load_catalog()
    files = find_matrix_files(project, matrix_paths)
    docs = load_files(files, catalog, root=display_root or Path.cwd())
    opened = open_docs(project, docs, catalog, files, repository_url=repository_url)
    _check_requires_python(opened)
    return opened


def _check_requires_python(opened: Project) -> None:
    """cibuildwheel reads the package's requires-python at build time whatever the matrix says,
    and skips the Pythons it excludes: say so now, on the cells, instead of a missing wheel later."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import Version


    own = [c for c in opened.expansion.cells if not c.package]
    if not own:
        return
    try:
        value, source = requires_python(opened.root, read_pyproject(opened.root))
        spec = SpecifierSet(value) if value else None
    except (OSError, InvalidSpecifier, ValueError):
        return
    if spec is None:
        return
    outside: dict[str, list] = {}
    for cell in own:
        python = opened.catalog.pythons[cell.python]
        if python.implementation == "cpython" and not spec.contains(Version(f"{python.version}.99"), prereleases=True):
            outside.setdefault(cell.python, []).append(cell)
    for py, cells in outside.items():
        note = (f"the project's requires-python {value!r} ({source}) excludes {py}: cibuildwheel will skip it "
                "and the cell gets no wheel; exclude it in the matrix or widen requires-python")
        for cell in cells:
            cell.notes = (*cell.notes, note)
        opened.expansion.warnings.append(f"{len(cells)} {py} cell(s): {note}")


def project_registries(project: Path) -> dict[str, Registry]:
    """The registries of a project's matrix; {} for a folder without matrix files (publish and
    the consumer commands also work from a URL alone)."""
    try:
        files = find_matrix_files(project)
    except CiwheelsError:
        return {}
    catalog = load_catalog()
    return normalise(load_files(files, catalog, root=Path.cwd()), catalog).registries


def expand_files(paths: list[Path], root: Path | None = None) -> Expansion:
    """The cells of some matrix files (for library users and tests that have files, not a project)."""
    return open_project(Path.cwd(), tuple(paths), display_root=root).expansion


def render_project(project: Path, matrix_paths: tuple[Path, ...] = ()) -> tuple[Plan, dict[Path, str]]:
    """Open, plan and render a project: {absolute output path: text}. Output paths are confined
    to the project: `render: {github: ...}` cannot name a file outside it."""
    log = get_logger("render")
    opened = open_project(project, matrix_paths)
    top, project_rel = repository_top(project, _recorded_project(project, opened.plan.settings.github))
    matrix_rel = []
    for f in opened.files:
        try:
            matrix_rel.append(f.resolve().relative_to(top).as_posix())
        except ValueError:
            matrix_rel.append(f.resolve().as_posix())
    s = opened.plan.settings
    branch = s.default_branch
    if branch is None:
        branch = default_branch(project)
        if branch is None:
            branch = "main"
            log.warning("cannot read the default branch (no origin/HEAD, no current branch); the pipelines build "
                        "pushes to 'main': set render: {default-branch: NAME} in the matrix")
    spec = None
    own, warning = install_requirement()
    if s.ciwheels is None:
        # a matrix from before init recorded it: the pipelines depend on who renders them
        spec = own
        if warning:
            log.warning("%s", warning)
        log.warning("the matrix does not say which ciwheels CI installs; the pipelines install %s, the one "
                    "rendering now, so a render by another installation differs: record it with "
                    "render: {ciwheels: %s} (ciwheels init does)", own, json.dumps(own))
    elif s.ciwheels != own and not _is_relative_path(s.ciwheels):
        # the matrix decides (a render is the same whoever runs it); say so when this one differs
        log.warning("the pipelines install %s (render.ciwheels in %s); this ciwheels is %s: they render "
                    "unchanged, update render.ciwheels to move CI to it", s.ciwheels, s.origin, own)
    outputs = render_plan(opened.plan, project_rel, matrix_rel, default_branch=branch,
                          fetch_depth=0 if versioned_from_git(project) else 1, ciwheels=spec)
    root = project.resolve()
    confined = {}
    for rel, text in sorted(outputs.items()):
        target = (project / rel).resolve()
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not target.is_relative_to(root) or target == root:
            raise CiwheelsError(f"render: the output path {rel!r} (set in {s.origin or 'defaults'}) leaves the "
                                f"project {project}; give a path inside it, e.g. .github/workflows/ciwheels.yml")
        confined[project / rel] = text
    return opened.plan, confined


def _recorded_project(project: Path, github: str | None) -> str | None:
    """The project path (relative to the repository top) that the committed GitHub workflow
    records, for rendering outside git the same files as inside it."""
    import re

    try:
        text = (project / github).read_text(encoding="utf-8")[:1 << 16] if github else ""
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r'^  CIWHEELS_PROJECT: "([^"\n]*)"$', text, re.M)
    return m.group(1) if m else None


def _is_relative_path(spec: str) -> bool:
    """A requirement that is a path inside the CI checkout ("." in the example)."""
    return spec.startswith((".", "./", "../")) and "@" not in spec
