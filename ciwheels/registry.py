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
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from packaging.utils import canonicalize_name

from ciwheels.errors import CiwheelsError
from ciwheels.log import get_logger

_DUPLICATE = re.compile(r"already been taken|already exists|file exists", re.I)
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_DELAY = 120.0  # seconds; a Retry-After beyond this is not waited for in full

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
        return f"{self.url} (as {self.username}, from {self.source})"


def resolve_target(repository_url: str | None, env: dict[str, str] | None = None, index: str = "") -> Target:
    """--repository-url or CIWHEELS_REPOSITORY_URL with CIWHEELS_USERNAME/CIWHEELS_PASSWORD; in
    GitLab CI, the project's own registry with the job token."""
    env = dict(os.environ) if env is None else env
    url = repository_url or env.get("CIWHEELS_REPOSITORY_URL")
    if url:
        user, password = env.get("CIWHEELS_USERNAME", ""), env.get("CIWHEELS_PASSWORD", "")
        source = "--repository-url" if repository_url else "CIWHEELS_REPOSITORY_URL"
        if not password and env.get("CI_JOB_TOKEN") and env.get("CI_API_V4_URL") and url.startswith(env["CI_API_V4_URL"]):
            user, password = "gitlab-ci-token", env["CI_JOB_TOKEN"]
        if not password:
            user, password = _keyring(url, user)
            source += ", keyring"
        if not password:
            raise CiwheelsError("no credentials for the registry: set CIWHEELS_USERNAME and CIWHEELS_PASSWORD, "
                                "or store them in a keyring for the registry URL")
        return Target(url.rstrip("/"), user or "__token__", password, source, index or env.get("CIWHEELS_INDEX", ""))
    if env.get("CI_API_V4_URL") and env.get("CI_PROJECT_ID") and env.get("CI_JOB_TOKEN"):
        return Target(f"{env['CI_API_V4_URL'].rstrip('/')}/projects/{env['CI_PROJECT_ID']}/packages/pypi",
                      "gitlab-ci-token", env["CI_JOB_TOKEN"], "GitLab CI job token")
    raise CiwheelsError("no registry to publish to: pass --repository-url URL, set CIWHEELS_REPOSITORY_URL, "
                        "or run in GitLab CI (CI_API_V4_URL, CI_PROJECT_ID, CI_JOB_TOKEN)")


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


class _Links(HTMLParser):
    """{filename: sha256 or None} of the links of a PEP 503 simple page."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, str | None] = {}

    def handle_starttag(self, tag, attrs):
        if tag != "a":
            return
        href = dict(attrs).get("href") or ""
        path, _, fragment = href.partition("#")
        name = path.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
        digest = fragment.split("=", 1)[1] if fragment.startswith("sha256=") else None
        if name:
            self.files[name] = digest


def parse_simple_page(html: str) -> dict[str, str | None]:
    parser = _Links()
    parser.feed(html)
    return parser.files


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One file of a project's simple page, with what the index says about it (PEP 592 yanked,
    PEP 700 upload-time: only in PEP 691 JSON; None where not served)."""

    filename: str
    url: str = ""
    sha256: str | None = None
    yanked: bool = False
    upload_time: str | None = None  # ISO 8601, as served
    requires_python: str | None = None


class _FileLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.files: list[IndexFile] = []

    def handle_starttag(self, tag, attrs):
        if tag != "a":
            return
        a = dict(attrs)
        href = a.get("href") or ""
        path, _, fragment = href.partition("#")
        name = path.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
        if name:
            self.files.append(IndexFile(name, path, fragment.split("=", 1)[1] if fragment.startswith("sha256=") else None,
                                        "data-yanked" in a, None, a.get("data-requires-python")))


SIMPLE_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"


def parse_project_page(body: str, content_type: str) -> list[IndexFile]:
    """A project's simple page as PEP 691 JSON or PEP 503 HTML, whichever the index served."""
    if "json" in content_type:
        import json

        out = []
        for f in json.loads(body).get("files", []):
            yanked = f.get("yanked", False)
            out.append(IndexFile(f["filename"], f.get("url", ""), (f.get("hashes") or {}).get("sha256"),
                                 bool(yanked), f.get("upload-time"), f.get("requires-python")))
        return out
    parser = _FileLinks()
    parser.feed(body)
    return parser.files


class RegistryClient:
    """HTTP to one registry. Thread-safe: each thread gets its own session.

    `retries`: attempts per request (at least 1); `timeout`: seconds per attempt; `backoff`:
    the first delay between attempts, doubled each time (a 429's Retry-After wins)."""

    def __init__(self, target: Target, *, retries: int = 6, timeout: float = 60.0, backoff: float = 1.0) -> None:
        import requests

        self.target = target
        self.retries = max(1, retries)
        self.timeout = timeout
        self.backoff = backoff
        self._local = threading.local()
        self._requests = requests

    @classmethod
    def anonymous(cls, index: str, **kw) -> RegistryClient:
        """A client that sends no credentials, for a simple index URL (e.g. PyPI's)."""
        return cls(Target("", "", "", "anonymous", index.rstrip("/")), **kw)

    # -- plumbing ----------------------------------------------------------------------------
    def _session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = self._requests.Session()
            if self.target.username or self.target.password:
                s.auth = (self.target.username, self.target.password)
            s.headers["User-Agent"] = "ciwheels"
        return s

    def scrub(self, text: str) -> str:
        """`text` without the password (it could appear in an exception or an echoed body)."""
        return text.replace(self.target.password, "***") if self.target.password else text

    def request(self, method: str, url: str, what: str, *, follow_redirects: bool = False, **kw):
        """One call with retries on connection errors, timeouts, 5xx and 429. Returns
        (response, attempts). Raises CiwheelsError (scrubbed) after the last attempt. Values
        of `kw` may be callables, called for each attempt (a file body must be re-read)."""
        last = ""
        for attempt in range(1, self.retries + 1):
            try:
                resp = self._session().request(method, url, timeout=self.timeout, allow_redirects=follow_redirects,
                                               **{k: (v() if callable(v) else v) for k, v in kw.items()})
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

    def index(self, name: str) -> dict[str, str | None]:
        """{filename: sha256 or None} the registry hosts for a project; {} when it hosts nothing
        (a redirect to the fall-through index, or 404). Redirects are not followed."""
        url = self.project_url(name)
        resp = self.get(url)
        if resp.status_code in _REDIRECTS or resp.status_code == 404:
            return {}
        if resp.status_code in (401, 403):
            raise CiwheelsError(f"the registry refused our credentials reading {url} (HTTP {resp.status_code})")
        if resp.status_code != 200:
            raise CiwheelsError(f"reading {url}: HTTP {resp.status_code}")
        return parse_simple_page(resp.text)

    def files(self, name: str, *, follow_redirects: bool = False) -> list[IndexFile]:
        """A project's files, read as PEP 691 JSON when the index serves it, else PEP 503 HTML;
        [] when it hosts nothing (404, or a redirect when not following them)."""
        url = self.project_url(name)
        resp = self.request("GET", url, f"reading {url}", follow_redirects=follow_redirects,
                            headers={"Accept": SIMPLE_ACCEPT})[0]
        if resp.status_code in _REDIRECTS or resp.status_code == 404:
            return []
        if resp.status_code in (401, 403):
            raise CiwheelsError(f"the registry refused our credentials reading {url} (HTTP {resp.status_code})")
        if resp.status_code != 200:
            raise CiwheelsError(f"reading {url}: HTTP {resp.status_code}")
        return parse_project_page(resp.text, resp.headers.get("Content-Type", ""))

    def upload(self, path: Path, digest: str, meta: dict[str, str]) -> tuple[str, str, int]:
        """One wheel through the legacy multipart API. `meta`: name, version, metadata_version,
        requires_python, summary (publish.wheel_metadata). Returns (status, detail, attempts):
        status is "uploaded", "duplicate" (the registry has that file name) or "failed"."""
        data = {":action": "file_upload", "protocol_version": "1", "name": canonicalize_name(meta["name"]),
                "version": meta["version"], "filetype": "bdist_wheel", "pyversion": path.name.split("-")[-3],
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
        body = self.scrub(resp.text[:300])
        if resp.status_code == 409 or (resp.status_code == 400 and _DUPLICATE.search(body)):
            return "duplicate", f"HTTP {resp.status_code}", attempts
        if resp.status_code in _REDIRECTS:
            return "failed", f"the registry redirected the upload (HTTP {resp.status_code}); check the URL", attempts
        if resp.status_code in (401, 403):
            return "failed", f"the registry refused our credentials (HTTP {resp.status_code})", attempts
        return "failed", f"HTTP {resp.status_code}: {body.strip()}", attempts
