"""Stage 2, normalise: validated matrix documents -> a typed spec.

Every canonicalisation (aliases such as `amd64` or `"3.12"`, ISA level spellings, project
names) and every semantic error that needs no cross product happens here, once: a level of
another arch, a policy of the wrong libc, an unknown arch in an `images` key, duplicates on an
axis, two definitions of one registry, render settings in two files. Later stages receive
canonical names and typed entries and never read the raw YAML again."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import bracex
from packaging.utils import canonicalize_name

from ciwheels.catalog import Catalog, variant_arches
from ciwheels.catalog.images import base_glibc, image_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.installspec import unreachable
from ciwheels.core.versions import is_version
from ciwheels.matrix.load import MatrixDoc, Path_, describe_path, validate_data
from ciwheels.matrix.model import Origin, Registry, Runner
from ciwheels.matrix.schema import settings_properties
from ciwheels.net.auth import registry_variables

SETTING_KEYS = ("environment", "test-command", "test-requires", "before-all", "before-build",
                "build-requires", "timeout-minutes", "cibuildwheel-options", "native-compilers",
                "cross")
MAPPING_KEYS = ("environment", "cibuildwheel-options")  # settings whose entries have origins of their own
# environment variables a setting of its own writes (cibwopts.py): naming them is an error that says which
OWNED_VARIABLES = {"CIWHEELS_NATIVE_COMPILERS": "native-compilers: false", "CIWHEELS_CROSS_BUILD": "cross: true|false"}
MAX_BRACE_EXPANSION = 1000  # selector globs with braces expand to at most this many patterns


@functools.cache
def brace_patterns(pattern: str) -> tuple[str, ...] | None:
    """cibuildwheel's selector syntax, `cp3{9..13}-*` or `*-{many,musl}linux*`, expanded as
    cibuildwheel does (bracex); None when it expands to more than MAX_BRACE_EXPANSION patterns
    (`{1..999999999}` would never end). Used for matrix selectors and by init."""
    try:
        return tuple(bracex.expand(pattern, limit=MAX_BRACE_EXPANSION))
    except bracex.ExpansionLimitException:
        return None


@dataclass(frozen=True)
class Selector:
    """A partial match on a cell's attributes: every key given must match one of its values."""

    values: dict[str, frozenset[str]]
    path: Path_
    identifier: tuple[str, ...] = ()  # globs over the cibuildwheel identifier, braces expanded
    not_identifier: tuple[str, ...] = ()  # globs the identifier must match none of (cibuildwheel's `build`)

    def matches(self, attrs: dict[str, str]) -> bool:
        for key, wanted in self.values.items():
            if attrs.get(key) not in wanted:
                return False
        if self.not_identifier and any(fnmatchcase(attrs["identifier"], g) for g in self.not_identifier):
            return False
        if self.identifier:
            return any(fnmatchcase(attrs["identifier"], g) for g in self.identifier)
        return True


@dataclass(frozen=True)
class Layer:
    """One layer of the settings cascade (resolve.py): the settings one place sets, each with
    its origin (`environment.VAR` for a variable)."""

    name: str
    values: dict[str, Any]
    origins: dict[str, Origin] = field(compare=False)


@dataclass(frozen=True)
class ImageSpec:
    ref: str
    policy: str | None  # declared policy of a custom image
    origin: Origin
    policy_origin: Origin | None
    pythons: tuple[str, ...] | None = None  # declared Pythons the image carries (None: not declared)
    key: str = ""  # the `images:` key, e.g. riscv64-glibc
    sysroot: str = ""  # a pipeline-built image's sysroot (render.build-images), "" for others
    sysroot_origin: Origin | None = None


@dataclass(frozen=True)
class CibwSpec:
    spec: str
    patches: tuple[str, ...]
    origin: Origin


@dataclass(frozen=True)
class Include:
    python: str
    libc: str
    arch: str
    isa: str
    isa_given: bool
    policy: str | None
    origin: Origin
    path: Path_
    layer: Layer


@dataclass(frozen=True)
class VersionSelection:
    """`versions: latest` or `{spec, newest, min-age-days, pre}`: resolved against the package
    index (builder/upstream.py) before expansion."""

    spec: str = ""
    newest: int | None = None
    min_age_days: float = 0.0
    pre: bool = False


@dataclass(frozen=True)
class Package:
    name: str  # canonical (PEP 503)
    versions: tuple[str, ...]  # () until a selection is resolved
    path: Path_
    layer: Layer
    excludes: tuple[Selector, ...]
    selection: VersionSelection | None = None  # None: `versions` is the list the matrix gives
    needs: tuple[str, ...] = ()  # canonical names of packages whose jobs go first
    upstream_wheels: str = "skip"  # skip | build: a cell the package index has a wheel for
    sdist_config: bool = True  # start from the sdist's own cibuildwheel configuration (cibwconfig.SdistConfig)


@dataclass(frozen=True)
class KnownFailure:
    selector: Selector
    reason: str


@dataclass
class MatrixSpec:
    """One matrix file, normalised."""

    doc: MatrixDoc
    pythons: list[tuple[str, Origin]]
    libcs: list[str]
    libc_origin: Origin
    arches: list[str]
    arch_origin: Origin
    isa: dict[str, list[tuple[str, Origin]]]
    policies: dict[str, tuple[str, Origin]]  # libc -> requested policy
    images: dict[tuple[str, str], ImageSpec]  # (arch, libc) -> image
    cibuildwheel: CibwSpec
    runners: dict[str, tuple[Runner, Origin]]
    excludes: list[Selector]
    overrides: list[tuple[Selector, Layer]]
    includes: list[Include]
    packages: list[Package]
    known_failures: list[KnownFailure]
    registry_selectors: list[tuple[str, Selector | None]]  # selecting ones first, then catch-alls
    top: Layer
    warnings: list[str]
    variants: frozenset[str] = frozenset()  # arches whose levels above the baseline are variant wheels
    variants_origin: Origin | None = None
    # builder mode: (package, version) -> its sdist's own configuration (cibwconfig.SdistConfig),
    # read by project/open.py before expansion; absent: the builder's settings alone
    sdist: dict[tuple[str, str], Any] = field(default_factory=dict)
    # the images of `overrides` entries (same order; {} for an entry without images)
    override_images: list[dict[tuple[str, str], ImageSpec]] = field(default_factory=list)

    @property
    def file(self) -> str:
        return self.doc.file


@dataclass(frozen=True)
class BuildImageSpec:
    """One arch of `render: {build-images: ...}`: the recipe inputs the matrix gives (its Pythons
    come from the cells, see builtimages.py) and the policy its wheels get."""

    arch: str
    base: str  # an image reference
    native_compilers: bool
    policy: str  # the manylinux policy of the sysroot's glibc, or without one the base's
    origin: Origin
    policy_origin: Origin
    sysroot: str = "none"  # the old glibc extensions compile against (images.toml [sysroots]) or "none"
    sysroot_origin: Origin | None = None


@dataclass(frozen=True)
class RenderSettings:
    github: str | None
    gitlab: str | None
    schedule: str | None
    publish_branch: str | None
    python: str
    ciwheels: str | None  # None: the install of the running ciwheels (render.install_requirement)
    matrix_diff: bool
    build_images: tuple[BuildImageSpec, ...]  # sorted by arch
    defaults: dict[str, Any]
    origin: str  # which matrix file set them ("" = defaults)
    default_branch: str | None = None  # None: read from the repository when rendering
    actions: dict[str, str] = field(default_factory=dict)  # pins overriding actions.toml
    fetch_depth: int | None = None  # None: 0 for projects versioned from git, else 1
    submodules: bool | str = False
    emulated_jobs: str = "per-cell"
    tag_publish: str = "all-or-nothing"  # or "what-built": a tag publishes what built


@dataclass
class ProjectSpec:
    """Everything the matrix files say, typed: one MatrixSpec per file plus what is project-wide."""

    matrices: list[MatrixSpec]
    registries: dict[str, Registry]
    render: RenderSettings
    defaults: Layer  # layer 0 of the cascade: defaults.toml [settings]
    github_runner: str
    built_images: dict[str, Any] = field(default_factory=dict)  # arch -> builtimages.BuiltImage

    @property
    def warnings(self) -> list[str]:
        return [w for m in self.matrices for w in m.warnings]


def normalise(docs: list[MatrixDoc], catalog: Catalog) -> ProjectSpec:
    spec = ProjectSpec(
        matrices=[_Normaliser(doc, catalog).run() for doc in docs],
        registries=registries_of(docs),
        render=render_settings(docs, catalog),
        defaults=defaults_layer(catalog),
        github_runner=str(catalog.defaults["render"]["github-runner"]),
    )
    _give_built_images(spec)
    return spec


def _give_built_images(spec: ProjectSpec) -> None:
    """The glibc cells of an arch in `render: {build-images}` build in that image: an image
    entry of its own per matrix file, with the base's policy. Its reference names the recipe's
    digest, which needs the cells' Pythons: until builtimages.py knows them, a placeholder."""
    for built in spec.render.build_images:
        for m in spec.matrices:
            own = m.images.get((built.arch, "glibc"))
            if own is not None:
                raise CiwheelsError(
                    f"images names {own.ref!r} for {built.arch}-glibc, but {built.origin.file}:{built.origin.line} "
                    f"(render.build-images) has the pipelines build that image; remove one of the two",
                    file=own.origin.file, line=own.origin.line, value=own.ref)
            m.images[(built.arch, "glibc")] = ImageSpec(f"ciwheels-manylinux-{built.arch}:pending", built.policy,
                                                        built.origin, built.policy_origin, sysroot=built.sysroot,
                                                        sysroot_origin=built.sysroot_origin)


def defaults_layer(catalog: Catalog) -> Layer:
    """defaults.toml's [settings], validated with the schema a matrix's settings have."""
    schema = {"type": "object", "properties": settings_properties(catalog), "additionalProperties": False}
    file = str(catalog.path / "defaults.toml")
    values = validate_data(catalog.defaults.get("settings", {}), schema, file, ("settings",), catalog)
    origins = {key: Origin("catalog", detail=f"defaults.toml {key}") for key in values}
    origins.update({f"{key}.{sub}": Origin("catalog", detail=f"defaults.toml {key}.{sub}")
                    for key in MAPPING_KEYS for sub in values.get(key, {})})
    return Layer("defaults.toml", values, origins)


def registries_of(docs: list[MatrixDoc]) -> dict[str, Registry]:
    """The registries the matrix files name, in file order; one name means one registry."""
    out: dict[str, Registry] = {}
    for doc in docs:
        for name, reg in doc.data.get("registries", {}).items():
            _, line, _ = doc.where(("registries", name))
            entry = Registry(name, reg["url"].rstrip("/"), reg.get("index", ""), "select" not in reg,
                             Origin("matrix", doc.file, line, f"registries.{name}"))
            if name in out and out[name] != entry:
                raise doc.error(("registries", name), f"registry {name!r} is defined twice, differently")
            # its credentials' variables (CIWHEELS_PASSWORD_<NAME>) name one registry only: else one
            # registry's token would be sent to the other's host
            twin = next((n for n in out if n != name and registry_variables(n) == registry_variables(name)), None)
            if twin is not None:
                raise doc.error(("registries", name), f"registries {twin!r} and {name!r} would share the credential "
                                f"variables {' and '.join(registry_variables(name))}; rename one (names that differ only "
                                "in case or in characters other than letters and digits map to the same variables)")
            out.setdefault(name, entry)
    return out


def render_settings(docs: list[MatrixDoc], catalog: Catalog) -> RenderSettings:
    defaults = dict(catalog.defaults["render"])
    chosen: dict[str, Any] = {}
    origin = ""
    for doc in docs:
        section = doc.data.get("render")
        if section is None:
            continue
        if origin:
            raise doc.error(("render",), f"render settings are already given in {origin}; "
                            "keep them in one matrix file")
        origin = doc.file
        chosen = section

    def path(key: str) -> str | None:
        value = chosen.get(key, defaults[key])
        return None if value is False else value

    if chosen.get("ciwheels") is not None:
        why = unreachable(str(chosen["ciwheels"]))
        if why:
            doc = next(d for d in docs if d.file == origin)
            raise doc.error(("render", "ciwheels"), f"render.ciwheels: the CI jobs pip-install this requirement, "
                            f"and {why}; name one a hosted runner can install: an index version "
                            '("ciwheels==X.Y"), "ciwheels @ git+https://HOST/REPO@COMMIT", or a path relative to '
                            "the repository", value=chosen["ciwheels"])

    return RenderSettings(
        github=path("github"),
        gitlab=path("gitlab"),
        schedule=chosen.get("schedule"),
        publish_branch=path("publish-branch"),
        python=chosen.get("python", defaults["python"]),
        ciwheels=chosen.get("ciwheels"),
        matrix_diff=chosen.get("matrix-diff", True),
        build_images=build_image_specs(chosen.get("build-images"), next((d for d in docs if d.file == origin), None),
                                       catalog),
        defaults=defaults,
        origin=origin,
        default_branch=chosen.get("default-branch"),
        actions=dict(chosen.get("actions", {})),
        fetch_depth=chosen.get("fetch-depth"),
        submodules=chosen.get("submodules", False),
        emulated_jobs=chosen.get("emulated-jobs", "per-cell"),
        tag_publish=chosen.get("tag-publish", "all-or-nothing"),
    )


def build_image_specs(value: list | dict | None, doc: MatrixDoc | None, catalog: Catalog) -> tuple[BuildImageSpec, ...]:
    """`render: {build-images: [ARCH, ...]}` or `{ARCH: {base, policy, native-compilers, sysroot}}`:
    the base defaults to Debian's suite of the image catalog (the recipe offline); the sysroot to
    the arch's default there (riscv64: bullseye); the policy to the one the sysroot's glibc allows,
    or without a sysroot the base's (bases.toml)."""
    if not value or doc is None:
        return ()

    images = image_catalog()
    glibc_of = base_glibc()
    entries = {arch: {} for arch in value} if isinstance(value, list) else value
    out = {}
    for i, (arch, entry) in enumerate(entries.items()):
        path: Path_ = ("render", "build-images", i if isinstance(value, list) else arch)
        _, line, _ = doc.where(path)
        origin = Origin("matrix", doc.file, line, describe_path(path))
        base = entry.get("base", f"debian:{images['suite']}")
        # the sysroot extensions compile against: the matrix's, else the arch's default (images.toml);
        # its glibc is what the wheels then need
        sysroots = [n for n, s in images.get("sysroots", {}).items() if arch in s.get("debs", {})] + ["none"]
        if "sysroot" in entry:
            sysroot = entry["sysroot"]
            _, sline, _ = doc.where(path + ("sysroot",))
            sysroot_origin = Origin("matrix", doc.file, sline, describe_path(path + ("sysroot",)))
            if sysroot not in sysroots:
                raise doc.error(path + ("sysroot",), f"render.build-images.{arch}.sysroot: the image catalog has no "
                                f"{sysroot!r} sysroot for {arch}", value=sysroot, allowed=sysroots)
        else:
            sysroot = images["arches"].get(arch, {}).get("sysroot", "none")
            sysroot_origin = Origin("catalog", detail=f"images.toml arches.{arch}.sysroot" if sysroot != "none"
                                    else f"images.toml: no sysroot for {arch}")
        if "policy" in entry:
            policy = catalog.policy_alias(entry["policy"])
            _, pline, _ = doc.where(path + ("policy",))
            policy_origin = Origin("matrix", doc.file, pline, describe_path(path + ("policy",)))
        elif sysroot != "none" and sysroot in images.get("sysroots", {}):  # extensions compile against it
            glibc = images["sysroots"][sysroot]["glibc"]
            policy = _glibc_policy(catalog, glibc)
            where = sysroot_origin if sysroot_origin.kind == "matrix" else origin
            policy_origin = Origin("matrix", doc.file, where.line, f"{where.detail}: glibc {glibc} of the "
                                   f"{sysroot} sysroot")
        else:
            glibc = glibc_of.get(base)
            if glibc is None:
                raise doc.error(path + (("base",) if "base" in entry else ()),
                                f"render.build-images.{arch}: ciwheels does not know the glibc of the base {base!r}, "
                                "so not the manylinux policy of the image's wheels; add it as "
                                f"{{base: {base}, policy: manylinux_X_Y}} (X.Y: the base's glibc, `ldd --version`)",
                                value=base, allowed=sorted(glibc_of))
            policy = _glibc_policy(catalog, glibc)
            policy_origin = Origin("matrix", doc.file, line, f"{describe_path(path)}: glibc {glibc} of {base}")
        out[arch] = BuildImageSpec(arch, base, bool(entry.get("native-compilers", True)), policy, origin,
                                   policy_origin, sysroot, sysroot_origin)
    return tuple(out[a] for a in sorted(out))


def _glibc_policy(catalog: Catalog, glibc: str) -> str:
    """The newest manylinux policy of the catalog that a glibc satisfies."""
    def key(version: str) -> tuple[int, ...]:
        return tuple(int(x) for x in version.split("."))

    fitting = [p for p in catalog.policies.values() if p.libc == "glibc" and key(p.version) <= key(glibc)]
    return max(fitting, key=lambda p: key(p.version)).name


class _Normaliser:
    def __init__(self, doc: MatrixDoc, catalog: Catalog) -> None:
        self.doc = doc
        self.cat = catalog
        self.warnings: list[str] = []

    def origin(self, path: Path_, detail: str | None = None) -> Origin:
        _, line, _ = self.doc.where(path)
        return Origin("matrix", self.doc.file, line, detail or describe_path(path))

    def warn(self, path: Path_, text: str) -> None:
        file, line, _ = self.doc.where(path)
        self.warnings.append(f"{file}:{line}: {text}" if line else f"{file}: {text}")

    # -- canonical names ---------------------------------------------------------------
    def canon(self, kind: str, value: str, path: Path_, arch: str | None = None) -> str:
        cat = self.cat
        if kind == "python":
            found, allowed = cat.python_alias(value), list(cat.pythons)
        elif kind == "arch":
            found, allowed = cat.arch_alias(value), list(cat.arches)
        elif kind == "policy":
            found, allowed = cat.policy_alias(value), list(cat.policies)
        elif kind == "isa":
            if arch is None:
                found = next((f for a in cat.arches if (f := cat.level_alias(a, value))), None)
                allowed = list(cat.levels)
            else:
                found = cat.level_alias(arch, value)
                allowed = [lv.name for lv in cat.arches[arch].levels]
                if found is None:
                    other = next((lv for lv in cat.levels.values() if value == lv.name or value in lv.aliases), None)
                    if other is not None:
                        raise self.doc.error(path, f"ISA level {value!r} belongs to {other.arch}, not {arch}",
                                             value=value, allowed=allowed)
        else:
            found, allowed = (value if value in ("glibc", "musl") else None), ["glibc", "musl"]
        if found is None:
            what = "ISA level" if kind == "isa" else kind
            raise self.doc.error(path, f"unknown {what} {value!r} in {describe_path(path)}", value=value,
                                 allowed=allowed)
        return found

    def policy_for(self, libc: str, value: str, path: Path_) -> str:
        pol = self.canon("policy", value, path)
        if self.cat.policies[pol].libc != libc:
            raise self.doc.error(path, f"policy {pol!r} is for {self.cat.policies[pol].libc}, not {libc}", value=pol,
                                 allowed=[p.name for p in self.cat.policies.values() if p.libc == libc])
        return pol

    def axis(self, name: str, values: list[str], path: Path_) -> list[str]:
        out = [self.canon(name, v, path + (i,)) for i, v in enumerate(values)]
        seen: set[str] = set()
        for i, v in enumerate(out):
            if v in seen:
                raise self.doc.error(path + (i,), f"{describe_path(path)} lists {v!r} twice")
            seen.add(v)
        return out

    def selector(self, entry: dict, path: Path_) -> Selector:
        out = {}
        globs: list[str] = []
        not_globs: list[str] = []
        for key, value in entry.items():
            values = value if isinstance(value, list) else [value]
            sub = [path + (key, i) if isinstance(value, list) else path + (key,) for i in range(len(values))]
            if key in ("identifier", "not-identifier"):
                (globs if key == "identifier" else not_globs).extend(
                    g for v, p in zip(values, sub) for g in self.expand_braces(v, p))
                continue
            if key in ("python", "arch", "policy", "libc", "isa"):
                values = [self.canon(key, v, p) for v, p in zip(values, sub)]
            elif key == "package":
                values = [canonicalize_name(v) for v in values]
            out[key] = frozenset(values)
        return Selector(out, path, tuple(globs), tuple(not_globs))

    def expand_braces(self, pattern: str, path: Path_) -> tuple[str, ...]:
        patterns = brace_patterns(pattern)
        if patterns is None:
            raise self.doc.error(path, f"{pattern!r} expands to more than {MAX_BRACE_EXPANSION} patterns",
                                 value=pattern)
        return patterns

    def layer(self, entry: dict, path: Path_, name: str) -> Layer:
        values = {key: entry[key] for key in SETTING_KEYS if key in entry}
        for var, setting in OWNED_VARIABLES.items():
            if var in values.get("environment", {}):
                raise self.doc.error(path + ("environment", var), f"{var} is set by a setting of its own: "
                                     f"use {setting} instead of environment.{var}", value=var)
        origins = {key: self.origin(path + (key,)) for key in values}
        for key in MAPPING_KEYS:
            for sub in values.get(key, {}):
                origins[f"{key}.{sub}"] = self.origin(path + (key, sub))
        return Layer(name, values, origins)

    # -- the document ------------------------------------------------------------------
    def run(self) -> MatrixSpec:
        d, cat, defaults = self.doc.data, self.cat, self.cat.defaults
        if "python" in d:
            pythons = [(p, self.origin(("python", i))) for i, p in enumerate(self.axis("python", d["python"],
                                                                                        ("python",)))]
        else:
            pythons = [(p.id, Origin("catalog", detail="supported CPythons")) for p in cat.pythons.values()
                       if p.status == "supported" and p.implementation == "cpython"]
        for i, (py, _) in enumerate(pythons):
            if cat.pythons[py].status == "unavailable":
                raise self.doc.error(("python", i), f"{py} cannot be built: {cat.pythons[py].reason}", value=py)
        libcs = self.axis("libc", d.get("libc", defaults["libc"]), ("libc",))
        arches = self.axis("arch", d.get("arch", defaults["arch"]), ("arch",))

        policies = {libc: (self.policy_for(libc, value, ("policy", libc)), self.origin(("policy", libc)))
                    for libc, value in d.get("policy", {}).items()}

        isa: dict[str, list[tuple[str, Origin]]] = {}
        for arch_name, levels in d.get("isa", {}).items():
            arch = self.canon("arch", arch_name, ("isa", arch_name))
            canon = [(self.canon("isa", lv, ("isa", arch_name, i), arch=arch), self.origin(("isa", arch_name, i)))
                     for i, lv in enumerate(levels)]
            names = [c for c, _ in canon]
            for i, name in enumerate(names):
                if name in names[:i]:
                    raise self.doc.error(("isa", arch_name, i), f"isa.{arch_name} lists {name!r} twice")
            isa[arch] = canon
            if arch not in arches:
                self.warn(("isa", arch_name), f"isa.{arch_name} names levels, but {arch} is not in 'arch'; "
                          "only include entries can use them")

        images = self.images(d.get("images", {}), ("images",))

        spec = d.get("cibuildwheel")
        if isinstance(spec, dict):
            cibw = CibwSpec(spec["spec"], tuple(spec.get("patches", ())), self.origin(("cibuildwheel",)))
        elif spec is not None:
            cibw = CibwSpec(spec, (), self.origin(("cibuildwheel",)))
        else:
            cibw = CibwSpec(str(defaults["cibuildwheel"]), (), Origin("catalog", detail="defaults.toml cibuildwheel"))

        runners = {}
        for arch_name, r in d.get("runners", {}).items():
            arch = self.canon("arch", arch_name, ("runners", arch_name))
            emulated = bool(r.get("emulated"))
            hosted = cat.arches[arch]
            # a service the entry does not name keeps its hosted runner of the arch (aarch64: GitHub's
            # ubuntu-24.04-arm, gitlab.com's saas-linux-small-arm64), never an x86_64 one without QEMU;
            # emulated: true builds the arch under QEMU on x86_64 runners (also where hosted ones exist)
            github = r.get("github", hosted.hosted_github if hosted.hosted_github and not emulated
                           else str(defaults["render"]["github-runner"]))
            gitlab = r.get("gitlab", list(hosted.hosted_gitlab) if not emulated else [])
            runners[arch] = (Runner(github, tuple([gitlab] if isinstance(gitlab, str) else gitlab), emulated),
                             self.origin(("runners", arch_name)))

        excludes = [self.selector(e, ("exclude", i)) for i, e in enumerate(d.get("exclude", []))]
        overrides = [(self.selector(o["select"], ("overrides", i, "select")),
                      self.layer(o, ("overrides", i), f"overrides[{i}]"))
                     for i, o in enumerate(d.get("overrides", []))]
        override_images = [self.override_images(o, ("overrides", i)) for i, o in enumerate(d.get("overrides", []))]
        regs = d.get("registries", {})
        registry_selectors: list[tuple[str, Selector | None]] = [
            (name, self.selector(r["select"], ("registries", name, "select"))) for name, r in regs.items()
            if "select" in r]
        registry_selectors += [(name, None) for name, r in regs.items() if "select" not in r]

        packages = []
        seen_packages: dict[str, Path_] = {}
        for i, pkg in enumerate(d.get("packages", [])):
            path = ("packages", i)
            name = canonicalize_name(pkg["name"])
            if name in seen_packages:
                raise self.doc.error(path + ("name",), f"package {name!r} is listed twice (also at "
                                     f"{describe_path(seen_packages[name])}); give it one entry with all its versions")
            seen_packages[name] = path
            raw = pkg["versions"]
            selection = None
            if isinstance(raw, list):
                versions = [self.version(v, path + ("versions", j)) for j, v in enumerate(raw)]
            else:
                versions = []
                selection = VersionSelection(newest=1) if raw == "latest" else VersionSelection(
                    self.specifier(raw.get("spec", ""), path + ("versions", "spec")), raw.get("newest"),
                    float(raw.get("min-age-days", 0)), bool(raw.get("pre", False)))
            packages.append(Package(name, tuple(versions), path, self.layer(pkg, path, f"packages[{i}] ({name})"),
                                    tuple(self.selector(e, path + ("exclude", k))
                                          for k, e in enumerate(pkg.get("exclude", []))),
                                    selection, tuple(canonicalize_name(n) for n in pkg.get("needs", [])),
                                    pkg.get("upstream-wheels", "skip"),
                                    bool(pkg.get("sdist-config", d.get("sdist-config", True)))))
        names = {p.name for p in packages}
        for p in packages:
            for j, need in enumerate(p.needs):
                if need not in names or need == p.name:
                    raise self.doc.error(p.path + ("needs", j), f"needs names {need!r}, which is not another "
                                         "package of this matrix file", value=need)
        _check_cycles(packages, self.doc)
        known_failures = [KnownFailure(self.selector(k["select"], ("known-failures", i, "select")), k["reason"])
                          for i, k in enumerate(d.get("known-failures", []))]

        includes = [self.include(entry, ("include", i)) for i, entry in enumerate(d.get("include", []))]
        variants = self.variants(d.get("variants", False), arches)
        return MatrixSpec(
            doc=self.doc, pythons=pythons,
            libcs=libcs, libc_origin=self.origin(("libc",)) if "libc" in d else Origin("catalog", detail="defaults.toml libc"),
            arches=arches, arch_origin=self.origin(("arch",)) if "arch" in d else Origin("catalog", detail="defaults.toml arch"),
            isa=isa, policies=policies, images=images, cibuildwheel=cibw, runners=runners, excludes=excludes,
            overrides=overrides, includes=includes, packages=packages, known_failures=known_failures,
            registry_selectors=registry_selectors,
            top=self.layer(d, (), self.doc.file), warnings=self.warnings,
            variants=variants, variants_origin=self.origin(("variants",)) if "variants" in d else None,
            override_images=override_images,
        )

    def images(self, value: dict, path: Path_) -> dict[tuple[str, str], ImageSpec]:
        """`images: {<arch>-<libc>: IMAGE}` (the top level's, or an override's)."""
        cat = self.cat
        images = {}
        for key, entry in value.items():
            arch_name, libc = key.rsplit("-", 1)
            arch = cat.arch_alias(arch_name)
            if arch is None:
                raise self.doc.error(path + (key,), f"images key {key!r} names an unknown arch {arch_name!r}",
                                     value=arch_name, allowed=list(cat.arches),
                                     hint="keys are '<arch>-<libc>', e.g. riscv64-glibc")
            ref = entry["image"] if isinstance(entry, dict) else entry
            policy = None
            if isinstance(entry, dict) and "policy" in entry:
                policy = self.policy_for(libc, entry["policy"], path + (key, "policy"))
            carried = None
            if isinstance(entry, dict) and "pythons" in entry:
                carried = tuple(self.axis("python", entry["pythons"], path + (key, "pythons")))
            images[(arch, libc)] = ImageSpec(ref, policy, self.origin(path + (key,)),
                                             self.origin(path + (key, "policy")) if policy else None,
                                             carried, key)
        return images

    def override_images(self, entry: dict, path: Path_) -> dict[tuple[str, str], ImageSpec]:
        """An override's `images:` (cibuildwheel's per-override image options, as init carries them):
        the image of the cells it selects. Its Pythons are declared at the top level, and its
        selector cannot name the policy, which the image decides."""
        images = self.images(entry.get("images", {}), path + ("images",))
        for image in images.values():
            if image.pythons is not None:
                raise self.doc.error(path + ("images", image.key, "pythons"), "an override's image cannot declare "
                                     "its Pythons; declare them in the top-level images entry of the same image")
        if images and "policy" in entry["select"]:
            raise self.doc.error(path + ("select", "policy"), "an override that sets images cannot select by "
                                 "policy: the image decides the policy")
        return images

    def variants(self, value, arches: list[str]) -> frozenset[str]:
        """`variants: true` (every arch an installer has a variant provider for) or a list of arches;
        an arch without a provider is an error: its levels need a registry each."""

        able = variant_arches(self.cat)
        if value is True:
            return frozenset(able)
        if not value:
            return frozenset()
        out = set()
        for i, name in enumerate(value):
            arch = self.canon("arch", name, ("variants", i))
            if arch not in able:
                raise self.doc.error(("variants", i), f"no installer has a wheel-variant provider for {arch}; its "
                                     "ISA levels need a registry each (registries: with select: {isa: LEVEL})",
                                     value=name, allowed=able)
            out.add(arch)
        return frozenset(out)

    def version(self, value: str, path: Path_) -> str:
        """A package version names a folder and a file: it must be a PEP 440 version (versions.is_version)."""
        if not is_version(value):
            raise self.doc.error(path, f"{value!r} is not a valid version (PEP 440), written exactly "
                                 "(no spaces, no leading v)", value=value)
        return value

    def specifier(self, value: str, path: Path_) -> str:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise self.doc.error(path, f"{value!r} is not a version specifier (PEP 440), e.g. '>=2.0,<3'",
                                 value=value) from None
        return value

    def include(self, entry: dict, path: Path_) -> Include:
        py = self.canon("python", entry["python"], path + ("python",))
        arch = self.canon("arch", entry["arch"], path + ("arch",))
        libc = self.canon("libc", entry.get("libc", "glibc"), path + ("libc",))
        if "isa" in entry:
            level = self.canon("isa", entry["isa"], path + ("isa",), arch=arch)
        else:
            level = self.cat.arches[arch].baseline.name
        why = self.cat.pythons[py].available_on(libc, arch)
        if why:
            raise self.doc.error(path, f"{describe_path(path)} names a cell that cannot be built: {why}", value=py)
        policy = self.policy_for(libc, entry["policy"], path + ("policy",)) if "policy" in entry else None
        return Include(py, libc, arch, level, "isa" in entry, policy, self.origin(path), path,
                       self.layer(entry, path, describe_path(path)))



def _check_cycles(packages: list[Package], doc: MatrixDoc) -> None:
    """`needs` must order the packages: a cycle would leave no package to start with."""
    needs = {p.name: p.needs for p in packages}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = trail[trail.index(name):] + [name]
            pkg = next(p for p in packages if p.name == trail[-1])
            raise doc.error(pkg.path + ("needs",), "the packages' needs form a cycle: " + " -> ".join(cycle),
                            value=name)
        state[name] = 1
        for n in needs[name]:
            visit(n, trail + [name])
        state[name] = 2

    for p in packages:
        visit(p.name, [])
