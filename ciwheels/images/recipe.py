"""`ciwheels image build ARCH`: the manylinux-style build image for arches with no pypa image
(riscv64) or for machines that reach no image registry (images/README.md). A `Recipe` (arch,
base, Pythons, native compilers, cross base, sysroot) decides the image, and its digest tags it. The base
is an image reference (`--base`) or, offline, a Debian root filesystem debootstrapped here
(cached) and imported with `podman import --arch`; its glibc, read from the base, is the
manylinux policy, unless extensions compile against an older glibc's sysroot (Debian's cross
packages of an older release, pinned in images.toml; riscv64's default), whose glibc it then
is. The CPython tarballs come from `pysources` (sha256-checked, cached)."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ciwheels.catalog import load_catalog
from ciwheels.catalog.images import image_catalog
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import sha256_file
from ciwheels.core.log import get_logger
from ciwheels.core.resources import cache_dir, data_dir
from ciwheels.images import sources as pysources
from ciwheels.net.http import host_ca_bundle

log = get_logger("image")


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
    cross_base: str | None = None  # the amd64 image the cross compilers come from; None: as the base
    # an older glibc's sysroot to compile extensions against (images.toml [sysroots]), "none", or
    # "default": the arch's default there (riscv64: bullseye, glibc 2.31)
    sysroot: str = "default"
    # cross mode: the interpreters that get a native CPython (xpython.sh); None: every one that can
    # (cross_pythons). Each not in the base distribution costs 5-11 minutes of a cold build.
    cross: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.sysroot == "default":
            object.__setattr__(self, "sysroot", default_sysroot(self.arch))
        if self.cross is not None:
            unknown = sorted(set(self.cross) - set(self.pythons))
            if unknown:
                raise CiwheelsError(f"--cross-python {' '.join(unknown)}: the image does not carry it (its Pythons: "
                                    f"{' '.join(self.pythons)}); choose among those, or `none`")
            free = sorted(p for p in self.cross if p.endswith("t"))
            if free:
                raise CiwheelsError(f"--cross-python {' '.join(free)}: a free-threaded interpreter gets no native "
                                    "CPython (its builds stay emulated)")
            object.__setattr__(self, "cross", tuple(sorted(set(self.cross))))

    def digest(self) -> str:
        """sha256 (16 hex digits) of the recipe files, the catalog data they read (image
        catalog, CPython source pins) and the inputs."""
        h = hashlib.sha256()
        files = sorted(data_dir("images").iterdir()) + [data_dir("catalog") / "images.toml",
                                                         data_dir("catalog") / "cpython.toml"]
        for path in files:
            if path.is_file() and path.suffix != ".md":
                h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        inputs = (self.arch, self.base, tuple(sorted(self.pythons)), self.native_compilers, self.cross_base,
                  self.sysroot)
        # a chosen subset of cross interpreters only (the default, every one, keeps its digest)
        h.update(repr(inputs if self.cross is None else (*inputs, self.cross)).encode())
        return h.hexdigest()[:16]

    def tag(self, registry: str = "localhost") -> str:
        """`<registry>/ciwheels-manylinux-<arch>:<digest>`: the name an image of this recipe has."""
        return f"{registry}/{image_repository(self.arch)}:{self.digest()}"


def cross_pythons(recipe: Recipe) -> tuple[str, ...]:
    """The interpreters an image of `recipe` cross-builds for (cross mode, images/README.md): those
    of a foreign arch with native compilers that are not free-threaded (xpython.sh gives each a
    native CPython of its X.Y)."""
    if not recipe.native_compilers or recipe.arch == "x86_64":
        return ()
    return tuple(p for p in recipe.pythons if not p.endswith("t") and (recipe.cross is None or p in recipe.cross))


def default_sysroot(arch: str) -> str:
    """The sysroot an image of `arch` compiles extensions against unless told (images.toml)."""
    return image_catalog()["arches"].get(arch, {}).get("sysroot", "none")


def sysroot_names(arch: str) -> list[str]:
    """The sysroots the catalog pins for `arch`, and "none"."""
    return [name for name, s in image_catalog().get("sysroots", {}).items() if arch in s.get("debs", {})] + ["none"]


def sysroot_glibc(arch: str, sysroot: str) -> str | None:
    """The glibc of a sysroot ("2.31"); None for "none". An unknown name is an error."""
    if sysroot == "none":
        return None
    if sysroot not in sysroot_names(arch):
        raise CiwheelsError(f"no sysroot {sysroot!r} for {arch} in the image catalog", value=sysroot,
                            allowed=sysroot_names(arch))
    return image_catalog()["sysroots"][sysroot]["glibc"]


def fetch_sysroot(arch: str, sysroot: str) -> list[Path]:
    """The sysroot's .deb files from Debian's archive (the catalog's mirror), each checked against
    its pinned sha256 and cached in <cache>/sources."""
    cat = image_catalog()
    sysroot_glibc(arch, sysroot)
    folder = cache_dir() / "sources"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for pool_path, sha256 in cat["sysroots"][sysroot]["debs"][arch].items():
        dest = folder / Path(pool_path).name
        if not (dest.is_file() and sha256_file(dest) == sha256):
            url = f"{cat['mirror'].rstrip('/')}/{pool_path}"
            tmp = dest.with_name(f".{dest.name}.part")
            try:
                with open(tmp, "w+b") as f:
                    actual, _ = pysources._download(url, f, max_bytes=64 << 20, deadline=600, attempts=3)
                if actual != sha256:
                    raise CiwheelsError(f"{url} has sha256 {actual}, but the image catalog pins {sha256}; "
                                        "the file was not kept")
                tmp.replace(dest)
            finally:
                tmp.unlink(missing_ok=True)
        out.append(dest)
    return out


def image_repository(arch: str) -> str:
    """The repository name of built images below a registry: ciwheels-manylinux-<arch>."""
    return image_catalog()["tag"].removeprefix("localhost/").split(":")[0].format(arch=arch)


def image_tag(arch: str) -> str:
    cat = image_catalog()
    return cat["tag"].format(arch=arch, suite=cat["suite"])


def _run(cmd: list[str], what: str, *, timeout: float = 3600, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise CiwheelsError(f"{what} did not finish within {timeout / 60:.0f} minutes") from None
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


def default_pythons(arch: str) -> tuple[str, ...]:
    """Every CPython the catalog builds for `arch` on glibc (free-threaded ones included)."""

    return tuple(p.id for p in load_catalog().pythons.values()
                 if p.implementation == "cpython" and p.status in ("supported", "eol")
                 and p.available_on("glibc", arch) is None)


def oci_arch(arch: str) -> str:
    """Container arch names are Debian's, but for ppc64el."""
    return image_catalog()["arches"][arch]["debian"].replace("ppc64el", "ppc64le")


def import_rootfs(arch: str, engine: str) -> str:
    """The debootstrapped Debian root filesystem of `arch` as a local image (the offline base)."""
    cat = image_catalog()
    root = debootstrap(arch)
    base = cat["base-tag"].format(arch=arch, suite=cat["suite"])
    if image_exists(engine, base):
        return base
    log.info(f"importing {root} as {base}")
    tar = subprocess.Popen(["tar", "-C", str(root), "--exclude=./.complete", "-c", "."], stdout=subprocess.PIPE)
    try:
        _run([engine, "import", "--arch", oci_arch(arch), "--os", "linux", "-", base], f"{engine} import",
             stdin=tar.stdout)
    finally:
        tar.stdout.close()
        tar.wait()
    return base


def detect_glibc(engine: str, base: str, arch: str, *, local: bool) -> str:
    """The glibc version of `base` (e.g. "2.41"), asked of the image itself."""
    pull = ["--pull=never"] if local and engine == "podman" else []
    proc = _run([engine, "run", "--rm", *pull, "--platform", f"linux/{oci_arch(arch)}", base,
                 "getconf", "GNU_LIBC_VERSION"], f"reading the glibc version of {base}", timeout=600)
    words = proc.stdout.split()
    if len(words) != 2 or words[0] != "glibc" or not re.fullmatch(r"2\.\d+", words[1]):
        raise CiwheelsError(f"{base} is not a glibc Linux (getconf GNU_LIBC_VERSION said {proc.stdout.strip()!r}); "
                            "a manylinux image needs a Debian or Ubuntu base", value=base)
    return words[1]


def policy_for(glibc: str, arch: str) -> str:
    """The manylinux policy a glibc gives (PEP 600: manylinux_<glibc major>_<minor>_<arch>)."""
    major, minor = glibc.split(".")
    return f"manylinux_{major}_{minor}_{arch}"


def triplet(arch: str) -> str:
    return image_catalog()["arches"][arch]["triplet"]


def build_image(recipe: Recipe, engine: str, tag: str | None = None, *, python_source: str | None = None,
                timeout: float = 4 * 3600) -> dict:
    """Build the image of `recipe`; returns what it carries (the facts of ciwheels.json and the
    tags). The image is tagged by the recipe's digest too, and an image of that digest is
    reused unless the caller removed it."""

    cat = image_catalog()
    arch = recipe.arch
    if arch not in cat["arches"]:
        raise CiwheelsError(f"no image recipe for {arch}", value=arch, allowed=sorted(cat["arches"]))
    local = recipe.base is None
    base = import_rootfs(arch, engine) if local else recipe.base
    cross_base = recipe.cross_base or (import_rootfs("x86_64", engine) if local else base)
    glibc = detect_glibc(engine, base, arch, local=local)
    native = recipe.native_compilers and arch != "x86_64"  # the cross compilers run on x86_64
    old_glibc = sysroot_glibc(arch, recipe.sysroot)
    # the wheels' policy is the sysroot's glibc when extensions compile against one
    policy = policy_for(old_glibc or glibc, arch)
    digest = recipe.digest()
    digest_tag = recipe.tag()
    tags = [digest_tag] + ([tag] if tag and tag != digest_tag else [])
    with tempfile.TemporaryDirectory(prefix="ciwheels-image-") as tmp:
        context = Path(tmp)
        for path in data_dir("images").iterdir():
            if path.is_file():
                shutil.copy(path, context / path.name)
        bundle = host_ca_bundle_file()
        (context / "ca-certificates.crt").write_bytes(bundle.read_bytes() if bundle else b"")
        sources = context / "sources"
        sources.mkdir()
        (context / "sysroot").mkdir()
        (context / "sysroot" / "debs.txt").write_text(f"sysroot {recipe.sysroot}\n")
        if old_glibc:
            for deb in fetch_sysroot(arch, recipe.sysroot):
                shutil.copy(deb, context / "sysroot" / deb.name)
        # the interpreters of a foreign arch are cross-compiled against the target root; those of
        # the building machine's own arch are plain native builds (python-native.sh)
        script = "python-native.sh" if arch == "x86_64" else "python.sh"
        steps = [f"COPY {script} /ciwheels-setup/\n"] if script != "python.sh" else []
        for python in recipe.pythons:
            minor = pysources.minor_of(python)
            tarball = pysources.fetch(minor, mirror=python_source)
            if not (sources / tarball.name).exists():
                shutil.copy(tarball, sources / tarball.name)
            steps.append(f"COPY sources/{tarball.name} /ciwheels-setup/sources/\n"
                         f"RUN PIP_CERT=/ciwheels-setup/ca-certificates.crt sh /ciwheels-setup/{script} "
                         f"{python} {pysources.source_for(minor).version} {tarball.name}\n")
        # cross mode: a native CPython per target interpreter (xpython.sh), after every
        # interpreter's own step so that adding it rebuilds none of them
        xsteps = [f"RUN sh /ciwheels-setup/xpython.sh {python} {pysources.source_for(pysources.minor_of(python)).version} "
                  f"{pysources.fetch(pysources.minor_of(python), mirror=python_source).name}\n"
                  for python in recipe.pythons if recipe.cross is None or python in recipe.cross] if native else []
        containerfile = context / "Containerfile"
        text = containerfile.read_text()
        for name, lines in (("PYTHONS", steps), ("XPYTHONS", xsteps)):
            marker = next(line for line in text.splitlines(keepends=True) if line.startswith(f"# @{name}@"))
            text = text.replace(marker, "".join(lines) + marker)
        containerfile.write_text(text)
        log.info(f"building {digest_tag} for {arch} on {base} ({policy}; "
                 f"{' '.join(recipe.pythons)}; native compilers {'on' if native else 'off'}; "
                 f"sysroot {recipe.sysroot}{f' (glibc {old_glibc})' if old_glibc else ''})")
        pull = (["--pull=never"] if local else ["--pull=missing"]) if engine == "podman" else []
        args = {"BASE": base, "CROSS_BASE": cross_base, "TRIPLET": triplet(arch), "ARCH": arch,
                "DEBIAN_ARCH": cat["arches"][arch]["debian"],
                "PYTHONS": " ".join(recipe.pythons), "AUDITWHEEL_PLAT": policy, "EXPECT_GLIBC": glibc,
                "RECIPE": digest, "NATIVE_COMPILERS": "1" if native else "0", "NATIVE": str(native).lower(),
                "SYSROOT": recipe.sysroot, "SYSROOT_GLIBC": old_glibc or "",
                "CROSS_TOOLS": " ".join(cat["cross-tools"]), "CROSS": " ".join(cross_pythons(recipe))}
        cmd = [engine, "build", *pull, "--platform", f"linux/{oci_arch(arch)}",
               *(x for k, v in args.items() for x in ("--build-arg", f"{k}={v}")),
               *(x for t in tags for x in ("-t", t)), "-f", str(context / "Containerfile"), str(context)]
        _stream(cmd, f"{engine} build", timeout)
    return {"tag": tags[-1], "tags": tags, "digest": digest, "arch": arch, "base": base, "glibc": old_glibc or glibc,
            "policy": policy, "pythons": list(recipe.pythons), "native-compilers": native, "sysroot": recipe.sysroot,
            "cross": list(cross_pythons(recipe))}


def host_ca_bundle_file() -> Path | None:

    found = host_ca_bundle()
    return Path(found) if found else None


def _stream(cmd: list[str], what: str, timeout: float) -> None:
    """Run a long command, logging its progress lines (the recipe's own "ciwheels image:" lines
    and the build's steps) as they come; fail with the end of its output. Bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    tail: collections.deque[str] = collections.deque(maxlen=40)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", start_new_session=True)
    except FileNotFoundError:
        raise CiwheelsError(f"{what}: {cmd[0]} is not installed") from None

    def stop() -> None:  # the engine and what it started: ask, then insist
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, stop)
    timer.start()
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            if line.startswith("ciwheels image:") or re.match(r"\[\d+/\d+\] STEP \d+/\d+", line):
                log.info(line.removeprefix("ciwheels image: "))
        proc.wait()
    finally:
        timer.cancel()
    if time.monotonic() > deadline:
        raise CiwheelsError(f"{what} did not finish within {timeout / 60:.0f} minutes")
    if proc.returncode != 0:
        for line in tail:
            log.error(line)
        raise CiwheelsError(f"{what} failed (exit {proc.returncode}); the end of its output is above")


def image_labels(engine: str, ref: str) -> dict[str, str] | None:
    """The labels of an image present locally (`<engine> image inspect`, which never pulls); None
    when it is not present or the engine cannot say."""
    try:
        proc = subprocess.run([engine, "image", "inspect", "--format", "{{json .Config.Labels}}", ref],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        labels = json.loads(proc.stdout.strip() or "null")
    except ValueError:
        return None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def tag_image(engine: str, source: str, target: str) -> None:
    _run([engine, "tag", source, target], f"{engine} tag")


def image_exists(engine: str, tag: str) -> bool:
    """`image inspect` answers for a local image in both docker and podman."""
    try:
        return subprocess.run([engine, "image", "inspect", tag], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
