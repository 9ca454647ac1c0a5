"""The typed data that flows between stages: a build cell (expand -> plan/render/build) and
where each of its settings came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from ciwheels.core.wheel import InvalidWheelName, parse_wheel_name


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a resolved setting came from."""

    kind: str  # "catalog" | "matrix" | "sdist" (builder mode: the package's own configuration) | "default"
    file: str = ""
    line: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "matrix":
            where = f"{self.file}:{self.line}" if self.line else self.file
            return f"{where} ({self.detail})" if self.detail else where
        if self.kind == "sdist":  # builder mode: the package's own configuration, in its sdist
            where = f"{self.file}:{self.line}" if self.line else self.file
            return f"sdist {where} ({self.detail})" if self.detail else f"sdist {where}"
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


@dataclass(frozen=True, slots=True)
class Registry:
    """A destination for wheels, as a matrix file names it under `registries:`."""

    name: str
    url: str = field(repr=False)  # upload (repository) URL, as given (it may carry credentials)
    index: str = field(default="", repr=False)  # simple index URL; default URL/simple; devpi: URL/+simple
    catch_all: bool = True  # no `select`: cells that no other registry selects go here
    origin: Origin | None = field(default=None, compare=False)

    @property
    def simple(self) -> str:
        return (self.index or f"{self.url.rstrip('/')}/simple").rstrip("/")


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a cell's wheels are published, decided once (matrix/destination.py) and read by the
    clash check, plan, status, build's dependency indexes and publish. No credentials: those are
    decided per request and per host (net/auth.py)."""

    registry: str  # the matrix's registry name; "" for the environment's default registry
    url: str  # upload URL, without userinfo
    index: str  # simple index URL, without userinfo
    source: str  # why this one, for messages: "registry 'fast' (matrix/wheels.yaml:7)", "CIWHEELS_REPOSITORY_URL"
    url_with_credentials: str = field(default="", repr=False, compare=False)  # as given, userinfo and all
    index_with_credentials: str = field(default="", repr=False, compare=False)

    @property
    def key(self) -> str:
        """What two destinations are the same registry by."""
        return self.url.rstrip("/")


@dataclass(frozen=True, slots=True)
class Runner:
    github: str
    gitlab: tuple[str, ...]
    emulated: bool


_SETTING_ORIGINS = ("environment.", "cibuildwheel-options.", "test-command", "test-requires", "before-all",
                    "before-build", "build-requires", "timeout-minutes", "native-compilers")


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 3x, and expand makes thousands
class Cell:
    """One wheel build: one Python, one platform, one ISA level (and in builder mode one
    package version). `cibw` is exactly what cibuildwheel needs to build only this cell."""

    id: str
    python: str
    libc: str
    policy: str
    arch: str
    isa: str
    identifier: str  # cibuildwheel build identifier, e.g. cp312-manylinux_x86_64
    image: str  # pinned pypa name (manylinux_2_28) or a full image reference
    custom_image: bool
    image_ref: str  # the full image reference the build runs in (a pypa name resolved from the catalog)
    cibuildwheel: str
    patches: tuple[str, ...]
    environment: dict[str, str]  # final: the ISA flags combined with every settings layer
    cibw: dict[str, str]
    runner: Runner
    timeout_minutes: int
    test_command: str = ""
    test_requires: tuple[str, ...] = ()
    before_all: str = ""
    before_build: str = ""
    build_requires: tuple[str, ...] = ()
    package: str = ""
    version: str = ""
    matrix_file: str = ""
    registry: str = ""  # name of the registry the cell's wheels are published to ("" = none named)
    destination: Destination | None = None  # where its wheels go (matrix/destination.py); None: nowhere known
    origins: dict[str, Origin] = field(default_factory=dict, compare=False)
    notes: tuple[str, ...] = ()
    isa_environment: dict[str, str] = field(default_factory=dict)  # the ISA family's flags for the level
    user_environment: dict[str, str] = field(default_factory=dict)  # what the settings layers set
    cibuildwheel_options: dict[str, object] = field(default_factory=dict)  # other cibuildwheel options
    # how the cell's wheels tell its ISA level apart on an index: "plain" (the arch's baseline, a
    # plain wheel), "variant" (a wheel variant labelled `variant`, beside the baseline in one
    # registry), "registry" (a plain wheel that needs a registry of its own level)
    publish_as: str = "plain"
    variant: str = ""  # the variant label of the cell's wheels ("" unless publish_as is "variant")
    native_compilers: bool = True  # the `native-compilers` setting (cibwopts: CIWHEELS_NATIVE_COMPILERS=0 if false)
    sysroot: str = ""  # the sysroot of the pipeline-built image it builds in (render.build-images), else ""
    # cross mode: the `cross` setting, for a glibc cell of an emulated arch with native compilers
    # (cibwopts: CIWHEELS_CROSS_BUILD and the build[uv] frontend; build: the cibuildwheel patch)
    cross: bool = False

    @property
    def platform(self) -> str:
        return self.identifier.split("-", 1)[1]

    # (head, tail) of `cibw`: the Python-specific options and the ones shared by many cells
    cibw_parts: tuple = field(default=(), compare=False, repr=False)

    def own_json(self) -> dict:
        out = {
            "id": self.id,
            "python": self.python,
            "libc": self.libc,
            "policy": self.policy,
            "arch": self.arch,
            "isa": self.isa,
            "identifier": self.identifier,
            "image": self.image,
            "custom_image": self.custom_image,
            "image_ref": self.image_ref,
            "notes": list(self.notes),
            "publish_as": self.publish_as,
        }
        if self.variant:
            out["variant"] = self.variant
        if self.sysroot:
            out["sysroot"] = self.sysroot
        if self.package:
            out["package"] = self.package
            out["version"] = self.version
            # builder mode: which settings came from the package's own configuration (its sdist) and
            # which from the matrix (also where the matrix lies over the sdist's value)
            out["origins"] = {k: str(o) for k, o in self.origins.items()
                              if k.startswith(_SETTING_ORIGINS) and o.kind in ("sdist", "matrix", "combined")}
        return out

    def shared_json(self) -> dict:
        """The fields many cells share (same objects): see cells_json."""
        return {
            "cibuildwheel": self.cibuildwheel,
            "patches": list(self.patches),
            "environment": self.environment,
            "runner": {"github": self.runner.github, "gitlab": list(self.runner.gitlab),
                       "emulated": self.runner.emulated},
            "timeout_minutes": self.timeout_minutes,
            "test_command": self.test_command,
            "test_requires": list(self.test_requires),
            "before_all": self.before_all,
            "before_build": self.before_build,
            "build_requires": list(self.build_requires),
            "cibuildwheel_options": self.cibuildwheel_options,
            "native_compilers": self.native_compilers,
            "cross": self.cross,
            "matrix_file": self.matrix_file,
            "registry": self.registry,
        }

    def to_json(self) -> dict:
        return {**self.own_json(), "cibw": self.cibw, **self.shared_json()}


def cells_json(cells: list[Cell]) -> str:
    """Exactly json.dumps([c.to_json() for c in cells]), but the parts that cells share (the same
    objects from expand: cibw head per Python/platform, cibw tail and settings per
    package/platform/level) are encoded once each: 5,000 cells of a builder matrix share a few
    hundred of them."""
    import json

    encode = json.JSONEncoder().encode
    heads: dict[int, tuple[str, dict]] = {}
    tails: dict[int, tuple[str, dict]] = {}
    parts = []
    for c in cells:
        if len(c.cibw_parts) != 2:
            parts.append(encode(c.to_json()))
            continue
        head, tail = c.cibw_parts
        h = heads.get(id(head))
        if h is None:
            h = heads[id(head)] = ('"cibw": ' + encode(head)[:-1], head)
        t = tails.get(id(tail))
        if t is None:
            t = tails[id(tail)] = ((", " + encode(tail)[1:] if tail else "}") + ", " + encode(c.shared_json())[1:],
                                   tail)
        parts.append(encode(c.own_json())[:-1] + ", " + h[0] + t[0])
    return "[" + ", ".join(parts) + "]"


@dataclass(frozen=True, slots=True)
class Dropped:
    """A cell the axes produced but that cannot or should not be built, and why."""

    id: str
    reason: str
    origin: Origin


@dataclass
class Expansion:
    cells: list[Cell]
    dropped: list[Dropped]
    warnings: list[str]
    files: list[str]

    def find(self, cell_id: str) -> Cell | Dropped | None:
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        for d in self.dropped:
            if d.id == cell_id:
                return d
        return None


def wheel_matches(filename: str, cell: Cell) -> bool:
    """Is this wheel file one of the cell's builds? Python tag (cp314t = cp314 with abi cp314t),
    platform kind and arch must agree (the policy version may be lower: auditwheel tags the
    oldest policy a wheel satisfies). An abi3 wheel (cp36-abi3) serves every CPython from its
    version on, free-threaded ones excepted."""

    try:
        tags = parse_wheel_name(filename).tags  # plain or variant: the tags are those of the plain name
    except InvalidWheelName:
        return False
    return tags_match(tags, cell)


def tags_match(tags, cell: Cell) -> bool:
    """wheel_matches on a wheel's parsed tags (for callers that parse each file once)."""
    py, platform = cell.identifier.split("-", 1)
    flavour, arch = platform.split("_", 1)
    threaded = py.endswith("t")
    want = py.removesuffix("t")

    def python_ok(tag) -> bool:
        if tag.abi == "abi3":
            return not threaded and want.startswith("cp3") and tag.interpreter.startswith("cp3") \
                and int(tag.interpreter[3:] or 0) <= int(want[3:])
        return tag.interpreter == want and tag.abi.endswith("t") == threaded

    return any(python_ok(tag) and tag.platform.startswith(flavour) and tag.platform.endswith("_" + arch)
               for tag in tags)
