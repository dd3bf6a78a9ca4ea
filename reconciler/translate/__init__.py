"""Translate stage: ``(policies, inventory) -> desired Istio objects per cluster + per-policy outcomes``.

Pure and deterministic: no clients, no clock, no randomness. The same input gives byte-identical
output (objects and keys sorted), so diffs stay clean. This is the place to look for "where does
DestinationRule field X come from".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from reconciler.clusters.inventory import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCES_ANNOTATION, Inventory
from reconciler.findings import ObjectKey
from reconciler.policy.loader import PolicySet
from reconciler.policy.model import VirtualDestination, VirtualMesh
from reconciler.translate.names import NameAllocator, allocate_virtual_ips
from reconciler.translate.result import DesiredObject, PolicyOutcome, SelectedDestination, Translation
from reconciler.translate.traffic_policy import translate_traffic_policies
from reconciler.translate.virtual_destination import translate_virtual_destinations

__all__ = ["DesiredObject", "PolicyOutcome", "SelectedDestination", "Translation", "translate"]

MANAGED_KINDS = ("ServiceEntry", "DestinationRule", "VirtualService")
"""Istio kinds (networking.istio.io/v1) this reconciler writes, in apply order."""


@dataclass
class _Context:
    cluster_domain: str = "cluster.local"
    names: NameAllocator = field(default_factory=NameAllocator)

    def metadata(self, name: str, namespace: str, sources: Iterable[ObjectKey]) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": {SOURCES_ANNOTATION: ",".join(sorted(k.ref for k in sources))},
        }

    def add(self, obj: DesiredObject, out: Translation) -> None:
        out.objects.setdefault(obj.cluster, []).append(obj)


def translate(
    policies: PolicySet,
    inventory: Inventory,
    *,
    configured_clusters: Iterable[str] | None = None,
    cluster_domain: str = "cluster.local",
) -> Translation:
    """Translate valid policies against the discovered clusters.

    ``configured_clusters`` are all clusters of this run, reachable or not (defaults to the
    inventory's); a policy whose output depends on an unreachable one is rendered from what is known
    and marked so the engine holds it rather than changing live objects on partial information.
    """
    out = Translation()
    ctx = _Context(cluster_domain=cluster_domain)
    configured = set(configured_clusters) if configured_clusters is not None else set(inventory.clusters)
    for p in policies.policies:
        out.outcome(p.key)

    meshes = {p.key: p.obj for p in policies.by_kind("VirtualMesh") if isinstance(p.obj, VirtualMesh)}
    vd_policies = policies.by_kind("VirtualDestination")
    addresses = allocate_virtual_ips(
        [p.key for p in vd_policies] + [k for k in policies.invalid if k.kind == "VirtualDestination"]
    )
    translate_virtual_destinations(vd_policies, meshes, inventory, configured, addresses, ctx, out)

    valid_vds = {
        p.key: p.obj
        for p in vd_policies
        if isinstance(p.obj, VirtualDestination) and not out.outcome(p.key).blocking
    }
    translate_traffic_policies(policies.by_kind("TrafficPolicy"), valid_vds, inventory, configured, ctx, out)

    for key, outcome in out.outcomes.items():
        if outcome.blocking:
            _drop_objects_of(key, out)
    for cluster in out.objects:
        out.objects[cluster].sort(key=lambda o: (MANAGED_KINDS.index(o.kind), o.namespace, o.name))
    return out


def _drop_objects_of(key: ObjectKey, out: Translation) -> None:
    """An invalid policy contributes nothing; what it wrote before is held by the engine."""
    for cluster, objs in out.objects.items():
        out.objects[cluster] = [o for o in objs if key not in o.sources]
    out.outcome(key).objects.clear()
