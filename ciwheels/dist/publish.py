"""Stage 6, publish: upload gathered wheels to a PyPI-compatible registry (GitLab's PyPI
package registry, pypiserver, devpi) without ever uploading a file twice or overwriting one.

For each project name the simple index is read once, without following redirects (GitLab
answers a redirect to PyPI for names it hosts nothing of): same filename and sha256 = skip;
same filename, other sha256 = error. Uploads use the legacy multipart API, several at once,
through a registry.RegistryClient (which retries); a "duplicate" answer after a retry is
settled by reading the index again. Afterwards the index must list every file with its hash.

Which wheel goes to which registry is `route`'s decision: the registry its build named (from
the gather manifest), else the matrix's catch-all, or everything to one --repository-url."""

from __future__ import annotations

import threading
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.utils import canonicalize_name

from ciwheels.dist.artifacts import MANIFEST, Manifest, read_manifest, sha256_file
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import Progress, get_logger, no_progress
from ciwheels.matrix.model import Registry
from ciwheels.net.registry import RegistryClient, Target, resolve_target  # noqa: F401 (Target: part of the API)

log = get_logger("publish")


@dataclass
class Result:
    file: str
    status: str  # uploaded | skipped | failed
    detail: str = ""
    attempts: int = 0
    path: str = ""  # where the wheel lies (two registries' folders may hold one file name)


# -- what to publish, and where -----------------------------------------------------------------
def folder_manifest(folder: Path) -> Manifest | None:
    """The manifest of a gather output; None for a plain folder of wheels."""
    path = folder / MANIFEST
    return read_manifest(path) if path.exists() else None


def wheels_in(folder: Path, manifest: Manifest | None = None) -> list[tuple[Path, str]]:
    """(path, sha256) of the wheels of a gather output (its manifest, checked against the
    files), or of every *.whl in a folder without a manifest."""
    manifest = manifest or folder_manifest(folder)
    out = []
    if manifest is not None:
        for e in manifest.wheels:
            path = folder / e.path
            if not path.is_file():
                raise CiwheelsError(f"{folder / MANIFEST} lists {e.file}, which is missing from {folder}")
            _inside(path, folder)
            digest = sha256_file(path)
            if digest != e.sha256:
                raise CiwheelsError(f"{path}: sha256 differs from {folder / MANIFEST}; refusing to publish it")
            out.append((path, digest))
        return out  # may be empty: a gather of dry-run builds
    for path in sorted(folder.glob("*.whl")):
        _inside(path, folder)
        out.append((path, sha256_file(path)))
    if not out:
        raise CiwheelsError(f"no wheels in {folder} (run 'ciwheels gather' first)")
    return out


def _inside(path: Path, folder: Path) -> None:
    """A wheel to publish is a regular file whose real location is inside the folder: no link
    out of it (to a secret elsewhere) is uploaded."""
    import stat

    try:
        st = path.lstat()
        real = path.resolve(strict=True)
    except OSError as e:
        raise CiwheelsError(f"cannot read {path}: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode) or not real.is_relative_to(folder.resolve()):
        raise CiwheelsError(f"refusing to publish {path}: not a regular file inside {folder} (a link or a "
                            "special file)")


def route(wheels: list[tuple[Path, str]], manifest: Manifest | None, registries: dict[str, Registry], *,
          folder: Path, only: str | None = None,
          repository_url: str | None = None) -> dict[str | None, list[tuple[Path, str]]]:
    """{registry name: its wheels}, in name order. `wheels` lie in `folder` (a gather output
    described by `manifest`, or loose wheels with manifest None).

    With `repository_url`, every wheel goes there (key None). Otherwise a wheel goes to the
    registry its build named (the manifest records it; one the matrix lacks is an error),
    else to the matrix's catch-all (its first registry without `select`). Without registries
    in the matrix and none named, all go to key None (the registry of the environment).
    `only`: keep just the wheels bound for that registry."""
    if repository_url:
        if only:
            raise CiwheelsError(f"--registry {only} and --repository-url exclude each other: the URL receives "
                                "every wheel")
        return {None: list(wheels)} if wheels else {}
    if only is not None and not registries:
        raise CiwheelsError(f"--registry {only}: the matrix names no registries",
                            hint="add registries: to a matrix file, or pass --repository-url")
    if only is not None and only not in registries:
        raise CiwheelsError(f"no registry {only!r} in the matrix", value=only, allowed=sorted(registries))
    named = {folder / e.path: e.registry for e in manifest.wheels} if manifest else {}
    unknown = sorted({name for name in named.values() if name and name not in registries})
    if unknown:
        raise CiwheelsError(f"wheels are bound for the registr{'ies' if len(unknown) > 1 else 'y'} "
                            f"{', '.join(map(repr, unknown))}, which the matrix does not define",
                            file=str(folder / MANIFEST), allowed=sorted(registries),
                            hint="pass --project with the matrix the wheels were built from, or --repository-url "
                                 "URL to publish them all to one registry")
    if not registries:
        return {None: list(wheels)} if wheels else {}
    catch_all = next((name for name, reg in registries.items() if reg.catch_all), None)
    groups: dict[str | None, list[tuple[Path, str]]] = {}
    for path, digest in wheels:
        name = named.get(path) or catch_all
        if name is None:
            raise CiwheelsError(f"{path.name}: its build named no registry and the matrix has none without "
                                "`select`; pass --registry NAME or --repository-url URL")
        if only is None or name == only:
            groups.setdefault(name, []).append((path, digest))
    return dict(sorted(groups.items()))


def target_for(name: str | None, registries: dict[str, Registry], repository_url: str | None = None,
               index_url: str | None = None) -> Target:
    """Where one group of `route` goes, with credentials (registry.resolve_target)."""
    reg = registries.get(name) if name else None
    target = resolve_target(reg.url if reg else repository_url, index=(reg.index if reg else "") or index_url or "")
    if reg and target.source.startswith("--repository-url"):  # the URL came from the matrix, not the option
        from dataclasses import replace

        target = replace(target, source=f"the matrix's registry {name}" + target.source[len("--repository-url"):])
    return target


# -- publishing ---------------------------------------------------------------------------------
MAX_METADATA = 16 << 20  # bytes of a wheel's METADATA


def wheel_metadata(path: Path) -> dict[str, str]:
    try:
        with zipfile.ZipFile(path) as z:
            meta = next((i for i in z.infolist() if i.filename.endswith(".dist-info/METADATA")
                         and i.filename.count("/") == 1), None)
            if meta is None:
                raise CiwheelsError(f"{path.name}: no .dist-info/METADATA inside; not a wheel")
            if meta.file_size > MAX_METADATA:
                raise CiwheelsError(f"{path.name}: METADATA is {meta.file_size} bytes, more than the limit of "
                                    f"{MAX_METADATA >> 20} MiB")
            with z.open(meta) as f:
                text = f.read(MAX_METADATA + 1)[:MAX_METADATA].decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
        raise CiwheelsError(f"{path.name}: not a readable wheel ({type(e).__name__}: {e})") from None
    headers = HeaderParser().parsestr(text)
    return {"name": headers.get("Name", ""), "version": headers.get("Version", ""),
            "metadata_version": headers.get("Metadata-Version", "2.1"),
            "requires_python": headers.get("Requires-Python", "") or "",
            "summary": headers.get("Summary", "") or ""}


class Publisher:
    """The publish algorithm on top of a RegistryClient: skip what the index has with the same
    sha256, refuse what it has with another, upload the rest in parallel, then check the index
    lists every file with its hash."""

    def __init__(self, target: Target | None = None, *, client: RegistryClient | None = None, jobs: int = 4,
                 retries: int = 6, timeout: float = 60.0, backoff: float = 1.0,
                 progress: Progress | None = None, allow_insecure_http: bool | None = None) -> None:
        if client is None:
            if target is None:
                raise TypeError("Publisher needs a target or a client")
            client = RegistryClient(target, retries=retries, timeout=timeout, backoff=backoff,
                                    allow_insecure_http=allow_insecure_http)
        self.client = client
        self.target = client.target
        self.jobs = max(1, jobs)
        self.progress: Progress = progress or no_progress  # after each upload

    def index(self, name: str) -> dict[str, str | None]:
        return self.client.index(name)

    def upload(self, path: Path, digest: str, meta: dict[str, str]) -> tuple[str, str, int]:
        return self.client.upload(path, digest, meta)

    def publish(self, wheels: list[tuple[Path, str]]) -> list[Result]:
        """wheels: (path, sha256). Never uploads a file the index already has."""
        from concurrent.futures import ThreadPoolExecutor

        from ciwheels.core.wheel import InvalidWheelName, parse_wheel_name

        # project names come from the file names (wheel variants' too); METADATA is read only for what gets uploaded
        try:
            project = {path: canonicalize_name(parse_wheel_name(path.name).name) for path, _ in wheels}
        except InvalidWheelName as e:
            raise CiwheelsError(f"not a wheel file name: {e}") from None
        names = sorted(set(project.values()))
        hosted: dict[str, dict[str, str | None]] = {}
        with ThreadPoolExecutor(self.jobs) as pool:
            for name, files in zip(names, pool.map(self.index, names)):
                hosted[name] = files
        # results by path: two wheels of one file name (two ISA levels' folders) sent to one URL
        # are two results, the second one refused, never one result standing for both
        results: dict[Path, Result] = {}
        todo = []
        first: dict[str, tuple[Path, str]] = {}  # file name -> the first wheel of that name here
        for path, digest in wheels:
            name = project[path]
            if path.name in first:
                other, other_digest = first[path.name]
                if other_digest == digest:
                    results[path] = Result(path.name, "skipped", f"the same file as {other}")
                else:
                    results[path] = Result(path.name, "failed", f"{other} has the same file name with other "
                                           "contents, bound for the same registry; one registry cannot hold both "
                                           "(give each ISA level its own registry)")
                continue
            first[path.name] = (path, digest)
            if path.name in hosted[name]:
                there = hosted[name][path.name]
                if there == digest:
                    results[path] = Result(path.name, "skipped", "already published")
                elif there is None:
                    results[path] = Result(path.name, "failed", "already published without a sha256 "
                                           "in the index; cannot tell whether it is the same file")
                else:
                    results[path] = Result(path.name, "failed", f"already published with other contents "
                                           f"(sha256 {there}); a registry cannot overwrite it")
            else:
                todo.append((path, digest))
        log.info("%s: %d to upload, %d already there", self.target.url, len(todo), len(wheels) - len(todo))
        done = [0]
        lock = threading.Lock()

        def one(item):
            path, digest = item
            try:
                status, detail, attempts = self.upload(path, digest, wheel_metadata(path))
            except CiwheelsError as e:
                status, detail, attempts = "failed", str(e), 0
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
            return path, Result(path.name, status, detail, attempts)

        with ThreadPoolExecutor(self.jobs) as pool:
            for path, r in pool.map(one, todo):
                results[path] = r
        self.verify(wheels, project, results)
        for path, r in results.items():
            r.path = str(path)
            r.detail = self.client.scrub(r.detail)
        return [results[p] for p, _ in wheels]

    def verify(self, wheels, project: dict[Path, str], results: dict[Path, Result]) -> None:
        """Every uploaded or skipped file must now be listed with its hash."""
        # names with nothing uploaded were just read; only the others need a second look
        names = sorted({project[p] for p, _ in wheels if results[p].status == "uploaded"})
        listed = {}
        for name in names:
            listed.update(self.index(name))
        for path, digest in wheels:
            if results[path].status == "skipped" and path.name not in listed:
                listed[path.name] = digest
        for path, digest in wheels:
            r = results[path]
            if r.status in ("uploaded", "skipped") and listed.get(path.name) != digest:
                r.status, r.detail = "failed", "not listed in the index with its sha256 after publishing"
