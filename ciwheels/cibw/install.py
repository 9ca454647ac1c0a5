"""The cibuildwheel a build runs: the matrix's spec (an upstream pin, a patched distribution as a
wheel path/URL or VCS URL) plus an optional series of patches kept in the project, installed
into its own isolated, cached virtual environment."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import venv
from pathlib import Path

from ciwheels.core.errors import CiwheelsError
from ciwheels.core.log import get_logger
from ciwheels.core.resources import cache_dir

log = get_logger("cibw")


def _key(spec: str, patches: list[Path]) -> str:
    h = hashlib.sha256(spec.encode())
    for p in patches:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def ensure_cibuildwheel(spec: str, patches: tuple[str, ...], base: Path) -> Path:
    """Path of a cibuildwheel executable for spec + patches (relative to `base`, the matrix
    file's folder), installing it once into CACHE/cibuildwheel/<hash>."""
    patch_files = []
    for p in patches:
        path = (base / p).resolve()
        if not path.is_file():
            raise CiwheelsError(f"cibuildwheel patch not found: {path}")
        patch_files.append(path)
    home = cache_dir() / "cibuildwheel" / _key(spec, patch_files)
    exe = home / "bin" / "cibuildwheel"
    if (home / ".complete").exists() and exe.exists():
        return exe
    shutil.rmtree(home, ignore_errors=True)
    log.info("installing %s into %s%s", spec, home, f" with {len(patch_files)} patch(es)" if patch_files else "")
    venv.EnvBuilder(with_pip=True).create(home)
    py = home / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", spec], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
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
            shutil.rmtree(home, ignore_errors=True)
            raise CiwheelsError(f"the cibuildwheel patch {patch.name} does not apply to cibuildwheel {version} "
                                f"({spec}): {check.stdout.strip().splitlines()[-1] if check.stdout.strip() else ''}",
                                hint="rebase the patch on that version or pin the version it was written for")
        subprocess.run(["patch", "--quiet", "-p1", "-d", str(site), "-i", str(patch)], check=True)
        log.info("applied %s to cibuildwheel %s", patch.name, version)
    (home / ".complete").write_text(f"{spec}\n{version}\n")
    return exe

