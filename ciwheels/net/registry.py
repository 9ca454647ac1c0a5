"""Talking to a PyPI-compatible registry (GitLab's PyPI package registry, pypiserver, devpi):
where it is and with which credentials (`Target`, `resolve_target`), and one HTTP client for
everything that reads or writes it (`RegistryClient`): publish, the publish status of the HTML
grid and `ciwheels doctor` all go through it.

The client keeps one requests session per thread, retries connection errors, timeouts, 5xx
and 429 (honouring Retry-After, bounded), and scrubs the password from every message it
produces. Simple-index reads never follow redirects: GitLab answers a redirect to PyPI for
names it hosts nothing of, which must read as "nothing here", not as PyPI's files."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from ciwheels.core import secrets as credentials
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import md5_file
from ciwheels.core.log import get_logger
from ciwheels.core.wheel import InvalidWheelName, parse_wheel_name
from ciwheels.net.auth import (
    ENV_INDEX,
    ENV_URL,
    credentials_for,
    gitlab_project_registry,
    host_of,
)
from ciwheels.net.http import REDIRECTS, HttpClient
from ciwheels.net.index import (  # noqa: F401
    SIMPLE_ACCEPT,
    IndexFile,
    parse_project_page,
    parse_simple_page,
)

_DUPLICATE = re.compile(r"already been taken|already exists|file exists", re.I)
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


def resolve_target(repository_url: str | None, env: dict[str, str] | None = None, index: str = "", *,
                   source: str = "", registry_urls: tuple[str, ...] = (), registry: str = "") -> Target:
    """The registry at `repository_url` (else CIWHEELS_REPOSITORY_URL, else in GitLab CI the
    project's own registry) with its credentials by net/auth.py's one rule. `source` names where
    the URL came from, for messages (default: --repository-url or the variable)."""

    env = dict(os.environ) if env is None else env
    url = repository_url or env.get(ENV_URL)
    if url:
        source = source or ("--repository-url" if repository_url else ENV_URL)
        if not index and not repository_url:
            index = env.get(ENV_INDEX, "")
        creds = credentials_for(url, index=index, env=env, registry_urls=registry_urls, registry=registry,
                                env_host=host_of(url) if repository_url and source == "--repository-url" else None,
                                require=True, what=source)
        bare_index = credentials.split_userinfo(index)[0] if index else ""
        return Target(credentials.split_userinfo(url)[0].rstrip("/"), creds.username, creds.password,
                      f"{source}, credentials from {creds.source}", bare_index)
    if gitlab_project_registry(env) and env.get("CI_JOB_TOKEN"):
        return Target(gitlab_project_registry(env), "gitlab-ci-token", env["CI_JOB_TOKEN"], "GitLab CI job token",
                      index)
    raise CiwheelsError("no registry to publish to: pass --repository-url URL, set CIWHEELS_REPOSITORY_URL, "
                        "or run in GitLab CI (CI_API_V4_URL, CI_PROJECT_ID, CI_JOB_TOKEN)")


def index_url() -> str:
    """The upstream package index: CIWHEELS_INDEX_URL, else PIP_INDEX_URL, else PyPI."""
    return (os.environ.get("CIWHEELS_INDEX_URL") or os.environ.get("PIP_INDEX_URL")
            or "https://pypi.org/simple").rstrip("/")


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
    try:
        return parse_wheel_name(filename).plain.split("-")[-3]
    except InvalidWheelName:
        return "source"  # not a wheel (a `-variants.json`): what twine sends for files of no Python


class RegistryClient(HttpClient):
    """HTTP to one registry (net/http.py's client, with the registry's credentials): simple
    index pages and uploads. Keyword arguments are HttpClient's."""

    def __init__(self, target: Target, **kw) -> None:
        self.target = _clean(target)
        # the credentials were chosen for the upload URL's host (an anonymous client's: its index's);
        # an index on another host is read without them
        super().__init__(auth=(self.target.username, self.target.password),
                         auth_host=host_of(self.target.url or self.target.index), **kw)

    @classmethod
    def anonymous(cls, index: str, **kw) -> RegistryClient:
        """A client that sends no credentials, for a simple index URL (e.g. PyPI's). Credentials
        in the URL (`https://user:TOKEN@host/...`) are used, and never shown."""
        return cls(Target("", "", "", "anonymous", index.rstrip("/")), **kw)

    # -- the registry protocol ---------------------------------------------------------------
    def project_url(self, name: str) -> str:
        return f"{self.target.simple}/{canonicalize_name(name)}/"

    def _project_page(self, name: str, follow_redirects: bool = False, headers: dict | None = None):
        """The answer of a project's simple page; None when the registry hosts nothing of it
        (404, or a redirect to the fall-through index when not following them)."""
        url = self.project_url(name)
        resp = self.request("GET", url, f"reading {url}", follow_redirects=follow_redirects, headers=headers)[0]
        if resp.status_code in REDIRECTS or resp.status_code == 404:
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
                "md5_digest": md5_file(path), "summary": meta["summary"]}
        if meta["requires_python"]:
            data["requires_python"] = meta["requires_python"]

        def files():  # requests builds a multipart body in memory: the wheel (gather: at most 4 GiB) once
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
        if resp.status_code in REDIRECTS:
            return "failed", f"the registry redirected the upload (HTTP {resp.status_code}); check the URL", attempts
        if resp.status_code in (401, 403):
            return "failed", f"the registry refused our credentials (HTTP {resp.status_code})", attempts
        return "failed", f"HTTP {resp.status_code}: {body.strip()}", attempts
