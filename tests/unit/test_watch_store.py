"""The watch cache's store: events in, objects out; 410 Gone -> LIST again; errors -> not synced.

The event streams here are fakes (``fake_*``): a 410 Gone needs an etcd compaction, which the
harness cannot do on demand. The real watches against real API servers are in
tests/integration/test_watch_cache.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from reconciler.clusters.discover import OWNED_SELECTOR
from reconciler.clusters.kube import DESTINATION_RULES, FIELD_MANAGER, SERVICES, KubeError, Resource
from reconciler.clusters.watch import ClusterWatch, ResourceWatch, is_drift


def obj(name: str, version: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}, "spec": spec}


class FakeWatchSource:
    """Serves LISTs and watch streams from scripted lists (each watch call pops one script)."""

    def __init__(self, lists: list[tuple[list[dict[str, Any]], str]], watches: list[list[Any]]) -> None:
        self.lists = lists
        self.watches = watches
        self.calls: list[tuple[str, str]] = []
        self.done = threading.Event()

    def list_versioned(
        self, resource: Resource, *, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        items, version = self.lists.pop(0)
        self.calls.append(("list", version))
        return [dict(i) for i in items], version

    def watch(
        self,
        resource: Resource,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        on_open: Callable[[Any], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        self.calls.append(("watch", resource_version))
        if not self.watches:
            self.done.set()
            time.sleep(0.05)
            return
        for event in self.watches.pop(0):
            if isinstance(event, Exception):
                raise event
            yield event


def run_until_done(source: FakeWatchSource, watch: ResourceWatch, stop: threading.Event) -> None:
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    assert source.done.wait(timeout=5)
    stop.set()
    thread.join(timeout=5)


def test_fake_events_update_the_store_and_bookmarks_only_move_the_version() -> None:
    stop = threading.Event()
    seen: list[str] = []
    source = FakeWatchSource(
        lists=[([obj("a", "10"), obj("b", "11")], "12")],
        watches=[
            [
                {"type": "ADDED", "object": obj("c", "13")},
                {"type": "MODIFIED", "object": obj("a", "14", port=80)},
                {"type": "DELETED", "object": obj("b", "15")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
            ],
        ],
    )
    watch = ResourceWatch(
        source, "c1", SERVICES, None, stop=stop, on_event=lambda t, o: seen.append(t), max_backoff=0.01
    )
    run_until_done(source, watch, stop)
    assert source.calls[:3] == [
        ("list", "12"),
        ("watch", "12"),
        ("watch", "20"),
    ]  # re-watch from the bookmark
    assert watch.synced and watch.version == "20"
    assert [(o["metadata"]["name"], o["spec"]) for o in watch.objects()] == [("a", {"port": 80}), ("c", {})]
    assert {(o["apiVersion"], o["kind"]) for o in watch.objects()} == {("v1", "Service")}
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


def test_fake_410_gone_lists_again_and_replaces_the_store() -> None:
    stop = threading.Event()
    source = FakeWatchSource(
        lists=[([obj("a", "10")], "10"), ([obj("z", "50")], "50")],
        watches=[[KubeError(410, "too old resource version: 10 (40)", "Expired")]],
    )
    watch = ResourceWatch(source, "c1", SERVICES, None, stop=stop, max_backoff=0.01)
    run_until_done(source, watch, stop)
    assert source.calls[:3] == [("list", "10"), ("watch", "10"), ("list", "50")]
    assert watch.lists == 2 and watch.synced
    assert [o["metadata"]["name"] for o in watch.objects()] == ["z"]


def test_fake_connection_error_unsyncs_the_cluster_until_listed_again() -> None:
    source = FakeWatchSource(lists=[([obj("a", "1")], "1")], watches=[])
    cluster = ClusterWatch("c1", source, lists=[(SERVICES, None)], max_backoff=0.01)
    [watch] = cluster.watches
    watch.replace([obj("a", "1")], "1")
    assert cluster.snapshot() is not None
    watch.unsync("cannot reach the API server of c1")
    assert cluster.snapshot() is None  # a pass LISTs this cluster instead


def test_drift_is_a_change_whose_newest_manager_is_not_ours() -> None:
    def fields(*entries: tuple[str, str]) -> dict[str, Any]:
        return {"metadata": {"managedFields": [{"manager": m, "time": t} for m, t in entries]}}

    ours = (FIELD_MANAGER, "2024-01-01T00:00:05Z")
    assert not is_drift("MODIFIED", fields(ours))
    assert not is_drift("MODIFIED", fields(("kubectl-edit", "2024-01-01T00:00:01Z"), ours))
    assert is_drift("MODIFIED", fields(ours, ("kubectl-edit", "2024-01-01T00:00:09Z")))
    assert is_drift("MODIFIED", fields(("kubectl", "2024-01-01T00:00:01Z")))  # label copied by hand
    status = fields(ours)
    status["metadata"]["managedFields"].append(
        {"manager": "pilot-discovery", "time": "2024-01-01T00:00:09Z", "subresource": "status"}
    )
    assert not is_drift("MODIFIED", status)
    assert is_drift("DELETED", fields(ours))


def test_fake_resync_after_our_writes_lists_the_owned_kinds_again() -> None:
    source = FakeWatchSource(lists=[([obj("a", "1")], "1")], watches=[])
    cluster = ClusterWatch("c1", source, lists=[(SERVICES, None), (DESTINATION_RULES, OWNED_SELECTOR)])
    for w in cluster.watches:
        w.replace([], "1")
    cluster.resync_owned()
    assert [w.synced for w in cluster.watches] == [True, False]
    assert cluster.snapshot() is None
    stale = cluster.watches[1]
    stale.replace([], "0", generation=0)  # a LIST sent before the resync does not count
    assert not stale.synced
