"""`ciwheels init`: a project's cibuildwheel configuration -> `matrix/wheels.yaml`, and the
`include:` of the rendered GitLab pipeline in its `.gitlab-ci.yml`."""

from __future__ import annotations

from pathlib import Path

from ciwheels.catalog import LIBC_PLATFORM, load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.matrix.cibwconfig import (
    ENABLE_GROUPS,
    SELECTION_OPTIONS,
    as_str,
    carry_options,
    catalog_identifiers,
    line_of,
    linux_options,
    selects,
)
from ciwheels.pipelines.render import install_requirement
from ciwheels.project.open import open_project
from ciwheels.project.workspace import (
    ci_cibuildwheel_env,
    default_branch,
    repository_top,
    requires_python,
)

# cibuildwheel's archs keywords on Linux, for the x86_64 hosted runner ciwheels' jobs start
# on: `auto` and `native` are the native arch only (cibuildwheel adds x86 only on Windows),
# `auto64` the native 64-bit arch, `auto32` the native arch's 32-bit partner.
_ARCH_KEYWORDS = {"auto": ["x86_64"], "native": ["x86_64"], "auto64": ["x86_64"], "auto32": ["i686"]}


def _submodules(top: Path) -> list[str]:
    """The paths of the submodules .gitmodules at the repository's top names (git's own reader
    when it can, else the file's `path =` lines)."""
    import re
    import subprocess

    path = top / ".gitmodules"
    if not path.is_file():
        return []
    try:
        out = subprocess.run(["git", "config", "--file", str(path), "--get-regexp", r"^submodule\..*\.path$"],
                             capture_output=True, text=True, timeout=30).stdout
        paths = [line.split(None, 1)[1] for line in out.splitlines() if " " in line]
    except (OSError, subprocess.SubprocessError):
        paths = []
    if not paths:
        paths = re.findall(r"^\s*path\s*=\s*(.+?)\s*$", path.read_text(encoding="utf-8", errors="replace"), re.M)
    return paths


def _option_of(var: str) -> str:
    """The [tool.cibuildwheel] option a CIBW_* variable sets (CIBW_TEST_REQUIRES_LINUX: test-requires,
    CIBW_MANYLINUX_X86_64_IMAGE: manylinux-x86_64-image)."""
    import re

    name = var.removeprefix("CIBW_").removesuffix("_LINUX")
    image = re.fullmatch(r"(MANYLINUX|MUSLLINUX)_(.+)_IMAGE", name)
    if image:
        return f"{image.group(1).lower()}-{image.group(2).lower()}-image"
    return name.lower().replace("_", "-")


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
    linux_view = linux_options(pyproject, str(pyproject_path), cat)
    report.extend(linux_view.report)
    cibw, overrides, carry_linux = dict(linux_view.options), linux_view.overrides, linux_view.carry
    # CIBW_* the project's CI sets: cibuildwheel reads them over pyproject.toml (and its overrides)
    top, rel = repository_top(project)
    ci_env, ci_notes = ci_cibuildwheel_env(top)
    from_ci: dict[str, str] = {}
    for var in sorted(ci_env, key=lambda v: v.endswith("_LINUX")):  # the _LINUX form wins
        value, where = ci_env[var]
        option = _option_of(var)
        cibw[option] = int(value) if option == "build-verbosity" and value.lstrip("-").isdigit() else value
        from_ci[option] = f"{var} ({where})"
    if from_ci:
        report.append("carried from the project's CI: " + ", ".join(from_ci.values()))
    report.extend(f"not carried: {note}" for note in ci_notes)
    pyproject_text = pyproject_path.read_text(encoding="utf-8", errors="replace") if pyproject_path.is_file() else ""

    def source(option: str) -> dict:
        """Where an option came from, for an error: the CI variable, or pyproject.toml and its line."""
        if option in from_ci:
            return {"message_prefix": f"{from_ci[option]}: ", "file": None, "line": None}
        return {"message_prefix": "[tool.cibuildwheel] ", "file": str(pyproject_path),
                "line": line_of(pyproject_text, option)}

    requires, requires_from = requires_python(project, pyproject)
    spec = None
    if requires:
        try:
            spec = SpecifierSet(requires)
        except InvalidSpecifier:
            raise CiwheelsError(f"{requires_from}: requires-python {requires!r} is not a valid specifier") from None
    build = as_str(cibw.get("build", "*")) or "*"
    skip = as_str(cibw.get("skip", ""))
    enable = set(as_str(cibw.get("enable", "")).split())
    unknown = sorted(enable - set(ENABLE_GROUPS) - {"all"})
    if unknown:
        where = source("enable")
        raise CiwheelsError(
            f"{where['message_prefix']}enable names the group {unknown[0]!r}, which the pinned "
            f"{cat.defaults['cibuildwheel']} does not know (cibuildwheel stops there with 'Unknown enable group'); remove it"
            + (": free-threaded builds need no group since cibuildwheel 3" if "freethreading" in unknown[0] else ""),
            file=where["file"], line=where["line"], value=unknown[0], allowed=[*ENABLE_GROUPS, "all"])
    if "all" in enable:
        enable = set(ENABLE_GROUPS)
    archs_opt = [a for a in re.split(r"[\s,]+", as_str(cibw.get("archs", "auto"))) if a]
    if "all" in archs_opt:
        arches = list(cat.arches)
    else:
        arches = []
        for a in archs_opt:
            for name in _ARCH_KEYWORDS.get(a.lower(), [a]):
                canon = cat.arch_alias(name.lower())
                if canon is None:
                    where = source("archs")
                    raise CiwheelsError(f"{where['message_prefix']}archs names an unknown arch", file=where["file"],
                                        line=where["line"], value=name, allowed=list(cat.arches))
                if canon not in arches:
                    arches.append(canon)
    # cibuildwheel's selection over every arch ciwheels knows, not only the ones built now: the
    # matrix keeps build/skip as identifier selectors, so an arch added later gets what
    # cibuildwheel would select for it
    possible: list[tuple[str, str, str]] = []
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
            for arch in cat.arches:
                ident = f"{py.id}-{LIBC_PLATFORM[libc]}_{arch}"
                if py.available_on(libc, arch) is None and selects(build, ident) and not selects(skip, ident):
                    possible.append((py.id, libc, arch))
    chosen = [c for c in possible if c[2] in arches]
    if not chosen:
        raise CiwheelsError(f"{pyproject_path}: the [tool.cibuildwheel] selection and requires-python leave "
                            "nothing to build on Linux")
    pythons = [p for p in cat.pythons if any(c[0] == p for c in possible)]
    libcs = [lc for lc in ("glibc", "musl") if any(c[1] == lc for c in possible)]
    arches = [a for a in arches if any(c[2] == a for c in chosen)]
    data: dict = {"python": pythons, "libc": libcs, "arch": arches}
    exclude = []
    if build.split() != ["*"]:
        pats = build.split()
        exclude.append({"not-identifier": pats[0] if len(pats) == 1 else pats})
    if skip.split():
        pats = skip.split()
        exclude.append({"identifier": pats[0] if len(pats) == 1 else pats})
    if exclude:
        data["exclude"] = exclude
    # every build the catalog knows, not only the selected ones: an override for PyPy or an arch
    # added to the matrix later applies to those cells, as cibuildwheel would apply it
    carried = carry_options(cibw, overrides, catalog_identifiers(cat), cat, from_ci)
    carry = carried.carry
    carry.carried[:0] = [k for k in SELECTION_OPTIONS if k in cibw] + carry_linux.carried
    carry.not_carried[:0] = carry_linux.not_carried
    report.extend(carried.report)
    if carried.images:
        data["images"] = carried.images
    data.update(carried.settings)
    if carried.overrides:
        data["overrides"] = [{**o, "select": _flow_map(o["select"])} for o in carried.overrides]
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
    submodules = _submodules(top)
    if submodules:  # vendored sources: without them the build has nothing to compile
        render["submodules"] = "recursive"
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
    # nothing is left behind by a failed init: the matrix is written to a temporary file, checked,
    # and only then renamed into place (a folder init made is removed again)
    made_folder = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    yaml = YAML()
    yaml.width = 100
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            yaml.dump(doc, f)
        try:
            expansion = open_project(project, (tmp,)).expansion
        except CiwheelsError as e:
            # its message names our temporary file: name pyproject.toml and the key's line instead
            raise _in_pyproject(e, tmp.read_text(encoding="utf-8").splitlines(), pyproject_path) from None
        # .gitlab-ci.yml first: when it cannot be read, no matrix is left behind for a re-run to trip on
        included = None if github_only else ensure_gitlab_include(
            top, cat.defaults["render"]["gitlab"] if rel == "." else f"{rel}/{cat.defaults['render']['gitlab']}")
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if made_folder:
            try:
                target.parent.rmdir()
            except OSError:
                pass
        raise
    report.append(f"wrote {target}: {len(expansion.cells)} cells on {', '.join(arches)} "
                  f"(requires-python {requires or 'unset'}" + (f" from {requires_from}" if requires else "") + ")")
    if carry.carried:
        report.append("carried from [tool.cibuildwheel]: " + ", ".join(
            f"{k} (from the CI)" if k in from_ci else k for k in carry.carried))
    elif not linux_view.options:
        report.append("no [tool.cibuildwheel] settings")
    report.extend(f"not carried: {what}" for what in carry.not_carried)
    if branch:
        report.append(f"default branch: {branch} (render: {{default-branch: ...}} in the matrix)")
    report.append(f"CI installs {ciwheels_spec} (render: {{ciwheels: ...}} in the matrix)")
    if submodules:
        report.append(f".gitmodules names {len(submodules)} submodule(s) ({', '.join(submodules[:5])}"
                      f"{', ...' if len(submodules) > 5 else ''}): the pipelines check them out "
                      "(render: {submodules: recursive})")
    if spec_warning:
        report.append(f"WARNING: {spec_warning}")
    if github_only:
        report.append("GitHub-only project: no GitLab pipeline (render: {gitlab: false}); "
                      "`ciwheels init --gitlab` adds one")
    else:
        report.append(included)
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
    # GitLab merges an included file's keys under the including file's: its own `workflow:`
    # replaces the rendered one (one pipeline per push, the branches GitHub builds)
    note = (f"; note: {path} has its own `workflow:`, which replaces the rendered pipeline's workflow "
            "rules: give it the same ones (see the rendered file)") if "workflow" in doc else ""
    if not changed:
        return f"{path} already includes {rendered}{note}"
    tmp = path.with_name(path.name + ".ciwheels-tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.dump(doc, f)
    tmp.replace(path)
    return f"updated {path}: added {' and '.join(changed)}{note}"


def _in_pyproject(error: CiwheelsError, matrix_lines: list[str], pyproject: Path) -> CiwheelsError:
    """An error about the matrix init was writing (a temporary file the user never sees), as an
    error about the project's configuration: pyproject.toml and the line of the key it came from."""
    import re

    key = None
    if error.line and 0 < error.line <= len(matrix_lines):
        m = re.match(r"\s*-?\s*([\w.-]+)\s*:", matrix_lines[error.line - 1])
        key = m.group(1) if m else None
    line = None
    if key and pyproject.is_file():
        line = line_of(pyproject.read_text(encoding="utf-8", errors="replace"), key)
    message = error.message
    if key:
        message = f"[tool.cibuildwheel] {key}: {message}"
    return CiwheelsError(message + " (init carries this option into matrix/wheels.yaml)",
                         file=str(pyproject), line=line, value=error.value, allowed=error.allowed, hint=error.hint)


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
