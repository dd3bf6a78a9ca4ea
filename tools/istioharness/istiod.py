"""One real istiod (``pilot-discovery discovery``) outside Kubernetes, reading one API server."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubeharness.process import ManagedProcess, free_port

from .assets import IstioAssets
from .lifecycle import ProcessBacked

ISTIO_NAMESPACE = "istio-system"

MESH_CONFIG = """\
rootNamespace: istio-system
trustDomain: cluster.local
enableAutoMtls: true
defaultConfig:
  discoveryAddress: 127.0.0.1:{xds_port}
"""

_BASE_ENV = {
    "POD_NAMESPACE": ISTIO_NAMESPACE,
    "POD_NAME": "istiod-local",
    "REVISION": "default",
    # No CA and no istiod serving certificates: there is no istio-agent to use them, and plaintext
    # ADS on the gRPC port is unauthenticated by design (the in-cluster 15010 port).
    "ENABLE_CA_SERVER": "false",
    "PILOT_CERT_PROVIDER": "none",
    # No injector and no validation webhook: nothing here would call them.
    "INJECT_ENABLED": "false",
    "VALIDATION_WEBHOOK_CONFIG_NAME": "",
    # istio-proxy-only cluster filter (istio.metadata_exchange): an upstream Envoy would NACK every cluster.
    "PILOT_ENABLE_METADATA_EXCHANGE": "false",
    "PILOT_ENABLE_GATEWAY_API": "false",
    "PILOT_ENABLE_AMBIENT": "false",
    # Push as soon as a change is seen (default 100 ms): the tests wait on propagation.
    "PILOT_DEBOUNCE_AFTER": "10ms",
}


class IstiodError(RuntimeError):
    """istiod did not start or answer; the message carries the tail of its log."""


def prometheus_samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` from a Prometheus text exposition (comments dropped)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


class Istiod(ProcessBacked):
    """istiod for cluster ``cluster_id``, reading the API server of a one-context kubeconfig.

    pilot-discovery has no ``--context`` flag (it uses current-context), so the caller passes a
    kubeconfig whose current context is the cluster (multi-primary: one istiod per cluster).
    ``status=True`` lets istiod write status and analysis messages into Istio objects (it then runs
    leader election through the API server, as in a cluster).
    """

    def __init__(
        self,
        kubeconfig: Path,
        cluster_id: str,
        workdir: Path,
        assets: IstioAssets,
        *,
        status: bool = False,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.workdir = workdir
        self.assets = assets
        self.xds_port = free_port()
        self.http_port = free_port()
        self.monitoring_port = free_port()
        self.startup_seconds = 0.0
        workdir.mkdir(parents=True, exist_ok=True)
        mesh = workdir / "mesh.yaml"
        mesh.write_text(MESH_CONFIG.format(xds_port=self.xds_port))
        env = dict(_BASE_ENV, CLUSTER_ID=cluster_id, KUBECONFIG=str(kubeconfig))
        if status:
            env.update(PILOT_ENABLE_STATUS="true", PILOT_ENABLE_ANALYSIS="true")
        env.update(extra_env or {})
        self._process = ManagedProcess(
            f"istiod-{cluster_id}",
            [
                str(assets.pilot_discovery),
                "discovery",
                f"--kubeconfig={kubeconfig}",
                f"--clusterID={cluster_id}",
                f"--meshConfig={mesh}",
                f"--networksConfig={workdir / 'mesh-networks.yaml'}",
                f"--grpcAddr=127.0.0.1:{self.xds_port}",
                f"--httpAddr=127.0.0.1:{self.http_port}",
                f"--monitoringAddr=127.0.0.1:{self.monitoring_port}",
                # Empty: no TLS xDS port (15012) and no webhook HTTPS server.
                "--secureGRPCAddr=",
                "--httpsAddr=",
                "--log_output_level=default:info",
            ],
            workdir / "istiod.log",
            env={**os.environ, **env},
        )

    @property
    def log_path(self) -> Path:
        return self._process.log_path

    def start(self, timeout: float = 90.0) -> None:
        started = time.monotonic()
        super().start()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if not self._process.running():
                raise IstiodError(f"istiod {self.cluster_id} exited:\n{self._process.log_tail()}")
            try:
                self._get(self.http_port, "/ready", timeout=1)
                self.startup_seconds = time.monotonic() - started
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        self._process.stop()
        raise IstiodError(
            f"istiod {self.cluster_id} not ready after {timeout:.0f}s:\n{self._process.log_tail()}"
        )

    @staticmethod
    def _get(port: int, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return bytes(response.read())

    def metrics(self) -> dict[str, float]:
        return prometheus_samples(self._get(self.monitoring_port, "/metrics").decode())

    def debug(self, path: str) -> Any:
        return json.loads(self._get(self.monitoring_port, path))

    def version(self) -> str:
        """The build version istiod reports (``istio_build{tag=...}``), e.g. ``1.31-dev+eed52ebb66ad``."""
        for name in self.metrics():
            found = re.match(r'istio_build\{.*tag="([^"]+)"', name)
            if found:
                return found.group(1)
        return ""

    def rejects(self) -> dict[str, float]:
        """Non-zero reject / push-error counters: what istiod says went wrong with the config."""
        wanted = (
            "pilot_total_xds_rejects",
            "pilot_xds_cds_reject",
            "pilot_xds_eds_reject",
            "pilot_xds_rds_reject",
            "pilot_xds_lds_reject",
            "pilot_xds_push_context_errors",
            "pilot_total_xds_internal_errors",
            "pilot_xds_write_timeout",
        )
        return {k: v for k, v in self.metrics().items() if k.split("{")[0] in wanted and v}

    def rss_bytes(self) -> int:
        pid = self._process.pid
        if pid is None:
            return 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0
