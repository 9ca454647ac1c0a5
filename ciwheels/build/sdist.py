"""Builder mode: fetch a third-party package's sdist from the package index (PEP 691 JSON or
PEP 503 HTML, through the registry client: bounded reads, retries, a deadline), checked against
the index's sha256 and cached."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urljoin

from packaging.utils import (
    InvalidSdistFilename,
    canonicalize_name,
    parse_sdist_filename,
)
from packaging.version import Version

from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import sha256_file
from ciwheels.core.resources import cache_dir
from ciwheels.net.registry import RegistryClient, index_url

MAX_SDIST = 1 << 30  # bytes of one sdist (PyPI's largest are a few hundred MiB)


def fetch_sdist(name: str, version: str) -> Path:
    norm = canonicalize_name(name)
    folder = cache_dir() / "sdists"
    folder.mkdir(parents=True, exist_ok=True)
    client = RegistryClient.anonymous(index_url(), retries=3, timeout=300, max_response=MAX_SDIST)
    page = client.project_url(norm)
    files = client.files(norm, follow_redirects=True)
    if not files:
        raise CiwheelsError(f"the package index has no project {name!r} ({page})")
    for f in files:
        if not f.filename.endswith((".tar.gz", ".zip")):
            continue
        try:
            fname, fver = parse_sdist_filename(f.filename)
        except InvalidSdistFilename:
            continue
        if fname != norm or fver != Version(version):
            continue
        target = folder / f.filename
        if target.exists() and (not f.sha256 or sha256_file(target) == f.sha256):
            return target
        # streamed to a file of this process's own (several builds may share the cache), checked,
        # then renamed into place: never a whole sdist in memory, never a half-written one seen
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{f.filename}.", suffix=".part", delete=False) as out:
            tmp = Path(out.name)
            try:
                resp, _ = client.request("GET", urljoin(page, f.url), f"downloading {f.filename}",
                                         follow_redirects=True, sink=out)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        if resp.status_code != 200:
            tmp.unlink(missing_ok=True)
            raise CiwheelsError(f"downloading {f.filename} from {client.scrub(page)}: HTTP {resp.status_code}")
        if f.sha256 and sha256_file(tmp) != f.sha256:
            tmp.unlink(missing_ok=True)
            raise CiwheelsError(f"{f.filename}: sha256 differs from the index's; refusing it")
        tmp.chmod(0o644)  # as any cached file (the temporary file was made private)
        tmp.replace(target)
        return target
    raise CiwheelsError(f"{name} {version} has no sdist on {client.scrub(index_url())}")


# -- an sdist's own build configuration (builder mode): hostile input, read, never run -------
CONFIG_MEMBERS = ("pyproject.toml", "setup.cfg", "setup.py")  # what init reads of a project
MAX_CONFIG_MEMBER = 1 << 20  # bytes of one of them (PyPI's largest setup.py files are ~100 KiB)
MAX_MEMBERS = 200_000  # entries of an archive walked to find them
MAX_UNPACKED = 2 << 30  # bytes of a .tar.gz decompressed while walking it (a gzip bomb ends there)


def cached_or_fetched(name: str, version: str) -> Path:
    """The sdist of NAME VERSION: the cached file when there is one (it was checked against the
    index's sha256 when it was downloaded), else fetched. Reading its configuration then costs
    no index read for a version already seen; `build` itself always fetches (and re-checks)."""
    norm = canonicalize_name(name)
    folder = cache_dir() / "sdists"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if not path.name.endswith((".tar.gz", ".zip")) or not path.is_file() or path.is_symlink():
                continue
            try:
                fname, fver = parse_sdist_filename(path.name)
            except InvalidSdistFilename:
                continue
            if fname == norm and fver == Version(version):
                return path
    return fetch_sdist(name, version)


def config_files(sdist: Path) -> dict[str, str]:
    """{member: text} of pyproject.toml, setup.cfg and setup.py at the top folder of an sdist,
    read from the archive without unpacking it: regular members only (no links, devices), each
    at most MAX_CONFIG_MEMBER bytes, at most MAX_MEMBERS entries and MAX_UNPACKED bytes walked.
    Nothing is executed. A member that is too large or not UTF-8 is a CiwheelsError naming it."""
    import tarfile
    import zipfile

    found: dict[str, bytes] = {}
    top: str | None = None

    def wanted(member_name: str) -> str | None:
        nonlocal top
        parts = member_name.split("/")
        if len(parts) != 2 or parts[1] not in CONFIG_MEMBERS or parts[0] in ("", ".", ".."):
            return None
        if top is None:
            top = parts[0]
        return parts[1] if parts[0] == top and parts[1] not in found else None

    def too_large(member: str, size: int) -> CiwheelsError:
        return CiwheelsError(f"{sdist.name}: {member} is {size} bytes, more than the {MAX_CONFIG_MEMBER} bytes "
                             "ciwheels reads of a build configuration")

    try:
        if sdist.name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as zf:
                infos = zf.infolist()
                if len(infos) > MAX_MEMBERS:
                    raise CiwheelsError(f"{sdist.name} has more than {MAX_MEMBERS} entries; not read")
                for info in infos:
                    member = wanted(info.filename)
                    if member is None or info.is_dir() or (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                        continue
                    if info.file_size > MAX_CONFIG_MEMBER:
                        raise too_large(member, info.file_size)
                    with zf.open(info) as f:
                        data = f.read(MAX_CONFIG_MEMBER + 1)
                    if len(data) > MAX_CONFIG_MEMBER:
                        raise too_large(member, len(data))
                    found[member] = data
        else:
            with tarfile.open(sdist, mode="r|gz") as tf:  # a stream: one pass, no seeks
                for count, info in enumerate(tf):
                    if count >= MAX_MEMBERS or tf.offset > MAX_UNPACKED:
                        raise CiwheelsError(f"{sdist.name} unpacks to more than {MAX_MEMBERS} entries or "
                                            f"{MAX_UNPACKED >> 30} GiB before its build configuration ends; not read")
                    member = wanted(info.name)
                    if member is None or not info.isreg():
                        continue
                    if info.size > MAX_CONFIG_MEMBER:
                        raise too_large(member, info.size)
                    f = tf.extractfile(info)
                    found[member] = f.read(MAX_CONFIG_MEMBER + 1) if f is not None else b""
                    if len(found) == len(CONFIG_MEMBERS):
                        break
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise CiwheelsError(f"{sdist.name} cannot be read as an sdist archive ({e})") from None
    out = {}
    for member, data in found.items():
        try:
            out[member] = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CiwheelsError(f"{sdist.name}: {member} is not UTF-8 text (byte {data[e.start]:#04x} at offset "
                                f"{e.start})") from None
    return out
