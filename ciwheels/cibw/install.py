"""The cibuildwheel a build runs: the matrix's spec (an upstream pin, a patched distribution as a
wheel path/URL or VCS URL) plus an optional series of patches kept in the project, installed
into its own isolated, cached virtual environment.

Several builds on one machine (a shell runner with concurrent jobs, two local builds) share the
cache: one installs while the others wait on a file lock (bounded), and the environment is
published whole. It is built in a folder of its own (a virtual environment cannot be moved: its
scripts name their interpreter by path) and CACHE/cibuildwheel/<hash> becomes a symbolic link
to it by an atomic rename, so no process ever sees, runs or deletes a half-made one."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import subprocess
import time
import venv
from pathlib import Path

from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import get_logger
from ciwheels.core.resources import cache_dir

log = get_logger("cibw")

# how long a build waits for another process installing the same cibuildwheel (pip install
# plus patches take seconds to a few minutes)
LOCK_TIMEOUT = float(os.environ.get("CIWHEELS_CIBW_LOCK_TIMEOUT") or 900)


def _key(spec: str, patches: list[Path]) -> str:
    h = hashlib.sha256(spec.encode())
    for p in patches:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _ready(home: Path) -> bool:
    return (home / ".complete").exists() and (home / "bin" / "cibuildwheel").exists()


class _Lock:
    """An exclusive flock on `path`, waited for at most `timeout` seconds. The kernel releases it
    when its holder exits, however it exits: no stale lock survives a killed build."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout, self.fd = path, timeout, -1

    def __enter__(self) -> "_Lock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        waited = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(self.fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(self.fd)
                raise CiwheelsError(f"another ciwheels process has been installing cibuildwheel for {self.timeout:.0f} s "
                                    f"(it holds the lock {self.path})",
                                    hint="wait for it to finish, or end it; CIWHEELS_CIBW_LOCK_TIMEOUT sets the wait")
            if not waited:
                log.info("waiting for another process installing cibuildwheel (%s)", self.path)
                waited = True
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def ensure_cibuildwheel(spec: str, patches: tuple[str, ...], base: Path) -> Path:
    """Path of a cibuildwheel executable for spec + patches (relative to `base`, the matrix
    file's folder), installing it once into CACHE/cibuildwheel/<hash> (safe for concurrent
    processes: see the module's docstring)."""
    patch_files = []
    for p in patches:
        path = (base / p).resolve()
        if not path.is_file():
            raise CiwheelsError(f"cibuildwheel patch not found: {path}")
        patch_files.append(path)
    root = cache_dir() / "cibuildwheel"
    key = _key(spec, patch_files)
    home = root / key
    exe = home / "bin" / "cibuildwheel"
    if _ready(home):
        return exe
    root.mkdir(parents=True, exist_ok=True)
    with _Lock(root / f"{key}.lock", LOCK_TIMEOUT):
        if _ready(home):  # another process installed it while this one waited
            return exe
        # what a killed install left: not published (or an old cache's incomplete folder)
        for stale in root.glob(f".{key}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        if home.is_symlink() or home.is_file():
            home.unlink()
        elif home.exists():
            shutil.rmtree(home)
        build = root / f".{key}.{secrets.token_hex(4)}"
        try:
            _install(spec, patch_files, build)
            link = root / f".{key}.link-{secrets.token_hex(4)}"
            link.symlink_to(build.name)
            os.replace(link, home)  # atomic: home is absent or a complete environment
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    return exe


def _install(spec: str, patch_files: list[Path], home: Path) -> None:
    log.info("installing %s into %s%s", spec, home, f" with {len(patch_files)} patch(es)" if patch_files else "")
    venv.EnvBuilder(with_pip=True).create(home)
    py = home / "bin" / "python"
    try:
        proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", spec], capture_output=True, text=True,
                              timeout=LOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CiwheelsError(f"installing cibuildwheel from {spec!r} took more than {LOCK_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise CiwheelsError(f"cannot install cibuildwheel from {spec!r}:\n{tail}")
    version = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('cibuildwheel'))"],
                             capture_output=True, text=True).stdout.strip()
    site = Path(subprocess.run([str(py), "-c", "import cibuildwheel, os; print(os.path.dirname(os.path.dirname("
                                "cibuildwheel.__file__)))"], capture_output=True, text=True, check=True).stdout.strip())
    for patch in patch_files:
        check = subprocess.run(["patch", "--dry-run", "-p1", "-d", str(site), "-i", str(patch)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise CiwheelsError(f"the cibuildwheel patch {patch.name} does not apply to cibuildwheel {version} "
                                f"({spec}): {check.stdout.strip().splitlines()[-1] if check.stdout.strip() else ''}",
                                hint="rebase the patch on that version or pin the version it was written for")
        subprocess.run(["patch", "--quiet", "-p1", "-d", str(site), "-i", str(patch)], check=True)
        log.info("applied %s to cibuildwheel %s", patch.name, version)
    (home / ".complete").write_text(f"{spec}\n{version}\n")

