"""Links we write into pages and documents others read (the status page, status.json): only
http(s) URLs and relative paths inside the site, whatever text they came from (a previous
status.json read over HTTP, a build report, an environment variable). `javascript:`, `data:`,
`file:`, scheme-relative `//host` and anything with control characters, quotes or spaces are
dropped; credentials in a URL are dropped with the whole link."""

from __future__ import annotations

import re
import urllib.parse

MAX_LINK = 2000
_BAD = re.compile(r"[\x00-\x20\x7f-\x9f\"'<>\\`]")


def safe_link(value: object) -> str:
    """`value` when it is an http(s) URL (without userinfo) or a relative path that stays inside
    the folder it is read from; else ""."""
    if not isinstance(value, str) or not value or len(value) > MAX_LINK or _BAD.search(value):
        return ""
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return ""
    if parts.scheme:
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            return ""
        return value
    if value.startswith("/") or parts.netloc or ":" in parts.path.split("/", 1)[0]:
        return ""  # absolute path, //host, or a first segment a browser could read as a scheme
    if ".." in parts.path.split("/"):
        return ""
    return value


def is_relative(link: str) -> bool:
    """A link safe_link kept that points into the site (no scheme)."""
    return bool(link) and not urllib.parse.urlsplit(link).scheme
