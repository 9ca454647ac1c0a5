"""Which credentials a request to a registry carries: one rule, per host, for every command.

pip keys credentials by host (URL, index URL, netrc, keyring) and never sends one host's to
another; so does this. For a registry URL, in order:

1. the URL's own userinfo (`https://user:TOKEN@host/...`), and else its index URL's when that
   is on the same host;
2. `CIWHEELS_USERNAME_<NAME>` / `CIWHEELS_PASSWORD_<NAME>` for the matrix's registry NAME
   (upper case, other characters than letters and digits as `_`: `fast-v3` -> `FAST_V3`), sent
   to that registry's host only;
3. `CIWHEELS_USERNAME` / `CIWHEELS_PASSWORD`, only for the host they are for
   (`environment_host`): the host of `--repository-url` where a command has it, else of
   `CIWHEELS_REPOSITORY_URL` when it is set, else the one host of all the matrix's registries
   when they share one; never any other host;
4. in GitLab CI, the job token for URLs under `CI_API_V4_URL` (the instance's own registries);
5. a keyring entry for the URL (when the `keyring` package is installed, as twine does).

Nothing found is anonymous (reads) or an error (uploads: `require=True`)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ciwheels.core import secrets
from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import get_logger
from ciwheels.core.urls import host_of

log = get_logger("auth")
ENV_URL, ENV_INDEX = "CIWHEELS_REPOSITORY_URL", "CIWHEELS_INDEX"
ENV_USER, ENV_PASSWORD = "CIWHEELS_USERNAME", "CIWHEELS_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    source: str = "none"  # where they came from, for messages

    def __bool__(self) -> bool:
        return bool(self.username or self.password)


def environment_host(env: Mapping[str, str], registry_urls: Iterable[str] = ()) -> str | None:
    """The one host CIWHEELS_USERNAME/CIWHEELS_PASSWORD are sent to (see the module)."""
    if env.get(ENV_URL):
        return host_of(env[ENV_URL])
    hosts = {host_of(u) for u in registry_urls if u}
    return hosts.pop() if len(hosts) == 1 else None


def job_token_for(url: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """In GitLab CI, (user, password) of the job token for a URL of the instance's own API
    (its package registries), else None."""
    api = (env.get("CI_API_V4_URL") or "").rstrip("/")
    if env.get("CI_JOB_TOKEN") and api and (url.rstrip("/") == api or url.startswith(api + "/")) \
            and host_of(url) == host_of(api):
        return "gitlab-ci-token", env["CI_JOB_TOKEN"]
    return None


def _keyring(url: str, user: str) -> tuple[str, str]:
    try:
        import keyring
    except ImportError:
        return user, ""
    try:
        cred = keyring.get_credential(url, user or None)
    except Exception:  # a keyring backend may fail in many ways; treat as "no credentials"
        return user, ""
    return (cred.username, cred.password) if cred else (user, "")


def registry_variables(name: str) -> tuple[str, str]:
    """The environment variables of one registry of the matrix: (user, password)."""
    suffix = re.sub(r"[^A-Z0-9]", "_", name.upper())
    return f"{ENV_USER}_{suffix}", f"{ENV_PASSWORD}_{suffix}"


def credentials_for(url: str, *, index: str = "", env: Mapping[str, str] | None = None,
                    registry_urls: Iterable[str] = (), registry: str = "", env_host: str | None = None,
                    require: bool = False, what: str = "") -> Credentials:
    """The credentials a request to `url` (a registry's upload URL, or an index) carries.
    `registry_urls`: every registry URL of the matrix (for `environment_host`); `registry`: the
    matrix's name for it; `env_host`: the host the environment's credentials are for, when the
    command names it (--repository-url)."""
    env = os.environ if env is None else env
    host = host_of(url)
    _, user, password = secrets.split_userinfo(url)
    if user or password:
        return Credentials(user or "__token__", password, f"{what or 'the URL'} (credentials in the URL)")
    if index and host_of(index) == host:
        _, user, password = secrets.split_userinfo(index)
        if user or password:
            return Credentials(user or "__token__", password, "the index URL (credentials in it)")
    if registry:
        user_var, password_var = registry_variables(registry)
        if env.get(password_var):
            secrets.remember(env[password_var], env.get(user_var, ""))
            return Credentials(env.get(user_var) or "__token__", env[password_var], f"{user_var}/{password_var}")
    if env.get(ENV_PASSWORD):
        secrets.remember(env[ENV_PASSWORD], env.get(ENV_USER, ""))
        scope = env_host or environment_host(env, [*registry_urls, url] if not env.get(ENV_URL) else ())
        if scope == host:
            return Credentials(env.get(ENV_USER) or "__token__", env[ENV_PASSWORD], f"{ENV_USER}/{ENV_PASSWORD}")
    token = job_token_for(url, env)
    if token:
        secrets.remember(token[1], token[0])
        return Credentials(*token, "GitLab CI job token")
    bare = secrets.split_userinfo(url)[0]
    user, password = _keyring(bare, env.get(ENV_USER, ""))
    if password:
        secrets.remember(password, user)
        return Credentials(user or "__token__", password, "keyring")
    if require:
        others = "" if not env.get(ENV_PASSWORD) else (
            f" ({ENV_PASSWORD} is set, but for {environment_host(env, registry_urls) or 'no single host'}: "
            f"environment credentials are sent only to the host of {ENV_URL}, or to the one host of all "
            "the matrix's registries)")
        own = " or {}/{}".format(*registry_variables(registry)) if registry else ""
        raise CiwheelsError(f"no credentials for the registry {secrets.redact_url(url)}{others}",
                            hint=f"set {ENV_USER} and {ENV_PASSWORD} (with {ENV_URL} naming this registry){own}, "
                                 "or store them in a keyring for its URL")
    return Credentials()


def gitlab_project_registry(env: Mapping[str, str]) -> str:
    """In GitLab CI, the upload URL of the project's own PyPI registry; else ""."""
    if env.get("CI_API_V4_URL") and env.get("CI_PROJECT_ID"):
        return f"{env['CI_API_V4_URL'].rstrip('/')}/projects/{env['CI_PROJECT_ID']}/packages/pypi"
    return ""
