"""Builder mode: fetch a third-party package's sdist from the package index (PEP 691 JSON
simple API), checked against the index's sha256 and cached."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ciwheels.errors import CiwheelsError
from ciwheels.image import cache_dir


def index_url() -> str:
    return (os.environ.get("CIWHEELS_INDEX_URL") or os.environ.get("PIP_INDEX_URL")
            or "https://pypi.org/simple").rstrip("/")


def fetch_sdist(name: str, version: str) -> Path:
    import requests
    from packaging.utils import canonicalize_name, parse_sdist_filename
    from packaging.version import Version

    norm = canonicalize_name(name)
    folder = cache_dir() / "sdists"
    folder.mkdir(parents=True, exist_ok=True)
    url = f"{index_url()}/{norm}/"
    try:
        resp = requests.get(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=60)
    except requests.RequestException as e:
        raise CiwheelsError(f"cannot reach the package index at {url}: {e}") from None
    if resp.status_code == 404:
        raise CiwheelsError(f"the package index has no project {name!r} ({url})")
    if resp.status_code != 200 or "json" not in resp.headers.get("Content-Type", ""):
        raise CiwheelsError(f"{url} answered HTTP {resp.status_code} without PEP 691 JSON")
    for f in resp.json().get("files", []):
        fn = f["filename"]
        if not fn.endswith((".tar.gz", ".zip")):
            continue
        try:
            fname, fver = parse_sdist_filename(fn)
        except ValueError:
            continue
        if fname != norm or fver != Version(version):
            continue
        target = folder / fn
        want = f.get("hashes", {}).get("sha256")
        if target.exists() and (not want or hashlib.sha256(target.read_bytes()).hexdigest() == want):
            return target
        data = requests.get(requests.compat.urljoin(url, f["url"]), timeout=300).content
        if want and hashlib.sha256(data).hexdigest() != want:
            raise CiwheelsError(f"{fn}: sha256 differs from the index's; refusing it")
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
        return target
    raise CiwheelsError(f"{name} {version} has no sdist on {index_url()}")
