"""Reading a project's page of a simple index (PEP 503 HTML, PEP 691 JSON), from the upstream
index or one of our registries: whatever a server sends, the result is a list of `IndexFile`s
of that project, or a CiwheelsError naming the page. Nothing else parses index pages.

A page that is not what it says (not JSON, a JSON array, `files` that is not a list) is an
error; an entry that is malformed (not an object, no string `filename`, fields of the wrong
type) is dropped with a warning, as is a file of another project (`other-9.0.tar.gz` on
`demo`'s page must not become a release of demo) and a file name that is not a wheel, sdist
or `-variants.json` name."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser

from packaging.utils import canonicalize_name

from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import get_logger
from ciwheels.core.wheel import (
    INDEX_SUFFIX,
    InvalidWheelName,
    parse_wheel_name,
    project_of_index_file,
)

log = get_logger("index")
SIMPLE_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
MAX_NAME = 500  # characters of a file name
MAX_FIELD = 4000  # characters of a URL, upload time or requires-python


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


class _Links(HTMLParser):
    """The files a PEP 503 simple page links to, with their sha256 fragment and data- attributes."""

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


def project_of_file(filename: str) -> str | None:
    """The canonical project name a file name carries (a wheel, plain or variant; an sdist; a
    `-variants.json` file), or None when it is none of those."""
    from packaging.utils import InvalidSdistFilename, parse_sdist_filename

    if not isinstance(filename, str) or not filename or len(filename) > MAX_NAME or "/" in filename:
        return None
    try:
        if filename.endswith(".whl"):
            return canonicalize_name(parse_wheel_name(filename).name)
        if filename.endswith(INDEX_SUFFIX):
            found = project_of_index_file(filename)
            return canonicalize_name(found[0]) if found else None
        return canonicalize_name(parse_sdist_filename(filename)[0])
    except (InvalidWheelName, InvalidSdistFilename, ValueError):
        return None


def _text(value, limit: int = MAX_FIELD) -> str | None:
    return value if isinstance(value, str) and len(value) <= limit else None


def _json_files(body: str, where: str) -> tuple[list[IndexFile], list[str]]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise CiwheelsError(f"{where}: the index sent a page that is not PEP 691 JSON ({str(e)[:200]})") from None
    if not isinstance(data, dict):
        raise CiwheelsError(f"{where}: the index sent a PEP 691 page that is a JSON {type(data).__name__}, "
                            "not an object")
    files = data.get("files", [])
    if not isinstance(files, list):
        raise CiwheelsError(f"{where}: the index sent a PEP 691 page whose 'files' is a {type(files).__name__}, "
                            "not a list")
    out, dropped = [], []
    for i, f in enumerate(files):
        if not isinstance(f, dict) or not isinstance(f.get("filename"), str) or not f["filename"]:
            dropped.append(f"files[{i}]: no filename")
            continue
        hashes = f.get("hashes")
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        yanked = f.get("yanked", False)
        if not isinstance(yanked, (bool, str)):
            dropped.append(f"{f['filename'][:80]}: yanked is a {type(yanked).__name__}")
            continue
        out.append(IndexFile(f["filename"], _text(f.get("url")) or "",
                             sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha) else None,
                             bool(yanked), _text(f.get("upload-time")), _text(f.get("requires-python"))))
    return out, dropped


def parse_project_page(body: str, content_type: str, project: str | None = None, where: str = "an index page"
                       ) -> list[IndexFile]:
    """A project's simple page as PEP 691 JSON or PEP 503 HTML, whichever the index served.
    With `project`, files of other projects are dropped (with a warning). Raises CiwheelsError
    when the page as a whole is not what its content type says."""
    if not isinstance(body, str):
        body = body.decode("utf-8", "replace")
    if "json" in (content_type or ""):
        files, dropped = _json_files(body, where)
    else:
        parser = _Links()
        try:
            parser.feed(body)
            parser.close()
        except (AssertionError, ValueError):  # html.parser gives up on some broken markup
            pass
        files, dropped = parser.files, []
    if project is not None:
        want = canonicalize_name(project)
        kept = []
        for f in files:
            of = project_of_file(f.filename)
            if of is not None and of != want:
                dropped.append(f"{f.filename[:80]} is a file of {of}")
                continue
            kept.append(f)
        files = kept
    if dropped:
        log.warning("%s: %d entr%s left out: %s", where, len(dropped), "y" if len(dropped) == 1 else "ies",
                    "; ".join(dropped[:5]) + (" ..." if len(dropped) > 5 else ""))
    return files


def parse_simple_page(html: str, project: str | None = None, where: str = "an index page") -> dict[str, str | None]:
    """{file name: sha256 or None}. Links whose name is not a valid wheel (plain or variant),
    sdist or `-variants.json` file name (an index may list `junk.whl`) are left out: nothing
    downstream has to parse them."""
    out = {}
    for f in parse_project_page(html, "text/html", project, where):
        if project_of_file(f.filename) is None:
            continue
        digest = f.sha256
        out[f.filename] = digest if digest and re.fullmatch(r"[0-9a-fA-F]{64}", digest) else None
    return out
