"""Data-driven seeding of a cluster topology: Nodes, Namespaces, istiod, the east-west gateway,
Services with Pods and EndpointSlices.

There is no kubelet, scheduler or controller manager behind the API servers, so everything here is
a plain API object written directly: Pods get ``spec.nodeName`` and a ``status.podIP`` through the
status subresource, and EndpointSlices are written by the seeder instead of the EndpointSlice
controller. Everything is server-side applied (field manager ``kubeharness-seed``), so seeding
twice is harmless.

    topo = bookinfo_topology("mgmt-cluster", pod_ips={"reviews-v1": "127.0.0.2"})
    seed_cluster(api_client, topo)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from . import kube

FIELD_MANAGER = "kubeharness-seed"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
NETWORK_LABEL = "topology.istio.io/network"
ISTIO_NAMESPACE = "istio-system"
ISTIOD_IMAGE = "docker.io/istio/pilot:1.30.3"
BOOKINFO_IMAGE_TAG = "1.20.2"

JSON = dict[str, Any]


# ---------------------------------------------------------------------------------- description
@dataclass(frozen=True)
class NodeSpec:
    """A Node object carrying locality labels (no kubelet: it is only an API object)."""

    name: str
    region: str
    zone: str
    subzone: str | None = None
    internal_ip: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodSpec:
    """A Pod bound to ``node`` with ``ip`` as its ``status.podIP``."""

    name: str
    namespace: str
    node: str
    ip: str
    labels: Mapping[str, str]
    image: str = "registry.k8s.io/pause:3.10"
    container_port: int | None = None


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int | None = None
    protocol: str = "TCP"

    @property
    def backend_port(self) -> int:
        return self.target_port if self.target_port is not None else self.port


@dataclass(frozen=True)
class ServiceSpec:
    """A Service; an EndpointSlice for the Pods matching ``selector`` is written when
    ``endpoint_slice`` is true (the default)."""

    name: str
    namespace: str
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str]
    labels: Mapping[str, str] = field(default_factory=dict)
    type: str = "ClusterIP"
    cluster_ip: str | None = None
    endpoint_slice: bool = True


@dataclass(frozen=True)
class EastWestGateway:
    """``istio-eastwestgateway`` Service (type LoadBalancer) whose status carries ``address``."""

    network: str
    address: str | None
    port: int = 15443
    target_port: int = 15443
    namespace: str = ISTIO_NAMESPACE
    name: str = "istio-eastwestgateway"


@dataclass(frozen=True)
class Istiod:
    """An ``istiod`` Deployment (never runs: there is no kubelet)."""

    namespace: str = ISTIO_NAMESPACE
    image: str = ISTIOD_IMAGE
    replicas: int = 1


@dataclass(frozen=True)
class ClusterTopology:
    """Everything seeded into one cluster."""

    cluster: str
    network: str
    nodes: tuple[NodeSpec, ...] = ()
    namespaces: tuple[str, ...] = ()
    istiod: Istiod | None = field(default_factory=Istiod)
    gateway: EastWestGateway | None = None
    services: tuple[ServiceSpec, ...] = ()
    pods: tuple[PodSpec, ...] = ()

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"{self.cluster}: no node {name!r}")


@dataclass
class SeedResult:
    """What :func:`seed_cluster` wrote; ``skipped`` lists status writes the server refused."""

    objects: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------- builders
@dataclass(frozen=True)
class App:
    """A Service plus one Pod per version, all on one node (bookinfo style)."""

    name: str
    namespace: str
    versions: Mapping[str, str]  # version -> pod IP, e.g. {"v1": "10.10.1.11"}
    port: int = 9080
    port_name: str = "http"
    target_port: int | None = None
    image: str | None = None  # default docker.io/istio/examples-bookinfo-<name>-<version>:1.20.2

    def service(self) -> ServiceSpec:
        return ServiceSpec(
            name=self.name,
            namespace=self.namespace,
            labels={"app": self.name, "service": self.name},
            selector={"app": self.name},
            ports=(ServicePort(self.port_name, self.port, self.target_port or self.port),),
        )

    def pods(self, node: str) -> tuple[PodSpec, ...]:
        return tuple(
            PodSpec(
                name=f"{self.name}-{version}",
                namespace=self.namespace,
                node=node,
                ip=ip,
                labels={"app": self.name, "version": version},
                image=self.image
                or f"docker.io/istio/examples-bookinfo-{self.name}-{version}:{BOOKINFO_IMAGE_TAG}",
                container_port=self.target_port or self.port,
            )
            for version, ip in self.versions.items()
        )


def cluster_topology(
    cluster: str,
    *,
    region: str,
    zone: str,
    subzone: str | None = None,
    network: str | None = None,
    gateway_address: str | None = None,
    gateway_port: int = 15443,
    node_ip: str | None = None,
    namespaces: Sequence[str] = (ISTIO_NAMESPACE, "gloo-mesh"),
    apps: Sequence[App] = (),
    istiod: bool = True,
) -> ClusterTopology:
    """Generic one-node cluster: ``<cluster>-control-plane`` in ``region``/``zone``, istiod, an
    east-west gateway (``gateway_address`` in its LoadBalancer status) and ``apps`` on the node."""
    node = NodeSpec(f"{cluster}-control-plane", region, zone, subzone, internal_ip=node_ip)
    net = network or f"{cluster}-network"
    all_namespaces = list(dict.fromkeys([*namespaces, *(a.namespace for a in apps)]))
    return ClusterTopology(
        cluster=cluster,
        network=net,
        nodes=(node,),
        namespaces=tuple(all_namespaces),
        istiod=Istiod() if istiod else None,
        gateway=EastWestGateway(network=net, address=gateway_address, port=gateway_port),
        services=tuple(a.service() for a in apps),
        pods=tuple(p for a in apps for p in a.pods(node.name)),
    )


@dataclass(frozen=True)
class _BookinfoDefaults:
    region: str
    zone: str
    gateway_address: str
    node_ip: str
    reviews: Mapping[str, str]  # version -> pod IP


BOOKINFO_DEFAULTS: dict[str, _BookinfoDefaults] = {
    "mgmt-cluster": _BookinfoDefaults(
        "us-east-1", "us-east-1a", "172.18.0.10", "172.18.0.2", {"v1": "10.10.1.11", "v2": "10.10.1.12"}
    ),
    "remote-cluster": _BookinfoDefaults(
        "us-east-2", "us-east-2b", "172.18.0.11", "172.18.0.3", {"v3": "10.20.1.13"}
    ),
    "cluster-3": _BookinfoDefaults(
        "eu-west-1", "eu-west-1a", "172.18.0.12", "172.18.0.4", {"v1": "10.30.1.11"}
    ),
}


def bookinfo_topology(
    cluster: str,
    *,
    pod_ips: Mapping[str, str] | None = None,
    gateway_address: str | None = None,
    gateway_port: int = 15443,
    region: str | None = None,
    zone: str | None = None,
    subzone: str | None = None,
    network: str | None = None,
    reviews_versions: Sequence[str] | None = None,
) -> ClusterTopology:
    """The bundled bookinfo example for ``cluster``.

    Defaults: ``mgmt-cluster`` (us-east-1/us-east-1a, reviews-v1 + reviews-v2),
    ``remote-cluster`` (us-east-2/us-east-2b, reviews-v3), ``cluster-3`` (eu-west-1/eu-west-1a,
    reviews-v1). Other names need ``region``/``zone``/``reviews_versions``. ``pod_ips`` maps
    pod names (``reviews-v1``) to IPs, overriding the 10.x defaults; ``gateway_address``
    overrides the 172.18.0.x default of the east-west gateway's LoadBalancer status.
    """
    preset = BOOKINFO_DEFAULTS.get(cluster)
    if preset is None and (region is None or zone is None):
        raise ValueError(f"no bookinfo defaults for {cluster!r}: pass region= and zone=")
    versions = (
        list(reviews_versions) if reviews_versions is not None else list(preset.reviews if preset else [])
    )
    ips = dict(preset.reviews) if preset else {}
    reviews: dict[str, str] = {}
    for index, version in enumerate(versions):
        pod = f"reviews-{version}"
        ip = (pod_ips or {}).get(pod) or ips.get(version)
        if ip is None:
            ip = f"10.99.0.{10 + index}"
        reviews[version] = ip
    unknown = set(pod_ips or {}) - {f"reviews-{v}" for v in versions}
    if unknown:
        raise ValueError(f"pod_ips names pods not in {cluster}'s topology: {sorted(unknown)}")
    return cluster_topology(
        cluster,
        region=region or (preset.region if preset else ""),
        zone=zone or (preset.zone if preset else ""),
        subzone=subzone,
        network=network,
        gateway_address=gateway_address or (preset.gateway_address if preset else None),
        gateway_port=gateway_port,
        node_ip=preset.node_ip if preset else None,
        namespaces=(ISTIO_NAMESPACE, "gloo-mesh", "bookinfo"),
        apps=[App("reviews", "bookinfo", reviews)] if reviews else [],
    )


def bookinfo_topologies(
    clusters: Iterable[str] = ("mgmt-cluster", "remote-cluster"),
    *,
    pod_ips: Mapping[str, Mapping[str, str]] | None = None,
    gateway_addresses: Mapping[str, str] | None = None,
) -> dict[str, ClusterTopology]:
    """:func:`bookinfo_topology` for several clusters; ``pod_ips``/``gateway_addresses`` per cluster."""
    return {
        name: bookinfo_topology(
            name,
            pod_ips=(pod_ips or {}).get(name),
            gateway_address=(gateway_addresses or {}).get(name),
        )
        for name in clusters
    }


def bookinfo_three_regions(
    *,
    pod_ips: Mapping[str, Mapping[str, str]] | None = None,
    gateway_addresses: Mapping[str, str] | None = None,
) -> dict[str, ClusterTopology]:
    """mgmt-cluster (us-east-1), remote-cluster (us-east-2) and cluster-3 (eu-west-1)."""
    return bookinfo_topologies(
        ("mgmt-cluster", "remote-cluster", "cluster-3"), pod_ips=pod_ips, gateway_addresses=gateway_addresses
    )


# ---------------------------------------------------------------------------------- manifests
def namespace_manifest(name: str, labels: Mapping[str, str] | None = None) -> JSON:
    meta: JSON = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def node_manifest(node: NodeSpec) -> JSON:
    labels = {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        REGION_LABEL: node.region,
        ZONE_LABEL: node.zone,
        **node.labels,
    }
    if node.subzone:
        labels[SUBZONE_LABEL] = node.subzone
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": labels}}


def istiod_manifest(istiod: Istiod, cluster: str, network: str) -> JSON:
    labels = {"app": "istiod", "istio": "pilot"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": istiod.namespace, "labels": labels},
        "spec": {
            "replicas": istiod.replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "discovery",
                            "image": istiod.image,
                            "ports": [
                                {"name": "http-debug", "containerPort": 8080, "protocol": "TCP"},
                                {"name": "grpc-xds", "containerPort": 15010, "protocol": "TCP"},
                                {"name": "https-dns", "containerPort": 15012, "protocol": "TCP"},
                                {"name": "https-webhook", "containerPort": 15017, "protocol": "TCP"},
                            ],
                            "env": [
                                {"name": "CLUSTER_ID", "value": cluster},
                                {"name": "NETWORK", "value": network},
                            ],
                        }
                    ]
                },
            },
        },
    }


def gateway_manifest(gw: EastWestGateway) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": gw.name,
            "namespace": gw.namespace,
            "labels": {"istio": "eastwestgateway", "app": gw.name, NETWORK_LABEL: gw.network},
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": {"istio": "eastwestgateway"},
            "ports": [{"name": "tls", "port": gw.port, "targetPort": gw.target_port, "protocol": "TCP"}],
        },
    }


def service_manifest(svc: ServiceSpec) -> JSON:
    spec: JSON = {
        "type": svc.type,
        "selector": dict(svc.selector),
        "ports": [
            {"name": p.name, "port": p.port, "targetPort": p.backend_port, "protocol": p.protocol}
            for p in svc.ports
        ],
    }
    if svc.cluster_ip:
        spec["clusterIP"] = svc.cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name, "namespace": svc.namespace, "labels": dict(svc.labels)},
        "spec": spec,
    }


def _container_name(pod: PodSpec) -> str:
    return pod.labels.get("app", "app")


def pod_manifest(pod: PodSpec) -> JSON:
    container: JSON = {"name": _container_name(pod), "image": pod.image}
    if pod.container_port:
        container["ports"] = [{"name": "http", "containerPort": pod.container_port, "protocol": "TCP"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
        "spec": {"nodeName": pod.node, "containers": [container]},
    }


def pod_status(pod: PodSpec, host_ip: str | None) -> JSON:
    ready = [
        {"type": t, "status": "True"} for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    container = {
        "name": _container_name(pod),
        "image": pod.image,
        "imageID": "",
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}},
    }
    status: JSON = {
        "phase": "Running",
        "podIP": pod.ip,
        "podIPs": [{"ip": pod.ip}],
        "conditions": ready,
        "containerStatuses": [container],
    }
    if host_ip:
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
    return {"status": status}


def endpoint_address_allowed(ip: str) -> bool:
    """Whether kube-apiserver accepts ``ip`` as an EndpointSlice (or Endpoints) address.

    Verified against kube-apiserver 1.37: loopback (127.0.0.0/8, ::1), link-local
    (169.254.0.0/16, fe80::/10), unspecified (0.0.0.0, ::) and link-local multicast
    (224.0.0.0/24, ff02::/16) are rejected with 422 "may not be in the loopback range" etc.
    Pod ``status.podIP``, Service ``status.loadBalancer.ingress[].ip`` and (with a loopback
    ``--service-cluster-ip-range``) ``spec.clusterIP`` do accept loopback addresses.
    """
    addr = ipaddress.ip_address(ip)
    if addr.is_loopback or addr.is_link_local or addr.is_unspecified:
        return False
    if isinstance(addr, ipaddress.IPv4Address):
        return addr not in _V4_LINK_LOCAL_MULTICAST
    return not (addr.is_multicast and (int(addr) >> 112) & 0xF == 2)


_V4_LINK_LOCAL_MULTICAST = ipaddress.ip_network("224.0.0.0/24")


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def endpoint_slice_manifest(
    svc: ServiceSpec,
    pods: Iterable[PodSpec],
    topology: ClusterTopology,
    uids: Mapping[str, str],
    omitted: list[str] | None = None,
) -> JSON:
    """The EndpointSlice for ``svc``: one ready endpoint per selected Pod.

    Pods whose IP the API server would reject (see :func:`endpoint_address_allowed`, e.g.
    127.0.0.x) are left out and their names appended to ``omitted``.
    """
    endpoints: list[JSON] = []
    for pod in pods:
        if pod.namespace != svc.namespace or not _matches(svc.selector, pod.labels):
            continue
        if not endpoint_address_allowed(pod.ip):
            if omitted is not None:
                omitted.append(f"{pod.name} ({pod.ip})")
            continue
        ref: JSON = {"kind": "Pod", "name": pod.name, "namespace": pod.namespace}
        if pod.name in uids:
            ref["uid"] = uids[pod.name]
        endpoints.append(
            {
                "addresses": [pod.ip],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": pod.node,
                "zone": topology.node(pod.node).zone,
                "targetRef": ref,
            }
        )
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc.name}-seed",
            "namespace": svc.namespace,
            "labels": {
                "kubernetes.io/service-name": svc.name,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": p.name, "port": p.backend_port, "protocol": p.protocol} for p in svc.ports],
    }


# ---------------------------------------------------------------------------------- seeding
def _apply(api: ApiClient, obj: JSON, result: SeedResult) -> JSON:
    out = kube.apply(api, obj, field_manager=FIELD_MANAGER)
    meta = obj["metadata"]
    result.objects.append("/".join(p for p in (obj["kind"], meta.get("namespace"), meta["name"]) if p))
    return out


def _status(api: ApiClient, obj: JSON, status: JSON, result: SeedResult) -> None:
    meta = obj["metadata"]
    what = "/".join(p for p in (obj["kind"], meta.get("namespace"), meta["name"]) if p) + "/status"
    try:
        kube.merge_patch(
            api,
            obj["apiVersion"],
            obj["kind"],
            meta["name"],
            status,
            namespace=meta.get("namespace"),
            subresource="status",
            field_manager=FIELD_MANAGER,
        )
    except ApiException as exc:
        if exc.status in (400, 403, 422):
            result.skipped.append(f"{what}: {exc.status} {_reason(exc)}")
            return
        raise


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", exc.reason))
    except ValueError:
        return str(exc.reason)


def seed_cluster(api: ApiClient, topology: ClusterTopology) -> SeedResult:
    """Write ``topology`` into the cluster behind ``api`` (idempotent; server-side apply).

    Status writes (Pod IPs, the gateway's LoadBalancer address) the server rejects, and Pod IPs
    the server would reject as EndpointSlice addresses (loopback such as 127.0.0.x, link-local),
    are recorded in ``SeedResult.skipped`` instead of failing the whole seed: such Pods still
    exist with that ``status.podIP`` but are not listed in the EndpointSlice.
    """
    result = SeedResult()
    ns_labels: dict[str, dict[str, str]] = {ISTIO_NAMESPACE: {NETWORK_LABEL: topology.network}}
    for ns in dict.fromkeys(
        [
            *topology.namespaces,
            *(s.namespace for s in topology.services),
            *(p.namespace for p in topology.pods),
            *([topology.gateway.namespace] if topology.gateway else []),
            *([topology.istiod.namespace] if topology.istiod else []),
        ]
    ):
        _apply(api, namespace_manifest(ns, ns_labels.get(ns)), result)
    for node in topology.nodes:
        obj = node_manifest(node)
        _apply(api, obj, result)
        if node.internal_ip:
            conditions = [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
            addresses = [
                {"type": "InternalIP", "address": node.internal_ip},
                {"type": "Hostname", "address": node.name},
            ]
            _status(api, obj, {"status": {"conditions": conditions, "addresses": addresses}}, result)
    if topology.istiod:
        _apply(api, istiod_manifest(topology.istiod, topology.cluster, topology.network), result)
    if topology.gateway:
        gw = gateway_manifest(topology.gateway)
        _apply(api, gw, result)
        if topology.gateway.address:
            lb = {"status": {"loadBalancer": {"ingress": [{"ip": topology.gateway.address}]}}}
            _status(api, gw, lb, result)
    for svc in topology.services:
        _apply(api, service_manifest(svc), result)
    uids: dict[str, str] = {}
    for pod in topology.pods:
        obj = pod_manifest(pod)
        created = _apply(api, obj, result)
        uids[pod.name] = str(created["metadata"]["uid"])
        _status(api, obj, pod_status(pod, topology.node(pod.node).internal_ip), result)
    for svc in topology.services:
        if svc.endpoint_slice:
            omitted: list[str] = []
            _apply(api, endpoint_slice_manifest(svc, topology.pods, topology, uids, omitted), result)
            if omitted:
                result.skipped.append(
                    f"EndpointSlice/{svc.namespace}/{svc.name}-seed: omitted {', '.join(omitted)}: "
                    "kube-apiserver rejects loopback/link-local endpoint addresses"
                )
    return result
