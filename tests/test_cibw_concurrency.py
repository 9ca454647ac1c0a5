"""Issue #21, defect 3: builds on one machine share the cached cibuildwheel. Two real processes
install the same spec at the same moment (both wait at a barrier, then call
ensure_cibuildwheel): both succeed, one installs and the other waits for it, and the
environment both get runs. Before the lock, the second process deleted the folder the first
was installing into, and one of them died with a traceback."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ciwheels.cibw import install
from ciwheels.core.errors import CiwheelsError

REPO = Path(__file__).resolve().parent.parent
SPEC = "cibuildwheel==4.3.3"

CHILD = """
import json, logging, os, sys, time
from pathlib import Path
from ciwheels.cibw.install import ensure_cibuildwheel
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
go = Path(sys.argv[1])
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
exe = ensure_cibuildwheel(sys.argv[2], (), Path("."))
print(json.dumps({"exe": str(exe)}))
"""


def _start(tmp_path: Path, cache: Path, go: Path, spec: str = SPEC) -> subprocess.Popen:
    env = {**os.environ, "CIWHEELS_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(go), spec], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # two real installs of cibuildwheel into a virtual environment
def test_two_concurrent_builds_both_get_a_working_cibuildwheel(tmp_path):
    cache, go = tmp_path / "cache", tmp_path / "go"
    procs = [_start(tmp_path, cache, go) for _ in range(2)]
    time.sleep(1.0)  # both interpreters up and waiting at the barrier
    go.touch()
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    exes = {json.loads(out)["exe"] for out, _ in results}
    assert len(exes) == 1
    exe = Path(exes.pop())
    logs = [err for _, err in results]
    assert sum("installing cibuildwheel==4.3.3" in e for e in logs) == 1, logs  # one installed, one waited
    assert subprocess.run([str(exe), "--help"], capture_output=True, timeout=60).returncode == 0
    version = subprocess.run([str(exe.parent / "python"), "-c", "import cibuildwheel; print(cibuildwheel.__version__)"],
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == "4.3.3"
    # published whole: the cache entry is a link to one complete environment, nothing else left
    home = cache / "cibuildwheel" / exe.parent.parent.name
    assert home.is_symlink() and (home / ".complete").is_file()
    assert sorted(p.name for p in (cache / "cibuildwheel").iterdir()) == sorted(
        [home.name, f"{home.name}.lock", os.readlink(home)])


@pytest.mark.slow  # a real install, killed, then a real install
def test_a_killed_install_leaves_nothing_a_build_would_use(tmp_path):
    cache, go = tmp_path / "cache", tmp_path / "go"
    go.touch()
    p = _start(tmp_path, cache, go)
    root = cache / "cibuildwheel"
    deadline = time.monotonic() + 60
    while not (root.is_dir() and any(x.name.startswith(".") for x in root.iterdir())):
        assert time.monotonic() < deadline and p.poll() is None, "the install did not start"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert not [x for x in root.iterdir() if not x.name.startswith(".") and not x.name.endswith(".lock")]
    p = _start(tmp_path, cache, go)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    exe = Path(json.loads(out)["exe"])
    assert exe.exists() and [x.name for x in root.iterdir() if x.name.startswith(".")] == [os.readlink(exe.parent.parent)]


def test_the_wait_for_another_install_is_bounded(tmp_path, monkeypatch):
    """Another process holds the lock (here: this test): the build waits LOCK_TIMEOUT, then says
    who holds what, as a CiwheelsError (exit 2), not a hang."""
    monkeypatch.setenv("CIWHEELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(install, "LOCK_TIMEOUT", 0.6)
    root = tmp_path / "cache" / "cibuildwheel"
    root.mkdir(parents=True)
    lock = root / f"{install._key(SPEC, [])}.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        start = time.monotonic()
        with pytest.raises(CiwheelsError, match="another ciwheels process has been installing cibuildwheel"):
            install.ensure_cibuildwheel(SPEC, (), tmp_path)
        assert 0.5 < time.monotonic() - start < 5
    assert [x.name for x in root.iterdir()] == [lock.name]  # nothing installed, nothing removed
