"""Stage 4a, render: a Plan -> GitHub Actions and GitLab CI files, from the jinja2 templates in
`templates/`. Output is byte-stable: jobs are sorted, nothing depends on dict or file order."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ciwheels import __version__
from ciwheels.catalog import load_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import read_pyproject
from ciwheels.core.installspec import https_form
from ciwheels.core.resources import data_dir
from ciwheels.net.auth import registry_variables
from ciwheels.pipelines.plan import Job, Plan, job_json


@dataclass(frozen=True)
class Chunk:
    name: str
    jobs: tuple[dict, ...]
    timeout: int
    tags: tuple[str, ...] = ()
    image: str = ""  # the arch of the pipeline-built image its jobs build in (they need its job)


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


def _gl_branch_rule(value: object) -> str:
    """The rule `$CI_COMMIT_BRANCH == "BRANCH"` as a YAML scalar. Plain where the branch allows
    it; single-quoted when it holds what a plain scalar cannot (` #` starts a comment, `: ` a
    mapping: `release #1` would cut the rule to `$CI_COMMIT_BRANCH == "release`)."""
    rule = f"$CI_COMMIT_BRANCH == {_gl_expr(value)}"
    if re.search(r"[ \t]#|:[ \t]|:$|[\t]", rule):
        return "'" + rule.replace("'", "''") + "'"
    return rule


def _comment(value: object) -> str:
    """Text for a `#` comment line."""
    return _checked(value, "a pipeline comment")


def _environment():
    import jinja2


    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(gh=_gh, ghexpr=_gh_expr, gl=_gl, glvar=_gl_var, glexpr=_gl_expr, glbranch=_gl_branch_rule, comment=_comment)
    return env


def _actions(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """`uses:` values: the catalog's pins (actions.toml), each replaced by the matrix's
    `render: {actions: {KEY: "owner/repo@ref # comment"}}` when it names one."""
    import tomllib


    with open(data_dir("catalog") / "actions.toml", "rb") as f:
        data = tomllib.load(f)
    out = {key: f"{a['uses']}@{a['sha']}  # {a['version']}" for key, a in data.items()}
    for key, value in (overrides or {}).items():
        ref, _, comment = value.partition("#")
        out[key] = ref.strip() + (f"  # {comment.strip()}" if comment.strip() else "")
    return out


def install_requirement() -> tuple[str, str | None]:
    """(what CI jobs pip-install, a warning or None): the ciwheels running now, read from its
    PEP 610 direct_url.json, in a form a hosted runner can install. A VCS install pins its full
    commit (an ssh or scp-like origin in its https form: runners have no ssh key), an index
    install its version, a remote archive its URL and hash. A local folder, file or `git+file://`
    clone cannot be installed by CI: a git checkout with a remote pins its HEAD commit there
    (push it), anything else falls back to the version; both warn and name `render: {ciwheels: ...}`."""
    from importlib import metadata

    hint = ('name what CI installs with `render: {ciwheels: "ciwheels @ git+https://HOST/REPO@COMMIT"}` '
            "(or an index version) in the matrix")
    try:
        dist = metadata.distribution("ciwheels")
    except metadata.PackageNotFoundError:
        return f"ciwheels=={__version__}", f"ciwheels is not installed as a distribution; {hint}"
    text = dist.read_text("direct_url.json")
    if not text:
        return f"ciwheels=={dist.version}", None
    try:
        info = json.loads(text)
        url = info.get("url", "")
    except (ValueError, AttributeError):
        return f"ciwheels=={dist.version}", f"ciwheels' install record (direct_url.json) is unreadable; {hint}"
    sub = info.get("subdirectory")
    fragment = f"#subdirectory={sub}" if sub else ""
    if "vcs_info" in info and not url.startswith("file:"):
        vcs = info["vcs_info"]
        remote = https_form(url) if vcs.get("vcs") == "git" else url
        warning = None
        if remote is None:
            remote = url
            warning = (f"ciwheels was installed from {url}, which a hosted runner cannot clone (no ssh key, "
                       f"no https form known); {hint}")
        return f"ciwheels @ {vcs['vcs']}+{remote}@{vcs['commit_id']}{fragment}", warning
    if "archive_info" in info and not url.startswith("file:"):
        hashes = info["archive_info"].get("hashes") or {}
        digest = next(iter(sorted(hashes.items())), None)
        return f"ciwheels @ {url}" + (f"#{digest[0]}={digest[1]}" if digest else ""), None
    kind = "git clone" if "vcs_info" in info else "folder" if "dir_info" in info else "file"
    local = _local_git_pin(url) if kind != "file" else None
    if local:
        return local, (f"ciwheels runs from the local {kind} {url}, which CI cannot install; CI will install "
                       f"its origin at {local.rsplit('@', 1)[1]} (push that commit), or {hint}")
    return f"ciwheels=={dist.version}", (f"ciwheels runs from the local {kind} {url}, which CI cannot install; "
                                        f"the pipelines install ciwheels=={dist.version} from the package index "
                                        f"instead, which fails unless the index has that version: {hint}")


def _local_git_pin(url: str) -> str | None:
    import subprocess
    from urllib.parse import unquote, urlparse

    folder = unquote(urlparse(url).path)

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                                  check=True).stdout.strip() or None
        except (OSError, subprocess.CalledProcessError):
            return None

    remote, commit = git("remote", "get-url", "origin"), git("rev-parse", "HEAD")
    remote = https_form(remote) if remote else None
    if not (remote and commit):
        return None
    return f"ciwheels @ git+{remote}@{commit}"


# build backends and plugins that derive a project's version from git: the checkout needs the
# history and tags (GitHub fetch-depth: 0, GitLab GIT_DEPTH: 0)
_GIT_VERSIONING = ("setuptools-scm", "setuptools_scm", "hatch-vcs", "versioningit", "dunamai",
                   "poetry-dynamic-versioning", "setuptools-git-versioning", "pbr", "vcversioner", "uv-dynamic-versioning")


def versioned_from_git(project: Path) -> bool:
    """Whether the project's version comes from git: a versioning plugin among the build
    requirements, or its tool table (setuptools_scm, hatch's vcs source, pdm's scm source, ...)."""
    from packaging.requirements import InvalidRequirement, Requirement


    data = read_pyproject(project)

    for req in (data.get("build-system") or {}).get("requires") or []:
        try:
            name = Requirement(req).name.lower().replace("_", "-")
        except InvalidRequirement:
            continue
        if name in {n.replace("_", "-") for n in _GIT_VERSIONING}:
            return True
    tool = data.get("tool") or {}
    if any(k in tool for k in ("setuptools_scm", "setuptools-scm", "versioningit", "poetry-dynamic-versioning",
                               "setuptools-git-versioning", "uv-dynamic-versioning")):
        return True
    if ((tool.get("hatch") or {}).get("version") or {}).get("source") in ("vcs", "uv-dynamic-versioning"):
        return True
    if ((tool.get("pdm") or {}).get("version") or {}).get("source") == "scm":
        return True
    cfg = project / "setup.cfg"
    return cfg.is_file() and "use_scm_version" in cfg.read_text(encoding="utf-8", errors="replace")


def _job_view(job: Job) -> dict:
    return {
        "id": job.id,
        "github_runner": job.github_runner,
        "qemu_platform": job.qemu_platform,
        "qemu_arch": job.qemu_platform.split("/")[1] if job.qemu_platform else "",
        "pythons": job.pythons,
    }


def _image_view(image) -> dict:
    """What a build-images job needs (a builtimages.BuiltImage): the name below the registry
    (tagged by the recipe's digest), the `ciwheels image build` inputs and how to emulate the arch."""

    cat = load_catalog().arches[image.arch]
    qemu = cat.qemu_platform if cat.host != "x86_64" else ""
    return {"arch": image.arch, "name": image.name, "digest": image.digest, "qemu": qemu,
            "qemu_arch": qemu.split("/")[1] if qemu else "", "base": image.spec.base,
            "pythons": " ".join(image.pythons), "native_compilers": image.spec.native_compilers,
            "sysroot": image.spec.sysroot,
            "policy": image.spec.policy}


def _chunks(jobs: tuple[Job, ...], size: int, prefix: str, by_tags: bool) -> list[Chunk]:
    """Jobs in matrix chunks of at most `size`, apart by runner tags (GitLab) and by the
    pipeline-built image they need: only those jobs wait for (and depend on) its job."""
    groups: dict[tuple[tuple[str, ...], str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.gitlab_tags if by_tags else (), job.built_image), []).append(job)
    out = []
    for tags, image in sorted(groups):
        name = prefix + ("-" + re.sub(r"[^a-z0-9]+", "-", "-".join(tags).lower()).strip("-") if tags else "")
        name += f"-{image}-image" if image else ""
        group = groups[(tags, image)]
        parts = [group[i:i + size] for i in range(0, len(group), size)]
        for n, part in enumerate(parts, 1):
            out.append(Chunk(
                name=f"{name}-{n}" if len(parts) > 1 else name,
                jobs=tuple(_job_view(j) for j in part),
                timeout=max(j.timeout_minutes for j in part),
                tags=tags,
                image=image,
            ))
    return out


def registry_secrets(names: tuple[str, ...]) -> list[str]:
    """The GitHub secrets that carry each matrix registry's own credentials, in the variables
    ciwheels reads (net/auth.py: CIWHEELS_USERNAME_<NAME>, CIWHEELS_PASSWORD_<NAME>, sent to that
    registry's host only). A GitHub job sees a secret only where the workflow names it: without
    these, registries on several hosts could not all be published to. Two names that map to one
    variable (`fast-v3`, `fast_v3`) are one secret."""
    pairs = sorted({registry_variables(name) for name in names}, key=lambda pair: pair[1])
    return [var for pair in pairs for var in pair]


def header(plan: Plan, project_rel: str, matrix_rel: list[str]) -> str:
    command = "ciwheels render" + (f" --project {project_rel}" if project_rel != "." else "")
    _comment(command + " ".join(matrix_rel))
    # no ciwheels version here: the file is the same whoever renders it (CIWHEELS_SPEC says what CI runs)
    return (f"# Generated by ciwheels from {', '.join(matrix_rel)}. Do not edit by hand.\n"
            f"# Regenerate with: {command}\n"
            f"# {len(plan.jobs)} build jobs, {sum(len(j.cells) for j in plan.jobs)} cells.")


def render_plan(plan: Plan, project_rel: str, matrix_rel: list[str], *, default_branch: str = "main",
                fetch_depth: int = 1, ciwheels: str | None = None) -> dict[str, str]:
    """{path relative to the project: text} for every pipeline the settings ask for.
    `matrix_rel`: the matrix files relative to the repository top, for the header.
    `default_branch`, `fetch_depth`, `ciwheels`: what render_project read from the repository,
    the project and the running ciwheels, where the matrix does not say."""
    env = _environment()
    s = plan.settings
    branch = s.default_branch or default_branch
    push_branches = [branch] + ([s.publish_branch] if s.publish_branch and s.publish_branch != branch else [])
    common = {
        "header": header(plan, project_rel, matrix_rel),
        "settings": s,
        "project": project_rel,
        "actions": _actions(s.actions),
        "ciwheels_spec": s.ciwheels or ciwheels or f"ciwheels=={__version__}",
        "push_branches": push_branches,
        "fetch_depth": s.fetch_depth if s.fetch_depth is not None else fetch_depth,
        "publish_when": _comment("tags, schedules, manual runs" + (f" and pushes to {s.publish_branch}"
                                                                   if s.publish_branch else "")),
        "schedule_hint": _comment(f" (cron {s.schedule!r}, UTC)" if s.schedule else ""),
        "images": [_image_view(image) for image in plan.images],
        # scheduled/manual runs build `ciwheels plan --missing`: one build job per wave of `needs`
        "waves": sorted({j.wave for j in plan.jobs}) or [0],
        "planned_timeout": max((j.timeout_minutes for j in plan.jobs), default=120),
        "registry_secrets": registry_secrets(plan.registries),
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




def render_child(project, result, project_dir: Path) -> str:
    """The GitLab child pipeline of a scheduled or manual run: one job per planned job (known
    only at run time, which parallel:matrix cannot express), a stage per wave of `needs`, then
    gather, publish and the status page. With nothing to build, only the status page."""

    s = project.plan.settings
    jobs = [job_json(j) for j in result.plan.jobs]
    for j in jobs:
        j["gitlab_tags"] = j["gitlab-tags"]
        j["qemu_arch"] = j["qemu"].split("/")[1] if j["qemu"] else ""
        j["name"] = "build " + j["id"]
        _checked(j["name"], "a GitLab job name")
    import json

    return _environment().get_template("gitlab-child.yml.j2").render(
        settings=s, jobs=jobs, waves=sorted({j["wave"] for j in jobs}), built_images=bool(project.plan.images),
        versions=json.dumps(result.versions, sort_keys=True, separators=(",", ":")),
        python_image=f"python:{s.python}", header=f"# Generated by ciwheels {__version__} (ciwheels plan --missing "
        f"--gitlab-child) for this pipeline only.\n# {len(jobs)} build jobs.")
