"""Failover directives -> Istio ``localityLbSetting`` (+ endpoint labels), per cluster.

Istio offers two tools, each with a limit:

* ``failover: [{from, to}]`` is region -> region only, and istiod honours only the *first* rule whose
  ``from`` matches the proxy's region, so an ordered list of fallbacks (``to: [a, b]``) cannot be
  written with it.
* ``failoverPriority: [labels]`` orders endpoints by how many leading labels match — the proxy's
  value for a bare key, a fixed value for ``key=value``.

So, per cluster:

``default``
    no directive applies to this cluster's clients: ``enabled: true`` (same subzone, zone, region,
    then everything else — Istio's default order).
``failover``
    every directive is region -> one region: native ``failover`` rules, which istiod matches per
    proxy region (exact for clusters spanning regions too).
``ranked``
    anything finer (zone/subzone, ordered lists): each endpoint gets a *rank* for the cluster's
    clients — 0 inside the directive's ``from``, ``i`` for its ``i``-th ``to``, then the rest of the
    client's region, then everything else — encoded as labels ``failover.mesh-reconciler.io/top-K``
    (present on endpoints of rank < K) and ``failoverPriority: [top-N=true, …, top-1=true,
    topology.kubernetes.io/zone, topology.istio.io/subzone]``. Inside rank 0 the bare zone and
    subzone keys keep Istio's proximity order for each proxy.
``static``
    ``static.destinations``: rank = position in the list, same labels, no proximity keys.

Ranks are computed for the cluster's client localities (its nodes). If they disagree — a cluster
whose nodes span several ``from`` scopes — the most common locality wins and a warning says which
clients get an approximation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reconciler.locality import SUBZONE_LABEL, ZONE_LABEL, Locality
from reconciler.policy import model
from reconciler.translate.result import JSON

LABEL_PREFIX = "failover.mesh-reconciler.io/"
RANK_LABEL = LABEL_PREFIX + "rank"


def top_label(k: int) -> str:
    return f"{LABEL_PREFIX}top-{k}"


@dataclass(frozen=True)
class Directive:
    source: Locality
    targets: tuple[Locality, ...]

    @classmethod
    def from_model(cls, d: model.FailoverDirective) -> Directive:
        def conv(loc: model.LocalitySpec) -> Locality:
            return Locality(loc.region, loc.zone or "", loc.sub_zone or "")

        return cls(conv(d.from_), tuple(conv(t) for t in d.to))

    @property
    def region_only(self) -> bool:
        return not self.source.zone and len(self.targets) == 1 and not self.targets[0].zone


def _specificity(loc: Locality) -> int:
    return 3 if loc.subzone else 2 if loc.zone else 1


@dataclass
class FailoverPlan:
    mode: str
    lb_setting: JSON
    max_rank: int = 0
    rank: Callable[[Locality | None, int], int] | None = None
    """(endpoint locality, index of the backing destination) -> rank; None when no labels are used."""
    directive: Directive | None = None
    client: Locality | None = None
    warnings: list[str] = field(default_factory=list)

    def labels_for(self, locality: Locality | None, destination_index: int) -> dict[str, str]:
        if self.rank is None:
            return {}
        r = self.rank(locality, destination_index)
        labels = {RANK_LABEL: str(r)}
        labels.update({top_label(k): "true" for k in range(r + 1, self.max_rank + 1)})
        return labels


def plan_localized(directives: Sequence[Directive], clients: Counter[Locality]) -> FailoverPlan:
    """Plan for a localized VirtualDestination in one cluster whose nodes are ``clients``."""
    if not directives:
        return FailoverPlan("default", {"enabled": True})
    if all(d.region_only for d in directives):
        rules = [
            {"from": d.source.region, "to": d.targets[0].region}
            for d in sorted(directives, key=lambda d: d.source.region)
        ]
        return FailoverPlan("failover", {"enabled": True, "failover": rules})
    if not clients:
        return FailoverPlan(
            "default",
            {"enabled": True},
            warnings=["nodes of this cluster have no locality labels; failover directives cannot apply here"],
        )
    ordered = sorted(clients.items(), key=lambda item: (-item[1], item[0]))
    primary = ordered[0][0]
    directive = _matching(directives, primary)
    if directive is None:
        return FailoverPlan("default", {"enabled": True}, client=primary)
    targets = directive.targets

    def rank(loc: Locality | None, _index: int) -> int:
        return _rank(loc, directive, primary)

    max_rank = len(targets) + 2
    keys = [f"{top_label(k)}=true" for k in range(max_rank, 0, -1)] + [ZONE_LABEL, SUBZONE_LABEL]
    plan = FailoverPlan(
        "ranked",
        {"enabled": True, "failoverPriority": keys},
        max_rank=max_rank,
        rank=rank,
        directive=directive,
        client=primary,
    )
    probes = _probe_localities(directives, clients)
    for other, _count in ordered[1:]:
        other_directive = _matching(directives, other)
        if any(_rank(p, other_directive, other) != _rank(p, directive, primary) for p in probes):
            plan.warnings.append(
                f"clients in {other} follow the failover order computed for {primary} "
                "(one DestinationRule per cluster); keep clusters within one failover scope for exact ordering"
            )
    return plan


def plan_static(count: int) -> FailoverPlan:
    """Plan for a static VirtualDestination: rank = position in ``static.destinations``."""
    max_rank = max(count - 1, 0)
    keys = [f"{top_label(k)}=true" for k in range(max_rank, 0, -1)]
    if not keys:
        return FailoverPlan("static", {"enabled": True})
    return FailoverPlan(
        "static",
        {"enabled": True, "failoverPriority": keys},
        max_rank=max_rank,
        rank=lambda _loc, index: index,
    )


def _matching(directives: Sequence[Directive], client: Locality) -> Directive | None:
    """The most specific directive whose ``from`` contains the client locality."""
    candidates = [d for d in directives if client.within(d.source)]
    if not candidates:
        return None
    return max(candidates, key=lambda d: _specificity(d.source))


def _rank(loc: Locality | None, directive: Directive | None, client: Locality) -> int:
    if directive is None:
        # Istio's default order, expressed as ranks: same region, then the rest.
        if loc is not None and loc.region == client.region:
            return 0
        return 1
    n = len(directive.targets)
    if loc is None:
        return n + 2
    if _overlaps(loc, directive.source):
        return 0
    for i, target in enumerate(directive.targets, start=1):
        if _overlaps(loc, target):
            return i
    if loc.region == client.region:
        return n + 1
    return n + 2


def _overlaps(endpoint: Locality, scope: Locality) -> bool:
    """Inside the scope, or a coarser locality that contains it (a service known only by region)."""
    return endpoint.within(scope) or scope.within(endpoint)


def _probe_localities(directives: Sequence[Directive], clients: Counter[Locality]) -> list[Locality]:
    probes = set(clients)
    for d in directives:
        probes.add(d.source)
        probes.update(d.targets)
    return sorted(probes)
