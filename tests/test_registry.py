"""registry.RegistryClient against real servers on 127.0.0.1 (pypiserver, the fault proxy)."""

from __future__ import annotations

import hashlib

import pytest

from servers import FaultProxy, PypiServer, free_port
from wheelfactory import make_wheel

from ciwheels.errors import CiwheelsError
from ciwheels.publish import wheel_metadata
from ciwheels.registry import RegistryClient, Target

SECRET = "SECRET-registry-token-3b9d"


@pytest.fixture
def servers(tmp_path):
    pypi = PypiServer(tmp_path / "pypi")
    make_wheel(pypi.packages, "only-on-pypi", "2.0")
    registry = PypiServer(tmp_path / "registry", auth=("ci", SECRET), fallback=f"{pypi.url}/simple/")
    yield registry, pypi
    registry.close()
    pypi.close()


def test_index_reads_without_redirects_and_get_can_follow_them(tmp_path, servers):
    registry, _ = servers
    client = RegistryClient(Target(registry.url, "ci", SECRET, "test"), retries=2, backoff=0)
    wheel = make_wheel(tmp_path / "w", "Ours.Pkg", "1.0")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert client.upload(wheel, digest, wheel_metadata(wheel))[0] == "uploaded"
    assert client.index("OURS_pkg") == {wheel.name: digest}  # any spelling of the name
    assert client.index("only-on-pypi") == {}  # the registry redirects: not hosted here
    followed = client.get(client.project_url("only-on-pypi"), follow_redirects=True)
    assert followed.status_code == 200 and "only_on_pypi-2.0" in followed.text and followed.history


def test_retries_are_bounded_and_messages_carry_no_token(tmp_path, servers):
    registry, _ = servers
    proxy = FaultProxy(registry.url, ["500", "500", "500"])
    try:
        wheel = make_wheel(tmp_path / "w", "pkg", "1.0")
        client = RegistryClient(Target(proxy.url, "ci", SECRET, "test"), retries=2, backoff=0)
        status, detail, attempts = client.upload(wheel, "00", wheel_metadata(wheel))
        assert (status, attempts) == ("failed", 2) and "gave up after 2 attempts (HTTP 500)" in detail
        assert proxy.seen == ["500", "500"]
    finally:
        proxy.close()
    dead = RegistryClient(Target(f"http://ci:{SECRET}@127.0.0.1:{free_port()}", "ci", SECRET, "test"),
                          retries=2, backoff=0, timeout=2)
    with pytest.raises(CiwheelsError) as e:
        dead.index("pkg")
    assert "gave up after 2 attempts" in str(e.value) and SECRET not in str(e.value)
