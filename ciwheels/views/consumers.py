"""For the people who install: `ciwheels pip-config` (pip and uv settings for a registry's
simple index) and `ciwheels doctor` (is the index healthy, does the fall-through work, which of
our names could be taken on PyPI)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from ciwheels.core import secrets as credentials
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.secrets import redact_url, split_userinfo
from ciwheels.isa.families import family, host_arch, read_host
from ciwheels.net.registry import RegistryClient

if TYPE_CHECKING:
    from ciwheels.net.registry import RegistryClient


def config_url(url: str, what: str = "the registry's index URL") -> str:
    """A URL as it may be written into a pip or uv configuration: http(s), without credentials
    (they belong in ~/.netrc or a keyring, not in a config file printed to a terminal), and
    nothing that could end the line or the quoted string it stands in (a newline would add an
    `index-url` line of its own). Anything else is a CiwheelsError."""
    clean = split_userinfo(url)[0]
    if re.search(r"[\x00-\x20\x7f-\x9f\"'\\<>`]", clean):
        raise CiwheelsError(f"{what} {redact_url(url)!r} contains a space, a control character or a quote; "
                            "it cannot be written into a pip or uv configuration")
    parts = urllib.parse.urlsplit(clean)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CiwheelsError(f"{what} {redact_url(url)!r} is not an http(s) URL")
    return clean.rstrip("/") + "/"


def pip_config(name: str, index: str) -> str:
    """`index`: the registry's simple index URL (config_url: credentials in it are left out)."""
    index = config_url(index)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise CiwheelsError(f"the registry name {name!r} is not a plain name (letters, digits, . _ -)")
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


# -- this machine's ISA level ---------------------------------------------------------------------
@dataclass
class MachinePlan:
    """What one machine installs: its level, how its arch's levels are published, and the
    registries' simple indexes in the order to use them (its level's first, then lower ones)."""

    arch: str
    level: str
    how: str  # how the level was found
    mechanism: str  # variant | registry | plain
    indexes: list[tuple[str, str, str]]  # (registry name, level, simple index URL)


def machine_level(catalog, level: str | None = None, read=None) -> tuple[str, str, str]:
    """(arch, level, how): `level` (a name or alias of any arch's level) or the detected level of
    this machine (families.host_level: ld.so --help on x86-64, /proc/cpuinfo on aarch64/riscv64)."""

    if level:
        found = next((lv for lv in catalog.levels.values() if level == lv.name or level in lv.aliases), None)
        if found is None:
            raise CiwheelsError(f"unknown ISA level {level!r}", value=level, allowed=list(catalog.levels))
        return found.arch, found.name, "--level"
    arch = host_arch()
    if arch not in catalog.arches:
        raise CiwheelsError(f"this machine's arch {arch!r} has no ISA levels in the catalog", hint="pass --level")
    lv, how = family(arch, catalog).host_level(read or read_host)
    return arch, lv.name, how


def machine_plan(cells, registries: dict, catalog, arch: str, level: str, how: str) -> MachinePlan:
    """The plan for a machine of `arch` running `level`, from the matrix's cells."""
    mine = catalog.levels[level]
    built = {}
    for c in cells:
        if c.arch == arch:
            built.setdefault(c.isa, set()).add((c.publish_as, c.registry))
    usable = sorted((catalog.levels[n] for n in built if catalog.levels[n].rank <= mine.rank),
                    key=lambda lv: -lv.rank)
    mechanism = "plain"
    indexes: list[tuple[str, str, str]] = []
    for lv in usable:
        for publish_as, reg in sorted(built[lv.name]):
            if publish_as != "plain":
                mechanism = publish_as if mechanism == "plain" else mechanism
            if reg and reg in registries and all(reg != r for r, _, _ in indexes):
                indexes.append((reg, lv.name, config_url(registries[reg].simple, f"the index of registry {reg}")))
    return MachinePlan(arch, level, how, mechanism, indexes)


def machine_text(plan: MachinePlan) -> str:
    """pip and uv settings for this machine (Compute Canada's order: its level's index first)."""
    lines = [f"# this machine: {plan.arch} {plan.level} ({plan.how})"]
    if plan.mechanism == "variant":
        lines += ["# its level is published as wheel variants (PEP 825) beside the baseline: uv installs the",
                  "# variant for this CPU with the preview feature; pip installs the baseline wheel.",
                  "# uv: uv.toml (or UV_PREVIEW_FEATURES=wheel-variants)",
                  'preview-features = ["wheel-variants"]']
    if plan.mechanism == "registry" and plan.indexes:
        first, *rest = plan.indexes
        lines += ["# its level has a registry of its own: its index first, then the lower levels'.",
                  "# uv takes a package from the first index that has it (index-strategy first-index);",
                  "# pip does not keep an order between indexes, so prefer uv (or build tags).",
                  "[global]", f"index-url = {first[2]}"]
        if rest:
            lines.append("extra-index-url = " + "\n    ".join(url for _, _, url in rest))
        lines += [""] + [f'[[tool.uv.index]]\nname = "{name}"\nurl = "{url}"' + ("\ndefault = true" if
                         (name, lv, url) == plan.indexes[-1] else "") + '\nauthenticate = "always"\n'
                         for name, lv, url in plan.indexes]
    return "\n".join(lines).rstrip() + "\n"


def level_fallthrough_checks(registries: dict, cells, hosted: list[str], *, client_for=None) -> list[Check]:
    """A level registry that hosts nothing of a name the baseline registry hosts answers with
    GitLab's redirect to PyPI: a machine pointed at the level registry first then gets PyPI's
    package of that name, not ours (dependency confusion). A warning per such name."""

    levels = {}
    for c in cells:
        if c.registry and c.publish_as == "registry":
            levels.setdefault(c.registry, c.isa)
    baseline = {c.registry for c in cells if c.registry and c.publish_as == "plain"}
    checks = []
    for reg, isa in sorted(levels.items()):
        if reg in baseline or reg not in registries:
            continue
        client = (client_for or (lambda r: RegistryClient.anonymous(r.simple, retries=2, timeout=30)))(registries[reg])
        for name in hosted:
            try:
                resp = client.get(client.project_url(name))
            except CiwheelsError as e:
                checks.append(Check(f"{name} on level registry {reg}", False, str(e), warning=True))
                continue
            if resp.status_code in (301, 302, 303, 307, 308):
                checks.append(Check(f"{name} on level registry {reg}", False,
                                    f"{reg} ({isa}) hosts no {name} and falls through to "
                                    f"{resp.headers.get('Location', 'PyPI')}: a machine that reads {reg} first "
                                    f"installs whatever PyPI has under that name (dependency confusion); publish "
                                    f"{name} to {reg} too, or use wheel variants (variants: true)", warning=True))
    return checks
