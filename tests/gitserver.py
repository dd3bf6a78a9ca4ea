"""A real git server over HTTP for tests: git's own ``git http-backend`` behind Basic auth.

Tests of fetching, token auth and push races need a server that behaves like GitHub/GitLab where it
matters: smart HTTP, ``401`` challenges, non-fast-forward rejections. Rather than mocking git, this
runs the CGI program git ships (``$(git --exec-path)/git-http-backend``) for each request, behind a
threaded ``http.server`` on 127.0.0.1 with a random port. Every CGI call has a timeout, and the
server thread is shut down on exit, so nothing outlives the test.

Usage::

    with GitHttpServer(tmp_path / "srv") as server:
        server.create_repo("policy", {"a.yaml": "..."})
        url = server.url("policy")          # http://127.0.0.1:PORT/policy.git
        # authenticate with any user name and password == server.token
"""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

TOKEN = "s3cr3t-t0ken-7f1c2a9e"
"""The fixed token the server accepts as the Basic-auth password (any user name)."""

CGI_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
MAX_BODY = 64 * 1024 * 1024

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "user@example.com",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "user@example.com",
}


def git_exec_path() -> Path:
    out = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True, timeout=10)
    return Path(out.stdout.strip())


def run_git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run git for test setup (a fixed identity, no global config surprises); return stdout."""
    full_env = {**os.environ, **IDENTITY, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        full_env.pop(var, None)
    result = subprocess.run(
        ["git", "-c", "commit.gpgSign=false", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def make_bare_repo(
    path: Path, files: Mapping[str, str] | None = None, branch: str = "main", message: str = "initial policy"
) -> Path:
    """A bare repository with one commit holding ``files`` (relative path -> text), pushable over HTTP."""
    run_git("init", "-q", "--bare", "-b", branch, str(path))
    run_git("config", "http.receivepack", "true", cwd=path)
    if files:
        with tempfile.TemporaryDirectory(prefix="gitserver-seed-") as tmp:
            work = Path(tmp) / "work"
            run_git("init", "-q", "-b", branch, str(work))
            write_files(work, files)
            run_git("add", "-A", cwd=work)
            run_git("commit", "-q", "-m", message, cwd=work)
            run_git("push", "-q", str(path), f"HEAD:refs/heads/{branch}", cwd=work)
    return path


def write_files(root: Path, files: Mapping[str, str | None]) -> None:
    """Write (or, for None, delete) files under root."""
    for rel, text in files.items():
        target = root / rel
        if text is None:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _authorized(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if hmac.compare_digest(password.encode(), self.server.token.encode()):
            return user or "git"
        return None

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()  # trailing CRLF after the last chunk
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        self.server.requests.append((self.command, self.path))
        user = self._authorized()
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self._read_body() if self.command == "POST" else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.server.root),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
        }
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        try:
            result = subprocess.run(
                [str(self.server.backend)], input=body, env=env, capture_output=True, timeout=CGI_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            self.send_error(504, "git-http-backend timed out")
            return
        head, sep, payload = result.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = result.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, token: str, backend: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.token = token
        self.backend = backend
        self.requests: list[tuple[str, str]] = []


class GitHttpServer:
    """Serves the bare repositories under ``root`` at ``http://127.0.0.1:<port>/<name>.git``."""

    def __init__(self, root: Path, token: str = TOKEN) -> None:
        self.root = root
        self.token = token
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> GitHttpServer:
        self.root.mkdir(parents=True, exist_ok=True)
        backend = git_exec_path() / "git-http-backend"
        if not backend.exists():
            raise RuntimeError(f"{backend} not found")
        self._server = _Server(self.root, self.token, backend)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; later requests get "connection refused" (a server that is down)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def requests(self) -> list[tuple[str, str]]:
        assert self._server is not None, "server not started"
        return self._server.requests

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def repo_path(self, name: str) -> Path:
        return self.root / f"{name}.git"

    def create_repo(self, name: str, files: Mapping[str, str] | None = None, branch: str = "main") -> Path:
        return make_bare_repo(self.repo_path(name), files, branch)

    def delete_repo(self, name: str) -> None:
        shutil.rmtree(self.repo_path(name))


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitHttpServer]:
    """A running :class:`GitHttpServer` serving ``tmp_path/git-server`` (stopped after the test)."""
    with GitHttpServer(tmp_path / "git-server") as server:
        yield server
