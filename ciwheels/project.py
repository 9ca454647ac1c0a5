"""Finding a project's matrix files, and `ciwheels init`."""

from __future__ import annotations

from pathlib import Path

from ciwheels.errors import CiwheelsError


def repository_top(project: Path) -> tuple[Path, str]:
    """(the git repository's top, the project's folder relative to it); outside git, the
    project itself and ".". CI jobs start at that top."""
    import subprocess

    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=project, capture_output=True,
                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return project.resolve(), "."
    top_path = Path(top).resolve()
    return top_path, project.resolve().relative_to(top_path).as_posix() or "."


def find_matrix_files(project: Path, explicit: tuple[Path, ...] = ()) -> list[Path]:
    """The files named with --matrix (a folder means its *.yaml), else PROJECT/matrix/*.yaml."""
    if explicit:
        out: list[Path] = []
        for p in explicit:
            if p.is_dir():
                found = _yaml_in(p)
                if not found:
                    raise CiwheelsError(f"no *.yaml matrix files in {p}")
                out.extend(found)
            elif p.exists():
                out.append(p)
            else:
                raise CiwheelsError(f"matrix file not found: {p}")
        return out
    if not project.is_dir():
        raise CiwheelsError(f"project folder not found: {project}")
    found = _yaml_in(project / "matrix")
    if not found:
        raise CiwheelsError(f"no matrix files in {project / 'matrix'} (looked for *.yaml and *.yml)",
                            hint="run 'ciwheels init' to create one, or pass --matrix PATH")
    return found


def _yaml_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _expand_braces(pattern: str) -> list[str]:
    """cibuildwheel selector brace expansion: 'cp{311,312}-*' -> ['cp311-*', 'cp312-*']."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    depth = 0
    for end in range(start, len(pattern)):
        depth += {"{": 1, "}": -1}.get(pattern[end], 0)
        if depth == 0:
            break
    else:
        return [pattern]
    inner, parts, depth, cur = pattern[start + 1:end], [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    out = []
    for part in parts:
        out.extend(_expand_braces(pattern[:start] + part + pattern[end + 1:]))
    return out


def _selects(patterns: str, identifier: str) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(identifier, p) for pat in patterns.split() for p in _expand_braces(pat))


def _as_str(value) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


_ARCH_KEYWORDS = {"auto": ["x86_64", "i686"], "auto64": ["x86_64"], "auto32": ["i686"], "native": ["x86_64"]}


def init_project(project: Path, *, force: bool = False) -> list[str]:
    """Write PROJECT/matrix/wheels.yaml from pyproject.toml; returns the lines to report."""
    import tomllib

    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import Version

    from ciwheels.catalog import LIBC_PLATFORM, load_catalog

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
    else:
        report.append(f"note: no {pyproject_path}; starting from the catalog's defaults")
    cibw = dict(pyproject.get("tool", {}).get("cibuildwheel", {}))
    cibw.update(cibw.pop("linux", {}) or {})
    requires = pyproject.get("project", {}).get("requires-python")
    spec = None
    if requires:
        try:
            spec = SpecifierSet(requires)
        except InvalidSpecifier:
            raise CiwheelsError(f"{pyproject_path}: requires-python {requires!r} is not a valid specifier") from None
    build = _as_str(cibw.get("build", "*"))
    skip = _as_str(cibw.get("skip", ""))
    enable = set(_as_str(cibw.get("enable", "")).split())
    archs_opt = _as_str(cibw.get("archs", "auto")).split()
    if "all" in archs_opt:
        arches = list(cat.arches)
    else:
        arches = []
        for a in archs_opt:
            for name in _ARCH_KEYWORDS.get(a, [a]):
                canon = cat.arch_alias(name)
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
        if py.enable and py.enable not in enable and "all" not in enable:
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
    images = {}
    for key, value in cibw.items():
        for libc, prefix in (("glibc", "manylinux-"), ("musl", "musllinux-")):
            if key.startswith(prefix) and key.endswith("-image") and "pypy" not in key:
                arch = key[len(prefix):-len("-image")]
                if arch in cat.arches:
                    images[f"{arch}-{libc}"] = str(value)
    if images:
        data["images"] = images
    env = cibw.get("environment")
    if isinstance(env, dict):
        data["environment"] = {k: str(v) for k, v in env.items()}
    elif isinstance(env, str) and env.strip():
        import shlex

        data["environment"] = dict(item.split("=", 1) for item in shlex.split(env) if "=" in item)
    for key in ("test-command", "before-all", "before-build"):
        if cibw.get(key):
            data[key] = _as_str(cibw[key]) if not isinstance(cibw[key], list) else " && ".join(cibw[key])
    if cibw.get("test-requires"):
        reqs = cibw["test-requires"]
        data["test-requires"] = reqs if isinstance(reqs, list) else str(reqs).split()

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def flow(seq):
        s = CommentedSeq(seq)
        s.fa.set_flow_style()
        return s

    doc = CommentedMap()
    for key, value in data.items():
        if key in ("python", "libc", "arch"):
            doc[key] = flow(value)
        elif key == "exclude":
            doc[key] = CommentedSeq([_flow_map(e) for e in value])
        else:
            doc[key] = value
    doc.yaml_set_start_comment(
        "Build matrix for ciwheels, started by `ciwheels init` from pyproject.toml.\n"
        "Add ISA levels per arch, e.g.  isa: {x86_64: [x86-64, x86-64-v3]}\n"
        "Run `ciwheels matrix` to see the cells and `ciwheels schema` for every key.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    yaml = YAML()
    yaml.width = 100
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.dump(doc, f)
    from ciwheels.pipeline import open_project

    try:
        expansion = open_project(project, (tmp,)).expansion
    except CiwheelsError:
        tmp.unlink()
        raise
    tmp.replace(target)
    read = ", ".join(k for k in ("build", "skip", "archs", "enable", "environment", "test-command")
                     if k in cibw) or "no [tool.cibuildwheel] settings"
    report.append(f"wrote {target}: {len(expansion.cells)} cells ({read}; requires-python {requires or 'unset'})")
    top, rel = repository_top(project)
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
