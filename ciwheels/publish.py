"""Stage 6, publish: upload gathered wheels to a PyPI-compatible registry (GitLab's PyPI
package registry, pypiserver, devpi) without ever uploading a file twice or overwriting one.

For each project name the simple index is read once, without following redirects (GitLab
answers a redirect to PyPI for names it hosts nothing of): same filename and sha256 = skip;
same filename, other sha256 = error. Uploads use the legacy multipart API, several at once,
retrying connection errors, timeouts, 5xx and 429 (honouring Retry-After); a "duplicate"
answer after a retry is settled by reading the index again. Afterwards the index must list
every file with its hash."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from html.parser import HTMLParser
from pathlib import Path

from ciwheels.errors import CiwheelsError

_DUPLICATE = re.compile(r"already been taken|already exists|file exists", re.I)


@dataclass(frozen=True)
class Target:
    url: str  # repository (upload) URL
    username: str
    password: str = field(repr=False)
    source: str = ""
    index: str = ""  # simple index; default URL/simple/ (GitLab, pypiserver); devpi: URL/+simple/

    @property
    def simple(self) -> str:
        return (self.index or f"{self.url}/simple").rstrip("/")

    def __str__(self) -> str:
        return f"{self.url} (as {self.username}, from {self.source})"


@dataclass
class Result:
    file: str
    status: str  # uploaded | skipped | failed
    detail: str = ""
    attempts: int = 0


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def matrix_registries(project: Path) -> dict[str, dict[str, str]]:
    """{name: {url, index?, catch_all}} of the registries the project's matrix files name, in file
    order (empty without any). `catch_all`: it has no `select`, so unmatched cells go there."""
    from ciwheels.catalog import load_catalog
    from ciwheels.load import load_files
    from ciwheels.project import find_matrix_files

    try:
        files = find_matrix_files(project)
    except CiwheelsError:
        return {}
    out: dict[str, dict[str, str]] = {}
    for doc in load_files(files, load_catalog(), root=Path.cwd()):
        for name, reg in doc.data.get("registries", {}).items():
            entry = {**{k: v for k, v in reg.items() if k in ("url", "index")}, "catch_all": "select" not in reg}
            if out.get(name, entry) != entry:
                raise doc.error(("registries", name), f"registry {name!r} is defined twice, differently")
            out[name] = entry
    return out


def default_registry(registries: dict[str, dict]) -> str | None:
    """The registry for cells no selector matched: the first one without `select`."""
    return next((name for name, reg in registries.items() if reg["catch_all"]), None)


def wheel_registries(folder: Path) -> dict[str, str | None]:
    """{wheel file: registry name} from a gather manifest."""
    from ciwheels.artifacts import MANIFEST, read_manifest

    manifest = folder / MANIFEST
    if not manifest.exists():
        return {}
    return {w.path: w.registry for w in read_manifest(manifest).wheels}


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


def wheel_metadata(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as z:
        meta = next((n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None)
        if meta is None:
            raise CiwheelsError(f"{path.name}: no .dist-info/METADATA inside; not a wheel")
        headers = HeaderParser().parsestr(z.read(meta).decode("utf-8", "replace"))
    return {"name": headers.get("Name", ""), "version": headers.get("Version", ""),
            "metadata_version": headers.get("Metadata-Version", "2.1"),
            "requires_python": headers.get("Requires-Python", "") or "",
            "summary": headers.get("Summary", "") or ""}


class Publisher:
    def __init__(self, target: Target, *, jobs: int = 4, retries: int = 6, timeout: float = 60.0,
                 backoff: float = 1.0, progress=None) -> None:
        import requests

        self.target = target
        self.jobs = max(1, jobs)
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        # progress(done, total, status, filename, detail) after each upload
        self.progress = progress or (lambda *args: None)
        self._local = threading.local()
        self._requests = requests

    # -- HTTP --------------------------------------------------------------------------------
    def _session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = self._requests.Session()
            s.auth = (self.target.username, self.target.password)
            s.headers["User-Agent"] = "ciwheels-publish"
        return s

    def _scrub(self, text: str) -> str:
        return text.replace(self.target.password, "***") if self.target.password else text

    def _request(self, method: str, url: str, what: str, **kw):
        """One call with retries on connection errors, timeouts, 5xx and 429. Returns
        (response, attempts). Raises CiwheelsError after the last attempt."""
        last = ""
        for attempt in range(1, self.retries + 1):
            try:
                resp = self._session().request(method, url, timeout=self.timeout, allow_redirects=False,
                                               **{k: (v() if callable(v) else v) for k, v in kw.items()})
            except self._requests.RequestException as e:
                last = self._scrub(f"{type(e).__name__}: {e}")
                self._local.session = None  # a broken connection: start a new one
                delay = self.backoff * 2 ** (attempt - 1)
            else:
                if resp.status_code == 429 or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}"
                    retry_after = resp.headers.get("Retry-After", "")
                    delay = float(retry_after) if retry_after.isdigit() else self.backoff * 2 ** (attempt - 1)
                    delay = min(delay, 120.0)
                else:
                    return resp, attempt
            if attempt < self.retries:
                time.sleep(delay)
        raise CiwheelsError(f"{what}: gave up after {self.retries} attempts ({last})")

    def index(self, name: str) -> dict[str, str | None]:
        """{filename: sha256} the registry hosts for a project; {} when it hosts nothing (a
        redirect to the fall-through index, or 404)."""
        url = f"{self.target.simple}/{normalize(name)}/"
        resp, _ = self._request("GET", url, f"reading {url}")
        if resp.status_code in (301, 302, 303, 307, 308, 404):
            return {}
        if resp.status_code in (401, 403):
            raise CiwheelsError(f"the registry refused our credentials reading {url} (HTTP {resp.status_code})")
        if resp.status_code != 200:
            raise CiwheelsError(f"reading {url}: HTTP {resp.status_code}")
        parser = _Links()
        parser.feed(resp.text)
        return parser.files

    def upload(self, path: Path, digest: str, meta: dict[str, str]) -> tuple[str, str, int]:
        """(status, detail, attempts): status is 'uploaded', 'duplicate' or 'failed'."""
        data = {":action": "file_upload", "protocol_version": "1", "name": normalize(meta["name"]),
                "version": meta["version"], "filetype": "bdist_wheel", "pyversion": path.name.split("-")[-3],
                "metadata_version": meta["metadata_version"], "sha256_digest": digest,
                "md5_digest": hashlib.md5(path.read_bytes()).hexdigest(), "summary": meta["summary"]}
        if meta["requires_python"]:
            data["requires_python"] = meta["requires_python"]

        def files():
            return {"content": (path.name, path.read_bytes(), "application/octet-stream")}

        try:
            resp, attempts = self._request("POST", self.target.url, f"uploading {path.name}", data=data, files=files)
        except CiwheelsError as e:
            return "failed", str(e), self.retries
        if resp.status_code in (200, 201):
            return "uploaded", f"HTTP {resp.status_code}", attempts
        body = self._scrub(resp.text[:300])
        if resp.status_code == 409 or (resp.status_code == 400 and _DUPLICATE.search(body)):
            return "duplicate", f"HTTP {resp.status_code}", attempts
        if resp.status_code in (301, 302, 303, 307, 308):
            return "failed", f"the registry redirected the upload (HTTP {resp.status_code}); check the URL", attempts
        if resp.status_code in (401, 403):
            return "failed", f"the registry refused our credentials (HTTP {resp.status_code})", attempts
        return "failed", f"HTTP {resp.status_code}: {body.strip()}", attempts

    # -- the whole job -----------------------------------------------------------------------
    def publish(self, wheels: list[tuple[Path, str]]) -> list[Result]:
        """wheels: (path, sha256). Never uploads a file the index already has."""
        from concurrent.futures import ThreadPoolExecutor

        from packaging.utils import InvalidWheelFilename, parse_wheel_filename

        # project names come from the file names; METADATA is read only for what gets uploaded
        try:
            project = {path: normalize(str(parse_wheel_filename(path.name)[0])) for path, _ in wheels}
        except InvalidWheelFilename as e:
            raise CiwheelsError(f"not a wheel file name: {e}") from None
        names = sorted(set(project.values()))
        hosted: dict[str, dict[str, str | None]] = {}
        with ThreadPoolExecutor(self.jobs) as pool:
            for name, files in zip(names, pool.map(self.index, names)):
                hosted[name] = files
        results: dict[str, Result] = {}
        todo = []
        for path, digest in wheels:
            name = project[path]
            if path.name in hosted[name]:
                there = hosted[name][path.name]
                if there == digest:
                    results[path.name] = Result(path.name, "skipped", "already published")
                elif there is None:
                    results[path.name] = Result(path.name, "failed", "already published without a sha256 "
                                                "in the index; cannot tell whether it is the same file")
                else:
                    results[path.name] = Result(path.name, "failed", f"already published with other contents "
                                                f"(sha256 {there}); a registry cannot overwrite it")
            else:
                todo.append((path, digest))
        done = [0]
        lock = threading.Lock()

        def one(item):
            path, digest = item
            status, detail, attempts = self.upload(path, digest, wheel_metadata(path))
            if status == "duplicate":
                there = self.index(project[path]).get(path.name)
                if there == digest:
                    status, detail = ("uploaded" if attempts > 1 else "skipped"), \
                        "stored by an earlier attempt" if attempts > 1 else "published meanwhile by another run"
                else:
                    status, detail = "failed", f"the registry already has {path.name} with other contents"
            with lock:
                done[0] += 1
                self.progress(done[0], len(todo), status, path.name, detail)
            return Result(path.name, status, detail, attempts)

        with ThreadPoolExecutor(self.jobs) as pool:
            for r in pool.map(one, todo):
                results[r.file] = r
        self.verify(wheels, project, results)
        return [results[p.name] for p, _ in wheels]

    def verify(self, wheels, project: dict[Path, str], results: dict[str, Result]) -> None:
        """Every uploaded or skipped file must now be listed with its hash."""
        # names with nothing uploaded were just read; only the others need a second look
        names = sorted({project[p] for p, _ in wheels if results[p.name].status == "uploaded"})
        listed = {}
        for name in names:
            listed.update(self.index(name))
        for path, digest in wheels:
            if results[path.name].status == "skipped":
                listed.setdefault(path.name, digest)
        for path, digest in wheels:
            r = results[path.name]
            if r.status in ("uploaded", "skipped") and listed.get(path.name) != digest:
                r.status, r.detail = "failed", "not listed in the index with its sha256 after publishing"


def wheels_in(folder: Path) -> list[tuple[Path, str]]:
    """The wheels of a gather output (manifest.json), or every *.whl in the folder."""
    from ciwheels.artifacts import MANIFEST, read_manifest

    manifest = folder / MANIFEST
    out = []
    if manifest.exists():
        for e in read_manifest(manifest).wheels:
            path = folder / e.path
            if not path.is_file():
                raise CiwheelsError(f"{manifest} lists {e.file}, which is missing from {folder}")
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != e.sha256:
                raise CiwheelsError(f"{path}: sha256 differs from {manifest}; refusing to publish it")
            out.append((path, digest))
        return out  # may be empty: a gather of dry-run builds
    for path in sorted(folder.glob("*.whl")):
        out.append((path, hashlib.sha256(path.read_bytes()).hexdigest()))
    if not out:
        raise CiwheelsError(f"no wheels in {folder} (run 'ciwheels gather' first)")
    return out
