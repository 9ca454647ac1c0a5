"""URLs users give us (registry and index URLs, --repository-url, CIWHEELS_REPOSITORY_URL): checked
once, and the host credentials are keyed on."""

from __future__ import annotations

import urllib.parse

from ciwheels.core.errors import CiwheelsError
from ciwheels.core.secrets import redact_url


def host_of(url: str) -> str:
    """The host a URL's credentials are keyed on: `hostname[:port]` in lower case, IPv6 addresses
    in brackets, the scheme's default port left out; "" when the URL has no valid host or port."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return ""
    if not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return f"{host}:{port}" if port and port != default else host


def check_url(value: str, what: str, **where) -> str:
    """`value` if it is an http(s) URL with a host (and a valid port), else one paragraph naming
    `what` (and `where`: file, line of the matrix)."""
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok or any(c in value for c in "\r\n\t "):
        shown = redact_url(value)  # a token in a bad URL is not shown either
        raise CiwheelsError(f"{what} {shown[:200]!r} is not an http(s) URL with a host",
                            hint="e.g. https://gitlab.example.com/api/v4/projects/123/packages/pypi", **where)
    return value
