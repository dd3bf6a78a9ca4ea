"""Conformance: ``reconciler.dataplane.priorities`` against Istio's and Envoy's own test vectors.

The vectors below are restated as data (inputs and expected priorities), not copied code.

Istio sources read:
* ``istio/istio@7cfed122cf9125e442426cad52c219d609f3d669``
  ``pilot/pkg/networking/core/loadbalancer/loadbalancer_test.go`` ``TestApplyLocalitySetting``.
  This version predates Istio 1.31: it has no network-preferred ``failoverPriority`` rule.
* ``loadbalancer.go`` (stored versions 0098d99f8e43 and d929cf5b80ce; the functions
  ``ApplyLocalityLoadBalancer``, ``applyLocalityFailover``, ``applyFailoverPriorities`` and
  ``applyFailoverPriorityPerLocality`` are the same in both) and ``pilot/pkg/networking/util/util.go``
  ``LbPriority``.
* The 1.31 rule (istio/istio#60829, "Network locality is preferred but not required") is not in the
  source index. Its vectors come second-hand from ``/work/shared/docs/reference-istio-locality.md``
  §1.8 (istio@86c9f01, master after 1.31.0-alpha.0) and are marked as such.

Mapping onto our per-endpoint API: the upstream test checks ``LocalityLbEndpoints`` groups. Without
``failoverPriority`` each upstream group is one locality, and here it becomes one endpoint. With
``failoverPriority``, istiod splits each locality's endpoints into one group per priority. There we
list every upstream endpoint (named by its address in a comment) and expect the priority of the group
that holds it. ``TestApplyLocalitySetting`` runs every case with the proxy in region1/zone1/subzone1
and with failover enabled (``outlierDetection: {}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

from reconciler.dataplane.priorities import (
    FailoverRule,
    IstioRules,
    LbEndpoint,
    istio_priorities,
    istio_rules,
    lb_priority,
    priority_loads,
    priority_loads_int,
)
from reconciler.locality import NETWORK_LABEL, REGION_LABEL, ZONE_LABEL, Locality

UPSTREAM_TEST = "istio@7cfed122:pilot/pkg/networking/core/loadbalancer/loadbalancer_test.go"
CLUSTER_LABEL = "topology.istio.io/cluster"

PROXY = Locality("region1", "zone1", "subzone1")
R1_TO_R2 = (FailoverRule("region1", "region2"),)  # the mesh setting of buildEnvForClustersWithFailover


def loc(text: str | None) -> Locality | None:
    return Locality.parse(text)


@dataclass(frozen=True)
class Vector:
    name: str
    endpoints: Sequence[tuple[str | None, Mapping[str, str]]]  # (locality path, endpoint labels)
    expected: Sequence[int]
    proxy: Locality | None = PROXY
    proxy_labels: Mapping[str, str] | None = None
    failover: Sequence[FailoverRule] = ()
    failover_priority: Sequence[str] = ()
    enabled: bool = True
    outlier_detection: bool = True

    def run(self, rules: IstioRules | None = None) -> list[int]:
        return istio_priorities(
            self.proxy,
            [LbEndpoint(loc(path), dict(labels)) for path, labels in self.endpoints],
            failover=self.failover,
            failover_priority=self.failover_priority,
            proxy_labels=self.proxy_labels,
            enabled=self.enabled,
            outlier_detection=self.outlier_detection,
            rules=rules,
        )


def net(network: str, cluster: str, **extra: str) -> dict[str, str]:
    return {NETWORK_LABEL: network, CLUSTER_LABEL: cluster, **extra}


# --------------------------------------------------------------------------------------------------
# Endpoint sets of the upstream test, restated.

# buildFakeCluster: seven localities, no endpoints inside (only the locality matters here).
FAKE_CLUSTER: list[tuple[str | None, Mapping[str, str]]] = [
    ("region1/zone1/subzone1", {}),
    ("region1/zone1/subzone1", {}),
    ("region1/zone1/subzone2", {}),
    ("region1/zone1/subzone3", {}),
    ("region1/zone2", {}),
    ("region2", {}),
    ("region3", {}),
]
# buildSmallCluster
SMALL_CLUSTER: list[tuple[str | None, Mapping[str, str]]] = [
    ("region1/zone1/subzone2", {}),
    ("region2/zone1/subzone2", {}),
    ("region2/zone1/subzone2", {}),
]
# buildSmallClusterWithNilLocalities: the middle group has no locality at all.
SMALL_CLUSTER_NIL: list[tuple[str | None, Mapping[str, str]]] = [
    ("region1/zone1/subzone2", {}),
    (None, {}),
    ("region2/zone1/subzone2", {}),
]
# buildWrappedLocalityLbEndpoints: three localities with two endpoints each, in this order.
WRAPPED: list[tuple[str | None, Mapping[str, str]]] = [
    ("region1/zone1/subzone1", net("n1", "c1")),  # 1.1.1.1
    ("region1/zone1/subzone1", net("n2", "c2", key="value")),  # 2.2.2.2
    ("region2/zone2/subzone2", net("n1", "c3", key="value")),  # 3.3.3.3
    ("region2/zone2/subzone2", net("n2", "c4", key="value")),  # 4.4.4.4
    ("region3/zone3/subzone3", net("n1", "c1", key="value")),  # 1.2.3.4 / 2001:1::1
    ("region3/zone3/subzone3", net("n2", "c2", key="value")),  # 2.3.4.5 / 2001:1::2
]
# buildWrappedLocalityLbEndpointsForFailoverPriorityWithFailover: six localities, one endpoint each.
WRAPPED_WITH_FAILOVER: list[tuple[str | None, Mapping[str, str]]] = [
    ("region1/zone1/subzone1", net("n1", "c1")),  # 1.1.1.1
    ("region1/zone2/subzone2", net("n2", "c2", key="value")),  # 2.2.2.2
    ("region2/zone2/subzone2", net("n1", "c3", key="value")),  # 3.3.3.3
    ("region3/zone3/subzone3", net("n2", "c4", key="value")),  # 4.4.4.4
    ("region2/zone2/subzone2", net("n2", "c2")),  # 5.5.5.5
    ("region3/zone3/subzone3", net("n1", "c6", key="value")),  # 6.6.6.6
]
NET_CLUSTER = (NETWORK_LABEL, CLUSTER_LABEL)


# --------------------------------------------------------------------------------------------------
# Istio TestApplyLocalitySetting: cases where Istio 1.30 and 1.31 agree.

UPSTREAM_VECTORS = [
    # TestApplyLocalitySetting/"Failover: all priorities" (buildFakeCluster, failover region1->region2)
    Vector("failover/all priorities", FAKE_CLUSTER, [0, 0, 1, 1, 2, 3, 4], failover=R1_TO_R2),
    # TestApplyLocalitySetting/"Failover: priorities with gaps" (buildSmallCluster): raw 1,3,3 -> 0,1,1
    Vector("failover/priorities with gaps", SMALL_CLUSTER, [0, 1, 1], failover=R1_TO_R2),
    # TestApplyLocalitySetting/"Failover: priorities with some nil localities": a nil locality gets
    # raw priority 4 (the region1 rule exists and "nil" is not its target), so raw 1,4,3 -> 0,2,1
    Vector("failover/some nil localities", SMALL_CLUSTER_NIL, [0, 2, 1], failover=R1_TO_R2),
    # TestApplyLocalitySetting/"Failover: with locality lb disabled" (a disabled setting becomes nil)
    Vector("failover/locality lb disabled", SMALL_CLUSTER_NIL, [0, 0, 0], failover=R1_TO_R2, enabled=False),
    # TestApplyLocalitySetting/"FailoverPriority"/"match none label": all endpoints in one group per
    # locality, each at priority 0
    Vector(
        "failoverPriority/match none label",
        WRAPPED,
        [0, 0, 0, 0, 0, 0],
        proxy_labels={NETWORK_LABEL: "test", CLUSTER_LABEL: "test"},
        failover_priority=NET_CLUSTER,
    ),
    # TestApplyLocalitySetting/"FailoverPriority"/"match network label": n1 endpoints at P0, n2 at P1
    Vector(
        "failoverPriority/match network label",
        WRAPPED,
        [0, 1, 0, 1, 0, 1],
        proxy_labels={NETWORK_LABEL: "n1", CLUSTER_LABEL: "test"},
        failover_priority=NET_CLUSTER,
    ),
    # TestApplyLocalitySetting/"FailoverPriority"/"match all labels": groups (2.2.2.2 P0, 1.1.1.1 P3),
    # (4.4.4.4 P1, 3.3.3.3 P2), (2.3.4.5 P0, 1.2.3.4 P2)
    Vector(
        "failoverPriority/match all labels",
        WRAPPED,
        [3, 0, 2, 1, 2, 0],
        proxy_labels={"key": "value", NETWORK_LABEL: "n2", CLUSTER_LABEL: "c2"},
        failover_priority=("key", *NET_CLUSTER),
    ),
    # TestApplyLocalitySetting/"FailoverPriority"/"priority assignment as per the overridden value":
    # the key=value form compares with n1, not the proxy's n2
    Vector(
        "failoverPriority/overridden value",
        WRAPPED,
        [0, 1, 0, 1, 0, 1],
        proxy_labels={NETWORK_LABEL: "n2", CLUSTER_LABEL: "test"},
        failover_priority=(f"{NETWORK_LABEL}=n1",),
    ),
    # TestApplyLocalitySetting/"FailoverPriority"/"no endpoints with overridden value": nobody is on n3,
    # so every endpoint gets raw priority 1, compacted to 0
    Vector(
        "failoverPriority/no endpoint matches override",
        WRAPPED,
        [0, 0, 0, 0, 0, 0],
        proxy_labels={NETWORK_LABEL: "n1", CLUSTER_LABEL: "test"},
        failover_priority=(f"{NETWORK_LABEL}=n3",),
    ),
    # TestApplyLocalitySetting/"FailoverPriority with Failover"/"match all labels": label priority * 5
    # + locality priority, then compacted
    Vector(
        "failoverPriority+failover/match all labels",
        WRAPPED_WITH_FAILOVER,
        [3, 0, 4, 2, 1, 5],
        proxy_labels={NETWORK_LABEL: "n2", CLUSTER_LABEL: "c2"},
        failover=R1_TO_R2,
        failover_priority=NET_CLUSTER,
    ),
]

# Istio 1.31 (network preferred, not required). Second-hand: reference-istio-locality.md §1.8, from
# istio@86c9f01's loadbalancer_test.go; the upstream file is not in the source index.
ISTIO_1_31_VECTORS = [
    # TestApplyLocalitySetting/"FailoverPriority"/"not match the first n label" at 1.31: no endpoint is
    # on network "test", so cluster c1 still orders them. Upstream groups [0,1,1,0,1] are
    # (1.1.1.1)(2.2.2.2)(3.3.3.3+4.4.4.4)(1.2.3.4)(2.3.4.5)
    Vector(
        "failoverPriority/not match the first n label (1.31)",
        WRAPPED,
        [0, 1, 1, 1, 0, 1],
        proxy_labels={NETWORK_LABEL: "test", CLUSTER_LABEL: "c1"},
        failover_priority=NET_CLUSTER,
    ),
    # TestApplyLocalitySetting/"FailoverPriority including locality" (1.31 only, [network, region,
    # zone]): expected [1,3,0,3,2,1] over six single-endpoint groups. Inputs RECONSTRUCTED: the
    # WRAPPED_WITH_FAILOVER endpoints with topology labels from their locality, and proxy labels
    # n1/region2/zone2. These inputs give both the 1.31 result and the 1.30 result the reference
    # quotes ([1,2,0,2,2,1]).
    Vector(
        "failoverPriority/including locality (1.31, reconstructed inputs)",
        WRAPPED_WITH_FAILOVER,
        [1, 3, 0, 3, 2, 1],
        proxy_labels={NETWORK_LABEL: "n1", REGION_LABEL: "region2", ZONE_LABEL: "zone2"},
        failover_priority=(NETWORK_LABEL, REGION_LABEL, ZONE_LABEL),
    ),
]

# Istio 1.30 expectations that the 1.31 rule (which this module implements) deliberately changes.
ISTIO_1_30_ONLY_VECTORS = [
    # TestApplyLocalitySetting/"FailoverPriority"/"not match the first n label" at 7cfed122: a network
    # mismatch ended the comparison, so every endpoint landed at P0 (one group per locality)
    Vector(
        "failoverPriority/not match the first n label (1.30)",
        WRAPPED,
        [0, 0, 0, 0, 0, 0],
        proxy_labels={NETWORK_LABEL: "test", CLUSTER_LABEL: "c1"},
        failover_priority=NET_CLUSTER,
    ),
    # "FailoverPriority including locality" with the pre-1.31 rule (reference §1.8, derived by hand there)
    Vector(
        "failoverPriority/including locality (1.30, reconstructed inputs)",
        WRAPPED_WITH_FAILOVER,
        [1, 2, 0, 2, 2, 1],
        proxy_labels={NETWORK_LABEL: "n1", REGION_LABEL: "region2", ZONE_LABEL: "zone2"},
        failover_priority=(NETWORK_LABEL, REGION_LABEL, ZONE_LABEL),
    ),
]

# Behaviour read from the source (loadbalancer.go, label.AugmentLabels) that no upstream test covers.
SOURCE_DERIVED_VECTORS = [
    # ApplyLocalityLoadBalancer: failover only with outlier detection (enableFailover false -> no priorities)
    Vector("no outlier detection", FAKE_CLUSTER, [0] * 7, failover=R1_TO_R2, outlier_detection=False),
    # No rules: every other region shares raw priority 3
    Vector("default ordering, no rules", FAKE_CLUSTER, [0, 0, 1, 1, 2, 3, 3]),
    # Only the FIRST rule whose `from` matches counts; region2 and region3 both collapse into raw 4
    Vector(
        "first matching failover rule only",
        FAKE_CLUSTER,
        [0, 0, 1, 1, 2, 3, 3],
        failover=(FailoverRule("region1", "region9"), FailoverRule("region1", "region2")),
    ),
    # applyFailoverPriorities returns early for a proxy without labels, and the default locality
    # ordering is only applied for failoverPriority when `failover` is non-empty -> all P0
    Vector(
        "failoverPriority, proxy without labels",
        FAKE_CLUSTER,
        [0] * 7,
        proxy_labels={},
        failover_priority=NET_CLUSTER,
    ),
    # ... but with `failover` rules the locality ordering still runs on top of the all-0 label priorities
    Vector(
        "failoverPriority+failover, proxy without labels",
        FAKE_CLUSTER,
        [0, 0, 1, 1, 2, 3, 4],
        proxy_labels={},
        failover=R1_TO_R2,
        failover_priority=NET_CLUSTER,
    ),
    # failoverPriority without failover: endpoints that match every key share P0 whatever their locality
    Vector(
        "failoverPriority ignores locality",
        [
            ("region1/zone1/subzone1", net("n1", "c1")),
            ("region3", net("n1", "c1")),
            ("region1/zone1/subzone1", net("n2", "c1")),
        ],
        [0, 0, 1],
        proxy_labels={NETWORK_LABEL: "n1", CLUSTER_LABEL: "c1"},
        failover_priority=NET_CLUSTER,
    ),
    # priorityLabelOverrides: an entry with two '=' is not an override; label "k" is compared with
    # the proxy's value (v), so the k=v endpoint is P0 and the k=x=y one is P1
    Vector(
        "override needs exactly one '='",
        [("r/z", {"k": "v"}), ("r/z", {"k": "x=y"})],
        [0, 1],
        proxy=Locality("r", "z"),
        proxy_labels={"k": "v"},
        failover_priority=("k=x=y",),
    ),
    # AugmentLabels only overwrites the non-empty locality parts: a region-only locality keeps the
    # endpoint's own zone label (zone-a matches the proxy, zone-b does not)
    Vector(
        "AugmentLabels keeps labels for empty locality parts",
        [("r1", {ZONE_LABEL: "zone-a"}), ("r1", {ZONE_LABEL: "zone-b"})],
        [0, 1],
        proxy=Locality("r1", "zone-a"),
        proxy_labels={REGION_LABEL: "r1", ZONE_LABEL: "zone-a"},
        failover_priority=(REGION_LABEL, ZONE_LABEL),
    ),
    # AugmentLabels overwrites a stale topology label with the endpoint's locality
    Vector(
        "AugmentLabels overwrites from locality",
        [("r1/zone-a", {ZONE_LABEL: "stale"}), ("r1/zone-b", {ZONE_LABEL: "zone-a"})],
        [0, 1],
        proxy=Locality("r1", "zone-a"),
        proxy_labels={REGION_LABEL: "r1", ZONE_LABEL: "zone-a"},
        failover_priority=(REGION_LABEL, ZONE_LABEL),
    ),
]


@pytest.mark.parametrize("vector", UPSTREAM_VECTORS, ids=lambda v: v.name)
def test_istio_upstream_vectors(vector: Vector) -> None:
    assert vector.run() == list(vector.expected), UPSTREAM_TEST


@pytest.mark.parametrize("vector", ISTIO_1_31_VECTORS, ids=lambda v: v.name)
def test_istio_1_31_network_preferred_vectors(vector: Vector) -> None:
    assert vector.run() == list(vector.expected)


@pytest.mark.parametrize("vector", ISTIO_1_30_ONLY_VECTORS, ids=lambda v: v.name)
def test_istio_1_30_vectors_with_the_1_30_rules(vector: Vector) -> None:
    """The rules of a discovered Istio 1.30 give the 1.30 results; the 1.31 rules do not."""
    assert vector.run(istio_rules("1.30.3")) == list(vector.expected)
    assert vector.run(istio_rules("1.31.0")) != list(vector.expected)
    assert vector.run() != list(vector.expected)  # default: the latest rules


@pytest.mark.parametrize("vector", ISTIO_1_31_VECTORS + UPSTREAM_VECTORS, ids=lambda v: v.name)
def test_vectors_agreeing_or_1_31_hold_with_the_1_31_rules(vector: Vector) -> None:
    assert vector.run(istio_rules("1.31-dev+eed52ebb66ad")) == list(vector.expected)


@pytest.mark.parametrize(
    ("version", "rules", "known"),
    [
        ("1.30.3", "1.30", True),
        ("1.30.3-distroless", "1.30", True),
        ("1.24.0", "1.30", True),
        ("1.31-dev+eed52ebb66ad", "1.31", True),
        ("1.31.0", "1.31", True),
        ("v1.32.1", "1.31", True),
        ("latest", "1.31", False),
        ("", "1.31", False),
        ("2.0.0", "1.31", False),
    ],
)
def test_istio_rules_from_version(version: str, rules: str, known: bool) -> None:
    found = istio_rules(version)
    assert (found.rules, found.known) == (rules, known)
    assert found.network_preferred == (rules != "1.30")
    if known:
        assert found.warning == ""
    else:
        assert "assuming the Istio 1.31 priority rules" in found.warning


@pytest.mark.parametrize("vector", SOURCE_DERIVED_VECTORS, ids=lambda v: v.name)
def test_istio_source_derived_behaviour(vector: Vector) -> None:
    assert vector.run() == list(vector.expected)


# util.LbPriority: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere; nil counts as empty strings.
@pytest.mark.parametrize(
    ("proxy", "endpoint", "expected"),
    [
        ("r1/z1/s1", "r1/z1/s1", 0),
        ("r1/z1/s1", "r1/z1/s2", 1),
        ("r1/z1/s1", "r1/z1", 1),
        ("r1/z1/s1", "r1/z2/s1", 2),
        ("r1/z1/s1", "r2/z1/s1", 3),
        ("r1/z1/s1", None, 3),
        (None, None, 0),
        (None, "r1", 3),
        ("R1/z1/s1", "r1/z1/s1", 3),  # case-sensitive
    ],
)
def test_lb_priority(proxy: str | None, endpoint: str | None, expected: int) -> None:
    assert lb_priority(loc(proxy), loc(endpoint)) == expected


# --------------------------------------------------------------------------------------------------
# Envoy priority load. Integer arithmetic as in LoadBalancerBase::recalculatePerPriorityState and
# distributeLoad (envoy source/extensions/load_balancing_policies/common/load_balancer_impl.cc):
# health = min(100, 140 * healthy // total); load = min(left, health * 100 // min(100, sum(health)));
# the remainder goes to the first priority with health > 0. Panic is off (Istio minHealthPercent 0).

# reference-istio-locality.md §3.2 table: P0 with `hosts` hosts of which `ejected` are ejected, and a
# fully healthy two-host P1.
REFERENCE_TABLE = [
    (1, 1, [0, 100]),
    (2, 1, [70, 30]),
    (3, 1, [93, 7]),  # 140*2//3 = 93
    (3, 2, [46, 54]),  # 140*1//3 = 46
    (4, 1, [100, 0]),  # 140*3//4 = 105 -> capped at 100
    (4, 2, [70, 30]),
]


@pytest.mark.parametrize(("hosts", "ejected", "expected"), REFERENCE_TABLE)
def test_priority_loads_int_reference_table(hosts: int, ejected: int, expected: list[int]) -> None:
    assert priority_loads_int([hosts - ejected, 2], [hosts, 2]) == expected


# Envoy LoadBalancerBaseTest (test/common/upstream/load_balancer_impl_test.cc): GentleFailover,
# GentleFailoverWithExtraLevels and OverProvisioningFactor; only steps that involve no panic or
# degraded hosts, where Envoy's panic threshold (50 in that test fixture) makes no difference.
ENVOY_VECTORS = [
    # (healthy per priority, total per priority, expected load)
    ([1, 1], [1, 1], [100, 0]),  # GentleFailover
    ([1, 1], [2, 2], [70, 30]),  # GentleFailover
    ([1, 2], [4, 2], [35, 65]),  # GentleFailover
    ([1, 1], [4, 4], [50, 50]),  # GentleFailover: 35+35 scaled up to 100
    ([2, 2], [4, 4], [70, 30]),  # OverProvisioningFactor (default 1.4)
    ([1, 1, 1], [1, 1, 1], [100, 0, 0]),  # GentleFailoverWithExtraLevels
    ([1, 1, 1], [2, 2, 2], [70, 30, 0]),  # GentleFailoverWithExtraLevels
    ([1, 2, 1], [4, 2, 2], [35, 65, 0]),  # GentleFailoverWithExtraLevels
    ([1, 1, 1], [4, 4, 4], [35, 35, 30]),  # GentleFailoverWithExtraLevels
    ([1, 1, 1], [5, 5, 5], [34, 33, 33]),  # GentleFailoverWithExtraLevels: P0 takes the rounding error
    ([0, 0, 5], [5, 5, 5], [0, 0, 100]),  # GentleFailoverWithExtraLevels
    ([0, 0, 4], [5, 5, 5], [0, 0, 100]),  # GentleFailoverWithExtraLevels
]


@pytest.mark.parametrize(("healthy", "total", "expected"), ENVOY_VECTORS)
def test_priority_loads_int_envoy_vectors(healthy: list[int], total: list[int], expected: list[int]) -> None:
    assert priority_loads_int(healthy, total) == expected


def test_priority_loads_int_panic_disabled() -> None:
    # GentleFailoverWithExtraLevels step (5,0),(5,0),(5,2): Envoy's test expects 34/33/33 because its
    # fixture's panic threshold of 50 puts every level in panic (load by host count). With Istio's
    # threshold of 0 there is no panic: P2's health is 56, normalised to 100.
    assert priority_loads_int([0, 0, 2], [5, 5, 5]) == [0, 0, 100]
    # Nothing healthy at all: 503 no healthy upstream, no priority receives traffic.
    assert priority_loads_int([0, 0], [2, 3]) == [0, 0]
    # An empty priority (no hosts) has health 0 and takes nothing; the remainder skips it.
    assert priority_loads_int([0, 1, 1], [0, 5, 5]) == [0, 50, 50]


@pytest.mark.parametrize(("hosts", "ejected", "expected"), REFERENCE_TABLE)
def test_priority_loads_float_matches_table(hosts: int, ejected: int, expected: list[int]) -> None:
    loads = priority_loads([hosts - ejected, 2], [hosts, 2])
    assert sum(loads) == pytest.approx(100.0)
    # The documented (real-valued) algorithm differs from Envoy's integers by less than one percent.
    assert loads == pytest.approx([float(e) for e in expected], abs=1.0)
