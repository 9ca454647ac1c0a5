"""Talking to a PyPI-compatible registry (GitLab's PyPI package registry, pypiserver, devpi):
where it is and with which credentials (`Target`, `resolve_target`), and one HTTP client for
everything that reads or writes it (`RegistryClient`): publish, the publish status of the HTML
grid and `ciwheels doctor` all go through it.

The client keeps one requests session per thread, retries connection errors, timeouts, 5xx
and 429 (honouring Retry-After, bounded), and scrubs the password from every message it
produces. Simple-index reads never follow redirects: GitLab answers a redirect to PyPI for
names it hosts nothing of, which must read as "nothing here", not as PyPI's files."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from ciwheels.core import secrets as credentials
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import get_logger
from ciwheels.net.index import SIMPLE_ACCEPT, IndexFile, parse_project_page, parse_simple_page  # noqa: F401

_DUPLICATE = re.compile(r"already been taken|already exists|file exists", re.I)
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_DELAY = 120.0  # seconds; a Retry-After beyond this is not waited for in full
MAX_RESPONSE = 64 << 20  # bytes of one answer (an index page); a larger one is refused
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

log = get_logger("registry")


@dataclass(frozen=True)
class Target:
    """A registry to talk to, with the credentials for it."""

    url: str  # repository (upload) URL
    username: str
    password: str = field(repr=False)
    source: str = ""  # where the credentials came from, for messages
    index: str = ""  # simple index; default URL/simple/ (GitLab, pypiserver); devpi: URL/+simple/

    @property
    def simple(self) -> str:
        return (self.index or f"{self.url}/simple").rstrip("/")

    def __str__(self) -> str:
        return f"{credentials.redact_url(self.url)} (as {self.username}, from {self.source})"


def resolve_target(repository_url: str | None, env: dict[str, str] | None = None, index: str = "") -> Target:
    """--repository-url or CIWHEELS_REPOSITORY_URL with CIWHEELS_USERNAME/CIWHEELS_PASSWORD (or
    credentials in the URL, `https://user:TOKEN@host/...`, which never appear in output); in
    GitLab CI, the project's own registry with the job token."""
    env = dict(os.environ) if env is None else env
    for key in ("CIWHEELS_PASSWORD", "CI_JOB_TOKEN"):
        credentials.remember(env.get(key, ""), env.get("CIWHEELS_USERNAME", "") if key == "CIWHEELS_PASSWORD"
                             else "gitlab-ci-token")
    url = repository_url or env.get("CIWHEELS_REPOSITORY_URL")
    index = index or env.get("CIWHEELS_INDEX", "")
    index, index_user, index_password = credentials.split_userinfo(index) if index else ("", "", "")
    if url:
        url, url_user, url_password = credentials.split_userinfo(url)
        user, password = env.get("CIWHEELS_USERNAME", ""), env.get("CIWHEELS_PASSWORD", "")
        source = "--repository-url" if repository_url else "CIWHEELS_REPOSITORY_URL"
        if url_password or url_user:
            user, password, source = url_user, url_password, source + " (credentials in the URL)"
        if not password and job_token_for(url, env):
            user, password = job_token_for(url, env)
        if not password and index_password:
            user, password = index_user, index_password
        if not password:
            user, password = _keyring(url, user)
            source += ", keyring"
        if not password:
            raise CiwheelsError("no credentials for the registry: set CIWHEELS_USERNAME and CIWHEELS_PASSWORD, "
                                "or store them in a keyring for the registry URL")
        credentials.remember(password, user or "__token__")
        return Target(url.rstrip("/"), user or "__token__", password, source, index)
    if gitlab_project_registry(env) and env.get("CI_JOB_TOKEN"):
        return Target(gitlab_project_registry(env), "gitlab-ci-token", env["CI_JOB_TOKEN"], "GitLab CI job token",
                      index)
    raise CiwheelsError("no registry to publish to: pass --repository-url URL, set CIWHEELS_REPOSITORY_URL, "
                        "or run in GitLab CI (CI_API_V4_URL, CI_PROJECT_ID, CI_JOB_TOKEN)")


def host_ca_bundle() -> str | None:
    """The CA bundle this machine tells its own tools to trust (a TLS-inspecting proxy's
    certificate may be in it): for our requests, and lent to build containers for pip there."""
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(var)
        if path and os.path.isfile(path):
            return path
    return None


def gitlab_project_registry(env: Mapping[str, str]) -> str:
    """In GitLab CI, the upload URL of the project's own PyPI registry; else ""."""
    if env.get("CI_API_V4_URL") and env.get("CI_PROJECT_ID"):
        return f"{env['CI_API_V4_URL'].rstrip('/')}/projects/{env['CI_PROJECT_ID']}/packages/pypi"
    return ""


def index_url() -> str:
    """The upstream package index: CIWHEELS_INDEX_URL, else PIP_INDEX_URL, else PyPI."""
    return (os.environ.get("CIWHEELS_INDEX_URL") or os.environ.get("PIP_INDEX_URL")
            or "https://pypi.org/simple").rstrip("/")


def default_registry_url(repository_url: str | None = None, env: dict[str, str] | None = None) -> str:
    """Where cells that name no registry are published: --repository-url,
    CIWHEELS_REPOSITORY_URL, else in GitLab CI the project's own package registry."""
    env = os.environ if env is None else env
    return repository_url or env.get("CIWHEELS_REPOSITORY_URL", "") or gitlab_project_registry(env)


def job_token_for(url: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """In GitLab CI, (user, password) of the job token for a URL of the instance's own API
    (its package registries), else None."""
    api = env.get("CI_API_V4_URL")
    if env.get("CI_JOB_TOKEN") and api and url.startswith(api):
        return "gitlab-ci-token", env["CI_JOB_TOKEN"]
    return None


def _keyring(url: str, user: str) -> tuple[str, str]:
    """Credentials from the keyring package, when it is installed (as for twine)."""
    try:
        import keyring
    except ImportError:
        return user, ""
    try:
        cred = keyring.get_credential(url, user or None)
    except Exception:  # a keyring backend may fail in many ways; treat as "no credentials"
        return user, ""
    return (cred.username, cred.password) if cred else (user, "")


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


def _clean(target: Target) -> Target:
    """The target with no userinfo left in its URLs: credentials found there are used (when the
    target has none) and remembered, so that they are never shown."""
    url, user, password = credentials.split_userinfo(target.url) if target.url else ("", "", "")
    index, iuser, ipassword = credentials.split_userinfo(target.index) if target.index else ("", "", "")
    if target.password or target.username:
        user, password = target.username, target.password
    elif not (user or password):
        user, password = iuser, ipassword
    if (url, index, user, password) == (target.url, target.index, target.username, target.password):
        return target
    return Target(url, user, password, target.source, index)


def _python_tag(filename: str) -> str:
    """The python tag of a wheel, plain or variant (whose label follows the platform tag)."""
    from ciwheels.core.wheel import InvalidWheelName, parse_wheel_name

    try:
        return parse_wheel_name(filename).plain.split("-")[-3]
    except InvalidWheelName:
        return "source"  # not a wheel (a `-variants.json`): what twine sends for files of no Python


class RegistryClient:
    """HTTP to one registry. Thread-safe: each thread gets its own session.

    `retries`: attempts per request (at least 1); `timeout`: seconds per attempt; `backoff`:
    the first delay between attempts, doubled each time (a 429's Retry-After wins)."""

    def __init__(self, target: Target, *, retries: int = 6, timeout: float = 60.0, backoff: float = 1.0,
                 allow_insecure_http: bool | None = None, max_response: int = MAX_RESPONSE) -> None:
        import requests

        self.target = _clean(target)
        self.retries = max(1, retries)
        self.timeout = check_timeout(timeout)
        self.backoff = backoff
        self.max_response = max_response
        self.allow_insecure_http = credentials.insecure_allowed() if allow_insecure_http is None \
            else allow_insecure_http
        self._local = threading.local()
        self._requests = requests
        self._secrets = frozenset(credentials.variants(self.target.password, self.target.username))
        credentials.remember(self.target.password, self.target.username)

    @classmethod
    def anonymous(cls, index: str, **kw) -> RegistryClient:
        """A client that sends no credentials, for a simple index URL (e.g. PyPI's). Credentials
        in the URL (`https://user:TOKEN@host/...`) are used, and never shown."""
        return cls(Target("", "", "", "anonymous", index.rstrip("/")), **kw)

    # -- plumbing ----------------------------------------------------------------------------
    def _session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = self._requests.Session()
            s.trust_env = False  # no ~/.netrc credentials sent where we did not decide to send them
            s.verify = host_ca_bundle() or True  # ... but the CA bundle the machine trusts, as trust_env would
            if self.target.username or self.target.password:
                s.auth = (self.target.username, self.target.password)
            s.headers["User-Agent"] = "ciwheels"
        return s

    def scrub(self, text: str) -> str:
        """`text` without the credentials in any form (the password, percent-encoded, base64 of
        `user:password` as an echoed Authorization header carries it) or URL userinfo."""
        return credentials.scrub(text, self._secrets)

    def _attempt(self, session, method: str, url: str, follow_redirects: bool, kw: dict):
        """One request with a wall-clock limit of `timeout` seconds for all of it (connecting,
        sending, the answer's headers and body), bounded in size. requests' own timeout is per
        socket operation, which a server trickling one byte at a time never trips: the request
        runs in a daemon thread that is abandoned (and its session dropped) at the deadline."""
        deadline = time.monotonic() + self.timeout
        box: dict = {}

        def work() -> None:
            try:
                resp = session.request(method, url, timeout=(self.timeout, self.timeout),
                                       allow_redirects=follow_redirects, stream=True, **kw)
                box["stream"] = resp
                try:
                    body, size = [], 0
                    for chunk in resp.iter_content(1 << 16):
                        size += len(chunk)
                        if size > self.max_response:
                            raise ResponseTooLarge()
                        if time.monotonic() > deadline:
                            raise _Deadline()
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

    def request(self, method: str, url: str, what: str, *, follow_redirects: bool = False, **kw):
        """One call with retries on connection errors, timeouts, 5xx and 429. Returns
        (response, attempts). Raises CiwheelsError (scrubbed) after the last attempt. Values
        of `kw` may be callables, called for each attempt (a file body must be re-read)."""
        credentials.check_transport(url, has_credentials=bool(self.target.username or self.target.password),
                                    allow_insecure=self.allow_insecure_http)
        last = ""
        for attempt in range(1, self.retries + 1):
            session = self._session()
            try:
                resp = self._attempt(session, method, url, follow_redirects,
                                     {k: (v() if callable(v) else v) for k, v in kw.items()})
            except _Deadline:
                last = f"no complete answer within --timeout {self.timeout:g}s"
                self._local.session = None  # the abandoned request keeps the old one
                delay = self.backoff * 2 ** (attempt - 1)
            except ResponseTooLarge:
                self._local.session = None
                raise CiwheelsError(self.scrub(f"{what}: the answer is larger than {self.max_response >> 20} MiB, "
                                               "the limit for one response")) from None
            except self._requests.RequestException as e:
                last = self.scrub(f"{type(e).__name__}: {e}")
                self._local.session = None  # a broken connection: start a new one
                delay = self.backoff * 2 ** (attempt - 1)
            else:
                if resp.status_code == 429 or resp.status_code >= 500:
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

    # -- the registry protocol ---------------------------------------------------------------
    def project_url(self, name: str) -> str:
        return f"{self.target.simple}/{canonicalize_name(name)}/"

    def _project_page(self, name: str, follow_redirects: bool = False, headers: dict | None = None):
        """The answer of a project's simple page; None when the registry hosts nothing of it
        (404, or a redirect to the fall-through index when not following them)."""
        url = self.project_url(name)
        resp = self.request("GET", url, f"reading {url}", follow_redirects=follow_redirects, headers=headers)[0]
        if resp.status_code in _REDIRECTS or resp.status_code == 404:
            return None
        if resp.status_code in (401, 403):
            raise CiwheelsError(f"the registry refused our credentials reading {url} (HTTP {resp.status_code})")
        if resp.status_code != 200:
            raise CiwheelsError(f"reading {url}: HTTP {resp.status_code}")
        return resp

    def index(self, name: str) -> dict[str, str | None]:
        """{filename: sha256 or None} the registry hosts for a project; {} when it hosts nothing
        (a redirect to the fall-through index, or 404). Redirects are not followed."""
        resp = self._project_page(name)
        return {} if resp is None else parse_simple_page(resp.text, name, self.scrub(self.project_url(name)))

    def files(self, name: str, *, follow_redirects: bool = False) -> list[IndexFile]:
        """A project's files, read as PEP 691 JSON when the index serves it, else PEP 503 HTML;
        [] when it hosts nothing (404, or a redirect when not following them)."""
        resp = self._project_page(name, follow_redirects, {"Accept": SIMPLE_ACCEPT})
        return [] if resp is None else parse_project_page(resp.text, resp.headers.get("Content-Type", ""), name,
                                                          self.scrub(self.project_url(name)))

    def upload(self, path: Path, digest: str, meta: dict[str, str]) -> tuple[str, str, int]:
        """One wheel through the legacy multipart API. `meta`: name, version, metadata_version,
        requires_python, summary (publish.wheel_metadata). Returns (status, detail, attempts):
        status is "uploaded", "duplicate" (the registry has that file name) or "failed"."""
        data = {":action": "file_upload", "protocol_version": "1", "name": canonicalize_name(meta["name"]),
                "version": meta["version"], "filetype": "bdist_wheel", "pyversion": _python_tag(path.name),
                "metadata_version": meta["metadata_version"], "sha256_digest": digest,
                "md5_digest": hashlib.md5(path.read_bytes()).hexdigest(), "summary": meta["summary"]}
        if meta["requires_python"]:
            data["requires_python"] = meta["requires_python"]

        def files():
            return {"content": (path.name, path.read_bytes(), "application/octet-stream")}

        try:
            resp, attempts = self.request("POST", self.target.url, f"uploading {path.name}", data=data, files=files)
        except CiwheelsError as e:
            return "failed", str(e), self.retries
        if resp.status_code in (200, 201):
            return "uploaded", f"HTTP {resp.status_code}", attempts
        body = " ".join(self.scrub(resp.text).split())[:300]
        if resp.status_code == 409 or (resp.status_code == 400 and _DUPLICATE.search(body)):
            return "duplicate", f"HTTP {resp.status_code}", attempts
        if resp.status_code in _REDIRECTS:
            return "failed", f"the registry redirected the upload (HTTP {resp.status_code}); check the URL", attempts
        if resp.status_code in (401, 403):
            return "failed", f"the registry refused our credentials (HTTP {resp.status_code})", attempts
        return "failed", f"HTTP {resp.status_code}: {body.strip()}", attempts
