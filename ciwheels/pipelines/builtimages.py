"""The build images the pipelines make themselves (`render: {build-images: ...}`, issue #11).

Per arch, the recipe is the matrix's base and native-compilers choice plus the CPythons of the
project's glibc cells on that arch (musllinux cells keep pypa's images); its digest
(`ciwheels.images.recipe.Recipe.digest`) tags the image. The glibc cells of the arch build in

    $CIWHEELS_IMAGE_REGISTRY/ciwheels-manylinux-<arch>:<digest>

where the rendered pipelines set CIWHEELS_IMAGE_REGISTRY to the project's container registry
(GitLab `$CI_REGISTRY_IMAGE`, GitHub `ghcr.io/<owner>/<repo>`) and it is `localhost` elsewhere,
so `ciwheels image build ARCH ... --tag localhost/ciwheels-manylinux-<arch>:<digest>` makes it on
a workstation. A changed recipe or input changes the digest, hence the rendered files (`render
--check` notices) and the image the pipeline builds; an unchanged one reuses the pushed image.

The digest needs the cells' Pythons and the cells need the image: open_project expands once
with a placeholder reference (the policy, the only thing expansion reads from an image, is known
from the base), takes the Pythons, and expands again with the real reference."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ciwheels.catalog import Catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import get_logger
from ciwheels.images.recipe import Recipe, image_repository
from ciwheels.matrix.expand import expand
from ciwheels.matrix.model import Expansion
from ciwheels.matrix.normalise import BuildImageSpec, ImageSpec, ProjectSpec

REGISTRY_VARIABLE = "CIWHEELS_IMAGE_REGISTRY"
LOCAL_REGISTRY = "localhost"

log = get_logger("builtimages")


@dataclass(frozen=True)
class BuiltImage:
    spec: BuildImageSpec
    pythons: tuple[str, ...]  # catalog order
    digest: str
    registry: str

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def name(self) -> str:
        """The reference below the registry: `ciwheels-manylinux-<arch>:<digest>`."""
        return f"{image_repository(self.spec.arch)}:{self.digest}"

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.name}"


def registry() -> str:
    """Where built images live: $CIWHEELS_IMAGE_REGISTRY, lowercased (image repositories are
    lowercase; GitHub's owner/repo may not be), else `localhost`."""
    value = os.environ.get(REGISTRY_VARIABLE, "").strip().rstrip("/")
    return value.lower() if value else LOCAL_REGISTRY


def recipe_of(built: BuildImageSpec, expansion: Expansion, catalog: Catalog) -> tuple[str, ...] | None:
    """The Pythons the image of `built` must carry: those of the glibc cells on its arch, in
    catalog order; None when no glibc cell builds on the arch."""
    cells = [c for c in expansion.cells if c.arch == built.arch and c.libc == "glibc"]
    if not cells:
        return None
    other = sorted({c.python for c in cells if catalog.pythons[c.python].implementation != "cpython"})
    if other:
        raise CiwheelsError(
            f"render.build-images.{built.arch}: the image the pipelines build carries CPython only, but the matrix "
            f"builds {', '.join(other)} on {built.arch} glibc; exclude them there (exclude: [{{python: {other[0]}, "
            f"arch: {built.arch}}}]) or leave {built.arch} to pypa's image", file=built.origin.file,
            line=built.origin.line, value=other[0])
    order = {p: i for i, p in enumerate(catalog.pythons)}
    return tuple(sorted({c.python for c in cells}, key=lambda p: order.get(p, len(order))))


def give_built_images(spec: ProjectSpec, expansion: Expansion, catalog: Catalog) -> Expansion:
    """The expansion again, its glibc cells on each `build-images` arch in the image of their
    recipe; `spec.built_images` records the images (for plan and render)."""

    where = registry()
    images: dict[str, BuiltImage] = {}
    unused = []
    for built in spec.render.build_images:
        pythons = recipe_of(built, expansion, catalog)
        if pythons is None:
            unused.append(built)
            continue
        digest = Recipe(built.arch, built.base, pythons, built.native_compilers, sysroot=built.sysroot).digest()
        images[built.arch] = image = BuiltImage(built, pythons, digest, where)
        for m in spec.matrices:
            m.images[(built.arch, "glibc")] = ImageSpec(image.ref, built.policy, built.origin, built.policy_origin,
                                                        sysroot=built.sysroot, sysroot_origin=built.sysroot_origin)
    spec.built_images = images
    for b in unused:
        log.warning("%s: no glibc cell builds on %s, so the pipelines build no %s image", b.origin, b.arch, b.arch)
    return expand(spec, catalog)
