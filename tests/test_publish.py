"""`ciwheels publish` against real servers on 127.0.0.1: pypiserver as the registry, falling
through to a second pypiserver that plays PyPI; faults through a loopback proxy; and GitLab's
own behaviour through a labelled stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servers import FaultProxy, GitLabPypiStandIn, PypiServer
from wheelfactory import make_wheel

pytestmark = pytest.mark.slow  # every test starts pypiserver or devpi-server and runs publish in a child process

SENTINEL = "SENTINEL-token-7f3a9c-never-print-me"


@pytest.fixture
def pypi(tmp_path):
    server = PypiServer(tmp_path / "pypi")
    make_wheel(server.packages, "only-on-pypi", "2.0")
    yield server
    server.close()


@pytest.fixture
def registry(tmp_path, pypi):
    server = PypiServer(tmp_path / "registry", auth=("ci", SENTINEL), fallback=f"{pypi.url}/simple/")
    yield server
    server.close()


def publish(folder: Path, url: str, *extra: str, password: str = SENTINEL, env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "CIWHEELS_"))}
    env.update({"CIWHEELS_USERNAME": "ci", "CIWHEELS_PASSWORD": password, **(env_extra or {})})
    args = [sys.executable, "-m", "ciwheels", "publish", str(folder), "--json", *extra]
    if url:
        args += ["--repository-url", url]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert SENTINEL not in proc.stdout + proc.stderr, "the token leaked into the output"
    return proc


def statuses(proc) -> dict[str, str]:
    return {r["file"]: r["status"] for r in json.loads(proc.stdout)}


def wheels(tmp_path: Path, n: int = 3) -> Path:
    dist = tmp_path / "dist"
    for i in range(n):
        make_wheel(dist, "ours-pkg", f"1.0.{i}")
    make_wheel(dist, "Ours.Other", "0.1")
    return dist


def test_publish_then_install_through_the_fall_through(tmp_path, registry):
    dist = wheels(tmp_path)
    proc = publish(dist, registry.url)
    assert proc.returncode == 0, proc.stderr
    assert set(statuses(proc).values()) == {"uploaded"} and len(statuses(proc)) == 4
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(target),
                          "--index-url", f"{registry.url}/simple/", "--trusted-host", "127.0.0.1",
                          "ours-pkg==1.0.2", "ours-other", "only-on-pypi"], capture_output=True, text=True,
                         timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (target / "ours_pkg.py").read_text().startswith('VERSION = "1.0.2"')
    assert (target / "only_on_pypi.py").exists()  # served by "PyPI" through the redirect


def test_rerun_uploads_nothing_and_conflicts_fail(tmp_path, registry):
    dist = wheels(tmp_path)
    assert publish(dist, registry.url).returncode == 0
    again = publish(dist, registry.url)
    assert again.returncode == 0 and set(statuses(again).values()) == {"skipped"}
    assert "0         4        0" in again.stderr
    other = tmp_path / "other"
    make_wheel(other, "ours-pkg", "1.0.0", payload="CHANGED = True\n")
    make_wheel(other, "ours-pkg", "9.9.9")
    proc = publish(other, registry.url)
    assert proc.returncode == 1
    st = statuses(proc)
    assert st == {"ours_pkg-1.0.0-py3-none-any.whl": "failed", "ours_pkg-9.9.9-py3-none-any.whl": "uploaded"}
    assert "already published with other contents" in proc.stderr
    served = (registry.packages / "ours_pkg-1.0.0-py3-none-any.whl").read_bytes()
    assert served == (dist / "ours_pkg-1.0.0-py3-none-any.whl").read_bytes()


def test_wrong_token_fails_without_leaking(tmp_path, registry):
    dist = wheels(tmp_path, 1)
    proc = publish(dist, registry.url, password=SENTINEL + "-wrong")
    assert proc.returncode == 1
    assert SENTINEL + "-wrong" not in proc.stdout + proc.stderr
    assert "refused our credentials" in proc.stderr


def test_faults_lose_nothing_and_publish_each_wheel_once(tmp_path, registry):
    dist = tmp_path / "dist"
    for i in range(8):
        make_wheel(dist, "faulty", f"0.{i}")
    proxy = FaultProxy(registry.url, ["reset", "500", "stored-then-reset", "429", "stall", "reset", "500"], stall=4)
    try:
        proc = publish(dist, proxy.url, "--timeout", "2", "--retries", "8", "--jobs", "2")
    finally:
        proxy.close()
    assert proc.returncode == 0, proc.stderr
    assert proxy.faults == [] and proxy.seen[:7] == ["reset", "500", "stored-then-reset", "429", "stall", "reset",
                                                     "500"], proxy.seen
    assert set(statuses(proc).values()) == {"uploaded"}
    hosted = sorted(p.name for p in registry.packages.glob("faulty-*.whl"))
    assert hosted == sorted(p.name for p in dist.glob("*.whl"))
    for p in dist.glob("*.whl"):
        assert (registry.packages / p.name).read_bytes() == p.read_bytes()
    again = publish(dist, registry.url)
    assert set(statuses(again).values()) == {"skipped"}


def test_gitlab_job_token_layout_and_duplicate_message(tmp_path, pypi):
    """Against the labelled GitLab stand-in, with only GitLab CI's own variables set."""
    gitlab = GitLabPypiStandIn("42", SENTINEL, pypi.url)
    try:
        dist = wheels(tmp_path, 2)
        env = {"CI_API_V4_URL": gitlab.api, "CI_PROJECT_ID": "42", "CI_JOB_TOKEN": SENTINEL}
        proc = publish(dist, "", env_extra=env, password="")
        assert proc.returncode == 0, proc.stderr
        assert "packages/pypi (as gitlab-ci-token, from the GitLab project's package registry, credentials from " \
               "GitLab CI job token)" in proc.stderr
        assert sorted(gitlab.uploads) == sorted(p.name for p in dist.glob("*.whl"))
        assert {n for n, _ in gitlab.files.values()} == {"ours-pkg", "ours-other"}  # normalised names
        # a race: the file arrives between our index read and our upload -> 400 "taken" -> re-check
        make_wheel(tmp_path / "late", "late-pkg", "1.0")
        late = tmp_path / "late" / "late_pkg-1.0-py3-none-any.whl"
        gitlab.files[late.name] = ("late-pkg", late.read_bytes())
        import ciwheels.dist.publish as pub

        target = pub.Target(f"{gitlab.api}/projects/42/packages/pypi", "gitlab-ci-token", SENTINEL, "test")
        p = pub.Publisher(target)
        status, detail, _ = p.upload(late, "x", pub.wheel_metadata(late))
        assert status == "duplicate"
        assert p.index("late-pkg")[late.name] is not None
        again = publish(dist, "", env_extra=env, password="")
        assert set(statuses(again).values()) == {"skipped"}
    finally:
        gitlab.close()


def test_registries_per_isa_level_from_the_matrix(tmp_path, pypi):
    """Wheel tags cannot tell ISA levels apart: each level goes to its own registry."""
    import hashlib

    from conftest import run_ciwheels

    base = PypiServer(tmp_path / "base", auth=("ci", SENTINEL), fallback=f"{pypi.url}/simple/")
    v3 = PypiServer(tmp_path / "v3", auth=("ci", SENTINEL), fallback=f"{pypi.url}/simple/")
    try:
        project = tmp_path / "proj"
        (project / "matrix").mkdir(parents=True)
        (project / "matrix" / "wheels.yaml").write_text(
            "python: [cp312]\narch: [x86_64]\nisa: {x86_64: [x86-64, x86-64-v3]}\nregistries:\n"
            f"  fast: {{url: '{v3.url}', select: {{isa: x86-64-v3}}}}\n  generic: {{url: '{base.url}'}}\n")
        cells = {c["isa"]: c for c in json.loads(run_ciwheels("matrix", "--project", str(project), "--json",
                                                              check=True).stdout)}
        assert cells["x86-64-v3"]["registry"] == "fast" and cells["x86-64"]["registry"] == "generic"
        # what two build jobs leave behind: same wheel name, one per level, with their reports
        for isa, payload in (("x86-64", ""), ("x86-64-v3", "FAST = True\n")):
            d = tmp_path / "wh" / cells[isa]["id"]
            w = make_wheel(d, "lvl", "1.0", tag="cp312-cp312-manylinux_2_28_x86_64", payload=payload)
            (d / "build-report.json").write_text(json.dumps({
                "cell": cells[isa]["id"], "status": "ok", "isa": isa, "registry": cells[isa]["registry"],
                "wheels": [{"file": w.name, "sha256": hashlib.sha256(w.read_bytes()).hexdigest()}]}))
        # one gather: the two same-named wheels go to one folder per registry
        out = tmp_path / "dist"
        run_ciwheels("gather", str(tmp_path / "wh"), "--out", str(out), check=True)
        manifest = json.loads((out / "manifest.json").read_text())["wheels"]
        assert sorted((w["registry"], w["path"]) for w in manifest) == [
            ("fast", "fast/lvl-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
            ("generic", "generic/lvl-1.0-cp312-cp312-manylinux_2_28_x86_64.whl")]
        dry = publish(out, "", "--project", str(project), "--dry-run")
        assert f"to {v3.url} (registry 'fast'" in dry.stdout and f"to {base.url} (registry 'generic'" in dry.stdout
        # two hosts (ports): CIWHEELS_PASSWORD is sent to neither (#18); each registry's own variables are
        refused = publish(out, "", "--project", str(project))
        assert refused.returncode != 0 and "CIWHEELS_PASSWORD_FAST" in refused.stderr
        per_registry = {"CIWHEELS_USERNAME_FAST": "ci", "CIWHEELS_PASSWORD_FAST": SENTINEL,
                        "CIWHEELS_USERNAME_GENERIC": "ci", "CIWHEELS_PASSWORD_GENERIC": SENTINEL}
        proc = publish(out, "", "--project", str(project), env_extra=per_registry)
        assert proc.returncode == 0, proc.stderr
        assert set(statuses(proc).values()) == {"uploaded"} and len(json.loads(proc.stdout)) == 2
        only = publish(out, "", "--project", str(project), "--registry", "fast", env_extra=per_registry)
        assert [r["status"] for r in json.loads(only.stdout)] == ["skipped"]
        name = "lvl-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"
        assert b"FAST" in __import__("zipfile").ZipFile(v3.packages / name).read("lvl.py")
        assert b"FAST" not in __import__("zipfile").ZipFile(base.packages / name).read("lvl.py")
        proc = publish(out, "", "--project", str(project), "--registry", "nope")
        assert proc.returncode == 2 and "no registry 'nope' in the matrix" in proc.stderr
    finally:
        base.close()
        v3.close()


def test_pip_config_installs_through_the_registry(tmp_path, registry):
    import tomllib

    from conftest import run_ciwheels

    dist = wheels(tmp_path, 1)
    assert publish(dist, registry.url).returncode == 0
    text = run_ciwheels("pip-config", "--repository-url", registry.url, check=True).stdout
    ini = text.split("# uv:")[0]
    conf = tmp_path / "pip.conf"
    conf.write_text(ini + "trusted-host = 127.0.0.1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = str(conf)  # the printed settings, and nothing else, point pip here
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", str(tmp_path / "site"),
                          "ours-pkg", "only-on-pypi"], capture_output=True, text=True, env=env, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (tmp_path / "site" / "ours_pkg.py").exists() and (tmp_path / "site" / "only_on_pypi.py").exists()
    uv_toml = "\n".join(line for line in text.split("# uv:")[1].splitlines()[1:] if not line.startswith("#"))
    index = tomllib.loads(uv_toml)["tool"]["uv"]["index"][0]
    assert index == {"name": "ciwheels", "url": f"{registry.url}/simple/", "default": True,
                     "authenticate": "always"}
    assert f"index-url = {registry.url}/simple/" in ini


def test_doctor(tmp_path, registry, pypi):
    from conftest import run_ciwheels

    dist = wheels(tmp_path, 1)
    assert publish(dist, registry.url).returncode == 0
    proc = run_ciwheels("doctor", "--repository-url", registry.url, "--dist", str(dist), "--unhosted",
                        "only-on-pypi", "--pypi", f"{pypi.url}/simple", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["index answers"]["ok"]
    assert checks["ours-pkg is served by the registry"]["ok"]
    assert checks["only-on-pypi resolves through the fall-through"]["ok"]
    confusion = checks["ours-pkg exists on PyPI"]
    assert confusion["warning"] and "dependency confusion" in confusion["detail"]
    no_fallback = PypiServer(tmp_path / "nofb", auth=("ci", SENTINEL))
    try:
        proc = run_ciwheels("doctor", "--repository-url", no_fallback.url, "--unhosted", "only-on-pypi",
                            "--pypi", f"{pypi.url}/simple")
        assert proc.returncode == 1 and "FAIL  only-on-pypi resolves through the fall-through" in proc.stdout
    finally:
        no_fallback.close()


def test_devpi_is_a_second_real_target(tmp_path):
    from servers import DevpiServer

    server = DevpiServer(tmp_path, SENTINEL)
    try:
        dist = wheels(tmp_path, 2)
        env = {"CIWHEELS_USERNAME": "ci"}
        proc = publish(dist, server.url, "--index-url", server.index, env_extra=env)
        assert proc.returncode == 0, proc.stderr
        assert set(statuses(proc).values()) == {"uploaded"}
        again = publish(dist, server.url, "--index-url", server.index, env_extra=env)
        assert set(statuses(again).values()) == {"skipped"}
        other = tmp_path / "other"
        make_wheel(other, "ours-pkg", "1.0.0", payload="CHANGED = True\n")
        bad = publish(other, server.url, "--index-url", server.index, env_extra=env)
        assert bad.returncode == 1 and "already published with other contents" in bad.stderr
    finally:
        server.close()


def test_credentials_from_a_keyring(tmp_path, registry):
    """With only the user name set, the password comes from the keyring (a real file backend)."""
    dist = wheels(tmp_path, 1)
    ring = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring", "XDG_DATA_HOME": str(tmp_path / "xdg")}
    subprocess.run([sys.executable, "-c", f"import keyring; keyring.set_password({registry.url!r}, 'ci', "
                                          f"{SENTINEL!r})"], env={**os.environ, **ring}, check=True)
    proc = publish(dist, registry.url, password="", env_extra=ring)
    assert proc.returncode == 0, proc.stderr
    assert "(as ci, from --repository-url, credentials from keyring)" in proc.stderr
    assert set(statuses(proc).values()) == {"uploaded"}
    empty = {**ring, "XDG_DATA_HOME": str(tmp_path / "none")}
    proc = publish(dist, registry.url, password="", env_extra=empty)
    assert proc.returncode == 2 and "or store them in a keyring" in proc.stderr


def test_html_grid_shows_publish_status(tmp_path, registry):
    from conftest import run_ciwheels

    project = tmp_path / "proj"
    (project / "matrix").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "Ours.Pkg"\nversion = "1.0.0"\n')
    (project / "matrix" / "wheels.yaml").write_text(
        f"python: [cp312, cp313]\narch: [x86_64]\nregistries:\n  main: {{url: '{registry.url}'}}\n")
    dist = tmp_path / "dist"
    make_wheel(dist, "ours-pkg", "1.0.0", tag="cp312-cp312-manylinux_2_28_x86_64")
    make_wheel(dist, "ours-pkg", "0.9.0", tag="cp313-cp313-manylinux_2_28_x86_64")  # an older version only
    assert publish(dist, registry.url).returncode == 0
    page = run_ciwheels("matrix", "--project", str(project), "--grid", "--format", "html", "--status",
                        check=True).stdout
    assert 'title="x86-64: published">v1 ✓</span>' in page
    assert 'title="x86-64: missing">v1 ✗</span>' in page
    assert "Publish status: ✓ published 1, ✗ missing 1" in page
