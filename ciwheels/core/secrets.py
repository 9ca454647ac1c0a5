"""Credentials in output: nothing a user gave as a credential may appear in any message, JSON or
log line, in any form. Code that gets hold of a credential `remember`s it; everything that can
carry server text or a URL passes through `scrub`. URLs lose their userinfo (`redact_url`)
before they are shown, and `split_userinfo` turns `https://user:TOKEN@host/...` into a clean
URL plus credentials.

Plain http: credentials go over http only to a loopback host, unless the user allows it
(`--allow-insecure-http` or CIWHEELS_ALLOW_INSECURE_HTTP=1); `check_transport` enforces it."""

from __future__ import annotations

import base64
import ipaddress
import threading
import urllib.parse

from ciwheels.core.errors import CiwheelsError

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "***"
# Shorter "secrets" are not scrubbed: replacing every "p" of the output would hide nothing (a
# password of 1-3 characters is guessed at once) and make every message unreadable.
MIN_SECRET = 4
ALLOW_INSECURE_ENV = "CIWHEELS_ALLOW_INSECURE_HTTP"


def variants(password: str, username: str = "") -> set[str]:
    """The forms a credential takes on the wire and in echoes: itself, percent-encoded, and
    base64 (standard and URL-safe, with and without padding) of `user:password` (HTTP Basic)
    and of the password alone."""
    if len(password) < MIN_SECRET:
        return set()
    out = {password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password)}
    for raw in (f"{username}:{password}", password):
        data = raw.encode("utf-8")
        for enc in (base64.b64encode(data), base64.urlsafe_b64encode(data)):
            text = enc.decode("ascii")
            out |= {text, text.rstrip("=")}
    return {v for v in out if len(v) >= MIN_SECRET}


def remember(password: str, username: str = "") -> None:
    """From now on, `scrub` removes this credential (every variant) from text."""
    forms = variants(password, username)
    if forms:
        with _lock:
            _secrets.update(forms)


def forget_all() -> None:
    """For tests: start from no remembered credentials."""
    with _lock:
        _secrets.clear()


def scrub(text: str, extra: set[str] | frozenset[str] = frozenset()) -> str:
    """`text` without any remembered credential (and `extra` ones), longest first so that a
    base64 form is not cut by a shorter secret inside it, and without URL userinfo."""
    if not isinstance(text, str):
        text = str(text)
    with _lock:
        secrets = sorted(_secrets | set(extra), key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return _strip_userinfo(text)


def _strip_userinfo(text: str) -> str:
    """Any `scheme://user:pass@` in free text becomes `scheme://***@`."""
    import re

    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@", r"\1" + MASK + "@", text)


def split_userinfo(url: str) -> tuple[str, str, str]:
    """(url without userinfo, username, password), unquoted; the password is remembered."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, "", ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    user, password = urllib.parse.unquote(user), urllib.parse.unquote(password)
    remember(password, user)
    remember(urllib.parse.unquote(userinfo))  # a token given as the user part alone
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport)), user, password


def redact_url(url: str) -> str:
    """The URL as it may be shown: userinfo replaced by ***."""
    return _strip_userinfo(url)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_allowed(env: dict[str, str] | None = None) -> bool:
    import os

    value = (os.environ if env is None else env).get(ALLOW_INSECURE_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def check_transport(url: str, *, has_credentials: bool, allow_insecure: bool = False) -> None:
    """Refuse to send credentials over plain http to a host that is not loopback."""
    if not has_credentials or allow_insecure:
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "http" and not is_loopback(parts.hostname):
        raise CiwheelsError(f"refusing to send credentials over plain http to {parts.hostname} "
                            f"({redact_url(url)}): anyone on the way could read them",
                            hint="use https, or pass --allow-insecure-http (CIWHEELS_ALLOW_INSECURE_HTTP=1) "
                                 "if this network is trusted")
