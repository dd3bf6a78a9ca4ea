"""One local Kubernetes control plane: its own etcd plus a real kube-apiserver, loopback only."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import audit
from .audit import AuditMark, AuditRequest
from .binaries import Binaries, require_binaries
from .certs import CertificateAuthority, KeyPair
from .kubeconfig import KubeconfigEntry
from .process import DEFAULT_STOP_TIMEOUT, ManagedProcess, free_port, wait_until_port_closed

DEFAULT_SERVICE_CIDR = "10.0.0.0/24"
ADMIN_USER = "admin"
ADMIN_GROUPS = ("system:masters",)
_SYNC_PARAM = "kubeharness-audit-sync"


def default_start_timeout() -> float:
    """Seconds to wait for ``/readyz`` (env ``KUBEHARNESS_START_TIMEOUT``, default 120)."""
    return float(os.environ.get("KUBEHARNESS_START_TIMEOUT", "120"))


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or to become ready."""


class _PortInUse(ControlPlaneError):
    pass


class ControlPlane:
    """etcd + kube-apiserver for one simulated cluster.

    Everything lives under ``workdir`` (certificates, etcd data, logs, the audit log). The API
    server uses client-certificate authentication (``admin`` in ``system:masters``) and RBAC.
    """

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        binaries: Binaries | None = None,
        service_cluster_ip_range: str = DEFAULT_SERVICE_CIDR,
        extra_apiserver_args: Sequence[str] = (),
        start_timeout: float | None = None,
    ) -> None:
        self.name = name
        self.dir = workdir
        self.binaries = binaries or require_binaries()
        self.service_cluster_ip_range = service_cluster_ip_range
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.start_timeout = start_timeout if start_timeout is not None else default_start_timeout()
        self.pki = self.dir / "pki"
        self.etcd_data = self.dir / "etcd-data"
        self.audit_log_path = self.dir / "audit.log"
        self.audit_policy_path = self.dir / "audit-policy.yaml"
        self.port = 0
        self.etcd_port = 0
        self.etcd_peer_port = 0
        self.serving_ca = CertificateAuthority(f"{name}-serving-ca")
        self.client_ca = CertificateAuthority(f"{name}-client-ca")
        self.admin = self.client_ca.issue_client(ADMIN_USER, ADMIN_GROUPS)
        self._etcd: ManagedProcess | None = None
        self._apiserver: ManagedProcess | None = None
        self._audit_lock = threading.Lock()
        self.started_in: float | None = None

    # ------------------------------------------------------------------ addresses
    @property
    def server(self) -> str:
        """The API server URL, ``https://127.0.0.1:<port>``."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def ca_pem(self) -> bytes:
        """PEM of the CA that signed the API server's serving certificate."""
        return self.serving_ca.cert_pem

    @property
    def etcd(self) -> ManagedProcess:
        if self._etcd is None:
            raise ControlPlaneError(f"{self.name}: not started")
        return self._etcd

    @property
    def apiserver(self) -> ManagedProcess:
        if self._apiserver is None:
            raise ControlPlaneError(f"{self.name}: not started")
        return self._apiserver

    # ------------------------------------------------------------------ files
    def _write_files(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.serving_ca.keypair.write(self.pki, "serving-ca")
        self.client_ca.keypair.write(self.pki, "client-ca")
        self.serving_ca.issue_serving(["localhost", "127.0.0.1"]).write(self.pki, "apiserver")
        CertificateAuthority(f"{self.name}-sa-signer").keypair.write(self.pki, "sa-signer")
        self.admin.write(self.pki, "admin")
        self.audit_policy_path.write_text(audit.AUDIT_POLICY, encoding="utf-8")

    def _etcd_argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            str(self.binaries.etcd),
            f"--name={self.name}",
            f"--data-dir={self.etcd_data}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.name}={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.dir / 'apiserver-cert-dir'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'client-ca.crt'}",
            f"--service-cluster-ip-range={self.service_cluster_ip_range}",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--authorization-mode=RBAC",
            f"--service-account-issuer=https://127.0.0.1:{self.port}/",
            f"--service-account-key-file={pki / 'sa-signer.crt'}",
            f"--service-account-signing-key-file={pki / 'sa-signer.key'}",
            "--endpoint-reconciler-type=none",
            f"--audit-policy-file={self.audit_policy_path}",
            f"--audit-log-path={self.audit_log_path}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=0",
            "--audit-log-maxbackup=0",
            "--audit-log-maxage=0",
            *self.extra_apiserver_args,
        ]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start etcd and the API server and wait until ``/readyz`` and Namespace ``default``."""
        began = time.monotonic()
        self._write_files()
        last: Exception | None = None
        for _attempt in range(3):
            self.etcd_port, self.etcd_peer_port, self.port = free_port(), free_port(), free_port()
            try:
                self.start_etcd()
                self.start_apiserver()
                self.started_in = time.monotonic() - began
                return
            except _PortInUse as exc:  # somebody grabbed a port between probe and bind: retry
                last = exc
                self.kill()
                shutil.rmtree(self.etcd_data, ignore_errors=True)
            except BaseException:
                self.stop(timeout=5)
                raise
        raise ControlPlaneError(f"{self.name}: could not bind free ports") from last

    def _failed(self, proc: ManagedProcess, why: str) -> ControlPlaneError:
        tail = proc.log_tail()
        cls = _PortInUse if "address already in use" in tail else ControlPlaneError
        return cls(f"{self.name}: {proc.name} {why} (log {proc.log_path}):\n{tail}")

    def start_etcd(self, timeout: float = 30.0) -> None:
        """(Re)start etcd on its ports with the same data directory and wait for ``/health``."""
        if self._etcd is None:
            self._etcd = ManagedProcess(f"etcd[{self.name}]", self._etcd_argv(), self.dir / "etcd.log")
        else:
            self._etcd.argv = self._etcd_argv()
        self._etcd.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._etcd.running():
                raise self._failed(self._etcd, f"exited with {self._etcd.exit_code()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.etcd_port, timeout=2)
                try:
                    conn.request("GET", "/health")
                    resp = conn.getresponse()
                    if resp.status == 200 and b'"true"' in resp.read():
                        return
                finally:
                    conn.close()
            time.sleep(0.05)
        raise self._failed(self._etcd, f"not healthy after {timeout:.0f}s")

    def start_apiserver(self, wait: bool = True) -> None:
        """(Re)start the API server on the same port (kubeconfigs stay valid); wait until ready."""
        if self._apiserver is None:
            self._apiserver = ManagedProcess(
                f"kube-apiserver[{self.name}]", self._apiserver_argv(), self.dir / "kube-apiserver.log"
            )
        else:
            self._apiserver.argv = self._apiserver_argv()
        self._apiserver.start()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait (bounded) for ``/readyz`` = 200 and then for Namespace ``default``."""
        timeout = self.start_timeout if timeout is None else timeout
        proc = self.apiserver
        deadline = time.monotonic() + timeout
        for path in ("/readyz", "/api/v1/namespaces/default"):
            while True:
                if not proc.running():
                    raise self._failed(proc, f"exited with {proc.exit_code()}")
                with contextlib.suppress(OSError, http.client.HTTPException, ssl.SSLError):
                    status, _ = self.raw_get(path, timeout=5)
                    if status == 200:
                        break
                if time.monotonic() >= deadline:
                    raise self._failed(proc, f"not ready ({path}) after {timeout:.0f}s")
                time.sleep(0.1)

    def stop_apiserver(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Graceful stop (SIGTERM, bounded wait, then SIGKILL); etcd keeps running."""
        if self._apiserver is not None:
            self._apiserver.stop(timeout=timeout)
            wait_until_port_closed(self.port)

    def kill_apiserver(self) -> None:
        """SIGKILL the API server (a crash); etcd keeps running."""
        if self._apiserver is not None:
            self._apiserver.kill()
            wait_until_port_closed(self.port)

    def restart_apiserver(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop (if running) and start again on the same port, against the same etcd data."""
        self.stop_apiserver(timeout=timeout)
        self.start_apiserver()

    def stop_etcd(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        if self._etcd is not None:
            self._etcd.stop(timeout=timeout)

    def kill_etcd(self) -> None:
        if self._etcd is not None:
            self._etcd.kill()

    def restart_etcd(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop etcd and start it again with the same ports and data directory."""
        self.stop_etcd(timeout=timeout)
        self.start_etcd()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the API server, then etcd (each SIGTERM, bounded wait, SIGKILL). Idempotent."""
        if self._apiserver is not None:
            self._apiserver.stop(timeout=timeout)
        if self._etcd is not None:
            self._etcd.stop(timeout=timeout)

    def terminate_apiserver(self) -> None:
        """Send SIGTERM to the API server without waiting (lets several planes stop in parallel)."""
        if self._apiserver is not None:
            self._apiserver.terminate()

    def kill(self) -> None:
        """SIGKILL both processes."""
        if self._apiserver is not None:
            self._apiserver.kill()
        if self._etcd is not None:
            self._etcd.kill()

    def running(self) -> bool:
        """Whether the API server process is alive."""
        return self._apiserver is not None and self._apiserver.running()

    def ensure_running(self) -> None:
        """Start etcd and/or the API server again if a fault hook (or a crash) stopped them."""
        if self._etcd is not None and not self._etcd.running():
            self.start_etcd()
        if self._apiserver is not None and not self._apiserver.running():
            self.start_apiserver()

    # ------------------------------------------------------------------ raw access
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "serving-ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def raw_get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """``GET`` as the admin user with the standard library only (readiness, audit sync)."""
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=timeout, context=self._ssl_context()
        )
        try:
            conn.request("GET", path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    # ------------------------------------------------------------------ users / kubeconfig
    def issue_client_cert(self, user: str, groups: Sequence[str] = ()) -> KeyPair:
        """A client certificate the API server accepts as ``user`` in ``groups``."""
        return self.client_ca.issue_client(user, tuple(groups))

    def kubeconfig_entry(self, user: str = ADMIN_USER, credentials: KeyPair | None = None) -> KubeconfigEntry:
        return KubeconfigEntry(
            name=self.name,
            server=self.server,
            ca_pem=self.ca_pem,
            user=f"{user}@{self.name}",
            credentials=credentials or self.admin,
        )

    # ------------------------------------------------------------------ audit log
    def sync_audit(self, timeout: float = 5.0) -> None:
        """Make sure requests answered so far are in the audit log.

        Sends a marker request and waits until its event is written (the log backend runs in
        blocking mode, so earlier, already-answered requests precede it). No-op when stopped.
        """
        if not self.running():
            return
        token = uuid.uuid4().hex
        needle = token.encode()
        with self._audit_lock:
            try:
                start = self.audit_log_path.stat().st_size
            except FileNotFoundError:
                start = 0
            try:
                self.raw_get(f"/version?{_SYNC_PARAM}={token}", timeout=timeout)
            except (OSError, http.client.HTTPException):
                return
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with contextlib.suppress(FileNotFoundError), open(self.audit_log_path, "rb") as fh:
                    fh.seek(start)
                    if needle in fh.read():
                        return
                time.sleep(0.02)

    def audit_mark(self) -> AuditMark:
        """Current end of the audit log; pass to :meth:`audit_events` to see only newer requests."""
        self.sync_audit()
        return AuditMark(self._audit_size())

    def _audit_size(self) -> int:
        try:
            return self.audit_log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def audit_events(
        self,
        since: AuditMark | None = None,
        user: str | None = None,
        *,
        stage: str | None = "ResponseComplete",
        sync: bool = True,
    ) -> list[dict[str, Any]]:
        """Audit events (raw ``audit.k8s.io/v1`` Event dicts) after ``since``.

        ``user`` filters on ``user.username`` (e.g.
        ``system:serviceaccount:mesh-reconciler:mesh-reconciler``). ``stage`` defaults to
        ``ResponseComplete`` so each request counts once; pass ``None`` for every stage. The
        harness's own sync requests are left out.
        """
        if sync:
            self.sync_audit()
        events, _ = audit.read_events(self.audit_log_path, since)
        out: list[dict[str, Any]] = []
        for event in events:
            if _SYNC_PARAM in str(event.get("requestURI", "")):
                continue
            if stage is not None and event.get("stage") != stage:
                continue
            if user is not None and (event.get("user") or {}).get("username") != user:
                continue
            out.append(event)
        return out

    def audit_requests(
        self,
        since: AuditMark | None = None,
        user: str | None = None,
        *,
        stage: str | None = "ResponseComplete",
    ) -> list[AuditRequest]:
        """Like :meth:`audit_events`, summarised as (verb, resource, namespace, name, dryRun, ...)."""
        return audit.summarize(self.audit_events(since, user, stage=stage))

    # ------------------------------------------------------------------ stats
    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of the running processes, from ``/proc/<pid>/status`` (Linux)."""
        out: dict[str, int] = {}
        for proc in (self._apiserver, self._etcd):
            if proc is None or proc.pid is None or not proc.running():
                continue
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[proc.name] = int(line.split()[1]) * 1024
        return out

    def __repr__(self) -> str:
        return f"ControlPlane({self.name!r}, server={self.server!r}, etcd={self.etcd_url!r})"
