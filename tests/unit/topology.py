"""Build raw Kubernetes objects (as the API server returns them) for unit-test topologies."""

from __future__ import annotations

from typing import Any

from reconciler.clusters.inventory import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    SOURCES_ANNOTATION,
    Inventory,
    build_cluster_state,
)


def node(name: str, region: str | None, zone: str | None, subzone: str | None = None) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if region:
        labels["topology.kubernetes.io/region"] = region
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    if subzone:
        labels["topology.istio.io/subzone"] = subzone
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def istiod(namespace: str = "istio-system") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": namespace, "labels": {"app": "istiod", "istio": "pilot"}},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.30.3"}]}
            }
        },
    }


def gateway(address: str, port: int = 15443) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "istio-eastwestgateway",
            "namespace": "istio-system",
            "labels": {"istio": "eastwestgateway"},
        },
        "spec": {"type": "LoadBalancer", "ports": [{"name": "tls", "port": port, "targetPort": port}]},
        "status": {"loadBalancer": {"ingress": [{"ip": address}]}},
    }


_next_ip = iter(range(10, 250))


def service(
    name: str,
    namespace: str = "bookinfo",
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    cluster_ip: str | None = None,
    headless: bool = False,
) -> dict[str, Any]:
    ip = "None" if headless else cluster_ip or f"10.96.0.{next(_next_ip)}"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels if labels is not None else {"app": name},
        },
        "spec": {"clusterIP": ip, "ports": ports or [{"name": "http", "port": 9080, "targetPort": 9080}]},
    }


def endpoints(
    svc: str,
    addresses: list[tuple[str, str | None]],
    namespace: str = "bookinfo",
    port: int = 9080,
    port_name: str = "http",
) -> dict[str, Any]:
    """An EndpointSlice: (address, node name) pairs, all ready."""
    eps = []
    for address, node_name in addresses:
        ep: dict[str, Any] = {"addresses": [address], "conditions": {"ready": True}}
        if node_name:
            ep["nodeName"] = node_name
        eps.append(ep)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc}-abc",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port}],
        "endpoints": eps,
    }


def simple_cluster(
    name: str,
    region: str | None,
    zone: str | None,
    gateway_ip: str | None,
    pods: list[str],
    svc: str = "reviews",
    cluster_ip: str | None = None,
) -> list[dict[str, Any]]:
    objs = [
        node(f"{name}-node", region, zone),
        istiod(),
        service(svc, cluster_ip=cluster_ip),
        endpoints(svc, [(ip, f"{name}-node") for ip in pods]),
    ]
    if gateway_ip:
        objs.append(gateway(gateway_ip))
    return objs


def inventory(clusters: dict[str, list[dict[str, Any]]], unreachable: tuple[str, ...] = ()) -> Inventory:
    inv = Inventory()
    for name, objs in clusters.items():
        inv.clusters[name] = build_cluster_state(name, objs)
    for name in unreachable:
        state = build_cluster_state(name, [])
        state.error = "connection refused"
        inv.clusters[name] = state
    return inv


def owned(
    kind: str,
    name: str,
    spec: dict[str, Any],
    namespace: str = "istio-system",
    source: str = "VirtualDestination/apps/reviews",
) -> dict[str, Any]:
    """An Istio object of ours, as we apply it: our label and our sources annotation."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": {SOURCES_ANNOTATION: source},
        },
        "spec": spec,
    }
