"""Real PyPI-compatible servers on 127.0.0.1 for the publish tests, and the helpers around
them: pypiserver (a "registry" with upload auth whose fallback points at a second pypiserver
playing PyPI), a fault-injecting loopback proxy, and a STAND-IN for GitLab's PyPI API (the
one thing no real server here reproduces: its URL layout, 201, its 400 duplicate message and
Basic auth with the job token)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """A threaded HTTP server for `handler` on a free loopback port, serving in the background:
    (server, its base URL). `server.shutdown()` stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class PypiServer:
    def __init__(self, root: Path, *, auth: tuple[str, str] | None = None, fallback: str | None = None,
                 scheme: str | None = None, private: bool = False):
        """`auth`: the one account uploads need; `private`: reads (the index, downloads) need it
        too, as a private project's registry does."""
        self.packages = root / "packages"
        self.packages.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # paste: a threaded server (pypiserver falls back to the single-threaded wsgiref without it)
        cmd = [sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(self.port), "--server", "paste"]
        if auth:
            from passlib.apache import HtpasswdFile

            ht = HtpasswdFile(str(root / "htpasswd"), new=True, **({"default_scheme": scheme} if scheme else {}))
            ht.set_password(*auth)
            ht.save()
            cmd += ["-a", "update,download,list" if private else "update", "-P", str(root / "htpasswd")]
        else:
            cmd += ["-a", ".", "-P", "."]
        cmd += ["--fallback-url", fallback] if fallback else ["--disable-fallback"]
        cmd.append(str(self.packages))
        self.log = open(root / "server.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(self.url + "/health")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


class FaultProxy:
    """Forwards HTTP to `upstream` (after `latency` seconds, a remote registry's round trip), but
    the first POSTs meet the faults in `faults`, in order:
    'reset' (connection dropped mid-upload), 'stored-then-reset' (forwarded, answer lost),
    '500', '429' (Retry-After: 1), 'stall' (no answer for `stall` seconds)."""

    def __init__(self, upstream: str, faults: list[str], stall: float = 6.0, latency: float = 0.0):
        self.upstream = upstream
        self.faults = list(faults)
        self.seen: list[str] = []
        self.authorizations: list[str] = []  # the Authorization header of every request ("" when none)
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self, body: bytes | None):
                req = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() not in ("host", "connection")})

                class NoRedirect(urllib.request.HTTPRedirectHandler):
                    def redirect_request(self, *a, **k):
                        return None

                opener = urllib.request.build_opener(NoRedirect)
                try:
                    resp = opener.open(req, timeout=30)
                    status, headers, data = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as e:
                    status, headers, data = e.code, e.headers, e.read()
                return status, headers, data

            def _reply(self, status, headers, data):
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _drop(self):
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def do_GET(self):
                proxy.authorizations.append(self.headers.get("Authorization", ""))
                time.sleep(latency)
                self._reply(*self._forward(None))

            def do_POST(self):
                proxy.authorizations.append(self.headers.get("Authorization", ""))
                time.sleep(latency)
                length = int(self.headers.get("Content-Length", 0))
                with lock:
                    fault = proxy.faults.pop(0) if proxy.faults else None
                    proxy.seen.append(fault or "ok")
                if fault == "reset":
                    self.rfile.read(length // 2)
                    return self._drop()
                body = self.rfile.read(length)
                if fault == "stored-then-reset":
                    self._forward(body)
                    return self._drop()
                if fault == "500":
                    return self._reply(500, {}, b"internal error")
                if fault == "429":
                    return self._reply(429, {"Retry-After": "1"}, b"slow down")
                if fault == "stall":
                    time.sleep(stall)
                    return self._drop()
                self._reply(*self._forward(body))

        self.server, self.url = serve(Handler)

    def close(self) -> None:
        self.server.shutdown()


class GitLabPypiStandIn:
    """STAND-IN for GitLab's PyPI package registry API (lib/api/pypi_packages.rb): no real
    GitLab runs here. POST /api/v4/projects/:id/packages/pypi answers 201, or 400 "File name
    has already been taken" for a filename it has (any file name, as GitLab stores any); files/<sha>/<file>
    downloads one; simple/<name> lists files with #sha256= or,
    hosting none, answers 302 to `pypi`; auth is HTTP Basic with gitlab-ci-token:<job token>."""

    def __init__(self, project_id: str, job_token: str, pypi: str):
        import base64

        self.files: dict[str, tuple[str, bytes]] = {}  # filename -> (normalized name, content)
        self.uploads: list[str] = []
        expected = "Basic " + base64.b64encode(f"gitlab-ci-token:{job_token}".encode()).decode()
        stand_in = self
        prefix = f"/api/v4/projects/{project_id}/packages/pypi"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body, ctype="application/json", headers=None):
                data = body if isinstance(body, bytes) else body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def do_HEAD(self):  # uv asks before a range request
                self.do_GET()

            def do_GET(self):
                import hashlib

                if self.path.startswith(prefix + "/files/"):  # downloads, as the simple pages link them
                    fname = self.path.rsplit("/", 1)[-1]
                    if fname in stand_in.files:
                        return self._send(200, stand_in.files[fname][1], "application/octet-stream")
                    return self._send(404, json.dumps({"message": "404 Not Found"}))
                if not self.path.startswith(prefix + "/simple/"):
                    return self._send(404, json.dumps({"message": "404 Not Found"}))
                name = self.path[len(prefix + "/simple/"):].strip("/")
                hosted = {f: c for f, (n, c) in stand_in.files.items() if n == name}
                if not hosted:
                    return self._send(302, b"", headers={"Location": f"{pypi}/simple/{name}/"})
                links = "".join(f'<a href="{prefix}/files/{hashlib.sha256(c).hexdigest()}/{f}'
                                f'#sha256={hashlib.sha256(c).hexdigest()}">{f}</a><br>'
                                for f, c in sorted(hosted.items()))
                self._send(200, f"<!DOCTYPE html><html><body><h1>Links for {name}</h1>{links}</body></html>",
                           "text/html")

            def do_POST(self):
                from email.parser import BytesParser
                from email.policy import HTTP

                if self.headers.get("Authorization") != expected:
                    return self._send(401, json.dumps({"message": "401 Unauthorized"}))
                if self.path.rstrip("/") != prefix:
                    return self._send(404, json.dumps({"message": "404 Not Found"}))
                body = self.rfile.read(int(self.headers["Content-Length"]))
                msg = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
                fields, content, filename = {}, None, None
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if name == "content":
                        content, filename = part.get_payload(decode=True), part.get_filename()
                    else:
                        fields[name] = part.get_content().strip()
                if not content or not fields.get("name") or not fields.get("version"):
                    return self._send(400, json.dumps({"message": "400 Bad request - content, name, version"}))
                if filename in stand_in.files:
                    return self._send(400, json.dumps(
                        {"message": "Validation failed: File name has already been taken"}))
                stand_in.files[filename] = (fields["name"], content)
                stand_in.uploads.append(filename)
                self._send(201, json.dumps({"message": "201 Created"}))

        self.server, base = serve(Handler)
        self.api = f"{base}/api/v4"

    def close(self) -> None:
        self.server.shutdown()


class DevpiServer:
    """A real devpi-server (offline mode) with an index `ci/dev` that inherits root/pypi;
    uploads need the user's password. Simple index (PEP 691 JSON too): URL/+simple/."""

    def __init__(self, root: Path, password: str):
        import shutil as _shutil

        data = root / "devpi"
        bindir = Path(sys.executable).parent
        subprocess.run([str(bindir / "devpi-init"), "--serverdir", str(data), "--root-passwd", "root-pw"],
                       check=True, capture_output=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(root / "devpi.log", "w")
        self.proc = subprocess.Popen([str(bindir / "devpi-server"), "--serverdir", str(data),
                                      "--host", "127.0.0.1", "--port", str(self.port), "--offline-mode"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(self.base + "/+api", timeout=60)
        devpi = str(bindir / "devpi") if (bindir / "devpi").exists() else _shutil.which("devpi")
        client = root / "devpi-client"

        def run(*args: str) -> None:
            subprocess.run([devpi, "--clientdir", str(client), *args], check=True, capture_output=True, timeout=60)

        run("use", self.base)
        run("login", "root", "--password", "root-pw")
        run("user", "-c", "ci", f"password={password}")
        run("login", "ci", "--password", password)
        run("index", "-c", "ci/dev", "bases=root/pypi")
        self.url = f"{self.base}/ci/dev"
        self.index = f"{self.base}/ci/dev/+simple"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


class HostileServer:
    """A deliberately misbehaving HTTP server on 127.0.0.1 (not a stand-in for any product: the
    behaviour of a broken or hostile registry), for the hardening tests. `mode`:
    'echo' answers every request with the request's headers and path in the body (an index page
    for GET, a 400 for POST), as a server that echoes the Authorization header would;
    'trickle' sends a 200 and then one byte of body every `interval` seconds, forever;
    'trickle-headers' sends its status line and headers one byte at a time, forever;
    'endless' sends a body without end as fast as it can;
    'next-page' answers GitLab's notes API with `[]` and always one more X-Next-Page;
    'not-a-list' answers the notes API with a JSON object instead of a list."""

    def __init__(self, mode: str, interval: float = 0.2):
        self.mode = mode
        self.requests: list[str] = []
        self.connections: list[socket.socket] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                server.connections.append(self.connection)

            def _body(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)

            def _answer(self, code: int, data: bytes, headers: dict | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                server.requests.append(f"{self.command} {self.path}")
                self._body()
                try:
                    if server.mode == "echo":
                        echoed = f"{self.command} {self.path}\n{self.headers}".encode()
                        if self.command == "GET":
                            page = b'<a href="x-1.0-py3-none-any.whl#sha256=' + b"0" * 64 + b'">x</a><pre>' + echoed
                            self._answer(200, page + b"</pre>", {"Content-Type": "text/html"})
                        else:
                            self._answer(400, b"bad request: " + echoed)
                    elif server.mode == "trickle":
                        self.send_response(200)
                        self.send_header("Content-Length", "1000000")  # plausible: no size cap refuses it
                        self.end_headers()
                        while True:
                            self.wfile.write(b"<")
                            self.wfile.flush()
                            time.sleep(interval)
                    elif server.mode == "trickle-headers":
                        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100000:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(interval)
                    elif server.mode == "endless":
                        self.send_response(200)
                        self.end_headers()
                        chunk = b"<a>" * 20000
                        while True:
                            self.wfile.write(chunk)
                    elif server.mode == "next-page":
                        from urllib.parse import parse_qs, urlsplit

                        page = int(parse_qs(urlsplit(self.path).query).get("page", ["1"])[0])
                        if self.command == "POST":
                            self._answer(201, b'{"id": 7}', {"Content-Type": "application/json"})
                        else:
                            self._answer(200, b"[]", {"Content-Type": "application/json",
                                                      "X-Next-Page": str(page + 1)})
                    elif server.mode == "not-a-list":
                        self._answer(200, b'{"message": "surprise"}', {"Content-Type": "application/json"})
                except OSError:  # the client hung up (or close() cut the connection)
                    pass

            do_GET = do_POST = do_PUT = _handle

        self.server, self.url = serve(Handler)

    def close(self) -> None:
        self.server.shutdown()
        for conn in self.connections:  # end the handlers that trickle forever
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server.server_close()
