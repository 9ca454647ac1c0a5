"""The label contract of images made by `ciwheels image build`: what an image says it carries,
read before any container starts. The labels are spelled here only (the Containerfile writes
them from the same names, see images/README.md)."""

from __future__ import annotations

from collections.abc import Callable

from ciwheels.matrix.model import Cell

PYTHONS_LABEL = "io.ciwheels.pythons"  # the Pythons it carries: "cp311 cp313 cp314t"
POLICY_LABEL = "io.ciwheels.policy"  # the policy its (sysroot's) glibc gives (e.g. manylinux_2_31_riscv64)
RECIPE_LABEL = "io.ciwheels.recipe"  # the digest of its recipe
ARCH_LABEL = "io.ciwheels.arch"
NATIVE_COMPILERS_LABEL = "io.ciwheels.native-compilers"  # "true" when x86_64-hosted compilers come first
CROSS_LABEL = "io.ciwheels.cross"  # the Pythons it cross-builds (cross mode, xpython.sh), "" for none
SYSROOT_LABEL = "io.ciwheels.sysroot"  # the older glibc's sysroot its compilers use (bullseye), or "none"


NOT_IN_IMAGE = "python-not-in-image"  # the build-report status of a cell refused for that


def carried_pythons(labels: dict[str, str] | None) -> tuple[str, ...] | None:
    """The Pythons an image says it carries (its io.ciwheels.pythons label, e.g. "cp311 cp313
    cp314t"); None when it does not say (not present locally, or not made by ciwheels)."""
    if labels is None or PYTHONS_LABEL not in labels:
        return None
    return tuple(labels[PYTHONS_LABEL].replace(",", " ").split())


def refusals(cells: list[Cell], pythons_of: Callable[[str], tuple[str, ...] | None]) -> dict[str, str]:
    """Cell id -> why it cannot be built, for each cell whose image says it lacks the cell's
    Python. `pythons_of(image_ref)` is asked once per image."""
    known: dict[str, tuple[str, ...] | None] = {}
    out = {}
    for cell in cells:
        if cell.image_ref not in known:
            known[cell.image_ref] = pythons_of(cell.image_ref)
        carried = known[cell.image_ref]
        if carried is not None and cell.python not in carried:
            out[cell.id] = (f"the image {cell.image_ref} carries {', '.join(carried) or 'no Python'} "
                            f"(label {PYTHONS_LABEL}), not {cell.python}: {cell.id} cannot be built in it, so no "
                            f"container was started for it; build the image with {cell.python} (ciwheels image "
                            f"build {cell.arch} --python ...) or exclude the cell")
    return out


def policy_mismatches(cells: list[Cell], labels_of: Callable[[str], dict[str, str] | None]) -> list[str]:
    """A warning per image whose policy label (what its glibc gives) is not the policy its cells
    expect: their wheels' tags would not be what plan and status look for."""
    out = []
    for cell in {c.image_ref: c for c in cells}.values():
        said = (labels_of(cell.image_ref) or {}).get(POLICY_LABEL)
        expected = f"{cell.policy}_{cell.arch}"
        if said and said != expected:
            out.append(f"the image {cell.image_ref} says its wheels get {said} (label {POLICY_LABEL}), but the matrix "
                       f"expects {expected} for {cell.id}: the wheels' tags will not match what plan and status look "
                       f"for; give the image's policy in the matrix (images: {{{cell.arch}-glibc: {{policy: ...}}}})")
    return out


def image_facts(labels: dict[str, str]) -> dict:
    """What an existing image says of itself, as `ciwheels image build --json` prints it."""
    policy = labels.get(POLICY_LABEL, "")
    return {"glibc": ".".join(policy.split("_")[1:3]) if policy.startswith("manylinux_") else None,
            "policy": policy, "pythons": labels.get(PYTHONS_LABEL, "").split(),
            "native-compilers": labels.get(NATIVE_COMPILERS_LABEL) == "true",
            "sysroot": labels.get(SYSROOT_LABEL, "none"), "cross": labels.get(CROSS_LABEL, "").split()}
