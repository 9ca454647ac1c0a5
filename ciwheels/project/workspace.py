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
        raise CiwheelsError(f"no matrix files in {project / 'matrix'} (looked for *.yaml and *.yml)",
                            hint="run 'ciwheels init' to create one, or pass --matrix PATH")
    return found


def _yaml_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def setup_py_python_requires(content: str) -> str | None:
    """`python_requires="..."` of a top-level `setup(...)` call (or one under
    `if __name__ == "__main__":`) in setup.py, read as cibuildwheel reads it: a string
    literal only, nothing executed."""
    import ast

    try:
        tree = ast.parse(content)
    except (SyntaxError, ValueError):
        return None

    def calls(body):
        for node in body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                yield node.value
            elif isinstance(node, ast.If) and _is_main_test(node.test):
                yield from (n.value for n in node.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call))

    found = None
    for call in calls(tree.body):
        for kw in call.keywords:
            if kw.arg == "python_requires" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                found = kw.value.value
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
    import configparser

    value = (pyproject.get("project") or {}).get("requires-python")
    if value is not None:
        return str(value), "pyproject.toml"
    cfg = project / "setup.cfg"
    if cfg.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read(cfg, encoding="utf-8")
            if parser.has_option("options", "python_requires"):
                return parser.get("options", "python_requires"), "setup.cfg"
        except configparser.Error:
            pass
    setup_py = project / "setup.py"
    if setup_py.is_file():
        value = setup_py_python_requires(setup_py.read_text(encoding="utf-8", errors="replace"))
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
