"""Stand-in backends: a ``ThreadingHTTPServer`` per rendered endpoint, answering with its identity.

Each backend binds exactly one ``address:port`` (Linux routes all of 127.0.0.0/8 to ``lo``, so
127.0.100.11 and 127.0.0.13 need no setup), answers every request with ``200 <name>`` -- or ``503``
while :attr:`Backend.failing` is set -- and counts what it served. Nagle is off: with it, every
keep-alive response through Envoy waited ~40 ms for a delayed ACK between header and body writes.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

IDENTITY_HEADER = "x-backend"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    backend: Backend


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards Envoy's connection pool
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        backend = self.server.backend
        failing = backend.failing.is_set()
        with backend.lock:
            backend.requests += 1
            if failing:
                backend.errors += 1
        body = f"{backend.name}\n".encode()
        self.send_response(503 if failing else 200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header(IDENTITY_HEADER, backend.name)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class Backend:
    """One HTTP backend on ``address:port``; a context manager that always shuts it down."""

    def __init__(self, name: str, address: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: terminate TLS with this server context (the mTLS an Istio sidecar originates)."""
        self.name = name
        self.tls = tls
        self.address = address
        self.port = port
        self.failing = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> Backend:
        server = _Server((self.address, self.port), _Handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        server.backend = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"backend-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def fail(self, failing: bool = True) -> None:
        if failing:
            self.failing.set()
        else:
            self.failing.clear()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Backend:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
