"""Fixtures for the real-Envoy failover tests: loopback-addressed control planes, seeded once per module.

The topology gives every backend a loopback address, so the endpoints the reconciler renders are
addresses a local process can listen on -- Envoy receives exactly what we render:

* a LOCAL backing service is addressed by its ClusterIP: the API servers run with the service range
  ``127.0.100.0/24`` (kube-apiserver accepts loopback clusterIPs then), and the Services get explicit
  clusterIPs 127.0.100.11... (its EndpointSlices must keep non-loopback pod IPs: kube-apiserver
  rejects loopback endpoint addresses; the pods only give each service its node's locality);
* a REMOTE backing service is addressed by its cluster's east-west gateway: LoadBalancer status IP
  127.0.0.12/13/14 (accepted), port named ``tls``.

These control planes are this directory's own (not the shared ``clusters`` fixture), so the loopback
service range does not leak into other tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubeharness import Clusters, seed_cluster, start_clusters
from kubeharness.seed import (
    ISTIO_NAMESPACE,
    ClusterTopology,
    PodSpec,
    ServicePort,
    ServiceSpec,
    cluster_topology,
)

from tests.conftest import require_k8s_binaries
from tests.e2e.envoy_process import free_port, require_envoy

SERVICE_CIDR = "127.0.100.0/24"
NAMESPACE = "bookinfo"


@dataclass(frozen=True)
class ServiceDef:
    name: str  # reviews-v1
    version: str
    cluster_ip: str  # loopback, from SERVICE_CIDR
    pod_ip: str  # not loopback: it must be accepted in the EndpointSlice


@dataclass(frozen=True)
class ClusterDef:
    name: str
    region: str
    zone: str
    gateway_ip: str
    node_ip: str
    services: tuple[ServiceDef, ...]


CLUSTERS = (
    ClusterDef(
        "mgmt-cluster",
        "us-east-1",
        "us-east-1a",
        "127.0.0.12",
        "172.18.0.2",
        (
            ServiceDef("reviews-v1", "v1", "127.0.100.11", "10.10.1.11"),
            ServiceDef("reviews-v2", "v2", "127.0.100.12", "10.10.1.12"),
        ),
    ),
    ClusterDef(
        "remote-cluster",
        "us-east-2",
        "us-east-2b",
        "127.0.0.13",
        "172.18.0.3",
        (ServiceDef("reviews-v3", "v3", "127.0.100.13", "10.20.1.13"),),
    ),
    ClusterDef(
        "cluster-3",
        "eu-west-1",
        "eu-west-1a",
        "127.0.0.14",
        "172.18.0.4",
        (ServiceDef("reviews-v1", "v1", "127.0.100.14", "10.30.1.11"),),
    ),
)
CLIENT_CLUSTER = "mgmt-cluster"


@dataclass(frozen=True)
class BackendSpec:
    """Where one backing service is reached *from the client's cluster*, and who answers there."""

    cluster: str
    service: str
    region: str
    address: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.service}@{self.cluster}"

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class FailoverWorld:
    clusters: Clusters
    kubeconfig: Path
    service_port: int
    gateway_port: int

    def backends(self, cluster_names: tuple[str, ...]) -> list[BackendSpec]:
        """The backends a client in ``CLIENT_CLUSTER`` reaches, for the given member clusters."""
        out = []
        for c in CLUSTERS:
            if c.name not in cluster_names:
                continue
            for s in c.services:
                local = c.name == CLIENT_CLUSTER
                out.append(
                    BackendSpec(
                        c.name,
                        s.name,
                        c.region,
                        s.cluster_ip if local else c.gateway_ip,
                        self.service_port if local else self.gateway_port,
                    )
                )
        return out


def _topology(c: ClusterDef, service_port: int, gateway_port: int) -> ClusterTopology:
    base = cluster_topology(
        c.name,
        region=c.region,
        zone=c.zone,
        network=f"{c.name}-network",
        gateway_address=c.gateway_ip,
        gateway_port=gateway_port,
        node_ip=c.node_ip,
        namespaces=(ISTIO_NAMESPACE, "gloo-mesh", NAMESPACE),
    )
    node = base.nodes[0].name
    services = tuple(
        ServiceSpec(
            name=s.name,
            namespace=NAMESPACE,
            ports=(ServicePort("http", service_port, service_port),),
            selector={"app": "reviews", "version": s.version},
            labels={"app": "reviews", "version": s.version},
            cluster_ip=s.cluster_ip,
        )
        for s in c.services
    )
    pods = tuple(
        PodSpec(
            name=f"{s.name}-0",
            namespace=NAMESPACE,
            node=node,
            ip=s.pod_ip,
            labels={"app": "reviews", "version": s.version},
            container_port=service_port,
        )
        for s in c.services
    )
    return dataclasses.replace(base, services=services, pods=pods)


@pytest.fixture(autouse=True)
def _require_envoy(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("envoy") is not None:
        require_envoy()


@pytest.fixture(scope="module")
def envoy_bin() -> Path:
    return require_envoy()


@pytest.fixture(scope="module")
def failover_world(envoy_bin: Path) -> Iterator[FailoverWorld]:
    """Three control planes with a loopback service range, seeded with the topology above.

    Depends on ``envoy_bin`` only so that a missing Envoy skips before any control plane starts.
    """
    binaries = require_k8s_binaries()
    # The ports the backends must listen on are part of what gets seeded: pick free ones first. They are
    # chosen by the kernel (not 9080/15443) so that two runs on one machine cannot pick the same ones.
    service_port = free_port([s.cluster_ip for s in CLUSTERS[0].services])
    gateway_port = free_port([c.gateway_ip for c in CLUSTERS])
    started = start_clusters(
        [c.name for c in CLUSTERS], binaries=binaries, service_cluster_ip_range=SERVICE_CIDR
    )
    try:
        for c in CLUSTERS:
            api = started.api_client(c.name)
            topology = _topology(c, service_port, gateway_port)
            result = seed_cluster(api, topology)
            assert not result.skipped, result.skipped
        yield FailoverWorld(started, started.kubeconfig_path, service_port, gateway_port)
    finally:
        started.stop()
