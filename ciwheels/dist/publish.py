"""Stage 6, publish: upload gathered wheels to a PyPI-compatible registry (GitLab's PyPI
package registry, pypiserver, devpi) without ever uploading a file twice or overwriting one.

For each project name the simple index is read once, without following redirects (GitLab
answers a redirect to PyPI for names it hosts nothing of): same filename and sha256 = skip;
same filename, other sha256 = error. Uploads use the legacy multipart API, several at once,
through a net/registry.RegistryClient (which retries); a "duplicate" answer after a retry is
settled by reading the index again. Afterwards the index must list every file with its hash.

Which wheel goes to which registry is matrix/destination.py's rule, applied by `route` to the
registry each build recorded (the gather manifest), or everything to one --repository-url."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.utils import canonicalize_name

from ciwheels.core.errors import CiwheelsError
from ciwheels.core.files import sha256_file
from ciwheels.core.log import Progress, get_logger, no_progress
from ciwheels.dist.artifacts import MANIFEST, Manifest, read_manifest
from ciwheels.matrix import destination
from ciwheels.matrix.model import Destination, Registry
from ciwheels.net.registry import RegistryClient, Target, resolve_target  # noqa: F401 (Target: part of the API)
from ciwheels.core.wheel import InvalidWheelName, index_file_name, parse_wheel_name
from ciwheels.core import secrets
from ciwheels.catalog import Catalog, load_catalog
from ciwheels.dist.variants import wanted_index_files

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
          folder: Path, only: str | None = None, repository_url: str | None = None,
          default: Destination | None = None) -> dict[Destination, list[tuple[Path, str]]]:
    """{destination: its wheels}, in registry-name then URL order. `wheels` lie in `folder` (a
    gather output described by `manifest`, or loose wheels with manifest None).

    With `repository_url`, every wheel goes there. Otherwise each goes where matrix/destination.py
    sends its cell: the registry its build recorded (resolve and `destination.assign` decided it,
    catch-alls across matrix files included; one the matrix lacks is an error), else the
    environment's registry (`default`: CIWHEELS_REPOSITORY_URL, GitLab's project registry).
    `only`: keep just the wheels bound for that registry of the matrix."""
    if repository_url:
        if only:
            raise CiwheelsError(f"--registry {only} and --repository-url exclude each other: the URL receives "
                                "every wheel")
        return {destination.environment_default({}, repository_url): list(wheels)} if wheels else {}
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
    project_wide = destination.catch_all(registries)
    dests = {name: destination.of_registry(reg) for name, reg in registries.items()}
    groups: dict[Destination, list[tuple[Path, str]]] = {}
    for path, digest in wheels:
        name = named.get(path) or project_wide
        dest = dests[name] if name else default
        if dest is None:
            raise CiwheelsError(f"{path.name}: its build named no registry, the matrix has none without `select`, "
                                "and no default registry is set",
                                hint="pass --registry NAME or --repository-url URL, set CIWHEELS_REPOSITORY_URL, or "
                                     "add a registry without `select` to the matrix")
        if only is None or dest.registry == only:
            groups.setdefault(dest, []).append((path, digest))
    return dict(sorted(groups.items(), key=lambda kv: (kv[0].registry, kv[0].url)))


def target_for(dest: Destination, registries: dict[str, Registry] | None = None,
               index_url: str | None = None) -> Target:
    """The registry of one group of `route`, with its credentials (net/auth.py's rule)."""
    return resolve_target(dest.url_with_credentials or dest.url,
                          index=index_url or dest.index_with_credentials or dest.index, source=dest.source,
                          registry_urls=tuple(r.url for r in (registries or {}).values()), registry=dest.registry)


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


# -- a gather output, end to end (what `ciwheels publish` runs) ----------------------------------
@dataclass
class FolderPlan:
    """What a gather output holds and where each wheel goes."""

    groups: dict[Destination, list[tuple[Path, str]]]
    missing: list[str]  # cells without a wheel (failed or rejected builds)
    registries: dict[str, Registry]


def plan_folder(folder: Path, registries: dict[str, Registry], *, only: str | None = None,
                repository_url: str | None = None, default: Destination | None = None) -> FolderPlan:
    manifest = folder_manifest(folder)
    wheels = wheels_in(folder, manifest)
    groups = route(wheels, manifest, registries, folder=folder, only=only, repository_url=repository_url,
                   default=default) if wheels else {}
    return FolderPlan(groups, manifest.missing if manifest else [], registries)


def publish_folder(plan: FolderPlan, *, index_url: str | None = None, jobs: int = 4, retries: int = 6,
                   timeout: float = 60.0, allow_insecure_http: bool | None = None,
                   progress: Progress | None = None) -> list[Result]:
    """Publish every group of `plan` to its destination, each release's `-variants.json` last."""
    results: list[Result] = []
    for dest, items in plan.groups.items():
        target = target_for(dest, plan.registries, index_url)
        log.info("publishing %d wheel(s) to %s", len(items), secrets.scrub(str(target)))
        publisher = Publisher(target, jobs=jobs, retries=retries, timeout=timeout, progress=progress,
                              allow_insecure_http=allow_insecure_http)
        done = publisher.publish(items)
        results += done + publish_index_files(publisher, items, done, load_catalog())
    return results


def publish_index_files(publisher, wheels: list[tuple[Path, str]], results: list, catalog: Catalog) -> list:
    """Upload the `{name}-{version}-variants.json` of the variant wheels just published, last
    (uv installs the plain wheel until it appears), under the rules of wheels: the same bytes on
    the registry are skipped, other bytes are an error (registries cannot replace a file). Not
    uploaded while a wheel of its release failed. Returns publish.Result per file."""
    import tempfile


    paths = [p for p, _ in wheels]
    variant = [p for p in paths if parse_wheel_name(p.name).label]
    if not variant:
        return []
    status = {r.file: r.status for r in results}
    from packaging.utils import canonicalize_name

    projects = sorted({canonicalize_name(parse_wheel_name(p.name).name) for p in variant})
    hosted = {name: publisher.index(name) for name in projects}
    out = []
    for fname, (project, data) in wanted_index_files(variant, hosted, catalog).items():
        digest = hashlib.sha256(data).hexdigest()
        release = [p for p in paths if index_file_name(parse_wheel_name(p.name)) == fname]
        failed = [p.name for p in release if status.get(p.name) == "failed"]
        there = hosted[project].get(fname, "absent") if fname in hosted[project] else "absent"
        if failed:
            out.append(Result(fname, "failed", f"not uploaded: {failed[0]} of its release failed"))
        elif there == digest:
            out.append(Result(fname, "skipped", "already published"))
        elif there != "absent":
            out.append(Result(fname, "failed", f"the registry has another {fname} (sha256 {there}), which it cannot "
                              "replace: delete that file on the registry (GitLab: Deploy > Package registry, the "
                              "version, delete the file) and publish again; until then uv sees the old levels"))
        else:
            meta = wheel_metadata(release[0])
            with tempfile.TemporaryDirectory(prefix="ciwheels-variants-") as tmp:
                path = Path(tmp) / fname
                path.write_bytes(data)
                st, detail, attempts = publisher.upload(path, digest, meta)
            if st == "duplicate":
                again = publisher.index(project).get(fname)
                st, detail = ("skipped", "published meanwhile") if again == digest else \
                    ("failed", f"the registry already has another {fname}")
            elif st == "failed" and detail.startswith("HTTP 400"):
                detail += (" (pypiserver and devpi accept only wheels and sdists: without this file uv installs "
                           "the baseline; serve it from a registry that stores any file, e.g. GitLab's)")
            out.append(Result(fname, st, detail, attempts))
            if st == "uploaded" and publisher.index(project).get(fname) != digest:
                out[-1] = Result(fname, "failed", "not listed in the index with its sha256 after publishing", attempts)
    return out
