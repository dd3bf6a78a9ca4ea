"""Live state kept between passes by watches (``serve`` only): a pass on a synced cache LISTs nothing.

Per cluster and per :data:`~reconciler.clusters.discover.DISCOVERY_LISTS` entry, one daemon thread
LISTs the collection (recording its ``resourceVersion``) and then WATCHes it from there
(``allowWatchBookmarks``, ``timeoutSeconds``); when the server ends a watch it re-watches from the
last version seen. ADDED/MODIFIED/DELETED events update an in-memory store keyed by
(namespace, name) per kind; BOOKMARKs only move the version. A 410 Gone (version compacted) means a
re-LIST. Any other error marks the cache *not synced* (bounded backoff, then a fresh LIST): a pass
then falls back to discovery's LISTs for that cluster — a stale or partial cache is never planned
from. :meth:`WatchCaches.snapshot` returns, per cluster, the objects in the shape discovery's raw
lists have, so ``build_cluster_state`` builds the same ClusterState a LIST would.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from reconciler.clusters.discover import DISCOVERY_LISTS, OWNED_SELECTOR
from reconciler.clusters.kube import FIELD_MANAGER, KubeClient, KubeError, Resource
from reconciler.clusters.targets import ClusterTarget

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300
MAX_BACKOFF = 30.0

DriftCallback = Callable[[str, str, dict[str, Any]], None]
"""(cluster, event type, object): a change to an object we own that we did not make."""


class WatchSource(Protocol):
    """What a watch needs from a cluster client (:class:`KubeClient`; a fake in unit tests)."""

    def list_versioned(
        self, resource: Resource, *, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]: ...

    def watch(
        self,
        resource: Resource,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
        on_open: Callable[[Any], None] | None = None,
    ) -> Iterator[dict[str, Any]]: ...


def is_drift(event_type: str, obj: dict[str, Any]) -> bool:
    """Was this change to an owned object made by someone else (by hand, another tool)?

    A deletion always counts (our own prunes then cause one extra pass, which writes nothing). An
    add or update counts unless our field manager's entry is the newest one in ``managedFields``
    (ties count as drift: timestamps have one-second resolution, and an extra pass is harmless);
    status subresource entries (e.g. istiod's) are not edits of what we own.
    """
    if event_type == "DELETED":
        return True
    entries = [
        e
        for e in (obj.get("metadata") or {}).get("managedFields") or []
        if e.get("subresource") != "status" and e.get("time")
    ]
    ours = [str(e["time"]) for e in entries if e.get("manager") == FIELD_MANAGER]
    others = [str(e["time"]) for e in entries if e.get("manager") != FIELD_MANAGER]
    if not ours:
        return True
    return bool(others) and max(others) >= max(ours)


class ResourceWatch:
    """One collection of one cluster: LIST, then WATCH from the LIST's version, until stopped."""

    def __init__(
        self,
        source: WatchSource,
        cluster: str,
        resource: Resource,
        selector: str | None,
        *,
        stop: threading.Event,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.source = source
        self.cluster = cluster
        self.resource = resource
        self.selector = selector
        self.timeout_seconds = timeout_seconds
        self.max_backoff = max_backoff
        self._stop = stop
        self._on_event = on_event
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = ""
        self.synced = False
        self.lists = 0
        """LISTs made (the first one, then one per re-sync)."""
        self.error = ""
        self._response: Any = None
        self._generation = 0
        """Bumped by :meth:`resync`: a LIST started before the bump does not make the store synced."""

    # -- store -------------------------------------------------------------------------------------

    def replace(self, items: list[dict[str, Any]], version: str, generation: int | None = None) -> None:
        """The result of a LIST: the whole store at ``version``; synced from now on, unless a
        :meth:`resync` came after the LIST was sent (``generation``), which then LISTs again."""
        store = {}
        for item in items:
            item.setdefault("apiVersion", self.resource.api_version)
            item.setdefault("kind", self.resource.kind)
            store[_key(item)] = item
        with self._lock:
            current = generation is None or generation == self._generation
            self._objects, self.version, self.synced, self.error = store, version, current, ""

    def resync(self) -> None:
        """LIST again now: the store is not synced until a LIST sent after this call has returned."""
        with self._lock:
            self._generation += 1
            self.synced = False
        self.shutdown()

    def apply(self, event: dict[str, Any]) -> None:
        """One watch event. Objects are replaced, never changed in place (snapshots copy anyway)."""
        kind, obj = str(event.get("type") or ""), event.get("object") or {}
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        with self._lock:
            if kind in ("ADDED", "MODIFIED"):
                obj.setdefault("apiVersion", self.resource.api_version)
                obj.setdefault("kind", self.resource.kind)
                self._objects[_key(obj)] = obj
            elif kind == "DELETED":
                self._objects.pop(_key(obj), None)
            elif kind != "BOOKMARK":
                log.debug("ignoring watch event of type %r", kind)
                return
            if version:
                self.version = version
        if kind != "BOOKMARK" and self._on_event is not None:
            self._on_event(kind, obj)

    def unsync(self, why: str) -> None:
        with self._lock:
            self.synced, self.error = False, why

    def objects(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._objects[k] for k in sorted(self._objects)]

    # -- loop --------------------------------------------------------------------------------------

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            generation = self._generation
            try:
                if not self.synced:
                    self.lists += 1
                    items, version = self.source.list_versioned(self.resource, label_selector=self.selector)
                    self.replace(items, version, generation)
                    if not self.synced:
                        continue  # resync() meanwhile
                self.watch_once()
                backoff = 0.5  # the server ended the watch (timeoutSeconds): re-watch from self.version
            except KubeError as exc:
                if self._stop.is_set():
                    return
                if generation != self._generation:
                    continue  # resync() closed the stream: LIST again at once
                self.unsync(str(exc))
                if exc.status == 410 or "too old resource version" in exc.message:
                    log.info("%s %s: %s; listing again", self.cluster, self.resource.plural, exc)
                    continue  # re-LIST at once: nothing is wrong with the server
                log.warning(
                    "%s %s: watch failed (%s); retrying in %.1fs (passes LIST this cluster meanwhile)",
                    self.cluster,
                    self.resource.plural,
                    exc,
                    backoff,
                )
            except Exception as exc:  # never let a cache thread die: unsynced, retried
                if self._stop.is_set():
                    return
                self.unsync(f"{type(exc).__name__}: {exc}")
                log.warning("%s %s: watch crashed: %s", self.cluster, self.resource.plural, exc)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def watch_once(self) -> None:
        for event in self.source.watch(
            self.resource,
            resource_version=self.version,
            label_selector=self.selector,
            timeout_seconds=self.timeout_seconds,
            on_open=self._opened,
        ):
            if self._stop.is_set():
                return
            self.apply(event)

    def _opened(self, response: Any) -> None:
        self._response = response
        if self._stop.is_set() or not self.synced:  # stop() or resync() came before the stream opened
            self.shutdown()

    def shutdown(self) -> None:
        """Unblock a thread waiting on the stream (called by :meth:`ClusterWatch.stop`)."""
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # best effort: the thread is a daemon and the read is bounded
                log.debug("cannot shut down a watch stream", exc_info=True)


class ClusterWatch:
    """Every discovery collection of one cluster, each watched by its own daemon thread."""

    def __init__(
        self,
        name: str,
        source: WatchSource,
        *,
        on_drift: DriftCallback | None = None,
        timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
        max_backoff: float = MAX_BACKOFF,
        lists: Sequence[tuple[Resource, str | None]] = DISCOVERY_LISTS,
    ) -> None:
        self.name = name
        self.source = source
        self._stop = threading.Event()
        self._on_drift = on_drift
        self.watches = [
            ResourceWatch(
                source,
                name,
                resource,
                selector,
                stop=self._stop,
                on_event=self._owned_event if selector == OWNED_SELECTOR else None,
                timeout_seconds=timeout_seconds,
                max_backoff=max_backoff,
            )
            for resource, selector in lists
        ]
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for w in self.watches:
            thread = threading.Thread(
                target=w.run, name=f"watch-{self.name}-{w.resource.plural}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for w in self.watches:
            w.shutdown()
        for thread in self._threads:
            thread.join(timeout=timeout)
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    @property
    def synced(self) -> bool:
        return all(w.synced for w in self.watches)

    def resync_owned(self) -> None:
        """LIST the kinds we write again (see :meth:`WatchCaches.wrote`)."""
        for w in self.watches:
            if w.selector == OWNED_SELECTOR:
                w.resync()

    def _owned_event(self, event_type: str, obj: dict[str, Any]) -> None:
        if self._on_drift is not None and is_drift(event_type, obj):
            self._on_drift(self.name, event_type, obj)

    def snapshot(self) -> list[dict[str, Any]] | None:
        """The cluster's objects (discovery's order of kinds), or None when not synced."""
        if not self.synced:
            return None
        objects = [obj for w in self.watches for obj in w.objects()]
        if not self.synced:  # lost meanwhile: the objects may be partial
            return None
        return copy.deepcopy(objects)


class WatchCaches:
    """The caches of every cluster a ``serve`` worker reconciles, kept across passes."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
        on_drift: DriftCallback | None = None,
    ) -> None:
        self.timeout = timeout
        self.timeout_seconds = timeout_seconds
        self.on_drift = on_drift
        self.clusters: dict[str, ClusterWatch] = {}
        self._targets: dict[str, ClusterTarget] = {}
        self._lock = threading.Lock()

    def ensure(self, targets: Sequence[ClusterTarget]) -> None:
        """Watch exactly these clusters (start new ones, stop ones no longer reconciled)."""
        with self._lock:
            wanted = {t.name: t for t in targets}
            for name in [n for n in self.clusters if n not in wanted or wanted[n] != self._targets[n]]:
                self.clusters.pop(name).stop()
                self._targets.pop(name)
            for name, target in wanted.items():
                if name in self.clusters:
                    continue
                try:
                    client = KubeClient(target.api_client(), name, timeout=self.timeout)
                except Exception as exc:  # discovery reports the same credentials problem
                    log.debug("no watch for %s: %s", name, exc)
                    continue
                watch = ClusterWatch(name, client, on_drift=self._drift, timeout_seconds=self.timeout_seconds)
                self.clusters[name], self._targets[name] = watch, target
                watch.start()

    def _drift(self, cluster: str, event_type: str, obj: dict[str, Any]) -> None:
        if self.on_drift is not None:
            self.on_drift(cluster, event_type, obj)

    def wrote(self, cluster: str) -> None:
        """A pass wrote (or may have written) to ``cluster``: re-LIST the kinds we write there.

        The simplest correct way never to plan from a cache that has not seen our own writes yet:
        those kinds are not synced until a LIST sent *after* the writes has returned (a LIST is a
        consistent read), and until then a pass LISTs the cluster itself. Waiting for the watch to
        catch up instead would mean comparing resourceVersions, which Kubernetes declares opaque.
        Cost: one LIST per Istio kind, only after a pass that changed that cluster.
        """
        with self._lock:
            watch = self.clusters.get(cluster)
        if watch is not None:
            watch.resync_owned()

    def snapshot(self) -> dict[str, list[dict[str, Any]] | None]:
        """Per watched cluster: its objects, or None when not synced (a pass then LISTs it)."""
        with self._lock:
            watches = dict(self.clusters)
        return {name: w.snapshot() for name, w in watches.items()}

    def synced(self, names: Sequence[str] | None = None) -> bool:
        names = list(self.clusters) if names is None else names
        return all(n in self.clusters and self.clusters[n].synced for n in names)

    def stop(self) -> None:
        with self._lock:
            watches, self.clusters, self._targets = list(self.clusters.values()), {}, {}
        for w in watches:
            w.stop()


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
