"""The one HTTP client of ciwheels: every request of every command goes through `HttpClient`
(registries and indexes through its `RegistryClient` subclass, GitLab's API, source downloads).

One deadline rule: `timeout` bounds each attempt in all — connecting, sending, the answer's
headers and its whole body — not each socket read, so a server trickling bytes is cut off at
the deadline. Bounded in size (`max_response` bytes), retried on
connection errors, timeouts, 5xx and 429 (Retry-After honoured, bounded), one requests session
per thread, the machine's CA bundle, never ~/.netrc (credentials are decided in net/auth.py),
and every message scrubbed of the credentials it was given."""

from __future__ import annotations

import os
import threading
import time

from ciwheels.core import secrets as credentials
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import get_logger
from ciwheels.core.urls import host_of

log = get_logger("http")


REDIRECTS = (301, 302, 303, 307, 308)
_MAX_DELAY = 120.0  # seconds; a Retry-After beyond this is not waited for in full
MAX_RESPONSE = 64 << 20  # bytes of one answer kept in memory (an index page); a larger one is refused
MAX_TIMEOUT = 24 * 3600.0  # seconds


class _Deadline(Exception):
    """A request that did not finish within its time, however slowly the server trickled bytes."""


class ResponseTooLarge(Exception):
    pass


def check_timeout(value: float, what: str = "--timeout") -> float:
    """A timeout must be a finite number of seconds above 0 (0, nan and inf never end or never start)."""
    import math

    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CiwheelsError(f"{what} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(number) or number <= 0 or number > MAX_TIMEOUT:
        raise CiwheelsError(f"{what} must be a number of seconds above 0 and at most {MAX_TIMEOUT:.0f}, not {value!r}")
    return number


def host_ca_bundle() -> str | None:
    """The CA bundle this machine tells its own tools to trust (a TLS-inspecting proxy's
    certificate may be in it): for our requests, and lent to build containers for pip there."""
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(var)
        if path and os.path.isfile(path):
            return path
    return None


def _cut(resp) -> None:
    """End a body download that ran past its deadline: shut its socket down, so that the
    abandoned thread's read returns instead of following a trickle forever."""
    import socket

    sock = getattr(getattr(getattr(resp, "raw", None), "connection", None), "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class HttpClient:
    """Requests with one deadline rule. Thread-safe: each thread gets its own session.

    `auth`: (user, password) sent as HTTP basic auth; `headers`: sent with every request (e.g. a
    `PRIVATE-TOKEN`), their values treated as secrets; `retries`: attempts per request (at least
    1); `timeout`: seconds per attempt, all of it; `backoff`: the first delay between attempts,
    doubled each time (a 429's Retry-After wins)."""

    def __init__(self, *, auth: tuple[str, str] | None = None, headers: dict[str, str] | None = None,
                 auth_host: str | None = None,
                 retries: int = 6, timeout: float = 60.0, backoff: float = 1.0,
                 allow_insecure_http: bool | None = None, max_response: int = MAX_RESPONSE) -> None:
        import requests

        self.auth = auth if auth and (auth[0] or auth[1]) else None
        self.headers = dict(headers or {})
        self.auth_host = auth_host  # credentials go to this host only (None: every request is to it)
        self.retries = max(1, retries)
        self.timeout = check_timeout(timeout)
        self.backoff = backoff
        self.max_response = max_response
        self.allow_insecure_http = credentials.insecure_allowed() if allow_insecure_http is None \
            else allow_insecure_http
        self._local = threading.local()
        self._requests = requests
        secrets = set(credentials.variants(*(reversed(self.auth) if self.auth else ("", ""))))
        for value in self.headers.values():
            secrets |= set(credentials.variants(value, ""))
            credentials.remember(value)
        self._secrets = frozenset(s for s in secrets if s)
        if self.auth:
            credentials.remember(self.auth[1], self.auth[0])

    def _session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = self._requests.Session()
            s.trust_env = False  # no ~/.netrc credentials sent where we did not decide to send them
            s.verify = host_ca_bundle() or True  # ... but the CA bundle the machine trusts, as trust_env would
            s.headers["User-Agent"] = "ciwheels"
        return s

    def scrub(self, text: str) -> str:
        """`text` without the credentials in any form (the password, percent-encoded, base64 of
        `user:password` as an echoed Authorization header carries it) or URL userinfo."""
        return credentials.scrub(text, self._secrets)

    def _attempt(self, session, method: str, url: str, follow_redirects: bool, kw: dict, sink=None):
        """One request with a wall-clock limit of `timeout` seconds for all of it (connecting,
        sending, the answer's headers and body), bounded in size. requests' own timeout is per
        socket operation, which a server trickling one byte at a time never trips: the request
        runs in a daemon thread that is abandoned (and its session dropped) at the deadline.
        `sink`: a binary file that receives the body of a 200 answer instead of memory (emptied
        first; `max_response` still bounds it)."""
        deadline = time.monotonic() + self.timeout
        box: dict = {}

        def work() -> None:
            try:
                resp = session.request(method, url, timeout=(self.timeout, self.timeout),
                                       allow_redirects=follow_redirects, stream=True, **kw)
                box["stream"] = resp
                try:
                    announced = resp.headers.get("Content-Length", "")
                    if announced.isdigit() and int(announced) > self.max_response:
                        raise ResponseTooLarge(f"it announces {int(announced)} bytes")
                    to_file = sink is not None and resp.status_code == 200
                    if to_file:
                        sink.seek(0)
                        sink.truncate()
                    body, size = [], 0
                    for chunk in resp.iter_content(1 << 16):
                        size += len(chunk)
                        if size > self.max_response:
                            raise ResponseTooLarge(f"it sent more than {self.max_response} bytes")
                        if time.monotonic() > deadline:
                            raise _Deadline()
                        if to_file:
                            sink.write(chunk)
                        else:
                            body.append(chunk)
                    resp._content = b"".join(body)
                    resp._content_consumed = True
                finally:
                    resp.close()
                box["resp"] = resp
            except BaseException as e:  # handed to the caller's thread
                box["error"] = e

        thread = threading.Thread(target=work, name="ciwheels-http", daemon=True)
        thread.start()
        thread.join(self.timeout + 0.5)
        if thread.is_alive() or isinstance(box.get("error"), _Deadline):
            _cut(box.get("stream"))
            raise _Deadline()
        if "error" in box:
            raise box["error"]
        return box["resp"]

    def request(self, method: str, url: str, what: str, *, follow_redirects: bool = False,
                answer_server_errors: bool = False, sink=None, **kw):
        """One call with retries on connection errors, timeouts, 5xx and 429. Returns
        (response, attempts). Raises CiwheelsError (scrubbed) after the last attempt. Values
        of `kw` may be callables, called for each attempt (a file body must be re-read)."""
        ours = self.auth_host is None or host_of(url) == self.auth_host
        if ours:  # the credentials (basic auth, secret headers) go to their own host, never to another
            kw = {**kw, "auth": self.auth, "headers": {**self.headers, **(kw.get("headers") or {})}}
        credentials.check_transport(url, has_credentials=ours and bool(self.auth or self.headers),
                                    allow_insecure=self.allow_insecure_http)
        last = ""
        for attempt in range(1, self.retries + 1):
            session = self._session()
            try:
                resp = self._attempt(session, method, url, follow_redirects,
                                     {k: (v() if callable(v) else v) for k, v in kw.items()}, sink)
            except _Deadline:
                last = f"no complete answer within {self.timeout:g} s"
                self._local.session = None  # the abandoned request keeps the old one
                delay = self.backoff * 2 ** (attempt - 1)
            except ResponseTooLarge as e:
                self._local.session = None
                limit = f"{self.max_response >> 20} MiB" if self.max_response % (1 << 20) == 0 \
                    else f"{self.max_response} bytes"
                raise CiwheelsError(self.scrub(f"{what}: the answer is larger than {limit} ({e}), the limit for one "
                                               "response; not kept")) from None
            except self._requests.RequestException as e:
                last = self.scrub(f"{type(e).__name__}: {e}")
                self._local.session = None  # a broken connection: start a new one
                delay = self.backoff * 2 ** (attempt - 1)
            else:
                if (resp.status_code == 429 or resp.status_code >= 500) and not (
                        answer_server_errors and attempt == self.retries):
                    last = f"HTTP {resp.status_code}"
                    retry_after = resp.headers.get("Retry-After", "")
                    delay = float(retry_after) if retry_after.isdigit() else self.backoff * 2 ** (attempt - 1)
                else:
                    return resp, attempt
            if attempt < self.retries:
                delay = min(delay, _MAX_DELAY)
                log.info("%s: %s; attempt %d of %d in %.1fs", self.scrub(what), last, attempt + 1, self.retries,
                         delay)
                time.sleep(delay)
        raise CiwheelsError(self.scrub(f"{what}: gave up after {self.retries} attempts ({last})"))

    def get(self, url: str, *, follow_redirects: bool = False):
        """A GET with retries; the response of any status below 500 (and not 429)."""
        return self.request("GET", url, f"reading {url}", follow_redirects=follow_redirects)[0]
