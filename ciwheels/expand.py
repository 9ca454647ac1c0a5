"""Stage 2, expand: a validated matrix document + the catalog -> build cells.

The cross product of the axes (an arch without an `isa` entry builds its baseline level),
minus `exclude` entries (partial match), minus cells the catalog says cannot exist (kept as
`Dropped` with the reason), plus `include` entries; then `overrides`. Every resolved setting
records its Origin for `ciwheels explain`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from ciwheels.catalog import LIBC_PLATFORM, Catalog, load_catalog
from ciwheels.errors import CiwheelsError
from ciwheels.load import MatrixDoc, describe_path, load_files
from ciwheels.model import Cell, Dropped, Expansion, Origin, Runner

SETTING_KEYS = ("environment", "test-command", "test-requires", "before-all", "before-build",
                "build-requires", "timeout-minutes")
_POLICY_IN_NAME = re.compile(r"(manylinux_\d+_\d+|manylinux2014|musllinux_\d+_\d+)")
CONSTRAINTS_FILE = "/tmp/ciwheels-build-constraints.txt"
DEFAULT_RUNNER = "ubuntu-24.04"


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def expand_files(paths: list[Path], catalog: Catalog | None = None, *, root: Path | None = None) -> Expansion:
    """Load and expand several matrix files; cell ids must be unique across them."""
    catalog = catalog or load_catalog()
    return expand_docs(load_files(paths, catalog, root=root), catalog)


def expand_docs(docs: list[MatrixDoc], catalog: Catalog | None = None) -> Expansion:
    catalog = catalog or load_catalog()
    total = Expansion([], [], [], [d.file for d in docs])
    seen: dict[str, str] = {}
    for doc in docs:
        part = _Expander(doc, catalog).run()
        for cell in part.cells:
            if cell.id in seen:
                raise CiwheelsError(
                    f"cell {cell.id} is defined by both {seen[cell.id]} and {doc.file}; "
                    "each cell may come from one matrix file only", file=doc.file)
            seen[cell.id] = doc.file
        total.cells.extend(part.cells)
        total.dropped.extend(part.dropped)
        total.warnings.extend(part.warnings)
    return total


class _Expander:
    def __init__(self, doc: MatrixDoc, catalog: Catalog) -> None:
        self.doc = doc
        self.cat = catalog
        self.data = doc.data
        self.warnings: list[str] = []
        self._origins: dict[tuple, Origin] = {}
        self._platform_cache: dict[tuple, tuple] = {}
        self._shared: dict[tuple, tuple] = {}
        self._heads: dict[tuple, tuple] = {}

    # -- helpers -------------------------------------------------------------------------
    def origin(self, path: tuple, detail: str | None = None) -> Origin:
        key = ("m", path, detail)
        o = self._origins.get(key)
        if o is None:
            _, line, _ = self.doc.where(path)
            o = self._origins[key] = Origin("matrix", self.doc.file, line, detail or describe_path(path))
        return o

    def catalog_origin(self, detail: str) -> Origin:
        key = ("c", detail)
        o = self._origins.get(key)
        if o is None:
            o = self._origins[key] = Origin("catalog", detail=detail)
        return o

    def warn(self, path: tuple, text: str) -> None:
        file, line, col = self.doc.where(path)
        self.warnings.append(f"{file}:{line}: {text}" if line else f"{file}: {text}")

    def canon(self, kind: str, value: str, path: tuple, arch: str | None = None) -> str:
        if kind == "python":
            found = self.cat.python_alias(value)
            allowed = list(self.cat.pythons)
        elif kind == "arch":
            found = self.cat.arch_alias(value)
            allowed = list(self.cat.arches)
        elif kind == "policy":
            found = self.cat.policy_alias(value)
            allowed = list(self.cat.policies)
        elif kind == "isa":
            found = self.cat.level_alias(arch, value) if arch else (value if value in self.cat.levels else None)
            allowed = [lv.name for lv in self.cat.arches[arch].levels] if arch else list(self.cat.levels)
            if found is None and arch:
                other = self.cat.levels.get(value) or next(
                    (lv for lv in self.cat.levels.values() if value in lv.aliases), None)
                if other is not None:
                    raise self.doc.error(
                        path, f"ISA level {value!r} belongs to {other.arch}, not {arch}", value=value,
                        allowed=allowed)
        else:
            found, allowed = (value if value in ("glibc", "musl") else None), ["glibc", "musl"]
        if found is None:
            raise self.doc.error(path, f"unknown {kind} {value!r} in {describe_path(path)}",
                                 value=value, allowed=allowed)
        return found

    def selector(self, entry: dict, path: tuple) -> dict[str, frozenset[str]]:
        out = {}
        for key, value in entry.items():
            values = value if isinstance(value, list) else [value]
            if key in ("python", "arch", "policy", "libc"):
                values = [self.canon(key, v, path + (key,) + ((i,) if isinstance(value, list) else ()))
                          for i, v in enumerate(values)]
            elif key == "isa":
                values = [self._canon_level_any(v, path + (key,)) for v in values]
            elif key == "package":
                values = [normalize_name(v) for v in values]
            out[key] = frozenset(values)
        return out

    def _canon_level_any(self, value: str, path: tuple) -> str:
        for arch in self.cat.arches:
            found = self.cat.level_alias(arch, value)
            if found:
                return found
        raise self.doc.error(path, f"unknown ISA level {value!r}", value=value, allowed=list(self.cat.levels))

    @staticmethod
    def matches(sel: dict[str, frozenset[str]], attrs: dict[str, str]) -> bool:
        for key, values in sel.items():
            if attrs.get(key) not in values:
                return False
        return True

    # -- axes ----------------------------------------------------------------------------
    def run(self) -> Expansion:
        d = self.data
        cat = self.cat
        defaults = cat.defaults
        if "python" in d:
            pythons = [(self.canon("python", v, ("python", i)), ("python", i)) for i, v in enumerate(d["python"])]
        else:
            pythons = [(p.id, None) for p in cat.pythons.values()
                       if p.status == "supported" and p.implementation == "cpython"]
        for py, path in pythons:
            if self.cat.pythons[py].status == "unavailable":
                raise self.doc.error(path, f"{py} cannot be built: {self.cat.pythons[py].reason}", value=py)
        libcs = d.get("libc", defaults["libc"])
        libcs = [self.canon("libc", v, ("libc", i)) for i, v in enumerate(libcs)]
        arches = d.get("arch", defaults["arch"])
        arches = [self.canon("arch", v, ("arch", i)) for i, v in enumerate(arches)]
        for name, axis in (("python", [p for p, _ in pythons]), ("libc", libcs), ("arch", arches)):
            dup = {v for v in axis if axis.count(v) > 1}
            if dup:
                raise self.doc.error((name,), f"{name} lists {sorted(dup)[0]!r} twice")

        self.policy_req: dict[str, tuple[str, tuple]] = {}
        for libc, value in d.get("policy", {}).items():
            pol = self.canon("policy", value, ("policy", libc))
            if self.cat.policies[pol].libc != libc:
                raise self.doc.error(("policy", libc), f"policy {pol!r} is for {self.cat.policies[pol].libc}, "
                                     f"not {libc}", value=pol,
                                     allowed=[p.name for p in self.cat.policies.values() if p.libc == libc])
            self.policy_req[libc] = (pol, ("policy", libc))

        self.isa_axis: dict[str, list[tuple[str, tuple | None]]] = {}
        for arch_name, levels in d.get("isa", {}).items():
            arch = self.canon("arch", arch_name, ("isa", arch_name))
            canon = [(self.canon("isa", lv, ("isa", arch_name, i), arch=arch), ("isa", arch_name, i))
                     for i, lv in enumerate(levels)]
            names = [c for c, _ in canon]
            dup = {v for v in names if names.count(v) > 1}
            if dup:
                raise self.doc.error(("isa", arch_name), f"isa.{arch_name} lists {sorted(dup)[0]!r} twice")
            self.isa_axis[arch] = canon
            if arch not in arches:
                self.warn(("isa", arch_name), f"isa.{arch_name} names levels, but {arch} is not in 'arch'; "
                          "only include entries can use them")

        self.images: dict[tuple[str, str], tuple[str, str | None, tuple]] = {}
        for key, value in d.get("images", {}).items():
            arch_name, libc = key.rsplit("-", 1)
            arch = self.cat.arch_alias(arch_name)
            if arch is None:
                raise self.doc.error(("images", key), f"images key {key!r} names an unknown arch {arch_name!r}",
                                     value=arch_name, allowed=list(self.cat.arches),
                                     hint="keys are '<arch>-<libc>', e.g. riscv64-glibc")
            ref = value["image"] if isinstance(value, dict) else value
            policy = None
            if isinstance(value, dict) and "policy" in value:
                policy = self.canon("policy", value["policy"], ("images", key, "policy"))
            self.images[(arch, libc)] = (ref, policy, ("images", key))

        spec = d.get("cibuildwheel", defaults["cibuildwheel"])
        if isinstance(spec, dict):
            self.cibw_spec = (spec["spec"], tuple(spec.get("patches", ())), self.origin(("cibuildwheel",)))
        elif "cibuildwheel" in d:
            self.cibw_spec = (spec, (), self.origin(("cibuildwheel",)))
        else:
            self.cibw_spec = (spec, (), self.catalog_origin("defaults.toml cibuildwheel"))

        self.runners = {}
        for arch_name, r in d.get("runners", {}).items():
            arch = self.canon("arch", arch_name, ("runners", arch_name))
            gitlab = r.get("gitlab", [])
            self.runners[arch] = (r.get("github", DEFAULT_RUNNER),
                                  tuple([gitlab] if isinstance(gitlab, str) else gitlab), ("runners", arch_name))

        self.excludes = [(self.selector(e, ("exclude", i)), ("exclude", i), [0])
                         for i, e in enumerate(d.get("exclude", []))]
        self.overrides = [(self.selector(o["select"], ("overrides", i, "select")), o, ("overrides", i))
                          for i, o in enumerate(d.get("overrides", []))]
        # registries with a selector first (in file order), then the catch-all ones
        regs = d.get("registries", {})
        self.registries = [(name, self.selector(r["select"], ("registries", name, "select")))
                           for name, r in regs.items() if "select" in r]
        self.registries += [(name, {}) for name, r in regs.items() if "select" not in r]

        packages: list[tuple[str, str, dict, tuple | None]] = []
        for i, pkg in enumerate(d.get("packages", [])):
            for j, version in enumerate(pkg["versions"]):
                packages.append((normalize_name(pkg["name"]), version, pkg, ("packages", i)))
        self.package_excludes = {
            path: [(self.selector(e, path + ("exclude", k)), path + ("exclude", k), [0])
                   for k, e in enumerate(pkg.get("exclude", []))]
            for _, _, pkg, path in packages
        }
        if not packages:
            packages = [("", "", {}, None)]

        cells: dict[str, Cell] = {}
        dropped: list[Dropped] = []
        axis_count = 0
        for pkg_name, pkg_version, pkg, pkg_path in packages:
            for arch in arches:
                levels = self.isa_axis.get(arch) or [(self.cat.arches[arch].baseline.name, None)]
                for libc in libcs:
                    for py, py_path in pythons:
                        for level, level_path in levels:
                            axis_count += 1
                            attrs = {"python": py, "libc": libc, "arch": arch, "isa": level,
                                     "package": pkg_name, "version": pkg_version}
                            cid = self.cell_id(pkg_name, pkg_version, py, libc, arch, level)
                            excluded = self.excluded(attrs, pkg_path)
                            if excluded is not None:
                                dropped.append(Dropped(cid, f"excluded by {describe_path(excluded)}",
                                                       self.origin(excluded)))
                                continue
                            why = self.cat.pythons[py].available_on(libc, arch)
                            if why:
                                dropped.append(Dropped(cid, f"cannot be built: {why}",
                                                       self.catalog_origin("pythons.toml " + py)))
                                continue
                            cell = self.make_cell(cid, attrs, pkg, pkg_path, py_path, level_path)
                            cells[cid] = cell
        if axis_count and not cells and not d.get("include"):
            if self.excludes:
                where, reason = ("exclude",), "the exclude entries remove"
            elif any(self.package_excludes.values()):
                where, reason = ("packages",), "the packages' exclude entries remove"
            else:
                where, reason = (), "the catalog rules out"
            raise self.doc.error(where, f"{reason} every cell of this matrix; nothing would be built",
                                 hint=f"all {axis_count} cells of the axes were dropped")
        for entries in [self.excludes, *self.package_excludes.values()]:
            for sel, path, hits in entries:
                if hits[0] == 0:
                    self.warn(path, f"{describe_path(path)} matches no cell")

        for i, entry in enumerate(d.get("include", [])):
            for pkg_name, pkg_version, pkg, pkg_path in packages:
                self.include(cells, entry, ("include", i), pkg_name, pkg_version, pkg, pkg_path)
        if not cells:
            raise self.doc.error((), "this matrix has no cells")
        return Expansion(list(cells.values()), dropped, self.warnings, [self.doc.file])

    def excluded(self, attrs: dict, pkg_path: tuple | None) -> tuple | None:
        for entries in (self.excludes, self.package_excludes.get(pkg_path, ())):
            for sel, path, hits in entries:
                if self.matches(sel, attrs):
                    hits[0] += 1
                    return path
        return None

    @staticmethod
    def cell_id(pkg: str, version: str, py: str, libc: str, arch: str, level: str) -> str:
        base = f"{py}-{LIBC_PLATFORM[libc]}_{arch}-{level}"
        return f"{pkg}-{version}-{base}" if pkg else base

    def include(self, cells: dict, entry: dict, path: tuple, pkg_name: str, pkg_version: str, pkg: dict,
                pkg_path: tuple | None) -> None:
        py = self.canon("python", entry["python"], path + ("python",))
        arch = self.canon("arch", entry["arch"], path + ("arch",))
        libc = entry.get("libc", "glibc")
        if "isa" in entry:
            level = self.canon("isa", entry["isa"], path + ("isa",), arch=arch)
        else:
            level = self.cat.arches[arch].baseline.name
        why = self.cat.pythons[py].available_on(libc, arch)
        if why:
            raise self.doc.error(path, f"{describe_path(path)} names a cell that cannot be built: "
                                 f"{why}", value=py)
        cid = self.cell_id(pkg_name, pkg_version, py, libc, arch, level)
        attrs = {"python": py, "libc": libc, "arch": arch, "isa": level, "package": pkg_name,
                 "version": pkg_version}
        policy = None
        if "policy" in entry:
            policy = (self.canon("policy", entry["policy"], path + ("policy",)), path + ("policy",))
            if self.cat.policies[policy[0]].libc != libc:
                raise self.doc.error(path + ("policy",), f"policy {policy[0]!r} is for "
                                     f"{self.cat.policies[policy[0]].libc}, not {libc}")
        existing = cells.get(cid)
        if existing is not None and policy is not None and existing.policy != policy[0]:
            raise self.doc.error(path, f"include entry adds {cid} with policy {policy[0]}, but the axes already "
                                 f"build it with {existing.policy}; one cell id cannot have two policies")
        cells[cid] = self.make_cell(cid, attrs, pkg, pkg_path, path + ("python",), path + ("isa",) if
                                    "isa" in entry else None, include=(entry, path), policy_override=policy)

    # -- per-cell resolution -----------------------------------------------------------
    def platform(self, arch: str, libc: str, requested: tuple[str, tuple] | None):
        """(policy, policy origin, image, custom, image origin, notes) for an arch/libc."""
        key = (arch, libc, requested)
        hit = self._platform_cache.get(key)
        if hit is not None:
            return hit
        a = self.cat.arches[arch]
        notes: list[str] = []
        req = requested or self.policy_req.get(libc)
        if (arch, libc) in self.images:
            ref, declared, ipath = self.images[(arch, libc)]
            iorigin = self.origin(ipath)
            if ref in a.pypa_images:
                result = (ref, iorigin, ref, False, iorigin, ())
            else:
                m = _POLICY_IN_NAME.search(ref)
                if declared:
                    policy, porigin = declared, self.origin(ipath + ("policy",))
                elif m and self.cat.policy_alias(m.group(1)):
                    policy = self.cat.policy_alias(m.group(1))
                    porigin = self.origin(ipath, f"read from the image name {ref}")
                elif req:
                    policy, porigin = req[0], self.origin(req[1])
                else:
                    policy, porigin = a.default_policy[libc], self.catalog_origin(f"arches.toml {arch} default-policy")
                if req and req[0] != policy:
                    notes.append(f"the custom image yields {policy}, not the requested {req[0]}")
                result = (policy, porigin, ref, True, iorigin, tuple(notes))
        elif req:
            policy, ppath = req
            if self.cat.policies[policy].libc != libc:
                raise self.doc.error(ppath, f"policy {policy!r} is for {self.cat.policies[policy].libc}, not {libc}")
            if policy in a.pypa_images:
                o = self.origin(ppath)
                result = (policy, o, policy, False, o, ())
            else:
                want = _policy_key(self.cat, policy)
                newer = sorted((p for p in a.pypa_images if self.cat.policies[p].libc == libc
                                and _policy_key(self.cat, p) >= want), key=lambda p: _policy_key(self.cat, p))
                if not newer or requested is not None:
                    raise self.doc.error(
                        ppath, f"there is no pypa image for {policy} on {arch}", value=policy,
                        allowed=[p for p in a.pypa_images if self.cat.policies[p].libc == libc],
                        hint=f"give a custom image as images: {{{arch}-{libc}: IMAGE}}")
                policy = newer[0]
                o = self.origin(ppath, f"raised to {policy}: the oldest pypa image for {arch}")
                result = (policy, o, policy, False, o,
                          (f"{req[0]} has no pypa image for {arch}; built with {policy}",))
        else:
            policy = a.default_policy[libc]
            o = self.catalog_origin(f"arches.toml {arch} default-policy")
            result = (policy, o, policy, False, self.catalog_origin("pinned pypa image"), ())
        self._platform_cache[key] = result
        return result

    def make_cell(self, cid: str, attrs: dict, pkg: dict, pkg_path: tuple | None, py_path, level_path,
                  include: tuple[dict, tuple] | None = None, policy_override=None) -> Cell:
        py, libc, arch, level = attrs["python"], attrs["libc"], attrs["arch"], attrs["isa"]
        python = self.cat.pythons[py]
        policy, porigin, image, custom, iorigin, pnotes = self.platform(arch, libc, policy_override)
        attrs["policy"] = policy
        matched = tuple(i for i, (sel, _, _) in enumerate(self.overrides) if self.matches(sel, attrs))
        # Everything but the Python is shared by many cells: resolve it once per combination.
        key = (pkg_path, arch, libc, level, matched, include[1] if include else None, policy_override)
        shared = self._shared.get(key)
        if shared is None:
            shared = self._shared[key] = self.resolve_shared(attrs, pkg, pkg_path, level_path, matched, include,
                                                             porigin, iorigin)
        settings, env, origins, runner, cibw_tail = shared
        origins = dict(origins)
        if include is not None:
            origins["python"] = origins["libc"] = origins["arch"] = self.origin(include[1])
        else:
            origins["python"] = self.origin(py_path) if py_path else self.catalog_origin("supported CPythons")
        head = self._heads.get((py, libc, arch, image))
        if head is None:
            head = self._heads[(py, libc, arch, image)] = self.python_head(python, libc, arch, image)
        identifier, cibw_head, eol_note = head
        notes = (*pnotes, eol_note) if eol_note else pnotes
        cibw = {**cibw_head, **cibw_tail}
        registry = next((name for name, sel in self.registries if self.matches(sel, attrs)), "")
        if registry:
            origins["registry"] = self.origin(("registries", registry))
        return Cell(
            id=cid, python=py, libc=libc, policy=policy, arch=arch, isa=level, identifier=identifier,
            image=image, custom_image=custom, cibuildwheel=self.cibw_spec[0], patches=self.cibw_spec[1],
            environment=env, cibw=cibw, runner=runner, timeout_minutes=settings["timeout-minutes"],
            test_command=settings.get("test-command", ""), test_requires=settings["test-requires"],
            before_all=settings.get("before-all", ""), before_build=settings.get("before-build", ""),
            build_requires=settings["build-requires"], package=attrs["package"], version=attrs["version"],
            matrix_file=self.doc.file, registry=registry, origins=origins, notes=notes,
            cibw_parts=(cibw_head, cibw_tail),
        )

    @staticmethod
    def python_head(python, libc: str, arch: str, image: str) -> tuple[str, dict[str, str], str]:
        """Identifier, selection/image options and notes that depend on the Python."""
        identifier = f"{python.id}-{LIBC_PLATFORM[libc]}_{arch}"
        cibw = {"CIBW_BUILD": identifier, "CIBW_ARCHS_LINUX": arch}
        if python.enable:
            cibw["CIBW_ENABLE"] = python.enable
        flavour = "PYPY_" if python.implementation == "pypy" else ""
        cibw[f"CIBW_{LIBC_PLATFORM[libc].upper()}_{flavour}{arch.upper()}_IMAGE"] = image
        return identifier, cibw, f"{python.id} is end-of-life" if python.status == "eol" else ""

    def resolve_shared(self, attrs, pkg, pkg_path, level_path, matched, include, porigin, iorigin):
        """Settings, environment, origins, runner and CIBW options that do not depend on the Python."""
        arch, level = attrs["arch"], attrs["isa"]
        lv = self.cat.levels[level]
        origins = {
            "libc": self.origin(("libc",)) if "libc" in self.data else self.catalog_origin("defaults.toml libc"),
            "arch": self.origin(("arch",)) if "arch" in self.data else self.catalog_origin("defaults.toml arch"),
            "isa": self.origin(level_path) if level_path else self.catalog_origin(f"isa.toml {arch} baseline"),
            "policy": porigin,
            "image": iorigin,
            "cibuildwheel": self.cibw_spec[2],
        }
        # settings, lowest precedence first
        settings: dict[str, Any] = {"timeout-minutes": self.cat.defaults["timeout-minutes"]}
        set_origin: dict[str, Origin] = {"timeout-minutes": self.catalog_origin("defaults.toml timeout-minutes")}
        env: dict[str, str] = {}
        env_origin: dict[str, Origin] = {}
        isa_origin = self.catalog_origin(f"isa.toml {level}")
        for var, flags in (("CFLAGS", lv.cflags), ("CXXFLAGS", lv.cflags), ("RUSTFLAGS", lv.rustflags),
                           ("QEMU_CPU", lv.qemu_cpu)):
            if flags:
                env[var] = flags
                env_origin[var] = isa_origin
        layers = [(self.data, ())]
        if pkg_path is not None:
            layers.append((pkg, pkg_path))
        layers.extend((self.overrides[i][1], self.overrides[i][2]) for i in matched)
        if include is not None:
            layers.append(include)
        for layer, path in layers:
            for key in SETTING_KEYS:
                if key not in layer:
                    continue
                if key == "environment":
                    for var, value in layer[key].items():
                        value = _env_value(value)
                        if var in ("CFLAGS", "CXXFLAGS", "RUSTFLAGS") and env_origin.get(var) is isa_origin:
                            value = f"{env[var]} {value}".strip()
                        env[var] = value
                        env_origin[var] = self.origin(path + (key, var))
                else:
                    settings[key] = layer[key]
                    set_origin[key] = self.origin(path + (key,))
        for var, o in env_origin.items():
            origins[f"environment.{var}"] = o
        origins.update(set_origin)
        test_requires = settings.get("test-requires", ())
        settings["test-requires"] = tuple([test_requires] if isinstance(test_requires, str) else test_requires)
        settings["build-requires"] = tuple(settings.get("build-requires", ()))

        if arch in self.runners:
            github, gitlab, rpath = self.runners[arch]
            runner = Runner(github, gitlab, False)
            origins["runner"] = self.origin(rpath)
        else:
            emulated = self.cat.arches[arch].host != "x86_64"
            runner = Runner(DEFAULT_RUNNER, (), emulated)
            origins["runner"] = self.catalog_origin(
                f"no native runner for {arch}: emulated with QEMU" if emulated else "hosted x86_64 runner")
        return settings, env, origins, runner, self.cibw_options(arch, lv, env, settings)

    @staticmethod
    def cibw_options(arch, lv, env, settings) -> dict[str, str]:
        """The CIBW_* options after selection and image (those depend on the Python)."""
        cibw = {}
        env = dict(env)
        before_all = settings.get("before-all", "")
        build_requires = settings["build-requires"]
        if build_requires:
            env["PIP_CONSTRAINT"] = CONSTRAINTS_FILE
            write = "printf '%s\\n' " + " ".join(shlex.quote(r) for r in build_requires) + f" > {CONSTRAINTS_FILE}"
            before_all = f"{write} && {before_all}" if before_all else write
        if env:
            cibw["CIBW_ENVIRONMENT_LINUX"] = " ".join(f"{k}={_dq(v)}" for k, v in env.items())
        if before_all:
            cibw["CIBW_BEFORE_ALL_LINUX"] = before_all
        if settings.get("before-build"):
            cibw["CIBW_BEFORE_BUILD_LINUX"] = settings["before-build"]
        if settings.get("test-command"):
            cibw["CIBW_TEST_COMMAND_LINUX"] = settings["test-command"]
        if settings["test-requires"]:
            cibw["CIBW_TEST_REQUIRES_LINUX"] = " ".join(settings["test-requires"])
        if arch == "x86_64" and not lv.baseline:
            # auditwheel >= 6.3 rejects/downgrades wheels whose x86 ISA note is above baseline;
            # ciwheels records the level itself and verifies it.
            cibw["CIBW_REPAIR_WHEEL_COMMAND_LINUX"] = "auditwheel repair --disable-isa-ext-check -w {dest_dir} {wheel}"
        return cibw


def _policy_key(cat: Catalog, policy: str) -> tuple[int, ...]:
    return tuple(int(x) for x in cat.policies[policy].version.split("."))


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dq(value: str) -> str:
    """Double-quote for cibuildwheel's bash-like environment parser; $VARS still expand."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'
