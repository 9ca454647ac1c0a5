"""A project's cibuildwheel configuration ([tool.cibuildwheel] of pyproject.toml) read as
cibuildwheel reads it for Linux, and carried into matrix settings: the one reader that `ciwheels
init` (a project's own configuration -> matrix/wheels.yaml) and builder mode (each sdist's own
configuration -> a layer under the builder's settings) share. Pure: no files, no network."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from ciwheels.catalog import LIBC_PLATFORM
from ciwheels.core.errors import CiwheelsError, shorten
from ciwheels.matrix.load import validate_data
from ciwheels.matrix.model import Origin
from ciwheels.matrix.normalise import (
    MAPPING_KEYS,
    MAX_BRACE_EXPANSION,
    Layer,
    Selector,
    brace_patterns,
)
from ciwheels.matrix.schema import matrix_schema, settings_properties


def selects(patterns: str, identifier: str) -> bool:
    """cibuildwheel's selector_matches: whitespace-separated fnmatch globs with bash brace
    expansion (`cp3{9..15}-*`, `*{i686,aarch64}*`), through bracex as cibuildwheel does."""
    return any(fnmatch(identifier, p) for pat in patterns.split() for p in braces(pat))


def braces(pattern: str) -> tuple[str, ...]:
    """The expansion of one [tool.cibuildwheel] selector, with the matrix's bound."""
    patterns = brace_patterns(pattern)
    if patterns is None:

        raise CiwheelsError(f"[tool.cibuildwheel] selector {shorten(pattern)!r} expands to more than "
                            f"{MAX_BRACE_EXPANSION} patterns, the limit")
    return patterns


def as_str(value) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def commands(value) -> str:
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

def schema_has(catalog, key: str, where: str = "settings") -> bool:
    """Whether this ciwheels' matrix schema has `key` (a setting, or a selector key)."""

    schema = matrix_schema(catalog)
    if where == "settings":
        return key in schema["properties"]
    if where == "override":
        return key in schema["properties"]["overrides"]["items"]["properties"]
    select = schema["properties"]["overrides"]["items"]["properties"]["select"]
    return key in select.get("properties", {})


class Carry:
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
                env = environment_of(value)
                if env:
                    out["environment"] = env
            elif key in ("before-all", "before-build", "test-command"):
                if value not in ("", []):
                    out[key] = commands(value)
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
                continue  # resolved by inherited() before: the combined values are carried
            elif key in NOT_LINUX_OPTIONS:
                self.not_carried.append(f"{name} (not for Linux)")
                continue
            elif self.has_options:
                if key == "build-verbosity" and isinstance(value, str):
                    try:
                        value = int(value)  # cibuildwheel reads it with int(): "1" is 1
                    except ValueError:
                        pass  # the matrix schema says what is allowed, naming pyproject.toml
                options[key] = value
            else:
                self.not_carried.append(f"{name} (this ciwheels has no `cibuildwheel-options:`)")
                continue
            self.carried.append(name)
        if options:
            out["cibuildwheel-options"] = options
        return out, images

    def inherited(self, entry: dict, base: dict, where: str, matched: set | None = None,
                  earlier: list[tuple[set, set]] = ()) -> dict:
        """`entry` (an override, or the linux table over the top level) with its `inherit`
        rules applied the way cibuildwheel applies them, so the matrix carries the result:
        append/prepend combine the value with `base`'s (or cibuildwheel's default); `none`
        (the default) replaces, which ciwheels does too, but for `environment`, which ciwheels
        merges per variable. Warns only where the carried result differs from cibuildwheel's."""
        rules = entry.get("inherit") or {}
        if not isinstance(rules, dict):
            raise CiwheelsError(f"[tool.cibuildwheel] {where}inherit must be a table of option = "
                                '"none" | "append" | "prepend", as cibuildwheel reads it', value=rules)
        out = {k: v for k, v in entry.items() if k != "inherit"}
        for key, rule in rules.items():
            if rule not in ("none", "append", "prepend"):
                raise CiwheelsError(f"[tool.cibuildwheel] {where}inherit.{key}: unknown rule", value=rule,
                                    allowed=["none", "append", "prepend"])
            if rule == "none" or key not in entry:
                continue
            before = base.get(key, _INHERIT_DEFAULTS.get(key))
            combined = merged(key, *((before, entry[key]) if rule == "append" else (entry[key], before)))
            if combined is None:
                raise CiwheelsError(f"[tool.cibuildwheel] {where}inherit.{key} = {rule!r}: cibuildwheel cannot "
                                    f"merge {key} values (it stops with 'does not support inheritance')")
            if key == "environment" and rule == "prepend":
                combined = {**environment_of(entry[key]), **environment_of(before or {})}
            out[key] = combined
            self.carried.append(f"{where}inherit.{key} = {rule!r}")
            if matched is not None and any(key in keys and ids & matched for ids, keys in earlier):
                self.not_carried.append(
                    f"{where}inherit.{key} = {rule!r} (an earlier override also sets {key} for some of these "
                    "builds: cibuildwheel combines with that value, the matrix with the top-level one)")
        if matched is not None and "environment" in entry and rules.get("environment", "none") == "none":
            kept = sorted(set(environment_of(base.get("environment") or {})) - set(environment_of(entry["environment"])))
            if kept:
                self.not_carried.append(
                    f"{where}environment (cibuildwheel replaces the whole environment for these builds; the "
                    f"matrix merges per variable, so {', '.join(kept)} stay set: add inherit.environment = "
                    '"append" in pyproject.toml if that is what you mean)')
        return out


# cibuildwheel's Linux defaults of the options an `inherit` rule can extend (resources/defaults.toml)
_INHERIT_DEFAULTS = {"repair-wheel-command": "auditwheel repair -w {dest_dir} {wheel}"}
_COMMAND_OPTIONS = ("before-all", "before-build", "before-test", "test-command", "repair-wheel-command")
_LIST_OPTIONS = ("test-requires", "test-extras", "test-groups", "test-sources", "environment-pass", "build-requires")


def merged(key: str, before, after):
    """cibuildwheel's merge of an `inherit = {KEY = "append"}` value `after` onto `before`
    (OptionFormat.merge_values): commands joined with ' && ', lists concatenated, tables
    (environment, config-settings) per entry with the later one winning."""
    if before in (None, "", [], {}):
        return after
    if key == "environment":
        return {**environment_of(before), **environment_of(after)}
    if isinstance(before, dict) or isinstance(after, dict):
        return {**(before if isinstance(before, dict) else {}), **(after if isinstance(after, dict) else {})}
    if key in _COMMAND_OPTIONS:
        return f"{commands(before)} && {commands(after)}"
    if key in _LIST_OPTIONS:
        as_list = lambda v: [str(x) for x in v] if isinstance(v, list) else str(v).split()
        return as_list(before) + as_list(after)
    return None  # an option cibuildwheel cannot merge (it stops: "does not support inheritance")


def environment_of(value) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    try:
        words = shlex.split(str(value))
    except ValueError as e:  # "No closing quotation", "No escaped character"
        raise CiwheelsError(f"pyproject.toml: [tool.cibuildwheel] environment {str(value)[:200]!r} cannot be read "
                            f"as cibuildwheel reads it ({e})", hint="Balance its quotes") from None
    return dict(item.split("=", 1) for item in words if "=" in item)


def line_of(pyproject_text: str, key: str) -> int | None:
    """The first line of pyproject.toml that sets `key` (`key =`, `table.key =`, `{key = ...}`)
    inside or below [tool.cibuildwheel]; None when it cannot be found."""
    k = re.escape(key)
    pattern = re.compile(rf"^\s*(?:[\w.-]+\.)?{k}\s*=|[{{,]\s*{k}\s*=")
    lines = pyproject_text.splitlines()
    start = next((n for n, ln in enumerate(lines) if re.match(r"\s*\[+\s*tool\.cibuildwheel", ln)), 0)
    return next((n for n, ln in enumerate(lines[start:], start + 1) if pattern.search(ln)), None)


@dataclass
class LinuxOptions:
    """[tool.cibuildwheel] as cibuildwheel applies it to a Linux build: the top level with the
    linux table over it (its inherit rules applied), and the overrides still to apply."""

    options: dict
    overrides: list[dict]
    carry: Carry  # what the linux table's inherit rules carried
    report: list[str] = field(default_factory=list)  # platform tables left out


def linux_options(pyproject: dict, source: str, catalog) -> LinuxOptions:
    """The Linux view of a pyproject's [tool.cibuildwheel]; `source` names the file in errors."""
    tool = pyproject.get("tool") or {}
    table = (tool.get("cibuildwheel") if isinstance(tool, dict) else None) or {}
    if not isinstance(table, dict) or not isinstance(table.get("linux") or {}, dict) \
            or not isinstance(table.get("overrides") or [], list) \
            or not all(isinstance(o, dict) for o in table.get("overrides") or []):
        raise CiwheelsError(f"{source}: [tool.cibuildwheel] (and its linux table) must be tables and its "
                            "overrides a list of tables, as cibuildwheel reads them")
    table = dict(table)
    report = []
    for platform in NOT_LINUX_TABLES:
        if table.pop(platform, None) is not None:
            report.append(f"not carried: [tool.cibuildwheel.{platform}] (not for Linux)")
    linux = table.pop("linux", None) or {}
    overrides = table.pop("overrides", None) or []
    carry = Carry(catalog, list(catalog.arches), False)
    linux = carry.inherited(linux, table, "linux.")  # its inherit rules, applied
    return LinuxOptions({**table, **linux}, overrides, carry, report)  # the platform table wins


@dataclass
class Carried:
    """Matrix settings carried from cibuildwheel options: the top level's, its images, and the
    overrides as matrix `overrides` entries ({"select": {"identifier": ...}, **settings})."""

    settings: dict
    images: dict
    overrides: list[dict]
    carry: Carry
    report: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # of each carried override in [[overrides]]


def catalog_identifiers(catalog) -> list[str]:
    """Every Linux build identifier the catalog can build: an override is carried when it can
    apply to any of them (a cell added to the matrix later gets it, as cibuildwheel would give it)."""
    return [f"{py.id}-{LIBC_PLATFORM[libc]}_{arch}" for py in catalog.pythons.values() if py.status != "unavailable"
            for libc in LIBC_PLATFORM for arch in catalog.arches if py.available_on(libc, arch) is None]


def carry_options(options: dict, overrides: list[dict], identifiers: list[str], catalog,
                  from_ci: dict[str, str] | None = None) -> Carried:
    """Carry `options` (linux_options' result, CI variables applied) and `overrides` into matrix
    settings. `identifiers`: every build the selection allows on any arch, to tell an override
    that can never apply; `from_ci`: options the project's CI sets (they win over overrides)."""
    from_ci = from_ci or {}
    carry = Carry(catalog, list(catalog.arches), schema_has(catalog, "cibuildwheel-options"))
    settings, images = carry.settings(options, "")
    report: list[str] = []
    out = []
    has_identifier = schema_has(catalog, "identifier", where="select")
    earlier: list[tuple[set, set]] = []  # (identifiers, options) of the overrides carried before
    positions: list[int] = []
    for n, entry in enumerate(overrides):
        where = f"overrides[{n}]."
        select = as_str(entry.get("select", ""))
        matched = {i for i in identifiers if selects(select, i)}
        if not matched:
            report.append(f"not carried: {where[:-1]} (select {select!r} matches no Linux build on any arch)")
            continue
        if not has_identifier:
            report.append(f"not carried: {where[:-1]} (this ciwheels has no `identifier:` selector)")
            continue
        shadowed = sorted(k for k in entry if k in from_ci)
        if shadowed:  # cibuildwheel's environment variables win over every override
            entry = {k: v for k, v in entry.items() if k not in from_ci}
            report.append(f"{where[:-1]}: {', '.join(shadowed)} set by the CI ({', '.join(from_ci[k] for k in shadowed)}) "
                          "instead, as cibuildwheel reads it")
        entry = carry.inherited(entry, options, where, matched, earlier)
        values, over_images = carry.settings(entry, where)
        earlier.append((matched, set(values) | set(values.get("cibuildwheel-options", {}))))
        if over_images:
            if schema_has(catalog, "images", where="override"):
                values["images"] = over_images
            else:
                carry.not_carried += [f"{where}{key} image (this ciwheels has no images in overrides)"
                                      for key in over_images]
        if not values:
            continue
        pats = select.split()
        out.append({"select": {"identifier": pats[0] if len(pats) == 1 else pats}, **values})
        positions.append(n)
    return Carried(settings, images, out, carry, report, positions)


# -- builder mode: a package version's own configuration, from its sdist -----------------------
@dataclass(frozen=True)
class SdistConfig:
    """One package version's own cibuildwheel configuration, read from its sdist: the lowest
    layers of its cells' cascade (the builder's settings lie over them), the builds its
    selection leaves out, and what could not be carried."""

    source: str  # the archive, e.g. pyyaml-6.0.3.tar.gz
    top: Layer | None
    overrides: tuple[tuple[Selector, Layer], ...]
    drops: tuple[tuple[Selector, str, Origin], ...]  # (selector, reason, origin) of the cells it leaves out
    notes: tuple[str, ...]

    def settings(self) -> list[str]:
        """The settings it gives (`environment.VAR`, `cibuildwheel-options.OPTION`, `before-all`, ...)."""
        keys: dict[str, None] = {}
        for layer in ([self.top] if self.top else []) + [lay for _, lay in self.overrides]:
            keys.update((k, None) for k in layer.origins if k not in MAPPING_KEYS)
        return list(keys)

    def summary(self, notes: bool = True) -> str:
        given = self.settings()
        what = (f"settings from {self.source}: {', '.join(given)} (the matrix's lie over them)" if given
                else f"{self.source} sets no build settings")
        if self.drops:
            what += f"; it leaves out: {'; '.join(reason for _, reason, _ in self.drops)}"
        return what + "".join(f"; {note}" for note in self.notes if notes)

    @property
    def cell_notes(self) -> tuple[str, ...]:
        return (f"the package's own configuration: {self.summary()}",)


def _override_line(text: str, n: int, key: str) -> int | None:
    """The line of `key` in the n-th [[tool.cibuildwheel.overrides]] table of a pyproject.toml."""
    lines = text.splitlines()
    heads = [i for i, ln in enumerate(lines) if re.match(r"\s*\[\[\s*tool\.cibuildwheel\.overrides\s*\]\]", ln)]
    if n >= len(heads):
        return line_of(text, key)
    found = line_of("\n".join(["[tool.cibuildwheel]", *lines[heads[n] + 1:]]), key)
    return heads[n] + found if found else heads[n] + 1


MAX_SDIST_OVERRIDES = 200  # [[tool.cibuildwheel.overrides]] read from one sdist
MAX_SDIST_GLOBS = 5_000  # patterns its build/skip/override selectors expand to


def sdist_config(archive: str, files: dict[str, str], requires: tuple[str | None, str], catalog) -> SdistConfig:
    """The SdistConfig of an sdist's configuration files ({member: text}, read from the archive
    by build/sdist.py) and its requires-python (project/workspace.py requires_python_of). Hostile
    input: a setting the matrix schema refuses is left out with a note; an unreadable
    pyproject.toml is a CiwheelsError for the caller to turn into a warning."""
    file = f"{archive}/pyproject.toml"
    text = files.get("pyproject.toml", "")
    try:
        pyproject = tomllib.loads(text) if text else {}
    except tomllib.TOMLDecodeError as e:
        raise CiwheelsError(f"{file} is not valid TOML ({e}): its [tool.cibuildwheel] cannot be read") from None
    except RecursionError:
        raise CiwheelsError(f"{file} nests deeper than the TOML reader goes") from None
    view = linux_options(pyproject, file, catalog)
    # somebody else's file: its selectors are matched against every build the catalog knows, so
    # their number is bounded (real projects have a handful; PyPI's largest, a few dozen)
    if len(view.overrides) > MAX_SDIST_OVERRIDES:
        raise CiwheelsError(f"{file} has {len(view.overrides)} [[tool.cibuildwheel.overrides]], more than the "
                            f"{MAX_SDIST_OVERRIDES} ciwheels reads of an sdist")
    selectors = [as_str(o.get("select", "")) for o in view.overrides]
    selectors += [as_str(view.options.get(k, "")) for k in ("build", "skip")]
    globs = sum(len(braces(pat)) for sel in selectors for pat in sel.split())
    if globs > MAX_SDIST_GLOBS:
        raise CiwheelsError(f"{file}: its build, skip and override selectors expand to {globs} patterns, more than "
                            f"the {MAX_SDIST_GLOBS} ciwheels reads of an sdist")
    notes = list(view.report)
    carried = carry_options(view.options, view.overrides, catalog_identifiers(catalog), catalog)
    notes += carried.report
    notes += [f"not carried: {what}" for what in view.carry.not_carried + carried.carry.not_carried]
    notes += [f"not carried: {key} image {ref!r} (the builder's images: decide)" for key, ref in carried.images.items()]
    for key in ("archs", "enable"):
        if key in view.options:
            notes.append(f"not carried: {key} (the builder's python and arch axes decide what is built)")
    props = settings_properties(catalog)

    def origin(key: str, n: int | None) -> Origin:
        line = line_of(text, key.rpartition(".")[2]) if n is None else _override_line(text, n, key.rpartition(".")[2])
        where = "[tool.cibuildwheel]" if n is None else f"[[tool.cibuildwheel.overrides]][{n}]"
        return Origin("sdist", file, line, f"{where} {key}")

    def layer(values: dict, n: int | None) -> Layer | None:
        kept: dict = {}
        for key, value in values.items():
            if key in MAPPING_KEYS:
                subs = {}
                for sub, v in value.items():
                    schema = props[key].get("properties", {}).get(sub) or props[key].get("additionalProperties")
                    try:
                        if not isinstance(schema, dict):
                            raise CiwheelsError("the pinned cibuildwheel has no such option")
                        validate_data(v, schema, file, (key, sub), catalog)
                        if key == "environment" and not sub.isidentifier():
                            raise CiwheelsError("not a variable name")
                    except CiwheelsError as e:
                        notes.append(f"not carried: {key}.{sub} ({e.message})")
                        continue
                    subs[sub] = v
                if subs:
                    kept[key] = subs
                continue
            try:
                validate_data(value, props[key], file, (key,), catalog)
            except CiwheelsError as e:
                notes.append(f"not carried: {key} ({e.message})")
                continue
            kept[key] = value
        if not kept:
            return None
        origins = {key: origin(key, n) for key in kept}
        for key in MAPPING_KEYS:
            for sub in kept.get(key, {}):
                origins[f"{key}.{sub}"] = origin(f"{key}.{sub}", n)
        return Layer(archive if n is None else f"{archive} overrides[{n}]", kept, origins)

    overrides = []
    for entry, n in zip(carried.overrides, carried.positions):
        notes += [f"not carried: overrides[{n}] {key} image {ref!r} (the builder's images: decide)"
                  for key, ref in entry.get("images", {}).items()]
        values = {k: v for k, v in entry.items() if k not in ("select", "images")}
        got = layer(values, n)
        if got is not None:
            globs = entry["select"]["identifier"]
            globs = [globs] if isinstance(globs, str) else globs
            overrides.append((Selector({}, ("sdist", archive, "overrides", n),
                                       tuple(g for pat in globs for g in braces(pat))), got))
    drops = []
    build = as_str(view.options.get("build", "*")) or "*"
    skip = as_str(view.options.get("skip", ""))
    if build.split() != ["*"]:
        drops.append((Selector({}, ("sdist", archive, "build"), (), tuple(g for p in build.split() for g in braces(p))),
                      f"the sdist's own build selection leaves it out (build = {build!r})", origin("build", None)))
    if skip.split():
        drops.append((Selector({}, ("sdist", archive, "skip"), tuple(g for p in skip.split() for g in braces(p))),
                      f"the sdist's own configuration skips it (skip = {skip!r})", origin("skip", None)))
    value, where = requires
    if value:
        try:
            spec = SpecifierSet(value)
        except InvalidSpecifier:
            notes.append(f"requires-python {value!r} ({where}) is not a valid specifier; not applied")
        else:
            outside = frozenset(py.id for py in catalog.pythons.values()
                                if not spec.contains(Version(f"{py.version}.99"), prereleases=True))
            if outside:
                reason = (f"outside the package's requires-python {value!r} ({where} of {archive}): cibuildwheel "
                          "would skip it")
                drops.append((Selector({"python": outside}, ("sdist", archive, "requires-python")), reason,
                              Origin("sdist", f"{archive}/{where}", None, "requires-python")))
    return SdistConfig(archive, layer(carried.settings, None), tuple(overrides), tuple(drops), tuple(notes))
