"""VirtualDestination -> ServiceEntry + DestinationRule in every cluster it is exported to.

In each target cluster C:

* **ServiceEntry** for the global hostname (``MESH_INTERNAL``, a stable virtual address, the port;
  resolution ``STATIC`` when every endpoint address is an IP, else ``DNS``). One endpoint per backing
  service, carrying the service's locality (:func:`reconciler.clusters.inventory.service_locality`:
  the region only when its ready endpoints span zones, none when they span regions):

  - a service *in C*: its ClusterIP and the selected service port (stable between runs, unlike pod
    addresses); a headless one instead gets one endpoint per ready pod address, with its port and
    the locality of its node;
  - a service in another cluster D: D's east-west gateway address and its ``tls`` port (15443 by
    default).

  Each endpoint is labelled with the cluster it stands for, ``security.istio.io/tlsMode: istio`` and,
  when ranks are used, its failover rank labels. Endpoints that come out identical (same address,
  locality and labels: two backing services behind one gateway) are merged into one whose
  ``weight`` is how many they were; no other endpoint has a weight.
* **DestinationRule** for the hostname: ``ISTIO_MUTUAL`` TLS, outlier detection from the policy
  (defaults filled in; Istio ignores locality failover without it), ``maxEjectionPercent`` 100 by
  default, locality load balancing on, failover directives compiled by
  :mod:`reconciler.translate.failover`.

Target clusters are the members of the VirtualMesh (or the mesh list) *plus* every cluster that hosts
a backing service: a remote gateway in ``AUTO_PASSTHROUGH`` mode routes by SNI to its own
ServiceEntry for the hostname, so that one must exist too.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from reconciler.clusters.inventory import ClusterState, Endpoint, Inventory, Service, ServicePort
from reconciler.findings import ObjectKey, warning
from reconciler.locality import Locality
from reconciler.policy.durations import format_duration
from reconciler.policy.loader import Loaded
from reconciler.policy.model import (
    DestinationSelector,
    EffectiveOutlierDetection,
    VirtualDestination,
    VirtualMesh,
    effective_outlier_detection,
)
from reconciler.translate.context import TranslationContext
from reconciler.translate.failover import Directive, FailoverPlan, plan_localized, plan_static
from reconciler.translate.result import JSON, DesiredObject, PolicyOutcome, SelectedDestination, Translation

CLUSTER_ENDPOINT_LABEL = "mesh-reconciler.io/cluster"
"""Which cluster an endpoint stands for (``topology.istio.io/cluster`` is overwritten by istiod)."""
TLS_MODE_LABEL = "security.istio.io/tlsMode"


@dataclass(frozen=True)
class Backing:
    """A selected backing service with its resolved port and its place in the failover order."""

    service: Service
    port: ServicePort
    index: int


def translate_virtual_destinations(
    vds: list[Loaded[VirtualDestination]],
    meshes: dict[ObjectKey, VirtualMesh],
    inventory: Inventory,
    configured_clusters: set[str],
    addresses: dict[ObjectKey, str],
    ctx: TranslationContext,
    out: Translation,
) -> None:
    for policy in sorted(vds, key=lambda p: p.key):
        _translate_one(policy, meshes, inventory, configured_clusters, addresses[policy.key], ctx, out)


def _translate_one(
    policy: Loaded[VirtualDestination],
    meshes: dict[ObjectKey, VirtualMesh],
    inventory: Inventory,
    configured_clusters: set[str],
    address: str,
    ctx: TranslationContext,
    out: Translation,
) -> None:
    outcome = out.outcome(policy.key)
    vd = policy.obj
    spec = vd.spec

    # 1. export scope -> clusters
    export_clusters: set[str] = set()
    mesh_names: list[str] = []
    if spec.virtual_mesh is not None:
        vm_key = ObjectKey("VirtualMesh", spec.virtual_mesh.namespace or vd.namespace, spec.virtual_mesh.name)
        vm = meshes.get(vm_key)
        if vm is None:
            outcome.findings.append(
                policy.error_at(
                    ("spec", "virtualMesh"),
                    f"VirtualMesh {vm_key.namespace}/{vm_key.name} is invalid; fix it first",
                    code="RefInvalid",
                )
            )
            outcome.unresolved = "VirtualMesh is invalid"
            return
        mesh_names = [m.name for m in vm.spec.meshes]
    elif spec.mesh_list is not None:
        mesh_names = [m.name for m in spec.mesh_list.meshes]
    for mesh_name in mesh_names:
        mesh = inventory.mesh_by_name(mesh_name)
        if mesh is not None:
            export_clusters.add(mesh.cluster)
            continue
        mesh_cluster = _cluster_of_mesh_name(mesh_name, inventory)
        if mesh_cluster is not None and not inventory.clusters[mesh_cluster].reachable:
            export_clusters.add(mesh_cluster)  # reported as unreachable by the engine, not as a bad ref
            continue
        outcome.findings.append(
            warning(
                f"mesh {mesh_name} was not discovered in any cluster (no istiod in a reachable cluster); "
                "it receives nothing",
                location=policy.location_of(("spec",)),
                object=policy.key,
                code="MeshNotFound",
            )
        )

    # 2. backing services, in failover order
    backings, depends = _select_backings(policy, inventory, configured_clusters, outcome)
    if not backings:
        if not outcome.errors:
            outcome.unresolved = outcome.unresolved or "selectors match no service"
        return
    outcome.selected = [
        SelectedDestination(
            cluster=b.service.cluster,
            namespace=b.service.namespace,
            name=b.service.name,
            localities=tuple(loc.path for loc in b.service.localities()),
            endpoints=len(b.service.endpoints),
        )
        for b in backings
    ]
    targets = export_clusters | {b.service.cluster for b in backings}
    outcome.clusters |= targets
    depends |= targets

    directives = [
        Directive.from_model(d) for d in (spec.localized.failover_directives if spec.localized else [])
    ]
    od = effective_outlier_detection(spec.outlier_detection)
    protocol = spec.port.protocol.value
    port_name = protocol.lower()

    # One of each per policy, shared by its objects in every cluster (10,000 policies x 10
    # clusters are 200,000 objects: a copy each was tens of MB). Each appears once per object:
    # YAML writes a container an object holds twice as an alias (see TranslationContext).
    sources, depends_on = (policy.key,), frozenset(depends)
    hosts, addresses = [spec.hostname], [address]
    ports = [{"number": spec.port.number, "name": port_name, "protocol": protocol}]
    tls, outlier_detection = {"mode": "ISTIO_MUTUAL"}, outlier_detection_spec(od)
    for cluster_name in sorted(targets):
        cluster = inventory.clusters.get(cluster_name)
        if cluster is None or not cluster.reachable:
            continue  # nothing can be rendered for it; the engine reports the cluster
        mesh = cluster.mesh()
        if mesh is None:
            outcome.findings.append(
                warning(
                    f"cluster {cluster_name} has no Istio control plane (istiod); nothing is written there",
                    object=policy.key,
                    location=policy.location,
                    code="NoMesh",
                )
            )
            continue
        if spec.static is not None:
            plan = plan_static(len(spec.static.destinations))
        else:
            plan_key = (cluster_name, tuple(directives))
            cached = ctx.plans.get(plan_key)
            if cached is None:
                cached = ctx.plans[plan_key] = plan_localized(directives, cluster.localities())
            plan = cached
        for note in plan.warnings:
            outcome.findings.append(
                warning(
                    f"cluster {cluster_name}: {note}",
                    object=policy.key,
                    location=policy.location,
                    code="FailoverApproximated",
                )
            )
        endpoints = _endpoints_for(cluster, backings, inventory, plan, port_name, policy, outcome, ctx)
        if not endpoints:
            outcome.findings.append(
                warning(
                    f"cluster {cluster_name}: no reachable endpoint for {spec.hostname} "
                    "(no ready local endpoints and no remote gateway); the ServiceEntry has no endpoints",
                    object=policy.key,
                    location=policy.location,
                    code="NoEndpoints",
                )
            )
        natural = f"vd-{vd.name}-{vd.namespace}"
        owner = policy.key.ref
        se_name = ctx.names.allocate(cluster_name, "ServiceEntry", mesh.namespace, natural, owner)
        dr_name = ctx.names.allocate(cluster_name, "DestinationRule", mesh.namespace, natural, owner)
        all_ips = all(_is_ip(e["address"]) for e in endpoints)
        service_entry: JSON = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": ctx.metadata(se_name, mesh.namespace, [policy.key]),
            "spec": {
                "hosts": hosts,
                "addresses": addresses,
                "location": "MESH_INTERNAL",
                "resolution": "STATIC" if all_ips else "DNS",
                "ports": ports,
                "endpoints": endpoints,
            },
        }
        destination_rule: JSON = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": ctx.metadata(dr_name, mesh.namespace, [policy.key]),
            "spec": {
                "host": spec.hostname,
                "trafficPolicy": {
                    "tls": tls,
                    "loadBalancer": {"localityLbSetting": plan.lb_setting},
                    "outlierDetection": outlier_detection,
                },
            },
        }
        for body in (service_entry, destination_rule):
            obj = DesiredObject(cluster_name, body, sources, depends_on)
            out.add(obj)
            outcome.objects.append(obj.ref)


def outlier_detection_spec(od: EffectiveOutlierDetection) -> JSON:
    """Istio DestinationRule ``outlierDetection`` from effective (defaults-filled) settings."""
    spec: JSON = {
        "consecutive5xxErrors": od.consecutive_5xx_errors,
        "interval": format_duration(od.interval),
        "baseEjectionTime": format_duration(od.base_ejection_time),
        "maxEjectionPercent": od.max_ejection_percent,
    }
    if od.consecutive_gateway_errors is not None:
        spec["consecutiveGatewayErrors"] = od.consecutive_gateway_errors
    return spec


def _cluster_of_mesh_name(mesh_name: str, inventory: Inventory) -> str | None:
    for cluster in sorted(inventory.clusters, key=len, reverse=True):
        if mesh_name.endswith(f"-{cluster}") and mesh_name.startswith("istiod-"):
            return cluster
    return None


def _select_backings(
    policy: Loaded[VirtualDestination],
    inventory: Inventory,
    configured_clusters: set[str],
    outcome: PolicyOutcome,
) -> tuple[list[Backing], set[str]]:
    """Resolve selectors/refs to services and their VirtualDestination port."""
    spec = policy.obj.spec
    depends: set[str] = set()
    selected: list[tuple[Service, int]] = []
    if spec.localized is not None:
        for sel in spec.localized.destination_selectors:
            depends |= _selector_scope(sel, configured_clusters)
        for svc in select_services(inventory, spec.localized.destination_selectors):
            selected.append((svc, 0))
        if not selected:
            unreachable = sorted(
                c for c in depends if c in inventory.clusters and not inventory.clusters[c].reachable
            )
            where = f" (clusters not discovered in this run: {', '.join(unreachable)})" if unreachable else ""
            outcome.findings.append(
                policy.error_at(
                    ("spec", "localized", "destinationSelectors"),
                    f"destinationSelectors match no service in any discovered cluster{where}",
                    code="NoDestinations",
                )
            )
            outcome.unresolved = "selectors match no service"
            return [], depends
    else:
        assert spec.static is not None
        for i, dest in enumerate(spec.static.destinations):
            ref = dest.kube_service
            depends.add(ref.cluster_name)
            found = _find_service(inventory, ref.cluster_name, ref.namespace, ref.name)
            if found is None:
                ref_cluster = inventory.clusters.get(ref.cluster_name)
                reason = (
                    "its cluster was not discovered in this run"
                    if ref_cluster is not None and not ref_cluster.reachable
                    else "service not found"
                )
                outcome.findings.append(
                    policy.error_at(
                        ("spec", "static", "destinations", i),
                        f"static destination {ref.namespace}/{ref.name} in {ref.cluster_name}: {reason}",
                        code="NoDestinations",
                    )
                )
                outcome.unresolved = "a static destination does not exist"
                continue
            selected.append((found, i))
        if outcome.errors:
            return [], depends

    backings = []
    for svc, index in selected:
        port = resolve_port(svc, spec.port.target_name, spec.port.target_number, spec.port.number)
        if port is None:
            want = (
                f"named {spec.port.target_name!r}"
                if spec.port.target_name
                else f"numbered {spec.port.target_number or spec.port.number}"
            )
            outcome.findings.append(
                policy.warning_at(
                    ("spec", "port"),
                    f"service {svc} has no port {want}; it does not back {spec.hostname}",
                    code="PortNotFound",
                )
            )
            continue
        if svc.locality is None or svc.locality_note:
            outcome.findings.append(
                warning(
                    f"service {svc}: "
                    + (
                        f"no locality ({svc.locality_note}); istiod ranks it like another region's"
                        if svc.locality is None
                        else svc.locality_note
                    ),
                    object=policy.key,
                    location=policy.location,
                    code="NoLocality" if svc.locality is None else "CoarseLocality",
                )
            )
        backings.append(Backing(svc, port, index))
    if not backings:
        outcome.findings.append(
            policy.error_at(
                ("spec", "port"),
                f"no selected service has the port of {spec.hostname}; nothing can back it",
                code="NoDestinations",
            )
        )
        outcome.unresolved = "no selected service exposes the port"
    return backings, depends


def _selector_scope(sel: DestinationSelector, configured: set[str]) -> set[str]:
    scope: set[str] = set()
    if sel.kube_service_matcher is not None:
        scope |= set(sel.kube_service_matcher.clusters) or set(configured)
    if sel.kube_service_refs is not None:
        scope |= {r.cluster_name for r in sel.kube_service_refs.services}
    return scope


def select_services(inventory: Inventory, selectors: list[DestinationSelector]) -> list[Service]:
    """Services of reachable clusters matched by any selector, in (cluster, namespace, name) order."""
    found: dict[tuple[str, str, str], Service] = {}
    for sel in selectors:
        m = sel.kube_service_matcher
        if m is not None:
            for svc in inventory.services_with_labels(m.labels):
                if selector_matches(sel, svc):
                    found[svc.key] = svc
        if sel.kube_service_refs is not None:
            for ref in sel.kube_service_refs.services:
                by_ref = inventory.service(ref.cluster_name, ref.namespace, ref.name)
                if by_ref is not None:
                    found[by_ref.key] = by_ref
    return [found[k] for k in sorted(found)]


def selector_matches(sel: DestinationSelector, svc: Service) -> bool:
    """Gloo Mesh semantics: matcher fields AND'ed (empty = any), matcher and refs OR'ed."""
    m = sel.kube_service_matcher
    if m is not None:
        labels_ok = all(svc.labels.get(k) == v for k, v in m.labels.items())
        ns_ok = not m.namespaces or svc.namespace in m.namespaces
        cluster_ok = not m.clusters or svc.cluster in m.clusters
        if labels_ok and ns_ok and cluster_ok:
            return True
    refs = sel.kube_service_refs
    if refs is not None:
        for ref in refs.services:
            if (ref.cluster_name, ref.namespace, ref.name) == svc.key:
                return True
    return False


def _find_service(inventory: Inventory, cluster: str, namespace: str, name: str) -> Service | None:
    return inventory.service(cluster, namespace, name)


def resolve_port(
    svc: Service, target_name: str | None, target_number: int | None, number: int
) -> ServicePort | None:
    """The backing Service port: by name, or by port/targetPort number (default: the VD's number)."""
    if target_name is not None:
        return next((p for p in svc.ports if p.name == target_name), None)
    wanted = target_number if target_number is not None else number
    for p in svc.ports:
        if p.port == wanted:
            return p
    for p in svc.ports:
        if p.target_port == wanted:
            return p
    return None


def _endpoint_port(ep: Endpoint, port: ServicePort) -> int | None:
    found = ep.port_for(port.name)
    if found is not None:
        return found
    if len(ep.ports) == 1 and ep.ports[0][0] == "":
        return ep.ports[0][1]
    if isinstance(port.target_port, int):
        return port.target_port
    if port.target_port is None:
        return port.port
    return None


def _endpoints_for(
    cluster: ClusterState,
    backings: list[Backing],
    inventory: Inventory,
    plan: FailoverPlan,
    port_name: str,
    policy: Loaded[VirtualDestination],
    outcome: PolicyOutcome,
    ctx: TranslationContext,
) -> list[JSON]:
    out: list[JSON] = []
    for b in backings:
        svc = b.service
        if svc.cluster == cluster.name:
            if svc.headless:
                # No ClusterIP to aim at: the pods themselves, each with its node's locality.
                for ep in svc.endpoints:
                    port = _endpoint_port(ep, b.port)
                    if port is not None:
                        out.append(
                            _endpoint(
                                ep.address,
                                port_name,
                                port,
                                ep.locality,
                                svc.cluster,
                                plan.labels_for(ep.locality, b.index),
                                None,
                            )
                        )
            else:
                # The local service directly: its ClusterIP is stable between runs (pod IPs are not).
                assert svc.cluster_ip is not None
                out.append(
                    _endpoint(
                        svc.cluster_ip,
                        port_name,
                        b.port.port,
                        svc.locality,
                        svc.cluster,
                        plan.labels_for(svc.locality, b.index),
                        None,
                    )
                )
            continue
        remote = inventory.clusters[svc.cluster]
        gateway = remote.gateway()
        if gateway is None:
            outcome.findings.append(
                warning(
                    f"cluster {svc.cluster} has no east-west gateway with an address (a LoadBalancer Service "
                    f"labelled istio=eastwestgateway with a 'tls' port); {svc} is unreachable from {cluster.name}",
                    object=policy.key,
                    location=policy.location,
                    code="NoGateway",
                )
            )
            continue
        rank_labels = plan.labels_for(svc.locality, b.index)
        shared = (gateway.address, port_name, gateway.port, svc.locality, svc.cluster, *rank_labels.items())
        endpoint = ctx.gateway_endpoints.get(shared)
        if endpoint is None:
            endpoint = ctx.gateway_endpoints[shared] = _endpoint(
                gateway.address, port_name, gateway.port, svc.locality, svc.cluster, rank_labels, 1
            )
        out.append(endpoint)
    groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], JSON] = {}
    for entry in out:  # the same address can back two selected services: keep one, sum weights
        key = (entry["address"], entry.get("locality", ""), tuple(sorted(entry["labels"].items())))
        if key in groups:  # a new dict: the endpoints may be shared (TranslationContext)
            groups[key] = {**groups[key], "weight": groups[key].get("weight", 1) + entry.get("weight", 1)}
        else:
            groups[key] = entry
    return sorted(
        groups.values(),
        key=lambda e: (e.get("locality", ""), e["address"], e["labels"].get(CLUSTER_ENDPOINT_LABEL, "")),
    )


def _endpoint(
    address: str,
    port_name: str,
    port: int,
    locality: Locality | None,
    cluster: str,
    rank_labels: dict[str, str],
    weight: int | None,
) -> JSON:
    labels = {CLUSTER_ENDPOINT_LABEL: cluster, TLS_MODE_LABEL: "istio"}
    labels.update(rank_labels)
    ep: JSON = {"address": address, "ports": {port_name: port}, "labels": labels}
    if locality is not None and locality.path:
        ep["locality"] = locality.path
    if weight is not None and weight > 1:
        ep["weight"] = weight
    return ep


@functools.lru_cache(maxsize=65536)
def _is_ip(text: str) -> bool:  # cached: the same gateway address backs every VirtualDestination
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
