"""kubeharness: N real, independent local Kubernetes control planes for tests and demos.

Each cluster is its own etcd plus a real ``kube-apiserver`` on random 127.0.0.1 ports; one
kubeconfig holds a context per cluster (context name == cluster name). See ``docs/harness.md``.

    from kubeharness import start_clusters
    with start_clusters(["mgmt-cluster", "remote-cluster"]) as clusters:
        api = clusters.api_client("mgmt-cluster")
"""

from __future__ import annotations

from .audit import AuditMark, AuditRequest, summarize
from .binaries import (
    Binaries,
    MissingBinariesError,
    find_binaries,
    missing_binaries_message,
    require_binaries,
)
from .clusters import Clusters, admin_api_client, api_client_from_kubeconfig, start_clusters
from .controlplane import ControlPlane, ControlPlaneError
from .crds import ISTIO_NETWORKING_CRDS, install_crds, load_crds
from .seed import (
    ClusterTopology,
    SeedResult,
    bookinfo_three_regions,
    bookinfo_topologies,
    bookinfo_topology,
    cluster_topology,
    seed_cluster,
)

__all__ = [
    "ISTIO_NETWORKING_CRDS",
    "AuditMark",
    "AuditRequest",
    "Binaries",
    "ClusterTopology",
    "Clusters",
    "ControlPlane",
    "ControlPlaneError",
    "MissingBinariesError",
    "SeedResult",
    "admin_api_client",
    "api_client_from_kubeconfig",
    "bookinfo_three_regions",
    "bookinfo_topologies",
    "bookinfo_topology",
    "cluster_topology",
    "find_binaries",
    "install_crds",
    "load_crds",
    "missing_binaries_message",
    "require_binaries",
    "seed_cluster",
    "start_clusters",
    "summarize",
]
