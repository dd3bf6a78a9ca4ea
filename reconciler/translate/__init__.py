"""Translate stage: ``(policies, inventory) -> desired Istio objects per cluster + per-policy outcomes``.

Pure and deterministic: no clients, no clock, no randomness. The same input gives byte-identical
output (objects and keys sorted), so diffs stay clean. This is the place to look for "where does
DestinationRule field X come from".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.clusters.inventory import MANAGED_KINDS, Inventory
from reconciler.findings import ObjectKey, error
from reconciler.gcpause import cyclic_gc_paused
from reconciler.policy.loader import PolicySet
from reconciler.policy.model import TrafficPolicy, VirtualDestination, VirtualMesh
from reconciler.tenancy import DEFAULT_TENANCY, Tenancy
from reconciler.translate.context import TranslationContext
from reconciler.translate.names import allocate_virtual_ips
from reconciler.translate.result import DesiredObject, PolicyOutcome, SelectedDestination, Translation
from reconciler.translate.traffic_policy import translate_traffic_policies
from reconciler.translate.virtual_destination import translate_virtual_destinations

__all__ = [
    "MANAGED_KINDS",
    "TENANCY_VIOLATION",
    "DesiredObject",
    "PolicyOutcome",
    "SelectedDestination",
    "Translation",
    "translate",
]

TENANCY_VIOLATION = "NamespaceNotAllowed"
"""Finding code of a policy that would write outside its reconciler.yaml tenancy boundaries."""


def translate(
    policies: PolicySet,
    inventory: Inventory,
    *,
    configured_clusters: Iterable[str] | None = None,
    cluster_domain: str = "cluster.local",
    tenancy: Tenancy = DEFAULT_TENANCY,
) -> Translation:
    """Translate valid policies against the discovered clusters.

    ``configured_clusters`` are all clusters of this run, reachable or not (defaults to the
    inventory's); a policy whose output depends on an unreachable one is rendered from what is known
    and marked so the engine holds it rather than changing live objects on partial information.

    ``tenancy`` bounds the namespaces each policy may write into (by the policy's own namespace; the
    default refuses only the protected system namespaces). A policy that would write one object
    outside its boundaries is invalid as a whole and contributes nothing, like any invalid policy.
    """
    with cyclic_gc_paused():
        return _translate(policies, inventory, configured_clusters, cluster_domain, tenancy)


def _translate(
    policies: PolicySet,
    inventory: Inventory,
    configured_clusters: Iterable[str] | None,
    cluster_domain: str,
    tenancy: Tenancy,
) -> Translation:
    configured = set(configured_clusters) if configured_clusters is not None else set(inventory.clusters)
    # Only rendering tells where a policy writes (selected services' namespaces, the mesh's
    # namespace), so check the rendered objects. A violator is then translated *out* rather than its
    # objects dropped afterwards: objects are shared (one VirtualService per service merges every
    # TrafficPolicy for it, first in namespace/name order winning a field), and only a run without it
    # gives the others exactly what they would get had it never been written -- no field it won, no
    # conflict it caused, no name it took. Excluding one cannot send another policy into a new
    # namespace today, but repeating until nothing new is found keeps that true by construction.
    excluded: dict[ObjectKey, PolicyOutcome] = {}
    while True:
        out = _translate_once(policies, inventory, configured, cluster_domain, excluded)
        found = _tenancy_violations(out, tenancy, policies)
        if not found:
            break
        excluded.update(found)
    out.outcomes.update(excluded)
    return out


def _translate_once(
    policies: PolicySet,
    inventory: Inventory,
    configured: set[str],
    cluster_domain: str,
    excluded: Mapping[ObjectKey, PolicyOutcome],
) -> Translation:
    out = Translation()
    ctx = TranslationContext(cluster_domain=cluster_domain)
    for p in policies.policies:
        out.outcome(p.key)

    meshes = {p.key: p.obj for p in policies.by_kind(VirtualMesh)}
    all_vds = policies.by_kind(VirtualDestination)
    vd_policies = [p for p in all_vds if p.key not in excluded]
    # Addresses over every VirtualDestination, excluded and invalid ones included, so one becoming
    # invalid never moves another's virtual IP.
    addresses = allocate_virtual_ips(
        [p.key for p in all_vds] + [k for k in policies.invalid if k.kind == "VirtualDestination"]
    )
    translate_virtual_destinations(vd_policies, meshes, inventory, configured, addresses, ctx, out)

    valid_vds = {p.key: p.obj for p in vd_policies if not out.outcome(p.key).blocking}
    tps = [p for p in policies.by_kind(TrafficPolicy) if p.key not in excluded]
    translate_traffic_policies(tps, valid_vds, inventory, ctx, out)

    for key, outcome in out.outcomes.items():
        if outcome.blocking:
            _drop_objects_of(key, out)
    for cluster in out.objects:
        out.objects[cluster].sort(key=lambda o: (MANAGED_KINDS.index(o.kind), o.namespace, o.name))
    return out


def _tenancy_violations(
    out: Translation, tenancy: Tenancy, policies: PolicySet
) -> dict[ObjectKey, PolicyOutcome]:
    """Policies with an object outside their namespace boundaries: their outcome, made invalid.

    The outcome keeps what translation found (targets, selected services, warnings) so the status
    still says where the policy points; its objects are cleared because none of them is written.
    """
    verdicts: dict[tuple[str, str], str | None] = {}
    denied: dict[ObjectKey, dict[str, list[DesiredObject]]] = {}
    for obj in out.all_objects():
        for key in obj.sources:
            pair = (key.namespace, obj.namespace)
            if pair not in verdicts:
                verdicts[pair] = tenancy.check(*pair)
            if verdicts[pair] is not None:
                denied.setdefault(key, {}).setdefault(obj.namespace, []).append(obj)
    if not denied:
        return {}
    located = {p.key: p for p in policies.policies if p.key in denied}
    found: dict[ObjectKey, PolicyOutcome] = {}
    for key in sorted(denied):
        outcome = out.outcome(key)
        outcome.objects.clear()
        policy = located.get(key)
        for namespace in sorted(denied[key]):
            objs = sorted(denied[key][namespace], key=lambda o: o.ref)
            first = objs[0]
            more = f" (and {len(objs) - 1} more there)" if len(objs) > 1 else ""
            outcome.findings.append(
                error(
                    f"would write {first.kind} {first.namespace}/{first.name} in cluster {first.cluster}{more}: "
                    f"{verdicts[(key.namespace, namespace)]}",
                    location=policy.location if policy is not None else None,
                    object=key,
                    code=TENANCY_VIOLATION,
                )
            )
        found[key] = outcome
    return found


def _drop_objects_of(key: ObjectKey, out: Translation) -> None:
    """An invalid policy contributes nothing; what it wrote before is held by the engine."""
    for cluster, objs in out.objects.items():
        out.objects[cluster] = [o for o in objs if key not in o.sources]
    out.outcome(key).objects.clear()
