"""`ciwheels image build ARCH`: the build image for arches with no pypa image (riscv64) or for
machines that reach no image registry. With --base it builds images/Containerfile on that
image; without, fully offline, on a Debian root filesystem debootstrapped here (cached) and
imported with `podman import --arch`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ciwheels.errors import CiwheelsError
from ciwheels.log import get_logger
from ciwheels.resources import data_dir

log = get_logger("image")


def image_catalog() -> dict:
    with open(data_dir("catalog") / "images.toml", "rb") as f:
        return tomllib.load(f)


def python_tag(python: str) -> str:
    """The /opt/python folder of a catalog Python: cp311 -> cp311-cp311, cp314t -> cp314-cp314t."""
    return f"{python.removesuffix('t')}-{python}"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what `ciwheels image build` makes: the same recipe gives the same
    image, so `digest` names it (the build-images jobs tag and reuse images by it)."""

    arch: str
    base: str | None  # an image reference; None: Debian `suite` debootstrapped here
    pythons: tuple[str, ...]  # catalog Pythons (cp311, cp314t, ...), sorted
    native_compilers: bool = True

    def digest(self) -> str:
        """sha256 (16 hex digits) of the recipe files, the catalog data they read (image
        catalog, CPython source pins) and the inputs."""
        h = hashlib.sha256()
        files = sorted(data_dir("images").iterdir()) + [data_dir("catalog") / "images.toml",
                                                         data_dir("catalog") / "cpython.toml"]
        for path in files:
            if path.is_file() and path.suffix != ".md":
                h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        h.update(repr((self.arch, self.base, tuple(sorted(self.pythons)), self.native_compilers)).encode())
        return h.hexdigest()[:16]


def image_tag(arch: str) -> str:
    cat = image_catalog()
    return cat["tag"].format(arch=arch, suite=cat["suite"])


def cache_dir() -> Path:
    return Path(os.environ.get("CIWHEELS_CACHE") or Path.home() / ".cache" / "ciwheels")


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise CiwheelsError(f"{what}: {cmd[0]} is not installed") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise CiwheelsError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc


def debootstrap(arch: str) -> Path:
    """A Debian root filesystem for `arch`, made once and cached (a finished one has .complete)."""
    cat = image_catalog()
    debian = cat["arches"][arch]["debian"]
    root = cache_dir() / f"rootfs-{cat['suite']}-{debian}"
    if (root / ".complete").exists():
        log.info(f"using the cached root filesystem {root}")
        return root
    if os.geteuid() != 0:
        raise CiwheelsError("debootstrap needs root; run as root or pass --base IMAGE")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log.info(f"debootstrapping Debian {cat['suite']} {debian} into {partial} (minutes; under QEMU for a foreign arch)")
    _run(["debootstrap", f"--arch={debian}", "--variant=minbase", "--include=" + ",".join(cat["packages"]),
          cat["suite"], str(partial), cat["mirror"]], "debootstrap")
    (partial / ".complete").write_text("ok\n")
    partial.rename(root)
    return root


def build_image(arch: str, engine: str, base: str | None = None, tag: str | None = None) -> str:
    cat = image_catalog()
    if arch not in cat["arches"]:
        raise CiwheelsError(f"no image recipe for {arch}", value=arch, allowed=sorted(cat["arches"]))
    tag = tag or image_tag(arch)
    # container arch names are Debian's, but for ppc64el
    oci_arch = cat["arches"][arch]["debian"].replace("ppc64el", "ppc64le")
    platform = f"linux/{oci_arch}"
    imported = base is None
    if base is None:
        root = debootstrap(arch)
        base = cat["base-tag"].format(arch=arch, suite=cat["suite"])
        log.info(f"importing {root} as {base}")
        tar = subprocess.Popen(["tar", "-C", str(root), "--exclude=./.complete", "-c", "."], stdout=subprocess.PIPE)
        try:
            _run([engine, "import", "--arch", oci_arch, "--os", "linux", "-", base], f"{engine} import",
                 stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait()
    plat = f"{cat['policy']}_{arch}"
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        recipe = data_dir("images")
        for name in ("Containerfile", "setup.sh"):
            shutil.copy(recipe / name, context / name)
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        (context / "ca-certificates.crt").write_bytes(bundle.read_bytes() if bundle.exists() else b"")
        log.info(f"building {tag} on {base} (AUDITWHEEL_PLAT={plat})")
        # a base imported here must not be looked up in a registry; a named one may be pulled
        pull = (["--pull=never"] if imported else ["--pull=missing"]) if engine == "podman" else []
        _run([engine, "build", *pull, "--platform", platform, "--build-arg", f"BASE={base}",
              "--build-arg", f"AUDITWHEEL_PLAT={plat}", "-t", tag, "-f", str(context / "Containerfile"),
              str(context)], f"{engine} build")
    return tag


def image_exists(engine: str, tag: str) -> bool:
    """`image inspect` answers for a local image in both docker and podman."""
    return subprocess.run([engine, "image", "inspect", tag], capture_output=True).returncode == 0
