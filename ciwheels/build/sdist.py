"""Builder mode: fetch a third-party package's sdist from the package index (PEP 691 JSON or
PEP 503 HTML, through the registry client: bounded reads, retries, a deadline), checked against
the index's sha256 and cached."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urljoin

from packaging.utils import (
    InvalidSdistFilename,
    canonicalize_name,
    parse_sdist_filename,
)
from packaging.version import Version

from ciwheels.core.errors import CiwheelsError
from ciwheels.core.resources import cache_dir
from ciwheels.net.registry import RegistryClient, index_url

MAX_SDIST = 1 << 30  # bytes of one sdist (PyPI's largest are a few hundred MiB)


def fetch_sdist(name: str, version: str) -> Path:
    norm = canonicalize_name(name)
    folder = cache_dir() / "sdists"
    folder.mkdir(parents=True, exist_ok=True)
    client = RegistryClient.anonymous(index_url(), retries=3, timeout=300, max_response=MAX_SDIST)
    page = client.project_url(norm)
    files = client.files(norm, follow_redirects=True)
    if not files:
        raise CiwheelsError(f"the package index has no project {name!r} ({page})")
    for f in files:
        if not f.filename.endswith((".tar.gz", ".zip")):
            continue
        try:
            fname, fver = parse_sdist_filename(f.filename)
        except InvalidSdistFilename:
            continue
        if fname != norm or fver != Version(version):
            continue
        target = folder / f.filename
        if target.exists() and (not f.sha256 or hashlib.sha256(target.read_bytes()).hexdigest() == f.sha256):
            return target
        resp = client.get(urljoin(page, f.url), follow_redirects=True)
        if resp.status_code != 200:
            raise CiwheelsError(f"downloading {f.filename} from {client.scrub(page)}: HTTP {resp.status_code}")
        data = resp.content
        if f.sha256 and hashlib.sha256(data).hexdigest() != f.sha256:
            raise CiwheelsError(f"{f.filename}: sha256 differs from the index's; refusing it")
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
        return target
    raise CiwheelsError(f"{name} {version} has no sdist on {client.scrub(index_url())}")
