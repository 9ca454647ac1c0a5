"""Reading the files users give us, the same way everywhere."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ciwheels.core.errors import CiwheelsError


def read_pyproject(project: Path) -> dict:
    """PROJECT/pyproject.toml for the commands that only consult it (requires-python, the
    version, how the version is made): {} when it is missing, unreadable or not valid TOML.
    init, which starts from it, reports those cases instead."""
    import tomllib

    try:
        return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def size_text(n: int) -> str:
    """1073741824 -> '1 GiB', 16777216 -> '16 MiB', else bytes."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


# -- untrusted files (job artifacts of builder mode: somebody else's sdist built them) ----------
def open_regular(path: Path, what: str, limit: int) -> int:
    """A file descriptor of `path`, read-only, when it is a regular file of at most `limit`
    bytes and not a link: a link could point at /proc/self/environ or ~/.ssh (and publish it),
    a FIFO blocks its reader, a device never ends. Anything else is a CiwheelsError naming it.
    The only way artifacts are opened (gather, reports, manifests, the status page's logs)."""
    import os
    import stat

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if os.path.islink(path):
            raise CiwheelsError(f"the {what} is a link (to {os.readlink(path)!r}); refusing to follow it",
                                file=str(path)) from None
        raise CiwheelsError(f"cannot read the {what} ({e.strerror or e})", file=str(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CiwheelsError(f"the {what} is not a regular file; refusing to read it", file=str(path))
    if st.st_size > limit:
        os.close(fd)
        raise CiwheelsError(f"the {what} is larger than {size_text(limit)}, the limit ({st.st_size} bytes)",
                            file=str(path))
    os.set_blocking(fd, True)
    return fd


def read_regular(path: Path, what: str, limit: int, *, tail: bool = False) -> bytes:
    """The bytes of an untrusted regular file (open_regular). Larger than `limit`: an error, or
    with `tail` its last `limit` bytes (a long build log ends with the reason it failed)."""
    import os

    fd = open_regular(path, what, (1 << 62) if tail else limit)
    with os.fdopen(fd, "rb") as f:
        try:
            if tail:
                size = os.fstat(f.fileno()).st_size
                if size > limit:
                    f.seek(size - limit)
            data = f.read(limit + 1)
        except OSError as e:
            raise CiwheelsError(f"cannot read the {what} ({e.strerror or e})", file=str(path)) from None
    if len(data) > limit:
        if tail:
            return data[-limit:]
        raise CiwheelsError(f"the {what} grew beyond {size_text(limit)} while being read", file=str(path))
    return data


def _file_digest(path: Path, algorithm: str) -> str:
    """A hash of a file, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: Path) -> str:
    return _file_digest(path, "sha256")


def md5_file(path: Path) -> str:
    """The legacy upload API's md5_digest field."""
    return _file_digest(path, "md5")
