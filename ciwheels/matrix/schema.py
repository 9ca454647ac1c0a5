"""The matrix file format as JSON Schema (draft 2020-12), built from the catalog.

This one schema is both what `ciwheels schema` exports for editors and what the loader
validates against (see `load.py`), so the two cannot disagree. Only a small part of JSON
Schema is used: type, enum, properties, additionalProperties, propertyNames, items, anyOf,
required, minItems, minimum, pattern."""

from __future__ import annotations

from functools import cache

from ciwheels.catalog import LIBCS, Catalog
from ciwheels.catalog.images import image_arches, image_catalog

SCHEMA_ID = "https://ciwheels.invalid/schema/matrix.json"


def _str(description: str, **extra) -> dict:
    return {"type": "string", "description": description, **extra}


def _enum(enum: list[str] | None, title: str | None = None) -> dict:
    """An enum of canonical names + aliases; `x-names` keeps the canonical ones for messages."""
    if not enum:
        return {}
    out = {"enum": enum}
    if title:
        out["title"] = title
        canonical = _CANONICAL.get(title)
        if canonical:
            out["x-names"] = canonical
    return out


_CANONICAL: dict[str, list[str]] = {}


def _str_or_list(description: str, enum: list[str] | None = None, title: str | None = None) -> dict:
    item = {"type": "string", **_enum(enum, title)}
    return {"description": description, "anyOf": [item, {"type": "array", "items": item}]}


def _list(description: str, enum: list[str] | None = None, min_items: int = 0, title: str | None = None) -> dict:
    item = {"type": "string", **_enum(enum, title)}
    schema = {"type": "array", "description": description, "items": item}
    if min_items:
        schema["minItems"] = min_items
    return schema


def _path_or_false(description: str) -> dict:
    return {"description": description, "anyOf": [{"type": "string"}, {"type": "boolean", "enum": [False]}]}


@cache
def _names(catalog: Catalog) -> dict[str, list[str]]:
    _CANONICAL.update({
        "python": list(catalog.pythons), "arch": list(catalog.arches), "policy": list(catalog.policies),
        "ISA level": list(catalog.levels), "libc": list(LIBCS)})
    return {
        "python": [p.id for p in catalog.pythons.values()] + [a for p in catalog.pythons.values() for a in p.aliases],
        "arch": list(catalog.arches) + [a for arch in catalog.arches.values() for a in arch.aliases],
        "policy": list(catalog.policies) + [a for p in catalog.policies.values() for a in p.aliases],
        "isa": [lv.name for lv in catalog.levels.values()] + [a for lv in catalog.levels.values() for a in lv.aliases],
        "libc": list(LIBCS),
    }


# cibuildwheel options that the matrix sets with keys of its own: naming them under
# `cibuildwheel-options` is an error that says which key to use.
OWNED_OPTIONS = {
    "build": "the python/libc/arch axes, exclude and include", "skip": "exclude",
    "archs": "arch", "enable": "python (a free-threaded or prerelease id enables its group)",
    "environment": "environment", "before-all": "before-all", "before-build": "before-build",
    "test-command": "test-command", "test-requires": "test-requires", "container-engine": "ciwheels build --engine",
    "overrides": "overrides", "inherit": "the settings cascade (overrides, packages, include)",
    "linux": "the top level (ciwheels builds Linux wheels only)",
}
NOT_LINUX = ("windows", "macos", "pyodide", "android", "ios", "xbuild-tools", "xbuild-files", "pyodide-version")


def _image_arches(catalog: Catalog) -> list[str]:
    """The arches `ciwheels image build` has a recipe for (images.toml)."""

    return image_arches(catalog.path)


def _sysroots(catalog: Catalog) -> dict[str, dict]:
    """The old-glibc sysroots the image catalog pins (images.toml [sysroots]), by name."""
    return image_catalog(catalog.path).get("sysroots", {})


def _build_images(catalog: Catalog, names: dict[str, list[str]]) -> dict:
    """`render: {build-images: ...}`: a list of arches, or per arch the image's base, policy and
    native compilers."""
    arches = _image_arches(catalog)
    glibc = [p for p in names["policy"] if (catalog.policies.get(p) or catalog.policies[catalog.policy_alias(p)]).libc
             == "glibc"]
    per_arch = {
        "type": "object",
        "description": "The recipe of one arch's image.",
        "properties": {
            "base": _str("The image the recipe builds on (default: debian:<suite> of the image catalog). Its glibc "
                         "decides the wheels' manylinux policy.", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"),
            "policy": _str("The manylinux policy the image's wheels get (default: from the base's glibc, for the "
                           "Debian and Ubuntu releases the image catalog knows).", **_enum(glibc, "policy")),
            "native-compilers": {"type": "boolean", "description": "Put the x86_64-hosted cross compilers into the "
                                 "image (default true; false: every compiler runs emulated)."},
            "sysroot": _str("The older glibc the image's compilers build extensions against (Debian's cross "
                            "packages of that release), which decides the wheels' manylinux policy: "
                            + ", ".join(f"{n} (glibc {s['glibc']})" for n, s in _sysroots(catalog).items())
                            + ", or none (the base's glibc). Default: the arch's in the image catalog "
                            "(riscv64: bullseye, manylinux_2_31).", enum=[*_sysroots(catalog), "none"]),
        },
        "additionalProperties": False,
    }
    return {
        "description": "Arches whose build image (ciwheels image build) the pipelines build, tagged by the digest of "
        "its recipe, push to the project's container registry when it is not there yet, and build the glibc cells "
        "of that arch in. A list of arches, or {ARCH: {base: IMAGE, policy: POLICY, native-compilers: BOOL, "
        "sysroot: NAME}}.",
        "anyOf": [
            _list("Arches, each with the default base.", arches),
            {"type": "object", "propertyNames": {"enum": arches, "title": "arch"}, "additionalProperties": per_arch},
        ],
    }


def _inline_refs(schema, defs: dict):
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline_refs(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


def cibuildwheel_options_schema(catalog: Catalog) -> dict:
    """The options of the pinned cibuildwheel (its own JSON Schema, kept in the catalog) that a
    matrix may set as they are: every Linux option ciwheels has no key of its own for."""
    import json

    theirs = json.loads((catalog.path / "cibuildwheel.schema.json").read_text(encoding="utf-8"))
    props = {name: _inline_refs(sub, theirs.get("$defs", {})) for name, sub in theirs["properties"].items()
             if name not in OWNED_OPTIONS and name not in NOT_LINUX and not name.endswith("-image")}
    return {
        "type": "object",
        "description": "Any other cibuildwheel option, by its pyproject.toml name, validated with the schema of "
        "the pinned cibuildwheel (e.g. build-frontend, config-settings, test-extras, repair-wheel-command). "
        "Merged per option through the settings cascade.",
        "properties": props,
        "additionalProperties": False,
        "x-owned": {**OWNED_OPTIONS, **{k: "nothing: it is not a Linux option" for k in NOT_LINUX},
                    **{k: "images" for k in theirs["properties"] if k.endswith("-image")}},
    }


def settings_properties(catalog: Catalog) -> dict[str, dict]:
    """Build settings that the top level, `overrides`, `include` and `packages` entries share."""
    value = {"type": ["string", "number", "boolean"]}
    return {
        "environment": {
            "type": "object",
            "description": "Extra environment for the build (cibuildwheel CIBW_ENVIRONMENT). "
            "Values may use $VARS; CFLAGS/CXXFLAGS/RUSTFLAGS are combined with the ISA flags.",
            "additionalProperties": value,
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        },
        "test-command": _str("Command that tests an installed wheel ({project} and {package} are replaced)."),
        "test-requires": _str_or_list("Packages to install before running test-command."),
        "before-all": _str("Command run once per build container before any build."),
        "before-build": _str("Command run before each wheel build."),
        "build-requires": _list(
            "Pins for build dependencies (pip constraints, e.g. 'cython==3.1.4'), applied to every build."
        ),
        "timeout-minutes": {"type": "integer", "minimum": 1, "description": "Time limit of a build job."},
        "native-compilers": {"type": "boolean", "description": "In an image made by `ciwheels image build`, "
                             "compile with the native x86_64-hosted cross compilers (default true); false runs "
                             "the image's own, emulated compilers (CIWHEELS_NATIVE_COMPILERS=0), for builds "
                             "that insist on the target compiler's identity."},
        "cross": {"type": "boolean", "description": "Cross mode (default true): a glibc cell of an emulated arch "
                  "builds its wheel with the image's native CPython of the same X.Y and its cross compilers, "
                  "installs the test environment with uv, and runs the tests emulated; it falls back to the "
                  "emulated build by itself when it cannot (the build report says why). false: the emulated "
                  "build. Needs native-compilers."},
        "cibuildwheel-options": cibuildwheel_options_schema(catalog),
    }


def _selector_properties(catalog: Catalog) -> dict[str, dict]:
    names = _names(catalog)
    return {
        "python": _str_or_list("Python identifier(s) to match.", names["python"], "python"),
        "libc": _str_or_list("glibc or musl.", names["libc"], "libc"),
        "policy": _str_or_list("Platform policy, e.g. manylinux_2_28.", names["policy"], "policy"),
        "arch": _str_or_list("CPU architecture(s).", names["arch"], "arch"),
        "isa": _str_or_list("ISA level(s).", names["isa"], "ISA level"),
        "identifier": _str_or_list("cibuildwheel build identifier glob(s), braces allowed, e.g. '*-musllinux*' "
                                   "or 'cp3{12,13}-*'."),
        "not-identifier": _str_or_list("cibuildwheel build identifier glob(s) the cell must match none of: "
                                       "`exclude: [{not-identifier: 'cp3{11,12}-*'}]` keeps only what "
                                       "cibuildwheel's `build` selects."),
        "package": _str_or_list("Builder mode: package name(s)."),
        "version": _str_or_list("Builder mode: package version(s)."),
    }


@cache
def matrix_schema(catalog: Catalog) -> dict:
    names = _names(catalog)
    settings = settings_properties(catalog)
    selector = _selector_properties(catalog)
    selector_obj = {"type": "object", "properties": selector, "additionalProperties": False, "minProperties": 1}
    include_props = {
        "python": _str("Python identifier.", **_enum(names["python"], "python")),
        "libc": _str("glibc (default) or musl.", **_enum(names["libc"], "libc")),
        "policy": _str("Platform policy.", **_enum(names["policy"], "policy")),
        "arch": _str("CPU architecture.", **_enum(names["arch"], "arch")),
        "isa": _str("ISA level (default: the arch's baseline).", **_enum(names["isa"], "ISA level")),
        **settings,
    }
    runner = {
        "type": "object",
        "description": "Native runners for an arch (default: the services' hosted runners where they exist, "
        "aarch64: ubuntu-24.04-arm and gitlab.com's saas-linux-small-arm64); an arch without one is emulated "
        "with QEMU on x86_64 runners.",
        "properties": {
            "github": _str("GitHub Actions `runs-on` label, e.g. ubuntu-24.04-arm."),
            "gitlab": _str_or_list("GitLab runner tag(s)."),
            "emulated": {"type": "boolean",
                         "description": "true: build this arch under QEMU on x86_64 runners (github/gitlab then "
                                        "name those runners), also where hosted runners of the arch exist."},
        },
        "additionalProperties": False,
    }
    image = {
        "description": "A pinned pypa image name (e.g. manylinux_2_34) or a full image reference, "
        "optionally with the policy its wheels get.",
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {
                    "image": _str("Image reference."),
                    "policy": _str("Policy the image yields (default: read from the image name).",
                                   **_enum(names["policy"], "policy")),
                    "pythons": _list("The Pythons the image carries (for an image that is not present "
                                     "locally; one that is says so itself with its io.ciwheels.pythons "
                                     "label): a cell of another Python is an error.", names["python"], 1,
                                     "python"),
                },
                "required": ["image"],
                "additionalProperties": False,
            },
        ],
    }
    package = {
        "type": "object",
        "description": "Builder mode: a third-party package built from its PyPI sdist.",
        "properties": {
            "name": _str("Distribution name on PyPI.", pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"),
            "versions": {
                "description": "Versions to build: a list, 'latest', or a selection resolved against the package "
                "index ({spec: '>=2.0,<3', newest: 3, min-age-days: 7, pre: false}).",
                "anyOf": [
                    _list("Versions to build.", min_items=1),
                    {"const": "latest", "description": "The newest release on the index."},
                    {
                        "type": "object",
                        "properties": {
                            "spec": _str("A PEP 440 specifier, e.g. '>=2.0,<3'."),
                            "newest": {"type": "integer", "minimum": 1,
                                       "description": "Build at most this many of the newest matching releases."},
                            "min-age-days": {"type": "number", "minimum": 0, "maximum": 36500,
                                             "description": "Skip releases uploaded less than this many days ago."},
                            "pre": {"type": "boolean", "description": "Also pre-releases (default false)."},
                        },
                        "additionalProperties": False,
                    },
                ],
            },
            "needs": _list("Packages of this matrix whose jobs must finish first; their wheels are installed "
                           "from our registry as build dependencies."),
            "sdist-config": {"type": "boolean", "description": "Start from the sdist's own cibuildwheel "
                             "configuration ([tool.cibuildwheel], requires-python), with this matrix's settings "
                             "over it (default true); false: this matrix's settings alone."},
            "upstream-wheels": {"enum": ["skip", "build"], "description": "When the package index already has a "
                                "wheel for a cell: skip the cell (default) or build it anyway."},
            "exclude": {"type": "array", "items": selector_obj, "description": "Cells to skip for this package."},
            **settings,
        },
        "required": ["name", "versions"],
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "ciwheels build matrix",
        "description": "What to build: Python x libc x arch x ISA level. See the ciwheels README.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "python": _list("Pythons to build (cibuildwheel ids such as cp312, cp314t, pp311).", names["python"], 1,
                            "python"),
            "libc": _list("C libraries: glibc (manylinux) and/or musl (musllinux). Default: [glibc].",
                          names["libc"], 1, "libc"),
            "policy": {
                "type": "object",
                "description": "Platform policy per libc (default: the catalog's per-arch default).",
                "propertyNames": {"enum": names["libc"]},
                "properties": {
                    libc: {"type": "string", "description": f"Policy of the {libc} cells.", **_enum([p.name for p in catalog.policies.values() if p.libc == libc]
                                                     + [a for p in catalog.policies.values() if p.libc == libc
                                                        for a in p.aliases], "policy")}
                    for libc in LIBCS
                },
                "additionalProperties": False,
            },
            "arch": _list("CPU architectures. Default: [x86_64].", names["arch"], 1, "arch"),
            "isa": {
                "type": "object",
                "description": "ISA levels per arch; an arch without an entry builds its baseline.",
                "propertyNames": {"enum": names["arch"]},
                "properties": {
                    arch.name: _list(f"ISA levels of {arch.name}.", [lv.name for lv in arch.levels]
                                     + [a for lv in arch.levels for a in lv.aliases], 1, "ISA level")
                    for arch in catalog.arches.values()
                },
                "additionalProperties": _list("ISA levels of this arch.", names["isa"], 1, "ISA level"),
            },
            "exclude": {
                "type": "array",
                "description": "Drop every cell an entry matches (partial match, like GitHub's matrix).",
                "items": selector_obj,
            },
            "include": {
                "type": "array",
                "description": "Add a cell; values may lie outside the axes.",
                "items": {
                    "type": "object",
                    "properties": include_props,
                    "required": ["python", "arch"],
                    "additionalProperties": False,
                },
            },
            "images": {
                "type": "object",
                "description": "Container image per '<arch>-<libc>' (e.g. riscv64-glibc).",
                "propertyNames": {"pattern": "^[a-z0-9_]+-(glibc|musl)$"},
                "additionalProperties": image,
            },
            "cibuildwheel": {
                "description": "The cibuildwheel to build with: a pip requirement (cibuildwheel==4.3.3), "
                "a wheel path/URL or VCS URL, optionally with a series of patches kept in the project.",
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "properties": {
                            "spec": _str("pip requirement, wheel path/URL or VCS URL."),
                            "patches": _list("Patch files (relative to the matrix file) applied in order."),
                        },
                        "required": ["spec"],
                        "additionalProperties": False,
                    },
                ],
            },
            "runners": {
                "type": "object",
                "description": "Native runners per arch.",
                "propertyNames": {"enum": names["arch"]},
                "additionalProperties": runner,
            },
            "overrides": {
                "type": "array",
                "description": "Settings for the cells a selector matches; later entries win.",
                "items": {
                    "type": "object",
                    "properties": {"select": {**selector_obj, "description": "Which cells the settings apply to."},
                                   "images": {
                                       "type": "object",
                                       "description": "Container image per '<arch>-<libc>' for the cells the "
                                       "selector matches (cibuildwheel's image options in an override).",
                                       "propertyNames": {"pattern": "^[a-z0-9_]+-(glibc|musl)$"},
                                       "additionalProperties": image,
                                   },
                                   **settings},
                    "required": ["select"],
                    "additionalProperties": False,
                },
            },
            "packages": {"type": "array", "description": "Builder mode: packages to build from sdists.", "items": package},
            "sdist-config": {"type": "boolean", "description": "Builder mode: the default of the packages' "
                             "sdist-config (true: each package starts from its sdist's own cibuildwheel "
                             "configuration)."},
            "known-failures": {
                "type": "array",
                "description": "Cells that are not expected to build: the plan skips them and the status shows why.",
                "items": {
                    "type": "object",
                    "properties": {"select": {**selector_obj, "description": "Which cells."},
                                   "reason": _str("Why they fail (an issue link, a missing dependency).")},
                    "required": ["select", "reason"],
                    "additionalProperties": False,
                },
            },
            "variants": {
                "description": "Publish ISA levels above the baseline as wheel variants (PEP 825 labels, "
                               "variant.json, {name}-{version}-variants.json) into the baseline's registry: "
                               "true for every arch an installer has a provider for (x86_64, aarch64), or a "
                               "list of arches. Other arches keep a registry per level.",
                "anyOf": [{"type": "boolean"}, _list("Arches whose levels are published as variants.",
                                                     names["arch"], 1, "arch")],
            },
            "registries": {
                "type": "object",
                "description": "Named PyPI-compatible registries wheels are published to. A cell goes to the "
                               "first registry whose `select` matches it, else to one without `select`: one "
                               "registry per ISA level, since wheel tags cannot tell levels apart.",
                "propertyNames": {"pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"},
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "url": _str("Upload URL (GitLab: https://HOST/api/v4/projects/ID/packages/pypi); its "
                                    "simple index is URL/simple/.", pattern=r"^https?://"),
                        "index": _str("Its simple index, if not URL/simple/ (devpi: URL/+simple/).",
                                      pattern=r"^https?://"),
                        "select": {**selector_obj, "description": "Which cells publish here."},
                    },
                    "required": ["url"],
                    "additionalProperties": False,
                },
            },
            "render": {
                "type": "object",
                "description": "How `ciwheels render` writes the CI pipelines.",
                "properties": {
                    "github": _path_or_false("GitHub Actions workflow to write (false: none)."),
                    "gitlab": _path_or_false("GitLab CI file to write, included from .gitlab-ci.yml (false: none)."),
                    "schedule": _str("Cron schedule (5 fields, UTC) for scheduled builds and publishing.",
                                     pattern=r"^\s*\S+(\s+\S+){4}\s*$", **{"x-format": "cron"}),
                    "publish-branch": _path_or_false("Opt-in: a branch whose pushes also publish (default false: "
                                                     "tags, schedules and manual runs only; a registry never "
                                                     "overwrites, so publishing every push fails from the second)."),
                    "default-branch": _str("The repository's default branch: its pushes build (default: origin's "
                                           "HEAD, else the current branch, read when rendering; `ciwheels init` "
                                           "writes it here)."),
                    "actions": {
                        "type": "object",
                        "description": "Pins of the GitHub Actions the workflow uses, overriding the catalog's "
                                       "(so a Dependabot/Renovate bump survives a re-render): "
                                       "`{checkout: \"actions/checkout@SHA # v7.0.1\"}`.",
                        "propertyNames": {"enum": ["checkout", "setup-python", "setup-qemu", "upload-artifact",
                                                   "download-artifact"]},
                        "additionalProperties": _str("OWNER/REPO@REF, optionally followed by ` # comment`.",
                                                     pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[A-Za-z0-9_.-]+"
                                                             r"(\s+#.*)?$"),
                    },
                    "fetch-depth": {"type": "integer", "minimum": 0,
                                    "description": "Commits the CI checkout fetches (0: all history). Default: 0 "
                                                   "when the project derives its version from git "
                                                   "(setuptools-scm, hatch-vcs, versioningit, ...), else 1."},
                    "submodules": {"enum": [True, False, "recursive"],
                                   "description": "Check out git submodules (default false)."},
                    "emulated-jobs": {"enum": ["per-cell", "grouped"],
                                      "description": "Emulated (QEMU) cells get a job each (per-cell, the "
                                                     "default: one Python under QEMU can take hours) or share "
                                                     "one per platform like native cells (grouped)."},
                    "tag-publish": {"enum": ["all-or-nothing", "what-built"],
                                    "description": "What a tag (a release) publishes when a cell failed: nothing "
                                                   "(all-or-nothing, the default: a release never goes out without "
                                                   "an arch) or what built (what-built). Schedules and manual runs "
                                                   "always publish what built."},
                    "python": _str("Python version the CI jobs run ciwheels with."),
                    "ciwheels": _str("pip requirement the CI jobs install ciwheels from (default: this version)."),
                    "build-images": _build_images(catalog, names),
                    "matrix-diff": {"type": "boolean", "description": "Add the job that explains matrix changes "
                                    "on pull/merge requests (default: true)."},
                },
                "additionalProperties": False,
            },
            **settings,
        },
    }
