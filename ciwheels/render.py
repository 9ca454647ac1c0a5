"""Stage 4a, render: a Plan -> GitHub Actions and GitLab CI files, from the jinja2 templates in
`templates/`. Output is byte-stable: jobs are sorted, nothing depends on dict or file order."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ciwheels import __version__
from ciwheels.errors import CiwheelsError
from ciwheels.plan import Job, Plan


@dataclass(frozen=True)
class Chunk:
    name: str
    jobs: tuple[dict, ...]
    timeout: int
    tags: tuple[str, ...] = ()


def _unsafe(text: str) -> str | None:
    """Why a value cannot be written into a pipeline file, or None. YAML parsers disagree on
    some characters (the libyaml family reads U+2028/U+2029 and NEL as line breaks, so a
    comment could end early and a rule appear from nowhere); control and format characters
    (bidirectional overrides, zero-width) hide what a reviewer reads; lone surrogates cannot be
    encoded at all. Every value that reaches a rendered file, comments included, passes here."""
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            name = unicodedata.name(ch, "") if cat != "Cs" else "a lone surrogate"
            return f"U+{ord(ch):04X}{' ' + name if name else ''}"
    return None


def _checked(value: object, where: str = "a pipeline") -> str:
    text = str(value)
    bad = _unsafe(text)
    if bad is not None:
        shown = text.encode("unicode_escape").decode("ascii")
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        raise CiwheelsError(f"the value '{shown}' contains {bad}, which YAML parsers read differently or a "
                            f"reviewer cannot see; ciwheels refuses to write it into {where}")
    return text


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar that every parser reads back as `text` (checked first)."""
    return '"' + _checked(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _refusing(value: object, forbidden: str, consequence: str) -> str:
    """`value` as a YAML double-quoted scalar, unless it holds `forbidden`."""
    text = _checked(value)
    if forbidden in text:
        raise CiwheelsError(f"the value {text!r} contains {forbidden!r}, which {consequence}; "
                            "ciwheels refuses to write it into a pipeline")
    return _quoted(text)


def _gh(value: object) -> str:
    """A YAML scalar that GitHub will not evaluate as an expression."""
    return _refusing(value, "${{", "GitHub Actions would evaluate as an expression")


def _gh_expr(value: object) -> str:
    """A string literal inside a GitHub expression."""
    text = _checked(value)
    if "${{" in text or "}}" in text:
        raise CiwheelsError(f"the value {text!r} cannot appear inside a GitHub expression")
    return "'" + text.replace("'", "''") + "'"


def _gl(value: object) -> str:
    """A YAML scalar for GitLab fields where `$` would expand a variable (tags, images)."""
    return _refusing(value, "$", "GitLab would expand as a variable")


def _gl_var(value: object) -> str:
    """A value under `variables:`: `$$` is GitLab's literal dollar."""
    return _quoted(_checked(value).replace("$", "$$"))


def _gl_expr(value: object) -> str:
    """A string literal inside a GitLab rules expression: written as the characters themselves
    (GitLab compares the text between the quotes literally: an escape would never match)."""
    text = _checked(value)
    if re.search(r'["$\\\n]', text):
        raise CiwheelsError(f"the value {text!r} cannot appear inside a GitLab rules expression")
    return '"' + text + '"'


def _comment(value: object) -> str:
    """Text for a `#` comment line."""
    return _checked(value, "a pipeline comment")


def _environment():
    import jinja2

    from ciwheels.resources import data_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(gh=_gh, ghexpr=_gh_expr, gl=_gl, glvar=_gl_var, glexpr=_gl_expr, comment=_comment)
    return env


def _actions() -> dict[str, str]:
    import tomllib

    from ciwheels.resources import data_dir

    with open(data_dir("catalog") / "actions.toml", "rb") as f:
        data = tomllib.load(f)
    return {key: f"{a['uses']}@{a['sha']}  # {a['version']}" for key, a in data.items()}


def _job_view(job: Job) -> dict:
    return {
        "id": job.id,
        "github_runner": job.github_runner,
        "qemu_platform": job.qemu_platform,
        "qemu_arch": job.qemu_platform.split("/")[1] if job.qemu_platform else "",
        "pythons": job.pythons,
    }


def _image_view(arch: str) -> dict:
    from ciwheels.catalog import load_catalog
    from ciwheels.image import image_tag

    qemu = load_catalog().arches[arch].qemu_platform if load_catalog().arches[arch].host != "x86_64" else ""
    return {"arch": arch, "name": image_tag(arch).removeprefix("localhost/"), "qemu": qemu,
            "qemu_arch": qemu.split("/")[1] if qemu else ""}


def _chunks(jobs: tuple[Job, ...], size: int, prefix: str, by_tags: bool) -> list[Chunk]:
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.gitlab_tags if by_tags else (), []).append(job)
    out = []
    for tags in sorted(groups):
        name = prefix + ("-" + re.sub(r"[^a-z0-9]+", "-", "-".join(tags).lower()).strip("-") if tags else "")
        group = groups[tags]
        parts = [group[i:i + size] for i in range(0, len(group), size)]
        for n, part in enumerate(parts, 1):
            out.append(Chunk(
                name=f"{name}-{n}" if len(parts) > 1 else name,
                jobs=tuple(_job_view(j) for j in part),
                timeout=max(j.timeout_minutes for j in part),
                tags=tags,
            ))
    return out


def header(plan: Plan, project_rel: str, matrix_rel: list[str]) -> str:
    command = "ciwheels render" + (f" --project {project_rel}" if project_rel != "." else "")
    _comment(command + " ".join(matrix_rel))
    return (f"# Generated by ciwheels {__version__} from {', '.join(matrix_rel)}. Do not edit by hand.\n"
            f"# Regenerate with: {command}\n"
            f"# {len(plan.jobs)} build jobs, {sum(len(j.cells) for j in plan.jobs)} cells.")


def render_plan(plan: Plan, project_rel: str, matrix_rel: list[str]) -> dict[str, str]:
    """{path relative to the project: text} for every pipeline the settings ask for.
    `matrix_rel`: the matrix files relative to the repository top, for the header."""
    env = _environment()
    s = plan.settings
    common = {
        "header": header(plan, project_rel, matrix_rel),
        "settings": s,
        "project": project_rel,
        "actions": _actions(),
        "publish_when": _comment("tags, schedules" + (f" and pushes to {s.publish_branch}" if s.publish_branch
                                                      else "")),
        "schedule_hint": _comment(f" (cron {s.schedule!r}, UTC)" if s.schedule else ""),
        "images": [_image_view(arch) for arch in s.build_images],
    }
    out = {}
    if s.github:
        chunks = _chunks(plan.jobs, s.defaults["github-max-matrix"], "build", by_tags=False)
        out[s.github] = env.get_template("github.yml.j2").render(chunks=chunks, **common)
    if s.gitlab:
        chunks = _chunks(plan.jobs, s.defaults["gitlab-max-parallel"], "ciwheels-build", by_tags=True)
        gitlab_path = str(Path(project_rel) / s.gitlab) if project_rel != "." else s.gitlab
        out[s.gitlab] = env.get_template("gitlab.yml.j2").render(
            chunks=chunks, gitlab_path=_comment(gitlab_path), python_image=f"python:{s.python}",
            matrix_glob=(f"{project_rel}/" if project_rel != "." else "") + "matrix/**/*", **common)
    return out


def render_project(project: Path, matrix_paths: tuple[Path, ...] = ()) -> tuple[Plan, dict[Path, str]]:
    """Open, plan and render a project: {absolute output path: text}. Output paths are confined
    to the project: `render: {github: ...}` cannot name a file outside it."""
    from ciwheels.pipeline import open_project
    from ciwheels.project import repository_top

    opened = open_project(project, matrix_paths)
    top, project_rel = repository_top(project)
    matrix_rel = []
    for f in opened.files:
        try:
            matrix_rel.append(f.resolve().relative_to(top).as_posix())
        except ValueError:
            matrix_rel.append(f.resolve().as_posix())
    outputs = render_plan(opened.plan, project_rel, matrix_rel)
    root = project.resolve()
    confined = {}
    for rel, text in sorted(outputs.items()):
        target = (project / rel).resolve()
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not target.is_relative_to(root) or target == root:
            raise CiwheelsError(f"render: the output path {rel!r} (set in {opened.plan.settings.origin or 'defaults'}) "
                                f"leaves the project {project}; give a path inside it, e.g. "
                                ".github/workflows/ciwheels.yml")
        confined[project / rel] = text
    return opened.plan, confined
