"""The harness itself: real, independent kube-apiservers with the Istio schema, seeding, faults,
RBAC and the audit log. Integration tests need the binaries (see docs/harness.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeharness import Clusters, kube
from kubeharness.binaries import find_binary
from kubeharness.seed import (
    REGION_LABEL,
    SUBZONE_LABEL,
    ZONE_LABEL,
    App,
    ClusterTopology,
    EastWestGateway,
    bookinfo_three_regions,
    cluster_topology,
    endpoint_address_allowed,
    seed_cluster,
)
from kubernetes import config as kube_config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

integration = pytest.mark.integration
SA_USER = "system:serviceaccount:mesh-reconciler:mesh-reconciler"
SA_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:mesh-reconciler"]


def configmap(namespace: str, name: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data or {"k": "v"},
    }


def destination_rule(namespace: str, name: str, **traffic_policy: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"host": "reviews.bookinfo.svc.cluster.local", "trafficPolicy": traffic_policy},
    }


def status_message(exc: ApiException) -> str:
    return str(json.loads(exc.body or "{}").get("message", ""))


# ------------------------------------------------------------------ no binaries needed
def test_binary_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "explicit-etcd"
    assets = tmp_path / "assets"
    assets.mkdir()
    for path in (explicit, assets / "etcd"):
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    monkeypatch.setenv("TEST_ASSET_ETCD", str(explicit))
    assert find_binary("etcd") == explicit.resolve()
    monkeypatch.delenv("TEST_ASSET_ETCD")
    assert find_binary("etcd") == (assets / "etcd").resolve()
    assert find_binary("kube-apiserver") is None


def test_endpoint_address_rules() -> None:
    assert endpoint_address_allowed("10.10.1.11")
    assert endpoint_address_allowed("172.18.0.10")
    for bad in ("127.0.0.2", "::1", "169.254.1.1", "0.0.0.0", "224.0.0.5"):
        assert not endpoint_address_allowed(bad), bad


# ------------------------------------------------------------------ clusters
@integration
def test_contexts_are_independent_clusters(
    clusters: Clusters, kubeconfig: Path, api_clients: dict[str, ApiClient], clean_namespace: str
) -> None:
    contexts, current = kube_config.list_kube_config_contexts(config_file=str(kubeconfig))
    assert [c["name"] for c in contexts] == ["mgmt-cluster", "remote-cluster", "cluster-3"]
    assert current["name"] == "mgmt-cluster"
    doc = yaml.safe_load(kubeconfig.read_text())
    servers = {c["name"]: c["cluster"]["server"] for c in doc["clusters"]}
    assert len(set(servers.values())) == 3
    assert all(s.startswith("https://127.0.0.1:") for s in servers.values())
    assert len({p.etcd_url for p in clusters}) == 3
    for name, api in api_clients.items():
        assert api.configuration.host == servers[name]

    mgmt, remote = api_clients["mgmt-cluster"], api_clients["remote-cluster"]
    kube.apply(mgmt, configmap(clean_namespace, "only-in-mgmt"))
    dyn = clusters.dynamic_client("cluster-3")
    drs = dyn.resources.get(api_version="networking.istio.io/v1", kind="DestinationRule")
    assert dyn.get(drs, namespace=clean_namespace).items == []
    assert kube.get_or_none(mgmt, "v1", "ConfigMap", "only-in-mgmt", namespace=clean_namespace)
    assert kube.get_or_none(remote, "v1", "ConfigMap", "only-in-mgmt", namespace=clean_namespace) is None
    assert (
        kube.get_or_none(
            api_clients["cluster-3"], "v1", "ConfigMap", "only-in-mgmt", namespace=clean_namespace
        )
        is None
    )


@integration
def test_istio_schema_is_enforced(api_clients: dict[str, ApiClient], clean_namespace: str) -> None:
    api = api_clients["remote-cluster"]
    valid = destination_rule(clean_namespace, "reviews", outlierDetection={"maxEjectionPercent": 50})
    created = kube.apply(api, valid)
    assert created["spec"]["trafficPolicy"]["outlierDetection"]["maxEjectionPercent"] == 50

    # Server-side apply: a value of the wrong type or an unknown field cannot even be converted
    # to a typed patch, which kube-apiserver reports as HTTP 500 (not 4xx!) with this message.
    wrong_type = destination_rule(
        clean_namespace, "bad-type", outlierDetection={"maxEjectionPercent": "lots"}
    )
    with pytest.raises(ApiException) as exc_info:
        kube.apply(api, wrong_type)
    assert exc_info.value.status == 500
    message = status_message(exc_info.value)
    assert "failed to create typed patch object" in message
    assert "maxEjectionPercent: expected numeric" in message

    unknown = destination_rule(clean_namespace, "bad-field")
    unknown["spec"]["notAField"] = True
    with pytest.raises(ApiException) as exc_info:
        kube.apply(api, unknown)
    assert exc_info.value.status == 500
    assert ".spec.notAField: field not declared in schema" in status_message(exc_info.value)

    # The same objects via create (POST) are rejected as 422 Invalid / 400 strict decoding.
    with pytest.raises(ApiException) as exc_info:
        kube.create(api, wrong_type)
    assert exc_info.value.status == 422
    assert "maxEjectionPercent in body must be of type integer" in status_message(exc_info.value)
    with pytest.raises(ApiException) as exc_info:
        kube.create(api, unknown)  # fieldValidation=Strict
    assert exc_info.value.status == 400
    assert 'unknown field "spec.notAField"' in status_message(exc_info.value)

    # Enum values from the CRD schema are enforced (422); dry-run validates without persisting.
    with pytest.raises(ApiException) as exc_info:
        kube.apply(
            api, destination_rule(clean_namespace, "bad-lb", loadBalancer={"simple": "NOPE"}), dry_run=True
        )
    assert exc_info.value.status == 422
    kube.apply(api, destination_rule(clean_namespace, "dry", loadBalancer={"simple": "RANDOM"}), dry_run=True)
    for name in ("bad-type", "bad-field", "bad-lb", "dry"):
        assert (
            kube.get_or_none(
                api, "networking.istio.io/v1", "DestinationRule", name, namespace=clean_namespace
            )
            is None
        )


@integration
def test_seed_bookinfo_three_regions(api_clients: dict[str, ApiClient]) -> None:
    topologies = bookinfo_three_regions()
    for name, topo in topologies.items():
        result = seed_cluster(api_clients[name], topo)
        assert result.skipped == [], result.skipped
        seed_cluster(api_clients[name], topo)  # idempotent

    expected = {
        "mgmt-cluster": ("us-east-1", "us-east-1a", {"reviews-v1", "reviews-v2"}),
        "remote-cluster": ("us-east-2", "us-east-2b", {"reviews-v3"}),
        "cluster-3": ("eu-west-1", "eu-west-1a", {"reviews-v1"}),
    }
    for name, (region, zone, pods) in expected.items():
        api = api_clients[name]
        node = kube.get(api, "v1", "Node", f"{name}-control-plane")
        assert node["metadata"]["labels"][REGION_LABEL] == region
        assert node["metadata"]["labels"][ZONE_LABEL] == zone
        found = {p["metadata"]["name"]: p for p in kube.list_items(api, "v1", "Pod", namespace="bookinfo")}
        assert set(found) == pods
        for pod in found.values():
            assert pod["spec"]["nodeName"] == f"{name}-control-plane"
            assert pod["status"]["podIP"].startswith("10.")
        slices = kube.list_items(
            api,
            "discovery.k8s.io/v1",
            "EndpointSlice",
            namespace="bookinfo",
            label_selector="kubernetes.io/service-name=reviews",
        )
        assert len(slices) == 1
        endpoints = slices[0]["endpoints"]
        assert {e["targetRef"]["name"] for e in endpoints} == pods
        assert all(e["zone"] == zone and e["conditions"]["ready"] for e in endpoints)
        assert slices[0]["ports"] == [{"name": "http", "port": 9080, "protocol": "TCP"}]
        svc = kube.get(api, "v1", "Service", "reviews", namespace="bookinfo")
        assert svc["metadata"]["labels"] == {"app": "reviews", "service": "reviews"}
        gw = kube.get(api, "v1", "Service", "istio-eastwestgateway", namespace="istio-system")
        assert gw["spec"]["type"] == "LoadBalancer"
        assert gw["spec"]["ports"][0]["name"] == "tls" and gw["spec"]["ports"][0]["port"] == 15443
        assert gw["status"]["loadBalancer"]["ingress"][0]["ip"].startswith("172.18.")
        istiod = kube.get(api, "apps/v1", "Deployment", "istiod", namespace="istio-system")
        assert istiod["spec"]["template"]["spec"]["containers"][0]["image"] == "docker.io/istio/pilot:1.30.3"
        assert kube.get_or_none(api, "v1", "Namespace", "gloo-mesh") is not None


@integration
def test_loopback_addresses(api_clients: dict[str, ApiClient], clean_namespace: str) -> None:
    """Documents what kube-apiserver accepts: loopback Pod IPs and LoadBalancer IPs yes,
    loopback EndpointSlice addresses no (the seeder leaves those endpoints out)."""
    api = api_clients["mgmt-cluster"]
    base = cluster_topology(
        "loopback-test",  # its own Node, so the shared bookinfo Node keeps its labels
        region="us-east-1",
        zone="us-east-1a",
        subzone="rack-7",
        namespaces=(),
        apps=[App("ratings", clean_namespace, {"v1": "127.0.0.2", "v2": "10.10.9.9"})],
        istiod=False,
    )
    topo = ClusterTopology(
        cluster=base.cluster,
        network=base.network,
        nodes=base.nodes,
        namespaces=(clean_namespace,),
        istiod=None,
        gateway=EastWestGateway(
            network=base.network, address="127.0.0.10", port=15443, namespace=clean_namespace
        ),
        services=base.services,
        pods=base.pods,
    )
    result = seed_cluster(api, topo)
    assert len(result.skipped) == 1 and "ratings-v1 (127.0.0.2)" in result.skipped[0]
    node = kube.get(api, "v1", "Node", "loopback-test-control-plane")
    assert node["metadata"]["labels"][SUBZONE_LABEL] == "rack-7"
    pod = kube.get(api, "v1", "Pod", "ratings-v1", namespace=clean_namespace)
    assert pod["status"]["podIP"] == "127.0.0.2"  # (b) accepted
    gw = kube.get(api, "v1", "Service", "istio-eastwestgateway", namespace=clean_namespace)
    assert gw["status"]["loadBalancer"]["ingress"][0]["ip"] == "127.0.0.10"  # (c) accepted
    es = kube.get(api, "discovery.k8s.io/v1", "EndpointSlice", "ratings-seed", namespace=clean_namespace)
    assert [e["addresses"] for e in es["endpoints"]] == [["10.10.9.9"]]

    loopback_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "loopback", "namespace": clean_namespace},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.2"]}],
        "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
    }
    with pytest.raises(ApiException) as exc_info:  # (a) rejected
        kube.apply(api, loopback_slice)
    assert exc_info.value.status == 422
    assert "loopback" in status_message(exc_info.value)


# ------------------------------------------------------------------ faults
@integration
def test_apiserver_stop_and_restart_on_same_port(
    clusters: Clusters, api_clients: dict[str, ApiClient], clean_namespace: str
) -> None:
    plane = clusters["cluster-3"]
    api = api_clients["cluster-3"]
    port = plane.port
    kube.apply(api, configmap(clean_namespace, "survivor"))

    plane.stop_apiserver()
    assert not plane.running()
    with pytest.raises(Exception):  # noqa: B017 - connection refused surfaces as urllib3 MaxRetryError
        kube.request(api, "GET", f"/api/v1/namespaces/{clean_namespace}/configmaps/survivor", timeout=5)

    plane.restart_apiserver()
    assert plane.port == port and plane.running()
    # Same ApiClient, same kubeconfig: the object written before the outage is still there.
    assert kube.get(api, "v1", "ConfigMap", "survivor", namespace=clean_namespace)["data"] == {"k": "v"}

    plane.kill_apiserver()  # SIGKILL: a crash
    with pytest.raises(Exception):  # noqa: B017
        kube.request(api, "GET", "/version", timeout=5)
    plane.start_apiserver()
    assert kube.get(api, "v1", "ConfigMap", "survivor", namespace=clean_namespace)


@integration
def test_etcd_restart_keeps_data(
    clusters: Clusters, api_clients: dict[str, ApiClient], clean_namespace: str
) -> None:
    plane = clusters["remote-cluster"]
    api = api_clients["remote-cluster"]
    kube.apply(api, configmap(clean_namespace, "durable"))
    plane.kill_etcd()
    plane.start_etcd()
    found = kube.wait_for(
        lambda: kube.get(api, "v1", "ConfigMap", "durable", namespace=clean_namespace),
        timeout=60,
        what="ConfigMap after etcd restart",
    )
    assert found["data"] == {"k": "v"}


# ------------------------------------------------------------------ RBAC and audit
@integration
def test_rbac_is_enforced_for_minted_users(
    clusters: Clusters, api_clients: dict[str, ApiClient], clean_namespace: str
) -> None:
    path = clusters.kubeconfig_for_user(["mgmt-cluster", "remote-cluster"], SA_USER, SA_GROUPS)
    contexts, _ = kube_config.list_kube_config_contexts(config_file=str(path))
    assert [c["name"] for c in contexts] == ["mgmt-cluster", "remote-cluster"]
    sa_api = clusters.api_client("mgmt-cluster", kubeconfig=path)

    with pytest.raises(ApiException) as exc_info:
        kube.list_items(sa_api, "v1", "ConfigMap", namespace=clean_namespace)
    assert exc_info.value.status == 403
    assert SA_USER in status_message(exc_info.value)

    admin = api_clients["mgmt-cluster"]
    kube.apply(
        admin,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "read-cm", "namespace": clean_namespace},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    kube.apply(
        admin,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "read-cm", "namespace": clean_namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "mesh-reconciler", "namespace": "mesh-reconciler"}
            ],
        },
    )
    kube.wait_for(
        lambda: kube.list_items(sa_api, "v1", "ConfigMap", namespace=clean_namespace) is not None,
        timeout=10,
        what="RBAC grant to take effect",
    )
    with pytest.raises(ApiException) as exc_info:  # only the granted verbs
        kube.apply(sa_api, configmap(clean_namespace, "nope"))
    assert exc_info.value.status == 403
    with pytest.raises(ApiException) as exc_info:  # and only in mgmt-cluster
        kube.list_items(
            clusters.api_client("remote-cluster", kubeconfig=path),
            "v1",
            "ConfigMap",
            namespace=clean_namespace,
        )
    assert exc_info.value.status == 403


@integration
def test_audit_log_counts_requests(
    clusters: Clusters, api_clients: dict[str, ApiClient], clean_namespace: str
) -> None:
    plane = clusters["mgmt-cluster"]
    api = api_clients["mgmt-cluster"]
    mark = plane.audit_mark()
    kube.list_items(api, "v1", "ConfigMap", namespace=clean_namespace)
    kube.apply(api, destination_rule(clean_namespace, "audited"), dry_run=True)
    kube.apply(api, destination_rule(clean_namespace, "audited"))

    requests = [r for r in plane.audit_requests(since=mark, user="admin") if r.namespace == clean_namespace]
    assert [(r.verb, r.resource, r.dry_run) for r in requests] == [
        ("list", "configmaps", False),
        ("patch", "destinationrules", True),
        ("patch", "destinationrules", False),
    ]
    assert [r.is_write for r in requests] == [False, False, True]
    assert requests[2].name == "audited" and requests[2].api_group == "networking.istio.io"
    assert requests[1].short() == f"patch destinationrules {clean_namespace}/audited (dryRun)"
    # Nothing new after a fresh mark; other clusters' logs are separate.
    assert plane.audit_events(since=plane.audit_mark(), user="admin") == []
    other = clusters["remote-cluster"].audit_requests(since=None, user="admin")
    assert not any(r.name == "audited" for r in other)
