"""registry.RegistryClient against real servers on 127.0.0.1 (pypiserver, the fault proxy)."""

from __future__ import annotations

import hashlib

import pytest

from servers import FaultProxy, PypiServer, free_port
from wheelfactory import make_wheel

from ciwheels.core.errors import CiwheelsError
from ciwheels.dist.publish import wheel_metadata
from ciwheels.net.registry import RegistryClient, Target

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


def test_the_machines_ca_bundle_is_trusted_without_reading_netrc(tmp_path, monkeypatch):
    """Sessions ignore the environment (no ~/.netrc credentials), but must still trust the CA
    bundle the machine names (REQUESTS_CA_BUNDLE & co.): behind a TLS-inspecting proxy, an
    index read failed with CERTIFICATE_VERIFY_FAILED in a fresh virtualenv (whose certifi
    lacks the proxy's CA). A real HTTPS server on 127.0.0.1 with a certificate made here."""
    import ssl
    import subprocess
    from http.server import BaseHTTPRequestHandler

    from servers import serve

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'<a href="/f/demo-1.0.tar.gz#sha256=' + b"0" * 64 + b'">demo-1.0.tar.gz</a>'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server, url = serve(Page)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    index = url.replace("http://", "https://") + "/simple"
    try:
        for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
            monkeypatch.delenv(var, raising=False)
        with pytest.raises(CiwheelsError, match="CERTIFICATE_VERIFY_FAILED"):
            RegistryClient.anonymous(index, retries=1, timeout=10).index("demo")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        assert RegistryClient.anonymous(index, retries=1, timeout=10).index("demo") == {"demo-1.0.tar.gz": "0" * 64}
    finally:
        server.shutdown()
