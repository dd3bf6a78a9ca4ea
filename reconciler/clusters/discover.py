"""Discovery: one LIST per kind per cluster, all clusters in parallel, each with a deadline.

A cluster that cannot be listed completely is *unreachable* for this run: it is reported, nothing is
rendered for it, nothing is pruned in it, and nothing elsewhere is changed on its account.
"""

from __future__ import annotations

import concurrent.futures
import logging
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
    KubeClient,
    KubeError,
    Resource,
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
        field_sets: dict[bytes, Any] = {}
        for resource, selector in DISCOVERY_LISTS:
            try:
                if time.monotonic() - start > cluster_timeout:
                    raise KubeError(0, f"discovery took longer than {cluster_timeout:.0f}s", "Timeout")
                items = client.list(resource, label_selector=selector)
                # (a snapshot, keep_raw, writes objects as listed: shared sets would be YAML aliases)
                if not keep_raw and resource in _OURS:
                    _share_field_sets(items, field_sets)
                elif not keep_raw:
                    _drop_managed_fields(items)
                objects.extend(items)
            except KubeError as exc:
                return target, None, _explain(exc, target, resource), time.monotonic() - start
        return target, objects, None, time.monotonic() - start

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


_OURS = frozenset(ISTIO_RESOURCES.values())


# Memory: what a LIST decodes to is most of a pass's peak (at K=1000, ~75 MB for 15 MB of JSON, three
# clusters listed at once), and ``managedFields`` are about half of it. Both helpers below run as
# each LIST arrives, so the peak is lowered while the other kinds and clusters are still listed.


def _drop_managed_fields(items: list[dict[str, Any]]) -> None:
    """Forget who manages the nodes, services and endpoints we read: nothing reads it (3.5 of the
    5.3 MB 1,000 Services decode to)."""
    for item in items:
        meta = item.get("metadata")
        if isinstance(meta, dict):
            meta.pop("managedFields", None)


def _share_field_sets(items: list[dict[str, Any]], shared: dict[bytes, Any]) -> None:
    """Make equal ``fieldsV1`` sets of our kinds one object (we read them: ownership, drift).

    A field set mirrors the shape of the object it describes, so the thousands of objects one
    policy kind renders hold a handful of distinct sets, yet each decodes to its own copy (4.7 of
    the 6.7 MB 1,000 DestinationRules decode to). Field sets are only ever read, never changed in
    place (:mod:`reconciler.engine.normalize` builds new sets), so sharing them is safe.
    """
    for item in items:
        for entry in (item.get("metadata") or {}).get("managedFields") or []:
            fields = entry.get("fieldsV1") if isinstance(entry, dict) else None
            if isinstance(fields, dict):
                entry["fieldsV1"] = shared.setdefault(msgspec.json.encode(fields), fields)


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
