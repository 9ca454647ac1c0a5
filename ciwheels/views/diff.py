"""`ciwheels diff`: what a matrix change means. Expands both sides (git revisions or paths)
and reports cells added, removed and changed (with the settings that changed), per-axis
summaries, and the effect on the rendered pipelines."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ciwheels.catalog import load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.matrix.load import load_files, load_matrix
from ciwheels.matrix.model import Cell
from ciwheels.net.gitlab import MARKER
from ciwheels.project.open import open_docs
from ciwheels.project.workspace import _yaml_in, find_matrix_files, repository_top

# settings compared for a cell present on both sides
_COMPARED = ("policy", "image", "custom_image", "environment", "cibw", "cibuildwheel", "patches", "runner",
             "timeout_minutes", "test_command", "test_requires", "before_all", "before_build", "build_requires",
             "cibuildwheel_options", "cross")
WORKTREE = "working tree"


@dataclass
class Side:
    label: str
    cells: dict[str, Cell]
    jobs: dict[str, object]


@dataclass
class Diff:
    base: str
    head: str
    added: list[Cell] = field(default_factory=list)
    removed: list[Cell] = field(default_factory=list)
    changed: list[tuple[Cell, Cell, list[tuple[str, object, object]]]] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    jobs_added: list[str] = field(default_factory=list)
    jobs_removed: list[str] = field(default_factory=list)
    emulated: tuple[int, int] = (0, 0)
    native: tuple[int, int] = (0, 0)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_json(self) -> dict:
        return {
            "base": self.base,
            "head": self.head,
            "added": [c.id for c in self.added],
            "removed": [c.id for c in self.removed],
            "changed": [{"id": new.id, "settings": [{"setting": k, "base": a, "head": b} for k, a, b in what]}
                        for _, new, what in self.changed],
            "summary": self.summary,
            "pipelines": {"jobs_added": self.jobs_added, "jobs_removed": self.jobs_removed,
                          "emulated_jobs": {"base": self.emulated[0], "head": self.emulated[1]},
                          "native_jobs": {"base": self.native[0], "head": self.native[1]}},
        }


def _git(project: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise CiwheelsError("git is not installed; pass two matrix paths instead of revisions") from None
    except subprocess.CalledProcessError as e:
        raise CiwheelsError(f"git {' '.join(args)} failed: {e.stderr.strip()}") from None


def _refuse_bare(project: Path) -> None:
    """A bare repository has no working tree and no matrix folder: a revision or a file named
    like one (HEAD, a branch) would be read as something it is not."""
    try:
        bare = subprocess.run(["git", "rev-parse", "--is-bare-repository"], cwd=project, capture_output=True,
                              text=True).stdout.strip()
    except (FileNotFoundError, NotADirectoryError):
        return
    if bare == "true":
        raise CiwheelsError(f"{project} is a bare git repository: it has no working tree to compare",
                            hint="Run ciwheels diff in a clone, or pass two matrix paths")


def default_base(project: Path) -> str:
    """The merge-base of HEAD with the default branch (origin's HEAD, else main or master)."""
    candidates = []
    try:
        ref = _git(project, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD").strip()
        candidates.append(ref)
    except CiwheelsError:
        pass
    candidates += ["origin/main", "origin/master", "main", "master"]
    for ref in candidates:
        try:
            return _git(project, "merge-base", "HEAD", ref).strip()
        except CiwheelsError:
            continue
    raise CiwheelsError("cannot find the default branch to compare with; name a BASE revision")


def find_matrix_files_or_none(project: Path) -> list[Path]:

    return _yaml_in(Path(project) / "matrix")


def _side(project: Path, spec: str | None, catalog) -> Side:
    """A side: None = the working tree; an existing path = matrix file(s); else a git revision."""

    if spec is None:
        if not find_matrix_files_or_none(project):
            return Side(WORKTREE, {}, {})
        docs = load_files(find_matrix_files(project), catalog, root=Path.cwd())
        label = WORKTREE
    elif Path(spec).exists():
        docs = load_files(find_matrix_files(project, (Path(spec),)), catalog, root=Path.cwd())
        label = spec
    else:

        top, rel = repository_top(Path(project))
        prefix = "" if rel == "." else rel + "/"
        try:
            rev = _git(project, "rev-parse", "--verify", "--quiet", spec + "^{commit}").strip()
        except CiwheelsError:
            raise CiwheelsError(f"{spec!r} is neither a matrix path nor a git revision of {top}") from None
        names, folders = [], []
        for entry in _git(project, "ls-tree", "-z", rev, f"{prefix}matrix/").split("\0"):
            meta, _, name = entry.partition("\t")
            if not name.endswith((".yaml", ".yml")):
                continue
            mode, kind = (meta.split() + ["", ""])[:2]
            # a matrix file is a file: a folder (tree), a link or a submodule named *.yaml is not read
            (names if kind == "blob" and mode in ("100644", "100755") else folders).append(name)
        if not names and folders:
            raise CiwheelsError(f"{spec}:{folders[0]} is not a file (a folder, a link or a submodule); "
                                f"{spec} has no matrix files")
        if not names:
            # the first pull request that adds a matrix: its base has none, which is an empty matrix
            return Side(spec, {}, {})
        docs = [load_matrix(n, catalog, display=f"{spec}:{n}", text=_git(Path(top), "show", f"{rev}:{n}"))
                for n in sorted(names)]
        label = spec
    opened = open_docs(Path(project), docs, catalog)
    return Side(label, {c.id: c for c in opened.expansion.cells}, {j.id: j for j in opened.plan.jobs})


def diff(project: Path, base: str | None, head: str | None) -> Diff:
    _refuse_bare(project)
    catalog = load_catalog()
    if base is None:
        base = default_base(project)
    a, b = _side(project, base, catalog), _side(project, head, catalog)
    d = Diff(a.label, b.label)
    d.added = [b.cells[i] for i in sorted(b.cells.keys() - a.cells.keys())]
    d.removed = [a.cells[i] for i in sorted(a.cells.keys() - b.cells.keys())]
    for cid in sorted(a.cells.keys() & b.cells.keys()):
        old, new = a.cells[cid].to_json(), b.cells[cid].to_json()
        what = [(k, old[k], new[k]) for k in _COMPARED if old[k] != new[k]]
        if what:
            d.changed.append((a.cells[cid], b.cells[cid], what))
    d.summary = _summaries(a, b)
    d.jobs_added = sorted(b.jobs.keys() - a.jobs.keys())
    d.jobs_removed = sorted(a.jobs.keys() - b.jobs.keys())
    d.emulated = tuple(sum(j.emulated for j in s.jobs.values()) for s in (a, b))
    d.native = tuple(sum(not j.emulated for j in s.jobs.values()) for s in (a, b))
    return d


def _platform(c: Cell) -> str:
    return f"{'manylinux' if c.libc == 'glibc' else 'musllinux'} {c.arch}"


def _summaries(a: Side, b: Side) -> list[str]:
    """Per-axis lines for a Python, platform or ISA level that appears or disappears entirely,
    e.g. "+cp315 on 6 platforms", "-musllinux riscv64 (8 cells)"; then the cell count."""
    out = []
    axes = (
        (lambda c: c.python, lambda c, n: f"{c.python} on {n} platform{'s' if n != 1 else ''}", _platform),
        (_platform, lambda c, n: f"{_platform(c)} ({n} cell{'s' if n != 1 else ''})", lambda c: c.id),
        (lambda c: f"{c.arch} {c.isa}", lambda c, n: f"{c.arch} {c.isa} ({n} cell{'s' if n != 1 else ''})",
         lambda c: c.id),
    )
    for key, describe, spread in axes:
        before: dict[str, list[Cell]] = defaultdict(list)
        after: dict[str, list[Cell]] = defaultdict(list)
        for c in a.cells.values():
            before[key(c)].append(c)
        for c in b.cells.values():
            after[key(c)].append(c)
        for sign, mine, theirs in (("+", after, before), ("-", before, after)):
            for value in sorted(mine.keys() - theirs.keys()):
                cells = mine[value]
                out.append(sign + describe(cells[0], len({spread(c) for c in cells})))
    out.append(f"{len(a.cells)} -> {len(b.cells)} cells")
    return out


def format_text(d: Diff, color: bool = False) -> str:
    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    lines = [f"matrix diff {d.base} -> {d.head}"]
    if d.empty:
        lines.append("no cell changes")
    lines += ["  " + paint(s, "32" if s.startswith("+") else "31" if s.startswith("-") else "1") for s in d.summary]
    if d.added:
        lines.append(paint(f"added ({len(d.added)}):", "32"))
        lines += [paint(f"  + {c.id}", "32") for c in d.added]
    if d.removed:
        lines.append(paint(f"removed ({len(d.removed)}):", "31"))
        lines += [paint(f"  - {c.id}", "31") for c in d.removed]
    if d.changed:
        lines.append(paint(f"changed ({len(d.changed)}):", "33"))
        for _, new, what in d.changed:
            lines.append(paint(f"  ~ {new.id}", "33"))
            lines += [f"      {k}: {_short(o)} -> {_short(n)}" for k, o, n in what]
    lines.append(_pipeline_line(d))
    return "\n".join(lines)


def _pipeline_line(d: Diff) -> str:
    return (f"pipelines: jobs +{len(d.jobs_added)} -{len(d.jobs_removed)}; emulated jobs {d.emulated[0]} -> "
            f"{d.emulated[1]}, native jobs {d.native[0]} -> {d.native[1]}")


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def format_markdown(d: Diff) -> str:
    lines = [MARKER, f"### ciwheels: matrix changes `{d.base}` → `{d.head}`", ""]
    if d.empty:
        lines.append("No build cells change.")
    else:
        lines.append(f"**{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed** cells.")
    lines.append("")
    lines += [f"- {s}" for s in d.summary]
    for title, cells, sign in (("Added", d.added, "+"), ("Removed", d.removed, "-")):
        if cells:
            lines += ["", f"<details><summary>{title} ({len(cells)})</summary>", "", "```diff"]
            lines += [f"{sign} {c.id}" for c in cells]
            lines += ["```", "</details>"]
    if d.changed:
        lines += ["", f"<details><summary>Changed ({len(d.changed)})</summary>", "",
                  "| cell | setting | before | after |", "|---|---|---|---|"]
        for _, new, what in d.changed:
            for k, o, n in what:
                lines.append(f"| `{new.id}` | {k} | `{_md(o)}` | `{_md(n)}` |")
        lines += ["", "</details>"]
    lines += ["", f"Pipelines: {len(d.jobs_added)} jobs added, {len(d.jobs_removed)} removed; "
              f"emulated jobs {d.emulated[0]} → {d.emulated[1]}, native jobs {d.native[0]} → {d.native[1]}."]
    return "\n".join(lines) + "\n"


def _md(value: object) -> str:
    return _short(value).replace("|", "\\|").replace("`", "'")


