"""Child-process handling: start in a new session, stop by PID (SIGTERM, bounded wait, SIGKILL).

Also hands out free loopback ports and keeps a registry of live processes so that an ``atexit``
hook can stop anything a crashed test run left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_STOP_TIMEOUT = 20.0

_ports_lock = threading.Lock()
_ports_handed_out: set[int] = set()

_live_lock = threading.Lock()
_live: dict[int, ManagedProcess] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is currently free and not handed out before by this process.

    Another process may still grab it before the server binds it; callers retry on bind errors.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        with _ports_lock:
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise RuntimeError("could not find a free loopback port")


class ManagedProcess:
    """One server process (etcd or kube-apiserver) whose output goes to a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None  # None: inherit this process's environment
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== kubeharness: starting {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=self.env,
            )
        with _live_lock:
            _live[self._proc.pid] = self

    def _signal(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        # The child leads its own session/process group (start_new_session=True): signal the group
        # so nothing it might fork survives, addressed by our own child's PID only.
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _reap(self) -> None:
        if self._proc is not None:
            with _live_lock:
                _live.pop(self._proc.pid, None)

    def terminate(self) -> None:
        """Send SIGTERM without waiting (see :meth:`stop`)."""
        self._signal(signal.SIGTERM)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(timeout=10)
        self._reap()

    def kill(self) -> None:
        """SIGKILL immediately (simulates a crash) and reap. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
            proc.wait(timeout=10)
        self._reap()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_until_port_closed(port: int, timeout: float = 10.0) -> None:
    """Wait (bounded) until nothing accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)


def stop_all_live(timeout: float = 5.0) -> None:
    """Stop every process started through :class:`ManagedProcess` that is still running."""
    with _live_lock:
        procs = list(_live.values())
    # kube-apiservers first, then etcd, mirroring the normal teardown order.
    procs.sort(key=lambda p: 0 if "apiserver" in p.name else 1)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.stop(timeout=timeout)


atexit.register(stop_all_live)
