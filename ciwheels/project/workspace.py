"""A project on disk: its repository top, matrix files, requires-python and default branch."""

from __future__ import annotations

from pathlib import Path

from ciwheels.core.errors import CiwheelsError


def repository_top(project: Path, recorded: str | None = None) -> tuple[Path, str]:
    """(the git repository's top, the project's folder relative to it). CI jobs start at that
    top. Outside git (an unpacked sdist, an exported tree): the folder `recorded` says (the
    project path a previous render wrote into its files) when the project's path ends with it,
    else the project itself and "."."""
    import subprocess

    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=project, capture_output=True,
                             text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        here = project.resolve()
        parts = Path(recorded).parts if recorded and recorded != "." else ()
        if parts and ".." not in parts and not Path(recorded).is_absolute() and here.parts[-len(parts):] == parts:
            return here.parents[len(parts) - 1], Path(*parts).as_posix()
        return here, "."
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
        folders = sorted(p.name for p in (project / "matrix").glob("*.y*ml") if p.is_dir()) \
            if (project / "matrix").is_dir() else []
        if folders:
            raise CiwheelsError(f"{project / 'matrix' / folders[0]} is a folder, not a matrix file; no matrix files "
                                f"in {project / 'matrix'}", hint="A matrix file is a YAML file: move the folder away")
        raise CiwheelsError(f"no matrix files in {project / 'matrix'} (looked for *.yaml and *.yml)",
                            hint="run 'ciwheels init' to create one, or pass --matrix PATH")
    return found


def _yaml_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def setup_py_python_requires(content: str) -> str | None:
    """`python_requires="..."` in setup.py, read as cibuildwheel reads it (its projectfiles
    Analyzer): a string literal only, nothing executed, in a call that is a statement of the
    module or of an `if __name__ == "__main__":` at its top, including the value of an
    assignment (`setup_args = dict(python_requires=">=3.11")`). The last one found wins."""
    import ast

    try:
        tree = ast.parse(content)
    except (SyntaxError, ValueError):
        return None
    parent: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parent[id(child)] = node

    def up(node, depth: int = 1):
        for _ in range(depth):
            node = parent.get(id(node)) if node is not None else None
        return node

    found = None
    for node in ast.walk(tree):
        if not (isinstance(node, ast.keyword) and node.arg == "python_requires"
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            continue
        # keyword -> Call -> statement -> Module, or keyword -> Call -> statement -> If(main) -> Module
        top = up(node, 4)
        unnested = top is None
        in_main = top is not None and up(top) is None and isinstance(up(node, 3), ast.If) \
            and _is_main_test(up(node, 3).test)
        if unnested or in_main:
            found = node.value.value
    return found or None


def _is_main_test(test) -> bool:
    import ast

    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (sum(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides) == 1
            and sum(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) == 1)


def requires_python(project: Path, pyproject: dict) -> tuple[str | None, str]:
    """(requires-python, where it came from), from the first of pyproject.toml
    [project] requires-python, setup.cfg [options] python_requires, setup.py's
    setup(python_requires=...): the order cibuildwheel reads them in."""
    def text(name: str) -> str | None:
        path = project / name
        if not path.is_file():
            return None
        if name == "setup.py":
            return path.read_text(encoding="utf-8", errors="replace")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise CiwheelsError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                                "its python_requires cannot be read", hint="Save it as UTF-8") from None

    if (pyproject.get("project") or {}).get("requires-python") is not None:
        return requires_python_of(pyproject, None, None)
    return requires_python_of(pyproject, text("setup.cfg"), text("setup.py"))


def requires_python_of(pyproject: dict, setup_cfg: str | None, setup_py: str | None) -> tuple[str | None, str]:
    """requires_python of files given as text (an sdist's, read from the archive): nothing is
    executed, setup.py is parsed (setup_py_python_requires)."""
    import configparser

    value = (pyproject.get("project") or {}).get("requires-python")
    if value is not None:
        return str(value), "pyproject.toml"
    if setup_cfg is not None:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(setup_cfg)
            if parser.has_option("options", "python_requires"):
                return parser.get("options", "python_requires"), "setup.cfg"
        except configparser.Error:
            pass
    if setup_py is not None:
        try:
            value = setup_py_python_requires(setup_py)
        except (RecursionError, MemoryError):  # a hostile setup.py nested beyond the parser's depth
            value = None
        if value:
            return value, "setup.py"
    return None, ""


def default_branch(project: Path) -> str | None:
    """The repository's default branch: origin's HEAD, else the current branch; None outside git
    or on a detached HEAD without origin."""
    import subprocess

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return out.stdout.strip() or None

    if git("rev-parse", "--git-dir") is None:
        return None
    ref = git("symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if ref:
        return ref.removeprefix("origin/")
    return git("symbolic-ref", "--quiet", "--short", "HEAD")


_OTHER_PLATFORMS = ("_MACOS", "_WINDOWS", "_IOS", "_PYODIDE", "_ANDROID")


def ci_cibuildwheel_env(top: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """The CIBW_* settings a project keeps in its CI instead of pyproject.toml: the literal values
    the cibuildwheel steps of `.github/workflows/*.yml` (workflow, job and step `env:`) and the
    jobs of `.gitlab-ci.yml` that run cibuildwheel (global and job `variables:`) set on Linux.
    Returns ({VAR: (value, where)}, notes): a value set from an expression (`${{ matrix.x }}`,
    `$VAR`) or differently by two steps is no single setting, and only named in the notes."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    def literal(value) -> str | None:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        return None

    sites: list[tuple[str, dict]] = []  # (file, the CIBW_* environment of one cibuildwheel run)
    notes: list[str] = []
    yaml = YAML(typ="safe")

    def load(path: Path):
        try:
            return yaml.load(path.read_text(encoding="utf-8", errors="replace"))
        except (YAMLError, OSError, ValueError) as e:
            notes.append(f"{path.relative_to(top)} not read ({str(e).splitlines()[0] if str(e) else e})")
            return None

    def cibw(mapping) -> dict:
        return {str(k): v for k, v in (mapping or {}).items() if str(k).startswith("CIBW_")} \
            if isinstance(mapping, dict) else {}

    workflows = sorted([*(top / ".github" / "workflows").glob("*.yml"), *(top / ".github" / "workflows").glob("*.yaml")])
    for path in workflows:
        wf = load(path)
        if not isinstance(wf, dict):
            continue
        for job in (wf.get("jobs") or {}).values():
            if not isinstance(job, dict):
                continue
            for step in job.get("steps") or []:
                if not isinstance(step, dict):
                    continue
                uses, run = str(step.get("uses", "")), str(step.get("run", ""))
                if not (uses.startswith("pypa/cibuildwheel@") or "cibuildwheel" in run):
                    continue
                sites.append((str(path.relative_to(top)), {**cibw(wf.get("env")), **cibw(job.get("env")),
                                                            **cibw(step.get("env"))}))
    gitlab = top / ".gitlab-ci.yml"
    if gitlab.is_file():
        ci = load(gitlab)
        if isinstance(ci, dict):
            for name, job in ci.items():
                if not isinstance(job, dict) or "script" not in job:
                    continue
                script = job["script"] if isinstance(job["script"], list) else [job["script"]]
                if any("cibuildwheel" in str(line) for line in script):
                    sites.append((".gitlab-ci.yml", {**cibw(ci.get("variables")), **cibw(job.get("variables"))}))
    # a run for another platform (CIBW_PLATFORM: pyodide, ios, ...) says nothing about Linux, nor
    # do the other platforms' variables
    sites = [(f, {k: v for k, v in env.items() if not k.endswith(_OTHER_PLATFORMS) and k != "CIBW_PLATFORM"})
             for f, env in sites if literal(env.get("CIBW_PLATFORM", "linux")) in ("linux", "auto")]
    found: dict[str, tuple[str, str]] = {}
    names = sorted({k for _, env in sites for k in env})
    for name in names:
        values = {(literal(env[name]), f) for f, env in sites if name in env}
        texts = {v for v, _ in values}
        where = ", ".join(sorted({f for _, f in values}))
        # GitHub expands only ${{ }} in env values; GitLab expands $VAR in variables
        expanded = any(v is not None and ("${{" in v or (f == ".gitlab-ci.yml" and "$" in v)) for v, f in values)
        if None in texts or expanded:
            notes.append(f"{name} in {where} is set from an expression (a value of the CI's own matrix or "
                         "variables), not one setting")
        elif len(texts) > 1:
            notes.append(f"{name} in {where} differs between cibuildwheel runs ({', '.join(sorted(map(repr, texts)))})")
        elif len({f for f, env in sites if name in env}) < len({f for f, _ in sites}) or \
                sum(name in env for _, env in sites) < len(sites):
            notes.append(f"{name} in {where} is set for some cibuildwheel runs only")
        else:
            found[name] = (texts.pop(), where)
    return found, notes
