"""`ciwheels init`: a project's cibuildwheel configuration -> `matrix/wheels.yaml`, and the
`include:` of the rendered GitLab pipeline in its `.gitlab-ci.yml`."""

from __future__ import annotations

from pathlib import Path

from ciwheels.catalog import LIBC_PLATFORM, load_catalog
from ciwheels.core.errors import CiwheelsError, shorten
from ciwheels.matrix.normalise import MAX_BRACE_EXPANSION, brace_patterns
from ciwheels.matrix.schema import matrix_schema
from ciwheels.pipelines.render import install_requirement
from ciwheels.project.open import open_project
from ciwheels.project.workspace import default_branch, repository_top, requires_python


def _selects(patterns: str, identifier: str) -> bool:
    """cibuildwheel's selector_matches: whitespace-separated fnmatch globs with bash brace
    expansion (`cp3{9..15}-*`, `*{i686,aarch64}*`), through bracex as cibuildwheel does."""
    from fnmatch import fnmatch

    return any(fnmatch(identifier, p) for pat in patterns.split() for p in _braces(pat))


def _braces(pattern: str) -> tuple[str, ...]:
    """The expansion of one [tool.cibuildwheel] selector, with the matrix's bound."""
    patterns = brace_patterns(pattern)
    if patterns is None:

        raise CiwheelsError(f"[tool.cibuildwheel] selector {shorten(pattern)!r} expands to more than "
                            f"{MAX_BRACE_EXPANSION} patterns, the limit")
    return patterns


def _as_str(value) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _commands(value) -> str:
    """A cibuildwheel command option (a string, or a list cibuildwheel joins with ' && ')."""
    return " && ".join(str(v) for v in value) if isinstance(value, list) else str(value)


# The enable groups the pinned cibuildwheel knows (cibuildwheel.selector.EnableGroup);
# tests/test_real_projects.py holds this list against the installed cibuildwheel.
ENABLE_GROUPS = ("cpython-prerelease", "graalpy", "pypy", "pypy-eol", "pyodide-eol", "pyodide-prerelease")
# Platform tables and options cibuildwheel never applies to a Linux build.
NOT_LINUX_TABLES = ("macos", "windows", "ios", "android", "pyodide")
NOT_LINUX_OPTIONS = ("xbuild-tools", "xbuild-files", "pyodide-version", "test-runtime", "dependency-versions")
# Options ciwheels has its own matrix keys for (never inside `cibuildwheel-options`).
SELECTION_OPTIONS = ("build", "skip", "archs", "enable")
SETTING_OPTIONS = ("environment", "before-all", "before-build", "test-command", "test-requires")

# cibuildwheel's archs keywords on Linux, for the x86_64 hosted runner ciwheels' jobs start
# on: `auto` and `native` are the native arch only (cibuildwheel adds x86 only on Windows),
# `auto64` the native 64-bit arch, `auto32` the native arch's 32-bit partner.
_ARCH_KEYWORDS = {"auto": ["x86_64"], "native": ["x86_64"], "auto64": ["x86_64"], "auto32": ["i686"]}


def _schema_has(catalog, key: str, where: str = "settings") -> bool:
    """Whether this ciwheels' matrix schema has `key` (a setting, or a selector key)."""

    schema = matrix_schema(catalog)
    if where == "settings":
        return key in schema["properties"]
    select = schema["properties"]["overrides"]["items"]["properties"]["select"]
    return key in select.get("properties", {})


class _Carry:
    """What init carried from [tool.cibuildwheel] into the matrix, and what it could not."""

    def __init__(self, catalog, arches: list[str], has_options: bool) -> None:
        self.catalog = catalog
        self.arches = arches
        self.has_options = has_options
        self.carried: list[str] = []
        self.not_carried: list[str] = []

    def settings(self, table: dict, where: str) -> tuple[dict, dict]:
        """(matrix settings, images) from one table of cibuildwheel options."""
        out: dict = {}
        images: dict = {}
        options: dict = {}
        for key, value in table.items():
            name = f"{where}{key}"
            if key in SELECTION_OPTIONS or key in ("overrides", "linux", "select"):
                continue
            if key == "environment":
                env = _environment(value)
                if env:
                    out["environment"] = env
            elif key in ("before-all", "before-build", "test-command"):
                if value not in ("", []):
                    out[key] = _commands(value)
            elif key == "test-requires":
                reqs = value if isinstance(value, list) else str(value).split()
                out[key] = [str(r) for r in reqs]
            elif key.endswith("-image") and key.startswith(("manylinux-", "musllinux-")):
                libc, _, arch = key[:-len("-image")].partition("-")
                if arch.startswith("pypy_"):
                    self.not_carried.append(f"{name} (PyPy images: ciwheels builds PyPy in the CPython image)")
                    continue
                if arch not in self.arches:
                    self.not_carried.append(f"{name} (no {arch} cells)")
                    continue
                images[f"{arch}-{'glibc' if libc == 'manylinux' else 'musl'}"] = str(value)
            elif key == "container-engine":
                self.not_carried.append(f"{name} (choose it with `ciwheels build --engine`)")
                continue
            elif key == "inherit":
                self.not_carried.append(f"{name} = {value!r} (ciwheels overrides replace a setting whole, "
                                        "environment per variable; write the combined value into the override)")
                continue
            elif key in NOT_LINUX_OPTIONS:
                self.not_carried.append(f"{name} (not for Linux)")
                continue
            elif self.has_options:
                options[key] = value
            else:
                self.not_carried.append(f"{name} (this ciwheels has no `cibuildwheel-options:`)")
                continue
            self.carried.append(name)
        if options:
            out["cibuildwheel-options"] = options
        return out, images


def _environment(value) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    import shlex

    return dict(item.split("=", 1) for item in shlex.split(str(value)) if "=" in item)


def init_project(project: Path, *, force: bool = False, gitlab: bool = False) -> list[str]:
    """Write PROJECT/matrix/wheels.yaml from pyproject.toml; returns the lines to report."""
    import re
    import tomllib

    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import Version


    cat = load_catalog()
    target = project / "matrix" / "wheels.yaml"
    if target.exists() and not force:
        raise CiwheelsError(f"{target} already exists; use --force to replace it")
    pyproject_path = project / "pyproject.toml"
    report = []
    pyproject: dict = {}
    if pyproject_path.exists():
        try:
            pyproject = tomllib.loads(pyproject_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise CiwheelsError(f"cannot read {pyproject_path}: {e}") from None
        except UnicodeDecodeError as e:
            raise CiwheelsError(f"{pyproject_path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                                f"{e.start}); TOML files must be UTF-8") from None
        except OSError as e:
            raise CiwheelsError(f"cannot read {pyproject_path}: {e.strerror or e}") from None
    else:
        report.append(f"note: no {pyproject_path}; starting from the catalog's defaults")
    tool = pyproject.get("tool") or {}
    table = (tool.get("cibuildwheel") if isinstance(tool, dict) else None) or {}
    if not isinstance(table, dict) or not isinstance(table.get("linux") or {}, dict) \
            or not isinstance(table.get("overrides") or [], list) \
            or not all(isinstance(o, dict) for o in table.get("overrides") or []):
        raise CiwheelsError(f"{pyproject_path}: [tool.cibuildwheel] (and its linux table) must be tables and its "
                            "overrides a list of tables, as cibuildwheel reads them")
    table = dict(table)
    for platform in NOT_LINUX_TABLES:
        if table.pop(platform, None) is not None:
            report.append(f"not carried: [tool.cibuildwheel.{platform}] (not for Linux)")
    linux = table.pop("linux", None) or {}
    overrides = table.pop("overrides", None) or []
    cibw = {**table, **linux}  # cibuildwheel: the platform table wins over the top level
    requires, requires_from = requires_python(project, pyproject)
    spec = None
    if requires:
        try:
            spec = SpecifierSet(requires)
        except InvalidSpecifier:
            raise CiwheelsError(f"{requires_from}: requires-python {requires!r} is not a valid specifier") from None
    build = _as_str(cibw.get("build", "*")) or "*"
    skip = _as_str(cibw.get("skip", ""))
    enable = set(_as_str(cibw.get("enable", "")).split())
    unknown = sorted(enable - set(ENABLE_GROUPS) - {"all"})
    if unknown:
        raise CiwheelsError(
            f"{pyproject_path}: [tool.cibuildwheel] enable names the group {unknown[0]!r}, which the pinned "
            f"{cat.defaults['cibuildwheel']} does not know (cibuildwheel stops there with 'Unknown enable group'); remove it"
            + (": free-threaded builds need no group since cibuildwheel 3" if "freethreading" in unknown[0] else ""),
            value=unknown[0], allowed=[*ENABLE_GROUPS, "all"])
    if "all" in enable:
        enable = set(ENABLE_GROUPS)
    archs_opt = [a for a in re.split(r"[\s,]+", _as_str(cibw.get("archs", "auto"))) if a]
    if "all" in archs_opt:
        arches = list(cat.arches)
    else:
        arches = []
        for a in archs_opt:
            for name in _ARCH_KEYWORDS.get(a.lower(), [a]):
                canon = cat.arch_alias(name.lower())
                if canon is None:
                    raise CiwheelsError(f"{pyproject_path}: [tool.cibuildwheel] archs names an unknown arch",
                                        value=name, allowed=list(cat.arches))
                if canon not in arches:
                    arches.append(canon)
    chosen: list[tuple[str, str, str]] = []
    for py in cat.pythons.values():
        if py.status == "unavailable":
            continue
        if spec is not None and not spec.contains(Version(f"{py.version}.99")):
            continue
        if py.enable and py.enable not in enable:
            continue
        if py.status == "prerelease" and "cpython-prerelease" not in enable:
            continue
        for libc in ("glibc", "musl"):
            for arch in arches:
                ident = f"{py.id}-{LIBC_PLATFORM[libc]}_{arch}"
                if py.available_on(libc, arch) is None and _selects(build, ident) and not _selects(skip, ident):
                    chosen.append((py.id, libc, arch))
    if not chosen:
        raise CiwheelsError(f"{pyproject_path}: the [tool.cibuildwheel] selection and requires-python leave "
                            "nothing to build on Linux")
    pythons = [p for p in cat.pythons if any(c[0] == p for c in chosen)]
    libcs = [lc for lc in ("glibc", "musl") if any(c[1] == lc for c in chosen)]
    arches = [a for a in arches if any(c[2] == a for c in chosen)]
    exclude = _excludes(cat, pythons, libcs, arches, set(chosen))
    data: dict = {"python": pythons, "libc": libcs, "arch": arches}
    if exclude:
        data["exclude"] = exclude
    carry = _Carry(cat, arches, _schema_has(cat, "cibuildwheel-options"))
    carry.carried += [k for k in SELECTION_OPTIONS if k in cibw]
    settings, images = carry.settings(cibw, "")
    if images:
        data["images"] = images
    data.update(settings)
    identifiers = [f"{p}-{LIBC_PLATFORM[lc]}_{a}" for p, lc, a in chosen]
    matrix_overrides = []
    has_identifier = _schema_has(cat, "identifier", where="select")
    for n, entry in enumerate(overrides):
        where = f"overrides[{n}]."
        select = _as_str(entry.get("select", ""))
        if not any(_selects(select, i) for i in identifiers):
            report.append(f"not carried: {where[:-1]} (select {select!r} matches no Linux cell of this matrix)")
            continue
        if not has_identifier:
            report.append(f"not carried: {where[:-1]} (this ciwheels has no `identifier:` selector)")
            continue
        values, over_images = carry.settings(entry, where)
        for key in over_images:
            carry.not_carried.append(f"{where}{key} image (images are per arch and libc, not per override)")
        if not values:
            continue
        pats = select.split()
        m = {"select": _flow_map({"identifier": pats[0] if len(pats) == 1 else pats}), **values}
        matrix_overrides.append(m)
    if matrix_overrides:
        data["overrides"] = matrix_overrides
    top, rel = repository_top(project)
    branch = default_branch(project)
    github_only = (top / ".github").is_dir() and not (top / ".gitlab-ci.yml").exists() and not gitlab
    render: dict = {}
    if branch:
        render["default-branch"] = branch
    # what CI installs, recorded once: the rendered files then do not depend on who renders them
    ciwheels_spec, spec_warning = install_requirement()
    render["ciwheels"] = ciwheels_spec
    if github_only:
        render["gitlab"] = False
    if render:
        data["render"] = render

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def flow(seq):
        s = CommentedSeq(seq)
        s.fa.set_flow_style()
        return s

    doc = CommentedMap()
    # overrides last: an override appended to the file lands in them
    for key, value in sorted(data.items(), key=lambda kv: kv[0] == "overrides"):
        if key in ("python", "libc", "arch"):
            doc[key] = flow(value)
        elif key == "exclude":
            doc[key] = CommentedSeq([_flow_map(e) for e in value])
        else:
            doc[key] = value
    doc.yaml_set_start_comment(
        "Build matrix for ciwheels, started by `ciwheels init` from pyproject.toml.\n"
        "It owns the whole cibuildwheel configuration: `ciwheels build` gives cibuildwheel a config\n"
        "file written from it, never the project's [tool.cibuildwheel].\n"
        "Add ISA levels per arch, e.g.  isa: {x86_64: [x86-64, x86-64-v3]}\n"
        "Run `ciwheels matrix` to see the cells and `ciwheels schema` for every key.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    yaml = YAML()
    yaml.width = 100
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.dump(doc, f)

    try:
        expansion = open_project(project, (tmp,)).expansion
    except CiwheelsError:
        tmp.unlink()
        raise
    tmp.replace(target)
    report.append(f"wrote {target}: {len(expansion.cells)} cells on {', '.join(arches)} "
                  f"(requires-python {requires or 'unset'}" + (f" from {requires_from}" if requires else "") + ")")
    if carry.carried:
        report.append("carried from [tool.cibuildwheel]: " + ", ".join(carry.carried))
    elif not table and not linux:
        report.append("no [tool.cibuildwheel] settings")
    report.extend(f"not carried: {what}" for what in carry.not_carried)
    if branch:
        report.append(f"default branch: {branch} (render: {{default-branch: ...}} in the matrix)")
    report.append(f"CI installs {ciwheels_spec} (render: {{ciwheels: ...}} in the matrix)")
    if spec_warning:
        report.append(f"WARNING: {spec_warning}")
    if github_only:
        report.append("GitHub-only project: no GitLab pipeline (render: {gitlab: false}); "
                      "`ciwheels init --gitlab` adds one")
    else:
        rendered = cat.defaults["render"]["gitlab"]
        report.append(ensure_gitlab_include(top, rendered if rel == "." else f"{rel}/{rendered}"))
    report.append("next: 'ciwheels render' writes the CI pipelines")
    return report


CIWHEELS_STAGES = ["ciwheels-build", "ciwheels-gather", "ciwheels-publish"]


def ensure_gitlab_include(project: Path, rendered: str) -> str:
    """Make the project's .gitlab-ci.yml include the rendered pipeline (and list its stages when
    the file sets its own). Comments and order in the file are kept."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    path = project / ".gitlab-ci.yml"
    entry = {"local": rendered}
    yaml = YAML()
    yaml.width = 100
    if not path.exists():
        doc = CommentedMap()
        doc["include"] = CommentedSeq([CommentedMap(entry)])
        doc.yaml_set_start_comment("GitLab CI: the wheel pipeline is rendered by `ciwheels render`.")
        with open(path, "w", encoding="utf-8") as f:
            yaml.dump(doc, f)
        return f"wrote {path} including {rendered}"
    try:
        doc = yaml.load(path.read_text(encoding="utf-8")) or CommentedMap()
    except Exception as e:  # ruamel raises several unrelated types for bad YAML
        raise CiwheelsError(f"cannot read {path}: {e}; add `include: [{{local: {rendered}}}]` by hand") from None
    if not isinstance(doc, dict):
        raise CiwheelsError(f"{path} is not a mapping; add `include: [{{local: {rendered}}}]` by hand")
    include = doc.get("include")
    items = [] if include is None else (list(include) if isinstance(include, list) else [include])
    present = any((i == rendered) or (isinstance(i, dict) and i.get("local") in (rendered, "/" + rendered))
                  for i in items)
    changed = []
    if not present:
        if include is None:
            doc.insert(0, "include", CommentedSeq([CommentedMap(entry)]))
        elif isinstance(include, list):
            include.append(CommentedMap(entry))
        else:
            doc["include"] = CommentedSeq([include, CommentedMap(entry)])
        changed.append(f"an include of {rendered}")
    stages = doc.get("stages")
    if isinstance(stages, list):
        missing = [s for s in CIWHEELS_STAGES if s not in stages]
        if missing:
            stages.extend(missing)
            changed.append(f"the stages {', '.join(missing)}")
    if not changed:
        return f"{path} already includes {rendered}"
    tmp = path.with_name(path.name + ".ciwheels-tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.dump(doc, f)
    tmp.replace(path)
    return f"updated {path}: added {' and '.join(changed)}"


def _flow_map(d: dict):
    from ruamel.yaml.comments import CommentedMap

    m = CommentedMap(d)
    m.fa.set_flow_style()
    return m


def _excludes(cat, pythons: list[str], libcs: list[str], arches: list[str], chosen: set) -> list[dict]:
    """The fewest simple exclude entries that turn the axes' product into `chosen`: whole
    libc x arch platforms first, then whole python x libc pairs, then single cells."""
    import itertools

    axes = {"python": pythons, "libc": libcs, "arch": arches}

    def buildable(cell: dict) -> bool:
        return cat.pythons[cell["python"]].available_on(cell["libc"], cell["arch"]) is None

    def key(cell: dict) -> tuple[str, str, str]:
        return cell["python"], cell["libc"], cell["arch"]

    missing = {key(c) for c in (dict(zip(axes, v)) for v in itertools.product(*axes.values()))
               if buildable(c) and key(c) not in chosen}
    out = []
    for fixed_keys in (("libc", "arch"), ("python", "libc")):
        (free,) = [k for k in axes if k not in fixed_keys]
        for values in itertools.product(*(axes[k] for k in fixed_keys)):
            fixed = dict(zip(fixed_keys, values))
            group = {key(c) for c in ({**fixed, free: v} for v in axes[free]) if buildable(c)}
            if group and group <= missing:
                out.append(fixed)
                missing -= group
    out.extend({"python": p, "libc": lc, "arch": a} for p, lc, a in sorted(missing))
    return out
