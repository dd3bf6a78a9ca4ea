"""Where traffic for a VirtualDestination goes, for a client in a given locality.

Computed from the *rendered* ServiceEntry and DestinationRule of the client's cluster with istiod's
priority rules (:mod:`reconciler.dataplane.priorities`), so the answer is what the data plane does with what we
write. ``failed`` marks endpoints as ejected (by cluster name or locality) to show the failover.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.dataplane.priorities import (
    FailoverRule,
    IstioRules,
    LbEndpoint,
    istio_priorities,
    lb_priority,
    mesh_rules,
    priority_loads,
)
from reconciler.errors import ReconcilerError
from reconciler.findings import ObjectKey
from reconciler.locality import Locality
from reconciler.policy import Loaded, PolicySet, VirtualDestination
from reconciler.translate.failover import RANK_LABEL
from reconciler.translate.result import DesiredObject, Translation
from reconciler.translate.virtual_destination import CLUSTER_ENDPOINT_LABEL

if TYPE_CHECKING:
    from reconciler.plan import Plan


class ExplainError(ReconcilerError):
    """The question cannot be answered (message says what to change)."""


@dataclass
class ExplainedEndpoint:
    address: str
    port: int
    cluster: str
    locality: Locality | None
    weight: int
    priority: int
    reason: str
    ejected: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "cluster": self.cluster,
            "locality": self.locality.path if self.locality else None,
            "weight": self.weight,
            "priority": self.priority,
            "reason": self.reason,
            "ejected": self.ejected,
        }


@dataclass
class Explanation:
    virtual_destination: ObjectKey
    hostname: str
    client: Locality
    cluster: str
    service_entry: DesiredObject
    destination_rule: DesiredObject
    endpoints: list[ExplainedEndpoint] = field(default_factory=list)
    shares: list[float] = field(default_factory=list)
    """Percentage of requests per priority (index = priority), with ``failed`` endpoints ejected."""
    mode: str = ""
    istio: IstioRules | None = None
    """The istiod release whose rules gave the priorities (None: the latest rules, version not asked)."""

    @property
    def priorities(self) -> list[list[ExplainedEndpoint]]:
        levels: list[list[ExplainedEndpoint]] = [
            [] for _ in range(max((e.priority for e in self.endpoints), default=-1) + 1)
        ]
        for e in self.endpoints:
            levels[e.priority].append(e)
        return levels

    def to_dict(self) -> dict[str, Any]:
        return {
            "virtualDestination": {
                "namespace": self.virtual_destination.namespace,
                "name": self.virtual_destination.name,
            },
            "hostname": self.hostname,
            "client": {"locality": self.client.path, "cluster": self.cluster},
            "serviceEntry": f"{self.service_entry.namespace}/{self.service_entry.name}",
            "destinationRule": f"{self.destination_rule.namespace}/{self.destination_rule.name}",
            "mode": self.mode,
            "istio": None
            if self.istio is None
            else {
                "version": self.istio.version,
                "rules": self.istio.rules,
                "known": self.istio.known,
                "warning": self.istio.warning or None,
            },
            "priorities": [
                {
                    "priority": i,
                    "share": round(self.shares[i], 2) if i < len(self.shares) else 0.0,
                    "endpoints": [e.to_dict() for e in level],
                }
                for i, level in enumerate(self.priorities)
            ],
        }


def client_cluster(
    translation: Translation, inventory_localities: Mapping[str, Sequence[Locality]], client: Locality
) -> str:
    """The cluster whose nodes are in the client's locality (most specific match, then by name)."""
    best: tuple[int, str] | None = None
    for cluster, localities in sorted(inventory_localities.items()):
        for loc in localities:
            score = 0
            if loc.within(client):
                score = 3 if client.subzone else 2 if client.zone else 1
            if score and (best is None or score > best[0]):
                best = (score, cluster)
    if best is None:
        known = ", ".join(
            f"{c}: {', '.join(str(loc) for loc in locs) or 'no labels'}"
            for c, locs in sorted(inventory_localities.items())
        )
        raise ExplainError(f"no cluster has nodes in {client}; pass --cluster (known localities: {known})")
    return best[1]


def explain(
    translation: Translation,
    vd_key: ObjectKey,
    hostname: str,
    client: Locality,
    cluster: str,
    failed: Sequence[str] = (),
    rules: IstioRules | None = None,
) -> Explanation:
    """The priorities istiod gives a client in ``cluster`` (with ``rules``: that istiod release's)."""
    outcome = translation.outcomes.get(vd_key)
    if outcome is not None and outcome.blocking:
        raise ExplainError(
            f"VirtualDestination {vd_key.namespace}/{vd_key.name} is invalid: "
            + "; ".join(f.message for f in outcome.blocking)
        )
    se = next(
        (o for o in translation.objects.get(cluster, []) if o.kind == "ServiceEntry" and vd_key in o.sources),
        None,
    )
    dr = next(
        (
            o
            for o in translation.objects.get(cluster, [])
            if o.kind == "DestinationRule" and vd_key in o.sources
        ),
        None,
    )
    if se is None or dr is None:
        where = ", ".join(
            sorted(c for c, objs in translation.objects.items() if any(vd_key in o.sources for o in objs))
        )
        raise ExplainError(
            f"{hostname} is not rendered in cluster {cluster} (it is in: {where or 'no cluster'}); "
            "is the cluster in the VirtualDestination's export scope?"
        )
    lb = dr.body["spec"]["trafficPolicy"].get("loadBalancer", {}).get("localityLbSetting", {})
    failover_rules = [FailoverRule(r["from"], r["to"]) for r in lb.get("failover", [])]
    keys = list(lb.get("failoverPriority", []))
    has_od = "outlierDetection" in dr.body["spec"]["trafficPolicy"]
    raw = se.body["spec"].get("endpoints", [])
    lb_endpoints = [
        LbEndpoint(Locality.parse(e.get("locality")), dict(e.get("labels", {})), int(e.get("weight", 1)))
        for e in raw
    ]
    priorities = istio_priorities(
        client,
        lb_endpoints,
        failover=failover_rules,
        failover_priority=keys,
        enabled=lb.get("enabled", True),
        outlier_detection=has_od,
        rules=rules,
    )
    mode = "failoverPriority" if keys else "failover" if failover_rules else "locality"
    result = Explanation(vd_key, hostname, client, cluster, se, dr, mode=mode, istio=rules)
    for e, lbe, prio in zip(raw, lb_endpoints, priorities, strict=True):
        ep_cluster = e.get("labels", {}).get(CLUSTER_ENDPOINT_LABEL, "")
        port = next(iter(e.get("ports", {}).values()), 0)
        ejected = any(_matches_failed(f, ep_cluster, lbe.locality) for f in failed)
        result.endpoints.append(
            ExplainedEndpoint(
                address=e["address"],
                port=int(port),
                cluster=ep_cluster,
                locality=lbe.locality,
                weight=lbe.weight,
                priority=prio,
                reason=_reason(client, lbe, failover_rules, ep_cluster != cluster),
                ejected=ejected,
            )
        )
    result.endpoints.sort(key=lambda x: (x.priority, str(x.locality), x.address))
    levels = result.priorities
    result.shares = priority_loads(
        [sum(not e.ejected for e in lvl) for lvl in levels], [len(lvl) for lvl in levels]
    )
    return result


def _matches_failed(failed: str, cluster: str, locality: Locality | None) -> bool:
    if failed == cluster:
        return True
    target = Locality.parse(failed)
    return target is not None and locality is not None and locality.within(target)


def _reason(client: Locality, ep: LbEndpoint, rules: list[FailoverRule], remote: bool) -> str:
    via = " via the east-west gateway" if remote else ""
    if ep.locality is None:
        return f"no locality{via} (lowest priority)"
    level = lb_priority(client, ep.locality)
    parts = [
        "same region, zone and subzone as the client",
        "same region and zone, other subzone",
        "same region, other zone",
        "other region",
    ]
    text = parts[level]
    if level == 3 and rules:
        rule = next((r for r in rules if r.from_region == client.region), None)
        if rule is not None:
            text = (
                f"other region, failover target of {rule.from_region}"
                if ep.locality.region == rule.to_region
                else "other region, not the failover target"
            )
    rank = ep.labels.get(RANK_LABEL)
    if rank is not None:
        text += f"; failover rank {rank}"
    return text + via


def find_virtual_destination(policies: PolicySet, ref: str) -> Loaded[VirtualDestination]:
    """A VirtualDestination by ``NAME`` or ``NAMESPACE/NAME``; ExplainError says why not found."""
    namespace, _, name = ref.rpartition("/")
    found = policies.by_kind(VirtualDestination)
    matches = [p for p in found if p.obj.name == name and (not namespace or p.obj.namespace == namespace)]
    if len(matches) == 1:
        return matches[0]
    if not matches and any(k.kind == "VirtualDestination" and k.name == name for k in policies.invalid):
        raise ExplainError(f"VirtualDestination {ref} is invalid; run `reconciler validate`")
    if not matches:
        known = ", ".join(f"{p.obj.namespace}/{p.obj.name}" for p in found) or "none"
        raise ExplainError(f"VirtualDestination {ref} not found (known: {known})")
    raise ExplainError(f"{ref} is ambiguous; use NAMESPACE/NAME")


def explain_for(
    plan: Plan, ref: str, client: Locality, cluster: str | None = None, failed: Sequence[str] = ()
) -> Explanation:
    """``explain`` for a VirtualDestination named by the user, in the client's (or the given) cluster."""
    policy = find_virtual_destination(plan.policies, ref)
    localities = {
        name: sorted(st.localities()) for name, st in plan.inventory.clusters.items() if st.reachable
    }
    where = cluster or client_cluster(plan.translation, localities, client)
    state = plan.inventory.clusters.get(where)
    rules = mesh_rules([m.version for m in state.meshes] if state is not None else [])
    return explain(plan.translation, policy.key, str(policy.obj.spec.hostname), client, where, failed, rules)
