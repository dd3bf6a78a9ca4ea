"""The HTTP transport (``reconciler.clusters.transport``) against real servers on loopback: keep-alive
connections, a kept connection the server closed, tokens asked for every request, TLS settings of
a kubeconfig (server name, client certificate, skipped verification) and an HTTP CONNECT proxy.

The servers are the standard library's, answering like an API server would; the TLS certificates
come from the harness's certificate authority (``kubeharness.certs``).
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubeharness.certs import CertificateAuthority
from kubernetes import client

import reconciler.clusters.transport as transport_module
from reconciler.clusters.kube import LEASES, NODES, KubeClient, KubeError
from reconciler.clusters.transport import Transport, TransportConfigError
from tests.unit.helpers import LoopbackHTTPServer


class Server(LoopbackHTTPServer):
    """HTTP/1.1 with keep-alive (like the API server); counts connections and records requests.
    ``close_after``: the server closes each connection after that many answers. GET /stream is
    answered with one chunk, then held open until ``release`` is set (a WATCH)."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, close_after: int = 0, chunked: bool = False):
        self.connections = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.peers: list[Any] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                outer.connections += 1
                self.answered = 0
                if tls is not None:
                    outer.peers.append(self.connection.getpeercert())

            def do_GET(self) -> None:
                outer.requests.append((self.command, self.path, dict(self.headers)))
                if self.path == "/stream":
                    self._stream()
                    return
                data = json.dumps(
                    {"kind": "NodeList", "items": [{"metadata": {"name": f"n{len(outer.requests)}"}}]}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for part in (data[:10], data[10:]):
                        self.wfile.write(f"{len(part):x}\r\n{part}\r\n".encode())
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data.encode())
                self.answered += 1
                if close_after and self.answered >= close_after:
                    self.close_connection = True

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                event = b'{"type":"ADDED"}\n'
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
                outer.release.wait(10)
                self.close_connection = True

            do_PATCH = do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                return

        class HTTPServer(ThreadingHTTPServer):
            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)
                with outer.closing:
                    outer.closed += 1
                    outer.closing.notify_all()

        self.closed = 0
        self.closing = threading.Condition()
        self.release = threading.Event()
        super().__init__(Handler, HTTPServer)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)

    def wait_closed(self, count: int) -> None:
        """Until the server has closed ``count`` connections (bounded)."""
        with self.closing:
            assert self.closing.wait_for(lambda: self.closed >= count, timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        super().__exit__(*exc)


def configuration(host: str, **settings: Any) -> client.Configuration:
    config = client.Configuration()
    config.host = host
    config.retries = False
    for key, value in settings.items():
        setattr(config, key, value)
    return config


def kube(config: client.Configuration) -> KubeClient:
    return KubeClient(client.ApiClient(config), "test", timeout=5, attempts=1)


def test_requests_reuse_one_keep_alive_connection() -> None:
    with Server() as server:
        api = kube(configuration(f"http://127.0.0.1:{server.port}"))
        names = [api.list(NODES)[0]["metadata"]["name"] for _ in range(20)]
        api.close()
    assert names == [f"n{i}" for i in range(1, 21)]
    assert server.connections == 1
    assert server.requests[0][2]["User-Agent"] == "mesh-reconciler"


def test_a_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    with Server(chunked=True) as server:
        api = kube(configuration(f"http://127.0.0.1:{server.port}"))
        assert [api.list(NODES)[0]["metadata"]["name"] for _ in range(3)] == ["n1", "n2", "n3"]
    assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    """The server closes each connection after one answer: the next request notices and opens another,
    with no error and no request lost or sent twice."""
    with Server(close_after=1) as server:
        api = kube(configuration(f"http://127.0.0.1:{server.port}"))
        for _ in range(5):
            api.list(NODES)
    assert len(server.requests) == 5 and server.connections == 5


def test_a_create_is_never_sent_twice_and_an_idle_connection_is_checked_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A POST on a kept connection the server closed is not resent (it might have been seen): it
    fails, and the caller's retry policy decides. A connection idle for longer than
    CHECK_IDLE_AFTER is checked before it is reused, so a create never meets one the server closed."""
    lease = {"metadata": {"name": "l", "namespace": "ns"}}
    with Server(close_after=1) as server:
        api = kube(configuration(f"http://127.0.0.1:{server.port}"))
        api.create(LEASES, lease)
        server.wait_closed(1)
        with pytest.raises(KubeError, match="cannot reach the API server of test"):
            api.create(LEASES, lease)  # met the closed connection, within a second: not resent
        monkeypatch.setattr(transport_module, "CHECK_IDLE_AFTER", 0.0)
        api.create(LEASES, lease)
        server.wait_closed(2)
        api.create(LEASES, lease)
    assert [m for m, _, _ in server.requests] == ["POST"] * 3


def test_the_token_is_asked_for_every_request() -> None:
    """An exec plugin's token is renewed by the configuration's refresh hook: each request sends the
    token current at that moment, as the kubernetes client itself does."""
    tokens = iter(["one", "two", "three"])
    config = configuration(
        "http://x", api_key={"authorization": "initial"}, api_key_prefix={"authorization": "Bearer"}
    )
    config.refresh_api_key_hook = lambda c: c.api_key.update(authorization=next(tokens))
    with Server() as server:
        config.host = f"http://127.0.0.1:{server.port}"
        api = kube(config)
        for _ in range(3):
            api.list(NODES)
    assert [h["Authorization"] for _, _, h in server.requests] == ["Bearer one", "Bearer two", "Bearer three"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority("test-ca")
    (root / "ca.crt").write_bytes(ca.cert_pem)
    files: dict[str, Path] = {"ca": root / "ca.crt"}
    files["server"], files["server-key"] = ca.issue_serving(["api.cluster.test"]).write(root, "server")
    files["client"], files["client-key"] = ca.issue_client("alice", ["devs"]).write(root, "client")
    return files


@pytest.fixture
def tls_server(pki: dict[str, Path]) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"], pki["server-key"])
    context.load_verify_locations(pki["ca"])
    context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate is read when one is sent
    with Server(tls=context) as server:
        yield server


def test_tls_server_name_and_client_certificate(tls_server: Server, pki: dict[str, Path]) -> None:
    """The certificate names api.cluster.test, not 127.0.0.1: ``tls-server-name`` is what it is
    checked against; the client certificate is presented."""
    host = f"https://127.0.0.1:{tls_server.port}"
    good = configuration(
        host, ssl_ca_cert=str(pki["ca"]), cert_file=str(pki["client"]), key_file=str(pki["client-key"])
    )
    good.tls_server_name = "api.cluster.test"
    assert kube(good).list(NODES)
    subject = dict(pair[0] for pair in tls_server.peers[-1]["subject"])
    assert subject["commonName"] == "alice"

    with pytest.raises(KubeError) as err:  # the address dialled does not match the certificate
        kube(configuration(host, ssl_ca_cert=str(pki["ca"]))).list(NODES)
    assert err.value.status == 0 and "cannot reach the API server of test" in str(err.value)
    assert "certificate" in str(err.value).lower()

    assert kube(configuration(host, verify_ssl=False)).list(NODES)  # insecure-skip-tls-verify


class ConnectProxy:
    """A real HTTP CONNECT proxy (one tunnel per connection), recording what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ConnectProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        self.asked.append(head.decode())
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        peers = {conn: upstream, upstream: conn}
        for _ in range(10_000):  # bounded: a test tunnel carries a few requests
            ready, _, _ = select.select(list(peers), [], [], 5)
            if not ready:
                break
            for sock in ready:
                try:
                    data = sock.recv(65536)
                    if data:
                        peers[sock].sendall(data)
                        continue
                except OSError:  # a side that gave up (a client refusing the certificate)
                    pass
                conn.close()
                upstream.close()
                return


def test_requests_go_through_an_http_proxy_with_connect() -> None:
    with Server() as server, ConnectProxy() as proxy:
        config = configuration(
            f"http://127.0.0.1:{server.port}", proxy=f"http://user:s%40cret@127.0.0.1:{proxy.port}"
        )
        api = kube(config)
        assert [api.list(NODES)[0]["metadata"]["name"] for _ in range(2)] == ["n1", "n2"]
    assert len(proxy.asked) == 1  # one tunnel, kept alive
    assert proxy.asked[0].startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.")
    assert "Proxy-Authorization: Basic dXNlcjpzQGNyZXQ=" in proxy.asked[0]  # user:s@cret


def test_no_proxy_and_unsupported_proxies() -> None:
    with Server() as server:
        config = configuration(
            f"http://127.0.0.1:{server.port}", proxy="http://127.0.0.1:9", no_proxy="127.0.0.0/8"
        )
        assert kube(config).list(NODES)  # exempted: the (dead) proxy is never dialled
    for proxy in ("socks5://127.0.0.1:1080", "https://proxy.example:443"):
        with pytest.raises(TransportConfigError, match="only an http:// proxy"):
            Transport(configuration("https://api.example:6443", proxy=proxy))
    with pytest.raises(TransportConfigError, match="not an http"):
        Transport(configuration("unix:///var/run/api.sock"))


def test_tls_through_a_proxy_checks_the_api_servers_name(tls_server: Server, pki: dict[str, Path]) -> None:
    """Tunnelled, the certificate is still checked against the API server's name (here its
    ``tls-server-name``), never the proxy's."""
    with ConnectProxy() as proxy:
        config = configuration(
            f"https://127.0.0.1:{tls_server.port}",
            ssl_ca_cert=str(pki["ca"]),
            proxy=f"http://127.0.0.1:{proxy.port}",
        )
        config.tls_server_name = "api.cluster.test"
        assert kube(config).list(NODES)
        wrong = configuration(
            f"https://127.0.0.1:{tls_server.port}",
            ssl_ca_cert=str(pki["ca"]),
            proxy=f"http://127.0.0.1:{proxy.port}",
        )
        with pytest.raises(KubeError, match="certificate"):
            kube(wrong).list(NODES)
    assert len(proxy.asked) == 2 and all(
        a.startswith(f"CONNECT 127.0.0.1:{tls_server.port} ") for a in proxy.asked
    )


def test_shutdown_unblocks_a_stream_and_never_touches_a_finished_answers_connection() -> None:
    with Server() as server:
        transport = Transport(configuration(f"http://127.0.0.1:{server.port}"))
        stream = transport.request("GET", "/stream", headers={})
        read: list[bytes] = []
        ended: list[BaseException] = []

        def reader() -> None:
            try:
                read.extend(stream.stream())
            except BaseException as exc:  # the end a shut-down stream meets
                ended.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        for _ in range(100):  # bounded: until the first event arrived
            if read:
                break
            threading.Event().wait(0.05)
        stream.shutdown()
        thread.join(10)
        assert not thread.is_alive() and read == [b'{"type":"ADDED"}\n']
        assert transport._idle == []  # a shut-down stream's connection is never kept

        done = transport.request("GET", "/nodes", headers={})
        assert b"NodeList" in done.read() and len(transport._idle) == 1  # kept for the next request
        done.shutdown()  # too late: the connection serves the next request untouched
        assert b"NodeList" in transport.request("GET", "/nodes", headers={}).read()
    assert server.connections == 2
