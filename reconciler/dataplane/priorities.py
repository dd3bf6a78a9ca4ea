"""Where Envoy sends traffic: istiod's priority rules and Envoy's priority load.

This module restates, in Python, what istiod computes for an endpoint of a DestinationRule with
``localityLbSetting`` (``loadbalancer.go``: ``applyLocalityFailover``, ``applyFailoverPriorities``,
``util.LbPriority``) and what Envoy then does with the priorities (overprovisioning factor 1.4).
``explain`` and ``envoy-config`` both use it on the *rendered* ServiceEntry and DestinationRule, so
what they print is what the data plane will do with what we wrote — not what we meant to write.

The restatement follows the algorithm as documented in ``docs/locality.md``; the unit tests run
Istio's own test vectors (``loadbalancer_test.go``) against it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.locality import (
    NETWORK_LABEL,
    Locality,
)

OVERPROVISIONING_FACTOR = 1.4
"""Envoy's default (140%); Istio never changes it."""


# --------------------------------------------------------------------------------------------------
# Which istiod: its version decides one rule


LATEST_RULES = "1.31"
"""The newest priority rules restated here, assumed when a cluster's Istio version is unknown."""


@dataclass(frozen=True)
class IstioRules:
    """The priority rules of the istiod that programs a cluster's sidecars.

    Only one rule differs between the releases restated here: from Istio 1.31 (istio/istio#60829) a
    ``failoverPriority`` whose first entry is ``topology.istio.io/network`` *prefers* the proxy's
    network but keeps ordering other-network endpoints by the later labels; up to 1.30 every
    other-network endpoint shares the lowest priority. ``version`` is what discovery read (the
    istiod image tag); ``known`` is False when it could not be read, and the latest rules are assumed.
    """

    version: str
    rules: str
    known: bool = True
    note: str = ""
    """Why the rules were chosen with a caveat (e.g. several istiod versions in one cluster)."""

    @property
    def network_preferred(self) -> bool:
        return self.rules != "1.30"

    @property
    def warning(self) -> str:
        if self.note:
            return self.note
        if self.known:
            return ""
        shown = (
            f"'{self.version}'" if self.version else "no version (istiod Deployment not found or untagged)"
        )
        return f"Istio version unknown ({shown}); assuming the Istio {self.rules} priority rules"

    def describe(self) -> str:
        return f"Istio {self.version or '?'} ({self.rules} priority rules)"


_MINOR = re.compile(r"^v?1\.(\d+)(?:[.\-+_]|$)")


def istio_rules(version: str) -> IstioRules:
    """The rules of an istiod from its version or image tag (``1.30.3``, ``1.31-dev+eed5…``, ``1.29.1-distroless``)."""
    found = _MINOR.match(version.strip())
    if found is None:
        return IstioRules(version, LATEST_RULES, known=False)
    return IstioRules(version, "1.30" if int(found.group(1)) <= 30 else "1.31")


def mesh_rules(versions: Sequence[str]) -> IstioRules:
    """The rules for a cluster whose istiod Deployments report ``versions`` (image tags).

    Several istiod revisions may run side by side (a canary upgrade): if their rules differ, a sidecar's
    priorities depend on which revision injected it, so the oldest rules are shown with a warning.
    """
    found = sorted({istio_rules(v) for v in versions if v}, key=lambda r: (r.rules, r.version))
    if not found:
        return istio_rules("")
    if len({r.rules for r in found}) > 1:
        shown = ", ".join(r.version for r in found)
        return IstioRules(
            found[0].version,
            found[0].rules,
            note=f"several istiod versions ({shown}) with different priority rules; showing Istio "
            f"{found[0].rules}'s (a sidecar follows the revision that injected it)",
        )
    return found[0]


# --------------------------------------------------------------------------------------------------
# istiod: locality -> priority


@dataclass(frozen=True)
class FailoverRule:
    """Istio ``localityLbSetting.failover`` entry (region names only)."""

    from_region: str
    to_region: str


@dataclass(frozen=True)
class LbEndpoint:
    """An endpoint as istiod sees it: its locality and labels (after istiod's label augmentation)."""

    locality: Locality | None
    labels: Mapping[str, str] = field(default_factory=dict)
    weight: int = 1


def lb_priority(proxy: Locality | None, endpoint: Locality | None) -> int:
    """``util.LbPriority``: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere."""
    p = proxy or Locality()
    e = endpoint or Locality()
    if p.region == e.region:
        if p.zone == e.zone:
            return 0 if p.subzone == e.subzone else 1
        return 2
    return 3


def _failover_adjust(
    proxy: Locality | None, endpoint: Locality | None, failover: Sequence[FailoverRule]
) -> int:
    """``applyLocalityFailover`` for one endpoint (before compaction)."""
    priority = lb_priority(proxy, endpoint)
    if priority == 3:
        region = (proxy or Locality()).region
        for rule in failover:
            if rule.from_region == region:  # only the first matching rule counts
                if endpoint is None or endpoint.region != rule.to_region:
                    priority = 4
                break
    return priority


def _priority_keys(entries: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``priorityLabelOverrides``: label names in order, plus the ``key=value`` overrides.

    As istiod does it: an entry is split on every ``=``; only an entry with exactly one ``=`` is an
    override (``a=b=c`` compares label ``a`` with the proxy's value). Overrides are looked up by label
    name, so an override also applies to a bare repeat of the same key, and the last one wins.
    """
    keys: list[str] = []
    overrides: dict[str, str] = {}
    for entry in entries:
        parts = entry.split("=")
        keys.append(parts[0])
        if len(parts) == 2:
            overrides[parts[0]] = parts[1]
    return keys, overrides


def _failover_priority_level(
    proxy_labels: Mapping[str, str],
    endpoint_labels: Mapping[str, str],
    entries: Sequence[str],
    network_preferred: bool = True,
) -> int:
    """``applyFailoverPriorityPerLocality`` for one endpoint.

    The first of the N keys that differs gives N - j. From 1.31 (``network_preferred``), when the
    first entry is exactly ``topology.istio.io/network`` (not the ``=value`` form), a different
    network adds N and the remaining keys still order the endpoint, instead of ending at N.
    """
    n = len(entries)
    keys, overrides = _priority_keys(entries)
    adjust = 0
    for j, key in enumerate(keys):
        wanted = overrides[key] if key in overrides else proxy_labels.get(key, "")
        if endpoint_labels.get(key, "") != wanted:
            if j == 0 and network_preferred and entries[0] == NETWORK_LABEL:
                adjust = n
                continue
            return n - j + adjust
    return adjust


def _compact(values: Sequence[int]) -> list[int]:
    ranks = {v: i for i, v in enumerate(sorted(set(values)))}
    return [ranks[v] for v in values]


def istio_priorities(
    proxy: Locality | None,
    endpoints: Sequence[LbEndpoint],
    *,
    failover: Sequence[FailoverRule] = (),
    failover_priority: Sequence[str] = (),
    proxy_labels: Mapping[str, str] | None = None,
    enabled: bool = True,
    outlier_detection: bool = True,
    rules: IstioRules | None = None,
) -> list[int]:
    """Priority of each endpoint for a proxy, as istiod assigns it (compacted to 0..N, no gaps).

    Without outlier detection (or with locality LB disabled) istiod assigns no priorities: every
    endpoint is priority 0 and nothing ever fails over. ``rules`` selects the istiod release's
    behaviour (default: the latest, :data:`LATEST_RULES`).
    """
    network_preferred = rules.network_preferred if rules is not None else True
    if not endpoints:
        return []
    if not enabled or not outlier_detection:
        return [0] * len(endpoints)
    if not failover_priority:
        return _compact([_failover_adjust(proxy, e.locality, failover) for e in endpoints])
    labels = dict(proxy_labels if proxy_labels is not None else (proxy.labels() if proxy else {}))
    if labels:
        base = _compact(
            [
                _failover_priority_level(labels, _augmented(e), failover_priority, network_preferred)
                for e in endpoints
            ]
        )
    else:
        base = [0] * len(endpoints)  # applyFailoverPriorities does nothing for a proxy without labels
    if not failover:
        return base  # failoverPriority set: the default region/zone/subzone ordering is NOT applied
    return _compact(
        [b * 5 + _failover_adjust(proxy, e.locality, failover) for b, e in zip(base, endpoints, strict=True)]
    )


def _augmented(endpoint: LbEndpoint) -> dict[str, str]:
    """``label.AugmentLabels``: the non-empty parts of ``locality`` overwrite the topology labels.

    Empty parts leave an existing label alone (istiod never deletes one), so applying this to labels
    that istiod already augmented changes nothing.
    """
    labels = dict(endpoint.labels)
    if endpoint.locality is not None:
        labels.update(endpoint.locality.labels())
    return labels


# --------------------------------------------------------------------------------------------------
# Envoy: priority -> share of traffic


def priority_loads(healthy: Sequence[int], total: Sequence[int]) -> list[float]:
    """Share of requests (0..100) each priority receives, given healthy/total hosts per priority.

    Envoy's documented algorithm (``load_balancing/priority``): a priority's health is
    ``min(100, 140 * healthy / total)``; priorities take load in order up to their health, and the
    result is normalised when total health is below 100. With panic mode off (Istio's
    ``minHealthPercent: 0``) a fully unhealthy cluster gets no traffic at all (503).
    """
    health: list[float] = []
    for h, t in zip(healthy, total, strict=True):
        health.append(min(100.0, OVERPROVISIONING_FACTOR * 100.0 * h / t) if t else 0.0)
    total_health = min(100.0, sum(health))
    if total_health == 0:
        return [0.0] * len(health)
    loads: list[float] = []
    remaining = 100.0
    for value in health:
        share = min(remaining, value * 100.0 / total_health)
        loads.append(share)
        remaining -= share
    return loads


def priority_loads_int(healthy: Sequence[int], total: Sequence[int]) -> list[int]:
    """The same in Envoy's integer arithmetic (what a test against a real Envoy will observe).

    ``LoadBalancerBase::recalculatePerPriorityState``: health is ``min(100, 140 * healthy // total)``
    (the factor is kept as the integer 140), each priority gets ``min(left, health * 100 // NTH)`` in
    order, and the rounding remainder goes to the first priority whose health is non-zero. Degraded
    and excluded hosts and ``weighted_priority_health`` are not modelled; panic is taken as off
    (Istio's default ``minHealthPercent: 0``), so when nothing is healthy no priority gets traffic
    (Envoy itself then reports 100% for P0 but has no host to pick).
    """
    factor = round(OVERPROVISIONING_FACTOR * 100)
    health = [min(100, factor * h // t) if t else 0 for h, t in zip(healthy, total, strict=True)]
    total_health = min(100, sum(health))
    if total_health == 0:
        return [0] * len(health)
    loads: list[int] = []
    remaining = 100
    for value in health:
        share = min(remaining, value * 100 // total_health)
        loads.append(share)
        remaining -= share
    if remaining:
        first = next(i for i, value in enumerate(health) if value > 0)
        loads[first] += remaining
    return loads
