"""The test-only SDS server (``tools/fakesds``) standing in for istio-agent."""

from __future__ import annotations

import time
from pathlib import Path

from kubeharness.process import ManagedProcess

from .assets import IstioAssets
from .lifecycle import ProcessBacked


class FakeSds(ProcessBacked):
    """Serves the ``default`` certificate and ``ROOTCA`` bundle on a unix socket.

    The same PEMs are written to ``workdir`` (``cert-chain.pem``, ``key.pem``, ``root-cert.pem``), so a
    test backend can terminate the ISTIO_MUTUAL TLS a sidecar originates.
    """

    def __init__(self, workdir: Path, assets: IstioAssets) -> None:
        self.workdir = workdir
        self.socket = workdir / "sds.sock"
        workdir.mkdir(parents=True, exist_ok=True)
        self._process = ManagedProcess(
            "fakesds",
            [str(assets.fakesds), "-listen", f"unix://{self.socket}", "-pem-dir", str(workdir)],
            workdir / "fakesds.log",
        )

    @property
    def cert_chain(self) -> Path:
        return self.workdir / "cert-chain.pem"

    @property
    def key(self) -> Path:
        return self.workdir / "key.pem"

    @property
    def root_cert(self) -> Path:
        return self.workdir / "root-cert.pem"

    def start(self, timeout: float = 15.0) -> None:
        super().start()
        deadline = time.monotonic() + timeout
        while not (self.socket.exists() and self.cert_chain.exists()):
            if not self._process.running() or time.monotonic() > deadline:
                self._process.stop()
                raise RuntimeError(f"fakesds did not start:\n{self._process.log_tail()}")
            time.sleep(0.05)
