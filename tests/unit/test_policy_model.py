"""Policy model and loader: every rule of the policy API, asserted on its message and location."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.findings import ObjectKey, Severity
from reconciler.policy.durations import format_duration, parse_duration
from reconciler.policy.model import (
    OUTLIER_DEFAULTS,
    Protocol,
    TrafficPolicy,
    VirtualDestination,
    effective_outlier_detection,
)
from tests.unit.helpers import copy_example, load, messages, write

VD_HEAD = """
apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata:
  name: vd
  namespace: ns
spec:
"""

VM = """
apiVersion: networking.mesh.gloo.solo.io/v1
kind: VirtualMesh
metadata: {name: vm, namespace: ns}
spec:
  meshes: [{name: istiod-istio-system-c1, namespace: gloo-mesh}]
"""


def vd(body: str, name: str = "vd") -> str:
    return VD_HEAD.replace("name: vd", f"name: {name}") + body.lstrip("\n")


GOOD_VD_BODY = """
  hostname: svc.global
  port: {number: 80, protocol: http}
  virtualMesh: {name: vm, namespace: ns}
  localized:
    destinationSelectors:
      - kubeServiceMatcher: {labels: {app: svc}}
"""


def test_bundled_example_is_valid() -> None:
    ps = load(Path(__file__).resolve().parents[2] / "policies")
    assert ps.findings == []
    assert {p.key for p in ps.policies} == {
        ObjectKey("VirtualDestination", "gloo-mesh", "bookinfo-global"),
        ObjectKey("TrafficPolicy", "bookinfo", "reviews-shift-failover"),
        ObjectKey("VirtualMesh", "gloo-mesh", "virtual-mesh"),
    }
    vdest = next(p.obj for p in ps.policies if isinstance(p.obj, VirtualDestination))
    assert vdest.spec.port.protocol is Protocol.HTTP
    od = effective_outlier_detection(vdest.spec.outlier_detection)
    assert (od.consecutive_5xx_errors, od.max_ejection_percent) == (1, 100)
    assert (od.interval, od.base_ejection_time) == (timedelta(seconds=5), timedelta(seconds=120))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5s", 5), ("120s", 120), ("1m30s", 90), ("250ms", 0.25), ("1.5s", 1.5), ("1h", 3600), ("2m", 120)],
)
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(expected)


def test_duration_canonical_output() -> None:
    assert format_duration(parse_duration("1m30s")) == "90s"
    assert format_duration(parse_duration("250ms")) == "0.25s"


@pytest.mark.parametrize("bad", ["5", "five", "5 s", "", "1d"])
def test_invalid_duration_strings(tmp_path: Path, bad: str) -> None:
    body = GOOD_VD_BODY + f"    outlierDetection: {{interval: '{bad}'}}\n"
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "vd.yaml", vd(body))
    ps = load(tmp_path)
    [finding] = ps.errors
    assert finding.field == "spec.localized.outlierDetection.interval"
    assert finding.location is not None and finding.location.line == 13


def test_numeric_duration_is_rejected_with_hint(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "vd.yaml", vd(GOOD_VD_BODY + "    outlierDetection: {interval: 5}\n"))
    [finding] = load(tmp_path).errors
    assert "duration string" in finding.message


def test_protocol_case_insensitive_and_defaults(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "vd.yaml", vd(GOOD_VD_BODY.replace("protocol: http", "protocol: gRpC")))
    ps = load(tmp_path)
    assert ps.errors == []
    obj = ps.policies[-1].obj if isinstance(ps.policies[-1].obj, VirtualDestination) else ps.policies[0].obj
    assert isinstance(obj, VirtualDestination)
    assert obj.spec.port.protocol is Protocol.GRPC


def test_unknown_protocol(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "vd.yaml", vd(GOOD_VD_BODY.replace("protocol: http", "protocol: quic")))
    [finding] = load(tmp_path).errors
    assert finding.field == "spec.port.protocol"
    assert "HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS" in finding.message


def test_unknown_field_is_error_with_path_and_hint(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "vd.yaml", vd(GOOD_VD_BODY + "    outlierDetecton: {consecutiveErrors: 1}\n"))
    [finding] = load(tmp_path).errors
    assert finding.format() == (
        "vd.yaml:13:5: VirtualDestination ns/vd: spec.localized.outlierDetecton: unknown field "
        "(did you mean 'outlierDetection'?); allowed here: destinationSelectors, failoverDirectives, "
        "outlierDetection"
    )


def test_status_block_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "vd.yaml", vd(GOOD_VD_BODY) + "status:\n  state: INVALID\n  anything: [1, 2]\n")
    ps = load(tmp_path)
    assert ps.errors == []
    assert len(ps.policies) == 2


def test_server_populated_metadata_is_accepted(tmp_path: Path) -> None:
    write(
        tmp_path,
        "vm.yaml",
        VM.replace(
            "{name: vm, namespace: ns}",
            "{name: vm, namespace: ns, uid: x, resourceVersion: '5', generation: 2}",
        ),
    )
    assert load(tmp_path).errors == []


def test_metadata_typo_is_error(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM.replace("namespace: ns}", "namepsace: ns}"))
    [finding] = load(tmp_path).errors
    assert finding.field == "metadata.namepsace"
    assert "did you mean 'namespace'" in finding.message


def test_missing_required_field(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "vd.yaml", vd(GOOD_VD_BODY.replace("  hostname: svc.global\n", "")))
    [finding] = load(tmp_path).errors
    assert (finding.field, finding.message) == ("spec.hostname", "required field is missing")
    assert finding.location is not None and finding.location.line == 6  # the spec mapping


def test_wrong_type(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "vd.yaml", vd(GOOD_VD_BODY.replace("number: 80", "number: eighty")))
    [finding] = load(tmp_path).errors
    assert finding.field == "spec.port.number"
    assert "integer" in finding.message


def test_port_out_of_range(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "vd.yaml", vd(GOOD_VD_BODY.replace("number: 80", "number: 70000")))
    [finding] = load(tmp_path).errors
    assert finding.field == "spec.port.number"


def test_target_name_and_number_exclusive(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(
        tmp_path, "vd.yaml", vd(GOOD_VD_BODY.replace("protocol: http", "targetName: http, targetNumber: 80"))
    )
    [finding] = load(tmp_path).errors
    assert "targetName or targetNumber" in finding.message


def test_export_scope_oneof(tmp_path: Path) -> None:
    body = GOOD_VD_BODY + "  meshList: {meshes: [{name: m, namespace: gloo-mesh}]}\n"
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "vd.yaml", vd(body))
    [finding] = load(tmp_path).errors
    assert "exactly one export scope" in finding.message
    assert finding.field == "spec"


def test_localized_needs_a_selector(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    body = GOOD_VD_BODY.replace(
        "    destinationSelectors:\n      - kubeServiceMatcher: {labels: {app: svc}}\n",
        "    destinationSelectors: []\n",
    )
    write(tmp_path, "vd.yaml", vd(body))
    [finding] = load(tmp_path).errors
    assert finding.field == "spec.localized.destinationSelectors"


def test_empty_selector_item_is_error(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    body = GOOD_VD_BODY.replace("- kubeServiceMatcher: {labels: {app: svc}}", "- {}")
    write(tmp_path, "vd.yaml", vd(body))
    [finding] = load(tmp_path).errors
    assert "matches nothing" in finding.message


def test_failover_from_equals_to(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    body = GOOD_VD_BODY + (
        "    failoverDirectives:\n"
        "      - from: {region: us-east-1}\n"
        "        to: [{region: us-west-2}, {region: us-east-1}]\n"
    )
    write(tmp_path, "vd.yaml", vd(body))
    [finding] = load(tmp_path).errors
    assert finding.field == "spec.localized.failoverDirectives[0]"
    assert "same as 'from'" in finding.message


def test_failover_zone_level_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    body = GOOD_VD_BODY + (
        "    failoverDirectives:\n"
        "      - from: {region: us-east-1, zone: us-east-1a}\n"
        "        to: [{region: us-east-1, zone: us-east-1b}, {region: us-west-2}]\n"
    )
    write(tmp_path, "vd.yaml", vd(body))
    assert load(tmp_path).errors == []


def test_consecutive_errors_conflict(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(
        tmp_path,
        "vd.yaml",
        vd(GOOD_VD_BODY + "    outlierDetection: {consecutiveErrors: 1, consecutive5XXErrors: 3}\n"),
    )
    [finding] = load(tmp_path).errors
    assert "set only one" in finding.message


def test_outlier_defaults_are_one_documented_set() -> None:
    assert effective_outlier_detection(None) == OUTLIER_DEFAULTS
    assert OUTLIER_DEFAULTS.consecutive_5xx_errors == 5
    assert OUTLIER_DEFAULTS.interval == timedelta(seconds=10)
    assert OUTLIER_DEFAULTS.base_ejection_time == timedelta(seconds=30)
    assert OUTLIER_DEFAULTS.max_ejection_percent == 100


def test_duplicate_hostname_names_both(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "a.yaml", vd(GOOD_VD_BODY, name="a"))
    write(tmp_path, "b.yaml", vd(GOOD_VD_BODY, name="b"))
    ps = load(tmp_path)
    assert len(ps.errors) == 2
    assert {f.object for f in ps.errors} == {
        ObjectKey("VirtualDestination", "ns", "a"),
        ObjectKey("VirtualDestination", "ns", "b"),
    }
    assert all("hostnames must be unique" in f.message for f in ps.errors)
    assert ObjectKey("VirtualDestination", "ns", "a") in ps.invalid


def test_missing_virtual_mesh_reference(tmp_path: Path) -> None:
    write(tmp_path, "vd.yaml", vd(GOOD_VD_BODY))
    [finding] = load(tmp_path).errors
    assert finding.format() == (
        "vd.yaml:9:3: VirtualDestination ns/vd: spec.virtualMesh: VirtualMesh ns/vm not found in the repository"
    )


TP = """
apiVersion: networking.mesh.gloo.solo.io/v1
kind: TrafficPolicy
metadata: {name: tp, namespace: ns}
spec:
  destinationSelector:
    - kubeServiceRefs: {services: [{name: svc, namespace: ns, clusterName: c1}]}
  policy:
    trafficShift:
      destinations:
"""


def test_traffic_shift_reference_must_exist(tmp_path: Path) -> None:
    write(tmp_path, "tp.yaml", TP + "        - virtualDestination: {name: nope, namespace: ns}\n")
    [finding] = load(tmp_path).errors
    assert finding.field == "spec.policy.trafficShift.destinations[0].virtualDestination"
    assert "VirtualDestination ns/nope not found" in finding.message


def test_traffic_shift_needs_a_destination(tmp_path: Path) -> None:
    write(tmp_path, "tp.yaml", TP.replace("      destinations:\n", "      destinations: []\n"))
    [finding] = load(tmp_path).errors
    assert finding.field == "spec.policy.trafficShift.destinations"


def test_negative_weight(tmp_path: Path) -> None:
    write(
        tmp_path,
        "tp.yaml",
        TP + "        - kubeService: {name: a, namespace: ns, clusterName: c1}\n          weight: -1\n",
    )
    [finding] = load(tmp_path).errors
    assert finding.field == "spec.policy.trafficShift.destinations[0].weight"


def test_all_zero_weights(tmp_path: Path) -> None:
    body = (
        "        - kubeService: {name: a, namespace: ns, clusterName: c1}\n          weight: 0\n"
        "        - kubeService: {name: b, namespace: ns, clusterName: c1}\n          weight: 0\n"
    )
    write(tmp_path, "tp.yaml", TP + body)
    [finding] = load(tmp_path).errors
    assert "all weights are 0" in finding.message


def test_kube_service_refs_need_all_fields(tmp_path: Path) -> None:
    write(
        tmp_path,
        "tp.yaml",
        TP.replace("clusterName: c1}", "}") + "        - kubeService: {name: a, namespace: ns, "
        "clusterName: c1}\n",
    )
    [finding] = load(tmp_path).errors
    assert finding.field == "spec.destinationSelector[0].kubeServiceRefs.services[0].clusterName"


def test_traffic_policy_full_surface(tmp_path: Path) -> None:
    write(
        tmp_path,
        "tp.yaml",
        """
        apiVersion: networking.mesh.gloo.solo.io/v1
        kind: TrafficPolicy
        metadata: {name: tp, namespace: ns}
        spec:
          sourceSelector:
            - kubeWorkloadMatcher: {labels: {app: productpage}, namespaces: [bookinfo], clusters: [c1]}
          destinationSelector:
            - kubeServiceMatcher: {labels: {app: reviews}, namespaces: [bookinfo], clusters: [c1]}
          httpRequestMatchers:
            - uri: {prefix: /api}
              headers: [{name: x-user, value: jason}]
              queryParameters: [{name: debug, value: "1"}]
              method: GET
          policy:
            requestTimeout: 2s
            retries: {attempts: 3, perTryTimeout: 500ms}
            faultInjection: {abort: {httpStatus: 503}, percentage: 10}
            mirror: {kubeService: {name: m, namespace: ns, clusterName: c1}, percentage: 5, port: 80}
            headerManipulation: {appendRequestHeaders: {x-a: b}, removeResponseHeaders: [server]}
            corsPolicy: {allowOrigins: [{exact: "https://a.example"}], allowMethods: [GET], maxAge: 1m}
            outlierDetection: {consecutiveErrors: 2, interval: 1s}
            mtls: {istio: {tlsMode: ISTIO_MUTUAL}}
    """,
    )
    ps = load(tmp_path)
    assert ps.errors == []
    tp = ps.policies[0].obj
    assert isinstance(tp, TrafficPolicy)
    assert tp.spec.policy.retries is not None
    assert tp.spec.policy.retries.per_try_timeout == timedelta(milliseconds=500)


def test_invalid_regex(tmp_path: Path) -> None:
    write(
        tmp_path,
        "tp.yaml",
        TP.replace("  policy:\n", "  httpRequestMatchers: [{uri: {regex: '(['}}]\n  policy:\n")
        + "        - kubeService: {name: a, namespace: ns, clusterName: c1}\n",
    )
    [finding] = load(tmp_path).errors
    assert "invalid regex" in finding.message


def test_wrong_api_version(tmp_path: Path) -> None:
    write(
        tmp_path, "vm.yaml", VM.replace("networking.mesh.gloo.solo.io/v1", "networking.mesh.gloo.solo.io/v2")
    )
    [finding] = load(tmp_path).errors
    assert finding.field == "apiVersion"
    assert "served as networking.mesh.gloo.solo.io/v1" in finding.message


def test_mesh_in_two_virtual_meshes(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VM)
    write(tmp_path, "b.yaml", VM.replace("name: vm,", "name: vm2,"))
    [finding] = load(tmp_path).errors
    assert finding.object == ObjectKey("VirtualMesh", "ns", "vm2")
    assert "already grouped in VirtualMesh ns/vm" in finding.message


def test_example_tree_copy_loads(tmp_path: Path) -> None:
    repo = copy_example(tmp_path)
    assert load(repo).findings == []


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "a.yaml", vd(GOOD_VD_BODY.replace("number: 80", "number: x") + "  foo: 1\n", name="a"))
    write(tmp_path, "b.yaml", "a: [\n")
    ps = load(tmp_path)
    assert len(ps.errors) == 3
    assert [f.severity for f in ps.errors] == [Severity.ERROR] * 3
    assert messages(ps)[0].startswith("a.yaml:")
