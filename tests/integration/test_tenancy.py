"""Tenancy against real API servers: reconciler.yaml boundaries, and the namespace-scoped RBAC variant.

* With the default configuration a policy that renders into ``kube-system`` is INVALID and the API
  servers see no request at all for that namespace; the other policies still reconcile.
* A ``tenancy`` rule keeps a team's policy out of another team's namespace (and out of the
  VirtualService it would otherwise share); a rule naming ``kube-system`` literally allows it.
* ``deploy/cronjob-namespaced.yaml``: the same deployment as ``cronjob.yaml`` with writes granted per
  namespace. Run as its ServiceAccount, a pass succeeds in the granted namespaces, and a write into
  another one is refused by the API server (403) and reported FAILED -- not a crash.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeharness import Clusters, kube
from kubernetes.client import ApiClient

from reconciler.clusters.kube import ISTIO_RESOURCES
from reconciler.engine.changeset import Action
from reconciler.engine.lease import LeaseSettings
from reconciler.engine.sync import SyncOptions
from reconciler.findings import ObjectKey
from reconciler.plan import ClusterSource
from reconciler.reconcile import PassResult, run_pass
from reconciler.status import build_status
from reconciler.translate import TENANCY_VIOLATION
from tests.integration.conftest import REPO, TWO, wipe

CRONJOB = [d for d in yaml.safe_load_all((REPO / "cronjob.yaml").read_text()) if d]
NAMESPACED = [d for d in yaml.safe_load_all((REPO / "deploy" / "cronjob-namespaced.yaml").read_text()) if d]
SA_USER = "system:serviceaccount:mesh-reconciler:mesh-reconciler"
SA_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:mesh-reconciler", "system:authenticated"]
ISTIO_PLURALS = {r.plural for r in ISTIO_RESOURCES.values()}
COMMIT = "0" * 40

DNS_TWEAK = ObjectKey("TrafficPolicy", "team-a", "dns-tweak")
EXAMPLE_TP = ObjectKey("TrafficPolicy", "bookinfo", "reviews-shift-failover")
EXAMPLE_VD = ObjectKey("VirtualDestination", "gloo-mesh", "bookinfo-global")


def traffic_policy(namespace: str, name: str, service: tuple[str, str], policy: str) -> str:
    svc_ns, svc_name = service
    return f"""\
apiVersion: networking.mesh.gloo.solo.io/v1
kind: TrafficPolicy
metadata:
  name: {name}
  namespace: {namespace}
spec:
  destinationSelector:
    - kubeServiceRefs:
        services:
          - {{clusterName: mgmt-cluster, name: {svc_name}, namespace: {svc_ns}}}
  policy:
    {policy}
"""


def reconcile(repo: Path, source: ClusterSource) -> PassResult:
    result = run_pass(repo, source, SyncOptions(apply=True), LeaseSettings(cluster="mgmt-cluster"))
    result.plan.close()
    return result


def actions(result: PassResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for change in result.changes.all():
        out[change.action.value] = out.get(change.action.value, 0) + 1
    return out


def status_of(result: PassResult, key: ObjectKey) -> dict[str, Any]:
    docs = build_status(
        result.plan.policies, result.plan.translation, result.changes, result.plan.inventory, COMMIT
    )
    out: dict[str, Any] = docs[key]["status"]
    return out


def set_tenancy(repo: Path, tenancy: str) -> None:
    path = repo / "reconciler.yaml"
    path.write_text(path.read_text() + tenancy)


@pytest.fixture
def kube_dns(bookinfo: Clusters, api_clients: dict[str, ApiClient]) -> Iterator[None]:
    """A kube-dns Service in mgmt-cluster's kube-system, as every real cluster has (the seeded
    topology has none); removed afterwards so other tests see the topology they expect."""
    api = api_clients["mgmt-cluster"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {
            "selector": {"k8s-app": "kube-dns"},
            "ports": [{"name": "dns-tcp", "port": 53, "targetPort": 53, "protocol": "TCP"}],
        },
    }
    kube.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
    kube.apply(api, service, field_manager="test-tenancy")
    yield
    with contextlib.suppress(Exception):
        kube.delete(api, "v1", "Service", "kube-dns", namespace="kube-system")


def istio_requests_in(clusters: Clusters, marks: dict[str, Any], namespace: str) -> list[str]:
    """Every request (writes, dry runs, reads) for our Istio kinds addressed to ``namespace``."""
    return [
        f"{name}: {r.short()}"
        for name in TWO
        for r in clusters[name].audit_requests(since=marks[name])
        if r.namespace == namespace and r.resource in ISTIO_PLURALS
    ]


def istio_objects_in(api_clients: dict[str, ApiClient], namespace: str) -> list[str]:
    return [
        f"{name}: {obj['kind']}/{obj['metadata']['name']}"
        for name in TWO
        for resource in ISTIO_RESOURCES.values()
        for obj in kube.list_items(api_clients[name], resource.api_version, resource.kind)
        if obj["metadata"]["namespace"] == namespace
    ]


# --- reconciler.yaml tenancy ----------------------------------------------------------------------


@pytest.mark.integration
def test_default_config_refuses_kube_system_and_reconciles_the_rest(
    fresh: Clusters,
    kube_dns: None,
    repo: Path,
    two_clusters: ClusterSource,
    api_clients: dict[str, ApiClient],
) -> None:
    (repo / "dns-tweak.yaml").write_text(
        traffic_policy(
            "team-a", "dns-tweak", ("kube-system", "kube-dns"), "outlierDetection: {consecutiveErrors: 2}"
        )
    )
    marks = {n: fresh[n].audit_mark() for n in TWO}
    result = reconcile(repo, two_clusters)

    outcome = result.plan.translation.outcomes[DNS_TWEAK]
    [err] = outcome.errors
    assert err.code == TENANCY_VIOLATION
    assert err.format().startswith(
        "dns-tweak.yaml:1:1: TrafficPolicy team-a/dns-tweak: would write DestinationRule kube-system/kube-dns "
        "in cluster mgmt-cluster: namespace kube-system is not allowed for policies in "
        "namespace team-a (reconciler.yaml tenancy; protected system namespace"
    ), err.format()
    assert istio_requests_in(fresh, marks, "kube-system") == []  # not even a dry run
    assert istio_objects_in(api_clients, "kube-system") == []
    # Everything else reconciled as without the intruder; the run is degraded, not fatal.
    assert actions(result) == {"created": 5}, result.changes.to_dict()
    assert not result.converged
    status = status_of(result, DNS_TWEAK)
    assert status["state"] == "INVALID"
    assert any("namespace kube-system is not allowed" in e for e in status["errors"])
    assert status_of(result, EXAMPLE_TP)["state"] == "ACCEPTED"
    assert status_of(result, EXAMPLE_VD)["state"] == "ACCEPTED"


@pytest.mark.integration
def test_team_rule_keeps_a_team_policy_out_of_another_namespace(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    set_tenancy(
        repo,
        "tenancy:\n"
        "  - policyNamespaces: [team-a]\n"
        "    destinationNamespaces: [team-a]\n"
        '  - policyNamespaces: ["*"]\n'
        '    destinationNamespaces: ["*"]\n',
    )
    # Sets a field of the very VirtualService the example's TrafficPolicy writes (bookinfo/reviews).
    (repo / "intruder.yaml").write_text(
        traffic_policy("team-a", "reviews-timeout", ("bookinfo", "reviews"), "requestTimeout: 1ms")
    )
    result = reconcile(repo, two_clusters)

    [err] = result.plan.translation.outcomes[ObjectKey("TrafficPolicy", "team-a", "reviews-timeout")].errors
    assert err.code == TENANCY_VIOLATION
    assert "would write VirtualService bookinfo/reviews in cluster mgmt-cluster" in err.message
    assert "reconciler.yaml tenancy rule 1 allows only: team-a" in err.message
    assert actions(result) == {"created": 5}, result.changes.to_dict()
    vs = kube.get(
        api_clients["mgmt-cluster"],
        "networking.istio.io/v1",
        "VirtualService",
        "reviews",
        namespace="bookinfo",
    )
    assert (
        vs["metadata"]["annotations"]["mesh-reconciler.io/sources"]
        == "TrafficPolicy/bookinfo/reviews-shift-failover"
    )
    assert all("timeout" not in route for route in vs["spec"]["http"])


@pytest.mark.integration
def test_rule_naming_kube_system_literally_allows_it(
    fresh: Clusters,
    kube_dns: None,
    repo: Path,
    two_clusters: ClusterSource,
    api_clients: dict[str, ApiClient],
) -> None:
    set_tenancy(
        repo,
        "tenancy:\n"
        "  - policyNamespaces: [team-a]\n"
        "    destinationNamespaces: [kube-system]\n"
        '  - policyNamespaces: ["*"]\n'
        '    destinationNamespaces: ["*"]\n',
    )
    (repo / "dns-tweak.yaml").write_text(
        traffic_policy(
            "team-a", "dns-tweak", ("kube-system", "kube-dns"), "outlierDetection: {consecutiveErrors: 2}"
        )
    )
    result = reconcile(repo, two_clusters)
    assert result.converged, [f.format() for f in result.plan.findings]
    assert actions(result) == {"created": 6}
    assert istio_objects_in(api_clients, "kube-system") == ["mgmt-cluster: DestinationRule/kube-dns"]
    assert status_of(result, DNS_TWEAK)["state"] == "ACCEPTED"


# --- deploy/cronjob-namespaced.yaml ---------------------------------------------------------------


def _rbac_free(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents apart from the grants for the Istio kinds and discovery."""
    return [
        d
        for d in docs
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding")
        and not (d["kind"] == "RoleBinding" and d["metadata"]["name"] == "mesh-reconciler-write")
    ]


def test_namespaced_manifest_is_cronjob_yaml_with_namespaced_writes() -> None:
    """Only the RBAC differs (so the two never drift), reads stay cluster-wide, writes are namespaced."""
    assert _rbac_free(NAMESPACED) == _rbac_free(CRONJOB)
    [wide] = [d for d in CRONJOB if d["kind"] == "ClusterRole"]
    roles = {d["metadata"]["name"]: d for d in NAMESPACED if d["kind"] == "ClusterRole"}
    assert set(roles) == {"mesh-reconciler-read", "mesh-reconciler-write"}
    for rule in roles["mesh-reconciler-read"]["rules"]:
        assert rule["verbs"] == ["list"]
    # Together they grant exactly what the cluster-wide role does, verb for verb.
    granted = {
        (g, r, v)
        for role in roles.values()
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == {
        (g, r, v)
        for rule in wide["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    [crb] = [d for d in NAMESPACED if d["kind"] == "ClusterRoleBinding"]
    assert crb["roleRef"]["name"] == "mesh-reconciler-read"  # nothing writes cluster-wide
    bindings = [
        d
        for d in NAMESPACED
        if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == "mesh-reconciler-write"
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["bookinfo", "istio-system"]


def _namespaced_rbac(api_clients: dict[str, ApiClient]) -> list[dict[str, Any]]:
    """Install the namespaced variant in both clusters (the remote cluster needs the same grants);
    returns the grants to remove afterwards."""
    grants = [d for d in NAMESPACED if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "RoleBinding")]
    for name in TWO:
        api = api_clients[name]
        # test_deploy.py may have left cronjob.yaml's cluster-wide grant to the same ServiceAccount.
        with contextlib.suppress(Exception):
            kube.delete(api, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "mesh-reconciler")
        for doc in NAMESPACED:
            if doc["kind"] != "CronJob":
                kube.apply(api, copy.deepcopy(doc), field_manager="test-tenancy")
    return [g for g in grants if g["metadata"]["name"] != "mesh-reconciler-lease"]


def _remove(api_clients: dict[str, ApiClient], docs: list[dict[str, Any]]) -> None:
    """Extra grants would make test_deploy.py's minimality check meaningless, so none stay behind."""
    for api in api_clients.values():
        for doc in docs:
            meta = doc["metadata"]
            with contextlib.suppress(Exception):
                kube.delete(
                    api, doc["apiVersion"], doc["kind"], meta["name"], namespace=meta.get("namespace")
                )


@pytest.mark.integration
def test_namespaced_rbac_allows_granted_namespaces_and_refuses_others(
    bookinfo: Clusters,
    api_clients: dict[str, ApiClient],
    repo: Path,
    clean_namespace: str,
    tmp_path: Path,
) -> None:
    wipe(api_clients)
    for doc in NAMESPACED:  # the manifest itself is valid for the API server
        if doc["kind"] != "Namespace":
            kube.apply(
                api_clients["mgmt-cluster"], copy.deepcopy(doc), field_manager="test-tenancy", dry_run=True
            )
    grants = _namespaced_rbac(api_clients)
    try:
        sa = bookinfo.kubeconfig_for_user(list(TWO), SA_USER, SA_GROUPS, path=tmp_path / "sa.kubeconfig")
        source = ClusterSource(kubeconfigs=[str(sa)], contexts=list(TWO), request_timeout=5.0)

        first = reconcile(repo, source)
        assert first.converged, first.changes.to_dict()
        assert actions(first) == {"created": 5}  # istio-system in both clusters, bookinfo in mgmt

        # Every write verb in a granted namespace (patch istio-system, delete bookinfo) and a create
        # in a namespace tenancy allows but the RBAC does not grant.
        vd = repo / "bookinfo-global.yaml"
        vd.write_text(vd.read_text().replace("baseEjectionTime: 120s", "baseEjectionTime: 60s"))
        (repo / "reviews-shift-failover.yaml").unlink()
        kube.apply(
            api_clients["mgmt-cluster"],
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ledger", "namespace": clean_namespace, "labels": {"app": "ledger"}},
                "spec": {"selector": {"app": "ledger"}, "ports": [{"name": "http", "port": 8080}]},
            },
            field_manager="test-tenancy",
        )
        (repo / "ledger.yaml").write_text(
            traffic_policy(
                clean_namespace, "ledger-timeout", (clean_namespace, "ledger"), "requestTimeout: 2s"
            )
        )
        marks = {n: bookinfo[n].audit_mark() for n in TWO}
        second = reconcile(repo, source)

        assert not second.converged
        assert actions(second) == {"configured": 2, "unchanged": 2, "pruned": 1, "failed": 1}, (
            second.changes.to_dict()
        )
        [failed] = [c for c in second.changes.all() if c.action is Action.FAILED]
        assert (failed.cluster, failed.kind, failed.namespace, failed.name) == (
            "mgmt-cluster",
            "VirtualService",
            clean_namespace,
            "ledger",
        )
        assert "forbidden" in failed.message.lower(), failed.message
        refused = [
            r.short()
            for r in bookinfo["mgmt-cluster"].audit_requests(since=marks["mgmt-cluster"], user=SA_USER)
            if r.namespace == clean_namespace and r.resource in ISTIO_PLURALS
        ]
        assert refused, "the write was never sent: the API server must be the one refusing it"
        assert all(
            r.code == 403
            for r in bookinfo["mgmt-cluster"].audit_requests(since=marks["mgmt-cluster"], user=SA_USER)
            if r.namespace == clean_namespace and r.resource in ISTIO_PLURALS
        ), refused
        ledger = status_of(second, ObjectKey("TrafficPolicy", clean_namespace, "ledger-timeout"))
        assert ledger["state"] == "FAILED"
        assert any("forbidden" in e.lower() for e in ledger["errors"]), ledger["errors"]
        assert status_of(second, EXAMPLE_VD)["state"] == "ACCEPTED"
    finally:
        _remove(api_clients, grants)
        wipe(api_clients)
        with contextlib.suppress(Exception):  # its namespace only goes Terminating (no controller)
            kube.delete(api_clients["mgmt-cluster"], "v1", "Service", "ledger", namespace=clean_namespace)
