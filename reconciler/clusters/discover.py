"""Discovery: one LIST per kind per cluster, all clusters in parallel, each with a deadline.

A cluster that cannot be listed completely is *unreachable* for this run: it is reported, nothing is
rendered for it, nothing is pruned in it, and nothing elsewhere is changed on its account.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from reconciler.clusters.inventory import (
    ISTIO_CRDS_MISSING,
    ISTIOD_SELECTOR,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    READ_SHAPES,
    ClusterState,
    Inventory,
    build_cluster_state,
    unavailable,
)
from reconciler.clusters.kube import (
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    ISTIO_RESOURCES,
    NODES,
    SERVICES,
    Decoder,
    KubeClient,
    KubeError,
    Resource,
    decode_json,
    page_decoder,
)
from reconciler.clusters.targets import ClusterTarget

log = logging.getLogger(__name__)

OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"

DISCOVERY_LISTS: tuple[tuple[Resource, str | None], ...] = (
    (NODES, None),
    (SERVICES, None),
    (ENDPOINT_SLICES, None),
    (DEPLOYMENTS, ISTIOD_SELECTOR),
    *((r, OWNED_SELECTOR) for r in ISTIO_RESOURCES.values()),
)
"""What discovery LISTs in every cluster (resource, label selector)."""


@dataclass
class Discovery:
    inventory: Inventory
    raw: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    clients: dict[str, KubeClient] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cached: set[str] = field(default_factory=set)
    """Clusters whose state came from ``serve``'s watch caches (no LIST sent)."""

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


def connect(targets: Sequence[ClusterTarget], timeout: float) -> tuple[dict[str, KubeClient], dict[str, str]]:
    """API clients per cluster; a cluster whose credentials cannot be loaded is an error, not a crash."""
    clients: dict[str, KubeClient] = {}
    errors: dict[str, str] = {}
    for t in targets:
        try:
            clients[t.name] = KubeClient(t.api_client(), t.name, timeout=timeout)
        except Exception as exc:  # kubeconfig loader raises many types
            errors[t.name] = f"cannot load credentials for context {t.context}: {exc}"
    return clients, errors


def discover(
    targets: Sequence[ClusterTarget],
    *,
    timeout: float = 10.0,
    cluster_timeout: float = 60.0,
    workers: int = 8,
    connected: tuple[dict[str, KubeClient], dict[str, str]] | None = None,
    cached: Mapping[str, list[dict[str, Any]] | None] | None = None,
    keep_raw: bool = True,
) -> Discovery:
    """LIST every cluster; ``connected`` reuses clients opened earlier (e.g. to take the run Lease).

    ``cached``: objects per cluster from synced watch caches (``WatchCaches.snapshot``); those
    clusters are not LISTed. A cluster mapped to None (cache not synced) is LISTed as usual.
    ``keep_raw``: keep every listed object in :attr:`Discovery.raw` (snapshots, a second plan).
    """
    clients, errors = connected if connected is not None else connect(targets, timeout)
    result = Discovery(Inventory(), clients=clients)
    for name, message in errors.items():
        context = next(t.context for t in targets if t.name == name)
        result.inventory.clusters[name] = ClusterState(name=name, context=context, error=message)

    def one(target: ClusterTarget) -> tuple[ClusterTarget, list[dict[str, Any]] | None, str | None, float]:
        start = time.monotonic()
        from_cache = (cached or {}).get(target.name)
        if from_cache is not None:
            result.cached.add(target.name)
            return target, from_cache, None, 0.0
        client = clients[target.name]
        objects: list[dict[str, Any]] = []
        for resource, selector in DISCOVERY_LISTS:
            try:
                if time.monotonic() - start > cluster_timeout:
                    raise KubeError(0, f"discovery took longer than {cluster_timeout:.0f}s", "Timeout")
                # Memory: what the LISTs decode to is most of a pass's peak (three clusters are
                # listed at once). Of the kinds we only read, only what is read is decoded; equal
                # parts of ours are shared as each page is decoded. Not for a snapshot (keep_raw):
                # it writes the objects as listed (and shared parts would be YAML aliases).
                decoder: Decoder | None = None
                if not keep_raw:
                    shape = READ_SHAPES.get(resource.kind)
                    decoder = page_decoder(shape) if shape is not None else sharing
                objects.extend(client.list(resource, label_selector=selector, decoder=decoder))
            except KubeError as exc:
                return target, None, _explain(exc, target, resource), time.monotonic() - start
        return target, objects, None, time.monotonic() - start

    sharing = _SharingDecoder()
    reachable = [t for t in targets if t.name in clients]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(reachable) or 1))) as pool:
        for target, objects, error, seconds in pool.map(one, reachable):
            result.seconds[target.name] = seconds
            if objects is None:
                log.warning("%s", unavailable(target.name, error or ""))
                result.inventory.clusters[target.name] = ClusterState(
                    name=target.name, context=target.context, error=error
                )
                continue
            if keep_raw:
                result.raw[target.name] = objects
            result.inventory.clusters[target.name] = build_cluster_state(
                target.name, objects, context=target.context
            )
    return result


class _SharingDecoder:
    """Decodes a LIST page of our kinds and shares its equal parts (:func:`_share_equal_parts`)
    before another page is decoded, across all clusters.

    A page of 1,000 ServiceEntries decodes to ~8 MB, ~3 MB once shared. Clusters are listed in
    parallel, so without the lock three pages could wait decoded but not yet shared; with it one
    does. It costs no parallelism: decoding and sharing hold the GIL anyway, and the requests
    themselves are not under the lock. Sharing across clusters also finds more equal parts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shared: dict[Any, Any] = {}

    def decode(self, data: bytes, /) -> Any:
        with self._lock:
            page = decode_json(data)
            items = page.get("items") if isinstance(page, dict) else None
            if isinstance(items, list):
                _share_equal_parts(items, self._shared)
            return page


def _share_equal_parts(items: list[dict[str, Any]], shared: dict[Any, Any]) -> None:
    """Make equal parts of our listed objects one object: halves what they decode to.

    Our objects are many renderings of a few shapes, yet each decodes to its own copies. At 1,000
    services, one cluster's 2,167 objects decode to 14.7 MB; with the parts below shared, 4.8 MB:

    - ``fieldsV1`` sets (they mirror the shape of the object they describe) and whole
      ``managedFields`` entries;
    - ``labels`` and ``annotations`` maps;
    - each top-level map of ``spec``, and each list of maps there with the maps in it (the
      gateway endpoints every ServiceEntry lists, a DestinationRule's ``trafficPolicy``).

    Equal means equal JSON (``msgspec`` encodes in the order decoded, so equal bytes decode to equal
    values; ``1`` and ``1.0``, or maps ordered differently, are just not shared). Costs ~7 µs per
    object (2,167 in ~15 ms, about what decoding them costs). Safe because listed objects are only
    ever read, never changed in place (:mod:`reconciler.engine.normalize` builds new objects), the
    same rule as for translated objects (docs/architecture.md).
    """
    encode = msgspec.json.encode
    for item in items:
        if not isinstance(item, dict):
            continue  # not an object: left as it is, for the reader to report
        # A part is shared between objects, never twice within one: a map appearing twice in one
        # object would be written as a YAML alias (``&id001``) in a diff or a snapshot.
        used: set[int] = set()
        meta = item.get("metadata")
        if isinstance(meta, dict):
            for key in ("labels", "annotations"):
                value = meta.get(key)
                if isinstance(value, dict):
                    meta[key] = _one(shared, used, encode(value), value)
            entries = meta.get("managedFields")
            if isinstance(entries, list):
                meta["managedFields"] = [_shared_entry(e, shared, used) for e in entries]
        spec = item.get("spec")
        if isinstance(spec, dict):
            for key, value in spec.items():
                if isinstance(value, dict):
                    spec[key] = _one(shared, used, encode(value), value)
                elif isinstance(value, list) and value and isinstance(value[0], dict):
                    # A list of maps: the maps shared, then the list keyed by their identities
                    # (cheaper than encoding it again; the shared maps outlive the key). Lists of
                    # strings (hosts, addresses) name one object each: not worth a lookup.
                    value = [_one(shared, used, encode(v), v) if isinstance(v, dict) else v for v in value]
                    spec[key] = _one(shared, used, ("list", *map(id, value)), value)


def _one(shared: dict[Any, Any], used: set[int], key: Any, value: Any) -> Any:
    """The shared value equal to ``value`` (``key`` says what it is), unless that one is already
    part of the same object (``used``): then ``value`` itself."""
    found = shared.setdefault(key, value)
    if id(found) in used:
        return value
    used.add(id(found))
    return found


def _shared_entry(entry: Any, shared: dict[Any, Any], used: set[int]) -> Any:
    """One ``managedFields`` entry, its field set shared first. The entry is then keyed by that
    set's identity and its other values, which is cheaper than encoding it again; only entries
    whose other values are all strings (manager, operation, time...) are shared, so that no two
    values equal only to Python (``1``, ``1.0``, ``True``) are ever taken for one."""
    fields = entry.get("fieldsV1") if isinstance(entry, dict) else None
    if not isinstance(fields, dict):
        return entry
    entry["fieldsV1"] = fields = _one(shared, used, msgspec.json.encode(fields), fields)
    key: list[Any] = ["managedFields"]
    for name, value in entry.items():
        if name == "fieldsV1":
            key.append((name, id(value)))
        elif type(value) is str:
            key.append((name, value))
        else:
            return entry
    return _one(shared, used, tuple(key), entry)


def _explain(exc: KubeError, target: ClusterTarget, resource: Resource) -> str:
    """Why a cluster could not be discovered, in words that say what to fix."""
    if exc.status == 401:
        return f"unauthorized: the credentials of context {target.context} were rejected"
    if exc.status == 403:
        return f"forbidden: {exc.message} (see the ClusterRole in cronjob.yaml for the permissions needed)"
    if exc.status == 404 and resource in ISTIO_RESOURCES.values():
        # A LIST of a kind the server does not serve is a bare "404 page not found": the CRD is missing.
        return (
            f"{ISTIO_CRDS_MISSING} in cluster {target.name} "
            f"({resource.plural}.{resource.api_version.split('/')[0]} not served); install Istio there "
            "(or its CRDs) — nothing is written to or pruned in this cluster until then"
        )
    return str(exc)
