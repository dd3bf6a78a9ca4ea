"""What a change to the policy repository does to traffic: two plans in, one report out.

``impact`` plans two revisions (base and head) against the *same* live state and compares:

* **routes**: for every hostname of a VirtualDestination and every client locality in the fleet
  (the localities of each cluster's nodes), the Envoy priority levels before and after, computed by
  ``explain`` (:func:`reconciler.dataplane.explain.explain_for`) on each revision's rendered objects,
  plus the outlier detection that decides when failover happens. Rows are keyed by hostname, which
  is what clients call: renaming a VirtualDestination that keeps its hostname changes objects, not
  traffic.
* **policies** added, removed, changed (spec), and their state (``ACCEPTED``/``INVALID``, or
  ``UNREADABLE`` when the file holding it no longer parses);
* **objects** created, changed, pruned or *held* per cluster, with the engine's rules: an object of a
  policy that becomes invalid, or any object while the head revision has errors, is kept as it is
  live (never pruned) — and its routes stay as they were, which the route rows reflect.
* **risks** the head revision introduces: a client locality left without a healthy-path fallback.

Pure: no clients, no git, no printing (``reconciler.commands.impact`` wires it,
``reconciler.impact_output`` prints it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.dataplane.explain import ExplainError, Explanation, explain_for
from reconciler.engine.normalize import changed_paths
from reconciler.findings import ObjectKey
from reconciler.locality import Locality
from reconciler.plan import Plan
from reconciler.policy import VirtualDestination
from reconciler.translate.result import DesiredObject, RenderedRef
from reconciler.yamlio import to_yaml

SCHEMA_VERSION = "mesh-reconciler.io/impact/v1"


# --------------------------------------------------------------------------------------------------
# routes: where a client goes


@dataclass(frozen=True, order=True)
class RouteEndpoint:
    """One endpoint of a priority level, as a reviewer names it: the cluster and locality behind it."""

    cluster: str
    locality: str
    address: str
    port: int
    weight: int = 1

    @property
    def label(self) -> str:
        return f"{self.cluster} ({self.locality or 'no locality'})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "locality": self.locality or None,
            "address": self.address,
            "port": self.port,
            "weight": self.weight,
        }


@dataclass(frozen=True)
class Route:
    """Where a client in one locality sends one hostname, in one revision."""

    virtual_destination: ObjectKey
    priorities: tuple[tuple[RouteEndpoint, ...], ...]
    outlier_detection: Mapping[str, Any] | None
    locality_lb: bool
    mode: str
    held: str = ""
    """Non-empty when the head revision renders nothing here but the live objects are kept (why)."""

    @classmethod
    def from_explanation(cls, e: Explanation, held: str = "") -> Route:
        levels = tuple(
            tuple(
                sorted(
                    RouteEndpoint(
                        ep.cluster, ep.locality.path if ep.locality else "", ep.address, ep.port, ep.weight
                    )
                    for ep in level
                )
            )
            for level in e.priorities
        )
        policy = e.destination_rule.body["spec"]["trafficPolicy"]
        lb = policy.get("loadBalancer", {}).get("localityLbSetting", {})
        od = policy.get("outlierDetection")
        return cls(
            e.virtual_destination,
            levels,
            dict(od) if isinstance(od, Mapping) else None,
            bool(lb.get("enabled", True)) if lb else False,
            e.mode,
            held,
        )

    @property
    def endpoints(self) -> list[RouteEndpoint]:
        return [ep for level in self.priorities for ep in level]

    @property
    def localities(self) -> set[str]:
        return {ep.locality for ep in self.endpoints}

    @property
    def failover_enabled(self) -> bool:
        return self.outlier_detection is not None and self.locality_lb

    def same_order(self, other: Route) -> bool:
        return self.priorities == other.priorities

    def to_dict(self) -> dict[str, Any]:
        return {
            "virtualDestination": _key_ref(self.virtual_destination),
            "mode": self.mode,
            "failoverEnabled": self.failover_enabled,
            "outlierDetection": dict(self.outlier_detection) if self.outlier_detection is not None else None,
            "priorities": [[ep.to_dict() for ep in level] for level in self.priorities],
            "held": self.held or None,
        }


class RouteChangeKind(enum.StrEnum):
    ADDED = "added"
    """The hostname is newly reachable from this client."""
    REMOVED = "removed"
    """The hostname is no longer rendered for this client (and nothing keeps the live objects)."""
    ORDER = "order"
    """Different priority levels: another locality first, another fallback order, endpoints added/removed."""
    OUTLIER_DETECTION = "outlierDetection"
    """Different ejection settings: failover happens sooner, later or never."""
    LOCALITY_LB = "localityLb"
    """Locality load balancing switched on or off."""


@dataclass(frozen=True, order=True)
class Client:
    """A client locality that exists in the fleet: the locality of some cluster's nodes."""

    cluster: str
    locality: Locality

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "locality": self.locality.path}

    def __str__(self) -> str:
        return f"{self.locality.path} ({self.cluster})"


@dataclass
class RouteChange:
    hostname: str
    client: Client
    before: Route | None
    after: Route | None
    changes: list[RouteChangeKind] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "client": self.client.to_dict(),
            "changed": self.changed,
            "changes": [c.value for c in self.changes],
            "before": self.before.to_dict() if self.before else None,
            "after": self.after.to_dict() if self.after else None,
        }


def compare_routes(before: Route | None, after: Route | None) -> list[RouteChangeKind]:
    if before is None and after is None:
        return []
    if before is None:
        return [RouteChangeKind.ADDED]
    if after is None:
        return [RouteChangeKind.REMOVED]
    out = []
    if not before.same_order(after):
        out.append(RouteChangeKind.ORDER)
    if before.outlier_detection != after.outlier_detection:
        out.append(RouteChangeKind.OUTLIER_DETECTION)
    if before.locality_lb != after.locality_lb:
        out.append(RouteChangeKind.LOCALITY_LB)
    return out


# --------------------------------------------------------------------------------------------------
# risks: a client locality left without a healthy-path fallback


class RiskKind(enum.StrEnum):
    NO_DESTINATION = "no-destination"
    """The client could reach the hostname before and cannot after (or it has no endpoint)."""
    SINGLE_LOCALITY = "single-locality"
    """Every endpoint is in one locality: when it fails, there is nowhere to fail over to."""
    FAILOVER_DISABLED = "failover-disabled"
    """No outlier detection, or locality load balancing off: nothing is ever ejected or preferred."""
    EJECTION_LIMIT = "ejection-limit"
    """``maxEjectionPercent`` too low to eject every endpoint of priority 0: failover never happens."""


@dataclass(frozen=True)
class Risk:
    kind: RiskKind
    hostname: str
    client: Client
    message: str
    new: bool = True
    """False when the base revision had the same risk (reported, but not caused by this change)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "hostname": self.hostname,
            "client": self.client.to_dict(),
            "message": self.message,
            "new": self.new,
        }


def route_risks(hostname: str, client: Client, before: Route | None, after: Route | None) -> list[Risk]:
    """What ``after`` leaves the client without (``new`` unless ``before`` had the same problem)."""
    if after is None:
        if before is not None and before.endpoints:
            return [
                Risk(
                    RiskKind.NO_DESTINATION,
                    hostname,
                    client,
                    f"clients in {client} can no longer reach {hostname}: it is not rendered in "
                    f"{client.cluster} after this change",
                )
            ]
        return []
    old = {r.kind for r in _risks_of(hostname, client, before)} if before is not None else set()
    return [
        Risk(r.kind, r.hostname, r.client, r.message, new=r.kind not in old)
        for r in _risks_of(hostname, client, after)
    ]


def _risks_of(hostname: str, client: Client, route: Route) -> list[Risk]:
    endpoints = route.endpoints
    if not endpoints:
        return [
            Risk(
                RiskKind.NO_DESTINATION,
                hostname,
                client,
                f"{hostname} has no endpoint for clients in {client}: every request fails",
            )
        ]
    out: list[Risk] = []
    if not route.failover_enabled:
        why = (
            "the DestinationRule has no outlier detection"
            if route.outlier_detection is None
            else "locality load balancing is off"
        )
        out.append(
            Risk(
                RiskKind.FAILOVER_DISABLED,
                hostname,
                client,
                f"failover is disabled for {hostname} ({why}): clients in {client} keep sending "
                "requests to failing endpoints",
            )
        )
    localities = route.localities
    if len(localities) == 1:
        only = next(iter(localities)) or "one place (no locality)"
        out.append(
            Risk(
                RiskKind.SINGLE_LOCALITY,
                hostname,
                client,
                f"{hostname} is served only from {only}: when it fails, clients in {client} have no "
                "other locality to fail over to",
            )
        )
    elif route.failover_enabled and len(route.priorities) > 1 and route.outlier_detection is not None:
        limit = _number(route.outlier_detection.get("maxEjectionPercent"), 10.0)
        total = sum(ep.weight for ep in endpoints)
        first = sum(ep.weight for ep in route.priorities[0])
        needed = 100.0 * first / total
        if limit < needed:
            out.append(
                Risk(
                    RiskKind.EJECTION_LIMIT,
                    hostname,
                    client,
                    f"maxEjectionPercent {limit:g} lets Envoy eject at most {limit:g}% of the {total} "
                    f"endpoints of {hostname}, but the {first} of priority 0 for clients in {client} are "
                    f"{needed:.0f}%: they are never all ejected, so traffic never fails over",
                )
            )
    return out


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


# --------------------------------------------------------------------------------------------------
# policies and objects


class PolicyState(enum.StrEnum):
    ACCEPTED = "ACCEPTED"
    INVALID = "INVALID"
    UNREADABLE = "UNREADABLE"
    """The file that held the policy cannot be read any more: its identity is unknown to the plan."""


@dataclass(frozen=True)
class PolicyChange:
    key: ObjectKey
    change: str
    """``added``, ``removed``, ``changed`` (spec) or ``state`` (same spec, other state)."""
    before: PolicyState | None
    after: PolicyState | None
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.key.kind,
            "namespace": self.key.namespace,
            "name": self.key.name,
            "change": self.change,
            "before": self.before.value if self.before else None,
            "after": self.after.value if self.after else None,
            "errors": list(self.errors),
        }


class ObjectAction(enum.StrEnum):
    CREATED = "created"
    CHANGED = "changed"
    PRUNED = "pruned"
    HELD = "held"

    @property
    def symbol(self) -> str:
        return {"created": "+", "changed": "~", "pruned": "-", "held": "!"}[self.value]


@dataclass
class ObjectImpact:
    cluster: str
    kind: str
    namespace: str
    name: str
    action: ObjectAction
    sources: tuple[ObjectKey, ...]
    paths: list[str] = field(default_factory=list)
    reason: str = ""
    before: dict[str, Any] | None = field(default=None, repr=False)
    after: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def routing(self) -> bool:
        """A change to traffic that the route rows do not show: objects not made for a
        VirtualDestination (VirtualServices, a TrafficPolicy's DestinationRules)."""
        if self.action is ObjectAction.HELD or any(k.kind == "VirtualDestination" for k in self.sources):
            return False
        return self.action is not ObjectAction.CHANGED or any(p.startswith("spec") for p in self.paths)

    def diff(self) -> str:
        """Unified YAML diff base -> head (empty for held objects)."""
        import difflib

        if self.action is ObjectAction.HELD:
            return ""
        a = to_yaml(self.before).splitlines(keepends=True) if self.before else []
        b = to_yaml(self.after).splitlines(keepends=True) if self.after else []
        return "".join(difflib.unified_diff(a, b, f"base/{self.ref}", f"head/{self.ref}", n=3))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "action": self.action.value,
            "changedPaths": list(self.paths),
            "sources": [k.ref for k in self.sources],
            "reason": self.reason or None,
            "routing": self.routing,
        }


# --------------------------------------------------------------------------------------------------
# the report


@dataclass(frozen=True)
class RevisionInfo:
    """What a revision is, for people: ``ref`` as given (``origin/main``, a directory), its commit."""

    ref: str
    commit: str | None = None

    @property
    def label(self) -> str:
        return f"{self.ref} ({self.commit[:12]})" if self.commit else self.ref

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "commit": self.commit}


@dataclass
class ImpactReport:
    base: RevisionInfo
    head: RevisionInfo
    state: str
    """Where live state came from (a snapshot directory, or the clusters)."""
    clients: list[Client]
    routes: list[RouteChange]
    risks: list[Risk]
    policies: list[PolicyChange]
    objects: dict[str, list[ObjectImpact]]
    new_findings: list[str]
    """Error findings of the head revision that the base did not have (``file:line: ...``)."""
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def changed_routes(self) -> list[RouteChange]:
        return [r for r in self.routes if r.changed]

    @property
    def routing_objects(self) -> list[ObjectImpact]:
        return [o for objs in self.objects.values() for o in objs if o.routing]

    @property
    def new_risks(self) -> list[Risk]:
        return [r for r in self.risks if r.new]

    @property
    def traffic_changed(self) -> bool:
        return bool(self.changed_routes or self.routing_objects)

    @property
    def incomplete(self) -> bool:
        """Some cluster could not be read: the comparison is missing part of the fleet."""
        return bool(self.unreachable)

    def object_counts(self) -> dict[str, int]:
        counts = dict.fromkeys((a.value for a in ObjectAction), 0)
        for objs in self.objects.values():
            for o in objs:
                counts[o.action.value] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        hostnames = sorted({r.hostname for r in self.routes})
        changed_hosts = sorted({r.hostname for r in self.changed_routes})
        return {
            "schema": SCHEMA_VERSION,
            "base": self.base.to_dict(),
            "head": self.head.to_dict(),
            "state": self.state,
            "summary": {
                "trafficChanged": self.traffic_changed,
                "hostnames": len(hostnames),
                "hostnamesChanged": changed_hosts,
                "clients": len(self.clients),
                "routesChanged": len(self.changed_routes),
                "routingObjectsChanged": len(self.routing_objects),
                "newRisks": len(self.new_risks),
                "policies": _count(p.change for p in self.policies),
                "objects": self.object_counts(),
                "newErrors": len(self.new_findings),
                "incomplete": self.incomplete,
            },
            "clients": [c.to_dict() for c in self.clients],
            "routes": [r.to_dict() for r in self.routes],
            "risks": [r.to_dict() for r in self.risks],
            "policies": [p.to_dict() for p in self.policies],
            "objects": {c: [o.to_dict() for o in objs] for c, objs in sorted(self.objects.items())},
            "newFindings": list(self.new_findings),
            "unreachable": dict(sorted(self.unreachable.items())),
        }


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def _key_ref(key: ObjectKey) -> str:
    return f"{key.namespace}/{key.name}"


# --------------------------------------------------------------------------------------------------
# compare


def clients_of(plan: Plan) -> list[Client]:
    """Every client locality in the fleet: each reachable cluster's node localities."""
    return sorted(
        Client(name, loc)
        for name, st in plan.inventory.clusters.items()
        if st.reachable
        for loc in st.localities()
    )


def compare(
    base: Plan, head: Plan, base_info: RevisionInfo, head_info: RevisionInfo, state: str
) -> ImpactReport:
    """The impact of going from ``base`` to ``head`` (both planned against the same live state)."""
    held_reason = _hold_rule(head)
    objects = _compare_objects(base, head, held_reason)
    held_refs: dict[RenderedRef, str] = {
        (c, o.kind, o.namespace, o.name): o.reason
        for c, objs in objects.items()
        for o in objs
        if o.action is ObjectAction.HELD
    }
    clients = clients_of(head)
    base_hosts = _hostnames(base)
    head_hosts = _hostnames(head)
    routes: list[RouteChange] = []
    risks: list[Risk] = []
    for hostname in sorted(set(base_hosts) | set(head_hosts)):
        for client in clients:
            before = _route(base, base_hosts.get(hostname), client)
            after = _route(head, head_hosts.get(hostname), client)
            if after is None and before is not None:
                reason = _held(base, base_hosts[hostname], client.cluster, held_refs)
                if reason:
                    after = Route(
                        before.virtual_destination,
                        before.priorities,
                        before.outlier_detection,
                        before.locality_lb,
                        before.mode,
                        held=reason,
                    )
            if before is None and after is None:
                continue
            routes.append(RouteChange(hostname, client, before, after, compare_routes(before, after)))
            risks.extend(route_risks(hostname, client, before, after))
    unreachable = {n: st.error for n, st in sorted(head.inventory.clusters.items()) if st.error}
    return ImpactReport(
        base=base_info,
        head=head_info,
        state=state,
        clients=clients,
        routes=routes,
        risks=risks,
        policies=_compare_policies(base, head),
        objects=objects,
        new_findings=_new_findings(base, head),
        unreachable=unreachable,
    )


def _hostnames(plan: Plan) -> dict[str, ObjectKey]:
    """hostname -> the valid VirtualDestination rendering it (the first by key when several do)."""
    out: dict[str, ObjectKey] = {}
    for vd in sorted(plan.policies.by_kind(VirtualDestination), key=lambda p: p.key):
        outcome = plan.translation.outcomes.get(vd.key)
        if outcome is not None and outcome.blocking:
            continue
        out.setdefault(str(vd.obj.spec.hostname), vd.key)
    return out


def _route(plan: Plan, key: ObjectKey | None, client: Client) -> Route | None:
    if key is None:
        return None
    try:
        explanation = explain_for(plan, f"{key.namespace}/{key.name}", client.locality, client.cluster)
    except ExplainError:
        return None  # not rendered in the client's cluster
    return Route.from_explanation(explanation)


def _held(base: Plan, key: ObjectKey, cluster: str, held: Mapping[RenderedRef, str]) -> str:
    """Why the base revision's ServiceEntry/DestinationRule for ``key`` in ``cluster`` stay live
    ("" when the head revision would prune them)."""
    refs = [o.ref for o in base.translation.objects.get(cluster, []) if key in o.sources]
    reasons = [held[r] for r in refs if r in held]
    return reasons[0] if reasons and len(reasons) == len(refs) else ""


def _hold_rule(head: Plan) -> tuple[frozenset[ObjectKey], str]:
    """(policies whose objects the head revision keeps, why every unwanted object is kept or "")."""
    desired = head.desired()
    if desired.prune_suspended:
        return desired.protected, desired.prune_suspended
    if not head.repo.prune.enabled:
        return desired.protected, "no longer desired; not pruned (pruning disabled in reconciler.yaml)"
    return desired.protected, ""


def _compare_objects(
    base: Plan, head: Plan, hold: tuple[frozenset[ObjectKey], str]
) -> dict[str, list[ObjectImpact]]:
    protected, suspended = hold
    before = {o.ref: o for o in base.translation.all_objects()}
    after = {o.ref: o for o in head.translation.all_objects()}
    out: dict[str, list[ObjectImpact]] = {}
    for ref in sorted(set(before) | set(after)):
        cluster, kind, namespace, name = ref
        b, a = before.get(ref), after.get(ref)
        item: ObjectImpact | None = None
        if b is None and a is not None:
            item = ObjectImpact(cluster, kind, namespace, name, ObjectAction.CREATED, a.sources, after=a.body)
        elif b is not None and a is None:
            bad = [k for k in b.sources if k in protected]
            if bad:
                reason = "not pruned: source policy " + ", ".join(str(k) for k in bad) + " is invalid"
            else:
                reason = suspended
            action = ObjectAction.HELD if reason else ObjectAction.PRUNED
            item = ObjectImpact(
                cluster, kind, namespace, name, action, b.sources, reason=reason, before=b.body
            )
        elif b is not None and a is not None:
            paths = changed_paths(_comparable(b), _comparable(a))
            if paths:
                item = ObjectImpact(
                    cluster,
                    kind,
                    namespace,
                    name,
                    ObjectAction.CHANGED,
                    a.sources,
                    paths=paths,
                    before=b.body,
                    after=a.body,
                )
        if item is not None:
            out.setdefault(cluster, []).append(item)
    return out


def _comparable(obj: DesiredObject) -> dict[str, Any]:
    meta = obj.body.get("metadata", {})
    return {
        "metadata": {k: meta[k] for k in ("labels", "annotations") if meta.get(k)},
        "spec": obj.body.get("spec"),
    }


def _states(plan: Plan) -> dict[ObjectKey, tuple[PolicyState, str, tuple[str, ...]]]:
    """Every identified policy: (state, spec hash, error messages)."""
    out: dict[ObjectKey, tuple[PolicyState, str, tuple[str, ...]]] = {}
    errors: dict[ObjectKey, list[str]] = {}
    for f in plan.findings:
        if f.is_error and f.object is not None:
            errors.setdefault(f.object, []).append(f.message)
    keys = {p.key for p in plan.policies.policies} | set(plan.policies.invalid)
    for key in keys:
        outcome = plan.translation.outcomes.get(key)
        invalid = key in plan.policies.invalid or (outcome is not None and not outcome.valid)
        out[key] = (
            PolicyState.INVALID if invalid else PolicyState.ACCEPTED,
            plan.policies.spec_hashes.get(key, ""),
            tuple(dict.fromkeys(errors.get(key, []))),
        )
    return out


def _compare_policies(base: Plan, head: Plan) -> list[PolicyChange]:
    before, after = _states(base), _states(head)
    unreadable = set(head.policies.unreadable_files)
    files = {p.key: p.location.file for p in base.policies.policies}
    files.update({k: loc.file for k, loc in base.policies.invalid.items()})
    out: list[PolicyChange] = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if b is None and a is not None:
            out.append(PolicyChange(key, "added", None, a[0], a[2]))
        elif b is not None and a is None:
            if files.get(key) in unreadable:
                out.append(
                    PolicyChange(
                        key, "state", b[0], PolicyState.UNREADABLE, (f"{files[key]} cannot be read",)
                    )
                )
            else:
                out.append(PolicyChange(key, "removed", b[0], None))
        elif b is not None and a is not None:
            if b[1] != a[1]:
                out.append(PolicyChange(key, "changed", b[0], a[0], a[2]))
            elif b[0] != a[0]:
                out.append(PolicyChange(key, "state", b[0], a[0], a[2]))
    return out


def _new_findings(base: Plan, head: Plan) -> list[str]:
    old = {f.format() for f in base.findings if f.is_error}
    return sorted({f.format() for f in head.findings if f.is_error} - old)


def summarize_levels(levels: Sequence[Sequence[RouteEndpoint]]) -> list[str]:
    """Each priority level as ``cluster (locality)`` names, ``+`` between equals, ``×n`` for repeats."""
    out = []
    for level in levels:
        counts: dict[str, int] = {}
        for ep in level:
            counts[ep.label] = counts.get(ep.label, 0) + 1
        out.append(" + ".join(f"{label} ×{n}" if n > 1 else label for label, n in counts.items()))
    return out
