"""``serve``'s watch caches on real API servers: no LIST on a no-op pass, drift repaired in seconds,
re-sync after an API server restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubeharness import Clusters, kube
from kubernetes.client import ApiClient

from reconciler.clusters.watch import WatchCaches
from reconciler.engine.lease import LeaseSettings
from reconciler.engine.sync import SyncOptions
from reconciler.plan import ClusterSource
from reconciler.reconcile import run_pass
from reconciler.serve import Worker, serve
from reconciler.settings import Settings
from tests.integration.conftest import TWO
from tests.integration.test_engine import DISCOVERY_PLURALS, actions, mark, requests_since

pytestmark = pytest.mark.integration

APPLY = SyncOptions(apply=True)
LEASE = LeaseSettings(cluster="mgmt-cluster")
DR = ("DestinationRule", "vd-bookinfo-global-gloo-mesh", "istio-system")


@pytest.fixture
def caches() -> Iterator[WatchCaches]:
    live = WatchCaches(timeout=5.0)
    yield live
    live.stop()


def wait_synced(live: WatchCaches, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not live.synced(list(TWO)):
        assert time.monotonic() < deadline, {
            n: [w.error for w in c.watches] for n, c in live.clusters.items()
        }
        time.sleep(0.05)


def dr_interval(api: ApiClient) -> str:
    kind, name, ns = DR
    obj = kube.get(api, "networking.istio.io/v1", kind, name, namespace=ns)
    return str(obj["spec"]["trafficPolicy"]["outlierDetection"]["interval"])


def hand_edit(api: ApiClient) -> None:
    kind, name, ns = DR
    kube.merge_patch(
        api,
        "networking.istio.io/v1",
        kind,
        name,
        {"spec": {"trafficPolicy": {"outlierDetection": {"interval": "30s"}}}},
        namespace=ns,
        field_manager="kubectl-edit",
    )


def test_noop_pass_on_synced_caches_sends_nothing_to_the_watched_kinds(
    fresh: Clusters, repo: Path, two_clusters: ClusterSource, caches: WatchCaches
) -> None:
    first = run_pass(repo, two_clusters, APPLY, LEASE, live=caches)  # caches start; LISTs this time
    assert actions(first.changes) == {"created": 5}
    wait_synced(caches)  # the first pass wrote: its kinds were listed again after the writes
    listed = run_pass(repo, two_clusters, APPLY, LEASE)  # the CronJob way, for comparison

    marks = mark(fresh)
    second = run_pass(repo, two_clusters, APPLY, LEASE, live=caches)
    assert second.plan.discovery is not None and second.plan.discovery.cached == set(TWO)
    assert second.changes.to_dict() == listed.changes.to_dict()
    assert actions(second.changes) == {"unchanged": 5}
    for name in TWO:
        reqs = requests_since(fresh, marks, name)
        assert [r.short() for r in reqs if r.resource in DISCOVERY_PLURALS] == [], name
        # what is left is the Lease: get + update to take it, update to release it (mgmt only)
        assert {r.resource for r in reqs} <= {"leases"}, [r.short() for r in reqs]
    assert len(requests_since(fresh, marks, "mgmt-cluster")) == 3
    assert second.plan.inventory.clusters.keys() == listed.plan.inventory.clusters.keys()


def test_hand_edit_of_an_owned_object_is_repaired_without_waiting_for_the_interval(
    fresh: Clusters,
    kubeconfig: Path,
    remote: tuple[Path, Path],
    tmp_path: Path,
    api_clients: dict[str, ApiClient],
) -> None:
    bare, _ = remote
    settings = Settings(
        repo=f"file://{bare}",
        cache_dir=str(tmp_path / "c"),
        kubeconfig=[str(kubeconfig)],
        lease_cluster="mgmt-cluster",
    )
    live = WatchCaches(timeout=5.0)
    worker = Worker(settings, live=live)
    stop = threading.Event()
    holder: list[int] = []
    # serve() installs signal handlers, so it runs in the main thread; a helper drives the test.
    measured: list[float] = []
    failure: list[str] = []

    def drive() -> None:
        try:
            deadline = time.monotonic() + 60
            while (worker.passes < 1 or not live.synced(list(TWO))) and time.monotonic() < deadline:
                time.sleep(0.1)
            mgmt = api_clients["mgmt-cluster"]
            assert dr_interval(mgmt) == "5s"
            passes = worker.passes
            hand_edit(mgmt)
            edited = time.monotonic()
            while time.monotonic() < edited + 20:
                if dr_interval(mgmt) == "5s":
                    measured.append(time.monotonic() - edited)
                    break
                time.sleep(0.1)
            while worker.passes == passes and time.monotonic() < edited + 30:
                time.sleep(0.1)  # the pass that repaired it counts once it has finished
            assert worker.passes > passes
        except AssertionError as exc:
            failure.append(repr(exc))
        finally:
            stop.set()

    helper = threading.Thread(target=drive)
    helper.start()
    holder.append(serve(worker, interval=3600, cron=None, port=0, shutdown_grace=30, stop=stop))
    helper.join(timeout=10)
    assert failure == [] and holder == [0]
    assert measured, "the hand edit was not repaired within 20s"
    assert measured[0] < 20
    print(f"drift repaired {measured[0]:.2f}s after the hand edit")
    assert worker.last is not None and not worker.last.fatal


def test_caches_resync_after_an_api_server_restart(
    fresh: Clusters,
    repo: Path,
    two_clusters: ClusterSource,
    caches: WatchCaches,
    api_clients: dict[str, ApiClient],
) -> None:
    run_pass(repo, two_clusters, APPLY, LEASE, live=caches)
    wait_synced(caches)
    plane = fresh["remote-cluster"]
    plane.stop_apiserver()
    try:
        deadline = time.monotonic() + 30
        while caches.synced(["remote-cluster"]):
            assert time.monotonic() < deadline, "the cache still claims to be synced with the server down"
            time.sleep(0.1)
        assert caches.snapshot()["remote-cluster"] is None  # a pass would LIST (and find it down)
    finally:
        plane.start_apiserver()
    # While it was down, someone deleted one of our objects there.
    kind, name, ns = DR
    kube.delete(api_clients["remote-cluster"], "networking.istio.io/v1", kind, name, namespace=ns)
    wait_synced(caches, timeout=60)  # backoff is bounded
    result = run_pass(repo, two_clusters, APPLY, LEASE, live=caches)
    assert result.plan.discovery is not None and "remote-cluster" in result.plan.discovery.cached
    assert actions(result.changes, "remote-cluster") == {"created": 1, "unchanged": 1}
    assert actions(result.changes, "mgmt-cluster") == {"unchanged": 3}
