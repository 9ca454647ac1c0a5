"""One check for package versions, wherever they come from: the matrix, an index page, a
CIWHEELS_VERSIONS pin, a status file. A version names folders, files, job and cell ids: it must
be a PEP 440 version written without anything a path or a shell could read (packaging's parser
forgives surrounding whitespace and `v1.0`; we do not take those either: the text is kept as
given, so it must be exactly a version)."""

from __future__ import annotations

import re

from packaging.version import InvalidVersion, Version

from ciwheels.core.errors import CiwheelsError, shorten

# PEP 440's alphabet (epoch `!`, local `+`, separators `.`, `-`, `_`); letters for pre/post/dev/local
_CHARS = re.compile(r"[0-9][0-9A-Za-z.!+_-]{0,127}")


def is_version(value: object) -> bool:
    """True when `value` is a string that is exactly a PEP 440 version (see check_version)."""
    if not isinstance(value, str) or not _CHARS.fullmatch(value) or ".." in value:
        return False
    try:
        Version(value)
    except InvalidVersion:
        return False
    return True


def check_version(value: object, where: str, **kw) -> str:
    """`value` if it is a PEP 440 version, else a CiwheelsError naming `where` (keyword
    arguments go to the error: file, line, column, hint)."""
    if is_version(value):
        return value  # type: ignore[return-value]
    raise CiwheelsError(f"{where}: {shorten(value, 80)!r} is not a valid version (PEP 440, e.g. 1.2.3, "
                        "2.0rc1, 1!1.0.post2+local)" if isinstance(value, str) else
                        f"{where}: a version must be a string such as 1.2.3, not {type(value).__name__}", **kw)
