"""The fault matrix: realistic mistakes and failures against real API servers, and what must happen.

Each test is one row of the specification "apply and prune only what we own; a mistake in Git never
takes traffic down". Every row checks the live objects (and, where it matters, the API servers'
audit logs) rather than only what the reconciler says it did. Rows:

==================================================  ================================================
scenario                                            behaviour
==================================================  ================================================
hand-made object with only our label, same name     conflict, left untouched, exit 1; ``--adopt`` takes it
hand-made object with only our label, other name    never pruned, never listed as ours
``kind:`` typo in our API group                     error with "did you mean", nothing deleted
any error finding anywhere                          pruning suspended for the run
recursive YAML alias in one file                    one finding for that file, the rest reconciles
first rollout, one remote cluster down              no route to a host that does not exist (held)
Istio CRDs missing in a cluster                     "Istio networking CRDs not installed in cluster X"
writing run                                         Lease taken before live state is listed
Lease lost / worker cancelled mid-run               no write after that moment
unexpected exception (fake: cannot happen for real) exit 2 with one line, never 1
253-character policy name                           status written, second run is a no-op
==================================================  ================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeharness import Clusters, kube, load_crds
from kubernetes.client import ApiClient

from reconciler.buildcache import BuildCache
from reconciler.clusters.inventory import Inventory
from reconciler.clusters.kube import ISTIO_RESOURCES, LEASES
from reconciler.engine.changeset import Action, ChangeSet
from reconciler.engine.lease import LeaseSettings, RunLease
from reconciler.engine.sync import SyncOptions
from reconciler.errors import ExitCode
from reconciler.plan import ClusterSource, build_plan
from reconciler.reconcile import reconcile_once, run_pass
from reconciler.settings import Settings
from reconciler.translate import translate
from tests.integration.conftest import LEASE_NAMESPACE, TWO, git

pytestmark = pytest.mark.integration

ISTIO_PLURALS = {r.plural for r in ISTIO_RESOURCES.values()}
NETWORKING = "networking.istio.io/v1"
OURS = {"app.kubernetes.io/managed-by": "mesh-reconciler"}


def mark(clusters: Clusters, names: tuple[str, ...] = TWO) -> dict[str, Any]:
    return {n: clusters[n].audit_mark() for n in names}


def requests_since(clusters: Clusters, marks: dict[str, Any], name: str) -> list[Any]:
    return list(clusters[name].audit_requests(since=marks[name], user="admin"))


def istio_writes(clusters: Clusters, marks: dict[str, Any]) -> list[str]:
    """Every non-dry-run write to an Istio kind by the reconciler since ``marks``, in all clusters."""
    return [
        f"{name}: {r.short()}"
        for name in marks
        for r in requests_since(clusters, marks, name)
        if r.resource in ISTIO_PLURALS and r.is_write and not r.dry_run
    ]


def deletes(clusters: Clusters, marks: dict[str, Any]) -> list[str]:
    return [
        f"{name}: {r.short()}"
        for name in marks
        for r in requests_since(clusters, marks, name)
        if r.verb in ("delete", "deletecollection")
    ]


def actions(changes: ChangeSet, cluster: str | None = None) -> Counter[str]:
    return Counter(c.action.value for c in changes.all() if cluster is None or c.cluster == cluster)


def reconcile(repo: Path, source: ClusterSource, **kw: Any) -> Any:
    return run_pass(repo, source, SyncOptions(apply=True, **kw), LeaseSettings(cluster="mgmt-cluster"))


def live(api: ApiClient, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = kube.get_or_none(api, NETWORKING, kind, name, namespace=namespace)
    return found


def live_count(api_clients: dict[str, ApiClient]) -> int:
    return sum(
        len(kube.list_items(api, NETWORKING, r.kind))
        for api in api_clients.values()
        for r in ISTIO_RESOURCES.values()
    )


def hand_made_vs(name: str, host: str = "reviews.bookinfo.svc.cluster.local") -> dict[str, Any]:
    return {
        "apiVersion": NETWORKING,
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "bookinfo", "labels": dict(OURS)},
        "spec": {
            "hosts": ["reviews.bookinfo.svc.cluster.local"],
            "http": [{"route": [{"destination": {"host": host}}]}],
        },
    }


# --- ownership ------------------------------------------------------------------------------------


def test_object_with_only_our_label_is_a_conflict_left_untouched_unless_adopted(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    mgmt = api_clients["mgmt-cluster"]
    # Someone copied our label onto their own VirtualService of the name a policy renders.
    made = kube.apply(mgmt, hand_made_vs("reviews", host="reviews-canary"), field_manager="kubectl")
    marks = mark(fresh)
    result = reconcile(repo, two_clusters)
    [vs] = [c for c in result.changes.all() if c.kind == "VirtualService"]
    assert vs.action is Action.CONFLICT
    assert "not our sources annotation" in vs.message and "--adopt" in vs.message
    assert vs.previous_managers == ["kubectl"]
    assert result.changes.has_errors and not result.converged  # exit 1 for reconcile
    after = live(mgmt, "VirtualService", "reviews", "bookinfo")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]  # not even touched
    assert [w for w in istio_writes(fresh, marks) if "virtualservices" in w] == []
    assert actions(result.changes) == {"created": 4, "conflict": 1}

    adopted = reconcile(repo, two_clusters, adopt=True)
    [vs] = [c for c in adopted.changes.all() if c.kind == "VirtualService"]
    assert vs.action is Action.CONFIGURE and "adopted" in vs.message
    after = live(mgmt, "VirtualService", "reviews", "bookinfo")
    assert after is not None
    assert after["metadata"]["annotations"]["mesh-reconciler.io/sources"]
    assert after["spec"]["http"][0]["route"][0]["destination"]["host"] == "reviews.global"


def test_object_with_only_our_label_is_never_pruned(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    mgmt = api_clients["mgmt-cluster"]
    kube.apply(mgmt, hand_made_vs("legacy-route"), field_manager="kubectl")
    # ...and one with our label and an empty sources annotation
    empty = hand_made_vs("legacy-route-2")
    empty["metadata"]["annotations"] = {"mesh-reconciler.io/sources": ""}
    kube.apply(mgmt, empty, field_manager="kubectl")
    reconcile(repo, two_clusters)
    marks = mark(fresh)
    (repo / "reviews-shift-failover.yaml").unlink()  # a real prune happens in this run
    result = reconcile(repo, two_clusters)
    assert [(c.kind, c.name) for c in result.changes.all() if c.action is Action.PRUNE] == [
        ("VirtualService", "reviews")
    ]
    assert not any(c.name.startswith("legacy-route") for c in result.changes.all())
    assert live(mgmt, "VirtualService", "legacy-route", "bookinfo") is not None
    assert live(mgmt, "VirtualService", "legacy-route-2", "bookinfo") is not None
    gone = deletes(fresh, marks)
    assert len(gone) == 1 and "legacy" not in gone[0], gone


# --- typos and errors must not delete -------------------------------------------------------------


def test_kind_typo_in_our_api_group_is_an_error_and_deletes_nothing(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    reconcile(repo, two_clusters)
    before = live_count(api_clients)
    path = repo / "bookinfo-global.yaml"
    path.write_text(path.read_text().replace("kind: VirtualDestination", "kind: VirtualDestinaton"))
    marks = mark(fresh)
    result = reconcile(repo, two_clusters)
    [typo] = [
        f
        for f in result.plan.findings
        if f.is_error and f.location and f.location.file == "bookinfo-global.yaml"
    ]
    assert "did you mean 'VirtualDestination'" in typo.message
    assert typo.location is not None and typo.location.line > 0
    assert result.invalid and not result.converged
    assert actions(result.changes).get("pruned", 0) == 0
    assert deletes(fresh, marks) == []
    assert live_count(api_clients) == before


def test_an_error_anywhere_suspends_pruning_for_the_run(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    reconcile(repo, two_clusters)
    (repo / "reviews-shift-failover.yaml").unlink()  # would prune the VirtualService...
    (repo / "team-b.yaml").write_text(  # ...but an unrelated policy has an error this run
        "apiVersion: networking.mesh.gloo.solo.io/v1\nkind: TrafficPolicy\n"
        "metadata: {name: broken, namespace: team-b}\nspec: {destinationSelector: 3}\n"
    )
    marks = mark(fresh)
    result = reconcile(repo, two_clusters)
    [vs] = [c for c in result.changes.all() if c.kind == "VirtualService"]
    assert vs.action is Action.HELD
    assert vs.message.startswith("pruning suspended: the repository has 1 error(s) (in team-b.yaml)")
    assert deletes(fresh, marks) == []
    assert live(api_clients["mgmt-cluster"], "VirtualService", "reviews", "bookinfo") is not None
    (repo / "team-b.yaml").unlink()  # fixed: now the prune happens
    assert actions(reconcile(repo, two_clusters).changes).get("pruned") == 1


def test_recursive_yaml_alias_is_one_finding_and_the_rest_reconciles(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource
) -> None:
    (repo / "loop.yaml").write_text(
        "apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1\nkind: VirtualDestination\n"
        "metadata: {name: loop, namespace: gloo-mesh}\nspec: &a {self: *a}\n"
    )
    result = reconcile(repo, two_clusters)
    mine = [f for f in result.plan.findings if f.location and f.location.file == "loop.yaml"]
    assert len(mine) == 1 and mine[0].is_error, [f.format() for f in mine]
    assert actions(result.changes) == {"created": 5}


# --- partial failures must not strand dependents --------------------------------------------------


def test_first_rollout_with_remote_down_creates_no_route_to_an_undefined_host(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    mgmt = api_clients["mgmt-cluster"]
    fresh["remote-cluster"].stop_apiserver()
    try:
        marks = mark(fresh, ("mgmt-cluster",))
        result = reconcile(repo, two_clusters)
    finally:
        fresh["remote-cluster"].start_apiserver()
    mgmt_changes = {c.kind: c for c in result.changes.all() if c.cluster == "mgmt-cluster"}
    assert {k: c.action for k, c in mgmt_changes.items()} == {
        "ServiceEntry": Action.HELD,
        "DestinationRule": Action.HELD,
        "VirtualService": Action.HELD,
    }
    assert mgmt_changes["ServiceEntry"].message.startswith("not created: depends on unreachable cluster(s)")
    assert "routes to reviews.global" in mgmt_changes["VirtualService"].message
    assert mgmt_changes["VirtualService"].message.startswith("not created")
    assert live(mgmt, "VirtualService", "reviews", "bookinfo") is None  # clients keep the working route
    assert istio_writes(fresh, marks) == []
    assert not result.converged
    # Once remote is back, everything rolls out in one pass.
    assert actions(reconcile(repo, two_clusters).changes) == {"created": 5}


def test_existing_route_is_not_repointed_while_its_new_host_is_held(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    # Live: a VirtualService we own that routes locally; Git now routes it to a new global host.
    reconcile(repo, two_clusters)
    mgmt = api_clients["mgmt-cluster"]
    for path in (repo / "bookinfo-global.yaml", repo / "reviews-shift-failover.yaml"):
        path.write_text(path.read_text().replace("bookinfo-global", "bookinfo-global-2"))
    (repo / "bookinfo-global.yaml").write_text(
        (repo / "bookinfo-global.yaml").read_text().replace("reviews.global", "reviews2.global")
    )
    fresh["remote-cluster"].stop_apiserver()
    try:
        result = reconcile(repo, two_clusters)
    finally:
        fresh["remote-cluster"].start_apiserver()
    [vs] = [c for c in result.changes.all() if c.kind == "VirtualService"]
    assert vs.action is Action.HELD and vs.message.startswith("kept as it is live: routes to reviews2.global")
    after = live(mgmt, "VirtualService", "reviews", "bookinfo")
    assert (
        after is not None and after["spec"]["http"][0]["route"][0]["destination"]["host"] == "reviews.global"
    )


def test_missing_istio_crds_are_reported_as_such(
    fresh: Clusters, repo: Path, kubeconfig: Path, api_clients: dict[str, ApiClient], tmp_path: Path
) -> None:
    api = api_clients["cluster-3"]
    crds = load_crds()
    for crd in crds:
        kube.delete(api, "apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            kube.get_or_none(
                api, "apiextensions.k8s.io/v1", "CustomResourceDefinition", c["metadata"]["name"]
            )
            for c in crds
        ):
            time.sleep(0.2)
        kube.forget_discovery(api)
        (repo / "reconciler.yaml").write_text("clusters: {}\n")
        source = ClusterSource(kubeconfigs=[str(kubeconfig)], contexts=["mgmt-cluster", "cluster-3"])
        cache = BuildCache(tmp_path / "builds", "commit:x", repo / "status")
        with build_plan(repo, source, build_cache=cache) as plan:
            error = plan.inventory.clusters["cluster-3"].error or ""
        assert error.startswith("Istio networking CRDs not installed in cluster cluster-3"), error
        assert "404" not in error and "unreachable" not in error
        assert plan.inventory.clusters["mgmt-cluster"].reachable
        # Our kinds are listed after translation, which read cluster-3's services as reachable: the
        # build the plan holds is the one made again without it (as translating now gives, over an
        # inventory that never saw cluster-3 reachable).
        again = translate(
            plan.policies,
            Inventory(dict(plan.inventory.clusters)),
            configured_clusters=plan.inventory.clusters,
            tenancy=plan.repo.namespace_boundaries(),
        )
        bodies = {c: [d.body for d in objects] for c, objects in again.objects.items()}
        assert {c: [d.body for d in objects] for c, objects in plan.translation.objects.items()} == bodies
        assert not plan.translation.objects.get("cluster-3")
        # While it lasts, each pass translates once more than it would: the build kept is the one
        # made without cluster-3, which the next pass's second build reuses.
        assert (cache.hits, cache.misses) == (0, 2)
        with build_plan(repo, source, build_cache=cache) as plan:
            assert plan.inventory.clusters["cluster-3"].error
        assert (cache.hits, cache.misses) == (1, 3)
        with build_plan(repo, dataclasses.replace(source, keep_raw=True)) as plan:
            assert plan.discovery is not None and set(plan.discovery.raw) == {"mgmt-cluster"}  # no snapshot
    finally:
        fresh.install_crds(crds)
        kube.forget_discovery(api)


# --- concurrency ----------------------------------------------------------------------------------


def test_writing_run_takes_the_lease_before_listing_live_state(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource
) -> None:
    marks = mark(fresh, ("mgmt-cluster",))
    reconcile(repo, two_clusters)
    reqs = requests_since(fresh, marks, "mgmt-cluster")
    order = [(r.verb, r.resource) for r in reqs]
    lease_taken = next(
        i for i, (verb, res) in enumerate(order) if res == "leases" and verb in ("create", "update")
    )
    first_list = next(i for i, (verb, _) in enumerate(order) if verb == "list")
    assert lease_taken < first_list, order


def test_lost_lease_is_detected_from_the_api_server(fresh: Clusters, two_clusters: ClusterSource) -> None:
    with build_plan(Path(__file__).parents[2] / "policies", two_clusters) as plan:
        lease = RunLease(plan.clients["mgmt-cluster"], identity="this-run", duration=60)
        lease.acquire()
        # Another run takes it over (the API server moves resourceVersion on).
        thief = dict(
            kube.get(
                fresh.api_client("mgmt-cluster"),
                LEASES.api_version,
                "Lease",
                "mesh-reconciler",
                namespace=LEASE_NAMESPACE,
            )
        )
        thief["spec"]["holderIdentity"] = "another-run"
        kube.request(
            fresh.api_client("mgmt-cluster"),
            "PUT",
            kube.resource_path(
                fresh.api_client("mgmt-cluster"),
                LEASES.api_version,
                "Lease",
                name="mesh-reconciler",
                namespace=LEASE_NAMESPACE,
            ),
            body=thief,
        )
        lease.renew()
        assert lease.lost.is_set()


def test_cancelled_pass_writes_nothing_after_the_signal(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, api_clients: dict[str, ApiClient]
) -> None:
    import threading

    cancel = threading.Event()
    cancel.set()  # e.g. the worker gave up waiting at shutdown, or the Lease was lost
    marks = mark(fresh)
    result = run_pass(
        repo, two_clusters, SyncOptions(apply=True), LeaseSettings(cluster="mgmt-cluster"), cancel=cancel
    )
    result.plan.close()
    assert istio_writes(fresh, marks) == []
    assert actions(result.changes) == {"held": 5}
    assert all("not written: the worker is shutting down" in c.message for c in result.changes.all())
    assert not result.converged


# --- nothing crashes a run ------------------------------------------------------------------------


def _settings(bare: Path, kubeconfig: Path, cache: Path) -> Settings:
    return Settings(
        repo=f"file://{bare}",
        cache_dir=str(cache),
        kubeconfig=[str(kubeconfig)],
        lease_cluster="mgmt-cluster",
    )


def test_fake_bug_in_a_stage_is_fatal_exit_2_never_degraded(
    fresh: Clusters,
    kubeconfig: Path,
    remote: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fake fault (a bug cannot be produced for real on purpose): translation raises."""
    import reconciler.plan

    def fake_bug(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("spec")

    monkeypatch.setattr(reconciler.plan, "translate", fake_bug)
    bare, _ = remote
    outcome = reconcile_once(_settings(bare, kubeconfig, tmp_path / "cache"))
    assert outcome.exit_code == ExitCode.FATAL
    assert outcome.error.startswith("unexpected KeyError: 'spec'") and "\n" not in outcome.error


def test_253_character_policy_name_status_is_written_and_stays_stable(
    fresh: Clusters, kubeconfig: Path, remote: tuple[Path, Path], tmp_path: Path
) -> None:
    bare, work = remote
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # a legal DNS subdomain of the maximum length
    assert len(name) == 253
    vd = yaml.safe_load((work / "bookinfo-global.yaml").read_text())
    vd["metadata"]["name"] = name
    vd["spec"]["hostname"] = "ratings.global"
    vd["spec"]["localized"]["destinationSelectors"] = [{"kubeServiceMatcher": {"labels": {"app": "ratings"}}}]
    (work / "long.yaml").write_text(yaml.safe_dump(vd))
    git(work, "add", "-A")
    git(work, "commit", "-qm", "a long name")
    git(work, "push", "-q", "origin", "HEAD:main")
    settings = _settings(bare, kubeconfig, tmp_path / "cache")
    first = reconcile_once(settings)
    assert first.exit_code in (ExitCode.OK, ExitCode.DEGRADED), first.error
    assert first.status_commit, first.error
    second = reconcile_once(settings)
    assert second.exit_code == first.exit_code and second.status_commit is None, second.error
    git(work, "pull", "-q", "--ff-only", "origin", "main")
    files = [p for p in (work / "status").rglob("*.yaml") if name in p.read_text()]
    assert files, "the long-named policy has a status report"
    assert all(len(part.encode()) <= 255 for f in files for part in f.parts)
    with contextlib.suppress(Exception):
        fresh.ensure_running()
