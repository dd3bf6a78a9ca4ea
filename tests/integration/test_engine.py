"""Discovery, translation, diff, apply and prune against real API servers (several contexts)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubeharness import Clusters, kube
from kubernetes.client import ApiClient

from reconciler.clusters.inventory import MANAGED_BY_LABEL
from reconciler.clusters.kube import ISTIO_RESOURCES
from reconciler.engine.changeset import Action, ChangeSet
from reconciler.engine.lease import LeaseHeld, LeaseSettings, RunLease
from reconciler.engine.sync import WRITES_IN_FLIGHT, Desired, SyncOptions, sync
from reconciler.findings import ObjectKey
from reconciler.plan import ClusterSource, build_plan
from reconciler.reconcile import run_pass
from reconciler.translate.result import DesiredObject
from reconciler.yamlio import to_yaml
from tests.integration.conftest import TWO
from tests.unit.topology import owned

pytestmark = pytest.mark.integration

ISTIO_PLURALS = {r.plural for r in ISTIO_RESOURCES.values()}
ISTIO_KINDS = set(ISTIO_RESOURCES)
DISCOVERY_PLURALS = {"nodes", "services", "endpointslices", "deployments"} | ISTIO_PLURALS


def requests_since(clusters: Clusters, marks: dict[str, Any], name: str) -> list[Any]:
    return [r for r in clusters[name].audit_requests(since=marks[name], user="admin")]


def mark(clusters: Clusters) -> dict[str, Any]:
    return {n: clusters[n].audit_mark() for n in TWO}


def actions(changes: ChangeSet, cluster: str | None = None) -> Counter[str]:
    return Counter(c.action.value for c in changes.all() if cluster is None or c.cluster == cluster)


def reconcile(repo: Path, source: ClusterSource, **kw: Any) -> ChangeSet:
    options = SyncOptions(apply=True, **kw)
    return run_pass(repo, source, options, LeaseSettings(cluster="mgmt-cluster")).changes


def live(api: ApiClient, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result: dict[str, Any] | None = kube.get_or_none(
        api, "networking.istio.io/v1", kind, name, namespace=namespace
    )
    return result


# --- discovery and translation --------------------------------------------------------------------


def test_discovery_one_list_per_kind_per_cluster(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource
) -> None:
    marks = mark(fresh)
    plan = build_plan(repo, two_clusters)
    plan.close()
    for name in TWO:
        reqs = requests_since(fresh, marks, name)
        assert Counter(r.verb for r in reqs) == {"list": len(DISCOVERY_PLURALS)}, [r.short() for r in reqs]
        assert {r.resource for r in reqs} == DISCOVERY_PLURALS
    mgmt = plan.inventory.clusters["mgmt-cluster"]
    assert [str(loc) for loc in mgmt.localities()] == ["us-east-1/us-east-1a"]
    [reviews] = [s for s in mgmt.services if s.name == "reviews"]
    assert reviews.cluster_ip and str(reviews.locality) == "us-east-1/us-east-1a"
    assert len(reviews.endpoints) == 2
    assert [m.name for m in mgmt.meshes] == ["istiod-istio-system-mgmt-cluster"]
    assert [(g.address, g.port) for g in mgmt.gateways] == [("172.18.0.10", 15443)]
    assert "cluster-3" not in plan.inventory.clusters  # only the contexts asked for
    assert not any(f.is_error for f in plan.findings)


def test_discovery_keeps_little_of_unchanged_objects_and_a_snapshot_keeps_objects_whole(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource
) -> None:
    """Memory: an object of ours found equal to its desired object as it is listed is kept as that
    desired object (nothing of what was listed); listed whole, equal parts of our objects
    (``fieldsV1`` sets, labels, a DestinationRule's ``trafficPolicy``) are one object; of the kinds
    we only read only what is read is decoded (``READ_SHAPES``); a snapshot (``keep_raw``) still
    gets everything as listed — and all give the same inventory and the same decisions."""
    second = (repo / "bookinfo-global.yaml").read_text().replace("bookinfo-global", "bookinfo-twin")
    (repo / "bookinfo-twin.yaml").write_text(second.replace("reviews.global", "reviews-twin.global"))
    reconcile(repo, two_clusters)
    with build_plan(repo, two_clusters) as plan:
        mgmt = plan.inventory.clusters["mgmt-cluster"]
        desired = {(d.kind, d.namespace, d.name): d.body for d in plan.translation.objects["mgmt-cluster"]}
        assert mgmt.in_sync == set(desired) and len(mgmt.managed) == len(desired)
        assert all(
            o is desired[(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])] for o in mgmt.managed
        )
        assert plan.discovery is not None
        diff = sync(plan.desired(), plan.discovery.clients, SyncOptions(apply=False))
        assert set(actions(diff)) == {"unchanged"}
        lean = plan.inventory

        # Listed again whole (what happens when the desired objects they were compared with change)
        assert plan.discovery.list_owned_again(["mgmt-cluster"]) == []
        managed = mgmt.managed
        assert not mgmt.in_sync and len(managed) == len(desired)
        by_value: dict[str, set[int]] = {}
        for obj in managed:
            for entry in obj["metadata"]["managedFields"]:
                by_value.setdefault(json.dumps(entry["fieldsV1"], sort_keys=True), set()).add(
                    id(entry["fieldsV1"])
                )
        assert all(len(ids) == 1 for ids in by_value.values())
        assert 0 < len(by_value) < sum(len(o["metadata"]["managedFields"]) for o in managed)  # shared
        rules = [o for o in managed if o["kind"] == "DestinationRule"]
        assert len(rules) == 2 and rules[0]["spec"] != rules[1]["spec"]  # the two policies' rules...
        assert rules[0]["spec"]["trafficPolicy"] is rules[1]["spec"]["trafficPolicy"]  # ...share this
        assert rules[0]["metadata"]["labels"] is rules[1]["metadata"]["labels"]
        assert all("&id" not in to_yaml(o) for o in managed)
        again = sync(plan.desired(), plan.discovery.clients, SyncOptions(apply=False))
        assert set(actions(again)) == {"unchanged"}  # and compared exactly as before
    kept = dataclasses.replace(two_clusters, keep_raw=True)
    with build_plan(repo, kept) as plan:
        assert plan.discovery is not None
        for name, state in plan.inventory.clusters.items():  # services, endpoints, gateways...
            other = lean.clusters[name]
            assert dataclasses.replace(state, managed=[], in_sync=set()) == dataclasses.replace(
                other, managed=[], in_sync=set()
            )
            assert [_key(o) for o in state.managed] == [_key(o) for o in other.managed]  # ...our objects
        services = [o for o in plan.discovery.raw["mgmt-cluster"] if o["kind"] == "Service"]
        assert services and all(o["metadata"].get("managedFields") for o in services)
        ours = [o for o in plan.discovery.raw["mgmt-cluster"] if o["kind"] in ISTIO_KINDS]
        sets = [e["fieldsV1"] for o in ours for e in o["metadata"]["managedFields"]]
        assert len({id(s) for s in sets}) == len(sets)  # as listed: a snapshot writes no YAML aliases
        rules = [o for o in ours if o["kind"] == "DestinationRule"]
        assert rules[0]["spec"]["trafficPolicy"] == rules[1]["spec"]["trafficPolicy"]
        assert rules[0]["spec"]["trafficPolicy"] is not rules[1]["spec"]["trafficPolicy"]
        assert "&id" not in to_yaml(ours)


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])


def test_a_service_without_endpoints_is_read_as_one_not_as_an_unreadable_cluster(
    fresh: Clusters,
    repo: Path,
    two_clusters: ClusterSource,
    api_clients: dict[str, ApiClient],
    clean_namespace: str,
) -> None:
    """The API server writes an EndpointSlice without endpoints (a service scaled to zero) as
    ``"endpoints": null``; discovery, which decodes only what it reads (``READ_SHAPES``), reads it
    as a service without ready endpoints — never as an unreadable answer that fails the cluster."""
    api = api_clients["mgmt-cluster"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "idle", "namespace": clean_namespace, "labels": {"app": "idle"}},
        "spec": {"ports": [{"name": "http", "port": 8080}]},
    }
    empty = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "idle-empty",
            "namespace": clean_namespace,
            "labels": {"kubernetes.io/service-name": "idle"},
        },
        "addressType": "IPv4",
        "endpoints": [],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    kube.apply(api, service)
    kube.apply(api, empty)
    try:
        listed = kube.get(
            api, "discovery.k8s.io/v1", "EndpointSlice", "idle-empty", namespace=clean_namespace
        )
        assert listed["endpoints"] is None  # as the server writes it: the case under test
        with build_plan(repo, two_clusters) as plan:
            state = plan.inventory.clusters["mgmt-cluster"]
            assert state.reachable, state.error
            [idle] = [s for s in state.services if s.name == "idle"]
            assert idle.endpoints == () and idle.cluster_ip
    finally:  # a namespace is never really deleted here (no controller): remove what others would list
        kube.delete(api, "discovery.k8s.io/v1", "EndpointSlice", "idle-empty", namespace=clean_namespace)
        kube.delete(api, "v1", "Service", "idle", namespace=clean_namespace)


def test_every_rendered_object_is_accepted_by_the_real_api_server(
    fresh: Clusters, repo: Path, api_clients: dict[str, ApiClient], kubeconfig: Path
) -> None:
    # All three clusters, with ordered and zone-level directives: exercises failoverPriority too.
    (repo / "reconciler.yaml").write_text("clusters: {}\n")
    vd = (
        (repo / "bookinfo-global.yaml")
        .read_text()
        .replace(
            "    destinationSelectors:",
            "    failoverDirectives:\n"
            "      - from: {region: us-east-1, zone: us-east-1a}\n"
            "        to: [{region: eu-west-1}, {region: us-east-2, zone: us-east-2b}]\n"
            "    destinationSelectors:",
        )
    )
    (repo / "bookinfo-global.yaml").write_text(vd)
    plan = build_plan(repo, ClusterSource(kubeconfigs=[str(kubeconfig)]))
    try:
        assert not any(f.is_error for f in plan.findings), [f.format() for f in plan.findings]
        objects = plan.translation.all_objects()
        assert {o.cluster for o in objects} == {"mgmt-cluster", "remote-cluster", "cluster-3"}
        assert {o.kind for o in objects} == {"ServiceEntry", "DestinationRule", "VirtualService"}
        dr = next(o for o in objects if o.kind == "DestinationRule" and o.cluster == "mgmt-cluster")
        assert "failoverPriority" in dr.body["spec"]["trafficPolicy"]["loadBalancer"]["localityLbSetting"]
        assert plan.discovery is not None
        for o in objects:
            client = plan.discovery.clients[o.cluster]
            result = client.apply(ISTIO_RESOURCES[o.kind], o.body, force=False, dry_run=True)
            assert result["spec"] == o.body["spec"], o.ref  # nothing pruned or rewritten by the schema
    finally:
        plan.close()


# --- reconcile ------------------------------------------------------------------------------------


def test_first_reconcile_creates_everything_second_is_a_noop(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    first = reconcile(repo, two_clusters)
    assert actions(first) == {"created": 5}, first.to_dict()
    assert actions(first, "mgmt-cluster") == {"created": 3}
    se = live(api_clients["mgmt-cluster"], "ServiceEntry", "vd-bookinfo-global-gloo-mesh", "istio-system")
    assert se is not None and se["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mesh-reconciler"
    vs = live(api_clients["mgmt-cluster"], "VirtualService", "reviews", "bookinfo")
    assert vs is not None and vs["spec"]["http"][0]["route"][0]["destination"]["host"] == "reviews.global"

    marks = mark(fresh)
    second = reconcile(repo, two_clusters)
    assert actions(second) == {"unchanged": 5}
    for name in TWO:
        istio_writes = [
            r.short()
            for r in requests_since(fresh, marks, name)
            if r.resource in ISTIO_PLURALS and r.verb != "list"
        ]
        assert istio_writes == [], istio_writes  # not even a dry run


def test_first_sync_sends_one_patch_per_object_and_no_dry_run(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource
) -> None:
    # Nothing exists yet: no dry run per object; one metadata-only LIST per kind that has creates
    # (to find names someone else already uses), then exactly one apply PATCH per object.
    marks = mark(fresh)
    first = reconcile(repo, two_clusters)
    assert actions(first) == {"created": 5}
    for name in TWO:
        istio = [r for r in requests_since(fresh, marks, name) if r.resource in ISTIO_PLURALS]
        patches = [r for r in istio if r.verb == "patch"]
        assert [r for r in patches if r.dry_run] == [], [r.short() for r in patches]
        assert len(patches) == actions(first, name)["created"]
        kinds_created = {c.kind for c in first.all() if c.cluster == name}
        lists = Counter(r.resource for r in istio if r.verb == "list")
        # discovery's labelled LIST of every kind, plus one metadata LIST per kind created here
        assert lists == Counter({p: 1 for p in ISTIO_PLURALS}) + Counter(
            ISTIO_RESOURCES[k].plural for k in kinds_created
        ), lists
        assert len(istio) == len(patches) + sum(lists.values())


def test_noop_diff_makes_only_list_requests(fresh: Clusters, repo: Path, two_clusters: ClusterSource) -> None:
    reconcile(repo, two_clusters)
    marks = mark(fresh)
    plan = build_plan(repo, two_clusters)
    try:
        assert plan.discovery is not None
        changes = sync(plan.desired(), plan.discovery.clients, SyncOptions(apply=False))
    finally:
        plan.close()
    assert not changes.has_differences
    for name in TWO:
        reqs = requests_since(fresh, marks, name)
        assert {r.verb for r in reqs} == {"list"}, [r.short() for r in reqs]
        assert len(reqs) == len(DISCOVERY_PLURALS)


def test_drift_is_detected_by_diff_and_restored_by_reconcile(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    reconcile(repo, two_clusters)
    mgmt = api_clients["mgmt-cluster"]
    kube.merge_patch(
        mgmt,
        "networking.istio.io/v1",
        "DestinationRule",
        "vd-bookinfo-global-gloo-mesh",
        {"spec": {"trafficPolicy": {"outlierDetection": {"interval": "30s"}}}},
        namespace="istio-system",
        field_manager="kubectl-edit",
    )
    marks = mark(fresh)
    plan = build_plan(repo, two_clusters)
    try:
        assert plan.discovery is not None
        diff = sync(plan.desired(), plan.discovery.clients, SyncOptions(apply=False))
    finally:
        plan.close()
    [changed] = [c for c in diff.all() if c.action is Action.CONFIGURE]
    assert (changed.cluster, changed.kind) == ("mgmt-cluster", "DestinationRule")
    assert changed.changed_paths == ["spec.trafficPolicy.outlierDetection.interval"]
    assert "-      interval: 30s" in changed.diff and "+      interval: 5s" in changed.diff
    mgmt_reqs = requests_since(fresh, marks, "mgmt-cluster")
    confirmations = [r for r in mgmt_reqs if r.verb == "patch"]
    assert [(r.resource, r.dry_run) for r in confirmations] == [
        ("destinationrules", True)
    ]  # only the drifted one
    assert not [r for r in requests_since(fresh, marks, "remote-cluster") if r.verb != "list"]

    marks = mark(fresh)
    restored = reconcile(repo, two_clusters)
    [fixed] = [c for c in restored.all() if c.action is Action.CONFIGURE]
    assert fixed.previous_managers == ["kubectl-edit"]  # read from the answer's managedFields
    dr = live(mgmt, "DestinationRule", "vd-bookinfo-global-gloo-mesh", "istio-system")
    assert dr is not None and dr["spec"]["trafficPolicy"]["outlierDetection"]["interval"] == "5s"
    # One forced PATCH repairs it: no dry run, no non-forced probe answered with a 409 first.
    writes = [r for r in requests_since(fresh, marks, "mgmt-cluster") if r.verb == "patch"]
    assert [(r.resource, r.dry_run, r.code) for r in writes] == [("destinationrules", False, 200)]


def test_removing_a_policy_prunes_exactly_its_objects(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    reconcile(repo, two_clusters)
    (repo / "reviews-shift-failover.yaml").unlink()
    changes = reconcile(repo, two_clusters)
    assert [(c.cluster, c.kind, c.action) for c in changes.all() if c.action is not Action.UNCHANGED] == [
        ("mgmt-cluster", "VirtualService", Action.PRUNE)
    ]
    assert live(api_clients["mgmt-cluster"], "VirtualService", "reviews", "bookinfo") is None
    assert live(api_clients["mgmt-cluster"], "ServiceEntry", "vd-bookinfo-global-gloo-mesh", "istio-system")


def test_mass_prune_is_refused_unless_allowed(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    reconcile(repo, two_clusters)
    (repo / "bookinfo-global.yaml").unlink()
    (repo / "reviews-shift-failover.yaml").unlink()
    refused = reconcile(repo, two_clusters)
    assert actions(refused) == {"failed": 5}
    assert "refusing to prune 3 of 3 objects in mgmt-cluster" in refused.clusters["mgmt-cluster"].notes[0]
    assert live(api_clients["mgmt-cluster"], "VirtualService", "reviews", "bookinfo") is not None
    allowed = reconcile(repo, two_clusters, allow_mass_prune=True)
    assert actions(allowed) == {"pruned": 5}


def test_objects_we_do_not_own_are_never_touched(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    mgmt = api_clients["mgmt-cluster"]
    theirs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "bookinfo"},
        "spec": {
            "hosts": ["reviews.bookinfo.svc.cluster.local"],
            "http": [{"route": [{"destination": {"host": "reviews"}}]}],
        },
    }
    kube.apply(mgmt, theirs, field_manager="helm")
    # Our label without our annotation: looks ours to a label selector, but is not.
    impostor = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {
            "name": "ratings",
            "namespace": "bookinfo",
            "labels": {"app.kubernetes.io/managed-by": "mesh-reconciler"},
        },
        "spec": {"host": "ratings.bookinfo.svc.cluster.local"},
    }
    kube.apply(mgmt, impostor, field_manager="someone")
    changes = reconcile(repo, two_clusters)
    [conflict] = [c for c in changes.all() if c.action is Action.CONFLICT]
    assert (conflict.kind, conflict.name) == ("VirtualService", "reviews")
    assert "not managed by mesh-reconciler" in conflict.message and "--adopt" in conflict.message
    vs = live(mgmt, "VirtualService", "reviews", "bookinfo")
    assert vs is not None and vs["spec"]["http"][0]["route"][0]["destination"]["host"] == "reviews"
    assert live(mgmt, "DestinationRule", "ratings", "bookinfo") is not None
    assert actions(changes) == {"created": 4, "conflict": 1}

    adopted = reconcile(repo, two_clusters, adopt=True)
    [taken] = [c for c in adopted.all() if c.kind == "VirtualService"]
    assert taken.action is Action.CONFIGURE and "helm" in taken.previous_managers
    assert live(mgmt, "DestinationRule", "ratings", "bookinfo") is not None  # still never pruned


def test_api_server_stopped_mid_run_leaves_others_converged(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    plan = build_plan(repo, two_clusters)  # discovery sees both clusters...
    try:
        fresh["remote-cluster"].stop_apiserver()  # ...then remote goes away before the writes
        assert plan.discovery is not None
        changes = sync(plan.desired(), plan.discovery.clients, SyncOptions(apply=True))
    finally:
        plan.close()
        fresh["remote-cluster"].start_apiserver()
    assert actions(changes, "mgmt-cluster") == {"created": 3}
    remote = changes.clusters["remote-cluster"]
    assert not remote.reachable or actions(changes, "remote-cluster") == {"failed": 2}
    assert changes.has_errors
    assert live(api_clients["mgmt-cluster"], "ServiceEntry", "vd-bookinfo-global-gloo-mesh", "istio-system")


def test_unreachable_cluster_is_reported_and_nothing_elsewhere_is_pruned(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    reconcile(repo, two_clusters)
    fresh["remote-cluster"].stop_apiserver()
    try:
        changes = reconcile(repo, two_clusters)
    finally:
        fresh["remote-cluster"].start_apiserver()
    assert not changes.clusters["remote-cluster"].reachable
    # mgmt's objects depend on remote's discovery (its endpoints): held as they are, nothing deleted
    assert actions(changes, "mgmt-cluster") == {"held": 2, "unchanged": 1}
    assert live(api_clients["mgmt-cluster"], "ServiceEntry", "vd-bookinfo-global-gloo-mesh", "istio-system")


def test_invalid_policy_keeps_its_objects(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    reconcile(repo, two_clusters)
    path = repo / "bookinfo-global.yaml"
    path.write_text(path.read_text().replace("outlierDetection:", "outlierDetecton:"))
    changes = reconcile(repo, two_clusters)
    held = [c for c in changes.all() if c.action is Action.HELD]
    # the VirtualService too: its TrafficPolicy shifts to the now-invalid VirtualDestination
    assert {(c.cluster, c.kind) for c in held} == {
        ("mgmt-cluster", "ServiceEntry"),
        ("mgmt-cluster", "DestinationRule"),
        ("mgmt-cluster", "VirtualService"),
        ("remote-cluster", "ServiceEntry"),
        ("remote-cluster", "DestinationRule"),
    }
    assert all("is invalid" in c.message for c in held)
    assert live(
        api_clients["remote-cluster"], "DestinationRule", "vd-bookinfo-global-gloo-mesh", "istio-system"
    )


def test_unparseable_file_suspends_pruning(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    reconcile(repo, two_clusters)
    (repo / "reviews-shift-failover.yaml").write_text("kind: [unterminated\n")
    changes = reconcile(repo, two_clusters)
    [vs] = [c for c in changes.all() if c.kind == "VirtualService"]
    assert vs.action is Action.HELD and "pruning suspended" in vs.message
    assert live(api_clients["mgmt-cluster"], "VirtualService", "reviews", "bookinfo") is not None


def test_dry_run_validates_without_persisting(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    marks = mark(fresh)
    changes = reconcile(repo, two_clusters, dry_run=True)
    assert actions(changes) == {"created": 5}
    assert not any(c.written for c in changes.all())
    for name in TWO:
        writes = [
            r for r in requests_since(fresh, marks, name) if r.resource in ISTIO_PLURALS and r.verb == "patch"
        ]
        assert writes and all(r.dry_run for r in writes)
    assert (
        live(api_clients["mgmt-cluster"], "ServiceEntry", "vd-bookinfo-global-gloo-mesh", "istio-system")
        is None
    )


def test_no_force_reports_conflicting_manager(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    reconcile(repo, two_clusters)
    mgmt = api_clients["mgmt-cluster"]
    kube.apply(
        mgmt,
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "vd-bookinfo-global-gloo-mesh", "namespace": "istio-system"},
            "spec": {"host": "reviews.global", "trafficPolicy": {"outlierDetection": {"interval": "7s"}}},
        },
        field_manager="platform-oncall",
        force=True,
    )
    refused = reconcile(repo, two_clusters, force=False)
    [conflict] = [c for c in refused.all() if c.action is Action.CONFLICT]
    assert conflict.previous_managers == ["platform-oncall"]
    assert "--no-force" in conflict.message
    forced = reconcile(repo, two_clusters)
    [taken] = [c for c in forced.all() if c.action is Action.CONFIGURE]
    assert taken.previous_managers == ["platform-oncall"]


def test_manager_sharing_a_value_is_not_named_as_taken_over(
    fresh: Clusters,
    repo: Path,
    two_clusters: ClusterSource,
    api_clients: dict[str, ApiClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A manager that holds a field with our value keeps it (shared); only the one whose value we
    replaced lost a field, and only it is reported as taken over."""
    reconcile(repo, two_clusters)
    mgmt = api_clients["mgmt-cluster"]
    name = "vd-bookinfo-global-gloo-mesh"
    ours = live(mgmt, "DestinationRule", name, "istio-system")
    assert ours is not None
    same = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule"}
    meta = {"name": name, "namespace": "istio-system"}
    kube.apply(
        mgmt, {**same, "metadata": meta, "spec": {"host": ours["spec"]["host"]}}, field_manager="observer"
    )
    kube.apply(
        mgmt,
        {**same, "metadata": meta, "spec": {"trafficPolicy": {"outlierDetection": {"interval": "9s"}}}},
        field_manager="platform-oncall",
        force=True,
    )
    drifted = live(mgmt, "DestinationRule", name, "istio-system")
    assert drifted is not None
    assert {m["manager"] for m in drifted["metadata"]["managedFields"]} >= {"observer", "platform-oncall"}

    with caplog.at_level(logging.INFO, logger="reconciler.engine.sync"):
        forced = reconcile(repo, two_clusters)
    [taken] = [c for c in forced.all() if c.action is Action.CONFIGURE]
    assert taken.previous_managers == ["platform-oncall"]
    [line] = [r.getMessage() for r in caplog.records if "took over fields" in r.getMessage()]
    assert name in line and line.endswith("took over fields from platform-oncall")
    after = live(mgmt, "DestinationRule", name, "istio-system")
    assert after is not None and after["spec"]["trafficPolicy"]["outlierDetection"]["interval"] == "5s"
    assert "observer" in {m["manager"] for m in after["metadata"]["managedFields"]}  # still shares host


def _created_during_sync(api: ApiClient, obj: dict[str, Any]) -> Callable[[], str]:
    """A ``stop`` hook that creates ``obj`` (as another manager) the first time the engine asks it:
    after sync listed the names in use (``_strangers``), before any object's apply — the window a
    concurrent ``kubectl apply`` or Helm release can hit. Sync one cluster with it: every cluster's
    worker asks ``stop``, each after listing its own names only."""
    lock, done = threading.Lock(), []

    def hook() -> str:
        with lock:
            if not done:
                done.append(kube.apply(api, obj, field_manager="helm"))
        return ""

    return hook


@pytest.mark.parametrize("conflicting", [True, False], ids=["conflicting", "disjoint"])
def test_object_created_by_someone_else_after_listing_is_not_silently_taken(
    fresh: Clusters,
    repo: Path,
    two_clusters: ClusterSource,
    api_clients: dict[str, ApiClient],
    conflicting: bool,
) -> None:
    """A new object is created with an unforced apply: if someone created it since we listed, a
    field of theirs that differs from ours answers 409 and their object stays as it is; one with no
    field in conflict is merged into and reported as such, never as "created"."""
    mgmt = api_clients["mgmt-cluster"]
    spec: dict[str, Any] = {"exportTo": ["."]}
    if conflicting:
        spec["http"] = [{"route": [{"destination": {"host": "reviews"}}]}]
    theirs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "bookinfo"},
        "spec": spec,
    }
    with build_plan(repo, two_clusters) as plan:
        assert plan.discovery is not None
        hook = _created_during_sync(mgmt, theirs)
        # Only mgmt-cluster is synced: its worker asks ``stop`` only after listing its own names,
        # while another cluster's worker could ask first, before that LIST (a race, seen under load).
        only_mgmt = SyncOptions(apply=True, cluster_filter={"mgmt-cluster"})
        changes = sync(plan.desired(), plan.discovery.clients, only_mgmt, stop=hook)
    [vs] = [c for c in changes.all() if (c.cluster, c.kind) == ("mgmt-cluster", "VirtualService")]
    after = live(mgmt, "VirtualService", "reviews", "bookinfo")
    assert after is not None
    if conflicting:
        assert vs.action is Action.CONFLICT and vs.previous_managers == ["helm"]
        assert "created by someone else after this cluster was listed" in vs.message
        assert after["spec"] == spec and MANAGED_BY_LABEL not in (after["metadata"].get("labels") or {})
    else:
        assert vs.action is Action.CONFIGURE and vs.previous_managers == ["helm"]
        assert vs.message.startswith("existed already: created by helm")
        assert after["spec"]["exportTo"] == ["."] and after["spec"]["http"]  # theirs and ours


def test_lease_held_by_another_run_and_stale_lease_taken_over(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource
) -> None:
    plan = build_plan(repo, two_clusters)
    try:
        assert plan.discovery is not None
        other = RunLease(plan.discovery.clients["mgmt-cluster"], identity="other-run", duration=60)
        other.acquire()
        with pytest.raises(LeaseHeld, match="other-run"):
            run_pass(repo, two_clusters, SyncOptions(apply=True), LeaseSettings(cluster="mgmt-cluster"))
        # a dry run takes no lock
        run_pass(repo, two_clusters, SyncOptions(apply=True, dry_run=True)).plan.close()
        stale = RunLease(plan.discovery.clients["mgmt-cluster"], identity="crashed-run", duration=1)
        other.release()
        stale.acquire()  # never released: the holder "crashed"
        import time

        time.sleep(2.1)
        result = run_pass(repo, two_clusters, SyncOptions(apply=True), LeaseSettings(cluster="mgmt-cluster"))
        result.plan.close()
        assert actions(result.changes) == {"created": 5}
    finally:
        plan.close()


def _owned(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return owned(kind, name, spec, namespace="bookinfo", source="VirtualDestination/gloo-mesh/concurrent")


def test_objects_of_a_kind_are_written_together_and_routes_only_after_their_hosts(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource
) -> None:
    """Requests of one kind overlap (WRITES_IN_FLIGHT), kinds stay in order — every
    VirtualService request reaches the server after every DestinationRule answered — and the change
    set lists the objects in the desired order, whatever order the answers came in."""
    n = 3 * WRITES_IN_FLIGHT
    hosts = [f"concurrent-{i:02d}.example.global" for i in range(n)]
    desired = (
        [
            _owned(
                "ServiceEntry",
                f"se-{i:02d}",
                {
                    "hosts": [h],
                    "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
                    "resolution": "DNS",
                    "location": "MESH_INTERNAL",
                    "endpoints": [{"address": "reviews.bookinfo.svc.cluster.local"}],
                },
            )
            for i, h in enumerate(hosts)
        ]
        + [_owned("DestinationRule", f"dr-{i:02d}", {"host": h}) for i, h in enumerate(hosts)]
        + [
            _owned(
                "VirtualService",
                f"vs-{i:02d}",
                {"hosts": [h], "http": [{"route": [{"destination": {"host": h}}]}]},
            )
            for i, h in enumerate(hosts[:2])
        ]
    )
    source = ClusterSource(kubeconfigs=two_clusters.kubeconfigs, contexts=["mgmt-cluster"])
    with build_plan(repo, source) as plan:
        marks = {"mgmt-cluster": fresh["mgmt-cluster"].audit_mark()}
        objects = [
            DesiredObject("mgmt-cluster", body, (ObjectKey.parse("VirtualDestination/gloo-mesh/x"),))
            for body in desired
        ]
        changes = sync(
            Desired({"mgmt-cluster": objects}, plan.inventory), plan.clients, SyncOptions(apply=True)
        )
    listed = changes.clusters["mgmt-cluster"].changes
    assert [(c.kind, c.name) for c in listed] == [(b["kind"], b["metadata"]["name"]) for b in desired]
    assert {c.action for c in listed} == {Action.CREATE}

    events = [
        e
        for e in fresh["mgmt-cluster"].audit_events(since=marks["mgmt-cluster"], user="admin")
        if e.get("verb") == "patch"
    ]
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for e in events:
        by_kind.setdefault(e["objectRef"]["resource"], []).append(
            (e["requestReceivedTimestamp"], e["stageTimestamp"])
        )
    assert {k: len(v) for k, v in by_kind.items()} == {
        "serviceentries": n,
        "destinationrules": n,
        "virtualservices": 2,
    }
    # kinds in order: each starts after the previous kind's last answer
    assert max(done for _, done in by_kind["serviceentries"]) <= min(
        got for got, _ in by_kind["destinationrules"]
    )
    assert max(done for _, done in by_kind["destinationrules"]) <= min(
        got for got, _ in by_kind["virtualservices"]
    )
    # within a kind, requests overlap: one was received before another was answered
    spans = sorted(by_kind["destinationrules"])
    assert any(later_got < done for (_, done), (later_got, _) in itertools.pairwise(spans)), spans
