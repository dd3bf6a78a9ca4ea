"""The discovered state of every cluster, as immutable data (no clients, no I/O).

:func:`build_cluster_state` turns the raw Kubernetes objects of one cluster — whether they came from
LIST requests or from a snapshot file — into a :class:`ClusterState`: node localities, services with
their ready endpoints and each endpoint's locality, Istio meshes, east-west gateways and the objects
this reconciler manages there.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from reconciler.findings import ObjectKey
from reconciler.locality import LEGACY_REGION_LABEL, LEGACY_ZONE_LABEL, REGION_LABEL, ZONE_LABEL, Locality

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "mesh-reconciler"
SOURCES_ANNOTATION = "mesh-reconciler.io/sources"
"""Comma-separated ``Kind/namespace/name`` of the policies an object was generated from."""

MANAGED_KINDS = ("ServiceEntry", "DestinationRule", "VirtualService")
"""Istio kinds (networking.istio.io/v1) this reconciler writes, compares and prunes, in apply order."""

ISTIO_CRDS_MISSING = "Istio networking CRDs not installed"
"""Start of the error of a cluster that answers but does not serve networking.istio.io."""


def unavailable(name: str, error: str) -> str:
    """One sentence saying why a cluster is left out of this run (what the user has to fix)."""
    if error.startswith(ISTIO_CRDS_MISSING):
        return error  # already names the cluster; "unreachable" would send users to check the network
    return f"cluster {name} unreachable: {error}"


ISTIOD_SELECTOR = "app=istiod"
EAST_WEST_GATEWAY_LABELS = (("istio", "eastwestgateway"), ("istio", "ingressgateway"))
DEFAULT_GATEWAY_PORT = 15443


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    target_port: int | str | None = None
    protocol: str = "TCP"
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ready address backing a service (a pod), with the node it runs on and its locality."""

    address: str
    ports: tuple[tuple[str, int], ...]
    """(port name, port) as the EndpointSlice lists them (names match the service's port names)."""
    node: str | None = None
    locality: Locality | None = None

    def port_for(self, name: str) -> int | None:
        for n, p in self.ports:
            if n == name:
                return p
        return None


@dataclass(frozen=True, slots=True)
class Service:
    cluster: str
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: str | None = None
    type: str = "ClusterIP"
    endpoints: tuple[Endpoint, ...] = ()
    locality: Locality | None = None
    """Where the service's ready endpoints run (see :func:`service_locality`); None is reported."""
    locality_note: str = ""
    """Why the locality is missing or only a region (empty when exact)."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.cluster, self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} in {self.cluster}"

    def fqdn(self, domain: str = "cluster.local") -> str:
        return f"{self.name}.{self.namespace}.svc.{domain}"

    def localities(self) -> list[Locality]:
        return sorted({e.locality for e in self.endpoints if e.locality is not None})

    @property
    def headless(self) -> bool:
        return not self.cluster_ip or self.cluster_ip == "None"


@dataclass(frozen=True, slots=True)
class Mesh:
    """An Istio control plane, named the Gloo Mesh way: ``istiod-<namespace>-<cluster>``."""

    name: str
    cluster: str
    namespace: str
    version: str = ""


@dataclass(frozen=True, slots=True)
class Gateway:
    """The east-west gateway through which other clusters reach this cluster's services."""

    cluster: str
    namespace: str
    name: str
    address: str
    port: int


@dataclass
class ClusterState:
    name: str
    context: str = ""
    nodes: dict[str, Locality | None] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    meshes: list[Mesh] = field(default_factory=list)
    gateways: list[Gateway] = field(default_factory=list)
    managed: list[dict[str, Any]] = field(default_factory=list)
    """Live objects we own (:func:`is_owned`: label *and* sources annotation), as the API server
    returned them — or, for those found equal to their desired object as they were listed
    (:attr:`in_sync`), what is kept of them (:func:`settled_view`). Only these are ever compared,
    configured or pruned as ours. Read, never changed in place."""
    claimed: list[dict[str, Any]] = field(default_factory=list)
    """Live objects carrying our label but not our sources annotation: someone copied the label (or
    an old tool set it). Not ours: a desired object of the same name is a conflict unless adopted,
    and they are never pruned."""
    in_sync: set[tuple[str, str, str]] = field(default_factory=set)
    """(kind, namespace, name) of objects in :attr:`managed` found equal to their desired object
    as they were listed (discovery asks the engine's comparison before keeping a listed object).
    Of those, :attr:`managed` keeps only what is read afterwards (:func:`settled_view`): nothing is
    left to diff, apply or prune for them, so their bodies need not outlive their LIST page."""
    error: str | None = None
    """Why discovery failed; a failed cluster is excluded from the run and never pruned."""
    notes: list[str] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return self.error is None

    def localities(self) -> Counter[Locality]:
        """How many nodes sit in each locality (nodes without labels are not counted)."""
        return Counter(loc for loc in self.nodes.values() if loc is not None)

    def mesh(self) -> Mesh | None:
        return self.meshes[0] if self.meshes else None

    def gateway(self) -> Gateway | None:
        return self.gateways[0] if self.gateways else None

    def release_compared(self) -> None:
        """Once every object has been compared: keep of our live objects only what is read after
        the sync, the ``status`` istiod wrote on some of them (:func:`control_plane_messages`)
        with their identity. The others are dropped from :attr:`managed`; :attr:`claimed` is
        emptied.

        A pass holds every listed object of ours until its sync is done: ~15 MB at 1,000
        services in 3 clusters. Status, built next, needs about as much of its own; releasing
        the bodies first lets it reuse that memory instead of adding to the pass's peak. New dicts
        are made (the listed objects may be shared: a snapshot export, a watch cache). The services
        and nodes translation read go too (~4 MB at 1,000 services): status reads of a cluster
        only whether it was reachable.
        """
        self.managed = [_status_view(o) for o in self.managed if o.get("status")]
        self.claimed = []
        self.services, self.nodes = [], {}

    def add_owned(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Sort listed objects of our kinds into :attr:`managed` (ours: :func:`is_owned`) and
        :attr:`claimed` (our label only); objects without our label are left out."""
        for o in objects:
            if str(o.get("kind", "")) not in MANAGED_KINDS:
                continue
            # (not copied: what is listed is only read; a snapshot's or a watch cache's are dicts too)
            if is_owned(o):
                self.managed.append(o if type(o) is dict else dict(o))
            elif has_our_label(o):
                self.claimed.append(o if type(o) is dict else dict(o))
        self.managed.sort(key=_object_order)
        self.claimed.sort(key=_object_order)

    def forget_owned(self) -> None:
        """Drop what was listed of our kinds (to list them again)."""
        self.managed, self.claimed, self.in_sync = [], [], set()


@dataclass(frozen=True)
class ControlPlaneMessage:
    """An analysis message istiod wrote into an Istio object's ``status.validationMessages``.

    istiod does this with ``PILOT_ENABLE_STATUS`` and analysis enabled (``istioctl analyze`` in the
    control plane): e.g. ``IST0101 ReferencedResourceNotFound`` for a route to a subset no
    DestinationRule defines. The message is about the object as istiod last analysed it.
    """

    code: str
    name: str
    level: str
    """ERROR, WARNING or INFO."""
    text: str

    def format(self) -> str:
        what = " ".join(p for p in (self.code, self.name) if p)
        return f"{self.level} {what}" + (f": {self.text}" if self.text else "")


ANALYSIS_NAMES = {
    "IST0101": "ReferencedResourceNotFound",
    "IST0104": "GatewayPortNotOnWorkload",
    "IST0106": "SchemaValidationError",
    "IST0109": "ConflictingMeshGatewayVirtualServiceHosts",
    "IST0112": "VirtualServiceDestinationPortSelectorRequired",
    "IST0128": "NoServerCertificateVerificationDestinationLevel",
    "IST0132": "VirtualServiceHostNotFoundInGateway",
    "IST0134": "ServiceEntryAddressesRequired",
    "IST0173": "DestinationRuleSubsetNotSelectPods",
}
"""Names of the analysis codes most likely on objects we write: istiod's status carries only the code
and a documentation URL (https://istio.io/latest/docs/reference/config/analysis/)."""

_LEVELS = {"ERROR": "ERROR", "ERR": "ERROR", "WARNING": "WARNING", "WARN": "WARNING", "INFO": "INFO"}


def control_plane_messages(obj: Mapping[str, Any]) -> list[ControlPlaneMessage]:
    """istiod's analysis messages on a live object, or [] (none, or written for an older generation)."""
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return []
    raw = status.get("validationMessages")
    if not isinstance(raw, list) or not raw:
        return []
    observed = status.get("observedGeneration")
    generation = (obj.get("metadata") or {}).get("generation")
    if observed not in (None, "") and generation is not None and str(observed) != str(generation):
        return []  # stale: istiod has not analysed the object as it is now
    out = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        found = item.get("type")
        kind: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        code = str(kind.get("code") or item.get("code") or "")
        name = str(kind.get("name") or ANALYSIS_NAMES.get(code, ""))
        level = _LEVELS.get(str(item.get("level") or "").upper(), str(item.get("level") or "INFO").upper())
        text = str(item.get("message") or item.get("description") or item.get("documentationUrl") or "")
        out.append(ControlPlaneMessage(code, name, level, text))
    return out


def _status_view(
    obj: Mapping[str, Any], keys: tuple[str, ...] = ("name", "namespace", "generation")
) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in keys if k in meta},
    }
    if "status" in obj:
        out["status"] = obj["status"]
    return out


def settled_view(live: Mapping[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """What is kept of a live object of ours found equal to ``desired`` (:attr:`ClusterState.in_sync`).

    Everything read of it afterwards is as in ``desired`` — identity, ownership markers (its
    labels and sources annotation are fields we own), the routes of a VirtualService — except
    istiod's ``status``: so ``desired`` itself, unless the live object carries a status, then its
    identity, markers and status (what :func:`control_plane_messages` reads). Nothing is copied
    for the thousands of unchanged objects of a no-op pass.
    """
    if "status" not in live:
        return desired
    return _status_view(live, ("name", "namespace", "generation", "labels", "annotations"))


@dataclass
class Inventory:
    clusters: dict[str, ClusterState] = field(default_factory=dict)
    _by_label: dict[tuple[str, str], list[Service]] | None = field(default=None, repr=False, compare=False)
    _by_key: dict[tuple[str, str, str], Service] | None = field(default=None, repr=False, compare=False)

    def reachable(self) -> list[ClusterState]:
        return [c for name, c in sorted(self.clusters.items()) if c.reachable]

    def release_compared(self) -> None:
        """After the sync: see :meth:`ClusterState.release_compared`."""
        for state in self.clusters.values():
            state.release_compared()
        self.forget_index()

    def services(self) -> Iterable[Service]:
        for cluster in self.reachable():
            yield from cluster.services

    def forget_index(self) -> None:
        """After a cluster's reachability changed: services are looked up afresh."""
        self._by_label = self._by_key = None

    def _index(self) -> None:
        by_label: dict[tuple[str, str], list[Service]] = defaultdict(list)
        by_key: dict[tuple[str, str, str], Service] = {}
        for svc in self.services():
            by_key[svc.key] = svc
            for pair in svc.labels.items():
                by_label[pair].append(svc)
        self._by_label, self._by_key = dict(by_label), by_key

    def service(self, cluster: str, namespace: str, name: str) -> Service | None:
        """A service of a reachable cluster, by identity (indexed: selection stays linear in policies)."""
        if self._by_key is None:
            self._index()
        assert self._by_key is not None
        return self._by_key.get((cluster, namespace, name))

    def services_with_labels(self, labels: Mapping[str, str]) -> list[Service]:
        """Services of reachable clusters carrying every given label (all services when none given)."""
        if not labels:
            return list(self.services())
        if self._by_label is None:
            self._index()
        assert self._by_label is not None
        buckets = [self._by_label.get(pair, []) for pair in labels.items()]
        smallest = min(buckets, key=len)
        return [s for s in smallest if all(s.labels.get(k) == v for k, v in labels.items())]

    def mesh_by_name(self, name: str) -> Mesh | None:
        for cluster in self.clusters.values():
            for mesh in cluster.meshes:
                if mesh.name == name:
                    return mesh
        return None


# --------------------------------------------------------------------------------------------------
# raw objects -> ClusterState


# What build_cluster_state reads of the kinds it only reads, and nothing more. Discovery decodes the
# LISTs of these kinds straight into these shapes (``kube.page_decoder``): the fields they do not
# name — managedFields, a pod's targetRef, uids, timestamps, selectors — are skipped while parsing
# and never built. 1,000 Services decode to 1.8 MB instead of 5.3 (2.9 once their managedFields
# were dropped after decoding, as discovery used to: the saving is mostly at the pass's peak). A
# field read below must be named here. Leaves are ``Any`` and every map or list may be null (the
# API server writes an EndpointSlice without endpoints as ``"endpoints": null``): values are
# checked where they are read, as for any object.


class _ReadMeta(TypedDict, total=False):
    name: Any
    namespace: Any
    labels: dict[str, Any] | None


class _ReadNode(TypedDict, total=False):
    kind: Any
    metadata: _ReadMeta | None


class _ReadServiceSpec(TypedDict, total=False):
    ports: Any
    clusterIP: Any
    type: Any
    externalIPs: Any


class _ReadService(TypedDict, total=False):
    kind: Any
    metadata: _ReadMeta | None
    spec: _ReadServiceSpec | None
    status: Any


class _ReadEndpoint(TypedDict, total=False):
    addresses: Any
    conditions: Any
    nodeName: Any
    zone: Any


class _ReadEndpointSlice(TypedDict, total=False):
    kind: Any
    metadata: _ReadMeta | None
    addressType: Any
    ports: Any
    endpoints: list[_ReadEndpoint] | None


class _ReadContainer(TypedDict, total=False):
    image: Any


class _ReadPodSpec(TypedDict, total=False):
    containers: list[_ReadContainer] | None


class _ReadTemplate(TypedDict, total=False):
    spec: _ReadPodSpec | None


class _ReadDeploymentSpec(TypedDict, total=False):
    template: _ReadTemplate | None


class _ReadDeployment(TypedDict, total=False):
    kind: Any
    metadata: _ReadMeta | None
    spec: _ReadDeploymentSpec | None


READ_SHAPES: dict[str, type] = {
    "Node": _ReadNode,
    "Service": _ReadService,
    "EndpointSlice": _ReadEndpointSlice,
    "Deployment": _ReadDeployment,
}
"""Per kind, the part of an object :func:`build_cluster_state` reads (see above). Our own kinds are
read whole: they are compared, diffed and pruned."""


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _meta(obj: Mapping[str, Any], key: str, default: str = "") -> str:
    return str((obj.get("metadata") or {}).get(key) or default)


def has_our_label(obj: Mapping[str, Any]) -> bool:
    """The label discovery selects on; necessary for ownership but not sufficient (anyone can copy it)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE)


def _source_refs(obj: Mapping[str, Any]) -> list[str]:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    text = str(annotations.get(SOURCES_ANNOTATION) or "")
    return [ref for ref in map(str.strip, text.split(",")) if ref.count("/") >= 2]


def sources_of(obj: Mapping[str, Any]) -> tuple[ObjectKey, ...]:
    """The policies an object says it was generated from (our sources annotation)."""
    return tuple(ObjectKey.parse(ref) for ref in _source_refs(obj))


def is_owned(obj: Mapping[str, Any]) -> bool:
    """The one definition of "ours", used by inventory, diff, apply and prune alike.

    An object is ours only when it carries BOTH our managed-by label and a sources annotation naming
    at least one policy: a label alone is easy to copy by hand (or by a Helm chart's defaults), and
    treating such an object as ours would overwrite and later prune something we never made.
    """
    return has_our_label(obj) and bool(_source_refs(obj))  # (names one: no need to parse them)


def build_cluster_state(name: str, objects: Iterable[Mapping[str, Any]], context: str = "") -> ClusterState:
    """Build a cluster's state from its raw objects (any order, any mix of kinds)."""
    by_kind: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for obj in objects:
        by_kind[str(obj.get("kind", ""))].append(obj)
    builder = StateBuilder(name, context)
    for kind in StateBuilder.ORDER:
        for obj in by_kind[kind]:
            builder.add(kind, obj)
    return builder.finish()


class StateBuilder:
    """Builds a :class:`ClusterState` from objects given kind by kind, in :attr:`ORDER`, each read
    once when it is given: discovery gives each listed object as it is decoded and keeps none of
    them (1,000 services and their slices decode to ~4 MB per cluster; what is built of them to
    less than 1 MB)."""

    ORDER = ("Node", "EndpointSlice", "Service", "Deployment", *MANAGED_KINDS)
    """Nodes before slices (an endpoint's locality is its node's), slices before services."""

    def __init__(self, name: str, context: str = "") -> None:
        self.state = ClusterState(name=name, context=context)
        self._zone_regions: dict[str, str] = {}
        self._cluster_locality: Locality | None = None
        self._nodes_done = False
        self._endpoints: dict[tuple[str, str], dict[str, Endpoint]] = defaultdict(dict)
        self._services: list[tuple[tuple[str, str], Service]] = []
        self._gateways: list[tuple[int, Gateway]] = []
        self._istiods: list[tuple[tuple[str, str], str, str]] = []
        self._owned: list[Mapping[str, Any]] = []
        self._first_labels: dict[tuple[str, str], Mapping[str, str]] = {}

    def add(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind == "Node":
            if self._nodes_done:
                raise ValueError(
                    f"{self.state.name}: nodes are given before anything else (StateBuilder.ORDER)"
                )
            labels = _labels(obj)
            self.state.nodes[_meta(obj, "name")] = Locality.from_labels(labels)
            self._zone_regions.update(_zone_regions([obj]))
            return
        if not self._nodes_done:
            self._nodes_done = True
            self._cluster_locality = _single_locality(self.state)
        if kind == "EndpointSlice":
            owner = _labels(obj).get("kubernetes.io/service-name")
            if owner:
                _add_endpoints(
                    self._endpoints[(_meta(obj, "namespace", "default"), owner)],
                    obj,
                    self.state.nodes,
                    self._zone_regions,
                    self._cluster_locality,
                )
        elif kind == "Service":
            self._add_service(obj)
        elif kind == "Deployment":
            if _labels(obj).get("app") == "istiod":
                order = (_meta(obj, "namespace"), _meta(obj, "name"))
                self._istiods.append((order, _meta(obj, "namespace", "istio-system"), _image_tag(obj)))
        elif kind in MANAGED_KINDS:
            self._owned.append(obj)

    def _add_service(self, svc: Mapping[str, Any]) -> None:
        ns, svc_name = _meta(svc, "namespace", "default"), _meta(svc, "name")
        spec = svc.get("spec") or {}
        ports = tuple(
            ServicePort(
                name=str(p.get("name") or ""),
                port=int(p["port"]),
                target_port=p.get("targetPort"),
                protocol=str(p.get("protocol") or "TCP"),
                app_protocol=p.get("appProtocol"),
            )
            for p in spec.get("ports") or []
            if "port" in p
        )
        found = self._endpoints.get((ns, svc_name), {})  # (a snapshot may list a service twice)
        endpoints = tuple(sorted(found.values(), key=lambda e: e.address))
        locality, note = service_locality(endpoints, self._cluster_locality)
        service = Service(
            cluster=self.state.name,
            namespace=ns,
            name=svc_name,
            labels=_labels(svc),
            ports=ports,
            cluster_ip=spec.get("clusterIP"),
            type=str(spec.get("type") or "ClusterIP"),
            endpoints=endpoints,
            locality=locality,
            locality_note=note,
        )
        self._services.append(((_meta(svc, "namespace"), svc_name), service))
        gateway = _gateway(self.state.name, svc)
        if gateway is not None:
            # a dedicated east-west gateway before an ingress gateway with a tls port (as the first
            # service of that name says)
            first = self._first_labels.setdefault((ns, svc_name), service.labels)
            self._gateways.append((0 if first.get("istio") == "eastwestgateway" else 1, gateway))

    def finish(self) -> ClusterState:
        state = self.state
        if not self._nodes_done:
            self._cluster_locality = _single_locality(state)
        self._services.sort(key=lambda pair: pair[0])
        state.services = [svc for _, svc in self._services]
        self._gateways.sort(key=lambda pair: (pair[0], pair[1].namespace, pair[1].name))
        state.gateways = [gateway for _, gateway in self._gateways]
        for _, ns, version in sorted(self._istiods, key=lambda t: t[0]):
            mesh_name = f"istiod-{ns}-{state.name}"
            if any(m.name == mesh_name for m in state.meshes):
                continue  # revisions share a mesh
            state.meshes.append(Mesh(name=mesh_name, cluster=state.name, namespace=ns, version=version))
        state.add_owned(self._owned)
        if state.nodes and not state.localities():
            state.notes.append(
                f"no node carries {REGION_LABEL}/{ZONE_LABEL} labels: endpoints of this cluster have no locality"
            )
        return state


def _object_order(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(obj.get("kind", "")), _meta(obj, "namespace"), _meta(obj, "name"))


def _zone_regions(nodes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """zone -> region, from nodes that carry both labels (zone names are unique per region)."""
    out: dict[str, str] = {}
    for node in nodes:
        labels = _labels(node)
        zone = labels.get(ZONE_LABEL) or labels.get(LEGACY_ZONE_LABEL)
        region = labels.get(REGION_LABEL) or labels.get(LEGACY_REGION_LABEL)
        if zone and region:
            out[zone] = region
    return out


def _single_locality(state: ClusterState) -> Locality | None:
    """The cluster's locality when every node is labelled and all agree (then any pod is there)."""
    localities = set(state.nodes.values())
    if len(localities) == 1:
        return next(iter(localities))
    return None


def _add_endpoints(
    out: dict[str, Endpoint],
    es: Mapping[str, Any],
    nodes: Mapping[str, Locality | None],
    zone_regions: Mapping[str, str],
    cluster_locality: Locality | None,
) -> None:
    """The ready endpoints of one slice, into ``out`` by address (the first slice naming an address
    gives it)."""
    if es.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
        return
    ports = tuple(
        sorted((str(p.get("name") or ""), int(p["port"])) for p in es.get("ports") or [] if p.get("port"))
    )
    for ep in es.get("endpoints") or []:
        conditions = ep.get("conditions") or {}
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        node = ep.get("nodeName")
        locality = nodes.get(node) if node else None
        if locality is None and ep.get("zone"):
            zone = str(ep["zone"])
            region = zone_regions.get(zone)
            if region:
                locality = Locality(region, zone)
        if locality is None and node is None:
            locality = cluster_locality
        for address in ep.get("addresses") or []:
            if address in out:
                continue
            out[address] = Endpoint(address=str(address), ports=ports, node=node, locality=locality)


def service_locality(
    endpoints: Iterable[Endpoint], cluster_locality: Locality | None
) -> tuple[Locality | None, str]:
    """The locality one address for the whole service (its ClusterIP) can truthfully carry.

    All ready endpoints in one locality: that locality. Several zones of one region: the region
    only. Several regions, or nodes without topology labels: none (reported). No ready endpoints:
    the cluster's locality when every node shares one, since any pod would run there.
    """
    endpoints = list(endpoints)
    if not endpoints:
        if cluster_locality is not None:
            return cluster_locality, ""
        return None, "no ready endpoints, and the cluster's nodes are not all in one locality"
    localities = {e.locality for e in endpoints}
    if None in localities:
        return None, "some ready endpoints run on nodes without topology.kubernetes.io/region/zone labels"
    known = sorted(loc for loc in localities if loc is not None)
    if len(known) == 1:
        return known[0], ""
    regions = sorted({loc.region for loc in known})
    if len(regions) == 1:
        return Locality(regions[0]), f"endpoints span {len(known)} zones of {regions[0]}; the region is used"
    return None, f"endpoints span regions {', '.join(regions)}; one address cannot carry one locality"


def _gateway(cluster: str, svc: Mapping[str, Any]) -> Gateway | None:
    labels = _labels(svc)
    if not any(labels.get(k) == v for k, v in EAST_WEST_GATEWAY_LABELS):
        return None
    spec = svc.get("spec") or {}
    ports = spec.get("ports") or []
    port = None
    for p in ports:
        if str(p.get("name", "")).startswith("tls") or p.get("port") == DEFAULT_GATEWAY_PORT:
            port = int(p["port"])
            break
    if port is None:
        return None
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addresses = [str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname")]
    addresses += [str(a) for a in spec.get("externalIPs") or []]
    if not addresses:
        return None
    return Gateway(
        cluster=cluster,
        namespace=_meta(svc, "namespace"),
        name=_meta(svc, "name"),
        address=addresses[0],
        port=port,
    )


def _image_tag(deployment: Mapping[str, Any]) -> str:
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    for c in containers:
        image = str(c.get("image") or "")
        if ":" in image.rsplit("/", 1)[-1]:
            return image.rsplit(":", 1)[-1]
    return ""
