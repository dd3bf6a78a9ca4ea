"""``reconciler envoy-config``: the Envoy bootstrap built from the rendered objects and explain's priorities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from reconciler.clusters.snapshot import read_snapshot, write_snapshot
from reconciler.commands.envoy_config import envoy_config
from reconciler.dataplane.envoy import (
    DEVIATIONS,
    build_bootstrap,
    cluster_name,
    endpoint_priorities,
    lb_policy,
    outlier_detection,
)
from reconciler.dataplane.explain import Explanation, explain
from reconciler.findings import ObjectKey
from reconciler.locality import Locality
from reconciler.policy import load_and_check
from reconciler.translate import Translation, translate
from tests.unit import topology as t
from tests.unit.helpers import EXAMPLE, write
from tests.unit.helpers import cli as run_cli

STATE = Path(__file__).resolve().parents[1] / "golden" / "state" / "bookinfo"
EXAMPLE_VD = ObjectKey("VirtualDestination", "gloo-mesh", "bookinfo-global")
VD = ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")
EAST = Locality("us-east-1", "us-east-1a")

app = typer.Typer()
app.command("envoy-config")(envoy_config)


@app.callback()
def _root() -> None:
    """Test app holding only envoy-config (the real CLI registers it in reconciler.commands.app)."""


def cli(*args: str) -> tuple[int, str, str]:
    return run_cli("envoy-config", *args)


def example_explanation(client: Locality = EAST, cluster: str = "mgmt-cluster") -> Explanation:
    tr = translate(load_and_check(EXAMPLE), read_snapshot(STATE))
    return explain(tr, EXAMPLE_VD, "reviews.global", client, cluster)


def the_cluster(bootstrap: dict[str, Any]) -> dict[str, Any]:
    [cluster] = bootstrap["static_resources"]["clusters"]
    assert isinstance(cluster, dict)
    return cluster


def explained_priorities(explanation: Explanation) -> dict[str, int]:
    return {f"{e.address}:{e.port}": e.priority for e in explanation.endpoints}


# --- the bundled example --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "cluster"),
    [(EAST, "mgmt-cluster"), (Locality("us-east-2", "us-east-2b"), "remote-cluster")],
)
def test_example_priorities_equal_explain(client: Locality, cluster: str) -> None:
    explanation = example_explanation(client, cluster)
    bootstrap = build_bootstrap(explanation)
    assert endpoint_priorities(bootstrap) == explained_priorities(explanation)
    assert sorted(set(endpoint_priorities(bootstrap).values())) == [
        0,
        1,
    ]  # local first, then the other region
    assert bootstrap["node"]["locality"] == {"region": client.region, "zone": client.zone}


def test_example_cluster_is_what_istiod_would_send() -> None:
    explanation = example_explanation()
    bootstrap = build_bootstrap(explanation, listener_port=18080, admin_port=19000)
    cluster = the_cluster(bootstrap)
    assert cluster["name"] == "outbound|9080||reviews.global" == cluster_name(explanation)
    assert cluster["type"] == "STATIC"
    assert cluster["lb_policy"] == "LEAST_REQUEST"  # istiod's default when `simple` is unset
    # DR: consecutive5xxErrors 1, interval 5s, baseEjectionTime 120s, maxEjectionPercent 100
    assert cluster["outlier_detection"] == {
        "consecutive_5xx": 1,
        "enforcing_consecutive_5xx": 100,
        "interval": "5s",
        "base_ejection_time": "120s",
        "max_ejection_percent": 100,
        "enforcing_success_rate": 0,
    }
    # default locality ordering (no failover rules): istiod sets no locality_weighted_lb_config
    assert cluster["common_lb_config"] == {"healthy_panic_threshold": {"value": 0.0}}
    groups = cluster["load_assignment"]["endpoints"]
    assert [(g["priority"], g["locality"], g["load_balancing_weight"]) for g in groups] == [
        (0, {"region": "us-east-1", "zone": "us-east-1a"}, 1),
        (1, {"region": "us-east-2", "zone": "us-east-2b"}, 1),
    ]
    # endpoint addresses and ports are exactly the rendered ServiceEntry's
    rendered = {
        f"{e['address']}:{next(iter(e['ports'].values()))}"
        for e in explanation.service_entry.body["spec"]["endpoints"]
    }
    assert set(endpoint_priorities(bootstrap)) == rendered == {"10.96.1.10:9080", "172.18.0.20:15443"}
    assert bootstrap["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19000}
    [listener] = bootstrap["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18080}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    [route] = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert route["route"]["cluster"] == cluster["name"]
    assert "cluster_manager" not in bootstrap  # no event log unless asked for


def test_merge_window_and_event_log_only_when_asked() -> None:
    explanation = example_explanation()
    assert "update_merge_window" not in the_cluster(build_bootstrap(explanation))["common_lb_config"]
    bootstrap = build_bootstrap(explanation, update_merge_window="0s", outlier_event_log="/tmp/ev.log")
    assert the_cluster(bootstrap)["common_lb_config"]["update_merge_window"] == "0s"
    assert bootstrap["cluster_manager"] == {"outlier_detection": {"event_log_path": "/tmp/ev.log"}}
    assert (
        build_bootstrap(explanation, update_merge_window="250ms")["static_resources"]["clusters"][0][
            "common_lb_config"
        ]["update_merge_window"]
        == "0.25s"
    )


# --- mapping rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("od", "expected"),
    [
        ({}, {"enforcing_success_rate": 0}),  # unset: Envoy's own defaults (5 x 5xx) apply
        (
            {
                "consecutive5xxErrors": 0,
                "maxEjectionPercent": 0,
            },  # 0 disables; maxEjectionPercent 0 is dropped
            {"consecutive_5xx": 0, "enforcing_consecutive_5xx": 0, "enforcing_success_rate": 0},
        ),
        (
            {"consecutiveGatewayErrors": 3, "interval": "1m30s", "baseEjectionTime": "250ms"},
            {
                "consecutive_gateway_failure": 3,
                "enforcing_consecutive_gateway_failure": 100,
                "interval": "90s",
                "base_ejection_time": "0.25s",
                "enforcing_success_rate": 0,
            },
        ),
        (
            {"splitExternalLocalOriginErrors": True, "consecutiveLocalOriginFailures": 2},
            {
                "split_external_local_origin_errors": True,
                "consecutive_local_origin_failure": 2,
                "enforcing_consecutive_local_origin_failure": 100,
                "enforcing_local_origin_success_rate": 0,
                "enforcing_success_rate": 0,
            },
        ),
    ],
)
def test_outlier_detection_mapping(od: dict[str, Any], expected: dict[str, Any]) -> None:
    assert outlier_detection(od) == expected


@pytest.mark.parametrize(
    ("simple", "policy"),
    [
        (None, "LEAST_REQUEST"),
        ("ROUND_ROBIN", "ROUND_ROBIN"),
        ("LEAST_CONN", "LEAST_REQUEST"),
        ("RANDOM", "RANDOM"),
    ],
)
def test_lb_policy(simple: str | None, policy: str) -> None:
    assert lb_policy({"simple": simple} if simple else {}) == policy


def test_min_health_percent_is_the_panic_threshold() -> None:
    explanation = example_explanation()
    explanation.destination_rule.body["spec"]["trafficPolicy"]["outlierDetection"]["minHealthPercent"] = 30
    cluster = the_cluster(build_bootstrap(explanation))
    assert cluster["common_lb_config"]["healthy_panic_threshold"] == {"value": 30.0}


# --- three regions --------------------------------------------------------------------------------

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


def vd(directives: str = "") -> str:
    return f"""
apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata: {{name: reviews-global, namespace: gloo-mesh}}
spec:
  hostname: reviews.global
  port: {{number: 9080, protocol: http}}
  virtualMesh: {{name: vm, namespace: gloo-mesh}}
  localized:
    outlierDetection: {{consecutiveErrors: 1, interval: 1s, baseEjectionTime: 5s, maxEjectionPercent: 100}}
{directives}    destinationSelectors: [{{kubeServiceMatcher: {{labels: {{app: reviews}}}}}}]
"""


ORDERED = "    failoverDirectives:\n      - {from: {region: us-east-1}, to: [{region: eu-west-1}, {region: us-west-2}]}\n"
SINGLE = "    failoverDirectives:\n      - {from: {region: us-east-1}, to: [{region: eu-west-1}]}\n"


def three_region_objects() -> dict[str, list[dict[str, Any]]]:
    """east: two services (two ClusterIPs); west: two services behind one gateway; eu: one service."""
    east = t.simple_cluster(
        "east", "us-east-1", "us-east-1a", "192.0.2.1", ["10.1.0.1"], cluster_ip="10.96.0.101"
    )
    east += [
        t.service("reviews-v2", labels={"app": "reviews", "version": "v2"}, cluster_ip="10.96.0.102"),
        t.endpoints("reviews-v2", [("10.1.0.2", "east-node")]),
    ]
    west = t.simple_cluster(
        "west", "us-west-2", "us-west-2a", "192.0.2.2", ["10.2.0.1"], cluster_ip="10.96.0.201"
    )
    west += [
        t.service("reviews-v3", labels={"app": "reviews", "version": "v3"}, cluster_ip="10.96.0.202"),
        t.endpoints("reviews-v3", [("10.2.0.2", "west-node")]),
    ]
    eu = t.simple_cluster(
        "eu", "eu-west-1", "eu-west-1a", "192.0.2.3", ["10.3.0.1"], cluster_ip="10.96.0.301"
    )
    return {"east": east, "west": west, "eu": eu}


def three_regions(tmp: Path, directives: str) -> Translation:
    write(tmp, "vm.yaml", VM)
    write(tmp, "vd.yaml", vd(directives))
    inv = t.inventory(three_region_objects())
    return translate(load_and_check(tmp), inv)


def test_three_regions_ordered_fallbacks(tmp_path: Path) -> None:
    explanation = explain(three_regions(tmp_path, ORDERED), VD, "reviews.global", EAST, "east")
    bootstrap = build_bootstrap(explanation)
    assert endpoint_priorities(bootstrap) == explained_priorities(explanation)
    cluster = the_cluster(bootstrap)
    groups = cluster["load_assignment"]["endpoints"]
    # P0: both east ClusterIPs in one locality (weight 1 + 1); P1 eu (the first fallback); P2 west, whose
    # two services share one gateway endpoint of weight 2
    assert [(g["priority"], g["locality"]["region"], g["load_balancing_weight"]) for g in groups] == [
        (0, "us-east-1", 2),
        (1, "eu-west-1", 1),
        (2, "us-west-2", 2),
    ]
    assert [
        [
            (ep["endpoint"]["address"]["socket_address"]["address"], ep["load_balancing_weight"])
            for ep in g["lb_endpoints"]
        ]
        for g in groups
    ] == [[("10.96.0.101", 1), ("10.96.0.102", 1)], [("192.0.2.3", 1)], [("192.0.2.2", 2)]]
    for g in groups:
        assert g["load_balancing_weight"] == sum(ep["load_balancing_weight"] for ep in g["lb_endpoints"])
    # failoverPriority is in effect: istiod adds locality-weighted load balancing
    assert cluster["common_lb_config"]["locality_weighted_lb_config"] == {}
    lb = explanation.destination_rule.body["spec"]["trafficPolicy"]["loadBalancer"]["localityLbSetting"]
    assert "failoverPriority" in lb


def test_three_regions_native_failover(tmp_path: Path) -> None:
    explanation = explain(three_regions(tmp_path, SINGLE), VD, "reviews.global", EAST, "east")
    cluster = the_cluster(build_bootstrap(explanation))
    assert endpoint_priorities(build_bootstrap(explanation)) == explained_priorities(explanation)
    assert [(g["priority"], g["locality"]["region"]) for g in cluster["load_assignment"]["endpoints"]] == [
        (0, "us-east-1"),
        (1, "eu-west-1"),
        (2, "us-west-2"),
    ]
    assert "locality_weighted_lb_config" in cluster["common_lb_config"]


def test_three_regions_default_order_from_west(tmp_path: Path) -> None:
    explanation = explain(
        three_regions(tmp_path, ""), VD, "reviews.global", Locality("us-west-2", "us-west-2a"), "west"
    )
    bootstrap = build_bootstrap(explanation)
    assert endpoint_priorities(bootstrap) == explained_priorities(explanation)
    groups = the_cluster(bootstrap)["load_assignment"]["endpoints"]
    # every other region shares P1 (no rule for us-west-2), one locality group each
    assert [(g["priority"], g["locality"]["region"]) for g in groups] == [
        (0, "us-west-2"),
        (1, "eu-west-1"),
        (1, "us-east-1"),
    ]
    assert "locality_weighted_lb_config" not in the_cluster(bootstrap)["common_lb_config"]


# --- the command ----------------------------------------------------------------------------------


def test_cli_yaml_is_the_bootstrap_with_a_header() -> None:
    code, out, _ = cli(
        "bookinfo-global", str(EXAMPLE), "--from", "us-east-1/us-east-1a", "--state", str(STATE)
    )
    assert code == 0
    header = [line for line in out.splitlines() if line.startswith("#")]
    assert "for a client in us-east-1/us-east-1a (cluster mgmt-cluster)" in header[0]
    assert len([h for h in header if h.startswith("# - ")]) == len(DEVIATIONS)
    assert yaml.safe_load(out) == build_bootstrap(example_explanation())


def test_cli_json_with_ports_and_test_options() -> None:
    code, out, _ = cli(
        "gloo-mesh/bookinfo-global",
        str(EXAMPLE),
        "--from",
        "us-east-1/us-east-1a",
        "--state",
        str(STATE),
        "-o",
        "json",
        "--listener-port",
        "18080",
        "--admin-port",
        "19000",
        "--update-merge-window",
        "0s",
        "--outlier-log",
        "/tmp/events.log",
    )
    assert code == 0
    expected = build_bootstrap(
        example_explanation(),
        listener_port=18080,
        admin_port=19000,
        update_merge_window="0s",
        outlier_event_log="/tmp/events.log",
    )
    assert json.loads(out) == expected


def test_cli_three_regions_from_state_dir(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    write(policies, "vm.yaml", VM)
    write(policies, "vd.yaml", vd(ORDERED))
    write_snapshot(tmp_path / "state", three_region_objects())
    code, out, err = cli(
        "reviews-global", str(policies), "--from", "us-east-1/us-east-1a", "--state", str(tmp_path / "state")
    )
    assert code == 0, err
    bootstrap = yaml.safe_load(out)
    explanation = explain(three_regions(tmp_path / "direct", ORDERED), VD, "reviews.global", EAST, "east")
    assert endpoint_priorities(bootstrap) == explained_priorities(explanation)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bookinfo-global", str(EXAMPLE), "--state", str(STATE)), "--from"),
        (("nope", str(EXAMPLE), "--from", "us-east-1", "--state", str(STATE)), "not found"),
        (
            ("bookinfo-global", str(EXAMPLE), "--from", "ap-south-1", "--state", str(STATE)),
            "no cluster has nodes",
        ),
        (("bookinfo-global", str(EXAMPLE), "--from", "us-east-1", "--state", "/nonexistent"), "not found"),
        (
            (
                "bookinfo-global",
                str(EXAMPLE),
                "--from",
                "us-east-1",
                "--state",
                str(STATE),
                "--update-merge-window",
                "soon",
            ),
            "--update-merge-window",
        ),
    ],
)
def test_cli_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    code, out, err = cli(*args)
    assert code == 2 and out == ""
    assert message in err


# --- a real Envoy accepts it ----------------------------------------------------------------------


@pytest.mark.envoy
def test_envoy_validates_the_bootstrap(tmp_path: Path) -> None:
    from tests.e2e.envoy_process import require_envoy, validate

    binary = require_envoy()
    configs = []
    code, out, _ = cli(
        "bookinfo-global", str(EXAMPLE), "--from", "us-east-1/us-east-1a", "--state", str(STATE)
    )
    assert code == 0
    configs.append(tmp_path / "bookinfo.yaml")
    configs[-1].write_text(out)
    three = build_bootstrap(
        explain(three_regions(tmp_path / "p", ORDERED), VD, "reviews.global", EAST, "east"),
        update_merge_window="0s",
        outlier_event_log=str(tmp_path / "events.log"),
    )
    configs.append(tmp_path / "three.json")
    configs[-1].write_text(json.dumps(three))
    for config in configs:
        result = validate(binary, config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK" in result.stdout + result.stderr
    # and validation is not a rubber stamp: a misspelt field is rejected
    broken = json.loads(configs[-1].read_text())
    od = broken["static_resources"]["clusters"][0]["outlier_detection"]
    od["max_ejection_percentage"] = od.pop("max_ejection_percent")
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    assert validate(binary, tmp_path / "broken.json").returncode != 0
