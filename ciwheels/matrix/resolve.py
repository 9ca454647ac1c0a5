"""Stage 4, resolve: one cell's axes -> a `Cell` with everything a build needs.

- platform: the policy, and the image (a pinned pypa image of the catalog or a custom one);
- settings: the declared cascade of layers (cascade.py; in builder mode the package's own
  configuration from its sdist lies under them), then the ISA family's flags, always
  combined with its result;
- runner and registry;
- cibuildwheel options, from the one adapter (matrix/cibwopts.py).

What many cells share (everything but the Python) is resolved once per combination and the
same objects are reused: a builder matrix of 5,000 cells has a few hundred combinations."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ciwheels.catalog import Catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.isa.families import family
from ciwheels.matrix.cascade import cascade, combine_isa
from ciwheels.matrix.cibwopts import selection_options, shared_options
from ciwheels.matrix.model import Cell, Origin, Runner
from ciwheels.matrix.normalise import (
    ImageSpec,
    Include,
    MatrixSpec,
    Package,
    ProjectSpec,
)

_POLICY_IN_NAME = re.compile(r"(manylinux_\d+_\d+|manylinux2014|musllinux_\d+_\d+)")


@dataclass(frozen=True)
class Platform:
    policy: str
    policy_origin: Origin
    image: str  # a pypa policy name or a full reference
    image_ref: str  # always a full reference
    custom: bool
    image_origin: Origin
    notes: tuple[str, ...]
    sysroot: str = ""  # a pipeline-built image's sysroot
    sysroot_origin: Origin | None = None


def _yaml_list(values: list[str]) -> str:
    return values[0] if len(values) == 1 else "[" + ", ".join(values) + "]"


def _policy_key(cat: Catalog, policy: str) -> tuple[int, ...]:
    return tuple(int(x) for x in cat.policies[policy].version.split("."))


class Resolver:
    def __init__(self, matrix: MatrixSpec, project: ProjectSpec, catalog: Catalog) -> None:
        self.m = matrix
        self.project = project
        self.cat = catalog
        self._platforms: dict[tuple, Platform] = {}
        self._shared: dict[tuple, tuple] = {}
        self._heads: dict[tuple, tuple] = {}
        self._origins: dict[tuple, dict[str, Origin]] = {}
        self._registries: dict[tuple, str] = {}
        self._catalog_origins: dict[str, Origin] = {}
        # images that declare their Pythons, and the cells each one lacks the Python of
        self._declared = {k: img for k, img in matrix.images.items() if img.pythons is not None}
        self._lacking: dict[tuple[str, str], dict[str, str]] = {}

    def catalog_origin(self, detail: str) -> Origin:
        o = self._catalog_origins.get(detail)
        if o is None:
            o = self._catalog_origins[detail] = Origin("catalog", detail=detail)
        return o

    # -- platform ------------------------------------------------------------------------
    def platform(self, arch: str, libc: str, include: Include | None, image: ImageSpec | None = None) -> Platform:
        """`image`: the image an override gives the cell, over the top level's `images:`."""
        requested = (include.policy, include.origin) if include is not None and include.policy else None
        key = (arch, libc, requested, id(image))
        hit = self._platforms.get(key)
        if hit is None:
            hit = self._platforms[key] = self._platform(arch, libc, requested, include.path if include else (), image)
        return hit

    def override_image(self, attrs: dict[str, str]) -> ImageSpec | None:
        """The image the last matching `overrides` entry with an image for the cell's arch and
        libc gives it (their selectors cannot name the policy: normalise.override_images)."""
        key = (attrs["arch"], attrs["libc"])
        for (sel, _), images in zip(reversed(self.m.overrides), reversed(self.m.override_images)):
            if key in images and sel.matches(attrs):
                return images[key]
        return None

    def _platform(self, arch: str, libc: str, requested: tuple[str, Origin] | None, include_path: tuple,
                  override: ImageSpec | None = None) -> Platform:
        a = self.cat.arches[arch]
        req = requested or self.m.policies.get(libc)
        image = override or self.m.images.get((arch, libc))
        if image is not None:
            if image.ref in a.pypa_images:
                return Platform(image.ref, image.origin, image.ref, a.pinned_images[image.ref], False, image.origin, ())
            m = _POLICY_IN_NAME.search(image.ref)
            if image.policy:
                policy, porigin = image.policy, image.policy_origin
            elif m and self.cat.policy_alias(m.group(1)):
                policy = self.cat.policy_alias(m.group(1))
                porigin = Origin("matrix", image.origin.file, image.origin.line, f"read from the image name {image.ref}")
            elif req:
                policy, porigin = req
            else:
                policy, porigin = a.default_policy[libc], self.catalog_origin(f"arches.toml {arch} default-policy")
            notes = (f"the custom image yields {policy}, not the requested {req[0]}",) if req and req[0] != policy else ()
            return Platform(policy, porigin, image.ref, image.ref, True, image.origin, notes, image.sysroot,
                            image.sysroot_origin)
        if req:
            policy, porigin = req
            if policy in a.pypa_images:
                return Platform(policy, porigin, policy, a.pinned_images[policy], False, porigin, ())
            want = _policy_key(self.cat, policy)
            newer = sorted((p for p in a.pypa_images if self.cat.policies[p].libc == libc
                            and _policy_key(self.cat, p) >= want), key=lambda p: _policy_key(self.cat, p))
            if not newer or requested is not None:
                path = include_path + ("policy",) if requested else ("policy", libc)
                raise self.m.doc.error(
                    path, f"there is no pypa image for {policy} on {arch}", value=policy,
                    allowed=[p for p in a.pypa_images if self.cat.policies[p].libc == libc],
                    hint=f"give a custom image as images: {{{arch}-{libc}: IMAGE}}")
            raised = newer[0]
            o = Origin("matrix", porigin.file, porigin.line, f"raised to {raised}: the oldest pypa image for {arch}")
            return Platform(raised, o, raised, a.pinned_images[raised], False, o,
                            (f"{policy} has no pypa image for {arch}; built with {raised}",))
        policy = a.default_policy[libc]
        return Platform(policy, self.catalog_origin(f"arches.toml {arch} default-policy"), policy,
                        a.pinned_images[policy], False, self.catalog_origin(f"arches.toml {arch} pypa-images.{policy}"),
                        ())

    # -- a cell --------------------------------------------------------------------------
    def cell(self, cid: str, attrs: dict[str, str], package: Package | None, py_origin: Origin,
             level_origin: Origin | None, include: Include | None) -> Cell:
        py, libc, arch, level = attrs["python"], attrs["libc"], attrs["arch"], attrs["isa"]
        plat = self.platform(arch, libc, include, self.override_image(attrs) if self.m.override_images else None)
        if self._declared:
            declared = self._declared.get((arch, libc))
            if declared is not None and plat.image == declared.ref and py not in declared.pythons:
                self._lacking.setdefault((arch, libc), {})[cid] = py
        attrs["policy"] = plat.policy
        matched = tuple(i for i, (sel, _) in enumerate(self.m.overrides) if sel.matches(attrs))
        own = self.m.sdist.get((package.name, attrs["version"])) if package is not None else None
        own_matched = tuple(i for i, (sel, _) in enumerate(own.overrides) if sel.matches(attrs)) if own else ()
        key = (package.path if package else None, arch, libc, level, matched, include.path if include else None,
               id(plat), attrs["version"] if own else None, own_matched)
        shared = self._shared.get(key)
        if shared is None:
            shared = self._shared[key] = self._resolve_shared(arch, libc, level, package, matched, include, plat,
                                                              level_origin, own, own_matched)
        settings, env, isa_env, user_env, shared_origins, runner, tail = shared
        registry = ""
        if self.m.registry_selectors:
            rkey = (key, py, attrs["version"])
            registry = self._registries.get(rkey)
            if registry is None:
                registry = self._registries[rkey] = next(
                    (name for name, sel in self.m.registry_selectors if sel is None or sel.matches(attrs)), "")
        okey = (key, id(py_origin), registry)
        origins = self._origins.get(okey)
        if origins is None:  # shared by the cells of one Python in many versions/levels
            origins = self._origins[okey] = dict(shared_origins)
            if include is not None:
                origins["python"] = origins["libc"] = origins["arch"] = include.origin
            else:
                origins["python"] = py_origin
            if registry:
                origins["registry"] = self.project.registries[registry].origin
        head = self._heads.get((py, libc, arch, plat.image))
        if head is None:
            python = self.cat.pythons[py]
            identifier, cibw_head = selection_options(python, libc, arch, plat.image)
            eol = f"{py} is end-of-life" if python.status == "eol" else ""
            head = self._heads[(py, libc, arch, plat.image)] = (identifier, cibw_head, eol)
        identifier, cibw_head, eol_note = head
        publish_as, variant = self.publish_as(arch, level)
        return Cell(
            id=cid, python=py, libc=libc, policy=plat.policy, arch=arch, isa=level, identifier=identifier,
            image=plat.image, custom_image=plat.custom, image_ref=plat.image_ref, sysroot=plat.sysroot,
            cibuildwheel=self.m.cibuildwheel.spec, patches=self.m.cibuildwheel.patches,
            environment=env, cibw={**cibw_head, **tail}, runner=runner, timeout_minutes=settings["timeout-minutes"],
            test_command=settings.get("test-command", ""), test_requires=settings["test-requires"],
            before_all=settings.get("before-all", ""), before_build=settings.get("before-build", ""),
            build_requires=settings["build-requires"], package=attrs["package"], version=attrs["version"],
            matrix_file=self.m.file, registry=registry, origins=origins,
            notes=(*plat.notes, *(own.cell_notes if own else ()), *((eol_note,) if eol_note else ())),
            cibw_parts=(cibw_head, tail),
            isa_environment=isa_env, user_environment=user_env, cibuildwheel_options=settings["cibuildwheel-options"],
            publish_as=publish_as, variant=variant, native_compilers=settings.get("native-compilers", True),
            cross=settings["cross"],
        )

    def check_image_pythons(self) -> None:
        """After every cell is resolved: a cell whose image declares (`images: {KEY: {pythons: [...]}}`)
        that it lacks the cell's Python cannot be built; the matrix must not ask for it."""
        if not self._lacking:
            return
        positions = self.m.doc.key_positions
        key = min(self._lacking, key=lambda k: positions.get(("images", self.m.images[k].key), (0, 0)))
        image, lacking = self.m.images[key], self._lacking[key]
        line, column = positions.get(("images", image.key), (image.origin.line, None))
        missing = sorted(set(lacking.values()), key=list(self.cat.pythons).index)
        shown = list(lacking)[:4] + ([f"and {len(lacking) - 4} more"] if len(lacking) > 4 else [])
        arch, libc = key
        raise CiwheelsError(
            f"the image {image.ref} (images.{image.key}) carries {', '.join(image.pythons)}, but the matrix builds "
            f"{', '.join(missing)} on it: {len(lacking)} cell(s) ({', '.join(shown)}) cannot be built",
            file=self.m.file, line=line, column=column,
            hint=f"Drop them with exclude: [{{python: {_yaml_list(missing)}, arch: {arch}, libc: {libc}}}], or add "
                 f"{' and '.join(missing)} to the image (build it with them: ciwheels image build {arch} "
                 + " ".join(f"--python {p}" for p in sorted({*image.pythons, *missing},
                                                            key=list(self.cat.pythons).index))
                 + f") and to images.{image.key}.pythons")

    def publish_as(self, arch: str, level_name: str) -> tuple[str, str]:
        """(mechanism, variant label): the baseline is a plain wheel; a higher level is a wheel
        variant where the matrix asks for variants on its arch, else a plain wheel for a registry
        of its own."""
        level = self.cat.levels[level_name]
        if level.baseline:
            return "plain", ""
        if arch in self.m.variants and level.variant:
            return "variant", level.variant_label
        return "registry", ""

    def _resolve_shared(self, arch, libc, level_name, package, matched, include, plat: Platform, level_origin,
                        own=None, own_matched=()):
        level = self.cat.levels[level_name]
        # builder mode: the package's own configuration, under every layer of the matrix
        own_layers = (([own.top] if own.top else []) + [own.overrides[i][1] for i in own_matched]) if own else []
        layers = [self.project.defaults, *own_layers, self.m.top]
        if package is not None:
            layers.append(package.layer)
        layers += [self.m.overrides[i][1] for i in matched]
        if include is not None:
            layers.append(include.layer)
        settings, user_env, origins = cascade(layers)
        if own_layers:
            origins = _over_sdist(origins, own_layers)
        fam = family(arch, self.cat)
        isa_env = fam.flags(level)
        env, env_origins = combine_isa(isa_env, self.catalog_origin(f"isa.toml {level.name}"), user_env, origins)
        origins = {k: v for k, v in origins.items() if not k.startswith("environment.")}
        origins.update(env_origins)
        origins.update({
            "libc": self.m.libc_origin, "arch": self.m.arch_origin,
            "isa": level_origin or self.catalog_origin(f"isa.toml {arch} baseline"),
            "policy": plat.policy_origin, "image": plat.image_origin, "image_ref": plat.image_origin,
            "cibuildwheel": self.m.cibuildwheel.origin,
        })
        if plat.sysroot_origin is not None:
            origins["sysroot"] = plat.sysroot_origin
        if self.m.variants_origin is not None and not level.baseline:
            origins["publish_as"] = self.m.variants_origin
        if arch in self.m.runners:
            runner, origins["runner"] = self.m.runners[arch]
        elif self.cat.arches[arch].hosted_github:
            a = self.cat.arches[arch]
            runner = Runner(a.hosted_github, a.hosted_gitlab, False)
            origins["runner"] = self.catalog_origin(
                f"arches.toml {arch}: hosted runners (GitHub {a.hosted_github}, gitlab.com {', '.join(a.hosted_gitlab)})")
        else:
            emulated = self.cat.arches[arch].host != "x86_64"
            runner = Runner(self.project.github_runner, (), emulated)
            origins["runner"] = self.catalog_origin(
                f"no native runner for {arch}: emulated with QEMU" if emulated else "hosted x86_64 runner")
        # cross mode only where the build is emulated anyway, for glibc, with the native compilers
        settings = {**settings, "cross": bool(settings.get("cross", True) and runner.emulated and libc == "glibc"
                                              and settings.get("native-compilers", True))}
        tail = shared_options(env, settings, fam.repair_command(level))
        return settings, env, isa_env, user_env, origins, runner, tail


def _over_sdist(origins: dict[str, Origin], own_layers: list) -> dict[str, Origin]:
    """Builder mode: a setting the matrix sets over the package's own configuration names what
    it replaced, so that explain shows both origins (`... over the sdist's 'build[uv]' at ...`)."""
    out = dict(origins)
    for key, origin in origins.items():
        if origin.kind == "sdist":
            continue
        for layer in reversed(own_layers):
            if key in layer.origins and key not in ("environment", "cibuildwheel-options"):
                group, _, sub = key.partition(".")
                value = layer.values[group][sub] if sub else layer.values[group]
                out[key] = Origin(origin.kind, origin.file, origin.line,
                                  f"{origin.detail}; over {value!r} from {layer.origins[key]}".lstrip("; "))
                break
    return out
