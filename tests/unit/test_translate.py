"""Translation: policies + discovered state -> Istio objects, and explain's priorities on them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from reconciler.clusters.snapshot import read_snapshot
from reconciler.dataplane.explain import explain
from reconciler.findings import ObjectKey
from reconciler.locality import Locality
from reconciler.output import to_yaml_stream
from reconciler.policy import load_and_check
from reconciler.translate import Translation, translate
from reconciler.translate.names import allocate_virtual_ips, gloo_virtual_ip, sanitize
from reconciler.translate.traffic_policy import _percent
from tests.unit import topology as t
from tests.unit.helpers import EXAMPLE, write

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
STATE = GOLDEN / "state" / "bookinfo"
VD_KEY = ObjectKey("VirtualDestination", "gloo-mesh", "bookinfo-global")


def example() -> Translation:
    return translate(load_and_check(EXAMPLE), read_snapshot(STATE))


def obj(tr: Translation, cluster: str, kind: str) -> dict[str, Any]:
    [found] = [o.body for o in tr.objects[cluster] if o.kind == kind]
    return found


# --- the bundled example -------------------------------------------------------------------------


def test_example_golden_render() -> None:
    tr = example()
    text = "".join(
        f"# cluster: {c}\n" + to_yaml_stream([o.body for o in objs]) for c, objs in sorted(tr.objects.items())
    )
    path = GOLDEN / "render" / "bookinfo.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_example_destination_rule_has_outlier_detection_and_locality_lb() -> None:
    dr = obj(example(), "mgmt-cluster", "DestinationRule")
    assert dr["spec"]["host"] == "reviews.global"
    tp = dr["spec"]["trafficPolicy"]
    assert tp["outlierDetection"] == {
        "consecutive5xxErrors": 1,
        "interval": "5s",
        "baseEjectionTime": "120s",
        "maxEjectionPercent": 100,
    }
    assert tp["loadBalancer"]["localityLbSetting"] == {"enabled": True}


def test_example_service_entry_endpoints_carry_localities() -> None:
    se = obj(example(), "mgmt-cluster", "ServiceEntry")["spec"]
    assert se["hosts"] == ["reviews.global"]
    assert se["location"] == "MESH_INTERNAL"
    assert se["ports"] == [{"number": 9080, "name": "http", "protocol": "HTTP"}]
    by_cluster = {
        (e["labels"]["mesh-reconciler.io/cluster"], e["locality"], e["address"], e["ports"]["http"])
        for e in se["endpoints"]
    }
    assert by_cluster == {
        ("mgmt-cluster", "us-east-1/us-east-1a", "10.96.1.10", 9080),  # the local service's ClusterIP
        ("remote-cluster", "us-east-2/us-east-2b", "172.18.0.20", 15443),  # remote east-west gateway
    }


def test_example_virtual_service_routes_local_host_to_global() -> None:
    tr = example()
    vs = obj(tr, "mgmt-cluster", "VirtualService")
    assert vs["metadata"]["namespace"] == "bookinfo"
    assert vs["spec"]["hosts"] == ["reviews.bookinfo.svc.cluster.local"]
    assert vs["spec"]["http"] == [
        {"route": [{"destination": {"host": "reviews.global", "port": {"number": 9080}}, "weight": 100}]}
    ]
    assert all(o.kind != "VirtualService" for o in tr.objects["remote-cluster"])


def test_example_ownership_markers() -> None:
    for o in example().all_objects():
        meta = o.body["metadata"]
        assert meta["labels"] == {"app.kubernetes.io/managed-by": "mesh-reconciler"}
        assert meta["annotations"]["mesh-reconciler.io/sources"] in {
            "VirtualDestination/gloo-mesh/bookinfo-global",
            "TrafficPolicy/bookinfo/reviews-shift-failover",
        }


def test_explain_example_from_mgmt() -> None:
    result = explain(example(), VD_KEY, "reviews.global", Locality("us-east-1", "us-east-1a"), "mgmt-cluster")
    levels = result.priorities
    assert [{e.cluster for e in lvl} for lvl in levels] == [{"mgmt-cluster"}, {"remote-cluster"}]
    assert result.shares == [100.0, 0.0]


def test_explain_example_failed_mgmt_sends_everything_remote() -> None:
    result = explain(
        example(),
        VD_KEY,
        "reviews.global",
        Locality("us-east-1", "us-east-1a"),
        "mgmt-cluster",
        failed=["mgmt-cluster"],
    )
    assert result.shares == [0.0, 100.0]
    one_down = explain(
        example(),
        VD_KEY,
        "reviews.global",
        Locality("us-east-1", "us-east-1a"),
        "mgmt-cluster",
        failed=["10.244.0.11"],
    )
    assert one_down.shares == [100.0, 0.0]  # an address is not a cluster or locality: nothing ejected


def _render_in_subprocess(policies: Path, hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "render", str(policies), "--state", str(STATE), "-o", "yaml"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_output_is_deterministic_across_processes_and_input_order(tmp_path: Path) -> None:
    # Separate processes with different hash seeds (set iteration order changes between them), and
    # the same policies in one file in reverse order: the rendered bytes must not change.
    reordered = tmp_path / "reordered"
    reordered.mkdir()
    (reordered / "reconciler.yaml").write_text((EXAMPLE / "reconciler.yaml").read_text())
    docs = [p.read_text() for p in sorted(EXAMPLE.glob("*.yaml")) if p.name != "reconciler.yaml"]
    (reordered / "all.yaml").write_text("\n---\n".join(reversed(docs)))
    first = _render_in_subprocess(EXAMPLE, "1")
    assert "kind: ServiceEntry" in first
    assert _render_in_subprocess(EXAMPLE, "2") == first
    assert _render_in_subprocess(reordered, "3") == first


def test_gloo_mesh_compatible_virtual_ip() -> None:
    # Gloo Mesh issue #1550 shows 252.68.23.155 for VirtualDestination backend.gloo-mesh.
    assert gloo_virtual_ip("backend", "gloo-mesh") == "252.68.23.155"


def test_virtual_ips_are_collision_free() -> None:
    keys = [ObjectKey("VirtualDestination", f"ns{i % 7}", f"svc-{i}") for i in range(5000)]
    ips = allocate_virtual_ips(keys)
    assert len(set(ips.values())) == 5000
    assert all(240 <= int(ip.split(".")[0]) < 255 for ip in ips.values())
    assert allocate_virtual_ips(reversed(keys)) == ips  # order-independent


def test_names_are_length_safe() -> None:
    long = "x" * 100
    name = sanitize(f"vd-{long}-gloo-mesh")
    assert len(name) == 63
    assert sanitize(f"vd-{long}-gloo-mesh") == name
    assert sanitize(f"vd-{long}-other") != name


# --- scenarios ------------------------------------------------------------------------------------

VM = """
apiVersion: networking.mesh.gloo.solo.io/v1
kind: VirtualMesh
metadata: {name: vm, namespace: gloo-mesh}
spec:
  meshes:
    - {name: istiod-istio-system-east, namespace: gloo-mesh}
    - {name: istiod-istio-system-west, namespace: gloo-mesh}
    - {name: istiod-istio-system-eu, namespace: gloo-mesh}
"""


def vd(
    extra: str = "",
    selector: str = "{kubeServiceMatcher: {labels: {app: reviews}}}",
    port: str = "{number: 9080}",
) -> str:
    return f"""
apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata: {{name: reviews-global, namespace: gloo-mesh}}
spec:
  hostname: reviews.global
  port: {port}
  virtualMesh: {{name: vm, namespace: gloo-mesh}}
  localized:
    outlierDetection: {{consecutiveErrors: 1}}
    destinationSelectors: [{selector}]
{extra}"""


def three_regions() -> Any:
    return t.inventory(
        {
            "east": t.simple_cluster(
                "east", "us-east-1", "us-east-1a", "192.0.2.1", ["10.1.0.1", "10.1.0.2"]
            ),
            "west": t.simple_cluster("west", "us-west-2", "us-west-2a", "192.0.2.2", ["10.2.0.1"]),
            "eu": t.simple_cluster("eu", "eu-west-1", "eu-west-1a", "192.0.2.3", ["10.3.0.1"]),
        }
    )


def run(tmp: Path, *docs: str, inv: Any = None) -> Translation:
    for i, doc in enumerate(docs):
        write(tmp, f"p{i}.yaml", doc)
    return translate(load_and_check(tmp), inv if inv is not None else three_regions())


def priorities(
    tr: Translation, cluster: str, client: Locality, failed: tuple[str, ...] = ()
) -> list[set[str]]:
    key = ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")
    result = explain(tr, key, "reviews.global", client, cluster, failed)
    return [{e.cluster for e in lvl} for lvl in result.priorities]


def test_three_regions_default_order(tmp_path: Path) -> None:
    tr = run(tmp_path, VM, vd())
    assert priorities(tr, "east", Locality("us-east-1", "us-east-1a")) == [{"east"}, {"west", "eu"}]


def test_three_regions_single_target_uses_native_failover(tmp_path: Path) -> None:
    extra = "    failoverDirectives:\n      - {from: {region: us-east-1}, to: [{region: eu-west-1}]}\n"
    tr = run(tmp_path, VM, vd(extra))
    dr = obj(tr, "east", "DestinationRule")
    assert dr["spec"]["trafficPolicy"]["loadBalancer"]["localityLbSetting"] == {
        "enabled": True,
        "failover": [{"from": "us-east-1", "to": "eu-west-1"}],
    }
    assert priorities(tr, "east", Locality("us-east-1", "us-east-1a")) == [{"east"}, {"eu"}, {"west"}]


def test_three_regions_ordered_fallbacks_use_failover_priority(tmp_path: Path) -> None:
    extra = "    failoverDirectives:\n      - {from: {region: us-east-1}, to: [{region: eu-west-1}, {region: us-west-2}]}\n"
    tr = run(tmp_path, VM, vd(extra))
    lb = obj(tr, "east", "DestinationRule")["spec"]["trafficPolicy"]["loadBalancer"]["localityLbSetting"]
    assert "failover" not in lb and lb["failoverPriority"][-2:] == [
        "topology.kubernetes.io/zone",
        "topology.istio.io/subzone",
    ]
    assert priorities(tr, "east", Locality("us-east-1", "us-east-1a")) == [{"east"}, {"eu"}, {"west"}]
    # reversed order in the policy -> reversed fallback order
    extra2 = "    failoverDirectives:\n      - {from: {region: us-east-1}, to: [{region: us-west-2}, {region: eu-west-1}]}\n"
    tr2 = run(tmp_path / "b", VM, vd(extra2))
    assert priorities(tr2, "east", Locality("us-east-1", "us-east-1a")) == [{"east"}, {"west"}, {"eu"}]
    # the directive is about us-east-1 clients; the west cluster keeps Istio's default order
    assert priorities(tr2, "west", Locality("us-west-2", "us-west-2a")) == [{"west"}, {"east", "eu"}]


def test_failover_when_first_choice_is_ejected(tmp_path: Path) -> None:
    extra = "    failoverDirectives:\n      - {from: {region: us-east-1}, to: [{region: eu-west-1}, {region: us-west-2}]}\n"
    tr = run(tmp_path, VM, vd(extra))
    key = ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")
    result = explain(tr, key, "reviews.global", Locality("us-east-1", "us-east-1a"), "east", ["east", "eu"])
    assert result.shares == [0.0, 0.0, 100.0]
    assert {e.cluster for e in result.priorities[2]} == {"west"}


def test_zone_level_directive(tmp_path: Path) -> None:
    inv = t.inventory(
        {
            "east": [
                t.node("a", "us-east-1", "us-east-1a"),
                t.node("b", "us-east-1", "us-east-1b"),
                t.node("c", "us-east-1", "us-east-1c"),
                t.istiod(),
                t.gateway("192.0.2.1"),
                t.service("reviews", headless=True),  # pod endpoints: one per zone
                t.endpoints("reviews", [("10.1.0.1", "a"), ("10.1.0.2", "b"), ("10.1.0.3", "c")]),
            ],
            "west": t.simple_cluster("west", "us-west-2", "us-west-2a", "192.0.2.2", ["10.2.0.1"]),
        }
    )
    vm = VM.replace("    - {name: istiod-istio-system-eu, namespace: gloo-mesh}\n", "")
    extra = (
        "    failoverDirectives:\n"
        "      - from: {region: us-east-1, zone: us-east-1a}\n"
        "        to: [{region: us-east-1, zone: us-east-1c}, {region: us-west-2}]\n"
    )
    tr = run(tmp_path, vm, vd(extra), inv=inv)
    key = ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")
    result = explain(tr, key, "reviews.global", Locality("us-east-1", "us-east-1a"), "east")
    order = [sorted(str(e.locality) for e in lvl) for lvl in result.priorities]
    assert order == [
        ["us-east-1/us-east-1a"],
        ["us-east-1/us-east-1c"],
        ["us-west-2/us-west-2a"],
        ["us-east-1/us-east-1b"],
    ]
    # nodes in three zones, one directive for zone a: the others are told they get an approximation
    outcome = tr.outcomes[key]
    assert any(f.code == "FailoverApproximated" for f in outcome.findings)


def test_selectors_matching_nothing_is_invalid(tmp_path: Path) -> None:
    tr = run(tmp_path, VM, vd(selector="{kubeServiceMatcher: {labels: {app: nothing}}}"))
    outcome = tr.outcomes[ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")]
    [err] = outcome.blocking
    assert err.message == "destinationSelectors match no service in any discovered cluster"
    assert err.location is not None and err.location.line == 10
    assert outcome.unresolved
    assert tr.all_objects() == []


def test_service_missing_target_port(tmp_path: Path) -> None:
    inv = three_regions()
    inv.clusters["west"] = t.inventory(
        {
            "west": [
                t.node("w", "us-west-2", "us-west-2a"),
                t.istiod(),
                t.gateway("192.0.2.2"),
                t.service("reviews", ports=[{"name": "grpc", "port": 7070}]),
            ]
        }
    ).clusters["west"]
    tr = run(tmp_path, VM, vd(), inv=inv)
    outcome = tr.outcomes[ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")]
    assert outcome.valid
    [warn] = [f for f in outcome.findings if f.code == "PortNotFound"]
    assert "bookinfo/reviews in west has no port numbered 9080" in warn.message
    endpoints = obj(tr, "east", "ServiceEntry")["spec"]["endpoints"]
    assert {e["labels"]["mesh-reconciler.io/cluster"] for e in endpoints} == {"east", "eu"}


def test_target_name_selects_named_port(tmp_path: Path) -> None:
    inv = t.inventory(
        {
            "east": [
                t.node("n", "us-east-1", "us-east-1a"),
                t.istiod(),
                t.service("reviews", ports=[{"name": "web", "port": 80, "targetPort": 8080}]),
                t.endpoints("reviews", [("10.1.0.1", "n")], port=8080, port_name="web"),
            ]
        }
    )
    vm = VM.split("    - {name: istiod-istio-system-west")[0]
    tr = run(tmp_path, vm, vd(port="{number: 9080, targetName: web}"), inv=inv)
    [ep] = obj(tr, "east", "ServiceEntry")["spec"]["endpoints"]
    assert ep["ports"] == {"http": 80}  # the service port of the ClusterIP (kube-proxy maps it to 8080)


def test_cluster_without_locality_labels(tmp_path: Path) -> None:
    inv = three_regions()
    inv.clusters["west"] = t.inventory(
        {"west": t.simple_cluster("west", None, None, "192.0.2.2", ["10.2.0.1"])}
    ).clusters["west"]
    tr = run(tmp_path, VM, vd(), inv=inv)
    outcome = tr.outcomes[ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")]
    assert any(f.code == "NoLocality" and "west" in f.message for f in outcome.findings)
    assert inv.clusters["west"].notes  # the cluster itself is reported too
    # istiod treats an endpoint without locality like one in another region
    assert priorities(tr, "east", Locality("us-east-1", "us-east-1a")) == [{"east"}, {"eu", "west"}]


def test_two_services_per_cluster_are_both_backends(tmp_path: Path) -> None:
    east = t.simple_cluster("east", "us-east-1", "us-east-1a", "192.0.2.1", ["10.1.0.1"])
    east += [
        t.service("reviews-v2", labels={"app": "reviews", "version": "v2"}),
        t.endpoints("reviews-v2", [("10.1.0.9", "east-node")]),
    ]
    inv = t.inventory(
        {"east": east, "west": t.simple_cluster("west", "us-west-2", "us-west-2a", "192.0.2.2", ["10.2.0.1"])}
    )
    tr = run(tmp_path, VM, vd(), inv=inv)
    outcome = tr.outcomes[ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")]
    assert {(s.cluster, s.name) for s in outcome.selected} == {
        ("east", "reviews"),
        ("east", "reviews-v2"),
        ("west", "reviews"),
    }
    west_se = obj(tr, "west", "ServiceEntry")["spec"]["endpoints"]
    gateway_eps = [e for e in west_se if e["address"] == "192.0.2.1"]
    # both east services behind one gateway endpoint, weighted by how many services it stands for
    assert len(gateway_eps) == 1 and gateway_eps[0]["weight"] == 2
    east_se = obj(tr, "east", "ServiceEntry")["spec"]["endpoints"]
    assert (
        len([e for e in east_se if e["labels"]["mesh-reconciler.io/cluster"] == "east"]) == 2
    )  # two ClusterIPs


def test_headless_service_uses_pod_addresses(tmp_path: Path) -> None:
    inv = t.inventory(
        {
            "east": [
                t.node("a", "us-east-1", "us-east-1a"),
                t.node("b", "us-east-1", "us-east-1b"),
                t.istiod(),
                t.service("reviews", headless=True),
                t.endpoints("reviews", [("10.1.0.1", "a"), ("10.1.0.2", "b")]),
            ]
        }
    )
    vm = VM.split("    - {name: istiod-istio-system-west")[0]
    tr = run(tmp_path, vm, vd(), inv=inv)
    eps = obj(tr, "east", "ServiceEntry")["spec"]["endpoints"]
    assert [(e["address"], e["locality"]) for e in eps] == [
        ("10.1.0.1", "us-east-1/us-east-1a"),
        ("10.1.0.2", "us-east-1/us-east-1b"),
    ]


def test_service_spanning_zones_gets_its_region(tmp_path: Path) -> None:
    inv = t.inventory(
        {
            "east": [
                t.node("a", "us-east-1", "us-east-1a"),
                t.node("b", "us-east-1", "us-east-1b"),
                t.istiod(),
                t.service("reviews", cluster_ip="10.96.9.9"),
                t.endpoints("reviews", [("10.1.0.1", "a"), ("10.1.0.2", "b")]),
            ]
        }
    )
    vm = VM.split("    - {name: istiod-istio-system-west")[0]
    tr = run(tmp_path, vm, vd(), inv=inv)
    [ep] = obj(tr, "east", "ServiceEntry")["spec"]["endpoints"]
    assert (ep["address"], ep["locality"]) == ("10.96.9.9", "us-east-1")
    outcome = tr.outcomes[ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")]
    assert any(f.code == "CoarseLocality" and "span 2 zones" in f.message for f in outcome.findings)


def test_unreachable_cluster_marks_dependent_objects(tmp_path: Path) -> None:
    inv = three_regions()
    inv.clusters["eu"].error = "connection refused"
    tr = run(tmp_path, VM, vd(), inv=inv)
    assert "eu" not in tr.objects
    for o in tr.all_objects():
        assert "eu" in o.depends_on  # the engine holds these rather than drop eu's endpoints


def test_missing_east_west_gateway_is_reported(tmp_path: Path) -> None:
    inv = three_regions()
    inv.clusters["eu"] = t.inventory(
        {"eu": t.simple_cluster("eu", "eu-west-1", "eu-west-1a", None, ["10.3.0.1"])}
    ).clusters["eu"]
    tr = run(tmp_path, VM, vd(), inv=inv)
    outcome = tr.outcomes[ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")]
    assert any(
        f.code == "NoGateway" and "cluster eu has no east-west gateway" in f.message for f in outcome.findings
    )


def test_static_order_is_failover_order(tmp_path: Path) -> None:
    static_vd = """
apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata: {name: reviews-global, namespace: gloo-mesh}
spec:
  hostname: reviews.global
  port: {number: 9080}
  virtualMesh: {name: vm, namespace: gloo-mesh}
  static:
    destinations:
      - kubeService: {name: reviews, namespace: bookinfo, clusterName: eu}
      - kubeService: {name: reviews, namespace: bookinfo, clusterName: east}
      - kubeService: {name: reviews, namespace: bookinfo, clusterName: west}
"""
    tr = run(tmp_path, VM, static_vd)
    assert priorities(tr, "east", Locality("us-east-1", "us-east-1a")) == [{"eu"}, {"east"}, {"west"}]
    assert priorities(tr, "west", Locality("us-west-2", "us-west-2a")) == [{"eu"}, {"east"}, {"west"}]


TP = """
apiVersion: networking.mesh.gloo.solo.io/v1
kind: TrafficPolicy
metadata: {{name: {name}, namespace: bookinfo}}
spec:
  destinationSelector:
    - kubeServiceRefs: {{services: [{{name: reviews, namespace: bookinfo, clusterName: east}}]}}
  policy:
{policy}
"""


def test_traffic_policy_fields(tmp_path: Path) -> None:
    policy = (
        "    requestTimeout: 2s\n"
        "    retries: {attempts: 3, perTryTimeout: 500ms}\n"
        "    faultInjection: {abort: {httpStatus: 503}}\n"
        "    headerManipulation: {appendRequestHeaders: {x-a: b}, removeResponseHeaders: [server]}\n"
        "    corsPolicy: {allowOrigins: [{suffix: .example.com}], allowMethods: [GET], maxAge: 1m}\n"
        "    outlierDetection: {consecutiveErrors: 2}\n"
    )
    tr = run(tmp_path, TP.format(name="a", policy=policy))
    [route] = obj(tr, "east", "VirtualService")["spec"]["http"]
    assert route == {
        "route": [{"destination": {"host": "reviews.bookinfo.svc.cluster.local"}}],
        "retries": {"attempts": 3, "perTryTimeout": "0.5s"},
        "timeout": "2s",
        "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100.0}}},
        "headers": {"request": {"add": {"x-a": "b"}}, "response": {"remove": ["server"]}},
        "corsPolicy": {
            "allowOrigins": [{"regex": ".*\\.example\\.com"}],
            "allowMethods": ["GET"],
            "maxAge": "60s",
        },
    }
    # a whole percentage is written as the API server returns it (100, not 100.0: no false diff)
    assert type(route["fault"]["abort"]["percentage"]["value"]) is int
    dr = obj(tr, "east", "DestinationRule")
    assert dr["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] == 2
    assert dr["spec"]["trafficPolicy"]["outlierDetection"]["maxEjectionPercent"] == 100


def test_conflicting_traffic_policies_deterministic_winner(tmp_path: Path) -> None:
    a = TP.format(name="a-retries", policy="    retries: {attempts: 3}\n")
    b = TP.format(name="b-retries", policy="    retries: {attempts: 5}\n    requestTimeout: 1s\n")
    for order in ((a, b), (b, a)):
        sub = tmp_path / str(hash(order))
        tr = run(sub, *order)
        [route] = obj(tr, "east", "VirtualService")["spec"]["http"]
        assert route["retries"] == {"attempts": 3}
        assert "timeout" not in route  # the loser contributes nothing to that route
        loser = tr.outcomes[ObjectKey("TrafficPolicy", "bookinfo", "b-retries")]
        [err] = loser.errors
        assert err.code == "Conflict"
        assert "already set by TrafficPolicy bookinfo/a-retries" in err.message
        assert tr.outcomes[ObjectKey("TrafficPolicy", "bookinfo", "a-retries")].valid


def test_policies_with_different_matchers_share_the_virtual_service(tmp_path: Path) -> None:
    a = TP.format(name="a", policy="    retries: {attempts: 3}\n")
    b = TP.format(name="b", policy="    requestTimeout: 1s\n").replace(
        "  policy:", "  httpRequestMatchers: [{uri: {prefix: /api}, headers: [{name: x-canary}]}]\n  policy:"
    )
    tr = run(tmp_path, a, b)
    vs = obj(tr, "east", "VirtualService")
    assert (
        vs["metadata"]["annotations"]["mesh-reconciler.io/sources"]
        == "TrafficPolicy/bookinfo/a,TrafficPolicy/bookinfo/b"
    )
    first, last = vs["spec"]["http"]
    assert first["match"] == [{"uri": {"prefix": "/api"}, "headers": {"x-canary": {"regex": ".*"}}}]
    assert "match" not in last  # catch-all last


def test_traffic_shift_to_other_cluster_is_rejected(tmp_path: Path) -> None:
    policy = "    trafficShift: {destinations: [{kubeService: {name: reviews, namespace: bookinfo, clusterName: west}}]}\n"
    tr = run(tmp_path, TP.format(name="a", policy=policy))
    [err] = tr.outcomes[ObjectKey("TrafficPolicy", "bookinfo", "a")].errors
    assert "use a VirtualDestination" in err.message or "shift to a VirtualDestination" in err.message
    assert tr.all_objects() == []


def test_translation_findings_name_list_items_like_the_loader(tmp_path: Path) -> None:
    """One field path format everywhere: ``destinations[1]``, as validation findings print it."""
    policy = (
        "    trafficShift:\n      destinations:\n"
        "        - {kubeService: {name: reviews, namespace: bookinfo, clusterName: east}, weight: 50}\n"
        "        - {kubeService: {name: nope, namespace: bookinfo, clusterName: east}, weight: 50}\n"
    )
    tr = run(tmp_path, TP.format(name="a", policy=policy))
    [err] = tr.outcomes[ObjectKey("TrafficPolicy", "bookinfo", "a")].errors
    assert err.field == "spec.policy.trafficShift.destinations[1]"
    assert (
        f"TrafficPolicy bookinfo/a: spec.policy.trafficShift.destinations[1]: {err.message}" in err.format()
    )


def test_weighted_shift_with_subset(tmp_path: Path) -> None:
    policy = (
        "    trafficShift:\n      destinations:\n"
        "        - {kubeService: {name: reviews, namespace: bookinfo, clusterName: east, subset: {version: v1}}, weight: 75}\n"
        "        - {kubeService: {name: reviews, namespace: bookinfo, clusterName: east, subset: {version: v2}}, weight: 25}\n"
    )
    tr = run(tmp_path, TP.format(name="a", policy=policy))
    [route] = obj(tr, "east", "VirtualService")["spec"]["http"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route["route"]] == [
        ("version-v1", 75),
        ("version-v2", 25),
    ]
    dr = obj(tr, "east", "DestinationRule")
    assert dr["spec"]["subsets"] == [
        {"name": "version-v1", "labels": {"version": "v1"}},
        {"name": "version-v2", "labels": {"version": "v2"}},
    ]


@pytest.mark.parametrize("n", [1, 3])
def test_equal_split_when_no_weights(tmp_path: Path, n: int) -> None:
    dests = "".join(
        f"        - {{kubeService: {{name: reviews, namespace: bookinfo, clusterName: east, subset: {{v: '{i}'}}}}}}\n"
        for i in range(n)
    )
    tr = run(tmp_path, TP.format(name="a", policy="    trafficShift:\n      destinations:\n" + dests))
    [route] = obj(tr, "east", "VirtualService")["spec"]["http"]
    assert sum(r["weight"] for r in route["route"]) == 100


def test_equal_endpoints_are_one_dict_and_yaml_has_no_alias(tmp_path: Path) -> None:
    """Two VirtualDestinations over the same services: each remote gateway endpoint is one dict in
    both ServiceEntries (memory: 10,000 policies x 10 clusters held 900,000 copies), as are the
    ownership label and a policy's sources annotation, while the YAML of every object is the same
    as for unshared copies — no ``&id`` anchors or aliases."""
    other = (
        vd()
        .replace("name: reviews-global", "name: reviews-other")
        .replace("hostname: reviews.global", "hostname: reviews-other.global")
    )
    tr = run(tmp_path, VM, vd(), other)
    entries = [o.body for o in tr.objects["east"] if o.kind == "ServiceEntry"]
    assert len(entries) == 2
    first, second = ({e["address"]: e for e in se["spec"]["endpoints"]} for se in entries)
    assert set(first) == set(second) and len(first) == 3  # east's ClusterIP, west's and eu's gateways
    for address in ("192.0.2.2", "192.0.2.3"):
        assert first[address] is second[address]
    drs = [
        o.body["spec"]["trafficPolicy"]
        for objs in tr.objects.values()
        for o in objs
        if o.kind == "DestinationRule"
    ]
    assert len({id(tp["outlierDetection"]) for tp in drs}) == 2  # one per policy, over three clusters
    bodies = [o.body for objs in tr.objects.values() for o in objs]
    assert len({id(b["metadata"]["labels"]) for b in bodies}) == 1  # our label: one map for all
    assert len({id(b["metadata"]["annotations"]) for b in bodies}) == 2  # sources: one per policy
    unshared = [msgspec.json.decode(msgspec.json.encode(b)) for b in bodies]
    text = to_yaml_stream(bodies)
    assert "&id" not in text and "*id" not in text
    assert text == to_yaml_stream(unshared)


def test_merging_two_services_behind_one_gateway_leaves_the_shared_endpoint_alone(tmp_path: Path) -> None:
    """The east gateway endpoint is shared by every ServiceEntry in west; a VirtualDestination
    selecting two east services merges it into one with ``weight: 2`` — a new dict, so another
    policy's ServiceEntry (translated first, holding the shared one) still has no weight."""
    east = t.simple_cluster("east", "us-east-1", "us-east-1a", "192.0.2.1", ["10.1.0.1"])
    east += [
        t.service("reviews-v2", labels={"app": "reviews", "version": "v2"}),
        t.endpoints("reviews-v2", [("10.1.0.9", "east-node")]),
    ]
    west = t.simple_cluster("west", "us-west-2", "us-west-2a", "192.0.2.2", ["10.2.0.1"])
    west += [
        t.service("reviews-v2", labels={"app": "reviews", "version": "v2"}),
        t.endpoints("reviews-v2", [("10.2.0.9", "west-node")]),
    ]
    only_v2 = (
        vd(selector="{kubeServiceMatcher: {labels: {version: v2}}}")
        .replace("name: reviews-global", "name: a-v2")
        .replace("hostname: reviews.global", "hostname: v2.global")
    )
    tr = run(tmp_path, VM, only_v2, vd(), inv=t.inventory({"east": east, "west": west}))
    by_host = {o.body["spec"]["hosts"][0]: o.body for o in tr.objects["west"] if o.kind == "ServiceEntry"}
    [v2_gateway] = [e for e in by_host["v2.global"]["spec"]["endpoints"] if e["address"] == "192.0.2.1"]
    [all_gateway] = [e for e in by_host["reviews.global"]["spec"]["endpoints"] if e["address"] == "192.0.2.1"]
    assert "weight" not in v2_gateway and all_gateway["weight"] == 2
    assert all_gateway is not v2_gateway


def test_percentages_are_written_as_the_api_server_returns_them() -> None:
    """Whole numbers as integers (the server answers ``100`` for ``100.0``), fractions as they are."""
    assert [(v, type(v)) for v in map(_percent, (100.0, 5, 12.5))] == [(100, int), (5, int), (12.5, float)]
