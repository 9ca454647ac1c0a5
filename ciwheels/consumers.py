"""For the people who install: `ciwheels pip-config` (pip and uv settings for a registry's
simple index) and `ciwheels doctor` (is the index healthy, does the fall-through work, which of
our names could be taken on PyPI)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from ciwheels.errors import CiwheelsError

if TYPE_CHECKING:
    from ciwheels.registry import RegistryClient


def pip_config(name: str, index: str) -> str:
    """`index`: the registry's simple index URL (credentials in it are left out: they belong in
    ~/.netrc or a keyring, not in a config file printed to a terminal)."""
    from ciwheels.credentials import split_userinfo

    index = split_userinfo(index)[0].rstrip("/") + "/"
    return f"""\
# pip: ~/.config/pip/pip.conf (or PIP_INDEX_URL={index})
# Private GitLab projects also need credentials: a ~/.netrc entry for the host, or
# https://<user>:<token>@host/... in the URL.
[global]
index-url = {index}

# uv: pyproject.toml or uv.toml. GitLab forwards names it does not host to PyPI with a
# redirect; uv must send credentials on every request for that to work.
[[tool.uv.index]]
name = "{name}"
url = "{index}"
default = true
authenticate = "always"
"""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False


def doctor(index: str, hosted: list[str], unhosted: str, pypi: str, timeout: float = 30, *,
           client: RegistryClient | None = None, allow_insecure_http: bool | None = None) -> list[Check]:
    """Checks against a registry's simple index URL. `hosted`: names we publish there (read from a
    manifest, or given); `unhosted`: a pure-Python package we do not host, to test the
    fall-through; `pypi`: the public index names are checked against. `client`: how to read the
    registry (default: without credentials); PyPI is always read without them."""
    from ciwheels.registry import RegistryClient

    registry = client or RegistryClient.anonymous(index, retries=2, timeout=timeout,
                                                  allow_insecure_http=allow_insecure_http)
    public = RegistryClient.anonymous(pypi, retries=2, timeout=timeout, allow_insecure_http=allow_insecure_http)
    index = registry.target.simple + "/"
    checks: list[Check] = []

    def get(c: RegistryClient, name: str, redirects: bool):
        try:
            return c.get(c.project_url(name), follow_redirects=redirects)
        except CiwheelsError as e:
            return e

    from ciwheels import credentials

    credentials.check_transport(registry.target.simple + "/", allow_insecure=registry.allow_insecure_http,
                                has_credentials=bool(registry.target.username or registry.target.password))
    index = registry.scrub(index)
    first = get(registry, hosted[0] if hosted else unhosted, False)
    if isinstance(first, Exception):
        return [Check("index answers", False, f"{index}: {first}")]
    checks.append(Check("index answers", first.status_code < 500, f"{index}: HTTP {first.status_code}"))
    for name in hosted:
        r = get(registry, name, False)
        served = not isinstance(r, Exception) and r.status_code == 200 and ".whl" in r.text
        checks.append(Check(f"{name} is served by the registry", served,
                            f"HTTP {getattr(r, 'status_code', r)}" + ("" if served else
                                                                        ": not hosted here (or redirected)")))
    r = get(registry, unhosted, True)  # the fall-through answers with redirects: follow them
    through = not isinstance(r, Exception) and r.status_code == 200 and ("href" in r.text)
    hops = len(getattr(r, "history", []) or [])
    checks.append(Check(f"{unhosted} resolves through the fall-through", through,
                        (f"HTTP {r.status_code} after {hops} redirect(s)" if not isinstance(r, Exception) else str(r))
                        + ("" if through else "; enable package forwarding (pypi_package_requests_forwarding)")))
    for name in hosted:
        p = get(public, name, True)
        if not isinstance(p, Exception) and p.status_code == 404:
            checks.append(Check(f"{name} exists on PyPI", False, f"{name} is not on {pypi}: anyone may register it "
                                "there, and clients that also read PyPI could install theirs (dependency "
                                "confusion); register the name or pin the index", warning=True))
    return checks


def hosted_names(folder: Path | None) -> list[str]:
    """Project names of the wheels in a gather output, normalised."""
    if folder is None:
        return []
    if not folder.is_dir():
        raise CiwheelsError(f"{folder} is not a folder")
    return sorted({canonicalize_name(p.name.split("-")[0]) for p in folder.rglob("*.whl")})
